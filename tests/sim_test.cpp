// `loom sim` (docs/simulator.md) on small traces whose outcome is worked
// out by hand here: the order FCFS keeps, a backfill, a reservation that a
// longer job may not delay, a time limit, epilogs; its report files, that
// two runs give the same bytes, and one clear line for bad traces. The
// published KTH-SP2 results: sim_validation_test.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "kit/jobs.h"
#include "kit/process.h"
#include "msg/json.h"

namespace loom::test {
namespace {

namespace fs = std::filesystem;

// One SWF job line: number, submit, run, processors, requested time (the
// other fields unknown).
std::string swf_job(int id, int submit, int run, int procs, int requested) {
  std::ostringstream s;
  s << id << ' ' << submit << " -1 " << run << ' ' << procs << " -1 -1 " << procs << ' ' << requested
    << " -1 1 1 1 -1 1 -1 -1 -1\n";
  return s.str();
}

class SimCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "loom-sim-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    tmp_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
  std::string write(const std::string& name, const std::string& text) {
    std::string path = (tmp_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  // A trace of a machine of `procs` processors.
  std::string trace(int procs, const std::string& jobs) {
    return write("t.swf", "; MaxProcs: " + std::to_string(procs) + "\n; UnixStartTime: 1000000000\n" + jobs);
  }
  CmdResult sim(const std::vector<std::string>& args) {
    std::vector<std::string> argv{bin("loom"), "sim"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_cmd(argv, {}, 120);
  }
  // The rows of a --jobs file by job_id: column name → value.
  std::map<std::string, std::map<std::string, std::string>> jobs_csv(const std::string& path) {
    std::ifstream f(path);
    std::string line;
    std::vector<std::string> names;
    std::map<std::string, std::map<std::string, std::string>> rows;
    auto split = [](const std::string& l) {
      std::vector<std::string> out;
      std::stringstream ss(l);
      std::string cell;
      while (std::getline(ss, cell, ',')) out.push_back(cell);
      if (!l.empty() && l.back() == ',') out.emplace_back();
      return out;
    };
    if (!std::getline(f, line)) return rows;
    names = split(line);
    while (std::getline(f, line)) {
      auto cells = split(line);
      std::map<std::string, std::string> row;
      for (size_t i = 0; i < names.size() && i < cells.size(); ++i) row[names[i]] = cells[i];
      rows[row["job_id"]] = row;
    }
    return rows;
  }
  // Each job's starting time, in job order, from a --jobs file.
  std::vector<std::string> starts(const std::string& path) {
    std::vector<std::string> out;
    for (auto& [id, row] : jobs_csv(path)) out.push_back(id + "@" + row["starting_time"]);
    return out;
  }
  std::string read(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  fs::path tmp_;
};

// 4 processors. Job 1 (2 procs, 10 s) starts at 0; job 2 needs all 4 and
// waits for it until 10; job 3 (2 procs, 5 s, submitted at 1) could run
// beside job 1 at once, but FCFS keeps the order: it starts after job 2,
// at 20. EASY backfills it at 1: it is to end at 6 (its requested time),
// before job 2's reservation at 20 (job 1's requested end).
TEST_F(SimCommand, FcfsKeepsTheOrderAndEasyBackfillsWhatEndsBeforeTheReservation) {
  std::string t = trace(4, swf_job(1, 0, 10, 2, 20) + swf_job(2, 0, 10, 4, 20) + swf_job(3, 1, 5, 2, 5));
  std::string csv = (tmp_ / "jobs.csv").string();
  auto r = sim({t, "--policy", "fcfs,easy", "--jobs", csv});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(starts((tmp_ / "jobs-fcfs.csv").string()), (std::vector<std::string>{"1@0", "2@10", "3@20"}));
  EXPECT_EQ(starts((tmp_ / "jobs-easy.csv").string()), (std::vector<std::string>{"1@0", "2@10", "3@1"}));
  // The summary, side by side: average waits (0+10+19)/3 and (0+10+0)/3.
  EXPECT_NE(r.out.find("policy                      fcfs        easy"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("average wait (s)             9.7         3.3"), std::string::npos) << r.out;
}

// The same, but job 3 asks for 25 s: to end at 26 it would delay job 2's
// reservation at 20 (it needs cores job 2 needs), so EASY does not start
// it; job 1 ends at 10, job 2 runs from 10 to 20, then job 3.
TEST_F(SimCommand, EasyDoesNotDelayTheReservation) {
  std::string t = trace(4, swf_job(1, 0, 10, 2, 20) + swf_job(2, 0, 10, 4, 20) + swf_job(3, 1, 5, 2, 25));
  std::string csv = (tmp_ / "jobs.csv").string();
  auto r = sim({t, "--policy", "easy", "--jobs", csv});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(starts(csv), (std::vector<std::string>{"1@0", "2@10", "3@20"}));
}

// A job that runs longer than it asked is stopped at its limit, as real
// execution stops it: job 1 asked for 10 s and would run 30; job 2, which
// needs the whole machine, starts at 10.
TEST_F(SimCommand, AJobRunningPastItsLimitEndsThereWithTheTimeout) {
  std::string t = trace(2, swf_job(1, 0, 30, 2, 10) + swf_job(2, 0, 5, 2, 10));
  std::string csv = (tmp_ / "jobs.csv").string();
  auto r = sim({t, "--jobs", csv});
  ASSERT_EQ(r.code, 0) << show(r);
  auto rows = jobs_csv(csv);
  EXPECT_EQ(rows["1"]["final_state"], "COMPLETED_WALLTIME_REACHED");
  EXPECT_EQ(rows["1"]["finish_time"], "10");
  EXPECT_EQ(rows["2"]["starting_time"], "10");
  EXPECT_EQ(rows["2"]["final_state"], "COMPLETED_SUCCESSFULLY");
}

// A time limit of 2^31-1 s (a log's "no limit", as CEA-Curie's) is
// taken as it is: job 1 runs its 10 s. Job 2's reservation is at job 1's
// limit, 68 years on, so EASY backfills job 3 at once; job 2 starts when
// job 1 ends.
TEST_F(SimCommand, ATimeLimitFarPastTheSpanIsNoObstacle) {
  std::string t = trace(4, swf_job(1, 0, 10, 2, 2147483647) + swf_job(2, 1, 5, 4, 10) + swf_job(3, 2, 5, 2, 5));
  std::string csv = (tmp_ / "jobs.csv").string();
  auto r = sim({t, "--policy", "easy", "--jobs", csv});
  ASSERT_EQ(r.code, 0) << show(r);
  auto rows = jobs_csv(csv);
  EXPECT_EQ(rows["1"]["finish_time"], "10");
  EXPECT_EQ(rows["1"]["final_state"], "COMPLETED_SUCCESSFULLY");
  EXPECT_EQ(starts(csv), (std::vector<std::string>{"1@0", "2@10", "3@2"}));
}

// With --epilog 5 a job's nodes go back 5 s after it ends: job 2, which
// needs job 1's nodes, starts at 15, not 10.
TEST_F(SimCommand, EpilogsHoldTheNodesAfterTheJob) {
  std::string t = trace(2, swf_job(1, 0, 10, 2, 20) + swf_job(2, 0, 5, 2, 10));
  std::string csv = (tmp_ / "jobs.csv").string();
  auto r = sim({t, "--epilog", "5", "--jobs", csv});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(starts(csv), (std::vector<std::string>{"1@0", "2@15"}));
  auto plain = sim({t, "--jobs", csv});
  ASSERT_EQ(plain.code, 0) << show(plain);
  EXPECT_EQ(starts(csv), (std::vector<std::string>{"1@0", "2@10"}));
}

// The report's keys, and the same trace and options give the same bytes:
// the per-job rows and the plot entirely, the report but for the
// simulation's own wall time.
TEST_F(SimCommand, ReportsAreComplete) {
  std::string jobs;
  for (int i = 1; i <= 200; ++i) jobs += swf_job(i, i * 7 % 50, 5 + i % 13, 1 + i % 4, 20);
  std::string t = trace(4, jobs);
  std::vector<std::string> texts[2];
  for (int run = 0; run < 2; ++run) {
    std::string d = (tmp_ / ("run" + std::to_string(run))).string();
    fs::create_directories(d);
    auto r =
        sim({t, "--policy", "fcfs,easy", "--report", d + "/r.json", "--jobs", d + "/j.csv", "--plot", d + "/p.svg"});
    ASSERT_EQ(r.code, 0) << show(r);
    Json report = Json::parse(read(d + "/r.json"));
    for (const char* p : {"fcfs", "easy"}) {
      ASSERT_TRUE(report["policies"].contains(p)) << report.dump();
      for (const char* k : {"jobs", "makespan", "utilization", "avg_wait", "p50_wait", "p95_wait",
                            "avg_bounded_slowdown", "wall_seconds", "jobs_per_second"}) {
        EXPECT_TRUE(report["policies"][p].contains(k)) << p << " " << k;
      }
      EXPECT_EQ(report["policies"][p]["jobs"], 200);
      report["policies"][p].erase("wall_seconds");
      report["policies"][p].erase("jobs_per_second");
    }
    texts[run] = {report.dump(), read(d + "/j-fcfs.csv"), read(d + "/j-easy.csv"), read(d + "/p.svg")};
    EXPECT_NE(texts[run][3].find("<svg"), std::string::npos);
  }
  EXPECT_EQ(texts[0], texts[1]);
}

// A job larger than the machine (--nodes smaller than the trace's
// machine) is refused alone: the other job of its instant runs; one line
// and status 1 say so.
TEST_F(SimCommand, AJobLargerThanTheMachineIsRefusedAlone) {
  std::string t = trace(4, swf_job(1, 10, 5, 4, 20) + swf_job(2, 10, 7, 1, 20));
  std::string csv = (tmp_ / "jobs.csv").string();
  auto r = sim({t, "--nodes", "2", "--jobs", csv});
  EXPECT_EQ(r.code, 1) << show(r);
  auto lines = r.err_lines();
  ASSERT_EQ(lines.size(), 1u) << show(r);
  EXPECT_EQ(lines[0], "loom sim: fcfs: 1 job refused at submit (the first: job 1 needs 4 cores; the machine has 2)");
  auto rows = jobs_csv(csv);
  EXPECT_EQ(rows["1"]["final_state"], "REJECTED");
  EXPECT_EQ(rows["2"]["starting_time"], "10");
  EXPECT_EQ(rows["2"]["final_state"], "COMPLETED_SUCCESSFULLY");
}

// A Batsim job whose run time equals its requested time, in fractions of a
// second, ends normally: it did not run past its limit.
TEST_F(SimCommand, AJobThatUsesExactlyItsTimeLimitEndsNormally) {
  std::string t = write("w.json", R"({"nb_res": 4, "jobs": [
      {"id": 1, "subtime": 0.3, "walltime": 0.6, "res": 1, "profile": "a"},
      {"id": 2, "subtime": 12345.7, "walltime": 3600.3, "res": 2, "profile": "b"}],
    "profiles": {"a": {"type": "delay", "delay": 0.6}, "b": {"type": "delay", "delay": 3600.3}}})");
  std::string csv = (tmp_ / "jobs.csv").string();
  auto r = sim({t, "--jobs", csv});
  ASSERT_EQ(r.code, 0) << show(r);
  for (const char* id : {"1", "2"}) EXPECT_EQ(jobs_csv(csv)[id]["final_state"], "COMPLETED_SUCCESSFULLY") << id;
}

// Bad traces and options: one line naming what is wrong, status 1; 2 for
// a bad option (a usage error).
TEST_F(SimCommand, BadTracesGiveOneLine) {
  struct Case {
    std::string trace;  // file contents; "-" for a file that does not exist
    std::vector<std::string> options;
    std::string says;
    int code = 1;
  };
  std::vector<Case> cases = {
      {"-", {}, "No such file"},
      {"", {}, "empty file"},
      {"; MaxProcs: 4\nthis is not a job\n", {}, ":2:"},
      {"; MaxProcs: 4\n" + swf_job(1, -5, 10, 2, 20), {}, ":2:"},
      // A machine smaller than the trace's jobs: refused at submit.
      {"; MaxProcs: 4\n" + swf_job(1, 0, 10, 4, 20), {"--nodes", "2"}, "refused"},
      {"; MaxProcs: 4\n" + swf_job(1, 0, 10, 2, 20), {"--policy", "lifo"}, "--policy", 2},
      {"; MaxProcs: 4\n" + swf_job(1, 0, 10, 2, 20), {"--filter", "weak"}, "--filter", 2},
      // Beyond what a simulation spans (job ids hold 34 years).
      {"; MaxProcs: 4\n" + swf_job(1, 2000000000, 10, 2, 20), {}, "10^9 s"},
      {"; MaxProcs: 4\n" + swf_job(1, 0, 10, 2, 20), {"--epilog", "inf"}, "epilog", 2},
      {"; MaxProcs: 4\n" + swf_job(1, 0, 10, 2, 20), {"--policy", "easy,easy"}, "given twice", 2},
      {"; MaxProcs: 4\n" + swf_job(1, 0, 10, 2, 20), {"--cores-per-node", "0"}, "--cores-per-node", 2},
      {"; MaxProcs: 4\n" + swf_job(1, 0, 10, 2, 20), {"--report", "/nonexistent/r.json"}, "cannot write"},
  };
  for (const auto& c : cases) {
    std::string path = c.trace == "-" ? (tmp_ / "missing.swf").string() : write("bad.swf", c.trace);
    std::vector<std::string> args{path};
    args.insert(args.end(), c.options.begin(), c.options.end());
    auto r = sim(args);
    EXPECT_EQ(r.code, c.code) << c.says << ": " << show(r);
    auto lines = r.err_lines();
    ASSERT_EQ(lines.size(), 1u) << c.says << ": " << show(r);
    EXPECT_EQ(lines[0].rfind("loom sim: ", 0), 0u) << lines[0];
    EXPECT_NE(lines[0].find(c.says), std::string::npos) << c.says << ": " << lines[0];
  }
}

}  // namespace
}  // namespace loom::test
