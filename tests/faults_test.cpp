// Faults an operator meets: the whole instance killed (every broker
// SIGKILLed) at points of a job's life, then started again on the same
// state directory, with the same configuration or a smaller one
// (docs/configuration.md, "What lives in the state directory"). What must
// hold whatever happened: every acknowledged job is there, no id is used
// twice, every job reaches `clean`, nothing is allocated twice or to a job
// that is gone (the double-booking alarm stays 0), every eventlog parses.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "kit/exec.h"

namespace loom::test {
namespace {

class Faults : public Exec {
 protected:
  std::string dir;
  // Killed at the end whatever happened: the tasks (by a word of their
  // command lines) and the shells (by their job's id) of this test.
  std::vector<std::string> markers;
  std::vector<std::string> jobs;

  void SetUp() override {
    dir = (std::filesystem::temp_directory_path() / ("loom-faults-" + std::to_string(::getpid()))).string();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  void TearDown() override {
    Exec::TearDown();
    // A lost rank's shell waits for its broker for the reattach timeout:
    // nothing of this test outlives it.
    for (const auto& m : markers) {
      for (pid_t p : processes_with(m)) ::kill(p, SIGKILL);
    }
    for (const auto& id : jobs) {
      for (pid_t p : processes_with(std::to_string(num(id)))) ::kill(-p, SIGKILL);
    }
    std::filesystem::remove_all(dir);
  }
  // An instance of `size` ranks with `cores` cores each on the state directory.
  ::testing::AssertionResult start(uint32_t size, uint32_t cores) {
    return inst.start(size, {"--cores-per-rank=" + std::to_string(cores), "--gpus-per-rank=0",
                             "--state-dir=" + dir + "/state", "--setconf", "exec.reattach-timeout=60", "--setconf",
                             "exec.kill-timeout=2"});
  }
  // A word for `sleep` (seconds, so it must be a number) that no other
  // process has on its command line.
  std::string marker(int seconds) {
    markers.push_back(std::to_string(seconds) + "." + std::to_string(::getpid()));
    return markers.back();
  }
  // A real job whose tasks say they are up, then sleep with `word` on their
  // command line; returns once every task is up.
  std::string running_job(const std::vector<std::string>& size, const std::string& word, int ntasks) {
    std::string up = dir + "/up";
    ::unlink(up.c_str());
    EXPECT_EQ(::mkfifo(up.c_str(), 0600), 0);
    std::vector<std::string> args = size;
    for (const char* a : {"sh", "-c"}) args.push_back(a);
    args.push_back("echo up > " + up + "; exec sleep " + word);
    std::string id = submit_job(args);
    jobs.push_back(id);
    for (int i = 0; i < ntasks; ++i) {
      auto r = run_cmd({"/bin/cat", up}, {}, 20);
      EXPECT_EQ(r.code, 0) << show(r);
    }
    return id;
  }
  Json alarms_and_allocated() {
    Json r = resources();
    return Json{{"alarms", r.value("alarms", -1)}, {"allocated", r["allocated"].value("ranks", "?")}};
  }
};

// A job ran on 2 cores; the instance comes back with 1 core per rank. The
// job cannot hold its cores again: it fails with a fatal exception that
// says so, its tasks are killed, and the core that still exists is not
// given to another job while they run.
TEST_F(Faults, ARunningJobWhoseCoresAreGoneAfterARestartFailsAndItsTasksAreKilled) {
  ASSERT_TRUE(start(1, 2));
  std::string word = marker(301);
  std::string id = running_job({"-N1", "--exclusive"}, word, 1);
  crash_instance(inst);
  ASSERT_TRUE(start(1, 1));
  wait_event(id, "clean");
  auto ex = named(eventlog(id), "exception");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["type"], "scheduler-restart");
  EXPECT_EQ(ex[0]["context"]["severity"], 0);
  EXPECT_EQ(ex[0]["context"]["note"],
            "its resources cannot all be allocated again after the restart: rank 0 has no cores 1 (it has 1 core)");
  expect_all_exit(processes_with(word));
  EXPECT_EQ(alarms_and_allocated(), (Json{{"alarms", 0}, {"allocated", ""}}));
  // The core is free again, and only now.
  auto next = loom({"run", "-n1", "true"});
  EXPECT_EQ(next.code, 0) << show(next);
}

// A job ran on two ranks; the instance comes back with one. The rank that
// is gone is not waited for (it does not exist: no broker will bring its
// shell back), the job ends at once, its tasks on the rank that is left
// are killed.
TEST_F(Faults, ARunningJobOnARankThatIsGoneAfterARestartEndsAtOnce) {
  ASSERT_TRUE(start(2, 1));
  std::string word = marker(302);
  std::string id = running_job({"-N2"}, word, 2);
  crash_instance(inst);
  ASSERT_TRUE(start(1, 1));
  wait_event(id, "clean");  // within 20 s: well before the reattach timeout (60 s)
  auto log = eventlog(id);
  auto ex = named(log, "exception");
  ASSERT_GE(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["severity"], 0);
  EXPECT_NE(ex[0]["context"]["note"].get<std::string>().find("rank 1"), std::string::npos) << ex[0];
  EXPECT_EQ(named(log, "release").back()["context"]["final"], true);
  EXPECT_EQ(alarms_and_allocated(), (Json{{"alarms", 0}, {"allocated", ""}}));
  // Rank 0's task, found again, was killed.
  std::vector<pid_t> left;
  for (pid_t p : processes_with(word)) {
    std::ifstream in("/proc/" + std::to_string(p) + "/environ");
    std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (env.find(std::string("LOOM_RANK=0") + '\0') != std::string::npos) left.push_back(p);
  }
  expect_all_exit(left);
}

}  // namespace
}  // namespace loom::test
