#include "base/assert.h"

#include <cstdio>
#include <cstdlib>

namespace loom::detail {
void assert_fail(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "loom: assertion failed: %s (%s:%d)\n", cond, file, line);
  std::abort();
}
}  // namespace loom::detail
