#include "job_manager/step_space.h"

#include <algorithm>

namespace loom {

namespace {

std::vector<RankInventory> inventory_of(const ResourceSet& r) {
  std::vector<RankInventory> inv;
  inv.reserve(r.ranks().size());
  for (const auto& [rank, res] : r.ranks()) {
    inv.push_back(RankInventory{static_cast<uint32_t>(res.cores.count()), static_cast<uint32_t>(res.gpus.count()),
                                res.hostname, true});
  }
  return inv;
}

// The local ids of `ids` in `order` (sorted), or nullopt if one is not there.
std::optional<IdSet> local_ids(const IdSet& ids, const std::vector<uint32_t>& order) {
  IdSet out;
  for (uint32_t id : ids.to_vector()) {
    auto it = std::lower_bound(order.begin(), order.end(), id);
    if (it == order.end() || *it != id) return std::nullopt;
    out.insert(static_cast<uint32_t>(it - order.begin()));
  }
  return out;
}

IdSet global_ids(const IdSet& ids, const std::vector<uint32_t>& order) {
  IdSet out;
  for (uint32_t id : ids.to_vector()) {
    if (id < order.size()) out.insert(order[id]);
  }
  return out;
}

}  // namespace

StepSpace::StepSpace(const ResourceSet& allocation) : pool_(inventory_of(allocation)) {
  for (const auto& [rank, res] : allocation.ranks()) {
    local_[rank] = static_cast<uint32_t>(ranks_.size());
    ranks_.push_back(Rank{rank, res.cores.to_vector(), res.gpus.to_vector()});
  }
}

Status StepSpace::feasible(const Jobspec& js) const {
  auto st = pool_.feasible(js);
  if (st) return st;
  // The pool speaks of an instance and its ranks: here they are the
  // allocation's.
  std::string text = st.error().text;
  for (auto [from, to] :
       {std::pair<std::string, std::string>{"the instance", "the allocation"}, {"instance", "allocation"}}) {
    for (size_t at; (at = text.find(from)) != std::string::npos;) text.replace(at, from.size(), to);
  }
  return Error{st.error().code, text};
}

std::optional<ResourceSet> StepSpace::match(const Jobspec& js) const {
  auto r = pool_.match(js);
  if (!r) return std::nullopt;
  return to_global(*r);
}

Status StepSpace::allocate(uint64_t id, const ResourceSet& r) {
  auto local = to_local(r);
  if (!local) return Error{EINVAL, "resources outside the allocation"};
  return pool_.allocate(id, *local);
}

void StepSpace::free(uint64_t id, const ResourceSet& part) {
  auto it = pool_.allocations().find(id);
  if (it == pool_.allocations().end()) return;
  ResourceSet mine;
  for (const auto& [rank, res] : part.ranks()) {
    auto l = local_.find(rank);
    if (l != local_.end() && it->second.ranks().contains(l->second)) mine.add_rank(l->second, RankResources{});
  }
  if (!mine.empty()) (void)pool_.free(id, mine);
}

void StepSpace::free_all(uint64_t id) { (void)pool_.free_all(id); }

std::optional<ResourceSet> StepSpace::to_local(const ResourceSet& r) const {
  ResourceSet out;
  for (const auto& [rank, res] : r.ranks()) {
    auto l = local_.find(rank);
    if (l == local_.end()) return std::nullopt;
    const Rank& mine = ranks_[l->second];
    auto cores = local_ids(res.cores, mine.cores);
    auto gpus = local_ids(res.gpus, mine.gpus);
    if (!cores || !gpus) return std::nullopt;
    out.add_rank(l->second, RankResources{std::move(*cores), std::move(*gpus), res.hostname});
  }
  return out;
}

ResourceSet StepSpace::to_global(const ResourceSet& r) const {
  ResourceSet out;
  for (const auto& [local, res] : r.ranks()) {
    if (local >= ranks_.size()) continue;
    const Rank& mine = ranks_[local];
    out.add_rank(mine.rank,
                 RankResources{global_ids(res.cores, mine.cores), global_ids(res.gpus, mine.gpus), res.hostname});
  }
  return out;
}

}  // namespace loom
