#include "job_manager/job_manager.h"

#include <spdlog/spdlog.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <array>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <cerrno>
#include <cmath>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/fluid.h"
#include "eventlog/eventlog.h"
#include "job_manager/job.h"
#include "jobspec/jobspec.h"
#include "msg/handle.h"
#include "msg/payload.h"
#include "rset/rset.h"

namespace loom {

namespace {

constexpr uint32_t kPriorityMax = 4294967295U;
constexpr size_t kMaxBatch = 100000;

// The priority of a job with `urgency`: held jobs get 0 and are never
// offered to the scheduler, expedited ones the highest value; otherwise
// the urgency itself, so that the scheduler's tie-break (older first)
// keeps submit order among equals.
int64_t priority_of(uint32_t urgency) {
  if (urgency == kUrgencyHold) return 0;
  if (urgency == kUrgencyExpedite) return kPriorityMax;
  return urgency;
}

std::string job_key(JobId id, const char* leaf) { return "job." + std::to_string(id.value()) + "." + leaf; }

// "COMPLETED", "FAILED", "CANCELED", "TIMEOUT" for an inactive job.
std::string result_of(const JobRecord& r) {
  if (r.state != JobState::kInactive) return "";
  if (r.fatal_exception) {
    if (r.exception_type == "cancel") return "CANCELED";
    if (r.exception_type == "timeout") return "TIMEOUT";
    return "FAILED";
  }
  return r.finished && r.finish_status == 0 ? "COMPLETED" : "FAILED";
}

// A job id in a payload: a number, or a string in any accepted form.
Result<JobId> get_jobid(const Json& j, const char* k = "id") {
  auto it = j.find(k);
  if (it == j.end()) return Error{EPROTO, std::string("missing \"") + k + "\""};
  if (it->is_number_unsigned()) return JobId{it->get<uint64_t>()};
  if (it->is_string()) return parse_jobid(it->get<std::string>());
  return Error{EPROTO, std::string("\"") + k + "\" must be a job id"};
}

}  // namespace

struct JobManager::Impl {
  struct Job {
    JobId id;
    JobRecord rec;
    std::string jobspec;  // its JSON text, while active (a tree costs ten times more)
    ResourceSet R;        // while active and allocated
    // Kept for listings after the job is inactive.
    std::string name;
    uint32_t ntasks = 0;
    uint32_t nnodes = 0;  // from R once allocated, else from the jobspec (0: not asked)
    double duration = 0;
    std::string ranks;
    std::string nodelist;
    Json annotations;  // from the scheduler, while pending
    // Side effects in flight.
    bool alloc_pending = false;  // sched.alloc sent, no final answer yet
    bool cancel_sent = false;    // sched.cancel sent for that alloc
    bool start_sent = false;     // a start is outstanding to the execution service
    std::vector<Message> waiters;
  };
  struct EventlogWatch {
    Message req;
    JobId id;
    LineSplitter lines;
  };
  struct BadJob {
    std::string name;
    std::string error;
  };

  Impl(asio::io_context& io, Handle& h, JobManagerConfig cfg) : io_(io), h_(h), cfg_(cfg) {}

  asio::io_context& io_;
  Handle& h_;
  JobManagerConfig cfg_;
  std::map<JobId, Job> jobs_;         // ordered by id, i.e. by submit time
  std::deque<JobId> inactive_order_;  // for the retention limit
  static constexpr size_t kTrimAfterJobs = 1000;
  static constexpr double kTrimDelay = 0.5;
  size_t ended_since_trim_ = 0;
  std::unique_ptr<Timer> trim_timer_;
  std::vector<BadJob> bad_;
  std::unique_ptr<FluidGenerator> fluid_;
  bool loaded_ = false;
  std::vector<Message> waiting_for_load_;

  // Queue control.
  bool submit_enabled_ = true;
  std::string submit_reason_;
  bool sched_started_ = true;
  std::string sched_reason_;
  std::vector<Message> drain_waiters_;

  // The scheduler: connected after a hello, ready after sched-ready.
  bool sched_connected_ = false;
  bool sched_ready_ = false;
  bool sched_limited_ = false;
  uint32_t sched_limit_ = 0;
  uint32_t allocs_outstanding_ = 0;

  // Events waiting for the next KVS commit.
  Json pending_ops_ = Json::array();
  std::vector<std::function<void(const Error*)>> after_commit_;
  bool flush_posted_ = false;

  std::unordered_map<uint32_t, EventlogWatch> eventlog_watches_;  // by our kvs.watch matchtag

  // The registered execution service (DESIGN §6): its name ("" when none)
  // and the client that said hello for it.
  std::string exec_service_;
  HopId exec_sender_{};
  std::set<std::string> exec_topics_;  // NAME.start topics we listen on
  std::function<void()> quiesce_done_;
  bool stopping_ = false;  // the instance is stopping: no new allocations
  void check_quiesce() {
    if (!quiesce_done_) return;
    for (auto& [id, j] : jobs_) {
      if (j.start_sent) return;
    }
    after_commit([done = std::move(quiesce_done_)](const Error*) { done(); });
    quiesce_done_ = nullptr;
  }

  std::shared_ptr<int> alive_ = std::make_shared<int>(0);

  // --- setup ---
  void install();
  void load();
  void load_jobs(const std::vector<std::string>& names);
  void finish_load(std::map<std::string, std::array<std::string, 3>> texts);

  // --- events ---
  Status post(Job& j, const std::string& name, Json context = nullptr);
  void advance(Job& j);
  void on_inactive(Job& j);
  void commit_op(Json op) {
    pending_ops_.push_back(std::move(op));
    schedule_flush();
  }
  void after_commit(std::function<void(const Error*)> fn) {
    after_commit_.push_back(std::move(fn));
    schedule_flush();
  }
  void schedule_flush();
  void flush();

  // --- scheduler ---
  void send_alloc(Job& j);
  void send_free(Job& j, const ResourceSet& r, bool final);
  void sched_gone(const std::string& why);
  void on_alloc_response(const Message& m);
  void offer_pending();

  // --- execution service ---
  void exec_hello(const Message& m);
  void exec_teardown(const std::string& why);
  void send_start(Job& j);
  void on_start_response(const Message& m);
  void exec_violation(Job& j, const std::string& why);
  void on_disconnect(const Message& m);

  // --- requests ---
  Result<Job*> find_job(const Message& m, const Json& p, bool must_be_active);
  void submit(const Message& m);
  void submit_checked(const Message& m, std::vector<Jobspec> specs, std::vector<uint32_t> urgencies);
  void list(const Message& m);
  void raise(const Message& m);
  void cancel(const Message& m);
  void urgency(const Message& m);
  void wait(const Message& m);
  void kill(const Message& m);
  void purge(const Message& m);
  void purge_jobs(const std::vector<JobId>& ids, std::function<void(const Error*)> done);
  void queue_status(const Message& m);
  void queue_control(const Message& m);
  void queue_drain(const Message& m);
  void stats(const Message& m);
  void sched_hello(const Message& m);
  void sched_ready(const Message& m);
  void info_lookup(const Message& m);
  void info_eventlog(const Message& m);
  void info_disconnect(const Message& m);

  Json describe(const Job& j) const;
  bool has_active() const;
  void check_drain();
};

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
  h_.add_method("job-manager.submit", Access::kUser, gated(&Impl::submit));
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
  h_.add_method("job-manager.sched-hello", Access::kOwner, gated(&Impl::sched_hello));
  h_.add_method("job-manager.sched-ready", Access::kOwner, gated(&Impl::sched_ready));
  h_.add_method("job-info.lookup", Access::kUser, gated(&Impl::info_lookup));
  h_.add_method("job-info.eventlog", Access::kUser, gated(&Impl::info_eventlog));
  h_.add_method("job-info.disconnect", Access::kUser, [this](const Message& m) { info_disconnect(m); });
  h_.add_method("job-manager.exec-hello", Access::kOwner, gated(&Impl::exec_hello));
  h_.add_method("job-manager.disconnect", Access::kUser, [this](const Message& m) { on_disconnect(m); });
  h_.on_response("sched.alloc", [this](const Message& m) { on_alloc_response(m); });
  h_.on_response("sched.free", [this](const Message& m) {
    if (m.errnum == ENOSYS || m.errnum == EHOSTUNREACH) return sched_gone(error_text(m));
    if (m.errnum) spdlog::warn("job-manager: sched.free: {}", error_text(m));
  });
}

void JobManager::Impl::load() {
  // The FLUID epoch is kept in the KVS so that ids stay unique and
  // time-ordered across restarts.
  h_.rpc("kvs.lookup", Json{{"key", "job-manager.epoch"}}, {}, [this](const Message& r) {
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
      commit_op(Json{{"op", "put"}, {"key", "job-manager.epoch"}, {"value", std::to_string(epoch)}});
    }
    fluid_ = std::make_unique<FluidGenerator>(epoch, 0);
    h_.rpc("kvs.lookup", Json{{"key", "job"}}, {}, [this](const Message& r) {
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
  static const char* kLeaves[3] = {"eventlog", "jobspec", "R"};
  for (const auto& name : names) {
    (*texts)[name];
    for (int i = 0; i < 3; ++i) {
      h_.rpc("kvs.lookup", Json{{"key", "job." + name + "." + kLeaves[i]}}, {},
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

void JobManager::Impl::finish_load(std::map<std::string, std::array<std::string, 3>> texts) {
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
    if (j.rec.allocated) {
      auto R = ResourceSet::parse_text(t[2]);
      if (!R.ok()) {
        set_aside("R: " + (t[2].empty() ? std::string("missing") : R.error().text));
        continue;
      }
      j.ranks = R->rank_set().encode();
      j.nnodes = static_cast<uint32_t>(R->ranks().size());
      if (is_active(j.rec.state)) j.R = std::move(*R);
    }
    if (is_active(j.rec.state)) j.jobspec = std::move(t[1]);
    jobs_.emplace(id, std::move(j));
  }
  fluid_->restore(last);
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
  if (auto st = apply_event(j.rec, e); !st) {
    spdlog::error("job-manager: job {}: {}", j.id.value(), st.error().text);
    return st;
  }
  commit_op(Json{{"op", "append"}, {"key", job_key(j.id, "eventlog")}, {"value", format_event(e)}});
  if (name == "exception") {
    Json ev = e.context;
    ev["id"] = j.id.value();
    h_.publish("job-exception", dump_json(ev));
  }
  return {};
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
        if (!post(j, "depend")) return;
        continue;
      case JobState::kPriority:
        if (!post(j, "priority", Json{{"priority", priority_of(r.urgency)}})) return;
        continue;
      case JobState::kSched: send_alloc(j); return;
      case JobState::kRun:
        // Jobs wait here until an execution service is registered.
        send_start(j);
        return;
      case JobState::kCleanup:
        if (j.alloc_pending) {
          // The scheduler may be allocating right now: wait for its answer.
          if (!j.cancel_sent && sched_connected_) {
            h_.send_oneway("sched.cancel", dump_json(Json{{"id", j.id.value()}}));
            j.cancel_sent = true;
          }
          return;
        }
        if (r.allocated && !r.freed) {
          // The execution service holds the ranks until its final release.
          if ((r.started || j.start_sent) && !r.released_all) return;
          // Released ranks went to the scheduler with their release; the
          // final free carries the rest (all of R if the job never started).
          ResourceSet rest = r.released_all ? ResourceSet{} : j.R.subset(j.R.rank_set().subtract(r.released));
          send_free(j, rest, true);
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
  j.jobspec = std::string();
  j.R = ResourceSet{};
  j.annotations = nullptr;
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
#ifdef __GLIBC__
      malloc_trim(0);
#endif
    });
  }
  check_drain();
  if (cfg_.inactive_num_limit > 0 && inactive_order_.size() > cfg_.inactive_num_limit) {
    std::vector<JobId> old;
    while (inactive_order_.size() > cfg_.inactive_num_limit) {
      old.push_back(inactive_order_.front());
      inactive_order_.pop_front();
    }
    purge_jobs(old, nullptr);
  }
}

void JobManager::Impl::schedule_flush() {
  if (flush_posted_) return;
  flush_posted_ = true;
  // Every event posted in this loop turn goes into one commit.
  asio::post(io_, [this, alive = std::weak_ptr<int>(alive_)] {
    if (alive.expired()) return;
    flush();
  });
}

void JobManager::Impl::flush() {
  flush_posted_ = false;
  auto ops = std::move(pending_ops_);
  pending_ops_ = Json::array();
  auto after = std::move(after_commit_);
  after_commit_.clear();
  if (ops.empty()) {
    for (auto& fn : after) fn(nullptr);
    return;
  }
  h_.rpc("kvs.commit", Json{{"ops", std::move(ops)}}, {}, [after = std::move(after)](const Message& r) {
    if (r.errnum) {
      Error e{r.errnum, error_text(r)};
      spdlog::error("job-manager: a commit of job events failed: {}", e.text);
      for (auto& fn : after) fn(&e);
      return;
    }
    for (auto& fn : after) fn(nullptr);
  });
}

// ---------------------------------------------------------------- scheduler

void JobManager::Impl::send_alloc(Job& j) {
  if (j.alloc_pending || !sched_ready_ || !sched_started_ || stopping_ || j.rec.priority <= 0) return;
  if (sched_limited_ && allocs_outstanding_ >= sched_limit_) return;
  j.alloc_pending = true;
  j.cancel_sent = false;
  ++allocs_outstanding_;
  // The jobspec is spliced in as the text it is kept as.
  Json req{{"id", j.id.value()}, {"priority", j.rec.priority}, {"userid", j.rec.userid}, {"t_submit", j.rec.t_submit}};
  std::string payload = dump_json(req);
  payload.pop_back();
  payload += ",\"jobspec\":";
  payload += j.jobspec;
  payload += '}';
  h_.send_matchless("sched.alloc", std::move(payload));
}

void JobManager::Impl::send_free(Job& j, const ResourceSet& r, bool final) {
  // A scheduler that has not said hello yet learns the allocations from
  // its hello, which leaves freed jobs out: nothing to tell it now.
  if (!sched_connected_) return;
  Json req{{"id", j.id.value()}, {"R", r.to_json()}, {"final", final}};
  h_.send_matchless("sched.free", dump_json(req));
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
  auto p = parse_json(m.payload);
  if (!p.ok() || !p->is_object()) {
    spdlog::warn("job-manager: ignoring a malformed sched.alloc response");
    return;
  }
  auto id = get_jobid(*p);
  auto type = get_int(*p, "type", 0, 3);
  if (!id.ok() || !type.ok()) {
    spdlog::warn("job-manager: ignoring a sched.alloc response without id or type");
    return;
  }
  auto it = jobs_.find(*id);
  Job* j = it == jobs_.end() ? nullptr : &it->second;
  if (*type == 1) {
    if (j && p->contains("annotations")) j->annotations = (*p)["annotations"];
    return;
  }
  if (!j || !j->alloc_pending) {
    spdlog::warn("job-manager: sched.alloc response for job {} that has no alloc pending", id->value());
    if (*type == 0 && p->contains("R")) {
      // Never leave resources with a job that is not waiting for them.
      Json req{{"id", id->value()}, {"R", (*p)["R"]}, {"final", true}};
      h_.send_matchless("sched.free", dump_json(req));
    }
    return;
  }
  j->alloc_pending = false;
  j->cancel_sent = false;
  if (allocs_outstanding_ > 0) --allocs_outstanding_;
  if (*type == 0) {
    auto R = p->contains("R") ? ResourceSet::parse((*p)["R"]) : Result<ResourceSet>(Error{EPROTO, "missing R"});
    if (!R.ok()) {
      spdlog::error("job-manager: job {}: the scheduler sent a bad R: {}", j->id.value(), R.error().text);
      (void)post(*j, "exception",
                 Json{{"type", "alloc"}, {"severity", 0}, {"note", "the scheduler sent a bad R: " + R.error().text}});
      advance(*j);
      return;
    }
    if (j->rec.state != JobState::kSched || stopping_) {
      // Cancelled (or the instance stopping) while the scheduler was
      // allocating: give it straight back; the job stays as it was.
      Json req{{"id", j->id.value()}, {"R", (*p)["R"]}, {"final", true}};
      h_.send_matchless("sched.free", dump_json(req));
      advance(*j);
      return;
    }
    j->R = std::move(*R);
    j->ranks = j->R.rank_set().encode();
    j->nnodes = static_cast<uint32_t>(j->R.ranks().size());
    j->annotations = nullptr;
    (void)post(*j, "alloc");
    advance(*j);
  } else if (*type == 2) {
    std::string note = p->value("note", "");
    if (!p->contains("note") || !(*p)["note"].is_string()) note = "the scheduler denied the request";
    if (j->rec.state == JobState::kSched) {
      (void)post(*j, "exception", Json{{"type", "alloc"}, {"severity", 0}, {"note", note}});
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
    if (!j.rec.allocated || j.rec.freed || !is_active(j.rec.state)) continue;
    Json r{{"id", id.value()},       {"priority", std::max<int64_t>(j.rec.priority, 0)},
           {"userid", j.rec.userid}, {"t_submit", j.rec.t_submit},
           {"R", j.R.to_json()},     {"free", (j.rec.released_all ? j.R.rank_set() : j.rec.released).encode()}};
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
  for (auto& [id, j] : jobs_) count += j.rec.state == JobState::kSched;
  h_.respond(m, Json{{"count", count}});
  offer_pending();
}

// ---------------------------------------------------------------- execution

void JobManager::Impl::exec_hello(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto name = get_string(*p, "service");
  if (!name.ok()) return h_.respond_error(m, name.error());
  if (name->empty() || name->find_first_of(". \t\n") != std::string::npos) {
    return h_.respond_error(m, EINVAL, "service must be a name without dots or spaces");
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
    h_.on_response(topic, [this](const Message& r) { on_start_response(r); });
  }
  spdlog::info("job-manager: execution service {} registered", exec_service_);
  h_.respond(m, Json::object());
  for (auto& [id, j] : jobs_) {
    if (j.rec.state == JobState::kRun || (j.rec.state == JobState::kCleanup && j.rec.started && !j.rec.released_all)) {
      send_start(j);
    }
  }
}

void JobManager::Impl::send_start(Job& j) {
  if (exec_service_.empty() || j.start_sent || j.rec.released_all) return;
  j.start_sent = true;
  Json req{{"id", j.id.value()}, {"userid", j.rec.userid}, {"R", j.R.to_json()}, {"reattach", j.rec.started}};
  // The jobspec is spliced in as the text it is kept as.
  std::string payload = dump_json(req);
  payload.pop_back();
  payload += ",\"jobspec\":";
  payload += j.jobspec;
  payload += '}';
  h_.send_matchless(exec_service_ + ".start", std::move(payload));
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
}

// A response the job's eventlog cannot take: the job gets a fatal exception
// naming it, and everything it still holds goes back, so it cannot hang.
void JobManager::Impl::exec_violation(Job& j, const std::string& why) {
  spdlog::error("job-manager: job {}: execution service {}: {}", encode_f58(j.id), exec_service_, why);
  j.start_sent = false;
  if (!j.rec.fatal_exception && is_active(j.rec.state)) {
    (void)post(j, "exception", Json{{"type", "exec"}, {"severity", 0}, {"note", "execution protocol: " + why}});
  }
  if (j.rec.allocated && !j.rec.released_all && is_active(j.rec.state)) {
    IdSet rest = j.R.rank_set().subtract(j.rec.released);
    if (post(j, "release", Json{{"ranks", rest.encode()}, {"final", true}})) send_free(j, j.R.subset(rest), false);
  }
  advance(j);
  check_quiesce();
}

void JobManager::Impl::on_start_response(const Message& m) {
  if (exec_service_.empty() || m.topic != exec_service_ + ".start") return;  // not from the registered service
  if (m.errnum) return exec_teardown(m.topic + ": " + error_text(m));
  auto p = payload_object(m);
  Result<int64_t> idv = p.ok() ? get_int(*p, "id", 0, INT64_MAX) : Result<int64_t>(p.error());
  if (!idv.ok()) {
    spdlog::warn("job-manager: ignoring a malformed {} response: {}", m.topic, idv.error().text);
    return;
  }
  auto it = jobs_.find(JobId{static_cast<uint64_t>(*idv)});
  if (it == jobs_.end() || !it->second.start_sent) {
    spdlog::warn("job-manager: ignoring a {} response for job {}, which has no start outstanding", m.topic, *idv);
    return;
  }
  Job& j = it->second;
  auto type = get_string(*p, "type");
  if (!type.ok()) return exec_violation(j, "response without a type");
  Json data = p->contains("data") && (*p)["data"].is_object() ? (*p)["data"] : Json::object();
  if (*type == "start") {
    if (!post(j, "start")) return exec_violation(j, "start is out of order");
  } else if (*type == "reattached") {
    if (!j.rec.started) return exec_violation(j, "reattached for a job that never started");
  } else if (*type == "exception") {
    int64_t zero = 0;
    auto sev = get_int(data, "severity", 0, 7, &zero);
    auto etype = get_string(data, "type", "exec");
    auto note = get_string(data, "note", "");
    if (!sev.ok() || !etype.ok() || !note.ok() || etype->empty()) return exec_violation(j, "malformed exception");
    if (!post(j, "exception", Json{{"type", *etype}, {"severity", *sev}, {"note", *note}})) {
      return exec_violation(j, "exception is out of order");
    }
  } else if (*type == "finish") {
    auto status = get_int(data, "status", 0, INT32_MAX);
    if (!status.ok()) return exec_violation(j, "finish: " + status.error().text);
    if (!post(j, "finish", Json{{"status", *status}})) return exec_violation(j, "finish is out of order");
  } else if (*type == "release") {
    auto ranks_text = get_string(data, "ranks");
    auto final = get_bool(data, "final", false);
    if (!ranks_text.ok() || !final.ok()) return exec_violation(j, "release needs ranks and final");
    IdSet ranks;
    if (*ranks_text == "all") {
      ranks = j.R.rank_set();
    } else {
      auto parsed = IdSet::parse(*ranks_text);
      if (!parsed.ok()) return exec_violation(j, "release: " + parsed.error().text);
      ranks = *parsed;
    }
    IdSet outside = ranks.subtract(j.R.rank_set());
    if (!outside.empty()) return exec_violation(j, "release of ranks " + outside.encode() + " the job does not hold");
    IdSet fresh = ranks.subtract(j.rec.released);
    // A non-final "all" is logged as the ranks it means, so that they count
    // as released (and are not freed a second time later).
    std::string logged = *ranks_text == "all" && !*final ? ranks.encode() : *ranks_text;
    if (!post(j, "release", Json{{"ranks", logged}, {"final", *final}})) {
      return exec_violation(j, *final && j.rec.state == JobState::kRun
                                   ? "final release before finish or a fatal exception"
                                   : "release is out of order");
    }
    // Every release goes back to the scheduler at once; the free event's
    // final sched.free then carries nothing more.
    if (!fresh.empty()) send_free(j, j.R.subset(fresh), false);
    if (*final) {
      j.start_sent = false;
      advance(j);
      return check_quiesce();
    }
  } else {
    return exec_violation(j, "unknown response type \"" + *type + "\"");
  }
  advance(j);
}

// ---------------------------------------------------------------- requests

Result<JobManager::Impl::Job*> JobManager::Impl::find_job(const Message& m, const Json& p, bool must_be_active) {
  auto id = get_jobid(p);
  if (!id.ok()) return id.error();
  auto it = jobs_.find(*id);
  if (it == jobs_.end()) return Error{ENOENT, "unknown job " + encode_f58(*id)};
  Job& j = it->second;
  if (!(m.rolemask & role::kOwner) && m.userid != j.rec.userid) {
    return Error{EPERM, "job " + encode_f58(*id) + " belongs to another user"};
  }
  if (must_be_active && !is_active(j.rec.state)) return Error{EINVAL, "job " + encode_f58(*id) + " is inactive"};
  return &j;
}

void JobManager::Impl::submit(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  if (!submit_enabled_) {
    return h_.respond_error(m, EAGAIN,
                            "submissions are disabled" + (submit_reason_.empty() ? "" : ": " + submit_reason_));
  }
  Json items;
  if (p->contains("jobs")) {
    items = (*p)["jobs"];
    if (!items.is_array() || items.empty()) return h_.respond_error(m, EPROTO, "\"jobs\" must be a non-empty array");
    if (items.size() > kMaxBatch) {
      return h_.respond_error(m, EINVAL, "at most " + std::to_string(kMaxBatch) + " jobs per submit");
    }
  } else {
    items = Json::array({*p});
  }
  bool owner = m.rolemask & role::kOwner;
  std::vector<Jobspec> specs;
  std::vector<uint32_t> urgencies;
  specs.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    std::string where = items.size() > 1 ? "job " + std::to_string(i + 1) + ": " : "";
    const Json& it = items[i];
    if (!it.is_object() || !it.contains("jobspec")) return h_.respond_error(m, EPROTO, where + "missing \"jobspec\"");
    const Json& js = it["jobspec"];
    auto spec = js.is_string() ? parse_jobspec_text(js.get<std::string>()) : parse_jobspec(js);
    if (!spec.ok()) return h_.respond_error(m, spec.error().code, where + spec.error().text);
    int64_t dflt = kUrgencyDefault;
    auto u = get_int(it, "urgency", 0, 31, &dflt);
    if (!u.ok()) return h_.respond_error(m, u.error().code, where + "urgency must be 0-31");
    if (*u > kUrgencyDefault && !owner) {
      return h_.respond_error(m, EPERM, "only the instance owner may set an urgency above 16");
    }
    specs.push_back(std::move(*spec));
    urgencies.push_back(static_cast<uint32_t>(*u));
  }
  // Ask the scheduler whether this instance could ever run them, so that
  // an impossible request is refused now rather than denied later.
  Json check = Json::array();
  std::map<std::string, size_t> seen;  // identical resource requests are checked once
  std::vector<size_t> index;
  for (size_t i = 0; i < specs.size(); ++i) {
    std::string key = dump_json(specs[i].raw["resources"]) + dump_json(specs[i].raw["tasks"]);
    if (seen.emplace(key, i).second) {
      check.push_back(specs[i].raw);
      index.push_back(i);
    }
  }
  h_.rpc("sched.feasibility", Json{{"jobspecs", check}}, {},
         [this, m, specs = std::move(specs), urgencies = std::move(urgencies), index = std::move(index),
          n = items.size()](const Message& r) mutable {
           if (r.errnum && r.errnum != ENOSYS) {
             std::string text = error_text(r);
             // The scheduler numbers the jobspecs it was sent from 0; name
             // the job of the batch (from 1), or nothing for a single job.
             if (text.starts_with("jobspec ")) {
               size_t k = std::strtoul(text.c_str() + 8, nullptr, 10);
               size_t colon = text.find(": ");
               if (k < index.size() && colon != std::string::npos) {
                 text = (n > 1 ? "job " + std::to_string(index[k] + 1) + ": " : "") + text.substr(colon + 2);
               }
             }
             return h_.respond_error(m, r.errnum, text);
           }
           submit_checked(m, std::move(specs), std::move(urgencies));
         });
}

void JobManager::Impl::submit_checked(const Message& m, std::vector<Jobspec> specs, std::vector<uint32_t> urgencies) {
  if (!submit_enabled_) {
    return h_.respond_error(m, EAGAIN,
                            "submissions are disabled" + (submit_reason_.empty() ? "" : ": " + submit_reason_));
  }
  Json ids = Json::array();
  std::vector<Job*> created;
  uint64_t now_ms = static_cast<uint64_t>(h_.clock().wall() * 1000);
  for (size_t i = 0; i < specs.size(); ++i) {
    JobId id = fluid_->next(now_ms);
    Job& j = jobs_[id];
    j.id = id;
    j.name = specs[i].name;
    j.ntasks = specs[i].ntasks;
    j.nnodes = specs[i].nnodes;
    j.duration = specs[i].duration;
    j.jobspec = dump_json(specs[i].raw);
    commit_op(Json{{"op", "put"}, {"key", job_key(id, "jobspec")}, {"value", j.jobspec}});
    (void)post(j, "submit", Json{{"userid", m.userid}, {"urgency", urgencies[i]}, {"flags", 0}, {"version", 1}});
    ids.push_back(id.value());
    created.push_back(&j);
  }
  // The submitter hears of its jobs once they are durable.
  after_commit([this, m, ids](const Error* e) {
    if (e) return h_.respond_error(m, e->code, "the jobs could not be stored: " + e->text);
    h_.respond(m, Json{{"ids", ids}});
  });
  for (Job* j : created) advance(*j);
}

Json JobManager::Impl::describe(const Job& j) const {
  const JobRecord& r = j.rec;
  Json d{{"id", j.id.value()},   {"userid", r.userid},     {"name", j.name},         {"state", job_state_name(r.state)},
         {"urgency", r.urgency}, {"priority", r.priority}, {"t_submit", r.t_submit}, {"ntasks", j.ntasks},
         {"nnodes", j.nnodes},   {"duration", j.duration}};
  if (r.allocated) {
    d["t_run"] = r.t_run;
    d["ranks"] = j.ranks;
  }
  if (r.t_cleanup > 0) d["t_cleanup"] = r.t_cleanup;
  if (r.state == JobState::kInactive) {
    d["t_inactive"] = r.t_inactive;
    d["result"] = result_of(r);
    d["success"] = d["result"] == "COMPLETED";
  }
  if (r.finished) d["status"] = r.finish_status;
  if (r.fatal_exception) d["exception"] = Json{{"type", r.exception_type}, {"note", r.exception_note}};
  if (!j.annotations.is_null()) d["annotations"] = j.annotations;
  if (r.state == JobState::kCleanup && r.allocated && !r.freed) {
    d["ranks_held"] = j.R.rank_set().subtract(r.released).encode();
  }
  return d;
}

void JobManager::Impl::list(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  bool owner = m.rolemask & role::kOwner;
  int64_t any = -1;
  auto userid = get_int(*p, "userid", -1, UINT32_MAX, &any);
  if (!userid.ok()) return h_.respond_error(m, userid.error());
  // Users see only their own jobs.
  if (!owner) userid = static_cast<int64_t>(m.userid);
  int64_t all_states = 127;
  auto states = get_int(*p, "states", 0, 127, &all_states);
  if (!states.ok()) return h_.respond_error(m, states.error());
  int64_t unlimited = 0;
  auto limit = get_int(*p, "limit", 0, INT32_MAX, &unlimited);
  if (!limit.ok()) return h_.respond_error(m, limit.error());
  Json out = Json::array();
  for (auto it = jobs_.rbegin(); it != jobs_.rend(); ++it) {
    const Job& j = it->second;
    if (*userid >= 0 && j.rec.userid != static_cast<uint32_t>(*userid)) continue;
    if (!(static_cast<int64_t>(j.rec.state) & *states)) continue;
    out.push_back(describe(j));
    if (*limit > 0 && out.size() >= static_cast<size_t>(*limit)) break;
  }
  h_.respond(m, Json{{"jobs", std::move(out)}});
}

void JobManager::Impl::raise(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto j = find_job(m, *p, true);
  if (!j.ok()) return h_.respond_error(m, j.error());
  auto sev = get_int(*p, "severity", 0, 7);
  if (!sev.ok()) return h_.respond_error(m, sev.error());
  auto type = get_string(*p, "type");
  if (!type.ok()) return h_.respond_error(m, type.error());
  auto note = get_string(*p, "note", "");
  if (!note.ok()) return h_.respond_error(m, note.error());
  EventEntry probe{0, "exception", Json{{"type", *type}, {"severity", *sev}, {"note", *note}}};
  if (type->empty() || type->find_first_of(" \t\n\r") != std::string::npos) {
    return h_.respond_error(m, EINVAL, "exception type must be one word");
  }
  if (auto st = post(**j, "exception", probe.context); !st) return h_.respond_error(m, st.error());
  advance(**j);
  h_.respond(m, "{}");
}

void JobManager::Impl::cancel(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto note = get_string(*p, "note", "");
  if (!note.ok()) return h_.respond_error(m, note.error());
  auto all = get_bool(*p, "all", false);
  if (!all.ok()) return h_.respond_error(m, all.error());
  std::vector<Job*> targets;
  Json errors = Json::array();
  if (*all) {
    for (auto& [id, j] : jobs_) {
      if (is_active(j.rec.state) && j.rec.userid == m.userid && !j.rec.fatal_exception) targets.push_back(&j);
    }
  } else {
    if (!p->contains("ids") || !(*p)["ids"].is_array()) return h_.respond_error(m, EPROTO, "missing \"ids\"");
    for (const auto& v : (*p)["ids"]) {
      auto j = find_job(m, Json{{"id", v}}, true);
      if (!j.ok()) {
        errors.push_back(Json{{"id", v}, {"error", j.error().text}});
        continue;
      }
      if ((*j)->rec.fatal_exception && (*j)->rec.exception_type == "cancel") {
        errors.push_back(Json{{"id", v}, {"error", "job " + encode_f58((*j)->id) + " is already canceled"}});
        continue;
      }
      targets.push_back(*j);
    }
  }
  Json done = Json::array();
  for (Job* j : targets) {
    if (!post(*j, "exception", Json{{"type", "cancel"}, {"severity", 0}, {"note", *note}})) continue;
    done.push_back(j->id.value());
    advance(*j);
  }
  h_.respond(m, Json{{"canceled", done}, {"errors", errors}});
}

void JobManager::Impl::urgency(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto u = get_int(*p, "urgency", 0, 31);
  if (!u.ok())
    return h_.respond_error(m, u.error().code, "urgency must be 0-31 (0 holds, 16 is the default, 31 expedites)");
  auto jr = find_job(m, *p, true);
  if (!jr.ok()) return h_.respond_error(m, jr.error());
  Job& j = **jr;
  if (*u > kUrgencyDefault && !(m.rolemask & role::kOwner)) {
    return h_.respond_error(m, EPERM, "only the instance owner may set an urgency above 16");
  }
  if (!is_pending(j.rec.state) && j.rec.state != JobState::kNew) {
    return h_.respond_error(m, EINVAL, "job " + encode_f58(j.id) + " is not pending");
  }
  uint32_t old = j.rec.urgency;
  if (auto st = post(j, "urgency", Json{{"urgency", *u}}); !st) return h_.respond_error(m, st.error());
  int64_t prio = priority_of(j.rec.urgency);
  if (j.rec.state == JobState::kSched && prio != j.rec.priority) {
    (void)post(j, "priority", Json{{"priority", prio}});
    if (prio == 0 && j.alloc_pending && !j.cancel_sent) {
      h_.send_oneway("sched.cancel", dump_json(Json{{"id", j.id.value()}}));
      j.cancel_sent = true;
    } else if (j.alloc_pending) {
      h_.send_oneway("sched.prioritize", dump_json(Json{{"jobs", Json::array({Json::array({j.id.value(), prio})})}}));
    } else {
      send_alloc(j);
    }
  }
  h_.respond(m, Json{{"old_urgency", old}});
}

void JobManager::Impl::wait(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto j = find_job(m, *p, false);
  if (!j.ok()) return h_.respond_error(m, j.error());
  if (!is_active((*j)->rec.state)) return h_.respond(m, describe(**j));
  (*j)->waiters.push_back(m);
}

void JobManager::Impl::kill(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto j = find_job(m, *p, true);
  if (!j.ok()) return h_.respond_error(m, j.error());
  auto sig = get_int(*p, "signal", 1, 64);
  if (!sig.ok()) return h_.respond_error(m, sig.error());
  if ((*j)->rec.state != JobState::kRun || !(*j)->rec.started) {
    return h_.respond_error(m, EINVAL, "job " + encode_f58((*j)->id) + " is not running");
  }
  if (exec_service_.empty() || !(*j)->start_sent) {
    return h_.respond_error(m, ENOSYS, "no execution service is running job " + encode_f58((*j)->id));
  }
  h_.send_oneway(exec_service_ + ".kill", dump_json(Json{{"id", (*j)->id.value()}, {"signal", *sig}}));
  h_.respond(m, Json::object());
}

void JobManager::Impl::purge_jobs(const std::vector<JobId>& ids, std::function<void(const Error*)> done) {
  for (JobId id : ids) {
    jobs_.erase(id);
    commit_op(Json{{"op", "unlink"}, {"key", "job." + std::to_string(id.value())}});
  }
  if (done) after_commit(std::move(done));
}

void JobManager::Impl::purge(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  std::vector<JobId> ids;
  if (p->contains("ids")) {
    if (!(*p)["ids"].is_array()) return h_.respond_error(m, EPROTO, "\"ids\" must be an array");
    for (const auto& v : (*p)["ids"]) {
      auto j = find_job(m, Json{{"id", v}}, false);
      if (!j.ok()) return h_.respond_error(m, j.error());
      if (is_active((*j)->rec.state)) {
        return h_.respond_error(m, EINVAL, "job " + encode_f58((*j)->id) + " is still active");
      }
      ids.push_back((*j)->id);
    }
  } else {
    int64_t none = -1;
    auto num = get_int(*p, "num_limit", 0, INT32_MAX, &none);
    if (!num.ok()) return h_.respond_error(m, num.error());
    double age = -1;
    if (p->contains("age_limit")) {
      if (!(*p)["age_limit"].is_number() || (*p)["age_limit"].get<double>() < 0) {
        return h_.respond_error(m, EPROTO, "\"age_limit\" must be seconds");
      }
      age = (*p)["age_limit"].get<double>();
    }
    if (*num < 0 && age < 0) return h_.respond_error(m, EPROTO, "give ids, num_limit or age_limit");
    double now = h_.clock().wall();
    size_t n = inactive_order_.size();
    for (size_t i = 0; i < n; ++i) {
      JobId id = inactive_order_[i];
      auto it = jobs_.find(id);
      if (it == jobs_.end()) continue;
      bool over_num = *num >= 0 && n - i > static_cast<size_t>(*num);
      bool over_age = age >= 0 && now - it->second.rec.t_inactive > age;
      if (over_num || over_age) ids.push_back(id);
    }
  }
  std::erase_if(inactive_order_, [&](JobId id) { return std::find(ids.begin(), ids.end(), id) != ids.end(); });
  size_t n = ids.size();
  purge_jobs(ids, [this, m, n](const Error* e) {
    if (e) return h_.respond_error(m, *e);
    h_.respond(m, Json{{"purged", n}});
  });
}

// inactive_order_ holds exactly the inactive jobs of jobs_.
bool JobManager::Impl::has_active() const { return inactive_order_.size() < jobs_.size(); }

void JobManager::Impl::check_drain() {
  if (drain_waiters_.empty() || has_active()) return;
  auto waiters = std::move(drain_waiters_);
  drain_waiters_.clear();
  // Answered once the last job's end is stored.
  after_commit([this, waiters = std::move(waiters)](const Error*) {
    for (auto& w : waiters) h_.respond(w, "{}");
  });
}

void JobManager::Impl::queue_status(const Message& m) {
  size_t pending = 0, running = 0;
  for (auto& [id, j] : jobs_) {
    if (is_pending(j.rec.state) || j.rec.state == JobState::kNew) ++pending;
    if (j.rec.state == JobState::kRun || j.rec.state == JobState::kCleanup) ++running;
  }
  h_.respond(m, Json{{"submit", {{"enabled", submit_enabled_}, {"reason", submit_reason_}}},
                     {"sched", {{"started", sched_started_}, {"reason", sched_reason_}}},
                     {"pending", pending},
                     {"running", running},
                     {"scheduler", sched_ready_       ? "ready"
                                   : sched_connected_ ? "connected"
                                                      : "absent"}});
}

void JobManager::Impl::queue_control(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto action = get_string(*p, "action");
  if (!action.ok()) return h_.respond_error(m, action.error());
  auto reason = get_string(*p, "reason", "");
  if (!reason.ok()) return h_.respond_error(m, reason.error());
  if (*action == "enable") {
    submit_enabled_ = true;
    submit_reason_.clear();
  } else if (*action == "disable") {
    submit_enabled_ = false;
    submit_reason_ = *reason;
  } else if (*action == "start") {
    sched_started_ = true;
    sched_reason_.clear();
    offer_pending();
  } else if (*action == "stop") {
    sched_started_ = false;
    sched_reason_ = *reason;
    // Take back what the scheduler has not allocated yet.
    for (auto& [id, j] : jobs_) {
      if (j.alloc_pending && !j.cancel_sent) {
        h_.send_oneway("sched.cancel", dump_json(Json{{"id", id.value()}}));
        j.cancel_sent = true;
      }
    }
  } else {
    return h_.respond_error(m, EINVAL, "action must be enable, disable, start or stop, not " + *action);
  }
  h_.respond(m, "{}");
}

void JobManager::Impl::queue_drain(const Message& m) {
  drain_waiters_.push_back(m);
  check_drain();
}

void JobManager::Impl::stats(const Message& m) {
  Json states = Json::object();
  for (JobState s : {JobState::kNew, JobState::kDepend, JobState::kPriority, JobState::kSched, JobState::kRun,
                     JobState::kCleanup, JobState::kInactive}) {
    states[job_state_name(s)] = 0;
  }
  for (auto& [id, j] : jobs_) states[job_state_name(j.rec.state)] = states[job_state_name(j.rec.state)].get<int>() + 1;
  Json bad = Json::array();
  for (auto& b : bad_) bad.push_back(Json{{"id", b.name}, {"error", b.error}});
  h_.respond(m, Json{{"states", states}, {"total", jobs_.size()}, {"bad", bad}});
}

// ---------------------------------------------------------------- job-info

void JobManager::Impl::info_lookup(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto j = find_job(m, *p, false);
  if (!j.ok()) return h_.respond_error(m, j.error());
  if (!p->contains("keys") || !(*p)["keys"].is_array() || (*p)["keys"].empty()) {
    return h_.respond_error(m, EPROTO, "\"keys\" must be a non-empty array");
  }
  std::vector<std::string> keys;
  for (const auto& k : (*p)["keys"]) {
    if (!k.is_string() || (k != "jobspec" && k != "R" && k != "eventlog")) {
      return h_.respond_error(m, EINVAL, "keys are jobspec, R and eventlog");
    }
    keys.push_back(k.get<std::string>());
  }
  JobId id = (*j)->id;
  auto out = std::make_shared<Json>(Json{{"id", id.value()}});
  auto left = std::make_shared<size_t>(keys.size());
  auto failed = std::make_shared<bool>(false);
  for (const auto& k : keys) {
    h_.rpc("kvs.lookup", Json{{"key", job_key(id, k.c_str())}}, {},
           [this, m, out, left, failed, k, id](const Message& r) {
             if (*failed) return;
             if (r.errnum) {
               *failed = true;
               if (r.errnum == ENOENT) return h_.respond_error(m, ENOENT, "job " + encode_f58(id) + " has no " + k);
               return h_.respond_error(m, r.errnum, error_text(r));
             }
             auto v = parse_json(r.payload);
             if (v.ok() && v->contains("value")) (*out)[k] = (*v)["value"];
             if (--*left == 0) h_.respond(m, *out);
           });
  }
}

void JobManager::Impl::info_eventlog(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  if (!m.has_flag(msgflag::kStreaming)) return h_.respond_error(m, EPROTO, "job-info.eventlog must be streaming");
  auto j = find_job(m, *p, false);
  if (!j.ok()) return h_.respond_error(m, j.error());
  auto follow = get_bool(*p, "follow", false);
  if (!follow.ok()) return h_.respond_error(m, follow.error());
  JobId id = (*j)->id;
  // Without follow, one lookup of what is stored answers it. Following
  // watches even a job that is already inactive here: its last events may
  // not be stored yet, and the watch ends once `clean` is.
  if (!*follow) {
    h_.rpc("kvs.lookup", Json{{"key", job_key(id, "eventlog")}}, {}, [this, m](const Message& r) {
      if (r.errnum) return h_.respond_error(m, r.errnum, error_text(r));
      auto v = parse_json(r.payload);
      if (!v.ok() || !v->contains("value") || !(*v)["value"].is_string()) {
        return h_.respond_error(m, EPROTO, "the eventlog is not text");
      }
      LineSplitter lines;
      for (auto& line : lines.feed((*v)["value"].get<std::string>())) {
        auto e = parse_event(line);
        if (e.ok()) h_.respond(m, Json{{"event", parse_json(line).value()}});
      }
      h_.respond_error(m, ENODATA, "");
    });
    return;
  }
  Json watch{{"key", job_key(id, "eventlog")}, {"append", true}, {"from", "start"}};
  auto state = std::make_shared<EventlogWatch>(EventlogWatch{m, id, {}});
  auto tagp = std::make_shared<uint32_t>(0);
  *tagp = h_.rpc("kvs.watch", watch, RpcOptions{.streaming = true}, [this, state, tagp](const Message& r) {
    auto finish = [&](bool cancel_watch) {
      if (cancel_watch) {
        h_.cancel_rpc(*tagp);
        h_.rpc("kvs.watch-cancel", Json{{"matchtag", *tagp}}, {}, [](const Message&) {});
      }
      eventlog_watches_.erase(*tagp);
      h_.respond_error(state->req, ENODATA, "");
    };
    if (r.errnum) {
      if (r.errnum == ENODATA) return finish(false);
      eventlog_watches_.erase(*tagp);
      return h_.respond_error(state->req, r.errnum, error_text(r));
    }
    auto v = parse_json(r.payload);
    if (!v.ok() || !v->contains("data") || !(*v)["data"].is_string()) return;
    for (auto& line : state->lines.feed((*v)["data"].get<std::string>())) {
      auto e = parse_event(line);
      if (!e.ok()) continue;
      h_.respond(state->req, Json{{"event", parse_json(line).value()}});
      if (e->name == "clean") return finish(true);
    }
  });
  eventlog_watches_.emplace(*tagp, EventlogWatch{m, id, {}});
}

void JobManager::Impl::info_disconnect(const Message& m) {
  HopId who = m.sender();
  for (auto it = eventlog_watches_.begin(); it != eventlog_watches_.end();) {
    if (it->second.req.sender() != who) {
      ++it;
      continue;
    }
    h_.cancel_rpc(it->first);
    h_.rpc("kvs.watch-cancel", Json{{"matchtag", it->first}}, {}, [](const Message&) {});
    it = eventlog_watches_.erase(it);
  }
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
  auto impl = std::make_unique<Impl>(io, h, cfg);
  impl->install();
  impl->load();
  return std::unique_ptr<JobManager>(new JobManager(std::move(impl)));
}

}  // namespace loom
