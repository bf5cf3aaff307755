#include "idset/idset.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <vector>

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
  EXPECT_EQ(IdSet::parse("0,4294967293-4294967295")->encode(), "0,4294967293-4294967295");
  std::string out = "R:";
  IdSet::parse("1-2,7")->encode_to(out);
  EXPECT_EQ(out, "R:1-2,7");
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
    ASSERT_EQ(s.to_vector(), std::vector<uint32_t>(ref.begin(), ref.end())) << i;
    for (size_t k = 1; k < s.ranges().size(); ++k) ASSERT_GT(s.ranges()[k].first, s.ranges()[k - 1].second + 1);
  }
  EXPECT_EQ(s.to_vector(), std::vector<uint32_t>(ref.begin(), ref.end()));
  EXPECT_EQ(IdSet::parse(s.encode())->to_vector(), s.to_vector());
  for (size_t i = 1; i < s.ranges().size(); ++i) {
    EXPECT_GT(s.ranges()[i].first, s.ranges()[i - 1].second + 1);  // never adjacent
  }
}

// A set of one range keeps it in place, a longer one elsewhere: copies and
// moves between the two, both ways, leave each set its own ranges, and a
// set moved from is empty and takes new ranges.
TEST(IdSet, CopiesAndMovesKeepTheirOwnRanges) {
  const std::vector<std::string> texts = {"", "3", "0-15", "1,3", "0-2,4-6,8-10,12-14,16-18,20"};
  for (const auto& from : texts) {
    for (const auto& to : texts) {
      SCOPED_TRACE(from + " onto " + to);
      const IdSet a = *IdSet::parse(from);
      IdSet copy = a;
      copy.insert(100);
      EXPECT_EQ(a.encode(), from);
      EXPECT_EQ(copy, *IdSet::parse(from.empty() ? "100" : from + ",100"));

      IdSet assigned = *IdSet::parse(to);
      assigned = a;
      EXPECT_EQ(assigned, a);
      assigned.erase_range(0, 2);
      EXPECT_EQ(a.encode(), from);

      IdSet source = a;
      IdSet moved = *IdSet::parse(to);
      moved = std::move(source);
      EXPECT_EQ(moved, a);
      EXPECT_TRUE(source.empty());  // NOLINT(bugprone-use-after-move): moved from is empty, as promised
      source.insert_range(7, 9);
      EXPECT_EQ(source.encode(), "7-9");
      EXPECT_EQ(moved, a);

      IdSet constructed(std::move(moved));
      EXPECT_EQ(constructed, a);
      EXPECT_TRUE(moved.empty());  // NOLINT(bugprone-use-after-move)
    }
  }
}

// Sets built mostly in ascending order take the short ways in (past the
// last range, touching it, on it, over it, just before it); they must keep
// the set what std::set says, in canonical form.
TEST(IdSet, AscendingInsertsAgreeWithStdSet) {
  std::mt19937 rng(11);
  IdSet s;
  std::set<uint32_t> ref;
  uint32_t top = 0;
  for (int i = 0; i < 5000; ++i) {
    // From a little below the top to a little past it.
    uint32_t lo = top > 6 ? top - 6 + rng() % 10 : rng() % 10;
    uint32_t hi = lo + rng() % 4;
    s.insert_range(lo, hi);
    for (uint32_t v = lo; v <= hi; ++v) ref.insert(v);
    top = std::max(top, hi);
    ASSERT_EQ(s.count(), ref.size()) << i;
  }
  EXPECT_EQ(s.to_vector(), std::vector<uint32_t>(ref.begin(), ref.end()));
  for (size_t i = 1; i < s.ranges().size(); ++i) {
    EXPECT_GT(s.ranges()[i].first, s.ranges()[i - 1].second + 1);
  }
  IdSet t;
  t.insert_range(5, 9);
  t.insert_range(10, 12);  // touching: one range
  t.insert_range(3, 4);    // before it, touching: still one
  t.insert_range(14, 14);  // past it
  t.insert_range(13, 13);  // closing the gap
  EXPECT_EQ(t.encode(), "3-14");
}

// Union, intersection, difference, overlap and inclusion of random sets
// (a few ranges each, so that ranges meet, touch and nest) agree with
// std::set's, and give sets in canonical form.
TEST(IdSet, SetOperationsAgreeWithStdSet) {
  std::mt19937 rng(7);
  auto random_set = [&](std::set<uint32_t>& ref) {
    IdSet s;
    for (int n = static_cast<int>(rng() % 6); n > 0; --n) {
      uint32_t lo = rng() % 60, hi = lo + rng() % 8;
      s.insert_range(lo, hi);
      for (uint32_t v = lo; v <= hi; ++v) ref.insert(v);
    }
    return s;
  };
  auto canonical = [](const IdSet& s) {
    for (size_t i = 1; i < s.ranges().size(); ++i) {
      if (s.ranges()[i].first <= s.ranges()[i - 1].second + 1) return false;
    }
    for (auto [a, b] : s.ranges()) {
      if (a > b) return false;
    }
    return true;
  };
  for (int i = 0; i < 3000; ++i) {
    std::set<uint32_t> ra, rb;
    IdSet a = random_set(ra), b = random_set(rb);
    std::vector<uint32_t> u, x, d;
    std::set_union(ra.begin(), ra.end(), rb.begin(), rb.end(), std::back_inserter(u));
    std::set_intersection(ra.begin(), ra.end(), rb.begin(), rb.end(), std::back_inserter(x));
    std::set_difference(ra.begin(), ra.end(), rb.begin(), rb.end(), std::back_inserter(d));
    IdSet su = a.set_union(b), sx = a.intersect(b), sd = a.subtract(b);
    ASSERT_EQ(su.to_vector(), u) << a.encode() << " | " << b.encode();
    ASSERT_EQ(sx.to_vector(), x) << a.encode() << " & " << b.encode();
    ASSERT_EQ(sd.to_vector(), d) << a.encode() << " - " << b.encode();
    ASSERT_TRUE(canonical(su) && canonical(sx) && canonical(sd)) << a.encode() << ", " << b.encode();
    ASSERT_EQ(a.intersects(b), !x.empty()) << a.encode() << ", " << b.encode();
    ASSERT_EQ(a.is_subset_of(b), d.empty()) << a.encode() << ", " << b.encode();
  }
  // At the top of the id space, where a range's end plus one wraps.
  IdSet top;
  top.insert_range(4294967290u, 4294967295u);
  IdSet below;
  below.insert_range(4294967280u, 4294967289u);
  EXPECT_EQ(top.set_union(below).encode(), "4294967280-4294967295");
  EXPECT_EQ(top.subtract(*IdSet::parse("4294967295")).encode(), "4294967290-4294967294");
  EXPECT_EQ(below.set_union(top).subtract(top).encode(), "4294967280-4294967289");
  EXPECT_TRUE(top.is_subset_of(top.set_union(below)));
}

}  // namespace loom
