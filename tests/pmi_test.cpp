// MPI wire-up (docs/pmi.md): the shells' PMI-1 server end to end. Tasks
// written in bash speak the wire protocol by hand (no MPI needed); an
// MPICH program, compiled here with mpicc where it is installed, passes a
// token around every rank of a job spread over 2 and 4 brokers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "kit/exec.h"
#include "kit/instance.h"
#include "kit/jobs.h"

namespace loom::test {
namespace {

// A bash task speaks PMI on $PMI_FD: `pmi LINE` sends a request and reads
// the answer into $reply.
const char* kPmiFunctions = "pmi() { printf '%s\\n' \"$1\" >&$PMI_FD; read -r reply <&$PMI_FD; }; ";

class Pmi : public JobsFixture {
 protected:
  std::string dir;
  void SetUp() override { dir = fresh_test_dir("pmi"); }
  void TearDown() override { std::filesystem::remove_all(dir); }
  void start_brokers(uint32_t n) { ASSERT_TRUE(inst.start(n, {"--cores-per-rank=4", "--gpus-per-rank=0"})); }
  // A bash script in the test's directory.
  std::string script(const std::string& name, const std::string& body) {
    std::string path = dir + "/" + name;
    std::ofstream(path) << "#!/bin/bash\n" << kPmiFunctions << "\n" << body;
    std::filesystem::permissions(path, std::filesystem::perms::owner_all);
    return path;
  }
};

TEST_F(Pmi, TasksOnTwoBrokersExchangeKeysAtABarrier) {
  start_brokers(2);
  // Each task puts a key of its own, waits at the barrier, and reads its
  // right neighbour's: two on each broker, so two of the four reads cross.
  std::string task = script("exchange", R"(
pmi "cmd=init pmi_version=1 pmi_subversion=1"; echo "$PMI_RANK init: $reply"
pmi "cmd=get_maxes"; echo "$PMI_RANK maxes: $reply"
pmi "cmd=get_my_kvsname"; kvs=${reply##*kvsname=}
pmi "cmd=get_universe_size"; echo "$PMI_RANK universe: $reply"
pmi "cmd=put kvsname=$kvs key=card-$PMI_RANK value=hello from $PMI_RANK"; echo "$PMI_RANK put: $reply"
pmi "cmd=barrier_in"; echo "$PMI_RANK barrier: $reply"
next=$(( (PMI_RANK + 1) % PMI_SIZE ))
pmi "cmd=get kvsname=$kvs key=card-$next"; echo "$PMI_RANK got: $reply"
pmi "cmd=get kvsname=$kvs key=PMI_process_mapping"; echo "$PMI_RANK mapping: $reply"
pmi "cmd=get kvsname=$kvs key=nosuch"; echo "$PMI_RANK nosuch: $reply"
pmi "cmd=barrier_in"; echo "$PMI_RANK barrier2: $reply"
pmi "cmd=finalize"; echo "$PMI_RANK finalize: $reply"
)");
  auto r = loom({"run", "-N2", "-n4", task});
  ASSERT_EQ(r.code, 0) << show(r);
  std::set<std::string> lines;
  for (auto& l : r.out_lines()) lines.insert(l);
  for (int t = 0; t < 4; ++t) {
    std::string n = std::to_string(t);
    std::string next = std::to_string((t + 1) % 4);
    for (const std::string& want :
         {n + " init: cmd=response_to_init rc=0 pmi_version=1 pmi_subversion=1",
          n + " maxes: cmd=maxes rc=0 kvsname_max=256 keylen_max=64 vallen_max=1024",
          n + " universe: cmd=universe_size rc=0 size=4", n + " put: cmd=put_result rc=0",
          n + " barrier: cmd=barrier_out rc=0", n + " got: cmd=get_result rc=0 value=hello from " + next,
          n + " mapping: cmd=get_result rc=0 value=(vector,(0,2,2))",
          n + " nosuch: cmd=get_result rc=-1 msg=key_nosuch_not_found", n + " barrier2: cmd=barrier_out rc=0",
          n + " finalize: cmd=finalize_ack rc=0"}) {
      EXPECT_TRUE(lines.count(want)) << want << "\n" << show(r);
    }
  }
}

// A task that runs one MPI program after another (`sh -c './a; ./b'`):
// the second initializes the connection the first finalized, and takes
// part in the barriers again.
TEST_F(Pmi, ATaskWiresUpAgainAfterAFinalize) {
  start_brokers(2);
  std::string task = script("twice", R"(
other=$(( 1 - PMI_RANK ))
for run in 1 2; do
  pmi "cmd=init pmi_version=1 pmi_subversion=1"
  pmi "cmd=put key=k$PMI_RANK value=run$run-$PMI_RANK"; pmi "cmd=barrier_in"
  pmi "cmd=get key=k$other"; echo "$PMI_RANK run $run: $reply"
  pmi "cmd=finalize"
done
)");
  auto r = loom({"run", "-N2", "-n2", "-t", "60s", task});
  ASSERT_EQ(r.code, 0) << show(r);
  std::set<std::string> lines;
  for (auto& l : r.out_lines()) lines.insert(l);
  EXPECT_EQ(lines, (std::set<std::string>{
                       "0 run 1: cmd=get_result rc=0 value=run1-1", "1 run 1: cmd=get_result rc=0 value=run1-0",
                       "0 run 2: cmd=get_result rc=0 value=run2-1", "1 run 2: cmd=get_result rc=0 value=run2-0"}))
      << show(r);
}

TEST_F(Pmi, AMalformedOrOverlongLineDoesNotBreakTheShell) {
  start_brokers(1);
  // Garbage gets an error answer and the connection serves on; a line
  // past the limit ends that task's connection (it reads its end), and
  // the task, which never initialized, ends nothing else.
  std::string task = script("garbage", R"(
pmi "hello there"; echo "garbage: $reply"
pmi "cmd="; echo "empty: $reply"
pmi "cmd=init pmi_version=1 pmi_subversion=1"; echo "init: $reply"
pmi "cmd=spawn nprocs=2"; echo "spawn: $reply"
pmi "cmd=put key=$(head -c 2000 /dev/zero | tr '\0' k) value=v"; echo "long key: $reply"
pmi "cmd=finalize"; echo "finalize: $reply"
)");
  auto r = loom({"run", "-n1", task});
  ASSERT_EQ(r.code, 0) << show(r);
  auto out = r.out_lines();
  ASSERT_EQ(out.size(), 6u) << show(r);
  EXPECT_EQ(out[0], "garbage: cmd=error rc=-1 msg=not_a_name_value_word:_hello");
  EXPECT_EQ(out[1], "empty: cmd=error rc=-1 msg=no_command");
  EXPECT_EQ(out[2], "init: cmd=response_to_init rc=0 pmi_version=1 pmi_subversion=1");
  EXPECT_EQ(out[3], "spawn: cmd=spawn_result rc=-1 msg=unknown_or_unsupported_request_spawn");
  EXPECT_EQ(out[4], "long key: cmd=put_result rc=-1 msg=key_too_long");
  EXPECT_EQ(out[5], "finalize: cmd=finalize_ack rc=0");

  std::string flood = script("flood", R"(
head -c 100000 /dev/zero | tr '\0' x >&$PMI_FD
if read -r reply <&$PMI_FD; then echo "answered: $reply"; else echo "closed"; fi
)");
  r = loom({"run", "-n2", flood});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out, "closed\nclosed\n") << show(r);
  // The instance runs jobs as before.
  r = loom({"run", "-n2", "echo", "ok"});
  EXPECT_EQ(r.out, "ok\nok\n") << show(r);
}

TEST_F(Pmi, AnAbortEndsTheTasksOfEveryBroker) {
  start_brokers(2);
  // Task 0 aborts; task 1, on the other broker, waits at a barrier that
  // can never end: it is killed.
  std::string task = script("abort", R"(
pmi "cmd=init pmi_version=1 pmi_subversion=1"
if [ "$PMI_RANK" = 0 ]; then printf 'cmd=abort exitcode=7 message=bye\n' >&$PMI_FD; exec sleep 300; fi
pmi "cmd=barrier_in"; echo "barrier ended: $reply"
)");
  auto r = loom({"run", "-N2", "-n2", task});
  EXPECT_EQ(r.code, 137) << show(r);
  EXPECT_NE(r.err.find("task 0 aborted the job (exit code 7): bye; killing the job's tasks"), std::string::npos)
      << show(r);
  EXPECT_EQ(r.out.find("barrier ended"), std::string::npos) << show(r);
}

TEST_F(Pmi, AnAbortJustBeforeExitIsAnAbort) {
  start_brokers(1);
  // What MPICH's PMI_Abort does: send, and exit at once. The task's exit
  // may be seen before its line: the line is still read.
  std::string task = script("abort-exit", R"(
pmi "cmd=init pmi_version=1 pmi_subversion=1"
if [ "$PMI_RANK" = 0 ]; then printf 'cmd=abort exitcode=7 message=bye\n' >&$PMI_FD; exit 7; fi
pmi "cmd=barrier_in"; echo "barrier ended: $reply"
)");
  for (int round = 0; round < 5; ++round) {
    auto r = loom({"run", "-n2", task});
    EXPECT_NE(r.code, 0) << show(r);
    EXPECT_NE(r.err.find("task 0 aborted the job (exit code 7): bye"), std::string::npos) << show(r);
  }
}

TEST_F(Pmi, ATaskGoneBeforeFinalizeEndsTheJob) {
  start_brokers(2);
  std::string task = script("gone", R"(
pmi "cmd=init pmi_version=1 pmi_subversion=1"
if [ "$PMI_RANK" = 1 ]; then exit 3; fi
pmi "cmd=barrier_in"; echo "barrier ended: $reply"
)");
  auto r = loom({"run", "-N2", "-n2", task});
  EXPECT_NE(r.code, 0) << show(r);
  EXPECT_NE(r.err.find("task 1 left after PMI init, before finalize; killing the job's tasks"), std::string::npos)
      << show(r);
  EXPECT_EQ(r.out.find("barrier ended"), std::string::npos) << show(r);
}

TEST_F(Pmi, ProgramsThatSpeakNoPmiRunAsBefore) {
  start_brokers(1);
  auto r = loom({"run", "-n2", "sh", "-c",
                 "echo $PMI_RANK/$PMI_SIZE fd=$PMI_FD; [ -S /proc/self/fd/$PMI_FD ] || "
                 "readlink /proc/self/fd/$PMI_FD"});
  ASSERT_EQ(r.code, 0) << show(r);
  std::set<std::string> lines;
  for (auto& l : r.out_lines()) lines.insert(l);
  EXPECT_EQ(lines, (std::set<std::string>{"0/2 fd=3", "1/2 fd=3"})) << show(r);
}

TEST_F(Pmi, AProcessLeftHoldingTheConnectionDoesNotKeepTheJob) {
  start_brokers(1);
  // The background sleep keeps descriptor 3 (not its output): the job
  // ends with its task.
  auto r = loom({"run", "-n1", "sh", "-c", "sleep 317 </dev/null >/dev/null 2>&1 & echo started"});
  for (pid_t p : processes_with("317")) ::kill(p, SIGKILL);
  EXPECT_FALSE(r.timed_out) << show(r);
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out, "started\n") << show(r);
}

// MPICH (Debian's mpich: ch4 over UCX, simple PMI-1 when PMI_FD is set).
class PmiMpich : public Pmi {
 protected:
  std::string ring;
  void SetUp() override {
    Pmi::SetUp();
    std::string mpicc = system_tool("mpicc");
    if (mpicc.empty()) GTEST_SKIP() << "mpicc is not installed (Debian: apt-get install mpich; scripts/deps does)";
    std::ofstream(dir + "/ring.c") << R"(#include <mpi.h>
#include <stdio.h>
int main(int argc, char** argv) {
  int rank, size, token = 0;
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank == 0) {
    token = 1;
    MPI_Send(&token, 1, MPI_INT, 1 % size, 0, MPI_COMM_WORLD);
    MPI_Recv(&token, 1, MPI_INT, size - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  } else {
    MPI_Recv(&token, 1, MPI_INT, rank - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    token++;
    MPI_Send(&token, 1, MPI_INT, (rank + 1) % size, 0, MPI_COMM_WORLD);
  }
  printf("rank %d of %d token %d\n", rank, size, token);
  MPI_Finalize();
  return rank == 0 && token != size;
}
)";
    ring = dir + "/ring";
    auto cc = run_cmd({mpicc, "-o", ring, dir + "/ring.c"}, {}, 60);
    ASSERT_EQ(cc.code, 0) << brief(cc);
  }
  // Every rank of `size` reports the size, and the token came back to
  // rank 0 incremented by each of the others.
  void expect_ring(const CmdResult& r, int size) {
    ASSERT_EQ(r.code, 0) << show(r);
    std::set<std::string> lines;
    for (auto& l : r.out_lines()) lines.insert(l);
    std::set<std::string> want;
    for (int t = 0; t < size; ++t) {
      want.insert("rank " + std::to_string(t) + " of " + std::to_string(size) + " token " +
                  std::to_string(t == 0 ? size : t + 1));
    }
    EXPECT_EQ(lines, want) << show(r);
  }
};

TEST_F(PmiMpich, ARingOnTwoBrokersIsOneJob) {
  start_brokers(2);
  expect_ring(loom({"run", "-N2", "-n4", ring}), 4);
}

TEST_F(PmiMpich, ARingOnFourBrokersIsOneJob) {
  start_brokers(4);
  expect_ring(loom({"run", "-N4", "-n8", ring}), 8);
}

}  // namespace
}  // namespace loom::test
