// VirtualClock: the simulator's time (docs/simulator.md). It stands still
// while the instance works; the simulation's loop moves it, when nothing
// is left to do at the current instant, to the next armed timer or the
// next event of the trace. Timers fire in deadline order, ties in the
// order they were armed.
//
// Work deferred to idleness (defer_to_idle: the scheduler's pass) waits
// until the loop has handled every message of the instant, so that
// everything that happens at one time is seen by one pass.
//
// Its timers must not outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <set>
#include <tuple>

#include "base/clock.h"

namespace loom {

class VirtualClock final : public Clock {
 public:
  // wall() is epoch + now(): the trace's own epoch.
  explicit VirtualClock(double epoch = 0) : epoch_(epoch) {}
  ~VirtualClock() override;
  VirtualClock(const VirtualClock&) = delete;
  VirtualClock& operator=(const VirtualClock&) = delete;

  double now() const override { return now_; }
  double wall() const override { return epoch_ + now_; }
  std::unique_ptr<Timer> make_timer() override;
  bool defer_to_idle(std::function<void()>& fn, IdleOrder order) override;

  // The earliest deadline of an armed timer, if one is armed.
  std::optional<double> next_deadline() const;
  // Moves time to `t` (never backwards).
  void move_to(double t);
  // Runs the earliest timer due by now(), if one is; false if none is.
  bool fire_one();
  // Runs the oldest work deferred to idleness, decisions before writes, if
  // there is; false if not.
  bool run_idle_one();
  size_t armed_timers() const { return armed_.size(); }

 private:
  class VirtualTimer;
  // (deadline, arming order, timer): the armed timers in firing order.
  using Key = std::tuple<double, uint64_t, VirtualTimer*>;

  double epoch_;
  double now_ = 0;
  uint64_t armings_ = 0;
  std::set<Key> armed_;
  std::deque<std::function<void()>> idle_writes_;
  std::deque<std::function<void()>> idle_decisions_;
};

}  // namespace loom
