// An ordered list of host names; its text form is the hostlist of Flux
// RFC 29: "node[0-15]", "a[1-3,7],b,c[2-4]", "node[1-2]-ib", "n[08-10]".
//
// Text form, as parse reads it:
//   hostlist   = "" | expression ("," expression)*
//   expression = prefix ["[" idlist "]" suffix]
//   idlist     = element ("," element)*
//   element    = number | number "-" number          (low <= high)
// prefix and suffix are printable ASCII without spaces, '[', ']' or ','.
// One bracket group per expression: "x[1-2]y[3-4]" is refused, as RFC 29's
// suffix holds no brackets. An idlist is ordered and may repeat ids
// ("a[3,1,1]" is a3 a1 a1). Zero padding is the first element's: when its
// number begins with '0' and has more than one digit, every id of the
// group is written with at least that many digits ("n[08-10]" is n08 n09
// n10; "n[007,12]" is n007 n012).
//
// Decoding is bounded: at most kMaxHosts names and kMaxBytes of text, so
// that "n[0-4294967295]" is an error, never an allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace loom {

class Hostlist {
 public:
  static constexpr size_t kMaxHosts = 1'000'000;
  static constexpr size_t kMaxBytes = 64u << 20;  // of names, decoded
  static constexpr size_t kMaxDigits = 18;        // of one number: fits in 64 bits

  Hostlist() = default;

  // The names of `text`, in order. A bad input is an EINVAL error of one
  // line: `invalid hostlist "TEXT": why`.
  static Result<Hostlist> parse(std::string_view text);

  // The canonical form, which parse reads back as the same list: each run
  // of two or more adjacent names that differ only in their last number
  // (same prefix, same suffix, padding that one idlist can express)
  // becomes one bracket group, and consecutive ascending ids in it become
  // ranges ("n1,n2,n3,n5" → "n[1-3,5]"). A name alone stays as it is
  // ("n5", not "n[5]").
  std::string encode() const;

  // Appends one name: not empty, printable ASCII without spaces, '[', ']'
  // or ','; anything else is an error and changes nothing.
  Status append(std::string_view name);

  const std::vector<std::string>& hosts() const { return hosts_; }
  size_t size() const { return hosts_.size(); }
  bool empty() const { return hosts_.empty(); }
  const std::string& operator[](size_t i) const { return hosts_[i]; }

  bool operator==(const Hostlist&) const = default;

 private:
  std::vector<std::string> hosts_;
};

}  // namespace loom
