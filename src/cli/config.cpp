#include "cli/config.h"

#include <cerrno>
#include <charconv>
#include <cmath>
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

std::string shortest(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc{} ? std::string(buf, end) : std::to_string(v);
}
}  // namespace

Result<std::vector<std::string>> parse_config_toml(std::string_view text, const std::string& origin) {
  std::vector<std::string> out;
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
