// Strong id types (JobId, fluid.h): an id is not a plain integer, so one
// cannot be passed where the other is meant.
#pragma once

#include <cstdint>
#include <functional>

namespace loom {

template <typename Tag, typename Rep>
class StrongId {
 public:
  constexpr StrongId() = default;
  constexpr explicit StrongId(Rep v) : v_(v) {}
  constexpr Rep value() const { return v_; }
  // (clang-tidy 14 takes the defaulted <=> for a comparison with literal 0.)
  friend constexpr auto operator<=>(StrongId, StrongId) = default;  // NOLINT(modernize-use-nullptr)

 private:
  Rep v_{};
};

}  // namespace loom

template <typename Tag, typename Rep>
struct std::hash<loom::StrongId<Tag, Rep>> {
  size_t operator()(loom::StrongId<Tag, Rep> id) const noexcept { return std::hash<Rep>{}(id.value()); }
};
