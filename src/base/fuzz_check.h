// What the libFuzzer targets (src/*/*_fuzz.cpp) share: a check that aborts
// with its place and condition (libFuzzer then saves the input), and a
// small deterministic generator seeded from the input, so that any choice
// a target makes (where to cut a stream, which chunk sizes) reproduces from
// the input alone.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

namespace loom::fuzz {

struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

inline uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// An error meant for people: one line, not empty.
inline bool one_line(std::string_view text) { return !text.empty() && text.find('\n') == std::string_view::npos; }

}  // namespace loom::fuzz
