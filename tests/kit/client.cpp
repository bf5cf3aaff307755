#include "kit/client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <chrono>
#include <cmath>
#include <cstring>

#include "kit/process.h"

namespace loom::test {

Loop::Loop() : clock_(make_real_clock(io_)) {}

Result<std::unique_ptr<Client>> Loop::connect(const std::string& path) { return Client::connect(io_, *clock_, path); }

bool Loop::run_until(const std::function<bool()>& pred, double timeout) {
  double deadline = monotonic_now() + timeout;
  // A loop that ran out of work earlier stays stopped until restarted,
  // though work (a connection, a timer) may have been added since.
  if (io_.stopped()) io_.restart();
  while (!pred()) {
    double left = deadline - monotonic_now();
    if (left <= 0) return pred();
    auto n = io_.run_one_for(std::chrono::microseconds(static_cast<int64_t>(left * 1e6) + 1));
    if (n == 0 && io_.stopped()) {
      // Out of work: nothing can change any more.
      io_.restart();
      return pred();
    }
  }
  return true;
}

bool Loop::run_until_readable(int fd, double timeout) {
  // A duplicate, so that the descriptor object may close what it owns.
  asio::posix::stream_descriptor d(io_, ::dup(fd));
  bool ready = false;
  d.async_wait(asio::posix::stream_descriptor::wait_read, [&ready](const std::error_code&) { ready = true; });
  bool ok = run_until([&] { return ready; }, timeout);
  if (!ok) {
    d.cancel();
    run_until([&] { return ready; }, 5);  // the handler refers to `ready`
  }
  return ok;
}

void Loop::poll() {
  io_.poll();
  if (io_.stopped()) io_.restart();
}

Json Reply::json() const {
  if (payload.empty()) return Json::object();
  auto j = parse_json(payload);
  return j.ok() ? *j : Json(nullptr);
}

Reply call(Loop& loop, Handle& h, const std::string& topic, const std::string& payload, RpcOptions opts,
           double timeout) {
  opts.streaming = false;
  auto out = std::make_shared<std::optional<Reply>>();
  uint32_t tag = h.rpc(topic, payload, opts, [out](const Message& m) {
    Reply r;
    r.errnum = m.errnum;
    r.payload = m.payload;
    r.seq = m.seq;
    if (m.errnum) r.errstr = error_text(m);
    *out = std::move(r);
  });
  if (!loop.run_until([&] { return out->has_value(); }, timeout)) {
    h.cancel_rpc(tag);
    Reply r;
    r.errnum = ETIMEDOUT;
    r.errstr = "test deadline: no response to " + topic;
    return r;
  }
  return **out;
}

bool subscribe(Loop& loop, Handle& h, const std::string& prefix, EventFn fn, double timeout) {
  auto done = std::make_shared<int>(0);  // 0 pending, 1 ok, -1 failed
  h.subscribe(prefix, std::move(fn), [done](const Error* e) { *done = e ? -1 : 1; });
  return loop.run_until([&] { return *done != 0; }, timeout) && *done == 1;
}

// --- RawConn ---

std::string u32le(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

Message request(const std::string& topic, std::string payload, uint32_t matchtag, uint32_t nodeid, uint8_t flags) {
  Message m = make_request(topic, std::move(payload), nodeid, flags);
  m.matchtag = matchtag;
  return m;
}

Result<RawConn> RawConn::connect(const std::string& path_or_uri, bool greet) {
  auto path = uri_to_path(path_or_uri);
  if (!path.ok()) return path.error();
  sockaddr_un addr{};
  if (path->size() >= sizeof addr.sun_path) return Error{ENAMETOOLONG, "path too long"};
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Error{errno, std::strerror(errno)};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path->c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    ::close(fd);
    return Error{e, "connect " + *path + ": " + std::strerror(e)};
  }
  RawConn c(fd);
  c.decoder_.expect_greeting(PeerRole::kBroker);  // it greets whatever we send
  if (greet && !c.write(encode_greeting(PeerRole::kClient))) {
    return Error{ECONNRESET, "the broker closed before our greeting"};
  }
  return c;
}

Result<RawConn> RawConn::accept(int listen_fd, double timeout) {
  pollfd p{listen_fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout * 1000)) != 1) return Error{ETIMEDOUT, "no one connected"};
  int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return Error{errno, std::string("accept: ") + std::strerror(errno)};
  RawConn c(fd);
  c.decoder_.expect_greeting(PeerRole::kClient);
  if (!c.write(encode_greeting(PeerRole::kBroker))) return Error{ECONNRESET, "the client closed before our greeting"};
  return c;
}

RawConn& RawConn::operator=(RawConn&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = o.fd_;
    closed_ = o.closed_;
    decoder_ = std::move(o.decoder_);
    o.fd_ = -1;
  }
  return *this;
}

RawConn::~RawConn() { close(); }

void RawConn::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void RawConn::shutdown_write() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

bool RawConn::write(std::string_view bytes, double timeout) {
  double deadline = monotonic_now() + timeout;
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, remaining_ms(deadline)) == 0) return false;
      continue;
    }
    return false;  // EPIPE, ECONNRESET: the broker closed us
  }
  return true;
}

bool RawConn::read_some(double deadline, Loop* loop) {
  if (closed_ || fd_ < 0) return false;
  while (true) {
    if (loop) {
      if (!loop->run_until_readable(fd_, std::max(0.0, deadline - monotonic_now()))) return false;
    } else {
      pollfd p{fd_, POLLIN, 0};
      int n = ::poll(&p, 1, remaining_ms(deadline));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
    }
    char buf[65536];
    ssize_t k = ::recv(fd_, buf, sizeof buf, 0);
    if (k > 0) {
      decoder_.feed(buf, static_cast<size_t>(k));
      return true;
    }
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    closed_ = true;  // EOF or ECONNRESET
    return false;
  }
}

std::optional<Message> RawConn::recv(double timeout) { return recv_impl(timeout, nullptr); }
std::optional<Message> RawConn::recv(Loop& loop, double timeout) { return recv_impl(timeout, &loop); }

std::optional<Message> RawConn::recv_impl(double timeout, Loop* loop) {
  double deadline = monotonic_now() + timeout;
  while (true) {
    auto next = decoder_.next();
    if (!next.ok()) return std::nullopt;  // the broker sent garbage: a test failure upstream
    if (next->has_value()) return std::move(**next);
    if (!read_some(deadline, loop)) return std::nullopt;
  }
}

bool RawConn::wait_closed(double timeout) {
  double deadline = monotonic_now() + timeout;
  while (!closed_) {
    if (!read_some(deadline) && !closed_) return false;
  }
  return true;
}

}  // namespace loom::test
