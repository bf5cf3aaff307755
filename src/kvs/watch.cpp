// kvs.watch: a streaming request per watcher. A watcher is found by
// (namespace, key) in watch_index_, by its client in watch_by_client_;
// every applied change calls notify().
// Watches end (ENODATA) when their key is removed, their namespace is
// removed, on kvs.watch-cancel, or silently when their client disconnects.
#include <spdlog/spdlog.h>

#include "kvs/kvs.h"

namespace loom {

namespace {
bool get_flag(const Json& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}
}  // namespace

void Kvs::watch(const Message& req) {
  if (!req.has_flag(msgflag::kStreaming)) return h_.respond_error(req, EPROTO, "kvs.watch must be streaming");
  auto j = parse_json(req.payload);
  if (!j.ok()) return h_.respond_error(req, j.error());
  if (!j->is_object()) return h_.respond_error(req, EPROTO, "payload must be a JSON object");
  std::string ns_name = kPrimaryNamespace;
  std::string key;
  std::string from = "start";
  try {
    ns_name = j->value("namespace", std::string(kPrimaryNamespace));
    key = j->value("key", std::string());
    from = j->value("from", std::string("start"));
  } catch (const Json::exception&) {
    return h_.respond_error(req, EPROTO, "namespace, key and from must be strings");
  }
  if (auto st = validate_key(key); !st) return h_.respond_error(req, st.error());
  if (from != "start" && from != "now") return h_.respond_error(req, EPROTO, "from must be \"start\" or \"now\"");
  auto ns = access(req, ns_name, false);
  if (!ns.ok()) return h_.respond_error(req, ns.error());
  auto it = (*ns)->keys.find(key);
  bool exists = it != (*ns)->keys.end();
  if (!exists && !get_flag(*j, "waitcreate")) return h_.respond_error(req, ENOENT, "no key " + key);

  uint64_t id = next_watch_++;
  Watch w{req, ns_name, key, get_flag(*j, "append"), 0};
  if (from == "now" && exists) w.sent = it->second.value.size();
  auto [wit, inserted] = watches_.emplace(id, std::move(w));
  watch_index_.emplace(ns_name, key, id);
  watch_by_client_.emplace(req.sender(), req.matchtag, id);
  if (exists && from == "start") (void)send_update(wit->second);
}

bool Kvs::send_update(Watch& w) {
  auto nit = namespaces_.find(w.ns);
  if (nit == namespaces_.end()) return true;
  auto it = nit->second.keys.find(w.key);
  if (it == nit->second.keys.end()) return true;
  const std::string& v = it->second.value;
  if (!w.append) {
    h_.respond(w.req, Json{{"value", v}});
    return true;
  }
  if (v.size() < w.sent) {
    // Overwritten with something shorter: an append watcher cannot follow.
    h_.respond_error(w.req, EINVAL, "key " + w.key + " was overwritten, not appended to");
    return false;
  }
  if (v.size() == w.sent) return true;
  h_.respond(w.req, Json{{"data", v.substr(w.sent)}});
  w.sent = v.size();
  return true;
}

void Kvs::notify(const std::string& ns, const std::string& key) {
  auto ids = watches_of(ns, &key);
  if (ids.empty()) return;
  bool gone = true;
  if (auto nit = namespaces_.find(ns); nit != namespaces_.end()) gone = !nit->second.keys.count(key);
  for (uint64_t id : ids) {
    auto wit = watches_.find(id);
    if (wit == watches_.end()) continue;
    if (gone) {
      h_.respond_error(wit->second.req, ENODATA, "key " + key + " was removed");
    } else if (send_update(wit->second)) {
      continue;
    }
    erase_watch(id);
  }
}

void Kvs::end_watches_in(const std::string& ns) {
  for (uint64_t id : watches_of(ns, nullptr)) {
    auto wit = watches_.find(id);
    if (wit == watches_.end()) continue;
    h_.respond_error(wit->second.req, ENODATA, "namespace " + ns + " was removed");
    erase_watch(id);
  }
}

std::vector<uint64_t> Kvs::watches_of(const std::string& ns, const std::string* key) const {
  std::vector<uint64_t> ids;
  if (watch_index_.empty()) return ids;  // most changes: nobody watches, and the bound below copies the key
  static const std::string kNone;
  for (auto it = watch_index_.lower_bound({ns, key ? *key : kNone, 0});
       it != watch_index_.end() && std::get<0>(*it) == ns && (!key || std::get<1>(*it) == *key); ++it) {
    ids.push_back(std::get<2>(*it));
  }
  return ids;
}

void Kvs::erase_watch(uint64_t id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  watch_index_.erase({it->second.ns, it->second.key, id});
  watch_by_client_.erase({it->second.req.sender(), it->second.req.matchtag, id});
  watches_.erase(it);
}

void Kvs::watch_cancel(const Message& req) {
  auto j = parse_json(req.payload);
  if (!j.ok()) return h_.respond_error(req, j.error());
  if (!j->is_object() || !j->contains("matchtag") || !(*j)["matchtag"].is_number_unsigned()) {
    return h_.respond_error(req, EPROTO, "kvs.watch-cancel needs a numeric \"matchtag\"");
  }
  uint32_t tag = (*j)["matchtag"].get<uint32_t>();
  std::vector<uint64_t> ids;
  for (auto it = watch_by_client_.lower_bound({req.sender(), tag, 0});
       it != watch_by_client_.end() && std::get<0>(*it) == req.sender() && std::get<1>(*it) == tag; ++it) {
    ids.push_back(std::get<2>(*it));
  }
  size_t n = ids.size();
  for (uint64_t id : ids) {
    h_.respond_error(watches_.at(id).req, ENODATA, "watch cancelled");
    erase_watch(id);
  }
  if (n == 0) return h_.respond_error(req, ENOENT, "no such watch");
  h_.respond(req, std::string("{}"));
}

void Kvs::disconnect(const Message& req) {
  HopId who = req.sender();
  std::vector<uint64_t> ids;
  for (auto it = watch_by_client_.lower_bound({who, 0, 0}); it != watch_by_client_.end() && std::get<0>(*it) == who;
       ++it) {
    ids.push_back(std::get<2>(*it));
  }
  for (uint64_t id : ids) erase_watch(id);
}

}  // namespace loom
