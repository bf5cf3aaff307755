#include "jobspec/dependencies.h"

#include <algorithm>
#include <array>
#include <cerrno>

#include "base/quote.h"

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
    return Error{EINVAL, "dependency " + std::string(scheme) + ": " + quote_input(value) + " is not a job id"};
  }
  return *id;
}

}  // namespace

const char* dependency_scheme_name(DependencyScheme s) {
  // Not a scheme of attributes.system.dependencies: --cc=IDSET%N sets it.
  if (s == DependencyScheme::kCcLimit) return "cc_limit";
  for (const auto& k : kSchemes) {
    if (k.scheme == s) return k.name.data();
  }
  return "unknown";
}

std::string Dependency::description() const {
  if (scheme == DependencyScheme::kSingleton) return "singleton";
  if (scheme == DependencyScheme::kCcLimit) {
    return "cc_limit:" + (target.value() ? encode_f58(target) + ":" : std::string()) + std::to_string(max);
  }
  return std::string(dependency_scheme_name(scheme)) + ":" + encode_f58(target);
}

namespace {

// attributes.system.KEY, or null.
const Json* system_attribute(const Json& jobspec, const char* key) {
  const Json* at = &jobspec;
  for (const char* k : {"attributes", "system", key}) {
    if (!at->is_object()) return nullptr;
    auto it = at->find(k);
    if (it == at->end()) return nullptr;
    at = &*it;
  }
  return at;
}

Result<Dependency> parse_cc_limit(const Json& v) {
  const std::string where = "attributes.system.cc_limit";
  if (!v.is_object()) return Error{EINVAL, where + " must be an object {max, group?}"};
  for (const auto& [k, x] : v.items()) {
    if (k != "max" && k != "group") return Error{EINVAL, where + ": unknown key \"" + k + "\""};
  }
  auto max = v.find("max");
  if (max == v.end() || !max->is_number_integer() || max->get<int64_t>() < 1 || max->get<int64_t>() > UINT32_MAX) {
    return Error{EINVAL, where + ".max must be a whole number of 1 or more"};
  }
  Dependency d{DependencyScheme::kCcLimit, JobId{0}, static_cast<uint32_t>(max->get<int64_t>())};
  if (auto g = v.find("group"); g != v.end()) {
    if (g->is_number_unsigned()) {
      d.target = JobId{g->get<uint64_t>()};
    } else if (g->is_string()) {
      auto id = dependency_target("cc_limit", g->get<std::string>());
      if (!id.ok()) return id.error();
      d.target = *id;
    } else {
      return Error{EINVAL, where + ".group must be a job id"};
    }
  }
  return d;
}

// attributes.system.dependencies alone.
Result<std::vector<Dependency>> parse_listed_dependencies(const Json& jobspec) {
  std::vector<Dependency> out;
  const Json* at = system_attribute(jobspec, "dependencies");
  if (!at) return out;
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

}  // namespace

Result<std::vector<Dependency>> parse_dependencies(const Json& jobspec) {
  auto out = parse_listed_dependencies(jobspec);
  if (!out.ok()) return out;
  // The concurrency limit last: it is checked last (job_manager/dependencies.h).
  if (const Json* cc = system_attribute(jobspec, "cc_limit")) {
    auto d = parse_cc_limit(*cc);
    if (!d.ok()) return d.error();
    out->push_back(*d);
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
