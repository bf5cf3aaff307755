#include "job_manager/dependencies.h"

#include <gtest/gtest.h>

namespace loom {

namespace {
constexpr JobId kA{1000};
Dependency on(DependencyScheme s) { return {s, kA}; }
Antecedent pending() { return {true, false, false, ""}; }
Antecedent running() { return {true, true, false, ""}; }
Antecedent ended(const char* result, bool ran = true) { return {true, ran, true, result}; }
DependencyVerdict verdict(DependencyScheme s, const Antecedent& a) { return check_dependency(on(s), a).verdict; }
constexpr auto kWaiting = DependencyVerdict::kWaiting;
constexpr auto kMet = DependencyVerdict::kMet;
constexpr auto kNever = DependencyVerdict::kNever;
}  // namespace

TEST(DependencyRules, AfterIsMetOnceTheJobRunsAndNeverIfItEndedWithout) {
  EXPECT_EQ(verdict(DependencyScheme::kAfter, pending()), kWaiting);
  EXPECT_EQ(verdict(DependencyScheme::kAfter, running()), kMet);
  EXPECT_EQ(verdict(DependencyScheme::kAfter, ended("FAILED")), kMet);
  auto c = check_dependency(on(DependencyScheme::kAfter), ended("CANCELED", false));
  EXPECT_EQ(c.verdict, kNever);
  EXPECT_NE(c.reason.find(encode_f58(kA)), std::string::npos) << c.reason;
  EXPECT_NE(c.reason.find("ended without running"), std::string::npos) << c.reason;
}

TEST(DependencyRules, AfteranyWaitsForTheEndWhateverItIs) {
  EXPECT_EQ(verdict(DependencyScheme::kAfterAny, pending()), kWaiting);
  EXPECT_EQ(verdict(DependencyScheme::kAfterAny, running()), kWaiting);
  for (const char* r : {"COMPLETED", "FAILED", "CANCELED", "TIMEOUT"}) {
    EXPECT_EQ(verdict(DependencyScheme::kAfterAny, ended(r)), kMet) << r;
  }
  EXPECT_EQ(verdict(DependencyScheme::kAfterAny, Antecedent{}), kMet);  // purged
}

TEST(DependencyRules, AfterokNeedsSuccessAndNamesTheFailure) {
  EXPECT_EQ(verdict(DependencyScheme::kAfterOk, running()), kWaiting);
  EXPECT_EQ(verdict(DependencyScheme::kAfterOk, ended("COMPLETED")), kMet);
  auto failed = check_dependency(on(DependencyScheme::kAfterOk), ended("FAILED"));
  EXPECT_EQ(failed.verdict, kNever);
  EXPECT_EQ(failed.reason, "afterok:" + encode_f58(kA) + " can never be met: job " + encode_f58(kA) + " failed");
  auto canceled = check_dependency(on(DependencyScheme::kAfterOk), ended("CANCELED", false));
  EXPECT_NE(canceled.reason.find("was canceled"), std::string::npos) << canceled.reason;
  EXPECT_EQ(verdict(DependencyScheme::kAfterOk, ended("TIMEOUT")), kNever);
  EXPECT_EQ(verdict(DependencyScheme::kAfterOk, Antecedent{}), kNever);  // purged: the result is lost
}

TEST(DependencyRules, AfternotokNeedsAFailure) {
  EXPECT_EQ(verdict(DependencyScheme::kAfterNotOk, running()), kWaiting);
  for (const char* r : {"FAILED", "CANCELED", "TIMEOUT"}) {
    EXPECT_EQ(verdict(DependencyScheme::kAfterNotOk, ended(r)), kMet) << r;
  }
  auto ok = check_dependency(on(DependencyScheme::kAfterNotOk), ended("COMPLETED"));
  EXPECT_EQ(ok.verdict, kNever);
  EXPECT_NE(ok.reason.find("completed successfully"), std::string::npos) << ok.reason;
}

TEST(DependencyRules, SingletonsOfOneNameGoOneAtATimeInSubmitOrder) {
  JobId self{50};
  EXPECT_EQ(check_singleton(self, {}).verdict, kMet);
  EXPECT_EQ(check_singleton(self, {{self, false}}).verdict, kMet);
  // An earlier one, even still in DEPEND, goes first.
  EXPECT_EQ(check_singleton(self, {{JobId{40}, false}}).verdict, kWaiting);
  // A later one that is already past DEPEND (no singleton itself) holds it too.
  EXPECT_EQ(check_singleton(self, {{JobId{60}, true}}).verdict, kWaiting);
  EXPECT_EQ(check_singleton(self, {{JobId{60}, false}}).verdict, kMet);
}

TEST(DependencyRules, CcLimitLetsAtMostMaxOfAGroupPastDependInSubmitOrder) {
  JobId self{50};
  EXPECT_EQ(check_cc_limit(self, 2, {}).verdict, kMet);
  EXPECT_EQ(check_cc_limit(self, 2, {{JobId{10}, true, false}}).verdict, kMet);
  EXPECT_EQ(check_cc_limit(self, 2, {{JobId{10}, true, false}, {JobId{20}, true, false}}).verdict, kWaiting);
  // Later ones past DEPEND count too (a restart, a limit set by hand).
  EXPECT_EQ(check_cc_limit(self, 1, {{JobId{60}, true, false}}).verdict, kWaiting);
  // An earlier one waiting on the limit alone goes first; one waiting on
  // something else does not hold the group up; a later one waits behind.
  EXPECT_EQ(check_cc_limit(self, 2, {{JobId{10}, true, false}, {JobId{40}, false, true}}).verdict, kWaiting);
  EXPECT_EQ(check_cc_limit(self, 2, {{JobId{10}, true, false}, {JobId{40}, false, false}}).verdict, kMet);
  EXPECT_EQ(check_cc_limit(self, 2, {{JobId{10}, true, false}, {JobId{60}, false, true}}).verdict, kMet);
  EXPECT_EQ(check_cc_limit(self, 1, {{self, true, false}}).verdict, kMet);
}

TEST(DependencyRules, SubmitRefusesItselfAndUnknownJobsWithOneLine) {
  JobId self{77};
  auto lookup = [](JobId id) -> Status {
    if (id == JobId{1}) return {};
    return Error{ENOENT, "job " + encode_f58(id) + " does not exist"};
  };
  EXPECT_TRUE(check_new_dependencies({{DependencyScheme::kAfterOk, JobId{1}}, {DependencyScheme::kSingleton, JobId{0}}},
                                     self, lookup));
  auto itself = check_new_dependencies({{DependencyScheme::kAfterOk, self}}, self, lookup);
  ASSERT_FALSE(itself);
  EXPECT_EQ(itself.error().code, EINVAL);
  EXPECT_NE(itself.error().text.find("itself"), std::string::npos) << itself.error().text;
  auto unknown = check_new_dependencies({{DependencyScheme::kAfter, JobId{2}}}, self, lookup);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ENOENT);
  EXPECT_EQ(unknown.error().text,
            "dependency after:" + encode_f58(JobId{2}) + ": job " + encode_f58(JobId{2}) + " does not exist");
}

}  // namespace loom
