#include "job_manager/dependencies.h"

#include <cerrno>

namespace loom {

namespace {
DependencyCheck met() { return {DependencyVerdict::kMet, ""}; }
DependencyCheck waiting() { return {DependencyVerdict::kWaiting, ""}; }
DependencyCheck never(const Dependency& d, const std::string& why) {
  // The exception's type already says "dependency".
  return {DependencyVerdict::kNever, d.description() + " can never be met: job " + encode_f58(d.target) + " " + why};
}
std::string ended(const Antecedent& a) {
  if (a.result == "CANCELED") return "was canceled";
  if (a.result == "TIMEOUT") return "timed out";
  if (a.result == "COMPLETED") return "completed successfully";
  return "failed";
}
}  // namespace

DependencyCheck check_dependency(const Dependency& d, const Antecedent& a) {
  if (!a.known) {
    if (d.scheme == DependencyScheme::kAfterAny) return met();
    return never(d, "was purged and its result is lost");
  }
  switch (d.scheme) {
    case DependencyScheme::kAfter:
      if (a.entered_run) return met();
      return a.inactive ? never(d, "ended without running (" + ended(a) + ")") : waiting();
    case DependencyScheme::kAfterAny: return a.inactive ? met() : waiting();
    case DependencyScheme::kAfterOk:
      if (!a.inactive) return waiting();
      return a.result == "COMPLETED" ? met() : never(d, ended(a));
    case DependencyScheme::kAfterNotOk:
      if (!a.inactive) return waiting();
      return a.result != "COMPLETED" ? met() : never(d, ended(a));
    case DependencyScheme::kSingleton:
    case DependencyScheme::kCcLimit: break;
  }
  return waiting();
}

DependencyCheck check_singleton(JobId self, const std::vector<SingletonPeer>& peers) {
  for (const auto& p : peers) {
    if (p.id == self) continue;
    if (p.past_depend || p.id < self) return waiting();
  }
  return met();
}

DependencyCheck check_cc_limit(JobId self, uint32_t max, const std::vector<CcLimitPeer>& peers) {
  uint32_t ahead = 0;
  for (const auto& p : peers) {
    if (p.id == self) continue;
    if (p.past_depend || (p.waits_on_limit && p.id < self)) ++ahead;
  }
  return ahead < max ? met() : waiting();
}

Status check_new_dependencies(const std::vector<Dependency>& deps, JobId self,
                              const std::function<Status(JobId)>& lookup) {
  for (const auto& d : deps) {
    // A cc_limit group is the user's own whatever it names: not looked up,
    // so that the rest of a --cc set goes in after its first job ended.
    if (d.scheme == DependencyScheme::kSingleton || d.scheme == DependencyScheme::kCcLimit) continue;
    if (d.target == self) return Error{EINVAL, "dependency " + d.description() + ": a job cannot depend on itself"};
    if (auto st = lookup(d.target); !st) {
      return Error{st.error().code, "dependency " + d.description() + ": " + st.error().text};
    }
  }
  return {};
}

}  // namespace loom
