// Strong id types: a Rank is not a JobId is not a uint32_t.
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
  friend constexpr auto operator<=>(StrongId, StrongId) = default;

 private:
  Rep v_{};
};

using Rank = StrongId<struct RankTag, uint32_t>;

}  // namespace loom

template <typename Tag, typename Rep>
struct std::hash<loom::StrongId<Tag, Rep>> {
  size_t operator()(loom::StrongId<Tag, Rep> id) const noexcept { return std::hash<Rep>{}(id.value()); }
};
