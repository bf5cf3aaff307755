// The simulator against published results (docs/simulator.md,
// "Validation"): the strongly filtered KTH-SP2 log replayed by Gaussier,
// Glesser, Reis and Trystram (SC'15), whose averages of bounded slowdown
// loom's own job manager and scheduler must give within 0.5 %: EASY
// 92.58, EASY with the shortest backfill candidates first 69.41; plain
// FCFS in the thousands. The trace is read from beside the project.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "kit/jobs.h"
#include "kit/process.h"
#include "msg/json.h"

namespace loom::test {
namespace {

namespace fs = std::filesystem;

TEST(SimValidation, KthSp2StronglyFilteredGivesThePublishedSlowdowns) {
  if (sanitized()) GTEST_SKIP() << "a year of KTH-SP2 takes minutes under the sanitizers; the release build runs it";
  std::string trace = std::string(LOOM_TRACES_DIR) + "/swf/KTH-SP2-1996-2.1-cln.predictsim-strongfiltered.swf.gz";
  if (!fs::exists(trace)) GTEST_SKIP() << "no " << trace << " (the traces live in ../shared/traces beside the project)";
  std::string tmpl = (fs::temp_directory_path() / "loom-sim-validation-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  std::string report = tmpl + "/report.json";
  auto r =
      run_cmd({bin("loom"), "sim", trace, "--filter", "strong", "--policy", "fcfs,easy,easy-sjbf", "--report", report},
              {}, 600);
  ASSERT_EQ(r.code, 0) << show(r);
  std::ifstream f(report);
  std::stringstream text;
  text << f.rdbuf();
  fs::remove_all(tmpl);
  Json j = Json::parse(text.str());
  auto slowdown = [&](const char* policy) { return j["policies"][policy]["avg_bounded_slowdown"].get<double>(); };
  for (const char* p : {"fcfs", "easy", "easy-sjbf"}) EXPECT_EQ(j["policies"][p]["jobs"], 28481) << p;
  EXPECT_NEAR(slowdown("easy"), 92.58, 92.58 * 0.005) << r.out;
  EXPECT_NEAR(slowdown("easy-sjbf"), 69.41, 69.41 * 0.005) << r.out;
  EXPECT_GE(slowdown("fcfs"), 1000) << r.out;
  EXPECT_LT(slowdown("fcfs"), 10000) << r.out;
}

}  // namespace
}  // namespace loom::test
