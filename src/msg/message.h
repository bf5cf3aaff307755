// A loom message (docs/protocols/messages.md): request, response or event; routed by topic
// "service.method"; requests may be addressed to a rank or to "any".
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace loom {

enum class MsgType : uint8_t { kRequest = 1, kResponse = 2, kEvent = 4 };

namespace msgflag {
inline constexpr uint8_t kStreaming = 0x01;   // request expects many responses ending in ENODATA
inline constexpr uint8_t kNoResponse = 0x02;  // request expects no response at all
inline constexpr uint8_t kPrivate = 0x04;     // event for the owner and its userid only
inline constexpr uint8_t kAll = kStreaming | kNoResponse | kPrivate;
}  // namespace msgflag

inline constexpr uint32_t kNodeAny = 0xFFFFFFFFu;  // nearest provider, else upstream
inline constexpr uint32_t kUserIdUnknown = 0xFFFFFFFFu;

namespace role {
inline constexpr uint32_t kNone = 0;
inline constexpr uint32_t kOwner = 0x1;  // the instance owner: may do anything
inline constexpr uint32_t kUser = 0x2;   // any other local user
}  // namespace role

// One hop of a route: the rank of a broker and the id, local to that broker,
// of the peer (client, module or overlay link) the message came from.
using HopId = uint64_t;
inline constexpr HopId make_hop(uint32_t rank, uint32_t local) { return (uint64_t{rank} << 32) | local; }
inline constexpr uint32_t hop_rank(HopId h) { return static_cast<uint32_t>(h >> 32); }
inline constexpr uint32_t hop_local(HopId h) { return static_cast<uint32_t>(h); }

// A payload handed over as a C++ value between services of one process
// (msg/typed_payload.h; docs/design.md, section 3). Never changed once
// sent; shared by the copies of a message.
class TypedPayload {
 public:
  virtual ~TypedPayload() = default;
  // The payload as JSON, as the sender would have built it.
  virtual nlohmann::json to_json() const = 0;
};

struct Message {
  MsgType type = MsgType::kRequest;
  uint8_t flags = 0;
  uint32_t matchtag = 0;
  uint32_t nodeid = kNodeAny;
  uint32_t userid = kUserIdUnknown;
  uint32_t rolemask = role::kNone;
  int32_t errnum = 0;
  uint32_t seq = 0;  // events: sequence number assigned by rank 0
  std::string topic;
  // Requests push one hop per broker they pass; responses pop them.
  // route.front() identifies the original sender across the instance.
  std::vector<HopId> route;
  std::string payload;  // JSON text, or empty
  // The payload already parsed, when the sender built it as JSON: a
  // service of the same broker reads it without parsing the text again
  // (payload_json). Shared, never changed. Between services of one broker
  // the text may be left empty until something needs it (write_text()):
  // a socket, or a handler that reads `payload`.
  std::shared_ptr<const nlohmann::json> json;
  // The payload as a C++ value, when a service of the same process built
  // it so (see TypedPayload); `payload` and `json` may then both be empty.
  std::shared_ptr<const TypedPayload> typed;

  // Makes `payload` the text of `json` or `typed` if only that is there.
  void write_text();

  bool is_request() const { return type == MsgType::kRequest; }
  bool is_response() const { return type == MsgType::kResponse; }
  bool is_event() const { return type == MsgType::kEvent; }
  bool has_flag(uint8_t f) const { return (flags & f) != 0; }
  bool wants_response() const { return is_request() && !has_flag(msgflag::kNoResponse); }
  // The original sender of a request (0 when the route is empty).
  HopId sender() const { return route.empty() ? 0 : route.front(); }
  // The service part of the topic: everything before the first '.'.
  std::string_view service() const;
  // The method part: everything after the first '.' (empty if none).
  std::string_view method() const;
};

Message make_request(std::string topic, std::string payload = {}, uint32_t nodeid = kNodeAny, uint8_t flags = 0);
Message make_event(std::string topic, std::string payload = {});
// `m` without its payload (text and parsed): what a service keeps of a
// request it answers later.
Message head_of(const Message& m);
// A response to `req`: same topic, matchtag and route.
Message make_response(const Message& req, std::string payload = {});
// An error response to `req`; the payload carries the text as {"errstr": text}.
Message make_error_response(const Message& req, int errnum, std::string_view text);
// The error text of an error response ("" if none), or the strerror of its errnum.
std::string error_text(const Message& m);

const char* msgtype_name(MsgType t);

}  // namespace loom
