// job-exec's executors (docs/protocols/exec.md, "Inside job-exec"): what
// does the work of a started job. The service (job_exec.cpp) keeps the
// protocol and the bookkeeping: it reads each start, keeps one Run per job,
// sends every response and follows the job manager's events; an executor
// runs its jobs and answers through the Service. The test executor
// (test_executor.cpp) serves jobspecs with attributes.system.exec.test and
// runs nothing; the shell executor (shell_executor.h) runs a loom-shell on
// every rank. Another executor is one more subclass of Executor and Run,
// and one more line in the service's list.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "exec_protocol/exec_protocol.h"
#include "idset/idset.h"
#include "msg/handle.h"
#include "msg/json.h"
#include "rset/rset.h"

namespace loom {

struct JobExecConfig;

namespace job_exec {

using exec_protocol::ExceptionType;
using exec_protocol::Finished;
using exec_protocol::Raised;
using exec_protocol::Reattached;
using exec_protocol::Released;
using exec_protocol::Response;
using exec_protocol::Severity;
using exec_protocol::Started;

class Executor;

// One job job-exec was asked to start, from the start to its final
// release. Each executor keeps its own state in a subclass.
struct Run {
  virtual ~Run() = default;
  Message req;  // the start request; every response answers it
  uint64_t id = 0;
  uint64_t serial = 0;          // tells this run from an earlier one of the same job
  std::vector<uint32_t> ranks;  // R's ranks, in order
  Executor* executor = nullptr;
  // What the job's stream has said, kept by Service::respond (and, after a
  // restart, what it had said before): `start` or `reattached`, `finish`,
  // a fatal exception (ours, or the job manager's job-exception event).
  bool started = false;
  bool finished = false;
  bool fatal = false;
};

// A start request as the service read it.
struct StartInfo {
  Message req;
  exec_protocol::StartRequest head;  // id, userid, reattach, started
  const Json& jobspec;               // an object
  const Json& R_json;
  const ResourceSet& R;
  double duration = 0;  // attributes.system.duration in seconds, 0 if none
};

// The service as its executors see it: the protocol's side of every run.
class Service {
 public:
  virtual ~Service() = default;
  virtual Handle& handle() = 0;
  virtual const JobExecConfig& config() const = 0;
  // Tells a callback whether the service still exists.
  virtual std::weak_ptr<int> alive() const = 0;
  // The instance is stopping: new work is refused.
  virtual bool stopping() const = 0;
  // Takes `r` (its id, req and ranks filled in) as the current run of its
  // job and gives it its serial.
  virtual Run& add(std::unique_ptr<Run> r) = 0;
  // The current run of job `id`, if any.
  virtual Run* find(uint64_t id) = 0;
  // The run of job `id` that `serial` belongs to, if it is still the current one.
  virtual Run* current(uint64_t id, uint64_t serial) = 0;
  // A response on `r`'s stream, anything but the final release. It is
  // delivered from the loop (the broker posts to its services), never
  // inside this call: an executor may go on with `r` after it.
  virtual void respond(Run& r, const Response& resp) = 0;
  // A fatal exception, unless the job has had one.
  virtual void raise(Run& r, ExceptionType type, const std::string& note) = 0;
  // The final release: the stream ends and `r` is gone.
  virtual void end(Run& r, const Released& last) = 0;
  // A start refused before anything ran: a fatal `exec` exception, then
  // the final release of `ranks` (none: all).
  virtual void refuse(const Message& req, uint64_t id, const std::string& note, std::optional<IdSet> ranks) = 0;
};

class Executor {
 public:
  virtual ~Executor() = default;
  // Whether this executor runs the job (the service asks its executors in
  // order; the last one takes whatever the others did not).
  virtual bool claims(const Json& jobspec) const = 0;
  // Starts the job (or, with head.reattach, takes it back after a
  // restart): refuses it through the Service, or adds a run and answers
  // on it.
  virtual void start(const StartInfo& s) = 0;
  // job-exec.kill on a started job: `sig` to its tasks, nothing more.
  virtual void signal(Run& r, int sig) = 0;
  // The job has had a fatal exception (r.fatal): its tasks are killed and
  // its stream ends.
  virtual void cancel(Run& r) = 0;
  // The instance is stopping: the job fails (unless it has its result)
  // and its stream ends.
  virtual void shutdown(Run& r) = 0;
  // The job manager dropped the stream: nothing of the job may keep
  // running; the service forgets the run right after.
  virtual void abandon(Run& r) = 0;
  // A broker came (back) online.
  virtual void online(Run& /*r*/, uint32_t /*rank*/) {}
};

}  // namespace job_exec
}  // namespace loom
