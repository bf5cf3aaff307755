// Talking to a broker from a test: loom::Client on a Loop (an io_context
// and a real clock) that runs until a condition holds or a deadline
// passes, and RawConn, a bare Unix socket for hostile input.
//
// Several clients may share one Loop, so that a service provider answers
// while a requester on the same loop waits.
#pragma once

#include <asio/io_context.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/result.h"
#include "msg/client.h"
#include "msg/codec.h"
#include "msg/handle.h"
#include "msg/json.h"

namespace loom::test {

class Loop {
 public:
  Loop();
  asio::io_context& io() { return io_; }
  Clock& clock() { return *clock_; }
  // Connects a client to a socket path or local:// URI.
  Result<std::unique_ptr<Client>> connect(const std::string& path);
  // Runs handlers until pred() holds or `timeout` seconds pass; returns pred().
  bool run_until(const std::function<bool()>& pred, double timeout = 10);
  // Runs handlers until `fd` is readable (or hung up) or `timeout` passes.
  bool run_until_readable(int fd, double timeout = 10);
  // Runs whatever is ready now, without waiting.
  void poll();

 private:
  asio::io_context io_;
  std::unique_ptr<Clock> clock_;
};

struct Reply {
  int errnum = ETIMEDOUT;
  std::string payload;
  std::string errstr;  // error_text() of an error response
  uint32_t seq = 0;
  Json json() const;  // the payload parsed ({} when empty, null when not JSON)
};

// One single-response RPC, waiting on `loop` up to `timeout` seconds (then
// the RPC is cancelled and the Reply says ETIMEDOUT, errstr "test deadline").
Reply call(Loop& loop, Handle& h, const std::string& topic, const std::string& payload = "{}", RpcOptions opts = {},
           double timeout = 10);
inline Reply call(Loop& loop, Client& c, const std::string& topic, const std::string& payload = "{}",
                  RpcOptions opts = {}, double timeout = 10) {
  return call(loop, c.handle(), topic, payload, opts, timeout);
}

// Subscribes `h` to `prefix` and waits until the broker confirmed it.
bool subscribe(Loop& loop, Handle& h, const std::string& prefix, EventFn fn, double timeout = 10);

// Four bytes little-endian, as the frame's length and header fields are.
std::string u32le(uint32_t v);
// A request with a matchtag, for bare connections.
Message request(const std::string& topic, std::string payload, uint32_t matchtag, uint32_t nodeid = kNodeAny,
                uint8_t flags = 0);

// A bare connection to a broker's Unix socket: write any bytes, read frames.
// It greets as a client first and reads past the broker's greeting, unless
// told not to (to send the broker something else first).
class RawConn {
 public:
  static Result<RawConn> connect(const std::string& path, bool greet = true);
  // The broker's end of a client's connection: accepts one on the listening
  // Unix socket `listen_fd` (waiting up to `timeout`), greets it as a
  // broker does and expects a client's greeting. For tests that play the
  // broker to a command.
  static Result<RawConn> accept(int listen_fd, double timeout = 10);
  RawConn(RawConn&& o) noexcept : fd_(o.fd_), closed_(o.closed_), decoder_(std::move(o.decoder_)) { o.fd_ = -1; }
  RawConn& operator=(RawConn&& o) noexcept;
  ~RawConn();

  int fd() const { return fd_; }
  // Writes all of `bytes` (waiting for buffer space up to `timeout`).
  // False if the peer closed or the deadline passed.
  bool write(std::string_view bytes, double timeout = 10);
  bool send(const Message& m, double timeout = 10) { return write(encode_message(m), timeout); }
  // The next whole message, or nullopt at the deadline or when closed
  // (closed() then says which).
  std::optional<Message> recv(double timeout = 10);
  // The same, running `loop` while it waits (for services on that loop).
  std::optional<Message> recv(Loop& loop, double timeout = 10);
  // Reads and discards until the peer closes; true if it did in time.
  bool wait_closed(double timeout = 10);
  bool closed() const { return closed_; }
  void shutdown_write();
  void close();

 private:
  explicit RawConn(int fd) : fd_(fd) {}
  // Reads what is available, waiting up to the deadline. False when closed
  // or timed out.
  bool read_some(double deadline, Loop* loop = nullptr);
  std::optional<Message> recv_impl(double timeout, Loop* loop);
  int fd_ = -1;
  bool closed_ = false;
  FrameDecoder decoder_;
};

}  // namespace loom::test
