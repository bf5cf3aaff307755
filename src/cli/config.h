// The TOML configuration file of `loom start --config` (docs/configuration.md).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace loom::cli {

// A TOML document as KEY=VALUE strings ("kvs.synchronous=full"), so that the
// file and --setconf go through the same checks. Every top-level entry must
// be a table of values; each value becomes text: a string as it is, a
// number in its shortest exact form, a boolean as true or false, a list of
// strings as a JSON list. `origin` (the file's path) begins every error,
// which is one line.
Result<std::vector<std::string>> parse_config_toml(std::string_view text, const std::string& origin);

// The same for the file at `path`.
Result<std::vector<std::string>> read_config_file(const std::string& path);

}  // namespace loom::cli
