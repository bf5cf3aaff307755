// Whether the instance is done with a rank of a job, from the job's
// eventlog (docs/protocols/jobs.md): read by a job shell whose broker went
// away, and by a broker back from being cut off from the instance, to
// know whether a job shell may go on running there.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace loom {

// What in `eventlog` says the instance is done with `rank`: a release of
// it (or of all, or the final one), or the job's end; nullopt while the
// job holds it.
std::optional<std::string> released_here(const std::string& eventlog, uint32_t rank);

}  // namespace loom
