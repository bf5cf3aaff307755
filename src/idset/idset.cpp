#include "idset/idset.h"

#include <algorithm>
#include <array>
#include <charconv>

#include "base/quote.h"

namespace loom {

IdSet::IdSet(std::initializer_list<uint32_t> ids) {
  for (uint32_t id : ids) insert(id);
}

namespace {
Error bad(std::string_view s, const std::string& why) {
  return Error{EINVAL, "invalid idset " + quote_input(s) + ": " + why};
}

std::optional<uint32_t> parse_u32(std::string_view s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(v);
}
}  // namespace

Result<IdSet> IdSet::parse(std::string_view s) {
  std::string_view body = s;
  if (!body.empty() && body.front() == '[') {
    if (body.size() < 2 || body.back() != ']') return bad(s, "unbalanced brackets");
    body = body.substr(1, body.size() - 2);
  }
  IdSet out;
  if (body.empty()) return out;
  size_t start = 0;
  while (true) {
    size_t comma = body.find(',', start);
    std::string_view part = body.substr(start, comma == std::string_view::npos ? body.size() - start : comma - start);
    if (part.empty()) return bad(s, "empty element");
    size_t dash = part.find('-');
    if (dash == std::string_view::npos) {
      auto v = parse_u32(part);
      if (!v) return bad(s, quote_input(part) + " is not a number");
      out.insert(*v);
    } else {
      auto lo = parse_u32(part.substr(0, dash));
      auto hi = parse_u32(part.substr(dash + 1));
      if (!lo || !hi) return bad(s, quote_input(part) + " is not a range");
      if (*lo > *hi) return bad(s, "range " + quote_input(part) + " is reversed");
      out.insert_range(*lo, *hi);
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string IdSet::encode() const {
  std::string out;
  encode_to(out);
  return out;
}

void IdSet::encode_to(std::string& out) const {
  // "4294967295-4294967295,": the longest a range is written.
  std::array<char, 24> buf;
  for (size_t i = 0; i < ranges_.size(); ++i) {
    auto [lo, hi] = ranges_[i];
    char* p = buf.data();
    if (i > 0) *p++ = ',';
    p = std::to_chars(p, buf.data() + buf.size(), lo).ptr;
    if (hi != lo) {
      *p++ = '-';
      p = std::to_chars(p, buf.data() + buf.size(), hi).ptr;
    }
    out.append(buf.data(), static_cast<size_t>(p - buf.data()));
  }
}

void IdSet::insert_range(uint32_t lo, uint32_t hi) {
  // Sets are mostly built in ascending order (R rank by rank, a rank's
  // cores): past the last range is a push, on or touching it a stretch.
  if (ranges_.empty() || uint64_t{lo} > uint64_t{ranges_.back().second} + 1) {
    ranges_.emplace_back(lo, hi);
    return;
  }
  if (lo >= ranges_.back().first) {
    ranges_.back().second = std::max(ranges_.back().second, hi);
    return;
  }
  // Merge with every range that overlaps or touches [lo, hi].
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), lo,
                             [](const auto& r, uint32_t v) { return r.second < v && r.second + 1 < v; });
  auto end = it;
  uint64_t new_lo = lo, new_hi = hi;
  while (end != ranges_.end() && uint64_t{end->first} <= new_hi + 1) {
    new_lo = std::min<uint64_t>(new_lo, end->first);
    new_hi = std::max<uint64_t>(new_hi, end->second);
    ++end;
  }
  it = ranges_.erase(it, end);
  ranges_.insert(it, {static_cast<uint32_t>(new_lo), static_cast<uint32_t>(new_hi)});
}

void IdSet::erase_range(uint32_t lo, uint32_t hi) {
  // In place: the ranges that reach into [lo, hi] give way to what is left
  // of the first below lo and of the last above hi (one more range than
  // before at most, when [lo, hi] splits one).
  auto first =
      std::lower_bound(ranges_.begin(), ranges_.end(), lo, [](const auto& r, uint32_t v) { return r.second < v; });
  if (first == ranges_.end() || first->first > hi) return;
  auto last = first;
  while (last != ranges_.end() && last->first <= hi) ++last;
  const bool head = first->first < lo;
  const bool tail = (last - 1)->second > hi;
  const std::pair<uint32_t, uint32_t> left(first->first, lo - 1), right(hi + 1, (last - 1)->second);
  if (head && tail && last - first == 1) {  // a split
    *first = right;
    ranges_.insert(first, left);
    return;
  }
  auto out = first;
  if (head) *out++ = left;
  if (tail) *out++ = right;
  ranges_.erase(out, last);
}

bool IdSet::contains(uint32_t id) const {
  auto it =
      std::lower_bound(ranges_.begin(), ranges_.end(), id, [](const auto& r, uint32_t v) { return r.second < v; });
  return it != ranges_.end() && it->first <= id;
}

uint64_t IdSet::count() const {
  uint64_t n = 0;
  for (auto [a, b] : ranges_) n += uint64_t{b} - a + 1;
  return n;
}

std::optional<uint32_t> IdSet::first() const {
  if (ranges_.empty()) return std::nullopt;
  return ranges_.front().first;
}

std::optional<uint32_t> IdSet::last() const {
  if (ranges_.empty()) return std::nullopt;
  return ranges_.back().second;
}

std::vector<uint32_t> IdSet::to_vector() const {
  std::vector<uint32_t> out;
  for (auto [a, b] : ranges_) {
    for (uint64_t i = a; i <= b; ++i) out.push_back(static_cast<uint32_t>(i));
  }
  return out;
}

// The set operations are one pass over both lists of ranges, making no
// allocation for a result of one range: the scheduler runs them for every
// rank of every allocation and release.
IdSet IdSet::set_union(const IdSet& o) const {
  if (o.ranges_.empty()) return *this;
  if (ranges_.empty()) return o;
  IdSet out;
  auto a = ranges_.begin(), b = o.ranges_.begin();
  const auto ae = ranges_.end(), be = o.ranges_.end();
  while (a != ae || b != be) {
    const auto& next = (b == be || (a != ae && a->first <= b->first)) ? *a++ : *b++;
    auto& last = out.ranges_;
    if (!last.empty() && uint64_t{next.first} <= uint64_t{last.back().second} + 1) {
      last.back().second = std::max(last.back().second, next.second);
    } else {
      last.push_back(next);
    }
  }
  return out;
}

IdSet IdSet::subtract(const IdSet& o) const {
  if (ranges_.empty() || o.ranges_.empty()) return *this;
  IdSet out;
  auto b = o.ranges_.begin();
  const auto be = o.ranges_.end();
  for (auto [lo, hi] : ranges_) {
    uint64_t from = lo;  // what is left of [lo, hi] starts here
    while (b != be && b->second < lo) ++b;
    // o's ranges that reach into [lo, hi]; the last may reach past it, into
    // the next range too, so it stays current.
    for (auto c = b; c != be && c->first <= hi; ++c) {
      if (c->first > from) out.ranges_.emplace_back(static_cast<uint32_t>(from), c->first - 1);
      from = uint64_t{c->second} + 1;
      if (c->second >= hi) break;
      b = c + 1;
    }
    if (from <= hi) out.ranges_.emplace_back(static_cast<uint32_t>(from), hi);
  }
  return out;
}

namespace {

// Calls f(lo, hi) for each overlap of two sets' ranges, in ascending order,
// until f returns false.
template <class F>
void for_each_overlap(const IdRanges& x, const IdRanges& y, F f) {
  auto a = x.begin(), b = y.begin();
  while (a != x.end() && b != y.end()) {
    uint32_t lo = std::max(a->first, b->first), hi = std::min(a->second, b->second);
    if (lo <= hi && !f(lo, hi)) return;
    if (a->second < b->second) {
      ++a;
    } else {
      ++b;
    }
  }
}

}  // namespace

IdSet IdSet::intersect(const IdSet& o) const {
  IdSet out;
  for_each_overlap(ranges_, o.ranges_, [&](uint32_t lo, uint32_t hi) {
    out.ranges_.emplace_back(lo, hi);
    return true;
  });
  return out;
}

bool IdSet::intersects(const IdSet& o) const {
  bool any = false;
  for_each_overlap(ranges_, o.ranges_, [&](uint32_t, uint32_t) {
    any = true;
    return false;  // one is enough
  });
  return any;
}

bool IdSet::is_subset_of(const IdSet& o) const {
  // o's ranges never touch: each of ours must lie within one of them.
  auto b = o.ranges_.begin();
  const auto be = o.ranges_.end();
  for (auto [lo, hi] : ranges_) {
    while (b != be && b->second < lo) ++b;
    if (b == be || b->first > lo || b->second < hi) return false;
  }
  return true;
}

}  // namespace loom
