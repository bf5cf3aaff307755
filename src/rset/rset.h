// R, the resource set of a job (Flux RFC 20, version 1):
//   {"version": 1, "execution": {
//      "R_lite": [{"rank": "0-3", "children": {"core": "0-7", "gpu": "0-1"}}],
//      "nodelist": ["host0", "host[1-3]"], "starttime": T0, "expiration": T1}}
// Kept per rank so that a job's R can be split by rank (partial release),
// joined and subtracted.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "idset/idset.h"
#include "msg/json.h"

namespace loom {

struct RankResources {
  IdSet cores;
  IdSet gpus;
  std::string hostname;
  bool operator==(const RankResources&) const = default;
};

class ResourceSet {
 public:
  static Result<ResourceSet> parse(const Json& j);
  static Result<ResourceSet> parse_text(std::string_view text);
  // Ranks with identical children share one R_lite entry.
  Json to_json() const;

  void add_rank(uint32_t rank, RankResources r);
  const std::map<uint32_t, RankResources>& ranks() const { return ranks_; }
  IdSet rank_set() const;
  bool empty() const { return ranks_.empty(); }
  uint64_t ncores() const;
  uint64_t ngpus() const;

  // The part of this R on `ranks` (a rank is never split).
  ResourceSet subset(const IdSet& ranks) const;
  ResourceSet set_union(const ResourceSet& o) const;
  // Removes o's cores and gpus; ranks left with nothing disappear.
  ResourceSet subtract(const ResourceSet& o) const;
  // True if no core or gpu is in both.
  bool disjoint(const ResourceSet& o) const;

  double starttime = 0;
  double expiration = 0;

  bool operator==(const ResourceSet&) const = default;

 private:
  std::map<uint32_t, RankResources> ranks_;
};

// "node[0-3,7]" → node0 node1 node2 node3 node7; plain names pass through.
Result<std::vector<std::string>> expand_hostlist(std::string_view s);

}  // namespace loom
