// The job manager's state and its parts (job_manager.h), shared by the
// files that implement it, one concern each:
//   job_manager.cpp  setup (loading and replaying every job), events
//                    (post, the state machine, commits) and the public face
//   scheduling.cpp   the scheduler protocol (RFC 27): alloc, free, hello
//   execution.cpp    the execution protocol (docs/protocols/exec.md)
//   requests.cpp     the job-manager.* requests of users and the owner
//   info.cpp         the job-info.* service
//   depend.cpp       the DEPEND state: dependencies (dependencies.h)
//   steps.cpp        job steps inside batch and alloc jobs (step_space.h)
//   journal.cpp      job-manager.events, the stream of every job's events
// Only these files include it.
#pragma once

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <asio/io_context.hpp>
#include <bit>
#include <cerrno>
#include <cmath>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "base/fluid.h"
#include "base/histogram.h"
#include "base/once_per_turn.h"
#include "eventlog/eventlog.h"
#include "exec_protocol/exec_protocol.h"
#include "job_manager/dependencies.h"
#include "job_manager/job.h"
#include "job_manager/job_manager.h"
#include "job_manager/step_space.h"
#include "job_manager/submit_rules.h"
#include "jobspec/jobspec.h"
#include "kvs/commit.h"
#include "kvs/layout.h"
#include "msg/access.h"
#include "msg/handle.h"
#include "msg/payload.h"
#include "rset/rset.h"
#include "sched/alloc_protocol.h"

namespace loom {

inline constexpr uint32_t kPriorityMax = 4294967295U;
inline constexpr size_t kMaxBatch = 100000;
// The longest execution service name exec-hello takes.
inline constexpr size_t kMaxServiceName = 64;
// What one answer listing jobs (job-manager.list, a part of a journal's
// first answer) holds at most, as dump_json_bound counts: far below the
// 64 MiB frame whatever the jobs' names, and a client asks for the rest.
inline constexpr size_t kListPartBytes = size_t{8} << 20;
// The longest note a raise or a cancel takes, in bytes.
inline constexpr size_t kMaxNote = 4096;

// The priority of a job with `urgency`: held jobs get 0 and are never
// offered to the scheduler, expedited ones the highest value; otherwise
// the urgency itself, so that the scheduler's tie-break (older first)
// keeps submit order among equals.
inline int64_t priority_of(uint32_t urgency) {
  if (urgency == kUrgencyHold) return 0;
  if (urgency == kUrgencyExpedite) return kPriorityMax;
  return urgency;
}

// "COMPLETED", "FAILED", "CANCELED", "TIMEOUT" for an inactive job.
inline std::string result_of(const JobRecord& r) {
  if (r.state != JobState::kInactive) return "";
  if (r.fatal_exception) {
    if (r.exception_type == "cancel") return "CANCELED";
    if (r.exception_type == "timeout") return "TIMEOUT";
    return "FAILED";
  }
  return r.finished && r.finish_status == 0 ? "COMPLETED" : "FAILED";
}

// `head` (a JSON object) with "jobspec" added as the JSON text a job keeps
// it as, spliced in rather than parsed into a tree and dumped again.
inline std::string with_jobspec(const Json& head, const std::string& jobspec) {
  std::string payload = dump_json(head);
  payload.pop_back();
  payload += ",\"jobspec\":";
  payload += jobspec;
  payload += '}';
  return payload;
}

// `head` (a JSON object) with "jobspec" added, to send to a service: as
// a parsed value, which a service of this broker reads as is (the broker
// writes the text only for one behind a socket). The job manager wrote
// the text, so it parses; if it ever did not, it goes spliced as text.
inline void send_with_jobspec(Handle& h, std::string topic, Json&& head, const std::string& jobspec) {
  auto spec = parse_json(jobspec);
  if (!spec.ok()) return h.send_matchless(std::move(topic), with_jobspec(head, jobspec));
  head["jobspec"] = std::move(*spec);
  h.send_matchless(std::move(topic), std::move(head));
}

// A job id in a payload: a number, or a string in any accepted form.
inline Result<JobId> get_jobid(const Json& j, const char* k = "id") {
  auto it = j.find(k);
  if (it == j.end()) return Error{EPROTO, std::string("missing \"") + k + "\""};
  if (it->is_number_unsigned()) return JobId{it->get<uint64_t>()};
  if (it->is_string()) return parse_jobid(it->get<std::string>());
  return Error{EPROTO, std::string("\"") + k + "\" must be a job id"};
}

struct JobManager::Impl {
  struct Job {
    JobId id;
    JobRecord rec;
    std::string jobspec;  // its JSON text, while active (a tree costs ten times more)
    // The tree its submit parsed, from its first alloc until its start, for
    // at most kHeldSpecs jobs at once: a job that starts as soon as it is
    // submitted is not parsed again.
    std::shared_ptr<const Json> held_spec;
    ResourceSet R;  // while active and allocated
    // Kept for listings after the job is inactive.
    std::string name;
    uint32_t ntasks = 0;
    uint32_t nnodes = 0;  // from R once allocated, else from the jobspec (0: not asked)
    double duration = 0;
    std::string ranks;
    std::string nodelist;  // the hosts of its ranks, a hostlist; "" when unnamed
    uint64_t ncores = 0;
    double expiration = 0;
    // Keeps what listings show of the job's R once R itself is let go.
    void note_resources(const ResourceSet& r);
    Json annotations;              // from the scheduler, while pending
    std::vector<Dependency> deps;  // from the jobspec, while active
    // docs/steps.md: a batch or alloc job (an allocation), and its steps
    // that may still hold some of it (active, not yet freed); or, for a
    // step, the id of its allocation.
    bool batch = false;
    std::set<JobId> steps;
    uint64_t allocation = 0;
    // Side effects in flight.
    bool alloc_pending = false;  // sched.alloc sent, no final answer yet
    // When it first entered SCHED in this broker's life (0: before it, or
    // never): where the scheduling latency of docs/metrics.md starts.
    double t_sched = 0;
    bool cancel_sent = false;  // sched.cancel sent for that alloc
    bool start_sent = false;   // a start is outstanding to the execution service
    // Found holding ranks at a restart before it had started: the execution
    // service may have had it (prologs or epilogs running), so it is the one
    // to see to them and release the ranks, even once the job is ended.
    bool exec_may_hold = false;
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
  // docs/metrics.md: counted as events are posted, since this start
  // (replayed eventlogs are not counted again).
  uint64_t submitted_total_ = 0;
  uint64_t completed_total_ = 0;
  Histogram wait_seconds_{Histogram::seconds_bounds()};   // alloc - submit
  Histogram sched_seconds_{Histogram::seconds_bounds()};  // alloc - entering SCHED
  void count_event(Job& j, JobState before, const EventEntry& e);
  // Jobs in each state, kept as jobs come, change state (count_event) and
  // are purged, so that job-manager.stats (each metrics scrape) does not
  // walk every job. Indexed by state_slot.
  std::array<uint64_t, 7> jobs_in_state_{};
  // Active jobs by user, kept the same way, for the per-user limit
  // (cfg_.max_active_per_user).
  std::map<uint32_t, uint64_t> active_by_user_;
  void count_active(uint32_t userid, int64_t delta);
  static size_t state_slot(JobState s) { return static_cast<size_t>(std::countr_zero(static_cast<unsigned>(s))); }
  std::unique_ptr<FluidGenerator> fluid_;
  // The jobs holding their submit's tree until their start (Job::held_spec):
  // at most kHeldSpecs at once, so that a long queue keeps only text.
  static constexpr size_t kHeldSpecs = 1024;
  size_t held_specs_ = 0;
  void drop_held_spec(Job& j) {
    if (j.held_spec) --held_specs_;
    j.held_spec.reset();
  }
  // A job of a submit, once checked: its document, shared and never
  // changed from the submit to the start; the same decoded (raw left
  // null); its text as stored; its urgency and dependencies.
  struct Submitted {
    std::shared_ptr<const Json> doc;
    std::shared_ptr<const Jobspec> spec;
    std::string text;
    uint32_t urgency = 0;
    std::vector<Dependency> deps;
  };
  // While a job just submitted takes its first steps (submit_checked), its
  // jobspec as the submit checked it: its alloc request, most often sent
  // then, takes that document and its decoding rather than the job's text.
  struct FreshSpec {
    JobId id{0};
    const Submitted* job = nullptr;
  } fresh_spec_;
  // While a job's final release is taken (on_exec), the ranks it gave back
  // that the scheduler has not had: the free event, most often posted then,
  // sends them in its final sched.free rather than in one of their own.
  struct FinalFree {
    JobId id{0};
    IdSet ranks;
  } final_free_;
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

  // Events waiting for the next KVS commit (a typed payload: the KVS is in
  // this process).
  std::vector<KvsOp> pending_ops_;
  std::vector<std::function<void(const Error*)>> after_commit_;
  // Every event posted in one loop turn goes into one commit; in a
  // simulation, every event of one virtual instant that nothing waits on.
  OncePerTurn flush_turn_{io_, h_.clock(), Clock::IdleOrder::kWrite, [this] { flush(); }};

  std::unordered_map<uint32_t, EventlogWatch> eventlog_watches_;  // by our kvs.watch matchtag

  // The registered execution service (docs/protocols/exec.md): its name ("" when none)
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
  void load_epoch();
  // The queue's state (enabled, started, their reasons) is kept in the
  // KVS under job-manager.queue, so that a restart keeps it.
  void restore_queue(const Message& lookup);
  void store_queue();
  void load_jobs(const std::vector<std::string>& names);
  void finish_load(std::map<std::string, std::array<std::string, 3>>&& texts);

  // --- events ---
  Status post(Job& j, const std::string& name, Json context = nullptr);
  void advance(Job& j);
  void on_inactive(Job& j);
  // Purges the oldest inactive jobs beyond job-manager.inactive-num-limit,
  // once per loop turn (never under a caller that holds jobs).
  void enforce_retention();
  OncePerTurn retention_turn_{io_, [this] { enforce_retention(); }};
  static constexpr size_t kOpsPerTurn = 8;
  void commit_op(KvsOp op) {
    pending_ops_.push_back(std::move(op));
    events_open_ = false;
    flush_turn_.request();
  }
  // Appends event `e` to job j's eventlog in the next commit. Events of
  // one job posted one after another in a turn go into one append: the
  // eventlog reads the same, line by line, at fewer ops.
  void commit_event(const Job& j, const EventEntry& e) {
    if (!events_open_ || events_job_ != j.id) {
      commit_op(KvsOp::append(kvs_key::job_eventlog(j.id), {}));
      // Room for a run of events at once (a submit's four come to about
      // 250 bytes) rather than a reallocation every line or two.
      pending_ops_.back().value.reserve(kEventsRoom);
      events_open_ = true;
      events_job_ = j.id;
    }
    append_event(pending_ops_.back().value, e);
  }
  static constexpr size_t kEventsRoom = 320;
  // Whether the last pending op appends to the eventlog of events_job_.
  bool events_open_ = false;
  JobId events_job_{};
  void after_commit(std::function<void(const Error*)> fn) {
    after_commit_.push_back(std::move(fn));
    flush_turn_.request();
  }
  void flush();

  // --- dependencies (depend.cpp) ---
  // Jobs in DEPEND waiting on a dependency, checked again in the loop turn
  // after any job enters RUN, leaves DEPEND or ends.
  std::set<JobId> depend_waiting_;
  OncePerTurn depend_turn_{io_, [this] { recheck_dependencies(); }};
  // Posts the dependency events a job in DEPEND calls for; true while it
  // must wait (or once a dependency that can never be met ended it).
  bool wait_on_dependencies(Job& j);
  DependencyCheck check_one(const Job& j, const Dependency& d) const;
  void recheck_dependencies();
  // During recheck_dependencies(): the cc_limit groups (user, group) found
  // full. No slot frees within the pass, and later members count every
  // job an earlier one counts, so they wait too without a look at every
  // job (a --cc=1-10000%5 set would otherwise cost its size squared at
  // each end).
  std::set<std::pair<uint32_t, JobId>> cc_full_;
  bool rechecking_ = false;
  // Whether the sender of `m` may make a job depend on `id`.
  Status may_depend_on(const Message& m, JobId id) const;

  // --- job steps (steps.cpp) ---
  // Each allocation's resources as its steps share them, built when first
  // needed (after a restart, from what its steps hold).
  std::map<JobId, StepSpace> step_spaces_;
  // Allocations whose steps gave something back or ended this turn.
  std::set<JobId> steps_changed_;
  OncePerTurn steps_turn_{io_, [this] { steps_changed(); }};
  // Whether the sender of `m` may place `spec` in the allocation it names.
  Status check_step(const Message& m, const Jobspec& spec, const std::vector<Dependency>& deps);
  Job* allocation_of(const Job& step);
  StepSpace& space_of(Job& allocation);
  // A step in SCHED: placed in its allocation if there is room.
  void place_step(Job& step);
  // Like send_free, for a step: back to its allocation.
  void free_step(Job& step, const ResourceSet& r, bool final);
  // The step holds nothing of its allocation any more.
  void step_gone(Job& step);
  // Cancels the allocation's steps that are still active; true while some
  // still hold resources (the allocation waits for them).
  bool end_steps(Job& allocation);
  void steps_changed();
  // A pending step's urgency changed: the steps behind it may go now.
  void step_held_or_released(Job& step);

  // --- scheduler ---
  void send_alloc(Job& j);
  void send_free(Job& j, const ResourceSet& r, bool final);
  void sched_gone(const std::string& why);
  void on_alloc_response(const Message& m);
  Job* alloc_answered(JobId id);
  void give_back(JobId id, const ResourceSet& R);
  void on_granted(Job& j, ResourceSet R);
  // Job j holds R (the scheduler's grant, or a step's place): R is stored
  // in the commit of its alloc event, and the job goes on.
  void allocated(Job& j, ResourceSet R);
  void offer_pending();

  // --- execution service ---
  void exec_hello(const Message& m);
  void exec_teardown(const std::string& why);
  void send_start(Job& j);
  void on_start_response(const Message& m);
  // The job a response of the execution service is about, if it has a
  // start outstanding (else the response is logged and ignored).
  Job* started_job(const Message& m, uint64_t id);
  // Each response of the execution protocol (exec_protocol.h), in the
  // job's eventlog.
  void on_exec(Job& j, const exec_protocol::Started&);
  void on_exec(Job& j, const exec_protocol::Reattached&);
  void on_exec(Job& j, const exec_protocol::Raised& e);
  void on_exec(Job& j, const exec_protocol::Finished& f);
  void on_exec(Job& j, const exec_protocol::Released& r);
  void exec_violation(Job& j, const std::string& why);
  void on_disconnect(const Message& m);
  // The jobs `sender` submitted with cancel_on_disconnect get a cancel.
  void cancel_tied(HopId sender, const std::string& why);
  // broker.lost: the clients that came through the rank are gone (no
  // disconnect will come from it), and so is an allocation's rank the
  // execution service already let go of (no task of its script there).
  void on_rank_lost(const Message& ev);

  // Responses without a matchtag (sched.alloc, sched.free, NAME.start)
  // are obeyed only from the instance's own services: a user's forged
  // answer is dropped and counted (the first, then every 1,000th, logged).
  bool from_own_service(const Message& r);
  uint64_t foreign_responses_ = 0;

  // --- requests ---
  // The job `p` names, if the sender may touch it (msg/access.h): ENOENT
  // only for a job that does not exist, EPERM for another user's.
  Result<Job*> find_job(const Message& m, const Json& p, bool must_be_active);
  SubmitRules submit_rules() const { return {cfg_.jobspec_size_limit, cfg_.allow_guest_test}; }
  void submit(const Message& m);
  void submit_checked(const Message& m, std::vector<Submitted> jobs, bool tie);
  // Jobs submitted with cancel_on_disconnect, by the client that did: its
  // disconnect cancels those still active.
  std::map<HopId, std::vector<JobId>> tied_;
  // Tied submissions still waiting for sched.feasibility, by client, and
  // the clients among those that went away meanwhile, with why: their jobs
  // are cancelled as soon as they are recorded (a disconnect that came
  // first found nothing in tied_ to cancel).
  std::map<HopId, uint32_t> tie_checks_;
  std::map<HopId, std::string> tie_gone_;
  // The client went away (its disconnect, or the loss of its rank, `why`):
  // its tied jobs are cancelled, now or once its checks end.
  void tie_client_gone(HopId sender, const std::string& why);
  void end_tie_check(HopId sender);
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

  // --- the journal (journal.cpp) ---
  struct JournalEntry {
    JobId id;
    uint32_t userid;
    Json event;  // {timestamp, name, context}; null when only the job changed
  };
  // The open journals, by (sender, matchtag): the request to answer.
  using Journals = std::map<std::pair<HopId, uint32_t>, Message>;
  Journals journals_;
  std::pair<Journals::iterator, Journals::iterator> client_journals(HopId sender);
  std::vector<JournalEntry> journal_pending_;
  OncePerTurn journal_turn_{io_, [this] { journal_flush(); }};
  void journal_open(const Message& m);
  void journal_cancel(const Message& m);
  void journal_disconnect(HopId sender);
  void journal_rank_lost(uint32_t rank);
  // Job `j` had event `e` (null: it changed otherwise); sent to the
  // journals at the end of the loop turn.
  void journal_note(const Job& j, const EventEntry* e);
  void journal_flush();

  Json describe(const Job& j) const;
  bool has_active() const;
  void check_drain();
};

}  // namespace loom
