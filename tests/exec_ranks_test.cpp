// How each rank of a real job ends (docs/protocols/exec.md): its epilog and the
// release that follows it, a rank lost mid-job, tasks that cannot be
// killed, and jobs running through a crash and restart of the instance.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/fluid.h"
#include "kit/as_user.h"
#include "kit/client.h"
#include "kit/exec.h"
#include "kit/instance.h"
#include "kit/jobs.h"
#include "msg/json.h"

namespace loom::test {
namespace {

// Epilogs (docs/protocols/exec.md): rank 3's waits on a FIFO the test controls, so the
// test decides when rank 3 is done; rank 1's fails when the job asks for it.
class ExecEpilog : public Exec {
 protected:
  std::string dir;
  void SetUp() override {
    char tmpl[] = "/tmp/loom-epilog-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    ASSERT_EQ(::mkfifo((dir + "/rank3").c_str(), 0600), 0);
    std::string epilog = "echo $LOOM_JOB_ID $LOOM_JOB_RANKS >> " + dir + "/ran.$LOOM_RANK; " + "if [ -e " + dir +
                         "/fail.$LOOM_JOB_ID ] && [ $LOOM_RANK = 1 ]; then exit 1; fi; " +
                         "if [ $LOOM_RANK = 3 ]; then cat " + dir + "/rank3 > /dev/null; fi";
    ASSERT_TRUE(inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0", "--setconf", "exec.epilog=" + epilog}));
  }
  void TearDown() override {
    Exec::TearDown();
    std::filesystem::remove_all(dir);
  }
  // Lets rank 3's epilog finish.
  void release_rank3() { std::ofstream(dir + "/rank3") << "go\n"; }
};

TEST_F(ExecEpilog, EachRankIsReleasedWhenItsEpilogIsDoneAndTheNextJobStartsMeanwhile) {
  std::string a = submit_job({"-N4", "true"});
  wait_event(a, "finish");  // every shell has exited; rank 3's epilog blocks
  std::string b = submit_job({"-N3", "true"});
  wait_event(b, "start");  // on ranks 0-2, released by a while its rank 3 is busy
  EXPECT_EQ(job(b)["ranks"], "0-2");
  EXPECT_NE(state(a), "INACTIVE");
  EXPECT_EQ(job(a)["ranks_held"], "3") << job(a);
  // The exec eventlog, read while the job runs: written to the job's
  // namespace as it goes (within a tenth of a second), it shows rank 3 in
  // its epilog and the others done.
  std::string ns = "--namespace=job-" + std::to_string(job(a)["id"].get<uint64_t>());
  for (const char* r : {"0", "1", "2"}) {
    auto seen = loom({"kvs", ns, "eventlog", "wait-event", "-t", "30", "-m", std::string("rank=") + r, "exec.eventlog",
                      "epilog-finish"});
    ASSERT_EQ(seen.code, 0) << show(seen);
  }
  auto seen = loom({"kvs", ns, "eventlog", "wait-event", "-t", "30", "-m", "rank=3", "exec.eventlog", "epilog-start"});
  ASSERT_EQ(seen.code, 0) << show(seen);
  auto running = loom({"job", "eventlog", "--json", "--path=exec", a});
  ASSERT_EQ(running.code, 0) << show(running);
  std::map<std::string, std::set<int>> ranks_of;  // event → ranks
  for (auto& line : running.out_lines()) {
    auto e = parse_json(line);
    ASSERT_TRUE(e.ok()) << line;
    ranks_of[(*e)["name"].get<std::string>()].insert((*e)["context"].value("rank", -1));
  }
  EXPECT_EQ(ranks_of["shell-start"], (std::set<int>{0, 1, 2, 3})) << running.out;
  EXPECT_EQ(ranks_of["shell-exit"], (std::set<int>{0, 1, 2, 3})) << running.out;
  EXPECT_EQ(ranks_of["epilog-start"], (std::set<int>{0, 1, 2, 3})) << running.out;
  EXPECT_EQ(ranks_of["epilog-finish"], (std::set<int>{0, 1, 2})) << running.out;
  release_rank3();
  wait_event(a, "clean");
  wait_event(b, "clean");
  auto rel = named(eventlog(a), "release");
  ASSERT_EQ(rel.size(), 4u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(rel[i]["context"]["final"], false);
  EXPECT_EQ(rel[3]["context"], (Json{{"ranks", "3"}, {"final", true}}));
  auto b_start = named(eventlog(b), "start")[0]["timestamp"].get<double>();
  EXPECT_LT(b_start, rel[3]["timestamp"].get<double>()) << "b started before a's final release";
  // Stored with the job: the same entries and rank 3's epilog end.
  auto done = loom({"job", "eventlog", "--json", "--path=exec", a});
  ASSERT_EQ(done.code, 0) << show(done);
  EXPECT_EQ(done.out.rfind(running.out, 0), 0u) << "the stored exec eventlog begins as it was while running";
  auto human = loom({"job", "eventlog", "--path=exec", a});
  EXPECT_NE(human.out.find("epilog-finish rank=3 status=0"), std::string::npos) << human.out;
  // The epilog saw the job's id and ranks.
  std::ifstream ran(dir + "/ran.3");
  std::string line;
  std::getline(ran, line);
  EXPECT_EQ(line, a + " 0-3");
}

// [exec] epilog as a TOML list: the command and its arguments, no shell.
TEST(ExecConfig, EpilogAsAListRunsWithoutAShell) {
  char tmpl[] = "/tmp/loom-epilog-list-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::ofstream(dir + "/loom.toml") << "[exec]\nepilog = [\"/bin/sh\", \"-c\", \"echo $LOOM_RANK >> " << dir
                                    << "/ran\", \"ignored\"]\nepilog-timeout = 30\n";
  {
    Instance inst;
    ASSERT_TRUE(inst.start(2, {"--config", dir + "/loom.toml"}));
    auto r = inst.loom({"run", "-N2", "true"});
    EXPECT_EQ(r.code, 0) << show(r);
    ASSERT_EQ(inst.stop(), 0);
  }
  std::ifstream in(dir + "/ran");
  std::multiset<std::string> ranks;
  for (std::string line; std::getline(in, line);) ranks.insert(line);
  EXPECT_EQ(ranks, (std::multiset<std::string>{"0", "1"}));
  std::ofstream(dir + "/bad.toml") << "[exec]\nepilog = [1, 2]\n";
  auto bad = run_cmd({bin("loom"), "start", "--config", dir + "/bad.toml", "--", "true"});
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("exec.epilog"), std::string::npos) << bad.err;
  std::filesystem::remove_all(dir);
}

TEST_F(ExecEpilog, AFailedEpilogDrainsItsRankAndTheJobStillCompletes) {
  std::string a = submit_job({"--urgency=0", "-N2", "true"});
  std::ofstream(dir + "/fail." + a) << "";
  ASSERT_EQ(loom({"job", "urgency", a, "default"}).code, 0);
  wait_event(a, "clean");
  auto ex = named(eventlog(a), "exception");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["type"], "epilog");
  EXPECT_EQ(ex[0]["context"]["severity"], 1);
  EXPECT_EQ(job(a)["result"], "COMPLETED");
  Json res = resources();
  EXPECT_EQ(res["drained"]["ranks"], "1") << res;
  EXPECT_NE(res["drain"][0]["reason"].get<std::string>().find("epilog exited with 1"), std::string::npos) << res;
}

// A rank whose broker dies while the job's shell runs there.
class ExecLost : public Exec {
 protected:
  void SetUp() override {
    // (Shells do not wait for a lost broker to come back: reattach-timeout 0.)
    ASSERT_TRUE(
        inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0", "--heartbeat-interval=0.1", "--heartbeat-timeout=1",
                       "--setconf", "exec.kill-timeout=0.5", "--setconf", "exec.reattach-timeout=0"}));
    inst.expect_clean_exit(false);  // rank 3 is killed on purpose
  }
};

TEST_F(ExecLost, ALostRankFailsItsJobsAndTheOtherRanksAreReleased) {
  std::string marker = "302." + std::to_string(::getpid());
  std::string id = submit_job({"-N4", "sleep", marker});
  wait_event(id, "start");
  std::string why;
  auto pid = inst.broker_pid(3, &why);
  ASSERT_TRUE(pid) << why;
  ASSERT_EQ(::kill(*pid, SIGKILL), 0);
  wait_event(id, "clean");
  auto ex = named(eventlog(id), "exception");
  ASSERT_GE(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["type"], "node-failure") << ex[0];
  EXPECT_NE(ex[0]["context"]["note"].get<std::string>().find("rank 3"), std::string::npos) << ex[0];
  Json res = resources();
  EXPECT_EQ(res["allocated"].value("ranks", "?"), "") << res;
  // Ranks 0-2 were killed by job-exec, rank 3's by its shell when its
  // broker went away.
  expect_all_exit(processes_with(marker));
}

// Processes SIGKILL cannot end: rank 3's broker is stopped (SIGSTOP), so
// nothing there answers the kills and its shell never reports an exit.
class ExecUnkillable : public Exec {
 protected:
  void SetUp() override {
    ASSERT_TRUE(inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0", "--setconf", "exec.kill-timeout=0.3"}));
  }
};

TEST_F(ExecUnkillable, RanksThatCannotBeKilledAreDrainedAndTheJobCompletes) {
  std::string id = submit_job({"-N4", "sleep", "303." + std::to_string(::getpid())});
  wait_event(id, "start");
  std::string why;
  auto pid = inst.broker_pid(3, &why);
  ASSERT_TRUE(pid) << why;
  ASSERT_EQ(::kill(*pid, SIGSTOP), 0);
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  wait_event(id, "clean");
  ::kill(*pid, SIGCONT);
  auto log = eventlog(id);
  auto ex = named(log, "exception");
  ASSERT_EQ(ex.size(), 2u) << "cancel, then unkillable";
  EXPECT_EQ(ex[1]["context"]["note"], "ranks 3: unkillable processes");
  // Ranks 0-2 ended on SIGTERM (128+15 ranks above 128+9 for rank 3).
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], SIGTERM);
  Json res = resources();
  EXPECT_EQ(res["drained"]["ranks"], "3") << res;
  EXPECT_NE(res["drain"][0]["reason"].get<std::string>().find("unkillable processes"), std::string::npos) << res;
  EXPECT_EQ(res["allocated"].value("ranks", "?"), "") << res;
}

// A crash of the whole instance (every broker SIGKILLed) while a job runs,
// then a restart on the same state directory (docs/protocols/exec.md). The job shells
// live in sessions of their own, so they outlive their brokers.
class ExecReattach : public Exec {
 protected:
  std::string dir;
  void SetUp() override {
    dir = fresh_test_dir("reattach");
    ASSERT_TRUE(inst.start(2, args()));
  }
  void TearDown() override {
    Exec::TearDown();
    std::filesystem::remove_all(dir);
  }
  std::vector<std::string> args() {
    std::vector<std::string> a = {"--cores-per-rank=2", "--gpus-per-rank=0",        "--state-dir=" + dir + "/state",
                                  "--setconf",          "exec.reattach-timeout=30", "--setconf",
                                  "exec.kill-timeout=2"};
    a.insert(a.end(), extra_args.begin(), extra_args.end());
    return a;
  }
  std::vector<std::string> extra_args;  // set before SetUp (a subclass's constructor)
  void crash() { crash_instance(inst); }
  // Lets the task of rank R go on (it waits reading a FIFO).
  void go(int rank) { feed("go." + std::to_string(rank)); }
  // Writes a line into the FIFO `name` of dir: returns once a process has
  // opened it to read (the test's event that it waits there).
  void feed(const std::string& name) {
    auto r = run_cmd({"/bin/sh", "-c", "echo go > " + dir + "/" + name}, {}, 20);
    ASSERT_EQ(r.code, 0) << "nobody reads " << name << ": " << show(r);
  }
};

TEST_F(ExecReattach, AJobRunningThroughACrashIsFoundAgainAndCompletes) {
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(::mkfifo((dir + "/up." + std::to_string(r)).c_str(), 0600), 0);
    ASSERT_EQ(::mkfifo((dir + "/go." + std::to_string(r)).c_str(), 0600), 0);
  }
  std::string id = submit_job({"-N2", "sh", "-c",
                               "echo before $LOOM_RANK; echo up > " + dir + "/up.$LOOM_RANK; read x < " + dir +
                                   "/go.$LOOM_RANK; echo after $LOOM_RANK"});
  // Both tasks run (then the crash: a shell that never reached its broker
  // could not be found again).
  auto up = run_cmd({"/bin/cat", dir + "/up.0", dir + "/up.1"}, {}, 20);
  ASSERT_EQ(up.code, 0) << show(up);
  crash();
  // Rank 0's task ends while no broker runs: its shell keeps the output and
  // the status for the broker that comes back.
  go(0);
  ASSERT_TRUE(inst.start(2, args()));
  // Rank 1's task still runs, watched by its restarted broker now.
  go(1);
  wait_event(id, "clean");
  auto log = eventlog(id);
  EXPECT_EQ(named(log, "start").size(), 1u);
  EXPECT_TRUE(named(log, "exception").empty()) << named(log, "exception")[0];
  ASSERT_EQ(named(log, "finish").size(), 1u);
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], 0);
  EXPECT_EQ(job(id)["result"], "COMPLETED");
  // Nothing written before, during or after the outage is lost.
  auto out = loom({"job", "attach", id});
  ASSERT_EQ(out.code, 0) << show(out);
  auto lines = out.out_lines();
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"after 0", "after 1", "before 0", "before 1"})) << out.out;
  // The exec eventlog of the run after the restart: both shells found
  // again, each task's exit (told by the adopted shells), the end.
  auto exec = loom({"job", "eventlog", "--path=exec", id});
  ASSERT_EQ(exec.code, 0) << show(exec);
  for (const char* what : {"shell-reattach pid=", "task-exit rank=0 status=0 task=0",
                           "task-exit rank=1 status=0 task=1", "complete status=0"}) {
    EXPECT_NE(exec.out.find(what), std::string::npos) << what << " in\n" << exec.out;
  }
  EXPECT_EQ(resources()["allocated"].value("ranks", "?"), "");
}

// While the brokers are down their run directory may be gone, and any
// local user may make it again and listen where a broker was: the shells
// that wait for their broker tell such a stranger nothing (not even who
// they are) and go on waiting for the real one.
TEST_F(ExecReattach, AShellTellsAStrangerWhereItsBrokerWasNothing) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as another uid";
  ASSERT_EQ(::mkfifo((dir + "/up.0").c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo((dir + "/go.0").c_str(), 0600), 0);
  std::string id =
      submit_job({"-N1", "sh", "-c", "echo before; echo up > " + dir + "/up.0; read x < " + dir + "/go.0; echo after"});
  auto up = run_cmd({"/bin/cat", dir + "/up.0"}, {}, 20);
  ASSERT_EQ(up.code, 0) << show(up);
  crash();
  std::string rundir = inst.rundir(), sock = inst.socket(0);
  std::filesystem::remove_all(rundir);
  Loop loop;
  Json stranger = run_as(loop, kNobody, [&] {
    if (::mkdir(rundir.c_str(), 0755) != 0) return Json{{"setup", "mkdir"}};
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 8) != 0) {
      return Json{{"setup", "listen"}};
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20000) != 1) return Json{{"accepted", false}};
    int shell = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    // Everything the shell sends until it gives up on us.
    std::string got;
    char buf[4096];
    pollfd q{shell, POLLIN, 0};
    while (::poll(&q, 1, 2000) == 1) {
      ssize_t n = ::recv(shell, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return Json{{"accepted", true}, {"bytes", got.size()}, {"topic", got.find("shell.adopt") != std::string::npos}};
  });
  ASSERT_TRUE(stranger.is_object()) << stranger.dump();
  EXPECT_EQ(stranger["accepted"], true) << stranger.dump();
  EXPECT_EQ(stranger["topic"], false) << stranger.dump();
  EXPECT_LE(stranger["bytes"].get<size_t>(), kGreetingSize) << stranger.dump();
  // The real broker comes back; the shell finds it and the job ends well.
  std::filesystem::remove_all(rundir);
  ASSERT_TRUE(inst.start(2, args()));
  go(0);
  wait_event(id, "clean");
  EXPECT_EQ(job(id)["result"], "COMPLETED");
  auto out = loom({"job", "attach", id});
  EXPECT_EQ(out.out_lines(), (std::vector<std::string>{"before", "after"})) << show(out);
}

TEST_F(ExecReattach, AJobWhoseShellDidNotSurviveIsLostAndTheRestIsKilled) {
  std::string marker = "304." + std::to_string(::getpid());
  ASSERT_EQ(::mkfifo((dir + "/up").c_str(), 0600), 0);
  std::string id =
      submit_job({"-N2", "sh", "-c", "[ $LOOM_RANK = 1 ] || echo up > " + dir + "/up; exec sleep " + marker});
  auto up = run_cmd({"/bin/cat", dir + "/up"}, {}, 20);
  ASSERT_EQ(up.code, 0) << show(up);
  wait_event(id, "start");  // rank 1's shell runs too
  crash();
  // Rank 1's shell and its task die with their node.
  pid_t shell = shell_of(id, 1);
  ASSERT_GT(shell, 0) << "no shell of the job on rank 1";
  ASSERT_EQ(::kill(-shell, SIGKILL), 0);
  expect_all_exit({shell});
  ASSERT_TRUE(inst.start(2, args()));
  wait_event(id, "clean");
  auto log = eventlog(id);
  auto ex = named(log, "exception");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["severity"], 0);
  std::string note = ex[0]["context"]["note"];
  EXPECT_NE(note.find("lost"), std::string::npos) << note;
  EXPECT_NE(note.find("rank 1"), std::string::npos) << note;
  EXPECT_EQ(named(log, "release").back()["context"]["final"], true);
  // Rank 0's task, found again, was killed: nothing runs unseen.
  expect_all_exit(processes_with(marker));
  EXPECT_EQ(resources()["allocated"].value("ranks", "?"), "");
}

TEST_F(ExecReattach, OutputWrittenWithoutPauseThroughACrashIsKeptInOrder) {
  // The task writes as fast as it can: commits are in flight when the
  // brokers die. Every line reaches the job's output, in order (a line may
  // be there twice: a commit the broker took but did not acknowledge).
  ASSERT_EQ(::mkfifo((dir + "/up").c_str(), 0600), 0);
  std::string id = submit_job({"-N1", "sh", "-c",
                               "echo 0; echo up > " + dir + "/up; i=0; while [ ! -e " + dir +
                                   "/stop ]; do i=$((i+1)); echo $i; done; echo end"});
  auto up = run_cmd({"/bin/cat", dir + "/up"}, {}, 20);
  ASSERT_EQ(up.code, 0) << show(up);
  crash();
  ASSERT_TRUE(inst.start(2, args()));
  std::ofstream(dir + "/stop") << "";
  wait_event(id, "clean");
  EXPECT_EQ(named(eventlog(id), "finish")[0]["context"]["status"], 0);
  auto out = loom({"job", "attach", id});
  ASSERT_EQ(out.code, 0) << show(out);
  auto lines = out.out_lines();
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines.back(), "end");
  lines.pop_back();
  long expect = 0;
  for (const auto& l : lines) {
    long n = std::stol(l);
    if (n == expect - 1) continue;  // stored twice
    ASSERT_EQ(n, expect) << "line " << expect << " is missing or out of order";
    ++expect;
  }
  EXPECT_GT(expect, 1);
}

TEST_F(ExecReattach, AJobCancelledBeforeTheCrashIsKilledWhenFound) {
  // The task ignores SIGTERM; the crash comes before the SIGKILL that
  // follows a cancel. Found again, the job is killed as it would have been.
  ASSERT_EQ(::mkfifo((dir + "/up").c_str(), 0600), 0);
  std::string marker = "305." + std::to_string(::getpid());
  std::string id = submit_job({"-N1", "sh", "-c", "trap '' TERM; echo up > " + dir + "/up; exec sleep " + marker});
  auto up = run_cmd({"/bin/cat", dir + "/up"}, {}, 20);
  ASSERT_EQ(up.code, 0) << show(up);
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  wait_event(id, "exception");
  crash();
  ASSERT_TRUE(inst.start(2, args()));
  wait_event(id, "clean");
  auto log = eventlog(id);
  ASSERT_EQ(named(log, "exception").size(), 1u);
  EXPECT_EQ(named(log, "exception")[0]["context"]["type"], "cancel");
  ASSERT_EQ(named(log, "finish").size(), 1u);
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], SIGKILL);
  // SIGTERM first, SIGKILL a kill timeout (2 s) later.
  double restarted = named(log, "restart")[0]["timestamp"];
  EXPECT_GE(named(log, "finish")[0]["timestamp"].get<double>() - restarted, 1.5);
  expect_all_exit(processes_with(marker));
}

// A crash while epilogs run (docs/protocols/exec.md, item 8). Each rank's
// epilog waits on a FIFO of its own (hold.R) and fails where fail.R exists.
class ExecReattachEpilog : public ExecReattach {
 protected:
  std::string epilog;
  ExecReattachEpilog() {
    std::string d = (std::filesystem::temp_directory_path() / ("loom-reattach-" + std::to_string(::getpid()))).string();
    epilog = "echo $LOOM_JOB_ID >> " + d + "/ran.$LOOM_RANK; read x < " + d + "/hold.$LOOM_RANK; if [ -e " + d +
             "/fail.$LOOM_RANK ]; then exit 1; fi";
    extra_args = {"--setconf", "exec.epilog=" + epilog};
  }
  void SetUp() override {
    ExecReattach::SetUp();
    for (int r = 0; r < 2; ++r) ASSERT_EQ(::mkfifo((dir + "/hold." + std::to_string(r)).c_str(), 0600), 0);
  }
  // Waits until the exec eventlog of job `id` holds `event` for `rank` (stored).
  void wait_exec(const std::string& id, const std::string& event, int rank) {
    auto r = loom({"kvs", "--namespace=job-" + std::to_string(num(id)), "eventlog", "wait-event", "-t", "20", "-m",
                   "rank=" + std::to_string(rank), "exec.eventlog", event});
    ASSERT_EQ(r.code, 0) << show(r);
  }
};

TEST_F(ExecReattachEpilog, EpilogsRunningThroughACrashRunAgainAndTheirRanksWaitForThem) {
  std::string id = submit_job({"-N2", "true"});
  wait_event(id, "finish");
  for (int r = 0; r < 2; ++r) wait_exec(id, "epilog-start", r);
  auto old = processes_with(epilog);
  ASSERT_EQ(old.size(), 2u);
  crash();
  std::ofstream(dir + "/fail.1") << "";
  ASSERT_TRUE(inst.start(2, args()));
  // The epilogs of the broker that died are ended, and run again.
  expect_all_exit(old);
  feed("hold.0");
  // Rank 1 stays the job's while its epilog runs.
  EXPECT_NE(state(id), "INACTIVE");
  EXPECT_NE(allocated_ranks().find('1'), std::string::npos) << "rank 1 was freed while its epilog ran";
  feed("hold.1");
  wait_event(id, "clean");
  // The epilog that ran again counts: rank 1's failed, so rank 1 is drained.
  auto ex = named(eventlog(id), "exception");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["type"], "epilog");
  EXPECT_EQ(ex[0]["context"]["severity"], 1);
  EXPECT_EQ(job(id)["result"], "COMPLETED");
  Json res = resources();
  EXPECT_EQ(res["drained"]["ranks"], "1") << res;
  EXPECT_EQ(res["allocated"].value("ranks", "?"), "") << res;
  auto exec = loom({"job", "eventlog", "--path=exec", id});
  EXPECT_NE(exec.out.find("epilog-finish rank=1 status=256"), std::string::npos) << exec.out;
}

TEST_F(ExecReattachEpilog, ARankWhoseShellHadExitedBeforeTheCrashCountsAsFinished) {
  ASSERT_EQ(::mkfifo((dir + "/up").c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo((dir + "/go.1").c_str(), 0600), 0);
  // Rank 0's task ends at once (its epilog then waits); rank 1's runs on.
  std::string id =
      submit_job({"-N2", "sh", "-c",
                  "[ $LOOM_RANK = 0 ] && exit 0; echo up > " + dir + "/up; read x < " + dir + "/go.1; echo after"});
  auto up = run_cmd({"/bin/cat", dir + "/up"}, {}, 20);
  ASSERT_EQ(up.code, 0) << show(up);
  wait_exec(id, "epilog-start", 0);
  auto old = processes_with(epilog);
  ASSERT_EQ(old.size(), 1u);
  crash();
  ASSERT_TRUE(inst.start(2, args()));
  expect_all_exit(old);  // (else it could read what is meant for the one run again)
  feed("hold.0");
  go(1);  // rank 1's task, found again, goes on
  feed("hold.1");
  wait_event(id, "clean");
  auto log = eventlog(id);
  EXPECT_TRUE(named(log, "exception").empty()) << named(log, "exception")[0];
  EXPECT_EQ(job(id)["result"], "COMPLETED");
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], 0);
  auto out = loom({"job", "attach", id});
  EXPECT_EQ(out.out_lines(), (std::vector<std::string>{"after"})) << show(out);
  EXPECT_EQ(resources()["allocated"].value("ranks", "?"), "");
}

}  // namespace
}  // namespace loom::test
