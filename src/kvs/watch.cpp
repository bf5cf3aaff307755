// kvs.watch: a streaming request per watcher. A watcher is keyed by
// (namespace, key) in watch_index_; every applied change calls notify().
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
  watch_index_.emplace(std::make_pair(ns_name, key), id);
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
  auto range = watch_index_.equal_range(std::make_pair(ns, key));
  if (range.first == range.second) return;
  bool gone = true;
  if (auto nit = namespaces_.find(ns); nit != namespaces_.end()) gone = !nit->second.keys.count(key);
  for (auto it = range.first; it != range.second;) {
    auto wit = watches_.find(it->second);
    bool keep = wit != watches_.end();
    if (keep && gone) {
      h_.respond_error(wit->second.req, ENODATA, "key " + key + " was removed");
      keep = false;
    } else if (keep) {
      keep = send_update(wit->second);
    }
    if (keep) {
      ++it;
      continue;
    }
    if (wit != watches_.end()) watches_.erase(wit);
    it = watch_index_.erase(it);
  }
}

void Kvs::end_watches_in(const std::string& ns) {
  for (auto it = watch_index_.begin(); it != watch_index_.end();) {
    if (it->first.first != ns) {
      ++it;
      continue;
    }
    if (auto wit = watches_.find(it->second); wit != watches_.end()) {
      h_.respond_error(wit->second.req, ENODATA, "namespace " + ns + " was removed");
      watches_.erase(wit);
    }
    it = watch_index_.erase(it);
  }
}

void Kvs::watch_cancel(const Message& req) {
  auto j = parse_json(req.payload);
  if (!j.ok()) return h_.respond_error(req, j.error());
  if (!j->is_object() || !j->contains("matchtag") || !(*j)["matchtag"].is_number_unsigned()) {
    return h_.respond_error(req, EPROTO, "kvs.watch-cancel needs a numeric \"matchtag\"");
  }
  uint32_t tag = (*j)["matchtag"].get<uint32_t>();
  int n = 0;
  for (auto it = watches_.begin(); it != watches_.end();) {
    if (it->second.req.sender() == req.sender() && it->second.req.matchtag == tag) {
      h_.respond_error(it->second.req, ENODATA, "watch cancelled");
      auto key = std::make_pair(it->second.ns, it->second.key);
      uint64_t id = it->first;
      for (auto r = watch_index_.equal_range(key); r.first != r.second; ++r.first) {
        if (r.first->second == id) {
          watch_index_.erase(r.first);
          break;
        }
      }
      it = watches_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  if (n == 0) return h_.respond_error(req, ENOENT, "no such watch");
  h_.respond(req, std::string("{}"));
}

void Kvs::disconnect(const Message& req) {
  HopId who = req.sender();
  for (auto it = watches_.begin(); it != watches_.end();) {
    if (it->second.req.sender() != who) {
      ++it;
      continue;
    }
    auto key = std::make_pair(it->second.ns, it->second.key);
    for (auto r = watch_index_.equal_range(key); r.first != r.second; ++r.first) {
      if (r.first->second == it->first) {
        watch_index_.erase(r.first);
        break;
      }
    }
    it = watches_.erase(it);
  }
}

}  // namespace loom
