// The shell executor after a crash (shell_executor.h; docs/protocols/exec.md,
// item 8): a job that was running is found again from what the job
// manager says of its stream, job-exec's exec eventlog, and its shells,
// which outlived their brokers.
#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <csignal>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/fluid.h"
#include "eventlog/eventlog.h"
#include "idset/idset.h"
#include "job_exec/shell_executor.h"
#include "kvs/layout.h"
#include "msg/payload.h"

namespace loom::job_exec {

// A job that was running when the instance went down (docs/protocols/exec.md): its
// shells kept their tasks and connected to their restarted brokers. The
// start says where the stream stood (the ranks released, finish, a fatal
// exception), the job's exec eventlog, job-exec's own record, which shells
// had exited and which epilogs had ended; every other rank's shell is
// asked for, and once all are found the stream goes on as if nothing
// happened. A shell that did not come back makes the job lost: an
// exception saying so, the others killed, everything released.
void ShellExecutor::find_shells(ShellRun& r) {
  uint64_t id = r.id;
  if (r.origin == ShellRun::Origin::kSettle) {
    // Ended before it started: its namespace, where its exec eventlog
    // goes, may never have been made.
    h_.rpc("kvs.namespace-create", Json{{"name", r.ns}, {"owner", r.userid}}, {}, [](const Message&) {});
  }
  uint64_t serial = r.serial;
  auto alive = svc_.alive();
  // The value of a lookup's answer, "" if there is none.
  auto value_of = [](const Message& m) {
    auto v = m.errnum ? Result<Json>(Error{m.errnum, error_text(m)}) : parse_json(m.payload);
    return v.ok() && v->is_object() ? v->value("value", std::string()) : std::string();
  };
  // The exec eventlog: in the job's namespace, or in the linked copy if the
  // crash came after the link. Only the instance writes it (its keys are
  // refused to the job's user), so a shell-exit found there is a shell
  // that did exit.
  h_.rpc("kvs.lookup", Json{{"namespace", r.ns}, {"key", kvs_key::kExecEventlog}}, {}, [=, this](const Message& e) {
    ShellRun* rp = alive.expired() ? nullptr : run(id, serial);
    if (!rp) return;
    if (!e.errnum) return reattach_ranks(*rp, value_of(e));
    std::string linked = kvs_key::job_guest_exec_eventlog(JobId{id});
    h_.rpc("kvs.lookup", Json{{"key", linked}}, {}, [=, this](const Message& l) {
      if (ShellRun* rp = alive.expired() ? nullptr : run(id, serial)) reattach_ranks(*rp, value_of(l));
    });
  });
}

void ShellExecutor::reattach_ranks(ShellRun& r, const std::string& exec_eventlog) {
  uint64_t id = r.id;
  std::string job = encode_f58(JobId{id});
  // Which shells had exited (and with what) and which epilogs had ended
  // before the crash. (Every field is checked for its type: the log is
  // read back from the KVS, and a wrong type must not throw inside the
  // broker.)
  std::map<uint32_t, int> exits;
  LineSplitter exec_lines;
  for (auto& line : exec_lines.feed(exec_eventlog)) {
    auto e = parse_event(line);
    if (!e.ok() || !e->context.is_object() || !e->context["rank"].is_number_unsigned()) continue;
    uint32_t rank = e->context["rank"].get<uint32_t>();
    int st = e->context["status"].is_number_integer() ? e->context["status"].get<int>() : 0;
    if (e->name == "shell-exit") exits[rank] = st;
    auto timeout = get_bool(e->context, "timeout", false);
    if (e->name == "epilog-finish") r.recorded_epilogs[rank] = {st, timeout.ok() && *timeout};
  }
  // Ranks whose shell had exited count as done: they are not asked for, and
  // each is free once its epilog has ended (one that had not is run again:
  // its end, and its result, went with the broker). In a job that ended
  // before it started every other rank is asked too (a shell spawned just
  // before the crash may not be recorded); where there is none, the rank is
  // settled in the same way (on_shell).
  std::vector<uint32_t> done, ask;
  for (uint32_t rank : r.ranks) {
    if (r.released.count(rank)) {
      if (!r.finished && !exits.count(rank)) {
        // Its status went with the broker.
        spdlog::warn("job-exec: job {}: rank {}'s exit status was lost in the restart", job, rank);
      }
      r.exited[rank] = exits.count(rank) ? exits[rank] : 0;
      ++r.gone_before;
    } else if (r.finished || exits.count(rank)) {
      r.exited[rank] = exits.count(rank) ? exits[rank] : 0;
      ++r.gone_before;
      done.push_back(rank);
    } else {
      ask.push_back(rank);
    }
  }
  enter(r, ShellRun::Phase::kShells);
  // Ranks that are not back yet are asked again when they come online, for
  // as long as their shells wait for them.
  await_ranks(r);
  if (ask.empty()) {
    // Every shell had exited: only epilogs, releases or the final link were left.
    if (r.finished) {
      spdlog::info("job-exec: job {}: had finished before the restart; its ranks are released after their epilogs",
                   job);
    }
    if (r.origin == ShellRun::Origin::kSettle) {
      spdlog::info("job-exec: job {}: ended before it started; its ranks are released after their epilogs", job);
    } else {
      svc_.respond(r, Reattached{});
      send_finish(r);
    }
    if (done.empty()) return link(r, Released::everything(true));  // only the final release was missing
  } else {
    for (uint32_t rank : ask) ask_shell(r, rank);
  }
  for (uint32_t rank : done) {
    if (exits.count(rank) && exits[rank] != 0) watch_failed_exit(r, rank, exits[rank]);
    settle_rank(r, rank);
  }
}

// A rank whose shell exited before the restart and which was not released:
// its epilog, if it had ended, counts (a failed one drains the rank again);
// otherwise it runs again, and the rank is free when it ends.
void ShellExecutor::settle_rank(ShellRun& r, uint32_t rank) {
  auto ep = r.recorded_epilogs.find(rank);
  if (ep == r.recorded_epilogs.end()) return ask_perilog(r, rank, false);
  auto [st, timeout] = ep->second;
  if (st != 0 || timeout) {
    std::string why = timeout ? "epilog timed out" : "epilog " + describe_end(st);
    drain(std::to_string(rank), why + " (job " + encode_f58(JobId{r.id}) + ")");
  }
  rank_free(r, rank);
}

void ShellExecutor::ask_shell(ShellRun& r, uint32_t rank) {
  uint64_t id = r.id;
  ask_rank(r, rank, "shell.reattach", [this, id, rank](ShellRun* rp, const Message& m) {
    if (rp) return on_shell(*rp, rank, m);
    stale_shell(id, rank, m);
  });
}

void ShellExecutor::online(Run& base, uint32_t rank) {
  auto& r = static_cast<ShellRun&>(base);
  if (r.unreached.erase(rank)) ask_shell(r, rank);
  if (r.unreached_epilogs.erase(rank)) ask_perilog(r, rank, false);
  if (r.unreached_prologs.erase(rank)) ask_perilog(r, rank, true);
}

void ShellExecutor::await_ranks(ShellRun& r) {
  if (r.reattach_timer) return;
  r.reattach_deadline = h_.clock().now() + cfg_.reattach_timeout;
  r.reattach_timer = h_.clock().make_timer();
  r.reattach_timer->arm(cfg_.reattach_timeout, [this, &r] { lost_ranks(r); });
  r.retry_timer = h_.clock().make_timer();
}

// Ranks that did not come back while their shells waited for them.
void ShellExecutor::lost_ranks(ShellRun& r) {
  uint64_t id = r.id, serial = r.serial;
  std::string job = encode_f58(JobId{id});
  // Epilogs to run again where the broker did not come back: those ranks
  // are let go (their epilog cannot run).
  std::set<uint32_t> no_epilog = std::move(r.unreached_epilogs);
  r.unreached_epilogs.clear();
  for (uint32_t rank : no_epilog) {
    spdlog::warn("job-exec: job {}: rank {} did not come back to run its epilog again", job, rank);
    rank_free(r, rank);
  }
  // Prologs that could not be asked for: the job cannot start there.
  if (!r.unreached_prologs.empty()) {
    IdSet ranks;
    for (uint32_t rank : r.unreached_prologs) {
      ranks.insert(rank);
      r.no_epilog.insert(rank);
      r.prolog_done.insert(rank);
    }
    r.unreached_prologs.clear();
    svc_.raise(r, ExceptionType::kNodeFailure, "ranks " + ranks.encode() + " did not come back to run the prolog");
    kill_all(r, SIGKILL);
    prolog_progress(r);
  }
  if (!run(id, serial) || r.unreached.empty()) return;
  std::set<uint32_t> lost = std::move(r.unreached);
  r.unreached.clear();
  IdSet ranks;
  for (uint32_t rank : lost) ranks.insert(rank);
  svc_.raise(r, ExceptionType::kExec,
             "the job was lost in the restart: ranks " + ranks.encode() + " did not come back");
  kill_all(r, SIGKILL);
  for (uint32_t rank : lost) {
    shell_exited(r, rank, SIGKILL);
    rank_free(r, rank);
  }
}

void ShellExecutor::retry_unreached(ShellRun& r) {
  if (r.retry_timer->armed()) return;
  r.retry_timer->arm(1.0, [this, &r] {
    std::set<uint32_t> again = std::move(r.unreached);
    r.unreached.clear();
    std::set<uint32_t> epilogs = std::move(r.unreached_epilogs);
    r.unreached_epilogs.clear();
    std::set<uint32_t> prologs = std::move(r.unreached_prologs);
    r.unreached_prologs.clear();
    for (uint32_t rk : again) ask_shell(r, rk);
    for (uint32_t rk : epilogs) ask_perilog(r, rk, false);
    for (uint32_t rk : prologs) ask_perilog(r, rk, true);
  });
}

}  // namespace loom::job_exec
