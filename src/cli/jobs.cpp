// loom jobs [-a] [-A] [-u USER] [--name NAME] [--since WHEN] [-f STATES]
//           [-o NAME|FORMAT] [-c N] [-n] [--json] [ID...]: list jobs.
// loom cancel ID... | --all [-u USER] [-S STATES] [--name NAME] [--dry-run]
//             [-m NOTE]: cancel jobs.
//
// As `flux jobs`: active jobs of the caller, newest first, in the named
// format "default" (jobs_format.cpp) unless -o says otherwise.
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <sstream>

#include "cli/common.h"
#include "cli/jobs_format.h"
#include "jobspec/jobspec.h"

namespace loom::cli {

namespace {

// State bits as the job manager numbers them (job.h).
constexpr int kNew = 1, kDepend = 2, kPriority = 4, kSched = 8, kRun = 16, kCleanup = 32, kInactive = 64;
constexpr int kPending = kDepend | kPriority | kSched;
constexpr int kActive = kNew | kPending | kRun | kCleanup;

struct JobsOpts {
  bool all = false;
  bool all_users = false;
  std::string user;
  std::string name;
  std::string since;
  std::string filter;
  std::string format;
  bool no_header = false;
  bool json = false;
  int count = 0;
  std::vector<std::string> ids;
};

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

int state_bit(const std::string& state) {
  static const std::map<std::string, int> kBits = {{"NEW", kNew},          {"DEPEND", kDepend}, {"PRIORITY", kPriority},
                                                   {"SCHED", kSched},      {"RUN", kRun},       {"CLEANUP", kCleanup},
                                                   {"INACTIVE", kInactive}};
  auto it = kBits.find(state);
  return it == kBits.end() ? 0 : it->second;
}

// `-o NAME|FORMAT`: a named format, or a format when it holds a "{".
Result<std::string> format_text(const std::string& arg) {
  std::string name = arg;
  if (name.empty()) {
    const char* env = std::getenv("LOOM_JOBS_FORMAT_DEFAULT");
    name = env && *env ? env : "default";
  }
  if (name.find('{') != std::string::npos) return name;
  for (const auto& f : named_formats()) {
    if (name == f.name) return std::string(f.format);
  }
  return Error{EINVAL, "no format named \"" + name + "\" (loom jobs --format=help lists them)"};
}

int print_format_help() {
  std::cout << "loom jobs output formats (-o NAME):\n\n";
  for (const auto& f : named_formats()) {
    char line[64];
    std::snprintf(line, sizeof line, "  %-12s", f.name);
    std::cout << line << f.description << "\n";
  }
  std::cout << "\nFields for -o FORMAT, e.g. -o \"{id:>12} {name:<10.10+} {t_submit!D} {runtime!F:>8h}\":\n"
               "  id id.f58 id.f58plain id.dec id.hex id.dothex id.kvs userid username urgency priority\n"
               "  dependencies status status_abbrev name queue ntasks ncores duration nnodes ranks nodelist\n"
               "  state state_single result result_abbrev success waitstatus returncode exception.occurred\n"
               "  exception.severity exception.type exception.note t_submit t_depend t_run t_cleanup\n"
               "  t_inactive runtime expiration t_remaining contextual_time contextual_info inactive_reason\n"
               "  annotations annotations.KEY... sched.KEY... user.KEY... (and loom's user, st, info)\n"
               "Conversions: !D (date and time) !d:STRFTIME[::SPEC] !F (duration) !H (h:mm:ss) !P (percent)\n"
               "Suffixes: h (a hyphen for an empty value), + (mark a cut value); ?:{field} drops an empty column\n";
  return 0;
}

// `-u USER`: a name or a uid; -1 for "all".
Result<int64_t> user_arg(const std::string& u) {
  if (u == "all") return int64_t{-1};
  if (!u.empty() && u.find_first_not_of("0123456789") == std::string::npos && u.size() < 11) {
    int64_t uid = std::stoll(u);
    if (uid <= UINT32_MAX) return uid;
  }
  struct passwd pw {};
  struct passwd* res = nullptr;
  char buf[4096];
  if (::getpwnam_r(u.c_str(), &pw, buf, sizeof buf, &res) == 0 && res) return static_cast<int64_t>(pw.pw_uid);
  return Error{EINVAL, "--user: no user \"" + u + "\""};
}

// Midnight, local time, `days_ago` days before `now`.
double local_midnight(double now, int days_ago) {
  std::time_t t = static_cast<std::time_t>(now);
  struct tm tm {};
  ::localtime_r(&t, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_mday -= days_ago;
  tm.tm_isdst = -1;
  return static_cast<double>(std::mktime(&tm));
}

// `--since WHEN`: "-FSD" (that long ago: -6h, -1d), now, today, yesterday,
// seconds since the epoch, or a local date and time: 2026-06-21,
// "2026-06-21 06:00", 2026-06-21T06:00:00, 06:00 (today).
Result<double> since_arg(const std::string& w, double now) {
  const Error bad{EINVAL, "--since: cannot read \"" + w +
                              "\" (-6h, -1d, today, yesterday, 2026-06-21, \"2026-06-21 06:00\", 06:00 or seconds "
                              "since the epoch)"};
  double t = 0;
  if (w.starts_with("-")) {
    auto d = parse_fsd(w.substr(1));
    if (!d.ok() || std::isinf(*d)) return bad;
    t = now - *d;
  } else if (w == "now") {
    t = now;
  } else if (w == "today") {
    t = local_midnight(now, 0);
  } else if (w == "yesterday") {
    t = local_midnight(now, 1);
  } else if (!w.empty() && w.find_first_not_of("0123456789.") == std::string::npos) {
    char* end = nullptr;
    t = std::strtod(w.c_str(), &end);
    if (*end) return bad;
  } else {
    std::time_t base = static_cast<std::time_t>(now);
    bool parsed = false;
    for (const char* form : {"%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d",
                             "%H:%M:%S", "%H:%M"}) {
      struct tm tm {};
      ::localtime_r(&base, &tm);  // the date of today for the time-only forms
      tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
      const char* rest = ::strptime(w.c_str(), form, &tm);
      if (!rest || *rest) continue;
      tm.tm_isdst = -1;
      t = static_cast<double>(std::mktime(&tm));
      parsed = true;
      break;
    }
    if (!parsed) return bad;
  }
  if (t > now + 1) return Error{EINVAL, "--since: " + w + " is in the future"};
  return t;
}

int run_jobs(const JobsOpts& o) {
  if (o.format == "help") return print_format_help();
  auto text = format_text(o.format);
  if (!text.ok()) return fail("jobs", text.error(), kExitUsage);
  auto format = JobsFormat::parse(*text);
  if (!format.ok()) return fail("jobs", "bad format: " + format.error().text, kExitUsage);

  // Which jobs: the states, results and ids asked for.
  Json ids = Json::array();
  for (const auto& a : o.ids) {
    auto id = job_arg(a);
    if (!id.ok()) return fail("jobs", id.error(), kExitUsage);
    ids.push_back(id->value());
  }
  // Jobs named by id are listed whatever their state, unless -f says.
  int mask = o.all || !o.since.empty() || !ids.empty() ? kActive | kInactive : kActive;
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
  int64_t userid = static_cast<int64_t>(::getuid());
  if (const char* u = std::getenv("LOOM_HANDLE_USERID"); u && *u) userid = std::atoll(u);
  if (!o.user.empty() && o.all_users) return fail("jobs", "give -u or -A, not both", kExitUsage);
  if (o.all_users || !ids.empty()) userid = -1;  // ids name the jobs; the service keeps users to their own
  if (!o.user.empty()) {
    auto u = user_arg(o.user);
    if (!u.ok()) return fail("jobs", u.error(), kExitUsage);
    userid = *u;
  }

  auto s = connect_session();
  if (!s.ok()) return fail("jobs", s.error());
  double now = (*s)->clock->wall();
  double since = 0;
  if (!o.since.empty()) {
    auto t = since_arg(o.since, now);
    if (!t.ok()) return fail("jobs", t.error(), kExitUsage);
    since = *t;
  }
  // Jobs named by id are asked for in every state, so that one -f leaves
  // out is told from one that does not exist.
  Json req{{"states", ids.empty() ? mask : kActive | kInactive}};
  if (userid >= 0) req["userid"] = userid;
  if (!ids.empty()) req["ids"] = ids;
  // -c N: when nothing below would leave out a job the job manager
  // lists, it is asked for the newest N only (`limit`), so that only N
  // cross the wire and the same N are shown as when all were fetched. It
  // filters by state (the mask, when no ids are named) and by user as
  // the loop below does; where it ignores the user (a user who asks for
  // another's jobs is given their own), the loop drops every job, limited
  // or not. A name, a result, --since and ids (asked for in every state)
  // are filters of the loop alone, which the newest N may not pass.
  bool by_result = !results.empty() && std::find(results.begin(), results.end(), "*") == results.end();
  if (o.count > 0 && ids.empty() && o.name.empty() && !by_result && since <= 0) req["limit"] = o.count;
  auto r = list_jobs(*(*s)->client, req);
  if (!r.ok()) return fail("jobs", r.error());
  std::vector<Json> jobs;
  for (auto& j : *r) {
    if (!(state_bit(j.value("state", "")) & mask)) continue;
    bool inactive = j.value("state", "") == "INACTIVE";
    if (by_result && inactive && std::find(results.begin(), results.end(), j.value("result", "")) == results.end()) {
      continue;
    }
    // A user who is not the owner is given their own jobs whatever -u says.
    if (userid >= 0 && j.value("userid", int64_t{-1}) != userid) continue;
    if (!o.name.empty() && j.value("name", "") != o.name) continue;
    if (since > 0 && inactive && j.value("t_inactive", 0.0) < since) continue;
    jobs.push_back(j);
    if (o.count > 0 && static_cast<int>(jobs.size()) >= o.count) break;
  }
  // Ids asked for and not listed: unknown, or another user's.
  int rc = 0;
  for (const auto& id : ids) {
    uint64_t want = id.get<uint64_t>();
    bool found = std::any_of(r->begin(), r->end(), [&](const Json& j) { return j.value("id", uint64_t{0}) == want; });
    if (!found) rc = fail("jobs", "unknown job " + encode_f58(JobId{want}));
  }
  if (o.json) {
    Json arr = Json::array();
    for (auto& j : jobs) arr.push_back(j);
    std::cout << dump_json(arr) << "\n";
    return rc;
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
  JobsFormat shown = format->without_empty(jobs, now);
  std::string out;
  if (!o.no_header) out += shown.header() + "\n";
  for (auto& j : jobs) {
    auto line = shown.render(j, now);
    if (!line.ok()) return fail("jobs", "bad format: " + line.error().text, kExitUsage);
    out += *line + "\n";
  }
  std::cout << out;
  return rc;
}

struct CancelOpts {
  std::vector<std::string> ids;
  bool all = false;
  std::string user;
  std::string states;
  std::string name;
  bool dry_run = false;
  std::string note;
};

// The filters of `loom cancel --all` into the request. The job manager
// applies them in the same turn as the cancel, so that what is canceled
// is what matched then (docs/protocols/jobs.md).
Status cancel_filters(const CancelOpts& o, Json& req) {
  req["all"] = true;
  if (!o.user.empty()) {
    auto u = user_arg(o.user);
    if (!u.ok()) return Error{EINVAL, "-u" + u.error().text.substr(std::string("--user").size())};
    req["userid"] = *u;
  }
  if (!o.states.empty()) {
    auto m = parse_filter(o.states);
    if (!m.ok() || (*m & kInactive)) {
      return Error{EINVAL, "-S: \"" + o.states +
                               "\" is not a list of active states (pending, running, active, new, depend, priority, "
                               "sched, run, cleanup)"};
    }
    req["states"] = *m;
  }
  if (!o.name.empty()) req["name"] = o.name;
  if (o.dry_run) req["dry_run"] = true;
  return {};
}

int run_cancel(const CancelOpts& o) {
  if (o.ids.empty() && !o.all) return fail("cancel", "give job ids, or --all", kExitUsage);
  if (!o.ids.empty() && o.all) return fail("cancel", "give job ids or --all, not both", kExitUsage);
  if (!o.all && (!o.user.empty() || !o.states.empty() || !o.name.empty() || o.dry_run)) {
    return fail("cancel", "-u, -S, --name and --dry-run go with --all", kExitUsage);
  }
  Json req{{"note", o.note}};
  if (o.all) {
    if (auto st = cancel_filters(o, req); !st) return fail("cancel", st.error(), kExitUsage);
  }
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
  if (!o.all) req["ids"] = ids;
  auto s = connect_session();
  if (!s.ok()) return fail("cancel", s.error());
  auto r = (*s)->client->call("job-manager.cancel", req);
  if (!r.ok()) return fail("cancel", r.error());
  if (o.dry_run) {
    std::string out;
    for (auto& id : (*r)["would_cancel"]) out += encode_f58(JobId{id.get<uint64_t>()}) + "\n";
    std::cout << out << std::flush;
    std::cerr << "loom cancel: would cancel " << (*r)["would_cancel"].size() << " jobs\n";
    return 0;
  }
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
  sub->add_option("-u,--user", o->user, "Jobs of this user: a name, a uid, or all")->type_name("USER");
  sub->add_option("--name", o->name, "Only jobs of this name")->type_name("NAME");
  sub->add_option("--since", o->since,
                  "Active jobs and those that ended since WHEN: -6h, -1d, today, yesterday, 2026-06-21, "
                  "\"2026-06-21 06:00\", 06:00, or epoch seconds (implies -a without -f)")
      ->type_name("WHEN");
  sub->add_option("-f,--filter", o->filter,
                  "States or results, comma separated: pending, running, active, inactive, all, depend, priority, "
                  "sched, run, cleanup, completed, failed, canceled, timeout");
  sub->add_option("-o,--format", o->format,
                  "A named format (default, long, deps, endreason) or a format as flux jobs takes it, e.g. "
                  "\"{id.f58:>12} {name:<10.10+} {t_submit!D} {runtime!F:>8h}\"; help lists formats and fields")
      ->type_name("NAME|FORMAT");
  sub->add_option("-c,--count", o->count, "List at most N jobs")->check(CLI::NonNegativeNumber);
  sub->add_flag("-n,--no-header", o->no_header, "Leave out the header line");
  sub->add_flag("--json", o->json, "Print a JSON array of jobs");
  sub->add_option("ids", o->ids, "List only these jobs (any state unless -f says)")->type_name("ID");
  sub->callback([o, &run] { run = [o] { return run_jobs(*o); }; });
}

void add_cancel_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<CancelOpts>();
  auto* sub = app.add_subcommand("cancel", "Cancel jobs (a fatal exception of type cancel)");
  sub->add_option("ids", o->ids, "Job ids");
  sub->add_flag("--all", o->all, "Cancel every active job that the filters match (yours by default)");
  sub->add_option("-u,--user", o->user,
                  "With --all: jobs of this user, a name or a uid; all for every user (the "
                  "instance owner only)")
      ->type_name("USER");
  sub->add_option("-S,--states", o->states,
                  "With --all: only jobs in these states, comma separated: pending, running, active, new, depend, "
                  "priority, sched, run, cleanup")
      ->type_name("STATES");
  sub->add_option("--name", o->name, "With --all: only jobs of this name")->type_name("NAME");
  sub->add_flag("--dry-run", o->dry_run, "With --all: print the jobs that would be canceled, cancel none");
  sub->add_option("-m,--message", o->note, "A note for the exception");
  sub->callback([o, &run] { run = [o] { return run_cancel(*o); }; });
}

}  // namespace loom::cli
