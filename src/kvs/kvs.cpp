#include "kvs/kvs.h"

#include <spdlog/spdlog.h>

#include <asio/io_context.hpp>
#include <map>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "msg/access.h"
#include "msg/histogram_json.h"
#include "msg/payload.h"

namespace loom {

Status validate_key(const std::string& key) {
  if (key.empty()) return Error{EINVAL, "empty key"};
  if (key.size() > 1024) return Error{EINVAL, "key longer than 1024 bytes"};
  if (key.front() == '.' || key.back() == '.' || key.find("..") != std::string::npos) {
    return Error{EINVAL, "key \"" + key + "\" has an empty path component"};
  }
  for (unsigned char c : key) {
    if (c <= 0x20 || c == 0x7f) return Error{EINVAL, "key has whitespace or a control byte"};
  }
  return {};
}

namespace {
// Keys under `exec` are the execution service's record of a job (its exec
// eventlog), which it trusts after a restart: in a job's namespace the
// user may write the rest (its output) but not these
// (docs/protocols/jobs.md, "KVS").
bool written_only_by_the_instance(const std::string& key) {
  return key == kvs_key::kExecDir || key.starts_with(std::string(kvs_key::kExecDir) + ".");
}
}  // namespace

Result<std::unique_ptr<Kvs>> Kvs::create(asio::io_context& io, Handle& h, std::unique_ptr<Storage> storage,
                                         uint32_t owner) {
  auto loaded = storage->load();
  if (!loaded.ok()) return loaded.error();
  std::unique_ptr<Kvs> kvs(new Kvs(io, h, std::move(storage), owner));
  for (auto& [name, sns] : *loaded) {
    Namespace& ns = kvs->namespaces_[name];
    ns.owner = sns.owner;
    for (auto& [k, v] : sns.keys) ns.keys[k] = Entry{std::move(v.first), v.second};
  }
  if (!kvs->namespaces_.count(kPrimaryNamespace)) {
    StoredOp op{StoredOp::kNamespaceCreate, kPrimaryNamespace, {}, {}, 0, owner};
    if (auto st = kvs->storage_->write({op}); !st) return st.error();
    kvs->namespaces_[kPrimaryNamespace].owner = owner;
  }
  kvs->install();
  return kvs;
}

Kvs::Kvs(asio::io_context& io, Handle& h, std::unique_ptr<Storage> storage, uint32_t owner)
    : io_(io), h_(h), storage_(std::move(storage)), owner_(owner) {}

Kvs::~Kvs() = default;

void Kvs::install() {
  h_.add_method("kvs.lookup", Access::kUser, [this](const Message& m) { lookup(m); });
  // Reads its payload with payload_json only: commits from services of
  // this broker arrive without text.
  h_.add_json_method("kvs.commit", Access::kUser, [this](const Message& m) { commit(m); });
  h_.add_method("kvs.watch", Access::kUser, [this](const Message& m) { watch(m); });
  h_.add_method("kvs.watch-cancel", Access::kUser, [this](const Message& m) { watch_cancel(m); });
  h_.add_method("kvs.disconnect", Access::kUser, [this](const Message& m) { disconnect(m); });
  h_.add_method("kvs.namespace-create", Access::kOwner, [this](const Message& m) { namespace_create(m); });
  h_.add_method("kvs.namespace-remove", Access::kOwner, [this](const Message& m) { namespace_remove(m); });
  h_.add_method("kvs.namespace-list", Access::kUser, [this](const Message& m) { namespace_list(m); });
  h_.add_method("kvs.namespace-link", Access::kOwner, [this](const Message& m) { namespace_link(m); });
  h_.add_method("kvs.stats", Access::kUser, [this](const Message& m) { stats(m); });
}

void Kvs::stats(const Message& req) {
  h_.respond(req, Json{{"group_writes_total", commit_seconds_.count()},
                       {"commit_seconds", histogram_json(commit_seconds_)},
                       {"group_size", histogram_json(group_size_)}});
}

bool Kvs::pending_for(const std::string& ns) const { return pending_ns_.count(ns) > 0; }

Result<Kvs::Namespace*> Kvs::access(const Message& req, const std::string& ns, bool write) {
  auto it = namespaces_.find(ns);
  if (it == namespaces_.end() && pending_for(ns)) {
    // Created by a request that came before this one and waits for this
    // turn's transaction: a request into a namespace comes after its
    // creation (a lookup still sees only what is stored, as always).
    flush();
    it = namespaces_.find(ns);
  }
  if (it == namespaces_.end()) return Error{ENOENT, "no namespace " + ns};
  if (!may_touch(req, it->second.owner)) {
    return Error{EPERM, std::string(write ? "writing" : "reading") + " namespace " + ns + " is not allowed"};
  }
  return &it->second;
}

void Kvs::lookup(const Message& req) {
  auto j = payload_object(req);
  if (!j.ok()) return h_.respond_error(req, j.error());
  auto ns_name = get_string(*j, "namespace", kPrimaryNamespace);
  auto key = get_string(*j, "key", ".");
  if (!ns_name.ok()) return h_.respond_error(req, ns_name.error());
  if (!key.ok()) return h_.respond_error(req, key.error());
  auto ns = access(req, *ns_name, false);
  if (!ns.ok()) return h_.respond_error(req, ns.error());
  auto& keys = (*ns)->keys;
  bool root = *key == ".";
  if (!root) {
    if (auto st = validate_key(*key); !st) return h_.respond_error(req, st.error());
    auto it = keys.find(*key);
    if (it != keys.end()) return h_.respond(req, Json{{"value", it->second.value}});
  }
  // A directory: the distinct next components of the keys below it.
  std::string prefix = root ? "" : *key + ".";
  Json names = Json::array();
  std::string last;
  for (auto it = keys.lower_bound(prefix); it != keys.end() && it->first.starts_with(prefix); ++it) {
    std::string rest = it->first.substr(prefix.size());
    std::string name = rest.substr(0, rest.find('.'));
    if (name != last) {
      names.push_back(name);
      last = name;
    }
  }
  if (names.empty() && !root) return h_.respond_error(req, ENOENT, "no key " + *key);
  h_.respond(req, Json{{"dir", names}});
}

namespace {
// Whether the sender of `req` may write `key` in namespace `ns`.
Status may_write(const Message& req, const std::string& ns, const std::string& key) {
  if (auto st = validate_key(key); !st) return st;
  if (!is_owner(req) && written_only_by_the_instance(key)) {
    return Error{EPERM, "key " + key + " of namespace " + ns + " is written only by the instance"};
  }
  return {};
}
}  // namespace

void Kvs::commit(const Message& req) {
  if (const auto* typed = typed_payload<KvsCommit>(req)) return commit_typed(req, *typed);
  auto payload = payload_json(req);
  if (!payload.ok()) return h_.respond_error(req, payload.error());
  const Json* j = payload->get();
  auto ns_name = get_string(*j, "namespace", kPrimaryNamespace);
  if (!ns_name.ok()) return h_.respond_error(req, ns_name.error());
  auto ns = access(req, *ns_name, true);
  if (!ns.ok()) return h_.respond_error(req, ns.error());
  auto ops_it = j->find("ops");
  if (ops_it == j->end() || !ops_it->is_array()) return h_.respond_error(req, EPROTO, "commit needs an \"ops\" array");
  std::vector<StoredOp> ops;
  for (auto& o : *ops_it) {
    if (!o.is_object()) return h_.respond_error(req, EPROTO, "each op must be an object");
    auto kind = get_string(o, "op");
    auto key = get_string(o, "key");
    if (!kind.ok()) return h_.respond_error(req, kind.error());
    if (!key.ok()) return h_.respond_error(req, key.error());
    if (auto st = may_write(req, *ns_name, *key); !st) return h_.respond_error(req, st.error());
    StoredOp op;
    op.ns = *ns_name;
    op.key = *key;
    if (*kind == "put" || *kind == "append") {
      auto v = get_string(o, "value");
      if (!v.ok()) return h_.respond_error(req, v.error());
      op.kind = *kind == "put" ? StoredOp::kPut : StoredOp::kAppend;
      op.value = std::move(*v);
    } else if (*kind == "unlink") {
      op.kind = StoredOp::kUnlink;
    } else {
      return h_.respond_error(req, EPROTO, "unknown op \"" + *kind + "\" (put, append, unlink)");
    }
    ops.push_back(std::move(op));
  }
  enqueue(req, std::move(ops));
}

// The ops of a service of this process, checked as those of JSON are.
void Kvs::commit_typed(const Message& req, const KvsCommit& c) {
  auto ns = access(req, c.ns, true);
  if (!ns.ok()) return h_.respond_error(req, ns.error());
  std::vector<StoredOp> ops;
  ops.reserve(c.ops.size());
  for (const auto& o : c.ops) {
    if (auto st = may_write(req, c.ns, o.key); !st) return h_.respond_error(req, st.error());
    StoredOp op;
    op.ns = c.ns;
    op.key = o.key;
    switch (o.kind) {
      case KvsOp::kPut: op.kind = StoredOp::kPut; break;
      case KvsOp::kAppend: op.kind = StoredOp::kAppend; break;
      case KvsOp::kUnlink: op.kind = StoredOp::kUnlink; break;
    }
    if (o.kind != KvsOp::kUnlink) op.value = o.value;
    ops.push_back(std::move(op));
  }
  enqueue(req, std::move(ops));
}

void Kvs::enqueue(const Message& req, std::vector<StoredOp> ops) {
  const std::string* last = nullptr;  // a commit's ops are mostly in one namespace
  for (const auto& op : ops) {
    if (last && *last == op.ns) continue;
    pending_ns_.insert(op.ns);
    last = &op.ns;
  }
  pending_.push_back(PendingCommit{req, std::move(ops)});
  flush_turn_.request();
}

void Kvs::flush() {
  std::vector<PendingCommit> queued;
  queued.swap(pending_);
  pending_ns_.clear();
  if (queued.empty()) return;  // flushed early (a request behind a creation or a commit)
  // The queue's storage serves the next turn's commits, unless some came
  // in meanwhile.
  struct GiveBack {
    std::vector<PendingCommit>& from;
    std::vector<PendingCommit>& to;
    ~GiveBack() {
      from.clear();
      if (to.empty()) to.swap(from);
    }
  } give_back{queued, pending_};
  // Requests were checked against memory when they arrived, but one batch
  // can invalidate its own later requests (a namespace created twice, a
  // commit into a namespace removed just before): check again in order.
  std::map<std::string, bool> exists;  // namespaces created/removed so far in this batch
  // The commits that stand, moved to the front of the queue (batch).
  size_t kept = 0;
  for (auto& c : queued) {
    int code = 0;
    std::string name;
    for (auto& op : c.ops) {
      auto it = exists.find(op.ns);
      bool present = it != exists.end() ? it->second : namespaces_.count(op.ns) > 0;
      if (op.kind == StoredOp::kNamespaceCreate ? present : !present) {
        code = present ? EEXIST : ENOENT;
        name = op.ns;
        break;
      }
    }
    if (code) {
      if (!c.req.topic.empty()) {
        h_.respond_error(c.req, code, code == EEXIST ? "namespace " + name + " exists" : "no namespace " + name);
      }
      continue;
    }
    for (auto& op : c.ops) {
      if (op.kind == StoredOp::kNamespaceCreate) exists[op.ns] = true;
      if (op.kind == StoredOp::kNamespaceRemove) exists[op.ns] = false;
    }
    if (&c != &queued[kept]) queued[kept] = std::move(c);
    ++kept;
  }
  queued.resize(kept);
  auto& batch = queued;
  // Number the appended segments against what memory will hold by then
  // (the counts are keyed by views of the ops' own strings, which stay
  // where they are until every op is numbered). A batch mostly touches a
  // few keys: their counts are a short list searched in order, indexed by
  // a hash only once the list is long (a simulation's turn touches
  // thousands).
  using Count = SegmentCount;
  constexpr size_t kShortList = 16;
  constexpr size_t kKeptOps = 4096;
  std::vector<Count> counts;  // the lists of the last flush, for their capacity
  std::vector<StoredOp> all;
  std::vector<size_t> ends;
  counts.swap(flush_counts_);
  all.swap(flush_ops_);
  ends.swap(flush_ends_);
  struct Keep {
    Kvs& kvs;
    std::vector<Count>& counts;
    std::vector<StoredOp>& all;
    std::vector<size_t>& ends;
    ~Keep() {
      counts.clear();
      all.clear();
      ends.clear();
      // Not the room of a rare huge batch (a burst of submits, a link of
      // a large namespace) for good.
      if (all.capacity() > kKeptOps) {
        std::vector<StoredOp>().swap(all);
        std::vector<size_t>().swap(ends);
      }
      if (counts.capacity() > kKeptOps) std::vector<Count>().swap(counts);
      kvs.flush_counts_.swap(counts);
      kvs.flush_ops_.swap(all);
      kvs.flush_ends_.swap(ends);
    }
  } keep{*this, counts, all, ends};
  struct NsKeyHash {
    size_t operator()(const std::pair<std::string_view, std::string_view>& k) const {
      return std::hash<std::string_view>{}(k.second) * 31 + std::hash<std::string_view>{}(k.first);
    }
  };
  std::unordered_map<std::pair<std::string_view, std::string_view>, size_t, NsKeyHash> index;  // into counts, when long
  auto segments_of = [&](const std::string& ns, const std::string& key) -> uint32_t& {
    if (counts.size() <= kShortList) {
      for (auto& c : counts) {
        if (c.key == key && c.ns == ns) return c.n;
      }
    } else {
      if (index.empty()) {
        for (size_t i = 0; i < counts.size(); ++i) index.emplace(std::make_pair(counts[i].ns, counts[i].key), i);
      }
      if (auto it = index.find(std::make_pair(std::string_view(ns), std::string_view(key))); it != index.end()) {
        return counts[it->second].n;
      }
    }
    uint32_t n = 0;
    if (auto nit = namespaces_.find(ns); nit != namespaces_.end()) {
      if (auto kit = nit->second.keys.find(key); kit != nit->second.keys.end()) n = kit->second.segments;
    }
    counts.push_back(Count{ns, key, n});
    if (!index.empty()) index.emplace(std::make_pair(std::string_view(ns), std::string_view(key)), counts.size() - 1);
    return counts.back().n;
  };
  size_t nops = 0;
  for (auto& c : batch) {
    for (auto& op : c.ops) {
      switch (op.kind) {
        case StoredOp::kPut: segments_of(op.ns, op.key) = 1; break;
        case StoredOp::kAppend: op.seq = segments_of(op.ns, op.key)++; break;
        case StoredOp::kUnlink: {
          segments_of(op.ns, op.key) = 0;
          // Keys below it vanish too. (One this batch has not counted yet
          // is counted from memory, as it stands before the unlink: its
          // next segment then leaves a gap in the numbers, which storage
          // keeps in order all the same.)
          std::string prefix = op.key + ".";
          for (auto& c : counts) {
            if (c.key.starts_with(prefix) && c.ns == op.ns) c.n = 0;
          }
          break;
        }
        default: break;
      }
    }
    nops += c.ops.size();
  }
  counts.clear();  // their views go with the ops moved below
  index.clear();
  // Every op of the batch, moved out of its commit (ends: where each
  // commit's ops end), to be written and then applied in this order.
  all.reserve(nops);
  ends.reserve(batch.size());
  for (auto& c : batch) {
    for (auto& op : c.ops) all.push_back(std::move(op));
    ends.push_back(all.size());
  }
  const double write_began = h_.clock().now();
  auto st = storage_->write(all);
  commit_seconds_.observe(std::max(0.0, h_.clock().now() - write_began));
  group_size_.observe(static_cast<double>(batch.size()));
  if (!st) {
    spdlog::error("kvs: writing {} commits failed: {}", batch.size(), st.error().text);
    for (auto& c : batch) {
      if (!c.req.topic.empty()) h_.respond_error(c.req, st.error());
    }
    return;
  }
  for (size_t i = 0, k = 0; i < batch.size(); ++i) {
    for (; k < ends[i]; ++k) apply(all[k]);
    if (!batch[i].req.topic.empty()) h_.respond(batch[i].req, std::string("{}"));
  }
}

void Kvs::apply(const StoredOp& op) {
  auto nit = namespaces_.find(op.ns);
  switch (op.kind) {
    case StoredOp::kNamespaceCreate: namespaces_[op.ns].owner = op.owner; return;
    case StoredOp::kNamespaceRemove:
      if (nit != namespaces_.end()) {
        namespaces_.erase(nit);
        end_watches_in(op.ns);
      }
      return;
    default: break;
  }
  if (nit == namespaces_.end()) return;  // removed earlier in this batch
  auto& keys = nit->second.keys;
  switch (op.kind) {
    case StoredOp::kPut: {
      auto& e = keys[op.key];
      bool overwrite = e.segments > 0;  // 0: the key is new
      e.value = op.value;
      e.segments = 1;
      if (overwrite) {
        // Not an append: an append watcher that has seen the old value
        // cannot follow (its tail of a longer value would be wrong data).
        for (uint64_t id : watches_of(op.ns, &op.key)) {
          auto wit = watches_.find(id);
          if (wit == watches_.end() || !wit->second.append || wit->second.sent == 0) continue;
          h_.respond_error(wit->second.req, EINVAL, "key " + op.key + " was overwritten, not appended to");
          erase_watch(id);
        }
      }
      notify(op.ns, op.key);
      break;
    }
    case StoredOp::kAppend: {
      auto& e = keys[op.key];
      // Grow by a quarter rather than double: most appended values are
      // eventlogs that stop growing soon and stay in memory for good.
      size_t need = e.value.size() + op.value.size();
      if (need > e.value.capacity()) e.value.reserve(need + need / 4 + 32);
      e.value += op.value;
      e.segments = op.seq + 1;
      notify(op.ns, op.key);
      break;
    }
    case StoredOp::kUnlink: {
      // The keys removed, for their watchers, if anyone watches at all.
      const bool watched = !watch_index_.empty();
      std::vector<std::string> gone;
      if (keys.erase(op.key) && watched) gone.push_back(op.key);
      std::string prefix = op.key + ".";
      for (auto it = keys.lower_bound(prefix); it != keys.end() && it->first.starts_with(prefix);) {
        if (watched) gone.push_back(it->first);
        it = keys.erase(it);
      }
      for (auto& k : gone) notify(op.ns, k);
      break;
    }
    default: break;
  }
}

void Kvs::namespace_create(const Message& req) {
  auto j = payload_object(req);
  if (!j.ok()) return h_.respond_error(req, j.error());
  auto name = get_string(*j, "name");
  if (!name.ok()) return h_.respond_error(req, name.error());
  if (auto st = validate_key(*name); !st || name->find('.') != std::string::npos) {
    return h_.respond_error(req, EINVAL, "a namespace name is one key component");
  }
  auto owner_it = j->find("owner");
  uint32_t owner = owner_;
  if (owner_it != j->end()) {
    if (!owner_it->is_number_unsigned() || owner_it->get<uint64_t>() >= kUserIdUnknown) {
      return h_.respond_error(req, EPROTO, "\"owner\" must be a uid");
    }
    owner = owner_it->get<uint32_t>();
  }
  if (namespaces_.count(*name)) return h_.respond_error(req, EEXIST, "namespace " + *name + " exists");
  StoredOp op{StoredOp::kNamespaceCreate, *name, {}, {}, 0, owner};
  enqueue(req, {op});
}

void Kvs::namespace_remove(const Message& req) {
  auto j = payload_object(req);
  if (!j.ok()) return h_.respond_error(req, j.error());
  auto name = get_string(*j, "name");
  if (!name.ok()) return h_.respond_error(req, name.error());
  if (*name == kPrimaryNamespace) return h_.respond_error(req, EINVAL, "the primary namespace cannot be removed");
  if (!namespaces_.count(*name)) return h_.respond_error(req, ENOENT, "no namespace " + *name);
  StoredOp op;
  op.kind = StoredOp::kNamespaceRemove;
  op.ns = *name;
  enqueue(req, {op});
}

void Kvs::namespace_list(const Message& req) {
  Json out = Json::array();
  for (auto& [name, ns] : namespaces_) {
    if (may_touch(req, ns.owner)) {
      out.push_back({{"name", name}, {"owner", ns.owner}, {"keys", ns.keys.size()}});
    }
  }
  h_.respond(req, Json{{"namespaces", out}});
}

void Kvs::namespace_link(const Message& req) {
  auto j = payload_object(req);
  if (!j.ok()) return h_.respond_error(req, j.error());
  auto name = get_string(*j, "namespace");
  auto key = get_string(*j, "key");
  if (!name.ok()) return h_.respond_error(req, name.error());
  if (!key.ok()) return h_.respond_error(req, key.error());
  if (auto st = validate_key(*key); !st) return h_.respond_error(req, st.error());
  if (*name == kPrimaryNamespace) return h_.respond_error(req, EINVAL, "cannot link the primary namespace");
  // A link comes after the requests sent before it: commits to the
  // namespace (or its creation) still waiting for this turn's transaction
  // are stored first, so the copy holds them.
  if (pending_for(*name)) flush();
  auto it = namespaces_.find(*name);
  if (it == namespaces_.end()) return h_.respond_error(req, ENOENT, "no namespace " + *name);
  // Replace whatever was under KEY with a copy of the namespace: one batch.
  std::vector<StoredOp> ops;
  StoredOp unlink;
  unlink.kind = StoredOp::kUnlink;
  unlink.ns = kPrimaryNamespace;
  unlink.key = *key;
  ops.push_back(unlink);
  for (auto& [k, e] : it->second.keys) {
    StoredOp put;
    put.kind = StoredOp::kPut;
    put.ns = kPrimaryNamespace;
    put.key = *key + "." + k;
    put.value = e.value;
    ops.push_back(std::move(put));
  }
  enqueue(req, std::move(ops));
}

}  // namespace loom
