#include "jobspec/jobspec.h"

#include <gtest/gtest.h>

namespace loom {

namespace {
Json valid() {
  return R"({"version":1,
    "resources":[{"type":"node","count":2,"with":[{"type":"slot","count":2,"label":"task",
                  "with":[{"type":"core","count":3},{"type":"gpu","count":1}]}]}],
    "tasks":[{"command":["/bin/app","-v"],"slot":"task","count":{"per_slot":1}}],
    "attributes":{"system":{"duration":60,"cwd":"/tmp","environment":{"A":"1"}}}})"_json;
}
std::string why(const Json& j) {
  auto r = parse_jobspec(j);
  return r.ok() ? "" : r.error().text;
}
}  // namespace

TEST(Jobspec, DecodesANodeSlotCoreGpuRequest) {
  auto js = parse_jobspec(valid());
  ASSERT_TRUE(js.ok()) << js.error().text;
  EXPECT_EQ(js->nnodes, 2u);
  EXPECT_EQ(js->slots_per_node, 2u);
  EXPECT_EQ(js->nslots, 4u);
  EXPECT_EQ(js->cores_per_slot, 3u);
  EXPECT_EQ(js->gpus_per_slot, 1u);
  EXPECT_EQ(js->ntasks, 4u);
  EXPECT_EQ(js->duration, 60);
  EXPECT_EQ(js->cwd, "/tmp");
  EXPECT_EQ(js->name, "app");
  EXPECT_EQ(js->command, (std::vector<std::string>{"/bin/app", "-v"}));
}

TEST(Jobspec, RefusesWhatVersion1Forbids) {
  auto with = [](auto edit) {
    Json j = valid();
    edit(j);
    return why(j);
  };
  EXPECT_NE(with([](Json& j) { j.erase("version"); }).find("version"), std::string::npos);
  EXPECT_NE(with([](Json& j) { j["version"] = 2; }).find("version"), std::string::npos);
  EXPECT_NE(with([](Json& j) { j["resources"][0]["count"] = -1; }).find("at least 1"), std::string::npos);
  EXPECT_NE(with([](Json& j) { j["resources"][0]["count"] = 0; }).find("at least 1"), std::string::npos);
  // Each count within its bound, their product not: 10^12 slots once wrapped to 3567587328.
  EXPECT_NE(with([](Json& j) {
              j["resources"][0]["count"] = 1'000'000;
              j["resources"][0]["with"][0]["count"] = 1'000'000;
            }).find("too many slots"),
            std::string::npos);
  EXPECT_NE(with([](Json& j) { j["resources"][0]["type"] = "socket"; }).find("unknown resource type"),
            std::string::npos);
  EXPECT_NE(with([](Json& j) { j["resources"][0]["with"][0]["with"][0]["type"] = "memory"; }).find("memory"),
            std::string::npos);
  EXPECT_NE(with([](Json& j) { j["resources"][0]["with"][0]["with"].erase(0); }).find("core"), std::string::npos);
  EXPECT_NE(with([](Json& j) { j["tasks"][0]["command"] = Json::array(); }).find("command"), std::string::npos);
  EXPECT_NE(with([](Json& j) { j["tasks"][0]["slot"] = "other"; }).find("label"), std::string::npos);
  EXPECT_NE(with([](Json& j) { j["tasks"][0]["count"] = {{"per_slot", 2}}; }).find("per_slot"), std::string::npos);
  EXPECT_NE(with([](Json& j) { j["tasks"][0]["count"] = {{"total", 5}}; }).find("exceeds"), std::string::npos);
  EXPECT_NE(with([](Json& j) { j["tasks"][0]["count"] = {{"total", 1}}; }).find("less than"), std::string::npos);
  EXPECT_NE(with([](Json& j) { j["attributes"]["system"].erase("duration"); }).find("duration"), std::string::npos);
  EXPECT_NE(with([](Json& j) { j["attributes"]["system"]["duration"] = -5; }).find("duration"), std::string::npos);
  EXPECT_NE(with([](Json& j) { j["resources"].push_back(j["resources"][0]); }).find("exactly one"), std::string::npos);
  EXPECT_NE(with([](Json& j) { j["attributes"]["other"] = Json::object(); }).find("other"), std::string::npos);
  EXPECT_FALSE(parse_jobspec_text("not json").ok());
  EXPECT_FALSE(parse_jobspec_text("[]").ok());
}

TEST(Jobspec, BuildsWhatFluxUsersExpect) {
  JobRequest r;
  r.command = {"hostname"};
  r.nodes = 4;
  r.tasks = 8;
  r.cores_per_task = 2;
  auto j = build_jobspec(r);
  ASSERT_TRUE(j.ok()) << j.error().text;
  auto js = parse_jobspec(*j);
  ASSERT_TRUE(js.ok());
  EXPECT_EQ(js->nnodes, 4u);
  EXPECT_EQ(js->slots_per_node, 2u);
  EXPECT_EQ(js->ntasks, 8u);
  EXPECT_EQ(js->cores_per_slot, 2u);

  JobRequest one_per_node;
  one_per_node.command = {"true"};
  one_per_node.nodes = 3;
  EXPECT_EQ(parse_jobspec(*build_jobspec(one_per_node))->ntasks, 3u);
  // -N alone takes whole nodes; with -n it takes only the cores it asks.
  EXPECT_TRUE(parse_jobspec(*build_jobspec(one_per_node))->exclusive);
  EXPECT_FALSE(js->exclusive);

  JobRequest uneven;  // 5 tasks on 4 nodes: 2 slots per node, 5 tasks in all
  uneven.command = {"true"};
  uneven.nodes = 4;
  uneven.tasks = 5;
  auto u = parse_jobspec(*build_jobspec(uneven));
  EXPECT_EQ(u->nslots, 8u);
  EXPECT_EQ(u->ntasks, 5u);

  JobRequest slots;
  slots.command = {"true"};
  slots.tasks = 10;
  slots.gpus_per_task = 1;
  auto s = parse_jobspec(*build_jobspec(slots));
  EXPECT_EQ(s->nnodes, 0u);
  EXPECT_EQ(s->nslots, 10u);
  EXPECT_EQ(s->gpus_per_slot, 1u);

  JobRequest bad = slots;
  bad.exclusive = true;
  EXPECT_FALSE(build_jobspec(bad).ok());
  JobRequest fewer;
  fewer.command = {"true"};
  fewer.nodes = 4;
  fewer.tasks = 2;
  EXPECT_FALSE(build_jobspec(fewer).ok());
}

TEST(Duration, ParsesFluxStandardDurations) {
  EXPECT_EQ(*parse_fsd("30"), 30);
  EXPECT_EQ(*parse_fsd("30s"), 30);
  EXPECT_EQ(*parse_fsd("1.5m"), 90);
  EXPECT_EQ(*parse_fsd("2h"), 7200);
  EXPECT_EQ(*parse_fsd("1d"), 86400);
  EXPECT_EQ(*parse_fsd("0.5s"), 0.5);
  EXPECT_EQ(*parse_time_limit("10"), 600);  // -t: a bare number is minutes
  for (const char* s : {"", "s", "-1", "1x", "1..2", "abc", "1 s"}) EXPECT_FALSE(parse_fsd(s).ok()) << s;
}

TEST(Jobspec, ErrorsQuoteTheInputOnOneLine) {
  // What the input holds is escaped: a newline in it once split the error.
  EXPECT_EQ(parse_fsd("1\nERROR forged").error().text, "invalid duration \"1\\nERROR forged\" (e.g. 30s, 5m, 2h, 1d)");
  auto js = parse_jobspec_text(R"({"version":1,"resources":[{"type":"slot\n","count":1}],"tasks":[],"attributes":{}})");
  ASSERT_FALSE(js.ok());
  EXPECT_EQ(js.error().text.find('\n'), std::string::npos) << js.error().text;
}

}  // namespace loom

namespace loom {

// A batch job (docs/steps.md): one task, its script, on the first of its
// nodes; a step names its allocation.
TEST(Jobspec, BatchJobsRunOneScriptAndStepsNameTheirAllocation) {
  Json j = valid();
  j["tasks"][0]["count"] = Json{{"total", 1}};
  j["attributes"]["system"]["batch"] = Json{{"script", "#!/bin/sh\necho hi\n"}};
  auto js = parse_jobspec(j);
  ASSERT_TRUE(js.ok()) << js.error().text;
  EXPECT_TRUE(js->batch);
  EXPECT_EQ(js->ntasks, 1u);
  EXPECT_EQ(js->nnodes, 2u);
  EXPECT_EQ(js->script, "#!/bin/sh\necho hi\n");
  EXPECT_EQ(js->allocation, 0u);
  EXPECT_TRUE(check_system_keys(j));

  auto with = [&](auto edit) {
    Json b = j;
    edit(b);
    return why(b);
  };
  EXPECT_NE(with([](Json& b) { b["attributes"]["system"]["batch"]["script"] = "echo hi\n"; }).find("#!"),
            std::string::npos);
  EXPECT_NE(with([](Json& b) { b["attributes"]["system"]["batch"] = "x"; }).find("batch must be an object"),
            std::string::npos);
  EXPECT_NE(with([](Json& b) { b["attributes"]["system"]["batch"]["other"] = 1; }).find("batch.other"),
            std::string::npos);
  EXPECT_NE(with([](Json& b) { b["tasks"][0]["count"] = Json{{"per_slot", 1}}; }).find("one task"), std::string::npos);
  // Without batch, one task on two nodes is refused as before.
  EXPECT_NE(with([](Json& b) { b["attributes"]["system"].erase("batch"); }).find("less than the 2 nodes"),
            std::string::npos);
  EXPECT_NE(with([](Json& b) { b["attributes"]["system"]["allocation"] = 5; }).find("cannot be a step"),
            std::string::npos);

  Json step = valid();
  step["attributes"]["system"]["allocation"] = 1234;
  auto s = parse_jobspec(step);
  ASSERT_TRUE(s.ok()) << s.error().text;
  EXPECT_EQ(s->allocation, 1234u);
  EXPECT_FALSE(s->batch);
  step["attributes"]["system"]["allocation"] = "ƒ1";
  EXPECT_NE(why(step).find("allocation must be a job id"), std::string::npos);
  step["attributes"]["system"]["allocation"] = 0;
  EXPECT_NE(why(step).find("allocation must be a job id"), std::string::npos);
}

}  // namespace loom
