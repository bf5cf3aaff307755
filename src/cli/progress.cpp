#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace loom::cli {

ProgressLine::ProgressLine(std::string label) : ProgressLine(std::move(label), ::isatty(STDERR_FILENO) == 1) {}

ProgressLine::ProgressLine(std::string label, bool on) : label_(std::move(label)), on_(on) {}

void ProgressLine::show(size_t done, size_t total, const std::string& extra) {
  if (!on_) return;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  constexpr size_t kWidth = 30;
  size_t fill = total ? kWidth * std::min(done, total) / total : kWidth;
  std::fprintf(stderr, "\r%s [%s%s] %zu/%zu jobs%s%s, %.0f jobs/s \033[K", label_.c_str(),
               std::string(fill, '#').c_str(), std::string(kWidth - fill, '.').c_str(), done, total,
               extra.empty() ? "" : ", ", extra.c_str(), secs > 0 ? static_cast<double>(done) / secs : 0.0);
  drawn_ = true;
  if (done >= total) clear();
  std::fflush(stderr);
}

void ProgressLine::clear() {
  if (!on_ || !drawn_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace loom::cli
