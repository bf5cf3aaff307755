#include "job_manager/job.h"

#include <algorithm>

namespace loom {

const char* job_state_name(JobState s) {
  switch (s) {
    case JobState::kNew: return "NEW";
    case JobState::kDepend: return "DEPEND";
    case JobState::kPriority: return "PRIORITY";
    case JobState::kSched: return "SCHED";
    case JobState::kRun: return "RUN";
    case JobState::kCleanup: return "CLEANUP";
    case JobState::kInactive: return "INACTIVE";
  }
  return "UNKNOWN";
}

bool is_active(JobState s) { return s != JobState::kInactive; }
bool is_pending(JobState s) { return s == JobState::kDepend || s == JobState::kPriority || s == JobState::kSched; }

namespace {

Error not_allowed(const EventEntry& e, const JobRecord& j, const std::string& why = {}) {
  return Error{EINVAL,
               e.name + " is not allowed in state " + job_state_name(j.state) + (why.empty() ? "" : ": " + why)};
}

Result<int64_t> int_field(const EventEntry& e, const char* key, int64_t lo, int64_t hi) {
  auto it = e.context.is_object() ? e.context.find(key) : e.context.end();  // one lookup
  if (it == e.context.end() || !it->is_number_integer()) {
    return Error{EINVAL, e.name + " needs an integer \"" + key + "\" in its context"};
  }
  int64_t v = it->get<int64_t>();
  if (v < lo || v > hi) {
    return Error{EINVAL, e.name + " " + key + " " + std::to_string(v) + " is outside " + std::to_string(lo) + "-" +
                             std::to_string(hi)};
  }
  return v;
}

}  // namespace

Status apply_event(JobRecord& job, const EventEntry& e) {
  if (auto st = validate_event(e); !st) return st;
  if (!job.submitted && e.name != "submit") return Error{EINVAL, "the first event must be submit, not " + e.name};
  if (job.state == JobState::kInactive) return not_allowed(e, job, "the job is inactive");
  // Every branch below checks all it needs before it changes anything, so
  // that a refused event leaves the job as it was (no copy to work on: ten
  // events a job, each applied once).
  JobRecord& j = job;
  // A view: each comparison below is first one of lengths.
  const std::string_view n = e.name;

  if (n == "submit") {
    if (j.submitted) return not_allowed(e, j, "the job was already submitted");
    auto urgency = int_field(e, "urgency", 0, 31);
    if (!urgency.ok()) return urgency.error();
    auto userid = int_field(e, "userid", 0, UINT32_MAX);
    if (!userid.ok()) return userid.error();
    j.submitted = true;
    j.urgency = static_cast<uint32_t>(*urgency);
    j.userid = static_cast<uint32_t>(*userid);
    j.t_submit = e.timestamp;
  } else if (n == "validate") {
    if (j.state != JobState::kNew) return not_allowed(e, j);
    j.state = JobState::kDepend;
    j.t_depend = e.timestamp;
  } else if (n == "invalidate") {
    if (j.state != JobState::kNew) return not_allowed(e, j);
    j.state = JobState::kInactive;
    j.t_inactive = e.timestamp;
  } else if (n == "depend") {
    if (j.state != JobState::kDepend) return not_allowed(e, j);
    if (!j.deps_pending.empty()) return not_allowed(e, j, "dependency " + j.deps_pending.front() + " is not met");
    j.state = JobState::kPriority;
  } else if (n == "dependency-add" || n == "dependency-remove") {
    if (j.state != JobState::kDepend) return not_allowed(e, j);
    if (!e.context.is_object() || !e.context.contains("description") || !e.context["description"].is_string() ||
        e.context["description"].get_ref<const std::string&>().empty()) {
      return Error{EINVAL, e.name + " needs a non-empty string \"description\""};
    }
    const auto& d = e.context["description"].get_ref<const std::string&>();
    auto pending = std::find(j.deps_pending.begin(), j.deps_pending.end(), d);
    if (n == "dependency-add") {
      if (std::find(j.deps_added.begin(), j.deps_added.end(), d) != j.deps_added.end()) {
        return not_allowed(e, j, d + " was already added");
      }
      j.deps_added.push_back(d);
      j.deps_pending.push_back(d);
    } else {
      if (pending == j.deps_pending.end()) return not_allowed(e, j, d + " is not a dependency of the job");
      j.deps_pending.erase(pending);
    }
  } else if (n == "priority") {
    if (j.state != JobState::kPriority && j.state != JobState::kSched) return not_allowed(e, j);
    auto p = int_field(e, "priority", 0, UINT32_MAX);
    if (!p.ok()) return p.error();
    j.priority = *p;
    j.state = JobState::kSched;
  } else if (n == "urgency") {
    auto u = int_field(e, "urgency", 0, 31);
    if (!u.ok()) return u.error();
    j.urgency = static_cast<uint32_t>(*u);
  } else if (n == "restart" || n == "flux-restart") {
    if (j.state == JobState::kSched) j.state = JobState::kPriority;
  } else if (n == "alloc") {
    if (j.state != JobState::kSched) return not_allowed(e, j);
    j.state = JobState::kRun;
    j.allocated = true;
    j.t_run = e.timestamp;
  } else if (n == "start") {
    if (j.started) return not_allowed(e, j, "already started");
    // Shells may come up just as a fatal exception (a cancel) goes out:
    // their start still counts until the execution service lets go.
    bool raced = j.state == JobState::kCleanup && j.allocated && j.fatal_exception && !j.released_all && !j.freed;
    if (j.state != JobState::kRun && !raced) return not_allowed(e, j);
    j.started = true;
  } else if (n == "finish") {
    if (!j.started || j.finished) return not_allowed(e, j, j.finished ? "already finished" : "the job never started");
    if (j.state != JobState::kRun && j.state != JobState::kCleanup) return not_allowed(e, j);
    auto st = int_field(e, "status", 0, INT32_MAX);
    if (!st.ok()) return st.error();
    j.finished = true;
    j.finish_status = static_cast<int>(*st);
    if (j.state == JobState::kRun) {
      j.state = JobState::kCleanup;
      j.t_cleanup = e.timestamp;
    }
  } else if (n == "release") {
    if (!j.allocated || j.released_all || (j.state != JobState::kRun && j.state != JobState::kCleanup)) {
      return not_allowed(e, j, j.released_all ? "the final release was already logged" : "");
    }
    if (!e.context.is_object() || !e.context.contains("ranks") || !e.context["ranks"].is_string() ||
        !e.context.contains("final") || !e.context["final"].is_boolean()) {
      return Error{EINVAL, "release needs \"ranks\" (an idset or \"all\") and \"final\" in its context"};
    }
    std::string ranks = e.context["ranks"].get<std::string>();
    bool final = e.context["final"].get<bool>();
    if (final && j.state == JobState::kRun && !j.fatal_exception && !j.finished) {
      return not_allowed(e, j, "a final release needs a finish or a fatal exception first");
    }
    if (ranks != "all") {
      auto ids = IdSet::parse(ranks);
      if (!ids.ok()) return Error{EINVAL, "release: " + ids.error().text};
      j.released = j.released.set_union(*ids);
    }
    if (final) j.released_all = true;
  } else if (n == "free") {
    if (j.state != JobState::kCleanup || !j.allocated || j.freed) return not_allowed(e, j);
    if (j.started && !j.released_all) return not_allowed(e, j, "the execution service has not released everything");
    j.freed = true;
  } else if (n == "clean") {
    if (j.state != JobState::kCleanup) return not_allowed(e, j);
    if (j.allocated && !j.freed) return not_allowed(e, j, "resources were not freed");
    j.state = JobState::kInactive;
    j.t_inactive = e.timestamp;
  } else if (n == "exception") {
    auto sev = int_field(e, "severity", 0, 7);
    if (!sev.ok()) return sev.error();
    if (!e.context.contains("type") || !e.context["type"].is_string() || e.context["type"].get<std::string>().empty()) {
      return Error{EINVAL, "exception needs a non-empty string \"type\""};
    }
    if (e.context.contains("note") && !e.context["note"].is_string()) {
      return Error{EINVAL, "exception note must be a string"};
    }
    if (*sev == 0) {
      if (!j.fatal_exception) {
        j.fatal_exception = true;
        j.exception_type = e.context["type"].get<std::string>();
        j.exception_note = e.context.value("note", "");
      }
      if (j.state != JobState::kCleanup) {
        j.state = JobState::kCleanup;
        j.t_cleanup = e.timestamp;
      }
    }
  }
  // Every other event (memo, debug.*, set-flags,
  // jobspec-update, prolog-*, epilog-*, and events of later versions)
  // annotates an active job without changing its state.
  return {};
}

Result<JobRecord> replay_eventlog(const std::vector<EventEntry>& events) {
  JobRecord job;
  for (size_t i = 0; i < events.size(); ++i) {
    if (auto st = apply_event(job, events[i]); !st) {
      return Error{st.error().code, "event " + std::to_string(i + 1) + ": " + st.error().text};
    }
  }
  if (!job.submitted) return Error{EINVAL, "the eventlog is empty"};
  return job;
}

Status check_exception_type(const std::string& type) {
  if (type.empty()) return Error{EINVAL, "exception type must not be empty"};
  if (type.size() > 64) return Error{EINVAL, "exception type must be at most 64 bytes"};
  for (unsigned char c : type) {
    if (c <= ' ' || c == '=' || c == 0x7f) {
      return Error{EINVAL, "exception type must be one word without '=' (got \"" + type + "\")"};
    }
  }
  return {};
}

}  // namespace loom
