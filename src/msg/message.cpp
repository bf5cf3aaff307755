#include "msg/message.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "msg/json.h"

namespace loom {

std::string_view Message::service() const {
  std::string_view t = topic;
  auto dot = t.find('.');
  return dot == std::string_view::npos ? t : t.substr(0, dot);
}

std::string_view Message::method() const {
  std::string_view t = topic;
  auto dot = t.find('.');
  return dot == std::string_view::npos ? std::string_view{} : t.substr(dot + 1);
}

void Message::write_text() {
  if (!payload.empty()) return;
  if (json) {
    payload = dump_json(*json);
  } else if (typed) {
    payload = dump_json(typed->to_json());
  }
}

Message make_request(std::string topic, std::string payload, uint32_t nodeid, uint8_t flags) {
  Message m;
  m.type = MsgType::kRequest;
  m.topic = std::move(topic);
  m.payload = std::move(payload);
  m.nodeid = nodeid;
  m.flags = flags;
  return m;
}

Message make_event(std::string topic, std::string payload) {
  Message m;
  m.type = MsgType::kEvent;
  m.topic = std::move(topic);
  m.payload = std::move(payload);
  return m;
}

Message head_of(const Message& m) {
  Message h;
  h.type = m.type;
  h.flags = m.flags;
  h.matchtag = m.matchtag;
  h.nodeid = m.nodeid;
  h.userid = m.userid;
  h.rolemask = m.rolemask;
  h.errnum = m.errnum;
  h.seq = m.seq;
  h.topic = m.topic;
  h.route = m.route;
  return h;
}

Message make_response(const Message& req, std::string payload) {
  Message m = head_of(req);
  m.type = MsgType::kResponse;
  m.flags = req.flags & msgflag::kStreaming;
  m.errnum = 0;
  m.seq = 0;
  m.payload = std::move(payload);
  return m;
}

Message make_error_response(const Message& req, int errnum, std::string_view text) {
  Message m = make_response(req);
  m.errnum = errnum == 0 ? EINVAL : errnum;
  if (!text.empty())
    m.payload = nlohmann::json{{"errstr", text}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return m;
}

std::string error_text(const Message& m) {
  if (!m.payload.empty()) {
    auto j = parse_json(m.payload);
    if (j.ok() && j->is_object()) {
      auto it = j->find("errstr");
      if (it != j->end() && it->is_string()) return it->get<std::string>();
    }
  }
  return m.errnum ? std::strerror(m.errnum) : "";
}

const char* msgtype_name(MsgType t) {
  switch (t) {
    case MsgType::kRequest: return "request";
    case MsgType::kResponse: return "response";
    case MsgType::kEvent: return "event";
  }
  return "unknown";
}

}  // namespace loom
