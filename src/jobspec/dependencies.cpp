#include "jobspec/dependencies.h"

#include <algorithm>
#include <array>
#include <cerrno>

namespace loom {

namespace {

struct SchemeName {
  DependencyScheme scheme;
  std::string_view name;
};
constexpr std::array<SchemeName, 5> kSchemes = {{{DependencyScheme::kAfter, "after"},
                                                 {DependencyScheme::kAfterAny, "afterany"},
                                                 {DependencyScheme::kAfterOk, "afterok"},
                                                 {DependencyScheme::kAfterNotOk, "afternotok"},
                                                 {DependencyScheme::kSingleton, "singleton"}}};

const SchemeName* find_scheme(std::string_view name) {
  for (const auto& s : kSchemes) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

Error unknown_scheme(std::string_view name) {
  return Error{EINVAL, "unknown dependency type \"" + std::string(name) +
                           "\" (after, afterany, afterok, afternotok, singleton)"};
}

// Job ids as people type them; the error names the id in quotes.
Result<JobId> dependency_target(std::string_view scheme, std::string_view value) {
  if (value.empty()) return Error{EINVAL, "dependency " + std::string(scheme) + " needs a job id"};
  auto id = parse_jobid(value);
  if (!id.ok()) {
    return Error{EINVAL, "dependency " + std::string(scheme) + ": \"" + std::string(value) + "\" is not a job id"};
  }
  return *id;
}

}  // namespace

const char* dependency_scheme_name(DependencyScheme s) {
  for (const auto& k : kSchemes) {
    if (k.scheme == s) return k.name.data();
  }
  return "unknown";
}

std::string Dependency::description() const {
  if (scheme == DependencyScheme::kSingleton) return "singleton";
  return std::string(dependency_scheme_name(scheme)) + ":" + encode_f58(target);
}

Result<std::vector<Dependency>> parse_dependencies(const Json& jobspec) {
  std::vector<Dependency> out;
  const Json* at = &jobspec;
  for (const char* key : {"attributes", "system", "dependencies"}) {
    if (!at->is_object()) return out;
    auto it = at->find(key);
    if (it == at->end()) return out;
    at = &*it;
  }
  const Json& list = *at;
  // RFC 26: a job without dependencies has no such key, never an empty list.
  if (!list.is_array() || list.empty()) {
    return Error{EINVAL, "attributes.system.dependencies must be a non-empty list of {scheme, value} objects"};
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& d = list[i];
    std::string where = "attributes.system.dependencies[" + std::to_string(i) + "]";
    if (!d.is_object()) return Error{EINVAL, where + " must be an object {scheme, value}"};
    for (const auto& [k, v] : d.items()) {
      if (k != "scheme" && k != "value") return Error{EINVAL, where + ": unknown key \"" + k + "\""};
    }
    if (!d.contains("scheme") || !d["scheme"].is_string()) return Error{EINVAL, where + " needs a string \"scheme\""};
    if (!d.contains("value") || !d["value"].is_string()) return Error{EINVAL, where + " needs a string \"value\""};
    const auto& scheme = d["scheme"].get_ref<const std::string&>();
    const auto& value = d["value"].get_ref<const std::string&>();
    const SchemeName* s = find_scheme(scheme);
    if (!s) return unknown_scheme(scheme);
    Dependency dep{s->scheme, JobId{0}};
    if (s->scheme == DependencyScheme::kSingleton) {
      if (!value.empty()) return Error{EINVAL, "dependency singleton takes no job id (got \"" + value + "\")"};
    } else {
      auto id = dependency_target(scheme, value);
      if (!id.ok()) return id.error();
      dep.target = *id;
    }
    // The same dependency twice is one dependency.
    if (std::find(out.begin(), out.end(), dep) == out.end()) out.push_back(dep);
  }
  return out;
}

Result<Json> parse_dependency_option(std::string_view arg) {
  Json out = Json::array();
  if (arg.empty()) return Error{EINVAL, "a dependency is TYPE:ID[:ID...] or singleton"};
  size_t start = 0;
  for (;;) {
    size_t comma = arg.find(',', start);
    std::string_view item = arg.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    size_t colon = item.find(':');
    std::string_view scheme = item.substr(0, colon);
    if (scheme.empty()) return Error{EINVAL, "an empty item in \"" + std::string(arg) + "\""};
    const SchemeName* s = find_scheme(scheme);
    if (!s) return unknown_scheme(scheme);
    if (s->scheme == DependencyScheme::kSingleton) {
      if (colon != std::string_view::npos) return Error{EINVAL, "dependency singleton takes no job id"};
      out.push_back(Json{{"scheme", "singleton"}, {"value", ""}});
    } else {
      if (colon == std::string_view::npos) {
        return Error{EINVAL,
                     "dependency " + std::string(scheme) + " needs a job id (" + std::string(scheme) + ":ID[:ID...])"};
      }
      std::string_view ids = item.substr(colon + 1);
      size_t at = 0;
      for (;;) {
        size_t next = ids.find(':', at);
        auto id = dependency_target(scheme, ids.substr(at, next == std::string_view::npos ? next : next - at));
        if (!id.ok()) return id.error();
        out.push_back(Json{{"scheme", std::string(scheme)}, {"value", encode_f58(*id)}});
        if (next == std::string_view::npos) break;
        at = next + 1;
      }
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace loom
