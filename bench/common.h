// What the benchmarks share: the instance's URI, a monotonic clock in
// seconds, percentiles and a process's resident memory.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace loom::bench {

// LOOM_URI, or nothing after telling the user how to run `name`.
inline const char* instance_uri(const char* name) {
  const char* uri = std::getenv("LOOM_URI");
  if (!uri) std::fprintf(stderr, "%s: LOOM_URI is not set (run it under `loom start -- ...`)\n", name);
  return uri;
}

inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The p-quantile (0 ≤ p ≤ 1) of a non-empty sample.
inline double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// A process's resident memory (VmRSS) in KiB, or -1.
inline long rss_kb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

}  // namespace loom::bench
