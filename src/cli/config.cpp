#include "cli/config.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <toml.hpp>

#include "msg/json.h"

namespace loom::cli {

namespace {
// Keys are bare TOML keys, so that "TABLE.KEY=VALUE" splits back into the
// same key and value (a quoted key could hold '=' or '.').
bool bare_key(std::string_view k) {
  if (k.empty()) return false;
  for (char c : k) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// Where `s` stops being UTF-8 (RFC 3629: no overlong forms, surrogates or
// code points past U+10FFFF), or npos. TOML documents are UTF-8, and
// toml11 (3.7) reads past the end of its buffer on a multi-byte lead
// without its continuation bytes, so it never sees such text.
size_t invalid_utf8_at(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return i;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    bool overlong = (n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
    if (overlong || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return i;
    i += n;
  }
  return std::string_view::npos;
}

// How deep arrays and inline tables nest, brackets in strings and comments
// aside. toml11 parses them by recursion without a limit, so a line of a
// few thousand '[' overflowed its stack.
constexpr int kMaxTomlDepth = 32;
bool nests_deeper_than(std::string_view s, int max_depth) {
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '#') {
      i = s.find('\n', i);
      if (i == std::string_view::npos) break;
    } else if (c == '"' || c == '\'') {
      bool multi = s.substr(i, 3) == std::string(3, c);
      bool escapes = c == '"';
      i += multi ? 3 : 1;
      // To the closing quote(s); a one-line string also ends at a newline.
      for (; i < s.size(); ++i) {
        if (escapes && s[i] == '\\') {
          ++i;
        } else if (!multi && s[i] == '\n') {
          break;
        } else if (s[i] == c && (!multi || s.substr(i, 3) == std::string(3, c))) {
          if (multi) i += 2;
          break;
        }
      }
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;  // a stray closer does not hide the openers after it
    }
  }
  return false;
}

std::string shortest(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc{} ? std::string(buf, end) : std::to_string(v);
}
}  // namespace

Result<std::vector<std::string>> parse_config_toml(std::string_view text, const std::string& origin) {
  std::vector<std::string> out;
  if (size_t at = invalid_utf8_at(text); at != std::string_view::npos) {
    return Error{EINVAL, origin + ": not UTF-8 text (at byte " + std::to_string(at) + ")"};
  }
  if (nests_deeper_than(text, kMaxTomlDepth)) {
    return Error{EINVAL, origin + ": lists or tables nest deeper than " + std::to_string(kMaxTomlDepth) + " levels"};
  }
  try {
    std::istringstream in{std::string(text)};
    auto data = toml::parse(in, origin);
    for (const auto& [table, t] : data.as_table()) {
      if (!bare_key(table)) return Error{EINVAL, origin + ": \"" + table + "\" is not a configuration table name"};
      if (!t.is_table()) return Error{EINVAL, origin + ": " + table + " must be a table, as in [" + table + "]"};
      for (const auto& [k, v] : t.as_table()) {
        if (!bare_key(k))
          return Error{EINVAL, origin + ": \"" + k + "\" in [" + table + "] is not a configuration key"};
        std::string value;
        if (v.is_string()) {
          value = v.as_string().str;
        } else if (v.is_integer()) {
          value = std::to_string(v.as_integer());
        } else if (v.is_floating()) {
          if (!std::isfinite(v.as_floating())) {
            return Error{EINVAL, origin + ": " + table + "." + k + " must be a finite number"};
          }
          value = shortest(v.as_floating());
        } else if (v.is_boolean()) {
          value = v.as_boolean() ? "true" : "false";
        } else if (v.is_array()) {
          // A list of strings (a command and its arguments) as JSON text.
          Json list = Json::array();
          for (const auto& e : v.as_array()) {
            if (!e.is_string()) return Error{EINVAL, origin + ": " + table + "." + k + " must be a list of strings"};
            list.push_back(e.as_string().str);
          }
          value = dump_json(list);
        } else {
          return Error{EINVAL, origin + ": " + table + "." + k + " must be a string, a number, a boolean or a list"};
        }
        out.push_back(table + "." + k + "=" + value);
      }
    }
  } catch (const std::exception& e) {
    // toml11 explains over several lines; the first names the problem.
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    if (what.starts_with("[error] ")) what = what.substr(8);
    return Error{EINVAL, origin + ": " + what};
  }
  return out;
}

Result<std::vector<std::string>> read_config_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Error{EINVAL, path + ": cannot read the configuration file: " + std::strerror(errno)};
  std::ostringstream text;
  text << f.rdbuf();
  if (f.bad()) return Error{EINVAL, path + ": cannot read the configuration file"};
  return parse_config_toml(text.str(), path);
}

}  // namespace loom::cli
