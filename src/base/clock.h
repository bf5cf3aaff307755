// Every timer and timestamp in a broker goes through one Clock, so that the
// simulator can run the same services in virtual time and tests can step it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace asio {
class io_context;
}

namespace loom {

// The longest a timer waits (about 31 years): a longer arming waits this
// long, which in practice is forever.
inline constexpr double kLongestWait = 1e9;

// A one-shot timer. Destroying it or calling cancel() guarantees the
// callback will not run afterwards.
class Timer {
 public:
  virtual ~Timer() = default;
  // (Re)arm: run `fn` once, `seconds` from now (at most kLongestWait; a
  // negative or NaN wait is 0). Re-arming cancels the previous arming.
  virtual void arm(double seconds, std::function<void()> fn) = 0;
  virtual void cancel() = 0;
  virtual bool armed() const = 0;
};

class Clock {
 public:
  virtual ~Clock() = default;
  // Seconds on a monotonic scale, for intervals and deadlines.
  virtual double now() const = 0;
  // Seconds since the Unix epoch, for timestamps people read (eventlogs).
  virtual double wall() const = 0;
  virtual std::unique_ptr<Timer> make_timer() = 0;
  // What waits for idleness runs in this order: decisions (the
  // scheduler's pass) first, then writes (the job manager's commit), so
  // that one commit records what the instant's decisions led to as well.
  enum class IdleOrder { kWrite, kDecide };
  // Takes `fn` to run once the loop has nothing else to do at the current
  // instant, and says so; false (the default, `fn` untouched): the caller
  // runs it on the loop's next turn. Only the simulator's clock takes it
  // (base/virtual_clock.h), so that everything that happens at one
  // virtual time is seen by one scheduling pass, and is written in as few
  // commits as the work's own order allows.
  virtual bool defer_to_idle(std::function<void()>& /*fn*/, IdleOrder /*order*/) { return false; }
};

// The clock of the real world, timers on an Asio io_context.
std::unique_ptr<Clock> make_real_clock(asio::io_context& io);

}  // namespace loom
