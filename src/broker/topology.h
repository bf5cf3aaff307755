// The overlay tree: rank 0 at the root, each rank r with children
// r*fanout+1 .. r*fanout+fanout (those below size). Pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace loom {

struct Topology {
  uint32_t size = 1;
  uint32_t fanout = 2;

  std::optional<uint32_t> parent(uint32_t rank) const;
  std::vector<uint32_t> children(uint32_t rank) const;
  // Every rank below `rank` in the tree, not including it.
  std::vector<uint32_t> descendants(uint32_t rank) const;
  // The child of `from` on the path down to `to`, or nullopt when `to` is
  // not below `from`.
  std::optional<uint32_t> child_toward(uint32_t from, uint32_t to) const;
};

}  // namespace loom
