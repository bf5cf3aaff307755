#include "job_manager/submit_rules.h"

#include <gtest/gtest.h>

namespace loom {

namespace {
// A jobspec with `system` as its attributes.system.
Json with_system(Json system) { return Json{{"version", 1}, {"attributes", {{"system", std::move(system)}}}}; }
int refusal(const Json& js, bool owner, SubmitRules rules = {}) {
  auto st = check_system_attributes(js, owner, rules);
  return st ? 0 : st.error().code;
}
}  // namespace

TEST(SubmitRules, UsersSetTheSystemAttributesOfEveryJob) {
  Json js = with_system({{"duration", 60},
                         {"cwd", "/home/u"},
                         {"environment", {{"PATH", "/bin"}}},
                         {"job", {{"name", "x"}}},
                         {"shell", {{"options", {{"output", {{"stdout", {{"path", "out"}}}}}}}}}});
  EXPECT_EQ(refusal(js, false), 0);
}

TEST(SubmitRules, TestExecutionIsTheOwnersUnlessAllowed) {
  Json js = with_system({{"duration", 0}, {"exec", {{"test", {{"run_duration", "1s"}}}}}});
  EXPECT_EQ(refusal(js, true), 0);
  EXPECT_EQ(refusal(js, false), EPERM);
  auto st = check_system_attributes(js, false, {});
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().text.find("exec.allow-guest-test"), std::string::npos) << st.error().text;
  EXPECT_EQ(refusal(js, false, SubmitRules{.allow_guest_test = true}), 0);
}

TEST(SubmitRules, OtherSystemAttributesAreTheOwners) {
  // Any other exec attribute, even where test execution is allowed.
  Json js = with_system({{"duration", 0}, {"exec", {{"bulkexec", true}}}});
  EXPECT_EQ(refusal(js, false, SubmitRules{.allow_guest_test = true}), EPERM);
  EXPECT_EQ(refusal(js, true), 0);
  // exec that is not a table, and keys loom does not define for users.
  EXPECT_EQ(refusal(with_system({{"duration", 0}, {"exec", 1}}), false), EPERM);
  auto st = check_system_attributes(with_system({{"duration", 0}, {"queue", "batch"}}), false, {});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EPERM);
  EXPECT_EQ(st.error().text.find('\n'), std::string::npos);
  EXPECT_NE(st.error().text.find("attributes.system.queue"), std::string::npos) << st.error().text;
  // User attributes are anyone's.
  Json user = with_system({{"duration", 0}});
  user["attributes"]["user"] = {{"queue", "batch"}};
  EXPECT_EQ(refusal(user, false), 0);
}

TEST(SubmitRules, JobspecsOverTheLimitAreRefusedForEveryone) {
  EXPECT_TRUE(check_jobspec_size(kDefaultJobspecSizeLimit, {}));
  auto st = check_jobspec_size(kDefaultJobspecSizeLimit + 1, {});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EFBIG);
  EXPECT_NE(st.error().text.find("job-manager.jobspec-size-limit"), std::string::npos) << st.error().text;
  EXPECT_FALSE(check_jobspec_size(2000, SubmitRules{.jobspec_size_limit = 1000}));
  EXPECT_TRUE(check_jobspec_size(1000, SubmitRules{.jobspec_size_limit = 1000}));
  // The largest limit keeps a stored job well under the 64 MiB frame.
  EXPECT_LE(kMaxJobspecSizeLimit, size_t{16} << 20);
}

}  // namespace loom
