// libFuzzer target for what a peer can send us: a byte stream of frames.
//
// For any input, decoding must not crash and must not depend on how the
// stream is cut into reads. Every message it yields must pass
// validate_message, re-encode to exactly the bytes it came from, decode
// again to the same fields, and its payload must go through parse_json
// (and back through dump_json) without harm.
//
// The same bytes are also read as a stream that opens with a greeting
// (docs/protocols/messages.md): it must be refused unless it begins with a
// client's greeting, and then yield what the bytes after it yield.
//
// Build with the `fuzz` preset; ctest runs it for a bounded time on the
// seeds in fuzz_corpus/: one tiny stream per kind of message (a request, a
// streaming one, a response with a route, an error response, an event then a
// no-response request, and an event whose payload has a number too large
// for a double, which once made parse_json throw).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "base/fuzz_check.h"
#include "msg/codec.h"
#include "msg/json.h"
#include "msg/message.h"

namespace loom {
namespace {

auto fields(const Message& m) {
  return std::tie(m.type, m.flags, m.matchtag, m.nodeid, m.userid, m.rolemask, m.errnum, m.seq, m.topic, m.route,
                  m.payload);
}

struct Outcome {
  std::vector<Message> messages;
  bool failed = false;  // the decoder reported EPROTO
};

using fuzz::fnv1a;
using fuzz::SplitMix;

// Feeds `bytes` in reads of 1..max_read bytes (all at once when 0),
// draining the decoder after each read, until the first error. With
// `greeting`, the stream must begin with a greeting of that role.
Outcome decode_stream(std::string_view bytes, size_t max_frame, size_t max_read, uint64_t seed,
                      std::optional<PeerRole> greeting = std::nullopt) {
  FrameDecoder d(max_frame);
  if (greeting) d.expect_greeting(*greeting);
  SplitMix rng{seed};
  Outcome out;
  size_t fed = 0;
  do {
    size_t n = bytes.size() - fed;
    if (max_read) n = std::min<size_t>(n, 1 + rng.next() % max_read);
    d.feed(bytes.data() + fed, n);
    fed += n;
    for (;;) {
      auto next = d.next();
      if (!next.ok()) {
        int code = next.error().code;
        FUZZ_CHECK(code == EPROTO || (greeting && (code == EPROTONOSUPPORT || code == EPROTOTYPE)));
        FUZZ_CHECK(!next.error().text.empty());
        out.failed = true;
        return out;
      }
      if (!next->has_value()) break;
      out.messages.push_back(std::move(**next));
    }
  } while (fed < bytes.size());
  return out;
}

void check_payload(const std::string& payload) {
  if (payload.empty()) return;
  auto j = parse_json(payload);
  if (!j.ok()) {
    FUZZ_CHECK(j.error().code == EPROTO && !j.error().text.empty());
    return;
  }
  // What we accepted we can write out, and read back within the same limit.
  auto back = parse_json(dump_json(*j));
  FUZZ_CHECK(back.ok());
}

void check_message(const Message& m, std::string_view original_frame) {
  FUZZ_CHECK(validate_message(m).ok());
  std::string frame = encode_message(m);
  FUZZ_CHECK(frame == original_frame);
  auto again = decode_body(std::string_view(frame).substr(4));
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(fields(*again) == fields(m));
  check_payload(m.payload);
  if (m.is_response() && m.errnum != 0) (void)error_text(m);
}

}  // namespace
}  // namespace loom

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loom;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  uint64_t seed = fnv1a(bytes);

  Outcome whole = decode_stream(bytes, kMaxFrameSize, 0, seed);
  size_t at = 0;
  for (const Message& m : whole.messages) {
    FUZZ_CHECK(at + 4 <= bytes.size());
    uint32_t len = 0;
    for (int i = 0; i < 4; ++i) len |= uint32_t{static_cast<uint8_t>(bytes[at + i])} << (8 * i);
    check_message(m, bytes.substr(at, 4 + size_t{len}));
    at += 4 + size_t{len};
  }

  // However the stream is cut into reads, the same messages and the same end.
  for (size_t max_read : {size_t{1}, size_t{7}, size_t{64}}) {
    Outcome split = decode_stream(bytes, kMaxFrameSize, max_read, seed);
    FUZZ_CHECK(split.failed == whole.failed);
    FUZZ_CHECK(split.messages.size() == whole.messages.size());
    for (size_t i = 0; i < split.messages.size(); ++i) {
      FUZZ_CHECK(fields(split.messages[i]) == fields(whole.messages[i]));
    }
  }

  // The same stream behind a greeting: refused unless its first 8 bytes are
  // a client's greeting (as check_greeting says), and then exactly what
  // the rest decodes to, however it is cut.
  for (size_t max_read : {size_t{0}, size_t{3}}) {
    Outcome greeted = decode_stream(bytes, kMaxFrameSize, max_read, seed, PeerRole::kClient);
    bool valid =
        bytes.size() >= kGreetingSize && check_greeting(bytes.substr(0, kGreetingSize), PeerRole::kClient).ok();
    if (!valid) {
      FUZZ_CHECK(greeted.messages.empty());
      FUZZ_CHECK(greeted.failed || bytes.size() < kGreetingSize);
      continue;
    }
    Outcome rest = decode_stream(bytes.substr(kGreetingSize), kMaxFrameSize, 0, seed);
    FUZZ_CHECK(greeted.failed == rest.failed);
    FUZZ_CHECK(greeted.messages.size() == rest.messages.size());
    for (size_t i = 0; i < rest.messages.size(); ++i) {
      FUZZ_CHECK(fields(greeted.messages[i]) == fields(rest.messages[i]));
    }
  }

  // A tighter frame limit only cuts the stream short: what it yields is a
  // prefix of what the default limit yields.
  size_t small_max = size == 0 ? 0 : static_cast<uint8_t>(bytes[0]) * 4;
  Outcome limited = decode_stream(bytes, small_max, 0, seed);
  FUZZ_CHECK(limited.messages.size() <= whole.messages.size());
  for (size_t i = 0; i < limited.messages.size(); ++i) {
    FUZZ_CHECK(fields(limited.messages[i]) == fields(whole.messages[i]));
  }
  return 0;
}
