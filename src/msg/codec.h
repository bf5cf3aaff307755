// The wire encoding of a Message, version 1 (docs/protocols/messages.md).
// Every frame is a little-endian u32 length followed by that many bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "msg/message.h"

namespace loom {

inline constexpr uint8_t kCodecVersion = 1;
inline constexpr size_t kMaxFrameSize = 64u << 20;  // 64 MiB
inline constexpr size_t kMaxTopicSize = 255;
inline constexpr size_t kMaxRouteHops = 64;
// Fixed part of a frame body: version, type, flags, hops, matchtag, nodeid,
// userid, rolemask, errnum, seq, topic length.
inline constexpr size_t kFrameHeaderSize = 4 + 6 * 4 + 1;

// The size of `m`'s frame body (without the length prefix), as encoded.
// The text of a payload built as JSON must have been written.
size_t frame_body_size(const Message& m);

// Appends the frame for `m` to `out`. Asserts (a bug of ours) if `m`
// breaks a limit the decoder would refuse; callers that send what others
// built check frame_body_size first.
void encode_message(const Message& m, std::string& out);
std::string encode_message(const Message& m);

// Decodes one frame body (without the length prefix).
Result<Message> decode_body(std::string_view body);

// Checks what a decoder must not accept from a peer: unknown type or flags,
// empty or non-printable topic, too many hops.
Status validate_message(const Message& m);

// The greeting (docs/protocols/messages.md, "Greeting"): the first 8 bytes
// each side of a connection sends, before any frame, so that a peer that
// does not speak loom, or speaks another version of it, or dialled the
// wrong kind of socket, is told so in one line instead of a frame error.
//   magic "LOOM", version u8, role u8, reserved u16 (0)
inline constexpr size_t kGreetingSize = 8;
inline constexpr uint8_t kProtocolVersion = kCodecVersion;
enum class PeerRole : uint8_t {
  kClient = 1,   // a client on a broker's local socket
  kBroker = 2,   // a broker answering on its local socket
  kOverlay = 3,  // a broker on a broker-to-broker link (both ends)
};
const char* peer_role_name(PeerRole r);
std::string encode_greeting(PeerRole self);
// Checks the peer's greeting against the role it must have: EPROTO for
// bytes that are not a loom greeting, EPROTONOSUPPORT for another version,
// EPROTOTYPE for the wrong role.
Status check_greeting(std::string_view bytes, PeerRole expected);

// Incremental decoder for a byte stream. After an error the stream is out
// of sync and the connection must be closed.
class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_frame = kMaxFrameSize) : max_frame_(max_frame) {}
  // The stream begins with the peer's greeting, which next() checks first.
  void expect_greeting(PeerRole peer) { greeting_ = peer; }
  // Appends received bytes.
  void feed(const char* data, size_t len) { buf_.append(data, len); }
  // The next complete message, nullopt if more bytes are needed, or an
  // EPROTO error (oversize or malformed frame).
  Result<std::optional<Message>> next();
  size_t buffered() const { return buf_.size() - pos_; }
  // True while a frame (or the greeting) has begun but not fully arrived.
  bool partial() const { return buffered() > 0; }

 private:
  std::optional<PeerRole> greeting_;
  std::string buf_;
  size_t pos_ = 0;
  size_t max_frame_;
};

}  // namespace loom
