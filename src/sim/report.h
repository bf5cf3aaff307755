// The report of a simulation (docs/simulator.md, "Reports"): what `loom sim`
// prints and writes once the trace has run. Pure functions of the jobs'
// results: they send no messages, read no clock and touch no file, so every
// figure is tested by hand (report_test.cpp).
//
//   summarize()      one policy's figures: jobs, makespan, utilization, waits,
//                    average bounded slowdown, the simulation's own speed
//   summary_table()  those figures for people, one column per policy
//   report_json()    those figures for programs (`--report FILE.json`)
//   jobs_csv()       one row per job in Batsim's `_jobs.csv` columns (`--jobs`)
//   plot_svg()       utilization over time and the wait-time distribution,
//                    one curve per policy (`--plot FILE.svg`)
//
// Definitions (times in seconds; a job "ran" when start >= 0 and end >= start):
//   wait               start − submit
//   run                end − start
//   bounded slowdown   max(1, (wait + run) / max(run, τ)), τ = 10 s (Feitelson's
//                      bounded slowdown, as in the traces' published results)
//   averages           over the jobs that ran; jobs that never started (refused,
//                      cancelled while pending) count in `jobs` only
//   percentiles        nearest rank: the p-th percentile of n sorted values is
//                      the value of rank ⌈p/100 · n⌉ (1-based); 0 when n = 0
//   makespan           last end − first submit: from the first job's arrival to
//                      the last job's completion. Batsim reports its last
//                      completion time, counted from its time 0; the two agree
//                      when the first job arrives at time 0 (as in SWF logs and
//                      Batsim workloads) and ours does not depend on the epoch.
//   utilization        Σ cores · run / (total_cores · makespan), a fraction in
//                      [0, 1] (epilogs after a job's end are not counted)
//   jobs_per_second    jobs / wall_seconds (0 when wall_seconds <= 0)
//
// Output is deterministic: identical input gives identical bytes. Numbers are
// written with std::to_chars (no locale) or nlohmann-json's own formatter for
// the JSON (whole numbers as "125.0"), no clock is read, and nothing
// iterates in an order that depends on addresses. `wall_seconds` and
// `jobs_per_second` measure the run itself and so differ between two runs of
// the same trace; a byte-for-byte comparison passes the same wall time to both.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace loom::sim {

// The bounded slowdown's threshold τ, seconds.
inline constexpr double kBoundedSlowdownTau = 10;

// One job's life in a simulation. Times are seconds since the trace's start.
struct JobResult {
  int64_t id = 0;
  double submit = 0;
  double start = -1;  // < 0: never started (refused, cancelled while pending)
  double end = -1;
  int64_t cores = 0;           // requested number of resources (cores)
  double requested_time = 0;   // the time limit, s (0 or less: none)
  std::string allocated = {};  // the cores it ran on, as an idset text: "0-3,7"
  bool timeout = false;        // killed at its time limit
  int status = 0;              // wait status (0: success)

  bool ran() const { return start >= 0 && end >= start; }
};

struct Summary {
  size_t jobs = 0;         // all jobs given, whether they ran or not
  size_t not_started = 0;  // of these, the ones that never ran
  double makespan = 0;
  double utilization = 0;
  double avg_wait = 0;
  double p50_wait = 0;
  double p95_wait = 0;
  double avg_bounded_slowdown = 0;
  double wall_seconds = 0;
  double jobs_per_second = 0;
};

// One policy's figures, by the definitions above. total_cores <= 0 gives a
// utilization of 0; an empty list gives all zeros.
Summary summarize(const std::vector<JobResult>& jobs, int64_t total_cores, double wall_seconds);

// A nearest-rank percentile (0 < p <= 100) of `values`, which it sorts; 0 when
// empty. Exposed for the tests.
double percentile_nearest_rank(std::vector<double>& values, double p);

using PolicySummaries = std::vector<std::pair<std::string, Summary>>;

// A plain-text table, one row per figure and one column per policy in the
// order given, right-aligned, ending in a newline. A "not started" row
// appears only when some policy has jobs that never ran.
std::string summary_table(const PolicySummaries& by_policy);

// JSON, pretty-printed, ending in a newline. One policy: an object with the
// keys jobs, makespan, utilization, avg_wait, p50_wait, p95_wait,
// avg_bounded_slowdown, wall_seconds, jobs_per_second in that order. Several:
// {"policies": {NAME: {...}, ...}} with the policies in the order given.
std::string report_json(const PolicySummaries& by_policy);

// Batsim's `_jobs.csv` (its JobsTracer's header, in its order): job_id,
// workload_name, profile, submission_time, requested_number_of_resources,
// requested_time, success, final_state, starting_time, execution_time,
// finish_time, waiting_time, turnaround_time, stretch, allocated_resources,
// consumed_energy, metadata. One row per job in the order given. As Batsim
// writes them: final_state is COMPLETED_SUCCESSFULLY, COMPLETED_FAILED
// (status != 0), COMPLETED_WALLTIME_REACHED (timeout) or REJECTED (never ran:
// its time columns are empty); success is 1 only for COMPLETED_SUCCESSFULLY;
// allocated_resources separates ranges with spaces ("0-3 7"); profile is
// empty, consumed_energy -1 (no energy model) and metadata "".
std::string jobs_csv(const std::vector<JobResult>& jobs, const std::string& workload_name = "w0");

using PolicyJobs = std::vector<std::pair<std::string, std::vector<JobResult>>>;

// An SVG document of two panels, one curve per policy, with a legend:
//  - utilization over time: cores busy / total_cores as a step curve over the
//    span from the first submit to the last end of all policies; when the
//    jobs' starts and ends number more than kMaxUtilizationPoints, each of
//    kUtilizationBuckets equal slices of that span shows its exact
//    time-averaged utilization instead;
//  - the wait-time distribution: the fraction of the jobs that ran whose wait
//    is at most x, on a log x axis sampled at kCdfPoints points; waits under
//    1 s are drawn at 1 s.
inline constexpr size_t kMaxUtilizationPoints = 2000;
inline constexpr size_t kUtilizationBuckets = 1000;
inline constexpr size_t kCdfPoints = 200;
std::string plot_svg(const PolicyJobs& by_policy, int64_t total_cores);

}  // namespace loom::sim
