// The `kvs` service on rank 0 (docs/storage.md). Used only through messages:
//
//   kvs.lookup {namespace?, key}             → {"value": S} or {"dir": [names]}
//   kvs.commit {namespace?, ops: [{op: put|append|unlink, key, value?}, ...]}
//                                            → {} once durable; all ops or none
//                                            (from a service of this process:
//                                            the same as a KvsCommit, kvs/commit.h)
//   kvs.watch {namespace?, key, append?, waitcreate?, from?: "start"|"now"}
//            streaming: {"value": S} per change, or with append {"data": S}
//            per appended chunk; ends with ENODATA when the key is removed
//            or the watch is cancelled
//   kvs.watch-cancel {matchtag}              ends the caller's watch
//   kvs.namespace-create {name, owner}       (owner only)
//   kvs.namespace-remove {name}              (owner only)
//   kvs.namespace-list {}                    the caller's namespaces (all for the owner)
//   kvs.namespace-link {namespace, key}      copy a namespace under KEY of the
//                                            primary namespace, atomically (owner only)
//   kvs.stats {}                             {"group_writes_total", "commit_seconds",
//                                            "group_size"}: histograms of each group
//                                            write's time and requests (docs/metrics.md)
//
// The namespace defaults to "primary", which belongs to the instance owner.
// A user may read and write only the namespaces they own.
//
// Values are strings. Keys are dot-separated paths ("job.42.eventlog");
// a key with keys below it is a directory. Every commit that arrives in
// one loop turn is written in one storage transaction (group commit); the
// responses go out after it.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "base/histogram.h"
#include "base/once_per_turn.h"
#include "base/result.h"
#include "kvs/commit.h"
#include "kvs/layout.h"
#include "kvs/storage.h"
#include "msg/handle.h"

namespace asio {
class io_context;
}

namespace loom {

inline constexpr const char* kPrimaryNamespace = kvs_key::kPrimaryNamespace;

class Kvs {
 public:
  // Loads `storage` and serves on `h`. `owner` is the instance owner's uid.
  static Result<std::unique_ptr<Kvs>> create(asio::io_context& io, Handle& h, std::unique_ptr<Storage> storage,
                                             uint32_t owner);
  ~Kvs();

  struct Entry {
    std::string value;
    uint32_t segments = 0;  // storage's next segment number for it (0: a new key)
  };
  // A namespace's keys: in order, for a directory's listing and the keys
  // an unlink removes below one, and hashed, for the lookups that nearly
  // every request and op makes. (A tree of thousands of long keys that
  // all begin "job." costs two cache misses a level to search.) The
  // subset of std::map's interface the KVS uses.
  class Keys {
   public:
    using Map = std::map<std::string, Entry>;
    using iterator = Map::iterator;
    using const_iterator = Map::const_iterator;
    Keys() = default;
    Keys(Keys&&) = default;  // a map's nodes, and so the index, move with it
    Keys& operator=(Keys&&) = default;
    Keys(const Keys&) = delete;
    Keys& operator=(const Keys&) = delete;
    ~Keys() = default;

    iterator find(const std::string& key) {
      auto it = index_.find(key);
      return it == index_.end() ? map_.end() : it->second;
    }
    const_iterator find(const std::string& key) const {
      auto it = index_.find(key);
      return it == index_.end() ? map_.end() : const_iterator(it->second);
    }
    size_t count(const std::string& key) const { return index_.count(key); }
    // The key's entry, a new empty one if it had none.
    Entry& operator[](const std::string& key) {
      if (auto it = index_.find(key); it != index_.end()) return it->second->second;
      auto m = map_.emplace(key, Entry{}).first;
      index_.emplace(m->first, m);
      return m->second;
    }
    iterator erase(iterator it) {
      index_.erase(it->first);
      return map_.erase(it);
    }
    size_t erase(const std::string& key) {
      auto it = index_.find(key);
      if (it == index_.end()) return 0;
      auto m = it->second;
      index_.erase(it);  // before the node its view is of
      map_.erase(m);
      return 1;
    }
    iterator lower_bound(const std::string& key) { return map_.lower_bound(key); }
    const_iterator lower_bound(const std::string& key) const { return map_.lower_bound(key); }
    iterator begin() { return map_.begin(); }
    iterator end() { return map_.end(); }
    const_iterator begin() const { return map_.begin(); }
    const_iterator end() const { return map_.end(); }
    size_t size() const { return map_.size(); }

   private:
    Map map_;
    std::unordered_map<std::string_view, iterator> index_;  // views of map_'s keys
  };
  struct Namespace {
    uint32_t owner = 0;
    Keys keys;
  };

 private:
  struct Watch {
    Message req;
    std::string ns;
    std::string key;
    bool append = false;
    size_t sent = 0;  // bytes of the value already sent (append mode)
  };
  struct PendingCommit {
    Message req;  // empty topic for internal commits
    std::vector<StoredOp> ops;
  };

  Kvs(asio::io_context& io, Handle& h, std::unique_ptr<Storage> storage, uint32_t owner);
  void install();

  void lookup(const Message& req);
  void commit(const Message& req);
  void commit_typed(const Message& req, const KvsCommit& c);
  void namespace_create(const Message& req);
  void namespace_remove(const Message& req);
  void namespace_list(const Message& req);
  void namespace_link(const Message& req);
  void watch(const Message& req);
  void watch_cancel(const Message& req);
  void disconnect(const Message& req);
  void stats(const Message& req);

  // Queues ops for the next group write; the request is answered after it.
  void enqueue(const Message& req, std::vector<StoredOp> ops);
  void flush();
  // Whether requests waiting for this turn's transaction touch namespace `ns`.
  bool pending_for(const std::string& ns) const;
  void apply(const StoredOp& op);
  void notify(const std::string& ns, const std::string& key);
  void end_watches_in(const std::string& ns);
  // Sends what `w` has not seen; false when that ended the watch.
  bool send_update(Watch& w);

  Result<Namespace*> access(const Message& req, const std::string& ns, bool write);

  asio::io_context& io_;
  Handle& h_;
  std::unique_ptr<Storage> storage_;
  uint32_t owner_;
  std::map<std::string, Namespace> namespaces_;
  std::vector<PendingCommit> pending_;
  std::set<std::string> pending_ns_;  // the namespaces pending_ touches
  // Everything that arrives before the flush runs joins its transaction.
  OncePerTurn flush_turn_{io_, [this] { flush(); }};
  uint64_t next_watch_ = 1;
  std::unordered_map<uint64_t, Watch> watches_;
  // The watches by what finds them, each lookup and removal log n however
  // many there are (a client may hold thousands on one key, and cancel
  // or drop them all at once):
  std::set<std::tuple<std::string, std::string, uint64_t>> watch_index_;  // (ns, key, watch)
  std::set<std::tuple<HopId, uint32_t, uint64_t>> watch_by_client_;       // (sender, matchtag, watch)
  // The watches of (ns, key), of a namespace (key ""), of a client.
  std::vector<uint64_t> watches_of(const std::string& ns, const std::string* key) const;
  // Forgets watch `id` everywhere (it is answered, if at all, by the caller).
  void erase_watch(uint64_t id);
  // flush()'s working lists, kept between turns for their capacity: the
  // appended segments counted per key (views of the ops' strings), and
  // every op of the batch with where each commit's ops end.
  struct SegmentCount {
    std::string_view ns, key;
    uint32_t n;
  };
  std::vector<SegmentCount> flush_counts_;
  std::vector<StoredOp> flush_ops_;
  std::vector<size_t> flush_ends_;
  // Per group write (one storage transaction per loop turn).
  Histogram commit_seconds_{Histogram::seconds_bounds()};
  Histogram group_size_{{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}};
};

// A key is non-empty dot-separated components without whitespace or
// control bytes, at most 1024 bytes.
Status validate_key(const std::string& key);

}  // namespace loom
