// The metrics endpoint's listen address (docs/metrics.md), parsed: a file
// of its own so that loom's configuration (and its fuzz target) reads it
// without the HTTP server.
#include <asio/ip/address.hpp>
#include <charconv>

#include "metrics/metrics.h"

namespace loom {

Result<ListenAddress> parse_listen_address(std::string_view text) {
  std::string_view host, port;
  if (text.starts_with("[")) {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Error{EINVAL, "must be HOST:PORT, such as 127.0.0.1:9464 or [::1]:9464"};
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) {
      return Error{EINVAL, "must be HOST:PORT, such as 127.0.0.1:9464 (an IPv6 address in brackets)"};
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  ListenAddress out;
  out.host = std::string(host);
  if (out.host != "localhost") {
    std::error_code ec;
    (void)asio::ip::make_address(out.host, ec);
    if (ec) return Error{EINVAL, "host " + out.host + " is not an IP address (nor localhost)"};
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || value > 65535) {
    return Error{EINVAL, "port " + std::string(port) + " is not a number 0-65535"};
  }
  out.port = static_cast<uint16_t>(value);
  return out;
}

}  // namespace loom
