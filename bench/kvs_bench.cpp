// Durable eventlog appends per second and watch fan-out latency.
//
//   loom start [--setconf kvs.synchronous=full] -- kvs_bench
//
// appends: each client appends RFC 18 event lines to its own key; a
//   client keeps --window commits in flight (1 = wait for each ack).
// fan-out: --watchers clients watch one eventlog; the time from sending
//   an append to the last watcher seeing it.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "base/clock.h"
#include "common.h"
#include "msg/client.h"

using loom::bench::now;
using loom::bench::percentile;

namespace {

std::string commit_payload(const std::string& key, int seq) {
  char line[160];
  std::snprintf(line, sizeof line, "{\"timestamp\":%.6f,\"name\":\"bench\",\"context\":{\"seq\":%d}}\n", 1.7e9 + seq,
                seq);
  return loom::dump_json(loom::Json{{"ops", {{{"op", "append"}, {"key", key}, {"value", line}}}}});
}

// Appends `total` lines spread over `clients` connections; returns appends/s.
double run_appends(asio::io_context& io, loom::Clock& clock, const std::string& uri, int clients, int total, int window,
                   const std::string& tag) {
  std::vector<std::unique_ptr<loom::Client>> conns;
  for (int i = 0; i < clients; ++i) {
    auto c = loom::Client::connect(io, clock, uri);
    if (!c.ok()) {
      std::fprintf(stderr, "kvs_bench: %s\n", c.error().text.c_str());
      std::exit(1);
    }
    conns.push_back(std::move(*c));
  }
  int per_client = total / clients;
  int acked = 0;
  bool failed = false;
  std::vector<int> sent(clients, 0);
  std::vector<std::function<void()>> send_next(clients);
  for (int i = 0; i < clients; ++i) {
    std::string key = "bench." + tag + ".c" + std::to_string(i) + ".eventlog";
    send_next[i] = [&, i, key] {
      int seq = sent[i]++;
      conns[i]->handle().rpc("kvs.commit", commit_payload(key, seq), {}, [&, i](const loom::Message& r) {
        if (r.errnum) {
          std::fprintf(stderr, "kvs_bench: commit failed: %s\n", loom::error_text(r).c_str());
          failed = true;
        }
        ++acked;
        if (sent[i] < per_client) send_next[i]();
      });
    };
  }
  double t0 = now();
  for (int i = 0; i < clients; ++i) {
    for (int w = 0; w < window && sent[i] < per_client; ++w) send_next[i]();
  }
  while (acked < per_client * clients && !failed) io.run_one();
  if (failed) std::exit(1);
  return per_client * clients / (now() - t0);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvs_bench: durable eventlog appends and watch fan-out"};
  int total = 50000;
  int watchers = 16;
  int rounds = 2000;
  bool json = false;
  app.add_option("--total", total, "Appends per run");
  app.add_option("--watchers", watchers, "Watchers for the fan-out run");
  app.add_option("--rounds", rounds, "Appends measured in the fan-out run");
  app.add_flag("--json", json, "One JSON line per figure");
  CLI11_PARSE(app, argc, argv);
  const char* uri = loom::bench::instance_uri("kvs_bench");
  if (!uri) return 2;
  asio::io_context io;
  auto clock = loom::make_real_clock(io);

  struct Run {
    const char* name;
    int clients;
    int window;
  };
  for (Run r : {Run{"1 client, 1 in flight", 1, 1}, Run{"1 client, 64 in flight", 1, 64},
                Run{"16 clients, 1 in flight each", 16, 1}, Run{"16 clients, 16 in flight each", 16, 16}}) {
    int n = r.window == 1 && r.clients == 1 ? std::min(total, 10000) : total;
    double rate = run_appends(io, *clock, uri, r.clients, n, r.window,
                              std::to_string(r.clients) + "x" + std::to_string(r.window));
    if (json) {
      std::printf("{\"figure\":\"appends\",\"clients\":%d,\"window\":%d,\"appends\":%d,\"per_s\":%.0f}\n", r.clients,
                  r.window, n, rate);
    } else {
      std::printf("durable appends, %-30s %8.0f /s (%d appends)\n", r.name, rate, n);
    }
  }

  // Fan-out: every watcher sees each append; measure until the last one does.
  std::vector<std::unique_ptr<loom::Client>> ws;
  int seen = 0;
  for (int i = 0; i < watchers; ++i) {
    auto c = loom::Client::connect(io, *clock, uri);
    if (!c.ok()) return 1;
    ws.push_back(std::move(*c));
    ws.back()->handle().rpc(
        "kvs.watch", loom::Json{{"key", "bench.fanout"}, {"append", true}, {"waitcreate", true}, {"from", "now"}},
        {loom::kNodeAny, true, 0}, [&](const loom::Message& m) {
          if (m.errnum == 0) ++seen;
        });
  }
  auto writer = loom::Client::connect(io, *clock, uri);
  if (!writer.ok()) return 1;
  // Make sure every watch is registered before measuring.
  (void)(*writer)->call("kvs.commit",
                        loom::Json{{"ops", {{{"op", "append"}, {"key", "bench.fanout"}, {"value", "x"}}}}});
  while (seen < watchers) io.run_one();
  std::vector<double> lat;
  for (int i = 0; i < rounds; ++i) {
    seen = 0;
    double t0 = now();
    (*writer)->handle().rpc("kvs.commit",
                            loom::Json{{"ops", {{{"op", "append"}, {"key", "bench.fanout"}, {"value", "x"}}}}}, {},
                            [](const loom::Message&) {});
    while (seen < watchers) io.run_one();
    lat.push_back((now() - t0) * 1e6);
  }
  if (json) {
    std::printf("{\"figure\":\"fanout\",\"watchers\":%d,\"p50_us\":%.1f,\"p99_us\":%.1f}\n", watchers,
                percentile(lat, 0.5), percentile(lat, 0.99));
  } else {
    std::printf("watch fan-out to %d watchers: p50 %.1f us, p99 %.1f us (%d appends)\n", watchers, percentile(lat, 0.5),
                percentile(lat, 0.99), rounds);
  }
  return 0;
}
