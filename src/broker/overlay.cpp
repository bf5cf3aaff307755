// The overlay tree between brokers.
//
// A child connects to its parent's overlay socket, a Unix socket in the
// instance's private run directory (docs/security.md says why). Each end
// first checks with SO_PEERCRED that the other runs as the broker's own
// uid: anyone else gets nothing (not even a greeting) and one log line.
// Then both greet as overlay peers (docs/protocols/messages.md), and the
// child sends the request `overlay.hello {"rank": R}` (no response); the
// parent accepts it only from one of its own children and only once. Both
// ends then send `overlay.heartbeat` every heartbeat_interval; a link
// silent for heartbeat_timeout is closed. A lost child is announced with
// one `broker.lost {"rank", "reason"}` event per rank of its subtree. A
// broker that loses its parent cannot reach the instance any more and
// stops. `overlay.shutdown` from the parent asks a child to stop (children
// first). A signal to a rank other than 0 asks rank 0 to stop the instance
// (broker.shutdown), so that the stop comes from the top in order.
// Between hosts the links are TCP and TLS instead (overlay_tcp.cpp), and a
// broker that loses its parent reconnects instead of stopping.
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "broker/broker.h"

namespace loom {

namespace {
// The uid and pid at the other end of a Unix socket, or why not.
Result<ucred> peer_credentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Error{errno, std::string("SO_PEERCRED: ") + std::strerror(errno)};
  }
  return cred;
}
}  // namespace

Status Broker::start_overlay() {
  std::error_code ec;
  if (cfg_.hosts) {
    if (auto st = start_tcp_overlay(); !st) return st;
  } else if (!topo_.children(cfg_.rank).empty()) {
    overlay_acceptor_ = std::make_unique<asio::local::stream_protocol::acceptor>(io_);
    if (cfg_.overlay_fd >= 0) {
      overlay_acceptor_->assign(asio::local::stream_protocol(), cfg_.overlay_fd, ec);
      if (ec) return Error{EINVAL, "cannot use overlay socket fd: " + ec.message()};
    } else if (!cfg_.overlay_path.empty()) {
      ::unlink(cfg_.overlay_path.c_str());
      overlay_acceptor_->open(asio::local::stream_protocol(), ec);
      if (!ec) overlay_acceptor_->bind(asio::local::stream_protocol::endpoint(cfg_.overlay_path), ec);
      if (!ec) overlay_acceptor_->listen(asio::socket_base::max_listen_connections, ec);
      if (ec) return Error{EADDRINUSE, "cannot listen for child brokers on " + cfg_.overlay_path + ": " + ec.message()};
      bound_overlay_path_ = cfg_.overlay_path;
    } else {
      return Error{EINVAL, "rank " + std::to_string(cfg_.rank) + " has children but no overlay socket"};
    }
    accept_child();
  }
  heartbeat_timer_ = clock_.make_timer();
  heartbeat_timer_->arm(cfg_.heartbeat_interval, [this] { heartbeat_tick(); });
  if (cfg_.rank == 0) {
    builtin_->publish("broker.online", online_payload());
  } else if (cfg_.hosts) {
    connect_timer_ = clock_.make_timer();
    connect_tcp_parent(0);
  } else {
    if (cfg_.parent_path.empty()) return Error{EINVAL, "rank " + std::to_string(cfg_.rank) + " needs a parent socket"};
    connect_timer_ = clock_.make_timer();
    connect_parent(0);
  }
  return {};
}

void Broker::accept_child() {
  overlay_acceptor_->async_accept([this](const std::error_code& ec, asio::local::stream_protocol::socket sock) {
    if (ec == asio::error::operation_aborted || !overlay_acceptor_->is_open()) return;
    if (ec) return accept_failed(overlay_gate_, ec, [this] { accept_child(); });
    accept_succeeded(overlay_gate_);
    if (!shutting_down_) on_overlay_connection(std::move(sock));
    accept_child();
  });
}

void Broker::on_overlay_connection(asio::local::stream_protocol::socket sock) {
  auto cred = peer_credentials(sock.native_handle());
  if (!cred.ok()) {
    spdlog::warn("refusing an overlay connection: {}", cred.error().text);
    return;  // closes the socket
  }
  if (cred->uid != ::getuid()) {
    spdlog::warn("refusing an overlay connection from pid {} uid {}: only this instance's brokers (uid {}) may join",
                 cred->pid, cred->uid, ::getuid());
    return;
  }
  Peer& p = add_peer(PeerKind::kChild);
  p.uid = cred->uid;
  p.pid = cred->pid;
  attach_connection(p, std::make_shared<UnixConnection>(std::move(sock), PeerRole::kOverlay, PeerRole::kOverlay));
}

void Broker::connect_parent(int attempt) {
  auto sock = std::make_shared<asio::local::stream_protocol::socket>(io_);
  asio::local::stream_protocol::endpoint ep(cfg_.parent_path);
  sock->async_connect(ep, [this, sock, attempt](const std::error_code& cec) {
    if (shutting_down_) return;
    if (cec) {
      // The parent's socket normally exists before we start (loom start
      // binds it), so this is rare; back off briefly, then give up.
      if (attempt >= 20) {
        spdlog::error("cannot reach the parent broker at {}: {}", cfg_.parent_path, cec.message());
        shutdown("cannot reach the parent broker", 1);
        return;
      }
      connect_timer_->arm(0.05 * (attempt + 1), [this, attempt] { connect_parent(attempt + 1); });
      return;
    }
    // The parent must be one of ours too: a process of another uid that
    // got to listen there would otherwise be obeyed as the instance.
    auto cred = peer_credentials(sock->native_handle());
    if (!cred.ok() || cred->uid != ::getuid()) {
      spdlog::error("refusing the parent broker at {}: {}", cfg_.parent_path,
                    cred.ok() ? "it runs as uid " + std::to_string(cred->uid) + ", not as this instance's uid " +
                                    std::to_string(::getuid())
                              : cred.error().text);
      shutdown("the parent broker could not be trusted", 1);
      return;
    }
    Peer& p = add_peer(PeerKind::kParent);
    p.rank = *topo_.parent(cfg_.rank);
    p.hello = true;
    p.owner = true;
    p.uid = cred->uid;
    p.pid = cred->pid;
    parent_peer_ = p.id;
    attach_connection(p, std::make_shared<UnixConnection>(std::move(*sock), PeerRole::kOverlay, PeerRole::kOverlay));
    p.conn->send(make_request("overlay.hello", dump_json(Json{{"rank", cfg_.rank}}), p.rank, msgflag::kNoResponse));
    builtin_->publish("broker.online", online_payload());
  });
}

void Broker::on_overlay_control(Peer& p, const Message& m) {
  if (m.topic == "overlay.heartbeat") return;  // last_rx is already updated
  if (m.topic == "overlay.hello" && p.kind == PeerKind::kChild) {
    if (cfg_.hosts && cfg_.rank != 0 && !parent_peer_ && !p.hello && !p.held_hello) {
      spdlog::info("overlay hello {} from {} waits until this broker has joined", m.payload, p.label);
      p.held_hello = m;
      return;
    }
    auto j = parse_json(m.payload);
    uint64_t r = 0;
    bool valid = j.ok() && j->is_object() && j->contains("rank") && (*j)["rank"].is_number_unsigned();
    if (valid) r = (*j)["rank"].get<uint64_t>();
    auto kids = topo_.children(cfg_.rank);
    bool mine = valid && std::find(kids.begin(), kids.end(), r) != kids.end();
    bool again = mine && child_links_.count(static_cast<uint32_t>(r));
    if (p.hello || !mine || (again && !cfg_.hosts)) {
      spdlog::warn("refusing overlay hello ({}) from {}: not a new child of this rank", m.payload,
                   p.label.empty() ? "pid " + std::to_string(p.pid) : p.label);
      p.conn->close();
      return;
    }
    if (!hello_from_host(p, static_cast<uint32_t>(r))) {
      p.conn->close();
      return;
    }
    if (again) {
      // Between hosts, a rank connecting again has restarted or come back
      // before its old link timed out (overlay_tcp.cpp): that link is its
      // previous life, and goes with its jobs.
      uint32_t rank = static_cast<uint32_t>(r);
      if (Peer* old = find_peer(child_links_[rank])) {
        old->hello = false;  // its close announces nothing more
        old->conn->close();
      }
      child_links_.erase(rank);
      child_lost(rank, "it connected again");
    }
    p.hello = true;
    p.owner = true;
    p.rank = static_cast<uint32_t>(r);
    child_links_[p.rank] = p.id;
    spdlog::debug("child rank {} connected", p.rank);
    return;
  }
  if (m.topic == "overlay.shutdown" && p.kind == PeerKind::kParent) {
    shutdown("the parent broker is stopping", exit_code_);
    return;
  }
  spdlog::debug("ignoring overlay control {} from peer {}", m.topic, p.id);
}

void Broker::heartbeat_tick() {
  double now = clock_.now();
  std::vector<std::shared_ptr<Connection>> silent;
  Message hb = make_request("overlay.heartbeat", {}, kNodeAny, msgflag::kNoResponse);
  std::string frame = encode_message(hb);
  for (auto& [id, p] : peers_) {
    if (p->kind != PeerKind::kChild && p->kind != PeerKind::kParent) continue;
    if (!p->conn) continue;
    if (now - p->last_rx > cfg_.heartbeat_timeout) {
      silent.push_back(p->conn);
      continue;
    }
    p->conn->send_encoded(frame);
  }
  for (auto& c : silent) {
    spdlog::warn("an overlay link was silent for more than {}s; closing it", cfg_.heartbeat_timeout);
    c->close();
  }
  drop_stalled_frames(now);
  heartbeat_timer_->arm(cfg_.heartbeat_interval, [this] { heartbeat_tick(); });
}

void Broker::drop_stalled_frames(double now) {
  // A peer that began a frame (up to 64 MiB held here) and went silent
  // holds memory for nothing: judged at each heartbeat tick.
  std::vector<std::shared_ptr<Connection>> stalled;
  for (auto& [id, p] : peers_) {
    if (!p->conn) continue;
    uint64_t rx = p->conn->bytes_received();
    if (!p->conn->has_partial_frame() || rx != p->rx_at_tick) {
      p->rx_at_tick = rx;
      p->rx_progress_at = now;
      continue;
    }
    if (now - p->rx_progress_at > cfg_.frame_timeout) {
      spdlog::warn("dropping {} (uid {}, pid {}): it began a message and sent nothing more for {}s",
                   p->kind == PeerKind::kClient ? "client " + std::to_string(p->id) : "overlay link", p->uid, p->pid,
                   cfg_.frame_timeout);
      stalled.push_back(p->conn);
    }
  }
  for (auto& c : stalled) c->close();
}

void Broker::child_lost(uint32_t rank, const std::string& why) {
  std::vector<uint32_t> gone{rank};
  for (uint32_t d : topo_.descendants(rank)) gone.push_back(d);
  for (uint32_t r : gone) {
    spdlog::error("rank {} lost: {}", r, r == rank ? why : "its parent rank was lost");
    builtin_->publish("broker.lost", dump_json(Json{{"rank", r}, {"reason", r == rank ? why : "parent lost"}}));
  }
}

std::string Broker::online_payload() const {
  Json j{{"rank", cfg_.rank}};
  if (cfg_.hosts) {
    j["cores"] = cfg_.hosts->cores;
    j["gpus"] = cfg_.hosts->gpus;
  }
  return dump_json(j);
}

void Broker::set_rank_state(uint32_t rank, RankState s) {
  if (rank >= rank_state_.size()) return;
  rank_state_[rank] = s;
  answer_waiters();
}

void Broker::run_shutdown_hooks(size_t i, const std::function<void()>& then) {
  if (i >= shutdown_hooks_.size()) return then();
  auto once = std::make_shared<bool>(false);
  shutdown_hooks_[i]([this, i, then, once] {
    if (*once) return;
    *once = true;
    asio::post(io_, [this, i, then] { run_shutdown_hooks(i + 1, then); });
  });
}

void Broker::shutdown(const std::string& why, int exit_code) {
  if (shutting_down_) return;
  shutting_down_ = true;
  exit_code_ = exit_code;
  spdlog::info("stopping: {}", why);
  if (!shutdown_hooks_.empty()) {
    // The services finish their work first, with every rank still up.
    auto proceed = std::make_shared<std::function<void()>>();
    auto went_on = std::make_shared<bool>(false);
    *proceed = [this, went_on] {
      if (*went_on) return;
      *went_on = true;
      if (shutdown_timer_) shutdown_timer_->cancel();
      stop_brokers();
    };
    shutdown_timer_ = clock_.make_timer();
    shutdown_timer_->arm(cfg_.shutdown_timeout, [this, proceed] {
      spdlog::warn("services did not finish within {}s; stopping anyway", cfg_.shutdown_timeout);
      (*proceed)();
    });
    run_shutdown_hooks(0, [proceed] { (*proceed)(); });
    return;
  }
  stop_brokers();
}

void Broker::stop_instance(const std::string& why) {
  if (cfg_.rank == 0 || stop_asked_ || !parent_peer_) return shutdown(why, 0);
  stop_asked_ = true;
  spdlog::info("{}: asking rank 0 to stop the instance", why);
  builtin_->rpc("broker.shutdown", "{}", {0, false, cfg_.shutdown_timeout}, [this, why](const Message& m) {
    if (m.errnum == 0) return;
    spdlog::warn("{}: rank 0 could not be asked to stop the instance ({}); stopping this rank", why, error_text(m));
    shutdown(why, 0);
  });
}

void Broker::leave(const std::string& why) {
  if (shutting_down_) return;
  shutting_down_ = true;
  exit_code_ = 0;
  spdlog::warn("leaving the instance: {}; this rank and those below it will be lost until it is back", why);
  asio::post(io_, [this] { finish_shutdown(); });
}

void Broker::stop_brokers() {
  if (local_acceptor_) {
    std::error_code ignored;
    local_acceptor_->close(ignored);
  }
  for (auto& [rank, id] : child_links_) {
    if (Peer* c = find_peer(id)) c->conn->send(make_request("overlay.shutdown", {}, rank, msgflag::kNoResponse));
  }
  shutdown_timer_ = clock_.make_timer();
  shutdown_timer_->arm(cfg_.shutdown_timeout, [this] {
    spdlog::warn("children did not stop within {}s; stopping anyway", cfg_.shutdown_timeout);
    finish_shutdown();
  });
  maybe_finish_shutdown();
}

void Broker::maybe_finish_shutdown() {
  if (shutting_down_ && child_links_.empty()) {
    // Let queued frames (the children's shutdown requests) go out first.
    asio::post(io_, [this] { finish_shutdown(); });
  }
}

void Broker::finish_shutdown() {
  if (finished_flag_) return;
  finished_flag_ = true;
  std::error_code ignored;
  if (overlay_acceptor_) overlay_acceptor_->close(ignored);
  if (tcp_acceptor_) tcp_acceptor_->close(ignored);
  if (heartbeat_timer_) heartbeat_timer_->cancel();
  if (connect_timer_) connect_timer_->cancel();
  if (shutdown_timer_) shutdown_timer_->cancel();
  for (auto& [id, p] : peers_) {
    if (p->conn) {
      p->conn->on_close = nullptr;
      p->conn->close();
    }
  }
  if (finished_) finished_(exit_code_);
}

}  // namespace loom
