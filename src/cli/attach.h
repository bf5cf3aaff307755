// Attaching to a job: its output as it is written, then its end (attach.cpp).
#pragma once

#include <functional>
#include <string>

#include "base/fluid.h"
#include "cli/common.h"
#include "kvs/layout.h"

namespace loom::cli {

struct AttachOpts {
  std::string cmd = "job attach";  // for messages: "loom CMD: ..."
  bool label = false;              // "RANK: " before each line
  bool forward_stdin = false;      // our stdin to the job's input eventlog (stdin_pump.h)
  // Another eventlog of the job's namespace (`exec.eventlog`), or the
  // output's lines as stored, each given to `on_line` instead of the output
  // printed; then 0 is returned once the job is clean instead of its exit
  // code, and Ctrl-C is not caught (nor are exceptions printed).
  std::string key = kvs_key::kOutput;
  std::function<void(const std::string& line)> on_line;
};

// The eventlog at `key` of a finished job's namespace (its linked copy,
// through job-info: users may read their own): ENOENT while it is not
// linked (or there is no such eventlog).
Result<std::string> lookup_guest(Client& c, JobId id, const std::string& key);

// Returns the exit code a shell would give for the job: its tasks' largest
// exit code, 128+N for a task killed by signal N, 1 for a job that failed
// without a status, 0 on success.
int attach_job(Session& s, JobId id, const AttachOpts& o);

}  // namespace loom::cli
