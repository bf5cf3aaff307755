// A process's wait status as a shell reports it (`$?`): the exit code, or
// 128+N for a process killed by signal N. Job shells exit with it, `loom
// run` exits with it, and the worst of a job's statuses is the largest.
#pragma once

#include <sys/wait.h>

namespace loom {

inline int shell_exit_code(int status) {
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

}  // namespace loom
