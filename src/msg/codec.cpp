#include "msg/codec.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "base/assert.h"

namespace loom {
namespace {

void put_u8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }
void put_u32(std::string& out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  out.append(b, 4);
}
void put_u64(std::string& out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  out.append(b, 8);
}

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  bool has(size_t n) const { return s_.size() - pos_ >= n; }
  uint8_t u8() { return static_cast<uint8_t>(s_[pos_++]); }
  uint32_t u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<uint8_t>(s_[pos_ + i])} << (8 * i);
    pos_ += 4;
    return v;
  }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<uint8_t>(s_[pos_ + i])} << (8 * i);
    pos_ += 8;
    return v;
  }
  std::string_view bytes(size_t n) {
    auto v = s_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  std::string_view rest() { return s_.substr(pos_); }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

bool valid_type(uint8_t t) {
  return t == static_cast<uint8_t>(MsgType::kRequest) || t == static_cast<uint8_t>(MsgType::kResponse) ||
         t == static_cast<uint8_t>(MsgType::kEvent);
}

Error proto(std::string text) { return Error{EPROTO, std::move(text)}; }

}  // namespace

Status validate_message(const Message& m) {
  if (!valid_type(static_cast<uint8_t>(m.type))) return proto("unknown message type");
  if (m.flags & ~msgflag::kAll) return proto("unknown message flags");
  if (m.topic.empty()) return proto("empty topic");
  if (m.topic.size() > kMaxTopicSize) return proto("topic longer than 255 bytes");
  for (unsigned char c : m.topic) {
    if (c <= 0x20 || c >= 0x7f) return proto("topic has a space or a non-printable byte");
  }
  if (m.route.size() > kMaxRouteHops) return proto("route longer than 64 hops");
  if (m.is_request() && m.has_flag(msgflag::kStreaming) && m.has_flag(msgflag::kNoResponse)) {
    return proto("a request cannot be both streaming and no-response");
  }
  if (m.has_flag(msgflag::kPrivate) && !m.is_event()) return proto("only an event can be private");
  return {};
}

size_t frame_body_size(const Message& m) {
  return kFrameHeaderSize + m.topic.size() + 8 * m.route.size() + m.payload.size();
}

void encode_message(const Message& m, std::string& out) {
  LOOM_ASSERT(m.topic.size() <= kMaxTopicSize);
  LOOM_ASSERT(m.route.size() <= kMaxRouteHops);
  LOOM_ASSERT((!m.json && !m.typed) || !m.payload.empty());  // its text must be written first (Message::write_text)
  size_t body = frame_body_size(m);
  LOOM_ASSERT(body <= kMaxFrameSize);
  out.reserve(out.size() + 4 + body);
  put_u32(out, static_cast<uint32_t>(body));
  put_u8(out, kCodecVersion);
  put_u8(out, static_cast<uint8_t>(m.type));
  put_u8(out, m.flags);
  put_u8(out, static_cast<uint8_t>(m.route.size()));
  put_u32(out, m.matchtag);
  put_u32(out, m.nodeid);
  put_u32(out, m.userid);
  put_u32(out, m.rolemask);
  put_u32(out, static_cast<uint32_t>(m.errnum));
  put_u32(out, m.seq);
  put_u8(out, static_cast<uint8_t>(m.topic.size()));
  out.append(m.topic);
  for (HopId h : m.route) put_u64(out, h);
  out.append(m.payload);
}

std::string encode_message(const Message& m) {
  std::string out;
  encode_message(m, out);
  return out;
}

Result<Message> decode_body(std::string_view body) {
  Reader r(body);
  if (!r.has(kFrameHeaderSize)) return proto("truncated frame header");
  uint8_t version = r.u8();
  if (version != kCodecVersion) return proto("unsupported codec version " + std::to_string(version));
  Message m;
  uint8_t type = r.u8();
  if (!valid_type(type)) return proto("unknown message type " + std::to_string(type));
  m.type = static_cast<MsgType>(type);
  m.flags = r.u8();
  uint8_t hops = r.u8();
  m.matchtag = r.u32();
  m.nodeid = r.u32();
  m.userid = r.u32();
  m.rolemask = r.u32();
  m.errnum = static_cast<int32_t>(r.u32());
  m.seq = r.u32();
  uint8_t topic_len = r.u8();
  if (!r.has(topic_len)) return proto("truncated topic");
  m.topic = std::string(r.bytes(topic_len));
  if (hops > kMaxRouteHops) return proto("route longer than 64 hops");
  if (!r.has(size_t{8} * hops)) return proto("truncated route");
  m.route.reserve(hops);
  for (int i = 0; i < hops; ++i) m.route.push_back(r.u64());
  m.payload = std::string(r.rest());
  if (auto st = validate_message(m); !st) return st.error();
  return m;
}

namespace {
constexpr char kMagic[4] = {'L', 'O', 'O', 'M'};

// The first bytes of a stranger's stream, printable, for the log line.
std::string quote_bytes(std::string_view b) {
  std::string out = "\"";
  for (unsigned char c : b) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      out += esc;
    }
  }
  return out + "\"";
}
}  // namespace

const char* peer_role_name(PeerRole r) {
  switch (r) {
    case PeerRole::kClient: return "a loom client";
    case PeerRole::kBroker: return "a loom broker's client socket";
    case PeerRole::kOverlay: return "a loom broker-to-broker link";
  }
  return "an unknown loom role";
}

std::string encode_greeting(PeerRole self) {
  std::string g(kMagic, sizeof kMagic);
  put_u8(g, kProtocolVersion);
  put_u8(g, static_cast<uint8_t>(self));
  put_u8(g, 0);
  put_u8(g, 0);
  return g;
}

Status check_greeting(std::string_view b, PeerRole expected) {
  if (b.size() < kGreetingSize || b.substr(0, 4) != std::string_view(kMagic, 4)) {
    return Error{EPROTO, "not a loom peer (it began with " + quote_bytes(b.substr(0, kGreetingSize)) + ")"};
  }
  auto version = static_cast<uint8_t>(b[4]);
  if (version != kProtocolVersion) {
    return Error{EPROTONOSUPPORT, "the peer speaks loom protocol version " + std::to_string(version) +
                                      "; this side speaks version " + std::to_string(kProtocolVersion)};
  }
  auto role = static_cast<uint8_t>(b[5]);
  if (role != static_cast<uint8_t>(expected)) {
    bool known = role >= 1 && role <= 3;
    return Error{EPROTOTYPE, std::string("expected ") + peer_role_name(expected) + ", found " +
                                 (known ? peer_role_name(static_cast<PeerRole>(role))
                                        : "a peer of unknown role " + std::to_string(role))};
  }
  if (b[6] != 0 || b[7] != 0) return Error{EPROTO, "loom greeting with reserved bytes set"};
  return {};
}

Result<std::optional<Message>> FrameDecoder::next() {
  if (greeting_) {
    // A stranger that sends fewer bytes than a greeting and waits is
    // judged by what it sent once it sends no more (the connection's
    // timeouts); here only whole greetings are judged, and a wrong start
    // as soon as it shows.
    size_t have = buf_.size() - pos_;
    size_t n = std::min(have, kGreetingSize);
    if (std::string_view(buf_).substr(pos_, std::min<size_t>(n, 4)) !=
        std::string_view(kMagic, std::min<size_t>(n, 4))) {
      return check_greeting(std::string_view(buf_).substr(pos_, n), *greeting_).error();
    }
    if (have < kGreetingSize) return std::optional<Message>{};
    if (auto st = check_greeting(std::string_view(buf_).substr(pos_, kGreetingSize), *greeting_); !st) {
      return st.error();
    }
    pos_ += kGreetingSize;
    greeting_.reset();
  }
  if (buf_.size() - pos_ < 4) return std::optional<Message>{};
  uint32_t len = 0;
  for (int i = 0; i < 4; ++i) len |= uint32_t{static_cast<uint8_t>(buf_[pos_ + i])} << (8 * i);
  if (len > max_frame_) return proto("frame of " + std::to_string(len) + " bytes exceeds the limit");
  if (buf_.size() - pos_ - 4 < len) return std::optional<Message>{};
  auto m = decode_body(std::string_view(buf_).substr(pos_ + 4, len));
  pos_ += 4 + len;
  // Compact once the consumed prefix dominates, so the buffer stays small
  // without moving bytes on every message.
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > 65536 && pos_ * 2 > buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  if (!m.ok()) return m.error();
  return std::optional<Message>(std::move(m.value()));
}

}  // namespace loom
