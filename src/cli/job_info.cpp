// loom job info ID (without a KEY): one page about a job, for people.
// What the job manager says of it now (job-manager.list with its id), its
// jobspec and eventlog, and R once it was allocated (job-info.lookup):
// its state, times as local times, what it asked for and was given, how
// it ended and every exception on the way.
#include "cli/job_info.h"

#include <pwd.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>

#include "base/wait_status.h"
#include "eventlog/eventlog.h"
#include "jobspec/jobspec.h"
#include "kvs/layout.h"
#include "rset/rset.h"

namespace loom::cli {

namespace {

std::string shown_time(double t) { return local_time(t, "%Y-%m-%d %H:%M:%S %Z"); }

std::string seconds(double s) {
  char buf[64];
  if (s < 0) s = 0;
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.3fs", s);
  } else {
    long t = std::lround(s);
    if (t >= 86400) {
      std::snprintf(buf, sizeof buf, "%ld-%02ld:%02ld:%02ld", t / 86400, (t / 3600) % 24, (t / 60) % 60, t % 60);
    } else {
      std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    }
  }
  return buf;
}

// "exit code 3", "killed by signal 9 (KILL)", "exit code 0".
std::string how_it_ended(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : "");
  }
  return "exit code " + std::to_string(shell_exit_code(status));
}

// Values are users' words (a name, a command, a note): control
// characters show as '?' (terminal_text).
void line(const std::string& key, const std::string& value) {
  if (value.empty()) return;
  std::printf("%-11s %s\n", key.c_str(), terminal_text(value).c_str());
}

}  // namespace

int show_job_summary(Session& s, JobId id) {
  const std::string cmd = "job info";
  auto listed = s.client->call("job-manager.list", Json{{"ids", {id.value()}}, {"states", 127}});
  if (!listed.ok()) return fail(cmd, listed.error());
  Json j;
  if ((*listed)["jobs"].is_array()) {
    for (const auto& one : (*listed)["jobs"]) {
      if (one.value("id", uint64_t{0}) == id.value()) j = one;
    }
  }
  if (j.is_null()) return fail(cmd, "no job " + encode_f58(id) + " of yours");
  auto texts =
      s.client->call("job-info.lookup", Json{{"id", id.value()}, {"keys", {kvs_key::kEventlog, kvs_key::kJobspec}}});
  if (!texts.ok()) return fail(cmd, texts.error());
  std::optional<ResourceSet> R;
  if (j.contains("ranks")) {
    auto r = s.client->call("job-info.lookup", Json{{"id", id.value()}, {"keys", {kvs_key::kR}}});
    if (r.ok() && (*r)[kvs_key::kR].is_string()) {
      auto parsed = ResourceSet::parse_text((*r)[kvs_key::kR].get<std::string>());
      if (parsed.ok()) R = std::move(*parsed);
    }
  }
  auto spec = parse_jobspec_text((*texts)[kvs_key::kJobspec].get<std::string>());
  auto events = parse_eventlog((*texts)[kvs_key::kEventlog].get<std::string>());

  line("job", encode_f58(id) + " (" + std::to_string(id.value()) + ")");
  line("name", j.value("name", ""));
  uint32_t uid = j.value("userid", 0u);
  std::string who = user_name(uid);
  line("user", (who.empty() ? "" : who + " ") + "(uid " + std::to_string(uid) + ")");
  std::string state = j.value("state", "");
  if (j.contains("result")) state += ", " + j["result"].get<std::string>();
  line("state", state);
  if (spec.ok()) {
    std::string command;
    for (const auto& a : spec->command) command += (command.empty() ? "" : " ") + a;
    line("command", command);
    std::string asked = std::to_string(spec->ntasks) + " task" + (spec->ntasks == 1 ? "" : "s");
    if (spec->nnodes > 0) asked += " on " + std::to_string(spec->nnodes) + " node" + (spec->nnodes == 1 ? "" : "s");
    asked += ", " + std::to_string(spec->cores_per_slot) + " core" + (spec->cores_per_slot == 1 ? "" : "s");
    if (spec->gpus_per_slot > 0) asked += " and " + std::to_string(spec->gpus_per_slot) + " GPUs";
    asked += " per task";
    if (spec->exclusive) asked += ", whole nodes";
    asked += spec->duration > 0 ? ", time limit " + seconds(spec->duration) : ", no time limit";
    line("asked", asked);
    line("cwd", spec->cwd);
  }
  if (R) {
    std::string given;
    for (const auto& [rank, res] : R->ranks()) {
      given += (given.empty() ? "" : "; ") + std::string("rank ") + std::to_string(rank);
      if (!res.hostname.empty()) given += " (" + res.hostname + ")";
      given += " cores " + res.cores.encode();
      if (!res.gpus.empty()) given += " gpus " + res.gpus.encode();
    }
    line("given", given);
  }
  line("submitted", shown_time(j.value("t_submit", 0.0)));
  if (j.contains("t_run")) {
    double t_run = j["t_run"].get<double>();
    line("started", shown_time(t_run) + " (waited " + seconds(t_run - j.value("t_submit", t_run)) + ")");
    double end = j.contains("t_cleanup") ? j["t_cleanup"].get<double>() : s.clock->wall();
    line(j.contains("t_cleanup") ? "ended" : "running",
         (j.contains("t_cleanup") ? shown_time(end) + " (ran " : "for ") + seconds(end - t_run) +
             (j.contains("t_cleanup") ? ")" : ""));
  }
  if (j.contains("status")) line("exit", how_it_ended(j["status"].get<int>()));
  if (events.ok()) {
    for (const auto& e : *events) {
      if (e.name != "exception" || !e.context.is_object()) continue;
      std::string note = e.context.value("note", "");
      int severity = e.context.value("severity", 0);
      line("exception", e.context.value("type", "?") +
                            (severity == 0 ? " (fatal)" : " (severity " + std::to_string(severity) + ")") + " at " +
                            shown_time(e.timestamp) + (note.empty() ? "" : ": " + note));
    }
  }
  int64_t priority = j.value("priority", int64_t{-1});
  line("urgency",
       std::to_string(j.value("urgency", 16)) + (priority >= 0 ? ", priority " + std::to_string(priority) : ""));
  return 0;
}

}  // namespace loom::cli
