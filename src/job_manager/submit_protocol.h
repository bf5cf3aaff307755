// job-manager.submit as a typed payload (msg/typed_payload.h): how a
// service of the job manager's own process (the simulator) hands over
// jobspecs it built. The job manager keeps each document as it was sent,
// shared and never changed, from the submit to the job's start, where a
// JSON submit's are copied out of the request's tree. Its JSON is the
// request's, {"jobs": [{"jobspec": document}, ...]} (docs/protocols/jobs.md);
// the job manager checks these documents exactly as it checks those.
//
// Header only, like sched/alloc_protocol.h: a client names it without
// depending on the job manager.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "jobspec/jobspec.h"
#include "msg/json.h"

namespace loom {

struct SubmitJobs {
  std::vector<std::shared_ptr<const Json>> jobspecs;  // none null
  // Each document's text exactly as dump_json() writes it, when the sender
  // has it at hand (the simulator writes a job's run time into its shape's
  // text): the job manager stores it as the jobspec rather than writing
  // the document again. Empty, or one per document. A build with checks
  // (not NDEBUG) compares it with the document's own text.
  std::vector<std::string> texts;
  // Each document decoded (decode_jobspec), when the sender has it at
  // hand (the simulator decodes each shape of job once, and its jobs share
  // it): the job manager takes it rather than decoding the document again,
  // as the scheduler takes the job manager's. Empty, or one per document.
  // A build with checks compares it with the document's own decoding.
  std::vector<std::shared_ptr<const Jobspec>> decoded;
};

inline Json payload_json_of(const SubmitJobs& s) {
  Json jobs = Json::array();
  for (const auto& doc : s.jobspecs) jobs.push_back(Json{{"jobspec", *doc}});
  return Json{{"jobs", std::move(jobs)}};
}

}  // namespace loom
