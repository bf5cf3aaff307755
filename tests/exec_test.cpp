// The execution protocol end to end (docs/protocols/exec.md):
// jobs in test execution mode run by the built-in job-exec, and a test
// client that registers itself as the execution service to play every part
// of the protocol by hand: partial release, protocol violations, hello
// refused while busy, teardown on disconnect and on an error response.
// Waiting is on events only.
#include "kit/exec.h"

#include <gtest/gtest.h>

#include <csignal>
#include <map>
#include <string>
#include <vector>

#include "base/fluid.h"
#include "kit/client.h"
#include "kit/instance.h"
#include "kit/jobs.h"
#include "msg/json.h"

namespace loom::test {
namespace {

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
  EXPECT_EQ(bad.code, 2);  // a bad value: a usage error (docs/commands.md)
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

}  // namespace
}  // namespace loom::test
