// Job steps: work placed inside the allocation of a batch or alloc job
// (docs/steps.md; impl.h).
//
// A step is a job like any other (its own id, eventlog, states and
// execution) whose jobspec names its allocation. Instead of the scheduler,
// the job manager places it, in what the allocation's other steps leave
// free (StepSpace); what it frees goes back to the allocation, never to
// the scheduler. The allocation keeps all its resources from the
// scheduler's point of view until it ends (its ranks released early by the
// execution service, where its script does not run, are held for its
// steps), and it gives them back only once every step is done with them:
// when it ends, its steps still pending or running are cancelled first.
#include "job_manager/impl.h"

namespace loom {

Status JobManager::Impl::check_step(const Message& m, const Jobspec& spec, const std::vector<Dependency>& deps) {
  JobId aid{spec.allocation};
  auto it = jobs_.find(aid);
  std::string name = "allocation " + encode_f58(aid);
  if (it == jobs_.end()) return Error{ENOENT, name + ": no such job"};
  Job& a = it->second;
  if (a.rec.userid != m.userid) return Error{EPERM, name + " belongs to another user"};
  if (!a.batch) return Error{EINVAL, "job " + encode_f58(aid) + " is not an allocation (loom batch or loom alloc)"};
  if (a.rec.state != JobState::kRun) {
    return Error{EINVAL, name + " is not running (it is " + std::string(job_state_name(a.rec.state)) + ")"};
  }
  if (auto st = space_of(a).feasible(spec); !st) return Error{st.error().code, name + ": " + st.error().text};
  // Only its start can be waited for: its end ends the step first.
  for (const auto& d : deps) {
    bool on_end = d.scheme != DependencyScheme::kAfter && d.scheme != DependencyScheme::kSingleton;
    if (on_end && d.target == aid) {
      return Error{EINVAL, "a step cannot wait for the end of its own allocation (" + d.description() + ")"};
    }
  }
  return {};
}

JobManager::Impl::Job* JobManager::Impl::allocation_of(const Job& step) {
  auto it = jobs_.find(JobId{step.allocation});
  return it == jobs_.end() ? nullptr : &it->second;
}

StepSpace& JobManager::Impl::space_of(Job& a) {
  auto it = step_spaces_.find(a.id);
  if (it != step_spaces_.end()) return it->second;
  StepSpace& space = step_spaces_.emplace(a.id, StepSpace(a.R)).first->second;
  // After a restart: what the allocation's steps hold still (as their
  // eventlogs say), before anything new is placed.
  for (JobId sid : a.steps) {
    auto s = jobs_.find(sid);
    if (s == jobs_.end()) continue;
    const JobRecord& r = s->second.rec;
    if (!r.allocated || r.freed || r.released_all) continue;
    ResourceSet held = s->second.R.subset(s->second.R.rank_set().subtract(r.released));
    if (auto st = space.allocate(sid.value(), held); !st) {
      spdlog::error("job-manager: step {} of allocation {}: {}", encode_f58(sid), encode_f58(a.id), st.error().text);
    }
  }
  return space;
}

void JobManager::Impl::place_step(Job& j) {
  if (j.rec.state != JobState::kSched || stopping_) return;
  Job* a = allocation_of(j);
  if (!a || a->rec.state != JobState::kRun) {
    // Its allocation ended before it could start.
    std::string note = "allocation " + encode_f58(JobId{j.allocation}) + " ended";
    if (post(j, "exception", exception_context("cancel", 0, note))) advance(j);
    return;
  }
  if (j.rec.priority <= 0) return;  // held
  auto spec = parse_jobspec_text(j.jobspec);
  if (!spec.ok()) {
    (void)post(j, "exception", exception_context("alloc", 0, "jobspec: " + spec.error().text));
    return advance(j);
  }
  std::string waiting = "waiting for room in allocation " + encode_f58(a->id);
  // Steps of one allocation start in submit order: a later one never
  // passes an earlier one that waits for room (a held one does not count).
  for (JobId sid : a->steps) {
    if (sid >= j.id) break;
    const Job& other = jobs_.at(sid);
    if (other.rec.state == JobState::kSched && other.rec.priority > 0) {
      j.annotations = Json{{"sched", {{"reason_pending", waiting}}}};
      return;
    }
  }
  StepSpace& space = space_of(*a);
  auto r = space.match(*spec);
  if (!r) {
    j.annotations = Json{{"sched", {{"reason_pending", waiting}}}};
    return;
  }
  // It runs until its own limit, never past its allocation's.
  double now = h_.clock().wall();
  r->starttime = now;
  r->expiration = a->R.expiration;
  if (spec->duration > 0 && (r->expiration <= 0 || now + spec->duration < r->expiration)) {
    r->expiration = now + spec->duration;
  }
  if (auto st = space.allocate(j.id.value(), *r); !st) {
    spdlog::error("job-manager: step {}: {}", encode_f58(j.id), st.error().text);
    return;
  }
  allocated(j, std::move(*r));
}

void JobManager::Impl::free_step(Job& j, const ResourceSet& r, bool final) {
  auto sp = step_spaces_.find(JobId{j.allocation});
  if (sp != step_spaces_.end()) {
    if (final) {
      sp->second.free_all(j.id.value());
    } else {
      sp->second.free(j.id.value(), r);
    }
  }
  if (final) return step_gone(j);
  steps_changed_.insert(JobId{j.allocation});
  steps_turn_.request();
}

void JobManager::Impl::step_gone(Job& j) {
  if (Job* a = allocation_of(j)) a->steps.erase(j.id);
  steps_changed_.insert(JobId{j.allocation});
  steps_turn_.request();
}

bool JobManager::Impl::end_steps(Job& a) {
  std::vector<Job*> live;
  for (JobId sid : a.steps) live.push_back(&jobs_.at(sid));
  for (Job* s : live) {
    if (s->rec.fatal_exception || !is_active(s->rec.state)) continue;
    std::string note = "allocation " + encode_f58(a.id) + " ended";
    if (post(*s, "exception", exception_context("cancel", 0, note))) advance(*s);
  }
  return !a.steps.empty();
}

// Once per loop turn, for each allocation whose steps gave something back
// or ended: the steps waiting for room are tried again (in submit order),
// and an allocation that was waiting for its steps goes on.
void JobManager::Impl::step_held_or_released(Job& j) {
  if (!j.allocation || j.rec.state != JobState::kSched) return;
  steps_changed_.insert(JobId{j.allocation});
  steps_turn_.request();
}

void JobManager::Impl::steps_changed() {
  auto changed = std::move(steps_changed_);
  steps_changed_.clear();
  for (JobId aid : changed) {
    auto it = jobs_.find(aid);
    if (it == jobs_.end()) continue;
    Job& a = it->second;
    if (a.rec.state == JobState::kRun) {
      std::vector<Job*> waiting;
      for (JobId sid : a.steps) {
        Job& s = jobs_.at(sid);
        if (s.rec.state == JobState::kSched) waiting.push_back(&s);
      }
      for (Job* s : waiting) {
        place_step(*s);
        // No room for it: none for later ones either (a held one waits for
        // its release, not for room).
        if (s->rec.state == JobState::kSched && s->rec.priority > 0) break;
      }
    } else if (a.rec.state == JobState::kCleanup && a.steps.empty()) {
      advance(a);
    }
  }
}

}  // namespace loom
