// loomd's core (docs/protocols/messages.md): peers, routing and the overlay tree.
//
// Peers are local clients (Unix socket), services inside this broker
// (modules), the link to the parent broker and the links to children.
// Who may be which, and how the broker knows, is docs/security.md.
// Requests push a hop onto their route at every broker they pass and are
// routed by topic and nodeid; responses pop hops to find their way back;
// events travel up to rank 0, which numbers them and sends them down to
// every broker, each delivering them to its subscribers.
#pragma once

#include <array>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/ssl/context.hpp>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "broker/topology.h"
#include "msg/connection.h"
#include "msg/handle.h"
#include "msg/message.h"

namespace loom {

struct BrokerConfig {
  uint32_t rank = 0;
  uint32_t size = 1;
  uint32_t fanout = 2;
  // Local clients: an already listening Unix socket (from `loom start`),
  // else a path to bind.
  int local_fd = -1;
  std::string local_path;
  // No local clients at all: only the services added with add_module
  // talk (a simulation, docs/simulator.md). The loop then has no socket
  // to watch, and polling it never asks the kernel.
  bool no_local_clients = false;
  // Children: an already listening Unix socket (from `loom start`), else
  // a path to bind, when this rank has children. Only processes of the
  // broker's own uid are accepted on it (docs/security.md).
  int overlay_fd = -1;
  std::string overlay_path;
  // The parent's overlay socket (every rank but 0).
  std::string parent_path;
  // Brokers on many hosts (docs/deploy.md): the overlay over TCP and TLS
  // instead of Unix sockets. A parent listens on bind:port; a child
  // connects to its parent's host at that port. Each link proves with the
  // instance's certificates that the peer is the host of its rank.
  struct Hosts {
    std::vector<std::string> names;  // names[rank]: the host of each rank
    uint16_t port = 0;
    std::string bind = "0.0.0.0";
    std::string ca, cert, key;  // this host's files (loom keygen)
    // Where each rank's broker listens, as a name or address to resolve
    // (bootstrap.bind with "{host}"); empty: names[rank].
    std::vector<std::string> addresses;
    // What this host has, reported in this broker's broker.online (the
    // scheduler's inventory of the rank) and kept by rank 0 for
    // broker.status.
    uint32_t cores = 0, gpus = 0;
  };
  std::optional<Hosts> hosts;
  double heartbeat_interval = 1.0;  // seconds between heartbeats on each link
  double heartbeat_timeout = 10.0;  // silence after which a link is declared lost
  double shutdown_timeout = 10.0;   // how long to wait for children to stop
  // A peer that began a frame and sent nothing more for this long is
  // dropped (what it sent is memory held for nothing).
  double frame_timeout = 10.0;
  // What local clients may hold in this broker, all together: output
  // they have not read and messages they have not finished (MemoryBudget).
  size_t client_memory_limit = size_t{512} << 20;
};

enum class RankState { kOffline, kOnline, kLost };
const char* rank_state_name(RankState s);

class Broker {
 public:
  Broker(asio::io_context& io, Clock& clock, BrokerConfig cfg);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Opens the listeners, connects to the parent, starts heartbeats.
  Status start();

  // A Handle for a service inside this broker, registered under each name
  // in `services`. The broker owns it for its whole life.
  Handle& add_module(const std::vector<std::string>& services);

  // Orderly stop: children first, then this broker. `done` runs when this
  // broker has finished (the caller then stops the loop).
  void shutdown(const std::string& why, int exit_code);
  // A signal to this broker (SIGINT, SIGTERM; over hosts, to rank 0): the
  // orderly stop of the whole instance, so that a signal to every broker at once (to their
  // process group) stops it as a signal to rank 0 does. Rank 0 stops;
  // another rank asks rank 0 (broker.shutdown) and waits to be stopped
  // from above, stopping its own subtree at once only if rank 0 cannot
  // be asked or the signal comes again.
  void stop_instance(const std::string& why);
  // Between hosts, a signal to a broker other than rank 0 (`systemctl stop
  // loomd` on its host): this broker alone leaves, at once. Its links close
  // without stopping anyone: the instance declares its rank, and those
  // below it, lost (their jobs get node-failure), and its children keep
  // trying to reach it, to rejoin through it once it is back.
  void leave(const std::string& why);
  void on_finished(std::function<void(int exit_code)> fn) { finished_ = std::move(fn); }
  // Between hosts: this broker lost its link to its parent (false; it goes
  // on trying to reach it), or has it again (true). While it is cut off,
  // the instance may declare this rank lost and fail the jobs here.
  void on_parent_link(std::function<void(bool up)> fn) { parent_link_ = std::move(fn); }
  // Work to finish before the brokers stop (running jobs ended, their
  // events stored). Hooks run one after the other, each calling its `done`;
  // past shutdown_timeout the stop goes on without them.
  using ShutdownHook = std::function<void(std::function<void()> done)>;
  void add_shutdown_hook(ShutdownHook hook) { shutdown_hooks_.push_back(std::move(hook)); }

  uint32_t rank() const { return cfg_.rank; }
  uint32_t size() const { return cfg_.size; }
  const Topology& topology() const { return topo_; }
  Clock& clock() { return clock_; }

 private:
  enum class PeerKind { kClient, kModule, kChild, kParent };
  struct Peer {
    uint32_t id = 0;
    PeerKind kind = PeerKind::kClient;
    uint32_t uid = 0;
    int pid = 0;  // local clients and overlay links: from SO_PEERCRED
    bool owner = false;
    uint32_t rank = 0;  // the broker at the other end of an overlay link
    bool hello = false;
    double last_rx = 0;
    std::shared_ptr<Connection> conn;                      // shared with Asio handlers in flight
    std::unique_ptr<Handle> handle;                        // modules only
    std::set<std::pair<std::string, uint32_t>> talked_to;  // clients: (service, nodeid)
    std::vector<std::string> subscriptions;
    std::vector<std::string> services;
    // Clients that provide services, and child links: the requests they
    // have not finished answering, by (route, matchtag), so that their
    // requesters get ENOSYS (client gone) or EHOSTUNREACH (child rank lost)
    // instead of waiting forever, and so that a client can answer only
    // what it was asked. Matchtag-less requests are matched by their
    // payload: a client may answer those along the routes they came by.
    std::map<std::pair<std::vector<HopId>, uint32_t>, Message> unanswered;
    std::set<std::vector<HopId>> matchless_routes;
    bool warned_forged = false;    // one log line per client
    bool warned_announce = false;  // one log line per peer (may_announce)
    std::string label;             // TCP overlay links: "ADDRESS:PORT" of the peer
    // TCP overlay: a child's hello that came while this broker had no
    // parent link, and what the child sent after it (its broker.online
    // first), taken once this broker has joined (overlay_tcp.cpp).
    std::optional<Message> held_hello;
    std::vector<Message> held_messages;
    uint64_t rx_at_tick = 0;    // bytes received at the last heartbeat tick
    double rx_progress_at = 0;  // when bytes last arrived, by those ticks
  };

  // --- peers (broker.cpp) ---
  Peer& add_peer(PeerKind kind);
  Peer* find_peer(uint32_t id);
  void attach_connection(Peer& p, std::shared_ptr<Connection> conn);
  void on_peer_closed(uint32_t id, const Error& why);
  // To a module, or down a socket if its frame fits; otherwise a request
  // is answered with EMSGSIZE, a response becomes that error, an event is
  // dropped.
  bool send_to(Peer& p, Message&& m);
  // Messages to modules wait here, in order, each with one handler posted
  // to the loop that hands the oldest on (deliver_one): the loop's
  // handler stays small rather than carrying the message.
  struct Delivery {
    uint32_t peer;
    Message msg;
  };
  std::deque<Delivery> deliveries_;
  void deliver_one();
  Status listen_local();
  void accept_local();
  void on_local_connection(asio::local::stream_protocol::socket sock);
  // An acceptor's state after errors: out of descriptors (EMFILE, ENFILE)
  // it pauses instead of spinning, with one warning per episode.
  struct AcceptGate {
    const char* what;
    std::unique_ptr<Timer> timer;
    bool paused = false;
  };
  // After a failed accept: calls `again` now, or later while descriptors
  // are out.
  void accept_failed(AcceptGate& g, const std::error_code& ec, std::function<void()> again);
  void accept_succeeded(AcceptGate& g);

  // --- routing (broker.cpp) ---
  void on_message(uint32_t peer_id, Message&& m);
  void route_request(Message&& m);
  void route_response(Message&& m);
  void route_event(Message&& m, PeerKind from);
  void deliver_event(const Message& m);
  void respond_error(const Message& req, int errnum, const std::string& text);
  // Whether a response from client `p` answers a request delivered to it
  // (and forgets a request that this response finishes).
  bool was_asked(Peer& p, const Message& response);
  void notify_disconnect(Peer& p);
  Status register_service(const std::string& name, uint32_t peer_id);

  // --- overlay (overlay.cpp) ---
  Status start_overlay();
  void accept_child();
  void connect_parent(int attempt);
  void on_overlay_control(Peer& p, const Message& m);
  void on_overlay_connection(asio::local::stream_protocol::socket sock);
  // The same between hosts (overlay_tcp.cpp).
  Status start_tcp_overlay();
  void accept_tcp_child();
  void on_tcp_connection(asio::ip::tcp::socket sock);
  void connect_tcp_parent(int attempt);
  void retry_tcp_parent(int attempt, const std::string& why);
  void join_held_children();
  static constexpr size_t kMaxHeldMessages = 64;
  // Whether a child's hello for `rank` comes from that rank's host (TLS
  // links; Unix links are checked by uid when they connect).
  bool hello_from_host(Peer& p, uint32_t rank);
  void drop_stalled_frames(double now);
  void heartbeat_tick();
  void child_lost(uint32_t rank, const std::string& why);
  void set_rank_state(uint32_t rank, RankState s);
  // This broker's broker.online: {rank}, with {cores, gpus} over hosts.
  std::string online_payload() const;
  // Whether peer `p` may publish the broker.* event `m` (broker.cpp).
  bool may_announce(Peer& p, const Message& m);
  void maybe_finish_shutdown();
  void finish_shutdown();

  // --- built-in services: broker.*, service.*, event.* (builtin.cpp) ---
  void install_builtin_services();
  Peer* local_requester(const Message& req);
  void answer_waiters();

  asio::io_context& io_;
  Clock& clock_;
  BrokerConfig cfg_;
  Topology topo_;
  double started_at_ = 0;

  uint32_t next_peer_id_ = 1;
  std::unordered_map<uint32_t, std::unique_ptr<Peer>> peers_;
  // peers_ by id for the first ids, which the modules take at start: every
  // message looks its peers up, most of them between modules.
  std::array<Peer*, 64> low_peers_{};
  void forget_peer(uint32_t id);
  // A service registered on this broker: who provides it, and how many
  // requests it was handed (broker.info, docs/metrics.md). The count goes
  // with the registration, so clients that come and go cannot grow it.
  struct Service {
    uint32_t peer = 0;
    uint64_t requests = 0;
  };
  // Looked up by the topic's string_view on every routed request, without
  // building a string (a transparent hash).
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Service, NameHash, std::equal_to<>> services_;
  std::unordered_map<uint32_t, uint32_t> child_links_;  // child rank → peer id
  std::optional<uint32_t> parent_peer_;
  uint32_t event_seq_ = 0;

  std::unique_ptr<asio::local::stream_protocol::acceptor> local_acceptor_;
  std::unique_ptr<asio::local::stream_protocol::acceptor> overlay_acceptor_;
  std::unique_ptr<asio::ip::tcp::acceptor> tcp_acceptor_;
  std::unique_ptr<asio::ssl::context> tls_server_;  // TCP overlay: accepting children
  // TCP overlay: connections accepted whose TLS handshake is not done yet
  // (at most kMaxHandshakes: overlay_tcp.cpp); those refused beyond it
  // since the last log line, and when the next may be written.
  size_t handshaking_ = 0;
  uint64_t handshakes_refused_ = 0;
  double handshake_log_after_ = 0;
  std::unique_ptr<asio::ssl::context> tls_client_;  // TCP overlay: reaching the parent
  std::string parent_wait_reason_;                  // the last reason logged while reconnecting
  std::unique_ptr<Timer> heartbeat_timer_;
  AcceptGate local_gate_{"the local socket", nullptr, false};
  AcceptGate overlay_gate_{"the overlay socket", nullptr, false};
  std::shared_ptr<MemoryBudget> client_memory_;
  uint64_t forged_responses_ = 0;   // responses dropped: not from the asked peer
  uint64_t oversize_messages_ = 0;  // messages that would not fit a frame
  std::unique_ptr<Timer> connect_timer_;
  std::unique_ptr<Timer> shutdown_timer_;
  std::string bound_path_;          // a socket file we created and must remove
  std::string bound_overlay_path_;  // the same for the overlay socket

  Handle* builtin_ = nullptr;
  std::vector<RankState> rank_state_;  // rank 0 only: the whole instance
  // Rank 0 only: what each rank's broker.online said its host has
  // ({cores, gpus}; null until it has said).
  std::vector<Json> rank_resources_;
  std::vector<Message> ready_waiters_;

  bool shutting_down_ = false;
  std::function<void(bool up)> parent_link_;
  bool stop_asked_ = false;  // stop_instance asked rank 0 already
  std::vector<ShutdownHook> shutdown_hooks_;
  void run_shutdown_hooks(size_t i, const std::function<void()>& then);
  void stop_brokers();
  bool finished_flag_ = false;
  int exit_code_ = 0;
  std::function<void(int)> finished_;
};

}  // namespace loom
