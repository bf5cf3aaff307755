// Soak: many jobs through one instance, rank 0's memory after every round.
// With job-manager.inactive-num-limit set, inactive jobs beyond the limit
// are purged as new ones end, so once the limit is reached rank 0's memory
// must stay flat however many jobs follow.
//
//   loom start --test-size=1 --setconf job-manager.inactive-num-limit=10000
//       -- soak --jobs 1000000 --round 100000      (one command line)
//
// Each round submits --round test-execution jobs (run_duration 0) in
// batches of --batch, all in flight, waits until every one is inactive
// (job-manager.queue-drain), lets the broker give back the burst's free
// pages (one second) and reads rank 0's VmRSS. The last line compares the
// memory of the last round with that of the first round after the limit
// was reached.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "common.h"
#include "jobs.h"
#include "msg/client.h"

using loom::bench::now;

int main(int argc, char** argv) {
  CLI::App app{"soak: jobs through one instance in rounds, rank 0's memory after each"};
  int jobs = 1000000;
  int round = 100000;
  int batch = 1000;
  app.add_option("--jobs", jobs, "Jobs in all")->check(CLI::PositiveNumber);
  app.add_option("--round", round, "Jobs per round (memory is read after each)")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "Jobs per submit request")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  const char* uri = loom::bench::instance_uri("soak");
  if (!uri) return 2;
  asio::io_context io;
  auto clock = loom::make_real_clock(io);
  auto c = loom::Client::connect(io, *clock, uri);
  if (!c.ok()) {
    std::fprintf(stderr, "soak: %s\n", c.error().text.c_str());
    return 1;
  }
  loom::Client& client = **c;
  auto call = [&](const std::string& topic, const loom::Json& payload) {
    return loom::bench::call_or_exit("soak", client, topic, payload);
  };
  int pid = call("broker.info", loom::Json::object()).value("pid", -1);
  std::printf("soak: rank 0 VmRSS %.1f MB at the start\n", loom::bench::rss_kb(pid) / 1024.0);

  loom::Json one{{"jobspec", loom::bench::true_jobspec(0, false)}};
  int done = 0;
  long at_limit = -1, last = -1;
  int limit_round_end = 0;
  while (done < jobs) {
    int n = std::min(round, jobs - done);
    double t0 = now();
    loom::bench::submit_copies("soak", io, client, one, n, batch);
    call("job-manager.queue-drain", loom::Json::object());
    double t = now() - t0;
    done += n;
    std::this_thread::sleep_for(std::chrono::seconds(1));
    last = loom::bench::rss_kb(pid);
    loom::Json stats = call("job-manager.stats", loom::Json::object());
    int kept = stats["states"].value("INACTIVE", 0);
    std::printf("soak: %8d jobs: rank 0 VmRSS %6.1f MB, %d inactive jobs kept; this round %.0f jobs/s\n", done,
                last / 1024.0, kept, n / t);
    std::fflush(stdout);
    // The first round that ends with fewer jobs kept than ran: purging has begun.
    if (at_limit < 0 && kept < done) {
      at_limit = last;
      limit_round_end = done;
    }
  }
  if (at_limit < 0) {
    std::printf("soak: the inactive limit was never reached (set job-manager.inactive-num-limit below --jobs)\n");
  } else {
    std::printf("soak: from %d to %d jobs, with the limit reached, rank 0 VmRSS went %.1f -> %.1f MB (%+.1f %%)\n",
                limit_round_end, done, at_limit / 1024.0, last / 1024.0, 100.0 * (last - at_limit) / at_limit);
  }
  return 0;
}
