#include "msg/handle.h"

#include "msg/codec.h"

namespace loom {

namespace {
// A message whose text is written and would not fit in one frame. Text
// that is still to be written (a service inside the broker) is the
// broker's to check when it leaves through a socket.
bool too_big(const Message& m) { return !m.payload.empty() && frame_body_size(m) > kMaxFrameSize; }

// What the encoder asserts of a topic and a route (encode_message), for
// a response: it copies its request's, which were checked in full where
// the request was decoded or sent, so the scan of every byte is not done
// again on the loop's busiest path. A response to a request that never
// passed either (one built here by hand) is still never framed with a
// topic or a route the encoder would abort on.
bool frameable_response(const Message& m) {
  return !m.topic.empty() && m.topic.size() <= kMaxTopicSize && m.route.size() <= kMaxRouteHops;
}

std::string too_big_text(const Message& m, const char* what) {
  return std::string(what) + " " + m.topic + " of " + std::to_string(frame_body_size(m)) +
         " bytes exceeds the frame limit of " + std::to_string(kMaxFrameSize) + " bytes";
}
}  // namespace

Handle::Handle(Clock& clock, SendFn send) : clock_(clock), send_(std::move(send)) {}

Handle::~Handle() = default;

void Handle::set_credentials(uint32_t userid, uint32_t rolemask) {
  userid_ = userid;
  rolemask_ = rolemask;
}

void Handle::send(Message&& m) {
  // A request's or an event's topic is its sender's word: one no peer
  // takes (a space, a control byte, over 255 bytes) could not be framed or
  // would be refused, so such a message is never handed to a transport.
  if (m.is_response() ? !frameable_response(m) : !validate_message(m)) return;
  if (too_big(m)) {
    // Never handed to a transport, which could not frame it. A request's
    // caller learns it from its RPC (rpc_message); a response becomes an
    // error response; anything else cannot be answered and is not sent.
    if (!m.is_response() || m.errnum != 0) return;
    m = make_error_response(m, EMSGSIZE, too_big_text(m, "response to"));
  }
  hand_over(std::move(m));
}

void Handle::hand_over(Message&& m) {
  if (m.userid == kUserIdUnknown) {
    m.userid = userid_;
    m.rolemask = rolemask_;
  }
  send_(std::move(m));
}

void Handle::send_typed(Message&& m, std::shared_ptr<const TypedPayload> payload) {
  m.typed = std::move(payload);
  if (!lazy_text_) m.write_text();
  send(std::move(m));
}

uint32_t Handle::next_matchtag() {
  // Skip 0 (matchtag-less) and any tag still in flight after wrapping.
  do {
    ++matchtag_;
  } while (matchtag_ == 0 || rpcs_.count(matchtag_));
  return matchtag_;
}

// The parsed value of one payload, and its text unless that may wait.
std::shared_ptr<const Json> Handle::share(Json&& payload, std::string& text) const {
  if (!lazy_text_) text = dump_json(payload);
  return std::make_shared<const Json>(std::move(payload));
}

uint32_t Handle::rpc(std::string topic, Json&& payload, RpcOptions opts, ResponseFn fn) {
  std::string text;
  auto json = share(std::move(payload), text);
  return rpc_message(std::move(topic), std::move(text), std::move(json), opts, std::move(fn));
}

uint32_t Handle::rpc(std::string topic, std::string payload, RpcOptions opts, ResponseFn fn) {
  return rpc_message(std::move(topic), std::move(payload), nullptr, opts, std::move(fn));
}

uint32_t Handle::rpc_message(std::string topic, std::string payload, std::shared_ptr<const Json> json, RpcOptions opts,
                             ResponseFn fn, std::shared_ptr<const TypedPayload> typed) {
  uint32_t tag = next_matchtag();
  Message m = make_request(std::move(topic), std::move(payload), opts.nodeid, opts.streaming ? msgflag::kStreaming : 0);
  m.json = std::move(json);
  m.typed = std::move(typed);
  if (m.typed && !lazy_text_) m.write_text();
  m.matchtag = tag;
  Rpc rpc{std::move(fn), opts.streaming, nullptr};
  // A topic no peer takes (empty, over 255 bytes, a space or a control
  // byte) cannot even be framed; nor can a payload past the frame limit.
  Status valid = validate_message(m);
  if (!valid || too_big(m)) {
    // The caller hears of it from the loop, as of any other failure.
    rpc.timer = clock_.make_timer();
    Message err = !valid ? make_error_response(m, EINVAL, "cannot send to that topic: " + valid.error().text)
                         : make_error_response(m, EMSGSIZE, too_big_text(m, "request"));
    rpc.timer->arm(0, [this, tag, err = std::move(err)] {
      auto it = rpcs_.find(tag);
      if (it == rpcs_.end()) return;
      auto f = std::move(it->second.fn);
      rpcs_.erase(it);
      f(err);
    });
    rpcs_.emplace(tag, std::move(rpc));
    return tag;
  }
  if (opts.timeout > 0) {
    rpc.timer = clock_.make_timer();
    Message req = m;  // for the synthetic error response
    rpc.timer->arm(opts.timeout, [this, tag, req = std::move(req), timeout = opts.timeout] {
      auto it = rpcs_.find(tag);
      if (it == rpcs_.end()) return;
      auto f = std::move(it->second.fn);
      rpcs_.erase(it);
      char buf[64];
      std::snprintf(buf, sizeof buf, "no response within %gs", timeout);
      f(make_error_response(req, ETIMEDOUT, buf));
    });
  }
  rpcs_.emplace(tag, std::move(rpc));
  hand_over(std::move(m));  // checked above, as send() would
  return tag;
}

void Handle::cancel_rpc(uint32_t matchtag) { rpcs_.erase(matchtag); }

void Handle::send_oneway(std::string topic, std::string payload, uint32_t nodeid) {
  send(make_request(std::move(topic), std::move(payload), nodeid, msgflag::kNoResponse));
}

void Handle::send_matchless(std::string topic, std::string payload, uint32_t nodeid) {
  send(make_request(std::move(topic), std::move(payload), nodeid, msgflag::kStreaming));
}

void Handle::send_matchless(std::string topic, Json&& payload, uint32_t nodeid) {
  std::string text;
  auto json = share(std::move(payload), text);
  Message m = make_request(std::move(topic), std::move(text), nodeid, msgflag::kStreaming);
  m.json = std::move(json);
  send(std::move(m));
}

void Handle::on_response(const std::string& topic, ResponseFn fn) {
  matchless_[topic] = Matchless{std::make_shared<const ResponseFn>(std::move(fn))};
}

void Handle::on_json_response(const std::string& topic, ResponseFn fn) {
  matchless_[topic] = Matchless{std::make_shared<const ResponseFn>(std::move(fn)), true};
}

void Handle::add_method(const std::string& topic, Access access, RequestFn fn) {
  methods_[topic] = Method{access, std::make_shared<const RequestFn>(std::move(fn))};
}

void Handle::add_json_method(const std::string& topic, Access access, RequestFn fn) {
  methods_[topic] = Method{access, std::make_shared<const RequestFn>(std::move(fn)), true};
}

void Handle::remove_methods(const std::string& service) {
  std::string prefix = service + ".";
  std::erase_if(methods_, [&](const auto& kv) { return kv.first.starts_with(prefix); });
}

void Handle::respond(const Message& req, std::string payload) {
  if (!req.wants_response()) return;
  send(make_response(req, std::move(payload)));
}

void Handle::respond(const Message& req, Json&& payload) {
  if (!req.wants_response()) return;
  std::string text;
  auto json = share(std::move(payload), text);
  Message m = make_response(req, std::move(text));
  m.json = std::move(json);
  send(std::move(m));
}

void Handle::respond_error(const Message& req, int errnum, std::string_view text) {
  if (!req.wants_response()) return;
  send(make_error_response(req, errnum, text));
}

void Handle::subscribe(const std::string& prefix, EventFn fn, std::function<void(const Error*)> done) {
  subscriptions_.emplace_back(prefix, std::move(fn));
  rpc("event.subscribe", Json{{"topic", prefix}}, {}, [done = std::move(done)](const Message& r) {
    if (!done) return;
    if (r.errnum) {
      Error e{r.errnum, error_text(r)};
      done(&e);
    } else {
      done(nullptr);
    }
  });
}

void Handle::publish(std::string topic, std::string payload) { send(make_event(std::move(topic), std::move(payload))); }

void Handle::publish_private(std::string topic, std::string payload, uint32_t userid) {
  send_private(make_event(std::move(topic), std::move(payload)), userid);
}

void Handle::publish_private(std::string topic, Json&& payload, uint32_t userid) {
  // (The text always: an event's subscribers may read either.)
  Message m = make_event(std::move(topic), dump_json(payload));
  m.json = std::make_shared<const Json>(std::move(payload));
  send_private(std::move(m), userid);
}

void Handle::send_private(Message m, uint32_t userid) {
  m.flags |= msgflag::kPrivate;
  m.userid = userid;
  m.rolemask = rolemask_;
  send(std::move(m));
}

void Handle::dispatch(Message&& m) {
  switch (m.type) {
    case MsgType::kResponse: dispatch_response(std::move(m)); break;
    case MsgType::kRequest: dispatch_request(std::move(m)); break;
    case MsgType::kEvent: dispatch_event(m); break;
  }
}

void Handle::dispatch_response(Message&& m) {
  if (m.matchtag == 0) {
    auto it = matchless_.find(m.topic);
    if (it != matchless_.end()) {
      if (!it->second.reads_json) m.write_text();
      auto fn = it->second.fn;  // the handler may replace itself
      (*fn)(m);
    }
    return;
  }
  auto it = rpcs_.find(m.matchtag);
  if (it == rpcs_.end()) return;  // cancelled or timed out: drop
  m.write_text();
  bool last = !it->second.streaming || m.errnum != 0;
  if (last) {
    auto fn = std::move(it->second.fn);
    rpcs_.erase(it);
    fn(m);
  } else {
    // Call a copy: the callback may cancel_rpc() or fail_all(), which
    // destroys the one in the table while it runs.
    auto fn = it->second.fn;
    fn(m);
  }
}

void Handle::dispatch_request(Message&& m) {
  auto it = methods_.find(m.topic);
  if (it != methods_.end() && !it->second.reads_json) m.write_text();
  if (it == methods_.end()) {
    // Every service answers ping, so `loom ping SERVICE` works for all.
    if (m.method() == "ping") {
      m.write_text();
      respond(m, m.payload.empty() ? std::string("{}") : m.payload);
      return;
    }
    if (m.method() == "disconnect") return;  // nothing to clean up here
    respond_error(m, ENOSYS, "unknown method " + m.topic);
    return;
  }
  if (it->second.access == Access::kOwner && !(m.rolemask & role::kOwner)) {
    respond_error(m, EPERM, m.topic + " is restricted to the instance owner");
    return;
  }
  auto fn = it->second.fn;  // the handler may remove its own method
  (*fn)(m);
}

void Handle::dispatch_event(const Message& m) {
  // Copy the matching handlers first: a handler may (un)subscribe.
  std::vector<EventFn> fns;
  for (auto& [prefix, fn] : subscriptions_) {
    if (m.topic.starts_with(prefix)) fns.push_back(fn);
  }
  for (auto& fn : fns) fn(m);
}

void Handle::fail_all(int errnum, const std::string& text) {
  auto rpcs = std::move(rpcs_);
  rpcs_.clear();
  for (auto& [tag, rpc] : rpcs) {
    Message r;
    r.type = MsgType::kResponse;
    r.matchtag = tag;
    r.errnum = errnum;
    r.payload = dump_json(Json{{"errstr", text}});
    rpc.fn(r);
  }
}

}  // namespace loom
