// A batch job's script, written where its task can run it (docs/steps.md).
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace loom {

// Writes `text` to a file "script" (mode 0700) in a directory of its own
// (0700, "loom-ID-XXXXXX") under the job's TMPDIR from `env` (the
// submitter's, which this node may not have: then /tmp), as the calling
// process's user. `dir` is set as soon as the directory exists, so that
// the caller removes it when the job ends, even when writing failed.
// Returns the script's path.
Result<std::string> write_batch_script(const std::string& id_text, const std::string& text,
                                       const std::vector<std::string>& env, std::string& dir);

}  // namespace loom
