#include "sim/sim_exec.h"

#include <algorithm>
#include <csignal>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "exec_protocol/exec_protocol.h"
#include "idset/idset.h"
#include "msg/payload.h"
#include "rset/rset.h"

namespace loom::sim {

using exec_protocol::ExceptionType;
using exec_protocol::Finished;
using exec_protocol::Raised;
using exec_protocol::Released;
using exec_protocol::Severity;
using exec_protocol::Started;

struct SimExec::Run {
  Message req;
  ExecRecord* record = nullptr;  // in records_, which keeps its elements where they are (a deque)
  IdSet ranks;                   // released one by one after their epilogs (kept only with epilogs)
  int status = 0;
  std::unique_ptr<Timer> timer;
};

SimExec::SimExec(Handle& h, std::string name, uint32_t cores_per_node, double epilog)
    : h_(h), name_(std::move(name)), cores_per_node_(cores_per_node), epilog_(epilog) {
  // Reads its payload with payload_json only: the job manager's starts
  // come parsed.
  h_.add_json_method(name_ + ".start", Access::kOwner, [this](const Message& m) { start(m); });
  // A fatal exception (a cancel) ends a running job's tasks at once, as
  // SIGTERM would.
  h_.subscribe("job-exception", [this, alive = std::weak_ptr<int>(alive_)](const Message& ev) {
    if (alive.expired()) return;
    auto p = payload_json(ev);  // parsed by the job manager of this process
    auto id = p.ok() ? exec_protocol::fatal_exception_job(**p) : std::nullopt;
    if (!id) return;
    auto it = runs_.find(*id);
    if (it == runs_.end() || it->second->record->end >= 0) return;  // not running (or in its epilog)
    it->second->status = SIGTERM;
    finish(*id);
  });
}

SimExec::~SimExec() { h_.remove_methods(name_); }

void SimExec::hello(std::function<void(const std::string&)> done) {
  h_.rpc("job-manager.exec-hello", Json{{"service", name_}}, {},
         [done = std::move(done)](const Message& r) { done(r.errnum ? error_text(r) : std::string()); });
}

namespace {
// A start without a jobspec reads as one that asks for nothing.
const Json& no_jobspec() {
  static const Json none = Json::object();
  return none;
}

// The number at `path` in `doc`, 0 when absent or not a positive number.
double seconds_at(const Json& doc, std::initializer_list<const char*> path) {
  const Json* j = &doc;
  for (const char* k : path) {
    if (!j->is_object()) return 0;
    auto it = j->find(k);
    if (it == j->end()) return 0;
    j = &*it;
  }
  return j->is_number() && j->get<double>() > 0 ? j->get<double>() : 0;
}
}  // namespace

void SimExec::start(const Message& m) {
  // From the job manager of this process: the start as it built it.
  if (const auto* s = typed_payload<exec_protocol::Start>(m)) {
    return start(m, s->head, &s->R, "", s->jobspec ? *s->jobspec : no_jobspec());
  }
  auto payload = payload_json(m);
  const Json* p = payload.ok() ? payload->get() : nullptr;
  auto head = p ? exec_protocol::parse_start_request(*p) : Result<exec_protocol::StartRequest>(payload.error());
  if (!head.ok()) return h_.respond_error(m, head.error());
  auto R = p->contains("R") ? ResourceSet::parse((*p)["R"]) : Result<ResourceSet>(Error{EPROTO, "missing \"R\""});
  const Json& spec = p->contains("jobspec") ? (*p)["jobspec"] : no_jobspec();
  start(m, *head, R.ok() ? &*R : nullptr, R.ok() ? "" : R.error().text, spec);
}

void SimExec::start(const Message& m, const exec_protocol::StartRequest& head, const ResourceSet* R,
                    const std::string& R_error, const Json& spec) {
  uint64_t id = head.id;
  Message req = head_of(m);
  auto respond = [this, &req, id](const exec_protocol::Response& r) {
    h_.respond_typed(req, exec_protocol::JobResponse{id, r});
  };
  // (A second start of a running job is refused as job-exec refuses it.)
  if (runs_.count(id)) return h_.respond_error(m, EEXIST, "job " + std::to_string(id) + " is already running");
  if (!R || head.reattach) {
    // Nothing of a simulation outlives it, and R is the scheduler's own.
    respond(Raised(Severity::kFatal, ExceptionType::kExec,
                   R ? "the simulated execution service cannot reattach" : "R: " + R_error));
    respond(Released::everything(true));
    return;
  }
  ExecRecord& rec = records_.emplace_back();
  rec.id = id;
  auto& r = runs_[id];
  r = std::make_unique<Run>();
  r->req = req;
  r->record = &rec;
  if (epilog_ > 0) r->ranks = R->rank_set();
  r->timer = h_.clock().make_timer();
  rec.start = h_.clock().now();
  // Node n's core c is machine core n * cores_per_node + c, added range by
  // range of cores (a job of CEA-Curie's holds thousands of them).
  IdSet cores;
  for (const auto& e : R->entries()) {
    const bool whole =
        e.cores.ranges().size() == 1 && e.cores.ranges()[0] == std::pair<uint32_t, uint32_t>(0, cores_per_node_ - 1);
    for (auto [rlo, rhi] : e.ranks.ranges()) {
      if (whole) {  // whole nodes in a row: one range of machine cores
        cores.insert_range(rlo * cores_per_node_, rhi * cores_per_node_ + cores_per_node_ - 1);
        continue;
      }
      for (uint32_t rank = rlo; rank <= rhi; ++rank) {
        for (auto [clo, chi] : e.cores.ranges())
          cores.insert_range(rank * cores_per_node_ + clo, rank * cores_per_node_ + chi);
      }
    }
  }
  rec.cores = cores.encode();
  respond(Started{});
  double run = seconds_at(spec, {"attributes", "system", "exec", "test", "run_duration"});
  // Over its time limit when it runs longer than it asked (compared as
  // given: R's expiration less the clock need not give back the duration
  // exactly in floating point); stopped at R's expiration.
  double asked = seconds_at(spec, {"attributes", "system", "duration"});
  double limit = R->expiration > 0 ? std::max(0.0, R->expiration - h_.clock().wall()) : -1;
  if (asked > 0 && run > asked && limit >= 0) {
    r->timer->arm(limit, [this, id] {
      auto it = runs_.find(id);
      h_.respond_typed(it->second->req, exec_protocol::JobResponse{id, Raised(Severity::kFatal, ExceptionType::kTimeout,
                                                                              "resource allocation expired")});
      it->second->record->timeout = true;
      it->second->status = SIGALRM;
      finish(id);
    });
    return;
  }
  r->timer->arm(run, [this, id] { finish(id); });
}

void SimExec::finish(uint64_t id) {
  Run& r = *runs_.at(id);
  r.record->end = h_.clock().now();
  r.record->status = r.status;
  h_.respond_typed(r.req, exec_protocol::JobResponse{id, Finished{r.status}});
  if (epilog_ > 0) {
    r.timer->arm(epilog_, [this, id] { release(id); });
    return;
  }
  release(id);
}

// With epilogs, each rank as its epilog ends, the last one final (they all
// last as long); without, every rank at once in the final release, as
// real execution would release ranks that end together.
void SimExec::release(uint64_t id) {
  auto it = runs_.find(id);
  std::unique_ptr<Run> r = std::move(it->second);
  runs_.erase(it);
  ++ended_;
  if (epilog_ <= 0) {
    h_.respond_typed(r->req, exec_protocol::JobResponse{id, Released::everything(true)});
    return;
  }
  if (r->ranks.empty()) {
    h_.respond_typed(r->req, exec_protocol::JobResponse{id, Released::everything(true)});
    return;
  }
  const uint32_t last = *r->ranks.last();
  for (auto [lo, hi] : r->ranks.ranges()) {
    for (uint64_t rank = lo; rank <= hi; ++rank) {
      h_.respond_typed(r->req,
                       exec_protocol::JobResponse{id, Released::rank(static_cast<uint32_t>(rank), rank == last)});
    }
  }
}

}  // namespace loom::sim
