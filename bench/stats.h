// What the benchmarks share: a monotonic clock in seconds and percentiles.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace loom::bench {

inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The p-quantile (0 ≤ p ≤ 1) of a non-empty sample.
inline double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace loom::bench
