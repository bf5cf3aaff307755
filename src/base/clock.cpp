#include "base/clock.h"

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>

namespace loom {
namespace {

class RealTimer final : public Timer {
 public:
  explicit RealTimer(asio::io_context& io) : timer_(io) {}
  ~RealTimer() override { cancel(); }

  void arm(double seconds, std::function<void()> fn) override {
    cancel();
    armed_ = true;
    uint64_t gen = ++generation_;
    fn_ = std::move(fn);
    // The clock counts nanoseconds in 64 bits: a time limit of centuries
    // (or 1e308 s) would overflow into the past and fire at once. Beyond
    // kLongestWait a timer waits kLongestWait, in practice forever.
    double wait = seconds > 0 ? std::min(seconds, kLongestWait) : 0;  // NaN: 0
    timer_.expires_after(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(wait)));
    // The generation check makes a cancelled-then-rearmed timer ignore the
    // completion of its previous arming, even if that completion was already
    // queued when cancel() ran. `alive_` guards against a destroyed timer.
    timer_.async_wait([this, gen, alive = std::weak_ptr<int>(alive_)](const std::error_code& ec) {
      if (ec || alive.expired() || gen != generation_) return;
      armed_ = false;
      auto f = std::move(fn_);
      f();
    });
  }
  void cancel() override {
    ++generation_;
    armed_ = false;
    fn_ = nullptr;
    timer_.cancel();
  }
  bool armed() const override { return armed_; }

 private:
  asio::steady_timer timer_;
  std::function<void()> fn_;
  uint64_t generation_ = 0;
  bool armed_ = false;
  // Shared only with the completion handlers of this timer, to tell them
  // whether the timer still exists.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

class RealClock final : public Clock {
 public:
  explicit RealClock(asio::io_context& io) : io_(io) {}
  double now() const override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  double wall() const override {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }
  std::unique_ptr<Timer> make_timer() override { return std::make_unique<RealTimer>(io_); }

 private:
  asio::io_context& io_;
};

}  // namespace

std::unique_ptr<Clock> make_real_clock(asio::io_context& io) { return std::make_unique<RealClock>(io); }

}  // namespace loom
