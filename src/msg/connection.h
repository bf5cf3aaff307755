// A framed message connection over a stream (a Unix or TCP socket, or a
// TLS stream over TCP, asio::ssl::stream): sends
// its greeting and checks the peer's (docs/protocols/messages.md), then
// reads frames, decodes them, hands each Message to on_message; queues
// writes. Any decode error closes this one connection and never anything
// else.
#pragma once

#include <algorithm>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/write.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

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
  // Why it closed (set as it closes, before on_close runs); empty text
  // while open.
  virtual const Error& close_reason() const = 0;
  virtual size_t queued_bytes() const = 0;
  // Bytes received so far, and whether a frame (or the greeting) has begun
  // and not yet arrived whole: a broker drops a peer that stops half way.
  virtual uint64_t bytes_received() const = 0;
  virtual bool has_partial_frame() const = 0;
  // The bytes it holds: output not yet written and the part of a frame
  // that has not arrived whole (what a MemoryBudget counts).
  virtual size_t held_bytes() const = 0;
  // Closes it because its budget is spent, saying what it held.
  virtual void drop_over_budget() = 0;

  std::function<void(Message&&)> on_message;
  // Why the connection ended: ECONNRESET for EOF, EPROTO for a bad frame…
  std::function<void(const Error&)> on_close;
};

// Past this much unsent output a peer is too slow to keep; drop it.
inline constexpr size_t kMaxQueuedBytes = size_t{256} << 20;

// The memory many connections hold together (a broker's clients): the
// output queued for each and what each has sent of a frame not yet whole.
// Past `limit`, the connections holding the most are dropped until the
// total is back under it, so N clients that never read, or that send most
// of a frame and then trickle, cannot hold N times a connection's cap.
// Shared by its connections, which may outlive their broker on the loop.
// Not thread-safe: one loop.
class MemoryBudget {
 public:
  explicit MemoryBudget(size_t limit) : limit_(limit) {}
  size_t limit() const { return limit_; }
  size_t used() const { return used_; }
  size_t connections() const { return members_.size(); }

  void join(Connection* c) { members_.push_back(c); }
  // `c` is closed or gone; the `held` bytes it was counted for go too.
  void leave(Connection* c, size_t held) {
    auto it = std::find(members_.begin(), members_.end(), c);
    if (it == members_.end()) return;
    *it = members_.back();
    members_.pop_back();
    used_ -= held;
  }
  // A member now holds `now` bytes where it held `before`.
  void update(size_t before, size_t now) {
    used_ = used_ - before + now;
    if (used_ > limit_) enforce();
  }

 private:
  void enforce() {
    if (enforcing_) return;  // a drop updates the count as it closes
    enforcing_ = true;
    while (used_ > limit_) {
      Connection* most = nullptr;
      for (Connection* c : members_) {
        if (!most || c->held_bytes() > most->held_bytes()) most = c;
      }
      if (!most) break;
      most->drop_over_budget();  // leaves the budget
    }
    enforcing_ = false;
  }

  size_t limit_;
  size_t used_ = 0;
  std::vector<Connection*> members_;
  bool enforcing_ = false;
};

template <typename Socket>
class StreamConnection final : public Connection, public std::enable_shared_from_this<StreamConnection<Socket>> {
 public:
  // `self` is the role this end greets with, `peer` the role the other
  // end must greet with. `budget` (optional) bounds the memory held
  // across connections.
  StreamConnection(Socket socket, PeerRole self, PeerRole peer, std::shared_ptr<MemoryBudget> budget = nullptr)
      : socket_(std::move(socket)), self_(self), budget_(std::move(budget)) {
    decoder_.expect_greeting(peer);
    if (budget_) budget_->join(this);
  }
  ~StreamConnection() override {
    if (budget_) budget_->leave(this, accounted_);
  }

  void start() override {
    pending_ = encode_greeting(self_);
    flush();
    read_more();
  }

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
  const Error& close_reason() const override { return close_reason_; }
  size_t queued_bytes() const override { return pending_.size() + writing_.size(); }
  uint64_t bytes_received() const override { return received_; }
  bool has_partial_frame() const override { return decoder_.partial(); }
  size_t held_bytes() const override { return queued_bytes() + decoder_.buffered(); }
  void drop_over_budget() override {
    size_t out = queued_bytes(), in = decoder_.buffered();
    shutdown(Error{ENOBUFS, in > out
                                ? "peer holds " + std::to_string(in >> 20) + " MiB of a message it does not finish"
                                : "peer does not read its messages (" + std::to_string(out >> 20) + " MiB unsent)"});
  }
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
    received_ += n;
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
    account();  // what is left of a frame counts until it is whole
    if (!closed_) read_more();
  }

  // Keeps the budget's count of this connection's bytes current (which may
  // drop this connection, or others holding more).
  void account() {
    if (!budget_ || closed_) return;
    size_t before = accounted_;
    accounted_ = held_bytes();
    budget_->update(before, accounted_);
  }

  void flush() {
    if (pending_.size() > kMaxQueuedBytes) {
      shutdown(
          Error{ENOBUFS, "peer does not read its messages (" + std::to_string(queued_bytes() >> 20) + " MiB unsent)"});
      return;
    }
    account();
    if (closed_ || writing_active_ || pending_.empty()) return;
    writing_.swap(pending_);
    writing_active_ = true;
    asio::async_write(socket_, asio::buffer(writing_),
                      [self = this->shared_from_this()](const std::error_code& ec, size_t) {
                        self->writing_active_ = false;
                        self->writing_.clear();
                        self->account();
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
    close_reason_ = why;
    std::error_code ignored;
    // lowest_layer: the socket itself, or the one under a TLS stream
    // (closed without a TLS close_notify: the peer is gone or unwanted).
    socket_.lowest_layer().shutdown(asio::socket_base::shutdown_both, ignored);
    socket_.lowest_layer().close(ignored);
    pending_.clear();
    if (budget_) {
      budget_->leave(this, accounted_);
      accounted_ = 0;
    }
    // Run on_close from the loop, not from inside the caller's stack.
    asio::post(socket_.get_executor(), [self = this->shared_from_this(), why = std::move(why)] {
      auto fn = std::move(self->on_close);
      self->on_message = nullptr;
      if (fn) fn(why);
    });
  }

  Socket socket_;
  PeerRole self_;
  std::shared_ptr<MemoryBudget> budget_;
  size_t accounted_ = 0;  // this connection's bytes in budget_'s count
  uint64_t received_ = 0;
  FrameDecoder decoder_;
  char rbuf_[65536];
  std::string pending_;
  std::string writing_;
  bool writing_active_ = false;
  bool closed_ = false;
  Error close_reason_{0, ""};
};

using UnixConnection = StreamConnection<asio::local::stream_protocol::socket>;
using TcpConnection = StreamConnection<asio::ip::tcp::socket>;

}  // namespace loom
