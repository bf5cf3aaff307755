#include "job_manager/job.h"

#include <gtest/gtest.h>

namespace loom {

namespace {
EventEntry ev(const std::string& name, Json ctx = nullptr, double t = 1.0) { return {t, name, std::move(ctx)}; }
EventEntry submit() { return ev("submit", {{"urgency", 16}, {"userid", 1000}, {"flags", 0}, {"version", 1}}); }
EventEntry release(const char* ranks, bool final) { return ev("release", {{"ranks", ranks}, {"final", final}}); }
EventEntry exception(int sev, const char* type = "cancel") {
  return ev("exception", {{"type", type}, {"severity", sev}, {"note", ""}});
}

// Applies events in order; returns the state, or "ERROR:<text>" at the first refusal.
std::string run(const std::vector<EventEntry>& events) {
  JobRecord j;
  for (auto& e : events) {
    if (auto st = apply_event(j, e); !st) return "ERROR:" + st.error().text;
  }
  return job_state_name(j.state);
}

std::vector<EventEntry> to_sched() {
  return {submit(), ev("validate"), ev("depend"), ev("priority", {{"priority", 42}})};
}
std::vector<EventEntry> plus(std::vector<EventEntry> a, std::vector<EventEntry> b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
}  // namespace

TEST(JobState, FollowsTheNormalLifeCycle) {
  EXPECT_EQ(run({submit()}), "NEW");
  EXPECT_EQ(run({submit(), ev("validate")}), "DEPEND");
  EXPECT_EQ(run({submit(), ev("validate"), ev("depend")}), "PRIORITY");
  EXPECT_EQ(run(to_sched()), "SCHED");
  EXPECT_EQ(run(plus(to_sched(), {ev("alloc")})), "RUN");
  EXPECT_EQ(run(plus(to_sched(), {ev("alloc"), ev("start")})), "RUN");
  auto done = plus(to_sched(), {ev("alloc"), ev("start"), release("0-1", false), ev("finish", {{"status", 0}}),
                                release("2-3", true), ev("free"), ev("clean")});
  EXPECT_EQ(run(done), "INACTIVE");
}

TEST(JobState, ResultIsKnownBeforeEveryRankIsReleased) {
  JobRecord j;
  for (auto& e : plus(to_sched(), {ev("alloc"), ev("start"), ev("finish", {{"status", 256}})})) {
    ASSERT_TRUE(apply_event(j, e).ok());
  }
  EXPECT_EQ(j.state, JobState::kCleanup);  // finish → CLEANUP while ranks are still held
  EXPECT_EQ(j.finish_status, 256);
  EXPECT_FALSE(j.released_all);
  ASSERT_TRUE(apply_event(j, release("3", false)).ok());
  EXPECT_EQ(j.released.encode(), "3");
  EXPECT_FALSE(apply_event(j, ev("free")).ok());  // not before the final release
  ASSERT_TRUE(apply_event(j, release("0-2", true)).ok());
  EXPECT_TRUE(apply_event(j, ev("free")).ok());
}

TEST(JobState, FatalExceptionGoesToCleanupFromAnyActiveState) {
  EXPECT_EQ(run({submit(), exception(0)}), "CLEANUP");
  EXPECT_EQ(run({submit(), ev("validate"), exception(0)}), "CLEANUP");
  EXPECT_EQ(run(plus(to_sched(), {exception(0)})), "CLEANUP");
  EXPECT_EQ(run(plus(to_sched(), {exception(0), ev("clean")})), "INACTIVE");  // cancelled while pending
  EXPECT_EQ(run(plus(to_sched(), {exception(1)})), "SCHED");                  // not fatal
  // Cancelled while allocated, never started: free without a release.
  EXPECT_EQ(run(plus(to_sched(), {ev("alloc"), exception(0), ev("free"), ev("clean")})), "INACTIVE");
  // Cancelled just as the shells started: the start still counts.
  EXPECT_EQ(run(plus(to_sched(), {ev("alloc"), exception(0), ev("start"), ev("finish", {{"status", 15}}),
                                  release("all", true), ev("free"), ev("clean")})),
            "INACTIVE");
  // But not after the execution service let go, nor after the free.
  EXPECT_NE(run(plus(to_sched(), {ev("alloc"), exception(0), release("all", true), ev("start")})).find("not allowed"),
            std::string::npos);
  EXPECT_NE(run(plus(to_sched(), {ev("alloc"), exception(0), ev("free"), ev("start")})).find("not allowed"),
            std::string::npos);
  // Cancelled while running: finish and the final release still come.
  EXPECT_EQ(run(plus(to_sched(), {ev("alloc"), ev("start"), exception(0), ev("finish", {{"status", 15}}),
                                  release("all", true), ev("free"), ev("clean")})),
            "INACTIVE");
}

TEST(JobState, RefusesEventsThatBreakTheOrder) {
  EXPECT_NE(run({ev("validate")}).find("first event must be submit"), std::string::npos);
  EXPECT_NE(run({submit(), submit()}).find("already submitted"), std::string::npos);
  EXPECT_NE(run({submit(), ev("alloc")}).find("alloc is not allowed in state NEW"), std::string::npos);
  EXPECT_NE(run(plus(to_sched(), {ev("alloc"), ev("alloc")})).find("not allowed in state RUN"), std::string::npos);
  EXPECT_NE(run(plus(to_sched(), {ev("start")})).find("not allowed"), std::string::npos);
  EXPECT_NE(run(plus(to_sched(), {ev("alloc"), release("all", true)})).find("finish or a fatal exception"),
            std::string::npos);
  EXPECT_NE(run(plus(to_sched(), {ev("alloc"), ev("start"), ev("finish", {{"status", 0}}), release("all", true),
                                  release("0", false)}))
                .find("final release was already"),
            std::string::npos);
  EXPECT_NE(run(plus(to_sched(), {ev("alloc"), exception(0), ev("clean")})).find("not freed"), std::string::npos);
  EXPECT_NE(run(plus(to_sched(), {exception(0), ev("clean"), ev("urgency", {{"urgency", 1}, {"userid", 0}})}))
                .find("inactive"),
            std::string::npos);
  EXPECT_NE(run({submit(), ev("validate"), ev("priority", {{"priority", 1}})}).find("DEPEND"), std::string::npos);
}

// A refused event changes nothing, whichever check refuses it: each is
// tried on a job at each point of its life.
TEST(JobState, ARefusedEventLeavesTheJobAsItWas) {
  const std::vector<EventEntry> life =
      plus(to_sched(), {ev("alloc"), ev("start"), release("0", false), ev("finish", {{"status", 0}}),
                        release("1-2", true), ev("free"), ev("clean")});
  const std::vector<EventEntry> bad{
      submit(),
      ev("submit", {{"urgency", 16}, {"userid", -1}}),
      ev("priority", {{"priority", -1}}),
      ev("priority", {{"priority", "high"}}),
      ev("urgency", {{"urgency", 99}}),
      ev("finish", {{"status", -1}}),
      ev("release", {{"ranks", "3-1"}, {"final", true}}),
      ev("release", {{"ranks", "0"}}),
      ev("exception", {{"type", "cancel"}, {"severity", 9}}),
      ev("exception", {{"type", ""}, {"severity", 0}}),
      ev("exception", {{"type", "cancel"}, {"severity", 0}, {"note", 5}}),
      ev("dependency-add", {{"description", ""}}),
      ev("dependency-remove", {{"description", "never-added"}}),
      ev("alloc"),
      ev("start"),
      ev("free"),
      ev("clean"),
      ev("depend"),
      ev("validate"),
  };
  JobRecord j;
  int refused = 0;
  for (size_t step = 0; step <= life.size(); ++step) {
    for (const auto& e : bad) {
      JobRecord tried = j;
      if (apply_event(tried, e).ok()) continue;  // allowed here: not this test's case
      ++refused;
      EXPECT_EQ(tried, j) << e.name << " refused after " << step << " events changed the job";
    }
    if (step < life.size()) {
      ASSERT_TRUE(apply_event(j, life[step]).ok()) << life[step].name;
    }
  }
  EXPECT_GT(refused, 150);
}

TEST(JobState, ValidatesEventContexts) {
  EXPECT_NE(run({ev("submit", {{"urgency", 32}, {"userid", 1}})}).find("outside 0-31"), std::string::npos);
  EXPECT_NE(run({ev("submit", {{"userid", 1}})}).find("urgency"), std::string::npos);
  EXPECT_NE(run({submit(), ev("exception", {{"type", "x"}, {"severity", 8}})}).find("outside 0-7"), std::string::npos);
  EXPECT_NE(run({submit(), ev("exception", {{"severity", 0}})}).find("type"), std::string::npos);
  EXPECT_NE(run(plus(to_sched(), {ev("alloc"), ev("start"), ev("finish", {{"status", 0}}),
                                  ev("release", {{"ranks", "3-1"}, {"final", false}})}))
                .find("idset"),
            std::string::npos);
}

TEST(JobState, RestartSendsAScheduledJobBackForAPriority) {
  EXPECT_EQ(run(plus(to_sched(), {ev("restart")})), "PRIORITY");
  EXPECT_EQ(run(plus(to_sched(), {ev("restart"), ev("priority", {{"priority", 7}})})), "SCHED");
  EXPECT_EQ(run(plus(to_sched(), {ev("alloc"), ev("restart")})), "RUN");
}

TEST(JobState, ReplayRebuildsTheJobAndNamesABadEvent) {
  auto events = plus(to_sched(), {ev("urgency", {{"urgency", 31}, {"userid", 0}}), ev("alloc", nullptr, 5.0)});
  auto j = replay_eventlog(events);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->state, JobState::kRun);
  EXPECT_EQ(j->urgency, 31u);
  EXPECT_EQ(j->priority, 42);
  EXPECT_EQ(j->userid, 1000u);
  EXPECT_EQ(j->t_run, 5.0);
  events.push_back(ev("depend"));
  auto bad = replay_eventlog(events);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().text.find("event 7"), std::string::npos) << bad.error().text;
}

TEST(JobState, UnknownEventsAnnotateWithoutChangingState) {
  EXPECT_EQ(run(plus(to_sched(), {ev("memo", {{"k", "v"}}), ev("debug.alloc-request")})), "SCHED");
}

TEST(JobState, ExceptionTypesAreOneWordWithoutEquals) {
  EXPECT_TRUE(check_exception_type("cancel").ok());
  EXPECT_TRUE(check_exception_type(std::string(64, 'x')).ok());
  for (std::string bad : {std::string(), std::string("a=b"), std::string("a b"), std::string("a\tb"),
                          std::string(65, 'x'), std::string("a\x7f")}) {
    EXPECT_FALSE(check_exception_type(bad).ok()) << bad;
  }
}

TEST(JobState, DependenciesHoldTheJobInDependUntilEachIsRemoved) {
  auto add = [](const char* d) { return ev("dependency-add", {{"description", d}}); };
  auto remove = [](const char* d) { return ev("dependency-remove", {{"description", d}}); };
  std::vector<EventEntry> held = {submit(), ev("validate"), add("afterok:f1"), add("singleton")};
  EXPECT_EQ(run(held), "DEPEND");
  // depend needs every dependency removed.
  EXPECT_EQ(
      run(plus(held, {ev("depend")})).rfind("ERROR:depend is not allowed in state DEPEND: dependency afterok:f1", 0),
      0u);
  EXPECT_EQ(run(plus(held, {remove("afterok:f1"), ev("depend")})).rfind("ERROR:", 0), 0u);
  EXPECT_EQ(run(plus(held, {remove("singleton"), remove("afterok:f1"), ev("depend")})), "PRIORITY");
  // Only what was added can be removed, each once; nothing is added twice.
  EXPECT_EQ(run(plus(held, {remove("after:f2")})).rfind("ERROR:", 0), 0u);
  EXPECT_EQ(run(plus(held, {remove("singleton"), remove("singleton")})).rfind("ERROR:", 0), 0u);
  EXPECT_EQ(run(plus(held, {add("singleton")})).rfind("ERROR:", 0), 0u);
  EXPECT_EQ(run(plus(held, {remove("singleton"), add("singleton")})).rfind("ERROR:", 0), 0u);
  // Only in DEPEND, and with a description.
  EXPECT_EQ(run(plus(to_sched(), {add("after:f1")})).rfind("ERROR:", 0), 0u);
  EXPECT_EQ(run({submit(), add("after:f1")}).rfind("ERROR:", 0), 0u);
  EXPECT_EQ(run({submit(), ev("validate"), ev("dependency-add", Json::object())}).rfind("ERROR:", 0), 0u);
  // A fatal exception ends a job that waits on a dependency.
  EXPECT_EQ(run(plus(held, {exception(0, "dependency")})), "CLEANUP");
  // Replaying the eventlog gives back the dependencies still waited on.
  auto j = replay_eventlog(plus(held, {remove("afterok:f1")}));
  ASSERT_TRUE(j.ok()) << j.error().text;
  EXPECT_EQ(j->deps_pending, (std::vector<std::string>{"singleton"}));
  EXPECT_EQ(j->deps_added.size(), 2u);
}

}  // namespace loom
