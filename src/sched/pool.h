// ResourcePool: the scheduler's pure core (docs/design.md, "Job manager ↔
// scheduler"). It knows the instance's inventory (per rank: cores, gpus,
// hostname), the state of each rank (up or down, drained or not) and which
// job holds which cores and gpus. It sends no messages and reads no clock:
// times are passed in, so every rule here is tested without a broker
// (pool_test.cpp).
//
//   feasible()   could a jobspec ever be satisfied by the whole inventory?
//   match()      the resources a jobspec would get now, from what is free
//                (up, not drained, not allocated), lowest ranks and ids first
//   allocate()   mark resources held by a job, refusing double-booking
//   free()       give back some ranks of a job (partial release) or all
//   reserve()    EASY backfill: when and where a blocked job could start
//   backfill()   EASY backfill: what a later job may take now without
//                delaying that reservation
//   backfilled() EASY backfill: the reservation's plan, told what a
//                backfilled job took
//
// Core ids on a rank are 0..ncores-1 and gpu ids 0..ngpus-1.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "idset/idset.h"
#include "jobspec/jobspec.h"
#include "msg/json.h"
#include "rset/rset.h"

namespace loom {

// What one rank has. A rank of an instance over hosts is not `known` until
// its broker has reported what its host has (docs/protocols/jobs.md): until
// then it has no cores or gpus to give, and feasible() cannot rule it out.
struct RankInventory {
  uint32_t ncores = 0;
  uint32_t ngpus = 0;
  std::string hostname;
  bool known = true;
  bool operator==(const RankInventory&) const = default;
};

// Why and since when (wall seconds) a rank is drained.
struct DrainInfo {
  std::string reason;
  double timestamp = 0;
  bool operator==(const DrainInfo&) const = default;
};

// A quantity of resources as the resource commands report it.
struct ResourceCount {
  IdSet ranks;
  uint64_t ncores = 0;
  uint64_t ngpus = 0;
  uint64_t nnodes() const { return ranks.count(); }
  // {ranks, nnodes, ncores, ngpus}
  Json to_json() const;
};

// What a match may use on one rank: its free cores and gpus, and whether
// it is usable at all (up, known and undrained).
struct RankFree {
  bool usable = false;
  IdSet cores;
  IdSet gpus;
};

// Where and when a blocked job (the head) will start, assuming running jobs
// end when their duration says (EASY backfill): `time` is EASY's shadow
// time. The rest is the plan behind it, kept for one scheduling pass.
struct Reservation {
  double time = 0;  // wall seconds
  // The head's shape (no command, no raw document).
  Jobspec head;
  // Free at `time`, by rank: free now, plus what the jobs expected to end
  // by then give back (backfilled ones included), less what backfilled
  // jobs running past it hold. Empty until needed for a head whose fit is
  // a matter of counting (slots of one core, no gpu): ResourcePool::at_time()
  // builds it from the allocations then.
  mutable std::vector<RankFree> at_time;
  // Usable cores of at_time beyond the fewest the head needs: a job that
  // runs past `time` and needs more cannot start without delaying it.
  uint64_t spare_cores = 0;
  // What the head would get at `time`: ResourcePool::planned() computes it
  // when first asked (most passes never need it) and again when a
  // backfilled job took some of it.
  mutable std::optional<ResourceSet> planned;
};

class ResourcePool {
 public:
  // Every rank starts up, undrained and free.
  explicit ResourcePool(std::vector<RankInventory> ranks);
  // Moved, never copied: by_end_ points into allocations_, whose entries
  // stay where they are when the pool moves.
  ResourcePool(ResourcePool&&) = default;
  ResourcePool& operator=(ResourcePool&&) = default;
  ResourcePool(const ResourcePool&) = delete;
  ResourcePool& operator=(const ResourcePool&) = delete;

  uint32_t size() const { return static_cast<uint32_t>(inventory_.size()); }
  // `rank` must be < size().
  const RankInventory& inventory(uint32_t rank) const;
  // What `rank` (< size()) has, as its broker reported it (`inv.known` is
  // set here; an empty hostname keeps the rank's). Applied at once, even
  // where a job holds cores or gpus beyond it (a host back smaller, or a
  // job restored onto a rank not known yet): those stay the job's until it
  // frees them, and are never given out again. Returns a line naming them
  // ("jobs hold cores 2-3 of rank 1, which now has 2 cores and 1 gpu"),
  // empty if there are none.
  std::string set_inventory(uint32_t rank, RankInventory inv);
  // Whether some rank's inventory is not known yet.
  bool any_unknown() const;

  // --- rank state; ranks >= size() are ignored ---
  void set_up(uint32_t rank, bool up);
  bool is_up(uint32_t rank) const;
  void drain(uint32_t rank, DrainInfo info);
  void undrain(uint32_t rank);
  bool is_drained(uint32_t rank) const;
  const std::map<uint32_t, DrainInfo>& drained() const { return drained_; }

  // --- matching ---
  // Ok if the whole inventory (ignoring allocations, drain and down) could
  // satisfy `js`; else one line saying why, e.g. "5 nodes requested but the
  // instance has 4 ranks". feasible() holds exactly when match() would
  // succeed on this pool with every rank up, undrained and free. While some
  // rank is not known, only what no inventory could change is refused (the
  // shape, more nodes than ranks): that rank might hold the rest.
  Status feasible(const Jobspec& js) const;
  // The resources `js` gets from what is free now, or nullopt. With a node
  // level: the first `nnodes` ranks that each hold `slots_per_node` slots
  // (an exclusive job needs the whole rank free and gets all of it).
  // Without: `nslots` slots, each on one rank, filling ranks in order.
  // Hostnames are filled in; starttime and expiration are left 0.
  std::optional<ResourceSet> match(const Jobspec& js) const;
  // The same, without using any core or gpu of `avoid`.
  std::optional<ResourceSet> match_avoiding(const Jobspec& js, const ResourceSet& avoid) const;

  // --- allocations ---
  // Marks `r` held by job `id`. Refused, and counted in alarms(), if `id`
  // already holds resources or any core or gpu of `r` is not in the
  // inventory or is already held: that is double-booking, always a bug.
  // Down and drained ranks are accepted (a job restored after a restart).
  // An empty `r` is refused without an alarm.
  Status allocate(uint64_t id, const ResourceSet& r);
  // After a restart, a job that was running holds again what it held before
  // (`r`) — as much of it as still exists and is free: the cores and gpus in
  // the inventory now and not held by another job. Returns one line saying
  // what could not be held again ("rank 0 has no cores 1 (it has 1 core)"),
  // empty when all of it was. Resources missing from the inventory are not
  // an alarm (a smaller configuration or a lost rank); resources another
  // restored job holds are (double-booking before the restart). On a rank
  // not known yet the job holds again all it held there (set_inventory
  // checks it later). Nothing changes if `id` already holds resources.
  std::string restore(uint64_t id, const ResourceSet& r);
  // Frees the ranks of `part` that job `id` holds (every core and gpu the
  // job has there). EINVAL, and nothing changes, if the job holds nothing or
  // does not hold one of those ranks.
  Status free(uint64_t id, const ResourceSet& part);
  Status free_all(uint64_t id);
  // Job id → what it holds now (with starttime and expiration as allocated).
  const std::map<uint64_t, ResourceSet>& allocations() const { return allocations_; }
  uint64_t alarms() const { return alarms_; }

  // --- reports ---
  // all:       every rank with all its cores and gpus
  // free:      up, undrained ranks with a free core or gpu; the free ones
  // allocated: ranks with a held core or gpu (any state); the held ones
  // down:      down ranks with all their cores and gpus
  // drained:   drained ranks (up or down) with all their cores and gpus
  ResourceCount count_all() const;
  ResourceCount count_free() const;
  ResourceCount count_allocated() const;
  ResourceCount count_down() const;
  ResourceCount count_drained() const;

  // --- EASY backfill ---
  // The EASY rule, in full (docs/protocols/jobs.md, "Scheduling policies"):
  //  - a running job's expected end is its R's expiration, starttime +
  //    duration, computed once when it starts; a job without a duration
  //    has none and never ends, as far as planning goes; an end already
  //    past counts as now;
  //  - the head's reservation (shadow) time is the earliest expected end
  //    (or now) at which the head fits in what is free now plus what every
  //    job expected to end by then gives back: all the jobs that end
  //    exactly at that time count as ending by it;
  //  - a later job (a candidate) may start now if it fits in what is free
  //    now and either has a duration and ends by the shadow time (now +
  //    duration <= time, equality included), or leaves the head still
  //    fitting at the shadow time in what is free then minus what the
  //    candidate holds (the "extra" resources of EASY). A candidate
  //    without a duration runs past any time: only the second holds.
  // Times are compared exactly: with whole seconds (a simulation) every
  // sum here is exact in a double.

  // Cores free now on usable ranks (count_free().ncores, kept as it
  // changes).
  uint64_t free_cores() const { return free_cores_; }
  // The expected end of each allocation: its expiration, when it has one.
  std::map<uint64_t, double> expected_ends() const;
  // The earliest time >= now at which `head` could start if every job in
  // `ends` (id → expected end, wall seconds) ended on time and nothing else
  // changed, with the plan behind it (planned(): where). Jobs not in `ends` never
  // end; ends before `now` count as `now`. nullopt when `head` cannot start
  // even after all of those jobs end.
  std::optional<Reservation> reserve(const Jobspec& head, const std::map<uint64_t, double>& ends, double now) const;
  // The same with expected_ends(), without building it.
  std::optional<Reservation> reserve(const Jobspec& head, double now) const;
  // The resources `res`'s head would get at res.time (the lowest ranks and
  // ids of what is free then).
  const ResourceSet& planned(const Reservation& res) const;
  // res.at_time, built first if it is empty.
  const std::vector<RankFree>& at_time(const Reservation& res) const;
  // What `candidate` may take now without delaying `res` (the rule above),
  // with starttime `now` and expiration now + duration (0 without one), or
  // nullopt. Running past res.time, it is first placed off the resources
  // the head is planned to get; failing that, where match() would place it,
  // if the head still fits at res.time elsewhere. (For a head of slots of
  // one core and no gpu, that is: where match() places it, if it takes no
  // more than res.spare_cores.)
  std::optional<ResourceSet> backfill(const Jobspec& candidate, const Reservation& res, double now) const;
  // Tells `res` that a job backfilled onto `taken` (as backfill() returned
  // it, expiration included) and was allocated: if it runs past res.time,
  // what it holds is not free then, and the head's planned resources move
  // if they overlapped.
  void backfilled(Reservation& res, const ResourceSet& taken) const;

 private:
  struct RankState {
    IdSet used_cores;
    IdSet used_gpus;
    bool up = true;
    bool beyond = false;  // jobs hold cores beyond its inventory
  };
  // An allocation expected to end (by_end_): what it holds, and how many
  // cores that is.
  struct Held {
    const ResourceSet* set;
    uint64_t cores;
  };
  // A job expected to end, for reserve().
  struct Ending {
    double end;  // >= now
    uint64_t id;
    const ResourceSet* held;
  };

  // Recomputes free_[rank] (and free_cores_) from the rank's state.
  void refresh(uint32_t rank);
  // A job takes `cores` (`ncores` of them) and `gpus` of `rank` (checked:
  // not held, and within its inventory when known), or gives them back:
  // the rank's state and free_ change by just those, without a recount
  // where none is needed.
  void hold(uint32_t rank, const IdSet& cores, uint64_t ncores, const IdSet& gpus);
  void unhold(uint32_t rank, const IdSet& cores, uint64_t ncores, const IdSet& gpus);
  // The same for ranks lo..hi (< size() when unholding), each given or
  // giving back the same; a run of whole ranks alike, and ranks left
  // wholly free, cost little each.
  void hold_range(uint32_t lo, uint32_t hi, const IdSet& cores, uint64_t ncores, const IdSet& gpus);
  void unhold_range(uint32_t lo, uint32_t hi, const IdSet& cores, uint64_t ncores, const IdSet& gpus);
  // Frees all that the allocation at `it` holds, and forgets it.
  Status release_all(std::map<uint64_t, ResourceSet>::iterator it);
  // Whether `js` fits in `avail` less `avoid` (none: nullptr); the
  // resources it would get go to `out` unless it is nullptr.
  bool match_in(const Jobspec& js, const std::vector<RankFree>& avail, const ResourceSet* avoid,
                ResourceSet* out) const;
  std::optional<ResourceSet> match_in(const Jobspec& js, const std::vector<RankFree>& avail,
                                      const ResourceSet* avoid = nullptr) const;
  // The cores an allocation holds on usable ranks, within their inventory.
  uint64_t usable_held_cores(const Held& held) const;
  // reserve() from the jobs expected to end. Only where those ends are the
  // expirations may at_time be left for at_time() to build. From the
  // expirations, `order` is by_end_'s (and none for a counted head, which
  // walks by_end_ itself, only as far as it needs).
  std::optional<Reservation> reserve_in(const Jobspec& head, std::vector<Ending> order, double now,
                                        bool from_expirations) const;
  // Why `r` cannot be allocated to `id`, or ok.
  Status check_allocation(uint64_t id, const ResourceSet& r) const;
  // Why `cores` and `gpus` of `rank` cannot be allocated, or ok.
  Status check_rank(uint32_t rank, const IdSet& cores, const IdSet& gpus) const;

  // The inventory's sums, for feasible(): kept as the inventory changes,
  // since every submitted job is checked against it.
  struct Totals {
    uint64_t max_cores = 0, max_gpus = 0, cores = 0, gpus = 0;
    uint32_t unknown = 0;  // ranks not known yet
  };
  void tally();

  std::vector<RankInventory> inventory_;
  Totals totals_;
  // By shape (cores, gpus), counted when first asked and forgotten when the
  // inventory changes: the ranks that hold that much, and the slots of that
  // size the whole inventory holds. Shapes past the largest rank are
  // refused before they are counted, so these stay small.
  mutable std::map<std::pair<uint64_t, uint64_t>, uint64_t> ranks_holding_, slots_held_;
  std::vector<RankState> state_;
  std::map<uint32_t, DrainInfo> drained_;
  std::map<uint64_t, ResourceSet> allocations_;
  // The allocations with an expiration (ends()), by (expiration, job id):
  // the order reserve() gives them back in.
  std::map<std::pair<double, uint64_t>, Held> by_end_;
  static bool ends(const ResourceSet& r) { return r.expiration > 0 && std::isfinite(r.expiration); }
  uint64_t alarms_ = 0;
  // What is free now on each rank, kept as allocations and rank states
  // change, so that a match does not rebuild it.
  std::vector<RankFree> free_;
  uint64_t free_cores_ = 0;
  // Bit r: rank r is usable and has a free core (every match takes at
  // least one core, so a match of free_ looks at these ranks only: on a
  // full machine of thousands of nodes, a few). next_open(r) is the first
  // such rank from r on, size() if none.
  std::vector<uint64_t> open_;
  uint32_t next_open(uint32_t from) const;
  // Bit r: rank r is usable, has cores, and nothing of it is held (its
  // free_ is its whole inventory).
  std::vector<uint64_t> whole_;
  // Bit r: rank r and rank r-1 have as many cores and gpus. A run of
  // whole ranks alike is matched, checked and added to an R by ranges:
  // what one of them gives, each gives.
  std::vector<uint64_t> alike_;
  bool named_ = false;  // some rank has a host name
  bool whole(uint32_t rank) const { return (whole_[rank / 64] >> (rank % 64)) & 1; }
  void set_whole(uint32_t rank, bool on);
  // The first rank after `from` (< limit <= size()) that does not continue
  // a run of whole ranks alike from it, at most `limit`.
  uint32_t run_end(uint32_t from, uint32_t limit) const;
  // Whether ranks lo..hi are all in the pool, whole, and alike.
  bool whole_run(uint32_t lo, uint32_t hi) const;
  // Ranks not usable, ranks with cores held beyond their inventory (while
  // both are 0, a job's usable held cores are all it holds).
  uint32_t unusable_ = 0, beyond_ = 0;
};

}  // namespace loom
