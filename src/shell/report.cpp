#include "shell/report.h"

namespace loom {

std::string exit_report(const std::vector<std::pair<int, int>>& tasks, size_t cap) {
  std::string out = "{\"tasks\":[";
  size_t i = 0;
  for (; i < tasks.size(); ++i) {
    std::string entry = (i ? "," : "") + std::string("[") + std::to_string(tasks[i].first) + "," +
                        std::to_string(tasks[i].second) + "]";
    // Room for this entry and the longest ending: `],"more":N}` and the newline.
    size_t tail = 11 + std::to_string(tasks.size() - i).size();
    if (cap && out.size() + entry.size() + tail > cap) break;
    out += entry;
  }
  out += "]";
  if (i < tasks.size()) out += ",\"more\":" + std::to_string(tasks.size() - i);
  out += "}\n";
  return out;
}

std::string start_report(size_t count) { return "{\"tasks\":[],\"more\":" + std::to_string(count) + "}\n"; }

}  // namespace loom
