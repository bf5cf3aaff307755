// The execution protocol end to end (DESIGN §6, §9; docs/protocols/exec.md):
// a 4-rank instance of 2 cores per rank, jobs in test execution mode run
// by the built-in job-exec, and a test client that registers itself as the
// execution service to play every part of the protocol by hand: partial
// release, protocol violations, hello refused while busy, teardown on
// disconnect and on an error response. Waiting is on events only.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/fluid.h"
#include "kit/client.h"
#include "kit/instance.h"
#include "kit/jobs.h"
#include "msg/json.h"

namespace loom::test {
namespace {

// The processes that have `word` as an argument (from /proc).
std::vector<pid_t> processes_with(const std::string& word) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t start = 0;
    while (start < cmdline.size()) {
      size_t end = cmdline.find('\0', start);
      if (end == std::string::npos) end = cmdline.size();
      if (cmdline.compare(start, end - start, word) == 0) {
        out.push_back(static_cast<pid_t>(std::stol(name)));
        break;
      }
      start = end + 1;
    }
  }
  return out;
}
int processes_running(const std::string& word) { return static_cast<int>(processes_with(word).size()); }

// Each of `pids` exits within 5 seconds (a SIGKILLed process still takes
// its turn on a CPU to die): waits on a pidfd for each.
void expect_all_exit(const std::vector<pid_t>& pids) {
  for (pid_t p : pids) {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, p, 0));
    if (fd < 0) continue;  // already gone
    pollfd pfd{fd, POLLIN, 0};
    EXPECT_EQ(::poll(&pfd, 1, 5000), 1) << "process " << p << " still runs";
    ::close(fd);
  }
}

class Exec : public JobsFixture {
 protected:
  void SetUp() override { ASSERT_TRUE(inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0"})); }

  // A job in test execution mode: `test` is attributes.system.exec.test.
  std::string submit_test(std::vector<std::string> args, const std::map<std::string, std::string>& test) {
    for (const auto& [k, v] : test) args.insert(args.begin(), "--setattr=exec.test." + k + "=" + v);
    return submit_job(args);
  }

  uint64_t num(const std::string& id) { return parse_jobid(id).value().value(); }

  // The entries named `name` of an eventlog.
  static std::vector<Json> named(const std::vector<Json>& log, const std::string& name) {
    std::vector<Json> out;
    for (const auto& e : log) {
      if (e["name"] == name) out.push_back(e);
    }
    return out;
  }
};

TEST_F(Exec, SuccessLogsTheCanonicalEventlogWithOneReleasePerRank) {
  std::string id = submit_test({"-N4", "true"}, {{"run_duration", "0.05s"}});
  wait_event(id, "clean");
  EXPECT_EQ(events(id), (Names{"submit", "validate", "depend", "priority", "alloc", "start", "finish", "release",
                               "release", "release", "release", "free", "clean"}));
  auto log = eventlog(id);
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], 0);
  auto releases = named(log, "release");
  ASSERT_EQ(releases.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(releases[i]["context"]["ranks"], std::to_string(i));
    EXPECT_EQ(releases[i]["context"]["final"], i == 3) << releases[i];
  }
  EXPECT_EQ(job(id)["result"], "COMPLETED");
  EXPECT_EQ(allocated_ranks(), "");
  auto wait = loom({"job", "wait", id});
  EXPECT_EQ(wait.code, 0) << show(wait);
}

TEST_F(Exec, WaitStatusIsReportedByFinishAndFailsTheJob) {
  std::string id = submit_test({"-N2", "true"}, {{"wait_status", "768"}});
  wait_event(id, "clean");
  EXPECT_EQ(named(eventlog(id), "finish")[0]["context"]["status"], 768);
  EXPECT_EQ(job(id)["result"], "FAILED");
  auto wait = loom({"job", "wait", id});
  EXPECT_EQ(wait.code, 1) << show(wait);
}

TEST_F(Exec, MockInitExceptionNeverStarts) {
  std::string id = submit_test({"-N2", "true"}, {{"mock_exception", "init"}});
  wait_event(id, "clean");
  EXPECT_EQ(events(id),
            (Names{"submit", "validate", "depend", "priority", "alloc", "exception", "release", "free", "clean"}));
  auto log = eventlog(id);
  EXPECT_EQ(named(log, "exception")[0]["context"]["type"], "exec");
  EXPECT_EQ(named(log, "exception")[0]["context"]["severity"], 0);
  EXPECT_EQ(named(log, "release")[0]["context"]["final"], true);
  EXPECT_EQ(allocated_ranks(), "");
}

TEST_F(Exec, MockRunExceptionComesAfterStart) {
  std::string id = submit_test({"-N1", "true"}, {{"mock_exception", "run"}});
  wait_event(id, "clean");
  EXPECT_EQ(events(id), (Names{"submit", "validate", "depend", "priority", "alloc", "start", "exception", "finish",
                               "release", "free", "clean"}));
  EXPECT_EQ(job(id)["result"], "FAILED");
}

TEST_F(Exec, CancelWhileRunningKillsAndReleases) {
  std::string id = submit_test({"-N2", "true"}, {{"run_duration", "1h"}});
  wait_event(id, "start");
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  wait_event(id, "clean");
  EXPECT_EQ(events(id), (Names{"submit", "validate", "depend", "priority", "alloc", "start", "exception", "finish",
                               "release", "release", "free", "clean"}));
  auto log = eventlog(id);
  EXPECT_EQ(named(log, "exception")[0]["context"]["type"], "cancel");
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], 15) << "SIGTERM";
  EXPECT_EQ(job(id)["result"], "CANCELED");
  EXPECT_EQ(allocated_ranks(), "");
}

TEST_F(Exec, TimeLimitRaisesTimeout) {
  std::string id = submit_test({"-N1", "-t", "0.2s", "true"}, {{"run_duration", "1h"}});
  wait_event(id, "clean");
  auto log = eventlog(id);
  ASSERT_EQ(named(log, "exception").size(), 1u);
  EXPECT_EQ(named(log, "exception")[0]["context"]["type"], "timeout");
  EXPECT_EQ(named(log, "exception")[0]["context"]["note"], "resource allocation expired");
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], 14) << "SIGALRM";
  EXPECT_EQ(job(id)["result"], "TIMEOUT");
}

TEST_F(Exec, OverrideWaitsForItsEvents) {
  std::string id = submit_test({"-N1", "true"}, {{"override", "true"}});
  wait_event(id, "alloc");
  std::string n = std::to_string(num(id));
  // Not started yet: finish is refused.
  auto early = loom({"rpc", "job-exec.override", R"({"event":"finish","id":)" + n + "}"});
  EXPECT_NE(early.code, 0);
  ASSERT_EQ(loom({"rpc", "job-exec.override", R"({"event":"start","id":)" + n + "}"}).code, 0);
  wait_event(id, "start");
  ASSERT_EQ(loom({"rpc", "job-exec.override", R"({"event":"finish","id":)" + n + R"(,"status":256})"}).code, 0);
  wait_event(id, "clean");
  EXPECT_EQ(named(eventlog(id), "finish")[0]["context"]["status"], 256);
}

TEST_F(Exec, RealJobRunsItsTasksOnEveryRankAndReleasesRankByRank) {
  // Each task exits with the rank it runs on: the largest is 3, so the
  // job finishes with wait status 768 and `loom run` exits 3.
  auto r = loom({"run", "-N4", "-n8", "sh", "-c",
                 "echo task $LOOM_TASK_RANK of $LOOM_JOB_SIZE pmi $PMI_RANK/$PMI_SIZE; exit $LOOM_RANK"});
  EXPECT_EQ(r.code, 3) << show(r);
  auto ls = loom({"jobs", "-a", "--json"});
  Json jobs = parse_json(ls.out).value();
  ASSERT_EQ(jobs.size(), 1u);
  std::string id = std::to_string(jobs[0]["id"].get<uint64_t>());
  auto log = eventlog(id);
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], 768);
  auto rel = named(log, "release");
  ASSERT_EQ(rel.size(), 4u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(rel[i]["context"]["final"], false) << rel[i];
  EXPECT_EQ(rel[3]["context"]["final"], true);
  Names order;
  for (auto& e : log) order.push_back(e["name"].get<std::string>());
  EXPECT_LT(std::find(order.begin(), order.end(), "finish") - order.begin(),
            std::find(order.begin(), order.end(), "free") - order.begin());
  // The output eventlog was linked into the job's directory: 8 tasks, one
  // line each, every task rank once.
  auto out = loom({"kvs", "get", "job." + id + ".guest.output"});
  ASSERT_EQ(out.code, 0) << show(out);
  std::set<std::string> lines;
  for (auto& line : out.out_lines()) {
    auto e = parse_json(line);
    if (e.ok() && (*e)["name"] == "data") lines.insert((*e)["context"]["data"].get<std::string>());
  }
  for (int t = 0; t < 8; ++t) {
    std::string n = std::to_string(t);
    EXPECT_TRUE(lines.count("task " + n + " of 8 pmi " + n + "/8\n")) << t;
  }
  EXPECT_EQ(allocated_ranks(), "");
}

TEST_F(Exec, RunPrintsWhatTheTasksWroteByteForByte) {
  // 300 KB of every byte value (lines far longer than a chunk, not UTF-8)
  // and a few thousand short lines.
  char tmpl[] = "/tmp/loom-exec-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string bin;
  for (uint32_t i = 0; i < 300000; ++i) bin += static_cast<char>((i * 7919u) % 256);
  std::ofstream(dir + "/bin") << bin;
  auto r = loom({"run", "cat", dir + "/bin"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.size(), bin.size());
  EXPECT_TRUE(r.out == bin) << "binary output differs";
  auto lines = loom({"run", "seq", "1", "5000"});
  ASSERT_EQ(lines.code, 0) << lines.err;
  std::string want;
  for (int i = 1; i <= 5000; ++i) want += std::to_string(i) + "\n";
  EXPECT_TRUE(lines.out == want) << "got " << lines.out.size() << " bytes, want " << want.size();
  std::filesystem::remove_all(dir);
}

TEST_F(Exec, AttachShowsLabelledOutputOfARunningJob) {
  std::string id = submit_job({"-N2", "sh", "-c", "echo hello from $LOOM_TASK_RANK; echo oops >&2"});
  auto r = loom({"job", "attach", "-l", id});
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_NE(r.out.find("0: hello from 0\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1: hello from 1\n"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("0: oops\n"), std::string::npos) << r.err;
  // Attaching after the end reads the stored output.
  auto again = loom({"job", "attach", id});
  EXPECT_EQ(again.code, 0);
  EXPECT_EQ(again.out.size(), std::string("hello from 0\nhello from 1\n").size()) << again.out;
}

TEST_F(Exec, AJobLargerThanAPipeHoldsReachesItsShell) {
  // 100 KB goes through the fork server; 200 KB is more than it takes: that
  // shell is started alone and reads its job from a pipe (64 KiB), the rest
  // written as it reads.
  std::string big(100000, 'x');
  auto r = loom({"run", "--env", "BIG=" + big, "sh", "-c", "echo ${#BIG}"});
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out, "100000\n");
  r = loom({"run", "--env", "BIG=" + big, "--env", "BIG2=" + big, "sh", "-c", "echo ${#BIG} ${#BIG2}"});
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out, "100000 100000\n");
}

TEST_F(Exec, JobsStillRunWhenTheShellForkServersAreGone) {
  // This instance's: children of its brokers (other tests may run beside).
  std::set<pid_t> brokers;
  for (uint32_t rank = 0; rank < 4; ++rank) {
    auto b = inst.broker_pid(rank);
    ASSERT_TRUE(b.has_value());
    brokers.insert(*b);
  }
  std::vector<pid_t> servers;
  for (pid_t p : processes_with("--fork-server")) {
    std::ifstream stat("/proc/" + std::to_string(p) + "/stat");
    std::string line;
    std::getline(stat, line);
    // pid (comm) state ppid ...
    auto after = line.rfind(')');
    if (after == std::string::npos) continue;
    pid_t ppid = 0;
    char state = 0;
    if (std::sscanf(line.c_str() + after + 1, " %c %d", &state, &ppid) == 2 && brokers.count(ppid)) {
      servers.push_back(p);
    }
  }
  ASSERT_EQ(servers.size(), 4u) << "one shell fork server per broker";
  for (pid_t p : servers) ASSERT_EQ(::kill(p, SIGKILL), 0);
  expect_all_exit(servers);
  auto r = loom({"run", "-N4", "-l", "sh", "-c", "echo rank $LOOM_RANK"});
  EXPECT_EQ(r.code, 0) << show(r);
  auto lines = r.out_lines();
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"0: rank 0", "1: rank 1", "2: rank 2", "3: rank 3"})) << r.out;
}

TEST_F(Exec, CtrlCTwiceCancelsAnAttachedJobWhileAFollowerJustEnds) {
  std::string id = submit_job({"sh", "-c", "echo ready; exec sleep 300"});
  // Following the output eventlog is only reading: Ctrl-C ends the reader.
  auto follow = inst.loom_background({"job", "eventlog", "-f", "-p", "output", id});
  ASSERT_TRUE(follow->wait_for_out("ready")) << show(follow->so_far());
  ASSERT_TRUE(follow->signal(SIGINT));
  auto f = follow->finish();
  EXPECT_EQ(f.code, 128 + SIGINT) << show(f);
  EXPECT_EQ(state(id), "RUN");
  // Attached: the first Ctrl-C warns, a second within 2 s cancels.
  auto attach = inst.loom_background({"job", "attach", id});
  ASSERT_TRUE(attach->wait_for_out("ready\n")) << show(attach->so_far());
  ASSERT_TRUE(attach->signal(SIGINT));
  ASSERT_TRUE(attach->wait_for_err("one more Ctrl-C within 2s cancels")) << show(attach->so_far());
  ASSERT_TRUE(attach->signal(SIGINT));
  auto a = attach->finish();
  EXPECT_EQ(a.code, 128 + SIGTERM) << show(a);
  EXPECT_NE(a.err.find("cancel exception: interrupted"), std::string::npos) << a.err;
  wait_event(id, "clean");
  auto ex = named(eventlog(id), "exception");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["type"], "cancel");
}

TEST_F(Exec, AnOrderlyStopKillsRunningTasks) {
  // `start` means the shells run; a task says when it runs by writing a
  // line. The task's shell carries `marker` in its argv, its sleep `nap`.
  std::string marker = "marker." + std::to_string(::getpid());
  std::string nap = "301." + std::to_string(::getpid());
  std::string id = submit_job({"-N1", "sh", "-c", "echo up; sleep " + nap + " >/dev/null 2>&1; true", marker});
  wait_event(id, "start");  // the job's namespace exists from then on
  auto up = loom(
      {"kvs", "--namespace", "job-" + std::to_string(num(id)), "eventlog", "wait-event", "-t", "20", "output", "data"});
  ASSERT_EQ(up.code, 0) << show(up);
  // (At least one: `sh` forks before it execs the sleep.)
  EXPECT_GE(processes_running(marker), 1) << "the task runs";
  ASSERT_EQ(inst.stop(), 0);
  // The stop killed the task, and what it started.
  expect_all_exit(processes_with(marker));
  expect_all_exit(processes_with(nap));
}

TEST_F(Exec, OutputFilesWithIdAndCcTemplates) {
  char tmpl[] = "/tmp/loom-output-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  auto r = loom({"submit", "--cc=1-2", "--output=" + dir + "/out.{{cc}}.{{id}}", "-N2", "sh", "-c",
                 "echo cc $LOOM_JOB_CC task $LOOM_TASK_RANK; echo err >&2"});
  ASSERT_EQ(r.code, 0) << show(r);
  auto ids = r.out_lines();
  ASSERT_EQ(ids.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    wait_event(ids[i], "clean");
    std::string cc = std::to_string(i + 1);
    std::ifstream in(dir + "/out." + cc + "." + ids[i]);
    ASSERT_TRUE(in) << "no file out." << cc << "." << ids[i];
    std::multiset<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.insert(line);
    EXPECT_EQ(lines, (std::multiset<std::string>{"cc " + cc + " task 0", "cc " + cc + " task 1", "err", "err"}));
  }
  std::filesystem::remove_all(dir);
}

TEST_F(Exec, ARealTimeLimitSendsSigalrm) {
  auto r = loom({"run", "-t", "0.3s", "sleep", "100"});
  EXPECT_EQ(r.code, 128 + SIGALRM) << show(r);
  EXPECT_NE(r.err.find("timeout exception: resource allocation expired"), std::string::npos) << r.err;
}

TEST_F(Exec, ACommandThatCannotRunExits127) {
  auto r = loom({"run", "-N2", "/nonexistent/command"});
  EXPECT_EQ(r.code, 127) << show(r);
}

TEST_F(Exec, CancelKillsRealTasks) {
  std::string id = submit_job({"-N2", "sleep", "300"});
  wait_event(id, "start");
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  wait_event(id, "clean");
  auto log = eventlog(id);
  EXPECT_EQ(named(log, "exception")[0]["context"]["type"], "cancel");
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], 15) << "SIGTERM";
  EXPECT_EQ(allocated_ranks(), "");
}

// A test client registered as the execution service "testexec".
class TestService {
 public:
  TestService(Loop& loop, const Instance& inst) : loop_(loop) {
    auto c = loop.connect(inst.socket(0));
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().text);
    if (!c.ok()) return;
    client_ = std::move(*c);
    Reply r = call(loop_, *client_, "service.add", dump_json(Json{{"service", "testexec"}}));
    EXPECT_EQ(r.errnum, 0) << r.errstr;
    client_->handle().add_method("testexec.start", Access::kUser, [this](const Message& m) {
      auto p = parse_json(m.payload).value();
      starts[p["id"].get<uint64_t>()] = m;
      reattach[p["id"].get<uint64_t>()] = p.value("reattach", false);
    });
  }
  Reply hello() { return call(loop_, *client_, "job-manager.exec-hello", R"({"service":"testexec"})"); }
  bool wait_start(uint64_t id) {
    return loop_.run_until([&] { return starts.count(id) > 0; });
  }
  void say(uint64_t id, const std::string& type, Json data = Json::object()) {
    client_->handle().respond(starts.at(id), Json{{"id", id}, {"type", type}, {"data", std::move(data)}});
    loop_.poll();
  }
  void fail(uint64_t id, int errnum) {
    client_->handle().respond_error(starts.at(id), errnum, "service gone");
    loop_.poll();
  }
  void disconnect() { client_.reset(); }

  std::map<uint64_t, Message> starts;
  std::map<uint64_t, bool> reattach;

 private:
  Loop& loop_;
  std::unique_ptr<Client> client_;
};

TEST_F(Exec, HelloIsRefusedWhileBusyAndTakesOverWhenIdle) {
  std::string busy = submit_test({"-N1", "true"}, {{"run_duration", "1h"}});
  wait_event(busy, "start");
  Loop loop;
  TestService svc(loop, inst);
  Reply r = svc.hello();
  EXPECT_EQ(r.errnum, EBUSY);
  EXPECT_NE(r.errstr.find(busy), std::string::npos) << "names the busy job: " << r.errstr;
  ASSERT_EQ(loom({"cancel", busy}).code, 0);
  wait_event(busy, "clean");
  r = svc.hello();
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  // Jobs now go to the test service, which answers by hand.
  std::string id = submit_test({"-N1", "true"}, {});
  ASSERT_TRUE(svc.wait_start(num(id)));
  EXPECT_FALSE(svc.reattach[num(id)]);
  svc.say(num(id), "start");
  wait_event(id, "start");
  svc.say(num(id), "finish", Json{{"status", 0}});
  svc.say(num(id), "release", Json{{"ranks", "all"}, {"final", true}});
  wait_event(id, "clean");
  EXPECT_EQ(job(id)["result"], "COMPLETED");
  EXPECT_EQ(allocated_ranks(), "");
}

TEST_F(Exec, PartialReleaseLetsTheNextJobStartBeforeTheFinalRelease) {
  Loop loop;
  TestService svc(loop, inst);
  ASSERT_EQ(svc.hello().errnum, 0);
  std::string a = submit_test({"-N4", "true"}, {});
  ASSERT_TRUE(svc.wait_start(num(a)));
  svc.say(num(a), "start");
  // Ranks 0-2 are done (shell and epilog); rank 3's epilog is slow.
  svc.say(num(a), "release", Json{{"ranks", "0-2"}, {"final", false}});
  wait_event(a, "release");
  std::string b = submit_test({"-N3", "true"}, {});
  ASSERT_TRUE(svc.wait_start(num(b))) << "b never started while a held rank 3";
  wait_event(b, "alloc");
  EXPECT_EQ(job(b)["ranks"], "0-2");
  EXPECT_EQ(state(a), "RUN");
  svc.say(num(a), "finish", Json{{"status", 0}});
  svc.say(num(a), "release", Json{{"ranks", "3"}, {"final", true}});
  wait_event(a, "clean");
  auto rel = named(eventlog(a), "release");
  ASSERT_EQ(rel.size(), 2u);
  EXPECT_EQ(rel[0]["context"], (Json{{"ranks", "0-2"}, {"final", false}}));
  EXPECT_EQ(rel[1]["context"], (Json{{"ranks", "3"}, {"final", true}}));
  EXPECT_EQ(allocated_ranks(), "0-2") << "only b holds ranks";
  svc.say(num(b), "exception", Json{{"severity", 0}, {"type", "exec"}});  // no note: ""
  svc.say(num(b), "release", Json{{"ranks", "all"}, {"final", true}});
  wait_event(b, "clean");
  EXPECT_EQ(named(eventlog(b), "exception")[0]["context"]["note"], "");
  EXPECT_EQ(allocated_ranks(), "");
}

TEST_F(Exec, AResponseThatBreaksTheOrderFailsTheJobAndFreesIt) {
  Loop loop;
  TestService svc(loop, inst);
  ASSERT_EQ(svc.hello().errnum, 0);
  std::string id = submit_test({"-N2", "true"}, {});
  ASSERT_TRUE(svc.wait_start(num(id)));
  svc.say(num(id), "start");
  wait_event(id, "start");
  // A final release with neither finish nor a fatal exception.
  svc.say(num(id), "release", Json{{"ranks", "all"}, {"final", true}});
  wait_event(id, "clean");
  auto ex = named(eventlog(id), "exception");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["type"], "exec");
  EXPECT_NE(ex[0]["context"]["note"].get<std::string>().find("final release"), std::string::npos) << ex[0];
  EXPECT_EQ(allocated_ranks(), "");
}

TEST_F(Exec, DisconnectTearsDownAndJobExecTakesTheJobsBack) {
  Loop loop;
  auto svc = std::make_unique<TestService>(loop, inst);
  ASSERT_EQ(svc->hello().errnum, 0);
  std::string id = submit_test({"-N1", "true"}, {{"run_duration", "0"}});
  ASSERT_TRUE(svc->wait_start(num(id)));
  EXPECT_EQ(state(id), "RUN");
  // Gone without answering: the job manager tears the interface down and
  // job-exec registers again and runs the job.
  svc->disconnect();
  wait_event(id, "clean");
  EXPECT_EQ(events(id), (Names{"submit", "validate", "depend", "priority", "alloc", "start", "finish", "release",
                               "free", "clean"}));
}

TEST_F(Exec, AnErrorResponseToStartTearsDownTheService) {
  Loop loop;
  TestService svc(loop, inst);
  ASSERT_EQ(svc.hello().errnum, 0);
  std::string id = submit_test({"-N1", "true"}, {{"run_duration", "0"}});
  ASSERT_TRUE(svc.wait_start(num(id)));
  svc.fail(num(id), ENOSYS);
  wait_event(id, "clean");
  EXPECT_EQ(job(id)["result"], "COMPLETED") << "job-exec ran it after the teardown";
}

TEST_F(Exec, KillReachesTheExecutionService) {
  std::string id = submit_test({"-N1", "true"}, {{"run_duration", "1h"}});
  wait_event(id, "start");
  auto bad = loom({"job", "kill", "-s", "NOSUCH", id});
  EXPECT_EQ(bad.code, 1);
  EXPECT_EQ(bad.err_lines().size(), 1u) << bad.err;
  auto k = loom({"job", "kill", "-s", "KILL", id});
  ASSERT_EQ(k.code, 0) << show(k);
  wait_event(id, "clean");
  EXPECT_EQ(named(eventlog(id), "finish")[0]["context"]["status"], 9);
  auto late = loom({"job", "kill", id});
  EXPECT_NE(late.code, 0) << "an inactive job cannot be killed";
}

TEST_F(Exec, KillSendsOnlyTheSignalAndACancelStillTerminates) {
  // The task ignores USR1: `loom job kill -s USR1` must not end the job, nor
  // arm the SIGKILL that belongs to cancel; the cancel then ends it with SIGTERM.
  std::string id = submit_job({"-N1", "sh", "-c", "trap '' USR1; echo ready; exec sleep 300"});
  // `start` means the shell runs; the task says when it ignores USR1.
  wait_event(id, "start");
  auto ready = loom(
      {"kvs", "--namespace", "job-" + std::to_string(num(id)), "eventlog", "wait-event", "-t", "20", "output", "data"});
  ASSERT_EQ(ready.code, 0) << show(ready);
  ASSERT_EQ(loom({"job", "kill", "-s", "USR1", id}).code, 0);
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  wait_event(id, "clean");
  EXPECT_EQ(named(eventlog(id), "finish")[0]["context"]["status"], SIGTERM);
}

TEST_F(Exec, ExecAndOutputEventlogsOfAJob) {
  // Rank 1's task fails: the exec eventlog says which rank's shell exited how.
  std::string id = submit_job({"-N2", "sh", "-c", "echo out $LOOM_RANK; exit $LOOM_RANK"});
  // -f follows until the job is clean.
  auto exec = loom({"job", "eventlog", "-f", "--json", "--path=exec", id});
  ASSERT_EQ(exec.code, 0) << show(exec);
  std::map<std::string, std::vector<Json>> by_name;
  for (auto& line : exec.out_lines()) {
    auto e = parse_json(line);
    ASSERT_TRUE(e.ok()) << line;
    by_name[(*e)["name"].get<std::string>()].push_back((*e)["context"]);
  }
  ASSERT_EQ(by_name["shell-start"].size(), 2u) << exec.out;
  ASSERT_EQ(by_name["shell-exit"].size(), 2u) << exec.out;
  for (const auto& c : by_name["shell-exit"]) EXPECT_EQ(c["status"], c["rank"].get<int>() << 8) << c;
  // And each task's exit (one task per rank here: task r on rank r).
  ASSERT_EQ(by_name["task-exit"].size(), 2u) << exec.out;
  for (const auto& c : by_name["task-exit"]) {
    EXPECT_EQ(c["task"], c["rank"]) << c;
    EXPECT_EQ(c["status"], c["rank"].get<int>() << 8) << c;
  }
  ASSERT_EQ(by_name["complete"].size(), 1u) << exec.out;
  EXPECT_EQ(by_name["complete"][0]["status"], 256);
  // Stored, after the job: the same, and the output eventlog beside it.
  auto again = loom({"job", "eventlog", "--json", "--path=exec", id});
  EXPECT_EQ(again.out, exec.out);
  auto out = loom({"job", "eventlog", "-p", "output", id});
  ASSERT_EQ(out.code, 0) << show(out);
  EXPECT_NE(out.out.find("data=\"out 0\\n\" rank=0 stream=stdout"), std::string::npos) << out.out;
  EXPECT_NE(out.out.find("data=\"out 1\\n\" rank=1 stream=stdout"), std::string::npos) << out.out;
  // A job that has not started has neither.
  std::string held = submit_job({"--urgency=0", "true"});
  auto none = loom({"job", "eventlog", "--path=exec", held});
  EXPECT_EQ(none.code, 1);
  EXPECT_NE(none.err.find("has no exec eventlog"), std::string::npos) << none.err;
}

TEST_F(Exec, AUserReadsTheOutputOfTheirOwnJobsOnly) {
  // Users never read the primary KVS: a finished job's output and exec
  // eventlog reach its owner through job-info.
  Env user = {{"LOOM_HANDLE_USERID", "4242"}, {"LOOM_HANDLE_ROLEMASK", "2"}};
  auto run = loom({"run", "-N2", "sh", "-c", "echo hello from $LOOM_RANK"}, user);
  ASSERT_EQ(run.code, 0) << show(run);
  auto ids = loom({"jobs", "-a", "-n", "-o", "{id}"}, user).out_lines();
  ASSERT_EQ(ids.size(), 1u);
  std::string id = ids[0];
  auto attach = loom({"job", "attach", "-l", id}, user);
  EXPECT_EQ(attach.code, 0) << show(attach);
  auto lines = attach.out_lines();
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"0: hello from 0", "1: hello from 1"})) << attach.out;
  auto out = loom({"job", "eventlog", "-p", "output", id}, user);
  EXPECT_EQ(out.code, 0) << show(out);
  EXPECT_EQ(out.out_lines().size(), 2u) << out.out;
  auto exec = loom({"job", "eventlog", "-p", "exec", id}, user);
  EXPECT_EQ(exec.code, 0) << show(exec);
  EXPECT_NE(exec.out.find("complete status=0"), std::string::npos) << exec.out;
  // Another user reads none of it.
  Env other = {{"LOOM_HANDLE_USERID", "4243"}, {"LOOM_HANDLE_ROLEMASK", "2"}};
  for (auto args : std::vector<std::vector<std::string>>{
           {"job", "attach", id}, {"job", "eventlog", "-p", "output", id}, {"job", "eventlog", "-p", "exec", id}}) {
    auto r = loom(args, other);
    EXPECT_NE(r.code, 0) << show(r);
    EXPECT_NE(r.err.find("another user"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

TEST_F(Exec, RunExitsAsTheJobDid) {
  auto ok = loom({"run", "--setattr=exec.test.run_duration=0", "-N2", "true"});
  EXPECT_EQ(ok.code, 0) << show(ok);
  auto failed = loom({"run", "--setattr=exec.test.wait_status=768", "true"});
  EXPECT_EQ(failed.code, 3) << show(failed);
  EXPECT_NE(failed.err.find("exit code 3"), std::string::npos) << failed.err;
  auto killed = loom({"run", "--setattr=exec.test.mock_exception=run", "true"});
  EXPECT_EQ(killed.code, 128 + 9) << show(killed);
  EXPECT_NE(killed.err.find("exec exception: mock run exception"), std::string::npos) << killed.err;
  auto refused = loom({"run", "-N9", "true"});
  EXPECT_EQ(refused.code, 1) << show(refused);
  EXPECT_EQ(refused.err_lines().size(), 1u) << refused.err;
}

// Thousands of tasks on one rank: every task's exit reaches the exec
// eventlog (before, the shell's report was cut at about 2,500 tasks).
class ExecManyTasks : public Exec {
 protected:
  void SetUp() override {
    rlimit nofile{};
    ::getrlimit(RLIMIT_NOFILE, &nofile);
    if (nofile.rlim_max < 10000) GTEST_SKIP() << "needs 10000 file descriptors, the hard limit is " << nofile.rlim_max;
    ASSERT_TRUE(inst.start(1, {"--cores-per-rank=3000", "--gpus-per-rank=0"}));
  }
};

TEST(ExecLimits, TasksNeedingMoreDescriptorsThanAllowedFailWithAClearError) {
  // An instance whose hard limit is 1000 descriptors: 600 tasks need 1864.
  auto r = run_cmd({"/bin/sh", "-c",
                    "ulimit -n 1000 && ulimit -Hn 1000 && exec \"$0\" start --test-size=1 --cores-per-rank=600 "
                    "-- \"$0\" run -n600 true",
                    bin("loom")},
                   {{"LOOM_URI", ""}}, 120);
  EXPECT_EQ(r.code, 126) << show(r);
  EXPECT_NE(r.err.find("loom-shell: 600 tasks on rank 0 need 1864 file descriptors; the limit here is 1000"),
            std::string::npos)
      << r.err;
}

TEST_F(ExecManyTasks, EveryTaskExitIsInTheExecEventlog) {
  auto r = inst.loom({"run", "-n3000", "sh", "-c", "exit $((LOOM_TASK_RANK % 7))"}, {}, 120);
  EXPECT_EQ(r.code, 6) << show(r);
  std::string id = loom({"jobs", "-a", "-n", "-o", "{id}"}).out_lines().at(0);
  auto exec = loom({"job", "eventlog", "--json", "--path=exec", id});
  ASSERT_EQ(exec.code, 0) << show(exec);
  std::set<int> tasks;
  for (auto& line : exec.out_lines()) {
    auto e = parse_json(line);
    ASSERT_TRUE(e.ok()) << line;
    if ((*e)["name"] != "task-exit") continue;
    int task = (*e)["context"]["task"].get<int>();
    EXPECT_EQ((*e)["context"]["status"], (task % 7) << 8) << line;
    tasks.insert(task);
  }
  EXPECT_EQ(tasks.size(), 3000u);
  EXPECT_EQ(exec.out.find("task-exits-unreported"), std::string::npos);
}

// Epilogs (DESIGN §9): rank 3's waits on a FIFO the test controls, so the
// test decides when rank 3 is done; rank 1's fails when the job asks for it.
class ExecEpilog : public Exec {
 protected:
  std::string dir;
  void SetUp() override {
    char tmpl[] = "/tmp/loom-epilog-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    ASSERT_EQ(::mkfifo((dir + "/rank3").c_str(), 0600), 0);
    std::string epilog = "echo $LOOM_JOB_ID $LOOM_JOB_RANKS >> " + dir + "/ran.$LOOM_RANK; " + "if [ -e " + dir +
                         "/fail.$LOOM_JOB_ID ] && [ $LOOM_RANK = 1 ]; then exit 1; fi; " +
                         "if [ $LOOM_RANK = 3 ]; then cat " + dir + "/rank3 > /dev/null; fi";
    ASSERT_TRUE(inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0", "--setconf", "exec.epilog=" + epilog}));
  }
  void TearDown() override {
    Exec::TearDown();
    std::filesystem::remove_all(dir);
  }
  // Lets rank 3's epilog finish.
  void release_rank3() { std::ofstream(dir + "/rank3") << "go\n"; }
};

TEST_F(ExecEpilog, EachRankIsReleasedWhenItsEpilogIsDoneAndTheNextJobStartsMeanwhile) {
  std::string a = submit_job({"-N4", "true"});
  wait_event(a, "finish");  // every shell has exited; rank 3's epilog blocks
  std::string b = submit_job({"-N3", "true"});
  wait_event(b, "start");  // on ranks 0-2, released by a while its rank 3 is busy
  EXPECT_EQ(job(b)["ranks"], "0-2");
  EXPECT_NE(state(a), "INACTIVE");
  EXPECT_EQ(job(a)["ranks_held"], "3") << job(a);
  // The exec eventlog, read while the job runs: written to the job's
  // namespace as it goes (within a tenth of a second), it shows rank 3 in
  // its epilog and the others done.
  std::string ns = "--namespace=job-" + std::to_string(job(a)["id"].get<uint64_t>());
  for (const char* r : {"0", "1", "2"}) {
    auto seen = loom({"kvs", ns, "eventlog", "wait-event", "-t", "30", "-m", std::string("rank=") + r, "exec.eventlog",
                      "epilog-finish"});
    ASSERT_EQ(seen.code, 0) << show(seen);
  }
  auto seen = loom({"kvs", ns, "eventlog", "wait-event", "-t", "30", "-m", "rank=3", "exec.eventlog", "epilog-start"});
  ASSERT_EQ(seen.code, 0) << show(seen);
  auto running = loom({"job", "eventlog", "--json", "--path=exec", a});
  ASSERT_EQ(running.code, 0) << show(running);
  std::map<std::string, std::set<int>> ranks_of;  // event → ranks
  for (auto& line : running.out_lines()) {
    auto e = parse_json(line);
    ASSERT_TRUE(e.ok()) << line;
    ranks_of[(*e)["name"].get<std::string>()].insert((*e)["context"].value("rank", -1));
  }
  EXPECT_EQ(ranks_of["shell-start"], (std::set<int>{0, 1, 2, 3})) << running.out;
  EXPECT_EQ(ranks_of["shell-exit"], (std::set<int>{0, 1, 2, 3})) << running.out;
  EXPECT_EQ(ranks_of["epilog-start"], (std::set<int>{0, 1, 2, 3})) << running.out;
  EXPECT_EQ(ranks_of["epilog-finish"], (std::set<int>{0, 1, 2})) << running.out;
  release_rank3();
  wait_event(a, "clean");
  wait_event(b, "clean");
  auto rel = named(eventlog(a), "release");
  ASSERT_EQ(rel.size(), 4u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(rel[i]["context"]["final"], false);
  EXPECT_EQ(rel[3]["context"], (Json{{"ranks", "3"}, {"final", true}}));
  auto b_start = named(eventlog(b), "start")[0]["timestamp"].get<double>();
  EXPECT_LT(b_start, rel[3]["timestamp"].get<double>()) << "b started before a's final release";
  // Stored with the job: the same entries and rank 3's epilog end.
  auto done = loom({"job", "eventlog", "--json", "--path=exec", a});
  ASSERT_EQ(done.code, 0) << show(done);
  EXPECT_EQ(done.out.rfind(running.out, 0), 0u) << "the stored exec eventlog begins as it was while running";
  auto human = loom({"job", "eventlog", "--path=exec", a});
  EXPECT_NE(human.out.find("epilog-finish rank=3 status=0"), std::string::npos) << human.out;
  // The epilog saw the job's id and ranks.
  std::ifstream ran(dir + "/ran.3");
  std::string line;
  std::getline(ran, line);
  EXPECT_EQ(line, a + " 0-3");
}

// [exec] epilog as a TOML list: the command and its arguments, no shell.
TEST(ExecConfig, EpilogAsAListRunsWithoutAShell) {
  char tmpl[] = "/tmp/loom-epilog-list-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::ofstream(dir + "/loom.toml") << "[exec]\nepilog = [\"/bin/sh\", \"-c\", \"echo $LOOM_RANK >> " << dir
                                    << "/ran\", \"ignored\"]\nepilog-timeout = 30\n";
  {
    Instance inst;
    ASSERT_TRUE(inst.start(2, {"--config", dir + "/loom.toml"}));
    auto r = inst.loom({"run", "-N2", "true"});
    EXPECT_EQ(r.code, 0) << show(r);
    ASSERT_EQ(inst.stop(), 0);
  }
  std::ifstream in(dir + "/ran");
  std::multiset<std::string> ranks;
  for (std::string line; std::getline(in, line);) ranks.insert(line);
  EXPECT_EQ(ranks, (std::multiset<std::string>{"0", "1"}));
  std::ofstream(dir + "/bad.toml") << "[exec]\nepilog = [1, 2]\n";
  auto bad = run_cmd({bin("loom"), "start", "--config", dir + "/bad.toml", "--", "true"});
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("exec.epilog"), std::string::npos) << bad.err;
  std::filesystem::remove_all(dir);
}

TEST_F(ExecEpilog, AFailedEpilogDrainsItsRankAndTheJobStillCompletes) {
  std::string a = submit_job({"--urgency=0", "-N2", "true"});
  std::ofstream(dir + "/fail." + a) << "";
  ASSERT_EQ(loom({"job", "urgency", a, "default"}).code, 0);
  wait_event(a, "clean");
  auto ex = named(eventlog(a), "exception");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["type"], "epilog");
  EXPECT_EQ(ex[0]["context"]["severity"], 1);
  EXPECT_EQ(job(a)["result"], "COMPLETED");
  Json res = resources();
  EXPECT_EQ(res["drained"]["ranks"], "1") << res;
  EXPECT_NE(res["drain"][0]["reason"].get<std::string>().find("epilog exited with 1"), std::string::npos) << res;
}

// A rank whose broker dies while the job's shell runs there.
class ExecLost : public Exec {
 protected:
  void SetUp() override {
    // (Shells do not wait for a lost broker to come back: reattach-timeout 0.)
    ASSERT_TRUE(
        inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0", "--heartbeat-interval=0.1", "--heartbeat-timeout=1",
                       "--setconf", "exec.kill-timeout=0.5", "--setconf", "exec.reattach-timeout=0"}));
    inst.expect_clean_exit(false);  // rank 3 is killed on purpose
  }
};

TEST_F(ExecLost, ALostRankFailsItsJobsAndTheOtherRanksAreReleased) {
  std::string marker = "302." + std::to_string(::getpid());
  std::string id = submit_job({"-N4", "sleep", marker});
  wait_event(id, "start");
  std::string why;
  auto pid = inst.broker_pid(3, &why);
  ASSERT_TRUE(pid) << why;
  ASSERT_EQ(::kill(*pid, SIGKILL), 0);
  wait_event(id, "clean");
  auto ex = named(eventlog(id), "exception");
  ASSERT_GE(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["type"], "node-failure") << ex[0];
  EXPECT_NE(ex[0]["context"]["note"].get<std::string>().find("rank 3"), std::string::npos) << ex[0];
  Json res = resources();
  EXPECT_EQ(res["allocated"].value("ranks", "?"), "") << res;
  // Ranks 0-2 were killed by job-exec, rank 3's by its shell when its
  // broker went away.
  expect_all_exit(processes_with(marker));
}

// Processes SIGKILL cannot end: rank 3's broker is stopped (SIGSTOP), so
// nothing there answers the kills and its shell never reports an exit.
class ExecUnkillable : public Exec {
 protected:
  void SetUp() override {
    ASSERT_TRUE(inst.start(4, {"--cores-per-rank=2", "--gpus-per-rank=0", "--setconf", "exec.kill-timeout=0.3"}));
  }
};

TEST_F(ExecUnkillable, RanksThatCannotBeKilledAreDrainedAndTheJobCompletes) {
  std::string id = submit_job({"-N4", "sleep", "303." + std::to_string(::getpid())});
  wait_event(id, "start");
  std::string why;
  auto pid = inst.broker_pid(3, &why);
  ASSERT_TRUE(pid) << why;
  ASSERT_EQ(::kill(*pid, SIGSTOP), 0);
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  wait_event(id, "clean");
  ::kill(*pid, SIGCONT);
  auto log = eventlog(id);
  auto ex = named(log, "exception");
  ASSERT_EQ(ex.size(), 2u) << "cancel, then unkillable";
  EXPECT_EQ(ex[1]["context"]["note"], "ranks 3: unkillable processes");
  // Ranks 0-2 ended on SIGTERM (128+15 ranks above 128+9 for rank 3).
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], SIGTERM);
  Json res = resources();
  EXPECT_EQ(res["drained"]["ranks"], "3") << res;
  EXPECT_NE(res["drain"][0]["reason"].get<std::string>().find("unkillable processes"), std::string::npos) << res;
  EXPECT_EQ(res["allocated"].value("ranks", "?"), "") << res;
}

// A crash of the whole instance (every broker SIGKILLed) while a job runs,
// then a restart on the same state directory (DESIGN §10). The job shells
// live in sessions of their own, so they outlive their brokers.
class ExecReattach : public Exec {
 protected:
  std::string dir;
  void SetUp() override {
    dir = (std::filesystem::temp_directory_path() / ("loom-reattach-" + std::to_string(::getpid()))).string();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    ASSERT_TRUE(inst.start(2, args()));
  }
  void TearDown() override {
    Exec::TearDown();
    std::filesystem::remove_all(dir);
  }
  std::vector<std::string> args() {
    return {"--cores-per-rank=2", "--gpus-per-rank=0",        "--state-dir=" + dir + "/state",
            "--setconf",          "exec.reattach-timeout=30", "--setconf",
            "exec.kill-timeout=2"};
  }
  void crash() {
    std::vector<pid_t> brokers;
    for (uint32_t r = 0; r < inst.size(); ++r) {
      std::string why;
      auto pid = inst.broker_pid(r, &why);
      ASSERT_TRUE(pid) << why;
      brokers.push_back(*pid);
    }
    inst.expect_clean_exit(false);
    // (A broker may already be stopping because its parent is gone.)
    for (pid_t p : brokers) ASSERT_TRUE(::kill(p, SIGKILL) == 0 || errno == ESRCH) << std::strerror(errno);
    expect_all_exit(brokers);
    inst.stop(20);
    inst.expect_clean_exit(true);
  }
  // Lets the task of rank R go on (it waits reading a FIFO).
  void go(int rank) {
    auto r = run_cmd({"/bin/sh", "-c", "echo go > " + dir + "/go." + std::to_string(rank)}, {}, 20);
    ASSERT_EQ(r.code, 0) << "the task of rank " << rank << " is not waiting: " << show(r);
  }
  // The job shell of job `id` on rank `rank` of this instance (its
  // LOOM_URI names the rank's socket).
  pid_t shell_of(const std::string& id, uint32_t rank) {
    for (pid_t p : processes_with(std::to_string(num(id)))) {
      std::ifstream in("/proc/" + std::to_string(p) + "/environ");
      std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (env.find(inst.socket(rank) + '\0') != std::string::npos) return p;
    }
    return -1;
  }
};

TEST_F(ExecReattach, AJobRunningThroughACrashIsFoundAgainAndCompletes) {
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(::mkfifo((dir + "/up." + std::to_string(r)).c_str(), 0600), 0);
    ASSERT_EQ(::mkfifo((dir + "/go." + std::to_string(r)).c_str(), 0600), 0);
  }
  std::string id = submit_job({"-N2", "sh", "-c",
                               "echo before $LOOM_RANK; echo up > " + dir + "/up.$LOOM_RANK; read x < " + dir +
                                   "/go.$LOOM_RANK; echo after $LOOM_RANK"});
  // Both tasks run (then the crash: a shell that never reached its broker
  // could not be found again).
  auto up = run_cmd({"/bin/cat", dir + "/up.0", dir + "/up.1"}, {}, 20);
  ASSERT_EQ(up.code, 0) << show(up);
  crash();
  // Rank 0's task ends while no broker runs: its shell keeps the output and
  // the status for the broker that comes back.
  go(0);
  ASSERT_TRUE(inst.start(2, args()));
  // Rank 1's task still runs, watched by its restarted broker now.
  go(1);
  wait_event(id, "clean");
  auto log = eventlog(id);
  EXPECT_EQ(named(log, "start").size(), 1u);
  EXPECT_TRUE(named(log, "exception").empty()) << named(log, "exception")[0];
  ASSERT_EQ(named(log, "finish").size(), 1u);
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], 0);
  EXPECT_EQ(job(id)["result"], "COMPLETED");
  // Nothing written before, during or after the outage is lost.
  auto out = loom({"job", "attach", id});
  ASSERT_EQ(out.code, 0) << show(out);
  auto lines = out.out_lines();
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"after 0", "after 1", "before 0", "before 1"})) << out.out;
  // The exec eventlog of the run after the restart: both shells found
  // again, each task's exit (told by the adopted shells), the end.
  auto exec = loom({"job", "eventlog", "--path=exec", id});
  ASSERT_EQ(exec.code, 0) << show(exec);
  for (const char* what : {"shell-reattach pid=", "task-exit rank=0 status=0 task=0",
                           "task-exit rank=1 status=0 task=1", "complete status=0"}) {
    EXPECT_NE(exec.out.find(what), std::string::npos) << what << " in\n" << exec.out;
  }
  EXPECT_EQ(resources()["allocated"].value("ranks", "?"), "");
}

TEST_F(ExecReattach, AJobWhoseShellDidNotSurviveIsLostAndTheRestIsKilled) {
  std::string marker = "304." + std::to_string(::getpid());
  ASSERT_EQ(::mkfifo((dir + "/up").c_str(), 0600), 0);
  std::string id =
      submit_job({"-N2", "sh", "-c", "[ $LOOM_RANK = 1 ] || echo up > " + dir + "/up; exec sleep " + marker});
  auto up = run_cmd({"/bin/cat", dir + "/up"}, {}, 20);
  ASSERT_EQ(up.code, 0) << show(up);
  crash();
  // Rank 1's shell and its task die with their node.
  pid_t shell = shell_of(id, 1);
  ASSERT_GT(shell, 0) << "no shell of the job on rank 1";
  ASSERT_EQ(::kill(-shell, SIGKILL), 0);
  expect_all_exit({shell});
  ASSERT_TRUE(inst.start(2, args()));
  wait_event(id, "clean");
  auto log = eventlog(id);
  auto ex = named(log, "exception");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0]["context"]["severity"], 0);
  std::string note = ex[0]["context"]["note"];
  EXPECT_NE(note.find("lost"), std::string::npos) << note;
  EXPECT_NE(note.find("rank 1"), std::string::npos) << note;
  EXPECT_EQ(named(log, "release").back()["context"]["final"], true);
  // Rank 0's task, found again, was killed: nothing runs unseen.
  expect_all_exit(processes_with(marker));
  EXPECT_EQ(resources()["allocated"].value("ranks", "?"), "");
}

TEST_F(ExecReattach, OutputWrittenWithoutPauseThroughACrashIsKeptInOrder) {
  // The task writes as fast as it can: commits are in flight when the
  // brokers die. Every line reaches the job's output, in order (a line may
  // be there twice: a commit the broker took but did not acknowledge).
  ASSERT_EQ(::mkfifo((dir + "/up").c_str(), 0600), 0);
  std::string id = submit_job({"-N1", "sh", "-c",
                               "echo 0; echo up > " + dir + "/up; i=0; while [ ! -e " + dir +
                                   "/stop ]; do i=$((i+1)); echo $i; done; echo end"});
  auto up = run_cmd({"/bin/cat", dir + "/up"}, {}, 20);
  ASSERT_EQ(up.code, 0) << show(up);
  crash();
  ASSERT_TRUE(inst.start(2, args()));
  std::ofstream(dir + "/stop") << "";
  wait_event(id, "clean");
  EXPECT_EQ(named(eventlog(id), "finish")[0]["context"]["status"], 0);
  auto out = loom({"job", "attach", id});
  ASSERT_EQ(out.code, 0) << show(out);
  auto lines = out.out_lines();
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines.back(), "end");
  lines.pop_back();
  long expect = 0;
  for (const auto& l : lines) {
    long n = std::stol(l);
    if (n == expect - 1) continue;  // stored twice
    ASSERT_EQ(n, expect) << "line " << expect << " is missing or out of order";
    ++expect;
  }
  EXPECT_GT(expect, 1);
}

TEST_F(ExecReattach, AJobCancelledBeforeTheCrashIsKilledWhenFound) {
  // The task ignores SIGTERM; the crash comes before the SIGKILL that
  // follows a cancel. Found again, the job is killed as it would have been.
  ASSERT_EQ(::mkfifo((dir + "/up").c_str(), 0600), 0);
  std::string marker = "305." + std::to_string(::getpid());
  std::string id = submit_job({"-N1", "sh", "-c", "trap '' TERM; echo up > " + dir + "/up; exec sleep " + marker});
  auto up = run_cmd({"/bin/cat", dir + "/up"}, {}, 20);
  ASSERT_EQ(up.code, 0) << show(up);
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  wait_event(id, "exception");
  crash();
  ASSERT_TRUE(inst.start(2, args()));
  wait_event(id, "clean");
  auto log = eventlog(id);
  ASSERT_EQ(named(log, "exception").size(), 1u);
  EXPECT_EQ(named(log, "exception")[0]["context"]["type"], "cancel");
  ASSERT_EQ(named(log, "finish").size(), 1u);
  EXPECT_EQ(named(log, "finish")[0]["context"]["status"], SIGKILL);
  // SIGTERM first, SIGKILL a kill timeout (2 s) later.
  double restarted = named(log, "restart")[0]["timestamp"];
  EXPECT_GE(named(log, "finish")[0]["timestamp"].get<double>() - restarted, 1.5);
  expect_all_exit(processes_with(marker));
}

}  // namespace
}  // namespace loom::test
