// Starting child processes without blocking the event loop, and hearing of
// their exit through it: posix_spawn, then a pidfd watched by Asio.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"

namespace asio {
class io_context;
}

namespace loom {

// The descriptor a task finds its PMI connection on (PMI_FD).
inline constexpr int kPmiFd = 3;

struct SpawnSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH unless it has a '/'
  std::vector<std::string> env;   // NAME=VALUE, the whole environment
  std::string cwd;                // "" keeps ours
  bool new_session = false;       // setsid(): its own session and process group
  int stdin_fd = -1;              // -1: /dev/null
  int stdout_fd = -1;             // -1: inherit ours
  int stderr_fd = -1;             // -1: inherit ours
  int pmi_fd = -1;                // given to the child as descriptor kPmiFd (docs/pmi.md); -1: none
};

// Starts the child with default signal dispositions and an empty signal
// mask. The error names argv[0] and why (ENOENT, EACCES, a bad cwd…).
Result<pid_t> spawn(const SpawnSpec& spec);

// Calls `on_exit(wait_status)` from the loop once `pid` (our child) has
// exited, and reaps it. Destroying the watch stops watching (the child is
// then reaped by nobody: kill it first). It also watches a process that is
// not our child (an adopted job shell): its status is then unknown, -1.
class ChildWatch {
 public:
  static Result<std::unique_ptr<ChildWatch>> create(asio::io_context& io, pid_t pid, std::function<void(int)> on_exit);
  ~ChildWatch();
  ChildWatch(const ChildWatch&) = delete;
  ChildWatch& operator=(const ChildWatch&) = delete;
  pid_t pid() const;

  struct Impl;

 private:
  explicit ChildWatch(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The largest job (its id, a newline, its JSON) the shell fork server takes
// (`loom-shell --fork-server`: one SOCK_SEQPACKET message); a larger one
// gets a shell started with posix_spawn.
inline constexpr size_t kForkServerMaxJob = size_t{128} * 1024;

// The environment of this process as NAME=VALUE strings.
std::vector<std::string> current_environment();

}  // namespace loom
