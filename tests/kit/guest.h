// Real users for tests of who may do what (DESIGN §13). Needs root.
//
//   TestUser u;                       // useradd loomt<pid><n>, userdel at the end
//   ASSERT_TRUE(u.ok()) << u.error();
//   Json out = run_as(loop, u.uid(), u.gid(), [&] { ...; return Json{...}; });
//
// run_as forks a child that drops to the user (setgroups, setgid, setuid)
// and runs `fn` there, while `loop` keeps serving the test's own clients;
// the child's answer comes back as JSON through a pipe.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

#include "kit/client.h"
#include "msg/json.h"

namespace loom::test {

class TestUser {
 public:
  // Creates a user no one else uses (no home directory, no login shell).
  TestUser();
  ~TestUser();
  TestUser(const TestUser&) = delete;
  TestUser& operator=(const TestUser&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  uid_t uid() const { return uid_; }
  gid_t gid() const { return gid_; }

 private:
  std::string name_;
  std::string error_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
};

// Runs `fn` in a child as uid/gid; returns what it returned, or null when
// the child could not become the user, failed or took over `timeout`
// seconds (then it is killed). Adds a test failure in those cases.
Json run_as(Loop& loop, uid_t uid, gid_t gid, const std::function<Json()>& fn, double timeout = 60);

}  // namespace loom::test
