// Logging: spdlog to stderr, with the broker's rank in every line.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace loom {
// Sets up the default logger: `name` prefixes every line (e.g. "loomd[3]").
// `level` is one of spdlog's names ("info", "debug", ...).
void init_logging(const std::string& name, const std::string& level);
}  // namespace loom
