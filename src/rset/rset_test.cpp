#include "rset/rset.h"

#include <gtest/gtest.h>

namespace loom {

namespace {
ResourceSet four_ranks() {
  auto r = ResourceSet::parse_text(R"({"version":1,"execution":{
      "R_lite":[{"rank":"0-2","children":{"core":"0-7"}},{"rank":"3","children":{"core":"0-7","gpu":"0-1"}}],
      "nodelist":["node[0-3]"],"starttime":10,"expiration":70}})");
  EXPECT_TRUE(r.ok()) << r.error().text;
  return *r;
}
}  // namespace

TEST(ResourceSet, ParsesRLiteAndNodelist) {
  auto r = four_ranks();
  EXPECT_EQ(r.rank_set().encode(), "0-3");
  EXPECT_EQ(r.ncores(), 32u);
  EXPECT_EQ(r.ngpus(), 2u);
  EXPECT_EQ(r.ranks().at(2).hostname, "node2");
  EXPECT_EQ(r.expiration, 70);
}

TEST(ResourceSet, RoundTripsThroughJson) {
  auto r = four_ranks();
  auto back = ResourceSet::parse(r.to_json());
  ASSERT_TRUE(back.ok()) << back.error().text;
  EXPECT_EQ(*back, r);
  EXPECT_EQ(r.to_json()["execution"]["R_lite"].size(), 2u);  // ranks 0-2 share an entry
}

TEST(ResourceSet, SubsetByRanksForPartialRelease) {
  auto r = four_ranks();
  auto part = r.subset(*IdSet::parse("0-1"));
  EXPECT_EQ(part.rank_set().encode(), "0-1");
  EXPECT_EQ(part.ncores(), 16u);
  auto rest = r.subtract(part);
  EXPECT_EQ(rest.rank_set().encode(), "2-3");
  EXPECT_EQ(rest.set_union(part), r);
  EXPECT_TRUE(rest.disjoint(part));
  EXPECT_FALSE(r.disjoint(part));
}

TEST(ResourceSet, SubtractKeepsRanksWithCoresLeft) {
  auto r = four_ranks();
  ResourceSet some;
  some.add_rank(0, {*IdSet::parse("0-3"), {}, ""});
  auto left = r.subtract(some);
  EXPECT_EQ(left.ranks().at(0).cores.encode(), "4-7");
  EXPECT_EQ(left.ncores(), 28u);
}

TEST(ResourceSet, RefusesMalformedR) {
  for (
      const char* s :
      {R"({"version":2,"execution":{"R_lite":[]}})", R"({"version":1})", R"({"version":1,"execution":{"R_lite":{}}})",
       R"({"version":1,"execution":{"R_lite":[{"rank":"3-1","children":{"core":"0"}}]}})",
       R"({"version":1,"execution":{"R_lite":[{"rank":"0","children":{"memory":"0"}}]}})",
       R"({"version":1,"execution":{"R_lite":[{"rank":"0","children":{"core":"0"}},{"rank":"0","children":{"core":"1"}}]}})",
       R"({"version":1,"execution":{"R_lite":[{"rank":"0-1","children":{"core":"0"}}],"nodelist":["a"]}})",
       R"({"version":1,"execution":{"R_lite":[],"expiration":-1}})",
       // A million ranks per entry once passed, and the encoder then joined them into one it refused.
       R"({"version":1,"execution":{"R_lite":[{"rank":"0-599999","children":{"core":"0"}},)"
       R"({"rank":"600000-1199999","children":{"core":"0"}}]}})"}) {
    EXPECT_FALSE(ResourceSet::parse_text(s).ok()) << s;
  }
}

TEST(Hostlist, ExpandsRangesAndKeepsPadding) {
  EXPECT_EQ(*expand_hostlist("node[1-3]"), (std::vector<std::string>{"node1", "node2", "node3"}));
  EXPECT_EQ(*expand_hostlist("n[08-10]x,login"), (std::vector<std::string>{"n08x", "n09x", "n10x", "login"}));
  EXPECT_FALSE(expand_hostlist("node[1-").ok());
  EXPECT_FALSE(expand_hostlist("a,,b").ok());
  EXPECT_FALSE(expand_hostlist("x[1]y[2]").ok());  // once "x1y[2]", which read back as "x1y2"
  EXPECT_FALSE(expand_hostlist("x[]").ok());       // once no host at all
}

}  // namespace loom
