#include "kit/users.h"

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

namespace loom::test {

namespace {

constexpr const char* kUserPrefix = "lt";

// The pid in a name of ours (lt<pid>x<tag>), or 0.
pid_t owner_pid(const std::string& name) {
  if (!name.starts_with(kUserPrefix)) return 0;
  size_t x = name.find('x', 2);
  if (x == std::string::npos || x == 2) return 0;
  std::string digits = name.substr(2, x - 2);
  if (!std::all_of(digits.begin(), digits.end(), ::isdigit)) return 0;
  return static_cast<pid_t>(std::stol(digits));
}

// Names in /etc/passwd (or /etc/group) left by test processes that are gone.
std::vector<std::string> stale(const char* file) {
  std::vector<std::string> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    std::string name = line.substr(0, line.find(':'));
    pid_t pid = owner_pid(name);
    if (pid > 0 && pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) out.push_back(name);
  }
  return out;
}

std::string name_for(const std::string& tag) { return kUserPrefix + std::to_string(::getpid()) + "x" + tag; }

// Becomes `user` in a forked child: groups, gid, uid (in that order), its
// environment, and the directory.
std::string become(const TestUser& user, const std::string& cwd) {
  std::vector<gid_t> groups = user.groups;
  if (::setgroups(groups.size(), groups.data()) != 0) return std::string("setgroups: ") + std::strerror(errno);
  if (::setgid(user.gid) != 0) return std::string("setgid: ") + std::strerror(errno);
  if (::setuid(user.uid) != 0) return std::string("setuid: ") + std::strerror(errno);
  std::string dir = cwd.empty() ? user.home : cwd;
  if (::chdir(dir.c_str()) != 0) return "chdir " + dir + ": " + std::strerror(errno);
  return "";
}

Env user_env(const TestUser& user, const std::string& cwd, const Env& env) {
  Env all = {{"HOME", user.home}, {"USER", user.name}, {"LOGNAME", user.name}, {"PWD", cwd.empty() ? user.home : cwd}};
  all.insert(all.end(), env.begin(), env.end());
  return all;
}

}  // namespace

std::string TestUser::groups_text() const {
  std::string out;
  for (gid_t g : groups) out += (out.empty() ? "" : " ") + std::to_string(g);
  return out;
}

std::string TestUsers::unavailable() {
  if (::geteuid() != 0) return "needs root: it creates users and runs an instance that switches to them";
  for (const char* t : {"useradd", "userdel", "groupadd", "groupdel"}) {
    if (system_tool(t).empty()) return std::string("needs ") + t;
  }
  return "";
}

TestUsers::TestUsers() {
  if (!unavailable().empty()) return;
  for (const auto& u : stale("/etc/passwd")) run_cmd({system_tool("userdel"), "-r", "-f", u});
  for (const auto& g : stale("/etc/group")) run_cmd({system_tool("groupdel"), g});
}

TestUsers::~TestUsers() {
  for (const auto& u : users_) {
    // -f: even if a process of theirs outlived the test.
    auto r = run_cmd({system_tool("userdel"), "-r", "-f", u});
    // 12: the home directory could not be removed (or had no mail spool).
    if (r.code != 0 && r.code != 12) ADD_FAILURE() << "userdel " << u << ": " << brief(r);
  }
  for (const auto& g : groups_) {
    auto r = run_cmd({system_tool("groupdel"), g});
    if (r.code != 0 && r.code != 6) ADD_FAILURE() << "groupdel " << g << ": " << brief(r);
  }
}

::testing::AssertionResult TestUsers::add_group(const std::string& tag, std::string* name) {
  std::string n = name_for(tag);
  auto r = run_cmd({system_tool("groupadd"), n});
  if (r.code != 0) return ::testing::AssertionFailure() << "groupadd " << n << ": " << brief(r);
  groups_.push_back(n);
  *name = n;
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult TestUsers::add(const std::string& tag, TestUser* out,
                                          const std::vector<std::string>& groups) {
  std::string n = name_for(tag);
  std::vector<std::string> argv = {system_tool("useradd"), "--create-home", "--user-group", "--shell", "/bin/sh"};
  if (!groups.empty()) {
    std::string list;
    for (const auto& g : groups) list += (list.empty() ? "" : ",") + g;
    argv.insert(argv.end(), {"--groups", list});
  }
  argv.push_back(n);
  auto r = run_cmd(argv);
  if (r.code != 0) return ::testing::AssertionFailure() << "useradd " << n << ": " << brief(r);
  users_.push_back(n);
  passwd* pw = ::getpwnam(n.c_str());
  if (!pw) return ::testing::AssertionFailure() << "useradd made " << n << " but getpwnam does not find it";
  TestUser u;
  u.name = n;
  u.uid = pw->pw_uid;
  u.gid = pw->pw_gid;
  u.home = pw->pw_dir;
  int count = 64;
  std::vector<gid_t> list(static_cast<size_t>(count));
  if (::getgrouplist(n.c_str(), u.gid, list.data(), &count) < 0) {
    list.resize(static_cast<size_t>(count));
    if (::getgrouplist(n.c_str(), u.gid, list.data(), &count) < 0) {
      return ::testing::AssertionFailure() << "getgrouplist " << n;
    }
  }
  list.resize(static_cast<size_t>(count));
  std::sort(list.begin(), list.end());
  list.erase(std::unique(list.begin(), list.end()), list.end());
  u.groups = list;
  // Private, whatever useradd's default mode.
  ::chmod(u.home.c_str(), 0700);
  *out = u;
  return ::testing::AssertionSuccess();
}

CmdResult run_as(const TestUser& user, const std::vector<std::string>& argv, const Env& env, const std::string& cwd,
                 double timeout) {
  return Background(argv, user_env(user, cwd, env), [&] { return become(user, cwd); }).finish(timeout);
}

std::unique_ptr<Background> background_as(const TestUser& user, const std::vector<std::string>& argv, const Env& env,
                                          const std::string& cwd) {
  return std::make_unique<Background>(argv, user_env(user, cwd, env), [&] { return become(user, cwd); });
}

}  // namespace loom::test
