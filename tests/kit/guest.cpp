#include "kit/guest.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <asio/posix/stream_descriptor.hpp>
#include <atomic>

#include "kit/process.h"

namespace loom::test {

namespace {
// The shadow tools live in sbin, which need not be on the test's PATH.
std::string sbin(const std::string& name) {
  for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/"}) {
    std::string p = dir + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return name;
}
}  // namespace

TestUser::TestUser() {
  static std::atomic<int> n{0};
  name_ = "loomt" + std::to_string(::getpid()) + "x" + std::to_string(n++);
  auto r = run_cmd({sbin("useradd"), "--no-create-home", "--shell", "/usr/sbin/nologin", name_});
  if (r.code != 0) {
    error_ = "useradd " + name_ + " failed: " + r.err;
    return;
  }
  struct passwd* pw = ::getpwnam(name_.c_str());
  if (!pw) {
    error_ = "useradd made no " + name_;
    return;
  }
  uid_ = pw->pw_uid;
  gid_ = pw->pw_gid;
}

TestUser::~TestUser() {
  if (uid_ != 0) (void)run_cmd({sbin("userdel"), name_});
}

Json run_as(Loop& loop, uid_t uid, gid_t gid, const std::function<Json()>& fn, double timeout) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2 failed";
    return nullptr;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    Json out;
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) {
      out = Json{{"setup", "cannot become uid " + std::to_string(uid)}};
    } else {
      out = fn();
    }
    std::string text = dump_json(out);
    for (size_t done = 0; done < text.size();) {
      ssize_t n = ::write(fds[1], text.data() + done, text.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    ADD_FAILURE() << "fork failed";
    return nullptr;
  }
  // An io_context that ran out of work is stopped until restarted, and
  // run_until would take it for finished: poll() restarts it.
  loop.poll();
  // The child's answer is read on `loop`, so that the test's own clients
  // and services on it keep being served meanwhile.
  asio::posix::stream_descriptor pipe(loop.io(), fds[0]);
  std::string text;
  bool done = false;
  char buf[4096];
  std::function<void()> read_more = [&] {
    pipe.async_read_some(asio::buffer(buf), [&](const std::error_code& ec, size_t n) {
      if (ec) {
        done = true;
        return;
      }
      text.append(buf, n);
      read_more();
    });
  };
  read_more();
  bool ok = loop.run_until([&] { return done; }, timeout);
  if (!ok) {
    ::kill(pid, SIGKILL);
    pipe.cancel();
    loop.run_until([&] { return done; }, 5);
  }
  auto st = wait_child(pid, 10);
  EXPECT_TRUE(ok) << "the child as uid " << uid << " did not finish in " << timeout << "s";
  EXPECT_TRUE(st && exit_code(*st) == 0) << "the child as uid " << uid << " failed";
  auto j = parse_json(text);
  if (!j.ok()) return nullptr;
  EXPECT_FALSE(j->is_object() && j->contains("setup")) << j->dump();
  return *j;
}

}  // namespace loom::test
