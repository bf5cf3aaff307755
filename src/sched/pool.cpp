// ResourcePool (pool.h): matching, allocation bookkeeping and the EASY
// reservation, all on plain data.
//
// Every rank keeps the union of the cores and gpus its jobs hold, and its
// complement (RankFree, in free_), which every change of an allocation or
// of a rank's state refreshes. Ranks that are wholly free and alike, one
// after another, are matched, checked and added to R by ranges, not rank
// by rank (whole_, alike_). The one matcher (match_in) serves match(),
// match_avoiding(), reserve() and backfill(), which differ only in the
// availability they hand it and what it must avoid.
#include "sched/pool.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <limits>

#include "base/assert.h"

namespace loom {

namespace {

// 0..n-1
IdSet first_ids(uint64_t n) {
  IdSet s;
  if (n > 0) s.insert_range(0, static_cast<uint32_t>(n - 1));
  return s;
}

// out = first_ids(n) less `used`, in out's own storage: a rank's free
// cores are recounted at each allocation and release of it.
void assign_first_less(IdSet& out, uint64_t n, const IdSet& used) {
  out.clear();
  uint64_t from = 0;
  for (auto [a, b] : used.ranges()) {
    if (a >= n) break;
    if (a > from) out.insert_range(static_cast<uint32_t>(from), a - 1);
    from = uint64_t{b} + 1;
  }
  if (from < n) out.insert_range(static_cast<uint32_t>(from), static_cast<uint32_t>(n - 1));
}

// set = set | add, and set = set - take, in set's own storage: a rank's
// used cores change at each allocation and release of it.
void add_ids(IdSet& set, const IdSet& add) {
  for (auto [lo, hi] : add.ranges()) set.insert_range(lo, hi);
}
void take_ids(IdSet& set, const IdSet& take) {
  if (take.empty()) return;
  if (set == take) return set.clear();
  for (auto [lo, hi] : take.ranges()) set.erase_range(lo, hi);
}

// The k lowest ids of s: s itself when that is all of it (a rank's free
// cores all taken), else written into `scratch`.
const IdSet& lowest(const IdSet& s, uint64_t k, IdSet& scratch) {
  if (k >= s.count()) return s;
  scratch.clear();
  for (auto [lo, hi] : s.ranges()) {
    if (k == 0) break;
    uint64_t n = uint64_t{hi} - lo + 1;
    uint64_t take = std::min(n, k);
    scratch.insert_range(lo, static_cast<uint32_t>(lo + take - 1));
    k -= take;
  }
  return scratch;
}

std::string plural(uint64_t n, const std::string& word) { return std::to_string(n) + " " + word + (n == 1 ? "" : "s"); }

Error bad(std::string why) { return Error{EINVAL, std::move(why)}; }

// A Jobspec made by parse_jobspec always has this shape; one built by hand
// might not, and must not divide by zero here.
Status check_shape(const Jobspec& js) {
  if (js.cores_per_slot == 0) return bad("a slot needs at least 1 core");
  if (js.nnodes > 0 && js.slots_per_node == 0) return bad("a node needs at least 1 slot");
  if (js.nnodes == 0 && js.nslots == 0) return bad("at least 1 slot is needed");
  if (js.exclusive && js.nnodes == 0) return bad("only a node can be exclusive");
  return {};
}

// Whether `js` fits exactly where enough usable cores are free: slots of
// one core and no gpu, without a node level (match_in fills ranks in
// order, one core a slot).
bool counted(const Jobspec& js) { return js.nnodes == 0 && js.cores_per_slot == 1 && js.gpus_per_slot == 0; }

// The fewest cores `js` can take: a quick test before matching.
uint64_t min_cores(const Jobspec& js) {
  if (js.nnodes > 0) return uint64_t{js.nnodes} * js.slots_per_node * js.cores_per_slot;
  return uint64_t{js.nslots} * js.cores_per_slot;
}

}  // namespace

Json ResourceCount::to_json() const {
  return Json{{"ranks", ranks.encode()}, {"nnodes", nnodes()}, {"ncores", ncores}, {"ngpus", ngpus}};
}

ResourcePool::ResourcePool(std::vector<RankInventory> ranks)
    : inventory_(std::move(ranks)),
      state_(inventory_.size()),
      free_(inventory_.size()),
      open_((inventory_.size() + 63) / 64, 0),
      whole_(open_.size(), 0),
      alike_(open_.size(), 0) {
  unusable_ = size();  // as free_ starts
  for (uint32_t r = 0; r < size(); ++r) refresh(r);
  tally();
}

void ResourcePool::tally() {
  totals_ = Totals{};
  for (const auto& inv : inventory_) {
    totals_.max_cores = std::max<uint64_t>(totals_.max_cores, inv.ncores);
    totals_.max_gpus = std::max<uint64_t>(totals_.max_gpus, inv.ngpus);
    totals_.cores += inv.ncores;
    totals_.gpus += inv.ngpus;
    totals_.unknown += inv.known ? 0 : 1;
  }
  named_ =
      std::any_of(inventory_.begin(), inventory_.end(), [](const RankInventory& inv) { return !inv.hostname.empty(); });
  std::fill(alike_.begin(), alike_.end(), 0);
  for (uint32_t r = 1; r < size(); ++r) {
    const RankInventory &a = inventory_[r - 1], &b = inventory_[r];
    if (a.ncores == b.ncores && a.ngpus == b.ngpus) {
      alike_[r / 64] |= uint64_t{1} << (r % 64);
    }
  }
  ranks_holding_.clear();
  slots_held_.clear();
}

void ResourcePool::refresh(uint32_t rank) {
  RankFree& f = free_[rank];
  RankState& st = state_[rank];
  if (f.usable) free_cores_ -= f.cores.count();
  unusable_ -= f.usable ? 0 : 1;
  beyond_ -= st.beyond ? 1 : 0;
  f.usable = st.up && inventory_[rank].known && !drained_.count(rank);
  assign_first_less(f.cores, inventory_[rank].ncores, st.used_cores);
  assign_first_less(f.gpus, inventory_[rank].ngpus, st.used_gpus);
  st.beyond = !st.used_cores.empty() && *st.used_cores.last() >= inventory_[rank].ncores;
  if (f.usable) free_cores_ += f.cores.count();
  unusable_ += f.usable ? 0 : 1;
  beyond_ += st.beyond ? 1 : 0;
  const uint64_t bit = uint64_t{1} << (rank % 64);
  if (f.usable && !f.cores.empty()) {
    open_[rank / 64] |= bit;
  } else {
    open_[rank / 64] &= ~bit;
  }
  set_whole(rank, f.usable && !f.cores.empty() && st.used_cores.empty() && st.used_gpus.empty());
}

void ResourcePool::set_whole(uint32_t rank, bool on) {
  const uint64_t bit = uint64_t{1} << (rank % 64);
  if (on) {
    whole_[rank / 64] |= bit;
  } else {
    whole_[rank / 64] &= ~bit;
  }
}

bool ResourcePool::whole_run(uint32_t lo, uint32_t hi) const {
  return hi < size() && whole(lo) && run_end(lo, hi + 1) == hi + 1;
}

uint32_t ResourcePool::run_end(uint32_t from, uint32_t limit) const {
  for (uint32_t r = from + 1; r < limit;) {
    const size_t w = r / 64;
    // Ones where the run stops, from r on.
    const uint64_t stop = ~(whole_[w] & alike_[w]) >> (r % 64);
    if (stop != 0) return std::min<uint32_t>(limit, r + static_cast<uint32_t>(std::countr_zero(stop)));
    r = static_cast<uint32_t>((w + 1) * 64);
  }
  return limit;
}

uint32_t ResourcePool::next_open(uint32_t from) const {
  size_t w = from / 64;
  if (w >= open_.size()) return size();
  uint64_t word = open_[w] & (~uint64_t{0} << (from % 64));
  while (word == 0) {
    if (++w == open_.size()) return size();
    word = open_[w];
  }
  return static_cast<uint32_t>(w * 64 + static_cast<size_t>(std::countr_zero(word)));
}

const RankInventory& ResourcePool::inventory(uint32_t rank) const {
  LOOM_ASSERT(rank < size());
  return inventory_[rank];
}

std::string ResourcePool::set_inventory(uint32_t rank, RankInventory inv) {
  LOOM_ASSERT(rank < size());
  IdSet cores = state_[rank].used_cores.subtract(first_ids(inv.ncores));
  IdSet gpus = state_[rank].used_gpus.subtract(first_ids(inv.ngpus));
  if (inv.hostname.empty()) inv.hostname = inventory_[rank].hostname;
  inv.known = true;
  inventory_[rank] = std::move(inv);
  refresh(rank);
  tally();
  if (cores.empty() && gpus.empty()) return "";
  std::string what = !cores.empty() ? "cores " + cores.encode() : "gpus " + gpus.encode();
  if (!cores.empty() && !gpus.empty()) what += " and gpus " + gpus.encode();
  return "jobs hold " + what + " of rank " + std::to_string(rank) + ", which now has " +
         plural(inventory_[rank].ncores, "core") + " and " + plural(inventory_[rank].ngpus, "gpu");
}

bool ResourcePool::any_unknown() const { return totals_.unknown > 0; }

void ResourcePool::set_up(uint32_t rank, bool up) {
  if (rank >= size()) return;
  state_[rank].up = up;
  refresh(rank);
}

bool ResourcePool::is_up(uint32_t rank) const { return rank < size() && state_[rank].up; }

void ResourcePool::drain(uint32_t rank, DrainInfo info) {
  if (rank >= size()) return;
  drained_[rank] = std::move(info);
  refresh(rank);
}

void ResourcePool::undrain(uint32_t rank) {
  if (drained_.erase(rank) > 0) refresh(rank);
}

bool ResourcePool::is_drained(uint32_t rank) const { return drained_.count(rank) > 0; }

// --- matching ---

Status ResourcePool::feasible(const Jobspec& js) const {
  if (auto st = check_shape(js); !st) return st;
  if (js.nnodes > size()) {
    return bad(plural(js.nnodes, "node") + " requested but the instance has " + plural(size(), "rank"));
  }
  if (any_unknown()) {
    // A rank not known yet might hold whatever the known ones lack.
    return {};
  }
  const uint64_t cps = js.cores_per_slot, gps = js.gpus_per_slot;
  const uint64_t max_cores = totals_.max_cores, max_gpus = totals_.max_gpus;
  const uint64_t total_cores = totals_.cores, total_gpus = totals_.gpus;
  if (cps > max_cores) {
    return bad(plural(cps, "core") + " per slot but a rank has at most " + plural(max_cores, "core"));
  }
  if (gps > 0 && total_gpus == 0) return bad(plural(gps, "gpu") + " per slot but the instance has no gpus");
  if (gps > max_gpus) return bad(plural(gps, "gpu") + " per slot but a rank has at most " + plural(max_gpus, "gpu"));

  if (js.nnodes > 0) {
    const uint64_t need_c = uint64_t{js.slots_per_node} * cps, need_g = uint64_t{js.slots_per_node} * gps;
    if (need_c > max_cores) {
      return bad(plural(js.slots_per_node, "slot") + " of " + plural(cps, "core") + " per node need " +
                 plural(need_c, "core") + " on one rank; a rank has at most " + std::to_string(max_cores));
    }
    if (need_g > max_gpus) {
      return bad(plural(js.slots_per_node, "slot") + " of " + plural(gps, "gpu") + " per node need " +
                 plural(need_g, "gpu") + " on one rank; a rank has at most " + std::to_string(max_gpus));
    }
    auto [at, counted] = ranks_holding_.try_emplace({need_c, need_g}, 0);
    if (counted) {
      at->second = std::count_if(inventory_.begin(), inventory_.end(),
                                 [&](const RankInventory& inv) { return inv.ncores >= need_c && inv.ngpus >= need_g; });
    }
    const uint64_t fit = at->second;
    if (fit < js.nnodes) {
      std::string each = plural(need_c, "core") + (need_g ? " and " + plural(need_g, "gpu") : "");
      return bad(plural(js.nnodes, "node") + " of " + each + " requested but only " + std::to_string(fit) + " of " +
                 plural(size(), "rank") + " have that many");
    }
    return {};
  }

  const uint64_t n = js.nslots;
  if (n * cps > total_cores) {
    return bad(plural(n, "slot") + " of " + plural(cps, "core") + " need " + plural(n * cps, "core") +
               "; the instance has " + std::to_string(total_cores));
  }
  if (n * gps > total_gpus) {
    return bad(plural(n, "slot") + " of " + plural(gps, "gpu") + " need " + plural(n * gps, "gpu") +
               "; the instance has " + std::to_string(total_gpus));
  }
  auto [at, counted] = slots_held_.try_emplace({cps, gps}, 0);
  if (counted) {
    for (const auto& inv : inventory_) {
      uint64_t k = inv.ncores / cps;
      if (gps > 0) k = std::min<uint64_t>(k, inv.ngpus / gps);
      at->second += k;
    }
  }
  const uint64_t capacity = at->second;
  if (capacity < n) {
    return bad(plural(n, "slot") + " requested but the instance holds at most " + std::to_string(capacity) +
               " of that size (a slot must fit on one rank)");
  }
  return {};
}

bool ResourcePool::match_in(const Jobspec& js, const std::vector<RankFree>& avail, const ResourceSet* avoid,
                            ResourceSet* out) const {
  if (!check_shape(js)) return false;
  const uint64_t cps = js.cores_per_slot, gps = js.gpus_per_slot;
  // Rank r of `avail`, less what `avoid` has there (the ranks of both come
  // in ascending order, so one walk of `avoid` serves the whole scan).
  ResourceSet::Ranks::iterator skip, skip_end;
  if (avoid) skip = avoid->ranks().begin(), skip_end = avoid->ranks().end();
  RankFree less;
  auto at = [&](uint32_t r) -> const RankFree& {
    if (!avoid) return avail[r];
    while (skip != skip_end && skip->first < r) ++skip;
    if (skip == skip_end || skip->first != r) return avail[r];
    less.usable = avail[r].usable;
    less.cores = avail[r].cores.subtract(skip->second.cores);
    less.gpus = avail[r].gpus.subtract(skip->second.gpus);
    return less;
  };
  // The ranks to look at, from r on: in free_, those with a free core.
  const bool now = &avail == &free_;
  auto from = [&](uint32_t r) { return now ? next_open(r) : r; };
  // In free_, with nothing to avoid, a run of whole ranks alike from r
  // (r..end-1) is taken as one: each gives what the first gives.
  const bool runs = now && !avoid;
  std::function<std::string_view(uint32_t)> name_of;
  if (named_) name_of = [this](uint32_t r) -> std::string_view { return inventory_[r].hostname; };
  IdSet some_cores, some_gpus;  // what lowest() takes of a rank, when not all of it
  if (js.nnodes > 0) {
    const uint64_t need_c = uint64_t{js.slots_per_node} * cps, need_g = uint64_t{js.slots_per_node} * gps;
    uint32_t picked = 0;
    for (uint32_t r = from(0); r < size() && picked < js.nnodes; r = from(r + 1)) {
      if (!avail[r].usable) continue;
      const RankInventory& inv = inventory_[r];
      if (runs && whole(r) && inv.ncores >= need_c && inv.ngpus >= need_g) {
        const uint32_t n = std::min(run_end(r, size()) - r, js.nnodes - picked);
        picked += n;
        if (out && js.exclusive) out->add_ranks(r, r + n - 1, avail[r].cores, avail[r].gpus, name_of);
        if (out && !js.exclusive) {
          out->add_ranks(r, r + n - 1, lowest(avail[r].cores, need_c, some_cores),
                         lowest(avail[r].gpus, need_g, some_gpus), name_of);
        }
        r += n - 1;
        continue;
      }
      if (js.exclusive && (inv.ncores < need_c || inv.ngpus < need_g)) continue;
      const RankFree& a = at(r);
      if (js.exclusive) {
        if (a.cores.count() != inv.ncores || a.gpus.count() != inv.ngpus) continue;  // not wholly free
      } else if (a.cores.count() < need_c || a.gpus.count() < need_g) {
        continue;
      }
      ++picked;
      if (!out) continue;
      if (js.exclusive) {
        out->add_rank(r, a.cores, a.gpus, inv.hostname);
      } else {
        out->add_rank(r, lowest(a.cores, need_c, some_cores), lowest(a.gpus, need_g, some_gpus), inv.hostname);
      }
    }
    return picked == js.nnodes;
  }
  uint64_t left = js.nslots;
  for (uint32_t r = from(0); r < size() && left > 0; r = from(r + 1)) {
    if (!avail[r].usable) continue;
    if (runs && whole(r)) {
      const RankInventory& inv = inventory_[r];
      uint64_t k = inv.ncores / cps;
      if (gps > 0) k = std::min<uint64_t>(k, inv.ngpus / gps);
      if (k > 0 && k <= left) {  // (the last rank, taken in part, is taken below)
        const auto n = static_cast<uint32_t>(std::min<uint64_t>(run_end(r, size()) - r, left / k));
        left -= n * k;
        if (out) {
          out->add_ranks(r, r + n - 1, lowest(avail[r].cores, k * cps, some_cores),
                         lowest(avail[r].gpus, k * gps, some_gpus), name_of);
        }
        r += n - 1;
        continue;
      }
    }
    const RankFree& a = at(r);
    uint64_t k = a.cores.count() / cps;
    if (gps > 0) k = std::min<uint64_t>(k, a.gpus.count() / gps);
    k = std::min(k, left);
    if (k == 0) continue;
    left -= k;
    if (!out) continue;
    out->add_rank(r, lowest(a.cores, k * cps, some_cores), lowest(a.gpus, k * gps, some_gpus), inventory_[r].hostname);
  }
  return left == 0;
}

std::optional<ResourceSet> ResourcePool::match_in(const Jobspec& js, const std::vector<RankFree>& avail,
                                                  const ResourceSet* avoid) const {
  ResourceSet out;
  if (!match_in(js, avail, avoid, &out)) return std::nullopt;
  return out;
}

std::optional<ResourceSet> ResourcePool::match(const Jobspec& js) const {
  if (min_cores(js) > free_cores_) return std::nullopt;
  return match_in(js, free_);
}

std::optional<ResourceSet> ResourcePool::match_avoiding(const Jobspec& js, const ResourceSet& avoid) const {
  return match_in(js, free_, &avoid);
}

// --- allocations ---

Status ResourcePool::check_allocation(uint64_t id, const ResourceSet& r) const {
  if (auto it = allocations_.find(id); it != allocations_.end()) {
    return bad("job " + std::to_string(id) + " already holds resources (ranks " + it->second.rank_set().encode() + ")");
  }
  // In rank order (R's entries are), entry by entry and range by range:
  // a run of whole ranks alike is checked as its first rank.
  for (const auto& e : r.entries()) {
    for (auto [lo, hi] : e.ranks.ranges()) {
      if (whole_run(lo, hi) && (e.cores.empty() || *e.cores.last() < inventory_[lo].ncores) &&
          (e.gpus.empty() || *e.gpus.last() < inventory_[lo].ngpus)) {
        continue;
      }
      for (uint64_t rank = lo; rank <= hi; ++rank) {
        if (auto st = check_rank(static_cast<uint32_t>(rank), e.cores, e.gpus); !st) return st;
      }
    }
  }
  return {};
}

Status ResourcePool::check_rank(uint32_t rank, const IdSet& cores, const IdSet& gpus) const {
  if (rank >= size()) {
    return bad("rank " + std::to_string(rank) + " is not in this instance (size " + std::to_string(size()) + ")");
  }
  const RankInventory& inv = inventory_[rank];
  // A rank not known yet is checked when it reports (set_inventory).
  // (Ids count from 0: a set is within the first n if its last is.)
  if (inv.known && !cores.empty() && *cores.last() >= inv.ncores) {
    return bad("rank " + std::to_string(rank) + " has no cores " + cores.subtract(first_ids(inv.ncores)).encode() +
               " (it has " + plural(inv.ncores, "core") + ")");
  }
  if (inv.known && !gpus.empty() && *gpus.last() >= inv.ngpus) {
    return bad("rank " + std::to_string(rank) + " has no gpus " + gpus.subtract(first_ids(inv.ngpus)).encode() +
               " (it has " + plural(inv.ngpus, "gpu") + ")");
  }
  if (!cores.intersects(state_[rank].used_cores) && !gpus.intersects(state_[rank].used_gpus)) return {};
  IdSet busy_cores = cores.intersect(state_[rank].used_cores);
  IdSet busy_gpus = gpus.intersect(state_[rank].used_gpus);
  std::string what = !busy_cores.empty() ? "cores " + busy_cores.encode() : "gpus " + busy_gpus.encode();
  std::string holder;
  for (const auto& [other, held] : allocations_) {
    auto h = held.ranks().find(rank);
    if (h == held.ranks().end()) continue;
    if (!h->second.cores.intersect(busy_cores).empty() || !h->second.gpus.intersect(busy_gpus).empty()) {
      holder = " to job " + std::to_string(other);
      break;
    }
  }
  return bad(what + " of rank " + std::to_string(rank) + " are already allocated" + holder);
}

Status ResourcePool::allocate(uint64_t id, const ResourceSet& r) {
  if (r.empty()) return bad("job " + std::to_string(id) + ": an empty resource set cannot be allocated");
  if (auto st = check_allocation(id, r); !st) {
    ++alarms_;
    return Error{EINVAL, "double-booking refused for job " + std::to_string(id) + ": " + st.error().text};
  }
  uint64_t cores = 0;
  bool unnamed = false;  // a rank of r without the host name the inventory has
  const auto& names = r.hostnames();
  size_t i = 0;  // the rank's place in r
  for (const auto& e : r.entries()) {
    const uint64_t per = e.cores.count();
    for (auto [lo, hi] : e.ranks.ranges()) {
      hold_range(lo, hi, e.cores, per, e.gpus);
      for (uint64_t rank = lo; rank <= hi && !unnamed; ++rank, ++i) {
        unnamed = (names.empty() || names[i].empty()) && !inventory_[rank].hostname.empty();
      }
      cores += per * (uint64_t{hi} - lo + 1);
    }
  }
  ResourceSet& kept = allocations_[id];
  if (!unnamed) {
    kept = r;
  } else {
    kept.starttime = r.starttime;
    kept.expiration = r.expiration;
    for (const auto& [rank, rr] : r.ranks()) {
      RankResources copy = rr;
      if (copy.hostname.empty()) copy.hostname = inventory_[rank].hostname;
      kept.add_rank(rank, std::move(copy));
    }
  }
  if (ends(kept)) by_end_.emplace(std::make_pair(kept.expiration, id), Held{&kept, cores});
  return {};
}

std::string ResourcePool::restore(uint64_t id, const ResourceSet& r) {
  if (allocations_.count(id)) return "";
  // Rank by rank, what fits goes back on the books and what does not is
  // named by the same check allocate() makes.
  std::vector<std::string> lost;
  ResourceSet fits;
  fits.starttime = r.starttime;
  fits.expiration = r.expiration;
  for (const auto& [rank, rr] : r.ranks()) {
    ResourceSet one;
    one.add_rank(rank, rr);
    if (auto st = check_allocation(id, one); !st) lost.push_back(st.error().text);
    if (rank >= size()) continue;
    const RankInventory& inv = inventory_[rank];
    // Two running jobs on one core: double-booking before the restart.
    if (!rr.cores.intersect(state_[rank].used_cores).empty() || !rr.gpus.intersect(state_[rank].used_gpus).empty()) {
      ++alarms_;
    }
    RankResources keep = rr;
    keep.cores = inv.known ? rr.cores.intersect(first_ids(inv.ncores)) : rr.cores;
    keep.gpus = inv.known ? rr.gpus.intersect(first_ids(inv.ngpus)) : rr.gpus;
    keep.cores = keep.cores.subtract(state_[rank].used_cores);
    keep.gpus = keep.gpus.subtract(state_[rank].used_gpus);
    if (!keep.cores.empty() || !keep.gpus.empty()) fits.add_rank(rank, std::move(keep));
  }
  if (!fits.empty()) {
    [[maybe_unused]] auto st = allocate(id, fits);
    LOOM_ASSERT(st.ok());
  }
  std::string text;
  for (const auto& line : lost) text += (text.empty() ? "" : "; ") + line;
  return text;
}

Status ResourcePool::free(uint64_t id, const ResourceSet& part) {
  auto it = allocations_.find(id);
  if (it == allocations_.end()) return bad("job " + std::to_string(id) + " holds no resources");
  IdSet held = it->second.rank_set();
  const IdSet& ranks = part.rank_set();
  if (IdSet missing = ranks.subtract(held); !missing.empty()) {
    return bad("job " + std::to_string(id) + " does not hold ranks " + missing.encode() + " (it holds " +
               (held.empty() ? std::string("none") : held.encode()) + ")");
  }
  if (ranks == held) return release_all(it);
  uint64_t going_cores = 0;
  for (const auto& e : it->second.entries()) {
    const uint64_t per = e.cores.count();
    const IdSet going = e.ranks.intersect(ranks);
    for (auto [lo, hi] : going.ranges()) {
      unhold_range(lo, hi, e.cores, per, e.gpus);
      going_cores += per * (uint64_t{hi} - lo + 1);
    }
  }
  if (ends(it->second)) by_end_.at({it->second.expiration, id}).cores -= going_cores;
  it->second = it->second.subset(held.subtract(ranks));
  return {};
}

Status ResourcePool::free_all(uint64_t id) {
  auto it = allocations_.find(id);
  if (it == allocations_.end()) return bad("job " + std::to_string(id) + " holds no resources");
  return release_all(it);
}

Status ResourcePool::release_all(std::map<uint64_t, ResourceSet>::iterator it) {
  for (const auto& e : it->second.entries()) {
    const uint64_t per = e.cores.count();
    for (auto [lo, hi] : e.ranks.ranges()) unhold_range(lo, hi, e.cores, per, e.gpus);
  }
  if (ends(it->second)) by_end_.erase({it->second.expiration, it->first});
  allocations_.erase(it);
  return {};
}

void ResourcePool::hold(uint32_t rank, const IdSet& cores, uint64_t ncores, const IdSet& gpus) {
  RankState& st = state_[rank];
  add_ids(st.used_cores, cores);
  add_ids(st.used_gpus, gpus);
  // A rank not known yet has nothing free to take them from: recount.
  if (!inventory_[rank].known) return refresh(rank);
  // Checked (check_allocation): within the inventory and not used, so
  // free, and the rank's beyond flag stands.
  RankFree& f = free_[rank];
  take_ids(f.cores, cores);
  take_ids(f.gpus, gpus);
  if (!f.usable) return;
  if (ncores + gpus.count() > 0) set_whole(rank, false);
  free_cores_ -= ncores;
  if (f.cores.empty()) open_[rank / 64] &= ~(uint64_t{1} << (rank % 64));
}

void ResourcePool::hold_range(uint32_t lo, uint32_t hi, const IdSet& cores, uint64_t ncores, const IdSet& gpus) {
  const uint64_t ngpus = gpus.count();
  if (!whole_run(lo, hi) || ncores + ngpus == 0) {
    for (uint64_t r = lo; r <= hi; ++r) hold(static_cast<uint32_t>(r), cores, ncores, gpus);
    return;
  }
  // A run of whole ranks alike (and what they are given is within their
  // inventory: checked): each holds just that now, and has the rest free.
  const RankInventory& inv = inventory_[lo];
  const bool all_cores = ncores == inv.ncores, all_gpus = ngpus == inv.ngpus;
  for (uint64_t r = lo; r <= hi; ++r) {
    // (A whole rank holds nothing: only what it is given is written.)
    RankState& st = state_[r];
    add_ids(st.used_cores, cores);
    add_ids(st.used_gpus, gpus);
    RankFree& f = free_[r];
    all_cores ? f.cores.clear() : take_ids(f.cores, cores);
    all_gpus ? f.gpus.clear() : take_ids(f.gpus, gpus);
    const uint64_t bit = uint64_t{1} << (r % 64);
    whole_[r / 64] &= ~bit;
    if (all_cores) open_[r / 64] &= ~bit;
  }
  free_cores_ -= ncores * (uint64_t{hi} - lo + 1);
}

void ResourcePool::unhold_range(uint32_t lo, uint32_t hi, const IdSet& cores, uint64_t ncores, const IdSet& gpus) {
  for (uint64_t r = lo; r <= hi; ++r) {
    RankState& st = state_[r];
    RankFree& f = free_[r];
    // All that is held of a usable rank, within its inventory, is given
    // back: it is whole again (unhold() in short).
    if (!f.usable || !inventory_[r].known || st.beyond || ncores == 0 || st.used_cores != cores ||
        st.used_gpus != gpus) {
      unhold(static_cast<uint32_t>(r), cores, ncores, gpus);
      continue;
    }
    st.used_cores.clear();
    st.used_gpus.clear();
    add_ids(f.cores, cores);
    add_ids(f.gpus, gpus);
    const uint64_t bit = uint64_t{1} << (r % 64);
    whole_[r / 64] |= bit;
    open_[r / 64] |= bit;
    free_cores_ += ncores;
  }
}

void ResourcePool::unhold(uint32_t rank, const IdSet& cores, uint64_t ncores, const IdSet& gpus) {
  RankState& st = state_[rank];
  take_ids(st.used_cores, cores);
  take_ids(st.used_gpus, gpus);
  // Held beyond the inventory (or on a rank not known yet): some of them
  // are not the rank's to have free, and the flag may drop. Recount.
  if (!inventory_[rank].known || st.beyond) return refresh(rank);
  // All within the inventory, and used until now: free again.
  RankFree& f = free_[rank];
  add_ids(f.cores, cores);
  add_ids(f.gpus, gpus);
  if (!f.usable) return;
  if (st.used_cores.empty() && st.used_gpus.empty() && !f.cores.empty()) set_whole(rank, true);
  if (ncores == 0) return;
  free_cores_ += ncores;
  open_[rank / 64] |= uint64_t{1} << (rank % 64);
}

// --- reports ---

ResourceCount ResourcePool::count_all() const {
  ResourceCount c;
  for (uint32_t r = 0; r < size(); ++r) {
    c.ranks.insert(r);
    c.ncores += inventory_[r].ncores;
    c.ngpus += inventory_[r].ngpus;
  }
  return c;
}

ResourceCount ResourcePool::count_free() const {
  ResourceCount c;
  for (uint32_t r = 0; r < size(); ++r) {
    if (!state_[r].up || !inventory_[r].known || drained_.count(r)) continue;
    // (A job may hold cores beyond the inventory: see set_inventory.)
    uint64_t fc = first_ids(inventory_[r].ncores).subtract(state_[r].used_cores).count();
    uint64_t fg = first_ids(inventory_[r].ngpus).subtract(state_[r].used_gpus).count();
    if (fc + fg == 0) continue;
    c.ranks.insert(r);
    c.ncores += fc;
    c.ngpus += fg;
  }
  return c;
}

ResourceCount ResourcePool::count_allocated() const {
  ResourceCount c;
  for (uint32_t r = 0; r < size(); ++r) {
    uint64_t uc = state_[r].used_cores.count(), ug = state_[r].used_gpus.count();
    if (uc + ug == 0) continue;
    c.ranks.insert(r);
    c.ncores += uc;
    c.ngpus += ug;
  }
  return c;
}

ResourceCount ResourcePool::count_down() const {
  ResourceCount c;
  for (uint32_t r = 0; r < size(); ++r) {
    if (state_[r].up) continue;
    c.ranks.insert(r);
    c.ncores += inventory_[r].ncores;
    c.ngpus += inventory_[r].ngpus;
  }
  return c;
}

ResourceCount ResourcePool::count_drained() const {
  ResourceCount c;
  for (const auto& [r, info] : drained_) {
    c.ranks.insert(r);
    c.ncores += inventory_[r].ncores;
    c.ngpus += inventory_[r].ngpus;
  }
  return c;
}

// --- EASY backfill ---

std::map<uint64_t, double> ResourcePool::expected_ends() const {
  std::map<uint64_t, double> ends;
  for (const auto& [id, r] : allocations_) {
    if (r.expiration > 0) ends[id] = r.expiration;
  }
  return ends;
}

uint64_t ResourcePool::usable_held_cores(const Held& held) const {
  if (unusable_ == 0 && beyond_ == 0) return held.cores;
  uint64_t n = 0;
  for (const auto& [rank, rr] : held.set->ranks()) {
    if (rank >= size() || !free_[rank].usable) continue;
    const uint32_t nc = inventory_[rank].ncores;
    // (Not what a job holds beyond a host that came back smaller.)
    n += rr.cores.empty() || *rr.cores.last() < nc ? rr.cores.count() : rr.cores.intersect(first_ids(nc)).count();
  }
  return n;
}

std::optional<Reservation> ResourcePool::reserve(const Jobspec& head, const std::map<uint64_t, double>& ends,
                                                 double now) const {
  std::vector<Ending> order;
  for (const auto& [id, end] : ends) {
    auto it = allocations_.find(id);
    if (it == allocations_.end() || !std::isfinite(end)) continue;
    order.push_back(Ending{std::max(end, now), id, &it->second});
  }
  // (at_time() could not rebuild what these ends give back.)
  return reserve_in(head, std::move(order), now, false);
}

std::optional<Reservation> ResourcePool::reserve(const Jobspec& head, double now) const {
  std::vector<Ending> order;
  if (!counted(head) || !check_shape(head).ok()) {  // (a counted head walks by_end_ itself)
    order.reserve(by_end_.size());
    for (const auto& [end, h] : by_end_) order.push_back(Ending{std::max(end.first, now), end.second, h.set});
  }
  return reserve_in(head, std::move(order), now, true);
}

std::optional<Reservation> ResourcePool::reserve_in(const Jobspec& head, std::vector<Ending> order, double now,
                                                    bool from_expirations) const {
  const uint64_t need = min_cores(head);
  // The reservation at `t`, where the head fits in `at_time` (taken; empty
  // for a counted head), which has `cores` usable cores free.
  auto plan = [&](double t, std::vector<RankFree> at_time, uint64_t cores) -> std::optional<Reservation> {
    Reservation res;
    res.time = t;
    // The head's shape only: a plan needs nothing else of it.
    res.head.nnodes = head.nnodes;
    res.head.nslots = head.nslots;
    res.head.slots_per_node = head.slots_per_node;
    res.head.cores_per_slot = head.cores_per_slot;
    res.head.gpus_per_slot = head.gpus_per_slot;
    res.head.exclusive = head.exclusive;
    res.head.duration = head.duration;
    res.spare_cores = cores - std::min(need, cores);
    res.at_time = std::move(at_time);
    return res;
  };
  const bool by_count = from_expirations && counted(head) && check_shape(head).ok();
  uint64_t cores = free_cores_;
  if (cores >= need && (by_count || match_in(head, free_, nullptr, nullptr))) {
    return plan(now, by_count ? std::vector<RankFree>() : free_, cores);
  }
  // Give back each job's resources in the order the jobs are expected to
  // end (ties in id order); the first moment the head fits is its
  // reservation. Every job ending at one moment gives back at that moment,
  // before the head is tried then: a job ending exactly at the shadow time
  // counts as ended. (From the expirations, the order is by_end_'s: ends
  // already past count as now, and in any order, since the moment's jobs
  // all give back before the head is tried.)
  if (by_count) {
    // Only counts change: no rank needs copying, and only the jobs that
    // end by the reservation are looked at.
    for (auto it = by_end_.begin(); it != by_end_.end();) {
      const double t = std::max(it->first.first, now);
      for (; it != by_end_.end() && std::max(it->first.first, now) == t; ++it) {
        cores += usable_held_cores(it->second);
      }
      if (cores >= need) return plan(t, {}, cores);
    }
    return std::nullopt;
  }
  if (!from_expirations) {
    std::stable_sort(order.begin(), order.end(), [](const Ending& a, const Ending& b) { return a.end < b.end; });
  }
  std::vector<RankFree> avail;
  for (size_t i = 0; i < order.size();) {
    double t = order[i].end;
    if (avail.empty()) avail = free_;  // copied only once a job must be given back
    for (; i < order.size() && order[i].end == t; ++i) {
      for (const auto& [rank, rr] : order[i].held->ranks()) {
        RankFree& a = avail[rank];
        const RankInventory& inv = inventory_[rank];
        if (a.usable) cores -= a.cores.count();
        // (Not what a job holds beyond a host that came back smaller.)
        bool within =
            (rr.cores.empty() || *rr.cores.last() < inv.ncores) && (rr.gpus.empty() || *rr.gpus.last() < inv.ngpus);
        a.cores = a.cores.set_union(within ? rr.cores : rr.cores.intersect(first_ids(inv.ncores)));
        if (!rr.gpus.empty()) a.gpus = a.gpus.set_union(within ? rr.gpus : rr.gpus.intersect(first_ids(inv.ngpus)));
        if (a.usable) cores += a.cores.count();
      }
    }
    if (cores < need) continue;
    if (match_in(head, avail, nullptr, nullptr)) return plan(t, std::move(avail), cores);
  }
  return std::nullopt;
}

std::optional<ResourceSet> ResourcePool::backfill(const Jobspec& candidate, const Reservation& res, double now) const {
  const uint64_t need = min_cores(candidate);
  if (need > free_cores_) return std::nullopt;
  // The expected end, computed here once: the same sum becomes the R's
  // expiration, so the comparison below and later plans agree exactly.
  const double end = candidate.duration > 0 ? now + candidate.duration : 0;
  auto stamped = [&](std::optional<ResourceSet> r) {
    if (r) {
      r->starttime = now;
      r->expiration = end;
    }
    return r;
  };
  // Ends by the shadow time (exactly at it included): whatever it takes
  // now is free again when the head needs it.
  if (end > 0 && end <= res.time) return stamped(match_in(candidate, free_));
  // Runs past it: it must leave the head room at res.time.
  if (need > res.spare_cores) return std::nullopt;
  if (counted(res.head)) {
    // The head needs only as many cores: any placement leaves it room if
    // the candidate takes no more than the spare ones.
    auto fit = match_in(candidate, free_);
    if (!fit || fit->ncores() > res.spare_cores) return std::nullopt;
    return stamped(std::move(fit));
  }
  if (auto off = match_in(candidate, free_, &planned(res))) return stamped(std::move(off));
  auto fit = match_in(candidate, free_);
  if (!fit || !match_in(res.head, at_time(res), &*fit, nullptr)) return std::nullopt;
  return stamped(std::move(fit));
}

void ResourcePool::backfilled(Reservation& res, const ResourceSet& taken) const {
  if (taken.expiration > 0 && taken.expiration <= res.time) return;  // gone by then
  bool moved = false;
  const ResourceSet* plan = res.planned ? &*res.planned : nullptr;
  for (const auto& [rank, rr] : taken.ranks()) {
    if (rank >= size()) continue;
    // (All of it was free, so free then: backfill() takes usable ranks.)
    res.spare_cores -= std::min(res.spare_cores, rr.cores.count());
    if (rank < res.at_time.size()) {  // else at_time() builds it from the allocations
      RankFree& a = res.at_time[rank];
      a.cores = a.cores.subtract(rr.cores);
      a.gpus = a.gpus.subtract(rr.gpus);
    }
    if (auto h = plan ? plan->ranks().find(rank) : ResourceSet::Ranks::iterator(); plan && h != plan->ranks().end()) {
      moved = moved || !h->second.cores.intersect(rr.cores).empty() || !h->second.gpus.intersect(rr.gpus).empty();
    }
  }
  if (moved) res.planned.reset();  // planned() places the head again
}

const ResourceSet& ResourcePool::planned(const Reservation& res) const {
  if (!res.planned) {
    res.planned.emplace();
    // reserve() found that the head fits, and backfill() that it still
    // does after each job it let run past res.time.
    [[maybe_unused]] bool fits = match_in(res.head, at_time(res), nullptr, &*res.planned);
    LOOM_ASSERT(fits);
  }
  return *res.planned;
}

const std::vector<RankFree>& ResourcePool::at_time(const Reservation& res) const {
  if (!res.at_time.empty() || size() == 0) return res.at_time;
  // Every job expected to end by res.time (an end past counts as now, which
  // is <= res.time) gives back; the backfilled ones are allocations too.
  res.at_time = free_;
  for (const auto& [id, r] : allocations_) {
    if (!(r.expiration > 0 && r.expiration <= res.time)) continue;
    for (const auto& [rank, rr] : r.ranks()) {
      RankFree& a = res.at_time[rank];
      a.cores = a.cores.set_union(rr.cores.intersect(first_ids(inventory_[rank].ncores)));
      a.gpus = a.gpus.set_union(rr.gpus.intersect(first_ids(inventory_[rank].ngpus)));
    }
  }
  return res.at_time;
}

}  // namespace loom
