// Acting as another local user in a test (needs root): a forked child that
// drops to a uid and reports back as JSON, while the test's loop serves.
#pragma once

#include <sys/types.h>

#include <functional>

#include "kit/client.h"

namespace loom::test {

// The uid tests use for "some other local user" (nobody on Debian).
inline constexpr uid_t kNobody = 65534;

// Runs `fn` in a forked child as `uid` and `gid`, without supplementary
// groups, while `loop` keeps running (so services on it answer the child).
// Returns what fn returned; null (and a test failure) if the child failed
// or did not finish within `timeout` seconds; {"setup": why} if it could
// not become that user.
Json run_as(Loop& loop, uid_t uid, gid_t gid, const std::function<Json()>& fn, double timeout = 30);
// The same with the gid equal to the uid (kNobody).
inline Json run_as(Loop& loop, uid_t uid, const std::function<Json()>& fn, double timeout = 30) {
  return run_as(loop, uid, static_cast<gid_t>(uid), fn, timeout);
}

}  // namespace loom::test
