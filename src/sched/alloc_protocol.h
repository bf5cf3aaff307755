// The scheduler protocol's allocs and frees as typed payloads
// (msg/typed_payload.h; docs/protocols/jobs.md): between a job manager and
// a scheduler of one process, R travels as the ResourceSet it is and a
// jobspec as decoded, rather than written as JSON by one side and read
// back by the other for every job. Anywhere else each is the JSON shown.
//
// Header only: the job manager and the scheduler name these without
// depending on each other.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "jobspec/jobspec.h"
#include "msg/json.h"
#include "rset/rset.h"

namespace loom::sched_protocol {

// sched.alloc's types of response.
enum AllocType { kSuccess = 0, kAnnotate = 1, kDeny = 2, kCancel = 3 };

// A sched.alloc request: {"id", "priority", "userid", "t_submit",
// "jobspec"}. A job manager that has just decoded the jobspec (at submit)
// hands it over decoded too, and the scheduler does not decode it again.
struct AllocRequest {
  uint64_t id = 0;
  int64_t priority = 0;
  uint32_t userid = 0;
  double t_submit = 0;
  std::shared_ptr<const Json> jobspec;     // the document
  std::shared_ptr<const Jobspec> decoded;  // the same decoded (raw left null), or nullptr
};
inline Json payload_json_of(const AllocRequest& a) {
  return Json{{"id", a.id},
              {"priority", a.priority},
              {"userid", a.userid},
              {"t_submit", a.t_submit},
              {"jobspec", a.jobspec ? *a.jobspec : Json()}};
}

// A sched.feasibility request: {"jobspecs": [document, ...]}, each
// jobspec here with the same decoded (raw left null), both as the job
// manager's submit holds them.
struct Feasibility {
  struct Spec {
    std::shared_ptr<const Json> document;
    std::shared_ptr<const Jobspec> decoded;
  };
  std::vector<Spec> jobspecs;
};
inline Json payload_json_of(const Feasibility& f) {
  Json specs = Json::array();
  for (const auto& js : f.jobspecs) specs.push_back(*js.document);
  return Json{{"jobspecs", std::move(specs)}};
}

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
