// The job manager and scheduler under load: submissions per second, jobs
// allocated per second with many pending, and rank 0's resident memory
// once they are all inactive.
//
//   loom start --test-size=1 --cores-per-rank=10000 [--setconf sched.policy=easy] -- job_bench --jobs 10000
//
// submit: --jobs one-core jobs in job-manager.submit batches of --batch,
//   all batches in flight at once (what `loom submit --cc` does); the
//   rate counts from the first request to the last durable answer.
//   Scheduling is stopped meanwhile, so every job waits in SCHED.
// schedule: `queue start`, then the time until the last job's `alloc`
//   (jobs are allocated in submit order, so it is the last one).
// memory: every job cancelled and clean, then rank 0's VmRSS one second
//   later (steady state).
// Jobs run in test execution mode and wait for an override that never
// comes, so each holds its core until it is cancelled.
#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "common.h"
#include "jobs.h"
#include "msg/client.h"

using loom::bench::now;

namespace {

loom::Json jobspec(int duration) {
  return {{"version", 1},
          {"resources",
           {{{"type", "slot"}, {"count", 1}, {"label", "task"}, {"with", {{{"type", "core"}, {"count", 1}}}}}}},
          {"tasks", {{{"command", {"true"}}, {"slot", "task"}, {"count", {{"per_slot", 1}}}}}},
          // Test execution, held until cancelled: the job keeps its core.
          {"attributes",
           {{"system", {{"duration", duration}, {"cwd", "/tmp"}, {"exec", {{"test", {{"override", true}}}}}}}}}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"job_bench: submit and scheduling rates, memory of inactive jobs"};
  int jobs = 10000;
  int batch = 1000;
  int duration = 0;
  app.add_option("--jobs", jobs, "Jobs to submit")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "Jobs per submit request")->check(CLI::PositiveNumber);
  app.add_option("--duration", duration, "Each job's duration in seconds (EASY uses it)");
  CLI11_PARSE(app, argc, argv);
  const char* uri = loom::bench::instance_uri("job_bench");
  if (!uri) return 2;
  asio::io_context io;
  auto clock = loom::make_real_clock(io);
  auto c = loom::Client::connect(io, *clock, uri);
  if (!c.ok()) {
    std::fprintf(stderr, "job_bench: %s\n", c.error().text.c_str());
    return 1;
  }
  loom::Client& client = **c;
  auto call = [&](const std::string& topic, const loom::Json& payload) {
    return loom::bench::call_or_exit("job_bench", client, topic, payload);
  };
  loom::Json info = call("broker.info", loom::Json::object());
  int pid = info.value("pid", -1);
  long rss_start = loom::bench::rss_kb(pid);

  // Every job must be able to run at once, or the last alloc never comes.
  loom::Json all = call("sched.resource-status", loom::Json::object())["all"];
  if (all.value("ncores", 0) < jobs) {
    std::fprintf(stderr,
                 "job_bench: the instance has %d cores for %d one-core jobs; start it with --cores-per-rank=%d\n",
                 all.value("ncores", 0), jobs, jobs);
    return 2;
  }
  call("job-manager.queue-control", {{"action", "stop"}});
  loom::Json one{{"jobspec", jobspec(duration)}};
  double t0 = now();
  std::vector<uint64_t> ids = loom::bench::submit_copies("job_bench", io, client, one, jobs, batch);
  double t_submit = now() - t0;
  std::printf("submit: %d jobs in %.3f s = %.0f jobs/s (batches of %d)\n", jobs, t_submit, jobs / t_submit, batch);

  uint64_t last = *std::max_element(ids.begin(), ids.end());
  bool allocated = false;
  client.handle().rpc("job-info.eventlog", loom::Json{{"id", last}, {"follow", true}}, {loom::kNodeAny, true, 0},
                      [&](const loom::Message& m) {
                        if (m.errnum) return;
                        auto j = loom::parse_json(m.payload);
                        if (j.ok() && (*j)["event"]["name"] == "alloc") allocated = true;
                      });
  double t1 = now();
  call("job-manager.queue-control", {{"action", "start"}});
  while (!allocated && client.is_open()) io.run_one();
  double t_sched = now() - t1;
  loom::Json res = call("sched.resource-status", loom::Json::object());
  std::printf("schedule: %d jobs allocated in %.3f s = %.0f jobs/s (policy %s)\n", jobs, t_sched, jobs / t_sched,
              res.value("policy", "?").c_str());

  call("job-manager.cancel", {{"all", true}});
  call("job-manager.queue-drain", loom::Json::object());
  // Steady state: the broker gives the burst's free pages back half a
  // second after the last job ends.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  long rss_end = loom::bench::rss_kb(pid);
  std::printf("memory: rank 0 VmRSS %.1f MB with %d inactive jobs (%.1f MB at the start)\n", rss_end / 1024.0, jobs,
              rss_start / 1024.0);
  loom::Json stats = call("job-manager.stats", loom::Json::object());
  if (stats["states"]["INACTIVE"].get<int>() < jobs) {
    std::fprintf(stderr, "job_bench: only %d jobs are inactive\n", stats["states"]["INACTIVE"].get<int>());
    return 1;
  }
  return 0;
}
