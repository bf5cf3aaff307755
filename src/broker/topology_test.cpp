#include "broker/topology.h"

#include <gtest/gtest.h>

namespace loom {

TEST(Topology, BinaryTreeParentsAndChildren) {
  Topology t{7, 2};
  EXPECT_FALSE(t.parent(0).has_value());
  EXPECT_EQ(*t.parent(1), 0u);
  EXPECT_EQ(*t.parent(2), 0u);
  EXPECT_EQ(*t.parent(5), 2u);
  EXPECT_EQ(t.children(0), (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(t.children(2), (std::vector<uint32_t>{5, 6}));
  EXPECT_TRUE(t.children(3).empty());
}

TEST(Topology, ChildrenStopAtSize) {
  Topology t{4, 2};
  EXPECT_EQ(t.children(1), (std::vector<uint32_t>{3}));
  EXPECT_TRUE(t.children(2).empty());
}

TEST(Topology, ChildTowardFindsThePathDown) {
  Topology t{15, 2};
  EXPECT_EQ(*t.child_toward(0, 13), 2u);  // 13 → 6 → 2 → 0
  EXPECT_EQ(*t.child_toward(2, 13), 6u);
  EXPECT_EQ(*t.child_toward(6, 13), 13u);
  EXPECT_FALSE(t.child_toward(1, 13).has_value());  // not below 1
  EXPECT_FALSE(t.child_toward(3, 3).has_value());
  EXPECT_FALSE(t.child_toward(0, 15).has_value());  // out of range
}

TEST(Topology, FlatTreeWithLargeFanout) {
  Topology t{5, 16};
  EXPECT_EQ(t.children(0), (std::vector<uint32_t>{1, 2, 3, 4}));
  EXPECT_EQ(*t.child_toward(0, 4), 4u);
}

TEST(Topology, DescendantsCoverTheSubtree) {
  Topology t{7, 2};
  auto d = t.descendants(1);
  std::sort(d.begin(), d.end());
  EXPECT_EQ(d, (std::vector<uint32_t>{3, 4}));
  EXPECT_EQ(t.descendants(0).size(), 6u);
}

TEST(Topology, ChainWithFanoutOne) {
  Topology t{4, 1};
  EXPECT_EQ(*t.parent(3), 2u);
  EXPECT_EQ(*t.child_toward(0, 3), 1u);
}

}  // namespace loom
