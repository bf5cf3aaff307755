// The test executor (executor.h): jobspecs with attributes.system.exec.test
// run no processes. `run_duration`, `wait_status`, `mock_exception` and
// `override` decide what the stream says and when
// (docs/protocols/exec.md, "job-exec: test execution mode").
#pragma once

#include <memory>

#include "job_exec/executor.h"

namespace loom::job_exec {

std::unique_ptr<Executor> make_test_executor(Service& svc);

}  // namespace loom::job_exec
