// loom sim: replay a workload trace through loom's own job manager and
// scheduler in virtual time (docs/simulator.md).
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/common.h"
#include "cli/progress.h"
#include "sched/sched.h"
#include "sim/report.h"
#include "sim/simulation.h"
#include "trace/trace.h"

namespace loom::cli {
namespace {

struct SimOpts {
  std::string trace;
  std::string policies = "fcfs";
  uint32_t nodes = 0;
  uint32_t cores_per_node = 1;
  std::string filter = "none";
  double epilog = 0;
  std::string report, jobs, plot, state_dir;
  size_t limit = 0;
};

// `path` for policy `policy` when several are run: "out.csv" → "out-easy.csv".
std::string per_policy(std::string path, const std::string& policy, bool several) {
  if (!several) return path;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  auto slash = path.find_last_of('/');
  auto dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return path + "-" + policy;
  return path.substr(0, dot) + "-" + policy + path.substr(dot);
}

Status write_file(const std::string& path, const std::string& text) {
  errno = 0;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return Error{EIO, "cannot write " + path + (errno ? std::string(": ") + std::strerror(errno) : "")};
  f << text;
  f.close();
  if (!f) return Error{EIO, "cannot write " + path};
  return {};
}

// The progress line's extra: the simulated date.
std::string sim_date(double epoch, double now) {
  std::time_t t = static_cast<std::time_t>(epoch + now);
  char date[32];
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M", &tm);
  return date;
}

int run_sim(const SimOpts& o) {
  const char* cmd = "sim";
  // The services' notes (registered, ready, ...) would drown the summary.
  spdlog::set_level(spdlog::level::warn);
  std::vector<std::string> policies;
  {
    std::stringstream ss(o.policies);
    std::string p;
    while (std::getline(ss, p, ',')) {
      SchedConfig c;
      c.policy = p;
      if (auto v = validate_sched_config(c); !v.ok()) return fail(cmd, "--policy: " + v.error().text, kExitUsage);
      for (const auto& seen : policies) {
        if (seen == p) return fail(cmd, "--policy: " + p + " is given twice", kExitUsage);
      }
      policies.push_back(p);
    }
    if (policies.empty()) return fail(cmd, "--policy: no policy given", kExitUsage);
  }
  if (o.cores_per_node == 0) return fail(cmd, "--cores-per-node must be at least 1", kExitUsage);
  if (!std::isfinite(o.epilog) || o.epilog < 0) {
    return fail(cmd, "--epilog must be a number of seconds >= 0", kExitUsage);
  }
  auto filter = trace::parse_filter(o.filter);
  if (!filter) return fail(cmd, "--filter must be none or strong, not " + o.filter, kExitUsage);
  auto w = trace::read_trace(o.trace, *filter);
  if (!w.ok()) return fail(cmd, w.error());
  size_t kept = w->jobs.size();
  if (o.limit > 0 && w->jobs.size() > o.limit) w->jobs.resize(o.limit);
  if (w->jobs.empty()) return fail(cmd, o.trace + ": no job to simulate");
  uint32_t nodes = o.nodes ? o.nodes : sim::default_nodes(*w, o.cores_per_node);
  int64_t total_cores = int64_t{nodes} * o.cores_per_node;
  std::printf("%s: %s\n", o.trace.c_str(), w->summary.c_str());
  if (w->jobs.size() < kept) std::printf("simulating the first %zu of them (--limit)\n", w->jobs.size());
  std::printf("machine: %u node%s of %u core%s (%lld cores)%s\n", nodes, nodes == 1 ? "" : "s", o.cores_per_node,
              o.cores_per_node == 1 ? "" : "s", static_cast<long long>(total_cores),
              o.epilog > 0 ? (", epilog " + std::to_string(o.epilog) + " s").c_str() : "");
  std::fflush(stdout);
  bool several = policies.size() > 1;
  // Every file is made now, so that one that cannot be written fails
  // before the simulation rather than after it.
  std::vector<std::string> outputs{o.report, o.plot};
  for (const auto& p : policies) outputs.push_back(o.jobs.empty() ? "" : per_policy(o.jobs, p, several));
  for (const auto& path : outputs) {
    if (path.empty()) continue;
    if (auto st = write_file(path, ""); !st) return fail(cmd, st.error());
  }
  sim::PolicySummaries summaries;
  sim::PolicyJobs all_jobs;
  int status = 0;
  for (const auto& policy : policies) {
    sim::SimConfig cfg;
    cfg.policy = policy;
    cfg.nodes = nodes;
    cfg.cores_per_node = o.cores_per_node;
    cfg.epilog = o.epilog;
    if (!o.state_dir.empty()) cfg.state_dir = per_policy(o.state_dir, policy, several);
    char label[16];
    std::snprintf(label, sizeof label, "%-9s", policy.c_str());
    ProgressLine progress(label);
    double epoch = static_cast<double>(w->header.unix_start_time.value_or(0));
    cfg.progress = [&](double now, size_t ended, size_t total) {
      if (progress.on()) progress.show(ended, total, sim_date(epoch, now));
    };
    auto r = sim::simulate(*w, cfg);
    if (!r.ok()) return fail(cmd, policy + ": " + r.error().text);
    if (r->refused > 0) {
      // (The machine is smaller than the trace's jobs, say: --nodes.)
      fail(cmd, policy + ": " + std::to_string(r->refused) + (r->refused == 1 ? " job" : " jobs") +
                    " refused at submit (the first: " + r->first_refusal + ")");
      status = 1;
    }
    if (r->never_started > 0) {
      fail(cmd, policy + ": " + std::to_string(r->never_started) + (r->never_started == 1 ? " job" : " jobs") +
                    " never ran (nothing was left running to free what they need)");
      status = 1;
    }
    summaries.emplace_back(policy, sim::summarize(r->jobs, total_cores, r->wall_seconds));
    if (!o.jobs.empty()) {
      std::string path = per_policy(o.jobs, policy, several);
      if (auto st = write_file(path, sim::jobs_csv(r->jobs)); !st) return fail(cmd, st.error());
    }
    all_jobs.emplace_back(policy, std::move(r->jobs));
  }
  std::printf("%s", sim::summary_table(summaries).c_str());
  if (!o.report.empty()) {
    if (auto st = write_file(o.report, sim::report_json(summaries)); !st) return fail(cmd, st.error());
  }
  if (!o.plot.empty()) {
    if (auto st = write_file(o.plot, sim::plot_svg(all_jobs, total_cores)); !st) return fail(cmd, st.error());
  }
  return status;
}

}  // namespace

void add_sim_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<SimOpts>();
  auto* sub = app.add_subcommand(
      "sim",
      "Replay a workload trace (SWF or Batsim JSON, gzip or plain) through loom's job manager and scheduler in "
      "virtual time, and summarize each policy");
  sub->add_option("TRACE", o->trace, "The trace: a .swf, .swf.gz or Batsim .json workload")->required();
  sub->add_option("--policy", o->policies, "Scheduling policies to compare, comma-separated: fcfs, easy, easy-sjbf")
      ->capture_default_str();
  sub->add_option("--nodes", o->nodes, "Nodes of the simulated machine (default: enough for the trace's MaxProcs)");
  sub->add_option("--cores-per-node", o->cores_per_node, "Cores of each node; a job's processors are cores")
      ->capture_default_str();
  sub->add_option("--filter", o->filter, "none, or strong: the strong filter of the published KTH-SP2 results")
      ->capture_default_str();
  sub->add_option("--epilog", o->epilog, "Seconds of every rank's epilog after each job (partial release)");
  sub->add_option("--limit", o->limit, "Simulate only the first N jobs of the trace");
  sub->add_option("--report", o->report, "Write the summary as JSON to FILE");
  sub->add_option("--jobs", o->jobs,
                  "Write one row per job to FILE, with Batsim's _jobs.csv columns (several policies: FILE-POLICY)");
  sub->add_option("--plot", o->plot, "Draw utilization over time and the wait distribution as SVG to FILE");
  sub->add_option("--state-dir", o->state_dir, "Keep the instance's KVS store in DIR (default: nothing is kept)");
  sub->callback([o, &run] { run = [o] { return run_sim(*o); }; });
}

}  // namespace loom::cli
