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

// Appends the frame for `m` to `out`. Asserts (a bug of ours) if `m`
// breaks a limit the decoder would refuse.
void encode_message(const Message& m, std::string& out);
std::string encode_message(const Message& m);

// Decodes one frame body (without the length prefix).
Result<Message> decode_body(std::string_view body);

// Checks what a decoder must not accept from a peer: unknown type or flags,
// empty or non-printable topic, too many hops.
Status validate_message(const Message& m);

// Incremental decoder for a byte stream. After an error the stream is out
// of sync and the connection must be closed.
class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_frame = kMaxFrameSize) : max_frame_(max_frame) {}
  // Appends received bytes.
  void feed(const char* data, size_t len) { buf_.append(data, len); }
  // The next complete message, nullopt if more bytes are needed, or an
  // EPROTO error (oversize or malformed frame).
  Result<std::optional<Message>> next();
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::string buf_;
  size_t pos_ = 0;
  size_t max_frame_;
};

}  // namespace loom
