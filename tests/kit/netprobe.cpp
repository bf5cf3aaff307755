// netprobe: the smallest TCP server and client, for tests of simulated
// hosts (kit/netns.h) on machines without netcat. Names are resolved with
// getaddrinfo, as loom resolves them (so /etc/hosts is honoured).
//
//   netprobe listen PORT
//       Listens on 0.0.0.0:PORT (0: any free port), prints
//       "listening on PORT" once it accepts connections, then answers each
//       connection with its hostname and a newline and closes it. Runs
//       until killed.
//   netprobe connect HOST PORT TIMEOUT
//       Connects to HOST:PORT (IPv4) within TIMEOUT seconds and copies what
//       the server sends to stdout until it closes.
//
// Exit codes: 0 done; 1 the connection failed (refused, unreachable, reset);
// 2 timed out; 3 HOST not resolved; 64 bad usage.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

namespace {

int usage() {
  std::fprintf(stderr, "usage: netprobe listen PORT | netprobe connect HOST PORT TIMEOUT\n");
  return 64;
}

bool parse_port(const char* s, int* port) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < 0 || v > 65535) return false;
  *port = static_cast<int>(v);
  return true;
}

double now() {
  timespec t{};
  ::clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

int listen_on(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 64) != 0) {
    std::fprintf(stderr, "netprobe: listen on port %d: %s\n", port, std::strerror(errno));
    return 1;
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  std::printf("listening on %d\n", ntohs(a.sin_port));
  std::fflush(stdout);
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  std::string answer = std::string(name) + "\n";
  while (true) {
    int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      std::fprintf(stderr, "netprobe: accept: %s\n", std::strerror(errno));
      return 1;
    }
    // Small enough for one write on a fresh socket; a failed write is the
    // client's business.
    (void)!::write(c, answer.data(), answer.size());
    ::close(c);
  }
}

int connect_to(const char* host, int port, double timeout) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host, nullptr, &hints, &found); rc != 0 || !found) {
    std::fprintf(stderr, "netprobe: %s: %s\n", host, ::gai_strerror(rc));
    return 3;
  }
  sockaddr_in a = *reinterpret_cast<sockaddr_in*>(found->ai_addr);
  ::freeaddrinfo(found);
  a.sin_port = htons(static_cast<uint16_t>(port));
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof text);
  std::string where = std::string(host) + " (" + text + ") port " + std::to_string(port);

  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    std::fprintf(stderr, "netprobe: socket: %s\n", std::strerror(errno));
    return 1;
  }
  double deadline = now() + timeout;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
    std::fprintf(stderr, "netprobe: connect to %s: %s\n", where.c_str(), std::strerror(errno));
    return 1;
  }
  // Waits for `events` on fd until the deadline: 1 ready, 0 timed out.
  auto wait = [&](short events) {
    while (true) {
      double left = deadline - now();
      if (left <= 0) return 0;
      pollfd p{fd, events, 0};
      int n = ::poll(&p, 1, static_cast<int>(std::ceil(left * 1000)));
      if (n > 0) return 1;
      if (n == 0) return 0;
      if (errno != EINTR) return 1;  // let the next call report it
    }
  };
  if (!wait(POLLOUT)) {
    std::fprintf(stderr, "netprobe: connect to %s: timed out after %gs\n", where.c_str(), timeout);
    return 2;
  }
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    std::fprintf(stderr, "netprobe: connect to %s: %s\n", where.c_str(), std::strerror(err));
    return 1;
  }
  char buf[4096];
  while (true) {
    if (!wait(POLLIN)) {
      std::fprintf(stderr, "netprobe: reading from %s: timed out after %gs\n", where.c_str(), timeout);
      return 2;
    }
    ssize_t k = ::read(fd, buf, sizeof buf);
    if (k == 0) break;
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      std::fprintf(stderr, "netprobe: reading from %s: %s\n", where.c_str(), std::strerror(errno));
      return 1;
    }
    std::fwrite(buf, 1, static_cast<size_t>(k), stdout);
  }
  ::close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  if (argc == 3 && std::strcmp(argv[1], "listen") == 0 && parse_port(argv[2], &port)) return listen_on(port);
  if (argc == 5 && std::strcmp(argv[1], "connect") == 0 && parse_port(argv[3], &port) && port > 0) {
    char* end = nullptr;
    double timeout = std::strtod(argv[4], &end);
    if (*end == '\0' && timeout > 0) return connect_to(argv[2], port, timeout);
  }
  return usage();
}
