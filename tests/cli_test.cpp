// The command line's contract (README.md, "Errors"), through the real
// `loom` binary: every error is one line "loom CMD: TEXT" on stderr; a
// usage error (an unknown command or option, a missing argument, a bad
// value) exits 2, a runtime error 1; a mistyped command or option names
// the nearest one. And the forms of values the commands accept: time
// limits, output file templates, environment rules; several job ids where
// some are bad; drains and the resource listings.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
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
  void start() { ASSERT_TRUE(inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0"})); }
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

}  // namespace
}  // namespace loom::test
