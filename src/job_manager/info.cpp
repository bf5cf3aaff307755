// The job-info.* service: lookups and eventlogs (impl.h).
#include "job_manager/impl.h"

namespace loom {

// ---------------------------------------------------------------- job-info

void JobManager::Impl::info_lookup(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto j = find_job(m, *p, false);
  if (!j.ok()) return h_.respond_error(m, j.error());
  if (!p->contains("keys") || !(*p)["keys"].is_array() || (*p)["keys"].empty()) {
    return h_.respond_error(m, EPROTO, "\"keys\" must be a non-empty array");
  }
  std::vector<std::string> keys;
  // The job's own keys, and the eventlogs of its guest namespace once it is
  // linked into the job's directory (the output and the exec eventlog).
  static const std::set<std::string> kKeys = {kvs_key::kJobspec, kvs_key::kR, kvs_key::kEventlog, kvs_key::kGuestOutput,
                                              kvs_key::kGuestExecEventlog};
  for (const auto& k : (*p)["keys"]) {
    if (!k.is_string() || !kKeys.count(k.get<std::string>())) {
      return h_.respond_error(m, EINVAL, "keys are jobspec, R, eventlog, guest.output and guest.exec.eventlog");
    }
    keys.push_back(k.get<std::string>());
  }
  JobId id = (*j)->id;
  auto out = std::make_shared<Json>(Json{{"id", id.value()}});
  auto left = std::make_shared<size_t>(keys.size());
  auto failed = std::make_shared<bool>(false);
  for (const auto& k : keys) {
    h_.rpc("kvs.lookup", Json{{"key", kvs_key::job_leaf(id, k)}}, {},
           [this, m, out, left, failed, k, id](const Message& r) {
             if (*failed) return;
             if (r.errnum) {
               *failed = true;
               if (r.errnum == ENOENT) return h_.respond_error(m, ENOENT, "job " + encode_f58(id) + " has no " + k);
               return h_.respond_error(m, r.errnum, error_text(r));
             }
             auto v = parse_json(r.payload);
             if (v.ok() && v->contains("value")) (*out)[k] = (*v)["value"];
             if (--*left == 0) h_.respond(m, *out);
           });
  }
}

void JobManager::Impl::info_eventlog(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  if (!m.has_flag(msgflag::kStreaming)) return h_.respond_error(m, EPROTO, "job-info.eventlog must be streaming");
  auto j = find_job(m, *p, false);
  if (!j.ok()) return h_.respond_error(m, j.error());
  auto follow = get_bool(*p, "follow", false);
  if (!follow.ok()) return h_.respond_error(m, follow.error());
  JobId id = (*j)->id;
  // Without follow, one lookup of what is stored answers it. Following
  // watches even a job that is already inactive here: its last events may
  // not be stored yet, and the watch ends once `clean` is.
  if (!*follow) {
    h_.rpc("kvs.lookup", Json{{"key", kvs_key::job_eventlog(id)}}, {}, [this, m](const Message& r) {
      if (r.errnum) return h_.respond_error(m, r.errnum, error_text(r));
      auto v = parse_json(r.payload);
      if (!v.ok() || !v->contains("value") || !(*v)["value"].is_string()) {
        return h_.respond_error(m, EPROTO, "the eventlog is not text");
      }
      LineSplitter lines;
      for (auto& line : lines.feed((*v)["value"].get<std::string>())) {
        auto e = parse_event(line);
        if (e.ok()) h_.respond(m, Json{{"event", parse_json(line).value()}});
      }
      h_.respond_error(m, ENODATA, "");
    });
    return;
  }
  Json watch{{"key", kvs_key::job_eventlog(id)}, {"append", true}, {"from", "start"}};
  auto state = std::make_shared<EventlogWatch>(EventlogWatch{m, id, {}});
  auto tagp = std::make_shared<uint32_t>(0);
  *tagp = h_.rpc("kvs.watch", watch, RpcOptions{.streaming = true}, [this, state, tagp](const Message& r) {
    auto finish = [&](bool cancel_watch) {
      if (cancel_watch) {
        h_.cancel_rpc(*tagp);
        h_.rpc("kvs.watch-cancel", Json{{"matchtag", *tagp}}, {}, [](const Message&) {});
      }
      eventlog_watches_.erase(*tagp);
      h_.respond_error(state->req, ENODATA, "");
    };
    if (r.errnum) {
      if (r.errnum == ENODATA) return finish(false);
      eventlog_watches_.erase(*tagp);
      return h_.respond_error(state->req, r.errnum, error_text(r));
    }
    auto v = parse_json(r.payload);
    if (!v.ok() || !v->contains("data") || !(*v)["data"].is_string()) return;
    for (auto& line : state->lines.feed((*v)["data"].get<std::string>())) {
      auto e = parse_event(line);
      if (!e.ok()) continue;
      h_.respond(state->req, Json{{"event", parse_json(line).value()}});
      if (e->name == "clean") return finish(true);
    }
  });
  eventlog_watches_.emplace(*tagp, EventlogWatch{m, id, {}});
}

void JobManager::Impl::info_disconnect(const Message& m) {
  HopId who = m.sender();
  for (auto it = eventlog_watches_.begin(); it != eventlog_watches_.end();) {
    if (it->second.req.sender() != who) {
      ++it;
      continue;
    }
    h_.cancel_rpc(it->first);
    h_.rpc("kvs.watch-cancel", Json{{"matchtag", it->first}}, {}, [](const Message&) {});
    it = eventlog_watches_.erase(it);
  }
}

}  // namespace loom
