// The shell launch service `shell` on every broker (docs/protocols/exec.md): starts one
// `loom-shell` per job on this rank and reports when it exits.
//
//   shell.launch {id, info}  streaming, owner only. Starts a job shell in a
//       session of its own with `info` (JSON) as its job, answers
//       {type: "started", pid}, then {type: "exited", status, epilog,
//       tasks} (a wait status; epilog: whether one runs now; tasks: each
//       task's [rank, wait status], which the shell writes on its stdout,
//       a pipe read once it has exited; more_tasks: how many did not fit
//       there) when it exits; with an
//       epilog, {type: "epilog", status, timeout} once it is done; then
//       ENODATA. The epilog runs as perilog.h says. A shell that
//       cannot be spawned gets an error response naming why.
//       The shell runs as the job's user (`userid` of `info`; user.h): a
//       broker that is root looks the user up and adds `user` to the
//       shell's job (no such user: an error response), one that is not
//       refuses another user's job (EPERM). A shell that could not run
//       the job at all says why: `error` in its `exited` answer.
//   shell.prolog {id, info}  streaming, owner only: runs the prolog of the
//       job here (perilog.h; `info`: {userid, ranks}): {type:
//       "prolog-start", pid}, then {type: "prolog", status, timeout} once
//       it has ended, then ENODATA. ENODATA alone where no prolog is
//       configured. A prolog or epilog of the job that a broker before us
//       left running here is killed first.
//   shell.epilog {id, info}  streaming, owner only: the same for the
//       epilog ({type: "epilog-start"}, {type: "epilog", ...}), for a rank
//       whose shell never ran or exited under a broker that died.
//   shell.kill {id, signal}  owner only: the signal to the job's shell,
//       which forwards it to its tasks (with a cgroup: every process in
//       it); SIGKILL goes to the shell's whole process group and, with a
//       cgroup, through its cgroup.kill. Before the shell, any signal goes
//       to the job's prolog's process group. ENOENT if neither runs here.
//
// Containment (cgroup.h; docs/protocols/exec.md, "Containment"): where a
// writable cgroup v2 hierarchy exists, each job's shell gets a cgroup of
// its own (`cgroup` of its job), killed and removed once the shell has
// exited and before its exit is answered.
//
// After a crash (docs/protocols/exec.md, item 8):
//   shell.adopt {id, rank, pid, ntasks}  from a job shell whose broker died (any
//       user: a shell runs as its job's user; a user may offer only a
//       process of their own, and only a job of theirs claims it): we
//       watch it (a pidfd: it is not our child) until it is claimed; one
//       nobody claims within a minute is killed.
//   shell.done {id, status, tasks}  from an adopted shell (its adopter):
//       the code it exits with and its tasks' exits.
//   shell.reattach {id, info}  streaming, from job-exec: claims the job's
//       shell (waiting up to 5 s for it to be adopted; else ENOENT), then
//       answers {type: "reattached", pid} and the rest of a launch stream.
//
// Shells are forked by a shell fork server (`loom-shell --fork-server`,
// started with the service) as children of the broker, or, for a job
// larger than it takes or once it is gone, started with posix_spawn; the
// broker waits only for the fork. Exits are noticed through a pidfd in the
// event loop.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "msg/handle.h"

namespace asio {
class io_context;
}

namespace loom {

struct ShellLauncherConfig {
  std::string shell_path;  // the loom-shell executable
  std::string local_uri;   // this broker's socket, for the shell (LOOM_URI)
  uint32_t rank = 0;
  std::string epilog;          // run with /bin/sh -c after a shell exits ("" = none)
  double epilog_timeout = 60;  // seconds; then SIGKILL to the epilog's process group
  std::string prolog;          // run with /bin/sh -c before a shell starts ("" = none)
  double prolog_timeout = 60;  // seconds; then SIGKILL to the prolog's process group
  // How long job shells may go on while this broker is cut off from the
  // instance (exec.reattach-timeout): then they are killed.
  double cut_off_timeout = 60;
};

class ShellLauncher {
 public:
  static std::unique_ptr<ShellLauncher> create(asio::io_context& io, Handle& h, ShellLauncherConfig cfg);
  ~ShellLauncher();
  ShellLauncher(const ShellLauncher&) = delete;
  ShellLauncher& operator=(const ShellLauncher&) = delete;

  // This broker's link to the instance went (false) or came back (true),
  // between hosts. Back, it asks the instance, for each job shell here,
  // whether the job still holds this rank (a restarted rank 0 finds running
  // jobs again; a rank declared lost meanwhile is released from its jobs),
  // and kills those it no longer holds; cut off for longer than
  // cut_off_timeout, every job shell here is killed.
  void parent_link(bool up);
  // This broker leaves the instance (Broker::leave): every job shell here
  // is killed, with its tasks, and `why` logged for each; their exits are
  // answered as usual, without an epilog, and new launches, prologs and
  // epilogs are refused (EHOSTUNREACH). `done` runs once none is left
  // (their cgroups removed), or after 5 s.
  void kill_all(const std::string& why, std::function<void()> done);

  struct Impl;

 private:
  explicit ShellLauncher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom
