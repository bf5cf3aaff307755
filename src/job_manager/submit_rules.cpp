#include "job_manager/submit_rules.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>

namespace loom {

namespace {
// "1.5 MiB", "512 KiB", "300 bytes": sizes as people read them.
std::string human_size(size_t n) {
  char buf[32];
  if (n >= (size_t{1} << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(n) / (1 << 20));
  } else if (n >= 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(n) / 1024);
  } else {
    std::snprintf(buf, sizeof buf, "%zu bytes", n);
  }
  return buf;
}
}  // namespace

Status check_jobspec_size(size_t size, const SubmitRules& rules) {
  if (size <= rules.jobspec_size_limit) return {};
  return Error{EFBIG, "jobspec is " + human_size(size) + " (" + std::to_string(size) + " bytes), over the limit of " +
                          human_size(rules.jobspec_size_limit) + " (job-manager.jobspec-size-limit)"};
}

Status check_system_attributes(const Json& jobspec, bool owner, const SubmitRules& rules) {
  if (owner) return {};
  auto attrs = jobspec.find("attributes");
  if (attrs == jobspec.end() || !attrs->is_object()) return {};
  auto sys = attrs->find("system");
  if (sys == attrs->end() || !sys->is_object()) return {};
  for (const auto& [key, value] : sys->items()) {
    if (std::find(kUserSystemAttributes.begin(), kUserSystemAttributes.end(), key) != kUserSystemAttributes.end()) {
      continue;
    }
    if (key == "exec" && value.is_object()) {
      // Test execution is the one exec attribute the owner may open to users.
      for (const auto& [k, v] : value.items()) {
        if (k != "test") return Error{EPERM, "only the instance owner may set attributes.system.exec." + k};
        if (!rules.allow_guest_test) {
          return Error{EPERM,
                       "only the instance owner may use test execution (attributes.system.exec.test) unless "
                       "exec.allow-guest-test is set"};
        }
      }
      continue;
    }
    return Error{EPERM,
                 "only the instance owner may set attributes.system." + key +
                     " (users set duration, cwd, environment, job, shell, dependencies, batch and allocation; anything "
                     "else goes under "
                     "attributes.user)"};
  }
  return {};
}

}  // namespace loom
