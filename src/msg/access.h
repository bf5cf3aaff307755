// Who may touch what (docs/security.md, docs/protocols/jobs.md): the one rule
// every service applies to a request about something a user owns (a job,
// a KVS namespace). The broker stamps `userid` and `rolemask` on every
// message; a service trusts the stamp and nothing in the payload.
//
//   the instance owner   anything
//   a user (a "guest")   only what belongs to their own uid
//
// Methods only the owner may call at all are declared Access::kOwner in
// the service's table (Handle::add_method); this is for the methods any
// user may call, on things that belong to someone.
#pragma once

#include <cstdint>

#include "msg/message.h"

namespace loom {

// The request (or response) comes from the instance owner or from one of
// the instance's own services.
inline bool is_owner(const Message& m) { return (m.rolemask & role::kOwner) != 0; }

// The sender of `m` may touch something that belongs to `userid`.
inline bool may_touch(const Message& m, uint32_t userid) { return is_owner(m) || m.userid == userid; }

}  // namespace loom
