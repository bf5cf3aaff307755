// A set of non-negative integers (ranks, cores) kept as sorted, disjoint,
// non-adjacent ranges; its text form is Flux RFC 22: "0-3,5,7-9".
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace loom {

// The ranges of an IdSet: a vector that keeps one range in place, with no
// allocation of its own. Most sets of a resource manager are one range (a
// node's cores, a run of ranks), and the scheduler reads those of every
// rank of every allocation: in place, they share the cache line of what
// holds them.
class IdRanges {
 public:
  using value_type = std::pair<uint32_t, uint32_t>;
  using iterator = value_type*;
  using const_iterator = const value_type*;

  IdRanges() = default;
  IdRanges(const IdRanges& o) { assign(o); }
  IdRanges(IdRanges&& o) noexcept { take(o); }
  IdRanges& operator=(const IdRanges& o) {
    if (this != &o) assign(o);
    return *this;
  }
  IdRanges& operator=(IdRanges&& o) noexcept {
    if (this != &o) {
      release();
      take(o);
    }
    return *this;
  }
  ~IdRanges() { release(); }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  iterator begin() { return data_; }
  iterator end() { return data_ + size_; }
  const_iterator begin() const { return data_; }
  const_iterator end() const { return data_ + size_; }
  value_type& operator[](size_t i) { return data_[i]; }
  const value_type& operator[](size_t i) const { return data_[i]; }
  value_type& front() { return data_[0]; }
  value_type& back() { return data_[size_ - 1]; }
  const value_type& front() const { return data_[0]; }
  const value_type& back() const { return data_[size_ - 1]; }

  void clear() { size_ = 0; }  // keeps its storage for what comes next
  void reserve(size_t n) {
    if (n > cap_) grow(n);
  }
  // (v by value: it may be one of this list's own, which growing moves.)
  void push_back(value_type v) {
    if (size_ == cap_) grow(2 * size_t{cap_});
    data_[size_++] = v;
  }
  void emplace_back(uint32_t lo, uint32_t hi) { push_back(value_type(lo, hi)); }
  iterator insert(const_iterator pos, value_type v) {
    const auto at = static_cast<size_t>(pos - data_);
    if (size_ == cap_) grow(2 * size_t{cap_});
    std::move_backward(data_ + at, data_ + size_, data_ + size_ + 1);
    data_[at] = v;
    ++size_;
    return data_ + at;
  }
  iterator erase(const_iterator first, const_iterator last) {
    auto* from = data_ + (first - data_);
    auto* to = data_ + (last - data_);
    std::move(to, end(), from);
    size_ -= static_cast<uint32_t>(to - from);
    return from;
  }

  bool operator==(const IdRanges& o) const { return std::equal(begin(), end(), o.begin(), o.end()); }

 private:
  bool inline_() const { return data_ == &one_; }
  void grow(size_t n) {
    n = std::max<size_t>(n, 4);
    auto* bigger = new value_type[n];
    std::copy(begin(), end(), bigger);
    release();
    data_ = bigger;
    cap_ = static_cast<uint32_t>(n);
  }
  void release() {
    if (!inline_()) delete[] data_;
    data_ = &one_;
    cap_ = 1;
  }
  void assign(const IdRanges& o) {
    size_ = 0;
    reserve(o.size_);
    std::copy(o.begin(), o.end(), data_);
    size_ = o.size_;
  }
  // o's ranges, o left empty (and in place).
  void take(IdRanges& o) {
    if (o.inline_()) {
      one_ = o.one_;
    } else {
      data_ = o.data_;
      cap_ = o.cap_;
      o.data_ = &o.one_;
      o.cap_ = 1;
    }
    size_ = o.size_;
    o.size_ = 0;
  }

  value_type* data_ = &one_;
  uint32_t size_ = 0;
  uint32_t cap_ = 1;
  value_type one_{};
};

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
  std::span<const std::pair<uint32_t, uint32_t>> ranges() const { return {ranges_.begin(), ranges_.end()}; }

  IdSet set_union(const IdSet& o) const;
  IdSet intersect(const IdSet& o) const;
  IdSet subtract(const IdSet& o) const;
  bool intersects(const IdSet& o) const;  // !intersect(o).empty(), without building it
  bool is_subset_of(const IdSet& o) const;

  bool operator==(const IdSet&) const = default;

 private:
  IdRanges ranges_;  // inclusive
};

}  // namespace loom
