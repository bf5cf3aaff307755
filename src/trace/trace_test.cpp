// The trace readers on small traces written by hand (each trap, the strong
// filter worked out job by job, Batsim JSON, bad input), then on the real
// logs when they are present beside the project (LOOM_TRACES_DIR).
#include "trace/trace.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

namespace loom::trace {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = fs::temp_directory_path().string() + "/loom-trace-test-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  std::string write_gz(const std::string& name, const std::string& text) const {
    std::string p = path_ + "/" + name;
    gzFile gz = gzopen(p.c_str(), "wb");
    gzwrite(gz, text.data(), static_cast<unsigned>(text.size()));
    gzclose(gz);
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// An SWF job line from the fields that matter here; the rest -1.
std::string job(int64_t id, double submit, double run, int64_t alloc, int64_t req_procs, double req_time) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%lld %g 0 %g %lld -1 -1 %lld %g -1 1 1 1 -1 -1 -1 -1 -1\n",
                static_cast<long long>(id), submit, run, static_cast<long long>(alloc),
                static_cast<long long>(req_procs), req_time);
  return buf;
}

Workload parse_ok(const std::string& text, Filter filter = Filter::kNone) {
  auto w = parse_swf(text, "t.swf", filter);
  EXPECT_TRUE(w.ok()) << (w.ok() ? "" : w.error().text);
  return w.ok() ? std::move(w).value() : Workload{};
}

std::string parse_error(const std::string& text, Filter filter = Filter::kNone) {
  auto w = parse_swf(text, "t.swf", filter);
  EXPECT_FALSE(w.ok()) << text;
  if (w.ok()) return "";
  EXPECT_EQ(w.error().text.find('\n'), std::string::npos) << w.error().text;
  return w.error().text;
}

std::vector<int64_t> ids(const Workload& w) {
  std::vector<int64_t> out;
  for (const Job& j : w.jobs) out.push_back(j.id);
  return out;
}

TEST(Swf, ReadsAll18FieldsAndTheHeader) {
  Workload w = parse_ok(
      "; Version: 2.2\n"
      ";              http://www.cs.huji.ac.il/labs/parallel/workload/\n"
      "; MaxJobs: 28490\n"
      "; MaxRecords: 2\n"
      "; UnixStartTime: 843480031\n"
      "; TimeZoneString: Europe/Stockholm\n"
      "; MaxNodes: 100\n"
      "; MaxProcs: 100\n"
      ";\n"
      "   15   599850 192180   3477    4  12.5    300    5  53940    400  1  12  13  14 15 16 17 18\r\n"
      "\n"
      "\t16 600022 11940 2488 25 -1 -1 25 3600 -1 0 13 13 -1 -1 -1 -1 -1");
  EXPECT_EQ(w.header.max_procs, 100);
  EXPECT_EQ(w.header.max_nodes, 100);
  EXPECT_EQ(w.header.max_records, 2);
  EXPECT_EQ(w.header.unix_start_time, 843480031);
  EXPECT_EQ(w.header.time_zone_string, "Europe/Stockholm");
  ASSERT_EQ(w.header.keys.size(), 7u);  // not the URL continuation, not ";"
  EXPECT_EQ(w.header.keys[0], (std::pair<std::string, std::string>{"Version", "2.2"}));
  ASSERT_EQ(w.jobs.size(), 2u);
  const Job& j = w.jobs[0];
  EXPECT_EQ(j.id, 15);
  EXPECT_EQ(j.line, 10);
  EXPECT_EQ(j.submit, 599850);
  EXPECT_EQ(j.run, 3477);
  EXPECT_EQ(j.requested_time, 53940);
  EXPECT_EQ(j.procs, 5);  // field 8, not field 5
  const SwfRecord& r = j.swf;
  EXPECT_EQ(r.job, 15);
  EXPECT_EQ(r.submit, 599850);
  EXPECT_EQ(r.wait, 192180);
  EXPECT_EQ(r.run, 3477);
  EXPECT_EQ(r.alloc_procs, 4);
  EXPECT_EQ(r.avg_cpu, 12.5);
  EXPECT_EQ(r.used_memory, 300);
  EXPECT_EQ(r.req_procs, 5);
  EXPECT_EQ(r.req_time, 53940);
  EXPECT_EQ(r.req_memory, 400);
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.user, 12);
  EXPECT_EQ(r.group, 13);
  EXPECT_EQ(r.executable, 14);
  EXPECT_EQ(r.queue, 15);
  EXPECT_EQ(r.partition, 16);
  EXPECT_EQ(r.preceding_job, 17);
  EXPECT_EQ(r.think_time, 18);
  EXPECT_EQ(w.jobs[1].line, 12);
  EXPECT_EQ(w.summary, "read 2 jobs, kept 2: dropped 0, changed 0; in submit order");
}

TEST(Swf, SizeIsField8ElseField5AndAJobWithNeitherIsDropped) {
  Workload w = parse_ok("; MaxProcs: 64\n" + job(1, 0, 10, 4, 8, 60) + job(2, 1, 10, 4, -1, 60) +
                        job(3, 2, 10, -1, 6, 60) + job(4, 3, 10, 0, 0, 60) + job(5, 4, 10, -1, -1, 60));
  ASSERT_EQ(ids(w), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(w.jobs[0].procs, 8);
  EXPECT_EQ(w.jobs[1].procs, 4);
  EXPECT_EQ(w.jobs[2].procs, 6);
  EXPECT_EQ(w.tally.without_size, 2);
  EXPECT_EQ(w.summary, "read 5 jobs, kept 3: dropped 2 (2 without a size), changed 0; in submit order");
}

TEST(Swf, JobsLargerThanTheMachineAreDroppedWithoutAFilterToo) {
  // Without a filter only the size that runs (field 8) counts: job 2
  // allocated more than the machine but asks for less.
  Workload w = parse_ok("; MaxProcs: 8\n" + job(1, 0, 10, 8, 8, 60) + job(2, 1, 10, 9, 4, 60) +
                        job(3, 2, 10, 4, 9, 60) + job(4, 3, 10, 9, -1, 60));
  EXPECT_EQ(ids(w), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(w.tally.larger_than_machine, 2);
  EXPECT_EQ(w.summary, "read 4 jobs, kept 2: dropped 2 (2 larger than the machine), changed 0; in submit order");
}

TEST(Swf, MissingRequestedTimeBecomesTheRunTimeAtLeastOneSecond) {
  Workload w = parse_ok("; MaxProcs: 8\n" + job(1, 0, 100, 1, 1, -1) + job(2, 1, 0, 1, 1, -1) + job(3, 2, 50, 1, 1, 0) +
                        job(4, 3, 50, 1, 1, 70));
  ASSERT_EQ(w.jobs.size(), 4u);
  EXPECT_EQ(w.jobs[0].requested_time, 100);
  EXPECT_EQ(w.jobs[1].requested_time, 1);
  EXPECT_EQ(w.jobs[1].run, 0);  // a job of no time runs (and ends at once)
  EXPECT_EQ(w.jobs[2].requested_time, 50);
  EXPECT_EQ(w.jobs[3].requested_time, 70);
  EXPECT_EQ(w.tally.requested_from_run, 3);
  EXPECT_EQ(w.summary,
            "read 4 jobs, kept 4: dropped 0, changed 3 (no requested time, run time used: 3); in submit order");
}

TEST(Swf, JobsThatRanLongerThanRequestedAreKeptAndCounted) {
  Workload w = parse_ok("; MaxProcs: 8\n" + job(1, 0, 100, 1, 1, 60) + job(2, 1, 60, 1, 1, 60));
  ASSERT_EQ(w.jobs.size(), 2u);
  EXPECT_EQ(w.jobs[0].run, 100);  // the simulator times it out at 60
  EXPECT_EQ(w.jobs[0].requested_time, 60);
  EXPECT_EQ(w.tally.ran_longer, 1);
  EXPECT_EQ(w.summary,
            "read 2 jobs, kept 2: dropped 0, changed 0, 1 ran longer than requested (kept: timed out at their "
            "limit); in submit order");
}

TEST(Swf, UnknownSubmitOrRunTimesAreDropped) {
  Workload w =
      parse_ok("; MaxProcs: 8\n" + job(1, -1, 10, 1, 1, 60) + job(2, 1, -1, 1, 1, 60) + job(3, 2, 10, 1, 1, 60));
  EXPECT_EQ(ids(w), (std::vector<int64_t>{3}));
  EXPECT_EQ(w.summary,
            "read 3 jobs, kept 1: dropped 2 (1 without a submit time, 1 without a run time), changed 0; in "
            "submit order");
}

TEST(Swf, UnsortedSubmitTimesAreSortedStablyAndCounted) {
  Workload w = parse_ok("; MaxProcs: 8\n" + job(1, 50, 10, 1, 1, 60) + job(2, 10, 10, 1, 1, 60) +
                        job(3, 50, 10, 1, 1, 60) + job(4, 10, 10, 1, 1, 60) + job(5, 10, 10, 1, 1, 60));
  // File order kept among equal times: 2, 4, 5 at 10; 1, 3 at 50.
  EXPECT_EQ(ids(w), (std::vector<int64_t>{2, 4, 5, 1, 3}));
  EXPECT_EQ(w.tally.out_of_order, 2);  // 2 before 1; 4 before 3
  EXPECT_EQ(w.tally.same_submit, 1);   // 5 after 4
  EXPECT_EQ(w.summary,
            "read 5 jobs, kept 5: dropped 0, changed 0; sorted by submit time (2 out of order) (1 submitted at "
            "the same time as the one before, file order kept)");
}

TEST(Swf, MaxProcsWithTextReadsItsLeadingNumber) {
  Workload w = parse_ok("; MaxProcs: 1024 (but only 1000 in the batch partition)\n" + job(1, 0, 10, 1, 1000, 60) +
                        job(2, 0, 10, 1, 1025, 60));
  EXPECT_EQ(w.header.max_procs, 1024);
  EXPECT_EQ(ids(w), (std::vector<int64_t>{1}));
  EXPECT_EQ(w.summary,
            "read 2 jobs, kept 1: dropped 1 (1 larger than the machine), changed 0; in submit order; MaxProcs "
            "\"1024 (but only 1000 in the batch partition)\" read as 1024");
}

TEST(Swf, MaxProcsWithoutANumberFallsBackToMaxNodes) {
  Workload w = parse_ok("; MaxProcs: unknown\n; MaxNodes: 256\n" + job(1, 0, 10, 1, 256, 60));
  EXPECT_EQ(w.header.max_procs, 256);
  EXPECT_EQ(w.summary,
            "read 1 job, kept 1: dropped 0, changed 0; in submit order; MaxProcs \"unknown\" is not a processor "
            "count: machine of 256 processors from MaxNodes");
  // lublin_256.swf has MaxNodes only.
  w = parse_ok("; MaxNodes: 256\n" + job(1, 0, 10, 1, 257, 60) + job(2, 0, 10, 1, 3, 60));
  EXPECT_EQ(w.header.max_procs, 256);
  EXPECT_EQ(ids(w), (std::vector<int64_t>{2}));
  EXPECT_TRUE(w.summary.ends_with("; no MaxProcs: machine of 256 processors from MaxNodes")) << w.summary;
}

TEST(Swf, WithoutAMachineSizeTheLargestJobIsTheMachine) {
  Workload w = parse_ok(job(1, 0, 10, 1, 12, 60) + job(2, 0, 10, 1, 3, 60));
  EXPECT_EQ(w.header.max_procs, 12);
  EXPECT_TRUE(w.summary.ends_with("; no MaxProcs or MaxNodes: machine of 12 processors, the largest job")) << w.summary;
}

// The strong filter job by job (docs/simulator.md, "Traces"), MaxProcs 8:
//   id submit run alloc req reqtime  strong filter            no filter
//   1   0   100   4    4   200       kept                     kept
//   2   10  300   2    2   200       run cut to 200           kept, ran longer
//   3   20   50   9    4   100       dropped: alloc > 8       kept (size 4)
//   4   30   50  -1    9   100       dropped: req > 8         dropped: larger
//   5   40   50  -1   -1   100       dropped: no size         dropped: no size
//   6   50    0   1    1   100       dropped: run <= 0        kept (run 0)
//   7   60   50   3   -1    -1       dropped: reqtime <= 0    kept, size 3, reqtime 50
//   8   -1   50   1    1   100       dropped: submit < 0      dropped: no submit
//   9   70   -1   1    1   100       dropped: run <= 0        dropped: no run
//   10  80  120  -1    6    60       size 6, run cut to 60    kept, ran longer
std::string strong_example() {
  return "; MaxProcs: 8\n" + job(1, 0, 100, 4, 4, 200) + job(2, 10, 300, 2, 2, 200) + job(3, 20, 50, 9, 4, 100) +
         job(4, 30, 50, -1, 9, 100) + job(5, 40, 50, -1, -1, 100) + job(6, 50, 0, 1, 1, 100) +
         job(7, 60, 50, 3, -1, -1) + job(8, -1, 50, 1, 1, 100) + job(9, 70, -1, 1, 1, 100) +
         job(10, 80, 120, -1, 6, 60);
}

TEST(Swf, StrongFilterWorkedByHand) {
  Workload w = parse_ok(strong_example(), Filter::kStrong);
  ASSERT_EQ(ids(w), (std::vector<int64_t>{1, 2, 10}));
  EXPECT_EQ(w.jobs[0].run, 100);
  EXPECT_EQ(w.jobs[1].run, 200);
  EXPECT_EQ(w.jobs[1].swf.run, 300);  // the record keeps what the log said
  EXPECT_EQ(w.jobs[2].run, 60);
  EXPECT_EQ(w.jobs[2].procs, 6);
  EXPECT_EQ(w.jobs[2].requested_time, 60);
  EXPECT_EQ(w.summary,
            "read 10 jobs, kept 3 (strong filter): dropped 7 (2 larger than the machine, 1 without a size, 1 "
            "without a submit time, 2 with run time <= 0, 1 with requested time <= 0), changed 2 (run time cut to "
            "the requested time: 2); in submit order");
}

TEST(Swf, NoFilterOnTheSameJobs) {
  Workload w = parse_ok(strong_example());
  ASSERT_EQ(ids(w), (std::vector<int64_t>{1, 2, 3, 6, 7, 10}));
  EXPECT_EQ(w.jobs[1].run, 300);
  EXPECT_EQ(w.jobs[2].procs, 4);
  EXPECT_EQ(w.jobs[3].run, 0);
  EXPECT_EQ(w.jobs[4].procs, 3);
  EXPECT_EQ(w.jobs[4].requested_time, 50);
  EXPECT_EQ(w.summary,
            "read 10 jobs, kept 6: dropped 4 (1 larger than the machine, 1 without a size, 1 without a submit "
            "time, 1 without a run time), changed 1 (no requested time, run time used: 1), 2 ran longer than "
            "requested (kept: timed out at their limit); in submit order");
}

TEST(Swf, BadLinesAreErrorsNamingFileAndLine) {
  const std::string head = "; MaxProcs: 8\n" + job(1, 0, 10, 1, 1, 60);
  EXPECT_EQ(parse_error(head + "hello world\n"), "t.swf:3: 2 fields, an SWF job line has 18: \"hello world\"");
  EXPECT_EQ(parse_error(head + "2 0 0 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1\n"),
            "t.swf:3: 17 fields, an SWF job line has 18: \"2 0 0 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1\"");
  EXPECT_EQ(parse_error(head + "2 0 0 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1 7\n"),
            "t.swf:3: 19 fields, an SWF job line has 18: \"2 0 0 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1 7\"");
  EXPECT_EQ(parse_error(head + "2 0 0 ten 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1\n"),
            "t.swf:3: field 4 (run time): \"ten\" is not a number");
  EXPECT_EQ(parse_error(head + "2 0 0 nan 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1\n"),
            "t.swf:3: field 4 (run time): \"nan\" is not a number");
  EXPECT_EQ(parse_error(head + "2 0 0 inf 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1\n"),
            "t.swf:3: field 4 (run time): \"inf\" is not a number");
  EXPECT_EQ(parse_error(head + "2 -5 0 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1\n"),
            "t.swf:3: field 2 (submit time): \"-5\" is negative (only -1, unknown, may be)");
  EXPECT_EQ(parse_error(head + "2 0 0 10 1 -1 -1 -3 60 -1 1 1 1 -1 -1 -1 -1 -1\n"),
            "t.swf:3: field 8 (requested processors): -3 is negative (only -1, unknown, may be)");
  EXPECT_EQ(parse_error(head + "2 0 0 10 1.5 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1\n"),
            "t.swf:3: field 5 (allocated processors): \"1.5\" is not an integer");
  EXPECT_EQ(parse_error(head + "99999999999999999999 0 0 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1\n"),
            "t.swf:3: field 1 (job number): \"99999999999999999999\" is too large");
  EXPECT_EQ(parse_error(head + "2 0 0 1e20 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1\n"),
            "t.swf:3: field 4 (run time): \"1e20\" s is too large (more than 1e10 s)");
  EXPECT_EQ(parse_error(head + "2 0 0 1e999 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1\n"),
            "t.swf:3: field 4 (run time): \"1e999\" is out of range");
  EXPECT_EQ(parse_error(head + "2 0 0 10 1 -1 -1 2000000000 60 -1 1 1 1 -1 -1 -1 -1 -1\n"),
            "t.swf:3: field 8 (requested processors): 2000000000 is too large (more than 1000000000)");
  EXPECT_EQ(parse_error(head + "-1 0 0 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1\n"),
            "t.swf:3: field 1 (job number): must not be negative");
  // Fields the simulator does not read take any number.
  Workload w = parse_ok(head + "2 0 -7 10 1 -2.5 -1 1 60 -1 -9 1 1 -1 -1 -1 -1 -1\n");
  EXPECT_EQ(w.jobs.size(), 2u);
}

TEST(Swf, ARepeatedJobNumberIsAnError) {
  EXPECT_EQ(
      parse_error("; MaxProcs: 8\n" + job(1, 0, 10, 1, 1, 60) + job(2, 1, 10, 1, 1, 60) + job(1, 2, 10, 1, 1, 60)),
      "t.swf:4: job 1 again (first on line 2)");
}

TEST(Swf, EmptyOrJoblessTextIsAnError) {
  EXPECT_EQ(parse_error(""), "t.swf: empty file");
  EXPECT_EQ(parse_error("; MaxProcs: 8\n;\n\n"), "t.swf: no jobs (2 header lines, no job line)");
  EXPECT_EQ(parse_error("; MaxProcs: 8\n" + job(1, 0, 10, 1, 9, 60)),
            "t.swf: no job left: read 1 job, kept 0: dropped 1 (1 larger than the machine), changed 0; in submit "
            "order");
}

TEST(Files, GzipAndPlainReadTheSame) {
  TempDir dir;
  std::string text = "; MaxProcs: 8\n" + job(1, 0, 10, 1, 1, 60) + job(2, 5, 10, 1, 2, 60);
  auto plain = read_swf(dir.write("a.swf", text));
  auto gz = read_swf(dir.write_gz("a.swf.gz", text));
  ASSERT_TRUE(plain.ok()) << plain.error().text;
  ASSERT_TRUE(gz.ok()) << gz.error().text;
  EXPECT_EQ(ids(*plain), ids(*gz));
  EXPECT_EQ(plain->summary, gz->summary);
}

TEST(Files, BadFilesAreOneLineErrors) {
  TempDir dir;
  auto missing = read_swf(dir.path() + "/none.swf");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().text, dir.path() + "/none.swf: No such file or directory");
  EXPECT_EQ(missing.error().code, ENOENT);

  auto directory = read_swf(dir.path());
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.error().text, dir.path() + ": is a directory");

  auto empty = read_swf(dir.write("empty.swf", ""));
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().text, dir.path() + "/empty.swf: empty file");

  // A gzip cut short: zlib reads what it can, then says so.
  std::string text;
  for (int i = 1; i <= 2000; ++i) text += job(i, i, 10, 1, 1, 60);
  std::string whole = dir.write_gz("whole.swf.gz", text);
  std::ifstream in(whole, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto cut = read_swf(dir.write("cut.swf.gz", bytes.substr(0, bytes.size() / 2)));
  ASSERT_FALSE(cut.ok());
  EXPECT_TRUE(cut.error().text.starts_with(dir.path() + "/cut.swf.gz: truncated gzip file")) << cut.error().text;

  // A gzip with its data damaged.
  std::string damaged = bytes;
  for (size_t i = 20; i < 60 && i < damaged.size(); ++i) damaged[i] = static_cast<char>(damaged[i] ^ 0x5a);
  auto bad = read_swf(dir.write("damaged.swf.gz", damaged));
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.error().text.starts_with(dir.path() + "/damaged.swf.gz: ")) << bad.error().text;
  EXPECT_EQ(bad.error().text.find('\n'), std::string::npos);

  // Binary garbage that is not gzip reads as text, and fails on its line.
  auto garbage = read_swf(dir.write("garbage.swf", std::string("\x01\x02\x03 \x7f\n", 6)));
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.error().text,
            dir.path() + "/garbage.swf:1: 2 fields, an SWF job line has 18: \"\\x01\\x02\\x03 \\x7f\"");
}

TEST(Filters, ParseByName) {
  EXPECT_EQ(parse_filter("strong"), Filter::kStrong);
  EXPECT_EQ(parse_filter("none"), Filter::kNone);
  EXPECT_EQ(parse_filter("Strong"), std::nullopt);
}

// Batsim JSON: ids, the profiles' delays, walltimes, the machine.
const char* kBatsim = R"({
  "nb_res": 4,
  "command": "generated by hand",
  "jobs": [
    {"id": 1, "subtime": 0, "walltime": 100, "res": 2, "profile": "d20"},
    {"id": 2, "subtime": 5.5, "walltime": 10, "res": 4, "profile": "d20"},
    {"id": 3, "subtime": 3, "res": 1, "profile": "seq"},
    {"id": 4, "subtime": 7, "walltime": 30, "res": 1, "profile": "flops"},
    {"id": 5, "subtime": 8, "res": 1, "profile": "flops"},
    {"id": 6, "subtime": 9, "walltime": 30, "res": 5, "profile": "d20"}
  ],
  "profiles": {
    "d20": {"type": "delay", "delay": 20},
    "d5": {"type": "DelayProfile", "delay": 5.25},
    "seq": {"type": "SequentialCompositionProfile", "repeat": 3, "seq": ["d20", "d5"]},
    "flops": {"type": "ParallelTaskHomogeneousProfile", "cpu": 1e6, "com": 0}
  }
})";

TEST(Batsim, ReadsJobsProfilesAndTheMachine) {
  auto w = parse_batsim(kBatsim, "w.json");
  ASSERT_TRUE(w.ok()) << w.error().text;
  EXPECT_EQ(w->header.max_procs, 4);
  ASSERT_EQ(w->header.keys.size(), 1u);
  EXPECT_EQ(w->header.keys[0].first, "command");
  // 5: no delay and no walltime, dropped; 6: larger than the machine.
  ASSERT_EQ(ids(*w), (std::vector<int64_t>{1, 3, 2, 4}));
  const Job& j1 = w->jobs[0];
  EXPECT_EQ(j1.run, 20);
  EXPECT_EQ(j1.requested_time, 100);
  EXPECT_EQ(j1.procs, 2);
  EXPECT_EQ(j1.name, "1");
  const Job& j3 = w->jobs[1];
  EXPECT_EQ(j3.run, 3 * 25.25);
  EXPECT_EQ(j3.requested_time, 3 * 25.25);  // no walltime: the run time
  const Job& j2 = w->jobs[2];
  EXPECT_EQ(j2.submit, 5.5);
  EXPECT_EQ(j2.run, 20);  // longer than its walltime: timed out at 10
  EXPECT_EQ(j2.requested_time, 10);
  const Job& j4 = w->jobs[3];
  EXPECT_EQ(j4.run, 30);  // flops: the walltime stands in
  EXPECT_EQ(w->summary,
            "read 6 jobs, kept 4: dropped 2 (1 larger than the machine, 1 without a run time), changed 2 (no "
            "requested time, run time used: 1; profile without a delay, walltime used as run time: 1), 1 ran longer "
            "than requested (kept: timed out at their limit); sorted by submit time (1 out of order)");
}

TEST(Batsim, StringIdsAreRenumberedAndKept) {
  auto w = parse_batsim(R"({"nb_res": 2, "jobs": [
      {"id": "w0!a", "subtime": 0, "walltime": 10, "res": 1, "profile": "p"},
      {"id": 7, "subtime": 1, "walltime": 10, "res": 1, "profile": "p"}],
    "profiles": {"p": {"type": "delay", "delay": 5}}})",
                        "w.json");
  ASSERT_TRUE(w.ok()) << w.error().text;
  EXPECT_EQ(ids(*w), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(w->jobs[0].name, "w0!a");
  EXPECT_EQ(w->jobs[1].name, "7");
  EXPECT_TRUE(w->summary.ends_with("; string ids renumbered 1..2 in file order")) << w->summary;
}

TEST(Batsim, StrongFilterAppliesAsToSwf) {
  auto w = parse_batsim(kBatsim, "w.json", Filter::kStrong);
  ASSERT_TRUE(w.ok()) << w.error().text;
  // 3 has no walltime; 5 neither walltime nor delay (no run time); 6 is
  // too large;
  // 2's run is cut to its walltime.
  ASSERT_EQ(ids(*w), (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(w->jobs[1].run, 10);
  EXPECT_EQ(w->summary,
            "read 6 jobs, kept 3 (strong filter): dropped 3 (1 larger than the machine, 1 with run time <= 0, 1 with "
            "requested time <= 0), "
            "changed 2 (run time cut to the requested time: 1; profile without a delay, walltime used as run time: "
            "1); in submit order");
}

TEST(Batsim, BadWorkloadsAreOneLineErrors) {
  auto error = [](const std::string& text) {
    auto w = parse_batsim(text, "w.json");
    EXPECT_FALSE(w.ok()) << text;
    return w.ok() ? std::string() : w.error().text;
  };
  EXPECT_TRUE(error("{\n\"nb_res\": 4,\n\"jobs\": [\n{\"id\": 1,,}]}").starts_with("w.json:4: not JSON: "))
      << error("{\n\"nb_res\": 4,\n\"jobs\": [\n{\"id\": 1,,}]}");
  EXPECT_EQ(error(""), "w.json: empty file");
  EXPECT_EQ(error(std::string(100000, '[')), "w.json: not a Batsim workload: JSON nests deeper than 64 levels");
  EXPECT_EQ(error("[]"), "w.json: not a Batsim workload: the top is not an object");
  EXPECT_EQ(error(R"({"jobs": []})"), "w.json: nb_res: missing or not an integer from 1 to 1000000000");
  EXPECT_EQ(error(R"({"nb_res": 2})"), "w.json: jobs: missing or not a list");
  EXPECT_EQ(error(R"({"nb_res": 2, "jobs": []})"), "w.json: no jobs (jobs is empty)");
  const std::string p = R"(, "profiles": {"p": {"type": "delay", "delay": 5}}})";
  EXPECT_EQ(error(R"({"nb_res": 2, "jobs": [{"id": 1, "subtime": -1, "res": 1, "profile": "p"}])" + p),
            "w.json: job 1 (id 1): subtime: not from 0 to 1e10 s");
  EXPECT_EQ(error(R"({"nb_res": 2, "jobs": [{"id": 1, "subtime": 0, "res": 0, "profile": "p"}])" + p),
            "w.json: job 1 (id 1): res: missing or not an integer from 1 to 1000000000");
  EXPECT_EQ(error(R"({"nb_res": 2, "jobs": [{"id": 1, "subtime": 0, "walltime": -3, "res": 1, "profile": "p"}])" + p),
            "w.json: job 1 (id 1): walltime: not -1 (none) or from 0 to 1e10 s");
  EXPECT_EQ(error(R"({"nb_res": 2, "jobs": [{"id": 1, "subtime": 0, "res": 1, "profile": "q"}])" + p),
            "w.json: job 1 (id 1): profile \"q\" is not in profiles");
  EXPECT_EQ(error(R"({"nb_res": 2, "jobs": [{"id": 1, "subtime": 0, "res": 1, "profile": "p"},
                    {"id": 1, "subtime": 0, "res": 1, "profile": "p"}])" +
                  p),
            "w.json: jobs 1 and 2 both have id 1");
}

TEST(Files, ReadTraceTellsBatsimFromSwf) {
  TempDir dir;
  auto b = read_trace(dir.write("w.txt", kBatsim));
  ASSERT_TRUE(b.ok()) << b.error().text;
  EXPECT_EQ(b->header.max_procs, 4);
  auto s = read_trace(dir.write_gz("w.swf.gz", "; MaxProcs: 8\n" + job(1, 0, 10, 1, 1, 60)));
  ASSERT_TRUE(s.ok()) << s.error().text;
  EXPECT_EQ(s->jobs.size(), 1u);
}

// The real logs, when present beside the project.

std::string traces_dir() { return LOOM_TRACES_DIR; }

std::string real(const std::string& name) {
  std::string p = traces_dir() + "/" + name;
  return fs::exists(p) ? p : "";
}

// The big logs are read in the release build only: a million records
// under the sanitizers take a quarter of a minute and find nothing the
// parser's fuzz target (fuzz_swf, with the sanitizers) and the small logs
// would not.
#if defined(__SANITIZE_ADDRESS__)
#define SKIP_UNDER_SANITIZERS() GTEST_SKIP() << "the big logs are read in the release build"
#else
#define SKIP_UNDER_SANITIZERS() (void)0
#endif

#define REAL_TRACE(var, name)   \
  std::string var = real(name); \
  if (var.empty()) GTEST_SKIP() << "no " << traces_dir() << "/" << name << " (the traces live beside the project)"

Workload read_timed(const std::string& path, Filter filter) {
  auto t0 = std::chrono::steady_clock::now();
  auto w = read_trace(path, filter);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(w.ok()) << (w.ok() ? "" : w.error().text);
  if (!w.ok()) return {};
  std::printf("%s (%s): %.3f s, %.0f jobs/s\n  %s\n", fs::path(path).filename().c_str(),
              filter == Filter::kStrong ? "strong" : "none", s, static_cast<double>(w->tally.read) / s,
              w->summary.c_str());
  return std::move(w).value();
}

TEST(RealTraces, PredictsimStrongFilteredKthHas28481Jobs) {
  REAL_TRACE(path, "swf/KTH-SP2-1996-2.1-cln.predictsim-strongfiltered.swf.gz");
  Workload w = read_timed(path, Filter::kNone);
  EXPECT_EQ(w.jobs.size(), 28481u);
  EXPECT_EQ(w.header.max_procs, 100);
  EXPECT_EQ(w.header.unix_start_time, 843480031);
  // Already strongly filtered: the filter changes nothing more.
  Workload again = read_timed(path, Filter::kStrong);
  EXPECT_EQ(again.jobs.size(), 28481u);
  EXPECT_EQ(again.tally.dropped(), 0);
  EXPECT_EQ(again.tally.changed(), 0);
}

// The predictsim file was made from version 2.2 of the KTH log (28,490
// records, jobs 1-14 included); the cleaned log (2.1-cln) leaves out jobs
// 1-14. The strong filter on the cleaned log must give exactly the
// predictsim jobs from 15 on.
TEST(RealTraces, StrongFilterOnTheCleanedKthLogGivesThePredictsimJobs) {
  REAL_TRACE(cln_path, "swf/KTH-SP2-1996-2.1-cln.swf.gz");
  REAL_TRACE(ps_path, "swf/KTH-SP2-1996-2.1-cln.predictsim-strongfiltered.swf.gz");
  Workload cln = read_timed(cln_path, Filter::kStrong);
  Workload ps = read_timed(ps_path, Filter::kNone);
  std::vector<const Job*> expected;
  for (const Job& j : ps.jobs) {
    if (j.id >= 15) expected.push_back(&j);
  }
  EXPECT_EQ(ps.jobs.size() - expected.size(), 14u);
  EXPECT_EQ(cln.tally.read, 28476);
  ASSERT_EQ(cln.jobs.size(), expected.size());
  EXPECT_EQ(cln.jobs.size(), 28467u);
  size_t differ = 0;
  for (size_t i = 0; i < cln.jobs.size(); ++i) {
    const Job& a = cln.jobs[i];
    const Job& b = *expected[i];
    bool same = a.id == b.id && a.submit == b.submit && a.run == b.run && a.procs == b.procs &&
                a.requested_time == b.requested_time && a.swf.user == b.swf.user && a.swf.status == b.swf.status;
    if (!same && differ++ < 5) {
      ADD_FAILURE() << "job " << a.id << " vs " << b.id << ": submit " << a.submit << "/" << b.submit << " run "
                    << a.run << "/" << b.run << " procs " << a.procs << "/" << b.procs << " requested "
                    << a.requested_time << "/" << b.requested_time;
    }
  }
  EXPECT_EQ(differ, 0u);
  // What the filter did to the cleaned log.
  EXPECT_EQ(cln.tally.without_run, 8);
  EXPECT_EQ(cln.tally.without_size, 1);
  EXPECT_EQ(cln.tally.run_cut, 475);
}

// The largest log (its read time is printed).
TEST(RealTraces, CeaCurieReadsWithItsHeader) {
  SKIP_UNDER_SANITIZERS();
  REAL_TRACE(path, "swf/CEA-Curie-2011-2.1-cln.swf.gz");
  Workload w = read_timed(path, Filter::kNone);
  EXPECT_EQ(w.tally.read, 312826);
  EXPECT_EQ(w.header.max_procs, 93312);
  EXPECT_EQ(w.header.time_zone_string, "Europe/Paris");
  Workload strong = read_timed(path, Filter::kStrong);
  EXPECT_GT(strong.jobs.size(), 0u);
}

TEST(RealTraces, EveryLogReads) {
  SKIP_UNDER_SANITIZERS();
  std::map<std::string, int64_t> records = {
      {"swf/KTH-SP2-1996-2.1-cln.swf.gz", 28476},    {"swf/HPC2N-2002-2.2-cln.swf.gz", 202871},
      {"swf/SDSC-BLUE-2000-4.2-cln.swf.gz", 243306}, {"swf/LANL-CM5-1994-4.1-cln.swf.gz", 122060},
      {"swf/NASA-iPSC-1993-3.1-cln.swf.gz", 18239},  {"swf/lublin_256.swf.gz", 10000},
  };
  int found = 0;
  for (const auto& [name, n] : records) {
    std::string path = real(name);
    if (path.empty()) continue;
    ++found;
    Workload w = read_timed(path, Filter::kNone);
    EXPECT_EQ(w.tally.read, n) << name;
    EXPECT_GT(w.jobs.size(), 0u) << name;
    // Logs without requested times have nothing left after the strong
    // filter (it drops requested time <= 0): an error that says so.
    if (name.find("NASA") != std::string::npos || name.find("lublin") != std::string::npos) {
      auto none = read_trace(path, Filter::kStrong);
      ASSERT_FALSE(none.ok());
      std::printf("  strong: %s\n", none.error().text.c_str());
      EXPECT_NE(none.error().text.find(": no job left: read " + std::to_string(n) + " jobs, kept 0 (strong filter)"),
                std::string::npos);
    } else {
      Workload strong = read_timed(path, Filter::kStrong);
      EXPECT_EQ(strong.tally.read, n) << name;
    }
  }
  for (const char* name :
       {"batsim-json/example_workload_hpc_seed1_jobs250.json", "batsim-json/test_batsim_paper_workload_seed1.json",
        "batsim-json/test_walltime.json", "batsim-json/test_various_profile_types.json"}) {
    std::string path = real(name);
    if (path.empty()) continue;
    ++found;
    Workload w = read_timed(path, Filter::kNone);
    EXPECT_GT(w.jobs.size(), 0u) << name;
  }
  if (found == 0) GTEST_SKIP() << "no traces under " << traces_dir();
}

}  // namespace
}  // namespace loom::trace
