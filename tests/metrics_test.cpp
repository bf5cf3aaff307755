// The OpenMetrics endpoint of docs/metrics.md on a real instance: scraped
// with curl and read with a real parser (Debian's python3-prometheus-client,
// scripts/deps); bad and slow clients; the configuration's errors.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "kit/jobs.h"
#include "msg/json.h"

namespace loom::test {
namespace {

constexpr const char* kPython = "/usr/bin/python3";
constexpr const char* kCurl = "/usr/bin/curl";

// Parses the exposition text in `path` with prometheus_client and prints
// {"NAME{LABELS}": VALUE, ...} (labels sorted, as k="v" joined by ",").
constexpr const char* kParse = R"PY(
import json, sys
fmt, path = sys.argv[1], sys.argv[2]
if fmt == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(open(path).read()):
    for s in fam.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        out[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps(out))
)PY";

bool have_parser() { return run_cmd({kPython, "-c", "import prometheus_client.openmetrics.parser"}).code == 0; }

// A TCP connection to HOST:PORT (IPv4), -1 if it cannot be made.
int dial(const std::string& address) {
  auto colon = address.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  if (::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr) != 1) return -1;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Everything the peer sends until it closes, or nullopt if it has not
// closed within `timeout` seconds (poll: woken by the data or the close).
std::optional<std::string> read_until_closed(int fd, double timeout) {
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return got;
    got.append(buf, static_cast<size_t>(n));
  }
}

class Metrics : public JobsFixture {
 protected:
  void SetUp() override {
    if (!have_parser()) GTEST_SKIP() << "python3-prometheus-client is not installed (scripts/deps installs it)";
    if (!std::filesystem::exists(kCurl)) GTEST_SKIP() << "curl is not installed (scripts/deps installs it)";
    ASSERT_TRUE(inst.start(2, {"--cores-per-rank=4", "--setconf", "metrics.listen=127.0.0.1:0"}));
    auto r = loom({"rpc", "metrics.info"});
    ASSERT_EQ(r.code, 0) << show(r);
    auto j = parse_json(r.out);
    ASSERT_TRUE(j.ok() && j->contains("listen")) << r.out;
    address_ = (*j)["listen"].get<std::string>();
    ASSERT_TRUE(address_.starts_with("127.0.0.1:")) << address_;
    ASSERT_NE(address_, "127.0.0.1:0");
  }

  // curl's scrape: {content type, body}.
  std::pair<std::string, std::string> scrape(const std::string& accept = "") {
    std::vector<std::string> argv = {kCurl, "-sS", "--max-time", "20", "-w", "\n%{content_type}"};
    if (!accept.empty()) argv.insert(argv.end(), {"-H", "Accept: " + accept});
    argv.push_back("http://" + address_ + "/metrics");
    auto r = run_cmd(argv);
    EXPECT_EQ(r.code, 0) << show(r);
    auto nl = r.out.rfind('\n');
    if (nl == std::string::npos) return {};
    return {r.out.substr(nl + 1), r.out.substr(0, nl)};
  }

  // The text parsed by prometheus_client: sample → value.
  std::map<std::string, double> parse(const std::string& text, bool openmetrics = true) {
    std::string path = testing::TempDir() + "/metrics-" + std::to_string(::getpid()) + ".txt";
    std::ofstream(path) << text;
    auto r = run_cmd({kPython, "-c", kParse, openmetrics ? "openmetrics" : "text", path});
    std::filesystem::remove(path);
    EXPECT_EQ(r.code, 0) << "the parser refused the text: " << r.err << "\n" << text;
    std::map<std::string, double> out;
    auto j = parse_json(r.out);
    if (!j.ok() || !j->is_object()) return out;
    for (const auto& [k, v] : j->items()) out[k] = v.get<double>();
    return out;
  }

  std::string address_;
};

TEST_F(Metrics, CountsWhatRanAndWhatIsHeld) {
  for (int i = 0; i < 3; ++i) {
    std::string id = submit_job({"--setattr=exec.test.run_duration=0", "true"});
    wait_event(id, "clean");
  }
  // One job holding 3 of the 8 cores while it is scraped.
  std::string held = submit_job({"--setattr=exec.test.run_duration=300", "-c", "3", "true"});
  wait_event(held, "start");

  auto [type, text] = scrape();
  EXPECT_EQ(type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
  EXPECT_TRUE(text.ends_with("# EOF\n")) << text;
  auto m = parse(text);
  EXPECT_EQ(m["loom_jobs_submitted_total"], 4);
  EXPECT_EQ(m["loom_jobs_completed_total"], 3);
  EXPECT_EQ(m["loom_jobs{state=\"inactive\"}"], 3);
  EXPECT_EQ(m["loom_jobs{state=\"run\"}"], 1);
  EXPECT_EQ(m["loom_job_wait_seconds_count"], 4);
  EXPECT_EQ(m["loom_sched_latency_seconds_count"], 4);
  EXPECT_EQ(m["loom_job_wait_seconds_bucket{le=\"+Inf\"}"], 4);
  EXPECT_EQ(m["loom_resource_cores_all"], 8);
  EXPECT_EQ(m["loom_resource_cores{state=\"allocated\"}"], 3);
  EXPECT_EQ(m["loom_resource_cores{state=\"free\"}"], 5);
  EXPECT_EQ(m["loom_resource_cores{state=\"down\"}"], 0);
  EXPECT_EQ(m["loom_resource_cores{state=\"drained\"}"], 0);
  EXPECT_EQ(m["loom_resource_ranks_all"], 2);
  EXPECT_EQ(m["loom_rank_up{rank=\"0\"}"], 1);
  EXPECT_EQ(m["loom_rank_up{rank=\"1\"}"], 1);
  EXPECT_GT(m["loom_kvs_commit_seconds_count"], 0);
  EXPECT_EQ(m["loom_kvs_commit_seconds_count"], m["loom_kvs_commit_group_size_count"]);
  EXPECT_GE(m["loom_broker_requests_total{service=\"job-manager\"}"], 4);
  for (const char* s : {"job-manager", "sched", "kvs", "broker"}) {
    EXPECT_EQ(m[std::string("loom_metrics_source_up{source=\"") + s + "\"}"], 1) << s;
  }
  for (const char* family : {"loom_jobs ", "loom_jobs_submitted ", "loom_job_wait_seconds ", "loom_resource_cores ",
                             "loom_kvs_commit_seconds ", "loom_rank_up "}) {
    EXPECT_NE(text.find(std::string("# HELP ") + family), std::string::npos) << family;
    EXPECT_NE(text.find(std::string("# TYPE ") + family), std::string::npos) << family;
  }

  ASSERT_EQ(loom({"cancel", held}).code, 0);
  wait_event(held, "clean");

  // A drained rank moves its cores out of free; the counters go on.
  auto r = loom({"resource", "drain", "1", "testing"});
  ASSERT_EQ(r.code, 0) << show(r);
  m = parse(scrape().second);
  EXPECT_EQ(m["loom_resource_cores{state=\"free\"}"], 4);
  EXPECT_EQ(m["loom_resource_cores{state=\"drained\"}"], 4);
  EXPECT_EQ(m["loom_resource_cores{state=\"allocated\"}"], 0);
  EXPECT_EQ(m["loom_resource_ranks{state=\"drained\"}"], 1);
  EXPECT_EQ(m["loom_jobs_completed_total"], 4);
}

TEST_F(Metrics, TextFormatWhenAskedFor) {
  auto [type, text] = scrape("text/plain; version=0.0.4");
  EXPECT_EQ(type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(text.find("# EOF"), std::string::npos);
  auto m = parse(text, false);
  EXPECT_EQ(m["loom_jobs_submitted_total"], 0);
  EXPECT_EQ(m["loom_resource_cores_all"], 8);
  // Prometheus's own Accept header names both: OpenMetrics wins.
  EXPECT_EQ(scrape("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5").first,
            "application/openmetrics-text; version=1.0.0; charset=utf-8");
}

TEST_F(Metrics, RefusesWhatIsNotAScrape) {
  auto ask = [&](const std::string& request) {
    int fd = dial(address_);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
    auto got = read_until_closed(fd, 20);
    ::close(fd);
    return got.value_or("(not closed)");
  };
  EXPECT_TRUE(ask("garbage\r\n\r\n").starts_with("HTTP/1.1 400 ")) << ask("garbage\r\n\r\n");
  EXPECT_TRUE(ask("GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
  EXPECT_TRUE(ask("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
  // Headers past the bound (8 KiB), never ending: answered and closed
  // without waiting for the end.
  EXPECT_TRUE(ask("GET /metrics HTTP/1.1\r\nX: " + std::string(20000, 'a')).starts_with("HTTP/1.1 431 "));
  auto [type, text] = scrape();
  EXPECT_TRUE(text.ends_with("# EOF\n"));
}

TEST_F(Metrics, ASlowClientIsClosedAndDisturbsNoOne) {
  int slow = dial(address_);
  ASSERT_GE(slow, 0);
  std::string part = "GET /metr";
  ASSERT_EQ(::write(slow, part.data(), part.size()), static_cast<ssize_t>(part.size()));
  // Served meanwhile, and so is the broker.
  auto [type, text] = scrape();
  EXPECT_TRUE(text.ends_with("# EOF\n"));
  EXPECT_EQ(loom({"rpc", "broker.info"}).code, 0);
  // Closed without an answer once its 5 seconds are up.
  auto t0 = std::chrono::steady_clock::now();
  auto got = read_until_closed(slow, 20);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::close(slow);
  ASSERT_TRUE(got.has_value()) << "a client that never finished its request is still open";
  EXPECT_EQ(*got, "");
  EXPECT_LT(took, 10);
}

TEST_F(Metrics, ScrapesAtOnceAreCapped) {
  // Nine idle connections, one over the cap of eight: whichever the broker
  // accepts last is closed at once, long before the others' 5 s are up.
  std::vector<int> fds;
  for (int i = 0; i < 9; ++i) {
    fds.push_back(dial(address_));
    ASSERT_GE(fds.back(), 0);
  }
  int closed = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(4);
  while (closed == 0 && std::chrono::steady_clock::now() < deadline) {
    std::vector<pollfd> p;
    for (int fd : fds) p.push_back({fd, POLLIN, 0});
    if (::poll(p.data(), p.size(), 100) <= 0) continue;
    for (auto& one : p) {
      char c;
      if (one.revents && ::read(one.fd, &c, 1) == 0) ++closed;
    }
  }
  EXPECT_EQ(closed, 1);
  for (int fd : fds) ::close(fd);
  // Once they are gone, scrapes are served again.
  ASSERT_EQ(loom({"rpc", "broker.info"}).code, 0);
  EXPECT_TRUE(scrape().second.ends_with("# EOF\n"));
}

TEST(MetricsConfig, BadAddressesAreOneLineErrors) {
  for (const char* bad : {"metrics.listen=nonsense", "metrics.listen=127.0.0.1:99999", "metrics.listen=host:80"}) {
    auto r = run_cmd({bin("loom"), "start", "--setconf", bad, "--", "true"});
    EXPECT_EQ(r.code, 1) << bad << ": " << show(r);
    EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
    EXPECT_NE(r.err.find("--setconf metrics.listen: "), std::string::npos) << r.err;
  }
}

TEST(MetricsConfig, APortInUseStopsTheStartNamingTheKey) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  std::string addr = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  auto r = run_cmd({bin("loom"), "start", "--setconf", "metrics.listen=" + addr, "--", "true"});
  ::close(fd);
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_EQ(r.err, "loom start: metrics.listen cannot listen on " + addr + ": Address already in use\n");
}

}  // namespace
}  // namespace loom::test
