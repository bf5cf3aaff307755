#include "base/virtual_clock.h"

#include <utility>

namespace loom {

class VirtualClock::VirtualTimer final : public Timer {
 public:
  explicit VirtualTimer(VirtualClock& clock) : clock_(clock) {}
  ~VirtualTimer() override { cancel(); }
  void arm(double seconds, std::function<void()> fn) override {
    cancel();
    if (!(seconds > 0)) seconds = 0;  // negative or NaN
    if (seconds > kLongestWait) seconds = kLongestWait;
    key_ = Key{clock_.now_ + seconds, ++clock_.armings_, this};
    clock_.armed_.insert(key_);
    armed_ = true;
    fn_ = std::move(fn);
  }
  void cancel() override {
    if (!armed_) return;
    clock_.armed_.erase(key_);
    armed_ = false;
    fn_ = nullptr;
  }
  bool armed() const override { return armed_; }

 private:
  friend class VirtualClock;
  // Runs the callback, which may destroy this timer: nothing of it is
  // touched afterwards.
  void fire() {
    clock_.armed_.erase(key_);
    armed_ = false;
    auto fn = std::move(fn_);
    fn_ = nullptr;
    fn();
  }
  VirtualClock& clock_;
  bool armed_ = false;
  Key key_{};
  std::function<void()> fn_;
};

VirtualClock::~VirtualClock() = default;

std::unique_ptr<Timer> VirtualClock::make_timer() { return std::make_unique<VirtualTimer>(*this); }

bool VirtualClock::defer_to_idle(std::function<void()>& fn, IdleOrder order) {
  (order == IdleOrder::kWrite ? idle_writes_ : idle_decisions_).push_back(std::move(fn));
  return true;
}

std::optional<double> VirtualClock::next_deadline() const {
  if (armed_.empty()) return std::nullopt;
  return std::get<0>(*armed_.begin());
}

void VirtualClock::move_to(double t) {
  if (t > now_) now_ = t;
}

bool VirtualClock::fire_one() {
  if (armed_.empty() || std::get<0>(*armed_.begin()) > now_) return false;
  std::get<2>(*armed_.begin())->fire();
  return true;
}

bool VirtualClock::run_idle_one() {
  auto& queue = idle_decisions_.empty() ? idle_writes_ : idle_decisions_;
  if (queue.empty()) return false;
  auto fn = std::move(queue.front());
  queue.pop_front();
  fn();
  return true;
}

}  // namespace loom
