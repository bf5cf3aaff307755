#include "base/memory.h"

#include <cstddef>

#ifdef __GLIBC__
#include <malloc.h>
#endif

// jemalloc's control call, present only when jemalloc is linked in (loomd);
// weak, so that everything else links without it.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen) __attribute__((weak));

namespace loom {

void release_free_memory() {
  if (mallctl != nullptr) {
    // "arena.<MALLCTL_ARENAS_ALL>.purge": every arena's dirty pages.
    (void)mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    return;
  }
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

}  // namespace loom
