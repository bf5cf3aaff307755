// Running a job as its user (docs/security.md; docs/protocols/exec.md, "Whose
// processes"). A job shell runs as the job's user: where the broker is
// root, the shell launch service looks the user up (its passwd entry and
// groups) and passes what it found in the shell's job as `user`; the shell
// takes that identity before it connects, opens a file or starts a task.
// Where the broker is not root, only the broker's own uid can run.
//
// The lookup (NSS) happens in the broker, which is linked dynamically: the
// job shell is a static program and must not load NSS modules.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "msg/json.h"

namespace loom {

struct JobUser {
  uint32_t uid = 0;
  uint32_t gid = 0;              // the primary group, from the passwd entry
  std::vector<uint32_t> groups;  // every group of the user (initgroups' list), gid included
  std::string name;
  std::string home;
  std::string shell;

  Json to_json() const;
  static Result<JobUser> from_json(const Json& j);
};

// The passwd entry of `uid` and its groups (getgrouplist). ENOENT names
// the uid when there is no such user here. Linked into the broker only.
Result<JobUser> lookup_user(uint32_t uid);

// Whether this process may start processes as other users (it is root).
bool can_switch_users();

// Makes this process `user`, in this order, each step checked:
// setgroups (the user's groups), setgid, setuid; then checks that root
// cannot be regained. The error names the step that failed.
Status become_user(const JobUser& user);

// "this instance runs as uid X and cannot run jobs as other users (job of
// uid Y)": the one sentence for every place that refuses.
std::string cannot_switch_text(uint32_t job_uid);

}  // namespace loom
