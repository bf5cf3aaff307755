// LOOM_ASSERT is for our own bugs ("can't happen"): it aborts with the
// place and the condition. Anything the world can do to us is an Error.
#pragma once

namespace loom::detail {
[[noreturn]] void assert_fail(const char* cond, const char* file, int line);
}

#define LOOM_ASSERT(cond) ((cond) ? static_cast<void>(0) : ::loom::detail::assert_fail(#cond, __FILE__, __LINE__))

// The same for a check that costs too much to make in a release build:
// made only where NDEBUG is not defined (the sanitizer and debug trees,
// which run the whole suite).
#ifdef NDEBUG
#define LOOM_DEBUG_ASSERT(cond) static_cast<void>(0)
#else
#define LOOM_DEBUG_ASSERT(cond) LOOM_ASSERT(cond)
#endif
