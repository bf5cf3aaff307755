// The fields of a job for `loom jobs -o` (jobs_fields.h): those of
// flux-jobs(1) "OUTPUT FORMAT", over what job-manager.list gives
// (docs/protocols/jobs.md).
#include "cli/jobs_fields.h"

#include <pwd.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>

#include "base/fluid.h"
#include "cli/common.h"

namespace loom::cli {

namespace {

using Kind = FieldValue::Kind;

FieldValue integer(int64_t i) { return FieldValue{Kind::kInt, "", i, 0}; }
FieldValue real(double f) { return FieldValue{Kind::kFloat, "", 0, f}; }

// The user's name, or the uid where it has none.
std::string name_of(uint32_t uid) {
  std::string name = user_name(uid);
  return name.empty() ? std::to_string(uid) : name;
}

const std::string kEmpty;

std::string str_of(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : kEmpty;
}

double time_of(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

std::string state_single(const std::string& st) {
  if (st == "NEW") return "N";
  if (st == "DEPEND") return "D";
  if (st == "PRIORITY") return "P";
  if (st == "SCHED") return "S";
  if (st == "RUN") return "R";
  if (st == "CLEANUP") return "C";
  if (st == "INACTIVE") return "I";
  return "?";
}

std::string result_abbrev(const std::string& r) {
  if (r == "COMPLETED") return "CD";
  if (r == "FAILED") return "F";
  if (r == "CANCELED") return "CA";
  if (r == "TIMEOUT") return "TO";
  return "";
}

double runtime_of(const Json& j, double now) {
  if (!j.contains("t_run")) return 0.0;
  double end = j.contains("t_cleanup") ? time_of(j, "t_cleanup") : now;
  return std::max(0.0, end - time_of(j, "t_run"));
}

// The dependencies a job in DEPEND still waits on: "afterok:ƒA,singleton".
std::string dependencies_of(const Json& j) {
  std::string out;
  auto it = j.find("dependencies");
  if (it == j.end() || !it->is_array()) return out;
  for (const auto& d : *it) {
    if (d.is_string()) out += (out.empty() ? "" : ",") + d.get<std::string>();
  }
  return out;
}

// Why a job is where it is: the exception that ended it, what a pending
// job waits for, the ranks a job holds.
std::string info_of(const Json& j) {
  std::string st = str_of(j, "state");
  if (j.contains("exception") && (st == "INACTIVE" || st == "CLEANUP")) {
    std::string note = j["exception"].value("note", "");
    std::string type = j["exception"].value("type", "");
    return type + (note.empty() ? "" : ": " + note);
  }
  if (st == "DEPEND" && j.contains("dependencies")) {
    // cc_limit (--cc=IDSET%N), the last dependency checked: "cc_limit:5"
    // or "cc_limit:ƒGROUP:5" as the job waits on it alone.
    std::string deps = dependencies_of(j);
    if (deps.starts_with("cc_limit:") && deps.find(',') == std::string::npos) {
      return "array limit: " + deps.substr(deps.rfind(':') + 1) + " running";
    }
    return "dependency: " + deps;
  }
  if (st == "SCHED" || st == "PRIORITY" || st == "DEPEND") {
    if (j.value("priority", -1) == 0) return "held";
    const Json* a = j.contains("annotations") ? &j["annotations"] : nullptr;
    if (a && a->is_object() && a->contains("sched") && (*a)["sched"].contains("reason_pending")) {
      std::string out = (*a)["sched"]["reason_pending"].get<std::string>();
      if ((*a)["sched"].contains("t_estimate")) {
        double in = (*a)["sched"]["t_estimate"].get<double>() - static_cast<double>(::time(nullptr));
        out += " (starts in about " + format_fsd(std::max(0.0, in)) + ")";
      }
      return out;
    }
    // Not asked of the scheduler (the queue is stopped), or behind jobs
    // that go first (Slurm's "Priority").
    if (st == "SCHED" && j.contains("queue_stopped")) {
      std::string why = j["queue_stopped"].get<std::string>();
      return "queue stopped" + (why.empty() ? "" : ": " + why);
    }
    if (st == "SCHED") return "priority";
    return "";
  }
  if (st == "CLEANUP" && j.contains("ranks_held")) return "holding rank" + j["ranks_held"].get<std::string>();
  if (j.contains("ranks")) return "rank" + j["ranks"].get<std::string>();
  return "";
}

// A JSON value as a field: strings as they are, numbers as numbers,
// booleans as Python prints them, anything else as compact JSON.
FieldValue from_json(const Json& v) {
  if (v.is_string()) return text(v.get<std::string>());
  if (v.is_number_integer()) return integer(v.get<int64_t>());
  if (v.is_number_float()) return real(v.get<double>());
  if (v.is_boolean()) return text(v.get<bool>() ? "True" : "False");
  if (v.is_null()) return text("");
  return text(dump_json(v));
}

// "annotations.sched.reason_pending" below `root`; empty when absent.
FieldValue annotation(const Json& j, const std::string& path) {
  auto it = j.find("annotations");
  if (it == j.end()) return text("");
  const Json* at = &*it;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t dot = path.find('.', pos);
    std::string key = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (!at->is_object() || !at->contains(key)) return text("");
    at = &(*at)[key];
    pos = dot == std::string::npos ? path.size() : dot + 1;
  }
  return from_json(*at);
}

bool has_status(const Json& j) { return j.contains("status") && j["status"].is_number_integer(); }

FieldValue returncode(const Json& j) {
  if (has_status(j)) {
    int st = j["status"].get<int>();
    return integer(WIFSIGNALED(st) ? -WTERMSIG(st) : WEXITSTATUS(st));
  }
  if (str_of(j, "result") == "CANCELED") return integer(-128);
  return text("");
}

std::string inactive_reason(const Json& j) {
  if (str_of(j, "state") != "INACTIVE") return "";
  if (j.contains("exception")) {
    std::string type = j["exception"].value("type", "");
    std::string note = j["exception"].value("note", "");
    if (type == "cancel") return "Canceled" + (note.empty() ? "" : ": " + note);
    if (type == "timeout") return "Timeout";
    return "Exception: " + type + (note.empty() ? "" : ": " + note);
  }
  if (has_status(j)) {
    int st = j["status"].get<int>();
    if (WIFSIGNALED(st)) return ::strsignal(WTERMSIG(st));
    return "Exit " + std::to_string(WEXITSTATUS(st));
  }
  return str_of(j, "result");
}

}  // namespace

std::string format_fsd(double secs) {
  if (std::isinf(secs)) return "inf";
  char buf[64];
  if (secs < 1.0e-3) return "0s";
  if (secs < 10.0) {
    std::snprintf(buf, sizeof buf, "%.03fs", secs);
  } else if (secs < 60.0) {
    std::snprintf(buf, sizeof buf, "%.4gs", secs);
  } else if (secs < 3600.0) {
    std::snprintf(buf, sizeof buf, "%.4gm", secs / 60.0);
  } else if (secs < 86400.0) {
    std::snprintf(buf, sizeof buf, "%.4gh", secs / 3600.0);
  } else {
    std::snprintf(buf, sizeof buf, "%.4gd", secs / 86400.0);
  }
  return buf;
}

Result<FieldValue> job_field(const Json& j, const std::string& f, double now) {
  uint64_t id = j.value("id", uint64_t{0});
  const std::string st = str_of(j, "state");
  const bool inactive = st == "INACTIVE";
  if (f == "id" || f == "id.f58") return text(encode_f58(JobId{id}));
  if (f == "id.f58plain") {
    std::string s = encode_f58(JobId{id});
    return text("f" + s.substr(s.find_first_not_of("\xC6\x92")));
  }
  if (f == "id.dec") return integer(static_cast<int64_t>(id));
  char buf[64];
  if (f == "id.hex") {
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(id));
    return text(buf);
  }
  if (f == "id.dothex" || f == "id.kvs") {
    std::snprintf(buf, sizeof buf, "%04llx.%04llx.%04llx.%04llx", static_cast<unsigned long long>(id >> 48),
                  static_cast<unsigned long long>((id >> 32) & 0xffff),
                  static_cast<unsigned long long>((id >> 16) & 0xffff), static_cast<unsigned long long>(id & 0xffff));
    return text((f == "id.kvs" ? "job." : "") + std::string(buf));
  }
  if (f == "userid") return integer(j.value("userid", int64_t{0}));
  if (f == "username") return text(name_of(j.value("userid", uint32_t{0})));
  if (f == "urgency") return integer(j.value("urgency", int64_t{0}));
  if (f == "priority") return j.value("priority", int64_t{-1}) < 0 ? text("") : integer(j["priority"].get<int64_t>());
  if (f == "dependencies") return text(dependencies_of(j));
  if (f == "allocation") {
    // A step's allocation (docs/steps.md), "" for other jobs.
    auto a = j.find("allocation");
    return text(a != j.end() && a->is_number_unsigned() ? encode_f58(JobId{a->get<uint64_t>()}) : "");
  }
  if (f == "status") return text(inactive ? str_of(j, "result") : st);
  if (f == "status_abbrev" || f == "st") return text(inactive ? result_abbrev(str_of(j, "result")) : state_single(st));
  if (f == "name") return text(str_of(j, "name"));
  if (f == "queue") return text("");  // loom has one queue, unnamed
  if (f == "ntasks") return integer(j.value("ntasks", int64_t{0}));
  if (f == "ncores") return j.contains("ncores") ? integer(j["ncores"].get<int64_t>()) : text("");
  if (f == "duration") return real(time_of(j, "duration"));
  if (f == "nnodes") return j.value("nnodes", 0) > 0 ? integer(j["nnodes"].get<int64_t>()) : text("");
  if (f == "ranks") return text(str_of(j, "ranks"));
  if (f == "nodelist") return text(str_of(j, "nodelist"));
  if (f == "state") return text(st);
  if (f == "state_single") return text(state_single(st));
  if (f == "result") return text(str_of(j, "result"));
  if (f == "result_abbrev") return text(result_abbrev(str_of(j, "result")));
  if (f == "success") return inactive ? text(j.value("success", false) ? "True" : "False") : text("");
  if (f == "waitstatus") return has_status(j) ? integer(j["status"].get<int64_t>()) : text("");
  if (f == "returncode") return returncode(j);
  if (f == "exception.occurred") {
    if (j.contains("exception")) return text("True");
    return inactive ? text("False") : text("");
  }
  if (f == "exception.severity") return j.contains("exception") ? integer(0) : text("");
  if (f == "exception.type" || f == "exception.note") {
    if (!j.contains("exception")) return text("");
    return text(j["exception"].value(f.substr(10), ""));
  }
  if (f == "t_submit" || f == "t_depend" || f == "t_run" || f == "t_cleanup" || f == "t_inactive" ||
      f == "expiration") {
    return real(time_of(j, f.c_str()));
  }
  if (f == "runtime") return real(runtime_of(j, now));
  if (f == "t_remaining") {
    double exp = time_of(j, "expiration");
    if ((st != "RUN" && st != "CLEANUP") || exp <= 0) return real(0.0);
    return real(std::max(0.0, exp - now));
  }
  if (f == "contextual_time") return real(j.contains("t_run") ? runtime_of(j, now) : time_of(j, "duration"));
  if (f == "contextual_info" || f == "info") return text(info_of(j));
  if (f == "inactive_reason") return text(inactive_reason(j));
  if (f == "annotations") return annotation(j, "");
  if (f.starts_with("annotations.")) return annotation(j, f.substr(12));
  // "user" alone is the user's name, as loom has always had it; flux
  // jobs reads it as annotations.user, which loom never sets.
  if (f == "user") return text(name_of(j.value("userid", uint32_t{0})));
  if (f == "sched") return annotation(j, f);
  if (f.starts_with("sched.") || f.starts_with("user.")) return annotation(j, f);
  // Fields of jobs that are instances themselves: a loom job never is.
  if (f == "instance.stats" || f == "instance.stats.total" || f == "instance.utilization" ||
      f == "instance.gpu_utilization" || f == "instance.progress" || f.starts_with("instance.resources.")) {
    return text("");
  }
  return Error{EINVAL, "unknown field \"" + f + "\" (loom jobs --format=help lists the fields)"};
}

std::string field_heading(const std::string& f) {
  static const std::map<std::string, std::string> kHeadings = {
      {"id", "JOBID"},
      {"id.f58", "JOBID"},
      {"id.f58plain", "JOBID"},
      {"id.dec", "JOBID"},
      {"id.hex", "JOBID"},
      {"id.dothex", "JOBID"},
      {"id.kvs", "JOBID"},
      {"userid", "UID"},
      {"username", "USER"},
      {"user", "USER"},
      {"urgency", "URG"},
      {"priority", "PRI"},
      {"dependencies", "DEPENDENCIES"},
      {"allocation", "ALLOCATION"},
      {"status", "STATUS"},
      {"status_abbrev", "ST"},
      {"st", "ST"},
      {"name", "NAME"},
      {"queue", "QUEUE"},
      {"ntasks", "NTASKS"},
      {"ncores", "NCORES"},
      {"duration", "DURATION"},
      {"nnodes", "NNODES"},
      {"ranks", "RANKS"},
      {"nodelist", "NODELIST"},
      {"state", "STATE"},
      {"state_single", "S"},
      {"result", "RESULT"},
      {"result_abbrev", "RS"},
      {"success", "SUCCESS"},
      {"waitstatus", "WSTATUS"},
      {"returncode", "RC"},
      {"exception.occurred", "EXCEPTION-OCCURRED"},
      {"exception.severity", "EXCEPTION-SEVERITY"},
      {"exception.type", "EXCEPTION-TYPE"},
      {"exception.note", "EXCEPTION-NOTE"},
      {"t_submit", "T_SUBMIT"},
      {"t_depend", "T_DEPEND"},
      {"t_run", "T_RUN"},
      {"t_cleanup", "T_CLEANUP"},
      {"t_inactive", "T_INACTIVE"},
      {"runtime", "RUNTIME"},
      {"expiration", "EXPIRATION"},
      {"t_remaining", "T_REMAINING"},
      {"contextual_time", "TIME"},
      {"contextual_info", "INFO"},
      {"info", "INFO"},
      {"inactive_reason", "INACTIVE-REASON"},
  };
  auto it = kHeadings.find(f);
  if (it != kHeadings.end()) return it->second;
  std::string h = f;
  for (auto& ch : h) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return h;
}

}  // namespace loom::cli
