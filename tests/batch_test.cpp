// Batch jobs, allocations and their steps (docs/steps.md), end to end on a
// real instance of 4 ranks of 2 cores: `loom batch` runs a script once on
// the first rank of its allocation, with #LOOM directives; `loom alloc`
// holds one while a command runs here; inside either, `loom run` and
// `loom submit` place steps in the allocation, without the scheduler.
//
// An allocation is held open by its script waiting on a FIFO of the test's
// own (release() writes to it): no sleeps, every wait is on an event.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "base/fluid.h"
#include "kit/client.h"
#include "kit/exec.h"
#include "kit/jobs.h"
#include "kit/process.h"
#include "msg/json.h"

namespace loom::test {
namespace {

class Batch : public Exec {
 protected:
  std::string dir;
  void SetUp() override {
    Exec::SetUp();
    dir = fresh_test_dir("batch");
  }
  void TearDown() override {
    Exec::TearDown();
    std::filesystem::remove_all(dir);
  }

  std::string write_file(const std::string& name, const std::string& text, bool executable = true) {
    std::string path = dir + "/" + name;
    std::ofstream(path) << text;
    if (executable) ::chmod(path.c_str(), 0755);
    return path;
  }
  std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::string fifo(const std::string& name) {
    std::string path = dir + "/" + name;
    EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0);
    return path;
  }
  // Lets a script blocked reading `path` go on.
  void release(const std::string& path) {
    int fd = ::open(path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "go\n", 3), 3);
    ::close(fd);
  }
  // `loom batch ARGS...` from the test's directory: the printed id.
  std::string batch(std::vector<std::string> args) {
    args.insert(args.begin(), "batch");
    auto r = loom(args);
    EXPECT_EQ(r.code, 0) << show(r);
    return trim(r.out);
  }
  // An allocation of `args` held open until release(its fifo).
  std::string hold_allocation(const std::string& name, std::vector<std::string> args) {
    std::string gate = fifo(name + ".gate");
    std::string script = write_file(name + ".sh", "#!/bin/sh\nread go < " + gate + "\n");
    args.push_back("--output=" + dir + "/" + name + ".out");
    args.push_back(script);
    std::string id = batch(args);
    wait_event(id, "start");
    return id;
  }
  // `loom ARGS` as a step of allocation `a`.
  CmdResult in(const std::string& a, const std::vector<std::string>& args) {
    return loom(args, {{"LOOM_ALLOCATION", a}});
  }
  std::string ranks_of(const std::string& id) { return job(id).value("ranks", ""); }
  // The job id `loom alloc` (running in `alloc`) names once it holds its
  // allocation; "" if it never says.
  std::string alloc_id(Background& alloc) {
    if (!alloc.wait_for_err("holds rank")) {
      ADD_FAILURE() << "loom alloc never held its allocation: " << alloc.so_far().err;
      return "";
    }
    std::string err = alloc.so_far().err;
    size_t at = err.find("job ") + 4;
    return err.substr(at, err.find(' ', at) - at);
  }
};

// The issue's own scenario: a script with #LOOM -N2 and two `loom run`
// steps runs them in its own allocation while the instance's queue is
// stopped (nothing the scheduler places can start), and other jobs wait.
TEST_F(Batch, ScriptStepsRunInItsOwnAllocationWhileOtherJobsWait) {
  std::string gate = fifo("gate");
  std::string loom_bin = bin("loom");
  std::string script = write_file("job.sh",
                                  "#!/bin/sh\n"
                                  "#LOOM -N2\n"
                                  "# a comment between directives\n"
                                  "#LOOM --job-name=twosteps\n"
                                  "read go < " +
                                      gate +
                                      "\n"
                                      "echo \"script rank $LOOM_RANK size $LOOM_JOB_SIZE\"\n" +
                                      loom_bin + " run -N2 -l sh -c 'echo step1 $LOOM_RANK'\n" + loom_bin +
                                      " run -n4 -l sh -c 'echo step2 $LOOM_RANK'\n"
                                      "#LOOM -N4 (after the first command: a comment)\n");
  std::string out = dir + "/job.out";
  std::string id = batch({"--output=" + out, script});
  wait_event(id, "start");
  std::string ranks = ranks_of(id);
  EXPECT_EQ(job(id)["nnodes"], 2) << dump_json(job(id));
  EXPECT_EQ(job(id)["name"], "twosteps");
  ASSERT_EQ(loom({"queue", "stop"}).code, 0);
  std::string other = submit_job({"-N1", "true"});
  release(gate);
  wait_event(id, "clean");
  EXPECT_EQ(job(id)["result"], "COMPLETED") << dump_json(job(id)) << read_file(out);
  // The script ran once, on the first rank of the allocation; each step on
  // the allocation's ranks.
  std::string text = read_file(out);
  std::string first = ranks.substr(0, ranks.find_first_of("-,"));
  EXPECT_NE(text.find("script rank " + first + " size 1\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("script rank", text.find("script rank") + 1), std::string::npos) << text;
  for (std::string step : {"step1", "step2"}) {
    EXPECT_NE(text.find(step), std::string::npos) << text;
  }
  // The steps are jobs of their own, in the allocation, done.
  auto r = loom({"jobs", "-a", "--json"});
  auto all = parse_json(r.out);
  ASSERT_TRUE(all.ok()) << r.out;
  int steps = 0;
  for (auto& j : *all) {
    if (!j.contains("allocation")) continue;
    ++steps;
    EXPECT_EQ(j["allocation"], parse_jobid(id)->value());
    EXPECT_EQ(j["result"], "COMPLETED");
    EXPECT_EQ(j["ranks"], ranks) << dump_json(j);
  }
  EXPECT_EQ(steps, 2);
  // The job the scheduler would place waited all along.
  EXPECT_EQ(state(other), "SCHED");
  ASSERT_EQ(loom({"queue", "start"}).code, 0);
  wait_event(other, "clean");
}

TEST_F(Batch, TheCommandLineWinsOverDirectives) {
  std::string script = write_file("n.sh", "#!/bin/sh\n#LOOM -N2 -t 30m\necho $LOOM_JOB_NNODES\n");
  std::string out = dir + "/n.out";
  std::string id = batch({"-N1", "--output=" + out, script});
  wait_event(id, "clean");
  EXPECT_EQ(read_file(out), "1\n");
  EXPECT_EQ(job(id)["duration"], 1800.0);
}

TEST_F(Batch, BadScriptsAndDirectivesAreOneLineErrors) {
  std::string bad = write_file("bad.sh", "#!/bin/sh\n#LOOM -N2\n#LOOM --bogus\ntrue\n");
  auto r = loom({"batch", bad});
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_NE(r.err.find("loom batch: " + bad + " line 3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--bogus"), std::string::npos) << r.err;
  // loom submit reads them too.
  r = loom({"submit", bad});
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_NE(r.err.find("loom submit: " + bad + " line 3"), std::string::npos) << r.err;

  std::string plain = write_file("plain.sh", "echo no interpreter\n");
  r = loom({"batch", plain});
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_NE(r.err.find("does not start with #!"), std::string::npos) << r.err;
  r = loom({"batch", dir + "/nosuch.sh"});
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_NE(r.err.find("cannot read"), std::string::npos) << r.err;
  // Nothing was submitted.
  EXPECT_EQ(trim(loom({"jobs", "-a", "-n", "-o", "{id}"}).out), "");
}

// Steps wait only for room in their allocation, in submit order, and never
// run past it: when it ends, they are cancelled, and it gives its
// resources back to the scheduler only after them.
TEST_F(Batch, StepsWaitForRoomAndEndWithTheirAllocation) {
  std::string a = hold_allocation("a", {"-N1"});
  // Test execution mode: a step that runs until overridden or cancelled.
  auto first = in(a, {"submit", "-n2", "--setattr=exec.test.run_duration=\"1h\"", "true"});
  ASSERT_EQ(first.code, 0) << show(first);
  std::string s1 = trim(first.out);
  wait_event(s1, "start");
  EXPECT_EQ(ranks_of(s1), ranks_of(a));
  auto second = in(a, {"submit", "-n1", "--setattr=exec.test.run_duration=0", "true"});
  ASSERT_EQ(second.code, 0) << show(second);
  std::string s2 = trim(second.out);
  settle();
  EXPECT_EQ(state(s2), "SCHED");
  auto listed = loom({"jobs", "-n", "-o", "{id} {state} {info}"});
  EXPECT_NE(listed.out.find("waiting for room in allocation " + a), std::string::npos) << listed.out;
  // The first one gives its cores back: the second runs.
  ASSERT_EQ(loom({"cancel", s1}).code, 0);
  wait_event(s2, "clean");
  EXPECT_EQ(job(s2)["result"], "COMPLETED");

  // A running step when its allocation ends: cancelled, and the allocation
  // is freed after it.
  auto third = in(a, {"submit", "-n2", "--setattr=exec.test.run_duration=\"1h\"", "true"});
  ASSERT_EQ(third.code, 0) << show(third);
  std::string s3 = trim(third.out);
  wait_event(s3, "start");
  release(dir + "/a.gate");
  wait_event(a, "clean");
  EXPECT_EQ(job(a)["result"], "COMPLETED");
  EXPECT_EQ(job(s3)["result"], "CANCELED");
  EXPECT_NE(job(s3)["exception"].value("note", "").find("allocation " + a + " ended"), std::string::npos);
  auto alloc_log = eventlog(a);
  auto step_log = eventlog(s3);
  ASSERT_FALSE(named(alloc_log, "free").empty());
  ASSERT_FALSE(named(step_log, "clean").empty());
  EXPECT_GE(named(alloc_log, "free")[0]["timestamp"].get<double>(),
            named(step_log, "clean")[0]["timestamp"].get<double>());
  EXPECT_EQ(allocated_ranks(), "");
  // Steps of an allocation that is over are refused.
  auto late = in(a, {"submit", "true"});
  EXPECT_EQ(late.code, 1) << show(late);
  EXPECT_NE(late.err.find("is not running"), std::string::npos) << late.err;
}

TEST_F(Batch, AStepMustFitAndBelongToARunningAllocationOfItsUser) {
  std::string a = hold_allocation("b", {"-N2"});
  auto r = in(a, {"submit", "-N3", "true"});
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_NE(r.err.find("allocation " + a), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("3 nodes"), std::string::npos) << r.err;
  // A job that is not an allocation, and no job at all.
  std::string plain = submit_job({"--setattr=exec.test.run_duration=\"1h\"", "true"});
  r = in(plain, {"submit", "true"});
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_NE(r.err.find("is not an allocation"), std::string::npos) << r.err;
  r = in("nosuch", {"submit", "true"});
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_NE(r.err.find("LOOM_ALLOCATION=\"nosuch\" is not a job id"), std::string::npos) << r.err;
  // Another user's allocation (the owner may speak as another user).
  r = loom({"submit", "true"}, {{"LOOM_ALLOCATION", a}, {"LOOM_HANDLE_USERID", std::to_string(::getuid() + 4242)}});
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_NE(r.err.find("belongs to another user"), std::string::npos) << r.err;
  ASSERT_EQ(loom({"cancel", plain}).code, 0);
  release(dir + "/b.gate");
  wait_event(a, "clean");
}

// loom alloc: the command runs here with the allocation's variables; its
// steps run in the allocation; loom alloc exits as the command did, and
// the allocation is given back.
TEST_F(Batch, AllocRunsACommandHereHoldingTheAllocation) {
  std::string loom_bin = bin("loom");
  auto r = run_cmd({loom_bin, "alloc", "-N2", "sh", "-c",
                    "echo alloc=$LOOM_ALLOCATION nodes=$LOOM_JOB_NNODES; " + loom_bin +
                        " run -N2 -l printenv LOOM_ALLOCATION; exit 3"},
                   {{"LOOM_URI", inst.uri()}});
  EXPECT_EQ(r.code, 3) << show(r);
  auto lines = r.out_lines();
  ASSERT_EQ(lines.size(), 3u) << r.out;
  std::string a = lines[0].substr(6, lines[0].find(' ') - 6);
  EXPECT_EQ(lines[0], "alloc=" + a + " nodes=2");
  std::sort(lines.begin() + 1, lines.end());
  EXPECT_EQ(lines[1], "0: " + a);
  EXPECT_EQ(lines[2], "1: " + a);
  EXPECT_NE(r.err.find("loom alloc: job " + a + " holds rank"), std::string::npos) << r.err;
  wait_event(a, "clean");
  Json j = job(a);
  EXPECT_EQ(j["status"], 3 << 8) << dump_json(j);
  EXPECT_EQ(allocated_ranks(), "");
}

// Directives come from the script as read once (a pipe too), split as a
// shell splits words; a later line wins over an earlier one. The
// submitter's TMPDIR, missing on the node, is not the script's end.
TEST_F(Batch, DirectivesAreReadOnceAndSplitAsAShellDoes) {
  std::string script = write_file("d.sh",
                                  "#!/bin/sh\n"
                                  "#LOOM -N2\n"
                                  "#LOOM -N1 --env=X=\"y z\" --job-name='my job'\n"
                                  "echo \"$X|$LOOM_JOB_NNODES\"\n");
  std::string out = dir + "/d.out";
  auto r = run_cmd({"/bin/sh", "-c", "cat " + script + " | \"$LOOM\" batch --output=" + out + " /dev/stdin"},
                   {{"LOOM_URI", inst.uri()}, {"LOOM", bin("loom")}, {"TMPDIR", dir + "/nonexistent"}});
  ASSERT_EQ(r.code, 0) << show(r);
  std::string id = trim(r.out);
  wait_event(id, "clean");
  EXPECT_EQ(job(id)["result"], "COMPLETED") << read_file(out);
  EXPECT_EQ(read_file(out), "y z|1\n");
  EXPECT_EQ(job(id)["name"], "my job");

  for (auto [name, text, why] :
       {std::tuple<std::string, std::string, std::string>{"crlf.sh", "#!/bin/sh\r\ntrue\r\n", "line 1 ends in \\r\\n"},
        {"bin.sh", "#!/bin/sh\necho \xff\xfe\n", "is not UTF-8 text (byte 16)"},
        {"quote.sh", "#!/bin/sh\n#LOOM --job-name=\"open\ntrue\n", "line 2"}}) {
    auto bad = loom({"batch", write_file(name, text)});
    EXPECT_NE(bad.code, 0) << name << ": " << show(bad);
    EXPECT_EQ(bad.err_lines().size(), 1u) << name << ": " << bad.err;
    EXPECT_NE(bad.err.find(why), std::string::npos) << name << ": " << bad.err;
  }
}

// Directive errors of loom submit ./SCRIPT as of loom batch: one readable
// line (a stray \r or NUL shown as \xNN, never written raw), --help no
// directive, extra words in the order written.
TEST_F(Batch, DirectiveErrorsAreOneReadableLine) {
  struct Case {
    std::string name, text, why;
  };
  std::vector<Case> cases = {
      {"crlf.sh", "#!/bin/sh\r\n#LOOM -N2\r\ntrue\r\n", "line 2: #LOOM -N2\\x0d: ends in \\r\\n"},
      {"nul.sh", std::string("#!/bin/sh\n#LOOM -N\0 1\ntrue\n", 27), "line 2: #LOOM -N\\x00 1: a control character"},
      {"help.sh", "#!/bin/sh\n#LOOM -h\ntrue\n", "line 2: #LOOM -h: the following argument was not expected: -h"},
      {"extra.sh", "#!/bin/sh\n#LOOM -N1 one two\ntrue\n", "the following arguments were not expected: one two"},
  };
  for (const auto& c : cases) {
    std::string path = write_file(c.name, c.text);
    for (const char* cmd : {"batch", "submit"}) {
      auto r = loom({cmd, path});
      ASSERT_EQ(r.err_lines().size(), 1u) << c.name << ": " << r.err;
      EXPECT_EQ(r.err.find_first_of(std::string("\r\0", 2)), std::string::npos) << c.name;
      // (loom batch refuses a DOS script as a whole first, as a bad script.)
      if (std::string(cmd) == "batch" && c.name == "crlf.sh") {
        EXPECT_EQ(r.code, 1) << show(r);
        continue;
      }
      EXPECT_EQ(r.code, 2) << c.name << ": " << show(r);
      EXPECT_NE(r.err.find(c.why), std::string::npos) << c.name << ": " << r.err;
    }
  }
  // An --env-file that never ends is refused, not read into memory.
  auto r = loom({"submit", "--env-file=/dev/zero", "true"});
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_NE(r.err.find("--env-file /dev/zero is over 1 MiB"), std::string::npos) << r.err;
  r = loom({"submit", "true"}, {{"LOOM_ALLOCATION", "0"}});
  EXPECT_NE(r.code, 0) << show(r);
  EXPECT_NE(r.err.find("LOOM_ALLOCATION=\"0\" is not a job id"), std::string::npos) << r.err;
  EXPECT_EQ(trim(loom({"jobs", "-a", "-n", "-o", "{id}"}).out), "");
}

// loom alloc killed while its command runs: its allocation is cancelled
// (nobody else would give it back).
TEST_F(Batch, AnAllocWhoseClientIsKilledIsCancelled) {
  std::string gate = fifo("alloc.gate");
  Background alloc({bin("loom"), "alloc", "-N1", "sh", "-c", "read go < " + gate}, {{"LOOM_URI", inst.uri()}});
  std::string id = alloc_id(alloc);
  ASSERT_NE(id, "");
  ASSERT_TRUE(alloc.signal(SIGKILL));
  wait_event(id, "clean");
  EXPECT_EQ(job(id)["result"], "CANCELED") << dump_json(job(id));
  EXPECT_EQ(allocated_ranks(), "");
  // Its command, orphaned, is ours to end.
  for (pid_t p : processes_mentioning(gate)) ::kill(p, SIGKILL);
}

// A rank lost while an allocation holds it (docs/steps.md): heartbeats
// every 0.1 s, a rank lost after 1 s without one; shells do not wait for
// a lost broker to come back.
class BatchLost : public Batch {
 protected:
  void SetUp() override {
    dir = fresh_test_dir("batch-lost");
    ASSERT_TRUE(inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0", "--heartbeat-interval=0.1",
                               "--heartbeat-timeout=1", "--setconf", "exec.reattach-timeout=0"}));
    inst.expect_clean_exit(false);  // a rank is killed on purpose
  }
  void kill_rank(uint32_t rank) {
    std::string why;
    auto pid = inst.broker_pid(rank, &why);
    ASSERT_TRUE(pid) << why;
    ASSERT_EQ(::kill(*pid, SIGKILL), 0);
  }
  Json exception_of(const std::string& id) {
    auto ex = named(eventlog(id), "exception");
    return ex.empty() ? Json() : ex[0]["context"];
  }
};

// The script runs on the first rank; the second, with no task of it, was
// let go by the execution service at once and is watched by nobody but
// the job manager: its loss fails the allocation, as a job whose shell
// ran there would fail, rather than leaving steps to be placed on it.
TEST_F(BatchLost, LosingARankWhereTheScriptDoesNotRunFailsTheAllocation) {
  std::string a = hold_allocation("a", {"-N2"});
  ASSERT_EQ(ranks_of(a), "0-1");
  wait_event(a, "release");  // rank 1, where the script does not run
  kill_rank(1);
  wait_event(a, "clean");
  Json ex = exception_of(a);
  EXPECT_EQ(ex["type"], "node-failure") << ex;
  EXPECT_NE(ex.value("note", "").find("rank 1 lost"), std::string::npos) << ex;
  EXPECT_EQ(allocated_ranks(), "");
  for (pid_t p : processes_mentioning(dir + "/a.gate")) ::kill(p, SIGKILL);
}

// loom alloc reached the instance through rank 3, which is lost: no
// disconnect comes from a dead broker, and the allocation is cancelled all
// the same.
TEST_F(BatchLost, AnAllocWhoseBrokerIsLostIsCancelled) {
  std::string gate = fifo("alloc.gate");
  Background alloc({bin("loom"), "alloc", "-N1", "sh", "-c", "read go < " + gate},
                   {{"LOOM_URI", "local://" + inst.socket(3)}});
  std::string id = alloc_id(alloc);
  ASSERT_NE(id, "");
  kill_rank(3);
  wait_event(id, "clean");
  EXPECT_EQ(job(id)["result"], "CANCELED") << dump_json(job(id));
  EXPECT_NE(exception_of(id).value("note", "").find("rank 3 lost"), std::string::npos) << exception_of(id);
  EXPECT_EQ(allocated_ranks(), "");
  for (pid_t p : processes_mentioning(gate)) ::kill(p, SIGKILL);
}

// A loom alloc that goes away right after sending its submission, before
// any answer: its job is cancelled all the same. (Here the scheduler's
// feasibility answer comes before the disconnect; a disconnect that comes
// first, while a slow scheduler is asked, is handled by end_tie_check.)
TEST_F(Batch, AnAllocThatGoesAwayAtOnceIsCancelled) {
  auto dry = inst.loom({"submit", "--dry-run", "--setattr=exec.test.run_duration=600", "true"});
  ASSERT_EQ(dry.code, 0) << dry.err;
  auto spec = parse_json(dry.out);
  ASSERT_TRUE(spec.ok()) << dry.out;
  Loop loop;
  auto watcher = loop.connect(inst.socket(0));
  ASSERT_TRUE(watcher.ok()) << watcher.error().text;
  std::vector<Json> cancels;
  ASSERT_TRUE(subscribe(loop, (*watcher)->handle(), "job-exception", [&](const Message& m) {
    auto j = parse_json(m.payload);
    if (j.ok() && j->value("type", "") == "cancel") cancels.push_back(*j);
  }));
  auto raw = RawConn::connect(inst.socket(0));
  ASSERT_TRUE(raw.ok()) << raw.error().text;
  Json submit{{"jobs", Json::array({{{"jobspec", *spec}}})}, {"cancel_on_disconnect", true}};
  ASSERT_TRUE(raw->send(request("job-manager.submit", dump_json(submit), 1)));
  // Half closed: the broker reads the submission, then the end of the
  // connection. (A full close could reset the connection before the
  // submission was read, and no job would be made at all.)
  raw->shutdown_write();
  ASSERT_TRUE(loop.run_until([&] { return !cancels.empty(); }, 20)) << "the tied job was never cancelled";
  EXPECT_NE(cancels[0].value("note", "").find("went away"), std::string::npos) << cancels[0];
  std::string id = encode_f58(JobId(cancels[0]["id"].get<uint64_t>()));
  wait_event(id, "clean");
  EXPECT_EQ(job(id)["result"], "CANCELED") << dump_json(job(id));
}

// A crash of every broker while an allocation's step runs, then a restart
// on the same state directory: real execution finds both jobs' shells
// again, and the job manager rebuilds the allocation's room from its
// steps' R, so the running step keeps its cores and a step that needs
// them waits for its end.
class BatchRestart : public Batch {
 protected:
  void SetUp() override {
    dir = fresh_test_dir("batch-restart");
    ASSERT_TRUE(inst.start(2, args()));
  }
  std::vector<std::string> args() {
    return {"--cores-per-rank=2", "--gpus-per-rank=0", "--state-dir=" + dir + "/state", "--setconf",
            "exec.reattach-timeout=30"};
  }
  // Waits until a task has opened FIFO `path` to write into it.
  void wait_for(const std::string& path) {
    auto r = run_cmd({"/bin/cat", path}, {}, 20);
    ASSERT_EQ(r.code, 0) << "nobody writes " << path << ": " << show(r);
  }
};

TEST_F(BatchRestart, ARunningStepKeepsItsCoresThroughACrash) {
  std::string a = hold_allocation("a", {"-N1", "-n2"});
  std::string up = fifo("step.up");
  std::string gate = fifo("step.gate");
  auto first = in(a, {"submit", "-n1", "sh", "-c", "echo up > " + up + "; read go < " + gate});
  ASSERT_EQ(first.code, 0) << show(first);
  std::string step = trim(first.out);
  wait_for(up);
  auto second = in(a, {"submit", "-n2", "true"});
  ASSERT_EQ(second.code, 0) << show(second);
  std::string whole = trim(second.out);
  settle();
  ASSERT_EQ(state(whole), "SCHED");

  crash_instance(inst);
  ASSERT_TRUE(inst.start(2, args()));
  settle();
  EXPECT_EQ(state(a), "RUN");
  EXPECT_EQ(state(step), "RUN");
  EXPECT_EQ(state(whole), "SCHED");
  release(gate);
  wait_event(step, "clean");
  wait_event(whole, "clean");
  EXPECT_EQ(job(step)["result"], "COMPLETED");
  EXPECT_EQ(job(whole)["result"], "COMPLETED");
  // The second step was placed only once the first had ended.
  auto step_log = eventlog(step);
  auto whole_log = eventlog(whole);
  ASSERT_FALSE(named(step_log, "finish").empty());
  ASSERT_FALSE(named(whole_log, "alloc").empty());
  EXPECT_GE(named(whole_log, "alloc")[0]["timestamp"].get<double>(),
            named(step_log, "finish")[0]["timestamp"].get<double>());
  release(dir + "/a.gate");
  wait_event(a, "clean");
  EXPECT_EQ(job(a)["result"], "COMPLETED");
  EXPECT_EQ(allocated_ranks(), "");
}

// The site's prolog and epilog run around an allocation, not around each
// of its steps (docs/steps.md), as Slurm's run around a job.
class BatchPerilogs : public Batch {
 protected:
  void SetUp() override {
    dir = fresh_test_dir("batch-perilogs");
    for (const char* kind : {"prolog", "epilog"}) {
      write_file(std::string(kind) + ".sh",
                 std::string("#!/bin/sh\necho ") + kind + " $LOOM_JOB_ID $LOOM_RANK >> " + dir + "/ran\n");
    }
    ASSERT_TRUE(inst.start(2, {"--cores-per-rank=2", "--gpus-per-rank=0", "--setconf",
                               "exec.prolog=" + dir + "/prolog.sh", "--setconf", "exec.epilog=" + dir + "/epilog.sh"}));
  }
};

TEST_F(BatchPerilogs, RunAroundTheAllocationNotItsSteps) {
  std::string script = write_file(
      "steps.sh", "#!/bin/sh\n#LOOM -N1 -n2\n" + bin("loom") + " run -n1 true\n" + bin("loom") + " run -n2 true\n");
  std::string a = batch({"--output=" + dir + "/out", script});
  wait_event(a, "clean");
  EXPECT_EQ(job(a)["result"], "COMPLETED") << read_file(dir + "/out");
  // Both steps ran, and only the allocation's prolog and epilog.
  auto steps = loom({"jobs", "-a", "-n", "-o", "{id} {result}", "-f", "completed"});
  EXPECT_EQ(steps.out_lines().size(), 3u) << steps.out;
  std::string rank = ranks_of(a);
  EXPECT_EQ(read_file(dir + "/ran"), "prolog " + a + " " + rank + "\nepilog " + a + " " + rank + "\n");
}

// Allocations and steps in test execution mode (nothing runs, they last
// an hour unless cancelled), on an instance of this fixture's own.
class BatchState : public JobsFixture {
 protected:
  std::string dir;
  std::string script;
  void SetUp() override {
    dir = fresh_test_dir("batch-state");
    script = dir + "/hold.sh";
    std::ofstream(script) << "#!/bin/sh\ntrue\n";
  }
  void TearDown() override {
    JobsFixture::TearDown();
    std::filesystem::remove_all(dir);
  }
  static std::vector<std::string> an_hour(std::vector<std::string> args) {
    args.insert(args.begin() + 1, "--setattr=exec.test.run_duration=\"1h\"");
    return args;
  }
  std::string submitted(const CmdResult& r) {
    EXPECT_EQ(r.code, 0) << show(r);
    return trim(r.out);
  }
};

// Cancelling an allocation ends its steps; with a retention limit of one
// inactive job, each ending purges the one before while the cancel is
// still walking its list: the broker must live on.
TEST_F(BatchState, CancellingAnAllocationWithItsStepsUnderATightRetentionLimit) {
  ASSERT_TRUE(
      inst.start(1, {"--cores-per-rank=2", "--gpus-per-rank=0", "--setconf", "job-manager.inactive-num-limit=1"}));
  auto args = an_hour({"batch", "-n2", "--output=/dev/null", script});
  std::string a = submitted(loom(args));
  wait_event(a, "start");
  Env in_a{{"LOOM_ALLOCATION", a}};
  std::string running = submitted(loom(an_hour({"submit", "-n2", "true"}), in_a));
  wait_event(running, "start");
  std::vector<std::string> waiting;
  for (int i = 0; i < 5; ++i) waiting.push_back(submitted(loom(an_hour({"submit", "-n1", "true"}), in_a)));
  auto r = loom({"cancel", "--all"});
  EXPECT_EQ(r.code, 0) << show(r);
  auto ping = loom({"jobs", "-n", "-o", "{id}"});
  ASSERT_EQ(ping.code, 0) << show(ping);
  EXPECT_EQ(trim(ping.out), "");
  EXPECT_EQ(allocated_ranks(), "");
}

// A job manager restarted (every broker killed) finds the allocation's
// steps again, each with its R (test execution cannot be reattached: the
// allocation is lost at the restart, so its steps end with it, the
// running one after its R is seen to, the waiting one never placed).
TEST_F(BatchState, StepsAreFoundAgainAfterARestart) {
  std::string state_dir = dir + "/state";
  ASSERT_TRUE(inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0", "--state-dir", state_dir}));
  std::string a = submitted(loom(an_hour({"batch", "-N1", "--output=/dev/null", script})));
  wait_event(a, "start");
  Env in_a{{"LOOM_ALLOCATION", a}};
  std::string first = submitted(loom(an_hour({"submit", "-n2", "true"}), in_a));
  wait_event(first, "start");
  std::string second = submitted(loom({"submit", "-n1", "--setattr=exec.test.run_duration=0", "true"}, in_a));
  settle();
  ASSERT_EQ(state(second), "SCHED");
  std::string ranks = job(first).value("ranks", "");
  crash_instance(inst);

  ASSERT_TRUE(inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0", "--state-dir", state_dir}));
  wait_event(first, "clean");
  wait_event(second, "clean");
  wait_event(a, "clean");
  EXPECT_EQ(job(first).value("ranks", ""), ranks);
  Names seen = events(first);
  EXPECT_NE(std::find(seen.begin(), seen.end(), "restart"), seen.end());
  auto info = loom({"job", "info", first, "R"});
  EXPECT_EQ(info.code, 0) << show(info);
  Names never = events(second);
  EXPECT_EQ(std::find(never.begin(), never.end(), "alloc"), never.end());
  EXPECT_NE(job(second)["exception"].value("note", "").find("allocation " + a + " ended"), std::string::npos);
  EXPECT_EQ(allocated_ranks(), "");
}

// A singleton step of the same name as its allocation does not wait for
// the allocation's end (which comes only after the step's).
TEST_F(BatchState, ASingletonStepDoesNotWaitForItsOwnAllocation) {
  ASSERT_TRUE(inst.start(1, {"--cores-per-rank=2", "--gpus-per-rank=0"}));
  std::string a = submitted(loom(an_hour({"batch", "-n2", "--job-name=solo", "--output=/dev/null", script})));
  wait_event(a, "start");
  std::string step = submitted(
      loom({"submit", "--job-name=solo", "--dependency=singleton", "--setattr=exec.test.run_duration=0", "-n1", "true"},
           {{"LOOM_ALLOCATION", a}}));
  wait_event(step, "clean");
  EXPECT_EQ(job(step)["result"], "COMPLETED");
  // Another job of that name, not a step, waits for the allocation.
  std::string other = submitted(loom({"submit", "--job-name=solo", "--dependency=singleton", "-n1", "true"}));
  settle();
  EXPECT_EQ(state(other), "DEPEND");
}

// A held step does not hold back the steps behind it; released, it runs.
TEST_F(BatchState, AHeldStepLetsTheStepsBehindItRun) {
  ASSERT_TRUE(inst.start(1, {"--cores-per-rank=2", "--gpus-per-rank=0"}));
  std::string a = submitted(loom(an_hour({"batch", "-n2", "--output=/dev/null", script})));
  wait_event(a, "start");
  Env in_a{{"LOOM_ALLOCATION", a}};
  // A step may wait for its allocation's start, never for its end.
  auto r = loom({"submit", "--dependency=afterany:" + a, "true"}, in_a);
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_NE(r.err.find("cannot wait for the end of its own allocation"), std::string::npos) << r.err;
  std::string held = submitted(loom({"submit", "--urgency=hold", "-n1", "true"}, in_a));
  std::string next = submitted(loom({"submit", "-n1", "--setattr=exec.test.run_duration=0", "true"}, in_a));
  wait_event(next, "clean");
  EXPECT_EQ(state(held), "SCHED");
  ASSERT_EQ(loom({"job", "urgency", held, "16"}).code, 0);
  wait_event(held, "start");
  ASSERT_EQ(loom({"cancel", a}).code, 0);
  wait_event(held, "clean");
  wait_event(a, "clean");
}

}  // namespace
}  // namespace loom::test
