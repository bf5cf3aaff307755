#include "msg/json.h"

#include <utility>

namespace loom {

// A linear pre-scan that measures nesting without recursion, skipping
// brackets inside strings. Cheaper than parsing, and it runs first so that
// nlohmann never builds a value deep enough to hurt.
bool json_nests_deeper_than(std::string_view s, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{':
        if (++depth > max_depth) return true;
        break;
      case ']':
      case '}': --depth; break;
      default: break;
    }
  }
  return false;
}

Result<Json> parse_json(std::string_view text, int max_depth) {
  if (json_nests_deeper_than(text, max_depth)) {
    return Error{EPROTO, "JSON nests deeper than " + std::to_string(max_depth) + " levels"};
  }
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    // Parse again with exceptions only to get a useful position in the text.
    try {
      Json ignored = Json::parse(text);
      (void)ignored;
    } catch (const Json::exception& e) {  // not only parse_error: "1e400" is out_of_range
      std::string what = e.what();
      auto pos = what.find("parse error");
      return Error{EPROTO, "invalid JSON: " + (pos == std::string::npos ? what : what.substr(pos))};
    }
    return Error{EPROTO, "invalid JSON"};
  }
  return j;
}

std::string dump_json(const Json& j) {
  // One serializer per thread, writing into one buffer: setting one up (a
  // shared output adapter, two zeroed buffers, the locale's separators),
  // as Json::dump does for every call, cost more than writing most
  // payloads. The text is the same.
  thread_local std::string buffer;
  thread_local nlohmann::detail::serializer<Json> serializer(nlohmann::detail::output_adapter<char>(buffer), ' ',
                                                             Json::error_handler_t::replace);
  constexpr size_t kKeptCapacity = size_t{64} * 1024;
  buffer.clear();
  serializer.dump(j, false, false, 0);
  if (buffer.size() > kKeptCapacity) return std::exchange(buffer, std::string());  // not kept for the next
  return buffer;
}

namespace {
// A string as dump_json writes it, at most: quotes, two bytes for an
// escaped quote or backslash, six for a control character (\u001f), and
// three for any byte of UTF-8 (an invalid one becomes U+FFFD).
size_t string_bound(const std::string& s) {
  size_t n = 2;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    n += c >= 0x80 ? 3 : c < 0x20 ? 6 : (c == '"' || c == '\\') ? 2 : 1;
  }
  return n;
}
}  // namespace

size_t dump_json_bound(const Json& j) {
  switch (j.type()) {
    case Json::value_t::string: return string_bound(j.get_ref<const std::string&>());
    case Json::value_t::array: {
      size_t n = 2 + j.size();  // brackets, commas
      for (const auto& v : j) n += dump_json_bound(v);
      return n;
    }
    case Json::value_t::object: {
      size_t n = 2 + 2 * j.size();  // braces, colons, commas
      for (const auto& [k, v] : j.items()) n += string_bound(k) + dump_json_bound(v);
      return n;
    }
    case Json::value_t::binary: return 64 + 4 * j.get_binary().size();
    default: return 32;  // null, booleans and numbers: "-1.7976931348623157e+308" is 24
  }
}

}  // namespace loom
