// The job manager on rank 0 (docs/design.md, "Job states"; messages in
// docs/protocols/jobs.md and docs/protocols/exec.md). It accepts jobs, gives
// each a FLUID id and a durable eventlog in the KVS, and drives every job
// through its states by posting events: each event is checked by
// apply_event() (job.h), kept in memory and appended to `job.<id>.eventlog`;
// the side effects of a state (asking the scheduler for resources, giving
// them back) follow from the state and are idempotent. It talks to the KVS,
// the scheduler and the registered execution service only through messages.
//
// It also serves `job-info`, users' read access to their own jobs
// (jobspec, R, eventlog), since the primary KVS namespace is owner-only.
//
// At startup it replays every `job.<id>.eventlog` found in the KVS; a job
// whose eventlog cannot be replayed is set aside and reported by
// `job-manager.stats`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

namespace asio {
class io_context;
}

namespace loom {

class Handle;

struct JobManagerConfig {
  uint32_t owner = 0;  // the instance owner's uid
  // Whether the brokers can run jobs as their users (they run as root:
  // docs/security.md). If not, a job of anyone but the owner is refused at
  // submit, unless it runs nothing (test execution). Unset: whether this
  // process is root.
  std::optional<bool> runs_jobs_as_users;
  // Inactive jobs kept before the oldest are purged automatically
  // (0: keep them all until `loom job purge`).
  uint32_t inactive_num_limit = 0;
  // Bytes of jobspec text a submission may hold, the owner's too
  // (job-manager.jobspec-size-limit; submit_rules.h).
  size_t jobspec_size_limit = size_t{1} << 20;
  // Users other than the owner may use test execution
  // (exec.allow-guest-test).
  bool allow_guest_test = false;
  // Jobs a user other than the owner may have active at once; a submit
  // past it is refused (job-manager.max-active-jobs-per-user; 0: no limit).
  uint32_t max_active_per_user = 100'000;
};

class JobManager {
 public:
  // Starts loading the jobs from the KVS and serves `job-manager` and
  // `job-info` on `h`; requests that need the jobs wait for the load.
  static std::unique_ptr<JobManager> create(asio::io_context& io, Handle& h, JobManagerConfig cfg);
  ~JobManager();
  // For an orderly stop, first: no job is given resources any more (pending
  // jobs stay pending, to be scheduled again after a restart).
  void stop_scheduling();
  // For an orderly stop: `done` runs once no job waits on an execution
  // service's stream and every event so far is stored.
  void quiesce(std::function<void()> done);
  JobManager(const JobManager&) = delete;
  JobManager& operator=(const JobManager&) = delete;

  struct Impl;

 private:
  explicit JobManager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom
