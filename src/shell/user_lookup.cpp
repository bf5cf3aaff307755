// lookup_user (user.h): the passwd entry and groups of a job's user, read
// in the broker (NSS may load shared modules; the static job shell cannot).
// The calls may block on a directory service: a launch of another user's
// job waits for them, once per rank.
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "shell/user.h"

namespace loom {

Result<JobUser> lookup_user(uint32_t uid) {
  long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size > 0 ? static_cast<size_t>(size) : 16384);
  passwd pw{};
  passwd* found = nullptr;
  int rc;
  while ((rc = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found)) == ERANGE && buf.size() < (1u << 20)) {
    buf.resize(buf.size() * 2);
  }
  if (rc != 0) return Error{rc, "cannot look up uid " + std::to_string(uid) + ": " + std::strerror(rc)};
  if (!found) return Error{ENOENT, "no user with uid " + std::to_string(uid) + " here"};
  JobUser u;
  u.uid = pw.pw_uid;
  u.gid = pw.pw_gid;
  u.name = pw.pw_name ? pw.pw_name : "";
  u.home = pw.pw_dir ? pw.pw_dir : "";
  u.shell = pw.pw_shell ? pw.pw_shell : "";
  if (u.name.empty()) return Error{ENOENT, "uid " + std::to_string(uid) + " has no user name"};
  // The groups initgroups would set: the primary one and every group that
  // lists the user.
  std::vector<gid_t> groups(64);
  for (;;) {
    int n = static_cast<int>(groups.size());
    if (::getgrouplist(u.name.c_str(), u.gid, groups.data(), &n) >= 0) {
      groups.resize(static_cast<size_t>(n));
      break;
    }
    if (n <= static_cast<int>(groups.size()) || n > 65536) {
      return Error{EIO, "cannot list the groups of user " + u.name};
    }
    groups.resize(static_cast<size_t>(n));
  }
  u.groups.assign(groups.begin(), groups.end());
  return u;
}

}  // namespace loom
