// The test executor (test_executor.h): one timer per job ends it (or
// job-exec.override does), and the stream goes on as real execution's
// would: finish, then one release per rank, the last one final.
#include "job_exec/test_executor.h"

#include <csignal>
#include <string>

#include "base/fluid.h"
#include "jobspec/jobspec.h"
#include "msg/payload.h"

namespace loom::job_exec {
namespace {

struct TestRun final : Run {
  int wait_status = 0;
  bool override = false;  // job-exec.override starts and finishes it
  std::unique_ptr<Timer> timer;
};

class TestExecutor final : public Executor {
 public:
  explicit TestExecutor(Service& svc) : svc_(svc), h_(svc.handle()) {
    h_.add_method("job-exec.override", Access::kOwner, [this](const Message& m) { override_event(m); });
  }

  bool claims(const Json& jobspec) const override {
    const Json* j = &jobspec;
    for (const char* k : {"attributes", "system", "exec", "test"}) {
      if (!j->is_object() || !j->contains(k)) return false;
      j = &(*j)[k];
    }
    return true;
  }

  void start(const StartInfo& s) override {
    uint64_t jid = s.head.id;
    IdSet all = s.R.rank_set();
    // Test execution runs nothing that could have outlived a restart.
    if (s.head.reattach && !s.head.started) {
      h_.respond_typed(s.req, exec_protocol::JobResponse{jid, Released::everything(true)});
      return;
    }
    if (s.head.reattach) return svc_.refuse(s.req, jid, "the job was lost: test execution cannot be reattached", all);
    const Json& test = s.jobspec["attributes"]["system"]["exec"]["test"];
    if (!test.is_object()) return svc_.refuse(s.req, jid, "attributes.system.exec.test must be an object", all);
    // run_duration: a duration string or a number of seconds; default the
    // time limit, else at once.
    double duration = s.duration;
    bool explicit_duration = test.contains("run_duration");
    if (explicit_duration) {
      const Json& d = test["run_duration"];
      Result<double> parsed = d.is_string()                           ? parse_fsd(d.get<std::string>())
                              : d.is_number() && d.get<double>() >= 0 ? Result<double>(d.get<double>())
                                                                      : Result<double>(Error{EINVAL, "not a duration"});
      if (!parsed.ok()) return svc_.refuse(s.req, jid, "run_duration: " + parsed.error().text, all);
      duration = *parsed;
    }
    int64_t zero = 0;
    auto status = get_int(test, "wait_status", 0, INT32_MAX, &zero);
    if (!status.ok()) return svc_.refuse(s.req, jid, "wait_status: " + status.error().text, all);
    auto mock = get_string(test, "mock_exception", "");
    if (!mock.ok() || (!mock->empty() && *mock != "init" && *mock != "run")) {
      return svc_.refuse(s.req, jid, "mock_exception must be \"init\" or \"run\"", all);
    }
    auto override = get_bool(test, "override", false);
    if (!override.ok()) return svc_.refuse(s.req, jid, "override: " + override.error().text, all);
    if (*mock == "init") return svc_.refuse(s.req, jid, "mock initialization exception", all);

    auto run = std::make_unique<TestRun>();
    run->req = s.req;
    run->id = jid;
    run->ranks = all.to_vector();
    run->executor = this;
    run->wait_status = static_cast<int>(*status);
    run->override = *override;
    run->timer = h_.clock().make_timer();
    auto& r = static_cast<TestRun&>(svc_.add(std::move(run)));
    if (r.override) return;  // job-exec.override {event: start} begins it
    svc_.respond(r, Started{});
    if (*mock == "run") {
      svc_.raise(r, ExceptionType::kExec, "mock run exception");
      return end(r, SIGKILL);
    }
    // A time limit ends the job before a longer run_duration would.
    // (Without run_duration the job runs exactly its time limit: no timeout.)
    double limit = s.R.expiration > 0 ? std::max(0.0, s.R.expiration - h_.clock().wall()) : -1;
    if (explicit_duration && limit >= 0 && limit < duration) {
      // (The timer is the run's: it cannot fire once the run is gone.)
      r.timer->arm(limit, [this, &r] {
        svc_.raise(r, ExceptionType::kTimeout, "resource allocation expired");
        end(r, SIGALRM);
      });
      return;
    }
    if (duration <= 0) return end(r, r.wait_status);
    r.timer->arm(duration, [this, &r] { end(r, r.wait_status); });
  }

  // Only the signal ends a test job: it has no tasks to take it.
  void signal(Run& r, int sig) override { end(static_cast<TestRun&>(r), sig); }

  // A job waiting for its override start never started: only its release goes.
  void cancel(Run& r) override { end(static_cast<TestRun&>(r), SIGTERM); }

  void shutdown(Run& r) override {
    svc_.raise(r, ExceptionType::kExec, "the instance is shutting down");
    end(static_cast<TestRun&>(r), SIGTERM);
  }

  void abandon(Run& /*r*/) override {}

 private:
  // finish, then the ranks one by one (as real execution releases them when
  // each rank's shell and epilog are done), the last one final.
  void end(TestRun& r, int status) {
    if (r.started) svc_.respond(r, Finished{status});
    if (r.ranks.empty()) return svc_.end(r, Released::everything(true));
    for (size_t i = 0; i + 1 < r.ranks.size(); ++i) svc_.respond(r, Released::rank(r.ranks[i], false));
    svc_.end(r, Released::rank(r.ranks.back(), true));
  }

  void override_event(const Message& m) {
    auto p = payload_object(m);
    if (!p.ok()) return h_.respond_error(m, p.error());
    auto id = get_int(*p, "id", 0, INT64_MAX);
    if (!id.ok()) return h_.respond_error(m, id.error());
    auto event = get_string(*p, "event");
    if (!event.ok()) return h_.respond_error(m, event.error());
    std::string job = "job " + encode_f58(JobId{static_cast<uint64_t>(*id)});
    auto* r = dynamic_cast<TestRun*>(svc_.find(static_cast<uint64_t>(*id)));
    if (!r || !r->override) return h_.respond_error(m, EINVAL, job + " is not running with override");
    if (*event == "start") {
      if (r->started) return h_.respond_error(m, EINVAL, job + " already started");
      svc_.respond(*r, Started{});
    } else if (*event == "finish") {
      if (!r->started) return h_.respond_error(m, EINVAL, job + " has not started");
      int64_t dflt = r->wait_status;
      auto status = get_int(*p, "status", 0, INT32_MAX, &dflt);
      if (!status.ok()) return h_.respond_error(m, status.error());
      end(*r, static_cast<int>(*status));
    } else {
      return h_.respond_error(m, EINVAL, "event must be start or finish");
    }
    h_.respond(m, Json::object());
  }

  Service& svc_;
  Handle& h_;
};

}  // namespace

std::unique_ptr<Executor> make_test_executor(Service& svc) { return std::make_unique<TestExecutor>(svc); }

}  // namespace loom::job_exec
