// The job manager: setup, events and the public face (impl.h lists the
// other parts).
#include "job_manager/job_manager.h"

#include <unistd.h>

#include <utility>

#include "base/memory.h"
#include "job_manager/impl.h"

namespace loom {

// ---------------------------------------------------------------- setup

void JobManager::Impl::install() {
  auto gated = [this](void (Impl::*fn)(const Message&)) {
    return [this, fn](const Message& m) {
      if (!loaded_) {
        waiting_for_load_.push_back(m);
        return;
      }
      (this->*fn)(m);
    };
  };
  // Reads its payload with payload_json only (batches from the simulator's
  // driver come parsed).
  h_.add_json_method("job-manager.submit", Access::kUser, gated(&Impl::submit));
  h_.add_method("job-manager.list", Access::kUser, gated(&Impl::list));
  h_.add_method("job-manager.raise", Access::kUser, gated(&Impl::raise));
  h_.add_method("job-manager.cancel", Access::kUser, gated(&Impl::cancel));
  h_.add_method("job-manager.urgency", Access::kUser, gated(&Impl::urgency));
  h_.add_method("job-manager.wait", Access::kUser, gated(&Impl::wait));
  h_.add_method("job-manager.kill", Access::kUser, gated(&Impl::kill));
  h_.add_method("job-manager.purge", Access::kOwner, gated(&Impl::purge));
  h_.add_method("job-manager.queue-status", Access::kUser, gated(&Impl::queue_status));
  h_.add_method("job-manager.queue-control", Access::kOwner, gated(&Impl::queue_control));
  h_.add_method("job-manager.queue-drain", Access::kOwner, gated(&Impl::queue_drain));
  h_.add_method("job-manager.stats", Access::kUser, gated(&Impl::stats));
  h_.add_method("job-manager.events", Access::kUser, gated(&Impl::journal_open));
  h_.add_method("job-manager.events-cancel", Access::kUser, gated(&Impl::journal_cancel));
  h_.add_method("job-manager.sched-hello", Access::kOwner, gated(&Impl::sched_hello));
  h_.add_method("job-manager.sched-ready", Access::kOwner, gated(&Impl::sched_ready));
  h_.add_method("job-info.lookup", Access::kUser, gated(&Impl::info_lookup));
  h_.add_method("job-info.eventlog", Access::kUser, gated(&Impl::info_eventlog));
  // Disconnects wait for the load too, behind the requests of the same
  // client they end (a submit tied to it, a journal, a watch).
  h_.add_method("job-info.disconnect", Access::kUser, gated(&Impl::info_disconnect));
  h_.add_method("job-manager.exec-hello", Access::kOwner, gated(&Impl::exec_hello));
  h_.add_method("job-manager.disconnect", Access::kUser, gated(&Impl::on_disconnect));
  // (Only brokers may publish broker.lost.)
  h_.subscribe("broker.lost", [this](const Message& ev) {
    if (loaded_) on_rank_lost(ev);
  });
  // These read payloads with payload_json (and error_text) only.
  h_.on_json_response("sched.alloc", [this](const Message& m) {
    if (from_own_service(m)) on_alloc_response(m);
  });
  h_.on_json_response("sched.free", [this](const Message& m) {
    if (!from_own_service(m)) return;
    if (m.errnum == ENOSYS || m.errnum == EHOSTUNREACH) return sched_gone(error_text(m));
    if (m.errnum) spdlog::warn("job-manager: sched.free: {}", error_text(m));
  });
}

bool JobManager::Impl::from_own_service(const Message& r) {
  // The instance's services answer with the owner's credentials (a module's
  // response carries its request's stamp; a client's is stamped by the
  // broker with the client's own uid and role).
  if (is_owner(r)) return true;
  if (foreign_responses_++ % 1000 == 0) {
    spdlog::warn(
        "job-manager: dropped a {} response from uid {}: only the instance's own services answer it ({} so far)",
        r.topic, r.userid, foreign_responses_);
  }
  return false;
}

void JobManager::Impl::load() {
  h_.rpc("kvs.lookup", Json{{"key", kvs_key::kJobManagerQueue}}, {}, [this](const Message& r) {
    restore_queue(r);
    load_epoch();
  });
}

void JobManager::Impl::restore_queue(const Message& r) {
  if (r.errnum == ENOENT) return;  // never changed: enabled and started
  auto v = parse_json(r.payload);
  Json q;
  if (r.errnum == 0 && v.ok() && v->contains("value") && v->at("value").is_string()) {
    auto parsed = parse_json(v->at("value").get<std::string>());
    if (parsed.ok()) q = std::move(*parsed);
  }
  auto part = [&](const char* name, const char* flag, bool* on, std::string* reason) {
    if (!q.is_object() || !q.contains(name) || !q[name].is_object() || !q[name].contains(flag) ||
        !q[name][flag].is_boolean()) {
      return false;
    }
    *on = q[name][flag].get<bool>();
    *reason = q[name].contains("reason") && q[name]["reason"].is_string() ? q[name]["reason"].get<std::string>() : "";
    return true;
  };
  if (!part("submit", "enabled", &submit_enabled_, &submit_reason_) ||
      !part("sched", "started", &sched_started_, &sched_reason_)) {
    spdlog::warn("job-manager: the stored queue state is unreadable ({}); the queue is enabled and started",
                 r.errnum ? error_text(r) : std::string("bad ") + kvs_key::kJobManagerQueue);
    submit_enabled_ = sched_started_ = true;
    submit_reason_.clear();
    sched_reason_.clear();
    return;
  }
  if (!submit_enabled_ || !sched_started_) {
    spdlog::info("job-manager: the queue is {} and {}, as it was left", submit_enabled_ ? "enabled" : "disabled",
                 sched_started_ ? "started" : "stopped");
  }
}

void JobManager::Impl::store_queue() {
  Json q{{"submit", {{"enabled", submit_enabled_}, {"reason", submit_reason_}}},
         {"sched", {{"started", sched_started_}, {"reason", sched_reason_}}}};
  commit_op(KvsOp::put(kvs_key::kJobManagerQueue, dump_json(q)));
}

void JobManager::Impl::load_epoch() {
  // The FLUID epoch is kept in the KVS so that ids stay unique and
  // time-ordered across restarts.
  h_.rpc("kvs.lookup", Json{{"key", kvs_key::kJobManagerEpoch}}, {}, [this](const Message& r) {
    uint64_t epoch = 0;
    if (r.errnum == 0) {
      auto v = parse_json(r.payload);
      if (v.ok() && v->contains("value")) {
        try {
          epoch = std::stoull(v->at("value").get<std::string>());
        } catch (const std::exception&) {
          epoch = 0;
        }
      }
    }
    if (epoch == 0) {
      epoch = static_cast<uint64_t>(h_.clock().wall() * 1000);
      commit_op(KvsOp::put(kvs_key::kJobManagerEpoch, std::to_string(epoch)));
    }
    fluid_ = std::make_unique<FluidGenerator>(epoch, 0);
    h_.rpc("kvs.lookup", Json{{"key", kvs_key::kJobDir}}, {}, [this](const Message& r) {
      std::vector<std::string> names;
      if (r.errnum == 0) {
        auto v = parse_json(r.payload);
        if (v.ok() && v->contains("dir") && v->at("dir").is_array()) {
          for (auto& n : v->at("dir")) {
            if (n.is_string()) names.push_back(n.get<std::string>());
          }
        }
      } else if (r.errnum != ENOENT) {
        spdlog::error("job-manager: cannot list jobs in the KVS: {}", error_text(r));
      }
      load_jobs(names);
    });
  });
}

void JobManager::Impl::load_jobs(const std::vector<std::string>& names) {
  using Texts = std::map<std::string, std::array<std::string, 3>>;
  auto texts = std::make_shared<Texts>();
  auto left = std::make_shared<size_t>(names.size() * 3);
  if (names.empty()) return finish_load({});
  static const char* kLeaves[3] = {kvs_key::kEventlog, kvs_key::kJobspec, kvs_key::kR};
  for (const auto& name : names) {
    (*texts)[name];
    for (int i = 0; i < 3; ++i) {
      h_.rpc("kvs.lookup", Json{{"key", kvs_key::job_leaf(name, kLeaves[i])}}, {},
             [this, texts, left, name, i](const Message& r) {
               if (r.errnum == 0) {
                 auto v = parse_json(r.payload);
                 if (v.ok() && v->contains("value") && v->at("value").is_string()) {
                   (*texts)[name][i] = v->at("value").get<std::string>();
                 }
               }
               if (--*left == 0) finish_load(std::move(*texts));
             });
    }
  }
}

void JobManager::Impl::finish_load(std::map<std::string, std::array<std::string, 3>>&& texts) {
  JobId last{0};
  for (auto& [name, t] : texts) {
    auto set_aside = [&, name = name](const std::string& why) {
      spdlog::warn("job-manager: job {} set aside: {}", name, why);
      bad_.push_back(BadJob{name, why});
    };
    uint64_t raw = 0;
    try {
      size_t used = 0;
      raw = std::stoull(name, &used);
      if (used != name.size()) throw std::invalid_argument(name);
    } catch (const std::exception&) {
      set_aside("not a job id");
      continue;
    }
    JobId id{raw};
    last = std::max(last, id);
    auto events = parse_eventlog(t[0]);
    if (!events.ok()) {
      set_aside("eventlog: " + events.error().text);
      continue;
    }
    auto rec = replay_eventlog(*events);
    if (!rec.ok()) {
      set_aside("eventlog: " + rec.error().text);
      continue;
    }
    Job j;
    j.id = id;
    j.rec = std::move(*rec);
    auto spec = parse_jobspec_text(t[1]);
    if (!spec.ok()) {
      set_aside("jobspec: " + spec.error().text);
      continue;
    }
    j.name = spec->name;
    j.ntasks = spec->ntasks;
    j.nnodes = spec->nnodes;
    j.duration = spec->duration;
    j.batch = spec->batch;
    j.allocation = spec->allocation;
    if (j.rec.allocated) {
      auto R = ResourceSet::parse_text(t[2]);
      if (!R.ok()) {
        set_aside("R: " + (t[2].empty() ? std::string("missing") : R.error().text));
        continue;
      }
      j.note_resources(*R);
      if (is_active(j.rec.state)) j.R = std::move(*R);
    }
    if (is_active(j.rec.state)) {
      auto deps = parse_dependencies(spec->raw);
      if (!deps.ok()) {
        set_aside("jobspec: " + deps.error().text);
        continue;
      }
      j.deps = std::move(*deps);
      j.jobspec = std::move(t[1]);
    }
    j.exec_may_hold =
        is_active(j.rec.state) && j.rec.allocated && !j.rec.freed && !j.rec.started && !j.rec.released_all;
    ++jobs_in_state_[state_slot(j.rec.state)];
    if (is_active(j.rec.state)) count_active(j.rec.userid, 1);
    jobs_.emplace(id, std::move(j));
  }
  fluid_->restore(last);
  // Each allocation knows its steps that may still hold some of it.
  for (auto& [id, j] : jobs_) {
    if (!j.allocation || !is_active(j.rec.state) || j.rec.freed) continue;
    if (Job* a = allocation_of(j)) a->steps.insert(id);
  }
  for (auto& [id, j] : jobs_) {
    if (j.rec.state == JobState::kInactive) inactive_order_.push_back(id);
  }
  std::sort(inactive_order_.begin(), inactive_order_.end(),
            [this](JobId a, JobId b) { return jobs_.at(a).rec.t_inactive < jobs_.at(b).rec.t_inactive; });
  size_t active = 0;
  for (auto& [id, j] : jobs_) {
    if (!is_active(j.rec.state)) continue;
    ++active;
    (void)post(j, "restart");
  }
  if (!jobs_.empty() || !bad_.empty()) {
    spdlog::info("job-manager: loaded {} jobs ({} active), {} set aside", jobs_.size(), active, bad_.size());
  }
  loaded_ = true;
  // Inactive jobs are done: only active ones have anything to do.
  for (auto& [id, j] : jobs_) {
    if (is_active(j.rec.state)) advance(j);
  }
  auto waiting = std::move(waiting_for_load_);
  waiting_for_load_.clear();
  for (auto& m : waiting) h_.dispatch(std::move(m));
}

// ---------------------------------------------------------------- events

Status JobManager::Impl::post(Job& j, const std::string& name, Json context) {
  EventEntry e{h_.clock().wall(), name, std::move(context)};
  JobState before = j.rec.state;
  if (auto st = apply_event(j.rec, e); !st) {
    spdlog::error("job-manager: job {}: {}", encode_f58(j.id), st.error().text);
    return st;
  }
  count_event(j, before, e);
  journal_note(j, &e);
  commit_event(j, e);
  // What dependencies wait on: a job entering RUN, leaving DEPEND, ending.
  const std::string_view n = name;  // compared by length first
  if (!depend_waiting_.empty() && (n == "alloc" || n == "depend" || n == "clean" || n == "invalidate")) {
    depend_turn_.request();
  }
  if (n == "exception") {
    Json ev = e.context;
    ev["id"] = j.id.value();
    h_.publish_private("job-exception", std::move(ev), j.rec.userid);
  }
  return {};
}

void JobManager::Impl::count_event(Job& j, JobState before, const EventEntry& e) {
  if (j.rec.state != before) {
    --jobs_in_state_[state_slot(before)];
    ++jobs_in_state_[state_slot(j.rec.state)];
  }
  const std::string_view name = e.name;  // compared by length first
  if (name == "submit") {
    ++submitted_total_;
    count_active(j.rec.userid, 1);
  } else if (j.rec.state == JobState::kSched && before != JobState::kSched && j.t_sched == 0) {
    j.t_sched = e.timestamp;
  } else if (name == "alloc") {
    wait_seconds_.observe(std::max(0.0, e.timestamp - j.rec.t_submit));
    if (j.t_sched > 0) sched_seconds_.observe(std::max(0.0, e.timestamp - j.t_sched));
  } else if (j.rec.state == JobState::kInactive && before != JobState::kInactive) {
    ++completed_total_;
    count_active(j.rec.userid, -1);
  }
}

void JobManager::Impl::count_active(uint32_t userid, int64_t delta) {
  uint64_t& n = active_by_user_[userid];
  n = static_cast<uint64_t>(static_cast<int64_t>(n) + delta);
  if (n == 0) active_by_user_.erase(userid);
}

// Takes the side effects that the job's state calls for, posting the
// events that follow from them, until the job waits on something.
void JobManager::Impl::advance(Job& j) {
  for (;;) {
    JobRecord& r = j.rec;
    switch (r.state) {
      case JobState::kNew:
        if (!post(j, "validate")) return;
        continue;
      case JobState::kDepend:
        if (wait_on_dependencies(j)) {
          if (r.state == JobState::kDepend) return;
          continue;  // a dependency that can never be met ended it
        }
        if (!post(j, "depend")) return;
        continue;
      case JobState::kPriority:
        if (!post(j, "priority", json_object("priority", priority_of(r.urgency)))) return;
        continue;
      case JobState::kSched: send_alloc(j); return;
      case JobState::kRun:
        // Jobs wait here until an execution service is registered.
        send_start(j);
        return;
      case JobState::kCleanup:
        // An allocation's steps end with it, and it gives nothing back
        // while they still hold some of it.
        if (j.batch && !j.steps.empty() && end_steps(j)) return;
        if (j.alloc_pending) {
          // The scheduler may be allocating right now: wait for its answer.
          if (!j.cancel_sent && sched_connected_) {
            h_.send_oneway("sched.cancel", dump_json(Json{{"id", j.id.value()}}));
            j.cancel_sent = true;
          }
          return;
        }
        if (r.allocated && !r.freed) {
          // The execution service holds the ranks until its final release;
          // also those of a job that had not started when the instance went
          // down (its prologs or epilogs may run): it is asked to see to
          // them (docs/protocols/exec.md, item 8).
          if ((r.started || j.start_sent) && !r.released_all) return;
          if (j.exec_may_hold && !r.released_all) return send_start(j);
          // Released ranks went to the scheduler with their release; the
          // final free carries the rest (all of R if the job never started),
          // and the final release's own if it is being taken now.
          IdSet rest = r.released_all ? IdSet{} : j.R.rank_set().subtract(r.released);
          if (final_free_.id == j.id) rest = rest.set_union(std::exchange(final_free_, FinalFree{}).ranks);
          // (rest is within R's ranks: all of them when it counts as many.)
          send_free(j,
                    rest.empty()                         ? ResourceSet{}
                    : rest.count() == j.R.ranks().size() ? j.R
                                                         : j.R.subset(rest),
                    true);
          if (!post(j, "free")) return;
          continue;
        }
        if (!post(j, "clean")) return;
        continue;
      case JobState::kInactive: on_inactive(j); return;
    }
  }
}

void JobManager::Impl::on_inactive(Job& j) {
  if (j.allocation) step_gone(j);
  drop_held_spec(j);
  j.jobspec = std::string();
  j.R = ResourceSet{};
  j.annotations = nullptr;
  j.deps = {};
  if (!j.waiters.empty()) {
    // Waiters hear of the end once it is stored.
    after_commit([this, result = describe(j), waiters = std::move(j.waiters)](const Error*) {
      for (auto& w : waiters) h_.respond(w, result);
    });
    j.waiters.clear();
  }
  inactive_order_.push_back(j.id);
  ++ended_since_trim_;
  if (!has_active() && ended_since_trim_ >= kTrimAfterJobs) {
    // The last active job of a burst is done. The burst left the heap full
    // of free holes between the records kept for listings: give those
    // pages back to the system. (Not after every lone job: trimming walks
    // the whole heap.)
    // Half a second later, when the burst's answers and events have gone
    // out too and nothing new started.
    ended_since_trim_ = 0;
    if (!trim_timer_) trim_timer_ = h_.clock().make_timer();
    trim_timer_->arm(kTrimDelay, [this] {
      if (has_active()) return;
      release_free_memory();
    });
  }
  check_drain();
  // In a turn of its own: whoever ended this job may hold others it is
  // about to act on (a cancel of several, an allocation's steps).
  if (cfg_.inactive_num_limit > 0 && inactive_order_.size() > cfg_.inactive_num_limit) retention_turn_.request();
}

void JobManager::Impl::enforce_retention() {
  if (cfg_.inactive_num_limit == 0 || inactive_order_.size() <= cfg_.inactive_num_limit) return;
  std::vector<JobId> old;
  while (inactive_order_.size() > cfg_.inactive_num_limit) {
    old.push_back(inactive_order_.front());
    inactive_order_.pop_front();
  }
  purge_jobs(old, nullptr);
}

void JobManager::Impl::flush() {
  auto ops = std::move(pending_ops_);
  pending_ops_.clear();
  pending_ops_.reserve(kOpsPerTurn);  // the commit takes the list; most turns' ops fit a new one as it is
  events_open_ = false;
  auto after = std::move(after_commit_);
  after_commit_.clear();
  if (ops.empty()) {
    for (auto& fn : after) fn(nullptr);
    return;
  }
  h_.rpc_typed("kvs.commit", KvsCommit{kvs_key::kPrimaryNamespace, std::move(ops)}, {},
               [after = std::move(after)](const Message& r) {
                 if (r.errnum) {
                   Error e{r.errnum, error_text(r)};
                   spdlog::error("job-manager: a commit of job events failed: {}", e.text);
                   for (auto& fn : after) fn(&e);
                   return;
                 }
                 for (auto& fn : after) fn(nullptr);
               });
}

// ---------------------------------------------------------------- public

JobManager::JobManager(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

void JobManager::stop_scheduling() {
  impl_->stopping_ = true;
  // Allocations already asked for are withdrawn; an answer that comes
  // anyway is given back (see on_alloc_response).
  for (auto& [id, j] : impl_->jobs_) {
    if (j.alloc_pending && !j.cancel_sent && impl_->sched_connected_) {
      impl_->h_.send_oneway("sched.cancel", dump_json(Json{{"id", id.value()}}));
      j.cancel_sent = true;
    }
  }
}

void JobManager::quiesce(std::function<void()> done) {
  impl_->quiesce_done_ = std::move(done);
  impl_->check_quiesce();
}
JobManager::~JobManager() = default;

std::unique_ptr<JobManager> JobManager::create(asio::io_context& io, Handle& h, JobManagerConfig cfg) {
  if (!cfg.runs_jobs_as_users) cfg.runs_jobs_as_users = ::geteuid() == 0;
  auto impl = std::make_unique<Impl>(io, h, cfg);
  impl->install();
  impl->load();
  return std::unique_ptr<JobManager>(new JobManager(std::move(impl)));
}

}  // namespace loom
