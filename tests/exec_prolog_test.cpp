// A rank's prolog before its job's shells start, and the shell exit
// timeout that ends a job whose shell failed while others still ran
// (docs/protocols/exec.md).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "idset/idset.h"
#include "kit/exec.h"
#include "kit/instance.h"
#include "kit/jobs.h"
#include "msg/json.h"

namespace loom::test {
namespace {

// Prologs (and epilogs) that write what they saw to files of `dir`; a job
// for which the test made a file fail.ID.R, hold.ID.R or gate.ID.R has rank
// R's prolog exit 3, run until killed (a `sleep MARKER` in the background,
// its process group holding it, and `up` written once it is sleep), or wait
// on the FIFO `go` after writing to `up`.
class ExecProlog : public Exec {
 protected:
  std::string dir, marker = "601." + std::to_string(::getpid());
  void SetUp() override {
    char tmpl[] = "/tmp/loom-prolog-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    ASSERT_EQ(::mkfifo((dir + "/up").c_str(), 0600), 0);
    ASSERT_EQ(::mkfifo((dir + "/go").c_str(), 0600), 0);
    std::string at = dir + "/";
    std::string prolog =
        "echo $LOOM_JOB_ID $LOOM_JOB_RANKS $LOOM_PERILOG >> " + at + "prolog.$LOOM_RANK; " +
        "f=$LOOM_JOB_ID.$LOOM_RANK; if [ -e " + at + "fail.$f ]; then exit 3; fi; " + "if [ -e " + at +
        "hold.$f ]; then sleep " + marker + " & until [ \"$(cat /proc/$!/comm)\" = sleep ]; do :; done; echo up > " +
        at + "up; wait; fi; " + "if [ -e " + at + "gate.$f ]; then echo up > " + at + "up; read x < " + at + "go; fi";
    std::string epilog = "echo $LOOM_JOB_ID >> " + at + "epilog.$LOOM_RANK";
    ASSERT_TRUE(inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0", "--setconf", "exec.prolog=" + prolog,
                               "--setconf", "exec.prolog-timeout=4", "--setconf", "exec.epilog=" + epilog}));
  }
  void TearDown() override {
    Exec::TearDown();
    std::filesystem::remove_all(dir);
  }
  // A job submitted held, so that the test can name files after its id
  // before its prologs run; `setup(id)` makes them.
  template <typename F>
  std::string held_job(std::vector<std::string> args, F setup) {
    args.insert(args.begin(), "--urgency=0");
    std::string id = submit_job(args);
    setup(id);
    auto r = loom({"job", "urgency", id, "default"});
    EXPECT_EQ(r.code, 0) << show(r);
    return id;
  }
  void touch(const std::string& name) { std::ofstream(dir + "/" + name) << ""; }
  // Waits until a prolog has written to `up` (it then runs, or waits on `go`).
  void wait_up() {
    auto r = run_cmd({"/bin/cat", dir + "/up"}, {}, 20);
    ASSERT_EQ(r.code, 0) << show(r);
  }
  std::vector<Json> exec_events(const std::string& id) { return eventlog(id, "exec"); }
  static std::set<int> ranks_of(const std::vector<Json>& entries) {
    std::set<int> out;
    for (const auto& e : entries) out.insert(e["context"].value("rank", -1));
    return out;
  }
  std::set<std::string> lines_of(const std::string& file) {
    std::ifstream in(dir + "/" + file);
    std::set<std::string> out;
    for (std::string line; std::getline(in, line);) out.insert(line);
    return out;
  }
  // Whether rank R's epilog ran for job `id`.
  bool epilog_ran(const std::string& id, int rank) { return lines_of("epilog." + std::to_string(rank)).count(id); }
};

TEST_F(ExecProlog, EveryRankRunsItsPrologBeforeAnyShellStarts) {
  std::string id = submit_job({"-N4", "true"});
  wait_event(id, "clean");
  EXPECT_EQ(job(id)["result"], "COMPLETED");
  auto log = exec_events(id);
  EXPECT_EQ(ranks_of(named(log, "prolog-start")), (std::set<int>{0, 1, 2, 3}));
  auto finished = named(log, "prolog-finish");
  EXPECT_EQ(ranks_of(finished), (std::set<int>{0, 1, 2, 3}));
  for (const auto& e : finished) EXPECT_EQ(e["context"]["status"], 0) << e;
  // Every prolog had ended before the first shell started.
  size_t last_prolog = 0, first_shell = log.size();
  for (size_t i = 0; i < log.size(); ++i) {
    if (log[i]["name"] == "prolog-finish") last_prolog = i;
    if (log[i]["name"] == "shell-start" && first_shell == log.size()) first_shell = i;
  }
  EXPECT_LT(last_prolog, first_shell);
  // The job's id and ranks, and which perilog it is.
  for (int r = 0; r < 4; ++r)
    EXPECT_EQ(lines_of("prolog." + std::to_string(r)), (std::set<std::string>{id + " 0-3 prolog"}));
}

TEST_F(ExecProlog, AFailedPrologFailsTheJobDrainsItsRankAndTheEpilogsStillRun) {
  std::string id = held_job({"-N4", "true"}, [&](const std::string& j) { touch("fail." + j + ".2"); });
  wait_event(id, "clean");
  auto log = eventlog(id);
  EXPECT_TRUE(named(log, "start").empty()) << "no shell may start";
  auto ex = named(log, "exception");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["type"], "prolog");
  EXPECT_EQ(ex[0]["context"]["severity"], 0);
  EXPECT_EQ(ex[0]["context"]["note"], "rank 2: prolog exited with 3");
  EXPECT_EQ(job(id)["result"], "FAILED");
  auto exec = exec_events(id);
  EXPECT_TRUE(named(exec, "shell-start").empty());
  auto finished = named(exec, "prolog-finish");
  ASSERT_EQ(ranks_of(finished), (std::set<int>{0, 1, 2, 3}));
  // Rank 2's failed; the others ended, or were killed once it had.
  for (const auto& e : finished) {
    int st = e["context"]["status"];
    if (e["context"]["rank"] == 2) {
      EXPECT_EQ(st, 3 << 8) << e;
    } else {
      EXPECT_TRUE(st == 0 || st == SIGKILL) << e;
    }
  }
  for (int r = 0; r < 4; ++r) EXPECT_TRUE(epilog_ran(id, r)) << "rank " << r;
  Json res = resources();
  EXPECT_EQ(res["drained"]["ranks"], "2") << res;
  EXPECT_EQ(res["drain"][0]["reason"], "prolog failed for job " + id) << res;
  EXPECT_EQ(res["allocated"].value("ranks", "?"), "") << res;
}

TEST_F(ExecProlog, APrologThatTimesOutIsKilledAndDrainsItsRank) {
  std::string id = held_job({"-N2", "true"}, [&](const std::string& j) { touch("hold." + j + ".1"); });
  wait_up();
  auto running = processes_with(marker);
  EXPECT_EQ(running.size(), 1u);
  wait_event(id, "clean");
  expect_all_exit(running);  // what the prolog started went with it
  auto ex = named(eventlog(id), "exception");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["type"], "prolog");
  EXPECT_EQ(ex[0]["context"]["note"], "rank 1: prolog timed out");
  auto finished = named(exec_events(id), "prolog-finish");
  ASSERT_EQ(finished.size(), 2u);
  EXPECT_EQ(finished[1]["context"], (Json{{"rank", 1}, {"status", SIGKILL}, {"timeout", true}}));
  Json res = resources();
  EXPECT_EQ(res["drained"]["ranks"], "1") << res;
  EXPECT_EQ(res["drain"][0]["reason"], "prolog timed out for job " + id) << res;
}

TEST_F(ExecProlog, ACancelDuringThePrologKillsItAndTheEpilogsStillRun) {
  std::string id = held_job({"-N4", "true"}, [&](const std::string& j) { touch("hold." + j + ".1"); });
  wait_up();
  auto running = processes_with(marker);
  EXPECT_EQ(running.size(), 1u);
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  wait_event(id, "clean");
  expect_all_exit(running);
  auto log = eventlog(id);
  EXPECT_TRUE(named(log, "start").empty());
  auto ex = named(log, "exception");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["type"], "cancel");
  EXPECT_EQ(job(id)["result"], "CANCELED");
  auto exec = exec_events(id);
  for (const auto& e : named(exec, "prolog-finish")) {
    if (e["context"]["rank"] == 1) {
      EXPECT_EQ(e["context"]["status"], SIGKILL) << e;
    }
  }
  EXPECT_TRUE(named(exec, "shell-start").empty());
  for (int r = 0; r < 4; ++r) EXPECT_TRUE(epilog_ran(id, r)) << "rank " << r;
  // A prolog that was killed is no failure of its rank.
  Json res = resources();
  EXPECT_EQ(res["drained"].value("ranks", "?"), "") << res;
  EXPECT_EQ(res["allocated"].value("ranks", "?"), "") << res;
}

TEST_F(ExecProlog, ANonFatalExceptionDuringThePrologDoesNotStopIt) {
  std::string id = held_job({"-N2", "true"}, [&](const std::string& j) { touch("gate." + j + ".0"); });
  wait_up();
  uint64_t n = num(id);
  auto raised = loom(
      {"rpc", "job-manager.raise", Json{{"id", n}, {"severity", 1}, {"type", "test"}, {"note", "just so"}}.dump()});
  ASSERT_EQ(raised.code, 0) << show(raised);
  wait_event(id, "exception");
  auto go = run_cmd({"/bin/sh", "-c", "echo go > " + dir + "/go"}, {}, 20);
  ASSERT_EQ(go.code, 0) << "the prolog no longer waits: " << show(go);
  wait_event(id, "clean");
  EXPECT_EQ(job(id)["result"], "COMPLETED");
  EXPECT_EQ(named(eventlog(id), "start").size(), 1u);
  EXPECT_EQ(ranks_of(named(exec_events(id), "shell-start")), (std::set<int>{0, 1}));
}

// exec.shell-exit-timeout: 1 s here.
class ExecShellExit : public Exec {
 protected:
  std::string marker = "602." + std::to_string(::getpid());
  void SetUp() override {
    ASSERT_TRUE(inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0", "--setconf", "exec.shell-exit-timeout=1"}));
  }
  // The job's exception once it has ended.
  Json only_exception(const std::string& id) {
    wait_event(id, "clean");
    auto ex = named(eventlog(id), "exception");
    EXPECT_EQ(ex.size(), 1u);
    return ex.empty() ? Json::object() : ex[0]["context"];
  }
};

TEST_F(ExecShellExit, AShellThatFailsWhileOthersRunHasThemKilledAfterTheTimeout) {
  std::string id = submit_job({"-N3", "-t", "1h", "sh", "-c", "[ $LOOM_RANK = 1 ] && exit 3; exec sleep " + marker});
  wait_event(id, "start");
  Json ex = only_exception(id);
  EXPECT_EQ(ex["type"], "exec");
  EXPECT_EQ(ex["severity"], 0);
  EXPECT_EQ(ex["note"],
            "rank 1: its shell exited with 3 and the other ranks still ran 1 s later "
            "(exec.shell-exit-timeout)");
  expect_all_exit(processes_with(marker));
  EXPECT_EQ(job(id)["result"], "FAILED");
  EXPECT_EQ(resources()["allocated"].value("ranks", "?"), "");
}

TEST_F(ExecShellExit, AShellKilledWhileOthersRunHasThemKilledAfterTheTimeout) {
  std::string id = submit_job({"-N2", "-t", "1h", "sh", "-c", "exec sleep " + marker});
  wait_event(id, "start");
  pid_t shell = shell_of(id, 1);
  ASSERT_GT(shell, 0) << "no shell of the job on rank 1";
  ASSERT_EQ(::kill(shell, SIGKILL), 0);
  Json ex = only_exception(id);
  EXPECT_EQ(ex["note"],
            "rank 1: its shell was killed by signal 9 and the other ranks still ran 1 s later "
            "(exec.shell-exit-timeout)");
  expect_all_exit(processes_with(marker));
}

TEST_F(ExecShellExit, AShellThatExitsWellLeavesTheOthersRunning) {
  std::string id = submit_job({"-N2", "sh", "-c", "[ $LOOM_RANK = 1 ] && exit 0; exec sleep " + marker});
  auto seen = loom({"kvs", "--namespace=job-" + std::to_string(num(id)), "eventlog", "wait-event", "-t", "20", "-m",
                    "rank=1", "exec.eventlog", "shell-exit"});
  ASSERT_EQ(seen.code, 0) << show(seen);
  // Twice the timeout: no exception comes.
  auto ex = loom({"job", "wait-event", "-t", "2", id, "exception"});
  EXPECT_NE(ex.code, 0) << show(ex);
  EXPECT_EQ(processes_with(marker).size(), 1u);
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  wait_event(id, "clean");
}

// A crash of every broker while the prologs run, then a restart on the same
// state directory: the job has not started, so it starts again, and its
// prologs run again once those the dead brokers left are killed.
class ExecPrologCrash : public Exec {
 protected:
  std::string dir, marker = "603." + std::to_string(::getpid()), prolog_arg;
  void SetUp() override {
    char tmpl[] = "/tmp/loom-prolog-crash-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    for (const char* f : {"/up.0", "/up.1"}) ASSERT_EQ(::mkfifo((dir + f).c_str(), 0600), 0);
    std::string at = dir + "/";
    std::string prolog = "echo $LOOM_RANK >> " + at + "ran; if [ -e " + at + "again ]; then exit 0; fi; sleep " +
                         marker + " & until [ \"$(cat /proc/$!/comm)\" = sleep ]; do :; done; echo up > " + at +
                         "up.$LOOM_RANK; wait";
    prolog_arg = "exec.prolog=" + prolog;
    ASSERT_TRUE(inst.start(2, args()));
  }
  void TearDown() override {
    Exec::TearDown();
    std::filesystem::remove_all(dir);
  }
  std::vector<std::string> args() {
    return {"--cores-per-rank=2", "--gpus-per-rank=0", "--state-dir=" + dir + "/state", "--setconf", prolog_arg};
  }
  void crash() { crash_instance(inst); }
};

TEST_F(ExecPrologCrash, PrologsRunningThroughACrashAreKilledAndRunAgain) {
  std::string id = submit_job({"-N2", "true"});
  auto up = run_cmd({"/bin/cat", dir + "/up.0", dir + "/up.1"}, {}, 20);
  ASSERT_EQ(up.code, 0) << show(up);
  auto old = processes_with(marker);
  ASSERT_EQ(old.size(), 2u);
  crash();
  std::ofstream(dir + "/again") << "";
  ASSERT_TRUE(inst.start(2, args()));
  expect_all_exit(old);  // the prologs' background processes too
  wait_event(id, "clean");
  EXPECT_EQ(job(id)["result"], "COMPLETED") << show(loom({"job", "eventlog", id}));
  // (The first run's entries went with the brokers if they came in the
  // tenth of a second before the crash.)
  auto exec = loom({"job", "eventlog", "--path=exec", id});
  for (const char* what : {"prolog-start rank=0", "prolog-start rank=1", "prolog-finish rank=0 status=0",
                           "prolog-finish rank=1 status=0"}) {
    EXPECT_NE(exec.out.find(what), std::string::npos) << what << " in\n" << exec.out;
  }
  // Each rank's prolog ran twice.
  std::ifstream in(dir + "/ran");
  std::multiset<std::string> ranks;
  for (std::string line; std::getline(in, line);) ranks.insert(line);
  EXPECT_EQ(ranks, (std::multiset<std::string>{"0", "0", "1", "1"}));
}

// A job cancelled during its prologs whose epilogs were running when every
// broker was killed: it never started, yet its ranks are not simply freed
// at the restart. job-exec is asked to see to them, runs the epilogs again
// (once those the dead brokers left are killed) and releases each rank when
// its epilog has ended.
class ExecEpilogCrash : public Exec {
 protected:
  std::string dir, marker = "604." + std::to_string(::getpid()), prolog_marker = "605." + std::to_string(::getpid());
  std::vector<std::string> perilogs;
  void SetUp() override {
    char tmpl[] = "/tmp/loom-epilog-crash-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    for (const char* f : {"/up.0", "/up.1", "/eup.0", "/eup.1"}) ASSERT_EQ(::mkfifo((dir + f).c_str(), 0600), 0);
    std::string at = dir + "/";
    auto hold = [&](const std::string& m, const std::string& fifo) {
      return "sleep " + m + " & until [ \"$(cat /proc/$!/comm)\" = sleep ]; do :; done; echo up > " + at + fifo +
             ".$LOOM_RANK; wait";
    };
    std::string again = "if [ -e " + at + "again ]; then exit 0; fi; ";
    perilogs = {"--setconf", "exec.prolog=" + again + hold(prolog_marker, "up"), "--setconf",
                "exec.epilog=echo $LOOM_RANK >> " + at + "ran; " + again + hold(marker, "eup")};
    ASSERT_TRUE(inst.start(2, args()));
  }
  void TearDown() override {
    Exec::TearDown();
    std::filesystem::remove_all(dir);
  }
  std::vector<std::string> args() {
    std::vector<std::string> a = {"--cores-per-rank=2", "--gpus-per-rank=0", "--state-dir=" + dir + "/state"};
    a.insert(a.end(), perilogs.begin(), perilogs.end());
    return a;
  }
  void cat(const std::vector<std::string>& fifos) {
    std::vector<std::string> cmd{"/bin/cat"};
    for (const auto& f : fifos) cmd.push_back(dir + "/" + f);
    auto r = run_cmd(cmd, {}, 20);
    ASSERT_EQ(r.code, 0) << show(r);
  }
};

TEST_F(ExecEpilogCrash, EpilogsOfAJobCancelledBeforeItStartedRunAgainAfterACrash) {
  std::string id = submit_job({"-N2", "true"});
  cat({"up.0", "up.1"});
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  cat({"eup.0", "eup.1"});
  auto old = processes_with(marker);
  ASSERT_EQ(old.size(), 2u);
  crash_instance(inst);
  std::ofstream(dir + "/again") << "";
  ASSERT_TRUE(inst.start(2, args()));
  // (Each rank is first asked for a shell the exec eventlog may not show:
  // there is none, after the launcher's wait for one to connect.)
  wait_event(id, "clean");
  expect_all_exit(old);
  auto log = eventlog(id);
  EXPECT_TRUE(named(log, "start").empty());
  EXPECT_EQ(job(id)["result"], "CANCELED");
  // Released by job-exec, rank by rank, after the epilogs ran again.
  auto released = named(log, "release");
  ASSERT_FALSE(released.empty()) << show(loom({"job", "eventlog", id}));
  EXPECT_TRUE(released.back()["context"]["final"].get<bool>());
  // Each rank's epilog had ended, the second time, before it was released.
  auto finished = named(eventlog(id, "exec"), "epilog-finish");
  ASSERT_FALSE(finished.empty());
  for (const auto& e : finished) {
    uint32_t rank = e["context"]["rank"].get<uint32_t>();
    auto has_rank = [&](const Json& rel) {
      std::string ranks = rel["context"]["ranks"].get<std::string>();
      auto set = IdSet::parse(ranks);
      return ranks == "all" || (set.ok() && set->contains(rank));
    };
    auto rel = std::find_if(released.begin(), released.end(), has_rank);
    ASSERT_NE(rel, released.end()) << "rank " << rank << " was not released";
    EXPECT_LE(e["timestamp"].get<double>(), (*rel)["timestamp"].get<double>()) << "rank " << rank;
  }
  std::ifstream in(dir + "/ran");
  std::multiset<std::string> ranks;
  for (std::string line; std::getline(in, line);) ranks.insert(line);
  EXPECT_EQ(ranks, (std::multiset<std::string>{"0", "0", "1", "1"}));
  auto exec = loom({"job", "eventlog", "--path=exec", id});
  for (const char* what : {"epilog-finish rank=0 status=0", "epilog-finish rank=1 status=0"}) {
    EXPECT_NE(exec.out.find(what), std::string::npos) << what << " in\n" << exec.out;
  }
  EXPECT_EQ(exec.out.find("shell-start"), std::string::npos) << exec.out;
  Json res = resources();
  EXPECT_EQ(res["allocated"].value("ranks", "?"), "") << res;
  EXPECT_EQ(res["drained"].value("ranks", "?"), "") << res;
  // The instance runs jobs on both ranks again.
  EXPECT_EQ(loom({"run", "-N2", "true"}).code, 0);
}

}  // namespace
}  // namespace loom::test
