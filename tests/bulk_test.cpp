// Bulk control end to end (docs/commands.md): `loom cancel --all` and its
// filters, `loom submit --cc=IDSET%N` (at most N of the set past DEPEND,
// so at most N running), and the progress lines of `loom submit --cc` and
// `loom job wait --all`, shown only on a terminal. Jobs run in test
// execution mode: held ones wait for job-exec.override (finish()), as in
// depend_test.cpp; that a job is still held is read after settle().
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "kit/jobs.h"

namespace loom::test {
namespace {

constexpr uint32_t kOtherUid = 4242;
const Env kAsUser = {{"LOOM_HANDLE_USERID", std::to_string(kOtherUid)}, {"LOOM_HANDLE_ROLEMASK", "2"}};

class Bulk : public JobsFixture {
 protected:
  // `loom submit ARGS` of several jobs: their ids in order.
  Names submit_many(std::vector<std::string> args) {
    args.insert(args.begin(), "submit");
    auto r = loom(args);
    EXPECT_EQ(r.code, 0) << show(r);
    EXPECT_EQ(r.err, "") << "a progress line where there is no terminal";
    return r.out_lines();
  }
  // The jobs of `ids` in each state, once the scheduler had every chance.
  std::vector<std::string> states(const Names& ids) {
    settle();
    auto r = loom({"jobs", "-a", "--json"});
    auto all = parse_json(r.out);
    std::vector<std::string> out;
    for (const auto& id : ids) {
      std::string st = "?";
      for (auto& x : all.value()) {
        if (x["id"].get<uint64_t>() == parse_jobid(id).value().value()) st = x["state"].get<std::string>();
      }
      out.push_back(st);
    }
    return out;
  }
  static size_t count(const std::vector<std::string>& v, const std::string& s) {
    return static_cast<size_t>(std::count(v.begin(), v.end(), s));
  }
  double time_of(const std::string& id, const std::string& event) {
    for (auto& e : eventlog(id)) {
      if (e["name"] == event) return e["timestamp"].get<double>();
    }
    ADD_FAILURE() << id << " has no " << event;
    return 0;
  }
  // The most of `ids` that held resources at once, from their eventlogs:
  // from alloc to clean (a job frees its resources before clean).
  size_t most_at_once(const Names& ids) {
    std::vector<std::pair<double, int>> edges;
    for (const auto& id : ids) {
      edges.emplace_back(time_of(id, "alloc"), 1);
      edges.emplace_back(time_of(id, "clean"), -1);
    }
    std::sort(edges.begin(), edges.end());  // at a tie, an end before a start
    int now = 0, most = 0;
    for (auto& [t, d] : edges) most = std::max(most, now += d);
    return static_cast<size_t>(most);
  }
};

TEST_F(Bulk, CancelAllCancelsWhatItsFiltersMatchAndDryRunCancelsNothing) {
  start();
  std::string run_a = hold({"--job-name=a"});
  std::string run_b = hold({"--job-name=b"});
  wait_event(run_a, "alloc");
  wait_event(run_b, "alloc");
  std::string pending = hold({"--job-name=a", "--urgency=0"});
  // Another user's (no test execution for them: held, it never runs).
  auto theirs_r = loom({"submit", "--urgency=0", "true"}, kAsUser);
  ASSERT_EQ(theirs_r.code, 0) << show(theirs_r);
  std::string theirs = trim(theirs_r.out);

  auto dry = loom({"cancel", "--all", "--dry-run"});
  ASSERT_EQ(dry.code, 0) << show(dry);
  EXPECT_EQ(dry.out_lines(), (Names{run_a, run_b, pending}));
  EXPECT_EQ(dry.err, "loom cancel: would cancel 3 jobs\n");
  EXPECT_EQ(states({run_a, run_b, pending}), (std::vector<std::string>{"RUN", "RUN", "SCHED"}));

  auto r = loom({"cancel", "--all", "-S", "pending"});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.err, "loom cancel: canceled 1 jobs\n");
  wait_event(pending, "clean");
  EXPECT_EQ(states({run_a, run_b}), (std::vector<std::string>{"RUN", "RUN"}));

  r = loom({"cancel", "--all", "--name=b", "-m", "enough"});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.err, "loom cancel: canceled 1 jobs\n");
  wait_event(run_b, "clean");
  EXPECT_EQ(job(run_b)["exception"]["note"], "enough");
  EXPECT_EQ(state(run_a), "RUN");

  // Another user's jobs are the owner's to cancel only: an error, nothing
  // canceled.
  for (const std::string& user : Names{"all", std::to_string(::getuid())}) {
    r = loom({"cancel", "--all", "-u", user}, kAsUser);
    EXPECT_EQ(r.code, 1) << show(r);
    EXPECT_EQ(r.err, "loom cancel: only the instance owner may cancel other users' jobs\n");
  }
  EXPECT_EQ(state(run_a), "RUN");
  // A user's own --all leaves the others' jobs alone.
  r = loom({"cancel", "--all"}, kAsUser);
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.err, "loom cancel: canceled 1 jobs\n");
  wait_event(theirs, "clean");
  EXPECT_EQ(state(run_a), "RUN");

  // The owner, for every user, by uid.
  theirs_r = loom({"submit", "--urgency=0", "true"}, kAsUser);
  ASSERT_EQ(theirs_r.code, 0) << show(theirs_r);
  std::string theirs2 = trim(theirs_r.out);
  r = loom({"cancel", "--all", "-u", std::to_string(kOtherUid)});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.err, "loom cancel: canceled 1 jobs\n");
  wait_event(theirs2, "clean");
  r = loom({"cancel", "--all", "-u", "all", "-S", "run"});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.err, "loom cancel: canceled 1 jobs\n");
  wait_event(run_a, "clean");
}

TEST_F(Bulk, CancelRefusesFiltersWithoutAllAndStatesThatAreNotActive) {
  start();
  struct Case {
    Names args;
    std::string err;
  };
  for (const auto& c : std::vector<Case>{
           {{"cancel", "-S", "run", "ƒ1"}, "-u, -S, --name and --dry-run go with --all"},
           {{"cancel", "--dry-run", "ƒ1"}, "-u, -S, --name and --dry-run go with --all"},
           {{"cancel", "--all", "-S", "completed"}, "-S: \"completed\" is not a list of active states"},
           {{"cancel", "--all", "-S", "bogus"}, "-S: \"bogus\" is not a list of active states"},
           {{"cancel", "--all", "-u", "no-such-user-here"}, "-u: no user \"no-such-user-here\""},
       }) {
    auto r = loom(c.args);
    EXPECT_EQ(r.code, 2) << show(r);
    EXPECT_EQ(r.err.rfind("loom cancel: " + c.err, 0), 0u) << show(r);
    EXPECT_EQ(r.err_lines().size(), 1u) << show(r);
  }
  // Several ids where one is bad: the good ones are canceled, the bad one reported.
  std::string a = hold({"--urgency=0"});
  auto r = loom({"cancel", a, "nosuch"});
  EXPECT_EQ(r.code, 1) << show(r);
  wait_event(a, "clean");
}

TEST_F(Bulk, CcLimitRunsAtMostNOfTheSetAtOnceInSubmitOrder) {
  start();
  Names ids = submit_many({"--cc=1-6%2", "--setattr=exec.test.override=true", "true"});
  ASSERT_EQ(ids.size(), 6u);
  wait_event(ids[0], "alloc");
  wait_event(ids[1], "alloc");
  // Room for all six (8 cores), yet two run; the others say why they wait.
  auto st = states(ids);
  EXPECT_EQ(st, (std::vector<std::string>{"RUN", "RUN", "DEPEND", "DEPEND", "DEPEND", "DEPEND"}));
  auto waiting = job(ids[2]);
  EXPECT_EQ(waiting["dependencies"], Json::array({"cc_limit:" + ids[0] + ":2"}));
  auto listing = loom({"jobs", "-o", "{id.f58} {info}"});
  EXPECT_NE(listing.out.find(ids[5] + " array limit: 2 running"), std::string::npos) << listing.out;
  // Each end lets the next in submit order in, never more than two.
  for (size_t i = 0; i < ids.size(); ++i) {
    finish(ids[i]);
    st = states(ids);
    EXPECT_LE(count(st, "RUN"), 2u);
    EXPECT_LE(6 - count(st, "DEPEND") - count(st, "INACTIVE"), 2u);
    for (size_t k = i + 3; k < ids.size(); ++k) EXPECT_EQ(st[k], "DEPEND") << k;
  }
  EXPECT_EQ(count(states(ids), "INACTIVE"), 6u);
  for (const auto& id : ids) EXPECT_EQ(job(id)["result"], "COMPLETED") << id;
  EXPECT_EQ(most_at_once(ids), 2u);
}

TEST_F(Bulk, CcLimitHoldsForJobsThatEndOnTheirOwn) {
  start();
  Names ids = submit_many({"--cc=1-8%3", "--setattr=exec.test.run_duration=0.05", "true"});
  ASSERT_EQ(ids.size(), 8u);
  auto r = loom({"job", "wait", "--all"});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.err, "");
  for (const auto& id : ids) EXPECT_EQ(job(id)["result"], "COMPLETED") << id;
  EXPECT_LE(most_at_once(ids), 3u);
  // By hand, through the jobspec: the same limit for any way of submitting.
  std::string head = hold({"--setattr=system.cc_limit={\"max\":1}"});
  std::string next = hold({"--setattr=system.cc_limit={\"max\":1,\"group\":\"" + head + "\"}"});
  wait_event(head, "alloc");
  EXPECT_EQ(states({next})[0], "DEPEND");
  finish(head);
  finish(next);
  auto bad = loom({"submit", "--setattr=system.cc_limit={\"max\":0}", "true"});
  EXPECT_EQ(bad.code, 1) << show(bad);
  EXPECT_NE(bad.err.find("cc_limit.max must be"), std::string::npos) << show(bad);
  bad = loom({"submit", "--cc=1-4%0", "true"});
  EXPECT_EQ(bad.code, 2) << show(bad);
  EXPECT_NE(bad.err.find("--cc: after %"), std::string::npos) << show(bad);
}

TEST_F(Bulk, CcLimitSurvivesARestart) {
  auto dir = std::filesystem::temp_directory_path() / ("loom-bulk-restart-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  start({"--state-dir", dir.string()});
  Names ids = submit_many({"--cc=1-4%1", "--setattr=exec.test.override=true", "true"});
  ASSERT_EQ(ids.size(), 4u);
  wait_event(ids[0], "alloc");
  EXPECT_EQ(states(ids), (std::vector<std::string>{"RUN", "DEPEND", "DEPEND", "DEPEND"}));
  // The running one ends with the stop; one more, and only one, runs after.
  ASSERT_EQ(inst.stop(), 0);
  ASSERT_TRUE(inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0", "--state-dir", dir.string()}));
  wait_event(ids[1], "alloc");
  EXPECT_EQ(states(ids), (std::vector<std::string>{"INACTIVE", "RUN", "DEPEND", "DEPEND"}));
  finish(ids[1]);
  finish(ids[2]);
  EXPECT_EQ(states({ids[3]})[0], "RUN");
  finish(ids[3]);
  ASSERT_EQ(inst.stop(), 0);
  std::filesystem::remove_all(dir);
}

// Steps (docs/steps.md) are placed by the job manager, not the
// scheduler, but only once they leave DEPEND: the limit holds them too.
TEST_F(Bulk, CcLimitHoldsStepsOfAnAllocationToo) {
  start();
  auto dir = std::filesystem::temp_directory_path() / ("loom-bulk-steps-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::string gate = (dir / "gate").string();
  ASSERT_EQ(::mkfifo(gate.c_str(), 0600), 0);
  std::string script = (dir / "job.sh").string();
  std::ofstream(script) << "#!/bin/sh\nread go < " << gate << "\n";
  ::chmod(script.c_str(), 0755);
  auto b = loom({"batch", "-N2", "--output=" + (dir / "job.out").string(), script});
  ASSERT_EQ(b.code, 0) << show(b);
  std::string a = trim(b.out);
  wait_event(a, "start");
  auto r = loom({"submit", "--cc=1-3%1", "--setattr=exec.test.override=true", "true"}, {{"LOOM_ALLOCATION", a}});
  ASSERT_EQ(r.code, 0) << show(r);
  Names ids = r.out_lines();
  ASSERT_EQ(ids.size(), 3u);
  wait_event(ids[0], "alloc");
  EXPECT_EQ(states(ids), (std::vector<std::string>{"RUN", "DEPEND", "DEPEND"}));
  finish(ids[0]);
  wait_event(ids[1], "alloc");
  EXPECT_EQ(states(ids), (std::vector<std::string>{"INACTIVE", "RUN", "DEPEND"}));
  finish(ids[1]);
  finish(ids[2]);
  int fd = ::open(gate.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "go\n", 3), 3);
  ::close(fd);
  wait_event(a, "clean");
  EXPECT_EQ(job(a)["result"], "COMPLETED");
  std::filesystem::remove_all(dir);
}

// The progress lines go to a terminal only: with script(1) giving the
// command one, the line is there; without, stderr is empty (above).
TEST_F(Bulk, ProgressLinesOnATerminal) {
  std::string script;
  for (const char* p : {"/usr/bin/script", "/bin/script"}) {
    if (script.empty() && ::access(p, X_OK) == 0) script = p;
  }
  if (script.empty()) {
    GTEST_SKIP() << "script(1) of util-linux is not installed: no terminal to test the progress lines on";
  }
  start();
  Env env = {{"LOOM_URI", inst.uri()}, {"LOOM_HANDLE_USERID", ""}, {"LOOM_HANDLE_ROLEMASK", ""}};
  auto r = run_cmd(
      {script, "-qec", bin("loom") + " submit --cc=1-5 --setattr=exec.test.override=true true", "/dev/null"}, env);
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_NE(r.out.find("submit [##############################] 5/5 jobs"), std::string::npos) << r.out;
  Names ids;
  for (auto& line : r.out_lines()) {
    // The ids, each on a line of its own once the progress line is erased.
    auto at = line.find("\u0192");
    if (at == std::string::npos) continue;
    std::string id = line.substr(at);
    std::erase(id, '\r');  // script(1) ends lines with \r\n
    ASSERT_TRUE(parse_jobid(id).ok()) << id;
    ids.push_back(id);
  }
  ASSERT_EQ(ids.size(), 5u) << r.out;
  Background waiting({script, "-qec", bin("loom") + " job wait --all", "/dev/null"}, env);
  ASSERT_TRUE(waiting.wait_for_out("wait [..............................] 0/5 jobs")) << waiting.so_far().out;
  for (const auto& id : ids) finish(id);
  r = waiting.finish();
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_NE(r.out.find("wait [##############################] 5/5 jobs"), std::string::npos) << r.out;
  // Erased at the end.
  EXPECT_NE(r.out.find("\r\033[K"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace loom::test
