// The `sched` service's policies over a fake transport (sched_fixture.h):
// EASY's reservation and backfill, easy-sjbf's order, the backfill depth,
// jobs ending exactly at the shadow time, and a long queue without a cap.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "sched/sched_fixture.h"

namespace loom::sched_test {
namespace {

TEST_F(SchedTest, EasyReservesForTheHeadAndBackfillsAroundIt) {
  start(config(2, 4, "easy"));
  clock.advance(10);
  alloc(1, nodes(1, 4, 1, 0, false, 100));  // rank 0 until t=110
  alloc(2, slots(2, 1, 0, 1000), 15);       // rank 1 cores 0-1, until t=1010
  EXPECT_EQ(settle(), (std::vector<uint64_t>{1, 2}));
  responses("sched.alloc");
  alloc(3, nodes(2, 4), 14);           // the head: needs both ranks whole, at t=1010
  alloc(4, slots(1, 1, 0, 50), 13);    // ends by then: backfills
  alloc(5, slots(1, 1, 0, 5000), 12);  // would delay the head: waits
  alloc(6, slots(1), 11);              // no duration: waits
  EXPECT_EQ(settle(), std::vector<uint64_t>{4});
  auto rs = responses("sched.alloc");
  EXPECT_EQ(ids_of(rs, 0), std::vector<uint64_t>{4});
  ASSERT_EQ(ids_of(rs, 1), std::vector<uint64_t>{3});
  Json a = rs[0]["type"] == 1 ? rs[0] : rs[1];
  EXPECT_EQ(a["annotations"]["sched"]["reason_pending"], "insufficient resources");
  EXPECT_EQ(a["annotations"]["sched"]["t_estimate"], SteppedClock::kEpoch + 1010);
  EXPECT_EQ(status()["policy"], "easy");
}

// One rank of 4 cores at t=10: job 1 holds 2 of them until t=110, job 2
// (the head) needs all 4, so its reservation is t=110. Two candidates of
// 2 cores both end by then; only one can start, and the policies differ.
TEST_F(SchedTest, EasySjbfTriesTheShortestCandidateFirst) {
  auto run = [&](const std::string& policy) {
    start(config(1, 4, policy));
    clock.advance(10);
    alloc(1, slots(2, 1, 0, 100), 20);
    EXPECT_EQ(settle(), std::vector<uint64_t>{1});
    alloc(2, slots(4, 1, 0, 10), 19);
    alloc(3, slots(2, 1, 0, 90), 18);  // first in queue order: ends at 100
    alloc(4, slots(2, 1, 0, 50), 17);  // shortest: ends at 60
    auto started = settle();
    auto rs = responses("sched.alloc");
    EXPECT_EQ(ids_of(rs, 1), std::vector<uint64_t>{2});
    sched.reset();
    sent.clear();
    return started;
  };
  EXPECT_EQ(run("easy"), std::vector<uint64_t>{3});
  EXPECT_EQ(run("easy-sjbf"), std::vector<uint64_t>{4});
}

TEST_F(SchedTest, EasySjbfTriesJobsWithoutADurationLastAndFollowsPriorityChanges) {
  start(config(1, 4, "easy-sjbf"));
  clock.advance(10);
  alloc(1, slots(2, 1, 0, 100), 20);  // cores 0-1 until t=110
  settle();
  alloc(2, slots(4, 1, 0, 10), 19);           // the head
  alloc(3, nodes(1, 2, 1, 0, false, 0), 18);  // no duration: runs past t=110, and the head needs its cores
  alloc(4, slots(1, 1, 0, 500), 17);          // past t=110 too
  alloc(5, slots(1, 1, 0, 400), 16);
  EXPECT_EQ(settle(), std::vector<uint64_t>{});
  // Two short ones: the one of equal duration and higher priority first.
  alloc(6, slots(2, 1, 0, 30), 10);
  alloc(7, slots(2, 1, 0, 30), 11);
  EXPECT_EQ(settle(), std::vector<uint64_t>{7});
  EXPECT_EQ(sched->pending(), 5u);
  EXPECT_EQ(sched->pool().alarms(), 0u);
}

TEST_F(SchedTest, BackfillDepthCapsTheCandidatesTriedPerPass) {
  auto run = [&](int64_t depth) {
    SchedConfig c = config(1, 4, "easy");
    c.backfill_depth = depth;
    start(c);
    clock.advance(10);
    alloc(1, slots(2, 1, 0, 100), 20);  // cores 0-1 until t=110
    settle();
    alloc(2, slots(4, 1, 0, 10), 19);    // the head, at t=110
    alloc(3, slots(2, 1, 0, 1000), 18);  // would delay the head
    alloc(4, slots(1, 1, 0, 50), 17);    // ends by then
    auto started = settle();
    sched.reset();
    sent.clear();
    return started;
  };
  EXPECT_EQ(run(1), std::vector<uint64_t>{});  // only job 3 is tried
  EXPECT_EQ(run(0), std::vector<uint64_t>{4});
  EXPECT_EQ(run(2), std::vector<uint64_t>{4});
}

// Four ranks of one core at t=10: jobs 1 and 2 end exactly at t=100, job
// 3 at t=200 (or job 2 at t=101). The head needs 2 cores; a long job needs
// the last free core. It may start only if both jobs ending at t=100 count
// as ending at the shadow time: then 3 cores are free at t=100, one more
// than the head needs.
TEST_F(SchedTest, EasyCountsEveryJobEndingExactlyAtTheShadowTime) {
  auto run = [&](double job2) {
    start(config(4, 1, "easy"));
    clock.advance(10);
    const double t0 = clock.wall() - 10;
    alloc(1, slots(1, 1, 0, 90), 20);
    alloc(2, slots(1, 1, 0, job2), 19);
    alloc(3, slots(1, 1, 0, 190), 18);
    EXPECT_EQ(settle().size(), 3u);
    responses("sched.alloc");
    alloc(4, slots(2, 1, 0, 10), 17);    // the head
    alloc(5, slots(1, 1, 0, 5000), 16);  // needs the core job 1 or 2 leaves at t=100
    auto started = settle();
    auto rs = responses("sched.alloc");
    for (auto& r : rs) {
      if (r["id"] == 4) {
        EXPECT_EQ(r["annotations"]["sched"]["t_estimate"], t0 + 100);
      }
    }
    EXPECT_EQ(sched->pool().alarms(), 0u);
    sched.reset();
    sent.clear();
    return started;
  };
  EXPECT_EQ(run(90), std::vector<uint64_t>{5});
  EXPECT_EQ(run(91), std::vector<uint64_t>{});
}

// A candidate that ends exactly at the shadow time is gone by then: it may
// take the cores the head is waiting for. Its R's expiration is the same
// sum (start + duration) the rule compared.
TEST_F(SchedTest, EasyBackfillsAJobEndingExactlyAtTheShadowTime) {
  start(config(1, 4, "easy"));
  clock.advance(10);
  alloc(1, slots(2, 1, 0, 100), 20);  // until t=110
  settle();
  responses("sched.alloc");
  alloc(2, slots(4, 1, 0, 10), 19);   // the head, at t=110
  alloc(3, slots(2, 1, 0, 101), 18);  // t=111: too late
  alloc(4, slots(2, 1, 0, 100), 17);  // t=110 exactly
  EXPECT_EQ(settle(), std::vector<uint64_t>{4});
  auto rs = responses("sched.alloc");
  for (auto& r : rs) {
    if (r["type"] == 0) {
      EXPECT_EQ(r["R"]["execution"]["expiration"], SteppedClock::kEpoch + 110);
    }
  }
}

// A long queue and no backfill cap, on 100 ranks: the pass goes through
// every candidate, and keeps the head's reservation.
// (1) 100 single-core ranks, as a trace of 100 processors is simulated:
// half the cores busy until t=120..610, a head needing all 100 (so its
// reservation is t=610), then 600 candidates too long to end by then and
// 1,400 of any length, of 1-64 cores. Something starts (from beyond the
// default cap of 500), the head does not, and what starts ends by t=610 and
// fits in the 50 free cores. (2) 100 ranks of 4 cores with one core of each
// busy, and 2,000 candidates wanting 2 whole nodes: each passes the core
// count and fails the match, so none starts.
// (What such a pass costs is measured on real traces by bench/sim.sh, whose
// simulations schedule without a cap.)
TEST_F(SchedTest, ALongQueueWithoutACapIsWalkedWholeAndKeepsTheReservation) {
  auto restart = [&](const std::string& policy, uint32_t cores) {
    sched.reset();
    sent.clear();
    SchedConfig c = config(100, cores, policy);
    c.backfill_depth = 0;
    start(c);
    clock.advance(10);
  };
  for (const char* policy : {"easy", "easy-sjbf"}) {
    restart(policy, 1);
    for (uint64_t id = 1; id <= 50; ++id) alloc(id, slots(1, 1, 0, 100 + 10 * id), 100);
    settle();
    responses("sched.alloc");
    std::mt19937 rng(7);
    std::map<uint64_t, std::pair<uint32_t, double>> asked;  // id → cores, duration
    alloc(51, slots(100, 1, 0, 1000), 99);                  // the head
    for (uint64_t id = 52; id < 52 + 2000; ++id) {
      uint32_t cores = 1 + rng() % 64;
      double duration = id < 52 + 600 ? 601 + rng() % 3000 : 1 + rng() % 3600;
      asked[id] = {cores, duration};
      alloc(id, slots(cores, 1, 0, duration), 50);
    }
    settle();
    auto started = ids_of(responses("sched.alloc"), 0);
    EXPECT_FALSE(started.empty()) << policy;
    uint32_t used = 0;
    for (uint64_t id : started) {
      ASSERT_TRUE(asked.count(id)) << policy << ": job " << id << " started";
      EXPECT_LE(asked[id].second, 600) << policy << ": job " << id << " delays the head";
      used += asked[id].first;
    }
    EXPECT_LE(used, 50u) << policy;
    EXPECT_EQ(sched->pool().alarms(), 0u) << policy;
  }
  restart("easy", 4);
  alloc(1, nodes(100, 1, 1, 0, false, 1000), 100);  // core 0 of every rank
  settle();
  responses("sched.alloc");
  alloc(2, nodes(100, 1, 1, 0, true, 1000), 99);  // the head: every rank whole
  for (uint64_t id = 3; id < 3 + 2000; ++id) alloc(id, nodes(2, 1, 1, 0, true, 50), 50);
  EXPECT_EQ(settle(), std::vector<uint64_t>{});
  EXPECT_EQ(ids_of(responses("sched.alloc"), 0), std::vector<uint64_t>{});
  EXPECT_EQ(sched->pool().alarms(), 0u);
}

TEST_F(SchedTest, EasyWithoutEstimatesBehavesLikeFcfs) {
  start(config(1, 2, "easy"));
  alloc(1, slots(1));  // no duration: the head's start cannot be planned
  alloc(2, slots(2));
  alloc(3, slots(1, 1, 0, 10));
  EXPECT_EQ(settle(), std::vector<uint64_t>{1});
  auto rs = responses("sched.alloc");
  ASSERT_EQ(ids_of(rs, 1), std::vector<uint64_t>{2});
  EXPECT_FALSE(rs.back()["annotations"]["sched"].contains("t_estimate"));
}

TEST_F(SchedTest, EasyMovesTheEstimateToTheNewHead) {
  start(config(1, 2, "easy"));
  alloc(1, slots(2, 1, 0, 100));
  settle();
  alloc(2, slots(2, 1, 0, 100), 10);
  settle();
  auto rs = responses("sched.alloc");
  ASSERT_EQ(ids_of(rs, 1), std::vector<uint64_t>{2});
  EXPECT_EQ(rs.back()["annotations"]["sched"]["t_estimate"], SteppedClock::kEpoch + 100);
  alloc(3, slots(1, 1, 0, 100), 20);  // higher priority: now it holds the reservation
  settle();
  rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0], Json::parse(R"({"id":3,"type":1,"annotations":{"sched":{"reason_pending":"insufficient resources",
      "t_estimate":1700000100.0}}})"));
  EXPECT_EQ(rs[1], Json::parse(R"({"id":2,"type":1,"annotations":{"sched":{"reason_pending":"insufficient resources",
      "t_estimate":null}}})"));
}

}  // namespace
}  // namespace loom::sched_test
