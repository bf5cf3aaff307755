// Job dependencies end to end (docs/protocols/jobs.md, "Dependencies"):
// `loom submit --dependency=...` on a real instance of 4 ranks of 2 cores.
// An antecedent job runs in test execution mode waiting for an override
// (hold(), kit/jobs.h), so a test decides when and how it ends: override finish
// with a status, or a cancel. Waiting is always on events; that a job is
// still held is read after settle() (a scheduler round trip), and the
// dependency-add event is posted before the submit is answered.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "base/fluid.h"
#include "kit/exec.h"
#include "kit/instance.h"
#include "kit/jobs.h"
#include "msg/json.h"

namespace loom::test {
namespace {

class Depend : public JobsFixture {
 protected:
  // A job that ends at once, successfully, when it runs.
  std::string quick(std::vector<std::string> args) {
    args.insert(args.begin(), "--setattr=exec.test.run_duration=0");
    args.push_back("true");
    return submit_job(args);
  }
  // Whether `id` is still in DEPEND once the scheduler had every chance.
  bool held(const std::string& id) {
    settle();
    return state(id) == "DEPEND";
  }
  Json context_of(const std::string& id, const std::string& event) {
    for (auto& e : eventlog(id)) {
      if (e["name"] == event) return e["context"];
    }
    return nullptr;
  }
  // The job ended by a dependency that can never be met: a `dependency`
  // exception whose note names `antecedent` and says `why`; it never ran.
  void expect_never_met(const std::string& id, const std::string& antecedent, const std::string& why) {
    wait_event(id, "clean");
    Json ex = context_of(id, "exception");
    ASSERT_TRUE(ex.is_object()) << id << " has no exception";
    EXPECT_EQ(ex["type"], "dependency");
    EXPECT_EQ(ex["severity"], 0);
    std::string note = ex["note"].get<std::string>();
    EXPECT_NE(note.find(antecedent), std::string::npos) << note;
    EXPECT_NE(note.find(why), std::string::npos) << note;
    EXPECT_EQ(context_of(id, "alloc"), nullptr) << id << " ran";
    EXPECT_EQ(job(id)["result"], "FAILED");
  }
  // `id` was held, then ran to success once its dependencies were met.
  void expect_released(const std::string& id) {
    wait_event(id, "clean");
    Names n = events(id);
    auto at = [&](const char* e) { return std::find(n.begin(), n.end(), e) - n.begin(); };
    EXPECT_LT(at("dependency-add"), at("dependency-remove")) << testing::PrintToString(n);
    EXPECT_LT(at("dependency-remove"), at("depend")) << testing::PrintToString(n);
    EXPECT_LT(at("depend"), static_cast<long>(n.size())) << testing::PrintToString(n);
    EXPECT_EQ(job(id)["result"], "COMPLETED");
  }
};

TEST_F(Depend, AfterokHoldsTheJobUntilItsAntecedentSucceeds) {
  start();
  std::string a = hold();
  std::string b = quick({"--dependency=afterok:" + a});
  ASSERT_TRUE(held(b));
  EXPECT_EQ(context_of(b, "dependency-add")["description"], "afterok:" + a);
  // `loom jobs` says why it waits, and lists what it waits on.
  auto ls = loom({"jobs", "-o", "{id} {st} {dependencies} | {info}"});
  ASSERT_EQ(ls.code, 0) << show(ls);
  EXPECT_NE(ls.out.find(b + " D afterok:" + a + " | dependency: afterok:" + a), std::string::npos) << ls.out;
  finish(a, 0);
  expect_released(b);
  EXPECT_EQ(context_of(b, "dependency-remove")["description"], "afterok:" + a);
}

TEST_F(Depend, AfterokOnAFailedOrCanceledJobRaisesADependencyException) {
  start();
  std::string failed = hold();
  std::string canceled = hold({"--urgency=0"});
  // Decimal ids work as well as F58 ones.
  std::string dec = std::to_string(parse_jobid(failed).value().value());
  std::string b = quick({"--dependency=afterok:" + dec});
  std::string c = quick({"--dependency=afterok:" + canceled});
  ASSERT_TRUE(held(b));
  ASSERT_TRUE(held(c));
  finish(failed, 256);
  expect_never_met(b, failed, "failed");
  ASSERT_EQ(loom({"cancel", canceled}).code, 0);
  expect_never_met(c, canceled, "was canceled");
  // `loom jobs` shows the reason with the failure.
  auto ls = loom({"jobs", "-a", "-o", "{id} {info}"});
  EXPECT_NE(ls.out.find(b + " dependency: afterok:" + failed + " can never be met: job " + failed + " failed"),
            std::string::npos)
      << ls.out;
}

TEST_F(Depend, AfternotokRunsAfterAFailureAndNeverAfterASuccess) {
  start();
  std::string bad = hold();
  std::string good = hold();
  std::string b = quick({"--dependency=afternotok:" + bad});
  std::string c = quick({"--dependency=afternotok:" + good});
  ASSERT_TRUE(held(b));
  ASSERT_TRUE(held(c));
  finish(bad, 256);
  expect_released(b);
  EXPECT_TRUE(held(c));
  finish(good, 0);
  expect_never_met(c, good, "completed successfully");
}

TEST_F(Depend, AfteranyRunsAfterAnyEnd) {
  start();
  std::string a = hold();
  std::string a2 = hold();
  std::string b = quick({"--dependency=afterany:" + a, "--dependency=afterany:" + a2});
  ASSERT_TRUE(held(b));
  ASSERT_EQ(loom({"cancel", a}).code, 0);
  wait_event(a, "clean");
  // One of two met: still held, now for the other only.
  wait_event(b, "dependency-remove");
  ASSERT_TRUE(held(b));
  EXPECT_EQ(job(b)["dependencies"], Json::array({"afterany:" + a2}));
  finish(a2, 256);
  expect_released(b);
}

TEST_F(Depend, AfterRunsOnceItsAntecedentStartsAndNeverIfItEndedWithout) {
  start();
  std::string a = hold({"--urgency=0"});
  std::string never = hold({"--urgency=0"});
  std::string b = quick({"--dependency=after:" + a});
  std::string c = quick({"--dependency=after:" + never});
  ASSERT_TRUE(held(b));
  ASSERT_EQ(loom({"job", "urgency", a, "16"}).code, 0);
  // Met when `a` is allocated, while `a` still runs.
  expect_released(b);
  EXPECT_EQ(state(a), "RUN");
  ASSERT_TRUE(held(c));
  ASSERT_EQ(loom({"cancel", never}).code, 0);
  expect_never_met(c, never, "ended without running");
  ASSERT_EQ(loom({"cancel", a}).code, 0);
}

TEST_F(Depend, SingletonRunsOneJobOfANameAndUserAtATime) {
  start();
  std::string first = hold({"--job-name=solo", "--dependency=singleton"});
  wait_event(first, "alloc");
  std::string second = quick({"--job-name=solo", "--dependency=singleton"});
  std::string other = quick({"--job-name=other", "--dependency=singleton"});
  // Another name is not held.
  wait_event(other, "clean");
  ASSERT_TRUE(held(second));
  EXPECT_EQ(job(second)["dependencies"], Json::array({"singleton"}));
  finish(first, 0);
  expect_released(second);
}

// singleton beside another dependency is decided when that one is met:
// a job of the same name that started meanwhile still holds it.
TEST_F(Depend, SingletonIsDecidedOnceTheOtherDependenciesAreMet) {
  start();
  std::string a = hold();
  std::string b = quick({"--job-name=solo", "--dependency=afterok:" + a + ",singleton"});
  ASSERT_TRUE(held(b));
  std::string c = hold({"--job-name=solo"});
  wait_event(c, "alloc");
  finish(a, 0);
  ASSERT_TRUE(held(b));
  EXPECT_EQ(job(b)["dependencies"], Json::array({"singleton"}));
  finish(c, 0);
  expect_released(b);
}

TEST_F(Depend, LoomRunAcceptsDependenciesToo) {
  start();
  std::string a = quick({});
  wait_event(a, "clean");
  auto r = loom({"run", "--dependency=afterok:" + a, "--setattr=exec.test.run_duration=0", "true"});
  EXPECT_EQ(r.code, 0) << show(r);
  auto ls = loom({"jobs", "-a", "--json"});
  auto j = parse_json(ls.out);
  ASSERT_TRUE(j.ok());
  ASSERT_EQ(j->size(), 2u);
  EXPECT_EQ((*j)[0]["result"], "COMPLETED");
  // A run whose dependency can never be met fails, saying why.
  std::string f = hold();
  ASSERT_EQ(loom({"cancel", f}).code, 0);
  wait_event(f, "clean");
  auto bad = loom({"run", "--dependency=afterok:" + f, "--setattr=exec.test.run_duration=0", "true"});
  EXPECT_NE(bad.code, 0) << show(bad);
  EXPECT_NE(bad.err.find("dependency"), std::string::npos) << show(bad);
}

TEST_F(Depend, BadDependenciesAndUnknownSystemAttributesAreRefusedAtSubmit) {
  start();
  std::string a = quick({});
  wait_event(a, "clean");
  JobId missing{parse_jobid(a).value().value() + 1};
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  std::vector<Case> refused = {
      {{"--dependency=afterwards:" + a}, "unknown dependency type \"afterwards\""},
      {{"--dependency=afterok:nosuch"}, "\"nosuch\" is not a job id"},
      {{"--dependency=afterok"}, "needs a job id"},
      {{"--dependency=singleton:" + a}, "singleton takes no job id"},
      {{"--dependency=afterok:" + encode_f58(missing)}, "job " + encode_f58(missing) + " does not exist"},
      {{"--setattr=dependencies=[{\"scheme\":\"afterok\",\"value\":\"" + a + "\",\"type\":\"in\"}]"},
       "unknown key \"type\""},
      {{"--setattr=dependencies=[]"}, "non-empty list"},
      {{"--setattr=queue=batch"}, "unknown attribute \"attributes.system.queue\""},
      {{"--setattr=system.bank=b1"}, "unknown attribute \"attributes.system.bank\""},
  };
  for (auto& c : refused) {
    std::vector<std::string> args = {"submit"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    args.push_back("true");
    auto r = loom(args);
    EXPECT_NE(r.code, 0) << show(r);
    EXPECT_TRUE(r.out.empty()) << show(r);
    EXPECT_EQ(r.err.find("loom submit: "), 0u) << show(r);
    EXPECT_NE(r.err.find(c.says), std::string::npos) << show(r);
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << show(r);
  }
  // Nothing was created; the attributes loom does read still go in.
  auto ls = parse_json(loom({"jobs", "-a", "--json"}).out);
  ASSERT_TRUE(ls.ok());
  EXPECT_EQ(ls->size(), 1u) << *ls;
  std::string fine =
      quick({"--job-name=n", "--cwd=/", "--env=X=1", "--output=/dev/null", "-t", "1m", "--setattr=user.queue=batch"});
  wait_event(fine, "clean");
  EXPECT_EQ(job(fine)["result"], "COMPLETED");
}

TEST_F(Depend, ARestartKeepsJobsWaitingAndReleasesThemWhenMet) {
  auto dir = std::filesystem::temp_directory_path() / ("loom-depend-restart-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  start({"--state-dir", dir.string()});
  // Ended by the stop (running jobs end with an exception then).
  std::string running = hold();
  wait_event(running, "alloc");
  // Still pending after the restart.
  std::string pending = hold({"--urgency=0"});
  std::string any = quick({"--dependency=afterany:" + running});
  std::string ok = quick({"--dependency=afterok:" + running});
  std::string later = quick({"--dependency=afterok:" + pending});
  ASSERT_TRUE(held(any));
  ASSERT_TRUE(held(ok));
  ASSERT_TRUE(held(later));
  ASSERT_EQ(inst.stop(), 0);

  Instance again;
  ASSERT_TRUE(again.start(4, {"--cores-per-rank=2", "--state-dir", dir.string()}));
  auto run = [&](std::vector<std::string> a) { return again.loom(a); };
  auto wait = [&](const std::string& id, const char* ev) {
    auto r = run({"job", "wait-event", "-t", "20", id, ev});
    ASSERT_EQ(r.code, 0) << ev << " of " << id << ": " << show(r);
  };
  auto listed = [&](const std::string& id) {
    auto j = parse_json(run({"jobs", "-a", "--json"}).out);
    for (auto& x : j.value()) {
      if (x["id"].get<uint64_t>() == parse_jobid(id).value().value()) return x;
    }
    return Json::object();
  };
  // Its antecedent ended while the instance went down: each dependency is
  // decided from what the antecedent became.
  wait(any, "clean");
  EXPECT_EQ(listed(any)["result"], "COMPLETED");
  wait(ok, "clean");
  EXPECT_EQ(listed(ok)["exception"]["type"], "dependency");
  // The one whose antecedent is still pending waits on, and is released
  // when the antecedent ends after the restart.
  wait(later, "restart");
  run({"resource", "list"});
  EXPECT_EQ(listed(later)["state"], "DEPEND");
  EXPECT_EQ(listed(later)["dependencies"], Json::array({"afterok:" + pending}));
  ASSERT_EQ(run({"job", "urgency", pending, "16"}).code, 0);
  wait(pending, "alloc");
  std::string n = std::to_string(parse_jobid(pending).value().value());
  ASSERT_EQ(run({"rpc", "job-exec.override", R"({"event":"start","id":)" + n + "}"}).code, 0);
  wait(pending, "start");
  ASSERT_EQ(run({"rpc", "job-exec.override", R"({"event":"finish","id":)" + n + R"(,"status":0})"}).code, 0);
  wait(later, "clean");
  EXPECT_EQ(listed(later)["result"], "COMPLETED");
  ASSERT_EQ(again.stop(), 0);
  std::filesystem::remove_all(dir);
}

TEST_F(Depend, JobsWaitingThroughACrashAreReleasedWhenTheirAntecedentEnds) {
  auto dir = std::filesystem::temp_directory_path() / ("loom-depend-crash-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  start({"--state-dir", dir.string()});
  std::string running = hold();
  wait_event(running, "alloc");
  std::string any = quick({"--dependency=afterany:" + running});
  std::string ok = quick({"--dependency=afterok:" + running});
  ASSERT_TRUE(held(any));
  ASSERT_TRUE(held(ok));
  // Nothing ends in an orderly way: the antecedent is found running again
  // (test execution reattaches), and the dependent jobs still waiting.
  crash_instance(inst);

  Instance again;
  ASSERT_TRUE(again.start(4, {"--cores-per-rank=2", "--state-dir", dir.string()}));
  auto wait = [&](const std::string& id, const char* ev) {
    auto r = again.loom({"job", "wait-event", "-t", "20", id, ev});
    ASSERT_EQ(r.code, 0) << ev << " of " << id << ": " << show(r);
  };
  auto listed = [&] {
    again.loom({"resource", "list"});  // settle
    std::map<std::string, Json> by_id;
    auto ls = parse_json(again.loom({"jobs", "-a", "--json"}).out);
    for (auto& j : ls.value()) by_id[encode_f58(JobId{j["id"].get<uint64_t>()})] = j;
    return by_id;
  };
  wait(any, "restart");
  wait(ok, "restart");
  auto now = listed();
  EXPECT_EQ(now[any]["state"], "DEPEND") << now[any];
  EXPECT_EQ(now[ok]["state"], "DEPEND") << now[ok];
  ASSERT_EQ(again.loom({"cancel", running}).code, 0);
  wait(any, "clean");
  wait(ok, "clean");
  now = listed();
  EXPECT_EQ(now[any]["result"], "COMPLETED") << now[any];
  EXPECT_EQ(now[ok]["exception"]["type"], "dependency") << now[ok];
  ASSERT_EQ(again.stop(), 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace loom::test
