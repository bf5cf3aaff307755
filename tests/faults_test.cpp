// Faults an operator meets: the whole instance killed (every broker
// SIGKILLed) at points of a job's life, then started again on the same
// state directory, with the same configuration or a smaller one
// (docs/configuration.md, "What lives in the state directory"). What must
// hold whatever happened: every acknowledged job is there, no id is used
// twice, every job reaches `clean`, nothing is allocated twice or to a job
// that is gone (the double-booking alarm stays 0), every eventlog parses.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <tuple>
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

  void SetUp() override { dir = fresh_test_dir("faults"); }
  void TearDown() override {
    Exec::TearDown();
    // A lost rank's shell waits for its broker for the reattach timeout:
    // nothing of this test outlives it.
    for (const auto& m : markers) {
      for (pid_t p : processes_with(m)) ::kill(p, SIGKILL);
    }
    for (const auto& id : jobs) {
      for (pid_t p : shells_of(id)) ::kill(-p, SIGKILL);
    }
    // Epilogs and tasks of this test left waiting when a test fails: the
    // shells that run the epilog's script (loomd has it in its arguments
    // too) and what waits on a lock.
    for (pid_t p : processes_mentioning(std::string("/bin/sh") + '\0' + "-c" + '\0' + "test -e " + dir)) {
      ::kill(p, SIGKILL);
    }
    for (const char* lock : {"/lock.0", "/lock.1", "/plock.0", "/plock.1", "/task.lock"}) {
      for (pid_t p : processes_with(dir + lock)) ::kill(p, SIGKILL);
    }
    std::filesystem::remove_all(dir);
  }
  // An instance of `size` ranks with `cores` cores each on the state directory.
  ::testing::AssertionResult start(uint32_t size, uint32_t cores) {
    return inst.start(
        size, {"--cores-per-rank=" + std::to_string(cores), "--gpus-per-rank=0", "--state-dir=" + dir + "/state",
               "--setconf", "exec.reattach-timeout=60", "--setconf", "exec.kill-timeout=2"});
  }
  // A word for `sleep` (seconds, so it must be a number) that no other
  // process has on its command line.
  std::string marker(int seconds) {
    markers.push_back(std::to_string(seconds) + "." + std::to_string(::getpid()));
    return markers.back();
  }
  // One FIFO per writer: a line written while another writer's reader
  // had it open would be lost when that reader closes.
  void fifo(const std::string& name) { ASSERT_EQ(::mkfifo((dir + "/" + name).c_str(), 0600), 0); }
  // Reads one line from the FIFO `name`: a task or an epilog said it got
  // there.
  void told(const std::string& name) {
    std::string path = dir + "/" + name;
    auto r = run_cmd({"/bin/sh", "-c", "read x < " + path}, {}, 20);
    ASSERT_EQ(r.code, 0) << name << ": " << show(r);
  }
  // A real job of one task on each of `nodes` ranks (and `extra`
  // options) whose tasks say they are up, then sleep with `word` on their
  // command line; returns once every task is up.
  std::string running_job(int nodes, const std::string& word, const std::vector<std::string>& extra = {}) {
    for (int r = 0; r < nodes; ++r) fifo("up." + std::to_string(r));
    std::vector<std::string> args = {"-N" + std::to_string(nodes), "-n" + std::to_string(nodes)};
    args.insert(args.end(), extra.begin(), extra.end());
    for (const std::string& a :
         {std::string("sh"), std::string("-c"), "echo up > " + dir + "/up.$LOOM_RANK; exec sleep " + word}) {
      args.push_back(a);
    }
    std::string id = submit_job(args);
    jobs.push_back(id);
    for (int r = 0; r < nodes; ++r) told("up." + std::to_string(r));
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
  std::string id = running_job(1, word, {"--exclusive"});
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
  std::string id = running_job(2, word);
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
    std::string env = read_proc("/proc/" + std::to_string(p) + "/environ");
    if (env.find(std::string("LOOM_RANK=0") + '\0') != std::string::npos) left.push_back(p);
  }
  expect_all_exit(left);
}

// A job's exec eventlog lives in the job's namespace, which the job's user
// may write to: entries with fields of the wrong type, read back when the
// job is found again after a crash, must not bring the broker down.
TEST_F(Faults, MalformedExecEventlogEntriesDoNotBringDownARestart) {
  ASSERT_TRUE(start(1, 1));
  std::string word = marker(303);
  std::string id = running_job(1, word);
  std::string ns = "job-" + std::to_string(num(id));
  for (const char* ctx :
       {R"({"rank":0,"status":0,"timeout":"yes"})", R"({"rank":0,"status":"none"})", R"({"rank":"0","status":0})"}) {
    auto r = loom({"kvs", "--namespace", ns, "eventlog", "append", "exec.eventlog", "epilog-finish", ctx});
    ASSERT_EQ(r.code, 0) << show(r);
  }
  crash_instance(inst);
  ASSERT_TRUE(start(1, 1));
  auto cancel = loom({"cancel", id});
  ASSERT_EQ(cancel.code, 0) << show(cancel);
  wait_event(id, "clean");
  expect_all_exit(processes_with(word));
  EXPECT_EQ(alarms_and_allocated(), (Json{{"alarms", 0}, {"allocated", ""}}));
}

// --- the campaign ---
//
// One job (or two) at a chosen point of its life when every broker is
// killed; then a restart on the same state directory, with the same
// configuration (2 ranks of 2 cores) or a smaller one (1 rank of 1 core).
// Tasks, epilogs and prologs wait on locks the test holds, so the points
// are reached and left on events, not on time.
enum class Point { kSubmitted, kAllocated, kProlog, kRunning, kEpilog, kFinalRelease };

const char* point_name(Point p) {
  switch (p) {
    case Point::kSubmitted: return "AfterSubmit";
    case Point::kAllocated: return "AfterAlloc";
    case Point::kProlog: return "DuringTheProlog";
    case Point::kRunning: return "WhileRunning";
    case Point::kEpilog: return "DuringTheEpilog";
    case Point::kFinalRelease: return "BeforeTheFinalRelease";
  }
  return "?";
}

class Campaign : public Faults, public ::testing::WithParamInterface<std::tuple<Point, bool>> {
 protected:
  std::map<std::string, int> locks;  // path → descriptor holding its flock

  void TearDown() override {
    for (auto& [path, fd] : locks) ::close(fd);
    Faults::TearDown();
  }
  // Holds an exclusive flock on `name` in the test directory: whatever runs
  // `flock FILE ...` on it waits until release().
  void hold(const std::string& name) {
    std::string path = dir + "/" + name;
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ASSERT_EQ(::flock(fd, LOCK_EX), 0);
    locks[path] = fd;
  }
  void release(const std::string& name) {
    auto it = locks.find(dir + "/" + name);
    if (it == locks.end()) return;
    ::close(it->second);
    locks.erase(it);
  }
  void touch(const std::string& name) { std::ofstream(dir + "/" + name).put('\n'); }
  // The epilog (the prolog with p before each file name): on a rank whose
  // hold.R file exists it says so on eup.R (unless the test already heard
  // it: heard.R) and waits for the test's lock on lock.R.
  static std::string perilog(const std::string& d, const std::string& p) {
    return "test -e " + d + p + "hold.$LOOM_RANK || exit 0; test -e " + d + p + "heard.$LOOM_RANK || echo up > " + d +
           p + "eup.$LOOM_RANK; exec flock " + d + p + "lock.$LOOM_RANK true";
  }
  ::testing::AssertionResult start(bool smaller) {
    std::string d = dir + "/";
    uint32_t size = smaller ? 1 : 2, cores = smaller ? 1 : 2;
    return inst.start(
        size, {"--cores-per-rank=" + std::to_string(cores), "--gpus-per-rank=0", "--state-dir=" + dir + "/state",
               "--setconf", "exec.reattach-timeout=60", "--setconf", "exec.kill-timeout=2", "--setconf",
               "exec.epilog=" + perilog(d, ""), "--setconf", "exec.prolog=" + perilog(d, "p")});
  }

  // The invariants, once the instance is back: every acknowledged job is
  // listed and reaches clean (cancelled if it still runs), its eventlogs
  // parse, nothing is allocated, the alarm is 0, and a new job gets a new id.
  void check(const std::vector<std::string>& acked) {
    auto all = loom({"jobs", "-a", "--json"});
    ASSERT_EQ(all.code, 0) << show(all);
    auto listed = parse_json(all.out);
    ASSERT_TRUE(listed.ok()) << all.out;
    std::set<uint64_t> ids;
    for (auto& j : *listed) ids.insert(j["id"].get<uint64_t>());
    uint64_t highest = 0;
    for (const auto& id : acked) {
      EXPECT_TRUE(ids.count(num(id))) << "job " << id << " was acknowledged but is gone";
      highest = std::max(highest, num(id));
      // (It may end by itself meanwhile: then the cancel is refused.)
      if (state(id) != "INACTIVE") loom({"cancel", id});
    }
    for (const auto& id : acked) {
      wait_event(id, "clean");
      for (const char* path : {"eventlog", "exec"}) {
        auto log = loom({"job", "eventlog", "--json", "-p", path, id});
        if (log.code != 0 && std::string(path) == "exec") continue;  // never started: no exec eventlog
        ASSERT_EQ(log.code, 0) << id << " " << path << ": " << show(log);
        for (const auto& line : log.out_lines()) {
          auto e = parse_json(line);
          EXPECT_TRUE(e.ok() && e->is_object() && (*e)["name"].is_string()) << id << " " << path << ": " << line;
        }
      }
    }
    EXPECT_EQ(alarms_and_allocated(), (Json{{"alarms", 0}, {"allocated", ""}}));
    std::string next = submit_job({"--setattr=exec.test.run_duration=0", "true"});
    EXPECT_GT(num(next), highest) << "an id was used again";
    wait_event(next, "clean");
    EXPECT_EQ(job(next)["result"], "COMPLETED");
  }
};

TEST_P(Campaign, EveryJobIsKeptAndEndsAndNothingIsBookedTwice) {
  auto [point, smaller] = GetParam();
  ASSERT_TRUE(start(false));
  std::vector<std::string> acked;
  std::string d = dir + "/";
  switch (point) {
    case Point::kSubmitted: {
      ASSERT_EQ(loom({"queue", "stop"}).code, 0);
      acked.push_back(submit_job({"-N2", "true"}));
      acked.push_back(submit_job({"-n1", "true"}));
      break;
    }
    case Point::kAllocated: {
      // Allocated, its start asked of test execution and not answered.
      acked.push_back(submit_job({"--setattr=exec.test.override=true", "-N2", "true"}));
      wait_event(acked.back(), "alloc");
      break;
    }
    case Point::kProlog: {
      // Both ranks' prologs run; no shell has started.
      for (int r = 0; r < 2; ++r) {
        touch("phold." + std::to_string(r));
        hold("plock." + std::to_string(r));
        fifo("peup." + std::to_string(r));
      }
      acked.push_back(submit_job({"-N2", "true"}));
      jobs.push_back(acked.back());
      told("peup.0");
      told("peup.1");
      break;
    }
    case Point::kRunning: {
      hold("task.lock");
      int n = 0;
      // A job on one core of each rank, and one on one core.
      for (const char* size : {"-N2", "-N1"}) {
        std::string up = "up" + std::to_string(n++) + ".";
        for (int r = 0; r < 2; ++r) fifo(up + std::to_string(r));
        bool both = size == std::string("-N2");
        acked.push_back(submit_job({size, both ? "-n2" : "-n1", "sh", "-c",
                                    "echo up > " + d + up + "$LOOM_RANK; exec flock " + d + "task.lock true"}));
        jobs.push_back(acked.back());
        wait_event(acked.back(), "start");
        told(up + (both ? "0" : job(acked.back()).value("ranks", "?")));
        if (both) told(up + "1");
      }
      break;
    }
    case Point::kEpilog: {
      for (int r = 0; r < 2; ++r) {
        touch("hold." + std::to_string(r));
        hold("lock." + std::to_string(r));
        fifo("eup." + std::to_string(r));
      }
      acked.push_back(submit_job({"-N2", "true"}));
      jobs.push_back(acked.back());
      told("eup.0");
      told("eup.1");
      wait_event(acked.back(), "finish");
      break;
    }
    case Point::kFinalRelease: {
      // Rank 0's epilog ends at once, rank 1's waits: rank 0 is released,
      // the final release is not.
      touch("hold.1");
      hold("lock.1");
      fifo("eup.1");
      acked.push_back(submit_job({"-N2", "true"}));
      jobs.push_back(acked.back());
      told("eup.1");
      wait_event(acked.back(), "release");
      break;
    }
  }
  crash_instance(inst);
  // Prologs and epilogs that were running when the brokers died run again
  // (docs/protocols/exec.md): with the same configuration the test waits
  // to hear each again, and meanwhile their ranks must still be held.
  bool again = !smaller && (point == Point::kProlog || point == Point::kEpilog || point == Point::kFinalRelease);
  for (const char* p : {"", "p"}) {
    for (int r = 0; r < 2; ++r) {
      if (!again) touch(p + std::string("heard.") + std::to_string(r));
    }
  }
  ASSERT_TRUE(start(smaller));
  if (point == Point::kSubmitted) {
    ASSERT_EQ(loom({"queue", "start"}).code, 0);
  }
  if (again) {
    std::string p = point == Point::kProlog ? "p" : "";
    std::vector<int> ranks = point == Point::kFinalRelease ? std::vector<int>{1} : std::vector<int>{0, 1};
    for (int r : ranks) told(p + "eup." + std::to_string(r));
    EXPECT_EQ(allocated_ranks(), point == Point::kFinalRelease ? "1" : "0-1");
  }
  // Whatever waited goes on now.
  for (const char* name : {"task.lock", "lock.0", "lock.1", "plock.0", "plock.1"}) release(name);
  check(acked);
}

INSTANTIATE_TEST_SUITE_P(Faults, Campaign,
                         ::testing::Combine(::testing::Values(Point::kSubmitted, Point::kAllocated, Point::kProlog,
                                                              Point::kRunning, Point::kEpilog, Point::kFinalRelease),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(point_name(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) ? "ThenSmaller" : "ThenSame");
                         });

}  // namespace
}  // namespace loom::test
