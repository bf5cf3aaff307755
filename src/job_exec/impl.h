// job-exec's inside (job_exec.h), shared by its files: job_exec.cpp (the
// service, test execution mode, exceptions, orderly stop), shells.cpp (real
// execution: the shells, releases, kills, the exec eventlog), perilog.cpp
// (prologs, epilogs, the shell exit timeout) and reattach.cpp (finding a
// job's shells again after a crash).
#pragma once

#include <sys/wait.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/clock.h"
#include "eventlog/eventlog.h"
#include "exec_protocol/exec_protocol.h"
#include "job_exec/job_exec.h"
#include "msg/handle.h"
#include "msg/json.h"

namespace loom {

using exec_protocol::ExceptionType;
using exec_protocol::Finished;
using exec_protocol::Raised;
using exec_protocol::Reattached;
using exec_protocol::Released;
using exec_protocol::Response;
using exec_protocol::Severity;
using exec_protocol::Started;

// How long an exec eventlog entry may wait to be stored with the ones after it.
inline constexpr double kExecLogDelay = 0.1;

// How a perilog or shell ended, for people: "exited with 1", "killed by signal 9".
inline std::string describe_end(int status) {
  if (WIFEXITED(status)) return "exited with " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with status " + std::to_string(status);
}

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
    bool reattach = false;       // shells started before a restart, found again
    bool kill_found = false;     // reattach: the job had a fatal exception before the restart
    bool never_started = false;  // reattach of a job ended before its start: only its ranks to settle
    std::map<uint32_t, std::pair<int, bool>> recorded_epilogs;  // reattach: epilog-finish found, status and timeout
    size_t gone_before = 0;                                     // reattach: ranks released before the restart
    std::set<uint32_t> unreached;          // reattach: ranks not back yet (asked again when online)
    std::set<uint32_t> unreached_epilogs;  // reattach: the same, for an epilog to run again
    std::set<uint32_t> unreached_prologs;  // ranks not (yet) back to run the prolog, after a restart
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
    // The prolog (with cfg_.prolog): every rank's runs before any shell
    // starts; the job's jobspec and R wait meanwhile for the launch.
    bool in_prolog = false;
    Json jobspec, R_json;
    std::set<uint32_t> prolog_running;  // ranks whose prolog runs
    std::set<uint32_t> prolog_done;     // ranks whose prolog has ended (or was never run)
    std::set<uint32_t> prolog_killed;   // ranks whose prolog we killed: its end is no failure
    std::set<uint32_t> no_epilog;       // ranks the prolog could not be asked of: no epilog either
    bool launched = false;              // the shells were asked for
    std::unique_ptr<Timer> exit_timer;  // exec.shell-exit-timeout after a shell's failed exit
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
  // Every response to a start goes through the protocol's types.
  void respond(const Message& req, uint64_t id, const Response& r) { h_.respond(req, exec_protocol::to_json(id, r)); }
  // A fatal exception before anything ran: the stream is exception, release
  // (of `ranks`, none: all).
  void refuse(const Message& req, uint64_t id, const std::string& note, std::optional<IdSet> ranks) {
    respond(req, id, Raised(Severity::kFatal, ExceptionType::kExec, note));
    respond(req, id, ranks ? Released::of(std::move(*ranks), true) : Released::everything(true));
  }
  void begin(Run& r);
  void end(uint64_t id, int status);

  // Real execution.
  void launch(Run& r, const Json& jobspec, const Json& R, uint32_t userid);
  void start_shells(Run& r);
  // shell.prolog or shell.epilog to `rank` (launcher.h), answered in
  // on_prolog / on_epilog.
  // A streaming request about run `r` to the launch service of `rank`,
  // {id, info: {userid, ranks}}; `answer` gets each response while job-exec
  // exists.
  void ask_rank(Run& r, uint32_t rank, const char* topic, std::function<void(const Message&)> answer);
  void ask_perilog(Run& r, uint32_t rank, bool prolog);
  void on_prolog(Run& r, uint32_t rank, const Message& m);
  void prolog_progress(Run& r);
  void on_epilog(Run& r, uint32_t rank, const Message& m);
  void epilog_done(Run& r, uint32_t rank, int status, bool timeout);
  void watch_failed_exit(Run& r, uint32_t rank, int status);
  void name_run(Run& r, uint32_t userid);
  void find_shells(Run& r, uint32_t userid);
  void reattach_ranks(uint64_t id, const std::string& eventlog, const std::string& exec_eventlog);
  void settle_rank(Run& r, uint32_t rank, const std::map<uint32_t, std::pair<int, bool>>& epilogs);
  void ask_shell(Run& r, uint32_t rank);
  void lost_ranks(uint64_t id);
  // Asks the unreached ranks again in a second (in case their online event
  // came before the answer that they are not back).
  void retry_unreached(Run& r);
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
  void raise(Run& r, ExceptionType type, const std::string& note);
  // `last`: the final release (the last rank freed, or all).
  void finish_real(uint64_t id, const Released& last);
};

}  // namespace loom
