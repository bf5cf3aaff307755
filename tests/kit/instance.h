// A real loom instance for end-to-end tests: `loom start --test-size=N`
// as a child process, ready once it printed its URI on stdout.
//
//   loom::test::Instance inst;
//   ASSERT_TRUE(inst.start(4));
//   auto r = inst.loom({"rpc", "--rank", "3", "broker.info"});
//
// The destructor stops it: SIGTERM to `loom start`, a bounded wait, then
// SIGKILL to its whole process group (itself and its brokers).
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kit/process.h"

namespace loom::test {

class Instance {
 public:
  Instance() = default;
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  // Before start(): the brokers' stderr (their log) goes to a file of this
  // instance's instead of the test's stderr; log() reads it.
  void capture_log();
  std::string log() const;
  // How many lines of the log contain `text`.
  size_t log_count(const std::string& text) const;
  // Waits (up to `timeout` seconds) until `count` lines of the log contain
  // `text`, woken by each write to the log; the count at the end. A broker
  // may log after the event a test saw (a closed socket), not before it.
  size_t wait_log(const std::string& text, size_t count = 1, double timeout = 10) const;

  // Runs `loom start --test-size=SIZE EXTRA...` and waits (up to `timeout`
  // seconds) for the URI line.
  ::testing::AssertionResult start(uint32_t size, const std::vector<std::string>& extra = {}, double timeout = 30);

  const std::string& uri() const { return uri_; }
  // The directory of rank 0's socket; rank R listens on rundir/rank-R.sock.
  const std::string& rundir() const { return rundir_; }
  std::string socket(uint32_t rank) const { return rundir_ + "/rank-" + std::to_string(rank) + ".sock"; }
  uint32_t size() const { return size_; }
  pid_t pid() const { return pid_; }

  // The pid of rank R's loomd, from its broker.info.
  std::optional<pid_t> broker_pid(uint32_t rank, std::string* why = nullptr) const;

  // True while `loom start` has not exited.
  bool running();

  // Waits up to `timeout` seconds for `loom start` to exit on its own;
  // its exit code, or nullopt if it is still running.
  std::optional<int> wait_exit(double timeout);

  // SIGTERM to `loom start`; waits up to `timeout` seconds. Returns its exit
  // code, or nullopt if it had to be killed. Safe to call twice.
  std::optional<int> stop(double timeout = 30);

  // By default the destructor, when it stops a running instance, fails the
  // test unless `loom start` exits 0, i.e. every broker exited cleanly (an
  // ASan report or a crash in any broker fails the test that caused it).
  // Tests that kill brokers on purpose turn this off.
  void expect_clean_exit(bool on) { expect_clean_exit_ = on; }

  // Runs `loom ARGS...` with LOOM_URI pointing at this instance.
  CmdResult loom(const std::vector<std::string>& args, const Env& env = {}, double timeout = 30) const;
  // The same command, left running beside the test.
  std::unique_ptr<Background> loom_background(const std::vector<std::string>& args, const Env& env = {}) const;

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string log_path_;
  uint32_t size_ = 0;
  std::string uri_;
  std::string rundir_;
  std::optional<int> exit_code_;
  bool expect_clean_exit_ = true;
};

}  // namespace loom::test
