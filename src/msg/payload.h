// Reading request payloads: every service checks fields the same way, so
// that bad input gets the same kind of one-line error everywhere.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "msg/json.h"
#include "msg/message.h"

namespace loom {

// The payload as a JSON object (EPROTO otherwise).
Result<Json> payload_object(const Message& m);
// The same without a copy: the value the sender handed over parsed
// (Message::json), else the JSON of a typed payload (Message::typed), else
// the text parsed now.
Result<std::shared_ptr<const Json>> payload_json(const Message& m);

// Field `k` of `j` as a string; `dflt` when absent (an error if null).
Result<std::string> get_string(const Json& j, const char* k, const char* dflt = nullptr);
// Field `k` as an integer within [lo, hi]; `dflt` when absent and given.
Result<int64_t> get_int(const Json& j, const char* k, int64_t lo, int64_t hi, const int64_t* dflt = nullptr);
// Field `k` as a non-negative integer of up to 64 bits (a job id; a core
// count checked by the caller); EPROTO for anything else, a negative
// number included.
Result<uint64_t> get_uint(const Json& j, const char* k);
// Field `k` as a finite number; `dflt` when absent.
Result<double> get_number(const Json& j, const char* k, double dflt);
// Field `k` as a boolean; `dflt` when absent.
Result<bool> get_bool(const Json& j, const char* k, bool dflt);

}  // namespace loom
