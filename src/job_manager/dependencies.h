// When a job's dependencies (Flux RFC 26; jobspec/dependencies.h) are met,
// decided from what the job manager knows of the other jobs. Pure: reads
// no clock, sends no message; the job manager (depend.cpp) posts the
// events that follow (RFC 21):
//
//   on entering DEPEND   dependency-add {description} for each dependency
//   when one is met      dependency-remove {description}
//   when all are         depend (the job goes on to PRIORITY)
//   when one never can   a fatal exception of type "dependency" naming the
//                        antecedent and why; the job then ends
//
//   after       met once the antecedent entered RUN (was allocated);
//               never if it ended without
//   afterany    met once the antecedent is inactive
//   afterok     met once it is inactive and COMPLETED; never otherwise
//   afternotok  met once it is inactive and not COMPLETED; never if it was
//   singleton   checked once nothing but cc_limit holds the job besides
//               it (met earlier, it would let a job of the same name that
//               started meanwhile run beside this one); met once no other
//               active job of the same user and name is past DEPEND or was
//               submitted earlier (so jobs of one name run one at a time,
//               in submit order); a step's own allocation is not one of them
//   cc_limit    (--cc=IDSET%N) checked once it is the only dependency left
//               (removed, it is never added again): met while fewer than N
//               other active jobs of its group (the same user's jobs whose
//               cc_limit names the same first job, and that first job) are
//               past DEPEND or, submitted earlier, wait only on cc_limit
//               too; so at most N of the group are ever past DEPEND (at
//               most N run), and they leave in submit order
//
// An antecedent that is no longer known (purged) meets afterany and no
// other dependency: its result is lost.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/fluid.h"
#include "base/result.h"
#include "jobspec/dependencies.h"

namespace loom {

// What a dependency needs to know of its antecedent job.
struct Antecedent {
  bool known = false;        // the job manager has it (not purged)
  bool entered_run = false;  // it was allocated resources
  bool inactive = false;
  std::string result;  // when inactive: COMPLETED, FAILED, CANCELED, TIMEOUT
};

enum class DependencyVerdict : uint8_t { kWaiting, kMet, kNever };

struct DependencyCheck {
  DependencyVerdict verdict = DependencyVerdict::kWaiting;
  std::string reason;  // for kNever: one line naming the antecedent and why
};

// A dependency on a job (every scheme but singleton).
DependencyCheck check_dependency(const Dependency& d, const Antecedent& a);

// Another active job of the same user and name as a singleton job.
struct SingletonPeer {
  JobId id{0};
  bool past_depend = false;  // in PRIORITY or later
};
// Whether singleton `self` may leave DEPEND, given its active peers.
DependencyCheck check_singleton(JobId self, const std::vector<SingletonPeer>& peers);

// Another active job of the same group as a cc_limit job.
struct CcLimitPeer {
  JobId id{0};
  bool past_depend = false;     // in PRIORITY or later
  bool waits_on_limit = false;  // in DEPEND, cc_limit its only dependency left
};
// Whether cc_limit job `self` may leave DEPEND, at most `max` of its group
// being past DEPEND.
DependencyCheck check_cc_limit(JobId self, uint32_t max, const std::vector<CcLimitPeer>& peers);

// At submit, for job `self`: a job cannot depend on itself, and every
// antecedent must exist and be the submitter's to see; `lookup` answers
// the latter for one id (ENOENT, EPERM). The first problem, on one line.
Status check_new_dependencies(const std::vector<Dependency>& deps, JobId self,
                              const std::function<Status(JobId)>& lookup);

}  // namespace loom
