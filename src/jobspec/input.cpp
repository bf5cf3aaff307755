#include "jobspec/input.h"

namespace loom {

bool InputSpec::reads(int task_rank) const {
  if (kind == Kind::kFile) return true;
  if (kind != Kind::kKvs || task_rank < 0) return false;
  return all_tasks || tasks.contains(static_cast<uint32_t>(task_rank));
}

Result<InputSpec> parse_input_spec(const Json& system) {
  InputSpec spec;
  if (!system.is_object() || !system.contains("shell")) return spec;
  const Json& shell = system["shell"];
  if (!shell.is_object() || !shell.contains("options") || !shell["options"].is_object()) return spec;
  const Json& opts = shell["options"];
  if (!opts.contains("input")) return spec;
  const Json& in = opts["input"];
  auto bad = [](const std::string& why) { return Error{EINVAL, "shell.options.input: " + why}; };
  if (!in.is_object() || !in.contains("type") || !in["type"].is_string()) return bad("wants an object with a type");
  std::string type = in["type"].get<std::string>();
  if (type == "kvs") {
    spec.kind = InputSpec::Kind::kKvs;
    if (!in.contains("tasks") || !in["tasks"].is_string()) return bad("\"tasks\" wants \"all\" or a set of task ranks");
    std::string tasks = in["tasks"].get<std::string>();
    if (tasks == "all") {
      spec.all_tasks = true;
    } else {
      auto set = IdSet::parse(tasks);
      if (!set.ok() || set->empty()) return bad("\"tasks\": \"" + tasks + "\" is not \"all\" or a set of task ranks");
      spec.tasks = std::move(*set);
    }
  } else if (type == "file") {
    spec.kind = InputSpec::Kind::kFile;
    if (!in.contains("path") || !in["path"].is_string() || in["path"].get<std::string>().empty()) {
      return bad("\"path\" wants a file name");
    }
    spec.path = in["path"].get<std::string>();
  } else {
    return bad("unknown type \"" + type + "\" (kvs or file)");
  }
  for (const auto& [key, value] : in.items()) {
    if (key != "type" && key != (spec.kind == InputSpec::Kind::kKvs ? "tasks" : "path")) {
      return bad("unknown key \"" + key + "\"");
    }
  }
  return spec;
}

}  // namespace loom
