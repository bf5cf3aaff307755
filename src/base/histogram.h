// Histogram: counts of observations by upper bound, as OpenMetrics wants
// them (docs/metrics.md). Kept by a service where the event happens
// (a job's allocation, a KVS commit) and reported in its stats response;
// the metrics endpoint only prints it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace loom {

class Histogram {
 public:
  // `bounds`: the finite upper bounds, increasing; +Inf is implied.
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}

  void observe(double v) {
    std::size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;
    ++counts_[i];
    sum_ += v;
    ++count_;
  }

  const std::vector<double>& bounds() const { return bounds_; }
  // Per bucket, not cumulative; one more than bounds() (the +Inf one).
  const std::vector<uint64_t>& counts() const { return counts_; }
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }

  // Seconds from a millisecond to an hour.
  static std::vector<double> seconds_bounds() { return {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600}; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

}  // namespace loom
