// Real execution end to end (docs/protocols/exec.md, docs/security.md): job
// shells and their tasks, output byte for byte, attach and Ctrl-C, the
// shell fork server, exit codes, time limits and cancel of real tasks, the
// exec and output eventlogs and who may read them, thousands of tasks.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/fluid.h"
#include "kit/client.h"
#include "kit/exec.h"
#include "kit/instance.h"
#include "kit/jobs.h"
#include "msg/json.h"

namespace loom::test {
namespace {

TEST_F(Exec, RealJobRunsItsTasksOnEveryRankAndReleasesRankByRank) {
  // Each task exits with the rank it runs on: the largest is 3, so the
  // job finishes with wait status 768 and `loom run` exits 3.
  auto r = loom({"run", "-N4", "-n8", "sh", "-c",
                 "echo task $LOOM_TASK_RANK of $LOOM_JOB_SIZE pmi $PMI_RANK/$PMI_SIZE; exit $LOOM_RANK"});
  EXPECT_EQ(r.code, 3) << show(r);
  auto ls = loom({"jobs", "-a", "--json"});
  Json jobs = parse_json(ls.out).value();
  ASSERT_EQ(jobs.size(), 1u);
  std::string id = std::to_string(jobs[0]["id"].get<uint64_t>());
  auto log = eventlog(id);
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], 768);
  auto rel = named(log, "release");
  ASSERT_EQ(rel.size(), 4u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(rel[i]["context"]["final"], false) << rel[i];
  EXPECT_EQ(rel[3]["context"]["final"], true);
  Names order;
  for (auto& e : log) order.push_back(e["name"].get<std::string>());
  EXPECT_LT(std::find(order.begin(), order.end(), "finish") - order.begin(),
            std::find(order.begin(), order.end(), "free") - order.begin());
  // The output eventlog was linked into the job's directory: 8 tasks, one
  // line each, every task rank once.
  auto out = loom({"kvs", "get", "job." + id + ".guest.output"});
  ASSERT_EQ(out.code, 0) << show(out);
  std::set<std::string> lines;
  for (auto& line : out.out_lines()) {
    auto e = parse_json(line);
    if (e.ok() && (*e)["name"] == "data") lines.insert((*e)["context"]["data"].get<std::string>());
  }
  for (int t = 0; t < 8; ++t) {
    std::string n = std::to_string(t);
    EXPECT_TRUE(lines.count("task " + n + " of 8 pmi " + n + "/8\n")) << t;
  }
  EXPECT_EQ(allocated_ranks(), "");
}

TEST_F(Exec, RunPrintsWhatTheTasksWroteByteForByte) {
  // 300 KB of every byte value (lines far longer than a chunk, not UTF-8)
  // and a few thousand short lines.
  char tmpl[] = "/tmp/loom-exec-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string bin;
  for (uint32_t i = 0; i < 300000; ++i) bin += static_cast<char>((i * 7919u) % 256);
  std::ofstream(dir + "/bin") << bin;
  auto r = loom({"run", "cat", dir + "/bin"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.size(), bin.size());
  EXPECT_TRUE(r.out == bin) << "binary output differs";
  auto lines = loom({"run", "seq", "1", "5000"});
  ASSERT_EQ(lines.code, 0) << lines.err;
  std::string want;
  for (int i = 1; i <= 5000; ++i) want += std::to_string(i) + "\n";
  EXPECT_TRUE(lines.out == want) << "got " << lines.out.size() << " bytes, want " << want.size();
  std::filesystem::remove_all(dir);
}

// A job's output eventlog is read back whole, in one message: what a job
// writes past 16 MiB (a share per rank) is dropped with a note, so that
// the rest can always be read; --output keeps it all. On 4 ranks, task 0
// writes past its 4 MiB share; the others write nothing.
TEST_F(Exec, OutputPastTheEventlogsShareIsDroppedWithANote) {
  std::string id =
      submit_job({"-N4", "sh", "-c", "[ $LOOM_TASK_RANK = 0 ] && head -c 4500000 /dev/zero | tr '\\0' x; true"});
  auto r = loom({"job", "attach", id});
  EXPECT_EQ(r.code, 0) << r.err;
  // As stored, each line a JSON entry: most of the 4 MiB, not all.
  EXPECT_GT(r.out.size(), 3500000u);
  EXPECT_LT(r.out.size(), 4u << 20);
  EXPECT_EQ(r.out.find_first_not_of('x'), std::string::npos);
  EXPECT_EQ(r.err,
            "loom-shell: output past 4096 KiB on this rank is dropped (a job's output holds 16 MiB; --output "
            "writes it all to a file)\n");
}

TEST_F(Exec, AttachShowsLabelledOutputOfARunningJob) {
  std::string id = submit_job({"-N2", "sh", "-c", "echo hello from $LOOM_TASK_RANK; echo oops >&2"});
  auto r = loom({"job", "attach", "-l", id});
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_NE(r.out.find("0: hello from 0\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1: hello from 1\n"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("0: oops\n"), std::string::npos) << r.err;
  // Attaching after the end reads the stored output.
  auto again = loom({"job", "attach", id});
  EXPECT_EQ(again.code, 0);
  EXPECT_EQ(again.out.size(), std::string("hello from 0\nhello from 1\n").size()) << again.out;
}

TEST_F(Exec, AJobLargerThanAPipeHoldsReachesItsShell) {
  // 100 KB goes through the fork server; 200 KB is more than it takes: that
  // shell is started alone and reads its job from a pipe (64 KiB), the rest
  // written as it reads.
  std::string big(100000, 'x');
  auto r = loom({"run", "--env", "BIG=" + big, "sh", "-c", "echo ${#BIG}"});
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out, "100000\n");
  r = loom({"run", "--env", "BIG=" + big, "--env", "BIG2=" + big, "sh", "-c", "echo ${#BIG} ${#BIG2}"});
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out, "100000 100000\n");
}

TEST_F(Exec, JobsStillRunWhenTheShellForkServersAreGone) {
  // This instance's: children of its brokers (other tests may run beside).
  std::set<pid_t> brokers;
  for (uint32_t rank = 0; rank < 4; ++rank) {
    auto b = inst.broker_pid(rank);
    ASSERT_TRUE(b.has_value());
    brokers.insert(*b);
  }
  std::vector<pid_t> servers;
  for (pid_t p : processes_with("--fork-server")) {
    std::string line = read_proc("/proc/" + std::to_string(p) + "/stat");
    // pid (comm) state ppid ...
    auto after = line.rfind(')');
    if (after == std::string::npos) continue;
    pid_t ppid = 0;
    char state = 0;
    if (std::sscanf(line.c_str() + after + 1, " %c %d", &state, &ppid) == 2 && brokers.count(ppid)) {
      servers.push_back(p);
    }
  }
  ASSERT_EQ(servers.size(), 4u) << "one shell fork server per broker";
  for (pid_t p : servers) ASSERT_EQ(::kill(p, SIGKILL), 0);
  expect_all_exit(servers);
  auto r = loom({"run", "-N4", "-l", "sh", "-c", "echo rank $LOOM_RANK"});
  EXPECT_EQ(r.code, 0) << show(r);
  auto lines = r.out_lines();
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"0: rank 0", "1: rank 1", "2: rank 2", "3: rank 3"})) << r.out;
}

TEST_F(Exec, CtrlCTwiceCancelsAnAttachedJobWhileAFollowerJustEnds) {
  std::string id = submit_job({"sh", "-c", "echo ready; exec sleep 300"});
  // Following the output eventlog is only reading: Ctrl-C ends the reader.
  auto follow = inst.loom_background({"job", "eventlog", "-f", "-p", "output", id});
  ASSERT_TRUE(follow->wait_for_out("ready")) << show(follow->so_far());
  ASSERT_TRUE(follow->signal(SIGINT));
  auto f = follow->finish();
  EXPECT_EQ(f.code, 128 + SIGINT) << show(f);
  EXPECT_EQ(state(id), "RUN");
  // Attached: the first Ctrl-C warns, a second within 2 s cancels.
  auto attach = inst.loom_background({"job", "attach", id});
  ASSERT_TRUE(attach->wait_for_out("ready\n")) << show(attach->so_far());
  ASSERT_TRUE(attach->signal(SIGINT));
  ASSERT_TRUE(attach->wait_for_err("one more Ctrl-C within 2s cancels")) << show(attach->so_far());
  ASSERT_TRUE(attach->signal(SIGINT));
  auto a = attach->finish();
  EXPECT_EQ(a.code, 128 + SIGTERM) << show(a);
  EXPECT_NE(a.err.find("cancel exception: interrupted"), std::string::npos) << a.err;
  wait_event(id, "clean");
  auto ex = named(eventlog(id), "exception");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["type"], "cancel");
}

TEST_F(Exec, AnOrderlyStopKillsRunningTasks) {
  // `start` means the shells run; a task says when it runs by writing a
  // line. The task's shell carries `marker` in its argv, its sleep `nap`.
  std::string marker = "marker." + std::to_string(::getpid());
  std::string nap = "301." + std::to_string(::getpid());
  std::string id = submit_job({"-N1", "sh", "-c", "echo up; sleep " + nap + " >/dev/null 2>&1; true", marker});
  wait_event(id, "start");  // the job's namespace exists from then on
  auto up = loom(
      {"kvs", "--namespace", "job-" + std::to_string(num(id)), "eventlog", "wait-event", "-t", "20", "output", "data"});
  ASSERT_EQ(up.code, 0) << show(up);
  // (At least one: `sh` forks before it execs the sleep.)
  EXPECT_GE(processes_running(marker), 1) << "the task runs";
  ASSERT_EQ(inst.stop(), 0);
  // The stop killed the task, and what it started.
  expect_all_exit(processes_with(marker));
  expect_all_exit(processes_with(nap));
}

TEST_F(Exec, OutputFilesWithIdAndCcTemplates) {
  char tmpl[] = "/tmp/loom-output-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  auto r = loom({"submit", "--cc=1-2", "--output=" + dir + "/out.{{cc}}.{{id}}", "-N2", "sh", "-c",
                 "echo cc $LOOM_JOB_CC task $LOOM_TASK_RANK; echo err >&2"});
  ASSERT_EQ(r.code, 0) << show(r);
  auto ids = r.out_lines();
  ASSERT_EQ(ids.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    wait_event(ids[i], "clean");
    std::string cc = std::to_string(i + 1);
    std::ifstream in(dir + "/out." + cc + "." + ids[i]);
    ASSERT_TRUE(in) << "no file out." << cc << "." << ids[i];
    std::multiset<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.insert(line);
    EXPECT_EQ(lines, (std::multiset<std::string>{"cc " + cc + " task 0", "cc " + cc + " task 1", "err", "err"}));
  }
  std::filesystem::remove_all(dir);
}

TEST_F(Exec, AnOutputFileThatCannotBeOpenedKeepsTheTasksFromRunning) {
  char tmpl[] = "/tmp/loom-output-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string ran = dir + "/ran";
  // Its output would be lost: the job says why and runs nothing.
  auto r = loom({"run", "-N2", "--output=" + dir + "/missing/out", "touch", ran});
  EXPECT_EQ(r.code, 126) << show(r);
  EXPECT_NE(r.err.find("cannot open " + dir + "/missing/out: No such file or directory"), std::string::npos) << show(r);
  EXPECT_FALSE(std::filesystem::exists(ran));
  // --error alone too.
  r = loom({"run", "--error=" + dir + "/missing/err", "touch", ran});
  EXPECT_EQ(r.code, 126) << show(r);
  EXPECT_FALSE(std::filesystem::exists(ran));
  std::filesystem::remove_all(dir);
}

TEST_F(Exec, ARealTimeLimitSendsSigalrm) {
  auto r = loom({"run", "-t", "0.3s", "sleep", "100"});
  EXPECT_EQ(r.code, 128 + SIGALRM) << show(r);
  EXPECT_NE(r.err.find("timeout exception: resource allocation expired"), std::string::npos) << r.err;
}

TEST_F(Exec, ACommandThatCannotRunExits127) {
  auto r = loom({"run", "-N2", "/nonexistent/command"});
  EXPECT_EQ(r.code, 127) << show(r);
}

TEST_F(Exec, CancelKillsRealTasks) {
  std::string id = submit_job({"-N2", "sleep", "300"});
  wait_event(id, "start");
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  wait_event(id, "clean");
  auto log = eventlog(id);
  EXPECT_EQ(named(log, "exception")[0]["context"]["type"], "cancel");
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], 15) << "SIGTERM";
  EXPECT_EQ(allocated_ranks(), "");
}
TEST_F(Exec, ExecAndOutputEventlogsOfAJob) {
  // Rank 1's task fails: the exec eventlog says which rank's shell exited how.
  std::string id = submit_job({"-N2", "sh", "-c", "echo out $LOOM_RANK; exit $LOOM_RANK"});
  // -f follows until the job is clean.
  auto exec = loom({"job", "eventlog", "-f", "--json", "--path=exec", id});
  ASSERT_EQ(exec.code, 0) << show(exec);
  std::map<std::string, std::vector<Json>> by_name;
  for (auto& line : exec.out_lines()) {
    auto e = parse_json(line);
    ASSERT_TRUE(e.ok()) << line;
    by_name[(*e)["name"].get<std::string>()].push_back((*e)["context"]);
  }
  ASSERT_EQ(by_name["shell-start"].size(), 2u) << exec.out;
  ASSERT_EQ(by_name["shell-exit"].size(), 2u) << exec.out;
  for (const auto& c : by_name["shell-exit"]) EXPECT_EQ(c["status"], c["rank"].get<int>() << 8) << c;
  // And each task's exit (one task per rank here: task r on rank r).
  ASSERT_EQ(by_name["task-exit"].size(), 2u) << exec.out;
  for (const auto& c : by_name["task-exit"]) {
    EXPECT_EQ(c["task"], c["rank"]) << c;
    EXPECT_EQ(c["status"], c["rank"].get<int>() << 8) << c;
  }
  ASSERT_EQ(by_name["complete"].size(), 1u) << exec.out;
  EXPECT_EQ(by_name["complete"][0]["status"], 256);
  // Stored, after the job: the same, and the output eventlog beside it.
  auto again = loom({"job", "eventlog", "--json", "--path=exec", id});
  EXPECT_EQ(again.out, exec.out);
  auto out = loom({"job", "eventlog", "-p", "output", id});
  ASSERT_EQ(out.code, 0) << show(out);
  EXPECT_NE(out.out.find("data=\"out 0\\n\" rank=0 stream=stdout"), std::string::npos) << out.out;
  EXPECT_NE(out.out.find("data=\"out 1\\n\" rank=1 stream=stdout"), std::string::npos) << out.out;
  // A job that has not started has neither.
  std::string held = submit_job({"--urgency=0", "true"});
  auto none = loom({"job", "eventlog", "--path=exec", held});
  EXPECT_EQ(none.code, 1);
  EXPECT_NE(none.err.find("has no exec eventlog"), std::string::npos) << none.err;
}

// A user reading the output of their own jobs only: multiuser_test (a job
// of another user runs as that user, so it needs real users and root).

TEST_F(Exec, RunExitsAsTheJobDid) {
  auto ok = loom({"run", "--setattr=exec.test.run_duration=0", "-N2", "true"});
  EXPECT_EQ(ok.code, 0) << show(ok);
  auto failed = loom({"run", "--setattr=exec.test.wait_status=768", "true"});
  EXPECT_EQ(failed.code, 3) << show(failed);
  EXPECT_NE(failed.err.find("exit code 3"), std::string::npos) << failed.err;
  auto killed = loom({"run", "--setattr=exec.test.mock_exception=run", "true"});
  EXPECT_EQ(killed.code, 128 + 9) << show(killed);
  EXPECT_NE(killed.err.find("exec exception: mock run exception"), std::string::npos) << killed.err;
  auto refused = loom({"run", "-N9", "true"});
  EXPECT_EQ(refused.code, 1) << show(refused);
  EXPECT_EQ(refused.err_lines().size(), 1u) << refused.err;
}

// Thousands of tasks on one rank: every task's exit reaches the exec
// eventlog (before, the shell's report was cut at about 2,500 tasks).
class ExecManyTasks : public Exec {
 protected:
  void SetUp() override {
    rlimit nofile{};
    ::getrlimit(RLIMIT_NOFILE, &nofile);
    if (nofile.rlim_max < 10000) GTEST_SKIP() << "needs 10000 file descriptors, the hard limit is " << nofile.rlim_max;
    ASSERT_TRUE(inst.start(1, {"--cores-per-rank=3000", "--gpus-per-rank=0"}));
  }
};

TEST(ExecLimits, TasksNeedingMoreDescriptorsThanAllowedFailWithAClearError) {
  // An instance whose hard limit is 1000 descriptors: 600 tasks need 2465
  // (four each: two pipes, a pidfd, the PMI socket; task 0's stdin; 64 for
  // the shell).
  auto r = run_cmd({"/bin/sh", "-c",
                    "ulimit -n 1000 && ulimit -Hn 1000 && exec \"$0\" start --test-size=1 --cores-per-rank=600 "
                    "-- \"$0\" run -n600 true",
                    bin("loom")},
                   {{"LOOM_URI", ""}}, 120);
  EXPECT_EQ(r.code, 126) << show(r);
  EXPECT_NE(r.err.find("loom-shell: 600 tasks on rank 0 need 2465 file descriptors; the limit here is 1000"),
            std::string::npos)
      << r.err;
}

TEST_F(ExecManyTasks, EveryTaskExitIsInTheExecEventlog) {
  auto r = inst.loom({"run", "-n3000", "sh", "-c", "exit $((LOOM_TASK_RANK % 7))"}, {}, 120);
  EXPECT_EQ(r.code, 6) << show(r);
  std::string id = loom({"jobs", "-a", "-n", "-o", "{id}"}).out_lines().at(0);
  auto exec = loom({"job", "eventlog", "--json", "--path=exec", id});
  ASSERT_EQ(exec.code, 0) << show(exec);
  std::set<int> tasks;
  for (auto& line : exec.out_lines()) {
    auto e = parse_json(line);
    ASSERT_TRUE(e.ok()) << line;
    if ((*e)["name"] != "task-exit") continue;
    int task = (*e)["context"]["task"].get<int>();
    EXPECT_EQ((*e)["context"]["status"], (task % 7) << 8) << line;
    tasks.insert(task);
  }
  EXPECT_EQ(tasks.size(), 3000u);
  EXPECT_EQ(exec.out.find("task-exits-unreported"), std::string::npos);
}

}  // namespace
}  // namespace loom::test
