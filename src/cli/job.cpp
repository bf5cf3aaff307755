// loom job eventlog [--json] [-f] [--path=eventlog|exec|output] ID
// loom job wait-event [-t SECS] [--json] [-m KEY=VALUE] ID EVENT
// loom job info ID [jobspec|R|eventlog]
// loom job urgency ID N|hold|default|expedite
// loom job wait ID | --all
// loom job status [-v] [-j] [-e N] ID...
// loom job kill [-s SIG] ID
// loom job attach [-l] ID
// loom job purge [--num-limit N] [--age-limit T] [ID...]
// Users read their own jobs through job-info, never the raw KVS.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "cli/attach.h"
#include "cli/common.h"
#include "cli/job_info.h"
#include "cli/progress.h"
#include "jobspec/jobspec.h"
#include "kvs/layout.h"

namespace loom::cli {

namespace {

struct JobOpts {
  std::string id;
  std::string event;
  std::string key;
  std::string value;
  std::vector<std::string> ids;
  std::vector<std::string> match;
  std::string path = "eventlog";
  bool json = false;
  bool follow = false;
  bool label = false;
  bool send_stdin = false;  // job attach --stdin
  double timeout = -1;
  bool verbose = false;
  bool all = false;  // job wait --all
  int exception_exit_code = 1;
  int num_limit = -1;
  std::string age_limit;
};

// Streams job ID's events to `on_event` (return true to stop); the exit
// status of `cmd`.
int stream_eventlog(const std::string& cmd, const JobOpts& o, bool follow,
                    const std::function<bool(const Json& raw, const EventEntry& e)>& on_event) {
  auto id = job_arg(o.id);
  if (!id.ok()) return fail(cmd, id.error());
  auto s = connect_session();
  if (!s.ok()) return fail(cmd, s.error());
  return stream_until_end(**s, cmd, "job-info.eventlog", Json{{"id", id->value()}, {"follow", follow}}, o.timeout,
                          [&](const Json& j) {
                            if (!j.contains("event")) return fail(cmd, "unexpected response from job-info.eventlog");
                            auto e = parse_event(dump_json(j["event"]));
                            if (!e.ok()) return -1;
                            return on_event(j["event"], *e) ? 0 : -1;
                          });
}

// `--path=exec|output`: the job's exec eventlog (exec.eventlog) or output
// eventlog (output), from the copy linked into job.ID.guest once the job is
// done, else from the job's namespace as it is written; -f follows the job
// to its end.
int run_guest_eventlog(const JobOpts& o) {
  const std::string cmd = "job eventlog";
  auto id = job_arg(o.id);
  if (!id.ok()) return fail(cmd, id.error());
  auto s = connect_session();
  if (!s.ok()) return fail(cmd, s.error());
  auto print = [&](const std::string& line) {
    auto e = parse_event(line);
    if (!e.ok()) return;
    std::cout << (o.json ? line : format_event_human(*e)) << "\n" << std::flush;
  };
  std::string key = o.path == "exec" ? kvs_key::kExecEventlog : kvs_key::kOutput;
  if (o.follow) {
    AttachOpts ao;
    ao.cmd = cmd;
    ao.key = key;
    ao.on_line = print;
    return attach_job(**s, *id, ao);
  }
  // Linked with the job once it is done, else in the job's namespace.
  Client& c = *(*s)->client;
  auto text = lookup_guest(c, *id, key);
  if (!text.ok() && text.error().code == ENOENT) {
    // Not linked yet: the job's namespace.
    auto r = c.call("kvs.lookup", Json{{"namespace", kvs_key::guest_namespace(*id)}, {"key", key}});
    if (r.ok() && (*r)["value"].is_string()) {
      text = (*r)["value"].get<std::string>();
    } else if (!r.ok() && r.error().code != ENOENT) {
      return fail(cmd, r.error());
    } else {
      text = lookup_guest(c, *id, key);  // the job may have ended in between
      if (!text.ok() && text.error().code == ENOENT) {
        // No such job, or no such eventlog: job-info tells which.
        auto known = c.call("job-info.lookup", Json{{"id", id->value()}, {"keys", {kvs_key::kEventlog}}});
        if (!known.ok()) return fail(cmd, known.error());
        auto log = (*known)[kvs_key::kEventlog].is_string()
                       ? parse_eventlog((*known)[kvs_key::kEventlog].get<std::string>())
                       : Result<std::vector<EventEntry>>(Error{EPROTO, ""});
        bool ended =
            log.ok() && std::any_of(log->begin(), log->end(), [](const EventEntry& e) { return e.name == "clean"; });
        return fail(cmd, "job " + o.id + " has no " + o.path + " eventlog" + (ended ? "" : " yet"));
      }
    }
  }
  if (!text.ok()) return fail(cmd, text.error());
  LineSplitter lines;
  for (auto& line : lines.feed(*text)) print(line);
  return 0;
}

int run_eventlog(const JobOpts& o) {
  if (o.path != "eventlog") return run_guest_eventlog(o);
  return stream_eventlog("job eventlog", o, o.follow, [&](const Json& raw, const EventEntry& e) {
    std::cout << (o.json ? dump_json(raw) : format_event_human(e)) << "\n" << std::flush;
    return false;
  });
}

int run_wait_event(const JobOpts& o) {
  auto match = EventMatch::parse(o.event, o.match);
  if (!match.ok()) return fail("job wait-event", match.error(), kExitUsage);
  bool found = false;
  int rc = stream_eventlog("job wait-event", o, true, [&](const Json& raw, const EventEntry& e) {
    if (!(*match)(e)) return false;
    std::cout << (o.json ? dump_json(raw) : format_event_human(e)) << "\n";
    found = true;
    return true;
  });
  if (rc == 0 && !found) return fail("job wait-event", "job " + o.id + " ended without a " + o.event + " event");
  return rc;
}

int run_info(const JobOpts& o) {
  auto id = job_arg(o.id);
  if (!id.ok()) return fail("job info", id.error());
  if (o.key.empty()) {
    auto s = connect_session();
    if (!s.ok()) return fail("job info", s.error());
    return show_job_summary(**s, *id);
  }
  if (o.key != kvs_key::kJobspec && o.key != kvs_key::kR && o.key != kvs_key::kEventlog) {
    return fail("job info", "KEY is jobspec, R or eventlog, not " + o.key, kExitUsage);
  }
  auto s = connect_session();
  if (!s.ok()) return fail("job info", s.error());
  auto r = (*s)->client->call("job-info.lookup", Json{{"id", id->value()}, {"keys", {o.key}}});
  if (!r.ok()) return fail("job info", r.error());
  std::string v = (*r)[o.key].get<std::string>();
  std::cout << v << (v.empty() || v.back() != '\n' ? "\n" : "");
  return 0;
}

int run_urgency(const JobOpts& o) {
  auto id = job_arg(o.id);
  if (!id.ok()) return fail("job urgency", id.error());
  auto u = urgency_arg(o.value);
  if (!u.ok()) return fail("job urgency", u.error(), kExitUsage);
  auto s = connect_session();
  if (!s.ok()) return fail("job urgency", s.error());
  auto r = (*s)->client->call("job-manager.urgency", Json{{"id", id->value()}, {"urgency", *u}});
  if (!r.ok()) return fail("job urgency", r.error());
  return 0;
}

// A signal as a number, a name (TERM, SIGTERM) or empty for SIGTERM.
Result<int> signal_arg(const std::string& text) {
  if (text.empty()) return SIGTERM;
  std::string name = text.starts_with("SIG") ? text.substr(3) : text;
  static const std::pair<const char*, int> kNames[] = {
      {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL}, {"USR1", SIGUSR1},
      {"USR2", SIGUSR2}, {"ALRM", SIGALRM}, {"TERM", SIGTERM}, {"CONT", SIGCONT}, {"STOP", SIGSTOP}};
  for (const auto& [n, v] : kNames) {
    if (name == n) return v;
  }
  char* end = nullptr;
  long v = std::strtol(text.c_str(), &end, 10);
  if (*end || v < 1 || v > 64) return Error{EINVAL, "unknown signal \"" + text + "\""};
  return static_cast<int>(v);
}

int run_kill(const JobOpts& o) {
  auto id = job_arg(o.id);
  if (!id.ok()) return fail("job kill", id.error());
  auto sig = signal_arg(o.value);
  if (!sig.ok()) return fail("job kill", sig.error(), kExitUsage);
  auto s = connect_session();
  if (!s.ok()) return fail("job kill", s.error());
  auto r = (*s)->client->call("job-manager.kill", Json{{"id", id->value()}, {"signal", *sig}});
  if (!r.ok()) return fail("job kill", r.error());
  return 0;
}

int run_attach(const JobOpts& o) {
  auto id = job_arg(o.id);
  if (!id.ok()) return fail("job attach", id.error());
  auto s = connect_session();
  if (!s.ok()) return fail("job attach", s.error());
  AttachOpts a;
  a.label = o.label;
  a.forward_stdin = o.send_stdin;
  return attach_job(**s, *id, a);
}

// One line for a job that did not succeed, as job-manager.wait tells it.
std::string why_not(const Json& r) {
  std::string why = r.value("result", "FAILED");
  if (r.contains("exception")) {
    std::string note = r["exception"].value("note", "");
    why += ": " + r["exception"].value("type", "") + (note.empty() ? "" : " (" + note + ")");
  } else if (r.contains("status")) {
    why += ": status " + std::to_string(r["status"].get<int>());
  }
  return why;
}

// --all: every active job of the caller at the time of asking, waited on
// together; each failure on its own line; exit 1 if any failed. On a
// terminal, a progress line: N of M done (progress.h).
int run_wait_all() {
  const std::string cmd = "job wait";
  auto s = connect_session();
  if (!s.ok()) return fail(cmd, s.error(), 2);
  Session& sess = **s;
  int64_t userid = static_cast<int64_t>(::getuid());
  if (const char* u = std::getenv("LOOM_HANDLE_USERID"); u && *u) userid = std::atoll(u);
  constexpr int kActiveStates = 1 | 2 | 4 | 8 | 16 | 32;  // NEW to CLEANUP (job.h)
  auto l = list_jobs(*sess.client, Json{{"userid", userid}, {"states", kActiveStates}});
  if (!l.ok()) return fail(cmd, l.error(), 2);
  std::vector<JobId> ids;
  for (auto& j : *l) ids.push_back(JobId{j["id"].get<uint64_t>()});
  ProgressLine progress("wait");
  size_t done = 0;
  int rc = 0;
  progress.show(done, ids.size());
  for (JobId id : ids) {
    sess.handle().rpc("job-manager.wait", Json{{"id", id.value()}}, {}, [&, id](const Message& m) {
      ++done;
      if (m.errnum) {
        // ENOENT: purged meanwhile, its result is lost.
        progress.clear();
        rc = std::max(rc, fail(cmd, encode_f58(id) + ": " + error_text(m)));
      } else if (auto r = parse_json(m.payload); r.ok() && !r->value("success", false)) {
        progress.clear();
        rc = std::max(rc, fail(cmd, encode_f58(id) + " " + why_not(*r)));
      }
      progress.show(done, ids.size());
    });
  }
  while (done < ids.size() && sess.client->is_open()) sess.io.run_one();
  if (done < ids.size()) {
    progress.clear();
    return fail(cmd, sess.client->lost_text(), 2);
  }
  return rc;
}

int run_wait(const JobOpts& o) {
  if (o.all && !o.id.empty()) return fail("job wait", "give a job id or --all, not both", kExitUsage);
  if (o.all) return run_wait_all();
  if (o.id.empty()) return fail("job wait", "give a job id, or --all", kExitUsage);
  auto id = job_arg(o.id);
  if (!id.ok()) return fail("job wait", id.error(), 2);
  auto s = connect_session();
  if (!s.ok()) return fail("job wait", s.error(), 2);
  auto r = (*s)->client->call("job-manager.wait", Json{{"id", id->value()}});
  if (!r.ok()) return fail("job wait", r.error(), 2);
  if (r->value("success", false)) return 0;
  return fail("job wait", encode_f58(*id) + " " + why_not(*r), 1);
}

// As `flux job status`: waits for every job to end and exits with the
// largest of their exit codes: a job's tasks' largest (128+N for a signal
// N), or the exception exit code (-e, 1 by default) for a job ended by a
// fatal exception (canceled, timed out, ...).
int run_status(const JobOpts& o) {
  const std::string cmd = "job status";
  std::vector<JobId> ids;
  for (const auto& a : o.ids) {
    auto id = job_arg(a);
    if (!id.ok()) return fail(cmd, id.error(), kExitUsage);
    ids.push_back(*id);
  }
  auto s = connect_session();
  if (!s.ok()) return fail(cmd, s.error());
  int worst = 0;
  for (JobId id : ids) {
    auto r = (*s)->client->call("job-manager.wait", Json{{"id", id.value()}});
    if (!r.ok()) return fail(cmd, r.error());
    int code = 0;
    std::string said;
    if (r->contains("exception")) {
      code = o.exception_exit_code;
      std::string note = (*r)["exception"].value("note", "");
      said = "exception type=" + (*r)["exception"].value("type", "") + (note.empty() ? "" : ": " + note);
    } else if (r->contains("status") && WIFSIGNALED((*r)["status"].get<int>())) {
      int sig = WTERMSIG((*r)["status"].get<int>());
      code = 128 + sig;
      said = "killed by signal " + std::to_string(sig) + " (" + ::strsignal(sig) + ")";
    } else if (r->contains("status")) {
      code = WEXITSTATUS((*r)["status"].get<int>());
      said = "exited with exit code " + std::to_string(code);
    } else {
      code = r->value("success", false) ? 0 : 1;  // ended without running
      said = "ended " + r->value("result", std::string("FAILED"));
    }
    if (o.json) {
      std::cout << dump_json(*r) << "\n";
    } else if (o.verbose) {
      std::cout << encode_f58(id) << ": " << said << "\n";
    }
    worst = std::max(worst, code);
  }
  return worst;
}

int run_purge(const JobOpts& o) {
  if (!o.ids.empty() && (o.num_limit >= 0 || !o.age_limit.empty())) {
    return fail("job purge", "give job ids, or --num-limit and --age-limit, not both", kExitUsage);
  }
  // Each id goes in a request of its own: a bad one is reported on its own
  // line (exit status 1) and the others are purged all the same.
  int rc = 0;
  std::vector<Json> reqs;
  for (const auto& a : o.ids) {
    auto id = job_arg(a);
    if (!id.ok()) {
      rc = fail("job purge", id.error());
      continue;
    }
    reqs.push_back(Json{{"ids", {id->value()}}});
  }
  if (o.ids.empty()) {
    Json req = Json::object();
    if (o.num_limit >= 0) req["num_limit"] = o.num_limit;
    if (!o.age_limit.empty()) {
      auto d = parse_fsd(o.age_limit);
      if (!d.ok()) return fail("job purge", "--age-limit: " + d.error().text, kExitUsage);
      req["age_limit"] = *d;
    }
    if (req.empty()) return fail("job purge", "give job ids, --num-limit or --age-limit", kExitUsage);
    reqs.push_back(std::move(req));
  }
  if (reqs.empty()) return rc;
  auto s = connect_session();
  if (!s.ok()) return fail("job purge", s.error());
  size_t purged = 0;
  for (const auto& req : reqs) {
    auto r = (*s)->client->call("job-manager.purge", req);
    if (!r.ok()) {
      rc = fail("job purge", r.error());
      continue;
    }
    purged += (*r)["purged"].get<size_t>();
  }
  std::cerr << "loom job purge: purged " << purged << " inactive jobs\n";
  return rc;
}

}  // namespace

void add_job_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<JobOpts>();
  auto* job = app.add_subcommand("job", "Look at and act on one job");
  job->require_subcommand(1);

  auto* ev = job->add_subcommand("eventlog", "Print a job's eventlog");
  ev->add_flag("--json", o->json, "Print each event as its JSON line");
  ev->add_flag("-f,--follow", o->follow, "Keep printing events until the job is clean");
  ev->add_option("-p,--path", o->path,
                 "Which eventlog: eventlog (the job's), exec (its shells: start, exit, epilog, complete) or output")
      ->check(CLI::IsMember({"eventlog", "exec", "output"}));
  ev->add_option("id", o->id, "Job id")->required();
  ev->callback([o, &run] { run = [o] { return run_eventlog(*o); }; });

  auto* we = job->add_subcommand("wait-event", "Wait until EVENT is in a job's eventlog, then print it");
  we->add_option("-t,--timeout", o->timeout, "Give up after SECS seconds")->check(CLI::NonNegativeNumber);
  we->add_flag("--json", o->json, "Print the event as its JSON line");
  we->add_option("-m,--match-context", o->match, "Also require context KEY=VALUE (repeatable)")
      ->allow_extra_args(false);
  we->add_option("id", o->id, "Job id")->required();
  we->add_option("event", o->event, "Event name")->required();
  we->callback([o, &run] { run = [o] { return run_wait_event(*o); }; });

  auto* in = job->add_subcommand("info", "A page about a job; or its jobspec, R or eventlog as stored");
  in->add_option("id", o->id, "Job id")->required();
  in->add_option("key", o->key, "jobspec, R or eventlog (without: the page)");
  in->callback([o, &run] { run = [o] { return run_info(*o); }; });

  auto* ur = job->add_subcommand("urgency", "Change a pending job's urgency");
  ur->add_option("id", o->id, "Job id")->required();
  ur->add_option("urgency", o->value, "0-31, hold (0), default (16) or expedite (31)")->required();
  ur->callback([o, &run] { run = [o] { return run_urgency(*o); }; });

  auto* wa = job->add_subcommand("wait", "Wait for a job to end: exit 0 on success, 1 on failure, 2 if it cannot");
  wa->add_option("id", o->id, "Job id");
  wa->add_flag("--all", o->all, "Wait for all of your active jobs; exit 1 if any failed");
  wa->callback([o, &run] { run = [o] { return run_wait(*o); }; });

  auto* st = job->add_subcommand("status", "Wait for jobs to end; exit with the largest of their exit codes");
  st->add_flag("-v,--verbose", o->verbose, "Print a line per job: how it ended");
  st->add_flag("-j,--json", o->json, "Print each job as job-manager.wait describes it, one JSON line per job");
  st->add_option("-e,--exception-exit-code", o->exception_exit_code,
                 "The exit code of a job ended by an exception, e.g. canceled (default 1)")
      ->check(CLI::Range(0, 255));
  st->add_option("ids", o->ids, "Job ids")->required();
  st->callback([o, &run] { run = [o] { return run_status(*o); }; });

  auto* at = job->add_subcommand("attach", "Print a job's output as it is written; exit as the job did");
  at->add_flag("-l,--label-io", o->label, "Put the task rank before each line of output");
  at->add_flag("-i,--stdin", o->send_stdin,
               "Send our stdin to the job's tasks that read loom's (--input of run and submit), then its end");
  at->add_option("id", o->id, "Job id")->required();
  at->callback([o, &run] { run = [o] { return run_attach(*o); }; });

  auto* ki = job->add_subcommand("kill", "Send a signal to a running job's tasks");
  ki->add_option("-s,--signal", o->value, "Signal number or name (default TERM)");
  ki->add_option("id", o->id, "Job id")->required();
  ki->callback([o, &run] { run = [o] { return run_kill(*o); }; });

  auto* pu = job->add_subcommand("purge", "Forget inactive jobs (instance owner)");
  pu->add_option("--num-limit", o->num_limit, "Keep only the N most recent inactive jobs")
      ->check(CLI::NonNegativeNumber);
  pu->add_option("--age-limit", o->age_limit, "Purge jobs inactive for longer than this (e.g. 1h, 7d)");
  pu->add_option("ids", o->ids, "Inactive job ids to purge");
  pu->callback([o, &run] { run = [o] { return run_purge(*o); }; });
}

}  // namespace loom::cli
