#include "sim/simulation.h"

#include <unistd.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "base/virtual_clock.h"
#include "broker/broker.h"
#include "job_exec/job_exec.h"
#include "job_manager/job_manager.h"
#include "job_manager/submit_protocol.h"
#include "jobspec/jobspec.h"
#include "kvs/kvs.h"
#include "kvs/storage.h"
#include "msg/json.h"
#include "msg/payload.h"
#include "sched/sched.h"
#include "sim/sim_exec.h"

namespace loom::sim {
namespace {

// The KVS store of a simulation that keeps nothing: the KVS holds its keys
// in memory only, and purged jobs leave it.
class NoStorage final : public Storage {
 public:
  Result<std::map<std::string, StoredNamespace>> load() override { return std::map<std::string, StoredNamespace>{}; }
  Status write(const std::vector<StoredOp>& /*ops*/) override { return {}; }
};

// The longest a simulation spans, in seconds from the trace's start: job
// ids hold 40 bits of milliseconds (about 34 years), and no timer waits
// longer than kLongestWait.
constexpr double kMaxSpan = 1e9;
// The largest simulated machine: cores are numbered in 31 bits.
constexpr int64_t kMaxCores = int64_t{1} << 31;
constexpr uint32_t kMaxNodes = 1'000'000;

// The most jobs of one instant sent in one submit.
constexpr size_t kSubmitBatch = 10000;

// The jobspecs of trace jobs: `procs` tasks of one core, the requested
// time as the duration, the run time for the simulated execution service.
// Jobs of a trace share few shapes (procs, requested time): each is built
// (and checked) once, and copied with the job's run time. The job manager
// keeps the copy as it is sent (SubmitJobs), to the job's start. A job's
// text, which the job manager stores as its jobspec, is its shape's text
// with the run time written in where it goes, not the copy written again;
// its decoding is its shape's, which the run time does not change.
class Jobspecs {
 public:
  struct Spec {
    std::shared_ptr<const Json> doc;
    std::string text;                        // dump_json(*doc)
    std::shared_ptr<const Jobspec> decoded;  // decode_jobspec(*doc), the shape's
  };
  Result<Spec> of(const trace::Job& j) {
    auto it = shapes_.find({j.procs, j.requested_time});
    if (it == shapes_.end()) {
      JobRequest r;
      r.tasks = static_cast<uint32_t>(j.procs);
      r.duration = j.requested_time;
      r.command = {"sim"};
      auto built = build_jobspec(r);
      if (!built.ok()) return built.error();
      Shape shape;
      shape.doc = std::move(*built);
      // The shape's text with a null run time, cut around the null. (The
      // document holds nothing else that could read as that member.)
      shape.doc["attributes"]["system"]["exec"] = json_object("test", json_object("run_duration", nullptr));
      const std::string whole = dump_json(shape.doc);
      constexpr std::string_view kRun = "\"run_duration\":";
      const size_t at = whole.find(std::string(kRun) + "null");
      LOOM_ASSERT(at != std::string::npos && whole.find(kRun, at + 1) == std::string::npos);
      shape.before = whole.substr(0, at + kRun.size());
      shape.after = whole.substr(at + kRun.size() + 4);
      // The decoding does not read the run time: one serves every job of
      // the shape.
      auto decoded = decode_jobspec(shape.doc);
      if (!decoded.ok()) return decoded.error();
      shape.decoded = std::make_shared<const Jobspec>(std::move(*decoded));
      it = shapes_.emplace(std::make_pair(j.procs, j.requested_time), std::move(shape)).first;
    }
    const Shape& shape = it->second;
    auto doc = std::make_shared<Json>(shape.doc);
    (*doc)["attributes"]["system"]["exec"]["test"]["run_duration"] = j.run;  // in place of the null
    Spec out{std::move(doc), {}, shape.decoded};
    out.text.reserve(shape.before.size() + 32 + shape.after.size());
    out.text += shape.before;
    append_json_number(out.text, j.run);  // as dump_json writes a number
    out.text += shape.after;
    return out;
  }

 private:
  struct Shape {
    Json doc;
    std::string before, after;  // its text, up to the run time and after it
    std::shared_ptr<const Jobspec> decoded;
  };
  std::map<std::pair<int64_t, double>, Shape> shapes_;
};
}  // namespace

uint32_t default_nodes(const trace::Workload& w, uint32_t cores_per_node) {
  int64_t procs = std::max<int64_t>(w.header.max_procs, 1);
  return static_cast<uint32_t>((procs + cores_per_node - 1) / cores_per_node);
}

Result<SimResult> simulate(const trace::Workload& w, const SimConfig& cfg) {
  auto wall_start = std::chrono::steady_clock::now();
  uint32_t nodes = cfg.nodes ? cfg.nodes : default_nodes(w, cfg.cores_per_node);
  int64_t total_cores = int64_t{nodes} * cfg.cores_per_node;
  if (nodes == 0 || nodes > kMaxNodes || total_cores > kMaxCores) {
    return Error{EINVAL, "a machine of " + std::to_string(nodes) + " nodes of " + std::to_string(cfg.cores_per_node) +
                             " cores is beyond what a simulation holds (at most " + std::to_string(kMaxNodes) +
                             " nodes, 2^31 cores): give --nodes or --cores-per-node"};
  }
  if (!(cfg.epilog >= 0 && cfg.epilog <= kMaxSpan)) {
    return Error{EINVAL, "an epilog of " + std::to_string(cfg.epilog) + " s is beyond what a simulation spans"};
  }
  for (const auto& j : w.jobs) {
    // What it runs: to its end, or to its limit if that comes first. A
    // limit far past the span is no obstacle (CEA-Curie asks 2^31-1 s, the
    // largest its field holds, for jobs that ran 0 s): only R's expiration
    // and EASY's estimate hold it, and a timer waits at most kLongestWait.
    const double ran = std::min(j.run, j.requested_time);
    if (j.submit + ran + cfg.epilog > kMaxSpan) {
      return Error{EINVAL, "job " + std::to_string(j.id) + " (line " + std::to_string(j.line) + ") would end " +
                               std::to_string(static_cast<int64_t>(j.submit + ran)) +
                               " s after the trace's start, beyond the 10^9 s a simulation spans"};
    }
  }
  if (!cfg.state_dir.empty()) {
    std::error_code ec;
    if (std::filesystem::exists(cfg.state_dir, ec) && !std::filesystem::is_empty(cfg.state_dir, ec)) {
      return Error{EEXIST, cfg.state_dir + " is not empty: a simulation starts from nothing"};
    }
  }
  // One thread does everything (docs/simulator.md): the loop needs no lock.
  asio::io_context io(ASIO_CONCURRENCY_HINT_UNSAFE);
  VirtualClock clock(static_cast<double>(w.header.unix_start_time.value_or(0)));

  BrokerConfig bcfg;
  bcfg.no_local_clients = true;            // nothing but the services talks: no socket for the loop to watch
  bcfg.heartbeat_interval = kLongestWait;  // one broker: no link to watch
  Broker broker(io, clock, bcfg);
  if (auto st = broker.start(); !st) return st.error();

  std::unique_ptr<Storage> storage;
  if (cfg.state_dir.empty()) {
    storage = std::make_unique<NoStorage>();
  } else {
    auto st = open_sqlite_storage(cfg.state_dir, Synchronous::kOff);
    if (!st.ok()) return st.error();
    storage = std::move(*st);
  }
  auto kvs = Kvs::create(io, broker.add_module({"kvs"}), std::move(storage), static_cast<uint32_t>(::getuid()));
  if (!kvs.ok()) return kvs.error();
  JobManagerConfig jm_cfg;
  jm_cfg.owner = static_cast<uint32_t>(::getuid());
  jm_cfg.inactive_num_limit = 1;  // ended jobs leave at once: memory stays flat
  auto job_manager = JobManager::create(io, broker.add_module({"job-manager", "job-info"}), jm_cfg);
  SchedConfig sched_cfg;
  sched_cfg.size = nodes;
  sched_cfg.cores_per_rank = cfg.cores_per_node;
  sched_cfg.gpus_per_rank = 0;
  sched_cfg.policy = cfg.policy;
  sched_cfg.backfill_depth = 0;  // EASY exactly: every pending job is a backfill candidate
  sched_cfg.name_ranks = false;  // the nodes are only in the scheduler's inventory: no host
  auto sched = Sched::create(io, broker.add_module({"sched"}), sched_cfg);
  if (!sched.ok()) return sched.error();
  auto job_exec = JobExec::create(broker.add_module({"job-exec"}), JobExecConfig{});
  Handle& h = broker.add_module({"sim", "sim-exec"});
  SimExec exec(h, "sim-exec", cfg.cores_per_node, cfg.epilog);

  // Everything runnable at the current instant, then what waits for
  // idleness (the scheduler's pass), until nothing is left: no handler
  // ready, no message queued (messages between services are handlers on
  // this loop), nothing deferred.
  auto drain = [&] {
    for (;;) {
      io.restart();
      if (io.poll() > 0) continue;
      if (!clock.run_idle_one()) return;
    }
  };

  std::string hello_error = "no answer";
  exec.hello([&](const std::string& e) { hello_error = e; });
  drain();
  if (!hello_error.empty()) return Error{EPROTO, "the simulated execution service: " + hello_error};

  SimResult out;
  const auto& jobs = w.jobs;
  Jobspecs jobspecs;
  std::vector<uint64_t> ids(jobs.size(), 0);
  size_t next = 0, answered = 0;
  size_t progress_mark = 0;
  for (;;) {
    size_t ended = exec.ended() + out.refused;
    if (cfg.progress && ended >= progress_mark) {
      cfg.progress(clock.now(), ended, jobs.size());
      progress_mark = ended + 4096;
    }
    if (next == jobs.size() && answered == jobs.size()) {
      if (ended == jobs.size()) break;
      // Every job is in and nothing runs: nothing will free resources for
      // those still pending, which never run.
      if (exec.running() == 0) break;
    }
    double t = std::numeric_limits<double>::infinity();
    if (next < jobs.size()) t = jobs[next].submit;
    if (auto d = clock.next_deadline()) t = std::min(t, *d);
    if (std::isinf(t)) break;
    clock.move_to(t);
    // Submissions before ends at the same instant (the published replay
    // convention): they are sent first, and the one scheduling pass of
    // the instant comes once both are handled.
    while (next < jobs.size() && jobs[next].submit <= clock.now()) {
      SubmitJobs batch;
      std::vector<size_t> which;  // the batch's jobs, by place in the trace
      while (next < jobs.size() && jobs[next].submit <= clock.now() && which.size() < kSubmitBatch) {
        // A job larger than the machine is refused alone (a submit is all
        // or nothing: the others of its instant must not go with it).
        const auto& j = jobs[next];
        auto spec = j.procs > total_cores
                        ? Result<Jobspecs::Spec>(
                              Error{EINVAL, "job " + std::to_string(j.id) + " needs " + std::to_string(j.procs) +
                                                " cores; the machine has " + std::to_string(total_cores)})
                        : jobspecs.of(j);
        if (spec.ok()) {
          batch.jobspecs.push_back(std::move(spec->doc));
          batch.texts.push_back(std::move(spec->text));
          batch.decoded.push_back(std::move(spec->decoded));
          which.push_back(next);
        } else {
          if (out.refused == 0) out.first_refusal = spec.error().text;
          ++out.refused;
          ++answered;
        }
        ++next;
      }
      if (which.empty()) continue;
      h.rpc_typed("job-manager.submit", std::move(batch), {}, [&, which](const Message& m) {
        size_t n = which.size();
        answered += n;
        // The answer as the job manager built it, not its text parsed again.
        auto p = m.errnum ? Result<std::shared_ptr<const Json>>(Error{m.errnum, error_text(m)}) : payload_json(m);
        const Json* got = p.ok() ? p->get() : nullptr;
        auto list = got ? got->find("ids") : Json::const_iterator();
        if (!got || list == got->end() || !list->is_array() || list->size() != n) {
          if (out.refused == 0) out.first_refusal = m.errnum ? p.error().text : "a malformed answer";
          out.refused += n;
          return;
        }
        for (size_t i = 0; i < n; ++i) ids[which[i]] = (*list)[i].get<uint64_t>();
      });
    }
    while (clock.fire_one()) {
    }
    drain();
  }
  if (cfg.progress) cfg.progress(clock.now(), exec.ended() + out.refused, jobs.size());

  // Each job's record, by job id (a job started again has its last).
  std::unordered_map<uint64_t, const ExecRecord*> records;
  records.reserve(exec.records().size());
  for (const auto& rec : exec.records()) records[rec.id] = &rec;
  out.jobs.reserve(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    JobResult r;
    r.id = jobs[i].id;
    r.submit = jobs[i].submit;
    r.cores = jobs[i].procs;
    r.requested_time = jobs[i].requested_time;
    auto rec = records.find(ids[i]);
    if (ids[i] && rec != records.end() && rec->second->end >= 0) {
      r.start = rec->second->start;
      r.end = rec->second->end;
      r.allocated = rec->second->cores;
      r.timeout = rec->second->timeout;
      r.status = rec->second->status;
    } else if (ids[i]) {
      ++out.never_started;
    }
    out.jobs.push_back(std::move(r));
  }
  out.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  return out;
}

}  // namespace loom::sim
