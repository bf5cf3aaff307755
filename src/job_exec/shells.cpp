// Real execution (docs/protocols/exec.md, "job-exec: real execution"): a
// loom-shell on every rank of R through the shell launch service, each rank
// released once its shell and epilog are done, the kill escalation, and the
// job's exec eventlog.
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
#include "job_exec/impl.h"
#include "msg/payload.h"

namespace loom {

// A fatal exception from us (the job manager publishes it back as the
// job-exception event, which kills the shells).
void JobExec::Impl::raise(Run& r, ExceptionType type, const std::string& note) {
  if (r.fatal) return;
  r.fatal = true;
  respond(r.req, r.id, Raised(Severity::kFatal, type, note));
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
    raise(r, ExceptionType::kExec, "R has no ranks");
    return finish_real(id, Released::everything(true));
  }
  // The namespace is the job user's: the shells write its output there. It
  // is created while they start (the KVS serves requests in the order they
  // come, so a shell's first commit finds it); if it cannot be, the job
  // fails and its shells are killed.
  h_.rpc("kvs.namespace-create", Json{{"name", r.ns}, {"owner", userid}}, {},
         [this, alive, id, serial](const Message& created) {
           if (alive.expired() || !created.errnum || created.errnum == EEXIST) return;
           if (Run* rp = current(id, serial)) {
             raise(*rp, ExceptionType::kExec, "cannot create the job's namespace: " + error_text(created));
           }
         });
  r.jobspec = jobspec;
  r.R_json = R;
  if (cfg_.prolog) {
    // Every rank's prolog first; the shells once all have ended well.
    r.in_prolog = true;
    for (uint32_t rank : r.ranks) ask_perilog(r, rank, true);
    return;
  }
  start_shells(r);
}

void JobExec::Impl::start_shells(Run& r) {
  uint64_t id = r.id;
  uint64_t serial = r.serial;
  auto alive = std::weak_ptr<int>(alive_);
  r.launched = true;
  Json jobspec = std::move(r.jobspec), R = std::move(r.R_json);
  r.jobspec = Json();
  r.R_json = Json();
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

void JobExec::Impl::on_shell(uint64_t id, uint32_t rank, const Message& m) {
  auto it = runs_.find(id);
  if (it == runs_.end()) return;
  Run& r = it->second;
  if (m.errnum == ENODATA) return;
  if (m.errnum) {
    if (r.released.count(rank)) return;
    if (m.errnum == EHOSTUNREACH && r.shells_started.count(rank)) {
      raise(r, ExceptionType::kNodeFailure, "rank " + std::to_string(rank) + " was lost");
    } else if (r.reattach && !r.shells_started.count(rank) && m.errnum == EHOSTUNREACH &&
               h_.clock().now() < r.reattach_deadline) {
      // Its broker is not back yet: asked again when it is online (or in a
      // second: the online event may have come before this answer).
      r.unreached.insert(rank);
      return retry_unreached(r);
    } else if (r.never_started && !r.shells_started.count(rank) && m.errnum != EHOSTUNREACH) {
      // No shell there of a job that ended before it started: the rank is
      // settled as one whose shell had exited (its epilog runs again unless
      // it had ended).
      r.exited[rank] = 0;
      return settle_rank(r, rank, r.recorded_epilogs);
    } else if (r.reattach && !r.shells_started.count(rank)) {
      raise(r, ExceptionType::kExec,
            "the job was lost in the restart: rank " + std::to_string(rank) + ": " + error_text(m));
    } else {
      raise(r, ExceptionType::kExec, "rank " + std::to_string(rank) + ": " + error_text(m));
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
    if (r.never_started) {
      // A shell of a job that ended before it started goes at once (no
      // start, no finish; its rank is released after its epilog).
      if (!r.killing) kill_all(r, SIGTERM);
      return;
    }
    if (r.shells_started.size() + r.gone_before == r.ranks.size() && !r.started && (!r.fatal || r.kill_found)) {
      if (!r.reattach) {
        begin(r);
      } else {
        r.started = true;
        spdlog::info("job-exec: job {}: found its shells again", id);
        respond(r.req, id, Reattached{});
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
    if (failed)
      raise(r, ExceptionType::kExec, "rank " + std::to_string(rank) + ": " + (*p)["error"].get<std::string>());
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
  respond(r.req, r.id, Finished{worst});
}

void JobExec::Impl::rank_free(Run& r, uint32_t rank) {
  if (r.released.count(rank)) return;
  if (r.released.size() + 1 < r.ranks.size()) {
    // This rank's shell and epilog are done: it goes back to the scheduler now.
    r.released.insert(rank);
    respond(r.req, r.id, Released::rank(rank, false));
    return;
  }
  r.released.insert(rank);
  finish_real(r.id, Released::rank(rank, true));
}

// Every rank is free: finish (if the job started and it was not sent), the
// guest namespace linked into the job's KVS directory, the final release.
void JobExec::Impl::finish_real(uint64_t id, const Released& last) {
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
         [this, alive, id, serial, last](const Message& linked) {
           if (alive.expired() || !current(id, serial)) return;
           auto it = runs_.find(id);
           if (linked.errnum && linked.errnum != ENOENT) {
             spdlog::warn("job-exec: job {}: cannot link its namespace: {}", id, error_text(linked));
           }
           Message req = it->second.req;
           std::string ns = it->second.ns;
           h_.rpc("kvs.namespace-remove", Json{{"name", ns}}, {}, [](const Message&) {});
           respond(req, id, last);
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
  if (!r.launched) {
    // No shell yet: the prologs that run are killed, with whatever they
    // started (their process groups). Their ends say when the ranks' epilogs run.
    r.killing = true;
    for (uint32_t rank : r.prolog_running) {
      if (r.prolog_killed.insert(rank).second) kill_shell(id, rank, SIGKILL);
    }
    return;
  }
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
  respond(it->second.req, id,
          Raised(Severity::kNonFatal, ExceptionType::kExec, "ranks " + ranks.encode() + ": unkillable processes"));
  for (uint32_t rank : stuck) {
    auto cur = runs_.find(id);
    if (cur == runs_.end()) return;
    shell_exited(cur->second, rank, SIGKILL);
    rank_free(cur->second, rank);
  }
}

}  // namespace loom
