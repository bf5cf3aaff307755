// libFuzzer target for the TOML configuration file of `loom start --config`
// (docs/configuration.md): parse_config_toml, which runs toml11 over the
// text and turns what it accepts into the KEY=VALUE settings that
// --setconf takes too.
//
// For any input, it either fails with one line that begins with the file's
// name, or yields settings that split back into a TABLE.KEY of bare names
// and a value (a list being a JSON list of strings). Parsing twice gives
// the same settings.
//
// Build with the `fuzz` preset; ctest runs it for a bounded time on the
// seeds in fuzz_corpus/.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/fuzz_check.h"
#include "cli/config.h"
#include "msg/json.h"

namespace loom {
namespace {

bool bare(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

void check_setting(const std::string& kv) {
  auto eq = kv.find('=');
  FUZZ_CHECK(eq != std::string::npos);
  std::string_view key = std::string_view(kv).substr(0, eq), value = std::string_view(kv).substr(eq + 1);
  auto dot = key.find('.');
  FUZZ_CHECK(dot != std::string_view::npos);
  FUZZ_CHECK(bare(key.substr(0, dot)) && bare(key.substr(dot + 1)));
  if (value.starts_with("[")) {
    // A list of strings, or a string that happens to begin with '['.
    auto list = parse_json(value);
    if (list.ok() && list->is_array()) {
      for (const Json& e : *list) FUZZ_CHECK(e.is_string());
    }
  }
}

}  // namespace
}  // namespace loom

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loom;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto settings = cli::parse_config_toml(text, "loom.toml");
  if (!settings.ok()) {
    FUZZ_CHECK(settings.error().code == EINVAL);
    FUZZ_CHECK(settings.error().text.starts_with("loom.toml: "));
    FUZZ_CHECK(fuzz::one_line(settings.error().text));
    return 0;
  }
  for (const std::string& kv : *settings) check_setting(kv);
  auto again = cli::parse_config_toml(text, "loom.toml");
  FUZZ_CHECK(again.ok());
  std::vector<std::string> a = *settings, b = *again;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  FUZZ_CHECK(a == b);
  return 0;
}
