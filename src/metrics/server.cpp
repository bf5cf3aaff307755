// The HTTP side of the metrics endpoint (docs/metrics.md): one request per
// connection, `GET /metrics`, answered and closed. Everything a client
// sends is bounded: at most max_request_bytes of request line and
// headers, within request_timeout, and at most max_connections at once;
// a client over a bound is closed (with 431 for headers too large, when
// it can be told), so that a broken or slow scraper costs the broker a
// socket and a few kilobytes, never a wait.
#include <spdlog/spdlog.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>
#include <cctype>
#include <memory>
#include <optional>
#include <set>

#include "base/clock.h"
#include "metrics/metrics.h"
#include "msg/payload.h"

namespace loom {

namespace {

// Opens `acceptor` on `address` and listens; the error says why not.
Status open_acceptor(asio::ip::tcp::acceptor& a, const std::string& address) {
  auto addr = parse_listen_address(address);
  if (!addr.ok()) return Error{EINVAL, address + ": " + addr.error().text};
  std::error_code ec;
  auto ip = asio::ip::make_address(addr->host == "localhost" ? "127.0.0.1" : addr->host, ec);
  asio::ip::tcp::endpoint ep(ip, addr->port);
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Error{ec.value(), "cannot listen on " + address + ": " + ec.message()};
  return {};
}

}  // namespace

Status check_listen_address(const std::string& address) {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io);
  return open_acceptor(a, address);
}

struct MetricsServer::Impl {
  struct Conn {
    explicit Conn(asio::ip::tcp::socket s) : sock(std::move(s)) {}
    asio::ip::tcp::socket sock;
    std::string in;
    std::string out;
    std::unique_ptr<Timer> deadline;
    char buf[1024];
    bool answering = false;
  };

  Impl(asio::io_context& io, Handle& h, MetricsConfig cfg) : io_(io), h_(h), cfg_(std::move(cfg)), acceptor_(io) {}

  void accept() {
    acceptor_.async_accept([this, alive = std::weak_ptr<int>(alive_)](std::error_code ec, asio::ip::tcp::socket s) {
      if (alive.expired()) return;
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        // Out of file descriptors, say: an accept failing at once would
        // spin; try again a little later.
        spdlog::warn("metrics: accept failed: {}", ec.message());
        accept_retry_->arm(0.1, [this] { accept(); });
        return;
      }
      if (conns_.size() >= cfg_.max_connections) {
        spdlog::debug("metrics: {} scrapes at once already; closing a new one", conns_.size());
        std::error_code ignored;
        s.close(ignored);
      } else {
        start(std::make_shared<Conn>(std::move(s)));
      }
      accept();
    });
  }

  // The connection is owned by conns_ and by the callbacks in flight on it;
  // close() takes it out of conns_, and the last callback frees it.
  void start(const std::shared_ptr<Conn>& c) {
    conns_.insert(c);
    c->deadline = h_.clock().make_timer();
    c->deadline->arm(cfg_.request_timeout, [this, weak = std::weak_ptr<Conn>(c)] {
      if (auto c = weak.lock()) close(c);
    });
    read(c);
  }

  void close(const std::shared_ptr<Conn>& c) {
    std::error_code ignored;
    c->sock.close(ignored);
    if (c->deadline) c->deadline->cancel();
    conns_.erase(c);
  }

  void read(const std::shared_ptr<Conn>& c) {
    c->sock.async_read_some(asio::buffer(c->buf),
                            [this, c, alive = std::weak_ptr<int>(alive_)](std::error_code ec, size_t n) {
                              if (alive.expired() || !conns_.count(c) || c->answering) return;
                              if (ec) return close(c);
                              c->in.append(c->buf, n);
                              auto end = c->in.find("\r\n\r\n");
                              if (end == std::string::npos) end = c->in.find("\n\n");
                              if (end == std::string::npos) {
                                if (c->in.size() > cfg_.max_request_bytes)
                                  return reply(c, 431, "text/plain", "request headers too large\n");
                                return read(c);
                              }
                              if (end > cfg_.max_request_bytes)
                                return reply(c, 431, "text/plain", "request headers too large\n");
                              handle(c, c->in.substr(0, end));
                            });
  }

  void handle(const std::shared_ptr<Conn>& c, const std::string& head) {
    auto eol = head.find('\n');
    std::string line = head.substr(0, eol);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    // METHOD SP TARGET SP HTTP/1.x
    auto sp1 = line.find(' ');
    auto sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
    if (sp2 == std::string::npos || !line.substr(sp2 + 1).starts_with("HTTP/1.")) {
      return reply(c, 400, "text/plain", "bad request\n");
    }
    std::string method = line.substr(0, sp1);
    std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string path = target.substr(0, target.find('?'));
    if (path != "/metrics") return reply(c, 404, "text/plain", "only /metrics is here\n");
    if (method != "GET" && method != "HEAD") return reply(c, 405, "text/plain", "only GET\n");
    // OpenMetrics unless the client asks for the older text format alone.
    std::string lower;
    for (char ch : head) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    bool openmetrics = true;
    if (auto a = lower.find("\naccept:"); a != std::string::npos) {
      std::string accept = lower.substr(a, lower.find('\n', a + 1) - a);
      openmetrics = accept.find("application/openmetrics-text") != std::string::npos ||
                    accept.find("text/plain") == std::string::npos;
    }
    c->answering = true;
    // From here the services' time counts, and then the client's to read.
    c->deadline->arm(cfg_.gather_timeout + cfg_.request_timeout, [this, weak = std::weak_ptr<Conn>(c)] {
      if (auto c = weak.lock()) close(c);
    });
    gather([this, c, openmetrics, head_only = method == "HEAD"](const MetricsSources& s) {
      if (!conns_.count(c)) return;  // timed out meanwhile
      std::string body = render_metrics(s, openmetrics);
      reply(c, 200,
            openmetrics ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                        : "text/plain; version=0.0.4; charset=utf-8",
            head_only ? std::string() : body, body.size());
    });
  }

  void reply(const std::shared_ptr<Conn>& c, int code, const std::string& type, const std::string& body,
             std::optional<size_t> length = std::nullopt) {
    const char* reason = code == 200   ? "OK"
                         : code == 400 ? "Bad Request"
                         : code == 404 ? "Not Found"
                         : code == 405 ? "Method Not Allowed"
                                       : "Request Header Fields Too Large";
    c->answering = true;
    c->out = "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + type +
             "\r\nContent-Length: " + std::to_string(length.value_or(body.size())) + "\r\nConnection: close\r\n\r\n" +
             body;
    // The deadline still runs: a client that does not read its answer is
    // closed like one that does not send its request.
    asio::async_write(c->sock, asio::buffer(c->out),
                      [this, c, alive = std::weak_ptr<int>(alive_)](std::error_code ec, size_t) {
                        if (alive.expired() || !conns_.count(c)) return;
                        if (ec) return close(c);
                        std::error_code ignored;
                        c->sock.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
                        drain(c);
                      });
  }

  // After the answer: reads and drops what the client still sends until
  // it closes (or the deadline), because closing with unread bytes would
  // reset the connection and could destroy the answer before it is read
  // (a refused request whose headers go on).
  void drain(const std::shared_ptr<Conn>& c) {
    c->sock.async_read_some(asio::buffer(c->buf),
                            [this, c, alive = std::weak_ptr<int>(alive_)](std::error_code ec, size_t) {
                              if (alive.expired() || !conns_.count(c)) return;
                              if (ec) return close(c);
                              drain(c);
                            });
  }

  // Asks every source at once; `done` runs once all have answered or failed.
  void gather(std::function<void(const MetricsSources&)> done) {
    struct Pending {
      MetricsSources s;
      int left = 5;
      std::function<void(const MetricsSources&)> done;
    };
    auto p = std::make_shared<Pending>();
    p->done = std::move(done);
    auto ask = [this, p, alive = std::weak_ptr<int>(alive_)](const char* topic, Json MetricsSources::*field) {
      h_.rpc(topic, "{}", RpcOptions{kNodeAny, false, cfg_.gather_timeout}, [p, field, alive, topic](const Message& r) {
        if (alive.expired()) return;
        if (!r.errnum) {
          auto j = payload_object(r);
          if (j.ok()) p->s.*field = std::move(*j);
        } else {
          spdlog::debug("metrics: {} did not answer: {}", topic, error_text(r));
        }
        if (--p->left == 0) p->done(p->s);
      });
    };
    ask("job-manager.stats", &MetricsSources::job_manager);
    ask("sched.resource-status", &MetricsSources::sched);
    ask("kvs.stats", &MetricsSources::kvs);
    ask("broker.status", &MetricsSources::broker_status);
    ask("broker.info", &MetricsSources::broker_info);
  }

  asio::io_context& io_;
  Handle& h_;
  MetricsConfig cfg_;
  asio::ip::tcp::acceptor acceptor_;
  std::unique_ptr<Timer> accept_retry_ = h_.clock().make_timer();
  std::set<std::shared_ptr<Conn>> conns_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

Result<std::unique_ptr<MetricsServer>> MetricsServer::create(asio::io_context& io, Handle& h, MetricsConfig cfg) {
  auto impl = std::make_unique<Impl>(io, h, std::move(cfg));
  if (auto st = open_acceptor(impl->acceptor_, impl->cfg_.listen); !st) return st.error();
  impl->accept();
  std::unique_ptr<MetricsServer> server(new MetricsServer(std::move(impl)));
  h.add_method("metrics.info", Access::kUser, [&h, s = server.get()](const Message& req) {
    h.respond(req, Json{{"listen", s->address()}});
  });
  spdlog::info("metrics: serving http://{}/metrics", server->address());
  return server;
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() {
  for (const auto& c : std::set(impl_->conns_)) impl_->close(c);
}

std::string MetricsServer::address() const {
  std::error_code ec;
  auto ep = impl_->acceptor_.local_endpoint(ec);
  if (ec) return impl_->cfg_.listen;
  std::string host = ep.address().to_string();
  if (ep.address().is_v6()) host = "[" + host + "]";
  return host + ":" + std::to_string(ep.port());
}

}  // namespace loom
