#include "base/virtual_clock.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace loom {
namespace {

// Fires every timer due by now(), as the simulation's loop does.
int fire_all(VirtualClock& c) {
  int n = 0;
  while (c.fire_one()) ++n;
  return n;
}

TEST(VirtualClock, StandsStillUntilMovedAndFiresInDeadlineThenArmingOrder) {
  VirtualClock c(1000);
  std::vector<std::string> fired;
  auto a = c.make_timer(), b = c.make_timer(), d = c.make_timer();
  a->arm(5, [&] { fired.push_back("a@" + std::to_string(int(c.now()))); });
  b->arm(3, [&] { fired.push_back("b@" + std::to_string(int(c.now()))); });
  d->arm(5, [&] { fired.push_back("d@" + std::to_string(int(c.now()))); });
  EXPECT_EQ(c.wall(), 1000);
  EXPECT_EQ(fire_all(c), 0);  // nothing is due at 0
  ASSERT_EQ(c.next_deadline(), 3.0);
  c.move_to(*c.next_deadline());
  EXPECT_EQ(fire_all(c), 1);
  ASSERT_EQ(c.next_deadline(), 5.0);
  c.move_to(5);
  EXPECT_EQ(fire_all(c), 2);
  EXPECT_EQ(fired, (std::vector<std::string>{"b@3", "a@5", "d@5"}));
  EXPECT_FALSE(c.next_deadline().has_value());
  EXPECT_EQ(c.wall(), 1005);
  c.move_to(2);  // never backwards
  EXPECT_EQ(c.now(), 5);
}

TEST(VirtualClock, CancelledRearmedAndDestroyedTimersLeaveTheQueue) {
  VirtualClock c;
  int runs = 0;
  auto a = c.make_timer();
  a->arm(1, [&] { ++runs; });
  a->arm(2, [&] { ++runs; });  // re-arming replaces the first arming
  EXPECT_EQ(c.armed_timers(), 1u);
  EXPECT_EQ(c.next_deadline(), 2.0);
  a->cancel();
  EXPECT_EQ(c.armed_timers(), 0u);
  {
    auto gone = c.make_timer();
    gone->arm(1, [&] { ++runs; });
  }
  EXPECT_EQ(c.armed_timers(), 0u);
  c.move_to(10);
  EXPECT_EQ(fire_all(c), 0);
  EXPECT_EQ(runs, 0);
  // A callback may destroy its own timer, or arm one due at once (it runs
  // at the same instant).
  std::unique_ptr<Timer> self = c.make_timer();
  auto next = c.make_timer();
  self->arm(0, [&] {
    self.reset();
    next->arm(0, [&] { ++runs; });
  });
  EXPECT_EQ(fire_all(c), 2);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(c.now(), 10);
}

TEST(VirtualClock, WorkDeferredToIdlenessRunsInOrderWhenAsked) {
  VirtualClock c;
  std::vector<int> ran;
  for (int i = 0; i < 3; ++i) {
    std::function<void()> fn = [&ran, i] { ran.push_back(i); };
    EXPECT_TRUE(c.defer_to_idle(fn, Clock::IdleOrder::kDecide));
  }
  EXPECT_TRUE(ran.empty());
  while (c.run_idle_one()) {
  }
  EXPECT_EQ(ran, (std::vector<int>{0, 1, 2}));
  EXPECT_FALSE(c.run_idle_one());
}

// Decisions go before writes, whenever they were deferred: a write (the
// job manager's commit) records what the instant's decisions led to too.
// A decision deferred by a write as it runs still goes before the next
// write.
TEST(VirtualClock, DeferredDecisionsRunBeforeDeferredWrites) {
  VirtualClock c;
  std::string ran;
  auto defer = [&](char what, Clock::IdleOrder order, std::function<void()> then = nullptr) {
    std::function<void()> fn = [&ran, what, then] {
      ran += what;
      if (then) then();
    };
    EXPECT_TRUE(c.defer_to_idle(fn, order));
  };
  defer('w', Clock::IdleOrder::kWrite, [&] { defer('y', Clock::IdleOrder::kDecide); });
  defer('d', Clock::IdleOrder::kDecide);
  defer('v', Clock::IdleOrder::kWrite);
  defer('e', Clock::IdleOrder::kDecide);
  while (c.run_idle_one()) {
  }
  EXPECT_EQ(ran, "dewyv");
}

}  // namespace
}  // namespace loom
