// The wire codec (codec.h) and the Message helpers (message.h), shown by
// example: what a frame looks like, what the decoder refuses, and that no
// sequence of bytes from a peer can make it crash.
#include "msg/codec.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "msg/json.h"
#include "msg/message.h"

namespace loom {
namespace {

// Every field of a Message, so that EXPECT_EQ compares them all at once.
auto fields(const Message& m) {
  return std::tie(m.type, m.flags, m.matchtag, m.nodeid, m.userid, m.rolemask, m.errnum, m.seq, m.topic, m.route,
                  m.payload);
}

// A message with every field set to something other than its default.
Message full_message() {
  Message m;
  m.type = MsgType::kResponse;
  m.flags = msgflag::kStreaming;
  m.matchtag = 0xA1B2C3D4;
  m.nodeid = 7;
  m.userid = 1000;
  m.rolemask = role::kOwner | role::kUser;
  m.errnum = -ENODATA;  // negative on purpose: errnum is signed on the wire
  m.seq = 0xFFFFFFFE;
  m.topic = "job-manager.submit";
  m.route = {make_hop(0, 1), make_hop(3, 0xFFFFFFFF), make_hop(0xFFFFFFFF, 42)};
  m.payload = R"({"jobspec":{"tasks":4}})";
  return m;
}

// The body of a frame: the encoding without its 4-byte length prefix.
std::string body_of(const Message& m) { return encode_message(m).substr(4); }

Result<Message> decode_frame(const std::string& frame) {
  FrameDecoder d;
  d.feed(frame.data(), frame.size());
  auto next = d.next();
  if (!next.ok()) return next.error();
  if (!next->has_value()) return Error{EAGAIN, "incomplete frame"};
  return std::move(**next);
}

void expect_eproto(const Result<Message>& r, const std::string& reason) {
  ASSERT_FALSE(r.ok()) << "decoded a frame that should be refused (" << reason << ")";
  EXPECT_EQ(r.error().code, EPROTO);
  EXPECT_NE(r.error().text.find(reason), std::string::npos) << "got: " << r.error().text;
}

uint32_t le32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<uint8_t>(s[at + i])} << (8 * i);
  return v;
}

std::string length_prefix(uint32_t len) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>(len >> (8 * i));
  return s;
}

// Offsets of the fixed header within a frame body (docs: codec.h).
constexpr size_t kVersionAt = 0, kTypeAt = 1, kFlagsAt = 2, kHopsAt = 3, kTopicLenAt = kFrameHeaderSize - 1;

TEST(Codec, RoundTripsEveryField) {
  Message m = full_message();
  auto back = decode_body(body_of(m));
  ASSERT_TRUE(back.ok()) << back.error().text;
  EXPECT_EQ(fields(*back), fields(m));
  EXPECT_EQ(back->sender(), make_hop(0, 1));
}

TEST(Codec, LaysOutFramesLittleEndianWithALengthPrefix) {
  Message m = full_message();
  std::string frame = encode_message(m);
  ASSERT_EQ(le32(frame, 0), frame.size() - 4);
  std::string body = frame.substr(4);
  EXPECT_EQ(body.size(), kFrameHeaderSize + m.topic.size() + 8 * m.route.size() + m.payload.size());
  EXPECT_EQ(body[kVersionAt], kCodecVersion);
  EXPECT_EQ(body[kTypeAt], static_cast<char>(MsgType::kResponse));
  EXPECT_EQ(body[kFlagsAt], msgflag::kStreaming);
  EXPECT_EQ(body[kHopsAt], 3);
  EXPECT_EQ(le32(body, 4), 0xA1B2C3D4u);  // matchtag, then nodeid, userid, rolemask, errnum, seq
  EXPECT_EQ(le32(body, 8), 7u);
  EXPECT_EQ(static_cast<int32_t>(le32(body, 20)), -ENODATA);
  EXPECT_EQ(size_t{static_cast<uint8_t>(body[kTopicLenAt])}, m.topic.size());
  EXPECT_EQ(body.substr(kFrameHeaderSize, m.topic.size()), m.topic);
  EXPECT_EQ(body.substr(body.size() - m.payload.size()), m.payload);
}

TEST(Codec, AppendsToWhatIsAlreadyInTheBuffer) {
  std::string out = "xyz";
  encode_message(make_event("a.b"), out);
  EXPECT_EQ(out.substr(0, 3), "xyz");
  EXPECT_EQ(out.substr(3), encode_message(make_event("a.b")));
}

TEST(Codec, RoundTripsAnEmptyPayloadAndAnEmptyRoute) {
  Message m = make_request("kvs.get");
  auto back = decode_frame(encode_message(m));
  ASSERT_TRUE(back.ok()) << back.error().text;
  EXPECT_EQ(fields(*back), fields(m));
  EXPECT_TRUE(back->payload.empty());
  EXPECT_TRUE(back->route.empty());
  EXPECT_EQ(back->sender(), 0u);
}

TEST(Codec, RoundTripsALargeBinaryPayload) {
  Message m = make_event("kvs.setroot");
  m.payload.resize(3 << 20);
  for (size_t i = 0; i < m.payload.size(); ++i) m.payload[i] = static_cast<char>(i * 131 + (i >> 8));
  auto back = decode_frame(encode_message(m));
  ASSERT_TRUE(back.ok()) << back.error().text;
  EXPECT_EQ(fields(*back), fields(m));
}

TEST(Codec, RoundTripsTheLongestTopicAndRoute) {
  Message m = make_request(std::string(kMaxTopicSize, 't'));
  for (uint32_t i = 0; i < kMaxRouteHops; ++i) m.route.push_back(make_hop(i, i * 3));
  auto back = decode_frame(encode_message(m));
  ASSERT_TRUE(back.ok()) << back.error().text;
  EXPECT_EQ(fields(*back), fields(m));
}

TEST(FrameDecoder, DecodesSeveralFramesFromOneFeed) {
  std::vector<Message> sent = {make_request("a.one", "1"), make_event("b.two", "[2]"), full_message()};
  std::string stream;
  for (auto& m : sent) encode_message(m, stream);

  FrameDecoder d;
  d.feed(stream.data(), stream.size());
  for (auto& want : sent) {
    auto next = d.next();
    ASSERT_TRUE(next.ok()) << next.error().text;
    ASSERT_TRUE(next->has_value());
    EXPECT_EQ(fields(**next), fields(want));
  }
  auto end = d.next();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end->has_value());
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FrameDecoder, WaitsForAFrameFedOneByteAtATime) {
  Message m = full_message();
  std::string frame = encode_message(m);
  FrameDecoder d;
  for (size_t i = 0; i + 1 < frame.size(); ++i) {
    d.feed(&frame[i], 1);
    auto next = d.next();
    ASSERT_TRUE(next.ok()) << "after byte " << i << ": " << next.error().text;
    ASSERT_FALSE(next->has_value()) << "a message out of " << i + 1 << " of " << frame.size() << " bytes";
    EXPECT_EQ(d.buffered(), i + 1);
  }
  d.feed(&frame.back(), 1);
  auto next = d.next();
  ASSERT_TRUE(next.ok()) << next.error().text;
  ASSERT_TRUE(next->has_value());
  EXPECT_EQ(fields(**next), fields(m));
}

TEST(FrameDecoder, KeepsDecodingAcrossManyChunksAndBufferCompactions) {
  // Well over the 64 KiB after which the decoder drops consumed bytes, fed
  // in chunks that straddle frame boundaries.
  std::string stream;
  std::vector<Message> sent;
  for (uint32_t i = 0; i < 4000; ++i) {
    Message m = make_request("svc.m" + std::to_string(i), std::string(i % 97, 'p'));
    m.matchtag = i + 1;
    if (i % 5 == 0) m.route = {make_hop(i, i)};
    sent.push_back(m);
    encode_message(m, stream);
  }
  ASSERT_GT(stream.size(), 3u * 65536);

  FrameDecoder d;
  std::vector<Message> got;
  for (size_t at = 0; at < stream.size(); at += 1013) {
    d.feed(stream.data() + at, std::min<size_t>(1013, stream.size() - at));
    for (;;) {
      auto next = d.next();
      ASSERT_TRUE(next.ok()) << next.error().text;
      if (!next->has_value()) break;
      got.push_back(std::move(**next));
    }
  }
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(fields(got[i]), fields(sent[i])) << "message " << i;
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FrameDecoder, RefusesAnOversizeLengthBeforeItsBodyArrives) {
  FrameDecoder d(/*max_frame=*/1024);
  std::string prefix = length_prefix(1025);
  d.feed(prefix.data(), 3);
  auto early = d.next();
  ASSERT_TRUE(early.ok());
  EXPECT_FALSE(early->has_value());

  d.feed(prefix.data() + 3, 1);  // only the prefix: no body was sent at all
  auto next = d.next();
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.error().code, EPROTO);
  EXPECT_NE(next.error().text.find("exceeds the limit"), std::string::npos) << next.error().text;
}

TEST(FrameDecoder, RefusesA4GiBLengthWithTheDefaultLimit) {
  FrameDecoder d;
  std::string prefix = length_prefix(0xFFFFFFFF);
  d.feed(prefix.data(), prefix.size());
  auto next = d.next();
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.error().code, EPROTO);
}

TEST(FrameDecoder, AcceptsAFrameOfExactlyTheLimit) {
  Message m = make_event("a.b");
  m.payload = std::string(1024 - kFrameHeaderSize - m.topic.size(), 'x');
  std::string frame = encode_message(m);
  ASSERT_EQ(le32(frame, 0), 1024u);
  FrameDecoder d(1024);
  d.feed(frame.data(), frame.size());
  auto next = d.next();
  ASSERT_TRUE(next.ok()) << next.error().text;
  ASSERT_TRUE(next->has_value());
  EXPECT_EQ((*next)->payload, m.payload);
}

TEST(Codec, RefusesATruncatedHeader) {
  std::string body = body_of(full_message()).substr(0, kFrameHeaderSize - 1);
  expect_eproto(decode_body(body), "truncated frame header");
  expect_eproto(decode_body(""), "truncated frame header");
  // The same through a stream: a frame whose length is too short.
  expect_eproto(decode_frame(length_prefix(body.size()) + body), "truncated frame header");
}

TEST(Codec, RefusesATruncatedTopic) {
  Message m = make_request("kvs.lookup");
  std::string body = body_of(m);
  body.pop_back();
  expect_eproto(decode_body(body), "truncated topic");
}

TEST(Codec, RefusesATruncatedRoute) {
  Message m = make_request("kvs.lookup");
  m.route = {make_hop(1, 2), make_hop(3, 4)};
  std::string body = body_of(m);
  body.pop_back();  // the payload is empty, so this cuts into the last hop
  expect_eproto(decode_body(body), "truncated route");
}

TEST(Codec, RefusesAnUnknownVersion) {
  std::string body = body_of(full_message());
  body[kVersionAt] = 2;
  expect_eproto(decode_body(body), "unsupported codec version 2");
  body[kVersionAt] = 0;
  expect_eproto(decode_body(body), "unsupported codec version 0");
}

TEST(Codec, RefusesAnUnknownType) {
  for (uint8_t type : {0, 3, 5, 8, 255}) {
    std::string body = body_of(full_message());
    body[kTypeAt] = static_cast<char>(type);
    expect_eproto(decode_body(body), "unknown message type");
  }
}

TEST(Codec, RefusesUnknownFlags) {
  for (uint8_t flags : {0x08, 0x80, 0x09}) {
    Message m = make_request("a.b");
    m.flags = flags;
    expect_eproto(decode_body(body_of(m)), "unknown message flags");
  }
}

TEST(Codec, RefusesAnEmptyTopic) { expect_eproto(decode_body(body_of(make_event(""))), "empty topic"); }

TEST(Codec, RefusesATopicWithASpaceOrAControlByte) {
  std::vector<std::string> bad = {"kvs get",  "kvs.get\n",      std::string("kvs\0get", 7),
                                  "kvs.\x7f", "kv\xc3\xa9.get", "\t"};
  for (const auto& topic : bad) {
    expect_eproto(decode_body(body_of(make_request(topic))), "topic has a space or a non-printable byte");
  }
  // Everything else printable is fine, punctuation included.
  auto ok = decode_body(body_of(make_request("job-manager.jobtap_query/1!~")));
  EXPECT_TRUE(ok.ok()) << ok.error().text;
}

TEST(Codec, RefusesARouteOfMoreThan64Hops) {
  // The encoder asserts on this, so forge the frame: 64 hops, then a 65th.
  Message m = make_request("a.b");
  m.route.assign(kMaxRouteHops, make_hop(1, 1));
  std::string body = body_of(m);
  body[kHopsAt] = static_cast<char>(kMaxRouteHops + 1);
  body.append(8, '\0');
  expect_eproto(decode_body(body), "route longer than 64 hops");
  body[kHopsAt] = static_cast<char>(255);
  body.append(8 * 200, '\0');
  expect_eproto(decode_body(body), "route longer than 64 hops");
}

TEST(Codec, RefusesARequestBothStreamingAndNoResponse) {
  Message m = make_request("a.b", "", kNodeAny, msgflag::kStreaming | msgflag::kNoResponse);
  expect_eproto(decode_body(body_of(m)), "both streaming and no-response");
  // Each flag alone is fine.
  EXPECT_TRUE(decode_body(body_of(make_request("a.b", "", kNodeAny, msgflag::kStreaming))).ok());
  EXPECT_TRUE(decode_body(body_of(make_request("a.b", "", kNodeAny, msgflag::kNoResponse))).ok());
}

TEST(Codec, ValidatesMessagesBuiltInMemoryByTheSameRules) {
  EXPECT_TRUE(validate_message(full_message()).ok());
  Message long_topic = make_event(std::string(kMaxTopicSize + 1, 'a'));
  ASSERT_FALSE(validate_message(long_topic).ok());
  EXPECT_EQ(validate_message(long_topic).error().code, EPROTO);
  Message bad_type = full_message();
  bad_type.type = static_cast<MsgType>(3);
  EXPECT_FALSE(validate_message(bad_type).ok());
}

// What a peer sends is arbitrary. Whatever the bytes, decoding returns an
// error or a message that passes validate_message and re-encodes to exactly
// the frame it came from.
void decode_everything(const std::string& bytes, size_t max_frame, std::mt19937& rng) {
  FrameDecoder d(max_frame);
  size_t fed = 0, consumed = 0;
  while (fed < bytes.size()) {
    size_t n = std::min<size_t>(bytes.size() - fed, 1 + rng() % 40);
    d.feed(bytes.data() + fed, n);
    fed += n;
    for (;;) {
      auto next = d.next();
      if (!next.ok()) {
        EXPECT_EQ(next.error().code, EPROTO);
        EXPECT_FALSE(next.error().text.empty());
        return;
      }
      if (!next->has_value()) break;
      const Message& m = **next;
      ASSERT_TRUE(validate_message(m).ok()) << validate_message(m).error().text;
      std::string again = encode_message(m);
      ASSERT_LE(consumed + again.size(), bytes.size());
      ASSERT_EQ(again, bytes.substr(consumed, again.size()));
      consumed += again.size();
    }
  }
}

TEST(FrameDecoder, NeverCrashesOnRandomBytes) {
  std::mt19937 rng(20240611);
  for (int round = 0; round < 20000; ++round) {
    std::string bytes(rng() % 300, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    // Half the time, start like a plausible frame so decoding gets past the
    // length check and into the body.
    if (round % 2 == 0 && bytes.size() >= 8) {
      uint32_t len = static_cast<uint32_t>(rng() % (bytes.size() - 3));
      bytes.replace(0, 4, length_prefix(len));
      bytes[4] = kCodecVersion;
      bytes[5] = static_cast<char>(1 << (rng() % 3));
      bytes[6] = static_cast<char>(rng() % 4);
      bytes[7] = static_cast<char>(rng() % 3);
    }
    decode_everything(bytes, round % 3 == 0 ? 64 : kMaxFrameSize, rng);
    if (HasFatalFailure()) return;
  }
}

TEST(FrameDecoder, NeverCrashesOnCorruptedValidStreams) {
  std::mt19937 rng(7);
  std::string clean;
  encode_message(full_message(), clean);
  encode_message(make_request("kvs.get", R"({"key":"a.b"})"), clean);
  encode_message(make_event("job-state.run"), clean);
  for (int round = 0; round < 20000; ++round) {
    std::string bytes = clean;
    for (int flips = 1 + rng() % 4; flips > 0; --flips)
      bytes[rng() % bytes.size()] ^= static_cast<char>(1 << (rng() % 8));
    if (rng() % 4 == 0) bytes.resize(rng() % bytes.size());
    decode_everything(bytes, kMaxFrameSize, rng);
    if (HasFatalFailure()) return;
  }
}

TEST(Greeting, IsMagicVersionRoleAndTwoZeroBytes) {
  EXPECT_EQ(encode_greeting(PeerRole::kClient), std::string("LOOM\x01\x01\x00\x00", 8));
  EXPECT_EQ(encode_greeting(PeerRole::kBroker), std::string("LOOM\x01\x02\x00\x00", 8));
  EXPECT_EQ(encode_greeting(PeerRole::kOverlay), std::string("LOOM\x01\x03\x00\x00", 8));
  EXPECT_TRUE(check_greeting(encode_greeting(PeerRole::kOverlay), PeerRole::kOverlay).ok());
}

TEST(Greeting, NamesWhatIsWrongInOneLine) {
  auto http = check_greeting("GET / HT", PeerRole::kBroker);
  ASSERT_FALSE(http.ok());
  EXPECT_EQ(http.error().code, EPROTO);
  EXPECT_EQ(http.error().text, "not a loom peer (it began with \"GET / HT\")");
  auto version = check_greeting(std::string("LOOM\x02\x02\x00\x00", 8), PeerRole::kBroker);
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(version.error().code, EPROTONOSUPPORT);
  EXPECT_EQ(version.error().text, "the peer speaks loom protocol version 2; this side speaks version 1");
  auto role = check_greeting(encode_greeting(PeerRole::kOverlay), PeerRole::kBroker);
  ASSERT_FALSE(role.ok());
  EXPECT_EQ(role.error().code, EPROTOTYPE);
  EXPECT_EQ(role.error().text, "expected a loom broker's client socket, found a loom broker-to-broker link");
  auto reserved = check_greeting(std::string("LOOM\x01\x02\x00\x01", 8), PeerRole::kBroker);
  EXPECT_EQ(reserved.error().code, EPROTO);
  auto binary = check_greeting(std::string("\x00\xff\n", 3), PeerRole::kBroker);
  EXPECT_EQ(binary.error().text, "not a loom peer (it began with \"\\x00\\xff\\x0a\")");
}

TEST(FrameDecoder, ReadsTheGreetingBeforeTheFirstFrame) {
  FrameDecoder d;
  d.expect_greeting(PeerRole::kClient);
  std::string stream = encode_greeting(PeerRole::kClient) + encode_message(make_request("a.b", "{}"));
  // Byte by byte: nothing until the frame is whole, no error on the way.
  for (size_t i = 0; i + 1 < stream.size(); ++i) {
    d.feed(&stream[i], 1);
    auto n = d.next();
    ASSERT_TRUE(n.ok()) << "at byte " << i << ": " << n.error().text;
    EXPECT_FALSE(n->has_value());
    // A whole greeting and nothing more is a peer between messages.
    EXPECT_EQ(d.partial(), i + 1 != kGreetingSize) << "at byte " << i;
  }
  d.feed(&stream.back(), 1);
  auto n = d.next();
  ASSERT_TRUE(n.ok());
  ASSERT_TRUE(n->has_value());
  EXPECT_EQ((*n)->topic, "a.b");
  EXPECT_FALSE(d.partial());
}

TEST(FrameDecoder, RefusesAStreamWithoutAGreetingAtItsFirstWrongByte) {
  // A loom frame without the greeting (an old peer), or an HTTP request:
  // refused as soon as a byte differs from the magic, not when 8 arrived.
  FrameDecoder old_peer;
  old_peer.expect_greeting(PeerRole::kClient);
  std::string frame = encode_message(make_request("a.b", "{}"));
  old_peer.feed(frame.data(), 1);
  auto n = old_peer.next();
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.error().code, EPROTO);
  FrameDecoder http;
  http.expect_greeting(PeerRole::kClient);
  http.feed("GE", 2);
  EXPECT_EQ(http.next().error().text, "not a loom peer (it began with \"GE\")");
  FrameDecoder wrong_role;
  wrong_role.expect_greeting(PeerRole::kOverlay);
  std::string g = encode_greeting(PeerRole::kClient);
  wrong_role.feed(g.data(), g.size());
  EXPECT_EQ(wrong_role.next().error().code, EPROTOTYPE);
}

TEST(Codec, OnlyAnEventMayBePrivate) {
  Message ev = make_event("job-exception", "{}");
  ev.flags = msgflag::kPrivate;
  EXPECT_TRUE(decode_body(body_of(ev)).ok());
  Message req = make_request("a.b");
  req.flags = msgflag::kPrivate;
  expect_eproto(decode_body(body_of(req)), "only an event can be private");
}

TEST(Codec, FrameBodySizeIsWhatTheEncoderWrites) {
  Message m = full_message();
  EXPECT_EQ(frame_body_size(m) + 4, encode_message(m).size());
}

TEST(Message, SplitsTheTopicIntoServiceAndMethodAtTheFirstDot) {
  Message m = make_request("job-manager.submit");
  EXPECT_EQ(m.service(), "job-manager");
  EXPECT_EQ(m.method(), "submit");

  m.topic = "kvs.lookup.namespace";
  EXPECT_EQ(m.service(), "kvs");
  EXPECT_EQ(m.method(), "lookup.namespace");

  m.topic = "heartbeat";
  EXPECT_EQ(m.service(), "heartbeat");
  EXPECT_EQ(m.method(), "");

  m.topic = "trailing.";
  EXPECT_EQ(m.service(), "trailing");
  EXPECT_EQ(m.method(), "");
}

TEST(Message, MakeRequestAndMakeEventSetTheirKind) {
  Message req = make_request("sched.alloc", "{}", 4, msgflag::kNoResponse);
  EXPECT_TRUE(req.is_request());
  EXPECT_EQ(req.nodeid, 4u);
  EXPECT_FALSE(req.wants_response());
  EXPECT_TRUE(make_request("sched.alloc").wants_response());

  Message ev = make_event("job-state.run", "{}");
  EXPECT_TRUE(ev.is_event());
  EXPECT_FALSE(ev.wants_response());
  EXPECT_EQ(ev.payload, "{}");
}

TEST(Message, MakeResponseCopiesMatchtagRouteAndTopic) {
  Message req = make_request("kvs.get", R"({"key":"x"})", 3, msgflag::kStreaming);
  req.matchtag = 99;
  req.userid = 1000;
  req.rolemask = role::kUser;
  req.route = {make_hop(2, 5), make_hop(0, 1)};

  Message r = make_response(req, R"({"value":1})");
  EXPECT_TRUE(r.is_response());
  EXPECT_EQ(r.topic, "kvs.get");
  EXPECT_EQ(r.matchtag, 99u);
  EXPECT_EQ(r.route, req.route);
  EXPECT_EQ(r.nodeid, 3u);
  EXPECT_EQ(r.flags, msgflag::kStreaming);
  EXPECT_EQ(r.errnum, 0);
  EXPECT_EQ(r.payload, R"({"value":1})");

  // Of the flags only "streaming" carries over: a response never asks for
  // no-response.
  Message oneway = make_request("a.b", "", kNodeAny, msgflag::kNoResponse);
  EXPECT_EQ(make_response(oneway).flags, 0);
}

TEST(Message, MakeErrorResponseSetsErrnumAndErrstr) {
  Message req = make_request("job-manager.cancel");
  req.matchtag = 12;
  Message r = make_error_response(req, ENOENT, "job 42 does not exist");
  EXPECT_TRUE(r.is_response());
  EXPECT_EQ(r.matchtag, 12u);
  EXPECT_EQ(r.errnum, ENOENT);
  auto j = parse_json(r.payload);
  ASSERT_TRUE(j.ok()) << j.error().text;
  EXPECT_EQ((*j)["errstr"], "job 42 does not exist");
  EXPECT_EQ(error_text(r), "job 42 does not exist");
}

TEST(Message, MakeErrorResponseNeverSendsErrnumZero) {
  Message r = make_error_response(make_request("a.b"), 0, "oops");
  EXPECT_EQ(r.errnum, EINVAL);
}

TEST(Message, MakeErrorResponseSurvivesInvalidUtf8InTheText) {
  Message r = make_error_response(make_request("a.b"), EIO, "bad \xff byte");
  EXPECT_EQ(r.errnum, EIO);
  EXPECT_TRUE(parse_json(r.payload).ok()) << r.payload;
  EXPECT_NE(error_text(r).find("bad "), std::string::npos);
}

TEST(Message, ErrorTextFallsBackToStrerror) {
  Message r = make_error_response(make_request("a.b"), ENOENT, "");
  EXPECT_TRUE(r.payload.empty());
  EXPECT_EQ(error_text(r), std::strerror(ENOENT));

  r.payload = "not json";
  EXPECT_EQ(error_text(r), std::strerror(ENOENT));
  r.payload = R"({"errstr":7})";
  EXPECT_EQ(error_text(r), std::strerror(ENOENT));
  r.payload = R"(["errstr"])";
  EXPECT_EQ(error_text(r), std::strerror(ENOENT));
}

TEST(Message, ErrorTextOfASuccessIsEmpty) { EXPECT_EQ(error_text(make_response(make_request("a.b"), "{}")), ""); }

TEST(Message, NamesItsTypes) {
  EXPECT_STREQ(msgtype_name(MsgType::kRequest), "request");
  EXPECT_STREQ(msgtype_name(MsgType::kResponse), "response");
  EXPECT_STREQ(msgtype_name(MsgType::kEvent), "event");
  EXPECT_STREQ(msgtype_name(static_cast<MsgType>(9)), "unknown");
}

TEST(Message, PacksAHopFromRankAndLocalId) {
  HopId h = make_hop(5, 0xFFFFFFFF);
  EXPECT_EQ(hop_rank(h), 5u);
  EXPECT_EQ(hop_local(h), 0xFFFFFFFFu);
}

}  // namespace
}  // namespace loom
