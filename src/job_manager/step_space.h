// StepSpace: the resources of one allocation (the R of a `loom batch` or
// `loom alloc` job) as its job steps share them (docs/steps.md). Steps are
// placed here by the job manager, never by the scheduler: the allocation's
// resources are the job's, and a step that fits starts at once.
//
// It is a ResourcePool (sched/pool.h) over the allocation alone: its ranks
// and the cores and gpus R gives the job on each, renumbered from 0, so
// that every rule of matching (lowest ranks and ids first, whole nodes for
// exclusive requests) is the scheduler's own. What goes in and out is in
// the instance's numbering.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "jobspec/jobspec.h"
#include "rset/rset.h"
#include "sched/pool.h"

namespace loom {

class StepSpace {
 public:
  explicit StepSpace(const ResourceSet& allocation);

  // Ok if `js` could ever fit in the allocation; else one line saying why
  // ("3 nodes requested but the allocation has 2").
  Status feasible(const Jobspec& js) const;
  // What `js` gets now from what no step holds, or nullopt.
  std::optional<ResourceSet> match(const Jobspec& js) const;
  // Marks `r` held by step `id`: EINVAL if any of it is outside the
  // allocation or held by another step, or `id` holds resources already.
  Status allocate(uint64_t id, const ResourceSet& r);
  // Gives back what step `id` holds on the ranks of `part` (all of them:
  // nothing if it holds nothing there).
  void free(uint64_t id, const ResourceSet& part);
  void free_all(uint64_t id);
  bool holds(uint64_t id) const { return pool_.allocations().contains(id); }
  bool empty() const { return pool_.allocations().empty(); }

 private:
  // Into the pool's numbering; nullopt if some of `r` is outside the
  // allocation.
  std::optional<ResourceSet> to_local(const ResourceSet& r) const;
  ResourceSet to_global(const ResourceSet& r) const;

  struct Rank {
    uint32_t rank;
    std::vector<uint32_t> cores;  // local id -> core id
    std::vector<uint32_t> gpus;
  };
  std::vector<Rank> ranks_;             // local rank -> what it is
  std::map<uint32_t, uint32_t> local_;  // rank -> local rank
  ResourcePool pool_;
};

}  // namespace loom
