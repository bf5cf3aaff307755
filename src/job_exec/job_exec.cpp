// The job-exec service (job_exec.h): its messages, exceptions, the orderly
// stop and test execution mode, where one Run per started job has a timer
// (or an override) end it, and end() sends the rest of its stream: finish,
// then one release per rank, the last one final. Real execution is in
// shells.cpp, perilog.cpp and reattach.cpp (impl.h).
#include "job_exec/job_exec.h"

#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <asio/io_context.hpp>
#include <csignal>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/fluid.h"
#include "eventlog/eventlog.h"
#include "idset/idset.h"
#include "job_exec/impl.h"
#include "jobspec/jobspec.h"
#include "msg/payload.h"
#include "rset/rset.h"

namespace loom {

namespace {
constexpr const char* kService = "job-exec";

constexpr double kHelloRetry = 1.0;
}  // namespace

void JobExec::Impl::install() {
  h_.add_method("job-exec.start", Access::kOwner, [this](const Message& m) { start(m); });
  h_.add_method("job-exec.kill", Access::kOwner, [this](const Message& m) { kill(m); });
  h_.add_method("job-exec.override", Access::kOwner, [this](const Message& m) { override_event(m); });
  auto alive = std::weak_ptr<int>(alive_);
  h_.subscribe("job-exception", [this, alive](const Message& ev) {
    if (!alive.expired()) on_exception(ev);
  });
  h_.subscribe("job-manager.exec-teardown", [this, alive](const Message& ev) {
    if (!alive.expired()) on_teardown(ev);
  });
  h_.subscribe("broker.online", [this, alive](const Message& ev) {
    if (!alive.expired()) on_online(ev);
  });
  hello_timer_ = h_.clock().make_timer();
}

void JobExec::Impl::hello() {
  auto alive = std::weak_ptr<int>(alive_);
  h_.rpc("job-manager.exec-hello", Json{{"service", kService}}, {}, [this, alive](const Message& r) {
    if (alive.expired()) return;
    if (r.errnum == EBUSY) {
      // Another service runs jobs; its teardown event brings us back.
      spdlog::info("job-exec: not registered: {}", error_text(r));
      return;
    }
    if (r.errnum) {
      spdlog::warn("job-exec: exec-hello failed: {}; trying again in {}s", error_text(r), kHelloRetry);
      hello_timer_->arm(kHelloRetry, [this] { hello(); });
      return;
    }
  });
}

void JobExec::Impl::on_teardown(const Message& ev) {
  auto p = parse_json(ev.payload);
  std::string gone = p.ok() && p->is_object() ? p->value("service", "") : "";
  if (gone == kService) {
    // The job manager gave up on us: our streams are void (it sends the
    // jobs again after the next hello). Nothing of them may keep running.
    for (auto& [id, r] : runs_) {
      if (r.real) kill_all(r, SIGKILL);
    }
    runs_.clear();
    if (stop_done_) {
      auto done = std::move(stop_done_);
      stop_done_ = nullptr;
      done();
    }
  }
  // Whoever was registered is gone: this instance falls back to us.
  hello();
}

namespace {
// Member `k` of `j` if `j` is an object that has it, else null.
const Json* member(const Json* j, const char* k) {
  if (!j || !j->is_object()) return nullptr;
  auto it = j->find(k);
  return it == j->end() ? nullptr : &*it;
}
const Json* member(const Json& j, const char* k) { return member(&j, k); }
}  // namespace

void JobExec::Impl::start(const Message& m) {
  auto p = payload_object(m);
  auto head = p.ok() ? exec_protocol::parse_start_request(*p) : Result<exec_protocol::StartRequest>(p.error());
  if (!head.ok()) {
    spdlog::warn("job-exec: malformed start: {}", head.error().text);
    // With an id, that job alone fails: an error response would end the
    // job manager's stream, every job's.
    auto id = p.ok() ? exec_protocol::response_id(*p) : Result<uint64_t>(p.error());
    if (id.ok()) return refuse(head_of(m), *id, "start: " + head.error().text, std::nullopt);
    return h_.respond_error(m, head.error());
  }
  uint64_t jid = head->id;
  if (runs_.count(jid)) return h_.respond_error(m, EEXIST, "job " + std::to_string(jid) + " is already running");
  Message req = head_of(m);
  auto R = p->contains("R") ? ResourceSet::parse((*p)["R"]) : Result<ResourceSet>(Error{EPROTO, "missing \"R\""});
  if (!R.ok()) return refuse(req, jid, "R: " + R.error().text, std::nullopt);
  IdSet all = R->rank_set();
  if (stopping_) return refuse(req, jid, "the instance is shutting down", all);
  bool reattach = head->reattach;
  // A job ended before it started, found at a restart: what it left on its
  // ranks (a prolog or epilog) is seen to, and the ranks are released.
  bool never_started = reattach && !head->started;
  // The job manager validated the jobspec at submit: only what is read
  // here is checked again.
  const Json* spec = member(*p, "jobspec");
  if (!spec || !spec->is_object()) return refuse(req, jid, "jobspec: missing or not an object", all);
  const Json* system = member(member(*spec, "attributes"), "system");
  Result<double> asked = 0.0;
  if (const Json* d = member(system, "duration")) asked = jobspec_duration(*d);
  if (!asked.ok()) return refuse(req, jid, asked.error().text, all);
  const Json* test = member(member(system, "exec"), "test");
  if (!test) {
    Run& r = runs_[jid];
    r.req = std::move(req);
    r.id = jid;
    r.ranks = R->rank_set().to_vector();
    r.real = true;
    r.timer = h_.clock().make_timer();
    r.kill_timer = h_.clock().make_timer();
    // The time limit: SIGALRM, then SIGKILL after the kill timeout.
    if (R->expiration > 0) {
      r.timer->arm(std::max(0.0, R->expiration - h_.clock().wall()), [this, jid] {
        auto it = runs_.find(jid);
        if (it == runs_.end()) return;
        raise(it->second, ExceptionType::kTimeout, "resource allocation expired");
        kill_all(it->second, SIGALRM);
      });
    }
    r.never_started = never_started;
    if (reattach) return find_shells(r, head->userid);
    return launch(r, (*p)["jobspec"], (*p)["R"], head->userid);
  }
  // Test execution runs nothing that could have outlived a restart.
  if (never_started) return respond(req, jid, Released::everything(true));
  if (reattach) return refuse(req, jid, "the job was lost: test execution cannot be reattached", all);
  if (!test->is_object()) return refuse(req, jid, "attributes.system.exec.test must be an object", all);
  // run_duration: a duration string or a number of seconds; default the
  // time limit, else at once.
  double duration = *asked;
  bool explicit_duration = test->contains("run_duration");
  if (explicit_duration) {
    const Json& d = (*test)["run_duration"];
    Result<double> parsed = d.is_string()                           ? parse_fsd(d.get<std::string>())
                            : d.is_number() && d.get<double>() >= 0 ? Result<double>(d.get<double>())
                                                                    : Result<double>(Error{EINVAL, "not a duration"});
    if (!parsed.ok()) return refuse(req, jid, "run_duration: " + parsed.error().text, all);
    duration = *parsed;
  }
  int64_t zero = 0;
  auto status = get_int(*test, "wait_status", 0, INT32_MAX, &zero);
  if (!status.ok()) return refuse(req, jid, "wait_status: " + status.error().text, all);
  auto mock = get_string(*test, "mock_exception", "");
  if (!mock.ok() || (!mock->empty() && *mock != "init" && *mock != "run")) {
    return refuse(req, jid, "mock_exception must be \"init\" or \"run\"", all);
  }
  auto override = get_bool(*test, "override", false);
  if (!override.ok()) return refuse(req, jid, "override: " + override.error().text, all);
  if (*mock == "init") return refuse(req, jid, "mock initialization exception", all);

  Run& r = runs_[jid];
  r.req = std::move(req);
  r.id = jid;
  r.ranks = R->rank_set().to_vector();
  r.wait_status = static_cast<int>(*status);
  r.override = *override;
  r.timer = h_.clock().make_timer();
  if (r.override) return;  // job-exec.override {event: start} begins it
  begin(r);
  if (*mock == "run") {
    respond(r.req, jid, Raised(Severity::kFatal, ExceptionType::kExec, "mock run exception"));
    return end(jid, SIGKILL);
  }
  // A time limit ends the job before a longer run_duration would.
  // (Without run_duration the job runs exactly its time limit: no timeout.)
  double limit = R->expiration > 0 ? std::max(0.0, R->expiration - h_.clock().wall()) : -1;
  if (explicit_duration && limit >= 0 && limit < duration) {
    r.timer->arm(limit, [this, jid] {
      auto it = runs_.find(jid);
      if (it == runs_.end()) return;
      respond(it->second.req, jid, Raised(Severity::kFatal, ExceptionType::kTimeout, "resource allocation expired"));
      end(jid, SIGALRM);
    });
    return;
  }
  if (duration <= 0) return end(jid, r.wait_status);
  r.timer->arm(duration, [this, jid] {
    auto it = runs_.find(jid);
    if (it != runs_.end()) end(jid, it->second.wait_status);
  });
}

void JobExec::Impl::begin(Run& r) {
  r.started = true;
  respond(r.req, r.id, Started{});
}

// finish, then the ranks one by one (as real execution releases them when
// each rank's shell and epilog are done), the last one final.
void JobExec::Impl::end(uint64_t id, int status) {
  auto it = runs_.find(id);
  if (it == runs_.end()) return;
  Run r = std::move(it->second);
  erase_run(it);
  if (r.started) respond(r.req, id, Finished{status});
  for (size_t i = 0; i < r.ranks.size(); ++i) {
    bool final = i + 1 == r.ranks.size();
    respond(r.req, id, Released::rank(r.ranks[i], final));
  }
  if (r.ranks.empty()) respond(r.req, id, Released::everything(true));
}

void JobExec::Impl::on_exception(const Message& ev) {
  auto p = parse_json(ev.payload);
  if (!p.ok() || !p->is_object() || !(*p)["id"].is_number_unsigned()) return;
  uint64_t id = (*p)["id"].get<uint64_t>();
  auto it = runs_.find(id);
  if (it == runs_.end() || p->value("severity", 1) != 0) return;
  if (it->second.real) {
    it->second.fatal = true;
    if (!it->second.killing) kill_all(it->second, SIGTERM);
    return;
  }
  // Cancel and other fatal exceptions kill the tasks: SIGTERM. A job
  // waiting for its override start never started: only its release goes.
  end(id, SIGTERM);
}

void JobExec::Impl::kill(const Message& m) {
  auto p = payload_object(m);
  auto id = p.ok() ? get_int(*p, "id", 0, INT64_MAX) : Result<int64_t>(p.error());
  if (!id.ok()) return;
  int64_t term = SIGTERM;
  auto sig = get_int(*p, "signal", 1, 64, &term);
  if (!sig.ok()) return;
  auto it = runs_.find(static_cast<uint64_t>(*id));
  if (it == runs_.end() || !it->second.started) return;
  if (it->second.real) {
    // Only the signal: escalation belongs to cancel, time limit and stop.
    for (uint32_t rank : it->second.ranks) {
      if (it->second.exited.count(rank) || !it->second.shells_started.count(rank)) continue;
      kill_shell(it->first, rank, static_cast<int>(*sig));
    }
    return;
  }
  end(it->first, static_cast<int>(*sig));
}

void JobExec::Impl::override_event(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto id = get_int(*p, "id", 0, INT64_MAX);
  if (!id.ok()) return h_.respond_error(m, id.error());
  auto event = get_string(*p, "event");
  if (!event.ok()) return h_.respond_error(m, event.error());
  auto it = runs_.find(static_cast<uint64_t>(*id));
  if (it == runs_.end() || !it->second.override) {
    return h_.respond_error(m, EINVAL, "job " + std::to_string(*id) + " is not running with override");
  }
  Run& r = it->second;
  if (*event == "start") {
    if (r.started) return h_.respond_error(m, EINVAL, "job " + std::to_string(*id) + " already started");
    begin(r);
  } else if (*event == "finish") {
    if (!r.started) return h_.respond_error(m, EINVAL, "job " + std::to_string(*id) + " has not started");
    int64_t dflt = r.wait_status;
    auto status = get_int(*p, "status", 0, INT32_MAX, &dflt);
    if (!status.ok()) return h_.respond_error(m, status.error());
    end(r.id, static_cast<int>(*status));
  } else {
    return h_.respond_error(m, EINVAL, "event must be start or finish");
  }
  h_.respond(m, Json::object());
}

void JobExec::Impl::stop(std::function<void()> done) {
  stopping_ = true;
  stop_done_ = std::move(done);
  if (runs_.empty()) {
    auto d = std::move(stop_done_);
    stop_done_ = nullptr;
    return d();
  }
  spdlog::info("job-exec: stopping {} running jobs", runs_.size());
  std::vector<uint64_t> ids;
  for (auto& [id, r] : runs_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = runs_.find(id);
    if (it == runs_.end()) continue;
    if (it->second.real && (!it->second.unreached.empty() || !it->second.unreached_epilogs.empty() ||
                            !it->second.unreached_prologs.empty())) {
      // Ranks not back from a crash will not be: they are lost, not unkillable.
      lost_ranks(id);
      it = runs_.find(id);
      if (it == runs_.end()) continue;
    }
    Run& r = it->second;
    if (r.real) {
      // A job whose tasks are all done (epilogs or the link still going)
      // has its result: it only has to be let go.
      if (r.finish_sent) continue;
      raise(r, ExceptionType::kExec, "the instance is shutting down");
      kill_all(r, SIGTERM);
    } else {
      respond(r.req, id, Raised(Severity::kFatal, ExceptionType::kExec, "the instance is shutting down"));
      end(id, SIGTERM);
    }
  }
}

void JobExec::stop(std::function<void()> done) { impl_->stop(std::move(done)); }

std::unique_ptr<JobExec> JobExec::create(asio::io_context& io, Handle& h, JobExecConfig cfg) {
  auto impl = std::make_unique<Impl>(io, h, cfg);
  impl->install();
  impl->hello();
  return std::unique_ptr<JobExec>(new JobExec(std::move(impl)));
}

JobExec::JobExec(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

JobExec::~JobExec() { impl_->h_.remove_methods("job-exec"); }

}  // namespace loom
