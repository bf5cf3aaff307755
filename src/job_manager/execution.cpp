// The job manager and the execution service (docs/protocols/exec.md; impl.h).
#include <utility>

#include "job_manager/impl.h"

namespace loom {

// ---------------------------------------------------------------- execution

void JobManager::Impl::exec_hello(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto name = get_string(*p, "service");
  if (!name.ok()) return h_.respond_error(m, name.error());
  if (name->empty() || name->size() > kMaxServiceName || name->find_first_of(". \t\n\r") != std::string::npos) {
    return h_.respond_error(
        m, EINVAL,
        "service must be a name of 1 to " + std::to_string(kMaxServiceName) + " bytes without dots or spaces");
  }
  if (!exec_service_.empty()) {
    std::vector<std::string> busy;
    for (auto& [id, j] : jobs_) {
      if (j.start_sent) busy.push_back(encode_f58(id));
    }
    if (!busy.empty()) {
      std::string list;
      for (size_t i = 0; i < busy.size() && i < 5; ++i) list += (i ? ", " : "") + busy[i];
      if (busy.size() > 5) list += " and " + std::to_string(busy.size() - 5) + " more";
      return h_.respond_error(m, EBUSY, "the execution service " + exec_service_ + " is running jobs (" + list + ")");
    }
  }
  exec_service_ = *name;
  exec_sender_ = m.sender();
  std::string topic = exec_service_ + ".start";
  if (exec_topics_.insert(topic).second) {
    h_.on_json_response(topic, [this](const Message& r) {
      if (from_own_service(r)) on_start_response(r);
    });
  }
  spdlog::info("job-manager: execution service {} registered", exec_service_);
  h_.respond(m, Json::object());
  for (auto& [id, j] : jobs_) {
    if (j.rec.state == JobState::kRun ||
        (j.rec.state == JobState::kCleanup && (j.rec.started || j.exec_may_hold) && !j.rec.released_all)) {
      send_start(j);
    }
  }
}

void JobManager::Impl::send_start(Job& j) {
  if (exec_service_.empty() || j.start_sent || j.rec.released_all) return;
  j.start_sent = true;
  // A job found again after a restart: running (started), or ended before
  // it started (what it left on its ranks to be seen to).
  bool reattach = j.rec.started || (j.rec.state == JobState::kCleanup && j.exec_may_hold);
  exec_protocol::StartRequest start;
  start.id = j.id.value();
  start.userid = j.rec.userid;
  start.reattach = reattach;
  start.started = j.rec.started;
  if (reattach) {
    // What this eventlog has of the job's stream: the service goes on from
    // there (it keeps its own record of what happened on the ranks).
    start.released = j.rec.released;
    start.finished = j.rec.finished;
    start.fatal = j.rec.fatal_exception;
  }
  // The tree its submit parsed if the job still holds it, else its text
  // parsed now.
  std::shared_ptr<const Json> spec = j.held_spec;
  drop_held_spec(j);
  if (!spec) {
    auto parsed = parse_json(j.jobspec);
    if (!parsed.ok()) {
      // Never so: the job manager wrote the text. It goes as it is.
      Json req = exec_protocol::to_json(start);
      req["R"] = j.R.to_json();
      return h_.send_matchless(exec_service_ + ".start", with_jobspec(req, j.jobspec));
    }
    spec = std::make_shared<const Json>(std::move(*parsed));
  }
  h_.send_matchless_typed(exec_service_ + ".start", exec_protocol::Start{std::move(start), j.R, std::move(spec)});
}

void JobManager::Impl::exec_teardown(const std::string& why) {
  if (exec_service_.empty()) return;
  spdlog::warn("job-manager: execution service {} is gone ({}); jobs wait in RUN for the next hello", exec_service_,
               why);
  std::string gone = exec_service_;
  exec_service_.clear();
  exec_sender_ = HopId{};
  std::vector<Job*> waiting;
  for (auto& [id, j] : jobs_) {
    if (j.start_sent) waiting.push_back(&j);
    j.start_sent = false;
  }
  h_.publish("job-manager.exec-teardown", dump_json(Json{{"service", gone}, {"reason", why}}));
  // A job cancelled before its shells started has nothing left to wait for.
  for (Job* j : waiting) advance(*j);
  check_quiesce();
}

void JobManager::Impl::on_disconnect(const Message& m) {
  if (!exec_service_.empty() && m.sender() == exec_sender_) exec_teardown("its client disconnected");
  tie_client_gone(m.sender(), "its submitter (loom alloc) went away");
  journal_disconnect(m.sender());
}

void JobManager::Impl::tie_client_gone(HopId sender, const std::string& why) {
  if (tie_checks_.count(sender)) tie_gone_.emplace(sender, why);
  cancel_tied(sender, why);
}

void JobManager::Impl::cancel_tied(HopId sender, const std::string& why) {
  auto tied = tied_.find(sender);
  if (tied == tied_.end()) return;
  std::vector<JobId> ids = std::move(tied->second);
  tied_.erase(tied);
  for (JobId id : ids) {
    auto it = jobs_.find(id);
    if (it == jobs_.end() || !is_active(it->second.rec.state) || it->second.rec.fatal_exception) continue;
    if (post(it->second, "exception", exception_context("cancel", 0, why))) advance(it->second);
  }
}

void JobManager::Impl::on_rank_lost(const Message& ev) {
  auto p = payload_object(ev);
  if (!p.ok()) return;
  auto rank = get_uint(*p, "rank");
  if (!rank.ok() || *rank > UINT32_MAX) return;
  auto r = static_cast<uint32_t>(*rank);
  auto given = get_string(*p, "reason", "");
  std::string reason = given.ok() ? *given : "";
  std::string lost = "rank " + std::to_string(r) + " lost" + (reason.empty() ? "" : " (" + reason + ")");
  std::set<HopId> gone;
  for (const auto& [sender, ids] : tied_) {
    if (hop_rank(sender) == r) gone.insert(sender);
  }
  for (const auto& [sender, n] : tie_checks_) {
    if (hop_rank(sender) == r) gone.insert(sender);
  }
  for (HopId sender : gone) tie_client_gone(sender, "its submitter (loom alloc) went away with " + lost);
  journal_rank_lost(r);
  // A rank where the allocation's shell still runs is the execution
  // service's to report; one it released is watched by nobody else.
  std::vector<Job*> failed;
  for (auto& [id, j] : jobs_) {
    if (j.batch && j.rec.state == JobState::kRun && !j.rec.fatal_exception && !j.rec.released_all &&
        j.rec.released.contains(r)) {
      failed.push_back(&j);
    }
  }
  for (Job* j : failed) {
    if (post(*j, "exception", exception_context("node-failure", 0, lost))) advance(*j);
  }
}

// A response the job's eventlog cannot take: the job gets a fatal exception
// naming it, and everything it still holds goes back, so it cannot hang.
void JobManager::Impl::exec_violation(Job& j, const std::string& why) {
  spdlog::error("job-manager: job {}: execution service {}: {}", encode_f58(j.id), exec_service_, why);
  j.start_sent = false;
  if (!j.rec.fatal_exception && is_active(j.rec.state)) {
    (void)post(j, "exception", exception_context("exec", 0, "execution protocol: " + why));
  }
  if (j.rec.allocated && !j.rec.released_all && is_active(j.rec.state)) {
    IdSet rest = j.R.rank_set().subtract(j.rec.released);
    if (post(j, "release", json_object("ranks", rest.encode(), "final", true))) send_free(j, j.R.subset(rest), false);
  }
  advance(j);
  check_quiesce();
}

void JobManager::Impl::on_start_response(const Message& m) {
  if (exec_service_.empty() || m.topic != exec_service_ + ".start") return;  // not from the registered service
  if (m.errnum) return exec_teardown(m.topic + ": " + error_text(m));
  if (const auto* typed = typed_payload<exec_protocol::JobResponse>(m)) {
    // From an execution service of this process, as it built it.
    Job* j = started_job(m, typed->id);
    if (j) std::visit([this, j](const auto& r) { on_exec(*j, r); }, typed->response);
    return;
  }
  auto payload = payload_json(m);
  const Json* p = payload.ok() ? payload->get() : nullptr;
  Result<uint64_t> idv = p ? exec_protocol::response_id(*p) : Result<uint64_t>(payload.error());
  if (!idv.ok()) {
    spdlog::warn("job-manager: ignoring a malformed {} response: {}", m.topic, idv.error().text);
    return;
  }
  Job* j = started_job(m, *idv);
  if (!j) return;
  auto response = exec_protocol::parse_response(*p);
  if (!response.ok()) return exec_violation(*j, response.error().text);
  std::visit([this, j](const auto& r) { on_exec(*j, r); }, *response);
}

JobManager::Impl::Job* JobManager::Impl::started_job(const Message& m, uint64_t id) {
  auto it = jobs_.find(JobId{id});
  if (it == jobs_.end() || !it->second.start_sent) {
    spdlog::warn("job-manager: ignoring a {} response for job {}, which has no start outstanding", m.topic,
                 encode_f58(JobId{id}));
    return nullptr;
  }
  return &it->second;
}

void JobManager::Impl::on_exec(Job& j, const exec_protocol::Started&) {
  if (!post(j, "start")) return exec_violation(j, "start is out of order");
  advance(j);
}

void JobManager::Impl::on_exec(Job& j, const exec_protocol::Reattached&) {
  if (!j.rec.started) return exec_violation(j, "reattached for a job that never started");
  advance(j);
}

void JobManager::Impl::on_exec(Job& j, const exec_protocol::Raised& e) {
  if (auto st = check_exception_type(e.type); !st) return exec_violation(j, st.error().text);
  if (!post(j, "exception", exception_context(e.type, e.severity, e.note))) {
    return exec_violation(j, "exception is out of order");
  }
  advance(j);
}

void JobManager::Impl::on_exec(Job& j, const exec_protocol::Finished& f) {
  // What parse_response refuses in JSON, refused the same when typed.
  if (f.status < 0) {
    return exec_violation(j, "finish: \"status\" must be 0-2147483647, not " + std::to_string(f.status));
  }
  if (!post(j, "finish", json_object("status", f.status))) return exec_violation(j, "finish is out of order");
  advance(j);
}

void JobManager::Impl::on_exec(Job& j, const exec_protocol::Released& r) {
  IdSet ranks = j.R.rank_set();
  if (!r.all) {
    IdSet outside = r.ranks.subtract(ranks);
    if (!outside.empty()) return exec_violation(j, "release of ranks " + outside.encode() + " the job does not hold");
    ranks = r.ranks;
  }
  IdSet fresh = ranks.subtract(j.rec.released);
  // A non-final "all" is logged as the ranks it means, so that they count
  // as released (and are not freed a second time later).
  std::string logged = r.all && !r.final ? ranks.encode() : r.ranks_text();
  if (!post(j, "release", json_object("ranks", logged, "final", r.final))) {
    return exec_violation(j, r.final && j.rec.state == JobState::kRun
                                 ? "final release before finish or a fatal exception"
                                 : "release is out of order");
  }
  // Every release goes back to the scheduler at once. A final one most
  // often ends in the free event at once, whose final sched.free carries
  // them (advance() takes them from final_free_); if it did not, they go
  // on their own. advance() may purge the job: only its id is kept.
  if (r.final) {
    j.start_sent = false;
    const JobId id = j.id;
    if (!j.allocation && !j.batch) final_free_ = FinalFree{id, std::move(fresh)};
    else if (!fresh.empty()) send_free(j, j.R.subset(fresh), false);
    advance(j);
    if (final_free_.id == id) {
      FinalFree left = std::exchange(final_free_, FinalFree{});
      auto it = jobs_.find(id);
      if (it != jobs_.end() && !left.ranks.empty()) send_free(it->second, it->second.R.subset(left.ranks), false);
    }
    return check_quiesce();
  }
  if (!fresh.empty()) send_free(j, j.R.subset(fresh), false);
  advance(j);
}

}  // namespace loom
