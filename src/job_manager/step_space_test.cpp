// StepSpace (step_space.h): steps placed in an allocation's own resources,
// in the instance's numbering.
#include "job_manager/step_space.h"

#include <gtest/gtest.h>

namespace loom {
namespace {

// R: rank 2 cores 4-7 (host "b"), rank 5 cores 0-1 and gpu 1 (host "c").
ResourceSet allocation() {
  ResourceSet r;
  r.add_rank(2, RankResources{IdSet{4, 5, 6, 7}, IdSet{}, "b"});
  r.add_rank(5, RankResources{IdSet{0, 1}, IdSet{1}, "c"});
  return r;
}

Jobspec spec(uint32_t nodes, uint32_t tasks, uint32_t gpus = 0) {
  JobRequest req;
  req.nodes = nodes;
  req.tasks = tasks;
  req.gpus_per_task = gpus;
  req.command = {"true"};
  auto js = build_jobspec(req);
  EXPECT_TRUE(js.ok());
  auto parsed = parse_jobspec(*js);
  EXPECT_TRUE(parsed.ok());
  return *parsed;
}

TEST(StepSpace, PlacesStepsOnTheAllocationsOwnCoresLowestFirst) {
  StepSpace s(allocation());
  auto r = s.match(spec(0, 3));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->ranks().size(), 1u);
  EXPECT_EQ(r->ranks().at(2).cores, (IdSet{4, 5, 6}));
  EXPECT_EQ(r->ranks().at(2).hostname, "b");
  ASSERT_TRUE(s.allocate(1, *r));
  // What is left: core 7 of rank 2, then rank 5.
  auto next = s.match(spec(0, 3));
  ASSERT_TRUE(next);
  EXPECT_EQ(next->ranks().at(2).cores, (IdSet{7}));
  EXPECT_EQ(next->ranks().at(5).cores, (IdSet{0, 1}));
  ASSERT_TRUE(s.allocate(2, *next));
  EXPECT_FALSE(s.match(spec(0, 1)));
  // A partial release gives back that rank only.
  ResourceSet part;
  part.add_rank(5, RankResources{});
  s.free(2, part);
  auto again = s.match(spec(0, 2));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->ranks().at(5).cores, (IdSet{0, 1}));
  s.free_all(1);
  s.free_all(2);
  EXPECT_TRUE(s.empty());
}

TEST(StepSpace, GpusAndWholeNodesAreTheAllocations) {
  StepSpace s(allocation());
  auto g = s.match(spec(0, 1, 1));
  ASSERT_TRUE(g);
  EXPECT_EQ(g->ranks().at(5).gpus, (IdSet{1}));
  auto two = s.match(spec(2, 2));
  ASSERT_TRUE(two);
  EXPECT_EQ(two->rank_set(), (IdSet{2, 5}));
}

TEST(StepSpace, RefusesWhatCouldNeverFitAndWhatIsNotItsOwn) {
  StepSpace s(allocation());
  auto st = s.feasible(spec(3, 3));
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().text.find("allocation"), std::string::npos) << st.error().text;
  EXPECT_EQ(st.error().text.find("instance"), std::string::npos) << st.error().text;
  EXPECT_FALSE(s.feasible(spec(0, 7)));
  EXPECT_TRUE(s.feasible(spec(0, 6)));
  ResourceSet outside;
  outside.add_rank(2, RankResources{IdSet{0}, IdSet{}, "b"});  // core 0 is not the allocation's
  EXPECT_FALSE(s.allocate(7, outside));
  ResourceSet other_rank;
  other_rank.add_rank(3, RankResources{IdSet{4}, IdSet{}, ""});
  EXPECT_FALSE(s.allocate(7, other_rank));
  // Double-booking is refused.
  auto r = s.match(spec(0, 4));
  ASSERT_TRUE(r);
  ASSERT_TRUE(s.allocate(1, *r));
  EXPECT_FALSE(s.allocate(2, *r));
}

}  // namespace
}  // namespace loom
