// Giving freed heap memory back to the system after a burst.
#pragma once

namespace loom {

// Returns the free pages of the heap to the system: jemalloc's purge when
// loomd runs on jemalloc (it is linked in unless sanitizers are on), glibc's
// malloc_trim otherwise. Walks the whole heap: call it after a burst, not
// per request.
void release_free_memory();

}  // namespace loom
