#include "base/fluid.h"

#include <algorithm>
#include <cctype>

#include "base/assert.h"
#include "base/quote.h"

namespace loom {

namespace {
constexpr std::string_view kF58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
constexpr std::string_view kFlorin = "\xc6\x92";  // U+0192 in UTF-8
constexpr uint64_t kMaxSeq = (1u << kFluidSequenceBits) - 1;
constexpr uint64_t kMaxTs = (uint64_t{1} << kFluidTimestampBits) - 1;

Error bad(std::string_view s, const char* why) {
  return Error{EINVAL, "invalid job id " + quote_input(s) + ": " + why};
}

bool mul_add(uint64_t& acc, uint64_t base, uint64_t digit) {
  if (acc > (UINT64_MAX - digit) / base) return false;
  acc = acc * base + digit;
  return true;
}
}  // namespace

FluidGenerator::FluidGenerator(uint64_t epoch_ms, uint32_t generator) : epoch_ms_(epoch_ms), generator_(generator) {
  LOOM_ASSERT(generator < (1u << kFluidGeneratorBits));
}

JobId FluidGenerator::next(uint64_t now_ms) {
  uint64_t ts = now_ms > epoch_ms_ ? now_ms - epoch_ms_ : 0;
  if (!started_ || ts > last_ts_) {
    last_ts_ = ts;
    seq_ = 0;
    started_ = true;
  } else if (seq_ < kMaxSeq) {
    ++seq_;
  } else {
    ++last_ts_;  // 1024 ids in this millisecond: borrow the next one
    seq_ = 0;
  }
  LOOM_ASSERT(last_ts_ <= kMaxTs);
  return JobId{(last_ts_ << (kFluidGeneratorBits + kFluidSequenceBits)) | (uint64_t{generator_} << kFluidSequenceBits) |
               seq_};
}

void FluidGenerator::restore(JobId last) {
  uint64_t ts = last.value() >> (kFluidGeneratorBits + kFluidSequenceBits);
  auto gen = static_cast<uint32_t>((last.value() >> kFluidSequenceBits) & ((1u << kFluidGeneratorBits) - 1));
  auto seq = static_cast<uint32_t>(last.value() & kMaxSeq);
  // An id of another generator may sort above any sequence of ours in
  // the same millisecond: then only a later millisecond is safe.
  if (gen != generator_) seq = kMaxSeq;
  if (!started_ || ts > last_ts_ || (ts == last_ts_ && seq > seq_)) {
    started_ = true;
    last_ts_ = ts;
    seq_ = seq;
  }
}

std::string encode_f58(JobId id) {
  uint64_t v = id.value();
  std::string digits;
  do {
    digits.push_back(kF58Alphabet[v % 58]);
    v /= 58;
  } while (v > 0);
  std::reverse(digits.begin(), digits.end());
  return std::string(kFlorin) + digits;
}

Result<JobId> parse_jobid(std::string_view s) {
  std::string_view orig = s;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  if (s.empty()) return bad(orig, "empty");
  uint64_t v = 0;
  if (s.find('.') != std::string_view::npos) {  // dotted hex: 0017.e9fb.8df1.6c2e
    int groups = 0;
    for (size_t start = 0; start <= s.size(); ++groups) {
      size_t dot = s.find('.', start);
      std::string_view g = s.substr(start, dot == std::string_view::npos ? s.size() - start : dot - start);
      if (g.size() != 4) return bad(orig, "dotted hex wants four groups of four digits");
      for (char c : g) {
        if (!std::isxdigit(static_cast<unsigned char>(c))) return bad(orig, "not a hex digit");
        v = (v << 4) |
            static_cast<uint64_t>(std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(c) - 'a' + 10));
      }
      if (dot == std::string_view::npos) break;
      start = dot + 1;
    }
    if (groups != 3) return bad(orig, "dotted hex wants four groups of four digits");
    return JobId{v};
  }
  if (s.starts_with(kFlorin) || s.front() == 'f') {
    s.remove_prefix(s.front() == 'f' ? 1 : kFlorin.size());
    if (s.empty()) return bad(orig, "no digits after the f58 prefix");
    for (char c : s) {
      auto d = kF58Alphabet.find(c);
      if (d == std::string_view::npos) return bad(orig, "not an f58 digit");
      if (!mul_add(v, 58, d)) return bad(orig, "too large");
    }
    return JobId{v};
  }
  if (s.starts_with("0x")) {
    s.remove_prefix(2);
    if (s.empty() || s.size() > 16) return bad(orig, "hex wants 1 to 16 digits");
    for (char c : s) {
      if (!std::isxdigit(static_cast<unsigned char>(c))) return bad(orig, "not a hex digit");
      v = (v << 4) |
          static_cast<uint64_t>(std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(c) - 'a' + 10));
    }
    return JobId{v};
  }
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return bad(orig, "not a number");
    if (!mul_add(v, 10, static_cast<uint64_t>(c - '0'))) return bad(orig, "too large");
  }
  return JobId{v};
}

}  // namespace loom
