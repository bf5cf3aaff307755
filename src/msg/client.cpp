#include "msg/client.h"

#include <sys/socket.h>

#include <cstdlib>

namespace loom {

Result<std::string> uri_to_path(const std::string& uri) {
  constexpr std::string_view kScheme = "local://";
  if (uri.starts_with(kScheme)) return uri.substr(kScheme.size());
  if (uri.find("://") != std::string::npos) return Error{EINVAL, "unsupported URI " + uri + " (want local://PATH)"};
  if (uri.empty()) return Error{EINVAL, "empty URI"};
  return uri;
}

namespace {
Result<uint32_t> env_u32(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return kUserIdUnknown;
  char* end = nullptr;
  unsigned long x = std::strtoul(v, &end, 0);
  if (*end != '\0' || x > 0xFFFFFFFEul) return Error{EINVAL, std::string(name) + " is not a number: " + v};
  return static_cast<uint32_t>(x);
}
}  // namespace

Result<std::unique_ptr<Client>> Client::connect(asio::io_context& io, Clock& clock, const std::string& uri) {
  auto path = uri_to_path(uri);
  if (!path.ok()) return path.error();
  asio::local::stream_protocol::socket sock(io);
  std::error_code ec;
  sock.connect(asio::local::stream_protocol::endpoint(*path), ec);
  if (ec) return Error{ECONNREFUSED, "cannot connect to " + uri + ": " + ec.message()};
  std::unique_ptr<Client> c(new Client(io));
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (::getsockopt(sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) c->peer_uid_ = cred.uid;
  c->conn_ = std::make_shared<UnixConnection>(std::move(sock), PeerRole::kClient, PeerRole::kBroker);
  UnixConnection* raw = c->conn_.get();
  c->handle_ = std::make_unique<Handle>(clock, [raw](const Message& m) { raw->send(m); });
  auto uid = env_u32("LOOM_HANDLE_USERID");
  if (!uid.ok()) return uid.error();
  if (*uid != kUserIdUnknown) {
    auto rm = env_u32("LOOM_HANDLE_ROLEMASK");
    if (!rm.ok()) return rm.error();
    c->handle_->set_credentials(*uid, *rm == kUserIdUnknown ? role::kUser : *rm);
  }
  Client* self = c.get();
  c->conn_->on_message = [self](Message&& m) { self->handle_->dispatch(std::move(m)); };
  c->conn_->on_close = [self](const Error& why) {
    self->handle_->fail_all(ECONNRESET, "lost the connection to the broker: " + why.text);
    if (self->on_close) self->on_close(why);
  };
  c->conn_->start();
  return c;
}

Client::~Client() { close(); }

std::string Client::lost_text() const {
  std::string text = "lost the connection to the broker";
  if (conn_ && !conn_->is_open() && !conn_->close_reason().text.empty()) text += ": " + conn_->close_reason().text;
  return text;
}

void Client::close() {
  if (conn_) {
    conn_->on_close = nullptr;
    conn_->on_message = nullptr;
    conn_->close();
  }
}

Result<std::string> Client::call_raw(const std::string& topic, const std::string& payload, RpcOptions opts) {
  opts.streaming = false;
  bool done = false;
  Result<std::string> out = Error{EIO, "no response"};
  handle_->rpc(topic, payload, opts, [&](const Message& r) {
    done = true;
    if (r.errnum) out = Error{r.errnum, error_text(r)};
    else out = r.payload;
  });
  while (!done) {
    if (io_.run_one() == 0) {
      io_.restart();
      if (!is_open()) return Error{ECONNRESET, lost_text()};
    }
  }
  return out;
}

Result<Json> Client::call(const std::string& topic, const Json& payload, RpcOptions opts) {
  auto raw = call_raw(topic, dump_json(payload), opts);
  if (!raw.ok()) return raw.error();
  if (raw->empty()) return Json::object();
  return parse_json(*raw);
}

}  // namespace loom
