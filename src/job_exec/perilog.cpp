// The shell executor's prologs and epilogs (shell_executor.h;
// docs/protocols/exec.md, items 1, 5 and 8), and exec.shell-exit-timeout
// (item 6).
#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <csignal>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "base/fluid.h"
#include "job_exec/shell_executor.h"
#include "msg/payload.h"

namespace loom::job_exec {

void ShellExecutor::ask_rank(ShellRun& r, uint32_t rank, const char* topic,
                             std::function<void(ShellRun*, const Message&)> answer) {
  auto alive = svc_.alive();
  uint64_t id = r.id, serial = r.serial;
  RpcOptions opts;
  opts.nodeid = rank;
  opts.streaming = true;
  Json info{{"userid", r.userid}, {"ranks", r.all}};
  if (!r.perilogs) info["perilogs"] = false;
  h_.rpc(topic, Json{{"id", id}, {"info", std::move(info)}}, opts,
         [this, alive, id, serial, answer = std::move(answer)](const Message& m) {
           if (!alive.expired()) answer(run(id, serial), m);
         });
}

void ShellExecutor::ask_perilog(ShellRun& r, uint32_t rank, bool prolog) {
  uint64_t id = r.id;
  ask_rank(r, rank, prolog ? "shell.prolog" : "shell.epilog", [this, id, rank, prolog](ShellRun* rp, const Message& m) {
    if (!rp) {
      // A prolog of a run that is gone: nobody would wait for it.
      if (prolog && !m.errnum && payload_object(m).ok() && payload_object(m)->value("type", "") == "prolog-start") {
        kill_shell(id, rank, SIGKILL);
      }
      return;
    }
    if (prolog) return on_prolog(*rp, rank, m);
    on_epilog(*rp, rank, m);
  });
}

// The prolog of `rank` (docs/protocols/exec.md): its start and end go to the
// exec eventlog; one that fails or times out drains the rank and fails the
// job (the other ranks' prologs are killed); one we killed (a cancel, the
// time limit) is no failure.
void ShellExecutor::on_prolog(ShellRun& r, uint32_t rank, const Message& m) {
  if (m.errnum == EHOSTUNREACH) {
    // After a restart, a job that had not started starts again, maybe
    // before all its ranks are back: each is asked again when it is online,
    // until the reattach timeout (then the job fails, in lost_ranks).
    await_ranks(r);
    if (h_.clock().now() < r.reattach_deadline) {
      r.unreached_prologs.insert(rank);
      return retry_unreached(r);
    }
  }
  if (m.errnum) {
    if (m.errnum != ENODATA) {
      // The rank's launch service could not run it (or the rank is gone):
      // the job cannot start there; no epilog runs there either.
      r.no_epilog.insert(rank);
      svc_.raise(r, m.errnum == EHOSTUNREACH ? ExceptionType::kNodeFailure : ExceptionType::kExec,
                 "rank " + std::to_string(rank) + ": prolog: " + error_text(m));
      kill_all(r, SIGKILL);
    }
    // ENODATA alone: no prolog is configured on that rank.
    r.prolog_running.erase(rank);
    r.prolog_done.insert(rank);
    return prolog_progress(r);
  }
  auto p = parse_json(m.payload);
  if (!p.ok() || !p->is_object()) return;
  std::string type = p->value("type", "");
  if (type == "prolog-start") {
    log_exec(r, "prolog-start", Json{{"rank", rank}});
    r.prolog_running.insert(rank);
    // Asked for before a cancel that came meanwhile.
    if (r.killing() && r.prolog_killed.insert(rank).second) kill_shell(r.id, rank, SIGKILL);
  } else if (type == "prolog") {
    int st = (*p)["status"].is_number_integer() ? (*p)["status"].get<int>() : 0;
    bool timeout = p->value("timeout", false);
    Json ctx{{"rank", rank}, {"status", st}};
    if (timeout) ctx["timeout"] = true;
    log_exec(r, "prolog-finish", std::move(ctx));
    r.prolog_running.erase(rank);
    r.prolog_done.insert(rank);
    bool killed = r.prolog_killed.count(rank) && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
    if (timeout || (st != 0 && !killed)) {
      std::string why = timeout ? "prolog timed out" : "prolog " + describe_end(st);
      std::string job = encode_f58(JobId{r.id});
      spdlog::warn("job-exec: job {}: rank {}: {}; draining the rank", job, rank, why);
      drain(std::to_string(rank), (timeout ? "prolog timed out for job " : "prolog failed for job ") + job);
      svc_.raise(r, ExceptionType::kProlog, "rank " + std::to_string(rank) + ": " + why);
      kill_all(r, SIGKILL);
    }
    prolog_progress(r);
  }
}

// Every rank's prolog has ended: the shells start, or, if the job failed
// meanwhile (a prolog, a cancel), every rank's epilog runs and releases it.
void ShellExecutor::prolog_progress(ShellRun& r) {
  if (r.phase != ShellRun::Phase::kProlog || r.prolog_done.size() < r.ranks.size()) return;
  if (!r.fatal) return start_shells(r);
  enter(r, ShellRun::Phase::kShells);  // none will start: each rank's epilog, then its release
  r.jobspec = Json();
  r.R_json = Json();
  for (uint32_t rank : std::vector<uint32_t>(r.ranks)) {
    if (r.no_epilog.count(rank)) {
      rank_free(r, rank);
    } else {
      ask_perilog(r, rank, false);
    }
  }
}

// An epilog asked for through shell.epilog: its rank is free once it ends
// (at once where none is configured, or the rank cannot run one).
void ShellExecutor::on_epilog(ShellRun& r, uint32_t rank, const Message& m) {
  if (m.errnum) {
    if (m.errnum == EHOSTUNREACH && r.origin != ShellRun::Origin::kLaunch && h_.clock().now() < r.reattach_deadline) {
      // After a crash, its broker is not back yet: asked again when it is.
      r.unreached_epilogs.insert(rank);
      return retry_unreached(r);
    }
    if (m.errnum != ENODATA) {
      spdlog::warn("job-exec: job {}: rank {}: cannot run its epilog: {}", encode_f58(JobId{r.id}), rank,
                   error_text(m));
    }
    return rank_free(r, rank);
  }
  auto p = parse_json(m.payload);
  if (!p.ok() || !p->is_object()) return;
  std::string type = p->value("type", "");
  if (type == "epilog-start") {
    log_exec(r, "epilog-start", Json{{"rank", rank}});
  } else if (type == "epilog") {
    int st = (*p)["status"].is_number_integer() ? (*p)["status"].get<int>() : 0;
    epilog_done(r, rank, st, p->value("timeout", false));
  }
}

// A rank's epilog has ended: a failed or timed-out one drains the rank and
// gives the job a non-fatal `epilog` exception; the rank is free either way.
void ShellExecutor::epilog_done(ShellRun& r, uint32_t rank, int st, bool timeout) {
  Json ctx{{"rank", rank}, {"status", st}};
  if (timeout) ctx["timeout"] = true;
  log_exec(r, "epilog-finish", std::move(ctx));
  if (st != 0 || timeout) {
    std::string why = timeout ? "epilog timed out" : "epilog " + describe_end(st);
    spdlog::warn("job-exec: job {}: rank {}: {}; draining the rank", encode_f58(JobId{r.id}), rank, why);
    drain(std::to_string(rank), why + " (job " + encode_f58(JobId{r.id}) + ")");
    svc_.respond(r, Raised(Severity::kNonFatal, ExceptionType::kEpilog, "rank " + std::to_string(rank) + ": " + why));
  }
  rank_free(r, rank);
}

// A shell that exited with a failure while others still run: if they still
// run exec.shell-exit-timeout later, the job fails and they are killed, so
// that a lost shell does not hold the other nodes for the whole time limit.
void ShellExecutor::watch_failed_exit(ShellRun& r, uint32_t rank, int status) {
  if (cfg_.shell_exit_timeout <= 0 || r.fatal || r.exit_timer || r.exited.size() >= r.ranks.size()) return;
  r.exit_timer = h_.clock().make_timer();
  r.exit_timer->arm(cfg_.shell_exit_timeout, [this, &r, rank, status] {
    if (r.fatal || r.finished || r.exited.size() >= r.ranks.size()) return;
    char secs[32];
    std::snprintf(secs, sizeof secs, "%g", cfg_.shell_exit_timeout);
    std::string how = WIFSIGNALED(status) ? "was " + describe_end(status) : describe_end(status);
    spdlog::warn("job-exec: job {}: rank {}'s shell {}; killing the other ranks", encode_f58(JobId{r.id}), rank, how);
    svc_.raise(r, ExceptionType::kExec,
               "rank " + std::to_string(rank) + ": its shell " + how + " and the other ranks still ran " + secs +
                   " s later (exec.shell-exit-timeout)");
    kill_all(r, SIGTERM);
  });
}

}  // namespace loom::job_exec
