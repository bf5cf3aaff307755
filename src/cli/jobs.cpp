// loom jobs [-a] [-A] [-f STATES] [-o FORMAT] [-n] [--json]: list jobs.
// loom cancel ID... | --all [-m NOTE]: cancel jobs.
//
// The default listing matches `flux jobs`: active jobs of the caller,
// newest first, columns JOBID USER NAME ST NTASKS NNODES TIME INFO.
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>

#include "cli/common.h"

namespace loom::cli {

namespace {

// State bits as the job manager numbers them (job.h).
constexpr int kNew = 1, kDepend = 2, kPriority = 4, kSched = 8, kRun = 16, kCleanup = 32, kInactive = 64;
constexpr int kPending = kDepend | kPriority | kSched;
constexpr int kActive = kNew | kPending | kRun | kCleanup;

struct JobsOpts {
  bool all = false;
  bool all_users = false;
  std::string filter;
  std::string format;
  bool no_header = false;
  bool json = false;
  int count = 0;
};

std::string user_name(uint32_t uid) {
  static std::map<uint32_t, std::string> cache;
  auto it = cache.find(uid);
  if (it != cache.end()) return it->second;
  struct passwd pw {};
  struct passwd* res = nullptr;
  char buf[4096];
  std::string name = std::to_string(uid);
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &res) == 0 && res) name = pw.pw_name;
  return cache[uid] = name;
}

// "1.234s", "12.5m", "1:02:03" — short, like flux jobs.
std::string fmt_duration(double s) {
  char buf[64];
  if (s < 0) s = 0;
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.3fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%.2fm", s / 60);
  } else {
    long t = std::lround(s);
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  }
  return buf;
}

// The one- or two-letter state of flux jobs: D P S R C, and for inactive
// jobs their result: CD F CA TO.
std::string state_single(const Json& j) {
  std::string st = j.value("state", "");
  if (st == "INACTIVE") {
    std::string r = j.value("result", "");
    if (r == "COMPLETED") return "CD";
    if (r == "CANCELED") return "CA";
    if (r == "TIMEOUT") return "TO";
    return "F";
  }
  if (st == "NEW") return "N";
  if (st == "DEPEND") return "D";
  if (st == "PRIORITY") return "P";
  if (st == "SCHED") return "S";
  if (st == "RUN") return "R";
  if (st == "CLEANUP") return "C";
  return "?";
}

double runtime(const Json& j, double now) {
  if (!j.contains("t_run")) return 0;
  double end = j.contains("t_cleanup") ? j["t_cleanup"].get<double>() : now;
  return end - j["t_run"].get<double>();
}

// The dependencies a job in DEPEND still waits on: "afterok:ƒA,singleton".
std::string dependencies_of(const Json& j) {
  std::string out;
  for (const auto& d : j.value("dependencies", Json::array())) {
    if (d.is_string()) out += (out.empty() ? "" : ",") + d.get<std::string>();
  }
  return out;
}

std::string info(const Json& j) {
  std::string st = j.value("state", "");
  if (j.contains("exception") && (st == "INACTIVE" || st == "CLEANUP")) {
    std::string note = j["exception"].value("note", "");
    std::string type = j["exception"].value("type", "");
    return type + (note.empty() ? "" : ": " + note);
  }
  if (st == "DEPEND" && j.contains("dependencies")) return "dependency: " + dependencies_of(j);
  if (st == "SCHED" || st == "PRIORITY" || st == "DEPEND") {
    if (j.value("priority", -1) == 0) return "held";
    const Json* a = j.contains("annotations") ? &j["annotations"] : nullptr;
    if (a && a->contains("sched") && (*a)["sched"].contains("reason_pending")) {
      std::string out = (*a)["sched"]["reason_pending"].get<std::string>();
      if ((*a)["sched"].contains("t_estimate")) {
        double in = (*a)["sched"]["t_estimate"].get<double>() - static_cast<double>(::time(nullptr));
        out += " (starts in about " + fmt_duration(in) + ")";
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

// The value of `field` for job `j`, as text.
Result<std::string> field(const Json& j, const std::string& f, double now) {
  uint64_t id = j["id"].get<uint64_t>();
  auto num = [&](const char* k) -> std::string {
    if (!j.contains(k)) return "";
    const Json& v = j[k];
    if (v.is_number_float()) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.6f", v.get<double>());
      return buf;
    }
    return v.is_string() ? v.get<std::string>() : dump_json(v);
  };
  if (f == "id" || f == "id.f58") return encode_f58(JobId{id});
  if (f == "id.dec") return std::to_string(id);
  if (f == "user" || f == "username") return user_name(j["userid"].get<uint32_t>());
  if (f == "userid") return num("userid");
  if (f == "name") return j.value("name", "");
  if (f == "state") return j.value("state", "");
  if (f == "state_single" || f == "st") return state_single(j);
  if (f == "result") return j.value("result", "");
  if (f == "ntasks") return num("ntasks");
  if (f == "nnodes") return j.value("nnodes", 0) > 0 ? num("nnodes") : "";
  if (f == "ranks") return j.value("ranks", "");
  if (f == "runtime") return j.contains("t_run") ? fmt_duration(runtime(j, now)) : "";
  if (f == "info") return info(j);
  if (f == "dependencies") return dependencies_of(j);
  if (f == "urgency" || f == "priority" || f == "status" || f == "t_submit" || f == "t_run" || f == "t_cleanup" ||
      f == "t_inactive" || f == "duration") {
    return num(f.c_str());
  }
  if (f == "exception.type" || f == "exception.note") {
    if (!j.contains("exception")) return std::string();
    return j["exception"].value(f.substr(10), "");
  }
  return Error{EINVAL,
               "unknown field {" + f +
                   "} (id, id.dec, user, userid, name, state, st, result, ntasks, "
                   "nnodes, ranks, runtime, info, dependencies, urgency, priority, status, t_submit, t_run, t_cleanup, "
                   "t_inactive, duration, exception.type, exception.note)"};
}

// "{id:>12} {name:<10}": Python-like fields with an optional alignment and width.
Result<std::string> render(const std::string& fmt, const Json& j, double now, bool header) {
  std::string out;
  for (size_t i = 0; i < fmt.size();) {
    if (fmt[i] != '{') {
      out += fmt[i++];
      continue;
    }
    size_t end = fmt.find('}', i);
    if (end == std::string::npos) return Error{EINVAL, "unclosed { in the format"};
    std::string spec = fmt.substr(i + 1, end - i - 1);
    i = end + 1;
    std::string name = spec, align;
    size_t width = 0;
    if (auto c = spec.find(':'); c != std::string::npos) {
      name = spec.substr(0, c);
      std::string w = spec.substr(c + 1);
      if (!w.empty() && (w[0] == '<' || w[0] == '>' || w[0] == '^')) {
        align = w.substr(0, 1);
        w = w.substr(1);
      }
      if (!w.empty()) {
        char* e = nullptr;
        width = std::strtoul(w.c_str(), &e, 10);
        if (*e) return Error{EINVAL, "bad width in {" + spec + "}"};
      }
    }
    std::string text;
    if (header) {
      text = name == "st" || name == "state_single" ? "ST" : name;
      if (name == "id" || name == "id.f58" || name == "id.dec") text = "JOBID";
      if (name == "runtime") text = "TIME";
      for (auto& ch : text) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    } else {
      auto v = field(j, name, now);
      if (!v.ok()) return v.error();
      text = *v;
    }
    // Widths count characters, not bytes (ƒ is two bytes).
    size_t len = 0;
    for (unsigned char ch : text) len += (ch & 0xC0) != 0x80;
    if (len < width) {
      std::string pad(width - len, ' ');
      bool right = align == ">" || (align.empty() && !header && !text.empty() &&
                                    std::isdigit(static_cast<unsigned char>(text[0])) && name != "name");
      text = right ? pad + text : text + pad;
    }
    out += text;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

Result<int> parse_filter(const std::string& f) {
  int mask = 0;
  std::stringstream ss(f);
  std::string w;
  while (std::getline(ss, w, ',')) {
    for (auto& ch : w) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (w == "new") mask |= kNew;
    else if (w == "depend") mask |= kDepend;
    else if (w == "priority") mask |= kPriority;
    else if (w == "sched") mask |= kSched;
    else if (w == "run") mask |= kRun;
    else if (w == "cleanup") mask |= kCleanup;
    else if (w == "inactive" || w == "completed" || w == "failed" || w == "canceled" || w == "timeout")
      mask |= kInactive;
    else if (w == "pending") mask |= kNew | kPending;
    else if (w == "running") mask |= kRun | kCleanup;
    else if (w == "active") mask |= kActive;
    else if (w == "all") mask |= kActive | kInactive;
    else
      return Error{EINVAL, "unknown state or result \"" + w +
                               "\" (pending, running, active, inactive, all, a state name, or completed, failed, "
                               "canceled, timeout)"};
  }
  return mask;
}

int run_jobs(const JobsOpts& o) {
  int mask = o.all ? kActive | kInactive : kActive;
  std::vector<std::string> results;  // result filters among inactive jobs
  if (!o.filter.empty()) {
    auto m = parse_filter(o.filter);
    if (!m.ok()) return fail("jobs", m.error(), kExitUsage);
    mask = *m;
    std::stringstream ss(o.filter);
    std::string w;
    while (std::getline(ss, w, ',')) {
      for (auto& ch : w) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      if (w == "COMPLETED" || w == "FAILED" || w == "CANCELED" || w == "TIMEOUT") results.push_back(w);
      if (w == "INACTIVE" || w == "ALL") results.clear(), results.push_back("*");
    }
  }
  std::string fmt =
      o.format.empty() ? "{id:>12} {user:<8} {name:<10} {st:>2} {ntasks:>6} {nnodes:>6} {runtime:>8} {info}" : o.format;
  auto s = connect_session();
  if (!s.ok()) return fail("jobs", s.error());
  Json req{{"states", mask}};
  if (!o.all_users) req["userid"] = static_cast<int64_t>(::getuid());
  if (const char* u = std::getenv("LOOM_HANDLE_USERID"); u && *u && !o.all_users) req["userid"] = std::atoll(u);
  auto r = (*s)->client->call("job-manager.list", req);
  if (!r.ok()) return fail("jobs", r.error());
  Json jobs = Json::array();
  for (auto& j : (*r)["jobs"]) {
    if (!results.empty() && j.value("state", "") == "INACTIVE" &&
        std::find(results.begin(), results.end(), "*") == results.end() &&
        std::find(results.begin(), results.end(), j.value("result", "")) == results.end()) {
      continue;
    }
    jobs.push_back(j);
    if (o.count > 0 && static_cast<int>(jobs.size()) >= o.count) break;
  }
  if (o.json) {
    std::cout << dump_json(jobs) << "\n";
    return 0;
  }
  // Why jobs wait that the scheduler was not asked about: a stopped queue.
  if (std::any_of(jobs.begin(), jobs.end(), [](const Json& j) { return j.value("state", "") == "SCHED"; })) {
    auto q = (*s)->client->call("job-manager.queue-status", Json::object());
    if (q.ok() && (*q)["sched"].is_object() && !(*q)["sched"].value("started", true)) {
      for (auto& j : jobs) {
        if (j.value("state", "") == "SCHED") j["queue_stopped"] = (*q)["sched"].value("reason", "");
      }
    }
  }
  double now = (*s)->clock->wall();
  std::string out;
  if (!o.no_header) {
    auto h = render(fmt, Json::object(), now, true);
    if (!h.ok()) return fail("jobs", h.error(), kExitUsage);
    out += *h + "\n";
  }
  for (auto& j : jobs) {
    auto line = render(fmt, j, now, false);
    if (!line.ok()) return fail("jobs", line.error(), kExitUsage);
    out += *line + "\n";
  }
  std::cout << out;
  return 0;
}

struct CancelOpts {
  std::vector<std::string> ids;
  bool all = false;
  std::string note;
};

int run_cancel(const CancelOpts& o) {
  if (o.ids.empty() && !o.all) return fail("cancel", "give job ids, or --all", kExitUsage);
  if (!o.ids.empty() && o.all) return fail("cancel", "give job ids or --all, not both", kExitUsage);
  // Every good id is canceled; each bad one is reported on its own line
  // and makes the exit status 1.
  int rc = 0;
  Json ids = Json::array();
  for (const auto& a : o.ids) {
    auto id = job_arg(a);
    if (!id.ok()) {
      rc = fail("cancel", id.error());
      continue;
    }
    ids.push_back(id->value());
  }
  if (!o.all && ids.empty()) return rc;
  auto s = connect_session();
  if (!s.ok()) return fail("cancel", s.error());
  Json req{{"note", o.note}};
  if (o.all) {
    req["all"] = true;
  } else {
    req["ids"] = ids;
  }
  auto r = (*s)->client->call("job-manager.cancel", req);
  if (!r.ok()) return fail("cancel", r.error());
  for (auto& e : (*r)["errors"]) rc = fail("cancel", e["error"].get<std::string>());
  if (o.all) std::cerr << "loom cancel: canceled " << (*r)["canceled"].size() << " jobs\n";
  return rc;
}

}  // namespace

void add_jobs_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<JobsOpts>();
  auto* sub = app.add_subcommand("jobs", "List jobs (active ones by default)");
  sub->add_flag("-a,--all", o->all, "Also list inactive jobs");
  sub->add_flag("-A,--all-users", o->all_users, "Jobs of every user (the owner sees all; users only their own)");
  sub->add_option("-f,--filter", o->filter,
                  "States or results, comma separated: pending, running, active, inactive, all, depend, priority, "
                  "sched, run, cleanup, completed, failed, canceled, timeout");
  sub->add_option("-o,--format", o->format, "Output format, e.g. \"{id} {state} {result}\"");
  sub->add_option("-c,--count", o->count, "List at most N jobs")->check(CLI::NonNegativeNumber);
  sub->add_flag("-n,--no-header", o->no_header, "Leave out the header line");
  sub->add_flag("--json", o->json, "Print a JSON array of jobs");
  sub->callback([o, &run] { run = [o] { return run_jobs(*o); }; });
}

void add_cancel_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<CancelOpts>();
  auto* sub = app.add_subcommand("cancel", "Cancel jobs (a fatal exception of type cancel)");
  sub->add_option("ids", o->ids, "Job ids");
  sub->add_flag("--all", o->all, "Cancel all of your active jobs");
  sub->add_option("-m,--message", o->note, "A note for the exception");
  sub->callback([o, &run] { run = [o] { return run_cancel(*o); }; });
}

}  // namespace loom::cli
