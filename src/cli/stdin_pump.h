// Standard input of `loom run` and `loom job attach`, into the job's input
// eventlog (src/shell/input.h), from which the shells feed the tasks that
// read it.
#pragma once

#include <memory>

#include "base/ids.h"
#include "cli/common.h"

namespace loom::cli {

class StdinPump {
 public:
  // Starts sending our stdin to job `id`'s input eventlog (its namespace
  // exists once the job started). Chunks go one commit at a time (the next
  // is read once the last is stored); the end of our stdin is sent as the
  // end of the input. A terminal we do not have the foreground of is not
  // read (it would stop us): the input ends at once.
  static std::unique_ptr<StdinPump> start(Session& s, const std::string& cmd, JobId id);
  virtual ~StdinPump() = default;
};

}  // namespace loom::cli
