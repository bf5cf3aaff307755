// The shell executor's shells (shell_executor.h; docs/protocols/exec.md,
// "job-exec: real execution"): a loom-shell on every rank of R through the
// shell launch service, each rank released once its shell and epilog are
// done, the kill escalation, and the job's exec eventlog.
#include "job_exec/shell_executor.h"

#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <csignal>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/fluid.h"
#include "base/wait_status.h"
#include "eventlog/eventlog.h"
#include "idset/idset.h"
#include "kvs/layout.h"
#include "msg/payload.h"

namespace loom::job_exec {

ShellExecutor::ShellExecutor(Service& svc) : svc_(svc), h_(svc.handle()), cfg_(svc.config()) {}

ShellRun* ShellExecutor::run(uint64_t id, uint64_t serial) {
  Run* r = svc_.current(id, serial);
  return r && r->executor == this ? static_cast<ShellRun*>(r) : nullptr;
}

void ShellExecutor::enter(ShellRun& r, ShellRun::Phase next) {
  LOOM_ASSERT(next > r.phase);
  r.phase = next;
}

namespace {
// Whether `jobspec` is a job step's (attributes.system.allocation).
bool is_step(const Json& jobspec) {
  auto attrs = jobspec.find("attributes");
  if (attrs == jobspec.end() || !attrs->is_object()) return false;
  auto system = attrs->find("system");
  if (system == attrs->end() || !system->is_object()) return false;
  auto a = system->find("allocation");
  return a != system->end() && !a->is_null();
}
}  // namespace

void ShellExecutor::start(const StartInfo& s) {
  auto run = std::make_unique<ShellRun>();
  run->req = s.req;
  run->id = s.head.id;
  run->ranks = s.R.rank_set().to_vector();
  run->executor = this;
  auto& r = static_cast<ShellRun&>(svc_.add(std::move(run)));
  r.timer = h_.clock().make_timer();
  r.kill_timer = h_.clock().make_timer();
  r.exec_log_timer = h_.clock().make_timer();
  name_run(r, s.head.userid);
  r.perilogs = !is_step(s.jobspec);
  // The time limit: SIGALRM, then SIGKILL after the kill timeout. (Every
  // timer is the run's: none fires once the run is gone.) A job found
  // again after its finish has no tasks left to limit: its epilogs may
  // run past the expiration.
  if (s.R.expiration > 0 && !(s.head.reattach && s.head.finished)) {
    r.timer->arm(std::max(0.0, s.R.expiration - h_.clock().wall()), [this, &r] {
      svc_.raise(r, ExceptionType::kTimeout, "resource allocation expired");
      kill_all(r, SIGALRM);
    });
  }
  if (s.head.reattach) {
    // A job ended before it started, found at a restart: what it left on
    // its ranks (a prolog or epilog) is seen to, and the ranks are released.
    r.origin = s.head.started ? ShellRun::Origin::kReattach : ShellRun::Origin::kSettle;
    // Where the stream stood, as the job manager recorded it: the ranks
    // it has back, its finish, a fatal exception (a cancel: the tasks are
    // killed once found, as they would have been).
    for (uint32_t rank : r.ranks) {
      if (s.head.released.contains(rank)) r.released.insert(rank);
    }
    r.finished = s.head.finished;
    r.fatal = r.fatal_before_restart = s.head.fatal;
    return find_shells(r);
  }
  launch(r, s.jobspec, s.R_json);
}

void ShellExecutor::signal(Run& base, int sig) {
  auto& r = static_cast<ShellRun&>(base);
  // Only the signal: escalation belongs to cancel, time limit and stop.
  for (uint32_t rank : r.ranks) {
    if (r.exited.count(rank) || !r.shells_started.count(rank)) continue;
    kill_shell(r.id, rank, sig);
  }
}

void ShellExecutor::cancel(Run& base) {
  auto& r = static_cast<ShellRun&>(base);
  if (!r.killing()) kill_all(r, SIGTERM);
}

void ShellExecutor::shutdown(Run& base) {
  auto& r = static_cast<ShellRun&>(base);
  uint64_t id = r.id, serial = r.serial;
  if (!r.unreached.empty() || !r.unreached_epilogs.empty() || !r.unreached_prologs.empty()) {
    // Ranks not back from a crash will not be: they are lost, not unkillable.
    lost_ranks(r);
    if (!run(id, serial)) return;
  }
  // A job whose tasks are all done (epilogs or the link still going) has
  // its result: it only has to be let go.
  if (r.finished) return;
  svc_.raise(r, ExceptionType::kExec, "the instance is shutting down");
  kill_all(r, SIGTERM);
}

void ShellExecutor::abandon(Run& base) { kill_all(static_cast<ShellRun&>(base), SIGKILL); }

void ShellExecutor::name_run(ShellRun& r, uint32_t userid) {
  r.ns = kvs_key::guest_namespace(JobId{r.id});
  r.userid = userid;
  IdSet all;
  for (uint32_t rank : r.ranks) all.insert(rank);
  r.all = all.encode();
}

void ShellExecutor::launch(ShellRun& r, const Json& jobspec, const Json& R) {
  uint64_t id = r.id;
  uint64_t serial = r.serial;
  auto alive = svc_.alive();
  if (r.ranks.empty()) {
    svc_.raise(r, ExceptionType::kExec, "R has no ranks");
    return link(r, Released::everything(true));
  }
  // The namespace is the job user's: the shells write its output there. It
  // is created while they start (the KVS serves requests in the order they
  // come, so a shell's first commit finds it); if it cannot be, the job
  // fails and its shells are killed.
  h_.rpc("kvs.namespace-create", Json{{"name", r.ns}, {"owner", r.userid}}, {},
         [this, alive, id, serial](const Message& created) {
           if (alive.expired() || !created.errnum || created.errnum == EEXIST) return;
           if (ShellRun* rp = run(id, serial)) {
             svc_.raise(*rp, ExceptionType::kExec, "cannot create the job's namespace: " + error_text(created));
           }
         });
  r.jobspec = jobspec;
  r.R_json = R;
  if (cfg_.prolog && r.perilogs) {
    // Every rank's prolog first; the shells once all have ended well.
    enter(r, ShellRun::Phase::kProlog);
    for (uint32_t rank : r.ranks) ask_perilog(r, rank, true);
    return;
  }
  start_shells(r);
}

void ShellExecutor::start_shells(ShellRun& r) {
  uint64_t id = r.id;
  uint64_t serial = r.serial;
  auto alive = svc_.alive();
  enter(r, ShellRun::Phase::kShells);
  Json jobspec = std::move(r.jobspec), R = std::move(r.R_json);
  r.jobspec = Json();
  r.R_json = Json();
  for (uint32_t rank : r.ranks) {
    Json info{
        {"id", id},          {"rank", rank},       {"jobspec", jobspec}, {"R", R},
        {"namespace", r.ns}, {"userid", r.userid}, {"ranks", r.all},     {"reattach_timeout", cfg_.reattach_timeout}};
    if (!r.perilogs) info["perilogs"] = false;
    RpcOptions opts;
    opts.nodeid = rank;
    opts.streaming = true;
    h_.rpc("shell.launch", Json{{"id", id}, {"info", std::move(info)}}, opts,
           [this, alive, id, serial, rank](const Message& m) {
             // Answers from the shells of a run that is gone (torn down
             // and started again) are not this run's.
             if (alive.expired()) return;
             if (ShellRun* rp = run(id, serial)) return on_shell(*rp, rank, m);
             stale_shell(id, rank, m);
           });
  }
}

// A shell that came up (or was found) for a run that is gone: nobody would
// watch it, so it goes.
void ShellExecutor::stale_shell(uint64_t id, uint32_t rank, const Message& m) {
  if (m.errnum) return;
  auto p = parse_json(m.payload);
  std::string type = p.ok() && p->is_object() ? p->value("type", "") : "";
  if (type != "started" && type != "reattached") return;
  spdlog::warn("job-exec: job {}: killing its shell on rank {}, which came after its run ended", encode_f58(JobId{id}),
               rank);
  kill_shell(id, rank, SIGKILL);
}

void ShellExecutor::on_shell(ShellRun& r, uint32_t rank, const Message& m) {
  uint64_t id = r.id;
  bool reattach = r.origin != ShellRun::Origin::kLaunch;
  if (m.errnum == ENODATA) return;
  if (m.errnum) {
    if (r.released.count(rank)) return;
    if (m.errnum == EHOSTUNREACH && r.shells_started.count(rank)) {
      svc_.raise(r, ExceptionType::kNodeFailure, "rank " + std::to_string(rank) + " was lost");
    } else if (reattach && !r.shells_started.count(rank) && m.errnum == EHOSTUNREACH &&
               h_.clock().now() < r.reattach_deadline) {
      // Its broker is not back yet: asked again when it is online (or in a
      // second: the online event may have come before this answer).
      r.unreached.insert(rank);
      return retry_unreached(r);
    } else if (r.origin == ShellRun::Origin::kSettle && !r.shells_started.count(rank) && m.errnum != EHOSTUNREACH) {
      // No shell there of a job that ended before it started: the rank is
      // settled as one whose shell had exited (its epilog runs again unless
      // it had ended).
      r.exited[rank] = 0;
      return settle_rank(r, rank);
    } else if (reattach && !r.shells_started.count(rank)) {
      svc_.raise(r, ExceptionType::kExec,
                 "the job was lost in the restart: rank " + std::to_string(rank) + ": " + error_text(m));
    } else {
      svc_.raise(r, ExceptionType::kExec, "rank " + std::to_string(rank) + ": " + error_text(m));
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
    if (r.killing()) {
      kill_shell(id, rank, SIGKILL);
      if (!r.kill_timer->armed()) r.kill_timer->arm(cfg_.kill_timeout, [this, &r] { give_up(r); });
    }
    r.shells_started.insert(rank);
    if (r.origin == ShellRun::Origin::kSettle) {
      // A shell of a job that ended before it started goes at once (no
      // start, no finish; its rank is released after its epilog).
      if (!r.killing()) kill_all(r, SIGTERM);
      return;
    }
    if (r.shells_started.size() + r.gone_before == r.ranks.size() && !r.started &&
        (!r.fatal || r.fatal_before_restart)) {
      if (!reattach) return svc_.respond(r, Started{});
      spdlog::info("job-exec: job {}: found its shells again", encode_f58(JobId{id}));
      svc_.respond(r, Reattached{});
      if (r.fatal_before_restart && !r.killing()) kill_all(r, SIGTERM);
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
    if (failed) {
      svc_.raise(r, ExceptionType::kExec, "rank " + std::to_string(rank) + ": " + (*p)["error"].get<std::string>());
    }
    int status = st;
    if (WIFEXITED(st)) {
      int code = WEXITSTATUS(st);
      status = code > 128 && code <= 128 + 64 ? code - 128 : code << 8;
    }
    log_exec(r, "shell-exit", Json{{"rank", rank}, {"status", status}});
    shell_exited(r, rank, status);
    if (failed) kill_all(r, SIGKILL);
    if (status != 0) watch_failed_exit(r, rank, status);
    // With an epilog, the rank is free once it is done.
    if (!p->value("epilog", false)) return rank_free(r, rank);
    log_exec(r, "epilog-start", Json{{"rank", rank}});
  } else if (type == "epilog") {
    int st = (*p)["status"].is_number_integer() ? (*p)["status"].get<int>() : 0;
    epilog_done(r, rank, st, p->value("timeout", false));
  }
}

void ShellExecutor::shell_exited(ShellRun& r, uint32_t rank, int status) {
  if (r.exited.count(rank)) return;
  r.exited[rank] = status;
  // All shells have exited: the job's result is known now, while epilogs
  // may still run.
  if (r.exited.size() == r.ranks.size()) send_finish(r);
}

void ShellExecutor::send_finish(ShellRun& r) {
  if (r.finished || !r.started) return;
  r.timer->cancel();
  r.kill_timer->cancel();
  // The worst as a shell ranks them: a task killed by a signal (128+N)
  // above any exit code up to 128.
  int worst = 0;
  for (auto& [rank, st] : r.exited) {
    if (shell_exit_code(st) > shell_exit_code(worst)) worst = st;
  }
  log_exec(r, "complete", Json{{"status", worst}});
  svc_.respond(r, Finished{worst});
}

void ShellExecutor::rank_free(ShellRun& r, uint32_t rank) {
  if (!r.released.insert(rank).second) return;
  // This rank's shell and epilog are done: it goes back to the scheduler
  // now, the last one with the link.
  if (r.released.size() < r.ranks.size()) return svc_.respond(r, Released::rank(rank, false));
  link(r, Released::rank(rank, true));
}

// Every rank is free: finish (if the job started and it was not sent), the
// guest namespace linked into the job's KVS directory, the final release.
void ShellExecutor::link(ShellRun& r, const Released& last) {
  if (r.phase == ShellRun::Phase::kLinking) return;
  uint64_t id = r.id;
  uint64_t serial = r.serial;
  r.timer->cancel();
  r.kill_timer->cancel();
  send_finish(r);
  r.exec_log_timer->cancel();
  enter(r, ShellRun::Phase::kLinking);
  auto alive = svc_.alive();
  std::string guest = kvs_key::job_guest(JobId{id});
  h_.rpc("kvs.namespace-link", Json{{"namespace", r.ns}, {"key", guest}}, {},
         [this, alive, id, serial, last](const Message& linked) {
           ShellRun* rp = alive.expired() ? nullptr : run(id, serial);
           if (!rp) return;
           if (linked.errnum && linked.errnum != ENOENT) {
             spdlog::warn("job-exec: job {}: cannot link its namespace: {}", encode_f58(JobId{id}), error_text(linked));
           }
           h_.rpc("kvs.namespace-remove", Json{{"name", rp->ns}}, {}, [](const Message&) {});
           svc_.end(*rp, last);
         });
  // The rest of the exec eventlog is appended to the linked copy: sent
  // right after the link, it is stored with it (in the same or the next
  // transaction) at no extra wait.
  append_linked_exec_log(id, std::move(r.exec_log));
  r.exec_log.clear();
}

void ShellExecutor::log_exec(ShellRun& r, const char* name, Json context) {
  r.exec_log += format_event(EventEntry{h_.clock().wall(), name, std::move(context)});
  if (r.exec_log_timer->armed()) return;
  r.exec_log_timer->arm(kExecLogDelay, [this, &r] { store_exec_log(r); });
}

void ShellExecutor::commit_exec_log(const std::string& ns, const std::string& key, std::string text,
                                    std::function<void(const Message&)> done) {
  Json ops = Json::array({Json{{"op", "append"}, {"key", key}, {"value", std::move(text)}}});
  h_.rpc("kvs.commit", Json{{"namespace", ns}, {"ops", std::move(ops)}}, {}, std::move(done));
}

void ShellExecutor::append_linked_exec_log(uint64_t id, std::string text) {
  if (text.empty()) return;
  commit_exec_log(
      kvs_key::kPrimaryNamespace, kvs_key::job_guest_exec_eventlog(JobId{id}), std::move(text), [id](const Message& m) {
        if (m.errnum) {
          spdlog::warn("job-exec: job {}: cannot store its exec eventlog: {}", encode_f58(JobId{id}), error_text(m));
        }
      });
}

// The exec eventlog entries so far to the guest namespace, for whoever
// follows it while the job runs, one commit at a time (entries logged
// meanwhile go when it is answered). On an error they stay for the next
// try (at the latest with the link).
void ShellExecutor::store_exec_log(ShellRun& r) {
  if (r.exec_log.empty() || r.exec_log_sending) return;
  r.exec_log_sending = true;
  std::string text = std::move(r.exec_log);
  r.exec_log.clear();
  auto alive = svc_.alive();
  uint64_t id = r.id, serial = r.serial;
  commit_exec_log(r.ns, kvs_key::kExecEventlog, text, [this, alive, id, serial, text](const Message& m) {
    ShellRun* rp = alive.expired() ? nullptr : run(id, serial);
    if (!rp) return;
    rp->exec_log_sending = false;
    bool linking = rp->phase == ShellRun::Phase::kLinking;
    if (m.errnum && linking) {
      // Too late for the namespace: after the rest in the linked copy.
      spdlog::warn("job-exec: job {}: exec eventlog entries stored out of order: {}", encode_f58(JobId{id}),
                   error_text(m));
      return append_linked_exec_log(id, text);
    }
    if (m.errnum) rp->exec_log = text + rp->exec_log;  // with the next ones
    if (!linking && !rp->exec_log.empty() && !rp->exec_log_timer->armed()) {
      rp->exec_log_timer->arm(kExecLogDelay, [this, rp] { store_exec_log(*rp); });
    }
  });
}

void ShellExecutor::kill_shell(uint64_t id, uint32_t rank, int sig) {
  h_.rpc("shell.kill", Json{{"id", id}, {"signal", sig}}, RpcOptions{.nodeid = rank}, [](const Message&) {});
}

void ShellExecutor::drain(const std::string& ranks, const std::string& reason) {
  h_.rpc("sched.drain", Json{{"ranks", ranks}, {"reason", reason}}, {}, [](const Message&) {});
}

void ShellExecutor::kill_all(ShellRun& r, int sig) {
  uint64_t id = r.id;
  if (!r.launched()) {
    // No shell yet: the prologs that run are killed, with whatever they
    // started (their process groups). Their ends say when the ranks' epilogs run.
    if (!r.killing()) r.kill = ShellRun::Kill::kSignalled;
    for (uint32_t rank : r.prolog_running) {
      if (r.prolog_killed.insert(rank).second) kill_shell(id, rank, SIGKILL);
    }
    return;
  }
  if (sig != SIGKILL && !r.killing()) {
    r.kill_timer->arm(cfg_.kill_timeout, [this, &r] { kill_all(r, SIGKILL); });
  }
  if (!r.killing()) r.kill = ShellRun::Kill::kSignalled;
  if (sig == SIGKILL && r.kill != ShellRun::Kill::kSigkilled) {
    // What SIGKILL does not end within the kill timeout cannot be killed.
    r.kill = ShellRun::Kill::kSigkilled;
    r.kill_timer->arm(cfg_.kill_timeout, [this, &r] { give_up(r); });
  }
  for (uint32_t rank : r.ranks) {
    if (r.exited.count(rank) || !r.shells_started.count(rank)) continue;
    kill_shell(id, rank, sig);
  }
}

// Ranks whose shell outlived SIGKILL by the kill timeout: they are drained
// ("unkillable processes") and released, so the job still completes.
void ShellExecutor::give_up(ShellRun& r) {
  // A shell still being looked for after a restart is not stuck: it is
  // killed when found, or its rank is lost when it is not.
  std::vector<uint32_t> stuck;
  for (uint32_t rank : r.ranks) {
    if (!r.exited.count(rank) && r.shells_started.count(rank)) stuck.push_back(rank);
  }
  if (stuck.empty()) return;
  IdSet ranks;
  for (uint32_t rank : stuck) ranks.insert(rank);
  std::string why = "unkillable processes (job " + encode_f58(JobId{r.id}) + ")";
  spdlog::error("job-exec: job {}: ranks {}: {}; draining them", encode_f58(JobId{r.id}), ranks.encode(), why);
  drain(ranks.encode(), why);
  svc_.respond(r,
               Raised(Severity::kNonFatal, ExceptionType::kExec, "ranks " + ranks.encode() + ": unkillable processes"));
  for (uint32_t rank : stuck) {
    shell_exited(r, rank, SIGKILL);
    rank_free(r, rank);
  }
}

}  // namespace loom::job_exec
