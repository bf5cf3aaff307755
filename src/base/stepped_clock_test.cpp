// SteppedClock (stepped_clock.h): the virtual time of the services' unit
// tests must fire timers in deadline order, at their deadlines, and survive
// callbacks that re-arm or destroy timers.
#include "base/stepped_clock.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace loom {
namespace {

TEST(SteppedClock, FiresDueTimersInDeadlineOrderEachAtItsDeadline) {
  SteppedClock clock;
  std::vector<std::string> fired;
  auto a = clock.make_timer(), b = clock.make_timer(), c = clock.make_timer(), d = clock.make_timer();
  a->arm(3, [&] { fired.push_back("a@" + std::to_string(clock.now())); });
  b->arm(1, [&] { fired.push_back("b@" + std::to_string(clock.now())); });
  c->arm(3, [&] { fired.push_back("c@" + std::to_string(clock.now())); });  // same deadline, armed after a
  d->arm(10, [&] { fired.push_back("d"); });
  EXPECT_EQ(clock.armed_timers(), 4u);
  clock.advance(0.5);
  EXPECT_TRUE(fired.empty());
  clock.advance(2.5);
  EXPECT_EQ(fired, (std::vector<std::string>{"b@1.000000", "a@3.000000", "c@3.000000"}));
  EXPECT_EQ(clock.now(), 3.0);
  EXPECT_EQ(clock.wall(), SteppedClock::kEpoch + 3);
  EXPECT_TRUE(d->armed());
  EXPECT_FALSE(a->armed());
}

TEST(SteppedClock, ACallbackMayRearmCancelOrDestroyTimers) {
  SteppedClock clock;
  int ticks = 0;
  auto tick = clock.make_timer();
  std::function<void()> again = [&] {
    ++ticks;
    tick->arm(1, again);  // re-armed from its own callback: runs again within the step
  };
  tick->arm(1, again);
  auto victim = clock.make_timer();
  victim->arm(2.5, [] { FAIL() << "cancelled by the other timer"; });
  auto killer = clock.make_timer();
  killer->arm(2, [&] {
    victim->cancel();
    killer.reset();  // destroys the timer whose callback runs
  });
  clock.advance(5);
  EXPECT_EQ(ticks, 5);
  EXPECT_EQ(killer, nullptr);
  EXPECT_EQ(clock.armed_timers(), 1u);  // tick, for 6
}

TEST(SteppedClock, OddWaitsAndStepsAreSafe) {
  SteppedClock clock;
  int fired = 0;
  auto t = clock.make_timer();
  t->arm(-5, [&] { ++fired; });  // negative: now
  clock.advance(0);
  EXPECT_EQ(fired, 1);
  t->arm(std::nan(""), [&] { ++fired; });  // NaN: now
  clock.advance(std::nan(""));             // no step at all
  EXPECT_EQ(fired, 2);
  EXPECT_EQ(clock.now(), 0.0);
  t->arm(1e300, [&] { ++fired; });  // at most kLongestWait
  clock.advance(kLongestWait + 1);
  EXPECT_EQ(fired, 3);
}

}  // namespace
}  // namespace loom
