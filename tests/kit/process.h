// Processes for end-to-end tests: where the built binaries are, running a
// command and capturing its output, and waiting for a process to exit with
// a deadline (pidfd + poll: an event, never a sleep).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace loom::test {

// The build directory: $LOOM_BUILD_DIR (set by ctest), else the one this
// test was built in.
std::string build_dir();
// ${build_dir}/bin/NAME
std::string bin(const std::string& name);

// The exit code a shell would report: the status, or 128+N for signal N.
int exit_code(int wait_status);

// Waits up to `timeout` seconds for our child `pid` to exit and reaps it.
// Returns its wait status, or nullopt if it is still running.
std::optional<int> wait_child(pid_t pid, double timeout);

// Waits up to `timeout` seconds for any process (not only our children) to
// exit. True if it is gone.
bool wait_gone(pid_t pid, double timeout);

// True if `pid` exists and is not a zombie.
bool is_alive(pid_t pid);

using Env = std::vector<std::pair<std::string, std::string>>;

struct CmdResult {
  int code = -1;           // exit code (128+N for signal N); -1 if timed out
  bool timed_out = false;  // killed after the deadline
  std::string out;
  std::string err;
  std::vector<std::string> out_lines() const;
  std::vector<std::string> err_lines() const;
};

// Runs argv with the environment plus `env` (a value of "" unsets), stdin
// from /dev/null; captures stdout and stderr. Past `timeout` seconds the
// command is killed and timed_out is set.
CmdResult run_cmd(const std::vector<std::string>& argv, const Env& env = {}, double timeout = 30);

std::vector<std::string> split_lines(const std::string& s);

// Seconds on a monotonic clock.
double monotonic_now();

}  // namespace loom::test
