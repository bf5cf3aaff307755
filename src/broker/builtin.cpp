// Services every broker provides to its own clients:
//   broker.info        this rank: size, parent, children, uptime, services
//   broker.status      (rank 0) the state of every rank
//   broker.wait-ready  (rank 0) answers once every rank is online
//   broker.shutdown    (owner) stop the instance (ask rank 0) or this subtree
//   service.add / service.remove / service.list   client-provided services
//   event.subscribe / event.unsubscribe           event prefixes
// service.* and event.* act on the connection that asks, so they must come
// from a client of this very broker.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <set>

#include "broker/broker.h"

namespace loom {

Broker::Peer* Broker::local_requester(const Message& req) {
  if (req.route.size() != 1 || hop_rank(req.route.front()) != cfg_.rank) return nullptr;
  return find_peer(hop_local(req.route.front()));
}

namespace {
Result<std::string> string_field(const Message& req, const char* key) {
  auto j = parse_json(req.payload);
  if (!j.ok()) return j.error();
  if (!j->is_object() || !j->contains(key) || !(*j)[key].is_string()) {
    return Error{EPROTO, std::string("payload needs a string \"") + key + "\""};
  }
  return (*j)[key].get<std::string>();
}
}  // namespace

void Broker::install_builtin_services() {
  Handle& h = add_module({"broker", "service", "event"});
  builtin_ = &h;

  h.add_method("broker.info", Access::kUser, [this, &h](const Message& req) {
    Json children = Json::array();
    for (uint32_t c : topo_.children(cfg_.rank)) {
      children.push_back({{"rank", c}, {"connected", child_links_.count(c) > 0}});
    }
    Json services = Json::array();
    for (auto& [name, service] : services_) services.push_back(name);
    std::sort(services.begin(), services.end());
    Json requests = Json::object();  // sorted by name: Json's objects are
    for (auto& [name, service] : services_) requests[name] = service.requests;
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    auto parent = topo_.parent(cfg_.rank);
    h.respond(req, Json{{"rank", cfg_.rank},
                        {"size", cfg_.size},
                        {"fanout", cfg_.fanout},
                        {"parent", parent ? Json(*parent) : Json(nullptr)},
                        {"children", children},
                        {"uptime", clock_.now() - started_at_},
                        {"services", services},
                        {"hostname", host},
                        {"pid", ::getpid()},
                        {"clients", std::count_if(peers_.begin(), peers_.end(),
                                                  [](auto& kv) { return kv.second->kind == PeerKind::kClient; })},
                        // Dropped, never routed: responses from a client
                        // that was not sent the request; messages too large
                        // to forward; unsent output to local clients.
                        {"forged_responses", forged_responses_},
                        {"oversize_messages", oversize_messages_},
                        {"client_buffered_bytes", client_memory_->used()},
                        {"requests", requests}});
  });

  h.add_method("broker.status", Access::kUser, [this, &h](const Message& req) {
    if (cfg_.rank != 0) {
      h.respond_error(req, EINVAL, "broker.status is answered by rank 0");
      return;
    }
    Json ranks = Json::array();
    bool ready = true;
    for (uint32_t r = 0; r < cfg_.size; ++r) {
      Json e{{"rank", r}, {"state", rank_state_name(rank_state_[r])}};
      if (rank_resources_[r].is_object()) e.update(rank_resources_[r]);
      ranks.push_back(std::move(e));
      ready = ready && rank_state_[r] == RankState::kOnline;
    }
    h.respond(req, Json{{"size", cfg_.size}, {"fanout", cfg_.fanout}, {"ready", ready}, {"ranks", ranks}});
  });

  h.add_method("broker.wait-ready", Access::kUser, [this, &h](const Message& req) {
    if (cfg_.rank != 0) {
      h.respond_error(req, EINVAL, "broker.wait-ready is answered by rank 0");
      return;
    }
    ready_waiters_.push_back(req);
    answer_waiters();
  });

  h.add_method("broker.shutdown", Access::kOwner, [this, &h](const Message& req) {
    h.respond(req, Json::object());
    shutdown("asked by a client", 0);
  });

  h.add_method("service.add", Access::kUser, [this, &h](const Message& req) {
    auto name = string_field(req, "service");
    if (!name.ok()) return h.respond_error(req, name.error());
    Peer* p = local_requester(req);
    if (!p || p->kind != PeerKind::kClient) {
      return h.respond_error(req, EINVAL, "service.add must come from a client of this broker");
    }
    // The stamped userid: the peer's own uid, or the user the owner speaks
    // as (test credentials), matching the rolemask checked below.
    std::string user_prefix = std::to_string(req.userid) + "-";
    if (!(req.rolemask & role::kOwner) && !name->starts_with(user_prefix)) {
      return h.respond_error(req, EPERM, "a user may only register services named " + user_prefix + "*");
    }
    // The instance's own names are its own on every rank, even where the
    // service itself lives on another (a client there would take the
    // requests of every client of this broker), and even for the owner.
    static const std::set<std::string, std::less<>> kReserved = {
        "broker",   "service",  "event", "overlay", "kvs",      "sched", "job-manager",
        "job-info", "job-exec", "shell", "log",     "resource", "exec"};
    if (kReserved.count(*name)) {
      return h.respond_error(req, EPERM, "service " + *name + " is reserved for the instance's own services");
    }
    if (auto st = register_service(*name, p->id); !st) return h.respond_error(req, st.error());
    spdlog::debug("client {} registered service {}", p->id, *name);
    h.respond(req, Json::object());
  });

  h.add_method("service.remove", Access::kUser, [this, &h](const Message& req) {
    auto name = string_field(req, "service");
    if (!name.ok()) return h.respond_error(req, name.error());
    Peer* p = local_requester(req);
    auto it = services_.find(*name);
    if (!p || it == services_.end() || it->second.peer != p->id) {
      return h.respond_error(req, ENOENT, "service " + *name + " is not registered by this client");
    }
    services_.erase(it);
    std::erase(p->services, *name);
    h.respond(req, Json::object());
  });

  h.add_method("service.list", Access::kUser, [this, &h](const Message& req) {
    Json out = Json::array();
    for (auto& [name, service] : services_) {
      Peer* p = find_peer(service.peer);
      out.push_back({{"service", name}, {"provider", p && p->kind == PeerKind::kModule ? "broker" : "client"}});
    }
    h.respond(req, Json{{"services", out}});
  });

  h.add_method("event.subscribe", Access::kUser, [this, &h](const Message& req) {
    auto topic = string_field(req, "topic");
    if (!topic.ok()) return h.respond_error(req, topic.error());
    Peer* p = local_requester(req);
    if (!p) return h.respond_error(req, EINVAL, "event.subscribe must come from a client of this broker");
    if (p->subscriptions.size() >= 256) return h.respond_error(req, ENOSPC, "too many subscriptions");
    p->subscriptions.push_back(*topic);
    h.respond(req, Json::object());
  });

  h.add_method("event.unsubscribe", Access::kUser, [this, &h](const Message& req) {
    auto topic = string_field(req, "topic");
    if (!topic.ok()) return h.respond_error(req, topic.error());
    Peer* p = local_requester(req);
    if (!p) return h.respond_error(req, EINVAL, "event.unsubscribe must come from a client of this broker");
    auto it = std::find(p->subscriptions.begin(), p->subscriptions.end(), *topic);
    if (it == p->subscriptions.end()) return h.respond_error(req, ENOENT, "not subscribed to " + *topic);
    p->subscriptions.erase(it);
    h.respond(req, Json::object());
  });
}

void Broker::answer_waiters() {
  if (ready_waiters_.empty()) return;
  std::vector<uint32_t> lost;
  bool ready = true;
  for (uint32_t r = 0; r < rank_state_.size(); ++r) {
    if (rank_state_[r] == RankState::kLost) lost.push_back(r);
    if (rank_state_[r] != RankState::kOnline) ready = false;
  }
  if (!ready && lost.empty()) return;
  auto waiters = std::move(ready_waiters_);
  ready_waiters_.clear();
  for (auto& req : waiters) {
    if (ready) {
      builtin_->respond(req, Json{{"size", cfg_.size}});
    } else {
      builtin_->respond_error(req, EHOSTUNREACH, "rank " + std::to_string(lost.front()) + " was lost");
    }
  }
}

}  // namespace loom
