// The fields of a job as `loom jobs -o` shows them (docs/commands.md,
// "Formats"): flux jobs's, from what job-manager.list gives. Each is a
// Python value, str, int or float, so that a format spec treats it as
// Python would: `{ntasks:>6}`, `{t_submit:.2f}`, `{name:<10.10}`.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "msg/json.h"

namespace loom::cli {

// What a field of a job is, before it is formatted: Python's str, int or
// float (a missing value is the empty string, as in flux jobs).
struct FieldValue {
  enum class Kind { kString, kInt, kFloat } kind = Kind::kString;
  std::string s;
  int64_t i = 0;
  double f = 0;
};
inline FieldValue text(std::string s) { return FieldValue{FieldValue::Kind::kString, std::move(s), 0, 0}; }

// The value of field `name` (id, username, t_submit, sched.reason_pending,
// ...) for job `job`, at wall time `now`; an error for an unknown name.
Result<FieldValue> job_field(const Json& job, const std::string& name, double now);

// The header of a field's column: "JOBID", "USER", "ST", ...
std::string field_heading(const std::string& name);

// The FSD form flux jobs prints: "0s", "1.234s", "12.35s", "3.5m", "2h", "1.5d".
std::string format_fsd(double seconds);

}  // namespace loom::cli
