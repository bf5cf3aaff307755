// The tasks' standard input (docs/protocols/exec.md, "Standard input"):
// `loom run` sends its stdin to task 0 (or the tasks --input names) and
// then its end; --input=FILE gives every task the file; `loom job attach
// --stdin` sends input to a submitted job; `loom submit` alone gives
// /dev/null. Real instances, real shells, real pipes.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kit/client.h"
#include "kit/exec.h"
#include "kit/jobs.h"
#include "msg/json.h"

namespace loom::test {
namespace {

class Input : public Exec {
 protected:
  std::string dir;
  void SetUp() override {
    Exec::SetUp();
    dir = fresh_test_dir("input");
  }
  void TearDown() override {
    Exec::TearDown();
    std::filesystem::remove_all(dir);
  }
  // `sh -c SCRIPT` with this instance's URI, `loom` standing for the binary.
  CmdResult sh(const std::string& script) {
    return run_cmd({"/bin/sh", "-c", "loom() { \"" + bin("loom") + "\" \"$@\"; }; " + script},
                   {{"LOOM_URI", inst.uri()}});
  }
  static std::vector<std::string> sorted_lines(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    std::sort(lines.begin(), lines.end());
    return lines;
  }
  std::string write_file(const std::string& name, const std::string& bytes) {
    std::string path = dir + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
};

// Task 0 reads what was piped in, to its end (cat exits); task 1 reads
// nothing (/dev/null), on another rank.
TEST_F(Input, RunSendsItsStdinToTaskZeroAndThenItsEnd) {
  auto r = sh("printf 'hello\\nworld\\n' | loom run -N2 -n2 -l sh -c 'cat; echo end'");
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(sorted_lines(r.out), (std::vector<std::string>{"0: end", "0: hello", "0: world", "1: end"})) << r.out;
  EXPECT_EQ(r.err, "");
}

TEST_F(Input, InputAllGoesToEveryTaskOnEveryRank) {
  auto r = sh("printf 'a\\nb\\n' | loom run -N2 -n4 --input=all -l cat");
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(sorted_lines(r.out),
            (std::vector<std::string>{"0: a", "0: b", "1: a", "1: b", "2: a", "2: b", "3: a", "3: b"}));
}

// Several chunks of bytes that are not text, from a file on stdin (read as
// it is, not waited on) and from a pipe.
TEST_F(Input, BytesComeThroughAsTheyWereFromAFileOrAPipe) {
  std::string bytes(300000, '\0');
  std::mt19937 rng(11);
  for (auto& c : bytes) c = static_cast<char>(rng());
  std::string in = write_file("bytes", bytes);
  auto from_file = sh("loom run cat < " + in + " > " + dir + "/out1 && cmp " + in + " " + dir + "/out1");
  EXPECT_EQ(from_file.code, 0) << show(from_file);
  auto from_pipe = sh("cat " + in + " | loom run cat > " + dir + "/out2 && cmp " + in + " " + dir + "/out2");
  EXPECT_EQ(from_pipe.code, 0) << show(from_pipe);
  auto lines = sh("seq 1 100000 | loom run wc -l");
  EXPECT_EQ(lines.out, "100000\n") << show(lines);
}

TEST_F(Input, InputFileIsReadByEveryTask) {
  std::string in = write_file("in.txt", "from the file\n");
  auto r = loom({"run", "-N2", "-n2", "-l", "--input=" + in, "cat"});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(sorted_lines(r.out), (std::vector<std::string>{"0: from the file", "1: from the file"}));
}

// What `loom submit` starts reads /dev/null unless --input says otherwise;
// then `loom job attach --stdin` gives it its input.
TEST_F(Input, SubmittedJobsReadNothingUnlessAttachSendsIt) {
  std::string quiet = submit_job({"cat"});
  auto w = loom({"job", "wait", quiet});
  EXPECT_EQ(w.code, 0) << show(w);
  std::string id = submit_job({"--input=0", "sh", "-c", "cat; echo done"});
  auto r = sh("echo 'typed later' | loom job attach --stdin " + id);
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out, "typed later\ndone\n");
}

// --input=none: the tasks read /dev/null, and loom run reads nothing of
// ours. A closed stdin is /dev/null too. What follows loom run in a
// pipeline reads the rest of the pipe as it was (blocking).
TEST_F(Input, NoneAClosedStdinAndWhatComesAfter) {
  auto none = sh("echo x | loom run --input=none sh -c 'cat; echo end'");
  EXPECT_EQ(none.code, 0) << show(none);
  EXPECT_EQ(none.out, "end\n");
  auto closed = sh("loom run sh -c 'cat; echo end' <&-");
  EXPECT_EQ(closed.code, 0) << show(closed);
  EXPECT_EQ(closed.out, "end\n");
  // The rest comes after loom run is gone: cat must find the pipe blocking.
  auto after = sh("(loom job wait-event --help >/dev/null; sleep 0.5; echo late) | { loom run true; cat; }");
  EXPECT_EQ(after.code, 0) << show(after);
  EXPECT_EQ(after.out, "late\n");
}

// The input eventlog is the user's to write: entries of any shape are
// passed over, and the job reads what is well formed.
TEST_F(Input, MalformedInputEntriesArePassedOver) {
  std::string id = submit_job({"--input=0", "sh", "-c", "cat; echo done"});
  wait_event(id, "start");
  std::string junk =
      "{\"name\":5}\n{\"name\":\"data\",\"context\":{\"stream\":7}}\n"
      "{\"name\":\"data\",\"context\":{\"stream\":\"stdin\",\"data\":\"x\",\"encoding\":[]}}\nnot json\n";
  auto put = loom({"rpc", "kvs.commit",
                   dump_json(Json{{"namespace", "job-" + std::to_string(num(id))},
                                  {"ops", {{{"op", "append"}, {"key", "input"}, {"value", junk}}}}})});
  ASSERT_EQ(put.code, 0) << show(put);
  auto r = sh("echo fine | loom job attach --stdin " + id);
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out, "xfine\ndone\n");
}

// A job that reads nothing ends as it would, however much is sent.
TEST_F(Input, AJobThatReadsNoInputEndsWhileInputKeepsComing) {
  auto r = sh("yes | loom run true");
  EXPECT_EQ(r.code, 0) << show(r);
}

// Bad input options: one line at submit, nothing submitted; the same
// jobspec sent to the job manager directly is refused too.
TEST_F(Input, BadInputOptionsAreRefusedAtSubmit) {
  auto beyond = loom({"run", "-n2", "--input=5", "cat"});
  EXPECT_EQ(beyond.code, 2);
  EXPECT_EQ(beyond.err, "loom run: jobspec: shell.options.input: task 5 is not one of the job's 2 tasks\n");
  auto missing = loom({"submit", "--input=" + dir + "/nosuch", "cat"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_EQ(missing.err,
            "loom submit: --input: \"" + dir + "/nosuch\" is neither a file nor task ranks (all, 0, 0-3) nor none\n");
  auto empty = loom({"run", "--input", "", "cat"});
  EXPECT_EQ(empty.code, 2);
  EXPECT_EQ(empty.err, "loom run: --input: \"\" is neither a file nor task ranks (all, 0, 0-3) nor none\n");
  auto bogus = loom({"submit", R"(--setattr=shell.options.input={"type":"bogus"})", "cat"});
  EXPECT_EQ(bogus.code, 2);
  EXPECT_EQ(bogus.err, "loom submit: jobspec: shell.options.input: unknown type \"bogus\" (kvs or file)\n");
  auto dry = loom({"submit", "--dry-run", "cat"});
  ASSERT_EQ(dry.code, 0) << show(dry);
  Json spec = parse_json(dry.out).value();
  spec["attributes"]["system"]["shell"]["options"]["input"] = Json{{"type", "kvs"}, {"tasks", "0"}, {"extra", 1}};
  Loop loop;
  auto c = loop.connect(inst.socket(0));
  ASSERT_TRUE(c.ok()) << c.error().text;
  Reply sub = call(loop, **c, "job-manager.submit", dump_json(Json{{"jobspec", spec}}));
  EXPECT_EQ(sub.errnum, EINVAL) << sub.errstr;
  EXPECT_EQ(sub.errstr, "jobspec: shell.options.input: unknown key \"extra\"");
  auto jobs = loom({"jobs", "-a", "--json"});
  EXPECT_EQ(jobs.out, "[]\n") << show(jobs);
}

}  // namespace
}  // namespace loom::test
