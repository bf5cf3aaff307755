#include "base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace loom {
void init_logging(const std::string& name, const std::string& level) {
  auto logger = spdlog::stderr_color_st(name);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %n %l: %v");
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
}
}  // namespace loom
