// Quoting what came from outside inside an error message, so that the
// message stays one readable line whatever the input held.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace loom {

// `s` in double quotes, with '"', '\\' and control bytes escaped (\n, \t,
// \xHH) and anything past `max` bytes cut to "...". Bytes >= 0x80 pass,
// so UTF-8 names read as they are.
inline std::string quote_input(std::string_view s, size_t max = 80) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == max) {
      out += "...";
      break;
    }
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  return out;
}

}  // namespace loom
