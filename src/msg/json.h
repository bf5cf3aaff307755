// JSON parsing with a nesting limit. nlohmann-json itself accepts any depth
// and then overflows the stack when it dumps or destroys the value, so
// every payload from outside goes through parse_json.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "base/result.h"

namespace loom {

using Json = nlohmann::json;

inline constexpr int kMaxJsonDepth = 64;

// Parses `text`; EPROTO with a one-line reason if it is not JSON or nests
// deeper than `max_depth` arrays/objects.
Result<Json> parse_json(std::string_view text, int max_depth = kMaxJsonDepth);
// Whether `text` nests arrays and objects deeper than `max_depth`: a
// linear scan without recursion (brackets in strings skipped), to run
// before a parser that recurses.
bool json_nests_deeper_than(std::string_view text, int max_depth);

namespace json_detail {
inline void add_pairs(Json::object_t& /*o*/) {}
template <class K, class V, class... Rest>
void add_pairs(Json::object_t& o, K&& key, V&& value, Rest&&... rest) {
  o.emplace(std::string(std::forward<K>(key)), Json(std::forward<V>(value)));
  add_pairs(o, std::forward<Rest>(rest)...);
}
}  // namespace json_detail

// {k1: v1, k2: v2, ...}, built in place: json_object("id", 1, "final",
// true) is Json{{"id", 1}, {"final", true}}, whose initializer lists
// build each pair as an array of two first (the event contexts of every
// job are built so).
template <class... KeysAndValues>
Json json_object(KeysAndValues&&... kv) {
  static_assert(sizeof...(kv) % 2 == 0, "json_object takes keys and values in pairs");
  Json j(Json::value_t::object);
  json_detail::add_pairs(j.get_ref<Json::object_t&>(), std::forward<KeysAndValues>(kv)...);
  return j;
}

// Dumps compactly; invalid UTF-8 in strings is replaced, never thrown.
std::string dump_json(const Json& j);
// The same text appended to `out`; and the text of one string or one
// number, as dump_json writes them, without building a Json for it.
void append_json(std::string& out, const Json& j);
void append_json_string(std::string& out, std::string_view s);
void append_json_number(std::string& out, double x);
// At least dump_json(j).size(), found without building the text: what a
// reply that gathers many values counts to stay within a frame.
size_t dump_json_bound(const Json& j);

}  // namespace loom
