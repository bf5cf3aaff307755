// Real users for end-to-end tests of who runs what (docs/security.md): created
// with useradd, removed with userdel -r when the fixture goes, whatever the
// test's outcome; and commands run as one of them.
//
//   if (auto why = TestUsers::unavailable(); !why.empty()) GTEST_SKIP() << why;
//   TestUsers users;
//   TestUser a;
//   ASSERT_TRUE(users.add("a", &a));
//   auto r = run_as(a, {bin("loom"), "run", "id", "-un"}, {{"LOOM_URI", uri}}, a.home);
//
// Names are `lt<pid>x<tag>`: unique per test process, and users left by a
// test process that was killed (no cleanup) are removed by the next
// fixture, once that process is gone.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "kit/process.h"

namespace loom::test {

struct TestUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;                    // primary group
  std::vector<gid_t> groups;        // every group (initgroups' list), sorted
  std::string home;                 // created, the user's own (mode 0700)
  std::string groups_text() const;  // "g1 g2 ...", as `id -G` prints them, sorted
};

class TestUsers {
 public:
  TestUsers();
  ~TestUsers();  // removes every user and group it created
  TestUsers(const TestUsers&) = delete;
  TestUsers& operator=(const TestUsers&) = delete;

  // Why real users cannot be made here ("" if they can): not root, or no
  // useradd/userdel/groupadd.
  static std::string unavailable();

  // A group named after `tag`; its name in *name.
  ::testing::AssertionResult add_group(const std::string& tag, std::string* name);
  // A user named after `tag` with a home directory, also in `groups`
  // (names from add_group).
  ::testing::AssertionResult add(const std::string& tag, TestUser* out, const std::vector<std::string>& groups = {});

 private:
  std::vector<std::string> users_;
  std::vector<std::string> groups_;
};

// Runs argv as `user` (its groups, gid, uid; HOME, USER, LOGNAME set) in
// directory `cwd` ("" = the user's home), with our environment plus `env`;
// as run_cmd otherwise. The caller must be root.
CmdResult run_as(const TestUser& user, const std::vector<std::string>& argv, const Env& env = {},
                 const std::string& cwd = "", double timeout = 30);
// The same, left running beside the test.
std::unique_ptr<Background> background_as(const TestUser& user, const std::vector<std::string>& argv,
                                          const Env& env = {}, const std::string& cwd = "");

}  // namespace loom::test
