// The overlay tree between hosts (docs/deploy.md): the links of
// overlay.cpp over TCP and TLS 1.3 (src/tls) instead of Unix sockets.
//
// A broker with children listens on bind:port. A child resolves its
// parent's host name, connects to that port and does the TLS handshake,
// all within frame_timeout, retrying with a growing pause (up to 2 s)
// while the parent is not there: brokers may start in any order, and a
// broker whose parent link drops (the parent restarted, a cable pulled)
// keeps trying, so that it rejoins by itself when the parent is back.
//
// Both ends verify the other's certificate against the instance's CA
// (tls::server_context/client_context). The child then checks that its
// parent's certificate names the parent's host; the parent checks, when
// `overlay.hello {"rank": R}` arrives, that the child's names the host of
// rank R. A peer refused at any step gets nothing more, and the refusal
// is one log line naming the peer and why. After the handshake the link
// speaks the protocol of overlay.cpp (greeting, hello, heartbeats).
//
// A broker joins its children to the instance only through its own link
// to the parent: a child's hello that comes first waits for that link,
// and when the parent link is lost the children's links are closed, so
// that the whole subtree (announced lost by the parent) reconnects and
// comes back online once this broker is back.
//
// A hello for a rank that already has a link replaces it: the old link is
// the broker's previous life (it restarted, or its host came back before
// the old link timed out). The old rank is announced lost first, so that
// its jobs end, then the new link comes up and the rank is online again.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <asio/connect.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl.hpp>

#include "broker/broker.h"
#include "tls/tls.h"

namespace loom {

namespace {
using TlsConnection = StreamConnection<tls::TlsStream>;

// The longest pause between two attempts to reach the parent.
constexpr double kMaxReconnectPause = 2.0;
// TLS handshakes under way at once on a broker's overlay port.
constexpr size_t kMaxHandshakes = 64;
// Seconds between two log lines about connections refused beyond it.
constexpr double kHandshakeLogPeriod = 60;
}  // namespace

Status Broker::start_tcp_overlay() {
  const auto& h = *cfg_.hosts;
  if (h.names.size() != cfg_.size) {
    return Error{EINVAL, "the overlay has " + std::to_string(h.names.size()) + " hosts for " +
                             std::to_string(cfg_.size) + " ranks"};
  }
  tls::Files files{h.ca, h.cert, h.key};
  // A certificate every peer would refuse: say so now, not at each link.
  if (auto st = tls::check_own_certificate(files); !st) return st;
  if (!topo_.children(cfg_.rank).empty()) {
    auto ctx = tls::server_context(files);
    if (!ctx.ok()) return ctx.error();
    tls_server_ = std::move(*ctx);
    std::error_code ec;
    auto addr = asio::ip::make_address(h.bind, ec);
    if (ec) {
      // A host name (this host's name on one network): its first address.
      asio::ip::tcp::resolver resolver(io_);
      auto found = resolver.resolve(h.bind, std::to_string(h.port), ec);
      if (ec || found.empty()) {
        return Error{EINVAL, "bootstrap.bind " + h.bind +
                                 ": cannot resolve it: " + (ec ? ec.message() : std::string("no address"))};
      }
      addr = found.begin()->endpoint().address();
      // A host's own name may stand for a loopback address in its
      // /etc/hosts (Debian's 127.0.1.1): the other hosts could not reach it.
      if (addr.is_loopback() && cfg_.size > 1) {
        return Error{EINVAL, "bootstrap.bind " + h.bind + " resolves to " + addr.to_string() +
                                 ", which the other hosts cannot reach; name an address they can, or use 0.0.0.0"};
      }
    }
    asio::ip::tcp::endpoint ep(addr, h.port);
    std::string where = h.bind + ":" + std::to_string(h.port);
    tcp_acceptor_ = std::make_unique<asio::ip::tcp::acceptor>(io_);
    tcp_acceptor_->open(ep.protocol(), ec);
    if (!ec) tcp_acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) tcp_acceptor_->bind(ep, ec);
    if (!ec) tcp_acceptor_->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Error{EADDRINUSE, "cannot listen for child brokers on " + where + ": " + ec.message()};
    accept_tcp_child();
  }
  if (cfg_.rank != 0) {
    auto ctx = tls::client_context(files);
    if (!ctx.ok()) return ctx.error();
    tls_client_ = std::move(*ctx);
  }
  return {};
}

void Broker::accept_tcp_child() {
  tcp_acceptor_->async_accept([this](const std::error_code& ec, asio::ip::tcp::socket sock) {
    if (ec == asio::error::operation_aborted || !tcp_acceptor_->is_open()) return;
    if (ec) return accept_failed(overlay_gate_, ec, [this] { accept_tcp_child(); });
    accept_succeeded(overlay_gate_);
    if (!shutting_down_) on_tcp_connection(std::move(sock));
    accept_tcp_child();
  });
}

void Broker::on_tcp_connection(asio::ip::tcp::socket sock) {
  std::error_code ignored;
  // A broker has a few children; many connections that have not finished
  // their handshake are someone holding descriptors and TLS state for
  // nothing. Beyond the cap, new ones are closed at once, with at most one
  // log line a minute saying how many were.
  if (handshaking_ >= kMaxHandshakes) {
    ++handshakes_refused_;
    if (clock_.now() >= handshake_log_after_) {
      handshake_log_after_ = clock_.now() + kHandshakeLogPeriod;
      auto from = sock.remote_endpoint(ignored);
      spdlog::warn(
          "refused {} TCP connection(s) to the overlay (the latest from {}): {} TLS handshakes are already "
          "under way",
          handshakes_refused_, from.address().to_string(), kMaxHandshakes);
      handshakes_refused_ = 0;
    }
    sock.close(ignored);
    return;
  }
  // Frames go out as soon as they are written (a loop turn's worth at
  // once): Nagle's wait for the peer's delayed ACK would add up to 40 ms
  // to each message that follows a small one.
  sock.set_option(asio::ip::tcp::no_delay(true), ignored);
  struct Pending {
    std::string label;
    std::unique_ptr<tls::TlsStream> stream;
    std::unique_ptr<Timer> deadline;
    bool timed_out = false;
  };
  auto pend = std::make_shared<Pending>();
  pend->stream = std::make_unique<tls::TlsStream>(std::move(sock), *tls_server_);
  pend->label = tls::peer_label(*pend->stream);
  pend->deadline = clock_.make_timer();
  // A peer that says nothing (a plain TCP client, a stalled broker) holds
  // a descriptor for nothing: dropped, and it never hears from us.
  pend->deadline->arm(cfg_.frame_timeout, [w = std::weak_ptr<Pending>(pend)] {
    if (auto p = w.lock()) {
      p->timed_out = true;
      std::error_code ignored;
      p->stream->lowest_layer().close(ignored);
    }
  });
  ++handshaking_;
  pend->stream->async_handshake(asio::ssl::stream_base::server, [this, pend](const std::error_code& ec) {
    pend->deadline->cancel();
    --handshaking_;
    if (shutting_down_) return;
    if (pend->timed_out) {
      spdlog::warn("refusing a broker: TLS peer {}: no TLS handshake within {}s", pend->label, cfg_.frame_timeout);
      return;
    }
    if (ec) {
      spdlog::warn("refusing a broker: {}", tls::failure(pend->stream->native_handle(), ec, pend->label).text);
      return;
    }
    Peer& p = add_peer(PeerKind::kChild);
    p.uid = ::getuid();  // a broker of this instance: as the owner
    p.label = pend->label;
    attach_connection(
        p, std::make_shared<TlsConnection>(std::move(*pend->stream), PeerRole::kOverlay, PeerRole::kOverlay));
  });
}

bool Broker::hello_from_host(Peer& p, uint32_t rank) {
  if (!cfg_.hosts) return true;
  auto* tc = dynamic_cast<TlsConnection*>(p.conn.get());
  Status st = tc ? tls::peer_is(tc->socket().native_handle(), cfg_.hosts->names[rank], p.label)
                 : Status{Error{EPERM, "not a TLS link"}};
  if (!st) {
    spdlog::warn("refusing a broker claiming rank {}: {}", rank, st.error().text);
    return false;
  }
  return true;
}

void Broker::connect_tcp_parent(int attempt) {
  uint32_t parent = *topo_.parent(cfg_.rank);
  std::string host = cfg_.hosts->names[parent];  // whose certificate it must have
  // Where it listens (bootstrap.bind with "{host}"), else its name.
  std::string address = parent < cfg_.hosts->addresses.size() ? cfg_.hosts->addresses[parent] : host;
  struct Attempt {
    asio::ip::tcp::resolver resolver;
    std::unique_ptr<tls::TlsStream> stream;
    std::unique_ptr<Timer> deadline;
    bool timed_out = false;
  };
  auto a = std::make_shared<Attempt>(Attempt{asio::ip::tcp::resolver(io_), nullptr, clock_.make_timer()});
  a->stream = std::make_unique<tls::TlsStream>(io_, *tls_client_);
  a->deadline->arm(cfg_.frame_timeout, [w = std::weak_ptr<Attempt>(a)] {
    if (auto p = w.lock()) {
      p->timed_out = true;
      p->resolver.cancel();
      std::error_code ignored;
      p->stream->lowest_layer().close(ignored);
    }
  });
  std::string where = address + ":" + std::to_string(cfg_.hosts->port);
  auto fail = [this, a, attempt, where](const std::string& why) {
    a->deadline->cancel();
    if (shutting_down_) return;
    retry_tcp_parent(attempt,
                     a->timed_out ? where + ": no answer within " + std::to_string(cfg_.frame_timeout) + "s" : why);
  };
  a->resolver.async_resolve(
      address, std::to_string(cfg_.hosts->port),
      [this, a, fail, host, address, where](const std::error_code& ec,
                                            const asio::ip::tcp::resolver::results_type& results) {
        if (ec) return fail("cannot resolve " + address + ": " + ec.message());
        asio::async_connect(
            a->stream->lowest_layer(), results,
            [this, a, fail, host, where](const std::error_code& cec, const asio::ip::tcp::endpoint&) {
              if (cec) return fail("cannot connect to " + where + ": " + cec.message());
              std::error_code ignored;
              a->stream->lowest_layer().set_option(asio::ip::tcp::no_delay(true), ignored);
              a->stream->async_handshake(asio::ssl::stream_base::client, [this, a, fail,
                                                                          host](const std::error_code& hec) {
                if (hec) return fail(tls::failure(*a->stream, hec).text);
                if (auto st = tls::peer_is(*a->stream, host); !st) return fail(st.error().text);
                a->deadline->cancel();
                if (shutting_down_) return;
                if (!parent_wait_reason_.empty()) spdlog::warn("reached the parent broker on {}", host);
                parent_wait_reason_.clear();
                Peer& p = add_peer(PeerKind::kParent);
                p.rank = *topo_.parent(cfg_.rank);
                p.hello = true;
                p.owner = true;
                p.uid = ::getuid();
                p.label = tls::peer_label(*a->stream);
                parent_peer_ = p.id;
                attach_connection(
                    p, std::make_shared<TlsConnection>(std::move(*a->stream), PeerRole::kOverlay, PeerRole::kOverlay));
                p.conn->send(
                    make_request("overlay.hello", dump_json(Json{{"rank", cfg_.rank}}), p.rank, msgflag::kNoResponse));
                builtin_->publish("broker.online", online_payload());
                join_held_children();
                if (parent_link_) parent_link_(true);
              });
            });
      });
}

void Broker::join_held_children() {
  // The children that came first join now, through us, in the order
  // they came, each with what it sent meanwhile.
  std::vector<uint32_t> ids;
  for (auto& [id, p] : peers_) {
    if (p->kind == PeerKind::kChild && p->held_hello) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  for (uint32_t id : ids) {
    Peer* c = find_peer(id);
    if (!c) continue;
    Message hello = std::move(*c->held_hello);
    c->held_hello.reset();
    auto held = std::move(c->held_messages);
    c->held_messages.clear();
    on_overlay_control(*c, hello);
    if (!c->hello) continue;  // refused, and closing
    for (auto& m : held) on_message(id, std::move(m));
  }
}

void Broker::retry_tcp_parent(int attempt, const std::string& why) {
  // One line per reason, not one per attempt: a parent that is not up yet
  // is normal while the hosts start.
  if (why != parent_wait_reason_) {
    spdlog::warn("waiting for the parent broker (rank {}): {}", *topo_.parent(cfg_.rank), why);
    parent_wait_reason_ = why;
  }
  double pause = std::min(kMaxReconnectPause, 0.1 * (1 << std::min(attempt, 5)));
  connect_timer_->arm(pause, [this, attempt] { connect_tcp_parent(attempt + 1); });
}

}  // namespace loom
