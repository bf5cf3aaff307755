#include "rset/rset.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

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

TEST(ResourceSet, TextIsTheDumpOfItsJson) {
  std::vector<ResourceSet> sets{four_ranks(), ResourceSet()};
  ResourceSet gpus_only;
  gpus_only.add_rank(0, RankResources{{}, IdSet{0, 1}, ""});
  gpus_only.add_rank(5, RankResources{IdSet{2}, {}, ""});
  gpus_only.starttime = 1.5;
  gpus_only.expiration = 1e21;
  sets.push_back(gpus_only);
  ResourceSet named;
  named.add_rank(0, RankResources{IdSet{0, 1, 2}, {}, "h\"x\xc3\xa9"});
  named.add_rank(1, RankResources{IdSet{0, 1, 2}, {}, ""});
  named.expiration = 0.1;
  sets.push_back(named);
  for (const auto& r : sets) EXPECT_EQ(r.to_text(), dump_json(r.to_json()));
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

// Kept by entries: reading or writing R costs its entries, not its ranks.
TEST(ResourceSet, RanksWithTheSameChildrenAreOneEntry) {
  ResourceSet wide;
  for (uint32_t r = 0; r < 1000; ++r) wide.add_rank(r, {IdSet{0}, {}, ""});
  EXPECT_EQ(wide.entries().size(), 1u);
  EXPECT_EQ(wide.ranks().size(), 1000u);
  EXPECT_EQ(dump_json(wide.to_json()["execution"]["R_lite"]), R"([{"children":{"core":"0"},"rank":"0-999"}])");
  EXPECT_FALSE(wide.to_json()["execution"].contains("nodelist"));
  auto back = ResourceSet::parse(wide.to_json());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, wide);
}

TEST(ResourceSet, EntriesOutOfOrderReadAsTheSameSet) {
  auto in_order = ResourceSet::parse_text(R"({"version":1,"execution":{"R_lite":[
      {"rank":"0-1","children":{"core":"0"}},{"rank":"2","children":{"core":"1"}},{"rank":"3","children":{"core":"0"}}]}})");
  auto shuffled = ResourceSet::parse_text(R"({"version":1,"execution":{"R_lite":[
      {"rank":"3","children":{"core":"0"}},{"rank":"2","children":{"core":"1"}},{"rank":"1","children":{"core":"0"}},
      {"rank":"0","children":{"core":"0"}}]}})");
  ASSERT_TRUE(in_order.ok() && shuffled.ok());
  EXPECT_EQ(*in_order, *shuffled);
  EXPECT_EQ(shuffled->entries().size(), 3u);
  std::string seen;
  for (const auto& [rank, rr] : shuffled->ranks()) seen += std::to_string(rank) + ":" + rr.cores.encode() + " ";
  EXPECT_EQ(seen, "0:0 1:0 2:1 3:0 ");
  // Without rank 2 its neighbours have the same children: one entry again.
  auto part = shuffled->subset(*IdSet::parse("0-1,3"));
  EXPECT_EQ(part.entries().size(), 1u);
  EXPECT_EQ(part.entries()[0].ranks.encode(), "0-1,3");
  EXPECT_EQ(part, *ResourceSet::parse_text(R"({"version":1,"execution":{"R_lite":[
      {"rank":"0-1,3","children":{"core":"0"}}]}})"));
}

TEST(ResourceSet, RanksAreFoundAndAddedInAnyOrder) {
  auto r = four_ranks();
  EXPECT_EQ(r.ranks().find(4), r.ranks().end());
  EXPECT_TRUE(r.ranks().contains(3));
  auto it = r.ranks().find(3);
  ASSERT_NE(it, r.ranks().end());
  EXPECT_EQ(it->second.gpus.encode(), "0-1");
  EXPECT_EQ(it->second.hostname, "node3");
  // Added below the highest rank, and over a rank it has.
  ResourceSet built;
  built.add_rank(3, {IdSet{0, 1, 2, 3, 4, 5, 6, 7}, IdSet{0, 1}, "node3"});
  built.add_rank(1, {*IdSet::parse("0-7"), {}, "node1"});
  built.add_rank(0, {IdSet{0}, {}, "node0"});
  built.add_rank(2, {*IdSet::parse("0-7"), {}, "node2"});
  built.add_rank(0, {*IdSet::parse("0-7"), {}, "node0"});
  built.starttime = 10;
  built.expiration = 70;
  EXPECT_EQ(built, r);
  // The names follow their ranks into a part.
  auto part = r.subset(*IdSet::parse("1,3"));
  EXPECT_EQ(part.ranks().at(1).hostname, "node1");
  EXPECT_EQ(part.ranks().at(3).hostname, "node3");
  EXPECT_EQ(part.to_json()["execution"]["nodelist"], Json::array({"node1", "node3"}));
}

// add_rank, from views (what a matcher uses) or from a RankResources, in
// order and out of it, joining entries or not, with names on some ranks
// only: the set holds what a plain map of rank to resources says, in
// canonical entries, and reads back from its own text.
TEST(ResourceSet, RanksAddedOneByOneAreWhatAMapSays) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 300; ++trial) {
    ResourceSet set;
    std::map<uint32_t, RankResources> model;
    uint32_t rank = 0;
    for (int n = static_cast<int>(rng() % 12); n > 0; --n) {
      rank = rng() % 5 == 0 ? rng() % (rank + 1) : rank + 1 + rng() % 2;  // now and then below the top
      IdSet cores{0};
      if (rng() % 3 == 0) cores.insert(1 + rng() % 2);
      IdSet gpus;
      if (rng() % 4 == 0) gpus.insert(0);
      std::string host = rng() % 3 == 0 ? "" : "n" + std::to_string(rank);
      model[rank] = RankResources{cores, gpus, host};
      if (rng() % 2) {
        set.add_rank(rank, cores, gpus, host);
      } else {
        set.add_rank(rank, RankResources{cores, gpus, host});
      }
    }
    const bool named =
        std::any_of(model.begin(), model.end(), [](const auto& m) { return !m.second.hostname.empty(); });
    std::map<uint32_t, RankResources> got;
    for (const auto& [r, rr] : set.ranks()) got[r] = rr;
    ASSERT_EQ(got.size(), set.ranks().size());
    for (auto& [r, rr] : model) {
      ASSERT_TRUE(got.count(r)) << r;
      EXPECT_EQ(got[r].cores, rr.cores) << set.to_text();
      EXPECT_EQ(got[r].gpus, rr.gpus) << set.to_text();
      EXPECT_EQ(got[r].hostname, named ? rr.hostname : "") << set.to_text();
    }
    ASSERT_EQ(got.size(), model.size());
    for (size_t e = 1; e < set.entries().size(); ++e) {
      const auto &a = set.entries()[e - 1], &b = set.entries()[e];
      EXPECT_FALSE(a.cores == b.cores && a.gpus == b.gpus) << set.to_text();
    }
    // (A nodelist cannot name some ranks only.)
    const bool all_named =
        std::all_of(model.begin(), model.end(), [](const auto& m) { return !m.second.hostname.empty(); });
    if (named && !all_named) continue;
    auto back = ResourceSet::parse_text(set.to_text());
    ASSERT_TRUE(back.ok()) << back.error().text;
    EXPECT_EQ(*back, set) << set.to_text();
  }
}

// add_ranks() is add_rank() of each rank in turn, above the set or not,
// with names or without: the two sets are equal, names and all.
TEST(ResourceSet, ARunOfRanksIsWhatAddingEachGives) {
  std::mt19937 rng(9);
  int runs = 0;
  for (int trial = 0; trial < 400; ++trial) {
    ResourceSet by_run, by_rank;
    uint32_t top = 0;
    for (int n = static_cast<int>(rng() % 6); n > 0; --n) {
      const uint32_t lo = rng() % 6 == 0 ? rng() % (top + 1) : top + rng() % 3;  // now and then below the top
      const uint32_t hi = lo + rng() % 70;
      top = std::max(top, hi + 1);
      IdSet cores{0};
      if (rng() % 3 == 0) cores.insert(1);
      IdSet gpus;
      if (rng() % 4 == 0) gpus.insert(0);
      const int naming = static_cast<int>(rng() % 3);  // none, every rank, every rank but the even ones
      std::function<std::string_view(uint32_t)> name_of;
      std::vector<std::string> names(hi + 1);
      for (uint32_t r = lo; r <= hi; ++r)
        names[r] = naming == 0 || (naming == 2 && r % 2 == 0) ? "" : "n" + std::to_string(r);
      if (naming) name_of = [&names](uint32_t r) -> std::string_view { return names[r]; };
      by_run.add_ranks(lo, hi, cores, gpus, name_of);
      for (uint32_t r = lo; r <= hi; ++r) by_rank.add_rank(r, cores, gpus, names[r]);
      runs += hi > lo ? 1 : 0;
    }
    ASSERT_EQ(by_run, by_rank) << by_run.to_text() << "\n" << by_rank.to_text();
    ASSERT_EQ(by_run.hostnames(), by_rank.hostnames());
    // The set's ranks, kept as they were added, are its entries' ranks.
    for (const ResourceSet* r : {&by_run, &by_rank}) {
      IdSet ranks;
      for (const auto& e : r->entries()) ranks = ranks.set_union(e.ranks);
      ASSERT_EQ(r->rank_set(), ranks) << r->to_text();
      ASSERT_EQ(r->rank_set().count(), r->ranks().size());
    }
  }
  EXPECT_GT(runs, 600);
}

// Copies share what they hold until one changes: the change is that
// copy's alone, by every way a set changes.
TEST(ResourceSet, ACopyChangesAlone) {
  const ResourceSet original = four_ranks();
  const std::string before = original.to_text();
  const std::vector<std::function<void(ResourceSet&)>> changes{
      [](ResourceSet& r) {
        r.add_rank(9, RankResources{IdSet{0}, {}, "node9"});
      },  // above: joins or appends
      [](ResourceSet& r) {
        r.add_rank(1, RankResources{IdSet{9}, {}, "other"});
      },  // below: rebuilt
      [](ResourceSet& r) {
        r.add_ranks(10, 12, IdSet{0, 1, 2, 3, 4, 5, 6, 7}, {});
      },  // a run
      [](ResourceSet& r) { r = ResourceSet(); },
  };
  for (const auto& change : changes) {
    ResourceSet copy = original;
    ResourceSet second = copy;
    EXPECT_EQ(copy, original);
    change(copy);
    EXPECT_NE(copy, original);
    EXPECT_EQ(original.to_text(), before);
    EXPECT_EQ(second, original);
    EXPECT_EQ(original.ranks().at(3).hostname, "node3");
  }
  // Equal sets built apart compare equal; the times count too.
  auto again = ResourceSet::parse_text(before);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, original);
  again->expiration += 1;
  EXPECT_NE(*again, original);
  EXPECT_EQ(ResourceSet(), ResourceSet::parse_text(R"({"version":1,"execution":{"R_lite":[]}})").value());
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
