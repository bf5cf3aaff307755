#include "jobspec/jobspec.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "base/quote.h"

namespace loom {

namespace {

Error bad(const std::string& why) { return Error{EINVAL, "jobspec: " + why}; }

// The member `key` of `o`, which has it (checked before): one lookup,
// where a const operator[] would also build a string of the key.
const Json& member(const Json& o, std::string_view key) { return *o.find(key); }
// The member `key` of the object `o`, or nullptr: one search for what is
// looked for and then read.
const Json* find_member(const Json& o, std::string_view key) {
  auto it = o.find(key);
  return it == o.end() ? nullptr : &*it;
}

Result<uint32_t> positive_count(const Json& vertex, std::string_view type) {
  auto it = vertex.find("count");
  if (it == vertex.end()) return bad(std::string(type) + " has no count");
  if (!it->is_number_integer()) return bad(std::string(type) + " count must be an integer");
  int64_t n = it->get<int64_t>();
  if (n < 1) return bad(std::string(type) + " count must be at least 1 (got " + std::to_string(n) + ")");
  if (n > 1'000'000) return bad(std::string(type) + " count " + std::to_string(n) + " is too large");
  return static_cast<uint32_t>(n);
}

Status check_keys(const Json& vertex) {
  for (const auto& [k, v] : vertex.get_ref<const Json::object_t&>()) {
    const std::string_view key = k;  // compared by length first
    if (key != "type" && key != "count" && key != "unit" && key != "with" && key != "label" && key != "exclusive") {
      return bad("unknown resource key " + quote_input(k));
    }
  }
  return {};
}

Result<std::string> type_of(const Json& vertex) {
  if (!vertex.is_object()) return bad("a resource must be an object");
  auto it = vertex.find("type");
  if (it == vertex.end() || !it->is_string()) return bad("a resource needs a string type");
  const std::string& t = it->get_ref<const std::string&>();
  if (const std::string_view v = t; v != "node" && v != "slot" && v != "core" && v != "gpu") {
    return bad("unknown resource type " + quote_input(t) + " (version 1 knows node, slot, core, gpu)");
  }
  if (auto st = check_keys(vertex); !st) return st.error();
  return t;
}

// slot>core or slot>(core,gpu)
Status parse_slot(const Json& slot, Jobspec& js, std::string& label) {
  auto n = positive_count(slot, "slot");
  if (!n.ok()) return n.error();
  js.nslots = *n;
  auto lit = slot.find("label");
  if (lit == slot.end() || !lit->is_string() || lit->get_ref<const std::string&>().empty()) {
    return bad("slot needs a label");
  }
  label = lit->get_ref<const std::string&>();
  auto with = slot.find("with");
  if (with == slot.end() || !with->is_array() || with->empty() || with->size() > 2) {
    return bad("slot must contain core (and optionally gpu)");
  }
  bool core = false, gpu = false;
  for (auto& child : *with) {
    auto t = type_of(child);
    if (!t.ok()) return t.error();
    if (child.contains("with")) return bad(*t + " cannot contain other resources");
    auto c = positive_count(child, *t);
    if (!c.ok()) return c.error();
    if (*t == "core" && !core) {
      core = true;
      js.cores_per_slot = *c;
    } else if (*t == "gpu" && !gpu) {
      gpu = true;
      js.gpus_per_slot = *c;
    } else {
      return bad("slot may contain one core and one gpu resource, not " + *t + " here");
    }
  }
  if (!core) return bad("slot must contain core");
  return {};
}

// attributes.system.batch into js (after the tasks, whose count it checks).
Status parse_batch(const Json& batch, Jobspec& js) {
  if (!batch.is_object()) return bad("batch must be an object {\"script\": TEXT}");
  for (const auto& [key, value] : batch.items()) {
    if (key != "script") return bad("unknown key " + quote_input("batch." + key) + " (batch has script only)");
  }
  auto script = batch.find("script");
  if (script == batch.end() || !script->is_string()) return bad("batch.script must be the script's text");
  const std::string& text = script->get_ref<const std::string&>();
  if (text.size() > kMaxScript) {
    return bad("batch.script is " + std::to_string(text.size()) + " bytes (at most " + std::to_string(kMaxScript) +
               ")");
  }
  if (!text.starts_with("#!")) return bad("batch.script must start with #! and the interpreter to run it with");
  if (text.find('\0') != std::string::npos) return bad("batch.script holds a NUL byte");
  if (js.ntasks != 1) return bad("a batch job runs one task (count {\"total\": 1}), not " + std::to_string(js.ntasks));
  js.batch = true;
  js.script = text;
  return {};
}

}  // namespace

Result<Jobspec> parse_jobspec_text(std::string_view text) {
  auto j = parse_json(text);
  if (!j.ok()) return bad(j.error().text);
  return parse_jobspec(std::move(*j));
}

Result<Jobspec> parse_jobspec(const Json& j) {
  auto js = decode_jobspec(j);
  if (js.ok()) js->raw = j;
  return js;
}

Result<Jobspec> parse_jobspec(Json&& j) {
  auto js = decode_jobspec(j);
  if (js.ok()) js->raw = std::move(j);
  return js;
}

Result<Jobspec> decode_jobspec(const Json& j) {
  if (!j.is_object()) return bad("must be a JSON object");
  const Json* version = find_member(j, "version");
  const Json* resources = find_member(j, "resources");
  const Json* task_list = find_member(j, "tasks");
  const Json* attributes = find_member(j, "attributes");
  if (!version) return bad("missing \"version\"");
  if (!resources) return bad("missing \"resources\"");
  if (!task_list) return bad("missing \"tasks\"");
  if (!attributes) return bad("missing \"attributes\"");
  if (!version->is_number_integer() || version->get<int64_t>() != 1) return bad("version must be 1");
  Jobspec js;

  const Json& res = *resources;
  if (!res.is_array() || res.size() != 1) return bad("resources must be a list of exactly one node or slot");
  auto top = type_of(res[0]);
  if (!top.ok()) return top.error();
  std::string label;
  if (*top == "node") {
    auto n = positive_count(res[0], "node");
    if (!n.ok()) return n.error();
    js.nnodes = *n;
    if (res[0].contains("exclusive")) {
      if (!member(res[0], "exclusive").is_boolean()) return bad("exclusive must be true or false");
      js.exclusive = member(res[0], "exclusive").get<bool>();
    }
    auto with = res[0].find("with");
    if (with == res[0].end() || !with->is_array() || with->size() != 1) return bad("node must contain one slot");
    auto t = type_of((*with)[0]);
    if (!t.ok()) return t.error();
    if (*t != "slot") return bad("node must contain a slot, not " + *t);
    if (auto st = parse_slot((*with)[0], js, label); !st) return st.error();
    js.slots_per_node = js.nslots;
    // Each count is bounded, their product must be too: nslots is 32 bits.
    if (uint64_t{js.slots_per_node} * js.nnodes > 1'000'000) {
      return bad(std::to_string(js.nnodes) + " nodes of " + std::to_string(js.slots_per_node) +
                 " slots are too many slots (at most 1000000)");
    }
    js.nslots = js.slots_per_node * js.nnodes;
  } else if (*top == "slot") {
    if (res[0].contains("exclusive")) return bad("only a node can be exclusive");
    if (auto st = parse_slot(res[0], js, label); !st) return st.error();
  } else {
    return bad("resources must start with node or slot, not " + *top);
  }

  const Json& tasks = *task_list;
  if (!tasks.is_array() || tasks.size() != 1 || !tasks[0].is_object()) return bad("tasks must be a list of one task");
  const Json& task = tasks[0];
  auto cmd = task.find("command");
  if (cmd == task.end() || !cmd->is_array() || cmd->empty()) return bad("task command must be a non-empty list");
  js.command.reserve(cmd->size());
  for (auto& a : *cmd) {
    if (!a.is_string()) return bad("task command must be a list of strings");
    js.command.push_back(a.get_ref<const std::string&>());
  }
  if (js.command[0].empty()) return bad("task command is empty");
  if (const Json* slot = find_member(task, "slot");
      !slot || !slot->is_string() || slot->get_ref<const std::string&>() != label) {
    return bad("task slot must name the slot label " + quote_input(label));
  }
  auto count = task.find("count");
  if (count == task.end() || !count->is_object() || count->size() != 1) {
    return bad("task count must hold exactly one of per_slot and total");
  }
  if (const Json* ps = find_member(*count, "per_slot")) {
    if (!ps->is_number_integer() || ps->get<int64_t>() != 1) return bad("per_slot must be 1 in version 1");
    js.ntasks = js.nslots;
  } else if (const Json* total = find_member(*count, "total")) {
    const Json& t = *total;
    if (!t.is_number_integer() || t.get<int64_t>() < 1) return bad("total task count must be at least 1");
    if (t.get<int64_t>() > js.nslots) {
      return bad("total task count " + std::to_string(t.get<int64_t>()) + " exceeds the " + std::to_string(js.nslots) +
                 " slots");
    }
    js.ntasks = static_cast<uint32_t>(t.get<int64_t>());
    // A batch job runs one task (its script) on the first of its nodes.
    bool batch = j.contains("attributes") && member(j, "attributes").is_object() &&
                 member(j, "attributes").contains("system") && member(member(j, "attributes"), "system").is_object() &&
                 member(member(j, "attributes"), "system").contains("batch");
    if (js.nnodes > 0 && js.ntasks < js.nnodes && !(batch && js.ntasks == 1)) {
      return bad("total task count " + std::to_string(js.ntasks) + " is less than the " + std::to_string(js.nnodes) +
                 " nodes");
    }
  } else {
    return bad("task count must hold per_slot or total");
  }

  const Json& attrs = *attributes;
  if (!attrs.is_object()) return bad("attributes must be an object");
  for (auto& [k, v] : attrs.items()) {
    if (k != "system" && k != "user") return bad("unknown attributes section " + quote_input(k));
    if (!v.is_object()) return bad("attributes." + quote_input(k) + " must be an object");
  }
  const Json* system = find_member(attrs, "system");
  if (!system) return bad("attributes.system is required");
  const Json& sys = *system;
  const Json* duration_member = find_member(sys, "duration");
  if (!duration_member) return bad("attributes.system.duration is required");
  auto duration = jobspec_duration(*duration_member);
  if (!duration.ok()) return duration.error();
  js.duration = *duration;
  if (const Json* cwd = find_member(sys, "cwd")) {
    if (!cwd->is_string()) return bad("cwd must be a string");
    js.cwd = cwd->get<std::string>();
  }
  if (const Json* env = find_member(sys, "environment")) {
    if (!env->is_object()) return bad("environment must be an object");
    for (auto& [k, v] : env->items()) {
      if (!v.is_string()) return bad("environment value of " + quote_input(k) + " must be a string");
    }
  }
  const Json* job = find_member(sys, "job");
  const Json* name = job && job->is_object() ? find_member(*job, "name") : nullptr;
  if (name && name->is_string()) {
    js.name = name->get<std::string>();
  } else {
    auto slash = js.command[0].rfind('/');
    js.name = slash == std::string::npos ? js.command[0] : js.command[0].substr(slash + 1);
  }
  if (auto it = sys.find("batch"); it != sys.end()) {
    auto st = parse_batch(*it, js);
    if (!st) return st.error();
  }
  if (auto it = sys.find("allocation"); it != sys.end()) {
    bool positive =
        it->is_number_unsigned() ? it->get<uint64_t>() > 0 : it->is_number_integer() && it->get<int64_t>() > 0;
    if (!positive) return bad("allocation must be a job id (a number)");
    if (js.batch) return bad("a batch job cannot be a step of another allocation");
    js.allocation = it->get<uint64_t>();
  }
  auto input = parse_input_spec(sys);
  if (!input.ok()) return bad(input.error().text);
  js.input = std::move(*input);
  if (js.input.kind == InputSpec::Kind::kKvs && !js.input.all_tasks && *js.input.tasks.last() >= js.ntasks) {
    return bad("shell.options.input: task " + std::to_string(*js.input.tasks.last()) + " is not one of the job's " +
               std::to_string(js.ntasks) + " tasks");
  }
  return js;
}

Status check_system_keys(const Json& jobspec) {
  auto attrs = jobspec.find("attributes");
  if (attrs == jobspec.end() || !attrs->is_object()) return {};
  auto sys = attrs->find("system");
  if (sys == attrs->end() || !sys->is_object()) return {};
  for (const auto& [key, value] : sys->items()) {
    if (std::find(kSystemAttributes.begin(), kSystemAttributes.end(), key) != kSystemAttributes.end()) continue;
    return Error{EINVAL,
                 "unknown attribute " + quote_input("attributes.system." + key) +
                     " (loom reads duration, cwd, environment, job, shell, exec, dependencies, cc_limit, batch and "
                     "allocation; "
                     "anything else goes under attributes.user)"};
  }
  return {};
}

Result<Json> build_jobspec(const JobRequest& r) {
  if (r.command.empty()) return bad("no command given");
  if (r.cores_per_task < 1) return bad("cores per task must be at least 1");
  uint32_t tasks = r.tasks ? r.tasks : (r.nodes ? r.nodes : 1);
  if (r.nodes && tasks < r.nodes) {
    return bad("fewer tasks (" + std::to_string(tasks) + ") than nodes (" + std::to_string(r.nodes) + ")");
  }
  Json with = Json::array({{{"type", "core"}, {"count", r.cores_per_task}}});
  if (r.gpus_per_task) with.push_back({{"type", "gpu"}, {"count", r.gpus_per_task}});
  Json resources;
  Json count;
  if (r.nodes) {
    uint32_t per_node = (tasks + r.nodes - 1) / r.nodes;
    Json slot = {{"type", "slot"}, {"count", per_node}, {"label", "task"}, {"with", with}};
    Json node = {{"type", "node"}, {"count", r.nodes}, {"with", Json::array({slot})}};
    // -N without -n asks for those nodes, whole, as in Flux.
    if (r.exclusive || !r.tasks) node["exclusive"] = true;
    resources = Json::array({node});
    count = {{"total", tasks}};
  } else {
    if (r.exclusive) return bad("-x (exclusive) needs -N (nodes)");
    resources = Json::array({{{"type", "slot"}, {"count", tasks}, {"label", "task"}, {"with", with}}});
    count = {{"per_slot", 1}};
  }
  Json system = {{"duration", r.duration}};
  if (!r.cwd.empty()) system["cwd"] = r.cwd;
  if (r.environment.is_object()) system["environment"] = r.environment;
  if (!r.name.empty()) system["job"] = {{"name", r.name}};
  Json j = {{"version", 1},
            {"resources", resources},
            {"tasks", Json::array({{{"command", r.command}, {"slot", "task"}, {"count", count}}})},
            {"attributes", {{"system", system}}}};
  // What we build must be what we accept.
  if (auto js = parse_jobspec(j); !js.ok()) return js.error();
  return j;
}

namespace {
Result<double> parse_duration(std::string_view s, double bare_unit, const char* what) {
  std::string text(s);
  if (text == "inf" || text == "infinity") return std::numeric_limits<double>::infinity();
  if (text.empty()) return Error{EINVAL, std::string("empty ") + what};
  double unit = bare_unit;
  char last = text.back();
  if (last == 's' || last == 'm' || last == 'h' || last == 'd') {
    unit = last == 's' ? 1 : last == 'm' ? 60 : last == 'h' ? 3600 : 86400;
    text.pop_back();
  }
  if (text.empty() || text.find_first_not_of("0123456789.") != std::string::npos || text.find('.') != text.rfind('.') ||
      text == ".") {
    return Error{EINVAL, std::string("invalid ") + what + " " + quote_input(s) + " (e.g. 30s, 5m, 2h, 1d)"};
  }
  double v = std::strtod(text.c_str(), nullptr);
  if (!std::isfinite(v)) return Error{EINVAL, std::string("invalid ") + what + " " + quote_input(s)};
  return v * unit;
}
}  // namespace

Result<double> jobspec_duration(const Json& value) {
  if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < 0) {
    return bad("duration must be a non-negative number of seconds");
  }
  return value.get<double>();
}

Result<double> parse_fsd(std::string_view s) { return parse_duration(s, 1, "duration"); }
Result<double> parse_time_limit(std::string_view s) { return parse_duration(s, 60, "time limit"); }

}  // namespace loom
