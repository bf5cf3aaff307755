// The `sched` service on rank 0 (docs/protocols/jobs.md).
// It owns the instance's resource inventory (a ResourcePool) and answers
// the job manager's allocation requests by policy: FCFS, EASY backfill, or
// EASY trying its backfill candidates shortest first (easy-sjbf).
//
// Messages served (access in brackets):
//   sched.alloc {id, priority, userid, t_submit, jobspec}   [owner]
//       no matchtag; answered later, by job id: {id, type: 0, R} success,
//       {id, type: 1, annotations} annotate, {id, type: 2, note} deny,
//       {id, type: 3} cancelled. R is written to job.<id>.R first.
//   sched.cancel {id}                                       [owner]
//   sched.prioritize {jobs: [[id, priority], ...]}          [owner]
//   sched.free {id, R, final}    no matchtag; → {id}        [owner]
//   sched.feasibility {jobspecs: [...]}  → {} or EINVAL "jobspec N: why"
//                                                           [user]
//   sched.resource-status {} → {all, free, allocated, down, drained, drain,
//                               policy, alarms}             [user]
//   sched.drain {ranks, reason} / sched.undrain {ranks} → {}  [owner]
// Messages sent:
//   kvs.lookup resource.drain (and resource.inventory over hosts),
//   broker.status, then job-manager.sched-hello
//   (streaming), then job-manager.sched-ready {mode: "unlimited"};
//   kvs.commit of resource.drain and resource.inventory (a job's R goes
//   in its grant; the job manager stores it).
// Events: broker.lost {rank} marks a rank down, broker.online {rank} up;
// over hosts, broker.online {rank, cores, gpus} is also what that rank's
// host has (saved to resource.inventory).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "base/once_per_turn.h"
#include "base/result.h"
#include "jobspec/jobspec.h"
#include "msg/handle.h"
#include "sched/pool.h"

namespace asio {
class io_context;
}

namespace loom {

struct SchedConfig {
  uint32_t size = 1;  // ranks in the instance
  // Configured ([resource] cores-per-rank, gpus-per-rank); else discovered.
  // With hostnames: rank 0's only; every other host reports its own.
  std::optional<uint32_t> cores_per_rank, gpus_per_rank;
  std::string policy = "fcfs";  // "fcfs", "easy" or "easy-sjbf"
  // EASY: the most jobs behind the reservation tried in one pass (0: all,
  // as EASY itself does; a simulation wants that).
  int64_t backfill_depth = 500;
  // The host of each rank, where the bootstrap configuration names them
  // (else every rank is this host).
  std::vector<std::string> hostnames;
  // Without hostnames, whether the ranks take this host's name. A
  // simulation's nodes have none, so its R names no hosts
  // (docs/simulator.md).
  bool name_ranks = true;
};

// `c` if it is usable, else one line naming the bad setting, such as
// "sched.policy must be fcfs, easy or easy-sjbf, not lifo".
Result<SchedConfig> validate_sched_config(SchedConfig c);

// What this host has: hwloc's core count (at least 1), its GPU and
// co-processor devices (one per physical device), and gethostname().
RankInventory discover_local_resources();

class Sched {
 public:
  // Validates `cfg`, builds the inventory (every rank like this host unless
  // configured), serves on `h` and starts the hello with the job manager.
  static Result<std::unique_ptr<Sched>> create(asio::io_context& io, Handle& h, SchedConfig cfg);
  ~Sched();
  Sched(const Sched&) = delete;
  Sched& operator=(const Sched&) = delete;

  const ResourcePool& pool() const { return pool_; }
  // True once sched-ready has been answered: allocations are being made.
  bool ready() const { return ready_; }
  size_t pending() const { return pending_.size(); }

 private:
  enum class Policy { kFcfs, kEasy, kEasySjbf };
  // The order allocs are answered in: priority high to low, then older
  // first, then lower id.
  struct QueueKey {
    int64_t priority;
    double t_submit;
    uint64_t id;
    bool operator<(const QueueKey& o) const;
  };
  // easy-sjbf's order of backfill candidates: shortest requested time
  // first (none: last), then queue order.
  struct ShortestKey {
    double duration;  // +inf without one
    QueueKey key;
    bool operator<(const ShortestKey& o) const;
  };
  static ShortestKey shortest_key(const QueueKey& key, const Jobspec& js);
  struct PendingJob {
    Message req;  // the alloc request, answered by h_.respond(req, ...)
    QueueKey key;
    Jobspec jobspec;
    Json annotation;  // the last one sent (null: none)
    // Why it fits no host as they are now ("" if it may): a job accepted
    // before every host had reported, or one whose host came back smaller.
    std::string never;
  };

  Sched(asio::io_context& io, Handle& h, SchedConfig cfg, ResourcePool pool);
  void install();

  // Startup: drain state, rank states, hello, ready; retried every second.
  void load_drain();
  void load_inventory();
  // Looks up `key`, hands its value to `use` when it is a JSON object
  // (absent: not called), then calls `next`; retried while the KVS fails.
  void load_object(const char* key, const std::function<void(const Json&)>& use, const std::function<void()>& next);
  void query_ranks();
  void hello();
  void sched_ready();
  void retry_startup(const std::string& why);

  void alloc(const Message& req);
  // `decoded` if the sender decoded the jobspec, else `jobspec` is decoded.
  void alloc(const Message& req, uint64_t id, int64_t priority, double t_submit, const Jobspec* decoded,
             const Json* jobspec);
  void cancel(const Message& req);
  void prioritize(const Message& req);
  void free(const Message& req);
  void free(const Message& req, uint64_t id, const ResourceSet& R, bool final);
  void refuse_free(const Message& req, const Error& e);
  void feasibility(const Message& req);
  void refuse_infeasible(const Message& req, size_t i, const Error& e);
  void resource_status(const Message& req);
  std::string nodelist(const IdSet& ranks) const;
  void drain(const Message& req);
  void undrain(const Message& req);
  void disconnect(const Message& req);
  void rank_event(const Message& ev, bool up);
  // What a rank's broker reports its host has ({cores, gpus}, in its
  // broker.online and in broker.status): the pool's inventory for that
  // rank (once ready), saved to resource.inventory; pending jobs that fit
  // no host as they now are wait aside, with that reason.
  void report(uint32_t rank, const Json& j);
  void apply_report(uint32_t rank, const RankInventory& inv);
  static Result<RankInventory> inventory_of(const Json& j);
  // One commit of resource.inventory per loop turn, however many hosts
  // reported in it; and one look at which pending jobs fit no host.
  void request_save_inventory() { save_inventory_turn_.request(); }
  void save_inventory();
  void recheck_pending() { recheck_turn_.request(); }
  void recheck_feasible();

  // At most one scheduling pass per loop turn.
  void request_pass() { pass_turn_.request(); }
  void pass();
  // EASY behind the head: tries each candidate in `order` (an ordered map
  // of keys whose QueueKey `key_of` gives to their jobs) against `res`.
  template <typename Order, typename KeyOf>
  void backfill(const Order& order, const QueueKey& head, Reservation& res, double now, KeyOf key_of);
  // Allocates `r` (its starttime and expiration set) to the pending job
  // `id` and answers with it. False if the pool refused it.
  bool start(uint64_t id, ResourceSet r);
  void annotate(PendingJob& job, Json sched);
  void remove_pending(uint64_t id);
  // Writes resource.drain, then answers `req`.
  void save_drain(const Message& req);

  asio::io_context& io_;
  Handle& h_;
  Clock& clock_;
  SchedConfig cfg_;
  Policy policy_;
  ResourcePool pool_;
  bool ready_ = false;
  std::optional<uint64_t> estimate_holder_;
  std::unique_ptr<Timer> retry_timer_;
  std::map<uint64_t, PendingJob> pending_;
  // The pending jobs in queue order, each with its entry of pending_ (a
  // map's entries stay where they are): a pass walks the queue without
  // looking each job up.
  std::map<QueueKey, PendingJob*> queue_;
  // The same jobs shortest first, for easy-sjbf only.
  std::map<ShortestKey, PendingJob*> shortest_;
  // Jobs the hello reported running whose R could not all be held again
  // (ResourcePool::restore): their frees of ranks not held are expected.
  std::set<uint64_t> restored_partly_;
  // Reports that came before sched-ready, applied then.
  std::map<uint32_t, RankInventory> early_reports_;
  // In a simulation a turn lasts until the instance is idle at the current
  // instant (base/virtual_clock.h): one pass sees all that happened then.
  OncePerTurn pass_turn_{io_, clock_, Clock::IdleOrder::kDecide, [this] { pass(); }};
  OncePerTurn save_inventory_turn_{io_, [this] { save_inventory(); }};
  OncePerTurn recheck_turn_{io_, [this] { recheck_feasible(); }};
  // Shared with posted passes and RPC callbacks, to know Sched still exists.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace loom
