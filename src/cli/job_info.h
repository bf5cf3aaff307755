// loom job info ID: one page about a job (job_info.cpp).
#pragma once

#include "base/ids.h"
#include "cli/common.h"

namespace loom::cli {

// Prints the page; returns the exit status.
int show_job_summary(Session& s, JobId id);

}  // namespace loom::cli
