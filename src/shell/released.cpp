#include "shell/released.h"

#include <string_view>

#include "idset/idset.h"
#include "msg/json.h"

namespace loom {

std::optional<std::string> released_here(const std::string& eventlog, uint32_t rank) {
  size_t start = 0;
  while (start < eventlog.size()) {
    size_t nl = eventlog.find('\n', start);
    if (nl == std::string::npos) nl = eventlog.size();
    auto e = parse_json(std::string_view(eventlog).substr(start, nl - start));
    start = nl + 1;
    if (!e.ok() || !e->is_object()) continue;
    std::string name = e->value("name", "");
    if (name == "clean" || name == "free") return std::string("the job has ended");
    if (name != "release" || !(*e)["context"].is_object()) continue;
    const Json& ctx = (*e)["context"];
    std::string ranks = ctx["ranks"].is_string() ? ctx["ranks"].get<std::string>() : "";
    auto set = IdSet::parse(ranks);
    if (ranks == "all" || ctx.value("final", false) || (set.ok() && set->contains(rank))) {
      return "the instance released rank " + std::to_string(rank) + " from the job";
    }
  }
  return std::nullopt;
}

}  // namespace loom
