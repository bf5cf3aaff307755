// The command line's contract (README.md, "Errors"), through the real
// `loom` binary: every error is one line "loom CMD: TEXT" on stderr; a
// usage error (an unknown command or option, a missing argument, a bad
// value) exits 2, a runtime error 1; a mistyped command or option names
// the nearest one. And the forms of values the commands accept: time
// limits, output file templates, environment rules; several job ids where
// some are bad; drains and the resource listings.
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "kit/jobs.h"
#include "kit/process.h"

namespace loom::test {
namespace {

// `r` failed with status `code` and exactly one line on stderr, "loom
// CMD: ..." containing `text`; nothing on stdout.
::testing::AssertionResult one_line_error(const CmdResult& r, int code, const std::string& cmd,
                                          const std::string& text) {
  auto lines = r.err_lines();
  if (r.code != code) return ::testing::AssertionFailure() << "want exit " << code << ", got " << show(r);
  if (lines.size() != 1) return ::testing::AssertionFailure() << "want one line on stderr: " << show(r);
  std::string prefix = cmd.empty() ? "loom: " : "loom " + cmd + ": ";
  if (!lines[0].starts_with(prefix)) return ::testing::AssertionFailure() << "want " << prefix << "...: " << show(r);
  if (lines[0].find(text) == std::string::npos) {
    return ::testing::AssertionFailure() << "want \"" << text << "\" in: " << lines[0];
  }
  if (!r.out.empty()) return ::testing::AssertionFailure() << "want nothing on stdout: " << show(r);
  return ::testing::AssertionSuccess();
}

// `loom ARGS...` with no instance anywhere: what is refused while parsing
// never gets as far as looking for one.
CmdResult loom_alone(std::vector<std::string> args, Env env = {}) {
  args.insert(args.begin(), bin("loom"));
  env.emplace_back("LOOM_URI", "local:///nonexistent/loom.sock");
  return run_cmd(args, env);
}

TEST(Cli, UsageErrorsAreOneLineAndExit2) {
  EXPECT_TRUE(
      one_line_error(loom_alone({"sumbit", "true"}), 2, "", "unknown command \"sumbit\" (did you mean \"submit\"?)"));
  EXPECT_TRUE(one_line_error(loom_alone({}), 2, "", "a command is required: "));
  EXPECT_TRUE(one_line_error(loom_alone({"resource", "lst"}), 2, "resource",
                             "unknown command \"lst\" (did you mean \"list\"?)"));
  EXPECT_TRUE(one_line_error(loom_alone({"resource"}), 2, "resource", "a command is required: list"));
  // The start of a name suggests that name, never a near one that acts.
  EXPECT_TRUE(
      one_line_error(loom_alone({"queue", "stat"}), 2, "queue", "unknown command \"stat\" (did you mean \"status\"?)"));
  EXPECT_TRUE(one_line_error(loom_alone({"jo"}), 2, "", "unknown command \"jo\" (commands: "));
  EXPECT_TRUE(one_line_error(loom_alone({"jbo"}), 2, "", "(did you mean \"job\"?)"));
  EXPECT_TRUE(one_line_error(loom_alone({"queue", "sta"}), 2, "queue", "(did you mean \"status\" or \"start\"?)"));
  EXPECT_TRUE(one_line_error(loom_alone({"submit", "--nodse", "2", "true"}), 2, "submit",
                             "unknown option \"--nodse\" (did you mean \"--nodes\"?)"));
  EXPECT_TRUE(one_line_error(loom_alone({"submit", "--job-nmae=x", "true"}), 2, "submit",
                             "unknown option \"--job-nmae\" (did you mean \"--job-name\"?)"));
  EXPECT_TRUE(one_line_error(loom_alone({"jobs", "--zzzzzz"}), 2, "jobs", "unknown option \"--zzzzzz\""));
  EXPECT_TRUE(one_line_error(loom_alone({"submit"}), 2, "submit", "command"));
  EXPECT_TRUE(one_line_error(loom_alone({"submit", "-N", "x", "true"}), 2, "submit", "x"));
  EXPECT_TRUE(one_line_error(loom_alone({"submit", "-N", "0", "true"}), 2, "submit", "0"));
  EXPECT_TRUE(one_line_error(loom_alone({"submit", "-N"}), 2, "submit", "--nodes needs a value"));
  // An empty value after '=' never takes the next argument for its value;
  // the command's own arguments are its own.
  EXPECT_TRUE(one_line_error(loom_alone({"submit", "--job-name=", "--urgency=20", "true"}), 2, "submit",
                             "--job-name= needs a value (--job-name=VALUE)"));
  EXPECT_TRUE(
      one_line_error(loom_alone({"cancel", "-m", "why", "--message=", "f1"}), 2, "cancel", "--message= needs a value"));
  // An error line echoes words it was given, a user's service may say
  // anything: control characters show as '?', never reach the terminal.
  auto esc = loom_alone({"jobs", "-o", "{x\x1b[31m}"});
  EXPECT_EQ(esc.err.find('\x1b'), std::string::npos) << show(esc);
  EXPECT_NE(esc.err.find("x?[31m"), std::string::npos) << show(esc);
  // A word that should have been a job id is quoted, escapes spelled out
  // and cut short: it may be anything a user typed.
  auto id = loom_alone({"job", "info", "f\x1b[31m" + std::string(100000, 'x')});
  EXPECT_TRUE(one_line_error(id, 1, "job info", R"("f\x1b[31mxxx)")) << show(id);
  EXPECT_LT(id.err.size(), 200u) << show(id);
  auto own = loom_alone({"submit", "--dry-run", "-N", "1", "sh", "--opt="});
  EXPECT_EQ(own.code, 0) << show(own);
  EXPECT_NE(own.out.find(R"("command":["sh","--opt="])"), std::string::npos) << own.out;
  auto x = loom_alone({"resource", "drain", "-x"});  // no suggestion for one letter
  EXPECT_EQ(x.err, "loom resource drain: unknown option \"-x\"\n") << show(x);
  EXPECT_EQ(x.code, 2);
  EXPECT_TRUE(one_line_error(loom_alone({"job", "wait"}), 2, "job wait", "id"));
  EXPECT_TRUE(one_line_error(loom_alone({"job", "kill", "a", "b", "c"}), 2, "job kill", "unexpected argument"));
  EXPECT_TRUE(one_line_error(loom_alone({"cancel"}), 2, "cancel", "give job ids"));
  EXPECT_TRUE(one_line_error(loom_alone({"run", "--urgency=99", "true"}), 2, "run", "urgency"));
  // Bad values the commands check themselves are usage errors too.
  EXPECT_TRUE(one_line_error(loom_alone({"job", "kill", "-s", "NOSUCH", "123"}), 2, "job kill", "NOSUCH"));
  EXPECT_TRUE(one_line_error(loom_alone({"job", "info", "123", "nokey"}), 2, "job info", "nokey"));
  // A value with a newline in it is still one line.
  EXPECT_TRUE(one_line_error(loom_alone({"job", "info", "123", "no\nkey"}), 2, "job info", "no key"));
  EXPECT_TRUE(one_line_error(loom_alone({"job", "urgency", "123", "99"}), 2, "job urgency", "99"));
  EXPECT_TRUE(one_line_error(loom_alone({"job", "wait-event", "-m", "nokv", "123", "start"}), 2, "job wait-event",
                             "KEY=VALUE"));
  EXPECT_TRUE(one_line_error(loom_alone({"jobs", "-f", "nosuch"}), 2, "jobs", "nosuch"));
  EXPECT_TRUE(one_line_error(loom_alone({"kvs", "put", "novalue"}), 2, "kvs put", "KEY=VALUE"));
  EXPECT_TRUE(one_line_error(loom_alone({"rpc", "broker.info", "{bad"}), 2, "rpc", "payload"));
  EXPECT_TRUE(one_line_error(loom_alone({"job", "purge", "--age-limit=x"}), 2, "job purge", "--age-limit"));
  // Help and the version are not errors.
  auto h = loom_alone({"submit", "--help"});
  EXPECT_EQ(h.code, 0) << show(h);
  EXPECT_NE(h.out.find("--time-limit"), std::string::npos) << h.out;
  auto v = loom_alone({"--version"});
  EXPECT_EQ(v.code, 0) << show(v);
}

TEST(Cli, RuntimeErrorsAreOneLineAndExit1) {
  EXPECT_TRUE(one_line_error(loom_alone({"status"}), 1, "status", ""));
  EXPECT_TRUE(one_line_error(loom_alone({"cancel", "nosuch0"}), 1, "cancel", "nosuch0"));
}

// The time limit a dry run puts in the jobspec, or the failed run.
CmdResult dry_run(const std::vector<std::string>& opts) {
  std::vector<std::string> args = {"submit", "--dry-run"};
  args.insert(args.end(), opts.begin(), opts.end());
  args.emplace_back("true");
  return loom_alone(args);
}

double duration_of(const std::string& limit) {
  auto r = dry_run({"-t", limit});
  EXPECT_EQ(r.code, 0) << limit << ": " << show(r);
  auto j = parse_json(r.out);
  if (!j.ok()) return -1;
  return (*j)["attributes"]["system"].value("duration", -1.0);
}

TEST(Cli, TimeLimitsInSlurmsFormsToo) {
  EXPECT_EQ(duration_of("90"), 90 * 60);  // a bare number is minutes
  EXPECT_EQ(duration_of("30s"), 30);
  EXPECT_EQ(duration_of("2h"), 7200);
  EXPECT_EQ(duration_of("5:30"), 5 * 60 + 30);                       // MM:SS
  EXPECT_EQ(duration_of("1:02:03"), 3600 + 2 * 60 + 3);              // HH:MM:SS
  EXPECT_EQ(duration_of("2-3"), 2 * 86400 + 3 * 3600);               // D-HH
  EXPECT_EQ(duration_of("2-03:04"), 2 * 86400 + 3 * 3600 + 4 * 60);  // D-HH:MM
  EXPECT_EQ(duration_of("1-00:00:05"), 86400 + 5);                   // D-HH:MM:SS
  EXPECT_EQ(duration_of("inf"), 0);                                  // no limit
  for (const char* bad : {"5x", "1:2:3:4", "-5", "1-", ":30", "1-2:3:4:5", "a:b", "1:-2", "5m:3", ""}) {
    EXPECT_TRUE(one_line_error(dry_run({"-t", bad}), 2, "submit", "time limit")) << bad;
  }
}

TEST(Cli, OutputTemplatesUnknownAreRefused) {
  EXPECT_TRUE(one_line_error(dry_run({"--output=out.{{nope}}"}), 2, "submit", "unknown template {{nope}}"));
  EXPECT_TRUE(one_line_error(dry_run({"--error=err.{{id"}), 2, "submit", "--error: unclosed"));
  EXPECT_TRUE(one_line_error(dry_run({"--output=out.{{cc}}"}), 2, "submit", "--cc"));
  // {{name}} and {{cc}} are filled in at submit, the others by the shells.
  auto r = dry_run({"--cc=1-2", "--job-name=tj", "--output=o.{{name}}.{{cc}}.{{id}}.{{id.dec}}.{{node}}"});
  ASSERT_EQ(r.code, 0) << show(r);
  auto lines = r.out_lines();
  ASSERT_EQ(lines.size(), 2u) << r.out;
  for (int i = 0; i < 2; ++i) {
    auto j = parse_json(lines[i]);
    ASSERT_TRUE(j.ok()) << lines[i];
    EXPECT_EQ((*j)["attributes"]["system"]["shell"]["options"]["output"]["stdout"]["path"],
              "o.tj." + std::to_string(i + 1) + ".{{id}}.{{id.dec}}.{{node}}");
  }
}

// The environment a dry run gives the job.
Json environment_of(const std::vector<std::string>& opts, const Env& env) {
  std::vector<std::string> args = {"submit", "--dry-run"};
  args.insert(args.end(), opts.begin(), opts.end());
  args.emplace_back("true");
  auto r = loom_alone(args, env);
  EXPECT_EQ(r.code, 0) << show(r);
  auto j = parse_json(r.out);
  return j.ok() ? (*j)["attributes"]["system"]["environment"] : Json();
}

TEST(Cli, EnvironmentRules) {
  Env env = {{"MYX_A", "1"}, {"MYX_B", "2"}, {"KEEP_ME", "3"}};
  Json e = environment_of({"--env-remove=MYX_*"}, env);
  EXPECT_FALSE(e.contains("MYX_A")) << e;
  EXPECT_FALSE(e.contains("MYX_B")) << e;
  EXPECT_EQ(e.value("KEEP_ME", ""), "3") << e;
  e = environment_of({"--env=-MYX_?", "--env=-KEEP*"}, env);
  EXPECT_FALSE(e.contains("MYX_A") || e.contains("KEEP_ME")) << e;
  EXPECT_TRUE(e.contains("PATH")) << e;

  // Removals first, then the files in order, then --env: the later wins.
  std::string dir = ::testing::TempDir() + "/loom-cli-env-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir + "/a.env") << "# settings\nA=from-a\nB=from-a\n\nexport C=c=d\n";
    std::ofstream(dir + "/b.env") << "B=from-b\nD=from-b\n";
    std::ofstream(dir + "/bad.env") << "A=1\nnot a setting\n";
  }
  e = environment_of({"--env=-*", "--env-file", dir + "/a.env", "--env-file", dir + "/b.env", "--env=D=cli"}, env);
  EXPECT_EQ(e, Json::parse(R"({"A":"from-a","B":"from-b","C":"c=d","D":"cli"})")) << e;
  EXPECT_TRUE(one_line_error(loom_alone({"submit", "--dry-run", "--env-file", dir + "/bad.env", "true"}), 2, "submit",
                             "bad.env line 2"));
  EXPECT_TRUE(one_line_error(loom_alone({"submit", "--dry-run", "--env-file", dir + "/none.env", "true"}), 2, "submit",
                             "cannot read"));
  EXPECT_TRUE(one_line_error(loom_alone({"run", "--env=NOEQUALS", "true"}), 2, "run", "NAME=VALUE"));
  std::filesystem::remove_all(dir);
}

class CliJobs : public JobsFixture {
 protected:
  // A job that, once started, holds its resources until it is cancelled.
  std::string submit_held(std::vector<std::string> args) {
    args.insert(args.begin(), "--setattr=exec.test.override=true");
    return submit_job(args);
  }
};

TEST_F(CliJobs, CancelWithBadIdsCancelsTheGoodOnes) {
  start();
  std::string a = submit_held({"-N1", "true"});
  std::string b = submit_held({"-N1", "true"});
  auto r = loom({"cancel", a, "nosuch", b});
  EXPECT_TRUE(one_line_error(r, 1, "cancel", "\"nosuch\" is not a job id"));
  wait_event(a, "clean");
  wait_event(b, "clean");
  EXPECT_EQ(job(a).value("result", ""), "CANCELED");
  EXPECT_EQ(job(b).value("result", ""), "CANCELED");
  // An id that is well formed but names no job: reported, the others canceled.
  std::string c = submit_held({"-N1", "true"});
  r = loom({"cancel", "123456789", c});
  EXPECT_TRUE(one_line_error(r, 1, "cancel", ""));
  wait_event(c, "clean");
  // Purging several, one of them bad: the others are purged.
  r = loom({"job", "purge", a, "nosuch", b});
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_NE(r.err.find("loom job purge: \"nosuch\" is not a job id\n"), std::string::npos) << show(r);
  auto listed = loom({"jobs", "-a", "-n", "-o", "{id}"});
  EXPECT_EQ(listed.out.find(a), std::string::npos) << listed.out;
  EXPECT_EQ(listed.out.find(b), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find(c), std::string::npos) << listed.out;
}

TEST_F(CliJobs, OutputTemplatesFilledIn) {
  start();
  auto st = loom({"resource", "status", "--json"});
  ASSERT_EQ(st.code, 0) << show(st);
  auto ranks = parse_json(st.out);
  ASSERT_TRUE(ranks.ok() && ranks->size() == 4) << st.out;
  std::string dir = ::testing::TempDir() + "/loom-cli-out-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::string id =
      submit_job({"-N1", "--job-name=tj", "--output=" + dir + "/o.{{name}}.{{id}}.{{id.dec}}.{{node}}", "echo", "hi"});
  auto w = loom({"job", "wait", id});
  ASSERT_EQ(w.code, 0) << show(w);
  std::string host = (*ranks)[0].value("host", "");
  std::vector<std::string> files;
  for (auto& f : std::filesystem::directory_iterator(dir)) files.push_back(f.path().filename().string());
  // The job ran on one rank; its host is rank 0's in a test instance (all
  // ranks on this machine), else its rank number.
  std::string dec = std::to_string(parse_jobid(id).value().value());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_TRUE(files[0] == "o.tj." + id + "." + dec + "." + host || files[0].starts_with("o.tj." + id + "." + dec + "."))
      << files[0];
  EXPECT_EQ(files[0].find("{{"), std::string::npos) << files[0];
  std::ifstream in(dir + "/" + files[0]);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "hi");
  std::filesystem::remove_all(dir);
}

// `resource list`'s rows as STATE -> NNODES.
std::map<std::string, int> list_rows(const CmdResult& r) {
  std::map<std::string, int> rows;
  for (auto& line : r.out_lines()) {
    std::istringstream in(line);
    std::string state;
    int nnodes = -1;
    if (in >> state >> nnodes) rows[state] = nnodes;
  }
  return rows;
}

TEST_F(CliJobs, DrainKeepsItsReasonAndRanksCountOnce) {
  start();
  std::string id = submit_held({"-N1", "true"});
  wait_event(id, "alloc");
  std::string busy = allocated_ranks();
  ASSERT_EQ(busy.size(), 1u) << busy;
  auto d = loom({"resource", "drain", busy, "bad", "fan"});
  ASSERT_EQ(d.code, 0) << show(d);
  EXPECT_TRUE(one_line_error(loom({"resource", "drain", busy, "other"}), 1, "resource drain",
                             "rank " + busy + " is already drained (bad fan); --force replaces the reason"));
  // With no arguments: the drained ranks, since when, why.
  auto ls = loom({"resource", "drain"});
  ASSERT_EQ(ls.code, 0) << show(ls);
  ASSERT_EQ(ls.out_lines().size(), 2u) << ls.out;
  EXPECT_TRUE(ls.out_lines()[1].starts_with(busy + " ")) << ls.out;
  EXPECT_TRUE(ls.out_lines()[1].ends_with(" bad fan")) << ls.out;
  d = loom({"resource", "drain", "--force", busy, "other"});
  ASSERT_EQ(d.code, 0) << show(d);
  ls = loom({"resource", "drain"});
  EXPECT_TRUE(ls.out_lines().size() == 2 && ls.out_lines()[1].ends_with(" other")) << ls.out;

  // The drained rank still runs the job: draining, counted once.
  auto list = loom({"resource", "list"});
  ASSERT_EQ(list.code, 0) << show(list);
  auto rows = list_rows(list);
  EXPECT_EQ(rows["free"], 3) << list.out;
  EXPECT_EQ(rows["allocated"], 0) << list.out;
  EXPECT_EQ(rows["draining"], 1) << list.out;
  EXPECT_EQ(rows["drained"], 0) << list.out;
  EXPECT_EQ(rows["down"], 0) << list.out;

  // One line per rank: rank, state, host, cores in use, since, reason.
  auto st = loom({"resource", "status"});
  ASSERT_EQ(st.code, 0) << show(st);
  auto lines = st.out_lines();
  ASSERT_EQ(lines.size(), 5u) << st.out;
  for (uint32_t r = 0; r < 4; ++r) {
    std::istringstream in(lines[r + 1]);
    uint32_t rank = 99;
    std::string state;
    in >> rank >> state;
    EXPECT_EQ(rank, r) << lines[r + 1];
    EXPECT_EQ(state, std::to_string(r) == busy ? "draining" : "free") << lines[r + 1];
  }
  EXPECT_TRUE(lines[std::stoi(busy) + 1].ends_with(" other")) << st.out;

  // Once the job is gone the rank is drained, and undrain frees it.
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  wait_event(id, "clean");
  rows = list_rows(loom({"resource", "list"}));
  EXPECT_EQ(rows["drained"], 1);
  EXPECT_EQ(rows.count("draining"), 0u);
  ASSERT_EQ(loom({"resource", "undrain", busy}).code, 0);
  rows = list_rows(loom({"resource", "list"}));
  EXPECT_EQ(rows["free"], 4);
  EXPECT_EQ(loom({"resource", "drain"}).out_lines().size(), 1u);
}

// ---------------------------------------------------------------- loom jobs

class JobsListing : public CliJobs {
 protected:
  static std::string user_name() {
    struct passwd* pw = ::getpwuid(::getuid());
    return pw ? pw->pw_name : std::to_string(::getuid());
  }
  // Four jobs, newest first in listings: `pending` (SCHED: all 4 ranks,
  // while `running` holds 2), `running` (RUN on 2 ranks, until canceled),
  // `failed` (ran `false`) and `done` (ran `true`, with a time limit).
  std::string done, failed, running, pending;
  void SetUp() override {
    start();
    done = submit_job({"-N1", "-t", "5m", "--job-name=done", "true"});
    ASSERT_EQ(loom({"job", "wait", done}).code, 0);
    failed = submit_job({"-N1", "--job-name=failed", "false"});
    ASSERT_EQ(loom({"job", "wait", failed}).code, 1);
    wait_event(failed, "clean");
    running = submit_held({"-N2", "-n2", "--job-name=averyverylongname", "true"});
    wait_event(running, "alloc");
    pending = submit_held({"-N4", "--job-name=pending", "true"});
    wait_event(pending, "priority");
    settle();
  }
  // The lines of `loom jobs -n -o FORMAT ARGS...`, which must succeed.
  std::vector<std::string> listed(const std::string& format, std::vector<std::string> args = {}) {
    args.insert(args.begin(), {"jobs", "-n", "-o", format});
    auto r = loom(args);
    EXPECT_EQ(r.code, 0) << show(r);
    EXPECT_EQ(r.err, "") << show(r);
    return r.out_lines();
  }
};

TEST_F(JobsListing, TheFormatsOfTheFluxJobsManPage) {
  // The default format as flux-jobs(1) gives it is the named one, the queue
  // column left out (?:) as no job has a queue.
  const std::string flux_default =
      "{id.f58:>12} ?:{queue:<8.8} {username:<8.8} {name:<10.10+} {status_abbrev:>2.2} {ntasks:>6} {nnodes:>6h} "
      "{contextual_time!F:>8h} {contextual_info}";
  // (The running job's time goes on: compared without it.)
  auto unmoving = loom({"jobs", "-f", "sched,inactive", "-o", flux_default});
  ASSERT_EQ(unmoving.code, 0) << show(unmoving);
  EXPECT_EQ(unmoving.out_lines().size(), 4u) << unmoving.out;
  EXPECT_EQ(unmoving.out, loom({"jobs", "-f", "sched,inactive"}).out);
  EXPECT_EQ(unmoving.out, loom({"jobs", "-f", "sched,inactive", "-o", "default"}).out);
  auto mine = loom({"jobs", "-a", "-o", flux_default});
  auto lines = mine.out_lines();
  ASSERT_EQ(lines.size(), 5u) << mine.out;
  EXPECT_EQ(lines[0], "       JOBID USER     NAME       ST NTASKS NNODES     TIME INFO");
  std::string user = user_name();
  // pending: its own 4 nodes asked, no time limit ("-"), why it waits.
  EXPECT_TRUE(lines[1].starts_with(std::string(12 - (pending.size() - 1), ' ') + pending + " ")) << lines[1];
  EXPECT_NE(lines[1].find(" pending     S      4      4        - "), std::string::npos) << lines[1];
  // running: the name cut to 10 with a "+".
  EXPECT_NE(lines[2].find(" averyvery+  R      2      2 "), std::string::npos) << lines[2];
  EXPECT_NE(lines[3].find(" failed      F      1      1 "), std::string::npos) << lines[3];
  EXPECT_NE(lines[4].find(" done       CD      1      1 "), std::string::npos) << lines[4];
  EXPECT_NE(lines[4].find(" " + user.substr(0, 8) + " "), std::string::npos) << lines[4];

  // "{id} {annotations.sched}": the scheduler's annotations of the pending job.
  auto ann = listed("{id} {annotations.sched}", {"-a"});
  ASSERT_EQ(ann.size(), 4u);
  EXPECT_TRUE(ann[0].starts_with(pending + " {\"reason_pending\":")) << ann[0];
  EXPECT_EQ(ann[1], running);
  EXPECT_EQ(listed("{sched.reason_pending}", {pending}), listed("{annotations.sched.reason_pending}", {pending}));
  // "{id} {exception.type} {exception.note}" of failed jobs: `false` failed
  // without one.
  EXPECT_EQ(listed("{id} {exception.type} {exception.note}", {"--filter=failed"}), (std::vector<std::string>{failed}));
  // "?:{exception.type}" is dropped when no job listed has one.
  auto drop = loom({"jobs", "-a", "-o", "{id.f58:>12} ?:{exception.type}"});
  EXPECT_EQ(drop.out_lines().at(0), "       JOBID") << drop.out;
  // The conversions: !d with a strftime format (and "::" a spec), !D, !F, !H.
  auto t = listed("{t_inactive!d:%H:%M:%S}|{t_inactive!d:%H:%M:%S::>10}|{t_submit!D}|{runtime!F}|{runtime!H}", {done});
  ASSERT_EQ(t.size(), 1u);
  std::smatch m;
  EXPECT_TRUE(std::regex_match(
      t[0], m,
      std::regex(R"((\d\d:\d\d:\d\d)\|  (\d\d:\d\d:\d\d)\|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\|\d+\.\d{3}s\|0:00:0\d)")))
      << t[0];
  EXPECT_EQ(m[1], m[2]);
  // The named-format example of flux-jobs(1), CONFIGURATION.
  auto cfg = listed("{id.f58:>12} {name:>8.8} {t_submit!D:<19} {t_run!D:<19} {t_remaining!F}", {pending});
  EXPECT_TRUE(std::regex_match(cfg.at(0), std::regex(R"( *\S+  pending \d{4}-\S{14} {21}0s)"))) << cfg.at(0);
  // "h": a hyphen for what is empty or zero; "{instance.*}" is empty: a
  // loom job is never an instance.
  EXPECT_EQ(listed("{nodelist:h}|{nnodes:>6h}|{duration:h}|{expiration!D:h}|{instance.utilization!P:>4}|", {pending}),
            (std::vector<std::string>{"-|     4|-|-|    |"}));
  EXPECT_EQ(listed("{duration}|{duration!F}|{duration!H}", {done}), (std::vector<std::string>{"300.0|5m|0:05:00"}));
  // Once a job has an exception the column is kept.
  ASSERT_EQ(loom({"cancel", running}).code, 0);
  wait_event(running, "clean");
  auto kept = loom({"jobs", "-a", "-o", "{id.f58:>12} ?:{exception.type}"}).out_lines();
  EXPECT_EQ(kept.at(0), "       JOBID EXCEPTION-TYPE");
  EXPECT_EQ(kept.at(2), std::string(12 - (running.size() - 1), ' ') + running + " cancel");
}

TEST_F(JobsListing, FieldsAndSpecs) {
  uint64_t dec = parse_jobid(done).value().value();
  char hex[32];
  std::snprintf(hex, sizeof hex, "0x%llx", static_cast<unsigned long long>(dec));
  auto ids = listed("{id}|{id.dec}|{id.hex}|{id.f58plain}|{id.dec:>25}|{id.dec:_}", {done});
  ASSERT_EQ(ids.size(), 1u);
  std::string d = std::to_string(dec);
  std::string grouped;
  for (size_t i = 0; i < d.size(); ++i) grouped += ((i > 0 && (d.size() - i) % 3 == 0) ? "_" : "") + d.substr(i, 1);
  EXPECT_EQ(ids[0], done + "|" + d + "|" + hex + "|f" + done.substr(2) + "|" + std::string(25 - d.size(), ' ') + d +
                        "|" + grouped);
  // Ids in any form list those jobs, whatever their state.
  EXPECT_EQ(listed("{id}", {hex, d, failed}), (std::vector<std::string>{failed, done}));

  // What each job is.
  EXPECT_EQ(
      listed("{name}|{status}|{status_abbrev}|{state}|{state_single}|{result}|{result_abbrev}", {"-a"}),
      (std::vector<std::string>{"pending|SCHED|S|SCHED|S||", "averyverylongname|RUN|R|RUN|R||",
                                "failed|FAILED|F|INACTIVE|I|FAILED|F", "done|COMPLETED|CD|INACTIVE|I|COMPLETED|CD"}));
  EXPECT_EQ(listed("{returncode}|{waitstatus}|{success}|{exception.occurred}|{inactive_reason}", {"-a"}),
            (std::vector<std::string>{"||||", "||||", "1|256|False|False|Exit 1", "0|0|True|False|Exit 0"}));
  // (-N asks for whole nodes: ncores is what R holds.)
  auto given = [&](const std::string& id) {
    Json j = job(id);
    return std::to_string(j.value("ncores", -1)) + "|" + j.value("ranks", "?");
  };
  EXPECT_EQ(listed("{ntasks}|{nnodes}|{ncores}|{ranks}|{urgency}|{priority}|{dependencies}", {"-a"}),
            (std::vector<std::string>{"4|4|||16|16|", "2|2|" + given(running) + "|16|16|",
                                      "1|1|" + given(failed) + "|16|16|", "1|1|" + given(done) + "|16|16|"}));
  // The hosts of an allocated job, as a hostlist (every rank of a test
  // instance is on this machine).
  auto st = parse_json(loom({"resource", "status", "--json"}).out);
  ASSERT_TRUE(st.ok());
  std::string host = (*st)[0].value("host", "?");
  std::string nodes = listed("{nodelist}", {running}).at(0);
  EXPECT_TRUE(nodes == host + "," + host || nodes == host) << nodes;
  auto uid = std::to_string(::getuid());
  EXPECT_EQ(listed("{userid}|{username}", {done}), (std::vector<std::string>{uid + "|" + user_name()}));
  // Times: floats as Python prints them, and in every form asked.
  auto times = listed("{t_submit}|{t_depend:.0f}|{t_run:>20.3f}|{t_cleanup:e}|{t_inactive:%}", {done});
  EXPECT_TRUE(
      std::regex_match(times.at(0), std::regex(R"(\d{10}\.\d+\|\d{10}\| +\d{10}\.\d{3}\|\d\.\d{6}e\+09\|\d+\.\d{6}%)")))
      << times.at(0);
  // Python's alignment, fill, sign, zero padding, precision; {{ and }}.
  EXPECT_EQ(listed("[{name:^8}][{name:*>8}][{ntasks:+d}][{ntasks:03}][{ntasks:<3}][{name:.2}]{{x}}", {done}),
            (std::vector<std::string>{"[  done  ][****done][+1][001][1  ][do]{x}"}));
  // The header: each heading aligned and cut as its column.
  auto h = loom({"jobs", "-o", "{id.dec:>20} {name:^8} {ntasks:06d} {t_submit!D:<19}|{runtime!H}", done});
  EXPECT_EQ(h.out_lines().at(0), "               JOBID   NAME   NTASKS T_SUBMIT           |RUNTIME") << h.out;

  // The named formats.
  auto fmts = loom({"jobs", "--format=help"});
  ASSERT_EQ(fmts.code, 0) << show(fmts);
  for (std::string name : {"default", "long", "deps", "endreason"}) {
    EXPECT_NE(fmts.out.find("  " + name + " "), std::string::npos) << fmts.out;
    auto r = loom({"jobs", "-a", "-o", name});
    EXPECT_EQ(r.code, 0) << show(r);
    EXPECT_EQ(r.out_lines().size(), 5u) << r.out;
  }
  EXPECT_TRUE(loom({"jobs", "-o", "deps"})
                  .out.starts_with("       JOBID NAME       URG PRI          STATE    "
                                   "DEPENDENCIES\n"));
  auto end = loom({"jobs", "-o", "endreason", failed}).out_lines();
  EXPECT_TRUE(std::regex_match(end.at(1), std::regex(R"( *\S+ \S+ +failed +\w{3}\d\d \d\d:\d\d     FAILED Exit 1)")))
      << end.at(1);
  auto lng = loom({"jobs", "-o", "long", running}).out_lines();
  EXPECT_EQ(lng.at(0),
            "       JOBID USER     NAME          STATUS NTASKS NNODES     T_SUBMIT  T_REMAINING     TIME INFO");
  // LOOM_JOBS_FORMAT_DEFAULT names the format used without -o.
  EXPECT_EQ(loom({"jobs", "-n", done}, {{"LOOM_JOBS_FORMAT_DEFAULT", "{name}"}}).out, "done\n");
}

TEST_F(JobsListing, BadFormatsAreOneLineAndExit2) {
  for (std::string bad : {"{nosuch}", "{id:>>>}", "{id!X}", "{id", "id}", "{id:{w}}", "{}", "{id:5.}", "{name:5h+x}",
                          "nosuchformat", "{id.words}"}) {
    EXPECT_TRUE(one_line_error(loom({"jobs", "-o", bad}), 2, "jobs", "")) << bad;
  }
  EXPECT_TRUE(one_line_error(loom({"jobs", "-o", "{nosuch}"}), 2, "jobs", "unknown field \"nosuch\""));
  EXPECT_TRUE(one_line_error(loom({"jobs", "-o", "nosuchformat"}), 2, "jobs", "no format named \"nosuchformat\""));
  // Specs that do not fit a value's type are found on the first job.
  EXPECT_TRUE(one_line_error(loom({"jobs", "-a", "-o", "{name:d}"}), 2, "jobs", "unknown format code 'd'"));
  EXPECT_TRUE(one_line_error(loom({"jobs", "-a", "-o", "{ntasks:.2}"}), 2, "jobs", "precision not allowed"));
  EXPECT_TRUE(one_line_error(loom({"jobs", "-a", "-o", "{name:=5}"}), 2, "jobs", "'=' alignment not allowed"));
  // Before any instance is looked for.
  EXPECT_TRUE(one_line_error(loom_alone({"jobs", "-o", "{nosuch}"}), 2, "jobs", "unknown field"));
}

TEST_F(JobsListing, Filters) {
  std::string me = user_name();
  auto all_ids = std::vector<std::string>{pending, running, failed, done};
  EXPECT_EQ(listed("{id}", {"-a", "-u", me}), all_ids);
  EXPECT_EQ(listed("{id}", {"-a", "--user", std::to_string(::getuid())}), all_ids);
  EXPECT_EQ(listed("{id}", {"-a", "-u", "all"}), all_ids);
  // Another user's jobs: none here.
  EXPECT_EQ(listed("{id}", {"-a", "-u", std::to_string(::getuid() + 4242)}), std::vector<std::string>{});
  EXPECT_TRUE(one_line_error(loom({"jobs", "-u", "no-such-user-here"}), 2, "jobs", "no user"));
  EXPECT_TRUE(one_line_error(loom({"jobs", "-u", me, "-A"}), 2, "jobs", "not both"));

  EXPECT_EQ(listed("{id}", {"-a", "--name", "failed"}), (std::vector<std::string>{failed}));
  EXPECT_EQ(listed("{id}", {"--name", "failed"}), std::vector<std::string>{});  // active only
  EXPECT_EQ(listed("{id}", {"-f", "completed,sched"}), (std::vector<std::string>{pending, done}));

  // --since: active jobs, and those that ended since then (it implies -a).
  EXPECT_EQ(listed("{id}", {"--since", "-1h"}), all_ids);
  EXPECT_EQ(listed("{id}", {"--since", "today"}).size() >= 2u, true);
  EXPECT_EQ(listed("{id}", {"--since", "now"}), (std::vector<std::string>{pending, running}));
  // Between the ends of `done` and `failed`.
  double between = (job(done)["t_inactive"].get<double>() + job(failed)["t_inactive"].get<double>()) / 2;
  EXPECT_EQ(listed("{id}", {"--since", std::to_string(between)}), (std::vector<std::string>{pending, running, failed}));
  EXPECT_EQ(listed("{id}", {"--since", "-1h", "-f", "inactive"}), (std::vector<std::string>{failed, done}));
  EXPECT_TRUE(one_line_error(loom({"jobs", "--since", "+1h"}), 2, "jobs", "--since: cannot read"));
  EXPECT_TRUE(one_line_error(loom({"jobs", "--since", "2999-01-01"}), 2, "jobs", "in the future"));

  // Ids: a bad one is a usage error; an unknown one is reported, the
  // others listed.
  EXPECT_TRUE(one_line_error(loom({"jobs", "nosuch"}), 2, "jobs", "\"nosuch\" is not a job id"));
  auto r = loom({"jobs", "-n", "-o", "{id}", done, "123456789"});
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_EQ(r.out, done + "\n");
  EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_TRUE(r.err.starts_with("loom jobs: unknown job ")) << r.err;
  // -f still applies to jobs named by id.
  EXPECT_EQ(listed("{id}", {"-f", "running", done, running}), (std::vector<std::string>{running}));
  // --json keeps its shape: an array of jobs.
  auto js = loom({"jobs", "--json", done});
  auto arr = parse_json(js.out);
  ASSERT_TRUE(arr.ok() && arr->is_array() && arr->size() == 1u) << js.out;
  EXPECT_EQ((*arr)[0]["name"], "done");
}

// -c N shows the first N jobs of the listing, newest first, that pass
// every filter: where the job manager is asked for N only (no filter it
// does not apply itself), and where a filter here would leave out some
// of its newest N (a name, a result, ids named in any state).
TEST_F(JobsListing, CountShowsTheNewestNThatPassTheFilters) {
  EXPECT_EQ(listed("{id}", {"-a", "-c", "3"}), (std::vector<std::string>{pending, running, failed}));
  EXPECT_EQ(listed("{id}", {"-c", "1"}), (std::vector<std::string>{pending}));
  EXPECT_EQ(listed("{id}", {"-f", "inactive", "-c", "1"}), (std::vector<std::string>{failed}));
  EXPECT_EQ(listed("{id}", {"-a", "-c", "9"}), (std::vector<std::string>{pending, running, failed, done}));
  EXPECT_EQ(listed("{id}", {"-a", "-c", "0"}), (std::vector<std::string>{pending, running, failed, done}));
  EXPECT_EQ(listed("{id}", {"-a", "-A", "-c", "2"}), (std::vector<std::string>{pending, running}));
  EXPECT_EQ(listed("{id}", {"-a", "-u", std::to_string(::getuid() + 4242), "-c", "2"}), std::vector<std::string>{});

  EXPECT_EQ(listed("{id}", {"-a", "--name", "done", "-c", "1"}), (std::vector<std::string>{done}));
  EXPECT_EQ(listed("{id}", {"-f", "completed", "-c", "1"}), (std::vector<std::string>{done}));
  EXPECT_EQ(listed("{id}", {"-f", "completed,sched", "-c", "2"}), (std::vector<std::string>{pending, done}));
  EXPECT_EQ(listed("{id}", {"-f", "completed", "-c", "1", running, done}), (std::vector<std::string>{done}));
  EXPECT_EQ(listed("{id}", {"--since", "-1h", "-c", "3"}), (std::vector<std::string>{pending, running, failed}));
}

TEST_F(CliJobs, JobStatusExitsWithTheLargestExitCode) {
  start();
  std::string ok = submit_job({"-N1", "true"});
  std::string three = submit_job({"-N1", "sh", "-c", "exit 3"});
  std::string one = submit_job({"-N1", "false"});
  std::string held = submit_held({"-N1", "true"});
  wait_event(held, "alloc");
  ASSERT_EQ(loom({"cancel", held}).code, 0);
  auto r = loom({"job", "status", ok});
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out, "");
  r = loom({"job", "status", "-v", ok, three, one});
  EXPECT_EQ(r.code, 3) << show(r);
  EXPECT_EQ(r.out, ok + ": exited with exit code 0\n" + three + ": exited with exit code 3\n" + one +
                       ": exited with exit code 1\n");
  r = loom({"job", "status", "-v", held});
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_EQ(r.out, held + ": exception type=cancel\n");
  EXPECT_EQ(loom({"job", "status", "-e", "42", ok, held}).code, 42);
  r = loom({"job", "status", "--json", three});
  auto j = parse_json(r.out);
  ASSERT_TRUE(j.ok()) << r.out;
  EXPECT_EQ((*j)["status"], 3 << 8);
  // A signal N is 128+N.
  std::string killed = submit_job({"-N1", "sh", "-c", "kill -TERM $$"});
  r = loom({"job", "status", "-v", killed});
  EXPECT_EQ(r.code, 128 + SIGTERM) << show(r);
  EXPECT_EQ(r.out, killed + ": killed by signal 15 (Terminated)\n");
  EXPECT_TRUE(one_line_error(loom({"job", "status", "nosuch"}), 2, "job status", "not a job id"));
  EXPECT_TRUE(one_line_error(loom({"job", "status", "123456789"}), 1, "job status", "unknown job"));
}

}  // namespace
}  // namespace loom::test
