// The output eventlog of a job (Flux RFC 24): one entry per chunk of a
// task's stdout or stderr, written by the shells, read by `loom job attach`.
//
//   {"timestamp": T, "name": "data",
//    "context": {"stream": "stdout", "rank": "3", "data": "hello\n"}}
//
// A chunk that is not valid UTF-8 is stored base64-encoded with
// "encoding": "base64", so output comes back byte for byte.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "msg/json.h"

namespace loom {

// Lines longer than this are cut into chunks of this size.
inline constexpr size_t kOutputChunk = size_t{64} * 1024;

Json output_entry(const char* stream, int task_rank, std::string_view data);
// The same for any stream and rank text ("all" in the input eventlog).
Json data_entry(const char* stream, std::string rank, std::string_view data);

// The bytes of a `data` entry's context (decoding base64 where marked).
Result<std::string> output_data(const Json& context);

bool valid_utf8(std::string_view s);
// The offset of the first byte of `s` that is not (part of) valid UTF-8,
// or npos.
size_t first_invalid_utf8(std::string_view s);
std::string base64_encode(std::string_view in);
Result<std::string> base64_decode(std::string_view in);

}  // namespace loom
