// The PMI-1 wire protocol (docs/pmi.md): the lines a task's MPI library
// writes to the descriptor PMI_FD names, and the lines the shell answers.
// Pure text in, text out: no descriptors, no clock.
//
// A line is words separated by spaces, each `name=value`, ending in a
// newline; the first word names the request (`cmd=init ...`) or, for the
// few requests of several lines (spawn), starts them (`mcmd=spawn`, up to
// a line `endcmd`).
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>

#include "base/result.h"

namespace loom {

// Limits the shell announces (`cmd=maxes`) and holds tasks to.
inline constexpr size_t kPmiKvsnameMax = 256;
inline constexpr size_t kPmiKeyMax = 64;
inline constexpr size_t kPmiValueMax = 1024;
// The longest request line taken (a put of the longest key and value fits
// with room to spare); a longer one ends the task's PMI connection.
inline constexpr size_t kPmiLineMax = 4096;

struct PmiRequest {
  std::string cmd;  // the value of `cmd` (or of `mcmd`, with multi set)
  bool multi = false;
  std::map<std::string, std::string> args;  // the other words
  // The value of `name`, "" when the request has none.
  std::string arg(const std::string& name) const {
    auto it = args.find(name);
    return it == args.end() ? std::string() : it->second;
  }
  bool has(const std::string& name) const { return args.contains(name); }
};

// One request line, without its newline. EINVAL for a line that is not
// words of `name=value` starting with `cmd=` or `mcmd=`. A `value=` word
// takes the rest of the line (a put's value may hold spaces).
Result<PmiRequest> parse_pmi_line(std::string_view line);

// The answer to a request that failed: `cmd=NAME rc=-1 msg=TEXT\n`, the
// text's spaces made underscores (a word may not hold one).
std::string pmi_error(std::string_view response_cmd, std::string_view text);

}  // namespace loom
