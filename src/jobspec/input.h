// Where a job's tasks read their standard input: the jobspec's
// attributes.system.shell.options.input (docs/protocols/exec.md, "Standard
// input"; the shells feed it: src/shell/input.h).
//
//   absent                                  every task reads /dev/null
//   {"type": "kvs", "tasks": "all" | IDSET}  those tasks read the job's input
//                                           eventlog; the others /dev/null
//   {"type": "file", "path": "/abs/path"}   every task reads the file
#pragma once

#include <string>

#include "base/result.h"
#include "idset/idset.h"
#include "msg/json.h"

namespace loom {

struct InputSpec {
  enum class Kind { kNone, kKvs, kFile };
  Kind kind = Kind::kNone;
  bool all_tasks = false;  // kKvs: every task reads it
  IdSet tasks;             // kKvs: else these task ranks
  std::string path;        // kFile
  bool reads(int task_rank) const;
  bool operator==(const InputSpec&) const = default;
};

// The input option of a jobspec's attributes.system (absent: kNone); one
// line naming what is wrong otherwise.
Result<InputSpec> parse_input_spec(const Json& system);

}  // namespace loom
