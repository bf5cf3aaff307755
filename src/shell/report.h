// The exit report a job shell writes on its stdout when it exits (a pipe
// the shell launch service reads once the shell is gone): one line,
//   {"tasks": [[task rank, wait status], ...], "more": N}
// with `more` only when some tasks did not fit. Before it starts its tasks
// the shell writes a first line that tells none: {"tasks": [], "more":
// COUNT}. The last whole line counts: a shell killed before it could tell
// its tasks' exits leaves them counted as unreported.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace loom {

// The report of `tasks`, at most `cap` bytes with its newline (nobody
// reads the pipe before the shell exits, so a longer write would never
// end): as many tasks as fit, in order, and how many did not. cap 0: no
// limit.
std::string exit_report(const std::vector<std::pair<int, int>>& tasks, size_t cap);

// The first line: `count` tasks, none of them told yet.
std::string start_report(size_t count);

}  // namespace loom
