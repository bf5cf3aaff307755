// Processes for end-to-end tests: where the built binaries are, running a
// command and capturing its output, and waiting for a process to exit with
// a deadline (pidfd + poll: an event, never a sleep).
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace loom::test {

// The build tree whose loom binaries the tests run: $LOOM_TREE_UNDER_TEST
// if set (scripts/test runs the release tree's system tests against the
// sanitizer tree's binaries), else $LOOM_BUILD_DIR (set by ctest), else the
// tree this test was built in.
std::string build_dir();
// ${build_dir}/bin/NAME
std::string bin(const std::string& name);
// A helper program built with the tests (netprobe): beside the running
// test binary, whichever tree's binaries are under test.
std::string test_tool(const std::string& name);
// Whether the tree under test was built with the sanitizers (its
// CMakeCache.txt has LOOM_SANITIZE on): its brokers are several times
// slower, and their memory says little about what loom holds.
bool sanitized();

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

// A command running beside the test (as run_cmd starts it), its stdout
// and stderr read by wait_for and finish. The destructor kills it if it
// still runs.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const Env& env = {});
  // With `in_child` run in the child between fork and exec (to become
  // another user, say); if it returns an error text, that goes to stderr
  // and the child exits 126 without running argv.
  Background(const std::vector<std::string>& argv, const Env& env, const std::function<std::string()>& in_child);
  ~Background();
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  // Sends `sig` to it while it runs; false once it has been waited for.
  bool signal(int sig);
  pid_t pid() const { return pid_; }
  // Reads its output until `text` is in its stdout (stderr), up to
  // `timeout` seconds; false if it did not come (or the stream ended).
  bool wait_for_out(const std::string& text, double timeout = 30) { return wait_for(text, false, timeout); }
  bool wait_for_err(const std::string& text, double timeout = 30) { return wait_for(text, true, timeout); }
  // Reads the rest and waits for it to exit, up to `timeout` seconds (then
  // it is killed, code -1, timed_out).
  CmdResult finish(double timeout = 30);
  const CmdResult& so_far() const { return res_; }

 private:
  bool wait_for(const std::string& text, bool on_stderr, double timeout);
  bool read_some(double deadline);
  pid_t pid_ = -1;
  int fds_[2] = {-1, -1};
  CmdResult res_;
};

std::vector<std::string> split_lines(const std::string& s);

// Seconds on a monotonic clock.
double monotonic_now();
// Milliseconds left until `deadline` (monotonic_now() seconds), 0 once past.
int remaining_ms(double deadline);
// The path of a system tool (ip, useradd, unshare, ...) in the usual
// directories, "" where there is none.
std::string system_tool(const std::string& name);
// "exit N: TEXT" (its stderr, else its stdout) or "timed out", on one line.
std::string brief(const CmdResult& r);

}  // namespace loom::test
