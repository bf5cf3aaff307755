// Jobs per second end to end, as Flux's throughput.py measures it: submit
// --jobs jobs (batches of --batch, all in flight), from the first submit
// sent to the last job's `clean` stored (job-manager.queue-drain answers
// once it is). Every job is durable at every step. Then the latency of one
// job at a time, submit to stored `clean` (job-manager.wait), --latency
// times.
//
//   loom start --test-size=1 -- throughput --jobs 10000
//
// With --exec=test (the default) jobs run in test execution mode
// (attributes.system.exec.test, run_duration 0): everything but the
// processes. With --exec=real each runs /bin/true through loom-shell on its
// rank. Each asks --nodes nodes (0: one core anywhere).
//
// --baseline N first measures what the machine can do without loom: N
// spawns of /bin/true, and of `sh -c /bin/true` (a shell plus a task, the
// physical limit of real execution), two at a time (one per core).
// --run-latency N times N `loom run true` commands, one after the other.
#include <spawn.h>
#include <sys/wait.h>

#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "base/clock.h"
#include "common.h"
#include "jobs.h"
#include "msg/client.h"

extern char** environ;

using loom::bench::now;

namespace {

// Spawns argv `n` times, `width` at a time; returns spawns per second.
double spawn_rate(const std::vector<std::string>& argv, int n, int width) {
  std::vector<char*> av;
  for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
  av.push_back(nullptr);
  double t0 = now();
  int running = 0, started = 0;
  while (started < n || running > 0) {
    while (running < width && started < n) {
      pid_t pid;
      if (posix_spawn(&pid, av[0], nullptr, nullptr, av.data(), environ) != 0) {
        std::perror("posix_spawn");
        std::exit(1);
      }
      ++running;
      ++started;
    }
    int st;
    if (::wait(&st) > 0) --running;
  }
  return n / (now() - t0);
}

// The directory of this executable (found through PATH or not).
std::string self_dir(const char* argv0) {
  std::error_code ec;
  std::string p = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) p = argv0;
  auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"throughput: jobs per second from first submit to last clean, and one job's latency"};
  int jobs = 10000;
  int batch = 1000;
  int nodes = 0;
  int latency = 200;
  std::string exec = "test";
  int baseline = 0;
  int run_latency = 0;
  app.add_option("--jobs", jobs, "Jobs to run")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "Jobs per submit request")->check(CLI::PositiveNumber);
  app.add_option("--nodes", nodes, "Nodes per job (0: one core anywhere)")->check(CLI::NonNegativeNumber);
  app.add_option("--latency", latency, "Single jobs timed one after the other")->check(CLI::NonNegativeNumber);
  app.add_option("--exec", exec, "test (no processes) or real (/bin/true through loom-shell)")
      ->check(CLI::IsMember({"test", "real"}));
  app.add_option("--baseline", baseline, "Spawns of /bin/true and sh -c /bin/true to time first")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--run-latency", run_latency, "`loom run true` commands to time")->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  if (baseline > 0) {
    std::printf("baseline: /bin/true %.0f spawns/s; sh -c /bin/true %.0f spawns/s (2 at a time)\n",
                spawn_rate({"/bin/true"}, baseline, 2), spawn_rate({"/bin/sh", "-c", "/bin/true"}, baseline, 2));
  }
  const char* uri = loom::bench::instance_uri("throughput");
  if (!uri) return 2;
  asio::io_context io;
  auto clock = loom::make_real_clock(io);
  auto c = loom::Client::connect(io, *clock, uri);
  if (!c.ok()) {
    std::fprintf(stderr, "throughput: %s\n", c.error().text.c_str());
    return 1;
  }
  loom::Client& client = **c;
  auto call = [&](const std::string& topic, const loom::Json& payload) {
    return loom::bench::call_or_exit("throughput", client, topic, payload);
  };
  loom::Json all = call("sched.resource-status", loom::Json::object())["all"];

  loom::Json one{{"jobspec", loom::bench::true_jobspec(nodes, exec == "real")}};
  double t0 = now();
  size_t submitted = loom::bench::submit_copies("throughput", io, client, one, jobs, batch).size();
  double t_submitted = now() - t0;
  call("job-manager.queue-drain", loom::Json::object());
  double t_all = now() - t0;
  loom::Json stats = call("job-manager.stats", loom::Json::object());
  std::printf(
      "throughput: %d jobs in %.3f s = %.0f jobs/s, first submit to last clean (submitted in %.3f s); "
      "%s nodes per job on %d ranks, %s execution\n",
      jobs, t_all, jobs / t_all, t_submitted, nodes ? std::to_string(nodes).c_str() : "no", all.value("nnodes", 0),
      exec.c_str());
  if (submitted != static_cast<size_t>(jobs) || stats["states"].value("INACTIVE", 0) < jobs) {
    std::fprintf(stderr, "throughput: %zu jobs were accepted, %d are inactive\n", submitted,
                 stats["states"].value("INACTIVE", 0));
    return 1;
  }

  std::vector<double> lat;
  for (int i = 0; i < latency; ++i) {
    double t = now();
    loom::Json ids = call("job-manager.submit", loom::Json{{"jobs", {one}}})["ids"];
    loom::Json result = call("job-manager.wait", loom::Json{{"id", ids[0]}});
    lat.push_back(now() - t);
    if (result.value("result", "") != "COMPLETED") {
      std::fprintf(stderr, "throughput: a job ended %s: %s\n", result.value("result", "?").c_str(),
                   result.dump().c_str());
      return 1;
    }
  }
  if (!lat.empty()) {
    std::printf("latency: one job, submit to stored clean: p50 %.2f ms, p99 %.2f ms (%d jobs)\n",
                loom::bench::percentile(lat, 0.5) * 1e3, loom::bench::percentile(lat, 0.99) * 1e3, latency);
  }
  if (run_latency > 0) {
    std::string loom = self_dir(argv[0]) + "/loom";
    std::vector<double> rl;
    for (int i = 0; i < run_latency; ++i) {
      double t = now();
      std::vector<std::string> args = {loom, "run", "true"};
      if (exec == "test") args.insert(args.begin() + 2, "--setattr=exec.test.run_duration=0");
      std::vector<char*> av;
      for (auto& a : args) av.push_back(a.data());
      av.push_back(nullptr);
      pid_t pid;
      if (posix_spawn(&pid, av[0], nullptr, nullptr, av.data(), environ) != 0) {
        std::perror("posix_spawn loom");
        return 1;
      }
      int st = 0;
      ::waitpid(pid, &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        std::fprintf(stderr, "throughput: loom run true failed\n");
        return 1;
      }
      rl.push_back(now() - t);
    }
    std::printf("loom run true: p50 %.2f ms, p99 %.2f ms (%d runs, %s execution)\n",
                loom::bench::percentile(rl, 0.5) * 1e3, loom::bench::percentile(rl, 0.99) * 1e3, run_latency,
                exec.c_str());
  }
  return 0;
}
