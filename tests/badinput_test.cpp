// Hostile and broken clients (docs/protocols/messages.md): the broker answers with an error
// or closes only that one connection, and keeps serving everyone else.
// After every case a bystander client, connected before it, and a fresh
// one both get broker.ping answered on rank 0 and rank 1, and the brokers'
// processes are alive.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "kit/client.h"
#include "kit/instance.h"

namespace loom::test {
namespace {

// A frame encoded by hand, for what encode_message refuses to build.
std::string raw_frame(uint8_t version, uint8_t type, uint8_t flags, const std::string& topic,
                      const std::string& payload = {}, uint32_t matchtag = 1) {
  std::string body;
  body += static_cast<char>(version);
  body += static_cast<char>(type);
  body += static_cast<char>(flags);
  body += '\0';  // hops
  body += u32le(matchtag);
  body += u32le(kNodeAny);
  body += u32le(kUserIdUnknown);
  body += u32le(0);
  body += u32le(0);
  body += u32le(0);
  body += static_cast<char>(topic.size());
  body += topic;
  body += payload;
  return u32le(static_cast<uint32_t>(body.size())) + body;
}

std::string deep_array(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }
std::string deep_object(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += "{\"a\":";
  s += "1";
  s += std::string(depth, '}');
  return s;
}

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(inst_.start(2));
    for (uint32_t r = 0; r < 2; ++r) {
      std::string why;
      auto pid = inst_.broker_pid(r, &why);
      ASSERT_TRUE(pid) << why;
      pids_.push_back(*pid);
    }
    auto c = loop_.connect(inst_.socket(0));
    ASSERT_TRUE(c.ok()) << c.error().text;
    bystander_ = std::move(*c);
  }

  void TearDown() override {
    if (!HasFatalFailure() && bystander_) expect_healthy();
  }

  // Everyone else is still served.
  void expect_healthy() {
    ASSERT_TRUE(bystander_->is_open()) << "the broker closed an innocent connection";
    auto fresh = loop_.connect(inst_.socket(0));
    ASSERT_TRUE(fresh.ok()) << fresh.error().text;
    for (Client* c : {bystander_.get(), fresh->get()}) {
      for (uint32_t rank : {0u, 1u}) {
        Reply r = call(loop_, *c, "broker.ping", R"({"still":"here"})", {rank, false, 0});
        ASSERT_EQ(r.errnum, 0) << "rank " << rank << ": " << r.errstr;
        EXPECT_EQ(r.payload, R"({"still":"here"})");
      }
    }
    for (pid_t pid : pids_) EXPECT_TRUE(is_alive(pid)) << "broker pid " << pid << " is gone";
    EXPECT_TRUE(inst_.running());
  }

  RawConn raw(uint32_t rank = 0) {
    auto c = RawConn::connect(inst_.socket(rank));
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().text);
    if (!c.ok()) std::abort();
    return std::move(*c);
  }

  Instance inst_;
  std::vector<pid_t> pids_;
  Loop loop_;
  std::unique_ptr<Client> bystander_;
};

TEST_F(BadInput, RandomBytes) {
  std::mt19937 rng(20240611);
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::string junk(4096, '\0');
    for (auto& ch : junk) ch = static_cast<char>(rng() & 0xff);
    if (round % 2 == 1) {
      // A plausible length, then a body with a bad version byte: EPROTO
      // and the broker closes us without waiting for our EOF.
      std::string body = junk.substr(0, 200);
      body[0] = static_cast<char>(0xEE);
      auto c = raw();
      ASSERT_TRUE(c.write(u32le(static_cast<uint32_t>(body.size())) + body));
      EXPECT_TRUE(c.wait_closed()) << "the broker kept a connection that sent a bad frame";
    } else {
      auto c = raw();
      c.write(junk);  // the broker may close us half-way: either is fine
      c.shutdown_write();
      EXPECT_TRUE(c.wait_closed());
    }
  }
  expect_healthy();
}

TEST_F(BadInput, TruncatedFrameThenClose) {
  std::string frame = encode_message(request("broker.ping", "{}", 1));
  {
    auto c = raw();
    ASSERT_TRUE(c.write(frame.substr(0, frame.size() - 5)));
    // Half a frame is pending on this connection; the broker serves others
    // meanwhile and does not answer it.
    expect_healthy();
    EXPECT_FALSE(c.recv(0).has_value());
    EXPECT_FALSE(c.closed());
  }
  // Only the length prefix, and only part of it.
  for (size_t cut : {1u, 3u, 4u}) {
    auto c = raw();
    ASSERT_TRUE(c.write(frame.substr(0, cut)));
  }
  // The rest of a frame arriving later is fine.
  auto c = raw();
  ASSERT_TRUE(c.write(frame.substr(0, 7)));
  expect_healthy();
  ASSERT_TRUE(c.write(frame.substr(7)));
  auto m = c.recv();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->errnum, 0);
  EXPECT_EQ(m->matchtag, 1u);
}

TEST_F(BadInput, OversizeLengthPrefixClosesTheConnection) {
  for (uint32_t len : {static_cast<uint32_t>(kMaxFrameSize + 1), 0xFFFFFFFFu, 0x80000000u}) {
    auto c = raw();
    ASSERT_TRUE(c.write(u32le(len) + "junk"));
    EXPECT_TRUE(c.wait_closed()) << "length " << len;
  }
  // A length too small to hold a header is malformed too.
  auto c = raw();
  ASSERT_TRUE(c.write(u32le(3) + "abc"));
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(BadInput, DeeplyNestedJsonIsRefusedNotFollowed) {
  const std::string arr = deep_array(100000);
  const std::string obj = deep_object(100000);
  auto c = raw();
  // Every payload with a nesting of 100,000, to services that parse it.
  struct Case {
    std::string topic;
    uint32_t nodeid;
    bool must_refuse;  // the service reads the payload: EPROTO
  };
  std::vector<Case> cases = {
      {"broker.info", 0, false},
      {"broker.info", 1, false},
      {"service.add", kNodeAny, true},
      {"event.subscribe", kNodeAny, true},
      {"event.unsubscribe", kNodeAny, true},
      {"service.remove", kNodeAny, true},
      {"broker.status", 0, false},
      {"broker.ping", 1, false},
      {"nosuch.method", 1, false},
  };
  uint32_t tag = 0;
  std::map<uint32_t, std::string> sent;
  for (const auto& cs : cases) {
    for (const std::string* payload : {&arr, &obj}) {
      ++tag;
      sent[tag] = cs.topic + (cs.must_refuse ? " (must refuse)" : "");
      ASSERT_TRUE(c.send(request(cs.topic, *payload, tag, cs.nodeid)));
    }
  }
  // The same nesting hidden inside an object the service would read.
  ++tag;
  sent[tag] = "service.add (must refuse)";
  ASSERT_TRUE(c.send(request("service.add", "{\"service\":" + arr + "}", tag)));
  // And an event rank 0 itself parses to track rank states.
  Message ev = make_event("broker.online", arr);
  ASSERT_TRUE(c.send(ev));
  ev = make_event("broker.lost", obj);
  ASSERT_TRUE(c.send(ev));

  std::map<uint32_t, Message> got;
  while (got.size() < sent.size()) {
    auto m = c.recv(20);
    ASSERT_TRUE(m.has_value()) << "answered " << got.size() << " of " << sent.size()
                               << (c.closed() ? " before the broker closed us" : " before the deadline");
    ASSERT_TRUE(m->is_response()) << m->topic;
    got[m->matchtag] = std::move(*m);
  }
  for (auto& [t, what] : sent) {
    SCOPED_TRACE(what);
    const Message& m = got.at(t);
    if (what.ends_with("(must refuse)")) {
      EXPECT_EQ(m.errnum, EPROTO) << error_text(m);
      EXPECT_NE(error_text(m).find("nests deeper"), std::string::npos) << error_text(m);
    } else if (m.topic == "nosuch.method") {
      EXPECT_EQ(m.errnum, ENOSYS);
    } else {
      EXPECT_TRUE(m.errnum == 0 || m.errnum == EPROTO) << m.errnum << " " << error_text(m);
    }
  }
  // The fake broker.* events changed nothing.
  auto st = inst_.loom({"status", "--json"});
  EXPECT_NE(st.out.find("\"ready\":true"), std::string::npos) << st.out << st.err;
}

TEST_F(BadInput, UnknownTopicsAreEnosys) {
  auto c = raw();
  std::vector<std::string> topics = {"nosuch.method", "nosuch", "broker", "broker.", "broker.nosuch", ".x", "x.y.z"};
  for (size_t i = 0; i < topics.size(); ++i) {
    ASSERT_TRUE(c.send(request(topics[i], "", static_cast<uint32_t>(100 + i))));
  }
  // Answers to different requests may come in any order: match by tag.
  std::map<uint32_t, Message> got;
  for (size_t i = 0; i < topics.size(); ++i) {
    auto m = c.recv();
    ASSERT_TRUE(m.has_value()) << "answered " << got.size() << " of " << topics.size();
    got[m->matchtag] = std::move(*m);
  }
  for (size_t i = 0; i < topics.size(); ++i) {
    auto it = got.find(static_cast<uint32_t>(100 + i));
    ASSERT_NE(it, got.end()) << topics[i] << " was not answered";
    EXPECT_EQ(it->second.topic, topics[i]);
    EXPECT_EQ(it->second.errnum, ENOSYS) << topics[i] << ": " << error_text(it->second);
  }
  // A request that wants no response gets none, even for an unknown topic:
  // the next answer on the connection is the ping's.
  ASSERT_TRUE(c.send(request("nosuch.method", "", 7, kNodeAny, msgflag::kNoResponse)));
  ASSERT_TRUE(c.send(request("broker.ping", "", 8)));
  auto m = c.recv();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->matchtag, 8u);
}

TEST_F(BadInput, MalformedHeadersCloseTheConnection) {
  struct Case {
    const char* what;
    std::string frame;
  };
  std::vector<Case> cases = {
      {"bad version", raw_frame(2, 1, 0, "broker.ping")},
      {"unknown type", raw_frame(1, 3, 0, "broker.ping")},
      {"type zero", raw_frame(1, 0, 0, "broker.ping")},
      {"unknown flag", raw_frame(1, 1, 0x80, "broker.ping")},
      {"streaming and no-response", raw_frame(1, 1, msgflag::kStreaming | msgflag::kNoResponse, "broker.ping")},
      {"empty topic", raw_frame(1, 1, 0, "")},
      {"space in topic", raw_frame(1, 1, 0, "broker ping")},
      {"control byte in topic", raw_frame(1, 1, 0, std::string("broker\x01ping"))},
      {"header cut short", u32le(10) + std::string(10, '\x01')},
  };
  // More hops than allowed.
  {
    std::string f = raw_frame(1, 1, 0, "broker.ping");
    f[4 + 3] = static_cast<char>(65);
    f += std::string(65 * 8, '\0');
    f.replace(0, 4, u32le(static_cast<uint32_t>(f.size() - 4)));
    cases.push_back({"65 hops", f});
  }
  // Topic length past the end of the frame.
  {
    std::string f = raw_frame(1, 1, 0, "broker.ping");
    f[4 + kFrameHeaderSize - 1] = static_cast<char>(200);
    cases.push_back({"topic past the end", f});
  }
  for (auto& cs : cases) {
    SCOPED_TRACE(cs.what);
    auto c = raw();
    ASSERT_TRUE(c.write(cs.frame));
    // An error answer would be fine too; a silent, open connection is not.
    auto m = c.recv(10);
    if (m) {
      EXPECT_NE(m->errnum, 0) << "answered a malformed frame as if it were fine";
    } else {
      EXPECT_TRUE(c.closed()) << "neither answered nor closed";
    }
  }
}

TEST_F(BadInput, ForgedRoutesAndStrayResponsesAreHarmless) {
  auto c = raw();
  // A request with hops of its own: the broker starts the route afresh,
  // and the answer still comes back here.
  Message m = request("broker.ping", R"({"forged":1})", 5, 1);
  m.route = {make_hop(0, 99999), make_hop(1, 1), make_hop(7, 7)};
  ASSERT_TRUE(c.send(m));
  auto r = c.recv();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->matchtag, 5u);
  EXPECT_EQ(r->errnum, 0);
  EXPECT_TRUE(r->route.empty());
  // Responses nobody asked for, with routes to nowhere, a missing rank, and
  // over the overlay link to rank 1.
  for (auto route : std::vector<std::vector<HopId>>{
           {}, {make_hop(0, 99999)}, {make_hop(9, 1)}, {make_hop(1, 99999), make_hop(0, 1)}, {make_hop(0, 0)}}) {
    Message resp;
    resp.type = MsgType::kResponse;
    resp.topic = "broker.ping";
    resp.matchtag = 77;
    resp.route = route;
    ASSERT_TRUE(c.send(resp));
  }
  // This connection is still served, in order.
  ASSERT_TRUE(c.send(request("broker.ping", "{}", 6)));
  r = c.recv();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->matchtag, 6u);
}

TEST_F(BadInput, RequesterLeavingMidStream) {
  auto prov_c = loop_.connect(inst_.socket(0));
  ASSERT_TRUE(prov_c.ok());
  auto& prov = **prov_c;
  ASSERT_EQ(call(loop_, prov, "service.add", R"({"service":"demo"})").errnum, 0);
  std::vector<Message> streams, disconnects;
  prov.handle().add_method("demo.stream", loom::Access::kUser, [&](const Message& req) {
    streams.push_back(req);
    prov.handle().respond(req, std::string(R"({"i":0})"));
  });
  prov.handle().add_method("demo.disconnect", loom::Access::kUser,
                           [&](const Message& req) { disconnects.push_back(req); });
  for (uint32_t rank : {0u, 1u}) {
    SCOPED_TRACE("requester on rank " + std::to_string(rank));
    streams.clear();
    disconnects.clear();
    {
      auto c = raw(rank);
      ASSERT_TRUE(c.send(request("demo.stream", "{}", 1, kNodeAny, msgflag::kStreaming)));
      ASSERT_TRUE(loop_.run_until([&] { return !streams.empty(); }));
      auto first = c.recv(loop_);
      ASSERT_TRUE(first.has_value());
      EXPECT_EQ(first->errnum, 0);
      // Leaves without reading the rest.
    }
    ASSERT_TRUE(loop_.run_until([&] { return !disconnects.empty(); }));
    EXPECT_EQ(disconnects[0].sender(), streams[0].sender());
    // The provider keeps streaming to the departed requester: dropped.
    for (int i = 1; i < 200; ++i) prov.handle().respond(streams[0], dump_json(Json{{"i", i}}));
    prov.handle().respond_error(streams[0], ENODATA, "");
    ASSERT_EQ(call(loop_, prov, "broker.ping", "{}", {rank, false, 0}).errnum, 0);
  }
}

TEST_F(BadInput, ClientThatNeverReadsDoesNotHurtOthers) {
  auto spammer = raw();
  // ~20 MB of echo requests whose answers we never read, half of them
  // answered by rank 1 over the overlay.
  const std::string payload = "{\"pad\":\"" + std::string(64 * 1024, 'x') + "\"}";
  constexpr int kRequests = 320;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(spammer.send(request("broker.ping", payload, static_cast<uint32_t>(i + 1), i % 2 ? 1u : 0u), 20))
        << "the broker stopped reading after " << i << " requests";
    if (i % 64 == 0) {
      // Others are served all along.
      Reply r = call(loop_, *bystander_, "broker.info", "{}", {1, false, 0});
      ASSERT_EQ(r.errnum, 0) << r.errstr;
    }
  }
  expect_healthy();
  // The spammer's answers are all there, in order, when it finally reads.
  for (int i = 0; i < 3; ++i) {
    auto m = spammer.recv(10);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->errnum, 0);
    EXPECT_EQ(m->payload.size(), payload.size());
  }
}

TEST_F(BadInput, ManyConnectionsComingAndGoing) {
  std::vector<RawConn> conns;
  for (int i = 0; i < 200; ++i) {
    conns.push_back(raw(i % 2));
    if (i % 3 == 0) conns.back().send(request("broker.ping", "{}", 1));
    if (i % 5 == 0) conns.back().send(request("event.subscribe", R"({"topic":"x"})", 2));
  }
  conns.clear();  // all at once
  expect_healthy();
}

TEST_F(BadInput, SubscriptionsPerConnectionAreBounded) {
  auto c = raw();
  int ok = 0, nospc = 0;
  for (uint32_t i = 0; i < 300; ++i) {
    ASSERT_TRUE(c.send(request("event.subscribe", dump_json(Json{{"topic", "t" + std::to_string(i)}}), i + 1)));
  }
  for (int i = 0; i < 300; ++i) {
    auto m = c.recv();
    ASSERT_TRUE(m.has_value());
    if (m->errnum == 0) ++ok;
    else if (m->errnum == ENOSPC) ++nospc;
  }
  EXPECT_EQ(ok, 256);
  EXPECT_EQ(nospc, 44);
}

}  // namespace
}  // namespace loom::test
