#include "base/stepped_clock.h"

#include <cmath>
#include <utility>

namespace loom {

class SteppedClock::SteppedTimer final : public Timer {
 public:
  explicit SteppedTimer(SteppedClock& clock) : clock_(clock) { clock_.timers_.insert(this); }
  ~SteppedTimer() override { clock_.timers_.erase(this); }
  void arm(double seconds, std::function<void()> fn) override {
    if (!(seconds > 0)) seconds = 0;  // negative or NaN
    if (seconds > kLongestWait) seconds = kLongestWait;
    armed_ = true;
    deadline_ = clock_.now_ + seconds;
    order_ = ++clock_.armings_;
    fn_ = std::move(fn);
  }
  void cancel() override {
    armed_ = false;
    fn_ = nullptr;
  }
  bool armed() const override { return armed_; }

 private:
  friend class SteppedClock;
  // Runs the callback, which may destroy this timer: nothing of it is
  // touched afterwards.
  void fire() {
    armed_ = false;
    auto fn = std::move(fn_);
    fn_ = nullptr;
    fn();
  }
  SteppedClock& clock_;
  bool armed_ = false;
  double deadline_ = 0;
  uint64_t order_ = 0;  // arming order, to break ties between equal deadlines
  std::function<void()> fn_;
};

SteppedClock::~SteppedClock() = default;

std::unique_ptr<Timer> SteppedClock::make_timer() { return std::make_unique<SteppedTimer>(*this); }

void SteppedClock::advance(double seconds) {
  if (!(seconds > 0)) seconds = 0;
  double until = now_ + seconds;
  while (SteppedTimer* t = next_due(until)) {
    now_ = t->deadline_;
    t->fire();
  }
  now_ = until;
}

size_t SteppedClock::armed_timers() const {
  size_t n = 0;
  for (auto* t : timers_) n += t->armed_;
  return n;
}

SteppedClock::SteppedTimer* SteppedClock::next_due(double until) const {
  SteppedTimer* best = nullptr;
  for (auto* t : timers_) {
    if (!t->armed_ || t->deadline_ > until) continue;
    if (!best || t->deadline_ < best->deadline_ || (t->deadline_ == best->deadline_ && t->order_ < best->order_)) {
      best = t;
    }
  }
  return best;
}

}  // namespace loom
