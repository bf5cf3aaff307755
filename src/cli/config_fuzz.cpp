// libFuzzer target for the TOML configuration file of `loom start --config`
// (docs/configuration.md): parse_config_toml, which runs toml11 over the
// text and turns what it accepts into the KEY=VALUE settings that
// --setconf takes too, and merge_config, which checks them.
//
// For any input, it either fails with one line that begins with the file's
// name, or yields settings whose key is a TABLE.KEY of bare names and
// whose value, when a list, is a JSON list of strings. Parsing twice gives
// the same settings. Merging them either fails with one line or gives a
// configuration whose loomd options are each one "--NAME=VALUE" word.
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

void check_setting(const cli::Setting& s) {
  std::string_view key = s.key;
  auto dot = key.find('.');
  FUZZ_CHECK(dot != std::string_view::npos);
  FUZZ_CHECK(bare(key.substr(0, dot)) && bare(key.substr(dot + 1)));
  FUZZ_CHECK(s.origin == "loom.toml");
  if (s.list) {
    auto list = parse_json(s.value);
    FUZZ_CHECK(list.ok() && list->is_array());
    for (const Json& e : *list) FUZZ_CHECK(e.is_string());
  }
}

std::string text_of(const cli::Setting& s) { return s.key + "=" + s.value + (s.list ? "L" : "S"); }

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
  for (const cli::Setting& s : *settings) check_setting(s);
  auto again = cli::parse_config_toml(text, "loom.toml");
  FUZZ_CHECK(again.ok());
  std::vector<std::string> a, b;
  for (const auto& s : *settings) a.push_back(text_of(s));
  for (const auto& s : *again) b.push_back(text_of(s));
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  FUZZ_CHECK(a == b);
  auto cfg = cli::merge_config(*settings);
  if (!cfg.ok()) {
    FUZZ_CHECK(cfg.error().code == EINVAL);
    FUZZ_CHECK(fuzz::one_line(cfg.error().text));
    return 0;
  }
  for (const std::string& o : cli::loomd_options(*cfg)) {
    FUZZ_CHECK(o.starts_with("--") && o.find('=') != std::string::npos);
  }
  return 0;
}
