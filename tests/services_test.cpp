// Services provided by clients and events between clients, across ranks of
// a real four-rank instance (tree: 0 → 1, 2; 1 → 3).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kit/client.h"
#include "kit/instance.h"

namespace loom::test {
namespace {

int json_int(const std::string& payload, const char* key) {
  auto j = parse_json(payload);
  if (!j.ok() || !j->is_object() || !j->contains(key) || !(*j)[key].is_number_integer()) return -1;
  return (*j)[key].get<int>();
}

// A client that registers a service and answers it.
struct Provider {
  std::string name;
  std::unique_ptr<Client> client;
  std::vector<Message> held;         // demo.hold requests, unanswered
  std::vector<Message> disconnects;  // every NAME.disconnect received
  int requests = 0;
};

class Services : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(inst_.start(4)); }

  std::unique_ptr<Client> connect(uint32_t rank) {
    auto c = loop_.connect(inst_.socket(rank));
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().text);
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Connects to `rank`, registers `name` and serves:
  //   NAME.echo    the payload back
  //   NAME.who     {"provider": TAG, "userid", "rolemask", "sender"}
  //   NAME.stream  {"n": N}: N responses {"i": k}, then ENODATA
  //   NAME.hold    kept unanswered in `held`
  //   NAME.disconnect  recorded
  std::unique_ptr<Provider> provide(uint32_t rank, const std::string& name, const std::string& tag) {
    auto p = std::make_unique<Provider>();
    p->name = name;
    p->client = connect(rank);
    if (!p->client) return nullptr;
    Reply r = call(loop_, *p->client, "service.add", dump_json(Json{{"service", name}}));
    EXPECT_EQ(r.errnum, 0) << r.errstr;
    if (r.errnum != 0) return nullptr;
    Handle& h = p->client->handle();
    Provider* raw = p.get();
    h.add_method(name + ".echo", Access::kUser, [raw, &h](const Message& req) {
      ++raw->requests;
      h.respond(req, req.payload);
    });
    h.add_method(name + ".who", Access::kUser, [raw, &h, tag](const Message& req) {
      ++raw->requests;
      h.respond(req,
                Json{{"provider", tag}, {"userid", req.userid}, {"rolemask", req.rolemask}, {"sender", req.sender()}});
    });
    h.add_method(name + ".stream", Access::kUser, [raw, &h](const Message& req) {
      ++raw->requests;
      int n = json_int(req.payload, "n");
      for (int i = 0; i < n; ++i) h.respond(req, Json{{"i", i}});
      h.respond_error(req, ENODATA, "end of stream");
    });
    h.add_method(name + ".hold", Access::kUser, [raw](const Message& req) {
      ++raw->requests;
      raw->held.push_back(req);
    });
    h.add_method(name + ".disconnect", Access::kUser, [raw](const Message& req) { raw->disconnects.push_back(req); });
    return p;
  }

  Instance inst_;
  Loop loop_;
};

TEST_F(Services, RequestsFromAnotherRankReachTheClientService) {
  auto prov = provide(0, "demo", "rank0");
  ASSERT_TRUE(prov);
  auto req = connect(3);
  ASSERT_TRUE(req);
  // "any" from rank 3 climbs 3 → 1 → 0 to the provider.
  Reply r = call(loop_, *req, "demo.echo", R"({"hello":"from rank 3"})");
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  EXPECT_EQ(r.json(), Json({{"hello", "from rank 3"}}));
  r = call(loop_, *req, "demo.echo", R"({"x":1})", {0, false, 0});
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  EXPECT_EQ(r.json(), Json({{"x", 1}}));
  // Addressed to rank 3 itself, where nobody provides it.
  r = call(loop_, *req, "demo.echo", "{}", {3, false, 0});
  EXPECT_EQ(r.errnum, ENOSYS) << r.errstr;
  // The provider sees who asked: the owner (this test runs as the owner).
  r = call(loop_, *req, "demo.who");
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  EXPECT_EQ(r.json()["rolemask"], role::kOwner);
  EXPECT_EQ(r.json()["userid"], ::getuid());
  EXPECT_EQ(hop_rank(r.json()["sender"].get<uint64_t>()), 3u);
  // And it is listed.
  r = call(loop_, *req, "service.list", "{}", {0, false, 0});
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  EXPECT_NE(r.payload.find(R"({"provider":"client","service":"demo"})"), std::string::npos) << r.payload;
}

TEST_F(Services, NearestProviderAnswersRequestsForAny) {
  auto p0 = provide(0, "demo", "rank0");
  auto p3 = provide(3, "demo", "rank3");  // names are per broker
  ASSERT_TRUE(p0 && p3);
  auto at3 = connect(3);
  auto at1 = connect(1);
  auto at2 = connect(2);
  ASSERT_TRUE(at3 && at1 && at2);
  EXPECT_EQ(call(loop_, *at3, "demo.who").json()["provider"], "rank3");
  EXPECT_EQ(call(loop_, *at1, "demo.who").json()["provider"], "rank0");
  EXPECT_EQ(call(loop_, *at2, "demo.who").json()["provider"], "rank0");
  EXPECT_EQ(call(loop_, *at2, "demo.who", "{}", {3, false, 0}).json()["provider"], "rank3");
  EXPECT_EQ(call(loop_, *at3, "demo.who", "{}", {0, false, 0}).json()["provider"], "rank0");
}

TEST_F(Services, StreamingResponsesEndWithEnodata) {
  auto prov = provide(0, "demo", "rank0");
  ASSERT_TRUE(prov);
  auto req = connect(3);
  ASSERT_TRUE(req);
  std::vector<Message> got;
  bool ended = false;
  req->handle().rpc("demo.stream", std::string(R"({"n":5})"), {kNodeAny, true, 0}, [&](const Message& m) {
    got.push_back(m);
    if (m.errnum) ended = true;
  });
  ASSERT_TRUE(loop_.run_until([&] { return ended; }));
  ASSERT_EQ(got.size(), 6u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(got[i].errnum, 0);
    EXPECT_EQ(json_int(got[i].payload, "i"), i) << got[i].payload;
  }
  EXPECT_EQ(got[5].errnum, ENODATA);
  EXPECT_EQ(req->handle().rpcs_in_flight(), 0u);
}

TEST_F(Services, StreamingFromTheCommandLine) {
  // The provider must answer while the CLI (which run_cmd waits for) runs,
  // so it serves from a forked child with its own loop.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(ready[0]);
    Loop loop;
    auto c = loop.connect(inst_.socket(1));
    if (!c.ok()) ::_exit(2);
    Reply r = call(loop, **c, "service.add", R"({"service":"streamer"})");
    if (r.errnum) ::_exit(3);
    Handle& h = (*c)->handle();
    h.add_method("streamer.count", Access::kUser, [&h](const Message& req) {
      int n = json_int(req.payload, "n");
      for (int i = 0; i < n; ++i) h.respond(req, Json{{"i", i}});
      h.respond_error(req, ENODATA, "");
    });
    char ok = 'y';
    if (::write(ready[1], &ok, 1) != 1) ::_exit(4);
    loop.run_until([&] { return !(*c)->is_open(); }, 60);
    ::_exit(0);
  }
  ::close(ready[1]);
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ::close(ready[0]);
  auto r = inst_.loom({"rpc", "--rank", "1", "--stream", "streamer.count", R"({"n":3})"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n");
  EXPECT_TRUE(r.err.empty()) << r.err;
  ::kill(pid, SIGTERM);
  ASSERT_TRUE(wait_child(pid, 10).has_value());
}

TEST_F(Services, ThousandPipelinedRequestsAreAllAnsweredAndMatched) {
  auto prov = provide(0, "demo", "rank0");
  ASSERT_TRUE(prov);
  auto req = connect(3);
  ASSERT_TRUE(req);
  constexpr int kN = 1000;
  int answered = 0, mismatched = 0, failed = 0;
  std::set<int> seen;
  for (int i = 0; i < kN; ++i) {
    // Half go to the echo method, half are held and answered in reverse
    // order, so that only the matchtag can pair them up.
    std::string topic = i % 2 ? "demo.echo" : "demo.hold";
    req->handle().rpc(topic, dump_json(Json{{"i", i}}), {}, [&, i](const Message& m) {
      ++answered;
      if (m.errnum) ++failed;
      int got = json_int(m.payload, "i");
      if (got != i) ++mismatched;
      seen.insert(got);
    });
  }
  EXPECT_EQ(req->handle().rpcs_in_flight(), static_cast<size_t>(kN));
  ASSERT_TRUE(loop_.run_until([&] { return prov->held.size() == kN / 2 && answered == kN / 2; }))
      << "held " << prov->held.size() << ", answered " << answered;
  Handle& ph = prov->client->handle();
  for (auto it = prov->held.rbegin(); it != prov->held.rend(); ++it) ph.respond(*it, it->payload);
  ASSERT_TRUE(loop_.run_until([&] { return answered == kN; })) << "answered " << answered;
  EXPECT_EQ(mismatched, 0);
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kN));
  EXPECT_EQ(req->handle().rpcs_in_flight(), 0u);
}

TEST_F(Services, ProviderLeavingFreesItsNameAndFailsItsRequests) {
  auto prov = provide(0, "demo", "first");
  ASSERT_TRUE(prov);
  auto req = connect(3);
  ASSERT_TRUE(req);
  ASSERT_EQ(call(loop_, *req, "demo.echo").errnum, 0);

  // A request the provider never answers...
  std::optional<Message> pending;
  req->handle().rpc("demo.hold", std::string("{}"), {}, [&](const Message& m) { pending = m; });
  ASSERT_TRUE(loop_.run_until([&] { return prov->held.size() == 1; }));
  // ...fails when the provider goes away, instead of hanging.
  prov->client->close();
  ASSERT_TRUE(loop_.run_until([&] { return pending.has_value(); }));
  EXPECT_EQ(pending->errnum, ENOSYS) << error_text(*pending);

  // The broker has forgotten the name by now (it answered the held request
  // after removing it): requests get ENOSYS from every rank.
  Reply r = call(loop_, *req, "demo.echo");
  EXPECT_EQ(r.errnum, ENOSYS) << r.errstr;
  auto at0 = connect(0);
  ASSERT_TRUE(at0);
  r = call(loop_, *at0, "demo.echo");
  EXPECT_EQ(r.errnum, ENOSYS) << r.errstr;
  r = call(loop_, *at0, "service.list");
  EXPECT_EQ(r.payload.find("\"demo\""), std::string::npos) << r.payload;

  // Someone else may take the name, and is the one answering now.
  auto second = provide(0, "demo", "second");
  ASSERT_TRUE(second);
  r = call(loop_, *req, "demo.who");
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  EXPECT_EQ(r.json()["provider"], "second");
}

TEST_F(Services, RequesterLeavingTellsTheProviderWhoLeft) {
  auto prov = provide(0, "demo", "rank0");
  ASSERT_TRUE(prov);
  auto from = [&](uint64_t sender) {
    return std::count_if(prov->disconnects.begin(), prov->disconnects.end(),
                         [&](const Message& d) { return d.sender() == sender; });
  };
  for (uint32_t rank : {3u, 0u}) {
    SCOPED_TRACE("requester on rank " + std::to_string(rank));
    auto req = connect(rank);
    ASSERT_TRUE(req);
    Reply r = call(loop_, *req, "demo.who");
    ASSERT_EQ(r.errnum, 0) << r.errstr;
    uint64_t sender = r.json()["sender"].get<uint64_t>();
    EXPECT_EQ(hop_rank(sender), rank);
    // Also one in a streaming request still open when it leaves.
    prov->held.clear();
    req->handle().rpc("demo.hold", std::string("{}"), {kNodeAny, true, 0}, [](const Message&) {});
    ASSERT_TRUE(loop_.run_until([&] { return !prov->held.empty(); }));
    EXPECT_EQ(prov->held.front().sender(), sender);
    EXPECT_EQ(from(sender), 0);
    req->close();
    ASSERT_TRUE(loop_.run_until([&] { return from(sender) > 0; }));
    auto d = std::find_if(prov->disconnects.begin(), prov->disconnects.end(),
                          [&](const Message& m) { return m.sender() == sender; });
    EXPECT_EQ(d->topic, "demo.disconnect");
    EXPECT_EQ(d->userid, ::getuid());
    EXPECT_FALSE(d->wants_response());
    // Answering the departed requester is harmless.
    prov->client->handle().respond(prov->held.front(), std::string("{}"));
    // The provider still serves others. A request from the same rank is
    // also a fence: it travels behind any second disconnect on the path.
    auto other = connect(rank);
    ASSERT_TRUE(other);
    EXPECT_EQ(call(loop_, *other, "demo.echo").errnum, 0);
    EXPECT_EQ(from(sender), 1);
  }
}

TEST_F(Services, DuplicateAndInvalidRegistrationsAreRefused) {
  auto prov = provide(0, "demo", "rank0");
  ASSERT_TRUE(prov);
  Reply r = call(loop_, *prov->client, "service.add", R"({"service":"demo"})");
  EXPECT_EQ(r.errnum, EEXIST) << r.errstr;
  auto other = connect(0);
  ASSERT_TRUE(other);
  r = call(loop_, *other, "service.add", R"({"service":"demo"})");
  EXPECT_EQ(r.errnum, EEXIST) << r.errstr;
  // The instance's own names are reserved, even for the owner and on a
  // rank where that service does not live.
  auto far = connect(2);
  ASSERT_TRUE(far);
  for (const char* own : {"broker", "job-manager", "sched", "kvs", "job-exec", "job-info", "shell"}) {
    r = call(loop_, *far, "service.add", dump_json(Json{{"service", own}}));
    EXPECT_EQ(r.errnum, EPERM) << own << ": " << r.errstr;
    EXPECT_NE(r.errstr.find("reserved for the instance's own services"), std::string::npos) << r.errstr;
  }
  for (const char* bad : {R"({"service":""})", R"({"service":"a.b"})", R"({"service":"a b"})", R"({"service":7})",
                          R"({})", R"([])", "not json"}) {
    r = call(loop_, *other, "service.add", bad);
    EXPECT_TRUE(r.errnum == EINVAL || r.errnum == EPROTO) << bad << ": " << r.errnum << " " << r.errstr;
  }
  // service.add names the asking connection: it cannot be forwarded.
  r = call(loop_, *other, "service.add", R"({"service":"remote"})", {2, false, 0});
  EXPECT_EQ(r.errnum, EINVAL) << r.errstr;
  // Removing needs the owner of the registration.
  r = call(loop_, *other, "service.remove", R"({"service":"demo"})");
  EXPECT_EQ(r.errnum, ENOENT) << r.errstr;
  r = call(loop_, *prov->client, "service.remove", R"({"service":"demo"})");
  EXPECT_EQ(r.errnum, 0) << r.errstr;
  r = call(loop_, *other, "demo.echo");
  EXPECT_EQ(r.errnum, ENOSYS) << r.errstr;
  r = call(loop_, *other, "service.add", R"({"service":"demo"})");
  EXPECT_EQ(r.errnum, 0) << r.errstr;
}

// --- events ---

Message raw_request(const std::string& topic, const std::string& payload, uint32_t matchtag,
                    uint32_t nodeid = kNodeAny) {
  Message m = make_request(topic, payload, nodeid);
  m.matchtag = matchtag;
  return m;
}

TEST_F(Services, EventsReachEverySubscriberOnceInOrder) {
  // Subscriber on rank 3 on a raw socket: it sees exactly what the broker
  // sends, with no client-side filtering.
  auto raw = RawConn::connect(inst_.socket(3));
  ASSERT_TRUE(raw.ok()) << raw.error().text;
  ASSERT_TRUE(raw->send(raw_request("event.subscribe", R"({"topic":"demo.ev"})", 1)));
  ASSERT_TRUE(raw->send(raw_request("event.subscribe", R"({"topic":"fence"})", 2)));
  for (int i = 0; i < 2; ++i) {
    auto m = raw->recv();
    ASSERT_TRUE(m.has_value());
    EXPECT_TRUE(m->is_response());
    EXPECT_EQ(m->errnum, 0) << error_text(*m);
  }
  // Subscriber on rank 0 with a Handle.
  auto sub0 = connect(0);
  ASSERT_TRUE(sub0);
  std::vector<Message> at0;
  ASSERT_TRUE(subscribe(loop_, sub0->handle(), "demo.ev", [&](const Message& m) { at0.push_back(m); }));
  ASSERT_TRUE(subscribe(loop_, sub0->handle(), "fence", [&](const Message& m) { at0.push_back(m); }));

  // The owner publishes on rank 2.
  auto pub = connect(2);
  ASSERT_TRUE(pub);
  pub->handle().publish("demo.ev.one", R"({"x":1})");
  pub->handle().publish("other.thing", R"({"x":2})");
  pub->handle().publish("demo.e", R"({"x":3})");  // shorter than the prefix
  pub->handle().publish("fence.1", "{}");
  ASSERT_TRUE(loop_.run_until([&] { return !at0.empty() && at0.back().topic == "fence.1"; }));
  std::vector<Message> at3;
  while (at3.empty() || at3.back().topic != "fence.1") {
    auto m = raw->recv();
    ASSERT_TRUE(m.has_value()) << "rank 3 subscriber got " << at3.size() << " events, then nothing";
    ASSERT_TRUE(m->is_event()) << msgtype_name(m->type) << " " << m->topic;
    at3.push_back(std::move(*m));
  }
  for (auto* got : {&at0, &at3}) {
    ASSERT_EQ(got->size(), 2u);
    EXPECT_EQ((*got)[0].topic, "demo.ev.one");
    EXPECT_EQ((*got)[0].payload, R"({"x":1})");
    EXPECT_EQ((*got)[1].topic, "fence.1");
    EXPECT_GT((*got)[0].seq, 0u);
    EXPECT_GT((*got)[1].seq, (*got)[0].seq);
  }
  // Rank 0 numbers every event once for the whole instance.
  EXPECT_EQ(at0[0].seq, at3[0].seq);
  EXPECT_EQ(at0[1].seq, at3[1].seq);

  // After unsubscribing from demo.ev, rank 3 gets only the fence.
  ASSERT_TRUE(raw->send(raw_request("event.unsubscribe", R"({"topic":"demo.ev"})", 3)));
  auto m = raw->recv();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->matchtag, 3u);
  EXPECT_EQ(m->errnum, 0) << error_text(*m);
  ASSERT_TRUE(raw->send(raw_request("event.unsubscribe", R"({"topic":"demo.ev"})", 4)));
  m = raw->recv();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->errnum, ENOENT);
  pub->handle().publish("demo.ev.two", "{}");
  pub->handle().publish("fence.2", "{}");
  // (Run the loop first: it sends what the publisher queued.)
  ASSERT_TRUE(loop_.run_until([&] { return at0.back().topic == "fence.2"; }));
  EXPECT_EQ(at0.size(), 4u);
  m = raw->recv();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->topic, "fence.2");
}

TEST_F(Services, OnlyTheOwnerPublishes) {
  auto sub = connect(0);
  ASSERT_TRUE(sub);
  std::vector<std::string> got;
  ASSERT_TRUE(subscribe(loop_, sub->handle(), "demo.", [&](const Message& m) { got.push_back(m.topic); }));
  // An owner client may speak with a user's credentials (tests of access
  // rules), but then its events are a user's, and dropped.
  auto as_user = connect(3);
  ASSERT_TRUE(as_user);
  as_user->handle().set_credentials(4242, role::kUser);
  as_user->handle().publish("demo.from-user", "{}");
  // A later event from the owner on the same path is the fence.
  auto owner = connect(3);
  ASSERT_TRUE(owner);
  // Ordering across two connections is not guaranteed, so fence on a
  // round trip of the user connection first.
  ASSERT_EQ(call(loop_, *as_user, "broker.ping", "{}", {0, false, 0}).errnum, 0);
  owner->handle().publish("demo.fence", "{}");
  ASSERT_TRUE(loop_.run_until([&] { return !got.empty() && got.back() == "demo.fence"; }));
  EXPECT_EQ(got, std::vector<std::string>{"demo.fence"});
}

}  // namespace
}  // namespace loom::test
