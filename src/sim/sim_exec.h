// The simulated execution service (docs/simulator.md): an execution
// service that runs nothing, in virtual time. It speaks only the execution
// protocol, through messages (docs/protocols/exec.md): it says
// `job-manager.exec-hello` and takes over from job-exec while the instance
// is idle, answers each start with `start` at once, and at start + run
// time (attributes.system.exec.test.run_duration) with `finish`, then the
// final release of every rank, or with an epilog, each rank's `release`
// once its epilog has run, the last one final. A job
// that runs longer than its time limit (R's expiration) gets the `timeout`
// exception at its limit, as in real execution; a fatal exception (a
// cancel) ends a running job at once, as SIGTERM would.
//
// It records each job's start and end for the simulation's report.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "exec_protocol/exec_protocol.h"
#include "msg/handle.h"
#include "rset/rset.h"

namespace loom::sim {

// What the simulated execution service saw of one job.
struct ExecRecord {
  uint64_t id = 0;    // the job's
  double start = -1;  // virtual seconds (Clock::now)
  double end = -1;    // when its finish was sent
  std::string cores;  // the cores of R, numbered across nodes (rank * cores_per_node + core)
  bool timeout = false;
  int status = 0;
};

class SimExec {
 public:
  // Serves as `name` on `h`; `cores_per_node` numbers the cores of R.
  SimExec(Handle& h, std::string name, uint32_t cores_per_node, double epilog);
  ~SimExec();
  SimExec(const SimExec&) = delete;
  SimExec& operator=(const SimExec&) = delete;

  // Says hello; `done` gets the error text, empty once registered.
  void hello(std::function<void(const std::string& error)> done);
  // Every job started so far, in the order they started; jobs stay here
  // once ended.
  const std::deque<ExecRecord>& records() const { return records_; }
  // Jobs whose final release was sent.
  size_t ended() const { return ended_; }
  // Jobs started and not yet released.
  size_t running() const { return runs_.size(); }

 private:
  struct Run;
  void start(const Message& m);
  // R is nullptr if the start's R could not be read (R_error says why).
  void start(const Message& m, const exec_protocol::StartRequest& head, const ResourceSet* R,
             const std::string& R_error, const Json& spec);
  void finish(uint64_t id);
  void release(uint64_t id);

  Handle& h_;
  std::string name_;
  uint32_t cores_per_node_;
  double epilog_;
  // Hashed: a start and its end each find their own run.
  std::unordered_map<uint64_t, std::unique_ptr<Run>> runs_;
  // Added at the end, where the memory of the last added is (a record is
  // kept until the simulation's end, and found again through its run).
  std::deque<ExecRecord> records_;
  size_t ended_ = 0;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // tells event callbacks this still exists
};

}  // namespace loom::sim
