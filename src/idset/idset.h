// A set of non-negative integers (ranks, cores) kept as sorted, disjoint,
// non-adjacent ranges; its text form is Flux RFC 22: "0-3,5,7-9".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace loom {

class IdSet {
 public:
  IdSet() = default;
  IdSet(std::initializer_list<uint32_t> ids);

  // Accepts "0-3,5", optionally in brackets ("[0-3,5]"), in any order and
  // with overlaps; refuses reversed ranges, empty parts and non-digits.
  static Result<IdSet> parse(std::string_view s);
  // The canonical form: ascending, ranges collapsed, no brackets.
  std::string encode() const;
  // The same, appended to `out` (digits, commas and dashes: nothing a
  // JSON string needs to escape).
  void encode_to(std::string& out) const;

  void insert(uint32_t id) { insert_range(id, id); }
  void insert_range(uint32_t lo, uint32_t hi);
  void erase(uint32_t id) { erase_range(id, id); }
  void erase_range(uint32_t lo, uint32_t hi);
  void clear() { ranges_.clear(); }  // keeps its storage for what comes next
  bool contains(uint32_t id) const;
  bool empty() const { return ranges_.empty(); }
  uint64_t count() const;
  std::optional<uint32_t> first() const;
  std::optional<uint32_t> last() const;
  std::vector<uint32_t> to_vector() const;
  const std::vector<std::pair<uint32_t, uint32_t>>& ranges() const { return ranges_; }

  IdSet set_union(const IdSet& o) const;
  IdSet intersect(const IdSet& o) const;
  IdSet subtract(const IdSet& o) const;
  bool intersects(const IdSet& o) const;  // !intersect(o).empty(), without building it
  bool is_subset_of(const IdSet& o) const;

  bool operator==(const IdSet&) const = default;

 private:
  std::vector<std::pair<uint32_t, uint32_t>> ranges_;  // inclusive
};

}  // namespace loom
