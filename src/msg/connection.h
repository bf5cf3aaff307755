// A framed message connection over a stream socket (Unix or TCP): reads
// frames, decodes them, hands each Message to on_message; queues writes.
// Any decode error closes this one connection and never anything else.
#pragma once

#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/write.hpp>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "msg/codec.h"
#include "msg/message.h"

namespace loom {

class Connection {
 public:
  virtual ~Connection() = default;
  virtual void start() = 0;
  virtual void send(const Message& m) = 0;
  // Sends bytes that are already one or more encoded frames.
  virtual void send_encoded(std::string_view frames) = 0;
  // Closes now; on_close runs once, later, from the event loop.
  virtual void close() = 0;
  virtual bool is_open() const = 0;
  virtual size_t queued_bytes() const = 0;

  std::function<void(Message&&)> on_message;
  // Why the connection ended: ECONNRESET for EOF, EPROTO for a bad frame…
  std::function<void(const Error&)> on_close;
};

// Past this much unsent output a peer is too slow to keep; drop it.
inline constexpr size_t kMaxQueuedBytes = size_t{512} << 20;

template <typename Socket>
class StreamConnection final : public Connection, public std::enable_shared_from_this<StreamConnection<Socket>> {
 public:
  explicit StreamConnection(Socket socket) : socket_(std::move(socket)) {}

  void start() override { read_more(); }

  void send(const Message& m) override {
    if (closed_) return;
    encode_message(m, pending_);
    flush();
  }
  void send_encoded(std::string_view frames) override {
    if (closed_) return;
    pending_.append(frames);
    flush();
  }

  void close() override { shutdown(Error{ECONNRESET, "closed locally"}); }
  bool is_open() const override { return !closed_; }
  size_t queued_bytes() const override { return pending_.size() + writing_.size(); }
  Socket& socket() { return socket_; }

 private:
  void read_more() {
    socket_.async_read_some(
        asio::buffer(rbuf_, sizeof rbuf_),
        [self = this->shared_from_this()](const std::error_code& ec, size_t n) { self->on_read(ec, n); });
  }

  void on_read(const std::error_code& ec, size_t n) {
    if (closed_) return;
    if (ec) {
      shutdown(Error{ECONNRESET, ec == asio::error::eof ? "peer closed the connection" : ec.message()});
      return;
    }
    decoder_.feed(rbuf_, n);
    auto keep = this->shared_from_this();  // a handler may drop the last owner
    while (!closed_) {
      auto next = decoder_.next();
      if (!next.ok()) {
        shutdown(next.error());
        return;
      }
      if (!next->has_value()) break;
      if (on_message) on_message(std::move(**next));
    }
    if (!closed_) read_more();
  }

  void flush() {
    if (pending_.size() > kMaxQueuedBytes) {
      shutdown(Error{ENOBUFS, "peer does not read its messages"});
      return;
    }
    if (writing_active_ || pending_.empty()) return;
    writing_.swap(pending_);
    writing_active_ = true;
    asio::async_write(socket_, asio::buffer(writing_),
                      [self = this->shared_from_this()](const std::error_code& ec, size_t) {
                        self->writing_active_ = false;
                        self->writing_.clear();
                        if (ec) {
                          self->shutdown(Error{ECONNRESET, ec.message()});
                          return;
                        }
                        self->flush();
                      });
  }

  void shutdown(Error why) {
    if (closed_) return;
    closed_ = true;
    std::error_code ignored;
    socket_.shutdown(Socket::shutdown_both, ignored);
    socket_.close(ignored);
    pending_.clear();
    // Run on_close from the loop, not from inside the caller's stack.
    asio::post(socket_.get_executor(), [self = this->shared_from_this(), why = std::move(why)] {
      auto fn = std::move(self->on_close);
      self->on_message = nullptr;
      if (fn) fn(why);
    });
  }

  Socket socket_;
  FrameDecoder decoder_;
  char rbuf_[65536];
  std::string pending_;
  std::string writing_;
  bool writing_active_ = false;
  bool closed_ = false;
};

using UnixConnection = StreamConnection<asio::local::stream_protocol::socket>;
using TcpConnection = StreamConnection<asio::ip::tcp::socket>;

}  // namespace loom
