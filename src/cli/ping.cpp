// loom ping [--rank N] [--count K] [--interval S] SERVICE
// Every service answers SERVICE.ping; prints each round-trip time.
#include <cstdio>
#include <iostream>

#include "cli/common.h"

namespace loom::cli {

namespace {
struct PingOpts {
  int rank = -1;
  int count = 1;
  double interval = 1.0;
  double timeout = 10.0;
  std::string service;
};

int run_ping(const PingOpts& o) {
  auto s = connect_session();
  if (!s.ok()) return fail("ping", s.error());
  Session& sess = **s;
  std::string topic = o.service.find('.') == std::string::npos ? o.service + ".ping" : o.service;
  auto timer = sess.clock->make_timer();
  int sent = 0;
  int answered = 0;
  int rc = -1;
  std::function<void()> send_one = [&] {
    int seq = sent++;
    double t0 = sess.clock->now();
    sess.handle().rpc(topic, Json{{"seq", seq}}, {rank_or_any(o.rank), false, o.timeout},
                      [&, seq, t0](const Message& r) {
                        double ms = (sess.clock->now() - t0) * 1000.0;
                        if (r.errnum) {
                          rc = fail("ping", topic + ": " + error_text(r));
                          return;
                        }
                        ++answered;
                        std::string where = o.rank < 0 ? "" : " rank=" + std::to_string(o.rank);
                        std::printf("%s%s seq=%d time=%.3f ms\n", topic.c_str(), where.c_str(), seq, ms);
                        std::fflush(stdout);
                        if (o.count > 0 && answered >= o.count) {
                          rc = 0;
                          return;
                        }
                        timer->arm(o.interval, send_one);
                      });
  };
  send_one();
  while (rc < 0 && sess.client->is_open()) sess.io.run_one();
  if (rc < 0) return fail("ping", sess.client->lost_text());
  return rc;
}
}  // namespace

void add_ping_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<PingOpts>();
  auto* sub = app.add_subcommand("ping", "Check that a service answers and print round-trip times");
  sub->add_option("--rank", o->rank, "Ping the service on this rank (default: the nearest provider)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("-c,--count", o->count, "Number of pings, 0 for no end (default 1)")->check(CLI::NonNegativeNumber);
  sub->add_option("-i,--interval", o->interval, "Seconds between pings (default 1)")->check(CLI::NonNegativeNumber);
  sub->add_option("--timeout", o->timeout, "Seconds to wait for each answer (default 10)")->check(CLI::PositiveNumber);
  sub->add_option("service", o->service, "Service name (e.g. broker, kvs) or a full topic")->required();
  sub->callback([o, &run] { run = [o] { return run_ping(*o); }; });
}

}  // namespace loom::cli
