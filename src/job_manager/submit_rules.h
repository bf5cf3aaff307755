// What a submission may hold, checked by job-manager.submit before
// anything is stored (docs/protocols/jobs.md, "Who may set what";
// docs/configuration.md for the keys). Pure: reads no clock, sends no
// message.
//
//   size     every jobspec, the owner's too, is at most
//            `job-manager.jobspec-size-limit` bytes as stored (its JSON
//            text). Whatever is stored is later sent whole (sched.alloc,
//            the execution service's start), so the limit keeps a stored
//            job well under the message frame limit.
//   system   a user who is not the instance owner sets only the system
//            attributes of kUserSystemAttributes; the rest of
//            attributes.system is the owner's (and the instance's own
//            services'). attributes.system.exec.test (test execution) is
//            the owner's unless `exec.allow-guest-test` is true.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

#include "base/result.h"
#include "msg/json.h"

namespace loom {

inline constexpr size_t kDefaultJobspecSizeLimit = size_t{1} << 20;  // 1 MiB
// The largest limit accepted: a job's start message carries the jobspec
// and R, and must stay under the 64 MiB frame limit however big R is.
inline constexpr size_t kMaxJobspecSizeLimit = size_t{16} << 20;

// The top-level keys of attributes.system any user may set.
inline constexpr std::array<std::string_view, 8> kUserSystemAttributes = {
    "duration", "cwd", "environment", "job", "shell", "dependencies", "batch", "allocation"};

struct SubmitRules {
  size_t jobspec_size_limit = kDefaultJobspecSizeLimit;  // bytes of jobspec text
  bool allow_guest_test = false;                         // exec.allow-guest-test
};

// EFBIG when a jobspec of `size` bytes is over the limit (for everyone).
Status check_jobspec_size(size_t size, const SubmitRules& rules);

// EPERM when a user who is not the owner sets a system attribute that only
// the owner may; `jobspec` is a jobspec parse_jobspec accepted.
Status check_system_attributes(const Json& jobspec, bool owner, const SubmitRules& rules);

}  // namespace loom
