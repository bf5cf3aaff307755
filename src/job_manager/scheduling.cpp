// The job manager and the scheduler (RFC 27; impl.h).
#include "job_manager/impl.h"

namespace loom {

// ---------------------------------------------------------------- scheduler

void JobManager::Impl::send_alloc(Job& j) {
  if (j.allocation) return place_step(j);  // never the scheduler's
  if (j.alloc_pending || !sched_ready_ || !sched_started_ || stopping_ || j.rec.priority <= 0) return;
  if (sched_limited_ && allocs_outstanding_ >= sched_limit_) return;
  j.alloc_pending = true;
  j.cancel_sent = false;
  ++allocs_outstanding_;
  if (fresh_spec_.job && fresh_spec_.id == j.id) {
    // The jobspec the submit checked and decoded: the same document as the
    // job's text, which the scheduler need not decode again.
    const Submitted& s = *std::exchange(fresh_spec_, FreshSpec{}).job;
    sched_protocol::AllocRequest a{j.id.value(), j.rec.priority, j.rec.userid, j.rec.t_submit, s.doc, s.spec};
    if (held_specs_ < kHeldSpecs && !j.held_spec) {
      j.held_spec = s.doc;
      ++held_specs_;
    }
    h_.send_matchless_typed("sched.alloc", std::move(a));
    return;
  }
  Json req{{"id", j.id.value()}, {"priority", j.rec.priority}, {"userid", j.rec.userid}, {"t_submit", j.rec.t_submit}};
  send_with_jobspec(h_, "sched.alloc", std::move(req), j.jobspec);
}

void JobManager::Impl::send_free(Job& j, const ResourceSet& r, bool final) {
  if (j.allocation) return free_step(j, r, final);
  // An allocation keeps all it has, for its steps, until it is done: then
  // all of it goes back at once.
  if (j.batch) {
    if (!final) return;
    step_spaces_.erase(j.id);
    if (!sched_connected_) return;
    h_.send_matchless_typed("sched.free", sched_protocol::Free{j.id.value(), j.R, true});
    return;
  }
  // A scheduler that has not said hello yet learns the allocations from
  // its hello, which leaves freed jobs out: nothing to tell it now.
  if (!sched_connected_) return;
  h_.send_matchless_typed("sched.free", sched_protocol::Free{j.id.value(), r, final});
}

void JobManager::Impl::sched_gone(const std::string& why) {
  if (!sched_connected_) return;
  spdlog::warn("job-manager: the scheduler is gone ({}); scheduling waits for its next hello", why);
  sched_connected_ = false;
  sched_ready_ = false;
  allocs_outstanding_ = 0;
  std::vector<Job*> cleanup;
  for (auto& [id, j] : jobs_) {
    if (!j.alloc_pending) continue;
    j.alloc_pending = false;
    j.cancel_sent = false;
    if (j.rec.state == JobState::kCleanup) cleanup.push_back(&j);
  }
  for (Job* j : cleanup) advance(*j);
}

void JobManager::Impl::on_alloc_response(const Message& m) {
  if (m.errnum) return sched_gone(error_text(m));
  if (const auto* granted = typed_payload<sched_protocol::AllocGranted>(m)) {
    // From a scheduler of this process: R as it allocated it.
    Job* j = alloc_answered(JobId{granted->id});
    if (!j) return give_back(JobId{granted->id}, granted->R);
    on_granted(*j, ResourceSet(granted->R));
    if (sched_limited_) offer_pending();
    return;
  }
  auto payload = payload_json(m);
  if (!payload.ok()) {
    spdlog::warn("job-manager: ignoring a malformed sched.alloc response");
    return;
  }
  const Json* p = payload->get();
  auto id = get_jobid(*p);
  auto type = get_int(*p, "type", 0, 3);
  if (!id.ok() || !type.ok()) {
    spdlog::warn("job-manager: ignoring a sched.alloc response without id or type");
    return;
  }
  if (*type == 1) {
    auto it = jobs_.find(*id);
    if (it != jobs_.end() && p->contains("annotations")) {
      it->second.annotations = (*p)["annotations"];
      journal_note(it->second, nullptr);
    }
    return;
  }
  Job* j = alloc_answered(*id);
  if (!j) {
    if (*type == 0 && p->contains("R")) {
      // Never leave resources with a job that is not waiting for them.
      Json req{{"id", id->value()}, {"R", (*p)["R"]}, {"final", true}};
      h_.send_matchless("sched.free", std::move(req));
    }
    return;
  }
  if (*type == 0) {
    auto R = p->contains("R") ? ResourceSet::parse((*p)["R"]) : Result<ResourceSet>(Error{EPROTO, "missing R"});
    if (!R.ok()) {
      spdlog::error("job-manager: job {}: the scheduler sent a bad R: {}", encode_f58(j->id), R.error().text);
      (void)post(*j, "exception", exception_context("alloc", 0, "the scheduler sent a bad R: " + R.error().text));
      advance(*j);
      return;
    }
    on_granted(*j, std::move(*R));
  } else if (*type == 2) {
    std::string note = p->value("note", "");
    if (!p->contains("note") || !(*p)["note"].is_string()) note = "the scheduler denied the request";
    if (j->rec.state == JobState::kSched) {
      (void)post(*j, "exception", exception_context("alloc", 0, note));
    }
    advance(*j);
  } else {
    // Cancelled: the job stays pending (held, queue stopped) or is cleaned up.
    advance(*j);
  }
  // In unlimited mode every job that may be offered already was, as it
  // entered SCHED: walking them all again on each answer would make a
  // long queue quadratic. In limited mode an answer frees a slot.
  if (sched_limited_) offer_pending();
}

// The job a final sched.alloc response (not an annotation) is about, its
// alloc no longer pending; nullptr (and a warning) if it had none.
JobManager::Impl::Job* JobManager::Impl::alloc_answered(JobId id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end() || !it->second.alloc_pending) {
    spdlog::warn("job-manager: sched.alloc response for job {} that has no alloc pending", encode_f58(id));
    return nullptr;
  }
  Job& j = it->second;
  j.alloc_pending = false;
  j.cancel_sent = false;
  if (allocs_outstanding_ > 0) --allocs_outstanding_;
  return &j;
}

// Resources allocated to no job waiting for them go straight back.
void JobManager::Impl::give_back(JobId id, const ResourceSet& R) {
  h_.send_matchless_typed("sched.free", sched_protocol::Free{id.value(), R, true});
}

void JobManager::Impl::on_granted(Job& j, ResourceSet R) {
  if (j.rec.state != JobState::kSched || stopping_) {
    // Cancelled (or the instance stopping) while the scheduler was
    // allocating: give it straight back; the job stays as it was.
    give_back(j.id, R);
    advance(j);
    return;
  }
  allocated(j, std::move(R));
}

void JobManager::Impl::allocated(Job& j, ResourceSet R) {
  j.R = std::move(R);
  j.note_resources(j.R);
  j.annotations = nullptr;
  // In the same commit as the alloc event, before it: whoever reads the
  // event finds R, and a restarted job manager finds both or neither.
  commit_op(KvsOp::put(kvs_key::job_R(j.id), j.R.to_text()));
  (void)post(j, "alloc");
  advance(j);
}

// Offers pending jobs to the scheduler, highest priority first.
void JobManager::Impl::offer_pending() {
  if (!sched_ready_ || !sched_started_) return;
  if (sched_limited_ && allocs_outstanding_ >= sched_limit_) return;
  std::vector<Job*> pending;
  for (auto& [id, j] : jobs_) {
    if (j.rec.state == JobState::kSched && !j.alloc_pending && j.rec.priority > 0) pending.push_back(&j);
  }
  std::stable_sort(pending.begin(), pending.end(),
                   [](const Job* a, const Job* b) { return a->rec.priority > b->rec.priority; });
  for (Job* j : pending) send_alloc(*j);
}

void JobManager::Impl::sched_hello(const Message& m) {
  if (!m.has_flag(msgflag::kStreaming)) return h_.respond_error(m, EPROTO, "sched-hello must be streaming");
  // A new scheduler: allocs sent to a previous one are void.
  sched_connected_ = true;
  sched_ready_ = false;
  allocs_outstanding_ = 0;
  for (auto& [id, j] : jobs_) {
    j.alloc_pending = false;
    j.cancel_sent = false;
    if (!j.rec.allocated || j.rec.freed || !is_active(j.rec.state) || j.allocation) continue;
    // An allocation holds what its execution released until it is freed.
    IdSet released = j.batch ? IdSet{} : j.rec.released_all ? j.R.rank_set() : j.rec.released;
    Json r{{"id", id.value()},       {"priority", std::max<int64_t>(j.rec.priority, 0)},
           {"userid", j.rec.userid}, {"t_submit", j.rec.t_submit},
           {"R", j.R.to_json()},     {"free", released.encode()}};
    h_.respond(m, r);
  }
  h_.respond_error(m, ENODATA, "");
  for (auto& [id, j] : jobs_) {
    if (j.rec.state == JobState::kCleanup) advance(j);
  }
}

void JobManager::Impl::sched_ready(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto mode = get_string(*p, "mode", "unlimited");
  if (!mode.ok()) return h_.respond_error(m, mode.error());
  if (*mode != "unlimited" && *mode != "limited") {
    return h_.respond_error(m, EINVAL, "mode must be limited or unlimited, not " + *mode);
  }
  int64_t one = 1;
  auto limit = get_int(*p, "limit", 1, UINT32_MAX, &one);
  if (!limit.ok()) return h_.respond_error(m, limit.error());
  if (!sched_connected_) return h_.respond_error(m, EPROTO, "sched-ready before sched-hello");
  sched_limited_ = *mode == "limited";
  sched_limit_ = static_cast<uint32_t>(*limit);
  sched_ready_ = true;
  size_t count = 0;
  for (auto& [id, j] : jobs_) count += j.rec.state == JobState::kSched && !j.allocation;
  h_.respond(m, Json{{"count", count}});
  offer_pending();
}

}  // namespace loom
