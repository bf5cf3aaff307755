#include "shell/pmi_wire.h"

#include <cerrno>

namespace loom {

Result<PmiRequest> parse_pmi_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  PmiRequest req;
  bool first = true;
  while (!line.empty()) {
    if (line.front() == ' ') {
      line.remove_prefix(1);
      continue;
    }
    size_t end = line.find(' ');
    std::string_view word = line.substr(0, end);
    size_t eq = word.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return Error{EINVAL, "not a name=value word: " + std::string(word.substr(0, 64))};
    }
    std::string name(word.substr(0, eq));
    if (name == "value") {
      // The rest of the line, spaces and all.
      word = line;
      end = std::string_view::npos;
    }
    std::string value(word.substr(eq + 1));
    if (first) {
      if (name != "cmd" && name != "mcmd") return Error{EINVAL, "a request starts with cmd= or mcmd="};
      if (value.empty()) return Error{EINVAL, "no command"};
      req.cmd = std::move(value);
      req.multi = name == "mcmd";
      first = false;
    } else {
      req.args[std::move(name)] = std::move(value);
    }
    if (end == std::string_view::npos) break;
    line.remove_prefix(end + 1);
  }
  if (first) return Error{EINVAL, "an empty request"};
  return req;
}

std::string pmi_error(std::string_view response_cmd, std::string_view text) {
  std::string msg(text);
  for (char& c : msg) {
    if (c == ' ' || c == '\n' || c == '=') c = '_';
  }
  return "cmd=" + std::string(response_cmd) + " rc=-1 msg=" + msg + "\n";
}

}  // namespace loom
