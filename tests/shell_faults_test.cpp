// Job shells when things go wrong (docs/protocols/exec.md): a shell killed
// outright, tasks that leave processes behind holding their output, the
// epilog's environment, and a rank lost while its job runs (its broker
// killed, or stopped and continued, or an instance that comes back without
// the job): its shell must not keep the job's tasks once the instance is
// done with the rank.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
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

// Two ranks with fast heartbeats (a rank is lost after 1 s of silence), a
// long kill timeout (a SIGKILL that ends a job shows), shells that wait the
// default minute for a broker that went away, an epilog that writes down
// its LOOM_URI, and a state directory (a restart finds the jobs again).
class ShellFaults : public Exec {
 protected:
  std::string dir;
  void SetUp() override {
    dir = fresh_test_dir("shell-faults");
    ASSERT_TRUE(inst.start(2, args()));
  }
  void TearDown() override {
    Exec::TearDown();
    std::filesystem::remove_all(dir);
  }
  std::vector<std::string> args() {
    return {"--cores-per-rank=2",
            "--gpus-per-rank=0",
            "--heartbeat-interval=0.1",
            "--heartbeat-timeout=1",
            "--state-dir=" + dir + "/state",
            "--setconf",
            "exec.kill-timeout=20",
            "--setconf",
            "exec.epilog=echo \"$LOOM_URI\" > " + dir + "/epilog-uri.$LOOM_RANK"};
  }
  std::string marker(int n) { return std::to_string(n) + "." + std::to_string(::getpid()); }
  // A FIFO a task writes "up" into once it runs; read() waits for it.
  std::string fifo(const std::string& name) {
    std::string path = dir + "/" + name;
    EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0);
    return path;
  }
  void read_fifos(const std::vector<std::string>& paths) {
    std::vector<std::string> cmd{"/bin/cat"};
    cmd.insert(cmd.end(), paths.begin(), paths.end());
    auto r = run_cmd(cmd, {}, 20);
    ASSERT_EQ(r.code, 0) << show(r);
  }
  pid_t broker(uint32_t rank) {
    std::string why;
    auto pid = inst.broker_pid(rank, &why);
    EXPECT_TRUE(pid) << why;
    return pid.value_or(-1);
  }
  std::string exec_log(const std::string& id) {
    auto r = loom({"job", "eventlog", "--path=exec", id});
    EXPECT_EQ(r.code, 0) << show(r);
    return r.out;
  }
  // Every broker SIGKILLed, `loom start` gone: the shells wait for theirs.
  void crash() { crash_instance(inst); }
  // A crash, then the instance started again on its state: returns once
  // job-exec has found the shells again.
  void crash_and_restart() {
    crash();
    inst.capture_log();
    auto again = args();
    again.push_back("--log-level=info");
    ASSERT_TRUE(inst.start(2, again));
    ASSERT_EQ(inst.wait_log("found its shells again"), 1u) << inst.log();
  }
};

TEST_F(ShellFaults, AShellKilledOutrightLeavesItsTasksCountedAsUnreported) {
  std::string m = marker(401);
  std::vector<std::string> up{fifo("up.0"), fifo("up.1")};
  std::string id = submit_job({"-N1", "-n2", "sh", "-c", "echo up > " + dir + "/up.$LOOM_TASK_RANK; exec sleep " + m});
  read_fifos(up);
  pid_t shell = shell_of(id, 0);
  ASSERT_GT(shell, 0);
  ASSERT_EQ(::kill(shell, SIGKILL), 0);
  wait_event(id, "clean");
  // The job ends as its shell did (killed), and the exec eventlog says
  // that the exits of its two tasks were never told.
  EXPECT_EQ(named(eventlog(id), "finish")[0]["context"]["status"], SIGKILL);
  std::string exec = exec_log(id);
  EXPECT_NE(exec.find("task-exits-unreported count=2 rank=0"), std::string::npos) << exec;
  EXPECT_NE(exec.find("shell-exit rank=0 status=9"), std::string::npos) << exec;
  EXPECT_EQ(exec.find("task-exit "), std::string::npos) << exec;
  expect_all_exit(processes_with(m));
  EXPECT_EQ(allocated_ranks(), "");
}

TEST_F(ShellFaults, ATaskKilledByTheTimeLimitIsReportedSoThoughItsChildHeldItsOutput) {
  // The time limit's SIGALRM reaches the background sleep as well as the
  // task: the job ends on SIGALRM, not on the SIGKILL 20 s later. (Through
  // the job's cgroup where there is one; ShellWithoutCgroups below.)
  std::string m = marker(402);
  std::string id = submit_job({"-t", "1s", "sh", "-c", "sleep " + m + " & sleep " + m});
  wait_event(id, "clean");
  auto log = eventlog(id);
  EXPECT_EQ(named(log, "exception")[0]["context"]["type"], "timeout");
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], SIGALRM);
  expect_all_exit(processes_with(m));
}

TEST_F(ShellFaults, AnAdoptedShellKilledOutrightLeavesItsTasksCountedAsUnreported) {
  // A shell found again after a crash tells its tasks' exits to the
  // broker that adopted it; killed before it could, they are counted.
  std::string m = marker(409);
  std::vector<std::string> up{fifo("up.0"), fifo("up.1")};
  std::string id = submit_job({"-N1", "-n2", "sh", "-c", "echo up > " + dir + "/up.$LOOM_TASK_RANK; exec sleep " + m});
  read_fifos(up);
  pid_t shell = shell_of(id, 0);
  ASSERT_GT(shell, 0);
  crash_and_restart();
  if (HasFatalFailure()) return;
  ASSERT_EQ(::kill(shell, SIGKILL), 0);
  wait_event(id, "clean");
  EXPECT_EQ(named(eventlog(id), "finish")[0]["context"]["status"], SIGKILL);
  std::string exec = exec_log(id);
  EXPECT_NE(exec.find("task-exits-unreported count=2 rank=0"), std::string::npos) << exec;
  expect_all_exit(processes_with(m));
}

TEST_F(ShellFaults, PmiBarriersWorkAgainOnceTheShellsAreAdopted) {
  // MPI wire-up (docs/pmi.md) through a crash of the instance: a task on
  // each rank puts a key and passes a barrier, waits while the brokers are
  // killed and started again, then puts another and passes a second
  // barrier through the shells' new connections.
  std::string task = dir + "/pmi-task";
  std::ofstream(task) << "#!/bin/bash\n"
                      << "d=" << dir << "\n"
                      << R"(pmi() { printf '%s\n' "$1" >&$PMI_FD; read -r reply <&$PMI_FD; }
other=$(( 1 - PMI_RANK ))
pmi "cmd=init pmi_version=1 pmi_subversion=1"
pmi "cmd=put key=a$PMI_RANK value=before$PMI_RANK"; pmi "cmd=barrier_in"
pmi "cmd=get key=a$other"; echo "$reply" > $d/before.$PMI_RANK
echo up > $d/up.$PMI_RANK; read -r go < $d/go.$PMI_RANK
pmi "cmd=put key=b$PMI_RANK value=after$PMI_RANK"; pmi "cmd=barrier_in"; echo "$reply" > $d/barrier.$PMI_RANK
pmi "cmd=get key=b$other"; echo "$reply" > $d/after.$PMI_RANK
pmi "cmd=finalize"
)";
  std::filesystem::permissions(task, std::filesystem::perms::owner_all);
  std::vector<std::string> up{fifo("up.0"), fifo("up.1")};
  std::vector<std::string> go{fifo("go.0"), fifo("go.1")};
  std::string id = submit_job({"-N2", "-n2", task});
  read_fifos(up);
  crash_and_restart();
  if (HasFatalFailure()) return;
  // Both shells adopted: job-exec found the job's two shells again.
  for (const auto& g : go) std::ofstream(g) << "go\n";
  wait_event(id, "clean");
  EXPECT_EQ(named(eventlog(id), "finish")[0]["context"]["status"], 0);
  auto read_file = [&](const std::string& name) {
    std::ifstream in(dir + "/" + name);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  for (int r = 0; r < 2; ++r) {
    std::string n = std::to_string(r), other = std::to_string(1 - r);
    EXPECT_EQ(read_file("before." + n), "cmd=get_result rc=0 value=before" + other + "\n");
    EXPECT_EQ(read_file("barrier." + n), "cmd=barrier_out rc=0\n");
    EXPECT_EQ(read_file("after." + n), "cmd=get_result rc=0 value=after" + other + "\n");
  }
}

// The same without a cgroup, where a job is its shell's process group: an
// instance of another user, who may not make cgroups (here, where root
// may, the cgroup reaches the sleep anyway).
TEST(ShellWithoutCgroups, ATaskKilledByTheTimeLimitIsReportedSoThoughItsChildHeldItsOutput) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as another uid";
  std::string m = "408." + std::to_string(::getpid());
  Loop loop;
  Json got = run_as(
      loop, kNobody,
      [&] {
        Instance inst;
        if (!inst.start(1, {"--setconf", "exec.kill-timeout=20"})) return Json{{"setup", "start"}};
        auto sub = inst.loom({"submit", "-t", "1s", "sh", "-c", "sleep " + m + " & sleep " + m});
        std::string id = sub.out.substr(0, sub.out.find('\n'));
        auto waited = inst.loom({"job", "wait-event", "-t", "15", id, "clean"});
        auto log = inst.loom({"job", "eventlog", "--json", id});
        Json out{{"waited", waited.code}, {"log", log.out}};
        inst.stop(20);
        return out;
      },
      60);
  ASSERT_TRUE(got.is_object() && !got.contains("setup")) << got.dump();
  EXPECT_EQ(got["waited"], 0) << "the job did not end until the SIGKILL";
  std::string log = got["log"];
  Json finish;
  for (size_t at = 0, nl; at < log.size(); at = nl + 1) {
    nl = std::min(log.find('\n', at), log.size());
    auto e = parse_json(std::string_view(log).substr(at, nl - at));
    if (e.ok() && (*e)["name"] == "finish") finish = *e;
  }
  EXPECT_EQ(finish["context"]["status"], SIGALRM) << log;
  expect_all_exit(processes_with(m));
}

TEST_F(ShellFaults, ATaskThatDiedOfSigalrmIsReportedSoWhenItsLeftoversAreCancelled) {
  // The task kills itself (exit 142); the sleep it left, which ignores
  // SIGTERM, holds its stdout until the job is cancelled: then it is killed
  // and the job's status is the task's, SIGALRM.
  std::string m = marker(403);
  std::vector<std::string> up{fifo("up.0")};
  std::string id =
      submit_job({"sh", "-c", "trap '' TERM; sleep " + m + " & echo up > " + dir + "/up.0; kill -ALRM $$"});
  read_fifos(up);  // SIGTERM is ignored from here on
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  wait_event(id, "clean");
  EXPECT_EQ(named(eventlog(id), "finish")[0]["context"]["status"], SIGALRM);
  EXPECT_NE(exec_log(id).find("task-exit rank=0 status=14 task=0"), std::string::npos);
  expect_all_exit(processes_with(m));
}

TEST_F(ShellFaults, TheEpilogHasItsBrokersUri) {
  // As the tasks have it: the socket of the broker of their rank.
  std::string id = submit_job({"-N2", "sh", "-c", "echo $LOOM_RANK $LOOM_URI"});
  wait_event(id, "clean");  // every epilog is done
  auto out = loom({"job", "attach", id});
  ASSERT_EQ(out.code, 0) << show(out);
  auto lines = out.out_lines();
  std::sort(lines.begin(), lines.end());
  ASSERT_EQ(lines.size(), 2u) << out.out;
  for (uint32_t rank = 0; rank < 2; ++rank) {
    std::string uri = "local://" + inst.socket(rank);
    EXPECT_EQ(lines[rank], std::to_string(rank) + " " + uri);
    std::ifstream in(dir + "/epilog-uri." + std::to_string(rank));
    std::string got;
    std::getline(in, got);
    EXPECT_EQ(got, uri) << "rank " << rank;
  }
}

TEST_F(ShellFaults, ALostRanksTasksEndOnceTheJobIsReleasedFromIt) {
  // Rank 1's broker is killed: the job fails (node-failure) and is
  // released; rank 1's shell, waiting for its broker, learns from rank 0
  // that the job is done there and kills its task at once, not a minute
  // (exec.reattach-timeout) later.
  std::string m = marker(404);
  std::vector<std::string> up{fifo("up.0"), fifo("up.1")};
  std::string id = submit_job({"-N2", "sh", "-c", "echo up > " + dir + "/up.$LOOM_RANK; exec sleep " + m});
  read_fifos(up);
  pid_t shell = shell_of(id, 1);
  ASSERT_GT(shell, 0);
  inst.expect_clean_exit(false);
  ASSERT_EQ(::kill(broker(1), SIGKILL), 0);
  wait_event(id, "clean");
  EXPECT_EQ(named(eventlog(id), "exception")[0]["context"]["type"], "node-failure");
  expect_all_exit(processes_with(m));
  expect_all_exit({shell});
}

TEST_F(ShellFaults, AStoppedRanksTasksEndWhenItsBrokerContinues) {
  // Rank 1's broker is stopped past the heartbeat timeout: lost, the job
  // fails and is released. Continued, the broker finds itself cut off and
  // stops; its shell learns the job is done there and ends its task.
  std::string m = marker(405);
  std::vector<std::string> up{fifo("up.0"), fifo("up.1")};
  std::string id = submit_job({"-N2", "sh", "-c", "echo up > " + dir + "/up.$LOOM_RANK; exec sleep " + m});
  read_fifos(up);
  pid_t shell = shell_of(id, 1);
  ASSERT_GT(shell, 0);
  inst.expect_clean_exit(false);
  pid_t b1 = broker(1);
  ASSERT_EQ(::kill(b1, SIGSTOP), 0);
  wait_event(id, "clean");
  EXPECT_EQ(named(eventlog(id), "exception")[0]["context"]["type"], "node-failure");
  ASSERT_EQ(::kill(b1, SIGCONT), 0);
  expect_all_exit({b1});
  expect_all_exit(processes_with(m));
  expect_all_exit({shell});
}

TEST_F(ShellFaults, AShellAdoptedByAnInstanceThatDoesNotKnowItsJobEndsAtOnce) {
  // The instance crashes and comes back on the same state directory, but
  // emptied: the shell (rank 0's, which has no other broker to ask) is
  // adopted by a broker whose instance has no such job, and ends its task
  // at once rather than after a minute unclaimed.
  std::string m = marker(406);
  std::vector<std::string> up{fifo("up.0")};
  std::string id = submit_job({"-N1", "sh", "-c", "echo up > " + dir + "/up.0; exec sleep " + m});
  read_fifos(up);
  pid_t shell = shell_of(id, 0);
  ASSERT_GT(shell, 0);
  crash();
  std::filesystem::remove_all(dir + "/state");
  ASSERT_TRUE(inst.start(2, args()));
  expect_all_exit({shell});
  expect_all_exit(processes_with(m));
}

TEST_F(ShellFaults, AShellWaitingForItsBrokerEndsOnSigterm) {
  // Its task ignores SIGTERM; the shell, told to end while nobody can store
  // the output, kills it and exits rather than wait for a broker.
  std::string m = marker(407);
  std::vector<std::string> up{fifo("up.0")};
  std::string id = submit_job({"-N1", "sh", "-c", "trap '' TERM; echo up > " + dir + "/up.0; exec sleep " + m});
  read_fifos(up);
  pid_t shell = shell_of(id, 0);
  ASSERT_GT(shell, 0);
  crash();
  ASSERT_EQ(::kill(shell, SIGTERM), 0);
  expect_all_exit({shell});
  expect_all_exit(processes_with(m));
}

// A broker that dies after it started a job's shell but before the shell
// connected to it: the job has started (job-exec said so once the shell
// was spawned), so the shell runs it as one whose broker was lost, and the
// restarted broker adopts it, whether it was back before the shell tried
// (a broker that did not start the shell listens at its socket) or not.
// The shell is held before it connects by a wrapper at LOOM_SHELL_PATH
// (without a fork server, so that the wrapper is what the broker starts).
class ShellBeforeConnect : public ShellFaults {
 protected:
  void SetUp() override {
    dir = fresh_test_dir("shell-before-connect");
    std::string wrapper = dir + "/loom-shell";
    {
      std::ofstream w(wrapper);
      w << "#!/bin/sh\n"
        << "[ \"$1\" = --fork-server ] && exit 1\n"
        << "echo up > " << dir << "/shell-up\n"
        << "read go < " << dir << "/shell-go\n"
        << "exec " << bin("loom-shell") << " \"$@\"\n";
    }
    ASSERT_EQ(::chmod(wrapper.c_str(), 0755), 0);
    ::setenv("LOOM_SHELL_PATH", wrapper.c_str(), 1);
    ASSERT_TRUE(inst.start(2, args()));
  }
  void TearDown() override {
    ::unsetenv("LOOM_SHELL_PATH");
    ShellFaults::TearDown();
  }
  // A job of one task on rank 0 whose shell is held (one job per test);
  // returns once the
  // job has started and the broker is gone.
  std::string start_held_job_and_crash() {
    fifo("shell-go");
    std::string up = fifo("shell-up");
    std::string id = submit_job({"-N1", "sh", "-c", "echo ran on $LOOM_RANK"});
    read_fifos({up});
    wait_event(id, "start");
    crash();
    return id;
  }
  void let_the_shell_go() {
    auto r = run_cmd({"/bin/sh", "-c", "echo go > " + dir + "/shell-go"}, {}, 20);
    ASSERT_EQ(r.code, 0) << show(r);
  }
  void expect_completed(const std::string& id) {
    auto clean = inst.loom({"job", "wait-event", "-t", "40", id, "clean"});
    ASSERT_EQ(clean.code, 0) << show(clean);
    EXPECT_EQ(job(id).value("result", ""), "COMPLETED") << exec_log(id);
    auto out = loom({"job", "attach", id});
    EXPECT_EQ(out.code, 0) << show(out);
    EXPECT_EQ(out.out, "ran on 0\n");
    EXPECT_NE(exec_log(id).find("shell-reattach"), std::string::npos) << exec_log(id);
  }
};

TEST_F(ShellBeforeConnect, AShellThatFindsNoBrokerWaitsForOneAndRunsItsJob) {
  std::string id = start_held_job_and_crash();
  let_the_shell_go();
  ASSERT_TRUE(inst.start(2, args()));
  expect_completed(id);
}

TEST_F(ShellBeforeConnect, AShellThatFindsARestartedBrokerIsAdoptedByIt) {
  std::string id = start_held_job_and_crash();
  ASSERT_TRUE(inst.start(2, args()));
  let_the_shell_go();
  expect_completed(id);
}

}  // namespace
}  // namespace loom::test
