// Batsim JSON workloads: {"nb_res": N, "jobs": [{"id", "subtime",
// "walltime", "res", "profile"}...], "profiles": {name: {"type", ...}}}.
// Each job becomes an SWF-like record (res as requested processors,
// walltime as requested time, the profile's delay as run time) and goes
// through the same rules as SWF (rules.cpp).
//
// Run time: a delay profile's `delay`; a sequence of delay profiles,
// `repeat` times the sum of its parts; any other profile (parallel tasks
// measured in flops, which need a platform to become seconds) has none:
// the walltime stands in for it, counted, and a job with neither is
// dropped. Errors: text that is not JSON (with its line), a missing or
// wrong-typed nb_res, jobs, id, subtime or res, a negative subtime, a
// negative walltime other than -1 (none), res < 1, a profile not in
// `profiles`.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>

#include "msg/json.h"
#include "trace/rules.h"
#include "trace/trace.h"

namespace loom::trace {
namespace {

using nlohmann::json;

using detail::kMaxSeconds;
constexpr int64_t kMaxRes = 1'000'000'000;
constexpr int kMaxProfileDepth = 16;

Error bad(const std::string& name, const std::string& what) { return Error{EINVAL, name + ": " + what}; }

std::string job_label(size_t index, const json& job) {
  std::string s = "job " + std::to_string(index + 1);
  if (job.is_object()) {
    auto id = job.find("id");
    if (id != job.end() && (id->is_string() || id->is_number_integer())) {
      s += " (id " + (id->is_string() ? id->get<std::string>() : std::to_string(id->get<int64_t>())) + ")";
    }
  }
  return s;
}

bool finite_number(const json& v, double& out) {
  if (!v.is_number()) return false;
  out = v.get<double>();
  return std::isfinite(out);
}

// The run time a profile gives, or nullopt when it gives none (flops).
// Depth-limited: a sequence naming itself gives none.
std::optional<double> profile_delay(const json& profiles, const json& profile, int depth) {
  if (depth > kMaxProfileDepth || !profile.is_object()) return std::nullopt;
  auto type = profile.find("type");
  if (type == profile.end() || !type->is_string()) return std::nullopt;
  const std::string& t = type->get_ref<const std::string&>();
  if (t == "delay" || t == "DelayProfile") {
    auto d = profile.find("delay");
    double v = 0;
    if (d == profile.end() || !finite_number(*d, v) || v < 0 || v > kMaxSeconds) return std::nullopt;
    return v;
  }
  if (t == "composed" || t == "SequentialCompositionProfile") {
    auto seq = profile.find("seq");
    if (seq == profile.end() || !seq->is_array()) return std::nullopt;
    int64_t repeat = 1;
    auto r = profile.find("repeat");
    if (r != profile.end()) {
      if (!r->is_number_integer() || r->get<int64_t>() < 0) return std::nullopt;
      repeat = r->get<int64_t>();
    }
    double sum = 0;
    for (const json& part : *seq) {
      if (!part.is_string()) return std::nullopt;
      auto p = profiles.find(part.get_ref<const std::string&>());
      if (p == profiles.end()) return std::nullopt;
      auto d = profile_delay(profiles, *p, depth + 1);
      if (!d) return std::nullopt;
      sum += *d;
    }
    double total = sum * static_cast<double>(repeat);
    if (!(total <= kMaxSeconds)) return std::nullopt;
    return total;
  }
  return std::nullopt;
}

// An id written as an integer, or as a string of one ("12").
std::optional<int64_t> integer_id(const json& id) {
  if (id.is_number_integer()) return id.get<int64_t>();
  const std::string& s = id.get_ref<const std::string&>();
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// The line and column of byte `at` in `text`, for a parse error.
std::string place(std::string_view text, size_t at) {
  at = std::min(at, text.size());
  size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<ptrdiff_t>(at), '\n'));
  return std::to_string(line);
}

Result<Workload> parse(std::string_view text, const std::string& name, Filter filter) {
  if (text.empty()) return bad(name, "empty file");
  if (json_nests_deeper_than(text, kMaxJsonDepth)) {
    return bad(name, "not a Batsim workload: JSON nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 3, column 4: ..."; keep what follows "error".
    std::string what = e.what();
    auto colon = what.find(": ");
    what = colon == std::string::npos ? what : what.substr(colon + 2);
    std::replace(what.begin(), what.end(), '\n', ' ');
    return Error{EINVAL, name + ":" + place(text, e.byte == 0 ? 0 : e.byte - 1) + ": not JSON: " + what};
  } catch (const std::exception& e) {
    return bad(name, std::string("not JSON: ") + e.what());
  }
  if (!doc.is_object()) return bad(name, "not a Batsim workload: the top is not an object");
  auto nb = doc.find("nb_res");
  if (nb == doc.end() || !nb->is_number_integer() || nb->get<int64_t>() < 1 || nb->get<int64_t>() > kMaxRes) {
    return bad(name, "nb_res: missing or not an integer from 1 to " + std::to_string(kMaxRes));
  }
  auto jobs_json = doc.find("jobs");
  if (jobs_json == doc.end() || !jobs_json->is_array()) return bad(name, "jobs: missing or not a list");
  static const json kNoProfiles = json::object();
  auto profiles_it = doc.find("profiles");
  if (profiles_it != doc.end() && !profiles_it->is_object()) return bad(name, "profiles: not an object");
  const json& profiles = profiles_it != doc.end() ? *profiles_it : kNoProfiles;

  Workload w;
  w.header.max_procs = nb->get<int64_t>();
  w.header.max_nodes = w.header.max_procs;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (it->is_string()) w.header.keys.emplace_back(it.key(), it->get<std::string>());
  }

  std::vector<Job> jobs;
  jobs.reserve(jobs_json->size());
  std::vector<std::optional<int64_t>> ids;
  ids.reserve(jobs_json->size());
  bool all_integer = true;
  Tally& t = w.tally;
  for (size_t i = 0; i < jobs_json->size(); ++i) {
    const json& j = (*jobs_json)[i];
    std::string label = job_label(i, j);
    if (!j.is_object()) return bad(name, label + ": not an object");
    auto id = j.find("id");
    if (id == j.end() || !(id->is_string() || id->is_number_integer())) {
      return bad(name, label + ": id: missing or not a string or an integer");
    }
    Job job;
    job.line = static_cast<int64_t>(i) + 1;
    job.name = id->is_string() ? id->get<std::string>() : std::to_string(id->get<int64_t>());
    ids.push_back(integer_id(*id));
    if (!ids.back()) all_integer = false;

    auto sub = j.find("subtime");
    double subtime = 0;
    if (sub == j.end() || !finite_number(*sub, subtime)) return bad(name, label + ": subtime: missing or not a number");
    if (subtime < 0 || subtime > kMaxSeconds) return bad(name, label + ": subtime: not from 0 to 1e10 s");

    double walltime = -1;
    auto wt = j.find("walltime");
    if (wt != j.end()) {
      if (!finite_number(*wt, walltime)) return bad(name, label + ": walltime: not a number");
      if ((walltime < 0 && walltime != -1) || walltime > kMaxSeconds) {
        return bad(name, label + ": walltime: not -1 (none) or from 0 to 1e10 s");
      }
    }
    auto res = j.find("res");
    if (res == j.end() || !res->is_number_integer() || res->get<int64_t>() < 1 || res->get<int64_t>() > kMaxRes) {
      return bad(name, label + ": res: missing or not an integer from 1 to " + std::to_string(kMaxRes));
    }
    auto prof = j.find("profile");
    if (prof == j.end() || !prof->is_string()) return bad(name, label + ": profile: missing or not a string");
    auto p = profiles.find(prof->get_ref<const std::string&>());
    if (p == profiles.end()) return bad(name, label + ": profile " + prof->dump() + " is not in profiles");

    job.swf.submit = subtime;
    job.swf.req_procs = res->get<int64_t>();
    job.swf.req_time = walltime;
    job.swf.run = profile_delay(profiles, *p, 0).value_or(-1);
    job.submit = subtime;
    job.run = job.swf.run;
    if (job.run < 0 && walltime > 0) job.run = walltime;  // counted below, if kept
    jobs.push_back(std::move(job));
  }
  if (jobs.empty()) return bad(name, "no jobs (jobs is empty)");

  // Integer ids stay; any string id renumbers them all in file order.
  for (size_t i = 0; i < jobs.size(); ++i) {
    jobs[i].id = all_integer ? *ids[i] : static_cast<int64_t>(i) + 1;
    jobs[i].swf.job = jobs[i].id;
  }
  t.renumbered = !all_integer;

  detail::apply_rules(jobs, w.header.max_procs, filter, t);
  for (const Job& j : jobs) t.run_from_requested += j.swf.run < 0 ? 1 : 0;
  w.summary = detail::summarize(t, static_cast<int64_t>(jobs.size()), filter, "");
  if (jobs.empty()) return bad(name, "no job left: " + w.summary);
  if (auto ok = detail::check_unique_ids(jobs, name, false); !ok) return ok.error();
  w.jobs = std::move(jobs);
  return w;
}

}  // namespace

Result<Workload> parse_batsim(std::string_view text, const std::string& name, Filter filter) {
  // Every access above is checked first; this is for what was missed, so
  // that no exception leaves the reader.
  try {
    return parse(text, name, filter);
  } catch (const std::exception& e) {
    return bad(name, std::string("not a Batsim workload: ") + e.what());
  }
}

}  // namespace loom::trace
