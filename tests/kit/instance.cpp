#include "kit/instance.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "kit/client.h"

namespace loom::test {

Instance::~Instance() {
  bool was_running = pid_ > 0;
  auto code = stop();
  if (was_running && expect_clean_exit_ && code != std::optional<int>(0)) {
    ADD_FAILURE() << "loom start exited with " << (code ? std::to_string(*code) : "no status (killed)")
                  << ": a broker failed (see its stderr above)";
  }
  if (!log_path_.empty()) {
    // Shown when the test failed, as the brokers' stderr would have been.
    if (::testing::Test::HasFailure()) std::fprintf(stderr, "--- brokers' log ---\n%s", log().c_str());
    ::unlink(log_path_.c_str());
  }
}

void Instance::capture_log() {
  char tmpl[] = "/tmp/loom-test-log-XXXXXX";
  int fd = ::mkstemp(tmpl);
  if (fd < 0) {
    ADD_FAILURE() << "mkstemp: " << std::strerror(errno);
    return;
  }
  ::close(fd);
  log_path_ = tmpl;
}

std::string Instance::log() const {
  if (log_path_.empty()) return {};
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t Instance::log_count(const std::string& text) const {
  size_t n = 0;
  for (const auto& line : split_lines(log())) n += line.find(text) != std::string::npos;
  return n;
}

size_t Instance::wait_log(const std::string& text, size_t count, double timeout) const {
  if (log_path_.empty()) return 0;
  int in = ::inotify_init1(IN_CLOEXEC);
  if (in < 0 || ::inotify_add_watch(in, log_path_.c_str(), IN_MODIFY) < 0) {
    if (in >= 0) ::close(in);
    return log_count(text);
  }
  double deadline = monotonic_now() + timeout;
  size_t n = log_count(text);  // after the watch: no write is missed
  while (n < count) {
    pollfd p{in, POLLIN, 0};
    int ms = static_cast<int>(std::max(0.0, deadline - monotonic_now()) * 1000);
    if (::poll(&p, 1, ms) <= 0) break;
    char buf[4096];
    (void)!::read(in, buf, sizeof buf);
    n = log_count(text);
  }
  ::close(in);
  return n;
}

::testing::AssertionResult Instance::start(uint32_t size, const std::vector<std::string>& extra, double timeout) {
  if (pid_ > 0) return ::testing::AssertionFailure() << "instance already started";
  size_ = size;
  std::vector<std::string> argv = {bin("loom"), "start", "--test-size=" + std::to_string(size)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  std::string cmdline;
  for (auto& a : argv) cmdline += (cmdline.empty() ? "" : " ") + a;

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return ::testing::AssertionFailure() << "pipe: " << std::strerror(errno);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return ::testing::AssertionFailure() << "fork: " << std::strerror(errno);
  if (pid == 0) {
    // Its own process group, so that a stuck instance can be killed whole;
    // and it must not outlive the test.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(out[1], 1);
    if (!log_path_.empty()) {
      int log = ::open(log_path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      if (log >= 0) ::dup2(log, 2);
    }
    ::unsetenv("LOOM_URI");
    ::unsetenv("LOOM_HANDLE_USERID");
    ::unsetenv("LOOM_HANDLE_ROLEMASK");
    ::execv(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here, so that it holds before we use it
  ::close(out[1]);
  pid_ = pid;
  out_fd_ = out[0];

  // Read the one URI line; `loom start` prints it once every rank is online.
  double deadline = monotonic_now() + timeout;
  std::string line;
  while (line.find('\n') == std::string::npos) {
    int ms = static_cast<int>(std::ceil(std::max(0.0, deadline - monotonic_now()) * 1000));
    pollfd p{out_fd_, POLLIN, 0};
    int n = ::poll(&p, 1, ms);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      stop(5);
      return ::testing::AssertionFailure() << "`" << cmdline << "` printed no URI within " << timeout << "s";
    }
    char buf[512];
    ssize_t k = ::read(out_fd_, buf, sizeof buf);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      auto st = wait_child(pid_, 10);
      pid_ = -1;
      return ::testing::AssertionFailure()
             << "`" << cmdline << "` exited (status " << (st ? exit_code(*st) : -1) << ") before printing its URI";
    }
    line.append(buf, static_cast<size_t>(k));
  }
  uri_ = line.substr(0, line.find('\n'));
  auto path = uri_to_path(uri_);
  if (!path.ok() || path->find('/') == std::string::npos) {
    stop(5);
    return ::testing::AssertionFailure() << "`" << cmdline << "` printed a bad URI: " << line;
  }
  rundir_ = path->substr(0, path->rfind('/'));
  return ::testing::AssertionSuccess();
}

std::optional<pid_t> Instance::broker_pid(uint32_t rank, std::string* why) const {
  Loop loop;
  auto c = loop.connect(socket(0));
  if (!c.ok()) {
    if (why) *why = c.error().text;
    return std::nullopt;
  }
  Reply r = call(loop, (*c)->handle(), "broker.info", "{}", {rank, false, 0});
  if (r.errnum != 0) {
    if (why) *why = r.errstr;
    return std::nullopt;
  }
  Json j = r.json();
  if (!j.is_object() || !j.contains("pid") || !j["pid"].is_number_integer()) {
    if (why) *why = "broker.info has no pid: " + r.payload;
    return std::nullopt;
  }
  return static_cast<pid_t>(j["pid"].get<int64_t>());
}

bool Instance::running() {
  if (pid_ <= 0) return false;
  auto st = wait_child(pid_, 0);
  if (!st) return true;
  exit_code_ = exit_code(*st);
  pid_ = -1;
  return false;
}

std::optional<int> Instance::wait_exit(double timeout) {
  if (pid_ <= 0) return exit_code_;
  auto st = wait_child(pid_, timeout);
  if (!st) return std::nullopt;
  exit_code_ = exit_code(*st);
  pid_ = -1;
  return exit_code_;
}

std::optional<int> Instance::stop(double timeout) {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    auto st = wait_child(pid_, timeout);
    if (st) {
      exit_code_ = exit_code(*st);
    } else {
      ADD_FAILURE() << "loom start (pid " << pid_ << ") did not stop within " << timeout << "s; killing it";
      // The whole group, brokers included, while the unreaped leader
      // still holds the group id.
      ::kill(-pid_, SIGCONT);
      ::kill(-pid_, SIGKILL);
      wait_child(pid_, 10);
      exit_code_.reset();
    }
    pid_ = -1;
  }
  if (out_fd_ >= 0) {
    ::close(out_fd_);
    out_fd_ = -1;
  }
  return exit_code_;
}

CmdResult Instance::loom(const std::vector<std::string>& args, const Env& env, double timeout) const {
  return loom_background(args, env)->finish(timeout);
}

std::unique_ptr<Background> Instance::loom_background(const std::vector<std::string>& args, const Env& env) const {
  std::vector<std::string> argv = {bin("loom")};
  argv.insert(argv.end(), args.begin(), args.end());
  Env e = {{"LOOM_URI", uri_}, {"LOOM_HANDLE_USERID", ""}, {"LOOM_HANDLE_ROLEMASK", ""}};
  e.insert(e.end(), env.begin(), env.end());
  return std::make_unique<Background>(argv, e);
}

}  // namespace loom::test
