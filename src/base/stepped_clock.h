// SteppedClock: virtual time for unit tests of services. Time stands
// still until advance(); then the timers that come due run one at a time
// in deadline order (ties: the order they were armed in), each seeing now() at its own deadline, so a test steps
// through kill escalations, retries and timeouts with no wall-clock wait.
//
//   SteppedClock clock;
//   auto t = clock.make_timer();
//   t->arm(5, [] { ... });
//   clock.advance(4.9);   // nothing yet
//   clock.advance(0.1);   // runs, with clock.now() == 5
//
// Its timers must not outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>

#include "base/clock.h"

namespace loom {

class SteppedClock final : public Clock {
 public:
  // What wall() adds to now(): an instant in 2023, so that timestamps look
  // like timestamps.
  static constexpr double kEpoch = 1.7e9;

  SteppedClock() = default;
  ~SteppedClock() override;
  SteppedClock(const SteppedClock&) = delete;
  SteppedClock& operator=(const SteppedClock&) = delete;

  double now() const override { return now_; }
  double wall() const override { return kEpoch + now_; }
  std::unique_ptr<Timer> make_timer() override;

  // Moves time forward by `seconds` (a negative or NaN step: none), running
  // every timer that comes due on the way. A callback may arm, cancel or
  // destroy timers, this one included; one armed for a time within the
  // step runs within it.
  void advance(double seconds);
  // Timers armed and not yet run or cancelled.
  size_t armed_timers() const;

 private:
  class SteppedTimer;
  SteppedTimer* next_due(double until) const;

  double now_ = 0;
  uint64_t armings_ = 0;
  std::set<SteppedTimer*> timers_;  // every live timer; each removes itself when destroyed
};

}  // namespace loom
