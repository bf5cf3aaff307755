// Tests of the scheduler: first the pure core, ResourcePool (pool.h) —
// feasibility, matching, double-booking, partial free, drain and down, the
// EASY reservation and backfill rule — then the `sched` service (sched.h)
// over a fake transport: a Handle that records what it sends, a fake clock,
// and the test playing the job manager, the KVS and the broker.
#include "sched/pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "jobspec/jobspec.h"
#include "msg/handle.h"
#include "msg/message.h"
#include "sched/sched.h"

namespace loom {
namespace {

// --- building blocks ---

Jobspec parse(const JobRequest& r) {
  auto j = build_jobspec(r);
  LOOM_ASSERT(j.ok());
  auto js = parse_jobspec(*j);
  LOOM_ASSERT(js.ok());
  return *js;
}

// `n` slots anywhere (loom submit -n N -c C -g G -t D).
Jobspec slots(uint32_t n, uint32_t cores = 1, uint32_t gpus = 0, double duration = 0) {
  JobRequest r;
  r.tasks = n;
  r.cores_per_task = cores;
  r.gpus_per_task = gpus;
  r.duration = duration;
  r.command = {"true"};
  return parse(r);
}

// `nnodes` nodes of `per_node` slots (loom submit -N -n -c -g -x -t).
Jobspec nodes(uint32_t nnodes, uint32_t per_node = 1, uint32_t cores = 1, uint32_t gpus = 0, bool exclusive = false,
              double duration = 0) {
  JobRequest r;
  r.nodes = nnodes;
  r.tasks = nnodes * per_node;
  r.cores_per_task = cores;
  r.gpus_per_task = gpus;
  r.exclusive = exclusive;
  r.duration = duration;
  r.command = {"true"};
  return parse(r);
}

ResourcePool uniform(uint32_t size, uint32_t cores, uint32_t gpus = 0) {
  std::vector<RankInventory> inv;
  for (uint32_t r = 0; r < size; ++r) inv.push_back({cores, gpus, "node" + std::to_string(r)});
  return ResourcePool(inv);
}

// {rank: "cores"} or {rank: "cores/gpus"}
ResourceSet R(const std::map<uint32_t, std::string>& spec, double expiration = 0) {
  ResourceSet rs;
  for (auto& [rank, text] : spec) {
    RankResources rr;
    auto slash = text.find('/');
    rr.cores = IdSet::parse(text.substr(0, slash)).value();
    if (slash != std::string::npos) rr.gpus = IdSet::parse(text.substr(slash + 1)).value();
    rs.add_rank(rank, rr);
  }
  rs.expiration = expiration;
  return rs;
}

// "0:0-1 1:0/0": rank:cores[/gpus], for comparing matches at a glance.
std::string show(const ResourceSet& rs) {
  std::string out;
  for (auto& [rank, rr] : rs.ranks()) {
    if (!out.empty()) out += " ";
    out += std::to_string(rank) + ":" + rr.cores.encode();
    if (!rr.gpus.empty()) out += "/" + rr.gpus.encode();
  }
  return out;
}
std::string show(const std::optional<ResourceSet>& rs) { return rs ? show(*rs) : "none"; }

std::string why(const Status& st) { return st.ok() ? "ok" : st.error().text; }

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
  EXPECT_EQ(show(res->resources), "1:0-3");
  res = pool.reserve(slots(6), ends, 10);  // needs job 1's rank as well
  ASSERT_TRUE(res);
  EXPECT_EQ(res->time, 100);
  EXPECT_EQ(show(res->resources), "0:0-3 1:0-1");
  res = pool.reserve(slots(2), ends, 10);  // fits now
  ASSERT_TRUE(res);
  EXPECT_EQ(res->time, 10);
  EXPECT_EQ(show(res->resources), "1:2-3");
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

TEST(PoolReserve, TreatsAnOverdueJobAsEndingNow) {
  auto pool = uniform(1, 2);
  ASSERT_TRUE(pool.allocate(1, R({{0, "0-1"}}, 50)).ok());
  auto res = pool.reserve(slots(2), pool.expected_ends(), 80);
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
  EXPECT_EQ(show(res.resources), "0:0-3 1:0-3");
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
  EXPECT_EQ(show(narrow->resources), "0:0-3 1:0-3");
  EXPECT_EQ(show(pool.backfill(slots(4, 1, 0, 1000), *narrow, 0)), "2:0-3");
  EXPECT_EQ(show(pool.backfill(slots(4), *narrow, 0)), "2:0-3");
}

// --- the sched service over a fake transport ---

// Armed while it holds a callback; FakeClock::advance() runs it when due.
class FakeTimer final : public Timer {
 public:
  FakeTimer(std::set<FakeTimer*>& all, const double& now) : all_(all), now_(now) { all_.insert(this); }
  ~FakeTimer() override { all_.erase(this); }
  void arm(double seconds, std::function<void()> fn) override {
    deadline_ = now_ + seconds;
    fn_ = std::move(fn);
  }
  void cancel() override { fn_ = nullptr; }
  bool armed() const override { return fn_ != nullptr; }
  // Runs the callback if it is due; it may destroy this timer.
  bool fire_if_due() {
    if (!fn_ || deadline_ > now_) return false;
    auto fn = std::move(fn_);
    fn_ = nullptr;
    fn();
    return true;
  }

 private:
  std::set<FakeTimer*>& all_;
  const double& now_;
  double deadline_ = 0;
  std::function<void()> fn_;
};

// Time stands still until advance(); wall() is now() plus a fixed epoch.
class FakeClock final : public Clock {
 public:
  static constexpr double kEpoch = 1.7e9;
  double now() const override { return now_; }
  double wall() const override { return kEpoch + now_; }
  std::unique_ptr<Timer> make_timer() override { return std::make_unique<FakeTimer>(timers_, now_); }
  void advance(double seconds) {
    now_ += seconds;
    // A callback may arm or destroy timers: start over after each one.
    while (std::any_of(timers_.begin(), timers_.end(), [](FakeTimer* t) { return t->fire_if_due(); })) {
    }
  }

 private:
  double now_ = 0;
  std::set<FakeTimer*> timers_;
};

// One Sched on a Handle whose messages land in `sent`. The test answers
// for the KVS, the broker and the job manager.
class SchedTest : public ::testing::Test {
 protected:
  void create(SchedConfig cfg) {
    auto s = Sched::create(io, h, std::move(cfg));
    ASSERT_TRUE(s.ok()) << s.error().text;
    sched = std::move(*s);
  }
  // Creates a Sched and takes it through startup to ready, with the given
  // jobs reported by the hello.
  void start(SchedConfig cfg, std::vector<Json> hello_jobs = {}, Json drain = nullptr) {
    create(std::move(cfg));
    Message lookup = take("kvs.lookup");
    EXPECT_EQ(Json::parse(lookup.payload)["key"], "resource.drain");
    if (drain.is_null()) {
      answer_error(lookup, ENOENT);
    } else {
      answer(lookup, Json{{"value", drain.dump()}});
    }
    answer(take("broker.status"), Json{{"ranks", Json::array()}});
    Message hello = take("job-manager.sched-hello");
    EXPECT_TRUE(hello.has_flag(msgflag::kStreaming));
    for (auto& j : hello_jobs) answer(hello, j);
    answer_error(hello, ENODATA);
    Message ready = take("job-manager.sched-ready");
    EXPECT_EQ(Json::parse(ready.payload), Json::parse(R"({"mode":"unlimited"})"));
    answer(ready, Json{{"count", 0}});
    run();
    ASSERT_TRUE(sched->ready());
  }

  // The first message sent on `topic` (removed from `sent`); fails the test
  // if there is none.
  Message take(const std::string& topic) {
    for (auto it = sent.begin(); it != sent.end(); ++it) {
      if (it->topic == topic) {
        Message m = std::move(*it);
        sent.erase(it);
        return m;
      }
    }
    ADD_FAILURE() << "nothing was sent on " << topic;
    return Message{};
  }
  size_t count(const std::string& topic, MsgType type) const {
    return std::count_if(sent.begin(), sent.end(),
                         [&](const Message& m) { return m.topic == topic && m.type == type; });
  }
  // The payloads of responses sent on `topic`, oldest first, removed.
  std::vector<Json> responses(const std::string& topic) {
    std::vector<Json> out;
    for (auto it = sent.begin(); it != sent.end();) {
      if (it->topic == topic && it->is_response()) {
        out.push_back(it->errnum ? Json{{"errnum", it->errnum}, {"errstr", error_text(*it)}}
                                 : Json::parse(it->payload));
        it = sent.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }
  void answer(const Message& req, const Json& payload) { h.dispatch(make_response(req, payload.dump())); }
  void answer_error(const Message& req, int errnum, const std::string& text = "") {
    h.dispatch(make_error_response(req, errnum, text));
  }
  // A request as the job manager (an owner) sends it; matchless ones have
  // matchtag 0 and want responses.
  void request(const std::string& topic, const Json& payload, bool matchless = false, uint32_t rolemask = role::kOwner,
               std::string raw = {}) {
    Message m = make_request(topic, raw.empty() ? payload.dump() : raw, kNodeAny, matchless ? msgflag::kStreaming : 0);
    m.matchtag = matchless ? 0 : 5;
    m.route = {make_hop(0, 4)};
    m.userid = 1000;
    m.rolemask = rolemask;
    h.dispatch(std::move(m));
  }
  void alloc(uint64_t id, const Jobspec& js, int64_t priority = 16, double t_submit = 1) {
    request("sched.alloc",
            Json{{"id", id}, {"priority", priority}, {"userid", 1000}, {"t_submit", t_submit}, {"jobspec", js.raw}},
            true);
  }
  void free(uint64_t id, const Json& R, bool final = true) {
    request("sched.free", Json{{"id", id}, {"R", R}, {"final", final}}, true);
  }
  // Answers every pending kvs.commit with success; returns the keys.
  std::vector<std::string> commit_all() {
    std::vector<std::string> keys;
    std::vector<Message> commits;
    for (auto it = sent.begin(); it != sent.end();) {
      if (it->topic == "kvs.commit" && it->is_request()) {
        commits.push_back(std::move(*it));
        it = sent.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& c : commits) {
      Json payload = Json::parse(c.payload);
      for (auto& op : payload["ops"]) keys.push_back(op["key"]);
      answer(c, Json::object());
    }
    return keys;
  }
  // Runs what was posted (the scheduling pass).
  void run() {
    io.poll();
    io.restart();
  }
  // Runs the posted scheduling pass and answers the R commits.
  std::vector<std::string> settle() {
    run();
    return commit_all();
  }
  Json status() {
    request("sched.resource-status", Json::object(), false, role::kUser);
    auto r = responses("sched.resource-status");
    LOOM_ASSERT(r.size() == 1);
    return r[0];
  }
  // The ids of the alloc responses of `type` among `rs`.
  static std::vector<uint64_t> ids_of(const std::vector<Json>& rs, int type) {
    std::vector<uint64_t> ids;
    for (auto& r : rs) {
      if (r.value("type", -1) == type) ids.push_back(r["id"]);
    }
    return ids;
  }

  asio::io_context io;
  FakeClock clock;
  std::vector<Message> sent;
  Handle h{clock, [this](Message m) { sent.push_back(std::move(m)); }};
  std::unique_ptr<Sched> sched;
};

SchedConfig config(uint32_t size, uint32_t cores, std::string policy = "fcfs", uint32_t gpus = 0) {
  SchedConfig c;
  c.size = size;
  c.cores_per_rank = cores;
  c.gpus_per_rank = gpus;
  c.policy = std::move(policy);
  return c;
}

TEST(SchedConfigTest, RefusesAnUnknownPolicyInOneLine) {
  SchedConfig c;
  c.policy = "lifo";
  auto r = validate_sched_config(c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().text, "sched.policy must be fcfs or easy, not lifo");
  c.policy = "easy";
  EXPECT_TRUE(validate_sched_config(c).ok());
  c.cores_per_rank = 0;
  EXPECT_FALSE(validate_sched_config(c).ok());
}

TEST(SchedDiscover, FindsAtLeastOneCoreAndAHostname) {
  RankInventory inv = discover_local_resources();
  EXPECT_GE(inv.ncores, 1u);
  EXPECT_FALSE(inv.hostname.empty());
}

TEST_F(SchedTest, RetriesTheHelloUntilTheJobManagerAnswers) {
  create(config(2, 2));
  answer_error(take("kvs.lookup"), ENOENT);
  answer(take("broker.status"), Json::object());
  answer_error(take("job-manager.sched-hello"), ENOSYS, "unknown method job-manager.sched-hello");
  EXPECT_EQ(count("job-manager.sched-hello", MsgType::kRequest), 0u);
  clock.advance(0.5);
  EXPECT_EQ(count("job-manager.sched-hello", MsgType::kRequest), 0u);
  clock.advance(0.5);
  Message hello = take("job-manager.sched-hello");
  // A job holding ranks 0-1, of which rank 1 was already released.
  answer(hello, Json{{"id", 42},
                     {"priority", 16},
                     {"userid", 1000},
                     {"t_submit", 1.0},
                     {"R", R({{0, "0-1"}, {1, "0-1"}}).to_json()},
                     {"free", "1"}});
  answer_error(hello, ENODATA);
  EXPECT_FALSE(sched->ready());
  answer(take("job-manager.sched-ready"), Json{{"count", 0}});
  EXPECT_TRUE(sched->ready());
  Json st = status();
  EXPECT_EQ(st["allocated"]["ranks"], "0");
  EXPECT_EQ(st["free"]["ranks"], "1");
  EXPECT_EQ(st["alarms"], 0);
  // Rank 0 is not handed out again.
  alloc(1, nodes(2));
  settle();
  EXPECT_TRUE(ids_of(responses("sched.alloc"), 0).empty());
}

TEST_F(SchedTest, LearnsDrainedRanksAndDownRanksAtStartup) {
  create(config(3, 1));
  answer(take("kvs.lookup"), Json{{"value", R"({"1":{"reason":"fan","timestamp":5}})"}});
  answer(take("broker.status"),
         Json{{"ranks", Json::array({Json{{"rank", 0}, {"state", "online"}}, Json{{"rank", 1}, {"state", "online"}},
                                     Json{{"rank", 2}, {"state", "offline"}}})}});
  Message hello = take("job-manager.sched-hello");
  answer_error(hello, ENODATA);
  answer(take("job-manager.sched-ready"), Json{{"count", 0}});
  Json st = status();
  EXPECT_EQ(st["drained"]["ranks"], "1");
  EXPECT_EQ(st["drain"], Json::parse(R"([{"ranks":"1","reason":"fan","timestamp":5.0}])"));
  EXPECT_EQ(st["down"]["ranks"], "2");
  EXPECT_EQ(st["free"]["ranks"], "0");
  h.dispatch(make_event("broker.online", R"({"rank":2})"));
  EXPECT_EQ(status()["free"]["ranks"], "0,2");
}

TEST_F(SchedTest, WritesRThenAnswersWithIt) {
  start(config(2, 4));
  clock.advance(100);
  alloc(7, slots(3, 1, 0, 60));
  run();
  EXPECT_TRUE(responses("sched.alloc").empty());  // not before R is durable
  Message commit = take("kvs.commit");
  Json op = Json::parse(commit.payload)["ops"][0];
  EXPECT_EQ(op["op"], "put");
  EXPECT_EQ(op["key"], "job.7.R");
  answer(commit, Json::object());
  auto rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0]["id"], 7);
  EXPECT_EQ(rs[0]["type"], 0);
  EXPECT_EQ(rs[0]["R"], Json::parse(op["value"].get<std::string>()));
  auto R = ResourceSet::parse(rs[0]["R"]);
  ASSERT_TRUE(R.ok());
  EXPECT_EQ(show(*R), "0:0-2");
  EXPECT_EQ(R->starttime, FakeClock::kEpoch + 100);
  EXPECT_EQ(R->expiration, FakeClock::kEpoch + 160);
}

TEST_F(SchedTest, AnswersAllocsInPriorityOrderThenOldestFirst) {
  start(config(1, 1));
  // All arrive in one loop turn, so one pass sees them all.
  alloc(1, slots(1), 10, 1);
  alloc(2, slots(1), 20, 3);
  alloc(3, slots(1), 20, 2);
  EXPECT_EQ(settle(), std::vector<std::string>{"job.3.R"});
  free(3, R({{0, "0"}}).to_json());
  EXPECT_EQ(settle(), std::vector<std::string>{"job.2.R"});
  // A reprioritized job jumps the queue.
  request("sched.prioritize", Json{{"jobs", Json::array({Json::array({1, 30}), Json::array({99, 1})})}}, false);
  alloc(4, slots(1), 25, 0);
  free(2, R({{0, "0"}}).to_json());
  EXPECT_EQ(settle(), std::vector<std::string>{"job.1.R"});
}

TEST_F(SchedTest, FcfsStopsAtTheFirstJobThatDoesNotFitAndAnnotatesItOnce) {
  start(config(1, 4));
  alloc(1, slots(3));
  alloc(2, slots(2));
  alloc(3, slots(1));  // would fit, but FCFS does not pass job 2
  EXPECT_EQ(settle(), std::vector<std::string>{"job.1.R"});
  auto rs = responses("sched.alloc");
  EXPECT_EQ(ids_of(rs, 0), std::vector<uint64_t>{1});
  ASSERT_EQ(ids_of(rs, 1), std::vector<uint64_t>{2});
  EXPECT_EQ(rs[0]["annotations"], Json::parse(R"({"sched":{"reason_pending":"insufficient resources"}})"));
  alloc(4, slots(1));
  settle();
  EXPECT_TRUE(responses("sched.alloc").empty());  // the same annotation is not sent again
  free(1, R({{0, "0-2"}}).to_json());
  EXPECT_EQ(settle(), (std::vector<std::string>{"job.2.R", "job.3.R", "job.4.R"}));
}

TEST_F(SchedTest, DeniesWhatCanNeverFitAndCancelsWhatIsPending) {
  start(config(2, 2));
  alloc(1, nodes(3));
  auto rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0], Json::parse(R"({"id":1,"type":2,"note":"3 nodes requested but the instance has 2 ranks"})"));
  alloc(2, slots(4));
  alloc(3, slots(1));
  settle();
  responses("sched.alloc");
  request("sched.cancel", Json{{"id", 3}}, false);
  request("sched.cancel", Json{{"id", 2}}, false);  // not pending any more: ignored
  rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0], Json::parse(R"({"id":3,"type":3})"));
  EXPECT_EQ(sched->pending(), 0u);
}

TEST_F(SchedTest, PartialFreeMakesThoseRanksAvailableAtOnce) {
  start(config(4, 1));
  alloc(1, nodes(4));
  settle();
  responses("sched.alloc");
  alloc(2, nodes(2));
  settle();
  free(1, R({{1, "0"}, {3, "0"}}).to_json(), false);
  auto rs = responses("sched.free");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0], Json::parse(R"({"id":1})"));
  EXPECT_EQ(settle(), std::vector<std::string>{"job.2.R"});
  rs = responses("sched.alloc");
  ASSERT_EQ(ids_of(rs, 0), std::vector<uint64_t>{2});
  EXPECT_EQ(show(ResourceSet::parse(rs.back()["R"]).value()), "1:0 3:0");
  // The final free carries what is left.
  free(1, R({{0, "0"}, {2, "0"}}).to_json(), true);
  EXPECT_EQ(responses("sched.free").size(), 1u);
  EXPECT_EQ(status()["free"]["ranks"], "0,2");
  EXPECT_EQ(status()["alarms"], 0);
}

TEST_F(SchedTest, RefusesBadFreesAndKeepsGoing) {
  start(config(2, 1));
  alloc(1, nodes(1));
  settle();
  free(9, R({{0, "0"}}).to_json(), false);
  free(1, R({{1, "0"}}).to_json(), false);
  free(1, Json{{"version", 1}}, false);
  request("sched.free", Json::object(), true, role::kOwner, "not json");
  request("sched.free", Json{{"id", "one"}, {"R", R({{0, "0"}}).to_json()}}, true);
  auto rs = responses("sched.free");
  ASSERT_EQ(rs.size(), 5u);
  // Wrong content is EINVAL; a payload of the wrong shape, EPROTO.
  for (size_t i = 0; i < rs.size(); ++i) EXPECT_EQ(rs[i]["errnum"], i < 3 ? EINVAL : EPROTO) << rs[i].dump();
  EXPECT_EQ(rs[0]["errstr"], "job 9 holds no resources");
  EXPECT_EQ(rs[1]["errstr"], "job 1 does not hold ranks 1 (it holds 0)");
  EXPECT_EQ(rs[2]["errstr"], "R: missing execution");
  EXPECT_EQ(status()["allocated"]["ranks"], "0");
  free(1, R({{0, "0"}}).to_json());
  EXPECT_EQ(responses("sched.free")[0], Json::parse(R"({"id":1})"));
}

TEST_F(SchedTest, FinalFreeGivesBackWhatTheJobHoldsAndNothingElse) {
  start(config(3, 1));
  alloc(1, nodes(2));
  alloc(2, nodes(1));
  settle();
  ASSERT_EQ(status()["allocated"]["ranks"], "0-2");
  // Job 1 gave back rank 0 in a way its final free does not know about: the
  // final free names ranks 0-1, and only rank 1, which it still holds, goes.
  free(1, R({{0, "0"}}).to_json(), false);
  free(1, R({{0, "0"}, {1, "0"}}).to_json(), true);
  auto rs = responses("sched.free");
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[1], Json::parse(R"({"id":1})"));
  EXPECT_EQ(status()["allocated"]["ranks"], "2");
  // A final free of a job that holds nothing is harmless.
  free(1, R({{2, "0"}}).to_json(), true);
  EXPECT_EQ(responses("sched.free")[0], Json::parse(R"({"id":1})"));
  EXPECT_EQ(status()["allocated"]["ranks"], "2");
  EXPECT_EQ(status()["alarms"], 0);
}

TEST_F(SchedTest, RefusesMalformedRequestsWithOneLine) {
  start(config(2, 1));
  request("sched.alloc", Json{{"priority", 1}, {"jobspec", slots(1).raw}}, true);
  request("sched.alloc", Json{{"id", 1}, {"priority", "high"}, {"jobspec", slots(1).raw}}, true);
  request("sched.alloc", Json{{"id", 1}, {"priority", 1}}, true);
  request("sched.alloc", Json::array(), true);
  auto rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 4u);
  EXPECT_EQ(rs[0]["errstr"], "missing \"id\"");
  EXPECT_EQ(rs[1]["errstr"], "\"priority\" must be an integer");
  EXPECT_EQ(rs[2]["errstr"], "missing \"jobspec\"");
  EXPECT_EQ(rs[3]["errstr"], "payload must be a JSON object");
  // A request of the wrong shape is a protocol error.
  for (auto& r : rs) EXPECT_EQ(r["errnum"], EPROTO);
  // A jobspec that cannot be read is denied, as is one that never fits.
  request("sched.alloc", Json{{"id", 2}, {"priority", 1}, {"jobspec", Json{{"version", 2}}}}, true);
  rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0], Json::parse(R"({"id":2,"type":2,"note":"jobspec: missing \"resources\""})"));

  request("sched.prioritize", Json{{"jobs", Json::array({Json::array({1})})}});
  request("sched.cancel", Json{{"id", -1}});
  request("sched.drain", Json{{"ranks", 1}});
  request("sched.undrain", Json::object());
  request("sched.feasibility", Json{{"jobspecs", "none"}});
  for (const char* topic : {"sched.prioritize", "sched.cancel", "sched.drain", "sched.undrain", "sched.feasibility"}) {
    auto got = responses(topic);
    ASSERT_EQ(got.size(), 1u) << topic;
    EXPECT_EQ(got[0]["errnum"], EPROTO) << topic << ": " << got[0].dump();
  }
  // Well-formed, but not an idset.
  request("sched.drain", Json{{"ranks", "1-"}});
  auto bad_ranks = responses("sched.drain");
  ASSERT_EQ(bad_ranks.size(), 1u);
  EXPECT_EQ(bad_ranks[0]["errnum"], EINVAL) << bad_ranks[0].dump();
  EXPECT_EQ(status()["alarms"], 0);
}

TEST_F(SchedTest, ChecksFeasibilityOfEachJobspec) {
  start(config(4, 2));
  request("sched.feasibility", Json{{"jobspecs", Json::array({slots(8).raw, nodes(4).raw})}});
  EXPECT_EQ(responses("sched.feasibility"), std::vector<Json>{Json::object()});
  request("sched.feasibility", Json{{"jobspecs", Json::array({slots(8).raw, slots(8, 2).raw})}});
  request("sched.feasibility", Json{{"jobspecs", Json::array({Json{{"version", 1}}})}});
  auto rs = responses("sched.feasibility");
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0]["errnum"], EINVAL);
  EXPECT_EQ(rs[0]["errstr"], "jobspec 1: 8 slots of 2 cores need 16 cores; the instance has 8");
  EXPECT_EQ(rs[1]["errstr"], "jobspec 0: missing \"resources\"");
}

TEST_F(SchedTest, DrainIsSavedBeforeItIsAnsweredAndKeepsNewJobsOff) {
  start(config(4, 1));
  request("sched.drain", Json{{"ranks", "5-6"}, {"reason", "x"}});
  auto rs = responses("sched.drain");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0]["errstr"], "ranks 5-6 are not in this instance (size 4)");

  alloc(1, nodes(1));  // runs on rank 0 and keeps running when drained
  EXPECT_EQ(settle(), std::vector<std::string>{"job.1.R"});
  responses("sched.alloc");
  request("sched.drain", Json{{"ranks", "0-1"}, {"reason", "bad disk"}});
  EXPECT_TRUE(responses("sched.drain").empty());
  Message commit = take("kvs.commit");
  Json op = Json::parse(commit.payload)["ops"][0];
  EXPECT_EQ(op["key"], "resource.drain");
  double t = FakeClock::kEpoch;
  EXPECT_EQ(Json::parse(op["value"].get<std::string>()), (Json{{"0", {{"reason", "bad disk"}, {"timestamp", t}}},
                                                               {"1", {{"reason", "bad disk"}, {"timestamp", t}}}}));
  answer(commit, Json::object());
  EXPECT_EQ(responses("sched.drain"), std::vector<Json>{Json::object()});

  Json st = status();
  EXPECT_EQ(st["drained"]["ranks"], "0-1");
  EXPECT_EQ(st["allocated"]["ranks"], "0");
  EXPECT_EQ(st["free"]["ranks"], "2-3");
  EXPECT_EQ(st["drain"], Json::parse(R"([{"ranks":"0-1","reason":"bad disk","timestamp":1.7e9}])"));
  EXPECT_EQ(st["policy"], "fcfs");

  alloc(2, nodes(3));
  settle();
  EXPECT_TRUE(ids_of(responses("sched.alloc"), 0).empty());
  request("sched.undrain", Json{{"ranks", "1-2"}});
  EXPECT_EQ(responses("sched.undrain")[0]["errstr"], "rank 2 is not drained");
  request("sched.undrain", Json{{"ranks", "1"}});
  commit_all();
  EXPECT_EQ(responses("sched.undrain"), std::vector<Json>{Json::object()});
  EXPECT_EQ(settle(), std::vector<std::string>{"job.2.R"});
}

TEST_F(SchedTest, DrainAndUndrainAreForTheOwner) {
  start(config(2, 1));
  request("sched.drain", Json{{"ranks", "0"}}, false, role::kUser);
  auto rs = responses("sched.drain");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0]["errnum"], EPERM);
}

TEST_F(SchedTest, ALostRankGetsNoNewJobsUntilItIsBack) {
  start(config(2, 1));
  h.dispatch(make_event("broker.lost", R"({"rank":0,"reason":"heartbeat"})"));
  EXPECT_EQ(status()["down"]["ranks"], "0");
  alloc(1, nodes(2));
  alloc(2, nodes(1), 1);
  EXPECT_EQ(settle(), std::vector<std::string>{});  // FCFS: job 1 waits, so does job 2
  h.dispatch(make_event("broker.online", R"({"rank":0})"));
  EXPECT_EQ(settle(), std::vector<std::string>{"job.1.R"});
}

TEST_F(SchedTest, EasyReservesForTheHeadAndBackfillsAroundIt) {
  start(config(2, 4, "easy"));
  clock.advance(10);
  alloc(1, nodes(1, 4, 1, 0, false, 100));  // rank 0 until t=110
  alloc(2, slots(2, 1, 0, 1000), 15);       // rank 1 cores 0-1, until t=1010
  EXPECT_EQ(settle(), (std::vector<std::string>{"job.1.R", "job.2.R"}));
  responses("sched.alloc");
  alloc(3, nodes(2, 4), 14);           // the head: needs both ranks whole, at t=1010
  alloc(4, slots(1, 1, 0, 50), 13);    // ends by then: backfills
  alloc(5, slots(1, 1, 0, 5000), 12);  // would delay the head: waits
  alloc(6, slots(1), 11);              // no duration: waits
  EXPECT_EQ(settle(), std::vector<std::string>{"job.4.R"});
  auto rs = responses("sched.alloc");
  EXPECT_EQ(ids_of(rs, 0), std::vector<uint64_t>{4});
  ASSERT_EQ(ids_of(rs, 1), std::vector<uint64_t>{3});
  Json a = rs[0]["type"] == 1 ? rs[0] : rs[1];
  EXPECT_EQ(a["annotations"]["sched"]["reason_pending"], "insufficient resources");
  EXPECT_EQ(a["annotations"]["sched"]["t_estimate"], FakeClock::kEpoch + 1010);
  EXPECT_EQ(status()["policy"], "easy");
}

TEST_F(SchedTest, EasyWithoutEstimatesBehavesLikeFcfs) {
  start(config(1, 2, "easy"));
  alloc(1, slots(1));  // no duration: the head's start cannot be planned
  alloc(2, slots(2));
  alloc(3, slots(1, 1, 0, 10));
  EXPECT_EQ(settle(), std::vector<std::string>{"job.1.R"});
  auto rs = responses("sched.alloc");
  ASSERT_EQ(ids_of(rs, 1), std::vector<uint64_t>{2});
  EXPECT_FALSE(rs.back()["annotations"]["sched"].contains("t_estimate"));
}

TEST_F(SchedTest, AHelloThatFailsHalfwayIsStartedAfresh) {
  create(config(2, 2));
  answer_error(take("kvs.lookup"), ENOENT);
  answer(take("broker.status"), Json::object());
  Json job{{"id", 5}, {"priority", 1}, {"userid", 1}, {"t_submit", 1}, {"R", R({{0, "0-1"}}).to_json()}, {"free", ""}};
  Message hello = take("job-manager.sched-hello");
  answer(hello, job);
  answer_error(hello, EPROTO, "the job manager restarted");
  clock.advance(1);
  hello = take("job-manager.sched-hello");
  answer(hello, job);  // the same job again: not a double-booking
  answer_error(hello, ENODATA);
  answer_error(take("job-manager.sched-ready"), ENOSYS);
  clock.advance(1);
  hello = take("job-manager.sched-hello");
  answer(hello, job);
  answer_error(hello, ENODATA);
  answer(take("job-manager.sched-ready"), Json{{"count", 0}});
  EXPECT_TRUE(sched->ready());
  Json st = status();
  EXPECT_EQ(st["alarms"], 0);
  EXPECT_EQ(st["allocated"]["ranks"], "0");
}

TEST_F(SchedTest, TheFinalFreeEndsTheAllocation) {
  start(config(3, 1));
  alloc(1, nodes(3));
  settle();
  free(1, R({{2, "0"}}).to_json(), false);
  free(1, R({{0, "0"}}).to_json(), true);  // rank 1 is left out: freed all the same
  EXPECT_EQ(responses("sched.free"), (std::vector<Json>{Json{{"id", 1}}, Json{{"id", 1}}}));
  EXPECT_EQ(status()["free"]["ranks"], "0-2");
  // Everything was given back before: the final free carries an empty R.
  alloc(2, nodes(1));
  settle();
  free(2, R({{0, "0"}}).to_json(), false);
  free(2, ResourceSet().to_json(), true);
  EXPECT_EQ(responses("sched.free"), (std::vector<Json>{Json{{"id", 2}}, Json{{"id", 2}}}));
  EXPECT_EQ(status()["alarms"], 0);
}

TEST_F(SchedTest, RefusesASecondAllocForTheSameJob) {
  start(config(2, 1));
  alloc(1, nodes(1));
  alloc(1, nodes(1));
  auto rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0]["errstr"], "job 1 is already pending");
  settle();
  responses("sched.alloc");
  alloc(1, nodes(1));
  rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0]["errstr"], "job 1 already holds resources");
}

TEST_F(SchedTest, ForgetsTheAllocsOfAClientThatDisconnected) {
  start(config(1, 1));
  alloc(1, slots(1));
  alloc(2, slots(1));
  settle();
  EXPECT_EQ(sched->pending(), 1u);
  request("sched.disconnect", Json::object(), false, role::kUser);
  EXPECT_EQ(sched->pending(), 0u);
}

TEST_F(SchedTest, EasyMovesTheEstimateToTheNewHead) {
  start(config(1, 2, "easy"));
  alloc(1, slots(2, 1, 0, 100));
  settle();
  alloc(2, slots(2, 1, 0, 100), 10);
  settle();
  auto rs = responses("sched.alloc");
  ASSERT_EQ(ids_of(rs, 1), std::vector<uint64_t>{2});
  EXPECT_EQ(rs.back()["annotations"]["sched"]["t_estimate"], FakeClock::kEpoch + 100);
  alloc(3, slots(1, 1, 0, 100), 20);  // higher priority: now it holds the reservation
  settle();
  rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0], Json::parse(R"({"id":3,"type":1,"annotations":{"sched":{"reason_pending":"insufficient resources",
      "t_estimate":1700000100.0}}})"));
  EXPECT_EQ(rs[1], Json::parse(R"({"id":2,"type":1,"annotations":{"sched":{"reason_pending":"insufficient resources",
      "t_estimate":null}}})"));
}

TEST_F(SchedTest, RestoredAllocationsThatClashCountAsAlarms) {
  Json job{{"priority", 1}, {"userid", 1}, {"t_submit", 1}, {"R", R({{0, "0"}}).to_json()}, {"free", ""}};
  Json a = job, b = job;
  a["id"] = 1;
  b["id"] = 2;
  start(config(1, 2), {a, b});
  Json st = status();
  EXPECT_EQ(st["alarms"], 1);
  EXPECT_EQ(st["allocated"]["ncores"], 1);
}

TEST_F(SchedTest, AFailedRCommitDeniesTheJobAndFreesItsResources) {
  start(config(1, 1));
  alloc(1, slots(1));
  run();
  answer_error(take("kvs.commit"), EIO, "disk full");
  auto rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0]["type"], 2);
  EXPECT_EQ(rs[0]["note"], "cannot write job.1.R: disk full");
  EXPECT_EQ(status()["free"]["ncores"], 1);
}

}  // namespace
}  // namespace loom
