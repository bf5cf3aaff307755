// job-exec in test execution mode (job_exec.h). One Run per started job: a
// timer (or an override) ends it, and end() sends the rest of its stream:
// finish, then one release per rank, the last one final.
#include "job_exec/job_exec.h"

#include <spdlog/spdlog.h>

#include <asio/io_context.hpp>
#include <csignal>
#include <map>
#include <string>
#include <vector>

#include "jobspec/jobspec.h"
#include "msg/payload.h"
#include "rset/rset.h"

namespace loom {

namespace {
constexpr const char* kService = "job-exec";
constexpr double kHelloRetry = 1.0;
}  // namespace

struct JobExec::Impl {
  struct Run {
    Message req;  // the start request; every response answers it
    uint64_t id = 0;
    std::vector<uint32_t> ranks;
    int wait_status = 0;
    bool override = false;
    bool started = false;
    std::unique_ptr<Timer> timer;
  };

  Impl(asio::io_context& io, Handle& h, JobExecConfig cfg) : io_(io), h_(h), cfg_(cfg) {}

  asio::io_context& io_;
  Handle& h_;
  JobExecConfig cfg_;
  std::map<uint64_t, Run> runs_;
  std::unique_ptr<Timer> hello_timer_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);

  void install();
  void hello();
  void start(const Message& m);
  void kill(const Message& m);
  void override_event(const Message& m);
  void on_exception(const Message& ev);
  void on_teardown(const Message& ev);

  void respond(const Message& req, uint64_t id, const char* type, Json data = Json::object()) {
    h_.respond(req, Json{{"id", id}, {"type", type}, {"data", std::move(data)}});
  }
  // A fatal exception before anything ran: the stream is exception, release.
  void refuse(const Message& req, uint64_t id, const std::string& note, const std::string& ranks) {
    respond(req, id, "exception", Json{{"severity", 0}, {"type", "exec"}, {"note", note}});
    respond(req, id, "release", Json{{"ranks", ranks}, {"final", true}});
  }
  void begin(Run& r);
  void end(uint64_t id, int status);
};

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
    // The job manager gave up on us: our streams are void. It sends the
    // jobs again (reattach) after the next hello.
    runs_.clear();
  }
  // Whoever was registered is gone: this instance falls back to us.
  hello();
}

void JobExec::Impl::start(const Message& m) {
  auto p = payload_object(m);
  Result<int64_t> id = p.ok() ? get_int(*p, "id", 0, INT64_MAX) : Result<int64_t>(p.error());
  if (!id.ok()) {
    spdlog::warn("job-exec: malformed start: {}", id.error().text);
    return h_.respond_error(m, id.error());
  }
  uint64_t jid = static_cast<uint64_t>(*id);
  if (runs_.count(jid)) return h_.respond_error(m, EEXIST, "job " + std::to_string(jid) + " is already running");
  Message req = m;
  req.payload = std::string();
  auto R = p->contains("R") ? ResourceSet::parse((*p)["R"]) : Result<ResourceSet>(Error{EPROTO, "missing \"R\""});
  if (!R.ok()) return refuse(req, jid, "R: " + R.error().text, "all");
  std::string all = R->rank_set().encode();
  if (p->value("reattach", false)) {
    return refuse(req, jid, "test execution does not survive a restart of job-exec", all);
  }
  auto js = p->contains("jobspec") ? parse_jobspec((*p)["jobspec"]) : Result<Jobspec>(Error{EPROTO, "missing"});
  if (!js.ok()) return refuse(req, jid, "jobspec: " + js.error().text, all);
  const Json* test = nullptr;
  const Json& attrs = js->raw["attributes"];
  if (attrs.contains("system") && attrs["system"].contains("exec") && attrs["system"]["exec"].is_object() &&
      attrs["system"]["exec"].contains("test")) {
    test = &attrs["system"]["exec"]["test"];
  }
  if (!test) {
    return refuse(req, jid,
                  "this instance runs jobs in test execution mode only (attributes.system.exec.test); "
                  "job shells are not available yet",
                  all);
  }
  if (!test->is_object()) return refuse(req, jid, "attributes.system.exec.test must be an object", all);
  // run_duration: a duration string or a number of seconds; default the
  // time limit, else at once.
  double duration = js->duration;
  if (test->contains("run_duration")) {
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
    respond(r.req, jid, "exception", Json{{"severity", 0}, {"type", "exec"}, {"note", "mock run exception"}});
    return end(jid, SIGKILL);
  }
  // A time limit ends the job before a longer run_duration would.
  double limit = R->expiration > 0 ? std::max(0.0, R->expiration - h_.clock().wall()) : -1;
  if (limit >= 0 && limit < duration) {
    r.timer->arm(limit, [this, jid] {
      auto it = runs_.find(jid);
      if (it == runs_.end()) return;
      respond(it->second.req, jid, "exception",
              Json{{"severity", 0}, {"type", "timeout"}, {"note", "resource allocation expired"}});
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
  respond(r.req, r.id, "start");
}

// finish, then the ranks one by one (as real execution releases them when
// each rank's shell and epilog are done), the last one final.
void JobExec::Impl::end(uint64_t id, int status) {
  auto it = runs_.find(id);
  if (it == runs_.end()) return;
  Run r = std::move(it->second);
  runs_.erase(it);
  if (r.started) respond(r.req, id, "finish", Json{{"status", status}});
  for (size_t i = 0; i < r.ranks.size(); ++i) {
    bool final = i + 1 == r.ranks.size();
    respond(r.req, id, "release", Json{{"ranks", std::to_string(r.ranks[i])}, {"final", final}});
  }
  if (r.ranks.empty()) respond(r.req, id, "release", Json{{"ranks", "all"}, {"final", true}});
}

void JobExec::Impl::on_exception(const Message& ev) {
  auto p = parse_json(ev.payload);
  if (!p.ok() || !p->is_object() || !(*p)["id"].is_number_unsigned()) return;
  uint64_t id = (*p)["id"].get<uint64_t>();
  auto it = runs_.find(id);
  if (it == runs_.end() || p->value("severity", 1) != 0) return;
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

std::unique_ptr<JobExec> JobExec::create(asio::io_context& io, Handle& h, JobExecConfig cfg) {
  auto impl = std::make_unique<Impl>(io, h, cfg);
  impl->install();
  impl->hello();
  return std::unique_ptr<JobExec>(new JobExec(std::move(impl)));
}

JobExec::JobExec(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JobExec::~JobExec() { impl_->h_.remove_methods("job-exec"); }

}  // namespace loom
