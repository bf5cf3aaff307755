// Handle (handle.h) without sockets: each test wires a Handle to a list
// that records what it sends and to a fake clock that moves only when the
// test says so (base/stepped_clock.h), then plays the peer by dispatching
// messages into it.
#include "msg/handle.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/stepped_clock.h"
#include "msg/codec.h"
#include "msg/message.h"
#include "msg/payload.h"

namespace loom {
namespace {

// A Handle wired to a fake clock, recording every message it sends.
struct Endpoint {
  SteppedClock clock;
  std::vector<Message> sent;
  Handle handle{clock, [this](Message m) { sent.push_back(std::move(m)); }};

  const Message& last_sent() {
    LOOM_ASSERT(!sent.empty());
    return sent.back();
  }
};

// What a peer would answer to `req`.
Message reply(const Message& req, std::string payload = "{}") { return make_response(req, std::move(payload)); }
Message reply_error(const Message& req, int errnum, std::string text = "") {
  return make_error_response(req, errnum, text);
}

// A request as it arrives from elsewhere: with a matchtag, a route and the
// credentials the broker vouched for.
Message incoming_request(std::string topic, uint32_t rolemask = role::kOwner, std::string payload = "{}") {
  Message m = make_request(std::move(topic), std::move(payload));
  m.matchtag = 77;
  m.route = {make_hop(3, 9), make_hop(0, 2)};
  m.userid = 1000;
  m.rolemask = rolemask;
  return m;
}

// --- client side ---

TEST(Handle, SendsAnRpcAsARequestWithAMatchtag) {
  Endpoint ep;
  uint32_t tag = ep.handle.rpc("kvs.get", std::string(R"({"key":"a"})"), {.nodeid = 3}, [](const Message&) {});
  ASSERT_EQ(ep.sent.size(), 1u);
  const Message& req = ep.sent[0];
  EXPECT_TRUE(req.is_request());
  EXPECT_EQ(req.topic, "kvs.get");
  EXPECT_EQ(req.payload, R"({"key":"a"})");
  EXPECT_EQ(req.nodeid, 3u);
  EXPECT_EQ(req.matchtag, tag);
  EXPECT_NE(tag, 0u);
  EXPECT_EQ(req.flags, 0);
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 1u);
}

// A topic no peer takes cannot be framed (the encoder would refuse it):
// the request is never sent, and its caller hears why from the loop.
TEST(Handle, AnRpcToATopicNoPeerTakesIsAnErrorNotASend) {
  Endpoint ep;
  for (const std::string& topic : {std::string(256, 'a'), std::string("bro\nker.ping"), std::string()}) {
    int errnum = 0;
    std::string why;
    ep.handle.rpc(topic, std::string("{}"), {}, [&](const Message& m) {
      errnum = m.errnum;
      why = error_text(m);
    });
    EXPECT_TRUE(ep.sent.empty()) << topic;
    EXPECT_EQ(errnum, 0) << "answered from the loop, not from within rpc()";
    ep.clock.advance(0);
    EXPECT_EQ(errnum, EINVAL) << topic;
    EXPECT_EQ(why.rfind("cannot send to that topic: ", 0), 0u) << why;
  }
  // Nor is an event or a matchless request to one passed on.
  ep.handle.publish(std::string(300, 'e'), "{}");
  ep.handle.send_matchless("a b", std::string("{}"));
  EXPECT_TRUE(ep.sent.empty());
}

TEST(Handle, SendsAJsonPayloadCompactly) {
  Endpoint ep;
  ep.handle.rpc("kvs.get", Json{{"key", "a"}}, {}, [](const Message&) {});
  EXPECT_EQ(ep.last_sent().payload, R"({"key":"a"})");
}

// A payload built as JSON travels parsed beside its text: a service of the
// same broker reads it with payload_json without parsing, and both forms
// say the same.
TEST(Handle, AJsonPayloadTravelsParsedBesideItsText) {
  Endpoint ep;
  ep.handle.rpc("kvs.commit", Json{{"ops", Json::array({Json{{"op", "put"}, {"key", "a"}, {"value", "1\n"}}})}}, {},
                [](const Message&) {});
  ep.handle.send_matchless("sched.free", Json{{"id", 7}});
  Message req = incoming_request("svc.do");
  ep.handle.respond(req, Json{{"id", 7}, {"type", "start"}});
  ASSERT_EQ(ep.sent.size(), 3u);
  for (const Message& m : ep.sent) {
    ASSERT_TRUE(m.json) << m.topic;
    auto parsed = parse_json(m.payload);
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, *m.json) << m.topic;
    auto p = payload_json(m);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->get(), m.json.get()) << "parsed again";
    auto copy = payload_object(m);
    ASSERT_TRUE(copy.ok());
    EXPECT_EQ(*copy, *m.json);
  }
  // Text alone (from a socket) is parsed; a non-object is refused either way.
  Message text = incoming_request("svc.do", role::kOwner, R"({"x":1})");
  auto p = payload_json(text);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((**p)["x"], 1);
  Message array = incoming_request("svc.do", role::kOwner, "[1]");
  EXPECT_EQ(payload_json(array).error().code, EPROTO);
  array.json = std::make_shared<const Json>(Json::array({1}));
  EXPECT_EQ(payload_json(array).error().code, EPROTO);
}

// Inside the broker the text waits: a handler added as a JSON reader gets
// the parsed value alone, any other handler gets the text written for it.
TEST(Handle, LazyTextIsWrittenForHandlersThatReadText) {
  Endpoint sender;
  sender.handle.keep_text_lazy();
  sender.handle.send_matchless("svc.json", Json{{"id", 7}});
  sender.handle.send_matchless("svc.text", Json{{"id", 8}});
  ASSERT_EQ(sender.sent.size(), 2u);
  EXPECT_EQ(sender.sent[0].payload, "");
  ASSERT_TRUE(sender.sent[0].json);

  Endpoint receiver;
  std::vector<std::string> texts;
  std::vector<int> ids;
  auto record = [&](const Message& m) {
    texts.push_back(m.payload);
    auto p = payload_json(m);
    ids.push_back(p.ok() ? (**p)["id"].get<int>() : -1);
  };
  receiver.handle.add_json_method("svc.json", Access::kOwner, record);
  receiver.handle.add_method("svc.text", Access::kOwner, record);
  for (auto& m : sender.sent) {
    m.rolemask = role::kOwner;
    receiver.handle.dispatch(std::move(m));
  }
  EXPECT_EQ(texts, (std::vector<std::string>{"", R"({"id":8})"}));
  EXPECT_EQ(ids, (std::vector<int>{7, 8}));

  // Responses too: a matchless JSON reader, and an RPC callback (always text).
  Message req = incoming_request("svc.do");
  sender.handle.respond(req, Json{{"type", "start"}});
  Message resp = sender.sent.back();
  resp.matchtag = 0;
  std::string seen = "unset";
  receiver.handle.on_json_response("svc.do", [&](const Message& m) { seen = m.payload; });
  receiver.handle.dispatch(Message(resp));
  EXPECT_EQ(seen, "");
  uint32_t tag = receiver.handle.rpc("svc.do", std::string("{}"), {}, [&](const Message& m) { seen = m.payload; });
  resp.matchtag = tag;
  receiver.handle.dispatch(std::move(resp));
  EXPECT_EQ(seen, R"({"type":"start"})");
}

}  // namespace

// A typed payload of the tests: its JSON is {"n": n, "tag": tag}.
struct Sample {
  int n = 0;
  std::string tag;
};
Json payload_json_of(const Sample& s) { return Json{{"n", s.n}, {"tag", s.tag}}; }
struct OtherSample {};
Json payload_json_of(const OtherSample& /*s*/) { return Json::object(); }

namespace {

// A typed payload reaches a handler of the same process as the value it
// was sent as; any other reader sees its JSON: the text written for a
// socket or a text handler, payload_json for a JSON reader. A sender
// outside a broker (not lazy) writes the text at once.
TEST(Handle, TypedPayloadsAreValuesInsideAndJsonOutside) {
  Endpoint sender;
  sender.handle.keep_text_lazy();
  sender.handle.send_matchless_typed("svc.json", Sample{1, "a"});
  sender.handle.send_matchless_typed("svc.text", Sample{2, "b"});
  sender.handle.rpc_typed("svc.json", Sample{3, "c"}, {}, [](const Message&) {});
  sender.handle.respond_typed(incoming_request("svc.json"), Sample{4, "d"});
  ASSERT_EQ(sender.sent.size(), 4u);
  for (const auto& m : sender.sent) {
    EXPECT_EQ(m.payload, "");
    ASSERT_NE(typed_payload<Sample>(m), nullptr);
    EXPECT_EQ(typed_payload<OtherSample>(m), nullptr);  // not a T: read its JSON
  }
  EXPECT_EQ(typed_payload<Sample>(sender.sent[3])->tag, "d");
  EXPECT_TRUE(sender.sent[3].is_response());

  Endpoint receiver;
  std::vector<std::string> texts;
  std::vector<int> values;
  std::vector<std::string> jsons;
  auto record = [&](const Message& m) {
    texts.push_back(m.payload);
    const Sample* v = typed_payload<Sample>(m);
    values.push_back(v ? v->n : -1);
    auto p = payload_json(m);
    jsons.push_back(p.ok() ? dump_json(**p) : p.error().text);
  };
  receiver.handle.add_json_method("svc.json", Access::kOwner, record);
  receiver.handle.add_method("svc.text", Access::kOwner, record);
  for (size_t i = 0; i < 2; ++i) {
    Message m = sender.sent[i];
    m.rolemask = role::kOwner;
    receiver.handle.dispatch(std::move(m));
  }
  EXPECT_EQ(texts, (std::vector<std::string>{"", R"({"n":2,"tag":"b"})"}));
  EXPECT_EQ(values, (std::vector<int>{1, 2}));
  EXPECT_EQ(jsons, (std::vector<std::string>{R"({"n":1,"tag":"a"})", R"({"n":2,"tag":"b"})"}));

  // Framed for a socket, the text goes (the encoder asserts it is written).
  Message out = sender.sent[2];
  out.write_text();
  std::string frame;
  encode_message(out, frame);
  EXPECT_EQ(out.payload, R"({"n":3,"tag":"c"})");

  Endpoint client;  // not lazy: the text is there from the start
  client.handle.send_matchless_typed("svc.json", Sample{5, "e"});
  EXPECT_EQ(client.last_sent().payload, R"({"n":5,"tag":"e"})");
  EXPECT_EQ(typed_payload<Sample>(client.last_sent())->n, 5);
}

TEST(Handle, SingleRpcGetsOneResponseThenIsForgotten) {
  Endpoint ep;
  std::vector<std::string> got;
  ep.handle.rpc("kvs.get", Json::object(), {}, [&](const Message& r) { got.push_back(r.payload); });
  Message req = ep.last_sent();

  ep.handle.dispatch(reply(req, R"({"value":1})"));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], R"({"value":1})");
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 0u);

  ep.handle.dispatch(reply(req, R"({"value":2})"));
  EXPECT_EQ(got.size(), 1u);
}

TEST(Handle, SingleRpcEndsOnAnErrorResponseToo) {
  Endpoint ep;
  int errnum = 0;
  std::string text;
  ep.handle.rpc("kvs.get", Json::object(), {}, [&](const Message& r) {
    errnum = r.errnum;
    text = error_text(r);
  });
  ep.handle.dispatch(reply_error(ep.last_sent(), ENOENT, "no such key"));
  EXPECT_EQ(errnum, ENOENT);
  EXPECT_EQ(text, "no such key");
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 0u);
}

TEST(Handle, StreamingRpcGetsEveryResponseAndEndsOnEnodata) {
  Endpoint ep;
  std::vector<Message> got;
  ep.handle.rpc("job-manager.events", Json::object(), {.streaming = true}, [&](const Message& r) { got.push_back(r); });
  Message req = ep.last_sent();
  EXPECT_TRUE(req.has_flag(msgflag::kStreaming));

  for (int i = 0; i < 3; ++i) ep.handle.dispatch(reply(req, std::to_string(i)));
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 1u);
  ep.handle.dispatch(reply_error(req, ENODATA));
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[2].payload, "2");
  EXPECT_EQ(got[3].errnum, ENODATA);
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 0u);

  ep.handle.dispatch(reply(req, "late"));
  EXPECT_EQ(got.size(), 4u);
}

TEST(Handle, StreamingRpcEndsOnAnyError) {
  Endpoint ep;
  std::vector<int> errnums;
  ep.handle.rpc("job-manager.events", Json::object(), {.streaming = true},
                [&](const Message& r) { errnums.push_back(r.errnum); });
  Message req = ep.last_sent();
  ep.handle.dispatch(reply(req));
  ep.handle.dispatch(reply_error(req, EPERM));
  ep.handle.dispatch(reply(req));
  EXPECT_EQ(errnums, (std::vector<int>{0, EPERM}));
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 0u);
}

TEST(Handle, StreamingCallbackMayCancelItsOwnRpc) {
  // "Stop after the first answer" is a common pattern. The callback must
  // still be intact after cancel_rpc returns: here it reads a capture.
  Endpoint ep;
  auto seen = std::make_shared<std::string>();
  uint32_t tag = 0;
  tag = ep.handle.rpc("job-manager.events", Json::object(), {.streaming = true}, [&ep, &tag, seen](const Message& r) {
    ep.handle.cancel_rpc(tag);
    *seen += r.payload;
  });
  Message req = ep.last_sent();
  ep.handle.dispatch(reply(req, "first"));
  ep.handle.dispatch(reply(req, "second"));
  EXPECT_EQ(*seen, "first");
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 0u);
}

TEST(Handle, StreamingCallbackMayFailEverythingInFlight) {
  Endpoint ep;
  auto calls = std::make_shared<std::vector<int>>();
  ep.handle.rpc("job-manager.events", Json::object(), {.streaming = true}, [&ep, calls](const Message& r) {
    if (r.errnum == 0) ep.handle.fail_all(ECONNRESET, "giving up");
    calls->push_back(r.errnum);
  });
  ep.handle.dispatch(reply(ep.last_sent()));
  EXPECT_EQ(*calls, (std::vector<int>{ECONNRESET, 0}));
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 0u);
}

TEST(Handle, CallbackMayStartAnotherRpc) {
  Endpoint ep;
  std::vector<std::string> order;
  ep.handle.rpc("a.first", Json::object(), {}, [&](const Message&) {
    order.push_back("first");
    ep.handle.rpc("a.second", Json::object(), {}, [&](const Message&) { order.push_back("second"); });
  });
  ep.handle.dispatch(reply(ep.last_sent()));
  ASSERT_EQ(ep.sent.size(), 2u);
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 1u);
  ep.handle.dispatch(reply(ep.last_sent()));
  EXPECT_EQ(order, (std::vector<std::string>{"first", "second"}));
}

TEST(Handle, MatchtagsAreUniqueAmongRpcsInFlight) {
  Endpoint ep;
  std::set<uint32_t> tags;
  for (int i = 0; i < 1000; ++i) tags.insert(ep.handle.rpc("a.b", Json::object(), {}, [](const Message&) {}));
  EXPECT_EQ(tags.size(), 1000u);
  EXPECT_EQ(tags.count(0), 0u);
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 1000u);
  for (auto& m : ep.sent) EXPECT_EQ(tags.count(m.matchtag), 1u);
}

TEST(Handle, ResponsesReachTheRpcTheyMatch) {
  Endpoint ep;
  std::string a, b;
  ep.handle.rpc("x.a", Json::object(), {}, [&](const Message& r) { a = r.payload; });
  Message req_a = ep.last_sent();
  ep.handle.rpc("x.b", Json::object(), {}, [&](const Message& r) { b = r.payload; });
  Message req_b = ep.last_sent();
  ep.handle.dispatch(reply(req_b, "for b"));
  ep.handle.dispatch(reply(req_a, "for a"));
  EXPECT_EQ(a, "for a");
  EXPECT_EQ(b, "for b");
}

TEST(Handle, CancelledRpcDropsLaterResponses) {
  Endpoint ep;
  int calls = 0;
  uint32_t tag =
      ep.handle.rpc("job-manager.events", Json::object(), {.streaming = true}, [&](const Message&) { ++calls; });
  Message req = ep.last_sent();
  ep.handle.dispatch(reply(req));
  ep.handle.cancel_rpc(tag);
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 0u);
  ep.handle.dispatch(reply(req));
  ep.handle.dispatch(reply_error(req, ENODATA));
  EXPECT_EQ(calls, 1);
}

TEST(Handle, TimeoutFailsTheRpcWithEtimedoutAndIgnoresALateResponse) {
  Endpoint ep;
  std::vector<Message> got;
  uint32_t tag =
      ep.handle.rpc("sched.alloc", Json::object(), {.timeout = 5}, [&](const Message& r) { got.push_back(r); });
  Message req = ep.last_sent();

  ep.clock.advance(4.9);
  EXPECT_TRUE(got.empty());
  ep.clock.advance(0.2);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].is_response());
  EXPECT_EQ(got[0].errnum, ETIMEDOUT);
  EXPECT_EQ(got[0].matchtag, tag);
  EXPECT_EQ(got[0].topic, "sched.alloc");
  EXPECT_EQ(error_text(got[0]), "no response within 5s");
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 0u);

  ep.handle.dispatch(reply(req));
  ep.clock.advance(100);
  EXPECT_EQ(got.size(), 1u);
}

TEST(Handle, AnAnswerInTimeDisarmsTheTimeout) {
  Endpoint ep;
  std::vector<int> errnums;
  ep.handle.rpc("sched.alloc", Json::object(), {.timeout = 5}, [&](const Message& r) { errnums.push_back(r.errnum); });
  EXPECT_EQ(ep.clock.armed_timers(), 1u);
  ep.clock.advance(1);
  ep.handle.dispatch(reply(ep.last_sent()));
  EXPECT_EQ(ep.clock.armed_timers(), 0u);
  ep.clock.advance(10);
  EXPECT_EQ(errnums, (std::vector<int>{0}));
}

TEST(Handle, CancelDisarmsTheTimeout) {
  Endpoint ep;
  int calls = 0;
  uint32_t tag = ep.handle.rpc("sched.alloc", Json::object(), {.timeout = 5}, [&](const Message&) { ++calls; });
  ep.handle.cancel_rpc(tag);
  ep.clock.advance(10);
  EXPECT_EQ(calls, 0);
}

TEST(Handle, TimeoutsExpireEachOnItsOwnDeadline) {
  Endpoint ep;
  std::vector<std::string> expired;
  ep.handle.rpc("a.slow", Json::object(), {.timeout = 3}, [&](const Message& r) { expired.push_back(r.topic); });
  ep.handle.rpc("a.fast", Json::object(), {.timeout = 1}, [&](const Message& r) { expired.push_back(r.topic); });
  ep.handle.rpc("a.forever", Json::object(), {}, [&](const Message& r) { expired.push_back(r.topic); });
  ep.clock.advance(2);
  EXPECT_EQ(expired, (std::vector<std::string>{"a.fast"}));
  ep.clock.advance(2);
  EXPECT_EQ(expired, (std::vector<std::string>{"a.fast", "a.slow"}));
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 1u);
}

TEST(Handle, MatchtaglessResponsesGoToOnResponseByTopic) {
  Endpoint ep;
  std::vector<std::string> alloc, free;
  ep.handle.on_response("sched.alloc", [&](const Message& r) { alloc.push_back(r.payload); });
  ep.handle.on_response("sched.free", [&](const Message& r) { free.push_back(r.payload); });

  Message r = make_response(make_request("sched.alloc"), R"({"id":1})");
  ASSERT_EQ(r.matchtag, 0u);
  ep.handle.dispatch(std::move(r));
  ep.handle.dispatch(make_response(make_request("sched.other"), "{}"));
  EXPECT_EQ(alloc, (std::vector<std::string>{R"({"id":1})"}));
  EXPECT_TRUE(free.empty());

  // A response with a matchtag belongs to an RPC, never to on_response.
  Message tagged = make_response(make_request("sched.alloc"), "{}");
  tagged.matchtag = 5;
  ep.handle.dispatch(std::move(tagged));
  EXPECT_EQ(alloc.size(), 1u);
}

TEST(Handle, SendsOneWayRequestsWithoutAMatchtag) {
  Endpoint ep;
  ep.handle.send_oneway("log.append", R"({"line":"x"})", 2);
  const Message& m = ep.last_sent();
  EXPECT_TRUE(m.is_request());
  EXPECT_TRUE(m.has_flag(msgflag::kNoResponse));
  EXPECT_FALSE(m.wants_response());
  EXPECT_EQ(m.matchtag, 0u);
  EXPECT_EQ(m.nodeid, 2u);
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 0u);
}

TEST(Handle, StampsOutgoingMessagesWithItsCredentials) {
  Endpoint ep;
  ep.handle.publish("a.before", "{}");
  EXPECT_EQ(ep.last_sent().userid, kUserIdUnknown);
  EXPECT_EQ(ep.last_sent().rolemask, role::kNone);

  ep.handle.set_credentials(1000, role::kUser);
  ep.handle.rpc("a.rpc", Json::object(), {}, [](const Message&) {});
  ep.handle.send_oneway("a.oneway", "{}");
  ep.handle.publish("a.event", "{}");
  ASSERT_EQ(ep.sent.size(), 4u);
  for (size_t i = 1; i < ep.sent.size(); ++i) {
    EXPECT_EQ(ep.sent[i].userid, 1000u) << ep.sent[i].topic;
    EXPECT_EQ(ep.sent[i].rolemask, role::kUser) << ep.sent[i].topic;
  }
}

// --- service side ---

TEST(Handle, DispatchesARequestToItsMethod) {
  Endpoint ep;
  std::vector<std::string> seen;
  ep.handle.add_method("kvs.get", Access::kUser, [&](const Message& req) {
    seen.push_back(req.payload);
    ep.handle.respond(req, Json{{"value", 7}});
  });
  Message req = incoming_request("kvs.get", role::kUser, R"({"key":"a"})");
  ep.handle.dispatch(Message(req));

  EXPECT_EQ(seen, (std::vector<std::string>{R"({"key":"a"})"}));
  ASSERT_EQ(ep.sent.size(), 1u);
  const Message& r = ep.sent[0];
  EXPECT_TRUE(r.is_response());
  EXPECT_EQ(r.topic, "kvs.get");
  EXPECT_EQ(r.matchtag, req.matchtag);
  EXPECT_EQ(r.route, req.route);
  EXPECT_EQ(r.errnum, 0);
  EXPECT_EQ(r.payload, R"({"value":7})");
}

// A response carries its request's topic and route, checked where the
// request was decoded; one to a request built by hand that the encoder
// would abort on (a topic empty or over 255 bytes, a route over 64 hops)
// is not sent. The same request within the limits is answered.
TEST(Handle, AResponseTheEncoderCouldNotFrameIsNotSent) {
  Endpoint ep;
  ep.handle.add_method(std::string(256, 'a'), Access::kUser, [&](const Message& req) { ep.handle.respond(req, "{}"); });
  ep.handle.dispatch(incoming_request(std::string(256, 'a')));
  ep.handle.dispatch(incoming_request(std::string(300, 'b')));  // ENOSYS, to that topic
  Message empty = incoming_request("kvs.get");
  empty.topic.clear();
  ep.handle.respond_error(empty, EINVAL, "");
  Message far = incoming_request("kvs.get");
  far.route.assign(kMaxRouteHops + 1, make_hop(1, 1));
  ep.handle.respond(far, "{}");
  EXPECT_TRUE(ep.sent.empty());

  far.route.pop_back();
  ep.handle.respond(far, "{}");
  ASSERT_EQ(ep.sent.size(), 1u);
  EXPECT_EQ(encode_message(ep.sent[0]).size(), 4 + frame_body_size(ep.sent[0]));
}

TEST(Handle, RespondsWithAnErrorFromAnErrorValue) {
  Endpoint ep;
  ep.handle.add_method("kvs.get", Access::kUser, [&](const Message& req) {
    ep.handle.respond_error(req, Error{ENOENT, "no key a"});
  });
  ep.handle.dispatch(incoming_request("kvs.get"));
  EXPECT_EQ(ep.last_sent().errnum, ENOENT);
  EXPECT_EQ(error_text(ep.last_sent()), "no key a");
}

TEST(Handle, OwnerOnlyMethodRefusesAUserWithEperm) {
  Endpoint ep;
  int calls = 0;
  ep.handle.add_method("job-manager.kill-all", Access::kOwner, [&](const Message&) { ++calls; });

  ep.handle.dispatch(incoming_request("job-manager.kill-all", role::kUser));
  EXPECT_EQ(calls, 0);
  ASSERT_EQ(ep.sent.size(), 1u);
  EXPECT_EQ(ep.sent[0].errnum, EPERM);
  EXPECT_EQ(ep.sent[0].matchtag, 77u);
  EXPECT_NE(error_text(ep.sent[0]).find("restricted to the instance owner"), std::string::npos);

  ep.handle.dispatch(incoming_request("job-manager.kill-all", role::kNone));
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(ep.last_sent().errnum, EPERM);

  ep.handle.dispatch(incoming_request("job-manager.kill-all", role::kOwner | role::kUser));
  EXPECT_EQ(calls, 1);
}

TEST(Handle, UserMethodServesEveryone) {
  Endpoint ep;
  int calls = 0;
  ep.handle.add_method("job-manager.list", Access::kUser, [&](const Message&) { ++calls; });
  ep.handle.dispatch(incoming_request("job-manager.list", role::kUser));
  ep.handle.dispatch(incoming_request("job-manager.list", role::kOwner));
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(ep.sent.empty());
}

TEST(Handle, UnknownMethodAnswersEnosys) {
  Endpoint ep;
  ep.handle.add_method("kvs.get", Access::kUser, [](const Message&) {});
  ep.handle.dispatch(incoming_request("kvs.put"));
  ASSERT_EQ(ep.sent.size(), 1u);
  EXPECT_EQ(ep.sent[0].errnum, ENOSYS);
  EXPECT_EQ(ep.sent[0].matchtag, 77u);
  EXPECT_EQ(error_text(ep.sent[0]), "unknown method kvs.put");
}

TEST(Handle, EveryServiceAnswersPingWithItsPayload) {
  Endpoint ep;
  ep.handle.dispatch(incoming_request("kvs.ping", role::kUser, R"({"seq":3,"pad":"xyz"})"));
  ASSERT_EQ(ep.sent.size(), 1u);
  EXPECT_EQ(ep.sent[0].errnum, 0);
  EXPECT_EQ(ep.sent[0].topic, "kvs.ping");
  EXPECT_EQ(ep.sent[0].payload, R"({"seq":3,"pad":"xyz"})");

  ep.handle.dispatch(incoming_request("sched.ping", role::kUser, ""));
  EXPECT_EQ(ep.last_sent().payload, "{}");
}

TEST(Handle, AServiceMayServeItsOwnPing) {
  Endpoint ep;
  ep.handle.add_method("kvs.ping", Access::kUser, [&](const Message& req) {
    ep.handle.respond(req, Json{{"custom", true}});
  });
  ep.handle.dispatch(incoming_request("kvs.ping"));
  EXPECT_EQ(ep.last_sent().payload, R"({"custom":true})");
}

TEST(Handle, IgnoresAnUnservedDisconnect) {
  Endpoint ep;
  ep.handle.dispatch(incoming_request("kvs.disconnect"));
  EXPECT_TRUE(ep.sent.empty());
}

TEST(Handle, NeverAnswersANoResponseRequest) {
  Endpoint ep;
  int calls = 0;
  ep.handle.add_method("log.append", Access::kUser, [&](const Message& req) {
    ++calls;
    ep.handle.respond(req, Json::object());
    ep.handle.respond_error(req, EIO, "failed");
  });
  ep.handle.add_method("log.clear", Access::kOwner, [](const Message&) {});
  auto oneway = [](std::string topic, uint32_t rolemask) {
    Message m = incoming_request(std::move(topic), rolemask);
    m.flags = msgflag::kNoResponse;
    m.matchtag = 0;
    return m;
  };
  ep.handle.dispatch(oneway("log.append", role::kUser));  // served
  ep.handle.dispatch(oneway("log.clear", role::kUser));   // refused
  ep.handle.dispatch(oneway("log.nosuch", role::kUser));  // unknown
  ep.handle.dispatch(oneway("log.ping", role::kUser));    // automatic
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(ep.sent.empty());
}

TEST(Handle, MethodHandlerMayRemoveItsOwnService) {
  Endpoint ep;
  auto served = std::make_shared<int>(0);
  ep.handle.add_method("job.stop", Access::kUser, [&ep, served](const Message&) {
    ep.handle.remove_methods("job");
    ++*served;
  });
  ep.handle.dispatch(incoming_request("job.stop"));
  EXPECT_EQ(*served, 1);
  ep.handle.dispatch(incoming_request("job.stop"));
  EXPECT_EQ(*served, 1);
  EXPECT_EQ(ep.last_sent().errnum, ENOSYS);
}

TEST(Handle, RemoveMethodsRemovesOnlyThatService) {
  Endpoint ep;
  std::vector<std::string> served;
  auto record = [&](const Message& req) { served.push_back(req.topic); };
  ep.handle.add_method("kvs.get", Access::kUser, record);
  ep.handle.add_method("kvs.put", Access::kUser, record);
  ep.handle.add_method("kvsx.get", Access::kUser, record);
  ep.handle.add_method("kvs", Access::kUser, record);
  ep.handle.remove_methods("kvs");
  for (auto topic : {"kvs.get", "kvs.put", "kvsx.get", "kvs"}) ep.handle.dispatch(incoming_request(topic));
  EXPECT_EQ(served, (std::vector<std::string>{"kvsx.get", "kvs"}));
}

// --- events ---

TEST(Handle, SubscribeAsksTheBrokerAndReportsWhenInPlace) {
  Endpoint ep;
  bool done = false;
  ep.handle.subscribe(
      "job-state.", [](const Message&) {},
      [&](const Error* e) {
        EXPECT_EQ(e, nullptr);
        done = true;
      });
  const Message& req = ep.last_sent();
  EXPECT_EQ(req.topic, "event.subscribe");
  EXPECT_EQ(req.payload, R"({"topic":"job-state."})");
  EXPECT_FALSE(done);
  ep.handle.dispatch(reply(req));
  EXPECT_TRUE(done);
}

TEST(Handle, SubscribeReportsARefusal) {
  Endpoint ep;
  std::string why;
  int code = 0;
  ep.handle.subscribe(
      "secret.", [](const Message&) {},
      [&](const Error* e) {
        ASSERT_NE(e, nullptr);
        code = e->code;
        why = e->text;
      });
  ep.handle.dispatch(reply_error(ep.last_sent(), EPERM, "not yours"));
  EXPECT_EQ(code, EPERM);
  EXPECT_EQ(why, "not yours");
}

TEST(Handle, DeliversEventsOnlyToSubscriptionsWithAMatchingPrefix) {
  Endpoint ep;
  std::vector<std::string> jobs, kvs, all;
  ep.handle.subscribe("job-state.", [&](const Message& m) { jobs.push_back(m.topic); });
  ep.handle.subscribe("kvs.", [&](const Message& m) { kvs.push_back(m.topic); });
  ep.handle.subscribe("", [&](const Message& m) { all.push_back(m.topic); });

  for (auto topic : {"job-state.run", "kvs.setroot", "job-manager.x", "kvs", "job-state.cleanup"}) {
    ep.handle.dispatch(make_event(topic));
  }
  EXPECT_EQ(jobs, (std::vector<std::string>{"job-state.run", "job-state.cleanup"}));
  EXPECT_EQ(kvs, (std::vector<std::string>{"kvs.setroot"}));
  EXPECT_EQ(all.size(), 5u);
}

TEST(Handle, PublishesEvents) {
  Endpoint ep;
  ep.handle.publish("job-state.run", R"({"id":1})");
  const Message& m = ep.last_sent();
  EXPECT_TRUE(m.is_event());
  EXPECT_EQ(m.topic, "job-state.run");
  EXPECT_EQ(m.payload, R"({"id":1})");
}

// A private event published from a document carries its text, for
// subscribers anywhere, and the document itself, which a subscriber of
// the same process reads without parsing the text.
TEST(Handle, PublishesAPrivateEventAsTextAndParsed) {
  Endpoint ep;
  ep.handle.publish_private("job-exception", Json{{"id", 7}, {"severity", 0}}, 1000);
  const Message& m = ep.last_sent();
  EXPECT_TRUE(m.is_event());
  EXPECT_TRUE(m.has_flag(msgflag::kPrivate));
  EXPECT_EQ(m.userid, 1000u);
  EXPECT_EQ(m.payload, R"({"id":7,"severity":0})");
  ASSERT_NE(m.json, nullptr);
  auto p = payload_json(m);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->get(), m.json.get());  // the document sent, not the text parsed again
}

// --- the transport going away ---

TEST(Handle, FailAllFailsEveryRpcInFlightOnce) {
  Endpoint ep;
  std::vector<std::pair<uint32_t, int>> got;
  std::vector<std::string> texts;
  auto record = [&](const Message& r) {
    got.emplace_back(r.matchtag, r.errnum);
    texts.push_back(error_text(r));
  };
  std::set<uint32_t> tags;
  tags.insert(ep.handle.rpc("a.single", Json::object(), {}, record));
  tags.insert(ep.handle.rpc("a.stream", Json::object(), {.streaming = true}, record));
  tags.insert(ep.handle.rpc("a.timed", Json::object(), {.timeout = 5}, record));

  ep.handle.fail_all(ECONNRESET, "lost the broker");
  ASSERT_EQ(got.size(), 3u);
  std::set<uint32_t> failed;
  for (auto& [tag, errnum] : got) {
    failed.insert(tag);
    EXPECT_EQ(errnum, ECONNRESET);
  }
  EXPECT_EQ(failed, tags);
  for (auto& t : texts) EXPECT_EQ(t, "lost the broker");
  EXPECT_EQ(ep.handle.rpcs_in_flight(), 0u);

  // Nothing comes after: not the timeout, not a straggling response.
  ep.clock.advance(10);
  for (auto& m : std::vector<Message>(ep.sent)) ep.handle.dispatch(reply(m));
  EXPECT_EQ(got.size(), 3u);
}

TEST(Handle, TimersDieWithTheHandle) {
  SteppedClock clock;
  {
    Handle h(clock, [](Message) {});
    h.rpc("a.b", Json::object(), {.timeout = 1}, [](const Message&) { ADD_FAILURE() << "called after destruction"; });
  }
  clock.advance(5);
  EXPECT_EQ(clock.armed_timers(), 0u);
}

}  // namespace
}  // namespace loom
