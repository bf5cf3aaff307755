#include "sim/report.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

namespace loom::sim {
namespace {

// Five jobs on 4 cores, worked by hand:
//
//   id submit start end cores  wait run  bounded slowdown
//    1     0     0  100    2      0 100  max(1, 100/100)       = 1
//    2    10   100  105    4     90   5  max(1, 95/max(5,10))  = 9.5
//    3    20    20   80    2      0  60  60/60                 = 1    (timeout)
//    4    30   105  125    1     75  20  95/20                 = 4.75
//    5    40     -    -    8      never started (refused)
//
//   jobs 5, not started 1, averages over the 4 that ran
//   avg wait = (0 + 90 + 0 + 75) / 4 = 41.25
//   waits sorted 0 0 75 90: p50 = rank ⌈2⌉ = 2 → 0, p95 = rank ⌈3.8⌉ = 4 → 90
//   avg bounded slowdown = (1 + 9.5 + 1 + 4.75) / 4 = 4.0625
//   makespan = last end 125 − first submit 0 = 125
//   utilization = (2·100 + 4·5 + 2·60 + 1·20) / (4 · 125) = 360 / 500 = 0.72
//   jobs per second = 5 jobs / 2 s = 2.5
std::vector<JobResult> five_jobs() {
  std::vector<JobResult> jobs(5);
  jobs[0] = {.id = 1, .submit = 0, .start = 0, .end = 100, .cores = 2, .requested_time = 200, .allocated = "0-1"};
  jobs[1] = {.id = 2, .submit = 10, .start = 100, .end = 105, .cores = 4, .requested_time = 50, .allocated = "0-3"};
  jobs[2] = {.id = 3,
             .submit = 20,
             .start = 20,
             .end = 80,
             .cores = 2,
             .requested_time = 60,
             .allocated = "2,3",
             .timeout = true,
             .status = 15};
  jobs[3] = {.id = 4, .submit = 30, .start = 105, .end = 125, .cores = 1, .requested_time = 100, .allocated = "0"};
  jobs[4] = {.id = 5, .submit = 40, .cores = 8, .requested_time = 0};
  return jobs;
}

TEST(Summarize, FiguresOfFiveJobsWorkedByHand) {
  Summary s = summarize(five_jobs(), 4, 2);
  EXPECT_EQ(s.jobs, 5u);
  EXPECT_EQ(s.not_started, 1u);
  EXPECT_DOUBLE_EQ(s.avg_wait, 41.25);
  EXPECT_DOUBLE_EQ(s.p50_wait, 0);
  EXPECT_DOUBLE_EQ(s.p95_wait, 90);
  EXPECT_DOUBLE_EQ(s.avg_bounded_slowdown, 4.0625);
  EXPECT_DOUBLE_EQ(s.makespan, 125);
  EXPECT_DOUBLE_EQ(s.utilization, 0.72);
  EXPECT_DOUBLE_EQ(s.wall_seconds, 2);
  EXPECT_DOUBLE_EQ(s.jobs_per_second, 2.5);
}

TEST(Summarize, MakespanRunsFromTheFirstSubmitNotFromTimeZero) {
  // One job submitted at 50, run 60..70 on 1 of 2 cores: makespan 20,
  // utilization 10 / (2 · 20) = 0.25; wait 10, bounded slowdown
  // (10 + 10) / max(10, 10) = 2.
  std::vector<JobResult> jobs{{.id = 1, .submit = 50, .start = 60, .end = 70, .cores = 1}};
  Summary s = summarize(jobs, 2, 0);
  EXPECT_DOUBLE_EQ(s.makespan, 20);
  EXPECT_DOUBLE_EQ(s.utilization, 0.25);
  EXPECT_DOUBLE_EQ(s.avg_bounded_slowdown, 2);
  EXPECT_DOUBLE_EQ(s.jobs_per_second, 0);  // no wall time given
}

TEST(Summarize, ShortJobsAreBoundedByTau) {
  // A 1 s job that waited 4 s: (4 + 1) / max(1, 10) = 0.5, bounded below by 1.
  // A 2 s job that waited 28 s: (28 + 2) / 10 = 3 (its plain slowdown is 15).
  std::vector<JobResult> jobs{{.id = 1, .submit = 0, .start = 4, .end = 5, .cores = 1},
                              {.id = 2, .submit = 0, .start = 28, .end = 30, .cores = 1}};
  EXPECT_DOUBLE_EQ(summarize(jobs, 1, 1).avg_bounded_slowdown, (1 + 3) / 2.0);
}

TEST(Summarize, EmptyListGivesZeros) {
  Summary s = summarize({}, 4, 1);
  EXPECT_EQ(s.jobs, 0u);
  EXPECT_EQ(s.makespan, 0);
  EXPECT_EQ(s.utilization, 0);
  EXPECT_EQ(s.avg_wait, 0);
  EXPECT_EQ(s.p50_wait, 0);
  EXPECT_EQ(s.p95_wait, 0);
  EXPECT_EQ(s.avg_bounded_slowdown, 0);
  EXPECT_EQ(s.jobs_per_second, 0);
}

TEST(Summarize, NoJobThatRanGivesZerosButCountsTheJobs) {
  std::vector<JobResult> jobs{{.id = 1, .submit = 3, .cores = 1}};
  Summary s = summarize(jobs, 4, 1);
  EXPECT_EQ(s.jobs, 1u);
  EXPECT_EQ(s.not_started, 1u);
  EXPECT_EQ(s.makespan, 0);
  EXPECT_EQ(s.avg_bounded_slowdown, 0);
}

TEST(Summarize, NoCoresGivesZeroUtilizationNotInfinity) { EXPECT_EQ(summarize(five_jobs(), 0, 1).utilization, 0); }

TEST(Percentile, NearestRankEdgeCases) {
  std::vector<double> none;
  EXPECT_EQ(percentile_nearest_rank(none, 50), 0);
  std::vector<double> one{7};
  EXPECT_EQ(percentile_nearest_rank(one, 50), 7);
  EXPECT_EQ(percentile_nearest_rank(one, 95), 7);
  std::vector<double> two{3, 1};                   // unsorted on purpose
  EXPECT_EQ(percentile_nearest_rank(two, 50), 1);  // rank ⌈1⌉ = 1
  EXPECT_EQ(percentile_nearest_rank(two, 95), 3);  // rank ⌈1.9⌉ = 2
  EXPECT_EQ(percentile_nearest_rank(two, 100), 3);
  std::vector<double> twenty;
  for (int i = 20; i >= 1; --i) twenty.push_back(i);
  // 95 % of 20 is exactly rank 19: no floating-point rounding up to 20.
  EXPECT_EQ(percentile_nearest_rank(twenty, 95), 19);
  EXPECT_EQ(percentile_nearest_rank(twenty, 50), 10);
}

TEST(SummaryTable, OneColumnPerPolicyAlignedRows) {
  Summary a = summarize(five_jobs(), 4, 2);
  Summary b = a;
  b.not_started = 0;
  std::string table = summary_table({{"fcfs", a}, {"easy-sjbf", b}});
  std::istringstream in(table);
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  ASSERT_GE(lines.size(), 10u);
  for (const auto& l : lines) EXPECT_EQ(l.size(), lines[0].size()) << l;
  EXPECT_EQ(lines[0].rfind("policy", 0), 0u);
  EXPECT_NE(lines[0].find("fcfs"), std::string::npos);
  EXPECT_LT(lines[0].find("fcfs"), lines[0].find("easy-sjbf"));
  EXPECT_NE(table.find("not started"), std::string::npos);
  EXPECT_NE(table.find("72.00"), std::string::npos);  // utilization (%)
  EXPECT_NE(table.find(" 125 "), std::string::npos);  // makespan (s)
  EXPECT_EQ(table.back(), '\n');
}

TEST(SummaryTable, NotStartedRowOnlyWhenSomeJobNeverRan) {
  std::vector<JobResult> jobs{{.id = 1, .submit = 0, .start = 0, .end = 1, .cores = 1}};
  EXPECT_EQ(summary_table({{"fcfs", summarize(jobs, 1, 1)}}).find("not started"), std::string::npos);
}

std::vector<std::string> keys(const nlohmann::ordered_json& o) {
  std::vector<std::string> k;
  for (const auto& [key, value] : o.items()) k.push_back(key);
  return k;
}

const std::vector<std::string> kSummaryKeys{"jobs",           "makespan", "utilization",          "avg_wait",
                                            "p50_wait",       "p95_wait", "avg_bounded_slowdown", "wall_seconds",
                                            "jobs_per_second"};

TEST(ReportJson, OnePolicyHasTheKeysAtTopLevelInOrder) {
  auto doc = nlohmann::ordered_json::parse(report_json({{"easy", summarize(five_jobs(), 4, 2)}}));
  EXPECT_EQ(keys(doc), kSummaryKeys);
  EXPECT_EQ(doc["jobs"], 5);
  EXPECT_EQ(doc["makespan"], 125.0);
  EXPECT_EQ(doc["utilization"], 0.72);
  EXPECT_EQ(doc["avg_bounded_slowdown"], 4.0625);
  EXPECT_EQ(doc["jobs_per_second"], 2.5);
}

TEST(ReportJson, SeveralPoliciesGoUnderPoliciesInTheOrderGiven) {
  Summary s = summarize(five_jobs(), 4, 2);
  auto doc = nlohmann::ordered_json::parse(report_json({{"fcfs", s}, {"easy", s}, {"easy-sjbf", s}}));
  EXPECT_EQ(keys(doc), std::vector<std::string>{"policies"});
  EXPECT_EQ(keys(doc["policies"]), (std::vector<std::string>{"fcfs", "easy", "easy-sjbf"}));
  for (const auto& [name, o] : doc["policies"].items()) EXPECT_EQ(keys(o), kSummaryKeys) << name;
}

constexpr std::string_view kBatsimHeader =
    "job_id,workload_name,profile,submission_time,requested_number_of_resources,requested_time,success,final_state,"
    "starting_time,execution_time,finish_time,waiting_time,turnaround_time,stretch,allocated_resources,"
    "consumed_energy,metadata\n";

TEST(JobsCsv, BatsimHeaderAndRowsWorkedByHand) {
  std::string csv = jobs_csv(five_jobs());
  ASSERT_EQ(csv.substr(0, kBatsimHeader.size()), kBatsimHeader);
  std::istringstream in(csv.substr(kBatsimHeader.size()));
  std::vector<std::string> rows;
  for (std::string line; std::getline(in, line);) rows.push_back(line);
  ASSERT_EQ(rows.size(), 5u);
  // job 2: turnaround 105 − 10 = 95, stretch 95 / 5 = 19.
  EXPECT_EQ(rows[1], "2,w0,,10,4,50,1,COMPLETED_SUCCESSFULLY,100,5,105,90,95,19,0-3,-1,\"\"");
  // job 3, killed at its limit, on cores 2 and 3 (Batsim's "2 3" form).
  EXPECT_EQ(rows[2], "3,w0,,20,2,60,0,COMPLETED_WALLTIME_REACHED,20,60,80,0,60,1,2 3,-1,\"\"");
  // job 5 never ran: its times are empty.
  EXPECT_EQ(rows[4], "5,w0,,40,8,0,0,REJECTED,,,,,,,,-1,\"\"");
  for (const auto& row : rows) EXPECT_EQ(std::count(row.begin(), row.end(), ','), 16) << row;
}

TEST(JobsCsv, FailedJobsAndFractionalTimes) {
  std::vector<JobResult> jobs{{.id = 7,
                               .submit = 0.5,
                               .start = 1.25,
                               .end = 3.25,
                               .cores = 3,
                               .requested_time = 10,
                               .allocated = "[4-5,9]",
                               .status = 256}};
  std::string csv = jobs_csv(jobs, "kth");
  EXPECT_EQ(csv.substr(kBatsimHeader.size()),
            "7,kth,,0.5,3,10,0,COMPLETED_FAILED,1.25,2,3.25,0.75,2.75,1.375,4-5 9,-1,\"\"\n");
}

TEST(JobsCsv, NumbersInPlainDecimalNotation) {
  // std::to_chars's shortest form would write 100000 as "1e+05".
  std::vector<JobResult> jobs{{.id = 1,
                               .submit = 100000,
                               .start = 100000.00001,
                               .end = 1e15,
                               .cores = 1000000,
                               .requested_time = 1e6,
                               .allocated = "0-999999"}};
  std::string row = jobs_csv(jobs).substr(kBatsimHeader.size());
  EXPECT_EQ(row.substr(0, row.find(",COMPLETED")), "1,w0,,100000,1000000,1000000,1");
  EXPECT_NE(row.find(",100000.00001,"), std::string::npos) << row;
  EXPECT_NE(row.find(",1000000000000000,"), std::string::npos) << row;
  EXPECT_EQ(row.find('e', row.find("COMPLETED_SUCCESSFULLY") + 23), std::string::npos) << row;
}

TEST(JobsCsv, ZeroLengthJobHasInfiniteStretchAsBatsimWouldPrint) {
  std::vector<JobResult> jobs{{.id = 1, .submit = 0, .start = 5, .end = 5, .cores = 1}};
  EXPECT_NE(jobs_csv(jobs).find(",5,0,5,5,5,inf,"), std::string::npos);
}

// A well-formedness check small enough to keep the test self-contained:
// every element closed in order, one root, attribute values quoted, every
// '&' an entity, no '<' in text.
bool well_formed_xml(std::string_view s, std::string& why) {
  std::vector<std::string_view> open;
  size_t roots = 0;
  auto entity_ok = [&](size_t at) {
    for (std::string_view e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"}) {
      if (s.substr(at, e.size()) == e) return true;
    }
    return false;
  };
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '&') {
      if (!entity_ok(i)) return why = "bad entity at " + std::to_string(i), false;
      ++i;
      continue;
    }
    if (s[i] != '<') {
      ++i;
      continue;
    }
    if (s.substr(i, 2) == "<?") {
      size_t e = s.find("?>", i);
      if (e == std::string_view::npos) return why = "unclosed <?", false;
      i = e + 2;
      continue;
    }
    bool closing = s[i + 1] == '/';
    size_t name_start = i + (closing ? 2 : 1);
    size_t name_end = s.find_first_of(" \t\n/>", name_start);
    if (name_end == std::string_view::npos || name_end == name_start) return why = "bad tag", false;
    std::string_view name = s.substr(name_start, name_end - name_start);
    size_t j = name_end;
    bool in_quote = false;
    for (; j < s.size() && (in_quote || s[j] != '>'); ++j) {
      if (s[j] == '"') in_quote = !in_quote;
      if (in_quote && s[j] == '<') return why = "'<' in an attribute", false;
      if (in_quote && s[j] == '&' && !entity_ok(j)) return why = "bad entity in an attribute", false;
    }
    if (j == s.size()) return why = "unclosed tag " + std::string(name), false;
    if (closing) {
      if (open.empty() || open.back() != name) return why = "mismatched </" + std::string(name) + ">", false;
      open.pop_back();
    } else if (s[j - 1] != '/') {
      if (open.empty()) ++roots;
      open.push_back(name);
    } else if (open.empty()) {
      ++roots;
    }
    i = j + 1;
  }
  if (!open.empty()) return why = "unclosed <" + std::string(open.back()) + ">", false;
  if (roots != 1) return why = std::to_string(roots) + " root elements", false;
  return true;
}

size_t count(std::string_view s, std::string_view what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string_view::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

TEST(WellFormedXml, CatchesTheMistakesItLooksFor) {
  std::string why;
  EXPECT_TRUE(well_formed_xml("<?xml version=\"1.0\"?>\n<a x=\"1\"><b/>t &amp; u</a>\n", why)) << why;
  EXPECT_FALSE(well_formed_xml("<a><b></a></b>", why));
  EXPECT_FALSE(well_formed_xml("<a>", why));
  EXPECT_FALSE(well_formed_xml("<a>&</a>", why));
  EXPECT_FALSE(well_formed_xml("<a/><b/>", why));
  EXPECT_FALSE(well_formed_xml("<a x=\"<\"/>", why));
}

TEST(PlotSvg, WellFormedWithOneCurvePerPolicyInEachPanel) {
  auto jobs = five_jobs();
  auto later = jobs;
  for (auto& j : later) {
    if (j.ran()) j.start += 1000, j.end += 1000;
  }
  std::string svg = plot_svg({{"fcfs", later}, {"easy", jobs}, {"a&b <c>", jobs}}, 4);
  std::string why;
  EXPECT_TRUE(well_formed_xml(svg, why)) << why;
  EXPECT_EQ(count(svg, "<polyline data-policy=\"fcfs\""), 2u);
  EXPECT_EQ(count(svg, "<polyline data-policy=\"easy\""), 2u);
  EXPECT_EQ(count(svg, "<polyline data-policy=\"a&amp;b &lt;c&gt;\""), 2u);
  EXPECT_EQ(count(svg, "<polyline"), 6u);
  EXPECT_NE(svg.find("Utilization over time"), std::string::npos);
  EXPECT_NE(svg.find("Wait-time distribution"), std::string::npos);
  EXPECT_NE(svg.find(">a&amp;b &lt;c&gt;</text>"), std::string::npos);  // the legend

  // python3's parser, when the machine has one, agrees.
  if (std::system("python3 -c 'import xml.dom.minidom' >/dev/null 2>&1") == 0) {
    std::string path = ::testing::TempDir() + "report_test_plot.svg";
    std::ofstream(path) << svg;
    std::string cmd = "python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' " + path;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << svg;
    std::remove(path.c_str());
  }
}

TEST(PlotSvg, NoJobsStillGivesAValidPlot) {
  std::string why;
  EXPECT_TRUE(well_formed_xml(plot_svg({}, 4), why)) << why;
  EXPECT_TRUE(well_formed_xml(plot_svg({{"fcfs", {}}}, 0), why)) << why;
  EXPECT_TRUE(well_formed_xml(plot_svg({{"fcfs", {{.id = 1, .submit = 5, .cores = 1}}}}, 1), why)) << why;
}

// The points of the one polyline of `policy` in the panel with id `panel`.
std::vector<std::pair<double, double>> curve(const std::string& svg, const std::string& panel,
                                             const std::string& policy) {
  size_t g = svg.find("<g id=\"" + panel + "\"");
  size_t at = svg.find("data-policy=\"" + policy + "\"", g);
  size_t from = svg.find("points=\"", at) + 8;
  std::istringstream in(svg.substr(from, svg.find('"', from) - from));
  std::vector<std::pair<double, double>> points;
  double x, y;
  char comma;
  while (in >> x >> comma >> y) points.emplace_back(x, y);
  return points;
}

TEST(PlotSvg, BucketsKeepTheTimeAverageExact) {
  // 3000 one-core jobs back to back on one core: busy all the time. Too many
  // steps to draw, so the curve shows 1000 buckets' averages, each exactly
  // 100 % (the plot area's top, y = 40).
  std::vector<JobResult> jobs;
  for (int i = 0; i < 3000; ++i) {
    jobs.push_back({.id = i, .submit = 0, .start = double(i), .end = double(i + 1), .cores = 1});
  }
  auto points = curve(plot_svg({{"fcfs", jobs}}, 1), "utilization", "fcfs");
  ASSERT_EQ(points.size(), 2 * kUtilizationBuckets + 2);
  for (size_t i = 2; i < points.size(); ++i) EXPECT_EQ(points[i].second, 40.0) << i;
}

TEST(PlotSvg, FewStepsAreDrawnExactly) {
  // The five jobs on 4 cores change the busy count at 0, 20, 80, 100, 105
  // and 125: a start point, two points per change and an end point.
  auto points = curve(plot_svg({{"easy", five_jobs()}}, 4), "utilization", "easy");
  EXPECT_EQ(points.size(), 1 + 2 * 6 + 1u);
  // From 20 to 80 all 4 cores are busy: 100 %, the top of the plot area.
  EXPECT_EQ(points[4].second, 40.0);
  // The wait CDF ends at 100 % of the jobs that ran.
  auto cdf = curve(plot_svg({{"easy", five_jobs()}}, 4), "wait-cdf", "easy");
  EXPECT_EQ(cdf.size(), kCdfPoints);
  EXPECT_EQ(cdf.back().second, 360 + 40.0);
  // Half of them waited no time at all (drawn at 1 s, the left edge).
  EXPECT_EQ(cdf.front().second, 360 + 300 - 0.5 * 260);
}

std::vector<JobResult> synthetic(size_t n, int64_t total_cores) {
  // A deterministic pseudo-random workload: sizes up to the machine, runs up
  // to a day, arrivals every few minutes, starts after some wait.
  std::vector<JobResult> jobs;
  jobs.reserve(n);
  uint64_t x = 88172645463325252ull;
  auto next = [&] {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return x;
  };
  double submit = 0;
  for (size_t i = 0; i < n; ++i) {
    submit += static_cast<double>(next() % 300);
    double wait = static_cast<double>(next() % 7200);
    double run = static_cast<double>(1 + next() % 86400);
    int64_t cores = 1 + static_cast<int64_t>(next() % static_cast<uint64_t>(total_cores));
    int64_t first = static_cast<int64_t>(next() % static_cast<uint64_t>(total_cores - cores + 1));
    jobs.push_back({.id = static_cast<int64_t>(i + 1),
                    .submit = submit,
                    .start = submit + wait,
                    .end = submit + wait + run,
                    .cores = cores,
                    .requested_time = 2 * run,
                    .allocated = std::to_string(first) + "-" + std::to_string(first + cores - 1)});
  }
  return jobs;
}

TEST(Report, IdenticalInputGivesIdenticalBytes) {
  auto jobs = synthetic(5000, 128);
  PolicySummaries s{{"fcfs", summarize(jobs, 128, 1.5)}, {"easy", summarize(jobs, 128, 1.5)}};
  EXPECT_EQ(summary_table(s), summary_table(s));
  EXPECT_EQ(report_json(s), report_json(s));
  EXPECT_EQ(jobs_csv(jobs), jobs_csv(synthetic(5000, 128)));
  EXPECT_EQ(plot_svg({{"fcfs", jobs}}, 128), plot_svg({{"fcfs", synthetic(5000, 128)}}, 128));
}

TEST(Report, ThreeHundredThousandJobs) {
  auto jobs = synthetic(300000, 1024);
  PolicyJobs two{{"fcfs", jobs}, {"easy", jobs}};  // copied before the clock starts
  auto t0 = std::chrono::steady_clock::now();
  Summary s = summarize(jobs, 1024, 1);
  auto t1 = std::chrono::steady_clock::now();
  std::string csv = jobs_csv(jobs);
  auto t2 = std::chrono::steady_clock::now();
  std::string svg = plot_svg(two, 1024);
  auto t3 = std::chrono::steady_clock::now();
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  std::printf("300k jobs: summarize %.1f ms, csv %.1f ms (%zu bytes), svg of 2 policies %.1f ms (%zu bytes)\n",
              ms(t0, t1), ms(t1, t2), csv.size(), ms(t2, t3), svg.size());
  EXPECT_EQ(s.jobs, 300000u);
  EXPECT_LT(svg.size(), 200000u);  // downsampled, not one point per job
  std::string why;
  EXPECT_TRUE(well_formed_xml(svg, why)) << why;
}

}  // namespace
}  // namespace loom::sim
