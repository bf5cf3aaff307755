#include "kit/as_user.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <asio/posix/stream_descriptor.hpp>
#include <string>

#include "kit/process.h"

namespace loom::test {

Json run_as(Loop& loop, uid_t uid, gid_t gid, const std::function<Json()>& fn, double timeout) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return nullptr;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    Json out;
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) {
      out = Json{{"setup", std::string("cannot drop to uid ") + std::to_string(uid)}};
    } else {
      out = fn();
    }
    std::string text = dump_json(out);
    ssize_t ignored = ::write(fds[1], text.data(), text.size());
    (void)ignored;
    ::_exit(0);
  }
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    return nullptr;
  }
  // Read the child's answer on the loop, so that services on it answer.
  asio::posix::stream_descriptor pipe(loop.io(), fds[0]);
  std::string text;
  bool done = false;
  std::function<void()> read_more;
  char buf[4096];
  read_more = [&] {
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
  EXPECT_TRUE(ok) << "child as uid " << uid << " did not finish";
  EXPECT_TRUE(st && exit_code(*st) == 0);
  auto j = parse_json(text);
  return j.ok() ? *j : Json(nullptr);
}

}  // namespace loom::test
