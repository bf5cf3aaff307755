// The OpenMetrics endpoint of rank 0 (docs/metrics.md): plain HTTP/1.1
// `GET /metrics` on [metrics] listen, served on the broker's own loop.
//
// A scrape asks the services by message, each in parallel with a bound on
// time, and prints what they answered:
//   job-manager.stats      jobs by state, submissions, completions, wait
//                          time and scheduling latency histograms
//   sched.resource-status  cores, gpus and ranks free/allocated/drained/down
//   kvs.stats              group-commit time and size histograms
//   broker.status          each rank up or not
//   broker.info            requests routed to each service by this broker
// A service that does not answer leaves its metrics out and sets
// loom_metrics_source_up{source=...} to 0.
//
// The module also serves `metrics.info` {} → {"listen": "HOST:PORT"}, the
// address it is bound to (with port 0 in the configuration, the port the
// kernel chose).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "msg/handle.h"
#include "msg/json.h"

namespace asio {
class io_context;
}

namespace loom {

struct MetricsConfig {
  std::string listen;               // HOST:PORT
  size_t max_connections = 8;       // scrapes at once; more are closed at once
  size_t max_request_bytes = 8192;  // request line and headers
  double request_timeout = 5.0;     // seconds to send a whole request
  double gather_timeout = 5.0;      // seconds each service may take to answer
};

struct ListenAddress {
  std::string host;  // an IPv4 or IPv6 literal, or "localhost"
  uint16_t port = 0;
};

// "HOST:PORT", "[V6]:PORT"; the error says what is wrong (no key in it).
Result<ListenAddress> parse_listen_address(std::string_view text);

// Whether `address` (HOST:PORT) can be listened on now: binds and closes
// a socket. For `loom start`, to refuse a port in use with one line before
// any broker runs (rank 0 still reports it, should the port be taken in
// between).
Status check_listen_address(const std::string& address);

// What one scrape gathered: each service's answer, or null when it gave none.
struct MetricsSources {
  Json job_manager;
  Json sched;
  Json kvs;
  Json broker_status;
  Json broker_info;
};

// The exposition text: OpenMetrics 1.0 (ending `# EOF`) or, with
// `openmetrics` false, the Prometheus text format 0.0.4.
std::string render_metrics(const MetricsSources& s, bool openmetrics);

class MetricsServer {
 public:
  // Binds and listens; an error names the address and why (port in use).
  static Result<std::unique_ptr<MetricsServer>> create(asio::io_context& io, Handle& h, MetricsConfig cfg);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The bound address, as HOST:PORT.
  std::string address() const;

 private:
  struct Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom
