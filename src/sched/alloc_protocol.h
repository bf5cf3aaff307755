// The scheduler protocol's resource-carrying messages as typed payloads
// (msg/typed_payload.h; docs/protocols/jobs.md): between a job manager and
// a scheduler of one process, R travels as the ResourceSet it is, rather
// than written as R JSON by one side and parsed back by the other for
// every job. Anywhere else each is the JSON shown.
//
// Header only: the job manager and the scheduler name these without
// depending on each other.
#pragma once

#include <cstdint>
#include <utility>

#include "msg/json.h"
#include "rset/rset.h"

namespace loom::sched_protocol {

// sched.alloc's types of response.
enum AllocType { kSuccess = 0, kAnnotate = 1, kDeny = 2, kCancel = 3 };

// A sched.alloc success: {"id": ID, "type": 0, "R": R}.
struct AllocGranted {
  uint64_t id = 0;
  ResourceSet R;
};
inline Json payload_json_of(const AllocGranted& a) {
  return Json{{"id", a.id}, {"type", kSuccess}, {"R", a.R.to_json()}};
}

// A sched.free request: {"id": ID, "R": R, "final": BOOL}.
struct Free {
  uint64_t id = 0;
  ResourceSet R;
  bool final = false;
};
inline Json payload_json_of(const Free& f) { return Json{{"id", f.id}, {"R", f.R.to_json()}, {"final", f.final}}; }

}  // namespace loom::sched_protocol
