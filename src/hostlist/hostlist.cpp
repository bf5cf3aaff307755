#include "hostlist/hostlist.h"

#include <algorithm>
#include <cstdio>

#include "base/quote.h"

namespace loom {

namespace {

Error bad(std::string_view text, const std::string& why) {
  return Error{EINVAL, "invalid hostlist " + quote_input(text) + ": " + why};
}

bool is_name_char(char c) { return c > ' ' && c < 0x7f && c != '[' && c != ']' && c != ','; }

// A byte of a name for an error message: "a space", "'\"'", "byte 0xc3".
std::string describe(char c) {
  if (c == ' ') return "a space";
  auto u = static_cast<unsigned char>(c);
  if (u > ' ' && u < 0x7f) return std::string("'") + c + "'";
  char buf[16];
  std::snprintf(buf, sizeof buf, "byte 0x%02x", u);
  return buf;
}

// Where `part` (which begins at byte `at` of the whole text) holds a byte
// that no name may hold, as the reason for an error; empty when none.
std::string check_name_chars(std::string_view part, size_t at) {
  for (size_t i = 0; i < part.size(); ++i) {
    if (!is_name_char(part[i])) {
      return describe(part[i]) + " (at byte " + std::to_string(at + i) + ") may not appear in a host name";
    }
  }
  return {};
}

bool all_digits(std::string_view s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return !s.empty();
}

uint64_t to_number(std::string_view digits) {
  uint64_t v = 0;
  for (char c : digits) v = v * 10 + static_cast<uint64_t>(c - '0');
  return v;
}

std::string padded(uint64_t v, size_t width) {
  std::string s = std::to_string(v);
  if (s.size() < width) s.insert(0, width - s.size(), '0');
  return s;
}

// One element of an idlist: an id or an inclusive range of ids.
struct Element {
  uint64_t lo = 0;
  uint64_t hi = 0;
};

// Counts what the whole text expands to, so that the limits hold before
// anything is allocated.
struct Budget {
  size_t hosts = 0;
  size_t bytes = 0;
};

// Appends the names of one expression (non-empty, brackets balanced and
// not nested: the caller checked) to `out`. `at` is where the expression
// begins in `text`, for errors.
Status expand(std::string_view text, std::string_view expr, size_t at, Budget& budget, std::vector<std::string>& out) {
  auto too_many = [&] {
    return bad(text, "names more than " + std::to_string(Hostlist::kMaxHosts) + " hosts or " +
                         std::to_string(Hostlist::kMaxBytes >> 20) + " MiB of host names");
  };
  size_t lb = expr.find('[');
  if (lb == std::string_view::npos) {
    if (auto why = check_name_chars(expr, at); !why.empty()) return bad(text, why);
    if (budget.hosts + 1 > Hostlist::kMaxHosts || budget.bytes + expr.size() > Hostlist::kMaxBytes) {
      return too_many();
    }
    ++budget.hosts;
    budget.bytes += expr.size();
    out.emplace_back(expr);
    return {};
  }
  size_t rb = expr.find(']', lb);
  std::string_view prefix = expr.substr(0, lb);
  std::string_view ids = expr.substr(lb + 1, rb - lb - 1);
  std::string_view suffix = expr.substr(rb + 1);
  if (suffix.find('[') != std::string_view::npos) {
    // RFC 29's suffix holds no brackets; "x[1-2]y[3-4]" would need an
    // order of expansion that the RFC does not give.
    return bad(text, "one [...] per host name, " + quote_input(expr) + " has more");
  }
  if (auto why = check_name_chars(prefix, at); !why.empty()) return bad(text, why);
  if (auto why = check_name_chars(suffix, at + rb + 1); !why.empty()) return bad(text, why);
  if (ids.empty()) return bad(text, "empty [] names no host");

  std::vector<Element> elements;
  size_t width = 0;
  size_t start = 0;
  while (true) {
    size_t comma = ids.find(',', start);
    std::string_view part = ids.substr(start, comma == std::string_view::npos ? ids.size() - start : comma - start);
    if (part.empty()) return bad(text, "empty element in " + quote_input("[" + std::string(ids) + "]"));
    size_t dash = part.find('-');
    std::string_view lo = part.substr(0, dash);
    std::string_view hi = dash == std::string_view::npos ? lo : part.substr(dash + 1);
    if (!all_digits(lo) || !all_digits(hi)) {
      return bad(text, quote_input(part) + " is neither a number nor a range of numbers (such as 0-15)");
    }
    if (lo.size() > Hostlist::kMaxDigits || hi.size() > Hostlist::kMaxDigits) {
      return bad(text,
                 quote_input(part) + " has a number of more than " + std::to_string(Hostlist::kMaxDigits) + " digits");
    }
    // The first element's zero padding holds for the whole group.
    if (elements.empty() && lo.size() > 1 && lo[0] == '0') width = lo.size();
    Element e{to_number(lo), to_number(hi)};
    if (e.lo > e.hi) return bad(text, "range " + quote_input(part) + " is reversed");
    elements.push_back(e);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }

  for (const Element& e : elements) {
    uint64_t n = e.hi - e.lo + 1;
    if (n > Hostlist::kMaxHosts - budget.hosts) return too_many();
    // The element's last name is its longest.
    size_t longest = prefix.size() + suffix.size() + std::max(width, std::to_string(e.hi).size());
    if (n * longest > Hostlist::kMaxBytes - budget.bytes) return too_many();
    budget.hosts += n;
    budget.bytes += n * longest;
  }
  for (const Element& e : elements) {
    for (uint64_t id = e.lo;; ++id) {
      out.push_back(std::string(prefix) + padded(id, width) + std::string(suffix));
      if (id == e.hi) break;
    }
  }
  return {};
}

// A name cut around its last run of digits: "rack2-node13-ib" is
// "rack2-node", 13, "-ib". A name without digits, or whose last run is too
// long for a number, is not numbered and never joins a group.
struct Split {
  std::string_view prefix;
  std::string_view digits;
  std::string_view suffix;
  bool numbered = false;
};

Split split(std::string_view name) {
  size_t end = name.size();
  while (end > 0 && (name[end - 1] < '0' || name[end - 1] > '9')) --end;
  size_t begin = end;
  while (begin > 0 && name[begin - 1] >= '0' && name[begin - 1] <= '9') --begin;
  Split s;
  if (begin == end || end - begin > Hostlist::kMaxDigits) return s;
  s.prefix = name.substr(0, begin);
  s.digits = name.substr(begin, end - begin);
  s.suffix = name.substr(end);
  s.numbered = true;
  return s;
}

// The padding a group takes from its first number, as parse reads it.
size_t width_of(std::string_view digits) { return digits.size() > 1 && digits[0] == '0' ? digits.size() : 0; }

// Whether parse, given a group of this padding, writes this number with
// exactly these digits.
bool fits(std::string_view digits, size_t width) {
  if (width == 0) return digits == "0" || digits[0] != '0';
  return digits.size() == width || (digits.size() > width && digits[0] != '0');
}

}  // namespace

Result<Hostlist> Hostlist::parse(std::string_view text) {
  Hostlist out;
  if (text.empty()) return out;
  Budget budget;
  size_t start = 0;
  while (true) {
    // The expression runs to the next comma outside brackets.
    size_t i = start;
    bool open = false;
    for (; i < text.size(); ++i) {
      char c = text[i];
      if (c == '[') {
        if (open) return bad(text, "'[' inside [...] (at byte " + std::to_string(i) + ")");
        open = true;
      } else if (c == ']') {
        if (!open) return bad(text, "']' without '[' (at byte " + std::to_string(i) + ")");
        open = false;
      } else if (c == ',' && !open) {
        break;
      }
    }
    if (open) return bad(text, "'[' without ']'");
    if (i == start) {
      return bad(text, start == 0         ? "empty host name before the first ','"
                       : i == text.size() ? "empty host name after the last ','"
                                          : "empty host name between two ','");
    }
    if (auto st = expand(text, text.substr(start, i - start), start, budget, out.hosts_); !st.ok()) {
      return st.error();
    }
    if (i == text.size()) break;
    start = i + 1;
  }
  return out;
}

std::string Hostlist::encode() const {
  std::string out;
  size_t i = 0;
  while (i < hosts_.size()) {
    if (!out.empty()) out += ',';
    Split first = split(hosts_[i]);
    if (!first.numbered) {
      out += hosts_[i++];
      continue;
    }
    size_t width = width_of(first.digits);
    std::vector<uint64_t> ids{to_number(first.digits)};
    size_t j = i + 1;
    for (; j < hosts_.size(); ++j) {
      Split next = split(hosts_[j]);
      if (!next.numbered || next.prefix != first.prefix || next.suffix != first.suffix || !fits(next.digits, width)) {
        break;
      }
      ids.push_back(to_number(next.digits));
    }
    if (ids.size() == 1) {
      out += hosts_[i];
    } else {
      out += first.prefix;
      out += '[';
      for (size_t k = 0; k < ids.size();) {
        size_t run = k;
        while (run + 1 < ids.size() && ids[run + 1] == ids[run] + 1) ++run;
        if (k > 0) out += ',';
        out += padded(ids[k], width);
        if (run > k) out += '-' + padded(ids[run], width);
        k = run + 1;
      }
      out += ']';
      out += first.suffix;
    }
    i = j;
  }
  return out;
}

Status Hostlist::append(std::string_view name) {
  if (name.empty()) return Error{EINVAL, "invalid host name: empty"};
  if (auto why = check_name_chars(name, 0); !why.empty()) {
    return Error{EINVAL, "invalid host name " + quote_input(name) + ": " + why};
  }
  hosts_.emplace_back(name);
  return {};
}

}  // namespace loom
