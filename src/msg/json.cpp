#include "msg/json.h"

#include <array>
#include <charconv>
#include <cmath>
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

namespace {

// The writer behind dump_json: nlohmann's compact text, byte for byte,
// written directly where that is simple (the structure, numbers, strings
// of ASCII) and by nlohmann's serializer where it is not (a string with
// bytes of UTF-8, which it checks and replaces if invalid; binary values).
// nlohmann's own writer runs every byte of every string through its UTF-8
// decoder, which cost more than the rest of most payloads.
class Writer {
 public:
  Writer() : serializer_(nlohmann::detail::output_adapter<char>(buffer_), ' ', Json::error_handler_t::replace) {}

  std::string dump(const Json& j) {
    // One buffer per thread, kept between calls unless it grew large.
    constexpr size_t kKeptCapacity = size_t{64} * 1024;
    buffer_.clear();
    write(j);
    if (buffer_.size() > kKeptCapacity) return std::exchange(buffer_, std::string());
    return buffer_;
  }

 private:
  void write(const Json& j) {
    switch (j.type()) {
      case Json::value_t::object: {
        if (j.empty()) {
          buffer_ += "{}";
          return;
        }
        buffer_ += '{';
        bool first = true;
        for (const auto& [k, v] : j.get_ref<const Json::object_t&>()) {
          if (!first) buffer_ += ',';
          first = false;
          write_string(k);
          buffer_ += ':';
          write(v);
        }
        buffer_ += '}';
        return;
      }
      case Json::value_t::array: {
        if (j.empty()) {
          buffer_ += "[]";
          return;
        }
        buffer_ += '[';
        bool first = true;
        for (const auto& v : j.get_ref<const Json::array_t&>()) {
          if (!first) buffer_ += ',';
          first = false;
          write(v);
        }
        buffer_ += ']';
        return;
      }
      case Json::value_t::string: write_string(j.get_ref<const std::string&>()); return;
      case Json::value_t::boolean: buffer_ += j.get<bool>() ? "true" : "false"; return;
      case Json::value_t::null: buffer_ += "null"; return;
      case Json::value_t::number_integer: write_integer(j.get<int64_t>()); return;
      case Json::value_t::number_unsigned: write_integer(j.get<uint64_t>()); return;
      case Json::value_t::number_float: {
        double x = j.get<double>();
        if (!std::isfinite(x)) {
          buffer_ += "null";
          return;
        }
        std::array<char, 64> digits{};
        char* end = nlohmann::detail::to_chars(digits.data(), digits.data() + digits.size(), x);
        buffer_.append(digits.data(), static_cast<size_t>(end - digits.data()));
        return;
      }
      default: serializer_.dump(j, false, false, 0); return;  // binary, discarded
    }
  }

  template <class T>
  void write_integer(T v) {
    std::array<char, 24> digits{};
    auto [end, ec] = std::to_chars(digits.data(), digits.data() + digits.size(), v);
    (void)ec;  // 24 bytes hold any 64-bit integer
    buffer_.append(digits.data(), static_cast<size_t>(end - digits.data()));
  }

  void write_string(const std::string& s) {
    for (char ch : s) {
      if (static_cast<unsigned char>(ch) >= 0x80) {
        serializer_.dump(Json(s), false, false, 0);  // UTF-8: checked as nlohmann checks it
        return;
      }
    }
    buffer_ += '"';
    size_t run = 0;  // where the bytes not yet written begin
    for (size_t i = 0; i < s.size(); ++i) {
      auto c = static_cast<unsigned char>(s[i]);
      if (c >= 0x20 && c != '"' && c != '\\') continue;
      buffer_.append(s, run, i - run);
      run = i + 1;
      switch (c) {
        case '"': buffer_ += "\\\""; break;
        case '\\': buffer_ += "\\\\"; break;
        case '\b': buffer_ += "\\b"; break;
        case '\f': buffer_ += "\\f"; break;
        case '\n': buffer_ += "\\n"; break;
        case '\r': buffer_ += "\\r"; break;
        case '\t': buffer_ += "\\t"; break;
        default: {
          static constexpr char kHex[] = "0123456789abcdef";
          const char u[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
          buffer_.append(u, sizeof u);
        }
      }
    }
    buffer_.append(s, run, s.size() - run);
    buffer_ += '"';
  }

  std::string buffer_;
  nlohmann::detail::serializer<Json> serializer_;  // writes into buffer_
};

}  // namespace

std::string dump_json(const Json& j) {
  thread_local Writer writer;
  return writer.dump(j);
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
