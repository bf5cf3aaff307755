// Tests of the scheduler's pure core, ResourcePool (pool.h): feasibility,
// matching, double-booking, partial free, drain and down, the EASY
// reservation and backfill rule. The `sched` service: sched_test.cpp.
#include "sched/pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "sched/test_util.h"

namespace loom {
namespace {

using test::nodes;
using test::R;
using test::show;
using test::slots;
using test::uniform;
using test::why;

// --- feasibility ---

TEST(PoolFeasible, NamesTheFirstReasonARequestCanNeverFit) {
  auto pool = uniform(4, 2);
  EXPECT_EQ(why(pool.feasible(slots(1, 3))), "3 cores per slot but a rank has at most 2 cores");
  EXPECT_EQ(why(pool.feasible(nodes(5))), "5 nodes requested but the instance has 4 ranks");
  EXPECT_EQ(why(pool.feasible(slots(1, 1, 2))), "2 gpus per slot but the instance has no gpus");
  EXPECT_EQ(why(pool.feasible(slots(8, 2))), "8 slots of 2 cores need 16 cores; the instance has 8");
  EXPECT_EQ(why(pool.feasible(nodes(2, 2, 2))),
            "2 slots of 2 cores per node need 4 cores on one rank; a rank has at most 2");
  EXPECT_EQ(why(pool.feasible(slots(4, 2))), "ok");
  EXPECT_EQ(why(pool.feasible(nodes(4, 1, 2, 0, true))), "ok");
}

TEST(PoolFeasible, CountsGpusPerRankAndInTotal) {
  auto pool = uniform(2, 4, 1);
  EXPECT_EQ(why(pool.feasible(slots(1, 1, 2))), "2 gpus per slot but a rank has at most 1 gpu");
  EXPECT_EQ(why(pool.feasible(slots(3, 1, 1))), "3 slots of 1 gpu need 3 gpus; the instance has 2");
  EXPECT_EQ(why(pool.feasible(nodes(1, 2, 1, 1))),
            "2 slots of 1 gpu per node need 2 gpus on one rank; a rank has at most 1");
  EXPECT_EQ(why(pool.feasible(slots(2, 1, 1))), "ok");
}

TEST(PoolFeasible, KnowsASlotCannotSpanRanks) {
  auto pool = uniform(4, 4);  // 16 cores, but only one 3-core slot per rank
  EXPECT_EQ(why(pool.feasible(slots(5, 3))),
            "5 slots requested but the instance holds at most 4 of that size (a slot must fit on one rank)");
  EXPECT_EQ(why(pool.feasible(slots(4, 3))), "ok");
}

TEST(PoolFeasible, CountsOnlyRanksBigEnoughForANode) {
  ResourcePool pool({{8, 0, "big"}, {2, 0, "small0"}, {2, 0, "small1"}});
  EXPECT_EQ(why(pool.feasible(nodes(2, 1, 4))), "2 nodes of 4 cores requested but only 1 of 3 ranks have that many");
  EXPECT_EQ(why(pool.feasible(nodes(1, 1, 4))), "ok");
  EXPECT_EQ(why(pool.feasible(nodes(3, 2, 1))), "ok");
}

TEST(PoolFeasible, IgnoresAllocationsDrainAndDown) {
  auto pool = uniform(2, 2);
  ASSERT_TRUE(pool.allocate(1, R({{0, "0-1"}, {1, "0-1"}})).ok());
  pool.drain(0, {"bad fan", 1});
  pool.set_up(1, false);
  EXPECT_EQ(why(pool.feasible(nodes(2, 1, 2, 0, true))), "ok");
  EXPECT_EQ(show(pool.match(slots(1))), "none");
}

// feasible() is true exactly when match() succeeds on an empty, healthy
// pool: a deny is never wrong and a feasible job is never stuck forever.
TEST(PoolFeasible, AgreesWithMatchOnAnEmptyPool) {
  std::mt19937 rng(42);
  auto pick = [&](uint32_t lo, uint32_t hi) { return std::uniform_int_distribution<uint32_t>(lo, hi)(rng); };
  int feasible = 0, infeasible = 0;
  for (int round = 0; round < 2000; ++round) {
    std::vector<RankInventory> inv;
    uint32_t size = pick(1, 5);
    for (uint32_t r = 0; r < size; ++r) inv.push_back({pick(1, 6), pick(0, 2) == 0 ? pick(1, 3) : 0, ""});
    ResourcePool pool(inv);
    Jobspec js = pick(0, 1) ? slots(pick(1, 12), pick(1, 4), pick(0, 3) == 0 ? pick(1, 2) : 0)
                            : nodes(pick(1, 6), pick(1, 3), pick(1, 4), pick(0, 3) == 0 ? pick(1, 2) : 0, pick(0, 1));
    bool ok = pool.feasible(js).ok();
    ok ? ++feasible : ++infeasible;
    ASSERT_EQ(ok, pool.match(js).has_value()) << "round " << round << ": " << why(pool.feasible(js));
  }
  EXPECT_GT(feasible, 200);  // both sides were exercised
  EXPECT_GT(infeasible, 200);
}

// --- matching ---

TEST(PoolMatch, FillsRanksInOrderWithTheLowestCoresFirst) {
  auto pool = uniform(3, 4);
  auto first = pool.match(slots(6));
  EXPECT_EQ(show(first), "0:0-3 1:0-1");
  ASSERT_TRUE(pool.allocate(1, *first).ok());
  EXPECT_EQ(show(pool.match(slots(3))), "1:2-3 2:0");
  EXPECT_EQ(show(pool.match(slots(7))), "none");
  EXPECT_EQ(show(pool.match(slots(6))), "1:2-3 2:0-3");
}

TEST(PoolMatch, KeepsEachSlotOnOneRank) {
  auto pool = uniform(2, 3);
  EXPECT_EQ(show(pool.match(slots(2, 2))), "0:0-1 1:0-1");
  EXPECT_EQ(show(pool.match(slots(3, 2))), "none");  // 6 cores free, but no rank holds two 2-core slots
}

TEST(PoolMatch, GivesEachNodeItsSlotsOnDistinctRanks) {
  auto pool = uniform(3, 4);
  ASSERT_TRUE(pool.allocate(1, R({{0, "0-2"}})).ok());
  EXPECT_EQ(show(pool.match(nodes(2, 1))), "0:3 1:0");  // a shared rank is fine without exclusive
  EXPECT_EQ(show(pool.match(nodes(2, 2))), "1:0-1 2:0-1");
  EXPECT_EQ(show(pool.match(nodes(3, 2))), "none");
}

TEST(PoolMatch, GivesAnExclusiveJobWholeFreeRanks) {
  auto pool = uniform(3, 4, 2);
  ASSERT_TRUE(pool.allocate(1, R({{0, "3"}})).ok());
  EXPECT_EQ(show(pool.match(nodes(1, 1, 1, 0, true))), "1:0-3/0-1");
  EXPECT_EQ(show(pool.match(nodes(2, 1, 1, 0, true))), "1:0-3/0-1 2:0-3/0-1");
  EXPECT_EQ(show(pool.match(nodes(3, 1, 1, 0, true))), "none");
  ASSERT_TRUE(pool.allocate(2, R({{2, "/1"}})).ok());  // a gpu in use makes the rank not whole
  EXPECT_EQ(show(pool.match(nodes(2, 1, 1, 0, true))), "none");
}

TEST(PoolMatch, HandsOutGpusWithTheirSlots) {
  auto pool = uniform(2, 4, 2);
  auto r = pool.match(slots(3, 1, 1));
  EXPECT_EQ(show(r), "0:0-1/0-1 1:0/0");
  ASSERT_TRUE(pool.allocate(1, *r).ok());
  EXPECT_EQ(show(pool.match(slots(2, 1, 1))), "none");  // one gpu left
  EXPECT_EQ(show(pool.match(slots(2))), "0:2-3");       // cores without gpus still fit
}

TEST(PoolMatch, FillsInHostnames) {
  auto pool = uniform(2, 1);
  auto r = pool.match(slots(2));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ranks().at(0).hostname, "node0");
  EXPECT_EQ(r->ranks().at(1).hostname, "node1");
  EXPECT_EQ(r->to_json()["execution"]["nodelist"], Json::array({"node0", "node1"}));
}

TEST(PoolMatch, SkipsDrainedAndDownRanks) {
  auto pool = uniform(3, 2);
  pool.drain(0, {"memory errors", 10});
  pool.set_up(1, false);
  EXPECT_EQ(show(pool.match(slots(1))), "2:0");
  EXPECT_EQ(show(pool.match(nodes(2))), "none");
  pool.undrain(0);
  EXPECT_EQ(show(pool.match(nodes(2))), "0:0 2:0");
  pool.set_up(1, true);
  EXPECT_EQ(show(pool.match(nodes(3))), "0:0 1:0 2:0");
}

// A match of what is free now looks only at ranks with a free core: past
// full ones, across 64-rank words, as ranks fill, empty, drain and go down.
TEST(PoolMatch, FindsTheFewFreeRanksOfAFullMachine) {
  auto pool = uniform(200, 2);
  std::map<uint32_t, std::string> busy;
  for (uint32_t r = 0; r < 200; ++r) {
    if (r == 5) busy[r] = "0";
    if (r != 5 && r != 70 && r != 130 && r != 199) busy[r] = "0-1";
  }
  ASSERT_TRUE(pool.allocate(1, R(busy)).ok());
  EXPECT_EQ(show(pool.match(slots(4))), "5:1 70:0-1 130:0");
  EXPECT_EQ(show(pool.match(nodes(1, 1, 2, 0, true))), "70:0-1");
  pool.drain(70, {"fan", 1});
  EXPECT_EQ(show(pool.match(slots(4))), "5:1 130:0-1 199:0");
  pool.set_up(130, false);
  EXPECT_EQ(show(pool.match(slots(4))), "none");
  EXPECT_EQ(show(pool.match(slots(3))), "5:1 199:0-1");
  ASSERT_TRUE(pool.free(1, R({{64, "0-1"}, {128, "0-1"}})).ok());
  EXPECT_EQ(show(pool.match(nodes(3, 1, 2, 0, true))), "64:0-1 128:0-1 199:0-1");
  ASSERT_TRUE(pool.allocate(2, R({{5, "1"}, {64, "0-1"}, {199, "0-1"}})).ok());
  EXPECT_EQ(show(pool.match(slots(2))), "128:0-1");
  pool.undrain(70);
  pool.set_up(130, true);
  EXPECT_EQ(show(pool.match(slots(6))), "70:0-1 128:0-1 130:0-1");
  EXPECT_EQ(show(pool.match(slots(7))), "none");
}

// A run of wholly free ranks of one size is matched, checked and added to
// R as one range. What it gives must be what the rank-by-rank walk gives
// (match_avoiding with nothing to avoid walks rank by rank), names
// included, through random jobs over ranks of three sizes, named and not.
TEST(PoolMatch, RunsOfWholeRanksMatchAsRankByRank) {
  for (bool named : {false, true}) {
    std::vector<RankInventory> inv;
    for (uint32_t r = 0; r < 300; ++r) {
      const uint32_t cores = r < 130 ? 4 : r < 200 ? 2 : 4;
      inv.push_back({cores, r >= 230 && r < 260 ? 1u : 0u, named && r % 7 ? "n" + std::to_string(r) : ""});
    }
    ResourcePool pool(inv);
    std::mt19937 rng(named ? 11 : 7);
    auto random_job = [&] {
      return rng() % 3 == 0
                 ? nodes(1 + rng() % 60, 1 + rng() % 2, 1 + rng() % 2, rng() % 4 == 0 ? 1 : 0, rng() % 3 == 0)
                 : slots(1 + rng() % 300, 1 + rng() % 2 * (rng() % 3), rng() % 6 == 0 ? 1 : 0);
    };
    uint64_t next_id = 1;
    int compared = 0, runs = 0;
    uint64_t doubles = 0;
    for (int step = 0; step < 1500; ++step) {
      const Jobspec js = random_job();
      auto fast = pool.match(js);
      auto slow = pool.match_avoiding(js, ResourceSet{});
      ASSERT_EQ(fast.has_value(), slow.has_value()) << "step " << step;
      if (fast) {
        ASSERT_EQ(*fast, *slow) << "step " << step << ": " << show(*fast) << " vs " << show(*slow);
        ++compared;
        for (const auto& e : fast->entries()) runs += e.ranks.count() > e.ranks.ranges().size() ? 1 : 0;
        if (rng() % 2) {
          ASSERT_TRUE(pool.allocate(next_id++, *fast).ok()) << "step " << step;
          // The same again is double-booking, whatever the run.
          EXPECT_FALSE(pool.allocate(next_id, *fast).ok()) << "step " << step;
          ++doubles;
        }
      }
      if (!pool.allocations().empty() && rng() % 3 == 0) {
        auto it = pool.allocations().begin();
        std::advance(it, static_cast<long>(rng() % pool.allocations().size()));
        if (rng() % 2) {
          ASSERT_TRUE(pool.free_all(it->first).ok());
        } else {
          IdSet some;
          for (const auto& [r, rr] : it->second.ranks()) {
            if (rng() % 2) some.insert(r);
          }
          if (!some.empty()) {
            ASSERT_TRUE(pool.free(it->first, it->second.subset(some)).ok());
          }
        }
      }
      if (rng() % 20 == 0) {
        const uint32_t r = rng() % pool.size();
        pool.is_drained(r) ? pool.undrain(r) : pool.drain(r, {"test", 0});
      }
    }
    EXPECT_GT(compared, 400) << named;
    EXPECT_GT(runs, 300) << named;
    EXPECT_EQ(pool.alarms(), doubles) << named;
  }
}

// A range of R whose first rank is wholly free, but not every rank after
// it, is checked rank by rank: the busy one is named.
TEST(PoolAllocate, RefusesARangeWithOneBusyRankInIt) {
  auto pool = uniform(150, 4);
  ASSERT_TRUE(pool.allocate(1, R({{70, "3"}})).ok());
  std::map<uint32_t, std::string> all;
  for (uint32_t r = 0; r < 130; ++r) all[r] = "0-3";
  EXPECT_EQ(why(pool.allocate(2, R(all))),
            "double-booking refused for job 2: cores 3 of rank 70 are already "
            "allocated to job 1");
  pool.drain(100, {"x", 1});  // a drained rank breaks a run too, and is still given
  all.erase(70);
  ASSERT_TRUE(pool.allocate(3, R(all)).ok());
  EXPECT_EQ(pool.free_cores(), 4u * 20 + 3);
  EXPECT_EQ(pool.free_cores(), pool.count_free().ncores);
}

TEST(PoolMatch, AvoidsAGivenResourceSet) {
  auto pool = uniform(2, 4);
  EXPECT_EQ(show(pool.match_avoiding(slots(2), R({{0, "0-2"}}))), "0:3 1:0");
  EXPECT_EQ(show(pool.match_avoiding(nodes(1, 1, 1, 0, true), R({{0, "0"}}))), "1:0-3");
  EXPECT_EQ(show(pool.match_avoiding(slots(5), R({{0, "0-3"}}))), "none");
}

// --- allocation and free ---

TEST(PoolAllocate, RefusesDoubleBookingAndCountsAnAlarm) {
  auto pool = uniform(2, 4, 1);
  ASSERT_TRUE(pool.allocate(1, R({{0, "0-1/0"}})).ok());
  EXPECT_EQ(pool.alarms(), 0u);

  auto st = pool.allocate(2, R({{0, "1-2"}}));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().text, "double-booking refused for job 2: cores 1 of rank 0 are already allocated to job 1");
  EXPECT_EQ(pool.alarms(), 1u);
  EXPECT_FALSE(pool.allocations().count(2));
  EXPECT_EQ(show(pool.match(slots(6))), "0:2-3 1:0-3");  // nothing of job 2 was kept

  EXPECT_FALSE(pool.allocate(3, R({{1, "0"}, {0, "3/0"}})).ok());  // the gpu
  EXPECT_EQ(pool.alarms(), 2u);
  EXPECT_FALSE(pool.allocate(1, R({{1, "0"}})).ok());  // job 1 already holds resources
  EXPECT_EQ(pool.alarms(), 3u);
  EXPECT_EQ(show(pool.match(slots(6))), "0:2-3 1:0-3");  // nothing of job 3 either
}

TEST(PoolAllocate, RestoreKeepsWhatStillExistsAndSaysWhatDoesNot) {
  auto pool = uniform(2, 1);  // was 3 ranks of 2 cores before the restart
  EXPECT_EQ(pool.restore(1, R({{0, "0-1"}, {2, "0-1"}})),
            "rank 0 has no cores 1 (it has 1 core); rank 2 is not in this instance (size 2)");
  EXPECT_EQ(show(pool.allocations().at(1)), "0:0");
  EXPECT_EQ(pool.restore(2, R({{0, "0"}, {1, "0"}})), "cores 0 of rank 0 are already allocated to job 1");
  EXPECT_EQ(show(pool.allocations().at(2)), "1:0");  // the free part only: nothing double-booked
  EXPECT_EQ(pool.restore(2, R({{1, "0"}})), "");     // already restored: unchanged
  EXPECT_EQ(pool.restore(3, R({{5, "0"}})), "rank 5 is not in this instance (size 2)");
  EXPECT_FALSE(pool.allocations().count(3));
  EXPECT_EQ(pool.alarms(), 1u);  // the clash of jobs 1 and 2 is; the smaller instance is not
  EXPECT_EQ(show(pool.match(slots(1))), "none");
  ASSERT_TRUE(pool.free_all(1).ok());
  EXPECT_EQ(show(pool.match(slots(1))), "0:0");
}

TEST(PoolAllocate, RefusesResourcesOutsideTheInventory) {
  auto pool = uniform(2, 4, 1);
  EXPECT_EQ(why(pool.allocate(1, R({{2, "0"}}))),
            "double-booking refused for job 1: rank 2 is not in this instance (size 2)");
  EXPECT_EQ(why(pool.allocate(1, R({{1, "3-5"}}))),
            "double-booking refused for job 1: rank 1 has no cores 4-5 (it has 4 cores)");
  EXPECT_EQ(why(pool.allocate(1, R({{1, "0/1"}}))),
            "double-booking refused for job 1: rank 1 has no gpus 1 (it has 1 gpu)");
  EXPECT_EQ(pool.alarms(), 3u);
  EXPECT_TRUE(pool.allocations().empty());
  EXPECT_FALSE(pool.allocate(1, ResourceSet{}).ok());  // empty: refused, but not double-booking
  EXPECT_EQ(pool.alarms(), 3u);
}

TEST(PoolAllocate, AcceptsDrainedAndDownRanksForRestoredJobs) {
  auto pool = uniform(2, 2);
  pool.drain(0, {"x", 1});
  pool.set_up(1, false);
  EXPECT_TRUE(pool.allocate(7, R({{0, "0-1"}, {1, "0"}})).ok());
  EXPECT_EQ(pool.count_allocated().ncores, 3u);
  EXPECT_EQ(pool.allocations().at(7).ranks().at(1).hostname, "node1");
}

// --- ranks whose host has not reported yet ---

// Rank 0 known with 2 cores; ranks 1 and 2 not yet.
ResourcePool partly_known() { return ResourcePool({{2, 0, "node0"}, {0, 0, "node1", false}, {0, 0, "node2", false}}); }

TEST(PoolUnknown, AnUnknownRankGetsNoJobsUntilItReports) {
  auto pool = partly_known();
  EXPECT_TRUE(pool.any_unknown());
  EXPECT_EQ(show(pool.match(nodes(2))), "none");
  EXPECT_EQ(show(pool.match(nodes(1))), "0:0");
  EXPECT_EQ(pool.set_inventory(1, {4, 1, ""}), "");
  EXPECT_EQ(pool.inventory(1).hostname, "node1");  // kept
  EXPECT_TRUE(pool.inventory(1).known);
  EXPECT_EQ(show(pool.match(nodes(2, 1, 3))), "none");  // rank 0 has 2 cores
  EXPECT_EQ(show(pool.match(nodes(1, 1, 3, 1))), "1:0-2/0");
  EXPECT_EQ(pool.count_all().ncores, 6u);
}

TEST(PoolUnknown, FeasibilityWaitsForUnknownRanksButNotForTheRankCount) {
  auto pool = partly_known();
  EXPECT_EQ(why(pool.feasible(nodes(4))), "4 nodes requested but the instance has 3 ranks");
  EXPECT_EQ(why(pool.feasible(slots(1, 64, 8))), "ok");  // rank 1 or 2 might have that
  EXPECT_EQ(pool.set_inventory(1, {4, 0, ""}), "");
  EXPECT_EQ(pool.set_inventory(2, {4, 0, ""}), "");
  EXPECT_FALSE(pool.any_unknown());
  EXPECT_EQ(why(pool.feasible(slots(1, 64, 8))), "64 cores per slot but a rank has at most 4 cores");
}

TEST(PoolUnknown, FeasibilityCountsTheInventoryAsItIsNow) {
  ResourcePool pool({{3, 0, "node0"}, {1, 0, "node1"}});
  // Counted once per shape, and counted again after a rank reports.
  EXPECT_EQ(why(pool.feasible(slots(2, 2))),
            "2 slots requested but the instance holds at most 1 of that size (a slot must fit on one rank)");
  EXPECT_EQ(why(pool.feasible(nodes(2, 1, 3))), "2 nodes of 3 cores requested but only 1 of 2 ranks have that many");
  EXPECT_EQ(pool.set_inventory(1, {3, 0, ""}), "");
  EXPECT_EQ(why(pool.feasible(slots(2, 2))), "ok");
  EXPECT_EQ(why(pool.feasible(nodes(2, 1, 3))), "ok");
  EXPECT_EQ(why(pool.feasible(slots(1, 4))), "4 cores per slot but a rank has at most 3 cores");
}

TEST(PoolUnknown, AReportSmallerThanWhatAJobHoldsLeavesItThoseUntilFreed) {
  auto pool = partly_known();
  EXPECT_EQ(pool.restore(1, R({{0, "0"}, {1, "2-3/0"}})), "");  // rank 1 not known: held as it was
  EXPECT_EQ(show(pool.allocations().at(1)), "0:0 1:2-3/0");
  EXPECT_EQ(pool.alarms(), 0u);
  EXPECT_EQ(pool.count_free().ncores, 1u);  // rank 1 gives nothing while unknown
  // The host came back smaller: applied, and the job keeps what it holds.
  EXPECT_EQ(pool.set_inventory(1, {2, 1, ""}), "jobs hold cores 2-3 of rank 1, which now has 2 cores and 1 gpu");
  EXPECT_TRUE(pool.inventory(1).known);
  EXPECT_EQ(pool.count_all().ncores, 4u);
  EXPECT_EQ(pool.count_allocated().ncores, 3u);
  ResourceCount free = pool.count_free();
  EXPECT_EQ(free.ncores, 3u);  // core 1 of rank 0, cores 0-1 of rank 1
  EXPECT_EQ(free.ngpus, 0u);   // its one gpu is the job's
  EXPECT_EQ(show(pool.match(slots(1, 2))), "1:0-1");
  EXPECT_EQ(pool.set_inventory(1, {4, 0, ""}), "jobs hold gpus 0 of rank 1, which now has 4 cores and 0 gpus");
  EXPECT_EQ(pool.set_inventory(1, {1, 0, ""}),
            "jobs hold cores 2-3 and gpus 0 of rank 1, which now has 1 core and 0 gpus");
  // A reservation never counts on the cores the host no longer has.
  pool.set_up(1, true);
  pool.set_up(2, false);
  std::map<uint64_t, double> ends{{1, 50.0}};
  auto res = pool.reserve(nodes(2, 1, 2), ends, 0);
  EXPECT_FALSE(res.has_value()) << show(res ? pool.planned(*res) : ResourceSet());  // rank 1 has 1 core now
  ASSERT_TRUE(pool.free_all(1).ok());
  EXPECT_EQ(pool.count_free().ncores, 3u);  // 2 on rank 0, 1 on rank 1: cores 2-3 are gone
  EXPECT_EQ(show(pool.match(slots(2))), "0:0-1");
}

TEST(PoolFree, PartialFreeFreesExactlyThoseRanks) {
  auto pool = uniform(4, 2);
  ASSERT_TRUE(pool.allocate(1, R({{0, "0-1"}, {1, "0-1"}, {2, "0-1"}, {3, "0-1"}}, 99)).ok());
  EXPECT_EQ(pool.count_free().ranks.encode(), "");
  ASSERT_TRUE(pool.free(1, R({{1, "0-1"}, {3, "0-1"}})).ok());
  EXPECT_EQ(pool.count_free().ranks.encode(), "1,3");
  EXPECT_EQ(pool.count_free().ncores, 4u);
  EXPECT_EQ(pool.count_allocated().ranks.encode(), "0,2");
  EXPECT_EQ(show(pool.allocations().at(1)), "0:0-1 2:0-1");
  EXPECT_EQ(pool.allocations().at(1).expiration, 99);  // kept for EASY
  EXPECT_EQ(show(pool.match(nodes(2, 1, 2, 0, true))), "1:0-1 3:0-1");
  EXPECT_EQ(show(pool.match(nodes(3, 1, 1))), "none");

  ASSERT_TRUE(pool.free(1, R({{0, "0-1"}, {2, "0-1"}})).ok());
  EXPECT_FALSE(pool.allocations().count(1));  // nothing left: the job is gone
  EXPECT_EQ(pool.count_free().ncores, 8u);
}

TEST(PoolFree, FreesEverythingTheJobHoldsOnAGivenRank) {
  auto pool = uniform(2, 4);
  ASSERT_TRUE(pool.allocate(1, R({{0, "0-3"}, {1, "0-1"}})).ok());
  ASSERT_TRUE(pool.free(1, R({{1, "0"}})).ok());  // a rank is never split: all of rank 1 goes
  EXPECT_EQ(show(pool.allocations().at(1)), "0:0-3");
  EXPECT_EQ(pool.count_free().ncores, 4u);
}

TEST(PoolFree, RefusesRanksTheJobDoesNotHoldAndChangesNothing) {
  auto pool = uniform(3, 2);
  ASSERT_TRUE(pool.allocate(1, R({{0, "0-1"}, {1, "0-1"}})).ok());
  EXPECT_EQ(why(pool.free(1, R({{1, "0-1"}, {2, "0"}}))), "job 1 does not hold ranks 2 (it holds 0-1)");
  EXPECT_EQ(show(pool.allocations().at(1)), "0:0-1 1:0-1");
  EXPECT_EQ(why(pool.free(9, R({{0, "0"}}))), "job 9 holds no resources");
  EXPECT_EQ(why(pool.free_all(9)), "job 9 holds no resources");
  EXPECT_EQ(pool.alarms(), 0u);
  ASSERT_TRUE(pool.free_all(1).ok());
  EXPECT_TRUE(pool.allocations().empty());
  EXPECT_EQ(pool.count_free().ncores, 6u);
}

TEST(PoolReport, CountsFreeAllocatedDownAndDrainedSeparately) {
  auto pool = uniform(4, 4, 1);
  ASSERT_TRUE(pool.allocate(1, R({{0, "0-3/0"}, {1, "0-1"}})).ok());
  pool.drain(2, {"maintenance", 5});
  pool.set_up(3, false);
  EXPECT_EQ(pool.count_all().to_json(), Json::parse(R"({"ranks":"0-3","nnodes":4,"ncores":16,"ngpus":4})"));
  EXPECT_EQ(pool.count_free().to_json(), Json::parse(R"({"ranks":"1","nnodes":1,"ncores":2,"ngpus":1})"));
  EXPECT_EQ(pool.count_allocated().to_json(), Json::parse(R"({"ranks":"0-1","nnodes":2,"ncores":6,"ngpus":1})"));
  EXPECT_EQ(pool.count_down().to_json(), Json::parse(R"({"ranks":"3","nnodes":1,"ncores":4,"ngpus":1})"));
  EXPECT_EQ(pool.count_drained().to_json(), Json::parse(R"({"ranks":"2","nnodes":1,"ncores":4,"ngpus":1})"));
  EXPECT_EQ(pool.drained().at(2), (DrainInfo{"maintenance", 5}));
}

// --- EASY backfill ---

TEST(PoolReserve, FindsTheFirstMomentEnoughJobsHaveEnded) {
  auto pool = uniform(2, 4);
  ASSERT_TRUE(pool.allocate(1, R({{0, "0-3"}}, 100)).ok());
  ASSERT_TRUE(pool.allocate(2, R({{1, "0-1"}}, 50)).ok());
  auto ends = pool.expected_ends();
  EXPECT_EQ(ends, (std::map<uint64_t, double>{{1, 100}, {2, 50}}));

  auto res = pool.reserve(slots(4), ends, 10);  // job 2's end frees rank 1
  ASSERT_TRUE(res);
  EXPECT_EQ(res->time, 50);
  EXPECT_EQ(show(pool.planned(*res)), "1:0-3");
  res = pool.reserve(slots(6), ends, 10);  // needs job 1's rank as well
  ASSERT_TRUE(res);
  EXPECT_EQ(res->time, 100);
  EXPECT_EQ(show(pool.planned(*res)), "0:0-3 1:0-1");
  res = pool.reserve(slots(2), ends, 10);  // fits now
  ASSERT_TRUE(res);
  EXPECT_EQ(res->time, 10);
  EXPECT_EQ(show(pool.planned(*res)), "1:2-3");
  // From the expirations, counting cores only (slots of one core): the same.
  for (uint32_t n : {4, 6, 2}) {
    auto by_map = pool.reserve(slots(n), ends, 10), by_count = pool.reserve(slots(n), 10);
    ASSERT_TRUE(by_map && by_count) << n;
    EXPECT_EQ(by_count->time, by_map->time) << n;
    EXPECT_EQ(by_count->spare_cores, by_map->spare_cores) << n;
    EXPECT_EQ(show(pool.planned(*by_count)), show(pool.planned(*by_map))) << n;
  }
}

// reserve(head, now) walks the allocations in the order it keeps of their
// expirations. It must agree with reserve() given expected_ends(), which
// sorts them afresh: through random jobs with ends past, equal and far,
// partial and whole releases, drains, and heads counted and not.
TEST(PoolReserve, ItsOrderOfEndsIsWhatSortingTheExpirationsGives) {
  std::mt19937 rng(17);
  auto pool = uniform(40, 4, 1);
  const std::vector<Jobspec> heads{slots(30),        slots(90), slots(150), slots(20, 2), nodes(12, 1, 4, 0, true),
                                   nodes(3, 2, 1, 1)};
  uint64_t next_id = 1;
  int reserved = 0;
  for (int step = 0; step < 2000; ++step) {
    const double now = 100 + step;
    if (rng() % 2 == 0) {
      Jobspec js = rng() % 4 == 0 ? nodes(1 + rng() % 4) : slots(1 + rng() % 12, 1 + rng() % 2);
      if (auto r = pool.match(js)) {
        const uint32_t kind = rng() % 5;  // none, past, on the hour, random
        r->expiration = kind == 0 ? 0 : kind == 1 ? now - 1 - rng() % 50 : kind == 2 ? now + 60 : now + rng() % 500;
        ASSERT_TRUE(pool.allocate(next_id++, *r).ok());
      }
    } else if (!pool.allocations().empty()) {
      auto it = pool.allocations().begin();
      std::advance(it, static_cast<long>(rng() % pool.allocations().size()));
      if (rng() % 3 == 0 && it->second.ranks().size() > 1) {
        ASSERT_TRUE(pool.free(it->first, it->second.subset(IdSet{it->second.ranks().begin()->first})).ok());
      } else {
        ASSERT_TRUE(pool.free_all(it->first).ok());
      }
    }
    if (rng() % 25 == 0) {
      const uint32_t r = rng() % pool.size();
      pool.is_drained(r) ? pool.undrain(r) : pool.drain(r, {"test", 0});
    }
    for (const auto& head : heads) {
      if (pool.match(head)) continue;  // a head is blocked when the scheduler reserves for it
      auto sorted = pool.reserve(head, pool.expected_ends(), now);
      auto kept = pool.reserve(head, now);
      ASSERT_EQ(sorted.has_value(), kept.has_value()) << "step " << step;
      if (!sorted) continue;
      ++reserved;
      ASSERT_EQ(kept->time, sorted->time) << "step " << step;
      ASSERT_EQ(kept->spare_cores, sorted->spare_cores) << "step " << step;
      ASSERT_EQ(show(pool.planned(*kept)), show(pool.planned(*sorted))) << "step " << step;
    }
  }
  EXPECT_GT(reserved, 4000);
}

TEST(PoolReserve, NeverCountsOnJobsWithoutADurationOrOnUnusableRanks) {
  auto pool = uniform(2, 4);
  ASSERT_TRUE(pool.allocate(1, R({{0, "0-3"}})).ok());  // no expiration: never ends
  ASSERT_TRUE(pool.allocate(2, R({{1, "0-3"}}, 50)).ok());
  auto ends = pool.expected_ends();
  EXPECT_EQ(ends.size(), 1u);
  EXPECT_FALSE(pool.reserve(nodes(2, 1, 1, 0, true), ends, 10));
  ASSERT_TRUE(pool.reserve(nodes(1, 1, 1, 0, true), ends, 10));
  pool.drain(1, {"x", 1});
  EXPECT_FALSE(pool.reserve(nodes(1, 1, 1, 0, true), ends, 10));
}

TEST(PoolReserve, CountsOnlyUsableCoresWhenCounting) {
  auto pool = uniform(3, 2);
  ASSERT_TRUE(pool.allocate(1, R({{0, "0-1"}}, 50)).ok());
  ASSERT_TRUE(pool.allocate(2, R({{1, "0-1"}}, 100)).ok());
  pool.drain(1, {"x", 1});
  EXPECT_FALSE(pool.reserve(slots(5), 10));  // job 2's cores are on a drained rank
  EXPECT_EQ(pool.reserve(slots(4), 10)->time, 50);
  pool.undrain(1);
  EXPECT_EQ(pool.reserve(slots(5), 10)->time, 100);
  (void)pool.set_inventory(1, {1, 0, ""});  // job 2 holds a core rank 1 no longer has
  EXPECT_FALSE(pool.reserve(slots(6), 10));
  EXPECT_EQ(pool.reserve(slots(5), 10)->time, 100);
}

TEST(PoolReserve, TreatsAnOverdueJobAsEndingNow) {
  auto pool = uniform(1, 2);
  ASSERT_TRUE(pool.allocate(1, R({{0, "0-1"}}, 50)).ok());
  auto res = pool.reserve(slots(2), 80);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->time, 80);
}

// Three ranks of 4 cores: job 1 holds rank 0 but core 3 until t=100, job 2
// all of rank 1 until t=200, job 3 half of rank 2 for ever. A head that
// needs two whole ranks is reserved ranks 0-1 at t=200.
class EasyBackfill : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pool.allocate(1, R({{0, "0-2"}}, 100)).ok());
    ASSERT_TRUE(pool.allocate(2, R({{1, "0-3"}}, 200)).ok());
    ASSERT_TRUE(pool.allocate(3, R({{2, "0-1"}})).ok());
    auto r = pool.reserve(nodes(2, 1, 1, 0, true), pool.expected_ends(), now);
    ASSERT_TRUE(r);
    res = *r;
  }
  ResourcePool pool = uniform(3, 4);
  double now = 10;
  Reservation res;
};

TEST_F(EasyBackfill, ReservesTheRanksTheHeadWillGet) {
  EXPECT_EQ(res.time, 200);
  EXPECT_EQ(show(pool.planned(res)), "0:0-3 1:0-3");
}

TEST_F(EasyBackfill, AShortJobBackfillsOntoReservedResources) {
  // Ends at 10+150 = 160 <= 200: it may use rank 0's free core.
  EXPECT_EQ(show(pool.backfill(slots(1, 1, 0, 150), res, now)), "0:3");
  EXPECT_EQ(show(pool.backfill(slots(1, 1, 0, 190), res, now)), "0:3");  // ends exactly at 200
}

TEST_F(EasyBackfill, ALongOrUnboundedJobStaysOffReservedResources) {
  // Would end after 200, or never: only rank 2's free cores are allowed.
  EXPECT_EQ(show(pool.backfill(slots(1, 1, 0, 500), res, now)), "2:2");
  EXPECT_EQ(show(pool.backfill(slots(1), res, now)), "2:2");
  EXPECT_EQ(show(pool.backfill(slots(2), res, now)), "2:2-3");
  EXPECT_EQ(show(pool.backfill(slots(3, 1, 0, 500), res, now)), "none");  // 3 free cores, but one is reserved
  EXPECT_EQ(show(pool.backfill(slots(3), res, now)), "none");
  EXPECT_EQ(show(pool.backfill(slots(3, 1, 0, 100), res, now)), "0:3 2:2-3");  // short enough to use all three
}

TEST_F(EasyBackfill, AJobThatDoesNotFitNowDoesNotBackfill) {
  EXPECT_EQ(show(pool.backfill(slots(4, 1, 0, 5), res, now)), "none");
  EXPECT_EQ(show(pool.backfill(nodes(1, 1, 1, 0, true, 5), res, now)), "none");
}

TEST(PoolBackfill, ALongJobWhollyOutsideTheReservationBackfills) {
  auto pool = uniform(3, 4);
  ASSERT_TRUE(pool.allocate(1, R({{0, "0-3"}, {1, "0-3"}}, 100)).ok());
  // The head wants three whole ranks: at t=100 it gets 0-2, so rank 2 is
  // reserved too and a long job there would delay it.
  auto wide = pool.reserve(nodes(3, 1, 1, 0, true), pool.expected_ends(), 0);
  ASSERT_TRUE(wide);
  EXPECT_EQ(show(pool.backfill(slots(1, 1, 0, 1000), *wide, 0)), "none");
  EXPECT_EQ(show(pool.backfill(slots(1, 1, 0, 50), *wide, 0)), "2:0");
  // A head that needs two whole ranks is reserved 0-1: rank 2 is fair game.
  auto narrow = pool.reserve(nodes(2, 1, 1, 0, true), pool.expected_ends(), 0);
  ASSERT_TRUE(narrow);
  EXPECT_EQ(show(pool.planned(*narrow)), "0:0-3 1:0-3");
  EXPECT_EQ(show(pool.backfill(slots(4, 1, 0, 1000), *narrow, 0)), "2:0-3");
  EXPECT_EQ(show(pool.backfill(slots(4), *narrow, 0)), "2:0-3");
}

// EASY's "extra" resources are counted, not named: a long candidate may
// take cores the head was planned to get, when the head still fits at the
// shadow time on others.
TEST(PoolBackfill, ALongJobMayTakeWhatTheHeadCanDoWithout) {
  auto pool = uniform(4, 1);
  ASSERT_TRUE(pool.allocate(1, R({{2, "0"}, {3, "0"}}, 100)).ok());  // ranks 0-1 free now
  auto res = pool.reserve(slots(3), 0);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->time, 100);
  EXPECT_EQ(show(pool.planned(*res)), "0:0 1:0 2:0");  // one core to spare then
  EXPECT_EQ(res->spare_cores, 1u);
  auto fit = pool.backfill(slots(1, 1, 0, 1000), *res, 0);  // every free core is planned for the head
  ASSERT_TRUE(fit);
  EXPECT_EQ(show(fit), "0:0");
  EXPECT_EQ(fit->starttime, 0);
  EXPECT_EQ(fit->expiration, 1000);
  ASSERT_TRUE(pool.allocate(2, *fit).ok());
  pool.backfilled(*res, *fit);
  EXPECT_EQ(show(pool.planned(*res)), "1:0 2:0 3:0");  // the head's plan moved
  EXPECT_EQ(res->spare_cores, 0u);
  EXPECT_EQ(show(pool.backfill(slots(1, 1, 0, 1000), *res, 0)), "none");  // none to spare now
  EXPECT_EQ(show(pool.backfill(slots(1), *res, 0)), "none");
  EXPECT_EQ(show(pool.backfill(slots(1, 1, 0, 100), *res, 0)), "1:0");  // gone by then
  EXPECT_EQ(pool.alarms(), 0u);
}

// Every job that ends exactly at the shadow time gives back at it.
TEST(PoolReserve, CountsEveryJobEndingExactlyAtTheShadowTime) {
  auto pool = uniform(4, 1);
  ASSERT_TRUE(pool.allocate(1, R({{0, "0"}}, 100)).ok());
  ASSERT_TRUE(pool.allocate(2, R({{1, "0"}}, 100)).ok());
  ASSERT_TRUE(pool.allocate(3, R({{2, "0"}}, 200)).ok());
  auto res = pool.reserve(slots(2), 10);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->time, 100);
  EXPECT_EQ(res->spare_cores, 1u);  // jobs 1 and 2 both: 3 free at 100, the head needs 2
  EXPECT_EQ(show(pool.backfill(slots(1, 1, 0, 5000), *res, 10)), "3:0");
}

// The pool's kept free sets and count agree with what a fresh count says,
// through allocations, frees, drain, down and a smaller host.
TEST(PoolFree, KeepsItsFreeCountThroughEveryChange) {
  auto pool = uniform(3, 4, 1);
  auto check = [&](const char* when) { EXPECT_EQ(pool.free_cores(), pool.count_free().ncores) << when; };
  check("start");
  ASSERT_TRUE(pool.allocate(1, R({{0, "0-1"}, {1, "0-3/0"}})).ok());
  check("allocate");
  pool.drain(2, {"x", 1});
  check("drain");
  pool.set_up(0, false);
  check("down");
  EXPECT_EQ(show(pool.match(slots(1))), "none");
  pool.set_up(0, true);
  pool.undrain(2);
  check("up, undrained");
  ASSERT_TRUE(pool.free(1, R({{1, "0-3"}})).ok());
  check("partial free");
  (void)pool.set_inventory(0, {1, 0, "", true});  // job 1 holds cores 0-1, the host has 1 now
  check("smaller host");
  ASSERT_TRUE(pool.free_all(1).ok());
  check("free");
  EXPECT_EQ(pool.free_cores(), 1u + 4 + 4);
}

// An allocation or a release changes a rank's free cores by just what
// moved (hold and unhold, not a recount). What the pool keeps must be what
// a recount from the ranks' state gives, through random jobs, partial and
// whole releases, drain, down, and hosts that come back another size.
TEST(PoolFree, WhatItKeepsFreeIsWhatARecountGives) {
  std::mt19937 rng(3);
  auto pool = uniform(12, 4, 2);
  const std::vector<Jobspec> probes{slots(1),       slots(7),    slots(3, 2),
                                    slots(2, 1, 1), nodes(2, 2), nodes(3, 1, 4, 2, true)};
  auto snapshot = [&] {
    std::string s = std::to_string(pool.free_cores()) + " free " + pool.count_free().to_json().dump() + " held " +
                    pool.count_allocated().to_json().dump();
    for (const auto& js : probes) s += " | " + show(pool.match(js));
    return s;
  };
  uint64_t next_id = 1;
  auto random_id = [&] {
    auto it = pool.allocations().begin();
    std::advance(it, static_cast<long>(rng() % pool.allocations().size()));
    return it->first;
  };
  int allocated = 0, partial = 0;
  for (int step = 0; step < 3000; ++step) {
    const uint32_t rank = rng() % pool.size();
    switch (rng() % 10) {
      case 0:
      case 1:
      case 2:
      case 3: {
        Jobspec js = rng() % 3 == 0 ? nodes(1 + rng() % 3, 1 + rng() % 2, 1, rng() % 2, rng() % 4 == 0)
                                    : slots(1 + rng() % 9, 1 + rng() % 2, rng() % 5 == 0 ? 1 : 0);
        if (auto r = pool.match(js)) {
          ASSERT_TRUE(pool.allocate(next_id++, *r).ok());
          ++allocated;
        }
        break;
      }
      case 4:
      case 5:
        if (!pool.allocations().empty()) {
          const uint64_t id = random_id();
          IdSet some;
          for (const auto& [r, rr] : pool.allocations().at(id).ranks()) {
            if (rng() % 2) some.insert(r);
          }
          if (some.empty()) break;
          ASSERT_TRUE(pool.free(id, pool.allocations().at(id).subset(some)).ok());
          ++partial;
        }
        break;
      case 6:
      case 7:
        if (!pool.allocations().empty()) {
          ASSERT_TRUE(pool.free_all(random_id()).ok());
        }
        break;
      case 8:
        if (pool.is_drained(rank)) {
          pool.undrain(rank);
        } else {
          pool.drain(rank, {"test", 0});
        }
        break;
      default:
        if (rng() % 3 == 0) {
          (void)pool.set_inventory(rank, {2 + static_cast<uint32_t>(rng() % 4), 2, "", true});
        } else {
          pool.set_up(rank, !pool.is_up(rank));
        }
    }
    const std::string kept = snapshot();
    for (uint32_t r = 0; r < pool.size(); ++r) pool.set_up(r, pool.is_up(r));  // a recount of every rank
    ASSERT_EQ(snapshot(), kept) << "step " << step;
  }
  EXPECT_GT(allocated, 500);
  EXPECT_GT(partial, 100);
  EXPECT_EQ(pool.alarms(), 0u);
}

}  // namespace
}  // namespace loom
