// Job dependencies (Flux RFC 26), as the jobspec and the command line
// carry them. Pure: the rules that decide when a dependency is met are the
// job manager's (job_manager/dependencies.h).
//
//   jobspec   attributes.system.dependencies: a non-empty list of objects
//             {"scheme": S, "value": V}, nothing else in them.
//             S is after, afterany, afterok, afternotok (V: a job id in
//             any form loom accepts) or singleton (V: "").
//             attributes.system.cc_limit: {"max": N (1 or more), "group": ID
//             (a job id; absent in the group's first job, whose id names
//             the group)}, set by `loom submit --cc=IDSET%N`: one more
//             dependency, of scheme cc_limit, that holds the job in DEPEND
//             while N jobs of its group are past DEPEND
//             (job_manager/dependencies.h).
//   command   --dependency=TYPE:ID[:ID...][,TYPE:ID...] (Slurm's form; the
//             option may repeat, as in Flux); "singleton" takes no id.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/fluid.h"
#include "base/result.h"
#include "msg/json.h"

namespace loom {

enum class DependencyScheme : uint8_t {
  kAfter,       // the antecedent entered RUN
  kAfterAny,    // the antecedent is inactive, whatever its result
  kAfterOk,     // ... and completed successfully
  kAfterNotOk,  // ... and did not
  kSingleton,   // no other active job of the same user and name has left DEPEND
  kCcLimit,     // fewer than `max` active jobs of its group have left DEPEND
};

struct Dependency {
  DependencyScheme scheme = DependencyScheme::kAfterAny;
  JobId target{0};   // unused for singleton; for cc_limit the group (0: the job itself)
  uint32_t max = 0;  // cc_limit only

  // "afterok:ƒ2oLkTLb", "singleton", "cc_limit:5" (the group's first job),
  // "cc_limit:ƒ2oLkTLb:5" (the others): the form `loom jobs` shows and the
  // eventlog's dependency-add and dependency-remove events carry.
  std::string description() const;
  friend bool operator==(const Dependency&, const Dependency&) = default;
};

const char* dependency_scheme_name(DependencyScheme s);

// The dependencies of a jobspec (none when attributes.system.dependencies
// is absent), or a one-line error naming what is wrong.
Result<std::vector<Dependency>> parse_dependencies(const Json& jobspec);

// One --dependency argument as the list of jobspec objects it stands for
// (the ids as F58); a one-line error for an unknown type or a bad id.
Result<Json> parse_dependency_option(std::string_view arg);

}  // namespace loom
