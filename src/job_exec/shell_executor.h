// The shell executor (executor.h): a job's work for real, a loom-shell on
// every rank of R through the shell launch service (shell/launcher.h),
// after every rank's prolog, each rank released once its shell and epilog
// are done (docs/protocols/exec.md, "job-exec: real execution"). Its
// files: shell_executor.cpp (starting, watching and killing the shells, releases,
// the exec eventlog), perilog.cpp (prologs, epilogs, the shell exit
// timeout) and reattach.cpp (finding a job's shells again after a crash).
#pragma once

#include <sys/wait.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/clock.h"
#include "eventlog/eventlog.h"
#include "job_exec/executor.h"
#include "job_exec/job_exec.h"

namespace loom::job_exec {

// How long an exec eventlog entry may wait to be stored with the ones after it.
inline constexpr double kExecLogDelay = 0.1;

// How a perilog or shell ended, for people: "exited with 1", "killed by signal 9".
inline std::string describe_end(int status) {
  if (WIFEXITED(status)) return "exited with " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with status " + std::to_string(status);
}

struct ShellRun final : Run {
  // Where the run is. It only moves forward, in ShellExecutor::enter.
  enum class Phase {
    kFinding,  // after a restart: reading the job's record
    kProlog,   // every rank's prolog runs (with exec.prolog); no shell yet
    kShells,   // the shells were asked for (or looked for after a restart); each
               // rank is released once its shell and epilog are done
    kLinking,  // every rank is free: the namespace is linked, then the final release
  };
  // How the run came to be.
  enum class Origin {
    kLaunch,    // a start: prologs, then the shells
    kReattach,  // a job that was running when the instance went down
    kSettle,    // a job ended before it started, found at a restart: only its ranks to see to
  };
  // The kill escalation.
  enum class Kill {
    kNone,
    kSignalled,  // SIGTERM or SIGALRM sent (or the prologs killed): SIGKILL follows
    kSigkilled,  // SIGKILL sent: what is left after the kill timeout is unkillable
  };
  Phase phase = Phase::kFinding;
  Origin origin = Origin::kLaunch;
  Kill kill = Kill::kNone;

  std::string ns;  // the job's guest namespace
  uint32_t userid = 0;
  std::string all;  // R's ranks as an idset
  // No prolog or epilog: a job step (docs/steps.md), whose allocation's
  // ran around it. The launch service is told in each request's info.
  bool perilogs = true;
  std::unique_ptr<Timer> timer;       // the time limit
  std::unique_ptr<Timer> kill_timer;  // the kill escalation
  std::unique_ptr<Timer> exit_timer;  // exec.shell-exit-timeout after a shell's failed exit
  std::map<uint32_t, int> exited;     // rank → the shell's status as a wait status
  std::set<uint32_t> shells_started;  // ranks whose shell runs
  std::set<uint32_t> released;        // ranks released so far

  // The prolog (with exec.prolog): every rank's runs before any shell
  // starts; the job's jobspec and R wait meanwhile for the launch.
  Json jobspec, R_json;
  std::set<uint32_t> prolog_running;  // ranks whose prolog runs
  std::set<uint32_t> prolog_done;     // ranks whose prolog has ended (or was never run)
  std::set<uint32_t> prolog_killed;   // ranks whose prolog we killed: its end is no failure
  std::set<uint32_t> no_epilog;       // ranks the prolog could not be asked of: no epilog either

  // After a restart (and for prologs asked before every rank was back).
  bool fatal_before_restart = false;                          // its tasks are killed once found
  std::map<uint32_t, std::pair<int, bool>> recorded_epilogs;  // epilog-finish found: status, timed out
  size_t gone_before = 0;                                     // ranks released before the restart
  std::set<uint32_t> unreached;                               // ranks not back yet (asked again when online)
  std::set<uint32_t> unreached_epilogs;                       // the same, for an epilog to run again
  std::set<uint32_t> unreached_prologs;                       // the same, for a prolog
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

  bool killing() const { return kill != Kill::kNone; }
  bool launched() const { return phase == Phase::kShells || phase == Phase::kLinking; }
};

class ShellExecutor final : public Executor {
 public:
  explicit ShellExecutor(Service& svc);
  bool claims(const Json& /*jobspec*/) const override { return true; }
  void start(const StartInfo& s) override;
  void signal(Run& r, int sig) override;
  void cancel(Run& r) override;
  void shutdown(Run& r) override;
  void abandon(Run& r) override;
  void online(Run& r, uint32_t rank) override;

 private:
  Service& svc_;
  Handle& h_;
  const JobExecConfig& cfg_;

  // The current run of job `id` with `serial`, if it is one of ours.
  ShellRun* run(uint64_t id, uint64_t serial);
  void enter(ShellRun& r, ShellRun::Phase next);

  // shell_executor.cpp
  void name_run(ShellRun& r, uint32_t userid);
  void launch(ShellRun& r, const Json& jobspec, const Json& R);
  void start_shells(ShellRun& r);
  void stale_shell(uint64_t id, uint32_t rank, const Message& m);
  void on_shell(ShellRun& r, uint32_t rank, const Message& m);
  void shell_exited(ShellRun& r, uint32_t rank, int status);
  void send_finish(ShellRun& r);
  void rank_free(ShellRun& r, uint32_t rank);
  // Every rank is free (`last` the final release): the namespace linked,
  // then the final release.
  void link(ShellRun& r, const Released& last);
  void kill_all(ShellRun& r, int sig);
  // Sends `sig` to the tasks of job `id`'s shell on `rank` (no answer awaited).
  void kill_shell(uint64_t id, uint32_t rank, int sig);
  void give_up(ShellRun& r);
  // Asks the scheduler to drain `ranks` for `reason`.
  void drain(const std::string& ranks, const std::string& reason);
  // The exec eventlog.
  void log_exec(ShellRun& r, const char* name, Json context);
  void store_exec_log(ShellRun& r);
  void append_linked_exec_log(uint64_t id, std::string text);
  void commit_exec_log(const std::string& ns, const std::string& key, std::string text,
                       std::function<void(const Message&)> done);

  // perilog.cpp
  // A streaming request about run `r` to the launch service of `rank`,
  // {id, info: {userid, ranks}}; `answer` gets each response while the
  // service exists, with the run (null once it is no longer the current one).
  void ask_rank(ShellRun& r, uint32_t rank, const char* topic, std::function<void(ShellRun*, const Message&)> answer);
  // shell.prolog or shell.epilog to `rank` (shell/launcher.h).
  void ask_perilog(ShellRun& r, uint32_t rank, bool prolog);
  void on_prolog(ShellRun& r, uint32_t rank, const Message& m);
  void prolog_progress(ShellRun& r);
  void on_epilog(ShellRun& r, uint32_t rank, const Message& m);
  void epilog_done(ShellRun& r, uint32_t rank, int status, bool timeout);
  void watch_failed_exit(ShellRun& r, uint32_t rank, int status);

  // reattach.cpp
  void find_shells(ShellRun& r);
  void reattach_ranks(ShellRun& r, const std::string& exec_eventlog);
  void settle_rank(ShellRun& r, uint32_t rank);
  void ask_shell(ShellRun& r, uint32_t rank);
  // Starts the reattach timeout (once): ranks not back by then are lost.
  void await_ranks(ShellRun& r);
  void lost_ranks(ShellRun& r);
  // Asks the unreached ranks again in a second (in case their online event
  // came before the answer that they are not back).
  void retry_unreached(ShellRun& r);
};

}  // namespace loom::job_exec
