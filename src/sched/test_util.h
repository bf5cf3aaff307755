// What the scheduler's tests share: jobspecs as `loom submit` builds them,
// pools and resource sets written briefly, and a compact way to show them.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>

#include "base/assert.h"
#include "jobspec/jobspec.h"
#include "sched/pool.h"

namespace loom::test {

// --- building blocks ---

inline Jobspec parse(const JobRequest& r) {
  auto j = build_jobspec(r);
  LOOM_ASSERT(j.ok());
  auto js = parse_jobspec(*j);
  LOOM_ASSERT(js.ok());
  return *js;
}

// What every request below shares: tasks of `cores`+`gpus`, `true` to run.
inline JobRequest request(uint32_t tasks, uint32_t cores, uint32_t gpus, double duration) {
  JobRequest r;
  r.tasks = tasks;
  r.cores_per_task = cores;
  r.gpus_per_task = gpus;
  r.duration = duration;
  r.command = {"true"};
  return r;
}

// `n` slots anywhere (loom submit -n N -c C -g G -t D).
inline Jobspec slots(uint32_t n, uint32_t cores = 1, uint32_t gpus = 0, double duration = 0) {
  return parse(request(n, cores, gpus, duration));
}

// `nnodes` nodes of `per_node` slots (loom submit -N -n -c -g -x -t).
inline Jobspec nodes(uint32_t nnodes, uint32_t per_node = 1, uint32_t cores = 1, uint32_t gpus = 0,
                     bool exclusive = false, double duration = 0) {
  JobRequest r = request(nnodes * per_node, cores, gpus, duration);
  r.nodes = nnodes;
  r.exclusive = exclusive;
  return parse(r);
}

inline ResourcePool uniform(uint32_t size, uint32_t cores, uint32_t gpus = 0) {
  std::vector<RankInventory> inv;
  for (uint32_t r = 0; r < size; ++r) inv.push_back({cores, gpus, "node" + std::to_string(r)});
  return ResourcePool(inv);
}

// {rank: "cores"} or {rank: "cores/gpus"}
inline ResourceSet R(const std::map<uint32_t, std::string>& spec, double expiration = 0) {
  ResourceSet rs;
  for (auto& [rank, text] : spec) {
    RankResources rr;
    auto slash = text.find('/');
    rr.cores = IdSet::parse(text.substr(0, slash)).value();
    if (slash != std::string::npos) rr.gpus = IdSet::parse(text.substr(slash + 1)).value();
    rs.add_rank(rank, rr);
  }
  rs.expiration = expiration;
  return rs;
}

// "0:0-1 1:0/0": rank:cores[/gpus], for comparing matches at a glance.
inline std::string show(const ResourceSet& rs) {
  std::string out;
  for (const auto& [rank, rr] : rs.ranks()) {
    if (!out.empty()) out += " ";
    out += std::to_string(rank) + ":" + rr.cores.encode();
    if (!rr.gpus.empty()) out += "/" + rr.gpus.encode();
  }
  return out;
}
inline std::string show(const std::optional<ResourceSet>& rs) { return rs ? show(*rs) : "none"; }

inline std::string why(const Status& st) { return st.ok() ? "ok" : st.error().text; }

}  // namespace loom::test
