#include "broker/broker.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/post.hpp>
#include <cstring>

namespace loom {

namespace {
// Past this many distinct (service, rank) pairs a client's disconnect
// notifications are not tracked any further; the set must stay bounded.
constexpr size_t kMaxTalkedTo = 1024;
// Requests a client-provided service may hold unanswered, and distinct
// routes its matchtag-less requests may come by; past them new requests
// get EAGAIN, so a client cannot grow the broker's tracking without bound.
constexpr size_t kMaxUnanswered = 16384;
constexpr size_t kMaxMatchlessRoutes = 1024;
// How long accepting pauses when descriptors run out.
constexpr double kAcceptPause = 0.1;
}  // namespace

const char* rank_state_name(RankState s) {
  switch (s) {
    case RankState::kOffline: return "offline";
    case RankState::kOnline: return "online";
    case RankState::kLost: return "lost";
  }
  return "unknown";
}

Broker::Broker(asio::io_context& io, Clock& clock, BrokerConfig cfg)
    : io_(io), clock_(clock), cfg_(std::move(cfg)), topo_{cfg_.size, cfg_.fanout} {
  started_at_ = clock_.now();
  client_memory_ = std::make_shared<MemoryBudget>(cfg_.client_memory_limit);
  if (cfg_.rank == 0) {
    rank_state_.assign(cfg_.size, RankState::kOffline);
    rank_resources_.assign(cfg_.size, Json());
  }
}

Broker::~Broker() {
  if (!bound_path_.empty()) ::unlink(bound_path_.c_str());
  if (!bound_overlay_path_.empty()) ::unlink(bound_overlay_path_.c_str());
}

Status Broker::start() {
  if (cfg_.size == 0 || cfg_.rank >= cfg_.size) return Error{EINVAL, "rank must be below size"};
  if (cfg_.fanout == 0) return Error{EINVAL, "fanout must be at least 1"};
  // Local clients.
  if (auto st = listen_local(); !st) return st;
  install_builtin_services();
  if (auto st = start_overlay(); !st) return st;
  return {};
}

Status Broker::listen_local() {
  if (cfg_.no_local_clients) return {};
  local_acceptor_ = std::make_unique<asio::local::stream_protocol::acceptor>(io_);
  std::error_code ec;
  if (cfg_.local_fd >= 0) {
    local_acceptor_->assign(asio::local::stream_protocol(), cfg_.local_fd, ec);
    if (ec) return Error{EINVAL, "cannot use local socket fd: " + ec.message()};
  } else if (!cfg_.local_path.empty()) {
    ::unlink(cfg_.local_path.c_str());
    local_acceptor_->open(asio::local::stream_protocol(), ec);
    if (!ec) local_acceptor_->bind(asio::local::stream_protocol::endpoint(cfg_.local_path), ec);
    if (!ec) local_acceptor_->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Error{EADDRINUSE, "cannot listen on " + cfg_.local_path + ": " + ec.message()};
    bound_path_ = cfg_.local_path;
    // As `loom start` does: a broker of root serves every local user (and
    // the job shells, which run as their users); any other, its owner only
    // (docs/security.md).
    if (::chmod(cfg_.local_path.c_str(), ::geteuid() == 0 ? 0666 : 0600) != 0) {
      return Error{errno, "cannot set the mode of " + cfg_.local_path + ": " + std::strerror(errno)};
    }
  } else {
    return Error{EINVAL, "no local socket given"};
  }
  accept_local();
  return {};
}

Handle& Broker::add_module(const std::vector<std::string>& services) {
  Peer& p = add_peer(PeerKind::kModule);
  p.owner = true;
  p.uid = static_cast<uint32_t>(::getuid());
  uint32_t id = p.id;
  p.handle = std::make_unique<Handle>(clock_, [this, id](Message&& m) { on_message(id, std::move(m)); });
  p.handle->keep_text_lazy();
  p.handle->set_credentials(p.uid, role::kOwner);
  for (const auto& s : services) {
    auto st = register_service(s, id);
    LOOM_ASSERT(st.ok());  // built-in names are ours; a clash is a bug
  }
  return *p.handle;
}

Broker::Peer& Broker::add_peer(PeerKind kind) {
  auto p = std::make_unique<Peer>();
  p->id = next_peer_id_++;
  if (next_peer_id_ == 0) next_peer_id_ = 1;
  p->kind = kind;
  p->last_rx = clock_.now();
  p->rx_progress_at = p->last_rx;
  Peer& ref = *p;
  peers_.emplace(ref.id, std::move(p));
  if (ref.id < low_peers_.size()) low_peers_[ref.id] = &ref;
  return ref;
}

void Broker::forget_peer(uint32_t id) {
  if (id < low_peers_.size()) low_peers_[id] = nullptr;
  peers_.erase(id);
}

Broker::Peer* Broker::find_peer(uint32_t id) {
  if (id < low_peers_.size()) return low_peers_[id];
  auto it = peers_.find(id);
  return it == peers_.end() ? nullptr : it->second.get();
}

void Broker::attach_connection(Peer& p, std::shared_ptr<Connection> conn) {
  uint32_t id = p.id;
  conn->on_message = [this, id](Message&& m) { on_message(id, std::move(m)); };
  conn->on_close = [this, id](const Error& why) { on_peer_closed(id, why); };
  p.conn = std::move(conn);
  p.conn->start();
}

void Broker::accept_local() {
  local_acceptor_->async_accept([this](const std::error_code& ec, asio::local::stream_protocol::socket sock) {
    if (ec == asio::error::operation_aborted || !local_acceptor_->is_open()) return;
    if (ec) return accept_failed(local_gate_, ec, [this] { accept_local(); });
    accept_succeeded(local_gate_);
    on_local_connection(std::move(sock));
    accept_local();
  });
}

void Broker::accept_failed(AcceptGate& g, const std::error_code& ec, std::function<void()> again) {
  if (ec != asio::error::no_descriptors && ec.value() != ENFILE && ec != asio::error::no_buffer_space &&
      ec != asio::error::no_memory) {
    // A connection that went away before it was accepted, and the like.
    spdlog::debug("accept on {}: {}", g.what, ec.message());
    return again();
  }
  // The pending connection stays in the backlog, so accepting again at
  // once would fail again at once: wait, and say so once per episode.
  if (!g.paused) {
    spdlog::warn("cannot accept on {}: {}; pausing new connections until descriptors are free", g.what, ec.message());
    g.paused = true;
  }
  if (!g.timer) g.timer = clock_.make_timer();
  g.timer->arm(kAcceptPause, std::move(again));
}

void Broker::accept_succeeded(AcceptGate& g) {
  if (!g.paused) return;
  g.paused = false;
  spdlog::warn("accepting on {} again", g.what);
}

void Broker::on_local_connection(asio::local::stream_protocol::socket sock) {
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (::getsockopt(sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    spdlog::warn("SO_PEERCRED failed: {}; refusing client", std::strerror(errno));
    return;
  }
  if (shutting_down_) return;  // closes the socket
  Peer& p = add_peer(PeerKind::kClient);
  p.uid = cred.uid;
  p.pid = cred.pid;
  p.owner = cred.uid == ::getuid();
  attach_connection(
      p, std::make_shared<UnixConnection>(std::move(sock), PeerRole::kBroker, PeerRole::kClient, client_memory_));
}

bool Broker::send_to(Peer& p, Message&& m) {
  if (p.kind == PeerKind::kModule) {
    // Deliver from the loop, never from inside the sender's call stack.
    deliveries_.push_back({p.id, std::move(m)});
    asio::post(io_, [this] { deliver_one(); });
    return true;
  }
  if (!p.conn) return false;
  m.write_text();
  // A message grows by a hop at every broker, so one that fit where it
  // entered may not fit the next socket; nor may a response that a
  // service inside this broker built. The encoder would assert on it.
  size_t size = frame_body_size(m);
  if (size > kMaxFrameSize) {
    ++oversize_messages_;
    std::string why = std::string(msgtype_name(m.type)) + " " + m.topic + " of " + std::to_string(size) +
                      " bytes exceeds the frame limit of " + std::to_string(kMaxFrameSize) + " bytes";
    spdlog::warn("not sending {}", why);
    if (m.is_request()) {
      respond_error(m, EMSGSIZE, why);  // its route still ends with this broker's hop
    } else if (m.is_response() && m.errnum == 0) {
      p.conn->send(make_error_response(m, EMSGSIZE, why));
    }
    return false;
  }
  p.conn->send(m);
  return true;
}

void Broker::deliver_one() {
  // One handler was posted per message, in the same order.
  Delivery d = std::move(deliveries_.front());
  deliveries_.pop_front();
  if (Peer* q = find_peer(d.peer)) q->handle->dispatch(std::move(d.msg));
}

void Broker::on_peer_closed(uint32_t id, const Error& why) {
  Peer* p = find_peer(id);
  if (!p) return;
  if (why.code == EPROTO || why.code == EPROTONOSUPPORT || why.code == EPROTOTYPE || why.code == ENOBUFS) {
    // A peer that does not speak our protocol (a wrong port, another
    // version of loom, someone probing), or one that does not read what
    // it asked for. One line per connection.
    spdlog::warn("closed {} (uid {}, pid {}): {}", p->kind == PeerKind::kClient ? "a client" : "an overlay link",
                 p->uid, p->pid, why.text);
  }
  switch (p->kind) {
    case PeerKind::kClient:
      spdlog::debug("client {} (uid {}) gone: {}", id, p->uid, why.text);
      notify_disconnect(*p);
      for (const auto& s : p->services) {
        services_.erase(s);
      }
      p->services.clear();
      for (auto& [key, req] : p->unanswered) {
        respond_error(req, ENOSYS, "service " + std::string(req.service()) + " went away before answering");
      }
      break;
    case PeerKind::kChild:
      if (p->hello) {
        child_links_.erase(p->rank);
        if (!shutting_down_) child_lost(p->rank, why.text);
      }
      for (auto& [key, req] : p->unanswered) {
        respond_error(req, EHOSTUNREACH, "rank " + std::to_string(p->rank) + " was lost before answering");
      }
      break;
    case PeerKind::kParent:
      parent_peer_.reset();
      if (!shutting_down_ && cfg_.hosts) {
        // Between hosts the parent may come back (restarted, its link
        // plugged back): try again after a pause, so that a parent that
        // refuses us is not asked many times a second (overlay_tcp.cpp).
        spdlog::error("lost the parent broker: {}; reconnecting", why.text);
        for (auto& [key, req] : p->unanswered) respond_error(req, EHOSTUNREACH, "the parent broker was lost");
        forget_peer(id);
        // The parent announced our subtree lost: the children come back
        // through us once we are back (overlay_tcp.cpp).
        std::vector<std::shared_ptr<Connection>> children;
        for (auto& [pid, q] : peers_) {
          if (q->kind == PeerKind::kChild && q->conn) children.push_back(q->conn);
        }
        for (auto& c : children) c->close();
        if (parent_link_) parent_link_(false);
        connect_timer_->arm(1.0, [this] { connect_tcp_parent(0); });
        return;
      }
      if (!shutting_down_) {
        spdlog::error("lost the parent broker: {}; stopping", why.text);
        forget_peer(id);
        shutdown("lost the parent broker", 1);
        maybe_finish_shutdown();
        return;
      }
      break;
    case PeerKind::kModule: break;
  }
  for (const auto& s : p->services) {
    services_.erase(s);
  }
  forget_peer(id);
  maybe_finish_shutdown();
}

Status Broker::register_service(const std::string& name, uint32_t peer_id) {
  if (name.empty() || name.find('.') != std::string::npos || name.size() > 64) {
    return Error{EINVAL, "a service name is 1-64 characters without '.'"};
  }
  for (unsigned char c : name) {
    if (c <= 0x20 || c >= 0x7f) return Error{EINVAL, "a service name has no spaces or control characters"};
  }
  if (services_.count(name)) return Error{EEXIST, "service " + name + " is already registered"};
  Peer* p = find_peer(peer_id);
  LOOM_ASSERT(p != nullptr);
  services_.emplace(name, Service{peer_id});
  p->services.push_back(name);
  return {};
}

// --- routing ---

void Broker::on_message(uint32_t peer_id, Message&& m) {
  Peer* p = find_peer(peer_id);
  if (!p) return;
  p->last_rx = clock_.now();
  if (p->kind == PeerKind::kChild || p->kind == PeerKind::kParent) {
    // Control comes straight from the broker at the other end, with an
    // empty route. An "overlay.*" request with hops was forwarded for some
    // client and must not be obeyed (it would let anyone stop a rank).
    if (m.topic.starts_with("overlay.") && m.is_request() && m.route.empty()) {
      on_overlay_control(*p, m);
      return;
    }
    if (p->kind == PeerKind::kChild && p->held_hello) {
      // Its hello waits for this broker to join (overlay_tcp.cpp); what
      // it sends meanwhile is little (its broker.online), bounded anyway.
      if (p->held_messages.size() >= kMaxHeldMessages) {
        spdlog::warn("overlay peer {} sent too much before it could join; closing it", p->label);
        p->conn->close();
        return;
      }
      p->held_messages.push_back(std::move(m));
      return;
    }
    if (p->kind == PeerKind::kChild && !p->hello) {
      spdlog::warn("overlay peer sent {} before hello; closing it", m.topic);
      p->conn->close();
      return;
    }
  }
  if (p->kind == PeerKind::kClient) {
    // The broker, not the client, says who is speaking. Only the instance
    // owner may speak for someone else (tests of access rules).
    bool keep = p->owner && m.userid != kUserIdUnknown && (m.rolemask == role::kOwner || m.rolemask == role::kUser);
    if (!keep) {
      m.userid = p->uid;
      m.rolemask = p->owner ? role::kOwner : role::kUser;
    }
    if (m.is_request()) {
      m.route.clear();  // a client cannot forge hops
      if (m.has_flag(msgflag::kStreaming) && m.has_flag(msgflag::kNoResponse)) {
        m.flags &= ~msgflag::kNoResponse;
      }
      if (p->talked_to.size() < kMaxTalkedTo) p->talked_to.emplace(std::string(m.service()), m.nodeid);
    }
  }
  switch (m.type) {
    case MsgType::kRequest:
      if (m.route.size() >= kMaxRouteHops) {
        spdlog::warn("dropping request {}: route too long", m.topic);
        return;
      }
      m.route.push_back(make_hop(cfg_.rank, peer_id));
      route_request(std::move(m));
      break;
    case MsgType::kResponse:
      if (p->kind == PeerKind::kClient && !was_asked(*p, m)) {
        ++forged_responses_;
        if (!p->warned_forged) {
          p->warned_forged = true;
          spdlog::warn(
              "dropping response {} from client {} (uid {}): it was not sent that request (logged once per "
              "client)",
              m.topic, p->id, p->uid);
        }
        return;
      }
      if (p->kind == PeerKind::kChild && m.matchtag != 0 && !p->unanswered.empty()) {
        auto it = p->unanswered.find(std::make_pair(m.route, m.matchtag));
        if (it != p->unanswered.end() && (!it->second.has_flag(msgflag::kStreaming) || m.errnum != 0)) {
          p->unanswered.erase(it);
        }
      }
      route_response(std::move(m));
      break;
    case MsgType::kEvent:
      // By the stamped role, so that the owner speaking as a user (test
      // credentials) is refused like that user.
      if (p->kind == PeerKind::kClient && !(m.rolemask & role::kOwner)) {
        spdlog::debug("dropping event {} from uid {}: only the owner publishes", m.topic, m.userid);
        return;
      }
      if ((m.topic == "broker.online" || m.topic == "broker.lost") && !may_announce(*p, m)) return;
      route_event(std::move(m), p->kind);
      break;
  }
}

void Broker::route_request(Message&& m) {
  std::string_view service = m.service();
  if (m.nodeid == kNodeAny || m.nodeid == cfg_.rank) {
    auto it = services_.find(service);
    if (Peer* p = it == services_.end() ? nullptr : find_peer(it->second.peer)) {
      ++it->second.requests;
      if (p->kind == PeerKind::kClient && m.wants_response()) {
        // Remembered first (send_to may answer it at once with an error).
        if (m.matchtag != 0) {
          if (p->unanswered.size() >= kMaxUnanswered) {
            respond_error(m, EAGAIN,
                          "service " + std::string(service) + " has " + std::to_string(kMaxUnanswered) +
                              " requests unanswered; try again later");
            return;
          }
          auto key = std::make_pair(m.route, m.matchtag);
          auto [it, added] = p->unanswered.emplace(key, head_of(m));
          if (!send_to(*p, std::move(m)) && added) p->unanswered.erase(key);
          return;
        }
        if (!p->matchless_routes.count(m.route)) {
          if (p->matchless_routes.size() >= kMaxMatchlessRoutes) {
            respond_error(m, EAGAIN,
                          "service " + std::string(service) + " is asked by too many requesters without matchtags");
            return;
          }
          p->matchless_routes.insert(m.route);
        }
      }
      send_to(*p, std::move(m));
      return;
    }
    if (m.nodeid == kNodeAny && parent_peer_) {
      if (Peer* up = find_peer(*parent_peer_)) {
        send_to(*up, std::move(m));
        return;
      }
    }
    respond_error(m, ENOSYS, "no service " + std::string(service) + " is registered (topic " + m.topic + ")");
    return;
  }
  if (m.nodeid >= cfg_.size) {
    // Not a rank that is away but one that is not there at all (an
    // instance restarted smaller): ENXIO, so no one waits for it.
    respond_error(m, ENXIO,
                  "rank " + std::to_string(m.nodeid) + " does not exist (size " + std::to_string(cfg_.size) + ")");
    return;
  }
  if (auto child = topo_.child_toward(cfg_.rank, m.nodeid)) {
    auto it = child_links_.find(*child);
    if (it != child_links_.end()) {
      if (Peer* c = find_peer(it->second)) {
        if (m.wants_response() && m.matchtag != 0) {
          auto key = std::make_pair(m.route, m.matchtag);
          auto [entry, added] = c->unanswered.emplace(key, head_of(m));
          if (!send_to(*c, std::move(m)) && added) c->unanswered.erase(key);
          return;
        }
        send_to(*c, std::move(m));
        return;
      }
    }
    respond_error(m, EHOSTUNREACH,
                  "rank " + std::to_string(m.nodeid) + " is not reachable (rank " + std::to_string(*child) +
                      " is not connected)");
    return;
  }
  if (parent_peer_) {
    if (Peer* up = find_peer(*parent_peer_)) {
      send_to(*up, std::move(m));
      return;
    }
  }
  respond_error(m, EHOSTUNREACH, "rank " + std::to_string(m.nodeid) + " is not reachable");
}

bool Broker::was_asked(Peer& p, const Message& r) {
  if (r.matchtag == 0) return p.matchless_routes.count(r.route) > 0;
  auto it = p.unanswered.find(std::make_pair(r.route, r.matchtag));
  if (it == p.unanswered.end()) return false;
  if (!it->second.has_flag(msgflag::kStreaming) || r.errnum != 0) p.unanswered.erase(it);
  return true;
}

void Broker::route_response(Message&& m) {
  if (m.route.empty()) {
    spdlog::debug("dropping response {} with an empty route", m.topic);
    return;
  }
  HopId hop = m.route.back();
  if (hop_rank(hop) != cfg_.rank) {
    spdlog::debug("dropping response {}: next hop is for rank {}", m.topic, hop_rank(hop));
    return;
  }
  m.route.pop_back();
  Peer* p = find_peer(hop_local(hop));
  if (!p) return;  // the requester went away
  send_to(*p, std::move(m));
}

void Broker::respond_error(const Message& req, int errnum, const std::string& text) {
  if (!req.wants_response()) return;
  route_response(make_error_response(req, errnum, text));
}

// broker.online and broker.lost say what became of a rank: rank 0 keeps
// every rank's state (and, over hosts, what each has) from them. Only the
// brokers announce, each for its own subtree: a child link for the ranks
// below it, never a client (the owner's included).
bool Broker::may_announce(Peer& p, const Message& m) {
  bool ok = false;
  if (p.kind == PeerKind::kParent || p.kind == PeerKind::kModule) {
    ok = true;
  } else if (p.kind == PeerKind::kChild) {
    auto j = parse_json(m.payload);
    if (j.ok() && j->is_object() && j->contains("rank") && (*j)["rank"].is_number_unsigned()) {
      uint64_t r = (*j)["rank"].get<uint64_t>();
      // r is in p's subtree: p itself, or the path from p toward r goes down.
      ok = r == p.rank || (r < cfg_.size && topo_.child_toward(p.rank, static_cast<uint32_t>(r)).has_value());
    }
  }
  if (!ok && !p.warned_announce) {
    p.warned_announce = true;
    std::string from = p.kind == PeerKind::kClient ? "a client (uid " + std::to_string(p.uid) + ")"
                                                   : "the link of rank " + std::to_string(p.rank) +
                                                         (p.label.empty() ? "" : " (" + p.label + ")");
    spdlog::warn("dropping {} {} from {}: not a rank it speaks for (logged once per peer)", m.topic,
                 m.payload.substr(0, 80), from);
  }
  return ok;
}

void Broker::route_event(Message&& m, PeerKind from) {
  if (from != PeerKind::kParent && cfg_.rank != 0) {
    if (parent_peer_) {
      if (Peer* up = find_peer(*parent_peer_)) send_to(*up, std::move(m));
    }
    return;
  }
  if (cfg_.rank == 0) m.seq = ++event_seq_;
  if (cfg_.rank == 0 && m.topic.starts_with("broker.")) {
    // Rank 0 keeps the state of every rank from these announcements.
    auto j = parse_json(m.payload);
    if (j.ok() && j->is_object() && j->contains("rank") && (*j)["rank"].is_number_unsigned()) {
      auto r = (*j)["rank"].get<uint64_t>();
      if (r < cfg_.size) {
        if (m.topic == "broker.online") {
          // The counterpart of "rank N lost" (overlay.cpp), for whoever
          // watches the log of rank 0.
          if (r < rank_state_.size() && rank_state_[r] == RankState::kLost) spdlog::warn("rank {} back online", r);
          set_rank_state(static_cast<uint32_t>(r), RankState::kOnline);
          Json cores = j->value("cores", Json()), gpus = j->value("gpus", Json(0));
          if (cores.is_number_unsigned() && gpus.is_number_unsigned() && r < rank_resources_.size()) {
            rank_resources_[r] = Json{{"cores", cores}, {"gpus", gpus}};
          }
        }
        if (m.topic == "broker.lost") set_rank_state(static_cast<uint32_t>(r), RankState::kLost);
      }
    }
  }
  // Down the tree, encoded once.
  std::string frame;
  for (auto& [rank, id] : child_links_) {
    if (Peer* c = find_peer(id)) {
      if (frame.empty()) encode_message(m, frame);
      c->conn->send_encoded(frame);
    }
  }
  deliver_event(m);
}

void Broker::deliver_event(const Message& m) {
  std::string frame;
  for (auto& [id, p] : peers_) {
    // A private event reaches only the owner and its user; a broker below
    // (trusted) filters for its own clients.
    if (m.has_flag(msgflag::kPrivate) && p->kind == PeerKind::kClient && !p->owner && p->uid != m.userid) continue;
    bool match = false;
    for (const auto& prefix : p->subscriptions) {
      if (m.topic.starts_with(prefix)) {
        match = true;
        break;
      }
    }
    if (!match) continue;
    if (p->kind == PeerKind::kModule) {
      send_to(*p, Message(m));
    } else if (p->conn) {
      if (frame.empty()) encode_message(m, frame);
      p->conn->send_encoded(frame);
    }
  }
}

void Broker::notify_disconnect(Peer& p) {
  // Tell every service this client talked to, as if the client asked.
  for (const auto& [service, nodeid] : p.talked_to) {
    if (service == "event" || service == "service" || service == "broker") continue;
    Message m = make_request(service + ".disconnect", {}, nodeid, msgflag::kNoResponse);
    m.userid = p.uid;
    m.rolemask = p.owner ? role::kOwner : role::kUser;
    m.route.push_back(make_hop(cfg_.rank, p.id));
    route_request(std::move(m));
  }
}

}  // namespace loom
