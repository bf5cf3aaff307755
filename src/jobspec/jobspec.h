// Jobspec version 1 (Flux RFC 25, a subset of RFC 14), as JSON.
//
//   resources: exactly one of  slot>core, slot>(core,gpu),
//              node>slot>core, node>slot>(core,gpu)   with integer counts
//   tasks:     one task {command: [..], slot: LABEL, count: {per_slot: 1} | {total: N}}
//   attributes.system: duration (seconds, required, 0 = none), cwd,
//              environment, job.name, batch, allocation, ... ;
//              attributes.user: anything
//   version:   1
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "jobspec/input.h"
#include "msg/json.h"

namespace loom {

// What the scheduler and the execution service need, decoded once.
struct Jobspec {
  Json raw;             // the validated document
  uint32_t nnodes = 0;  // 0: no node level (slots anywhere)
  uint32_t nslots = 1;  // all slots of the job
  uint32_t slots_per_node = 0;
  uint32_t cores_per_slot = 1;
  uint32_t gpus_per_slot = 0;
  bool exclusive = false;  // whole nodes
  uint32_t ntasks = 1;
  std::vector<std::string> command;
  double duration = 0;  // seconds; 0 means no limit was asked
  std::string cwd;
  std::string name;  // attributes.system.job.name, else basename of command[0]
  InputSpec input;   // attributes.system.shell.options.input (jobspec/input.h)
  // attributes.system.batch.script: the job is an allocation (loom batch,
  // loom alloc) whose one task runs this script on its first rank; its
  // steps share its resources (docs/steps.md). Its task count is 1 however
  // many nodes it holds.
  bool batch = false;
  std::string script;
  // attributes.system.allocation: the job is a step of the allocation with
  // this id (0: it is not), placed in that job's resources rather than by
  // the scheduler.
  uint64_t allocation = 0;

  bool operator==(const Jobspec&) const = default;
};

Result<Jobspec> parse_jobspec(const Json& j);
Result<Jobspec> parse_jobspec(Json&& j);  // the same, `raw` moved in rather than copied
Result<Jobspec> parse_jobspec_text(std::string_view text);
// The same checks and fields, `raw` left null: for a reader that keeps
// only what is decoded (a copy of the document costs as much as a parse).
Result<Jobspec> decode_jobspec(const Json& j);

// The keys of attributes.system that loom reads: duration, cwd, environment,
// job (name), shell (options), exec (test), dependencies (RFC 26), batch
// and allocation (docs/steps.md).
inline constexpr std::array<std::string_view, 10> kSystemAttributes = {
    "duration", "cwd", "environment", "job", "shell", "exec", "dependencies", "cc_limit", "batch", "allocation"};
// The most bytes a batch script may have.
inline constexpr size_t kMaxScript = size_t{1} << 20;
// EINVAL naming the first key of attributes.system that loom does not know:
// an attribute it would not act on is refused at submit rather than
// ignored. Not part of parse_jobspec, so that jobs stored before a key was
// retired still load.
Status check_system_keys(const Json& jobspec);

// What `loom submit -N -n -c -g -x -t` asks for.
struct JobRequest {
  uint32_t nodes = 0;  // 0: not given
  uint32_t tasks = 0;  // 0: not given
  uint32_t cores_per_task = 1;
  uint32_t gpus_per_task = 0;
  bool exclusive = false;
  double duration = 0;
  std::vector<std::string> command;
  std::string cwd;
  Json environment;  // object, or null
  std::string name;
};
// Builds a version 1 jobspec the way Flux users expect: -N without -n runs
// one task per node on whole nodes; -n tasks are spread over -N nodes in ceil(n/N) slots
// per node; -x asks for whole nodes.
Result<Json> build_jobspec(const JobRequest& r);

// The value of attributes.system.duration, checked: a non-negative number
// of seconds.
Result<double> jobspec_duration(const Json& value);

// Flux Standard Duration: "30", "30s", "1.5m", "2h", "1d", "inf"; a bare
// number is seconds.
Result<double> parse_fsd(std::string_view s);
// A time limit as `-t` takes it: the same, but a bare number is minutes.
Result<double> parse_time_limit(std::string_view s);

}  // namespace loom
