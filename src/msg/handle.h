// Handle: one endpoint's view of the message protocol (docs/protocols/messages.md), the same
// for a CLI client, a test, the simulator and a service inside a broker.
//
//   rpc()              send a request; the callback gets each response.
//                      Single-response RPCs end after one response;
//                      streaming ones end with an ENODATA error response.
//   on_response()      responses without a matchtag, matched by the
//                      caller (e.g. by a job id in the payload).
//   add_method()       serve TOPIC with a per-method access rule.
//   subscribe()        receive events whose topic starts with a prefix.
//
// A Handle does not own its transport: it is given a function to send
// with, and its owner feeds it every message that arrives (dispatch()).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "msg/json.h"
#include "msg/message.h"
#include "msg/typed_payload.h"

namespace loom {

enum class Access { kOwner, kUser };

using ResponseFn = std::function<void(const Message&)>;
using RequestFn = std::function<void(const Message&)>;
using EventFn = std::function<void(const Message&)>;

struct RpcOptions {
  uint32_t nodeid = kNodeAny;
  bool streaming = false;
  double timeout = 0;  // seconds; 0 = none. On expiry the callback gets ETIMEDOUT.
};

class Handle {
 public:
  using SendFn = std::function<void(Message&&)>;
  Handle(Clock& clock, SendFn send);
  ~Handle();
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  Clock& clock() { return clock_; }

  // Credentials to put on every outgoing message (the broker keeps them
  // only when this connection belongs to the instance owner).
  void set_credentials(uint32_t userid, uint32_t rolemask);

  // For a service inside the broker: payloads built as JSON go out without
  // their text, which is written only where it is needed (the broker's
  // sockets; handlers that were not added as JSON readers). Saves printing
  // and parsing what never leaves the process.
  void keep_text_lazy() { lazy_text_ = true; }

  // --- client side ---
  // Sends a request; returns its matchtag (to cancel_rpc with).
  uint32_t rpc(std::string topic, std::string payload, RpcOptions opts, ResponseFn fn);
  uint32_t rpc(std::string topic, const char* payload, RpcOptions opts, ResponseFn fn) {
    return rpc(std::move(topic), std::string(payload), opts, std::move(fn));
  }
  uint32_t rpc(std::string topic, const Json& payload, RpcOptions opts, ResponseFn fn) {
    return rpc(std::move(topic), dump_json(payload), opts, std::move(fn));
  }
  // The same, handing the receiver the parsed payload as well (see
  // Message::json): for large payloads between services of one broker.
  uint32_t rpc(std::string topic, Json&& payload, RpcOptions opts, ResponseFn fn);
  // The same with a typed payload (TypedPayload): a service of this
  // process reads the value itself; its JSON is written only where needed.
  template <class T>
  uint32_t rpc_typed(std::string topic, T payload, RpcOptions opts, ResponseFn fn) {
    std::shared_ptr<const TypedPayload> value = typed(std::move(payload));
    return rpc_message(std::move(topic), {}, nullptr, opts, std::move(fn), std::move(value));
  }
  // Forgets an RPC: later responses to it are dropped.
  void cancel_rpc(uint32_t matchtag);
  size_t rpcs_in_flight() const { return rpcs_.size(); }
  // Sends a request that wants no response.
  void send_oneway(std::string topic, std::string payload, uint32_t nodeid = kNodeAny);
  // Sends a request without a matchtag that still wants responses: the
  // matchtag-less protocols of docs/protocols/jobs.md, docs/protocols/exec.md (sched.alloc, NAME.start),
  // whose responses carry the job id and arrive through on_response().
  void send_matchless(std::string topic, std::string payload, uint32_t nodeid = kNodeAny);
  void send_matchless(std::string topic, Json&& payload, uint32_t nodeid = kNodeAny);
  template <class T>
  void send_matchless_typed(std::string topic, T payload, uint32_t nodeid = kNodeAny) {
    send_typed(make_request(std::move(topic), {}, nodeid, msgflag::kStreaming), typed(std::move(payload)));
  }
  // Handler for responses that carry no matchtag, by exact topic.
  void on_response(const std::string& topic, ResponseFn fn);
  // The same for a handler that reads the payload only with payload_json
  // or payload_object, never `payload`: from services of the same broker
  // it may get the parsed value alone (see keep_text_lazy).
  void on_json_response(const std::string& topic, ResponseFn fn);

  // --- service side ---
  void add_method(const std::string& topic, Access access, RequestFn fn);
  // A method that reads the payload only with payload_json/payload_object.
  void add_json_method(const std::string& topic, Access access, RequestFn fn);
  void remove_methods(const std::string& service);
  void respond(const Message& req, std::string payload);
  void respond(const Message& req, const char* payload) { respond(req, std::string(payload)); }
  void respond(const Message& req, const Json& payload) { respond(req, dump_json(payload)); }
  void respond(const Message& req, Json&& payload);
  template <class T>
  void respond_typed(const Message& req, T payload) {
    if (req.wants_response()) send_typed(make_response(req), typed(std::move(payload)));
  }
  void respond_error(const Message& req, int errnum, std::string_view text);
  void respond_error(const Message& req, const Error& e) { respond_error(req, e.code, e.text); }

  // --- events ---
  // Asks the broker for events under `prefix`; `fn` sees each one.
  // `done` (optional) runs once the subscription is in place.
  void subscribe(const std::string& prefix, EventFn fn, std::function<void(const Error*)> done = nullptr);
  void publish(std::string topic, std::string payload);
  // An event only the owner and `userid` receive (e.g. about that user's job).
  void publish_private(std::string topic, std::string payload, uint32_t userid);
  // The same with its text written from `payload`, which subscribers of
  // this process read parsed (payload_json) rather than parsing the text.
  void publish_private(std::string topic, Json&& payload, uint32_t userid);

  // Everything that arrives for this endpoint goes through here.
  void dispatch(Message&& m);

  // Fails every RPC in flight with `errnum` (the transport went away).
  void fail_all(int errnum, const std::string& text);

 private:
  struct Rpc {
    ResponseFn fn;
    bool streaming = false;
    std::unique_ptr<Timer> timer;
  };
  struct Method {
    Access access;
    // Shared, so that a request holds its handler by a count rather than
    // a copy while it runs (the handler may remove its own method).
    std::shared_ptr<const RequestFn> fn;
    bool reads_json = false;
  };
  struct Matchless {
    std::shared_ptr<const ResponseFn> fn;  // shared, as Method's
    bool reads_json = false;
  };
  std::shared_ptr<const Json> share(Json&& payload, std::string& text) const;
  template <class T>
  static std::shared_ptr<const TypedPayload> typed(T payload) {
    return std::make_shared<const TypedAs<T>>(std::move(payload));
  }

  void send(Message&& m);
  // An event for the owner and `userid` alone (publish_private).
  void send_private(Message m, uint32_t userid);
  // send() past its checks, for a message already checked (rpc_message).
  void hand_over(Message&& m);
  // Sends `m` with `payload`, its text written unless it may wait.
  void send_typed(Message&& m, std::shared_ptr<const TypedPayload> payload);
  uint32_t rpc_message(std::string topic, std::string payload, std::shared_ptr<const Json> json, RpcOptions opts,
                       ResponseFn fn, std::shared_ptr<const TypedPayload> typed = nullptr);
  void dispatch_response(Message&& m);
  void dispatch_request(Message&& m);
  void dispatch_event(const Message& m);
  uint32_t next_matchtag();

  Clock& clock_;
  SendFn send_;
  uint32_t userid_ = kUserIdUnknown;
  uint32_t rolemask_ = role::kNone;
  uint32_t matchtag_ = 0;
  std::unordered_map<uint32_t, Rpc> rpcs_;
  std::unordered_map<std::string, Matchless> matchless_;
  bool lazy_text_ = false;
  std::unordered_map<std::string, Method> methods_;
  std::vector<std::pair<std::string, EventFn>> subscriptions_;
  // Shared with callbacks posted by this Handle, to know it still exists.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace loom
