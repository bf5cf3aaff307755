// Prologs and epilogs (docs/protocols/exec.md): the configured commands a
// rank runs for a job before its shell starts (prolog) and after it exits
// (epilog). The shell launch service (launcher.h) runs them through this.
//
// Each runs as the broker's user in a session of its own (its process
// group is the perilog and everything it starts) with the broker's
// environment and LOOM_JOB_ID, LOOM_JOB_USERID, LOOM_JOB_RANKS, LOOM_RANK,
// LOOM_URI (this broker) and LOOM_PERILOG (`prolog` or `epilog`) set. Past
// its time limit its process group gets SIGKILL.
//
// A perilog outlives a broker that dies (its own session). The environment
// names its job, its rank and its broker's socket, which a restarted broker
// listens on again: end_orphans() finds such leftovers by it and kills them,
// so that a job's prolog or epilog never runs twice at once on a rank.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "base/clock.h"
#include "base/result.h"
#include "msg/json.h"

namespace asio {
class io_context;
}

namespace loom {

enum class PerilogKind { kProlog, kEpilog };
const char* perilog_name(PerilogKind kind);  // "prolog", "epilog"

class Perilogs {
 public:
  // `local_uri`: this broker's socket (LOOM_URI); `rank`: this broker's rank.
  Perilogs(asio::io_context& io, Clock& clock, std::string local_uri, uint32_t rank);
  ~Perilogs();
  Perilogs(const Perilogs&) = delete;
  Perilogs& operator=(const Perilogs&) = delete;

  // Runs `command` (a string for /bin/sh -c, or a JSON list: the program and
  // its arguments) as job `jid`'s perilog of `kind`; `info` gives the job's
  // `userid` and `ranks`. `done(wait status, timed out)` runs from the loop
  // once it has ended, its whole process group killed (127 << 8: it could
  // not be started). Returns its pid (then `done` follows), or EEXIST if
  // the job's perilog of that kind runs here already, or why it could not
  // be started (then `done` has run).
  Result<pid_t> run(PerilogKind kind, const std::string& command, double timeout, uint64_t jid, const Json& info,
                    const std::function<void(int status, bool timeout)>& done);
  bool running(PerilogKind kind, uint64_t jid) const;
  // `sig` to the process group of the job's perilog of `kind`; false if
  // none runs.
  bool signal(PerilogKind kind, uint64_t jid, int sig);

  // Kills the perilogs of job `jid` for this rank that an earlier broker
  // left running (not ours) and calls `then` once they are gone (or, with a
  // warning, 5 s later). Such leftovers all predate this broker: /proc is
  // read once, at the first call, for every job's.
  void end_orphans(uint64_t jid, std::function<void()> then);

 private:
  struct Running;
  void wait_gone(std::vector<pid_t> groups, int tries, std::function<void()> then);

  asio::io_context& io_;
  Clock& clock_;
  std::string local_uri_;
  uint32_t rank_;
  std::map<std::pair<uint64_t, PerilogKind>, std::shared_ptr<Running>> running_;
  std::map<uint64_t, std::unique_ptr<Timer>> waits_;  // end_orphans() waiting for leftovers to die
  uint64_t next_wait_ = 0;
  bool scanned_ = false;                         // /proc read for leftovers
  std::map<uint64_t, std::set<pid_t>> orphans_;  // job → leftover process groups
};

}  // namespace loom
