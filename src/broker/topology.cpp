#include "broker/topology.h"

namespace loom {

std::optional<uint32_t> Topology::parent(uint32_t rank) const {
  if (rank == 0 || rank >= size) return std::nullopt;
  return (rank - 1) / fanout;
}

std::vector<uint32_t> Topology::children(uint32_t rank) const {
  std::vector<uint32_t> out;
  for (uint64_t c = uint64_t{rank} * fanout + 1; c <= uint64_t{rank} * fanout + fanout && c < size; ++c) {
    out.push_back(static_cast<uint32_t>(c));
  }
  return out;
}

std::vector<uint32_t> Topology::descendants(uint32_t rank) const {
  std::vector<uint32_t> out;
  std::vector<uint32_t> todo = children(rank);
  while (!todo.empty()) {
    uint32_t r = todo.back();
    todo.pop_back();
    out.push_back(r);
    for (uint32_t c : children(r)) todo.push_back(c);
  }
  return out;
}

std::optional<uint32_t> Topology::child_toward(uint32_t from, uint32_t to) const {
  if (to >= size || to <= from) return std::nullopt;
  uint32_t r = to;
  while (true) {
    auto p = parent(r);
    if (!p) return std::nullopt;
    if (*p == from) return r;
    if (*p < from) return std::nullopt;
    r = *p;
  }
}

}  // namespace loom
