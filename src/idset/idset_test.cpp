#include "idset/idset.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace loom {

TEST(IdSet, EncodesConsecutiveIdsAsRanges) {
  IdSet s{0, 1, 2, 3, 5, 7, 8, 9};
  EXPECT_EQ(s.encode(), "0-3,5,7-9");
  EXPECT_EQ(s.count(), 8u);
  EXPECT_EQ(IdSet{}.encode(), "");
}

TEST(IdSet, ParsesBracketsUnsortedAndOverlappingInput) {
  EXPECT_EQ(IdSet::parse("[0-3,5]")->encode(), "0-3,5");
  EXPECT_EQ(IdSet::parse("9,3-5,4-7,0")->encode(), "0,3-7,9");
  EXPECT_EQ(IdSet::parse("1,2,3")->encode(), "1-3");
  EXPECT_TRUE(IdSet::parse("")->empty());
  EXPECT_TRUE(IdSet::parse("[]")->empty());
  EXPECT_EQ(IdSet::parse("4294967295")->encode(), "4294967295");
}

TEST(IdSet, RefusesMalformedText) {
  for (const char* s : {"5-3", "1,,2", ",1", "1,", "a", "1-", "-1", "1-2-3", "[1", "1]", "4294967296", "1 2", "+1"}) {
    EXPECT_FALSE(IdSet::parse(s).ok()) << s;
  }
}

TEST(IdSet, SetOperations) {
  auto a = *IdSet::parse("0-7");
  auto b = *IdSet::parse("2-3,6-9");
  EXPECT_EQ(a.set_union(b).encode(), "0-9");
  EXPECT_EQ(a.intersect(b).encode(), "2-3,6-7");
  EXPECT_EQ(a.subtract(b).encode(), "0-1,4-5");
  EXPECT_TRUE(IdSet::parse("2-3")->is_subset_of(a));
  EXPECT_FALSE(b.is_subset_of(a));
  EXPECT_TRUE(a.contains(7));
  EXPECT_FALSE(a.contains(8));
  EXPECT_EQ(*b.first(), 2u);
  EXPECT_EQ(*b.last(), 9u);
}

TEST(IdSet, EraseSplitsRanges) {
  auto s = *IdSet::parse("0-9");
  s.erase(5);
  EXPECT_EQ(s.encode(), "0-4,6-9");
  s.erase_range(0, 4);
  EXPECT_EQ(s.encode(), "6-9");
}

TEST(IdSet, AgreesWithStdSetOnRandomOperations) {
  std::mt19937 rng(42);
  IdSet s;
  std::set<uint32_t> ref;
  for (int i = 0; i < 5000; ++i) {
    uint32_t lo = rng() % 200, hi = lo + rng() % 10;
    if (rng() % 3) {
      s.insert_range(lo, hi);
      for (uint32_t v = lo; v <= hi; ++v) ref.insert(v);
    } else {
      s.erase_range(lo, hi);
      for (uint32_t v = lo; v <= hi; ++v) ref.erase(v);
    }
    ASSERT_EQ(s.count(), ref.size());
  }
  EXPECT_EQ(s.to_vector(), std::vector<uint32_t>(ref.begin(), ref.end()));
  EXPECT_EQ(IdSet::parse(s.encode())->to_vector(), s.to_vector());
  for (size_t i = 1; i < s.ranges().size(); ++i) {
    EXPECT_GT(s.ranges()[i].first, s.ranges()[i - 1].second + 1);  // never adjacent
  }
}

}  // namespace loom
