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

// A string with bytes of UTF-8 as nlohmann writes it: checked, and
// replaced if invalid. One serializer per thread (setting one up costs
// more than most strings), writing into its own buffer.
void append_by_nlohmann(std::string& out, const Json& j) {
  thread_local std::string scratch;
  thread_local nlohmann::detail::serializer<Json> serializer(nlohmann::detail::output_adapter<char>(scratch), ' ',
                                                             Json::error_handler_t::replace);
  scratch.clear();
  serializer.dump(j, false, false, 0);
  out += scratch;
}

// The writer behind dump_json: nlohmann's compact text, byte for byte,
// written directly where that is simple (the structure, numbers, strings
// of ASCII) and by nlohmann's serializer where it is not (a string with
// bytes of UTF-8; binary values). nlohmann's own writer runs every byte
// of every string through its UTF-8 decoder, which cost more than the
// rest of most payloads.
// The bytes a string holds as they are: printable ASCII but the quote and
// the backslash.
constexpr std::array<bool, 256> kPlain = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[c] = c != '"' && c != '\\';
  return t;
}();

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  void write(const Json& j) {
    switch (j.type()) {
      case Json::value_t::object: {
        if (j.empty()) {
          out_ += "{}";
          return;
        }
        out_ += '{';
        bool first = true;
        for (const auto& [k, v] : j.get_ref<const Json::object_t&>()) {
          if (!first) out_ += ',';
          first = false;
          write_string(k);
          out_ += ':';
          write(v);
        }
        out_ += '}';
        return;
      }
      case Json::value_t::array: {
        if (j.empty()) {
          out_ += "[]";
          return;
        }
        out_ += '[';
        bool first = true;
        for (const auto& v : j.get_ref<const Json::array_t&>()) {
          if (!first) out_ += ',';
          first = false;
          write(v);
        }
        out_ += ']';
        return;
      }
      case Json::value_t::string: write_string(j.get_ref<const std::string&>()); return;
      case Json::value_t::boolean: out_ += j.get<bool>() ? "true" : "false"; return;
      case Json::value_t::null: out_ += "null"; return;
      case Json::value_t::number_integer: write_integer(j.get<int64_t>()); return;
      case Json::value_t::number_unsigned: write_integer(j.get<uint64_t>()); return;
      case Json::value_t::number_float: write_double(j.get<double>()); return;
      default: append_by_nlohmann(out_, j); return;  // binary, discarded
    }
  }

  void write_double(double x) {
    if (!std::isfinite(x)) {
      out_ += "null";
      return;
    }
    // A whole number below 10^15 (timestamps, mostly) is its digits and
    // ".0", as nlohmann writes it, without finding its shortest digits.
    if (x == std::trunc(x) && std::abs(x) < 1e15 && !(x == 0 && std::signbit(x))) {
      std::array<char, 24> text;  // "-999999999999999.0"
      char* end = std::to_chars(text.data(), text.data() + text.size(), static_cast<int64_t>(x)).ptr;
      *end++ = '.';
      *end++ = '0';
      out_.append(text.data(), static_cast<size_t>(end - text.data()));
      return;
    }
    std::array<char, 64> digits{};
    char* end = nlohmann::detail::to_chars(digits.data(), digits.data() + digits.size(), x);
    out_.append(digits.data(), static_cast<size_t>(end - digits.data()));
  }

  void write_string(std::string_view s) {
    // Most strings are printable ASCII with nothing to escape: one pass
    // finds that, and they are written whole.
    size_t i = 0;
    while (i < s.size() && kPlain[static_cast<unsigned char>(s[i])]) ++i;
    if (i == s.size()) {
      out_ += '"';
      out_.append(s);
      out_ += '"';
      return;
    }
    for (size_t k = i; k < s.size(); ++k) {
      if (static_cast<unsigned char>(s[k]) >= 0x80) return append_by_nlohmann(out_, Json(s));
    }
    out_ += '"';
    size_t run = 0;  // where the bytes not yet written begin
    for (; i < s.size(); ++i) {
      auto c = static_cast<unsigned char>(s[i]);
      if (kPlain[c]) continue;
      out_.append(s.substr(run, i - run));
      run = i + 1;
      switch (c) {
        case '"': out_ += "\\\""; break;
        case '\\': out_ += "\\\\"; break;
        case '\b': out_ += "\\b"; break;
        case '\f': out_ += "\\f"; break;
        case '\n': out_ += "\\n"; break;
        case '\r': out_ += "\\r"; break;
        case '\t': out_ += "\\t"; break;
        default: {
          static constexpr char kHex[] = "0123456789abcdef";
          const char u[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
          out_.append(u, sizeof u);
        }
      }
    }
    out_.append(s.substr(run));
    out_ += '"';
  }

 private:
  template <class T>
  void write_integer(T v) {
    std::array<char, 24> digits;
    auto [end, ec] = std::to_chars(digits.data(), digits.data() + digits.size(), v);
    (void)ec;  // 24 bytes hold any 64-bit integer
    out_.append(digits.data(), static_cast<size_t>(end - digits.data()));
  }

  std::string& out_;
};

}  // namespace

std::string dump_json(const Json& j) {
  // One buffer per thread, kept between calls unless it grew large.
  thread_local std::string buffer;
  constexpr size_t kKeptCapacity = size_t{64} * 1024;
  buffer.clear();
  Writer(buffer).write(j);
  if (buffer.size() > kKeptCapacity) return std::exchange(buffer, std::string());
  return buffer;
}

void append_json(std::string& out, const Json& j) { Writer(out).write(j); }
void append_json_string(std::string& out, std::string_view s) { Writer(out).write_string(s); }
void append_json_number(std::string& out, double x) { Writer(out).write_double(x); }

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
