// Taking the job user's identity (user.h). No NSS here: the groups come
// from the broker's lookup (user_lookup.cpp).
#include "shell/user.h"

#include <grp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace loom {

Json JobUser::to_json() const {
  return Json{{"uid", uid}, {"gid", gid}, {"groups", groups}, {"name", name}, {"home", home}, {"shell", shell}};
}

Result<JobUser> JobUser::from_json(const Json& j) {
  auto bad = [](const std::string& what) { return Error{EPROTO, "bad \"user\" in the job: " + what}; };
  if (!j.is_object()) return bad("not an object");
  JobUser u;
  for (auto [key, field] : {std::pair{"uid", &u.uid}, std::pair{"gid", &u.gid}}) {
    if (!j.contains(key) || !j[key].is_number_unsigned() || j[key].get<uint64_t>() > UINT32_MAX - 1) {
      return bad(std::string(key) + " must be a uid/gid");
    }
    *field = j[key].get<uint32_t>();
  }
  if (!j.contains("groups") || !j["groups"].is_array()) return bad("groups must be a list");
  for (const Json& g : j["groups"]) {
    if (!g.is_number_unsigned() || g.get<uint64_t>() > UINT32_MAX - 1) return bad("groups must be gids");
    u.groups.push_back(g.get<uint32_t>());
  }
  for (auto [key, field] : {std::pair{"name", &u.name}, std::pair{"home", &u.home}, std::pair{"shell", &u.shell}}) {
    if (!j.contains(key) || !j[key].is_string()) return bad(std::string(key) + " must be a string");
    *field = j[key].get<std::string>();
  }
  if (u.name.empty()) return bad("empty name");
  return u;
}

bool can_switch_users() { return ::geteuid() == 0; }

Status become_user(const JobUser& user) {
  auto failed = [&](const char* step) {
    int e = errno;
    return Error{e, std::string("cannot run as user ") + user.name + " (uid " + std::to_string(user.uid) +
                        "): " + step + ": " + std::strerror(e)};
  };
  std::vector<gid_t> groups(user.groups.begin(), user.groups.end());
  if (::setgroups(groups.size(), groups.data()) != 0) return failed("setgroups");
  if (::setgid(user.gid) != 0) return failed("setgid");
  if (::setuid(user.uid) != 0) return failed("setuid");
  // setuid as root sets all three uids; if any privilege were left, this
  // would succeed.
  bool regained = user.uid != 0 && ::setuid(0) == 0;
  if (!regained && user.uid != 0 && user.gid != 0) regained = ::setgid(0) == 0;
  if (regained) {
    errno = EPERM;
    return failed("dropping root");
  }
  if (::getuid() != user.uid || ::geteuid() != user.uid || ::getgid() != user.gid || ::getegid() != user.gid) {
    errno = EPERM;
    return failed("checking the ids");
  }
  return {};
}

std::string cannot_switch_text(uint32_t job_uid) {
  return "this instance runs as uid " + std::to_string(::geteuid()) +
         " and cannot run jobs as other users (the job is uid " + std::to_string(job_uid) + "'s)";
}

}  // namespace loom
