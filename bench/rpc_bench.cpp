// RPC latency and pipelined throughput against a running instance.
//
//   loom start --test-size=4 -- rpc_bench --rank 3
//
// Latency: --count sequential broker.ping round trips, p50/p99/max.
// Throughput: --total pings with --window of them in flight at once.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "base/clock.h"
#include "common.h"
#include "msg/client.h"

using loom::bench::now;
using loom::bench::percentile;

int main(int argc, char** argv) {
  CLI::App app{"rpc_bench: RPC round-trip latency and pipelined throughput"};
  int rank = -1;
  int count = 20000;
  int total = 500000;
  int window = 1000;
  std::string topic = "broker.ping";
  bool json = false;
  app.add_option("--rank", rank, "Target rank (default: any, i.e. the local broker)");
  app.add_option("--count", count, "Sequential round trips for latency");
  app.add_option("--total", total, "Requests for the throughput run");
  app.add_option("--window", window, "Requests in flight at once in the throughput run");
  app.add_option("--topic", topic, "Topic to call (default broker.ping)");
  app.add_flag("--json", json, "Print one JSON line");
  CLI11_PARSE(app, argc, argv);

  const char* uri = loom::bench::instance_uri("rpc_bench");
  if (!uri) return 2;
  asio::io_context io;
  auto clock = loom::make_real_clock(io);
  auto c = loom::Client::connect(io, *clock, uri);
  if (!c.ok()) {
    std::fprintf(stderr, "rpc_bench: %s\n", c.error().text.c_str());
    return 1;
  }
  loom::Handle& h = (*c)->handle();
  uint32_t nodeid = rank < 0 ? loom::kNodeAny : static_cast<uint32_t>(rank);
  const std::string payload = "{}";
  bool failed = false;

  // Latency: one at a time.
  std::vector<double> rtt;
  rtt.reserve(count);
  for (int i = 0; i < count && !failed; ++i) {
    bool done = false;
    double t0 = now();
    h.rpc(topic, payload, {nodeid, false, 0}, [&](const loom::Message& r) {
      if (r.errnum) failed = true;
      done = true;
    });
    while (!done) io.run_one();
    rtt.push_back((now() - t0) * 1e6);
  }
  if (failed) {
    std::fprintf(stderr, "rpc_bench: %s failed\n", topic.c_str());
    return 1;
  }

  // Throughput: keep `window` in flight.
  int sent = 0;
  int answered = 0;
  std::function<void(const loom::Message&)> on_reply;
  on_reply = [&](const loom::Message& r) {
    if (r.errnum) failed = true;
    ++answered;
    if (sent < total) {
      ++sent;
      h.rpc(topic, payload, {nodeid, false, 0}, on_reply);
    }
  };
  double t0 = now();
  for (; sent < std::min(window, total); ++sent) h.rpc(topic, payload, {nodeid, false, 0}, on_reply);
  while (answered < total && !failed) io.run_one();
  double elapsed = now() - t0;
  if (failed) {
    std::fprintf(stderr, "rpc_bench: %s failed during the throughput run\n", topic.c_str());
    return 1;
  }
  double rate = total / elapsed;
  std::string target = rank < 0 ? "any" : std::to_string(rank);
  if (json) {
    std::printf(
        "{\"topic\":\"%s\",\"rank\":\"%s\",\"count\":%d,\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,"
        "\"total\":%d,\"window\":%d,\"rpc_per_s\":%.0f}\n",
        topic.c_str(), target.c_str(), count, percentile(rtt, 0.5), percentile(rtt, 0.99),
        *std::max_element(rtt.begin(), rtt.end()), total, window, rate);
  } else {
    std::printf("%s to rank %s: latency p50 %.1f us, p99 %.1f us, max %.1f us (%d sequential)\n", topic.c_str(),
                target.c_str(), percentile(rtt, 0.5), percentile(rtt, 0.99), *std::max_element(rtt.begin(), rtt.end()),
                count);
    std::printf("%s to rank %s: %.0f RPCs/s pipelined (%d requests, %d in flight)\n", topic.c_str(), target.c_str(),
                rate, total, window);
  }
  return 0;
}
