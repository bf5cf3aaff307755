// Job ids: Flux RFC 19 FLUIDs. 64 bits: [40 ms since the epoch | 14 generator
// | 10 sequence]. Ids from one generator strictly increase, so they are
// time-ordered and unique; restore() carries that across a restart.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/ids.h"
#include "base/result.h"

namespace loom {

using JobId = StrongId<struct JobIdTag, uint64_t>;

class FluidGenerator {
 public:
  // `epoch_ms`: the instance's epoch (ms since the Unix epoch, kept in the
  // KVS so it outlives restarts). `generator`: 0..16383, e.g. the rank.
  FluidGenerator(uint64_t epoch_ms, uint32_t generator);
  // The next id at wall time `now_ms`. When the clock stalls or steps back,
  // or 1024 ids were issued in one millisecond, the timestamp moves ahead
  // of the clock instead of repeating an id.
  JobId next(uint64_t now_ms);
  // Never issue an id at or below `last` (from the eventlogs after a restart).
  void restore(JobId last);

 private:
  uint64_t epoch_ms_;
  uint32_t generator_;
  uint64_t last_ts_ = 0;
  uint32_t seq_ = 0;
  bool started_ = false;
};

inline constexpr uint64_t kFluidTimestampBits = 40;
inline constexpr uint64_t kFluidGeneratorBits = 14;
inline constexpr uint64_t kFluidSequenceBits = 10;

// "ƒuZZybuNNy" (RFC 19 F58, U+0192 prefix).
std::string encode_f58(JobId id);
// Accepts decimal, F58 (ƒ or f prefix), 0x hex and dotted hex, ignoring
// surrounding whitespace: every command takes any of them.
Result<JobId> parse_jobid(std::string_view s);

}  // namespace loom
