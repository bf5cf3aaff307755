#include "shell/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <cerrno>
#include <cstring>

extern char** environ;

namespace loom {

Result<pid_t> spawn(const SpawnSpec& spec) {
  if (spec.argv.empty()) return Error{EINVAL, "no command"};
  std::vector<char*> argv, envp;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  if (spec.stdin_fd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, spec.stdin_fd, 0);
  } else {
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  }
  if (spec.stdout_fd >= 0) posix_spawn_file_actions_adddup2(&fa, spec.stdout_fd, 1);
  if (spec.stderr_fd >= 0) posix_spawn_file_actions_adddup2(&fa, spec.stderr_fd, 2);
  // Nothing of ours but 0-2 and the PMI connection (the broker's sockets,
  // other jobs' pipes). dup2 onto itself clears close-on-exec.
  if (spec.pmi_fd >= 0) posix_spawn_file_actions_adddup2(&fa, spec.pmi_fd, kPmiFd);
  posix_spawn_file_actions_addclosefrom_np(&fa, spec.pmi_fd >= 0 ? kPmiFd + 1 : kPmiFd);
  if (!spec.cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, spec.cwd.c_str());
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  if (spec.new_session) flags |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&attr, flags);

  pid_t pid = -1;
  int rc = spec.argv[0].find('/') == std::string::npos
               ? posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), envp.data())
               : posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    std::string why = std::strerror(rc);
    if (rc == ENOENT && !spec.cwd.empty() && ::access(spec.cwd.c_str(), X_OK) != 0) {
      why = "cannot change to directory " + spec.cwd;
    }
    return Error{rc, spec.argv[0] + ": " + why};
  }
  return pid;
}

struct ChildWatch::Impl {
  Impl(asio::io_context& io, pid_t p, int pidfd, std::function<void(int)> fn)
      : pid(p), sd(io, pidfd), on_exit(std::move(fn)) {}
  pid_t pid;
  asio::posix::stream_descriptor sd;
  std::function<void(int)> on_exit;
  std::shared_ptr<int> alive = std::make_shared<int>(0);

  void wait() {
    sd.async_wait(asio::posix::stream_descriptor::wait_read,
                  [this, a = std::weak_ptr<int>(alive)](const std::error_code& ec) {
                    if (a.expired() || ec == asio::error::operation_aborted) return;
                    int st = 0;
                    pid_t r = ::waitpid(pid, &st, WNOHANG);
                    if (r == 0) return wait();  // not yet (spurious wakeup)
                    if (r < 0) st = -1;         // not our child (or reaped elsewhere): unknown
                    auto fn = std::move(on_exit);
                    if (fn) fn(st);
                  });
  }
};

Result<std::unique_ptr<ChildWatch>> ChildWatch::create(asio::io_context& io, pid_t pid,
                                                       std::function<void(int)> on_exit) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return Error{errno, std::string("pidfd_open: ") + std::strerror(errno)};
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  auto impl = std::make_unique<Impl>(io, pid, fd, std::move(on_exit));
  impl->wait();
  return std::unique_ptr<ChildWatch>(new ChildWatch(std::move(impl)));
}

ChildWatch::ChildWatch(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChildWatch::~ChildWatch() = default;
pid_t ChildWatch::pid() const { return impl_->pid; }

std::vector<std::string> current_environment() {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) out.emplace_back(*e);
  return out;
}

}  // namespace loom
