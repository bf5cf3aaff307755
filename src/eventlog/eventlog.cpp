#include "eventlog/eventlog.h"

#include <bit>
#include <cmath>
#include <cstdint>

#include "base/quote.h"

namespace loom {

Status validate_event(const EventEntry& e) {
  if (!std::isfinite(e.timestamp) || e.timestamp < 0) return Error{EINVAL, "timestamp must be a non-negative number"};
  if (e.name.empty()) return Error{EINVAL, "event name is empty"};
  for (unsigned char c : e.name) {
    if (c <= 0x20 || c == 0x7f)
      return Error{EINVAL, "event name " + quote_input(e.name) + " has whitespace or a control byte"};
  }
  if (!e.context.is_null() && !e.context.is_object()) return Error{EINVAL, "event context must be an object"};
  return {};
}

Result<EventEntry> parse_event(std::string_view line) {
  auto j = parse_json(line);
  if (!j.ok()) return Error{EINVAL, j.error().text};
  if (!j->is_object()) return Error{EINVAL, "an event must be a JSON object"};
  EventEntry e;
  for (auto& [k, v] : j->items()) {
    if (k == "timestamp") {
      if (!v.is_number()) return Error{EINVAL, "timestamp must be a number"};
      e.timestamp = v.get<double>();
    } else if (k == "name") {
      if (!v.is_string()) return Error{EINVAL, "name must be a string"};
      e.name = v.get<std::string>();
    } else if (k == "context") {
      e.context = v;
      if (!e.context.is_object()) return Error{EINVAL, "context must be an object"};
    } else {
      return Error{EINVAL, "unknown member " + quote_input(k)};
    }
  }
  if (!j->contains("timestamp")) return Error{EINVAL, "missing timestamp"};
  if (!j->contains("name")) return Error{EINVAL, "missing name"};
  if (auto st = validate_event(e); !st) return st.error();
  return e;
}

Result<std::vector<EventEntry>> parse_eventlog(std::string_view text) {
  std::vector<EventEntry> out;
  size_t lineno = 0;
  while (!text.empty()) {
    ++lineno;
    auto nl = text.find('\n');
    if (nl == std::string_view::npos) {
      return Error{EINVAL, "line " + std::to_string(lineno) + ": not terminated by a newline"};
    }
    auto e = parse_event(text.substr(0, nl));
    if (!e.ok()) return Error{EINVAL, "line " + std::to_string(lineno) + ": " + e.error().text};
    out.push_back(std::move(*e));
    text.remove_prefix(nl + 1);
  }
  return out;
}

// The text of {"timestamp", "name", "context"} as dump_json writes it
// (keys in sorted order), without building that object: a copy of the
// context and a map per event was most of the cost of posting one.
std::string format_event(const EventEntry& e) {
  std::string out;
  out.reserve(96);  // most events, at one allocation
  append_event(out, e);
  return out;
}

void append_event(std::string& out, const EventEntry& e) {
  out += '{';
  if (!e.context.is_null()) {
    out += "\"context\":";
    append_json(out, e.context);
    out += ',';
  }
  out += "\"name\":";
  append_json_string(out, e.name);
  out += ",\"timestamp\":";
  // Events come in runs at one instant (a job's events of one turn, every
  // job of a simulated instant): the last timestamp's text serves again,
  // known by its bits (0.0 and -0.0 are written differently).
  thread_local uint64_t last_bits = ~uint64_t{0};  // a NaN's: never a timestamp's
  thread_local std::string last_text;
  if (const auto bits = std::bit_cast<uint64_t>(e.timestamp); bits != last_bits || last_text.empty()) {
    last_text.clear();
    append_json_number(last_text, e.timestamp);
    last_bits = bits;
  }
  out += last_text;
  out += "}\n";
}

std::vector<std::string> LineSplitter::feed(std::string_view chunk) {
  std::vector<std::string> lines;
  partial_.append(chunk);
  size_t start = 0;
  for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.emplace_back(partial_, start, nl - start);
  }
  partial_.erase(0, start);
  return lines;
}

}  // namespace loom
