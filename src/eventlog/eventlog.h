// Eventlogs (Flux RFC 18): one JSON object per line,
//   {"timestamp": 1700000000.25, "name": "alloc", "context": {...}}
// `timestamp` is non-negative seconds, `name` is non-empty without
// whitespace, `context` is an optional object. Nothing else is allowed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "msg/json.h"

namespace loom {

struct EventEntry {
  double timestamp = 0;
  std::string name;
  Json context;  // an object, or null when absent

  bool operator==(const EventEntry&) const = default;
};

// One line, without its newline.
Result<EventEntry> parse_event(std::string_view line);
// A whole eventlog; errors name the 1-based line.
Result<std::vector<EventEntry>> parse_eventlog(std::string_view text);
// The line for `e`, ending in '\n'.
std::string format_event(const EventEntry& e);
// The same, appended to `out`.
void append_event(std::string& out, const EventEntry& e);
// Checks a name and context before they are written.
Status validate_event(const EventEntry& e);

// Splits appended eventlog text into complete lines, keeping a partial
// last line for the next call. For watchers of an eventlog.
class LineSplitter {
 public:
  std::vector<std::string> feed(std::string_view chunk);

 private:
  std::string partial_;
};

}  // namespace loom
