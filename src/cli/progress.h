// A progress line on stderr, redrawn in place, for commands that work
// through many jobs (loom sim, loom submit --cc, loom job wait --all):
//
//   LABEL [#########.....................] 312/1000 jobs, EXTRA, 125 jobs/s
//
// Shown only when stderr is a terminal: in a pipe, a file or a test,
// nothing is written. The line is erased once all are done, and by
// clear() before the command prints something else to the terminal.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace loom::cli {

class ProgressLine {
 public:
  explicit ProgressLine(std::string label);  // on when stderr is a terminal
  ProgressLine(std::string label, bool on);

  bool on() const { return on_; }
  // Draws `done` of `total`; `extra` (a date, ...) goes after the count.
  void show(size_t done, size_t total, const std::string& extra = "");
  // Erases the line (it is drawn again by the next show()).
  void clear();

 private:
  std::string label_;
  bool on_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace loom::cli
