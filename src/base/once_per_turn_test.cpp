#include "base/once_per_turn.h"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <optional>

#include "base/virtual_clock.h"

namespace loom {
namespace {

TEST(OncePerTurn, RunsOnceForEveryRequestOfOneTurn) {
  asio::io_context io;
  int runs = 0;
  OncePerTurn once(io, [&] { ++runs; });
  once.request();
  once.request();
  once.request();
  EXPECT_TRUE(once.pending());
  EXPECT_EQ(runs, 0);  // not before the turn ends
  io.run();
  EXPECT_EQ(runs, 1);
  EXPECT_FALSE(once.pending());
}

TEST(OncePerTurn, RequestsAfterItRanRunItAgain) {
  asio::io_context io;
  int runs = 0;
  std::optional<OncePerTurn> once;
  once.emplace(io, [&] {
    if (++runs == 1) once->request();  // made while it runs: a later turn
  });
  once->request();
  io.run();
  EXPECT_EQ(runs, 2);
}

TEST(OncePerTurn, RunsAfterWorkPostedBeforeTheFirstRequest) {
  asio::io_context io;
  std::string order;
  OncePerTurn once(io, [&] { order += "f"; });
  asio::post(io, [&] {
    order += "a";
    once.request();
  });
  asio::post(io, [&] {
    order += "b";
    once.request();
  });
  io.run();
  EXPECT_EQ(order, "abf");
}

TEST(OncePerTurn, DoesNotRunOnceDestroyed) {
  asio::io_context io;
  int runs = 0;
  std::optional<OncePerTurn> once;
  once.emplace(io, [&] { ++runs; });
  once->request();
  once.reset();
  io.run();
  EXPECT_EQ(runs, 0);
}

// With the simulator's clock a turn lasts until the loop is idle: the
// work runs when the clock is asked to run what waits for idleness, not on
// the loop's next turn, and once however often it was requested.
TEST(OncePerTurn, WithAVirtualClockWaitsForIdleness) {
  asio::io_context io;
  VirtualClock clock;
  int runs = 0;
  OncePerTurn once(io, clock, Clock::IdleOrder::kDecide, [&] { ++runs; });
  once.request();
  asio::post(io, [&] { once.request(); });
  io.run();
  EXPECT_EQ(runs, 0);
  EXPECT_TRUE(once.pending());
  EXPECT_TRUE(clock.run_idle_one());
  EXPECT_FALSE(clock.run_idle_one());
  EXPECT_EQ(runs, 1);
  EXPECT_FALSE(once.pending());
}

}  // namespace
}  // namespace loom
