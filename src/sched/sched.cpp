// The `sched` service (sched.h): the message side of the scheduler. The
// rules live in ResourcePool (pool.h); this file decodes requests, keeps the
// queue of pending allocs in priority order, runs the scheduling pass and
// talks to the job manager and the KVS.
//
// Startup, retried every second from the step that failed:
//   kvs.lookup resource.drain → kvs.lookup resource.inventory (over hosts:
//   what each host reported last time) → broker.status (which ranks are
//   up, and what each host that joined has)
//   → job-manager.sched-hello (each job that holds resources: allocate its
//     R minus the ranks it already freed) → job-manager.sched-ready.
// A job from the hello whose R cannot all be held again (the instance came
// back smaller, or two jobs claim one core) keeps what can be held until it
// ends, and gets a fatal `scheduler-restart` exception saying what is
// missing: its processes are killed rather than left running unaccounted.
// No allocation is made before sched-ready is answered.
//
// A scheduling pass runs at most once per loop turn, posted after anything
// that can let a job start (alloc, free, cancel, prioritize, undrain, a
// rank coming online, readiness). It walks the queue in priority order:
//   fcfs  start each job that fits; the first that does not is annotated
//         "insufficient resources" and the pass stops there.
//   easy  the same up to the first job that does not fit (the head), which
//         gets a reservation (ResourcePool::reserve, from the expected ends
//         of running jobs) and a t_estimate annotation; every later job, in
//         queue order, may start only where ResourcePool::backfill says it
//         cannot delay that reservation (the EASY rule is written out in
//         pool.h). With no reservation possible (running jobs without a
//         duration), nothing backfills: the pass stops as with fcfs. At
//         most backfill_depth candidates are tried per pass (0: all; Slurm's
//         bf_max_job_test is the same cap), and none once every core is
//         busy.
//   easy-sjbf  EASY whose candidates are tried shortest requested time
//         (jobspec duration) first, ties in queue order, jobs without a
//         duration last; the cap counts candidates in that order.
// A started job's alloc is answered with its R at once; the job manager
// stores R (job.<id>.R) in the commit of the job's alloc event.
#include "sched/sched.h"

#include <hwloc.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <limits>
#include <set>
#include <string_view>

#include "base/fluid.h"
#include "hostlist/hostlist.h"
#include "kvs/layout.h"
#include "msg/payload.h"
#include "sched/alloc_protocol.h"

namespace loom {

namespace {

constexpr double kRetrySeconds = 1.0;
constexpr const char* kDrainKey = kvs_key::kResourceDrain;
// What each rank's host reported it has: {"RANK": {"cores": N, "gpus": N}}.
constexpr const char* kInventoryKey = kvs_key::kResourceInventory;
// Bounds on a host's report, so that a bad one cannot make huge id sets.
constexpr uint64_t kMaxCores = 1u << 20, kMaxGpus = 1u << 16;
constexpr const char* kInsufficient = "insufficient resources";

using sched_protocol::kAnnotate;
using sched_protocol::kCancel;
using sched_protocol::kDeny;

Error invalid(std::string why) { return Error{EINVAL, std::move(why)}; }
// A request of the wrong shape (a field missing or of the wrong type).
Error malformed(std::string why) { return Error{EPROTO, std::move(why)}; }

// R as an object, or as its JSON text.
Result<ResourceSet> get_R(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return malformed(std::string("missing \"") + key + "\"");
  auto r = it->is_string() ? ResourceSet::parse_text(it->get<std::string>()) : ResourceSet::parse(*it);
  if (!r.ok()) return invalid(r.error().text);
  return r;
}

// A jobspec as an object, or as its JSON text. The "jobspec: " prefix of
// parse errors is dropped: callers say which jobspec.
// Only the decoded fields are kept (raw stays null): the scheduler never
// reads the document again.
Result<Jobspec> to_jobspec(const Json& j) {
  Result<Jobspec> js = Error{EINVAL, ""};
  if (j.is_string()) {
    auto parsed = parse_json(j.get_ref<const std::string&>());
    js = parsed.ok() ? decode_jobspec(*parsed) : Result<Jobspec>(Error{EINVAL, "jobspec: " + parsed.error().text});
  } else {
    js = decode_jobspec(j);
  }
  if (js.ok()) return js;
  std::string text = js.error().text;
  if (text.starts_with("jobspec: ")) text.erase(0, 9);
  return invalid(text);
}

// "rank 5 is" / "ranks 5-6 are"
std::string ranks_are(const IdSet& s) {
  return s.count() == 1 ? "rank " + s.encode() + " is" : "ranks " + s.encode() + " are";
}

// An idset of ranks of this instance, for drain and undrain.
Result<IdSet> get_ranks(const Json& j, uint32_t size) {
  auto text = get_string(j, "ranks");
  if (!text.ok()) return text.error();
  auto ranks = IdSet::parse(*text);
  if (!ranks.ok()) return invalid(ranks.error().text);
  if (ranks->empty()) return invalid("no ranks given");
  IdSet outside = size > 0 ? ranks->subtract(IdSet::parse("0-" + std::to_string(size - 1)).value()) : *ranks;
  if (!outside.empty()) {
    return invalid(ranks_are(outside) + " not in this instance (size " + std::to_string(size) + ")");
  }
  return ranks;
}

}  // namespace

// --- configuration and discovery ---

Result<SchedConfig> validate_sched_config(SchedConfig c) {
  if (c.policy != "fcfs" && c.policy != "easy" && c.policy != "easy-sjbf") {
    return Error{EINVAL, "sched.policy must be fcfs, easy or easy-sjbf, not " + c.policy};
  }
  if (c.backfill_depth < 0) {
    return Error{EINVAL, "sched.backfill-depth must be 0 (no cap) or more, not " + std::to_string(c.backfill_depth)};
  }
  if (c.size == 0) return Error{EINVAL, "the instance size must be at least 1"};
  if (c.cores_per_rank && *c.cores_per_rank == 0) {
    return Error{EINVAL, "resource.cores-per-rank must be at least 1"};
  }
  if (!c.hostnames.empty() && c.hostnames.size() != c.size) {
    return Error{EINVAL, std::to_string(c.hostnames.size()) + " host names for " + std::to_string(c.size) + " ranks"};
  }
  return c;
}

RankInventory discover_local_resources() {
  RankInventory inv;
  inv.ncores = 1;
  hwloc_topology_t topo;
  if (hwloc_topology_init(&topo) == 0) {
    // Keep GPUs and co-processors (and the PCI devices they hang on).
    hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (hwloc_topology_load(topo) == 0) {
      int n = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
      if (n > 0) inv.ncores = static_cast<uint32_t>(n);
      // One physical device may show up several times (CUDA, NVML, OpenCL),
      // so count their parents. A display adapter's DRM nodes (card0,
      // renderD128, controlD64) are GPU devices to hwloc but not compute
      // devices to a job.
      std::set<hwloc_obj_t> devices;
      for (hwloc_obj_t o = hwloc_get_next_osdev(topo, nullptr); o; o = hwloc_get_next_osdev(topo, o)) {
        auto type = o->attr->osdev.type;
        if (type != HWLOC_OBJ_OSDEV_GPU && type != HWLOC_OBJ_OSDEV_COPROC) continue;
        std::string_view name = o->name ? o->name : "";
        if (type == HWLOC_OBJ_OSDEV_GPU &&
            (name.starts_with("card") || name.starts_with("renderD") || name.starts_with("controlD"))) {
          continue;
        }
        devices.insert(o->parent ? o->parent : o);
      }
      inv.ngpus = static_cast<uint32_t>(devices.size());
    }
    hwloc_topology_destroy(topo);
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  inv.hostname = host;
  return inv;
}

// --- lifetime ---

bool Sched::QueueKey::operator<(const QueueKey& o) const {
  if (priority != o.priority) return priority > o.priority;
  if (t_submit != o.t_submit) return t_submit < o.t_submit;
  return id < o.id;
}

bool Sched::ShortestKey::operator<(const ShortestKey& o) const {
  if (duration != o.duration) return duration < o.duration;
  return key < o.key;
}

Sched::ShortestKey Sched::shortest_key(const QueueKey& key, const Jobspec& js) {
  return ShortestKey{js.duration > 0 ? js.duration : std::numeric_limits<double>::infinity(), key};
}

Result<std::unique_ptr<Sched>> Sched::create(asio::io_context& io, Handle& h, SchedConfig cfg) {
  auto valid = validate_sched_config(std::move(cfg));
  if (!valid.ok()) return valid.error();
  cfg = std::move(*valid);
  RankInventory rank;
  if (cfg.cores_per_rank && cfg.gpus_per_rank) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    rank.hostname = host;
  } else {
    rank = discover_local_resources();
  }
  if (cfg.cores_per_rank) rank.ncores = *cfg.cores_per_rank;
  if (cfg.gpus_per_rank) rank.ngpus = *cfg.gpus_per_rank;
  if (!cfg.name_ranks) rank.hostname.clear();
  if (cfg.hostnames.empty()) {
    spdlog::info("sched: {} ranks of {} cores and {} gpus each, policy {}", cfg.size, rank.ncores, rank.ngpus,
                 cfg.policy);
  } else {
    spdlog::info("sched: {} ranks over hosts, policy {}; this one has {} cores and {} gpus, the others as they report",
                 cfg.size, cfg.policy, rank.ncores, rank.ngpus);
  }
  std::vector<RankInventory> ranks(cfg.size, rank);
  for (size_t r = 0; r < ranks.size() && r < cfg.hostnames.size(); ++r) {
    ranks[r].hostname = cfg.hostnames[r];
    // Another host: known once its broker reports (report()).
    if (r > 0) ranks[r] = RankInventory{0, 0, cfg.hostnames[r], false};
  }
  ResourcePool pool(std::move(ranks));
  std::unique_ptr<Sched> s(new Sched(io, h, std::move(cfg), std::move(pool)));
  s->install();
  s->load_drain();
  return s;
}

Sched::Sched(asio::io_context& io, Handle& h, SchedConfig cfg, ResourcePool pool)
    : io_(io),
      h_(h),
      clock_(h.clock()),
      cfg_(std::move(cfg)),
      policy_(cfg_.policy == "easy"        ? Policy::kEasy
              : cfg_.policy == "easy-sjbf" ? Policy::kEasySjbf
                                           : Policy::kFcfs),
      pool_(std::move(pool)),
      retry_timer_(clock_.make_timer()) {}

Sched::~Sched() { h_.remove_methods("sched"); }

void Sched::install() {
  auto method = [this](const char* topic, Access access, void (Sched::*fn)(const Message&)) {
    h_.add_method(topic, access, [this, fn](const Message& m) { (this->*fn)(m); });
  };
  // These read their payloads with payload_json only: the job manager's
  // requests arrive parsed, without text.
  auto json_method = [this](const char* topic, Access access, void (Sched::*fn)(const Message&)) {
    h_.add_json_method(topic, access, [this, fn](const Message& m) { (this->*fn)(m); });
  };
  json_method("sched.alloc", Access::kOwner, &Sched::alloc);
  json_method("sched.feasibility", Access::kUser, &Sched::feasibility);
  method("sched.cancel", Access::kOwner, &Sched::cancel);
  method("sched.prioritize", Access::kOwner, &Sched::prioritize);
  json_method("sched.free", Access::kOwner, &Sched::free);
  method("sched.resource-status", Access::kUser, &Sched::resource_status);
  method("sched.drain", Access::kOwner, &Sched::drain);
  method("sched.undrain", Access::kOwner, &Sched::undrain);
  method("sched.disconnect", Access::kUser, &Sched::disconnect);
  // Subscribed before broker.status is asked, so that no change is missed.
  auto alive = std::weak_ptr<int>(alive_);
  h_.subscribe("broker.lost", [this, alive](const Message& ev) {
    if (!alive.expired()) rank_event(ev, false);
  });
  h_.subscribe("broker.online", [this, alive](const Message& ev) {
    if (!alive.expired()) rank_event(ev, true);
  });
}

// --- startup ---

void Sched::retry_startup(const std::string& why) {
  spdlog::warn("sched: {}; trying again in {}s", why, kRetrySeconds);
  // Allocations learnt from a hello that did not finish are learnt again.
  std::vector<uint64_t> ids;
  for (const auto& [id, r] : pool_.allocations()) ids.push_back(id);
  for (uint64_t id : ids) (void)pool_.free_all(id);
  restored_partly_.clear();
  retry_timer_->arm(kRetrySeconds, [this] { hello(); });
}

void Sched::load_object(const char* key, const std::function<void(const Json&)>& use,
                        const std::function<void()>& next) {
  auto alive = std::weak_ptr<int>(alive_);
  h_.rpc("kvs.lookup", Json{{"key", key}}, {}, [this, alive, key, use, next](const Message& r) {
    if (alive.expired()) return;
    if (r.errnum && r.errnum != ENOENT) {
      spdlog::warn("sched: cannot read {}: {}; trying again in {}s", key, error_text(r), kRetrySeconds);
      retry_timer_->arm(kRetrySeconds, [this, key, use, next] { load_object(key, use, next); });
      return;
    }
    if (!r.errnum) {
      auto p = parse_json(r.payload);
      Result<Json> value = p.ok() && p->is_object() && p->contains("value") && (*p)["value"].is_string()
                               ? parse_json((*p)["value"].get<std::string>())
                               : Result<Json>(Error{EINVAL, "not a value"});
      if (!value.ok() || !value->is_object()) {
        spdlog::error("sched: ignoring {}: it is not a JSON object", key);
      } else {
        use(*value);
      }
    }
    next();
  });
}

void Sched::load_drain() {
  load_object(
      kDrainKey,
      [this](const Json& drains) {
        for (const auto& [key, v] : drains.items()) {
          auto ranks = IdSet::parse(key);
          auto reason = v.is_object() ? get_string(v, "reason", "") : Result<std::string>(invalid("not an object"));
          auto ts = v.is_object() ? get_number(v, "timestamp", 0) : Result<double>(invalid("not an object"));
          if (!ranks.ok() || !reason.ok() || !ts.ok()) {
            spdlog::error("sched: ignoring the malformed entry \"{}\" of {}", key, kDrainKey);
            continue;
          }
          for (uint32_t rank : ranks->to_vector()) {
            if (rank >= pool_.size()) {
              spdlog::warn("sched: rank {} is drained in {} but not in this instance", rank, kDrainKey);
              continue;
            }
            pool_.drain(rank, DrainInfo{*reason, *ts});
          }
        }
      },
      [this] { load_inventory(); });
}

void Sched::load_inventory() {
  if (!pool_.any_unknown()) return query_ranks();
  load_object(
      kInventoryKey,
      [this](const Json& saved) {
        // What each host reported before this restart, until it reports
        // again: enough to restore its jobs and judge new ones.
        for (const auto& [key, v] : saved.items()) {
          auto rank = IdSet::parse(key);
          auto inv = v.is_object() ? inventory_of(v) : Result<RankInventory>(invalid("not an object"));
          if (!rank.ok() || rank->count() != 1 || !inv.ok()) {
            spdlog::error("sched: ignoring the malformed entry \"{}\" of {}", key, kInventoryKey);
            continue;
          }
          uint32_t r = rank->to_vector().front();
          if (r >= pool_.size() || pool_.inventory(r).known) continue;
          // Saved for the host that had this rank then (bootstrap.hosts
          // may have changed since).
          if (!v.contains("host") || v["host"] != pool_.inventory(r).hostname) continue;
          (void)pool_.set_inventory(r, *inv);
        }
      },
      [this] { query_ranks(); });
}

void Sched::query_ranks() {
  auto alive = std::weak_ptr<int>(alive_);
  h_.rpc("broker.status", "{}", {}, [this, alive](const Message& r) {
    if (alive.expired()) return;
    auto p = r.errnum ? Result<Json>(Error{r.errnum, error_text(r)}) : parse_json(r.payload);
    if (p.ok() && p->is_object() && p->contains("ranks") && (*p)["ranks"].is_array()) {
      for (const Json& e : (*p)["ranks"]) {
        if (!e.is_object() || !e.contains("rank") || !e["rank"].is_number_unsigned()) continue;
        if (!e.contains("state") || !e["state"].is_string()) continue;
        uint64_t rank = e["rank"].get<uint64_t>();
        if (rank >= pool_.size()) continue;
        pool_.set_up(static_cast<uint32_t>(rank), e["state"] == "online");
        if (e.contains("cores")) report(static_cast<uint32_t>(rank), e);
      }
    } else {
      spdlog::warn("sched: cannot learn which ranks are up ({}); assuming all are",
                   p.ok() ? "malformed broker.status" : p.error().text);
    }
    hello();
  });
}

void Sched::hello() {
  auto alive = std::weak_ptr<int>(alive_);
  RpcOptions opts;
  opts.streaming = true;
  h_.rpc("job-manager.sched-hello", "{}", opts, [this, alive](const Message& r) {
    if (alive.expired()) return;
    if (r.errnum == ENODATA) return sched_ready();
    if (r.errnum) return retry_startup("job-manager.sched-hello failed: " + error_text(r));
    auto p = payload_object(r);
    auto id = p.ok() ? get_uint(*p, "id") : Result<uint64_t>(p.error());
    auto R = id.ok() ? get_R(*p, "R") : Result<ResourceSet>(id.error());
    auto freed_text = R.ok() ? get_string(*p, "free", "") : Result<std::string>(R.error());
    auto freed = freed_text.ok() ? IdSet::parse(*freed_text) : Result<IdSet>(freed_text.error());
    if (!freed.ok()) {
      spdlog::error("sched: ignoring a malformed sched-hello response: {}", freed.error().text);
      return;
    }
    ResourceSet held = R->subset(R->rank_set().subtract(*freed));
    if (held.empty()) return;
    if (pool_.allocations().count(*id)) {
      spdlog::error("sched: job {} appears twice in the hello; keeping what it already holds", encode_f58(JobId{*id}));
      return;
    }
    std::string lost = pool_.restore(*id, held);
    if (lost.empty()) return;
    restored_partly_.insert(*id);
    std::string note = "its resources cannot all be allocated again after the restart: " + lost;
    spdlog::error("sched: job {}: {}", encode_f58(JobId{*id}), note);
    Json ex{{"id", *id}, {"severity", 0}, {"type", "scheduler-restart"}, {"note", note}};
    h_.rpc("job-manager.raise", ex, {}, [id = *id](const Message& rr) {
      if (rr.errnum)
        spdlog::warn("sched: cannot raise an exception on job {}: {}", encode_f58(JobId{id}), error_text(rr));
    });
  });
}

void Sched::sched_ready() {
  auto alive = std::weak_ptr<int>(alive_);
  h_.rpc("job-manager.sched-ready", Json{{"mode", "unlimited"}}, {}, [this, alive](const Message& r) {
    if (alive.expired()) return;
    if (r.errnum) return retry_startup("job-manager.sched-ready failed: " + error_text(r));
    ready_ = true;
    spdlog::info("sched: ready, {} jobs hold resources", pool_.allocations().size());
    auto early = std::move(early_reports_);
    early_reports_.clear();
    for (const auto& [rank, inv] : early) apply_report(rank, inv);
    request_pass();
  });
}

// --- the job manager's requests ---

void Sched::alloc(const Message& req) {
  if (const auto* a = typed_payload<sched_protocol::AllocRequest>(req)) {
    // From a job manager of this process, which may have decoded the
    // jobspec already.
    if (!a->jobspec && !a->decoded) return h_.respond_error(req, EPROTO, "missing \"jobspec\"");
    return alloc(req, a->id, a->priority, a->t_submit, a->decoded.get(), a->jobspec.get());
  }
  auto payload = payload_json(req);
  if (!payload.ok()) return h_.respond_error(req, payload.error());
  const Json* p = payload->get();
  auto id = get_uint(*p, "id");
  if (!id.ok()) return h_.respond_error(req, id.error());
  auto priority = get_int(*p, "priority", INT64_MIN, INT64_MAX);
  if (!priority.ok()) return h_.respond_error(req, priority.error());
  auto t_submit = get_number(*p, "t_submit", 0);
  if (!t_submit.ok()) return h_.respond_error(req, t_submit.error());
  if (p->contains("userid") && !(*p)["userid"].is_number_unsigned()) {
    return h_.respond_error(req, EPROTO, "\"userid\" must be a non-negative integer");
  }
  if (!p->contains("jobspec")) return h_.respond_error(req, EPROTO, "missing \"jobspec\"");
  alloc(req, *id, *priority, *t_submit, nullptr, &(*p)["jobspec"]);
}

void Sched::alloc(const Message& req, uint64_t id, int64_t priority, double t_submit, const Jobspec* decoded,
                  const Json* jobspec) {
  if (pending_.count(id)) return h_.respond_error(req, EINVAL, "job " + std::to_string(id) + " is already pending");
  if (pool_.allocations().count(id)) {
    return h_.respond_error(req, EINVAL, "job " + std::to_string(id) + " already holds resources");
  }
  // A jobspec that cannot be read or never fits is this job's problem, not
  // the protocol's: deny it.
  auto js = decoded ? Result<Jobspec>(*decoded) : to_jobspec(*jobspec);
  if (!js.ok()) return h_.respond(req, Json{{"id", id}, {"type", kDeny}, {"note", "jobspec: " + js.error().text}});
  if (auto st = pool_.feasible(*js); !st) {
    return h_.respond(req, Json{{"id", id}, {"type", kDeny}, {"note", st.error().text}});
  }
  // A pending job keeps what answering and matching need, not the request's
  // text or the jobspec's tree: thousands may wait.
  Message kept = head_of(req);
  QueueKey key{priority, t_submit, id};
  PendingJob& job = pending_.emplace(id, PendingJob{std::move(kept), key, std::move(*js), Json(), ""}).first->second;
  queue_.emplace(key, &job);
  if (policy_ == Policy::kEasySjbf) shortest_.emplace(shortest_key(key, job.jobspec), &job);
  request_pass();
}

void Sched::cancel(const Message& req) {
  auto p = payload_object(req);
  auto id = p.ok() ? get_uint(*p, "id") : Result<uint64_t>(p.error());
  if (!id.ok()) {
    spdlog::warn("sched: bad sched.cancel: {}", id.error().text);
    return h_.respond_error(req, id.error());
  }
  auto it = pending_.find(*id);
  if (it == pending_.end()) return;  // not pending (any more): nothing to do
  h_.respond(it->second.req, Json{{"id", *id}, {"type", kCancel}});
  remove_pending(*id);
  request_pass();
}

void Sched::prioritize(const Message& req) {
  auto p = payload_object(req);
  if (!p.ok()) return h_.respond_error(req, p.error());
  auto jobs = p->find("jobs");
  if (jobs == p->end() || !jobs->is_array()) {
    spdlog::warn("sched: bad sched.prioritize: it needs a \"jobs\" list");
    return h_.respond_error(req, EPROTO, "\"jobs\" must be a list of [id, priority] pairs");
  }
  for (const Json& e : *jobs) {
    if (!e.is_array() || e.size() != 2 || !e[0].is_number_unsigned() || !e[1].is_number_integer() ||
        (e[1].is_number_unsigned() && e[1].get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))) {
      spdlog::warn("sched: bad sched.prioritize: each job must be [id, priority]");
      return h_.respond_error(req, EPROTO, "\"jobs\" must be a list of [id, priority] pairs");
    }
  }
  for (const Json& e : *jobs) {
    auto it = pending_.find(e[0].get<uint64_t>());
    if (it == pending_.end()) continue;
    queue_.erase(it->second.key);
    if (policy_ == Policy::kEasySjbf) shortest_.erase(shortest_key(it->second.key, it->second.jobspec));
    it->second.key.priority = e[1].get<int64_t>();
    queue_.emplace(it->second.key, &it->second);
    if (policy_ == Policy::kEasySjbf) shortest_.emplace(shortest_key(it->second.key, it->second.jobspec), &it->second);
  }
  h_.respond(req, Json::object());  // only if a response was asked for
  request_pass();
}

void Sched::free(const Message& req) {
  if (const auto* f = typed_payload<sched_protocol::Free>(req)) return free(req, f->id, f->R, f->final);
  auto payload = payload_json(req);
  Result<uint64_t> id = payload.ok() ? get_uint(**payload, "id") : Result<uint64_t>(payload.error());
  auto R = id.ok() ? get_R(**payload, "R") : Result<ResourceSet>(id.error());
  auto final = R.ok() ? get_bool(**payload, "final", false) : Result<bool>(R.error());
  if (!final.ok()) return refuse_free(req, final.error());
  free(req, *id, *R, *final);
}

void Sched::refuse_free(const Message& req, const Error& e) {
  spdlog::warn("sched: refusing sched.free: {}", e.text);
  h_.respond_error(req, e);
}

void Sched::free(const Message& req, uint64_t id, const ResourceSet& R, bool final) {
  if (final) {
    // The last free of a job: whatever it still holds goes back, and ranks
    // it names but no longer holds are only worth a warning. Nothing of
    // another job is touched: allocations are kept per job.
    auto held = pool_.allocations().find(id);
    const IdSet held_ranks = held != pool_.allocations().end() ? held->second.rank_set() : IdSet();
    const IdSet named = R.rank_set();
    const bool same = named == held_ranks;  // (mostly)
    const IdSet gone = same ? IdSet() : named.subtract(held_ranks);
    const IdSet extra = same ? IdSet() : held_ranks.subtract(named);
    if (!gone.empty())
      spdlog::warn("sched: job {} no longer held ranks {} named in its final free", encode_f58(JobId{id}),
                   gone.encode());
    if (!extra.empty())
      spdlog::warn("sched: the final free of job {} left ranks {}; freeing them too", encode_f58(JobId{id}),
                   extra.encode());
    (void)pool_.free_all(id);
    restored_partly_.erase(id);
  } else if (restored_partly_.count(id)) {
    // Some of its ranks were never held again: free the ones that were.
    auto held = pool_.allocations().find(id);
    if (held != pool_.allocations().end()) {
      (void)pool_.free(id, held->second.subset(R.rank_set().intersect(held->second.rank_set())));
    }
  } else if (!R.empty()) {
    if (auto st = pool_.free(id, R); !st) return refuse_free(req, st.error());
  }
  h_.respond(req, json_object("id", id));
  request_pass();
}

void Sched::feasibility(const Message& req) {
  if (const auto* f = typed_payload<sched_protocol::Feasibility>(req)) {
    // From a job manager of this process: decoded as it submitted them.
    for (size_t i = 0; i < f->jobspecs.size(); ++i) {
      if (Status st = pool_.feasible(*f->jobspecs[i].decoded); !st) return refuse_infeasible(req, i, st.error());
    }
    return h_.respond(req, Json::object());
  }
  auto payload = payload_json(req);
  if (!payload.ok()) return h_.respond_error(req, payload.error());
  const Json* p = payload->get();
  auto specs = p->find("jobspecs");
  if (specs == p->end() || !specs->is_array()) return h_.respond_error(req, EPROTO, "\"jobspecs\" must be a list");
  for (size_t i = 0; i < specs->size(); ++i) {
    auto js = to_jobspec((*specs)[i]);
    Status st = js.ok() ? pool_.feasible(*js) : Status(js.error());
    if (!st) return refuse_infeasible(req, i, st.error());
  }
  h_.respond(req, Json::object());
}

void Sched::refuse_infeasible(const Message& req, size_t i, const Error& e) {
  h_.respond_error(req, EINVAL, "jobspec " + std::to_string(i) + ": " + e.text);
}

void Sched::disconnect(const Message& req) {
  // A client that sent allocs went away: nobody will read their answers.
  std::vector<uint64_t> gone;
  for (const auto& [id, job] : pending_) {
    if (job.req.sender() == req.sender()) gone.push_back(id);
  }
  for (uint64_t id : gone) remove_pending(id);
  if (!gone.empty()) request_pass();
}

// --- resource commands ---

// The hosts of `ranks`, each once, in rank order, as a hostlist
// ("node[0-3]"; one name for a test instance's ranks on one machine).
std::string Sched::nodelist(const IdSet& ranks) const {
  Hostlist hosts;
  std::set<std::string> seen;
  for (uint32_t rank : ranks.to_vector()) {
    const std::string& host = pool_.inventory(rank).hostname;
    if (!host.empty() && seen.insert(host).second) (void)hosts.append(host);
  }
  return hosts.encode();
}

void Sched::resource_status(const Message& req) {
  // Ranks drained with the same reason at the same time are listed together.
  std::map<std::pair<std::string, double>, IdSet> groups;
  for (const auto& [rank, info] : pool_.drained()) groups[{info.reason, info.timestamp}].insert(rank);
  Json drain = Json::array();
  for (const auto& [what, ranks] : groups) {
    drain.push_back(Json{{"ranks", ranks.encode()}, {"reason", what.first}, {"timestamp", what.second}});
  }
  auto count = [this](const ResourceCount& c) {
    Json j = c.to_json();
    j["nodelist"] = nodelist(c.ranks);
    return j;
  };
  // Each rank once, in one state (docs/protocols/jobs.md): down, drained
  // (nothing allocated) or draining, allocated (some of it), or free.
  std::vector<uint64_t> used_cores(pool_.size()), used_gpus(pool_.size());
  for (const auto& [id, set] : pool_.allocations()) {
    for (const auto& [rank, rr] : set.ranks()) {
      if (rank >= pool_.size()) continue;
      used_cores[rank] += rr.cores.count();
      used_gpus[rank] += rr.gpus.count();
    }
  }
  Json ranks = Json::array();
  for (uint32_t r = 0; r < pool_.size(); ++r) {
    const RankInventory& inv = pool_.inventory(r);
    auto drained = pool_.drained().find(r);
    bool busy = used_cores[r] + used_gpus[r] > 0;
    const char* state = !pool_.is_up(r)                    ? "down"
                        : drained != pool_.drained().end() ? (busy ? "draining" : "drained")
                        : busy                             ? "allocated"
                                                           : "free";
    Json one{{"rank", r},          {"host", inv.hostname},        {"state", state},           {"ncores", inv.ncores},
             {"ngpus", inv.ngpus}, {"used_cores", used_cores[r]}, {"used_gpus", used_gpus[r]}};
    if (drained != pool_.drained().end()) {
      one["reason"] = drained->second.reason;
      one["timestamp"] = drained->second.timestamp;
    }
    ranks.push_back(std::move(one));
  }
  h_.respond(req, Json{{"all", count(pool_.count_all())},
                       {"free", count(pool_.count_free())},
                       {"allocated", count(pool_.count_allocated())},
                       {"down", count(pool_.count_down())},
                       {"drained", count(pool_.count_drained())},
                       {"drain", drain},
                       {"ranks", ranks},
                       {"policy", cfg_.policy},
                       {"alarms", pool_.alarms()}});
}

void Sched::drain(const Message& req) {
  auto p = payload_object(req);
  if (!p.ok()) return h_.respond_error(req, p.error());
  auto ranks = get_ranks(*p, pool_.size());
  if (!ranks.ok()) return h_.respond_error(req, ranks.error());
  auto reason = get_string(*p, "reason", "");
  if (!reason.ok()) return h_.respond_error(req, reason.error());
  double now = clock_.wall();
  for (uint32_t rank : ranks->to_vector()) {
    // Draining again changes the reason, not when the rank was drained.
    auto it = pool_.drained().find(rank);
    pool_.drain(rank, DrainInfo{*reason, it != pool_.drained().end() ? it->second.timestamp : now});
  }
  spdlog::info("sched: drained ranks {}{}", ranks->encode(), reason->empty() ? "" : ": " + *reason);
  save_drain(req);
}

void Sched::undrain(const Message& req) {
  auto p = payload_object(req);
  if (!p.ok()) return h_.respond_error(req, p.error());
  auto ranks = get_ranks(*p, pool_.size());
  if (!ranks.ok()) return h_.respond_error(req, ranks.error());
  IdSet not_drained;
  for (uint32_t rank : ranks->to_vector()) {
    if (!pool_.is_drained(rank)) not_drained.insert(rank);
  }
  if (!not_drained.empty()) return h_.respond_error(req, EINVAL, ranks_are(not_drained) + " not drained");
  for (uint32_t rank : ranks->to_vector()) pool_.undrain(rank);
  spdlog::info("sched: undrained ranks {}", ranks->encode());
  save_drain(req);
  request_pass();
}

void Sched::save_drain(const Message& req) {
  Json drains = Json::object();
  for (const auto& [rank, info] : pool_.drained()) {
    drains[std::to_string(rank)] = Json{{"reason", info.reason}, {"timestamp", info.timestamp}};
  }
  Json commit{{"ops", Json::array({Json{{"op", "put"}, {"key", kDrainKey}, {"value", dump_json(drains)}}})}};
  auto alive = std::weak_ptr<int>(alive_);
  h_.rpc("kvs.commit", commit, {}, [this, alive, req](const Message& r) {
    if (alive.expired()) return;
    if (r.errnum) {
      spdlog::error("sched: cannot save {}: {}", kDrainKey, error_text(r));
      return h_.respond_error(req, r.errnum, std::string("cannot save ") + kDrainKey + ": " + error_text(r));
    }
    h_.respond(req, Json::object());
  });
}

void Sched::rank_event(const Message& ev, bool up) {
  auto p = parse_json(ev.payload);
  if (!p.ok() || !p->is_object() || !p->contains("rank") || !(*p)["rank"].is_number_unsigned()) {
    spdlog::warn("sched: ignoring a malformed {} event", ev.topic);
    return;
  }
  uint64_t rank = (*p)["rank"].get<uint64_t>();
  if (rank >= pool_.size()) return;
  if (up && p->contains("cores")) {
    report(static_cast<uint32_t>(rank), *p);
  } else if (up && !pool_.inventory(static_cast<uint32_t>(rank)).known) {
    spdlog::warn(
        "sched: rank {} is online but has not said what its host has (a loomd older than rank 0's?); it "
        "gets no jobs until it does",
        rank);
  }
  bool was_up = pool_.is_up(static_cast<uint32_t>(rank));
  pool_.set_up(static_cast<uint32_t>(rank), up);
  if (was_up == up) return;
  if (up) {
    spdlog::info("sched: rank {} is up", rank);
    request_pass();
  } else {
    spdlog::warn("sched: rank {} is down ({}); it gets no new jobs", rank, p->value("reason", "no reason given"));
  }
}

Result<RankInventory> Sched::inventory_of(const Json& j) {
  auto cores = get_uint(j, "cores");
  if (!cores.ok()) return cores.error();
  auto gpus = j.contains("gpus") ? get_uint(j, "gpus") : Result<uint64_t>(uint64_t{0});
  if (!gpus.ok()) return gpus.error();
  if (*cores == 0 || *cores > kMaxCores || *gpus > kMaxGpus) {
    return invalid("cores must be 1 to " + std::to_string(kMaxCores) + " and gpus 0 to " + std::to_string(kMaxGpus));
  }
  RankInventory inv;
  inv.ncores = static_cast<uint32_t>(*cores);
  inv.ngpus = static_cast<uint32_t>(*gpus);
  return inv;
}

void Sched::report(uint32_t rank, const Json& j) {
  auto inv = inventory_of(j);
  if (!inv.ok()) {
    spdlog::warn("sched: ignoring what rank {} reports it has: {}", rank, inv.error().text);
    return;
  }
  // Before the hello has put running jobs back on the books, a report
  // would make restore() judge them by what the host has now rather than
  // by what they were given: it waits for sched_ready().
  if (!ready_) {
    early_reports_[rank] = *inv;
    return;
  }
  apply_report(rank, *inv);
}

void Sched::apply_report(uint32_t rank, const RankInventory& inv) {
  const RankInventory& now = pool_.inventory(rank);
  if (now.known && now.ncores == inv.ncores && now.ngpus == inv.ngpus) return;
  std::string beyond = pool_.set_inventory(rank, inv);
  const std::string& host = pool_.inventory(rank).hostname;
  if (beyond.empty()) {
    spdlog::info("sched: rank {} ({}) has {} cores and {} gpus", rank, host, inv.ncores, inv.ngpus);
  } else {
    spdlog::warn("sched: rank {} ({}) now has {} cores and {} gpus, but {}: those are not given out again", rank, host,
                 inv.ncores, inv.ngpus, beyond);
  }
  request_save_inventory();
  recheck_pending();
  request_pass();
}

void Sched::save_inventory() {
  Json saved = Json::object();
  for (uint32_t r = 0; r < pool_.size(); ++r) {
    const RankInventory& inv = pool_.inventory(r);
    if (inv.known) saved[std::to_string(r)] = Json{{"host", inv.hostname}, {"cores", inv.ncores}, {"gpus", inv.ngpus}};
  }
  Json commit{{"ops", Json::array({Json{{"op", "put"}, {"key", kInventoryKey}, {"value", dump_json(saved)}}})}};
  h_.rpc("kvs.commit", commit, {}, [](const Message& r) {
    if (r.errnum) spdlog::error("sched: cannot save {}: {}", kInventoryKey, error_text(r));
  });
}

void Sched::recheck_feasible() {
  for (auto& [id, job] : pending_) {
    auto st = pool_.feasible(job.jobspec);
    std::string never = st ? std::string() : st.error().text;
    if (never == job.never) continue;
    job.never = never;
    if (!never.empty()) {
      spdlog::info("sched: job {} fits no host now: {}; it waits", encode_f58(JobId{id}), never);
      // Not the holder of the EASY reservation any more.
      if (estimate_holder_ == id) estimate_holder_.reset();
      annotate(job, Json{{"reason_pending", never}});
    } else {
      annotate(job, Json::object());  // the next pass says why it waits, if it does
    }
  }
  request_pass();
}

// --- scheduling ---

void Sched::pass() {
  if (!ready_) return;
  const double now = clock_.wall();
  // Jobs in queue order start while they fit; the first that does not is
  // the head. start() erases only the job it starts from the queue, so the
  // walk keeps the next position before looking at a job.
  PendingJob* head = nullptr;
  for (auto qit = queue_.begin(); qit != queue_.end();) {
    const QueueKey key = qit->first;
    PendingJob& job = *qit++->second;
    // Fits no host as they are now: it neither starts nor holds others up.
    if (!job.never.empty()) continue;
    if (auto fit = pool_.match(job.jobspec)) {
      fit->starttime = now;
      fit->expiration = job.jobspec.duration > 0 ? now + job.jobspec.duration : 0;
      start(key.id, std::move(*fit));
      continue;
    }
    head = &job;
    break;
  }
  if (!head) return;
  if (policy_ == Policy::kFcfs) {
    annotate(*head, json_object("reason_pending", kInsufficient));
    return;
  }
  const QueueKey head_key = head->key;
  auto reservation = pool_.reserve(head->jobspec, now);
  Json a{{"reason_pending", kInsufficient}};
  if (reservation) a["t_estimate"] = reservation->time;
  annotate(*head, std::move(a));
  // A job that held the reservation before loses its estimate.
  if (estimate_holder_ && *estimate_holder_ != head_key.id) {
    auto old = pending_.find(*estimate_holder_);
    if (old != pending_.end()) annotate(old->second, json_object("reason_pending", kInsufficient));
  }
  estimate_holder_ = reservation ? std::optional<uint64_t>(head_key.id) : std::nullopt;
  if (reservation) {
    if (policy_ == Policy::kEasySjbf) {
      backfill(shortest_, head_key, *reservation, now, [](const ShortestKey& k) { return k.key; });
    } else {
      backfill(queue_, head_key, *reservation, now, [](const QueueKey& k) { return k; });
    }
  }
}

template <typename Order, typename KeyOf>
void Sched::backfill(const Order& order, const QueueKey& head, Reservation& res, double now, KeyOf key_of) {
  const uint64_t depth = static_cast<uint64_t>(cfg_.backfill_depth);
  uint64_t tried = 0;
  // In queue order the candidates are the jobs after the head; shortest
  // first they are every job but those (the head, and ahead of it only jobs
  // that fit no host: the others have started).
  for (auto it = order.begin(); it != order.end();) {
    const QueueKey key = key_of(it->first);
    const PendingJob& job = *it++->second;
    if (!(head < key)) continue;
    if (pool_.free_cores() == 0) break;
    if (!job.never.empty()) continue;
    // Only the first `depth` candidates, so that a pass stays cheap however
    // long the queue is (0: no cap).
    if (depth > 0 && ++tried > depth) break;
    if (auto fit = pool_.backfill(job.jobspec, res, now)) {
      if (start(key.id, std::move(*fit))) pool_.backfilled(res, pool_.allocations().at(key.id));
    }
  }
}

bool Sched::start(uint64_t id, ResourceSet r) {
  auto it = pending_.find(id);
  LOOM_ASSERT(it != pending_.end());
  Message req = std::move(it->second.req);  // the job leaves the queue
  remove_pending(id);
  if (auto st = pool_.allocate(id, r); !st) {
    // match() only offers free resources: this is a bug in the pool.
    spdlog::error("sched: {}", st.error().text);
    h_.respond(req, Json{{"id", id}, {"type", kDeny}, {"note", "internal scheduler error: " + st.error().text}});
    return false;
  }
  // Answered at once: the job manager stores R with the job's alloc event,
  // in one commit (docs/protocols/jobs.md).
  h_.respond_typed(req, sched_protocol::AllocGranted{id, std::move(r)});
  return true;
}

void Sched::annotate(PendingJob& job, Json sched) {
  if (job.annotation == sched) return;
  // Keys sent before and not wanted now are removed with null.
  Json update = sched;
  if (job.annotation.is_object()) {
    for (auto& [k, v] : job.annotation.items()) {
      if (!update.contains(k)) update[k] = nullptr;
    }
  }
  h_.respond(job.req,
             json_object("id", job.key.id, "type", kAnnotate, "annotations", json_object("sched", std::move(update))));
  job.annotation = std::move(sched);
}

void Sched::remove_pending(uint64_t id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  if (estimate_holder_ == id) estimate_holder_.reset();
  queue_.erase(it->second.key);
  if (policy_ == Policy::kEasySjbf) shortest_.erase(shortest_key(it->second.key, it->second.jobspec));
  pending_.erase(it);
}

}  // namespace loom
