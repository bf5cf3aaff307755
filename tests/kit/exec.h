// The execution tests' fixture (exec_test.cpp, exec_shell_test.cpp,
// exec_ranks_test.cpp): a 4-rank instance of 2 cores per rank, and what
// they look at beside the command line: the processes of a job (from
// /proc), waiting for them to exit (a pidfd each: an event, never a sleep).
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "base/fluid.h"
#include "kit/jobs.h"
#include "msg/json.h"

namespace loom::test {

// A file under /proc/PID, empty when the process is gone: a process that
// exits while it is read fails the read with ESRCH, which std::ifstream
// would turn into an exception.
inline std::string read_proc(const std::filesystem::path& path) {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

// The processes (from /proc, this one left out) whose command line, its
// arguments separated by NUL bytes, satisfies `match`.
inline std::vector<pid_t> processes_where(const std::function<bool(const std::string&)>& match) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = read_proc(entry.path() / "cmdline");
    pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid != ::getpid() && match(cmdline)) out.push_back(pid);
  }
  return out;
}

// The processes that have `word` as an argument.
inline std::vector<pid_t> processes_with(const std::string& word) {
  return processes_where([&](const std::string& cmdline) {
    size_t start = 0;
    while (start < cmdline.size()) {
      size_t end = cmdline.find('\0', start);
      if (end == std::string::npos) end = cmdline.size();
      if (cmdline.compare(start, end - start, word) == 0) return true;
      start = end + 1;
    }
    return false;
  });
}

// The processes with `text` anywhere in their command line.
inline std::vector<pid_t> processes_mentioning(const std::string& text) {
  return processes_where([&](const std::string& cmdline) { return cmdline.find(text) != std::string::npos; });
}
inline int processes_running(const std::string& word) { return static_cast<int>(processes_with(word).size()); }

// Each of `pids` exits within 5 seconds (a SIGKILLed process still takes
// its turn on a CPU to die): waits on a pidfd for each.
inline void expect_all_exit(const std::vector<pid_t>& pids) {
  for (pid_t p : pids) {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, p, 0));
    if (fd < 0) continue;  // already gone
    pollfd pfd{fd, POLLIN, 0};
    EXPECT_EQ(::poll(&pfd, 1, 5000), 1) << "process " << p << " still runs";
    ::close(fd);
  }
}

// A crash of the whole instance: every broker gets SIGKILL (the job shells,
// in sessions of their own, live on), then the instance is forgotten so it
// can be started again on the same state directory.
inline void crash_instance(Instance& inst) {
  std::vector<pid_t> brokers;
  for (uint32_t r = 0; r < inst.size(); ++r) {
    std::string why;
    auto pid = inst.broker_pid(r, &why);
    ASSERT_TRUE(pid) << why;
    brokers.push_back(*pid);
  }
  inst.expect_clean_exit(false);
  // (A broker may already be stopping because its parent is gone.)
  for (pid_t p : brokers) ASSERT_TRUE(::kill(p, SIGKILL) == 0 || errno == ESRCH) << std::strerror(errno);
  expect_all_exit(brokers);
  inst.stop(20);
  inst.expect_clean_exit(true);
}

// A fresh directory of a test's own, /tmp/loom-NAME-PID (its state
// directory, the FIFOs and files its jobs share with it); remove it with
// std::filesystem::remove_all in TearDown.
inline std::string fresh_test_dir(const std::string& name) {
  std::string dir =
      (std::filesystem::temp_directory_path() / ("loom-" + name + "-" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

class Exec : public JobsFixture {
 protected:
  void SetUp() override { ASSERT_TRUE(inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0"})); }

  // A job in test execution mode: `test` is attributes.system.exec.test.
  std::string submit_test(std::vector<std::string> args, const std::map<std::string, std::string>& test) {
    for (const auto& [k, v] : test) args.insert(args.begin(), "--setattr=exec.test." + k + "=" + v);
    return submit_job(args);
  }

  uint64_t num(const std::string& id) { return parse_jobid(id).value().value(); }

  // The processes with job `id`'s number on their command line whose
  // environment has `text` (job shells name their rank's socket in
  // LOOM_URI). Job ids are only unique within an instance: another test's
  // instance, started at about the same moment, gives out the same ones.
  std::vector<pid_t> shells_with(const std::string& id, const std::string& text) {
    std::vector<pid_t> out;
    for (pid_t p : processes_with(std::to_string(num(id)))) {
      std::string env = read_proc("/proc/" + std::to_string(p) + "/environ");
      if (env.find(text) != std::string::npos) out.push_back(p);
    }
    return out;
  }
  // The job shell of job `id` on `rank` of this instance, or -1.
  pid_t shell_of(const std::string& id, uint32_t rank) {
    auto found = shells_with(id, inst.socket(rank) + '\0');
    return found.empty() ? -1 : found.front();
  }
  // Every job shell of job `id` on this instance's ranks (its sockets' directory
  // stays the same across a restart on one state directory).
  std::vector<pid_t> shells_of(const std::string& id) {
    if (inst.rundir().empty()) return {};
    return shells_with(id, inst.rundir() + "/rank-");
  }

  // The entries named `name` of an eventlog.
  static std::vector<Json> named(const std::vector<Json>& log, const std::string& name) {
    std::vector<Json> out;
    for (const auto& e : log) {
      if (e["name"] == name) out.push_back(e);
    }
    return out;
  }
};

}  // namespace loom::test
