// The cores a job's tasks run on (docs/protocols/exec.md, "Containment").
#pragma once

#include "base/result.h"
#include "idset/idset.h"

namespace loom {

// Binds this process (and so the tasks it starts) to `cores`, R's core ids
// on this rank. Core i is the i-th CPU this process may run on (the
// broker's own affinity), counted round again when R lists more cores than
// there are such CPUs (resources given with --cores-per-rank).
Status bind_to_cores(const IdSet& cores);

}  // namespace loom
