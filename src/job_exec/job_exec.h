// The `job-exec` service on rank 0 (docs/protocols/exec.md): the execution service
// the job manager starts jobs through. It says `job-manager.exec-hello`
// when it starts (and again after a teardown), answers each
// `job-exec.start` with the response stream of the execution protocol
// (docs/protocols/exec.md), and follows cancels and time limits through
// the `job-exception` event.
//
// A job runs for real: a `loom-shell` on every rank of R through the shell
// launch service (shell/launcher.h), after every rank's prolog (if one is
// configured), each rank released as soon as its shell and epilog are done. A jobspec with
// `attributes.system.exec.test` runs in test execution mode instead: no processes; `run_duration`, `wait_status`,
// `mock_exception` and `override` decide what the stream says and when. A start with `reattach` (after a crash) finds
// the job's shells again (docs/protocols/exec.md, item 8).
#pragma once

#include <functional>
#include <memory>

#include "msg/handle.h"

namespace loom {

struct JobExecConfig {
  double kill_timeout = 5;         // seconds from a kill signal to the job being given up
  double reattach_timeout = 60;    // seconds a shell waits for its broker to come back
  bool prolog = false;             // a prolog is configured: every rank runs it before any shell starts
  double shell_exit_timeout = 30;  // seconds from a shell's failed exit to killing the other ranks (0: never)
};

class JobExec {
 public:
  static std::unique_ptr<JobExec> create(Handle& h, JobExecConfig cfg);
  ~JobExec();
  // An orderly stop of the instance: every running job gets a fatal
  // exception and is killed; `done` runs once every stream has ended with
  // its final release. Starts that come after are refused the same way.
  void stop(std::function<void()> done);
  JobExec(const JobExec&) = delete;
  JobExec& operator=(const JobExec&) = delete;

  struct Impl;

 private:
  explicit JobExec(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom
