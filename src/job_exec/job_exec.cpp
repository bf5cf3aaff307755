// job-exec in test execution mode (job_exec.h). One Run per started job: a
// timer (or an override) ends it, and end() sends the rest of its stream:
// finish, then one release per rank, the last one final.
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
#include "base/wait_status.h"
#include "eventlog/eventlog.h"
#include "idset/idset.h"
#include "jobspec/jobspec.h"
#include "msg/payload.h"
#include "rset/rset.h"

namespace loom {

namespace {
constexpr const char* kService = "job-exec";

constexpr double kHelloRetry = 1.0;
// How long an exec eventlog entry may wait to be stored with the ones after it.
constexpr double kExecLogDelay = 0.1;
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
    // Real execution: one loom-shell per rank.
    bool real = false;
    std::string ns;  // the job's guest namespace
    uint32_t userid = 0;
    std::string all;  // R's ranks as an idset
    bool finish_sent = false;
    bool sigkill_sent = false;
    uint64_t serial = 0;                // tells this run from an earlier one of the same job
    std::map<uint32_t, int> exited;     // rank → the shell's status as a wait status
    std::set<uint32_t> shells_started;  // ranks whose shell runs
    std::set<uint32_t> released;        // ranks released so far
    bool fatal = false;                 // a fatal exception was raised
    bool killing = false;               // SIGTERM/SIGALRM sent; SIGKILL follows
    std::unique_ptr<Timer> kill_timer;
    bool reattach = false;         // shells started before a restart, found again
    bool kill_found = false;       // reattach: the job had a fatal exception before the restart
    size_t gone_before = 0;        // reattach: ranks released before the restart
    std::set<uint32_t> unreached;  // reattach: ranks not back yet (asked again when online)
    std::unique_ptr<Timer> reattach_timer;
    std::unique_ptr<Timer> retry_timer;  // asks the unreached ranks again, in case an online event was missed
    double reattach_deadline = 0;
    // The exec eventlog (key exec.eventlog of the guest namespace): entries
    // not stored yet. They go out kExecLogDelay after the first of them,
    // so a live follower sees them while a short job costs no commit of
    // its own: whatever is left goes with the link.
    std::string exec_log;
    std::unique_ptr<Timer> exec_log_timer;
    bool exec_log_sending = false;  // a commit of earlier entries is out (one at a time, in order)
    bool linking = false;           // the namespace is being linked: the rest goes to the linked copy
  };

  Impl(asio::io_context& io, Handle& h, JobExecConfig cfg) : io_(io), h_(h), cfg_(cfg) {}

  asio::io_context& io_;
  Handle& h_;
  JobExecConfig cfg_;
  std::map<uint64_t, Run> runs_;
  uint64_t next_serial_ = 1;
  // The run of job `id` that `serial` belongs to, if it is still the current one.
  Run* current(uint64_t id, uint64_t serial) {
    auto it = runs_.find(id);
    return it != runs_.end() && it->second.serial == serial ? &it->second : nullptr;
  }
  bool stopping_ = false;
  std::function<void()> stop_done_;
  void erase_run(std::map<uint64_t, Run>::iterator it) {
    runs_.erase(it);
    if (stopping_ && runs_.empty() && stop_done_) {
      auto done = std::move(stop_done_);
      stop_done_ = nullptr;
      done();
    }
  }
  void stop(std::function<void()> done);
  std::unique_ptr<Timer> hello_timer_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);

  void install();
  void hello();
  void start(const Message& m);
  void kill(const Message& m);
  void override_event(const Message& m);
  void on_exception(const Message& ev);
  void on_teardown(const Message& ev);

  // An entry of the run's exec eventlog.
  void log_exec(Run& r, const char* name, Json context) {
    r.exec_log += format_event(EventEntry{h_.clock().wall(), name, std::move(context)});
    if (!r.exec_log_timer) r.exec_log_timer = h_.clock().make_timer();
    if (r.exec_log_timer->armed()) return;
    r.exec_log_timer->arm(kExecLogDelay, [this, id = r.id, serial = r.serial] { store_exec_log(id, serial); });
  }
  void store_exec_log(uint64_t id, uint64_t serial);
  void append_linked_exec_log(uint64_t id, std::string text);
  // Appends `text` to the eventlog at `key` of namespace `ns`.
  void commit_exec_log(const std::string& ns, const std::string& key, std::string text,
                       std::function<void(const Message&)> done);
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

  // Real execution.
  void launch(Run& r, const Json& jobspec, const Json& R, uint32_t userid);
  void name_run(Run& r, uint32_t userid);
  void find_shells(Run& r, uint32_t userid);
  void reattach_ranks(uint64_t id, const std::string& eventlog);
  void ask_shell(Run& r, uint32_t rank);
  void lost_ranks(uint64_t id);
  void on_online(const Message& ev);
  void stale_shell(uint64_t id, uint32_t rank, const Message& m);
  void on_shell(uint64_t id, uint32_t rank, const Message& m);
  void shell_exited(Run& r, uint32_t rank, int status);
  void send_finish(Run& r);
  void rank_free(Run& r, uint32_t rank);
  void kill_all(Run& r, int sig);
  // Sends `sig` to the tasks of job `id`'s shell on `rank` (no answer awaited).
  void kill_shell(uint64_t id, uint32_t rank, int sig) {
    h_.rpc("shell.kill", Json{{"id", id}, {"signal", sig}}, RpcOptions{.nodeid = rank}, [](const Message&) {});
  }
  void give_up(uint64_t id);
  void raise(Run& r, const std::string& type, const std::string& note);
  void finish_real(uint64_t id, std::string rest);
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
  Result<int64_t> id = p.ok() ? get_int(*p, "id", 0, INT64_MAX) : Result<int64_t>(p.error());
  if (!id.ok()) {
    spdlog::warn("job-exec: malformed start: {}", id.error().text);
    return h_.respond_error(m, id.error());
  }
  uint64_t jid = static_cast<uint64_t>(*id);
  if (runs_.count(jid)) return h_.respond_error(m, EEXIST, "job " + std::to_string(jid) + " is already running");
  Message req = head_of(m);
  auto R = p->contains("R") ? ResourceSet::parse((*p)["R"]) : Result<ResourceSet>(Error{EPROTO, "missing \"R\""});
  if (!R.ok()) return refuse(req, jid, "R: " + R.error().text, "all");
  std::string all = R->rank_set().encode();
  if (stopping_) return refuse(req, jid, "the instance is shutting down", all);
  bool reattach = p->value("reattach", false);
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
        raise(it->second, "timeout", "resource allocation expired");
        kill_all(it->second, SIGALRM);
      });
    }
    int64_t root = 0;
    auto userid = get_int(*p, "userid", 0, UINT32_MAX - 1, &root);
    if (reattach) return find_shells(r, static_cast<uint32_t>(userid.ok() ? *userid : 0));
    return launch(r, (*p)["jobspec"], (*p)["R"], static_cast<uint32_t>(userid.ok() ? *userid : 0));
  }
  // Test execution runs nothing that could have outlived a restart.
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
    respond(r.req, jid, "exception", Json{{"severity", 0}, {"type", "exec"}, {"note", "mock run exception"}});
    return end(jid, SIGKILL);
  }
  // A time limit ends the job before a longer run_duration would.
  // (Without run_duration the job runs exactly its time limit: no timeout.)
  double limit = R->expiration > 0 ? std::max(0.0, R->expiration - h_.clock().wall()) : -1;
  if (explicit_duration && limit >= 0 && limit < duration) {
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
  erase_run(it);
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

// ---------------------------------------------------------------- real execution

// A fatal exception from us (the job manager publishes it back as the
// job-exception event, which kills the shells).
void JobExec::Impl::raise(Run& r, const std::string& type, const std::string& note) {
  if (r.fatal) return;
  r.fatal = true;
  respond(r.req, r.id, "exception", Json{{"severity", 0}, {"type", type}, {"note", note}});
}

void JobExec::Impl::name_run(Run& r, uint32_t userid) {
  r.ns = "job-" + std::to_string(r.id);
  r.userid = userid;
  std::string all;
  for (uint32_t rank : r.ranks) all += (all.empty() ? "" : ",") + std::to_string(rank);
  r.all = IdSet::parse(all).value().encode();
  r.serial = next_serial_++;
}

void JobExec::Impl::launch(Run& r, const Json& jobspec, const Json& R, uint32_t userid) {
  uint64_t id = r.id;
  name_run(r, userid);
  uint64_t serial = r.serial;
  auto alive = std::weak_ptr<int>(alive_);
  if (r.ranks.empty()) {
    raise(r, "exec", "R has no ranks");
    return finish_real(id, "all");
  }
  // The namespace is the job user's: the shells write its output there. It
  // is created while they start (the KVS serves requests in the order they
  // come, so a shell's first commit finds it); if it cannot be, the job
  // fails and its shells are killed.
  h_.rpc("kvs.namespace-create", Json{{"name", r.ns}, {"owner", userid}}, {},
         [this, alive, id, serial](const Message& created) {
           if (alive.expired() || !created.errnum || created.errnum == EEXIST) return;
           if (Run* rp = current(id, serial)) {
             raise(*rp, "exec", "cannot create the job's namespace: " + error_text(created));
           }
         });
  for (uint32_t rank : r.ranks) {
    Json info{
        {"id", id},          {"rank", rank},       {"jobspec", jobspec}, {"R", R},
        {"namespace", r.ns}, {"userid", r.userid}, {"ranks", r.all},     {"reattach_timeout", cfg_.reattach_timeout}};
    RpcOptions opts;
    opts.nodeid = rank;
    opts.streaming = true;
    h_.rpc("shell.launch", Json{{"id", id}, {"info", std::move(info)}}, opts,
           [this, alive, id, serial, rank](const Message& m) {
             // Answers from the shells of a run that is gone (torn down
             // and started again) are not this run's.
             if (alive.expired()) return;
             if (current(id, serial)) return on_shell(id, rank, m);
             stale_shell(id, rank, m);
           });
  }
}

// A job that was running when the instance went down (docs/protocols/exec.md): its
// shells kept their tasks and connected to their restarted brokers. The
// eventlog says which ranks were released and whether `finish` was logged;
// every other rank's shell is asked for, and once all are found the stream
// goes on as if nothing happened. A shell that did not come back makes the
// job lost: an exception saying so, the others killed, everything released.
void JobExec::Impl::find_shells(Run& r, uint32_t userid) {
  uint64_t id = r.id;
  name_run(r, userid);
  r.reattach = true;
  uint64_t serial = r.serial;
  auto alive = std::weak_ptr<int>(alive_);
  h_.rpc("kvs.lookup", Json{{"key", "job." + std::to_string(id) + ".eventlog"}}, {},
         [this, alive, id, serial](const Message& m) {
           if (alive.expired() || !current(id, serial)) return;
           auto v = m.errnum ? Result<Json>(Error{m.errnum, error_text(m)}) : parse_json(m.payload);
           std::string text = v.ok() && v->is_object() ? v->value("value", std::string()) : std::string();
           reattach_ranks(id, text);
         });
}

void JobExec::Impl::reattach_ranks(uint64_t id, const std::string& eventlog) {
  auto it = runs_.find(id);
  if (it == runs_.end()) return;
  Run& r = it->second;
  LineSplitter lines;
  for (auto& line : lines.feed(eventlog)) {
    auto e = parse_event(line);
    if (!e.ok() || !e->context.is_object()) continue;
    if (e->name == "finish") r.finish_sent = true;
    if (e->name == "exception" && e->context.value("severity", 1) == 0) {
      // A cancel (or another fatal exception) came before the crash: the
      // tasks are killed once found, as they would have been.
      r.fatal = true;
      r.kill_found = true;
    }
    if (e->name != "release") continue;
    std::string ranks = e->context.value("ranks", std::string());
    auto set = ranks == "all" ? IdSet::parse(r.all) : IdSet::parse(ranks);
    if (set.ok()) {
      for (uint32_t rank : set->to_vector()) r.released.insert(rank);
    }
  }
  if (r.finish_sent) {
    // Every shell had exited; what was left were epilogs or the final
    // link. The epilogs' outcome went with the broker: the ranks go back.
    std::vector<uint32_t> rest;
    for (uint32_t rank : r.ranks) {
      if (!r.released.count(rank)) rest.push_back(rank);
      r.exited[rank] = 0;
    }
    spdlog::warn("job-exec: job {}: had finished before the restart; releasing the ranks it still held", id);
    r.started = true;
    respond(r.req, id, "reattached");
    if (rest.empty()) return finish_real(id, "all");  // only the final release was missing
    for (uint32_t rank : rest) {
      auto cur = runs_.find(id);
      if (cur == runs_.end()) return;
      rank_free(cur->second, rank);
    }
    return;
  }
  // Ranks that are not back yet are asked again when they come online, for
  // as long as their shells wait for them.
  r.reattach_deadline = h_.clock().now() + cfg_.reattach_timeout;
  r.reattach_timer = h_.clock().make_timer();
  r.reattach_timer->arm(cfg_.reattach_timeout, [this, id] { lost_ranks(id); });
  r.retry_timer = h_.clock().make_timer();
  for (uint32_t rank : r.ranks) {
    if (r.released.count(rank)) {
      // Its shell exited before the restart; its status went with it.
      spdlog::warn("job-exec: job {}: rank {}'s exit status was lost in the restart", id, rank);
      r.exited[rank] = 0;
      ++r.gone_before;
      continue;
    }
    ask_shell(r, rank);
  }
}

void JobExec::Impl::ask_shell(Run& r, uint32_t rank) {
  uint64_t id = r.id;
  uint64_t serial = r.serial;
  auto alive = std::weak_ptr<int>(alive_);
  RpcOptions opts;
  opts.nodeid = rank;
  opts.streaming = true;
  h_.rpc("shell.reattach", Json{{"id", id}, {"info", Json{{"userid", r.userid}, {"ranks", r.all}}}}, opts,
         [this, alive, id, serial, rank](const Message& m) {
           if (alive.expired()) return;
           if (current(id, serial)) return on_shell(id, rank, m);
           stale_shell(id, rank, m);
         });
}

// A shell that came up (or was found) for a run that is gone: nobody would
// watch it, so it goes.
void JobExec::Impl::stale_shell(uint64_t id, uint32_t rank, const Message& m) {
  if (m.errnum) return;
  auto p = parse_json(m.payload);
  std::string type = p.ok() && p->is_object() ? p->value("type", "") : "";
  if (type != "started" && type != "reattached") return;
  spdlog::warn("job-exec: job {}: killing its shell on rank {}, which came after its run ended", id, rank);
  kill_shell(id, rank, SIGKILL);
}

void JobExec::Impl::on_online(const Message& ev) {
  auto p = parse_json(ev.payload);
  if (!p.ok() || !p->is_object() || !(*p)["rank"].is_number_unsigned()) return;
  uint32_t rank = (*p)["rank"].get<uint32_t>();
  for (auto& [id, r] : runs_) {
    if (r.unreached.erase(rank)) ask_shell(r, rank);
  }
}

// Ranks that did not come back while their shells waited for them.
void JobExec::Impl::lost_ranks(uint64_t id) {
  auto it = runs_.find(id);
  if (it == runs_.end() || it->second.unreached.empty()) return;
  Run& r = it->second;
  std::set<uint32_t> lost = std::move(r.unreached);
  r.unreached.clear();
  IdSet ranks;
  for (uint32_t rank : lost) ranks.insert(rank);
  raise(r, "exec", "the job was lost in the restart: ranks " + ranks.encode() + " did not come back");
  kill_all(r, SIGKILL);
  for (uint32_t rank : lost) {
    auto cur = runs_.find(id);
    if (cur == runs_.end()) return;
    shell_exited(cur->second, rank, SIGKILL);
    rank_free(cur->second, rank);
  }
}

void JobExec::Impl::on_shell(uint64_t id, uint32_t rank, const Message& m) {
  auto it = runs_.find(id);
  if (it == runs_.end()) return;
  Run& r = it->second;
  if (m.errnum == ENODATA) return;
  if (m.errnum) {
    if (r.released.count(rank)) return;
    if (m.errnum == EHOSTUNREACH && r.shells_started.count(rank)) {
      raise(r, "node-failure", "rank " + std::to_string(rank) + " was lost");
    } else if (r.reattach && !r.shells_started.count(rank) && m.errnum == EHOSTUNREACH &&
               h_.clock().now() < r.reattach_deadline) {
      // Its broker is not back yet: asked again when it is online (or in a
      // second: the online event may have come before this answer).
      r.unreached.insert(rank);
      if (!r.retry_timer->armed()) {
        r.retry_timer->arm(1.0, [this, id] {
          auto it = runs_.find(id);
          if (it == runs_.end()) return;
          std::set<uint32_t> again = std::move(it->second.unreached);
          it->second.unreached.clear();
          for (uint32_t rk : again) ask_shell(it->second, rk);
        });
      }
      return;
    } else if (r.reattach && !r.shells_started.count(rank)) {
      raise(r, "exec", "the job was lost in the restart: rank " + std::to_string(rank) + ": " + error_text(m));
    } else {
      raise(r, "exec", "rank " + std::to_string(rank) + ": " + error_text(m));
    }
    kill_all(r, SIGKILL);
    if (!r.exited.count(rank)) shell_exited(r, rank, SIGKILL);
    return rank_free(r, rank);
  }
  auto p = parse_json(m.payload);
  if (!p.ok() || !p->is_object()) return;
  std::string type = p->value("type", "");
  if (type == "started" || type == "reattached") {
    log_exec(r, type == "started" ? "shell-start" : "shell-reattach",
             Json{{"rank", rank}, {"pid", p->value("pid", 0)}});
    // A shell that came up (or was found) after the job was killed goes
    // too, and gets the kill timeout to do so.
    if (r.killing) {
      kill_shell(id, rank, SIGKILL);
      if (!r.kill_timer->armed()) r.kill_timer->arm(cfg_.kill_timeout, [this, id] { give_up(id); });
    }
    r.shells_started.insert(rank);
    if (r.shells_started.size() + r.gone_before == r.ranks.size() && !r.started && (!r.fatal || r.kill_found)) {
      if (!r.reattach) {
        begin(r);
      } else {
        r.started = true;
        spdlog::info("job-exec: job {}: found its shells again", id);
        respond(r.req, id, "reattached");
        if (r.kill_found && !r.killing) kill_all(r, SIGTERM);
      }
    }
  } else if (type == "exited" && (*p)["status"].is_number_integer()) {
    // The shell exits as a shell does: the task's exit code, or 128+N for
    // a task killed by signal N. Back to a wait status.
    int st = (*p)["status"].get<int>();
    if (p->contains("tasks") && (*p)["tasks"].is_array()) {
      for (const Json& t : (*p)["tasks"]) {
        if (t.is_array() && t.size() == 2 && t[0].is_number_integer() && t[1].is_number_integer()) {
          log_exec(r, "task-exit", Json{{"rank", rank}, {"task", t[0]}, {"status", t[1]}});
        }
      }
    }
    if ((*p)["more_tasks"].is_number_unsigned()) {
      log_exec(r, "task-exits-unreported", Json{{"rank", rank}, {"count", (*p)["more_tasks"]}});
    }
    // A shell that could not run the job at all (it could not become the
    // job's user, say) says why: the job fails with that, the other
    // ranks' shells are killed.
    bool failed = (*p)["error"].is_string();
    if (failed) raise(r, "exec", "rank " + std::to_string(rank) + ": " + (*p)["error"].get<std::string>());
    int status = st;
    if (WIFEXITED(st)) {
      int code = WEXITSTATUS(st);
      status = code > 128 && code <= 128 + 64 ? code - 128 : code << 8;
    }
    log_exec(r, "shell-exit", Json{{"rank", rank}, {"status", status}});
    shell_exited(r, rank, status);
    if (failed) kill_all(r, SIGKILL);
    // With an epilog, the rank is free once it is done.
    if (!p->value("epilog", false)) return rank_free(r, rank);
    log_exec(r, "epilog-start", Json{{"rank", rank}});
  } else if (type == "epilog") {
    int st = (*p)["status"].is_number_integer() ? (*p)["status"].get<int>() : 0;
    bool timeout = p->value("timeout", false);
    Json ctx{{"rank", rank}, {"status", st}};
    if (timeout) ctx["timeout"] = true;
    log_exec(r, "epilog-finish", std::move(ctx));
    if (st != 0 || timeout) {
      std::string why = timeout         ? "epilog timed out"
                        : WIFEXITED(st) ? "epilog exited with " + std::to_string(WEXITSTATUS(st))
                                        : "epilog killed by signal " + std::to_string(WTERMSIG(st));
      spdlog::warn("job-exec: job {}: rank {}: {}; draining the rank", id, rank, why);
      h_.rpc("sched.drain",
             Json{{"ranks", std::to_string(rank)}, {"reason", why + " (job " + encode_f58(JobId{id}) + ")"}}, {},
             [](const Message&) {});
      respond(r.req, id, "exception",
              Json{{"severity", 1}, {"type", "epilog"}, {"note", "rank " + std::to_string(rank) + ": " + why}});
    }
    rank_free(r, rank);
  }
}

void JobExec::Impl::shell_exited(Run& r, uint32_t rank, int status) {
  if (r.exited.count(rank)) return;
  r.exited[rank] = status;
  // All shells have exited: the job's result is known now, while epilogs
  // may still run.
  if (r.exited.size() == r.ranks.size()) send_finish(r);
}

void JobExec::Impl::send_finish(Run& r) {
  if (r.finish_sent || !r.started) return;
  r.finish_sent = true;
  r.timer->cancel();
  r.kill_timer->cancel();
  // The worst as a shell ranks them: a task killed by a signal (128+N)
  // above any exit code up to 128.
  int worst = 0;
  for (auto& [rank, st] : r.exited) {
    if (shell_exit_code(st) > shell_exit_code(worst)) worst = st;
  }
  log_exec(r, "complete", Json{{"status", worst}});
  respond(r.req, r.id, "finish", Json{{"status", worst}});
}

void JobExec::Impl::rank_free(Run& r, uint32_t rank) {
  if (r.released.count(rank)) return;
  if (r.released.size() + 1 < r.ranks.size()) {
    // This rank's shell and epilog are done: it goes back to the scheduler now.
    r.released.insert(rank);
    respond(r.req, r.id, "release", Json{{"ranks", std::to_string(rank)}, {"final", false}});
    return;
  }
  r.released.insert(rank);
  finish_real(r.id, std::to_string(rank));
}

// Every rank is free: finish (if the job started and it was not sent), the
// guest namespace linked into the job's KVS directory, the final release.
void JobExec::Impl::finish_real(uint64_t id, std::string rest) {
  auto it = runs_.find(id);
  if (it == runs_.end()) return;
  Run& r = it->second;
  r.timer->cancel();
  r.kill_timer->cancel();
  send_finish(r);
  if (r.exec_log_timer) r.exec_log_timer->cancel();
  r.linking = true;
  auto alive = std::weak_ptr<int>(alive_);
  uint64_t serial = r.serial;
  std::string guest = "job." + std::to_string(id) + ".guest";
  h_.rpc("kvs.namespace-link", Json{{"namespace", r.ns}, {"key", guest}}, {},
         [this, alive, id, serial, rest](const Message& linked) {
           if (alive.expired() || !current(id, serial)) return;
           auto it = runs_.find(id);
           if (linked.errnum && linked.errnum != ENOENT) {
             spdlog::warn("job-exec: job {}: cannot link its namespace: {}", id, error_text(linked));
           }
           Message req = it->second.req;
           std::string ns = it->second.ns;
           h_.rpc("kvs.namespace-remove", Json{{"name", ns}}, {}, [](const Message&) {});
           respond(req, id, "release", Json{{"ranks", rest}, {"final", true}});
           erase_run(it);
         });
  // The rest of the exec eventlog is appended to the linked copy: sent
  // right after the link, it is stored with it (in the same or the next
  // transaction) at no extra wait.
  append_linked_exec_log(id, std::move(r.exec_log));
  r.exec_log.clear();
}

void JobExec::Impl::commit_exec_log(const std::string& ns, const std::string& key, std::string text,
                                    std::function<void(const Message&)> done) {
  Json ops = Json::array({Json{{"op", "append"}, {"key", key}, {"value", std::move(text)}}});
  h_.rpc("kvs.commit", Json{{"namespace", ns}, {"ops", std::move(ops)}}, {}, std::move(done));
}

void JobExec::Impl::append_linked_exec_log(uint64_t id, std::string text) {
  if (text.empty()) return;
  commit_exec_log("primary", "job." + std::to_string(id) + ".guest.exec.eventlog", std::move(text),
                  [id](const Message& m) {
                    if (m.errnum) {
                      spdlog::warn("job-exec: job {}: cannot store its exec eventlog: {}", id, error_text(m));
                    }
                  });
}

// The exec eventlog entries so far to the guest namespace, for whoever
// follows it while the job runs, one commit at a time (entries logged
// meanwhile go when it is answered). On an error they stay for the next
// try (at the latest with the link).
void JobExec::Impl::store_exec_log(uint64_t id, uint64_t serial) {
  Run* r = current(id, serial);
  if (!r || r->exec_log.empty() || r->ns.empty() || r->exec_log_sending) return;
  r->exec_log_sending = true;
  std::string text = std::move(r->exec_log);
  r->exec_log.clear();
  auto alive = std::weak_ptr<int>(alive_);
  commit_exec_log(r->ns, "exec.eventlog", text, [this, alive, id, serial, text](const Message& m) {
    if (alive.expired()) return;
    Run* r = current(id, serial);
    if (!r) return;
    r->exec_log_sending = false;
    if (m.errnum && r->linking) {
      // Too late for the namespace: after the rest in the linked copy.
      spdlog::warn("job-exec: job {}: exec eventlog entries stored out of order: {}", id, error_text(m));
      return append_linked_exec_log(id, text);
    }
    if (m.errnum) r->exec_log = text + r->exec_log;  // with the next ones
    if (!r->linking && !r->exec_log.empty() && !r->exec_log_timer->armed()) {
      r->exec_log_timer->arm(kExecLogDelay, [this, id, serial] { store_exec_log(id, serial); });
    }
  });
}

void JobExec::Impl::kill_all(Run& r, int sig) {
  uint64_t id = r.id;
  bool first = !r.killing;
  r.killing = true;
  if (sig != SIGKILL && first) {
    r.kill_timer->arm(cfg_.kill_timeout, [this, id] {
      auto it = runs_.find(id);
      if (it != runs_.end()) kill_all(it->second, SIGKILL);
    });
  }
  if (sig == SIGKILL && !r.sigkill_sent) {
    // What SIGKILL does not end within the kill timeout cannot be killed.
    r.sigkill_sent = true;
    r.kill_timer->arm(cfg_.kill_timeout, [this, id] { give_up(id); });
  }
  for (uint32_t rank : r.ranks) {
    if (r.exited.count(rank) || !r.shells_started.count(rank)) continue;
    kill_shell(id, rank, sig);
  }
}

// Ranks whose shell outlived SIGKILL by the kill timeout: they are drained
// ("unkillable processes") and released, so the job still completes.
void JobExec::Impl::give_up(uint64_t id) {
  auto it = runs_.find(id);
  if (it == runs_.end()) return;
  // A shell still being looked for after a restart is not stuck: it is
  // killed when found, or its rank is lost when it is not.
  std::vector<uint32_t> stuck;
  for (uint32_t rank : it->second.ranks) {
    if (!it->second.exited.count(rank) && it->second.shells_started.count(rank)) stuck.push_back(rank);
  }
  if (stuck.empty()) return;
  IdSet ranks;
  for (uint32_t rank : stuck) ranks.insert(rank);
  std::string why = "unkillable processes (job " + encode_f58(JobId{id}) + ")";
  spdlog::error("job-exec: job {}: ranks {}: {}; draining them", id, ranks.encode(), why);
  h_.rpc("sched.drain", Json{{"ranks", ranks.encode()}, {"reason", why}}, {}, [](const Message&) {});
  respond(it->second.req, id, "exception",
          Json{{"severity", 1}, {"type", "exec"}, {"note", "ranks " + ranks.encode() + ": unkillable processes"}});
  for (uint32_t rank : stuck) {
    auto cur = runs_.find(id);
    if (cur == runs_.end()) return;
    shell_exited(cur->second, rank, SIGKILL);
    rank_free(cur->second, rank);
  }
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
    if (it->second.real && !it->second.unreached.empty()) {
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
      raise(r, "exec", "the instance is shutting down");
      kill_all(r, SIGTERM);
    } else {
      respond(r.req, id, "exception",
              Json{{"severity", 0}, {"type", "exec"}, {"note", "the instance is shutting down"}});
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
