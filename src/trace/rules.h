// What the SWF and Batsim readers share: the rules that turn records into
// jobs the simulator can run, and the summary line that says what they did
// (docs/simulator.md, "Traces").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "trace/trace.h"

namespace loom::trace::detail {

// The longest time a trace may give (317 years): beyond it, a value is
// garbage, never a job.
inline constexpr double kMaxSeconds = 1e10;

// Applies the rules to `jobs` in place: each job holds its record in
// `swf` and its input `submit` and `run` (SWF fields 2 and 4; Batsim may
// have set run from the walltime already). Keeps the jobs that can run,
// with `procs` and `requested_time` set and `run` cut under the strong
// filter; then sorts them by submit time (stable). `machine` <= 0: no
// machine size known, nothing is larger than it. Adds to `tally` from
// `read` on.
void apply_rules(std::vector<Job>& jobs, int64_t machine, Filter filter, Tally& tally);

// The one summary line; `machine_note`, when not empty, ends it.
std::string summarize(const Tally& tally, int64_t kept, Filter filter, std::string_view machine_note);

// An error when two kept jobs share an id: `name:LINE: job N again (first
// on line M)`, or with `lines` false (Batsim) their places in `jobs`.
Status check_unique_ids(const std::vector<Job>& jobs, const std::string& name, bool lines);

}  // namespace loom::trace::detail
