// A job as its eventlog defines it (Flux RFC 21). apply_event() is the
// pure transition: it checks that an event may follow the ones before it
// and updates the job; replaying a job's eventlog through it rebuilds the
// job exactly, which is how a restarted job manager recovers every job.
//
//   NEW -validate-> DEPEND -depend-> PRIORITY -priority-> SCHED -alloc-> RUN
//   RUN -finish-> CLEANUP -clean-> INACTIVE;  NEW -invalidate-> INACTIVE
//   exception severity 0: any active state before CLEANUP -> CLEANUP
//   restart: SCHED -> PRIORITY (the priority is assigned again)
//   in DEPEND, dependency-add {description} adds a dependency and
//   dependency-remove {description} takes it away once met; depend needs
//   every dependency added so far removed (RFC 21, RFC 26)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "eventlog/eventlog.h"
#include "idset/idset.h"

namespace loom {

enum class JobState : uint8_t {
  kNew = 1,
  kDepend = 2,
  kPriority = 4,
  kSched = 8,
  kRun = 16,
  kCleanup = 32,
  kInactive = 64,
};

const char* job_state_name(JobState s);  // "NEW", "DEPEND", ...
bool is_active(JobState s);
bool is_pending(JobState s);  // DEPEND, PRIORITY, SCHED

inline constexpr uint32_t kUrgencyHold = 0;
inline constexpr uint32_t kUrgencyDefault = 16;
inline constexpr uint32_t kUrgencyExpedite = 31;

struct JobRecord {
  JobState state = JobState::kNew;
  bool submitted = false;
  uint32_t userid = 0;
  uint32_t urgency = kUrgencyDefault;
  int64_t priority = -1;  // -1 until the first priority event
  double t_submit = 0;
  double t_depend = 0;  // validate
  double t_run = 0;     // alloc
  double t_cleanup = 0;
  double t_inactive = 0;
  bool allocated = false;
  bool started = false;
  bool finished = false;
  int finish_status = 0;
  bool fatal_exception = false;
  std::string exception_type;  // the first fatal exception
  std::string exception_note;
  IdSet released;             // ranks given back so far (when not "all")
  bool released_all = false;  // final release seen
  bool freed = false;
  // Dependencies (dependency-add), each by its description; those not yet
  // removed (dependency-remove) hold the job in DEPEND.
  std::vector<std::string> deps_added;
  std::vector<std::string> deps_pending;
  bool operator==(const JobRecord&) const = default;
};

// Applies `e` to `job`, or explains why `e` cannot follow what came before
// (the job is unchanged then).
Status apply_event(JobRecord& job, const EventEntry& e);

// An exception type a raise or the execution service may give: one word of
// at most 64 bytes, without '=' (the eventlog's text form is key=value).
// Checked where exceptions come in, not in apply_event: eventlogs written
// before the rule still load.
Status check_exception_type(const std::string& type);

// The context of an `exception` event: {type, severity, note}.
inline Json exception_context(std::string_view type, int severity, std::string_view note) {
  return Json{{"type", type}, {"severity", severity}, {"note", note}};
}

// Rebuilds a job from its whole eventlog; the error names the bad line.
Result<JobRecord> replay_eventlog(const std::vector<EventEntry>& events);

}  // namespace loom
