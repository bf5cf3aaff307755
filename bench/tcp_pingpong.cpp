// tcp_pingpong: the machine's own TCP round trip, the baseline of the
// overlay benchmark across hosts (docs/performance.md, "Across hosts").
//
//   tcp_pingpong echo PORT              answers every message it gets
//   tcp_pingpong relay PORT HOST:PORT   passes bytes both ways to HOST:PORT
//                                       (an interior broker's hop, minus loom)
//   tcp_pingpong client HOST:PORT [--count N] [--total N] [--window N] [--size N] [--json]
//       N round trips one at a time (latency), then N more with W in flight
//       (throughput), of --size bytes each: what rpc_bench does to a rank,
//       over plain TCP, without TLS, framing or routing.
//
// Each server serves one connection, then exits. TCP_NODELAY everywhere,
// as the overlay sets it.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "tcp_pingpong: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

void nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int accept_one(int port) {
  int l = ::socket(AF_INET, SOCK_STREAM, 0);
  if (l < 0) die("socket");
  int one = 1;
  ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) die("bind");
  if (::listen(l, 1) < 0) die("listen");
  int fd = ::accept(l, nullptr, nullptr);
  if (fd < 0) die("accept");
  ::close(l);
  nodelay(fd);
  return fd;
}

int connect_to(const std::string& hostport) {
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos) {
    errno = EINVAL;
    die("HOST:PORT expected, not " + hostport);
  }
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(hostport.substr(0, colon).c_str(), hostport.substr(colon + 1).c_str(), &hints, &res) != 0) {
    errno = EHOSTUNREACH;
    die("cannot resolve " + hostport);
  }
  // The server may still be starting: a refused connection is tried again
  // for up to 5 s.
  int fd = -1;
  for (int tries = 0;; ++tries) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    if (::connect(fd, res->ai_addr, res->ai_addrlen) == 0) break;
    if (errno != ECONNREFUSED || tries >= 500) die("connect " + hostport);
    ::close(fd);
    ::usleep(10000);
  }
  ::freeaddrinfo(res);
  nodelay(fd);
  return fd;
}

bool read_full(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t k = ::read(fd, p, n);
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

void write_full(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t k = ::write(fd, p, n);
    if (k < 0) die("write");
    p += k;
    n -= static_cast<size_t>(k);
  }
}

int echo(int port) {
  int fd = accept_one(port);
  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t k = ::read(fd, buf.data(), buf.size());
    if (k <= 0) return 0;
    write_full(fd, buf.data(), static_cast<size_t>(k));
  }
}

int relay(int port, const std::string& upstream) {
  int down = accept_one(port);
  int up = connect_to(upstream);
  std::vector<char> buf(1 << 16);
  pollfd p[2] = {{down, POLLIN, 0}, {up, POLLIN, 0}};
  for (;;) {
    if (::poll(p, 2, -1) < 0) die("poll");
    for (int i = 0; i < 2; ++i) {
      if (!p[i].revents) continue;
      ssize_t k = ::read(p[i].fd, buf.data(), buf.size());
      if (k <= 0) return 0;
      write_full(p[1 - i].fd, buf.data(), static_cast<size_t>(k));
    }
  }
}

double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int client(const std::string& target, int count, int total, int window, int size, bool json) {
  int fd = connect_to(target);
  std::vector<char> msg(static_cast<size_t>(size), 'x'), in(static_cast<size_t>(size));
  std::vector<double> lat;
  lat.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    double t0 = now_us();
    write_full(fd, msg.data(), msg.size());
    if (!read_full(fd, in.data(), in.size())) die("read");
    lat.push_back(now_us() - t0);
  }
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) { return lat.empty() ? 0.0 : lat[std::min(lat.size() - 1, size_t(p * lat.size()))]; };
  // Pipelined: `window` in flight; a batch of writes per round of reads.
  std::vector<char> batch(msg.size() * static_cast<size_t>(window), 'x');
  double t0 = now_us();
  int sent = 0, got = 0;
  int first = std::min(window, total);
  write_full(fd, batch.data(), msg.size() * static_cast<size_t>(first));
  sent = first;
  std::vector<char> rbuf(1 << 16);
  size_t pending_bytes = 0;
  while (got < total) {
    ssize_t k = ::read(fd, rbuf.data(), rbuf.size());
    if (k <= 0) die("read");
    pending_bytes += static_cast<size_t>(k);
    int done = static_cast<int>(pending_bytes / msg.size());
    pending_bytes %= msg.size();
    got += done;
    int more = std::min(done, total - sent);
    if (more > 0) {
      write_full(fd, batch.data(), msg.size() * static_cast<size_t>(more));
      sent += more;
    }
  }
  double secs = (now_us() - t0) / 1e6;
  double rate = total / secs;
  if (json) {
    std::printf("{\"p50_us\":%.1f,\"p99_us\":%.1f,\"rate\":%.0f}\n", pct(0.5), pct(0.99), rate);
  } else {
    std::printf("latency p50 %.1f us, p99 %.1f us (%d round trips); pipelined %.0f round trips/s (%d, %d in flight)\n",
                pct(0.5), pct(0.99), count, rate, total, window);
  }
  ::close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tcp_pingpong: plain TCP round trips, the baseline of the overlay benchmark"};
  app.require_subcommand(1);
  int port = 0;
  std::string upstream, target;
  int count = 20000, total = 500000, window = 1000, size = 100;
  bool json = false;
  auto* e = app.add_subcommand("echo", "Answer every message of one connection");
  e->add_option("port", port)->required();
  auto* r = app.add_subcommand("relay", "Pass one connection's bytes on to HOST:PORT and back");
  r->add_option("port", port)->required();
  r->add_option("upstream", upstream, "HOST:PORT")->required();
  auto* c = app.add_subcommand("client", "Time round trips to HOST:PORT");
  c->add_option("target", target, "HOST:PORT")->required();
  c->add_option("--count", count, "Sequential round trips for latency")->check(CLI::NonNegativeNumber);
  c->add_option("--total", total, "Round trips for the throughput run")->check(CLI::PositiveNumber);
  c->add_option("--window", window, "Messages in flight in the throughput run")->check(CLI::Range(1, 100000));
  c->add_option("--size", size, "Bytes per message")->check(CLI::Range(1, 65536));
  c->add_flag("--json", json, "Print one JSON line");
  CLI11_PARSE(app, argc, argv);
  if (*e) return echo(port);
  if (*r) return relay(port, upstream);
  return client(target, count, total, window, size, json);
}
