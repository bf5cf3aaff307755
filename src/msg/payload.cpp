#include "msg/payload.h"

#include <cmath>

namespace loom {

namespace {
Error not_an_object() { return Error{EPROTO, "payload must be a JSON object"}; }

// The text of `m` parsed, if it is an object.
Result<Json> parse_object(const Message& m) {
  auto j = parse_json(m.payload);
  if (j.ok() && !j->is_object()) return not_an_object();
  return j;
}
}  // namespace

Result<Json> payload_object(const Message& m) {
  if (!m.json && m.typed && m.payload.empty()) {
    Json j = m.typed->to_json();
    if (!j.is_object()) return not_an_object();
    return j;
  }
  if (!m.json) return parse_object(m);
  if (!m.json->is_object()) return not_an_object();
  return *m.json;
}

Result<std::shared_ptr<const Json>> payload_json(const Message& m) {
  if (!m.json && m.typed && m.payload.empty()) {
    auto j = std::make_shared<const Json>(m.typed->to_json());
    if (!j->is_object()) return not_an_object();
    return j;
  }
  if (!m.json) {
    auto j = parse_object(m);
    if (!j.ok()) return j.error();
    return std::make_shared<const Json>(std::move(*j));
  }
  if (!m.json->is_object()) return not_an_object();
  return m.json;
}

Result<std::string> get_string(const Json& j, const char* k, const char* dflt) {
  auto it = j.find(k);
  if (it == j.end()) {
    if (dflt) return std::string(dflt);
    return Error{EPROTO, std::string("missing \"") + k + "\""};
  }
  if (!it->is_string()) return Error{EPROTO, std::string("\"") + k + "\" must be a string"};
  return it->get<std::string>();
}

Result<int64_t> get_int(const Json& j, const char* k, int64_t lo, int64_t hi, const int64_t* dflt) {
  auto it = j.find(k);
  if (it == j.end()) {
    if (dflt) return *dflt;
    return Error{EPROTO, std::string("missing \"") + k + "\""};
  }
  if (!it->is_number_integer()) return Error{EPROTO, std::string("\"") + k + "\" must be an integer"};
  // Unsigned values above INT64_MAX are out of every range asked for here.
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    return Error{EINVAL, std::string("\"") + k + "\" is out of range"};
  }
  int64_t v = it->get<int64_t>();
  if (v < lo || v > hi) {
    return Error{EINVAL, std::string("\"") + k + "\" must be " + std::to_string(lo) + "-" + std::to_string(hi) +
                             ", not " + std::to_string(v)};
  }
  return v;
}

Result<uint64_t> get_uint(const Json& j, const char* k) {
  auto it = j.find(k);
  if (it == j.end()) return Error{EPROTO, std::string("missing \"") + k + "\""};
  if (!it->is_number_unsigned()) return Error{EPROTO, std::string("\"") + k + "\" must be a non-negative integer"};
  return it->get<uint64_t>();
}

Result<double> get_number(const Json& j, const char* k, double dflt) {
  auto it = j.find(k);
  if (it == j.end()) return dflt;
  if (!it->is_number() || !std::isfinite(it->get<double>())) {
    return Error{EPROTO, std::string("\"") + k + "\" must be a number"};
  }
  return it->get<double>();
}

Result<bool> get_bool(const Json& j, const char* k, bool dflt) {
  auto it = j.find(k);
  if (it == j.end()) return dflt;
  if (!it->is_boolean()) return Error{EPROTO, std::string("\"") + k + "\" must be true or false"};
  return it->get<bool>();
}

}  // namespace loom
