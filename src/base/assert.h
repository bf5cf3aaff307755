// LOOM_ASSERT is for our own bugs ("can't happen"): it aborts with the
// place and the condition. Anything the world can do to us is an Error.
#pragma once

namespace loom::detail {
[[noreturn]] void assert_fail(const char* cond, const char* file, int line);
}

#define LOOM_ASSERT(cond) ((cond) ? static_cast<void>(0) : ::loom::detail::assert_fail(#cond, __FILE__, __LINE__))
