// A client's connection to a broker over its local Unix socket, with a
// Handle on top. Used by the CLI, tests, benchmarks and the simulator.
#pragma once

#include <asio/io_context.hpp>
#include <memory>
#include <string>

#include "base/clock.h"
#include "base/result.h"
#include "msg/connection.h"
#include "msg/handle.h"

namespace loom {

class Client {
 public:
  // Connects to `uri` ("local://PATH" or a plain path). Credentials from
  // LOOM_HANDLE_USERID / LOOM_HANDLE_ROLEMASK go on every message (the
  // broker honours them only for the instance owner).
  static Result<std::unique_ptr<Client>> connect(asio::io_context& io, Clock& clock, const std::string& uri);
  ~Client();

  Handle& handle() { return *handle_; }
  bool is_open() const { return conn_ && conn_->is_open(); }
  void close();
  // "lost the connection to the broker", with the reason once it closed
  // (a refused greeting says what the other end was).
  std::string lost_text() const;
  // The uid of the process that accepted the connection (SO_PEERCRED):
  // whoever listens at a path is not necessarily the broker one expects.
  uint32_t peer_uid() const { return peer_uid_; }
  // Runs when the broker closes the connection (after in-flight RPCs fail).
  std::function<void(const Error&)> on_close;

  // Blocking helpers for command-line tools: run the loop until the answer.
  // A single-response RPC; an error response becomes an Error.
  Result<Json> call(const std::string& topic, const Json& payload, RpcOptions opts = {});
  Result<std::string> call_raw(const std::string& topic, const std::string& payload, RpcOptions opts = {});

 private:
  explicit Client(asio::io_context& io) : io_(io) {}
  asio::io_context& io_;
  std::shared_ptr<UnixConnection> conn_;  // shared with Asio handlers in flight
  std::unique_ptr<Handle> handle_;
  uint32_t peer_uid_ = kUserIdUnknown;
};

// The socket path in a URI: "local:///run/x.sock" → "/run/x.sock".
Result<std::string> uri_to_path(const std::string& uri);

}  // namespace loom
