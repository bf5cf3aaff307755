// One simulation (docs/simulator.md): a workload replayed through the
// production kvs, job-manager, sched and job-exec services, in one process
// on one loop, in virtual time, with the simulated execution service
// (sim_exec.h) running the jobs. The simulated cluster's nodes exist only
// in the scheduler's inventory.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/result.h"
#include "sim/report.h"
#include "trace/trace.h"

namespace loom::sim {

struct SimConfig {
  std::string policy = "fcfs";  // sched.policy
  uint32_t nodes = 0;           // 0: the trace's MaxProcs nodes of cores_per_node... (see Simulate)
  uint32_t cores_per_node = 1;
  double epilog = 0;      // seconds of every rank's epilog after a job's end
  std::string state_dir;  // where the KVS keeps its store; empty: nothing kept
  // Called now and then (every few thousand jobs): virtual seconds since
  // the trace's start, jobs ended, jobs in all.
  std::function<void(double now, size_t ended, size_t total)> progress;
};

struct SimResult {
  std::vector<JobResult> jobs;  // in the workload's order
  double wall_seconds = 0;      // the simulation's own time
  size_t refused = 0;           // jobs refused at submit (larger than the machine, say)
  std::string first_refusal;    // why the first of them was refused
  size_t never_started = 0;     // jobs accepted that never ran (nothing was left to free what they need)
};

// Nodes for a workload by default: enough of `cores_per_node` for its
// MaxProcs.
uint32_t default_nodes(const trace::Workload& w, uint32_t cores_per_node);

// Replays `w`; an error is one line (a machine or a trace beyond what a
// simulation holds, a state directory in use, a service that cannot
// start).
Result<SimResult> simulate(const trace::Workload& w, const SimConfig& cfg);

}  // namespace loom::sim
