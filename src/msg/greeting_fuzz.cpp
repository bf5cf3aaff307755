// libFuzzer target for the greeting (docs/protocols/messages.md,
// "Greeting"), the first bytes anyone who can connect to a broker's
// sockets sends, for each of the three roles a broker expects.
//
// For any input and expected role, check_greeting accepts exactly the
// 8 bytes encode_greeting writes for that role, and otherwise names the
// first thing wrong with the error its documentation gives (EPROTO: not a
// loom peer or reserved bytes set; EPROTONOSUPPORT: another version;
// EPROTOTYPE: another role), in one line. A FrameDecoder that expects the
// greeting agrees with it, however the bytes arrive: it waits while what
// came so far could still be a greeting, refuses as soon as it cannot, and
// past a good greeting hands on to the frames.
//
// Build with the `fuzz` preset; ctest runs it for a bounded time on the
// seeds in greeting_fuzz_corpus/.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/fuzz_check.h"
#include "msg/codec.h"

namespace loom {
namespace {

// What check_greeting should answer, from the layout alone:
//   magic "LOOM", version u8, role u8, reserved u16 (0)
int expected_code(std::string_view b, PeerRole role) {
  if (b.size() < kGreetingSize || b.substr(0, 4) != "LOOM") return EPROTO;
  if (static_cast<uint8_t>(b[4]) != kProtocolVersion) return EPROTONOSUPPORT;
  if (static_cast<uint8_t>(b[5]) != static_cast<uint8_t>(role)) return EPROTOTYPE;
  if (b[6] != 0 || b[7] != 0) return EPROTO;
  return 0;
}

void check_role(std::string_view bytes, PeerRole role, uint64_t seed) {
  std::string mine = encode_greeting(role);
  FUZZ_CHECK(mine.size() == kGreetingSize);
  FUZZ_CHECK(check_greeting(mine, role).ok());

  int want = expected_code(bytes, role);
  auto st = check_greeting(bytes, role);
  if (want == 0) {
    FUZZ_CHECK(st.ok());
    FUZZ_CHECK(bytes.substr(0, kGreetingSize) == mine);
  } else {
    FUZZ_CHECK(!st.ok());
    FUZZ_CHECK(st.error().code == want);
    FUZZ_CHECK(fuzz::one_line(st.error().text));
  }

  // The decoder, fed in small reads: undecided while the bytes so far are a
  // prefix of some greeting's magic, then the same verdict.
  fuzz::SplitMix rng{seed ^ static_cast<uint8_t>(role)};
  FrameDecoder d;
  d.expect_greeting(role);
  size_t fed = 0;
  for (;;) {
    size_t n = std::min<size_t>(bytes.size() - fed, 1 + rng.next() % 5);
    d.feed(bytes.data() + fed, n);
    fed += n;
    auto next = d.next();
    std::string_view so_far = bytes.substr(0, fed);
    bool magic_so_far = so_far.substr(0, 4) == std::string_view("LOOM").substr(0, std::min<size_t>(fed, 4));
    if (fed < kGreetingSize) {
      if (magic_so_far) {
        FUZZ_CHECK(next.ok() && !next->has_value());
      } else {
        FUZZ_CHECK(!next.ok() && next.error().code == EPROTO && fuzz::one_line(next.error().text));
        return;
      }
    } else if (want != 0) {
      FUZZ_CHECK(!next.ok() && next.error().code == want && fuzz::one_line(next.error().text));
      return;
    } else {
      // Past the greeting the frames decide; an error now is theirs.
      if (!next.ok()) FUZZ_CHECK(next.error().code == EPROTO);
      return;
    }
    if (fed == bytes.size()) return;
  }
}

}  // namespace
}  // namespace loom

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loom;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  uint64_t seed = fuzz::fnv1a(bytes);
  for (PeerRole role : {PeerRole::kClient, PeerRole::kBroker, PeerRole::kOverlay}) check_role(bytes, role, seed);
  return 0;
}
