#include "kit/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>

extern char** environ;

namespace loom::test {

std::string build_dir() {
  for (const char* var : {"LOOM_TREE_UNDER_TEST", "LOOM_BUILD_DIR"}) {
    if (const char* d = std::getenv(var); d && *d) return d;
  }
  return LOOM_TEST_DEFAULT_BUILD_DIR;
}

std::string bin(const std::string& name) { return build_dir() + "/bin/" + name; }

std::string test_tool(const std::string& name) {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return bin(name);
  return (self.parent_path() / name).string();
}

bool sanitized() {
  static const bool answer = [] {
    std::ifstream cache(build_dir() + "/CMakeCache.txt");
    std::string line;
    while (std::getline(cache, line)) {
      if (line.starts_with("LOOM_SANITIZE:")) return line.ends_with("=ON");
    }
    return false;
  }();
  return answer;
}

int exit_code(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

double monotonic_now() {
  timespec t{};
  ::clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// Polls `fd` for POLLIN until the deadline. True if readable (or hung up).
bool poll_in(int fd, double deadline) {
  while (true) {
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

}  // namespace

std::optional<int> wait_child(pid_t pid, double timeout) {
  int st = 0;
  pid_t r = ::waitpid(pid, &st, WNOHANG);
  if (r == pid) return st;
  if (r < 0) return std::nullopt;  // not our child (already reaped?)
  int fd = pidfd_open(pid);
  if (fd < 0) {
    r = ::waitpid(pid, &st, WNOHANG);
    return r == pid ? std::optional<int>(st) : std::nullopt;
  }
  bool exited = poll_in(fd, monotonic_now() + timeout);
  ::close(fd);
  if (!exited) return std::nullopt;
  while ((r = ::waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
  }
  return r == pid ? std::optional<int>(st) : std::nullopt;
}

bool wait_gone(pid_t pid, double timeout) {
  int fd = pidfd_open(pid);
  if (fd < 0) return errno == ESRCH;
  bool gone = poll_in(fd, monotonic_now() + timeout);
  ::close(fd);
  return gone;
}

bool is_alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!in || !std::getline(in, line)) return false;
  // pid (comm) STATE ...; comm may hold spaces or parentheses.
  auto close_paren = line.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= line.size()) return false;
  char state = line[close_paren + 2];
  return state != 'Z' && state != 'X';
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t nl = s.find('\n', start);
    if (nl == std::string::npos) {
      out.push_back(s.substr(start));
      break;
    }
    out.push_back(s.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

std::vector<std::string> CmdResult::out_lines() const { return split_lines(out); }
std::vector<std::string> CmdResult::err_lines() const { return split_lines(err); }

Background::Background(const std::vector<std::string>& argv, const Env& env) : Background(argv, env, nullptr) {}

Background::Background(const std::vector<std::string>& argv, const Env& env,
                       const std::function<std::string()>& in_child) {
  // The environment of the child, built before fork.
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (auto& [k, v] : env) {
    if (v.empty()) vars.erase(k);
    else vars[k] = v;
  }
  std::vector<std::string> envs;
  for (auto& [k, v] : vars) envs.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : envs) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args_copy = argv;
  std::vector<char*> args;
  for (auto& a : args_copy) args.push_back(a.data());
  args.push_back(nullptr);

  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    res_.err = std::string("pipe: ") + std::strerror(errno);
    return;
  }
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    // Signals as a fresh process has them, whatever the test runner was
    // started with (a runner started with `&` ignores SIGINT).
    for (int sig : {SIGINT, SIGTERM, SIGPIPE, SIGHUP, SIGQUIT}) ::signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    if (in_child) {
      std::string why = in_child();
      if (!why.empty()) {
        std::fprintf(stderr, "run_cmd: %s\n", why.c_str());
        ::_exit(126);
      }
    }
    ::execve(args[0], args.data(), envp.data());
    std::fprintf(stderr, "run_cmd: cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  pid_ = pid;
  fds_[0] = out[0];
  fds_[1] = err[0];
}

Background::~Background() {
  for (int& fd : fds_) {
    if (fd >= 0) ::close(fd);
  }
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    wait_child(pid_, 10);
  }
}

bool Background::signal(int sig) { return pid_ > 0 && ::kill(pid_, sig) == 0; }

bool Background::read_some(double deadline) {
  pollfd p[2] = {{fds_[0], POLLIN, 0}, {fds_[1], POLLIN, 0}};
  if (fds_[0] < 0 && fds_[1] < 0) return false;
  int n = ::poll(p, 2, remaining_ms(deadline));
  if (n < 0 && errno == EINTR) return true;
  if (n <= 0) return false;
  char buf[65536];
  for (int i = 0; i < 2; ++i) {
    if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    ssize_t k = ::read(p[i].fd, buf, sizeof buf);
    if (k > 0) {
      (i == 0 ? res_.out : res_.err).append(buf, static_cast<size_t>(k));
    } else if (k == 0 || errno != EINTR) {
      ::close(fds_[i]);
      fds_[i] = -1;
    }
  }
  return true;
}

bool Background::wait_for(const std::string& text, bool on_stderr, double timeout) {
  double deadline = monotonic_now() + timeout;
  const std::string& seen = on_stderr ? res_.err : res_.out;
  while (seen.find(text) == std::string::npos) {
    if (!read_some(deadline)) return false;
  }
  return true;
}

CmdResult Background::finish(double timeout) {
  if (pid_ <= 0) return res_;
  double deadline = monotonic_now() + timeout;
  while (fds_[0] >= 0 || fds_[1] >= 0) {
    if (!read_some(deadline)) {
      res_.timed_out = true;
      break;
    }
  }
  std::optional<int> st;
  if (!res_.timed_out) st = wait_child(pid_, std::max(0.0, deadline - monotonic_now()));
  if (!st) {
    res_.timed_out = true;
    ::kill(pid_, SIGKILL);
    wait_child(pid_, 10);
    pid_ = -1;
    res_.code = -1;
    return res_;
  }
  pid_ = -1;
  res_.code = exit_code(*st);
  return res_;
}

CmdResult run_cmd(const std::vector<std::string>& argv, const Env& env, double timeout) {
  return Background(argv, env).finish(timeout);
}

int remaining_ms(double deadline) {
  double left = deadline - monotonic_now();
  if (left <= 0) return 0;
  return static_cast<int>(std::ceil(left * 1000));
}

std::string system_tool(const std::string& name) {
  for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"}) {
    if (::access((dir + name).c_str(), X_OK) == 0) return dir + name;
  }
  return "";
}

std::string brief(const CmdResult& r) {
  if (r.timed_out) return "timed out";
  std::string text = r.err.empty() ? r.out : r.err;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return "exit " + std::to_string(r.code) + (text.empty() ? "" : ": " + text);
}

}  // namespace loom::test
