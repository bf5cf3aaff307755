// loom submit [-N nodes] [-n tasks] [-c cores/task] [-g gpus/task] [-x]
//             [-t limit] [--urgency U] [--cc IDSET] [--setattr K=V] [--env K=V]
//             CMD...
// Builds a jobspec the way Flux users expect and submits it; prints the id.
// With --cc, one job per id of the set (LOOM_JOB_CC set in each), all in
// batched requests so that thousands of jobs go in at once.
//
// loom run [the same options but --cc] [-l] CMD...
// Submits one job and attaches to it (attach.cpp): our stdin goes to task
// 0 (or the tasks --input names), its output comes as it is written, and
// it exits as a shell would (the tasks' largest exit code, 128+N for a
// task killed by signal N, 1 for a job that failed without a status); the
// exception that ended it goes to stderr.
#include "cli/submit.h"

#include <fnmatch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include "base/quote.h"
#include "cli/attach.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "idset/idset.h"
#include "jobspec/dependencies.h"
#include "jobspec/jobspec.h"

extern char** environ;

namespace loom::cli {

namespace {

// A submit request holds at most this many jobs, and no more bytes of
// them than this unless one job alone is bigger (a jobspec is at most
// 16 MiB, well within a frame): many jobs go in a few requests, none of
// them near the frame limit.
constexpr size_t kSubmitBatch = 4096;
constexpr size_t kSubmitBatchBytes = size_t{8} << 20;
// Requests sent and not yet answered: enough to keep the job manager busy,
// few enough that a million jobs are never all queued at once (the
// connection would give up on a peer that had not read 256 MiB).
constexpr size_t kBatchesInFlight = 4;

// --input: the tasks' stdin (src/shell/input.h). Task ranks ("all", "0",
// "0-3") read what `loom run` (or `loom job attach --stdin`) sends; "none"
// is /dev/null for every task (null: no option); else it names a file that
// every task reads.
Result<Json> input_option(const std::string& arg) {
  if (arg == "none") return Json();
  if (arg == "all") return Json{{"type", "kvs"}, {"tasks", "all"}};
  if (auto set = IdSet::parse(arg); set.ok() && !set->empty()) return Json{{"type", "kvs"}, {"tasks", set->encode()}};
  std::error_code ec;
  auto path = std::filesystem::absolute(arg, ec);
  if (ec || !std::filesystem::is_regular_file(path, ec)) {
    return Error{EINVAL, "--input: \"" + arg + "\" is neither a file nor task ranks (all, 0, 0-3) nor none"};
  }
  return Json{{"type", "file"}, {"path", path.lexically_normal().string()}};
}

// Puts `value` at the dotted `path` under `root` (objects created on the way).
void set_path(Json& root, const std::string& path, Json value) {
  Json* at = &root;
  size_t start = 0;
  for (;;) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (dot == std::string::npos) {
      (*at)[part] = std::move(value);
      return;
    }
    if (!(*at)[part].is_object()) (*at)[part] = Json::object();
    at = &(*at)[part];
    start = dot + 1;
  }
}

// The job's environment from the submitter's (docs/commands.md,
// "Environment"): first every name matching a --env-remove PATTERN or a
// --env=-PATTERN goes (--env=-* leaves nothing), then each --env-file's
// lines are set in order, then each --env NAME=VALUE; a later setting wins.
Result<void> apply_env_rules(const SubmitOpts& o, Json& env) {
  std::vector<std::string> patterns = o.env_remove;
  std::vector<std::string> sets;
  for (const auto& rule : o.env) {
    if (rule.starts_with("-")) {
      if (rule.size() == 1) return Error{EINVAL, "--env=-PATTERN wants a pattern, e.g. --env=-* or --env=-MYX_*"};
      patterns.push_back(rule.substr(1));
    } else {
      sets.push_back(rule);
    }
  }
  for (const auto& pattern : patterns) {
    for (auto it = env.begin(); it != env.end();) {
      if (::fnmatch(pattern.c_str(), it.key().c_str(), 0) == 0) {
        it = env.erase(it);
      } else {
        ++it;
      }
    }
  }
  auto set = [&](const std::string& kv, const std::string& where) -> Result<void> {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return Error{EINVAL, where + " wants NAME=VALUE, got \"" + kv + "\""};
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
    return {};
  };
  for (const auto& file : o.env_file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return Error{ENOENT, "--env-file: cannot read " + file};
    // An environment bigger than this could not be passed to a program
    // anyway (Linux caps a process's arguments and environment at a few
    // MiB); /dev/zero, say, must not eat the memory.
    constexpr size_t kMaxEnvFile = 1 << 20;
    std::string text(kMaxEnvFile + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxEnvFile) return Error{EFBIG, "--env-file " + file + " is over 1 MiB"};
    std::istringstream lines(text);
    std::string line;
    for (int n = 1; std::getline(lines, line); ++n) {
      if (line.empty() || line.find_first_not_of(" \t") == std::string::npos || line[0] == '#') continue;
      if (line.starts_with("export ")) line = line.substr(7);
      auto ok = set(line, "--env-file " + file + " line " + std::to_string(n));
      if (!ok.ok()) return ok.error();
    }
  }
  for (const auto& kv : sets) {
    auto ok = set(kv, "--env");
    if (!ok.ok()) return ok.error();
  }
  return {};
}

// An output file's name with the templates known at submit filled in:
// {{name}} the job's name; {{cc}} stays for run_submit to fill in per copy,
// and {{id}}, {{id.f58}}, {{id.dec}} and {{node}} for the job's shells. Any
// other template is refused, never left as it is.
Result<std::string> expand_output_template(const std::string& path, const std::string& name, bool with_cc) {
  std::string out;
  for (size_t at = 0;;) {
    size_t open = path.find("{{", at);
    if (open == std::string::npos) return out + path.substr(at);
    size_t close = path.find("}}", open + 2);
    if (close == std::string::npos) return Error{EINVAL, "unclosed \"{{\" in \"" + path + "\""};
    std::string key = path.substr(open + 2, close - open - 2);
    out += path.substr(at, open - at);
    if (key == "name") {
      out += name;
    } else if (key == "cc" && !with_cc) {
      return Error{EINVAL, "{{cc}} is the copy's id of --cc, and there is no --cc"};
    } else if (key == "cc" || key == "id" || key == "id.f58" || key == "id.dec" || key == "node") {
      out += "{{" + key + "}}";
    } else {
      return Error{EINVAL, "unknown template {{" + key + "}} (known: {{id}}, {{id.dec}}, {{name}}, {{cc}}, {{node}})"};
    }
    at = close + 2;
  }
}

}  // namespace

Result<Json> make_jobspec(const SubmitOpts& o) {
  JobRequest r;
  r.nodes = o.nodes;
  r.tasks = o.tasks;
  r.cores_per_task = o.cores;
  r.gpus_per_task = o.gpus;
  r.exclusive = o.exclusive;
  r.command = o.command;
  r.name = o.name;
  if (!o.time_limit.empty()) {
    auto d = time_limit_arg(o.time_limit);
    if (!d.ok()) return Error{EINVAL, "-t: " + d.error().text};
    r.duration = *d;
  }
  std::error_code ec;
  r.cwd = o.cwd.empty() ? std::filesystem::current_path(ec).string() : o.cwd;
  // The job sees the submitter's environment, as with Flux and Slurm,
  // changed by --env-remove and --env.
  Json env = Json::object();
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq == std::string::npos || kv.starts_with("LOOM_URI=")) continue;
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  auto rules = apply_env_rules(o, env);
  if (!rules.ok()) return rules.error();
  r.environment = std::move(env);
  auto js = build_jobspec(r);
  if (!js.ok()) return js.error();
  Json& system = (*js)["attributes"]["system"];
  if (!o.script.empty()) {
    // One task, the script, on the first node: the rest is for its steps.
    (*js)["tasks"][0]["count"] = Json{{"total", 1}};
    system["batch"] = Json{{"script", o.script}};
  } else if (const char* within = std::getenv("LOOM_ALLOCATION"); within && *within) {
    auto id = job_arg(within);
    if (!id.ok() || id->value() == 0) {
      return Error{EINVAL, "LOOM_ALLOCATION=" + quote_input(within) +
                               " is not a job id (unset it to submit to the whole instance)"};
    }
    system["allocation"] = id->value();
  }
  // Output to files instead of the job's output eventlog: the shells write
  // there ({{id}} is the job id; {{cc}} is filled in per copy below).
  Json output = Json::object();
  if (!o.output.empty()) output["stdout"] = {{"type", "file"}, {"path", o.output}};
  if (!o.error.empty()) output["stderr"] = {{"type", "file"}, {"path", o.error}};
  if (!output.empty()) (*js)["attributes"]["system"]["shell"]["options"]["output"] = output;
  // (Before --setattr, which may say otherwise.)
  {
    auto in = input_option(o.input);
    if (!in.ok()) return in.error();
    if (!in->is_null()) (*js)["attributes"]["system"]["shell"]["options"]["input"] = std::move(*in);
  }
  for (const auto& kv : o.setattr) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return Error{EINVAL, "--setattr wants KEY=VALUE, got \"" + kv + "\""};
    std::string key = kv.substr(0, eq);
    // A value that parses as JSON is taken as JSON, else as a string.
    auto v = parse_json(kv.substr(eq + 1));
    Json value = v.ok() ? *v : Json(kv.substr(eq + 1));
    if (!key.starts_with("system.") && !key.starts_with("user.")) key = "system." + key;
    set_path((*js)["attributes"], key, std::move(value));
  }
  // --dependency=TYPE:ID[:ID...][,...], repeatable: RFC 26 objects in
  // attributes.system.dependencies (jobspec/dependencies.h).
  for (const auto& arg : o.dependency) {
    auto list = parse_dependency_option(arg);
    if (!list.ok()) return Error{EINVAL, "--dependency: " + list.error().text};
    Json& deps = (*js)["attributes"]["system"]["dependencies"];
    if (deps.is_null()) deps = Json::array();
    if (!deps.is_array()) return Error{EINVAL, "--dependency: attributes.system.dependencies is not a list"};
    for (auto& d : *list) deps.push_back(std::move(d));
  }
  // Check it here too, so that a bad --setattr is reported before anything is sent.
  auto spec = parse_jobspec(*js);
  if (!spec.ok()) return spec.error();
  if (!output.empty()) {
    for (auto& [stream, file] : (*js)["attributes"]["system"]["shell"]["options"]["output"].items()) {
      if (!file.is_object() || !file.contains("path") || !file["path"].is_string()) continue;
      auto path = expand_output_template(file["path"].get<std::string>(), spec->name, !o.cc.empty());
      if (!path.ok()) return Error{EINVAL, (stream == "stdout" ? "--output: " : "--error: ") + path.error().text};
      file["path"] = *path;
    }
  }
  return js;
}

int run_submit(const SubmitOpts& o, const std::string& cmd) {
  auto js = make_jobspec(o);
  if (!js.ok()) return fail(cmd, js.error(), kExitUsage);
  std::vector<Json> jobs;
  uint32_t cc_limit = 0;
  if (o.cc.empty()) {
    jobs.push_back(Json{{"jobspec", *js}, {"urgency", o.urgency}});
  } else {
    // IDSET%N: at most N of the set past DEPEND at once (cc_limit,
    // jobspec/dependencies.h); the first job's id names the group.
    std::string set = o.cc;
    if (auto pct = set.find('%'); pct != std::string::npos) {
      std::string n = set.substr(pct + 1);
      set.resize(pct);
      char* end = nullptr;
      unsigned long v =
          n.empty() || !std::isdigit(static_cast<unsigned char>(n[0])) ? 0 : std::strtoul(n.c_str(), &end, 10);
      if (v < 1 || v > UINT32_MAX || *end) {
        return fail(cmd, "--cc: after % comes the most jobs of the set to run at once, 1 or more (got \"" + n + "\")",
                    kExitUsage);
      }
      cc_limit = static_cast<uint32_t>(v);
    }
    auto cc = IdSet::parse(set);
    if (!cc.ok()) return fail(cmd, "--cc: " + cc.error().text, kExitUsage);
    if (cc->count() > 1000000) return fail(cmd, "--cc: at most 1000000 jobs at once", kExitUsage);
    for (uint32_t id : cc->to_vector()) {
      Json one = *js;
      one["attributes"]["system"]["environment"]["LOOM_JOB_CC"] = std::to_string(id);
      if (auto& shell = one["attributes"]["system"]; shell.contains("shell") && shell["shell"].contains("options") &&
                                                     shell["shell"]["options"].contains("output")) {
        for (auto& [stream, spec] : shell["shell"]["options"]["output"].items()) {
          std::string path = spec["path"].get<std::string>();
          for (size_t at; (at = path.find("{{cc}}")) != std::string::npos;) path.replace(at, 6, std::to_string(id));
          spec["path"] = path;
        }
      }
      if (cc_limit > 0) one["attributes"]["system"]["cc_limit"] = Json{{"max", cc_limit}};
      jobs.push_back(Json{{"jobspec", std::move(one)}, {"urgency", o.urgency}});
    }
  }
  if (o.dry_run) {
    for (auto& j : jobs) std::cout << dump_json(j["jobspec"]) << "\n";
    return 0;
  }
  auto s = connect_session();
  if (!s.ok()) return fail(cmd, s.error());
  Session& sess = **s;
  // Batches go out together. Each batch's ids are printed as soon as it and
  // every batch before it are acknowledged, so that whatever happens later
  // (the connection lost, a batch refused) the jobs already stored are
  // named and a user who retries knows what not to submit again.
  const size_t njobs = jobs.size();
  size_t first = 0;  // jobs before it are submitted already
  if (cc_limit > 0) {
    // The first job alone: its id is the group of the others.
    auto r = sess.client->call("job-manager.submit", Json{{"jobs", Json::array({std::move(jobs[0])})}});
    if (!r.ok()) return fail(cmd, r.error());
    if (!(*r).contains("ids") || !(*r)["ids"].is_array() || (*r)["ids"].empty() ||
        !(*r)["ids"][0].is_number_unsigned()) {
      return fail(cmd, Error{EPROTO, "the job manager answered without a job id"});
    }
    uint64_t group = (*r)["ids"][0].get<uint64_t>();
    std::cout << encode_f58(JobId{group}) << "\n" << std::flush;
    for (size_t i = 1; i < njobs; ++i) jobs[i]["jobspec"]["attributes"]["system"]["cc_limit"]["group"] = group;
    first = 1;
  }
  // Where each batch starts, and (last) where the jobs end.
  std::vector<size_t> starts;
  if (first < njobs) starts.push_back(first);
  for (size_t i = first, bytes = 0; i < njobs; ++i) {
    size_t size = dump_json_bound(jobs[i]);
    if (i > starts.back() && (i - starts.back() == kSubmitBatch || bytes + size > kSubmitBatchBytes)) {
      starts.push_back(i);
      bytes = 0;
    }
    bytes += size;
  }
  starts.push_back(njobs);
  const size_t nbatch = starts.size() - 1;
  std::vector<std::optional<Json>> answers(nbatch);
  size_t answered = 0, printed = 0, submitted = first;
  std::optional<Error> error;
  // --cc on a terminal: N of M submitted (progress.h).
  ProgressLine progress("submit", !o.cc.empty() && ::isatty(STDERR_FILENO) == 1);
  const bool ids_on_terminal = ::isatty(STDOUT_FILENO) == 1;
  auto print_ready = [&] {
    std::string out;
    for (; printed < nbatch && answers[printed]; ++printed) {
      const Json& a = *answers[printed];
      if (!a.contains("ids") || !a["ids"].is_array()) continue;
      for (auto& id : a["ids"]) {
        if (!id.is_number_unsigned()) continue;
        out += encode_f58(JobId{id.get<uint64_t>()}) + "\n";
        ++submitted;
      }
    }
    if (!out.empty() && ids_on_terminal) progress.clear();
    std::cout << out << std::flush;
    progress.show(submitted, njobs);
  };
  size_t sent = 0;
  std::function<void()> send_more = [&] {
    // (Counted as sent before the request goes: its answer may come at once.)
    // After a refusal nothing more goes: the jobs stored are then the
    // batches before it and those already under way, all named, and a
    // retry of the rest is the user's choice, not a scatter of later jobs.
    while (!error && sent < nbatch && sent - answered < kBatchesInFlight) {
      const size_t b = sent++;
      Json batch = Json::array();
      for (size_t i = starts[b]; i < starts[b + 1]; ++i) batch.push_back(std::move(jobs[i]));
      sess.handle().rpc("job-manager.submit", Json{{"jobs", std::move(batch)}}, {}, [&, b](const Message& m) {
        ++answered;
        if (m.errnum) {
          if (!error) error = Error{m.errnum, error_text(m)};
          answers[b] = Json::object();  // nothing stored: nothing to print
        } else {
          auto j = parse_json(m.payload);
          answers[b] = j.ok() ? std::move(*j) : Json::object();
        }
        print_ready();
        send_more();
      });
    }
  };
  send_more();
  while (answered < sent && sess.client->is_open()) sess.io.run_one();
  if (answered < sent) {
    // Batches acknowledged after one that never was still name their jobs.
    for (auto& a : answers) {
      if (!a) a = Json::object();
    }
    print_ready();
    std::string why = sess.client->lost_text();
    if (njobs > 1) {
      why += " after " + std::to_string(submitted) + " of " + std::to_string(njobs) +
             " jobs were submitted (their ids are printed); the others may or may not have been";
    }
    return fail(cmd, Error{ECONNRESET, why});
  }
  if (error) {
    // Of several requests, where it stopped (one alone is all or nothing).
    if (nbatch + first > 1) {
      error->text += submitted == 0 ? "; none of the " + std::to_string(njobs) + " jobs were submitted"
                                    : "; " + std::to_string(submitted) + " of " + std::to_string(njobs) +
                                          " jobs were submitted (their ids are printed), the others were not";
    }
    return fail(cmd, *error);
  }
  return 0;
}

int run_run(const SubmitOpts& o) {
  auto js = make_jobspec(o);
  if (!js.ok()) return fail("run", js.error(), kExitUsage);
  auto s = connect_session();
  if (!s.ok()) return fail("run", s.error());
  Session& sess = **s;
  auto sub = sess.client->call("job-manager.submit", Json{{"jobs", {{{"jobspec", *js}, {"urgency", o.urgency}}}}});
  if (!sub.ok()) return fail("run", sub.error());
  JobId id{(*sub)["ids"][0].get<uint64_t>()};
  AttachOpts a;
  a.cmd = "run";
  a.label = o.label;
  // Our stdin goes to the job if its tasks read it from loom (--setattr may
  // have said otherwise than --input).
  auto spec = parse_jobspec(*js);
  a.forward_stdin = spec.ok() && spec->input.kind == InputSpec::Kind::kKvs;
  return attach_job(sess, id, a);
}

// The options submit and run share.
void add_job_options(CLI::App* sub, SubmitOpts& o, bool command) {
  sub->add_option("-N,--nodes", o.nodes, "Number of nodes (ranks)")->check(CLI::Range(1u, 1u << 20));
  sub->add_option("-n,--ntasks", o.tasks, "Number of tasks (default: one per node, else 1)")
      ->check(CLI::Range(1u, 1u << 24));
  sub->add_option("-c,--cores-per-task", o.cores, "Cores per task (default 1)")->check(CLI::Range(1u, 1u << 20));
  sub->add_option("-g,--gpus-per-task", o.gpus, "GPUs per task (default 0)")->check(CLI::Range(0u, 1u << 16));
  sub->add_flag("-x,--exclusive", o.exclusive, "Whole nodes only");
  sub->add_option("-t,--time-limit", o.time_limit,
                  "Time limit: 30s, 5m, 2h, 1d, a bare number of minutes, or MM:SS, HH:MM:SS, D-HH, D-HH:MM:SS")
      ->check(CLI::Validator(
          [](std::string& v) { return time_limit_arg(v).ok() ? "" : time_limit_arg(v).error().text; }, "LIMIT"));
  sub->add_option("--urgency", o.urgency,
                  "0-31, hold (0), default (16) or expedite (31); above 16 is for the instance owner")
      ->transform(CLI::Validator(
          [](std::string& v) {
            auto u = urgency_arg(v);
            if (!u.ok()) return u.error().text;
            v = std::to_string(*u);
            return std::string();
          },
          "URGENCY"));
  sub->add_option("--job-name", o.name, "Job name (default: the command's basename)");
  sub->add_option("--cwd", o.cwd, "Working directory of the tasks (default: the current one)");
  sub->add_option("--setattr", o.setattr,
                  "Set a jobspec attribute, KEY=VALUE (under attributes.system unless "
                  "KEY starts with user. or system.; repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--env", o.env,
                  "Set NAME=VALUE in the job's environment, or remove the names matching -PATTERN (--env=-* "
                  "starts from an empty one; repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--env-remove", o.env_remove,
                  "Remove the names matching PATTERN (e.g. 'MYX_*') from the job's environment (repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--env-file", o.env_file, "Set the NAME=VALUE lines of FILE in the job's environment (repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--output", o.output,
                  "Write the tasks' stdout (and stderr, without --error) to FILE; {{id}} is the job id, "
                  "{{id.dec}} in decimal, {{name}} the job's name, {{cc}} the --cc copy, {{node}} the host "
                  "(each node then writes its own file)");
  sub->add_option("--error", o.error, "Write the tasks' stderr to FILE (templates as for --output)");
  sub->add_option("--input", o.input,
                  "The tasks' stdin: FILE for every task, the tasks that read loom's stdin (all, 0, 0-3), or "
                  "none (/dev/null); loom run: 0 by default, loom submit: none");
  sub->add_option("--dependency", o.dependency,
                  "Hold the job until TYPE:ID[:ID...][,...] is met: afterok, afterany, afternotok, after "
                  "(started) or singleton (repeatable)")
      ->allow_extra_args(false);
  if (!command) return;
  sub->add_option("command", o.command, "The command and its arguments")->required();
  sub->positionals_at_end(true);
}

void add_run_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<SubmitOpts>();
  auto* sub = app.add_subcommand("run", "Run a job and wait for it; exit as its tasks did");
  o->input = "0";  // our stdin goes to task 0, as with srun and flux run
  add_job_options(sub, *o);
  sub->add_flag("-l,--label-io", o->label, "Put the task rank before each line of output");
  sub->footer(
      "Examples:\n  loom run -N2 hostname\n  echo hello | loom run cat\n"
      "  loom run --setattr=exec.test.wait_status=256 true   # test execution: exits 1");
  sub->callback([o, &run] { run = [o] { return run_run(*o); }; });
}

void add_submit_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<SubmitOpts>();
  auto* sub = app.add_subcommand("submit", "Submit a job; print its id");
  add_job_options(sub, *o);
  sub->add_option("--cc", o->cc,
                  "Submit one copy per id of IDSET (e.g. 1-100), LOOM_JOB_CC set to it; IDSET%N (1-100%5) runs at most "
                  "N of them at once");
  sub->add_flag("--dry-run", o->dry_run, "Print the jobspec instead of submitting it");
  sub->footer(
      "Examples:\n  loom submit -N2 -n4 hostname\n  loom submit --cc=1-1000 -t 5m ./work\n"
      "  loom submit --setattr=exec.test='{\"run_duration\":\"1s\"}' true");
  // A script's #LOOM directives count as for loom batch (batch.cpp).
  sub->callback([o, sub, &run] {
    run = [o, sub] {
      if (auto st = apply_directives(sub, o->command[0]); !st) return fail("submit", st.error(), kExitUsage);
      return run_submit(*o);
    };
  });
}

}  // namespace loom::cli
