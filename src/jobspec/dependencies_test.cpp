#include "jobspec/dependencies.h"

#include <gtest/gtest.h>

#include "jobspec/jobspec.h"

namespace loom {

namespace {
Json with_deps(Json deps) { return Json{{"attributes", {{"system", {{"duration", 0}, {"dependencies", deps}}}}}}; }
std::string error_of(const Result<std::vector<Dependency>>& r) { return r.ok() ? "" : r.error().text; }
std::string error_of(const Result<Json>& r) { return r.ok() ? "" : r.error().text; }
}  // namespace

TEST(Dependencies, ReadsEveryTypeFromTheJobspecInAnyIdForm) {
  JobId a{1234567};
  auto deps = parse_dependencies(with_deps({{{"scheme", "afterok"}, {"value", encode_f58(a)}},
                                            {{"scheme", "afterany"}, {"value", "1234567"}},
                                            {{"scheme", "afternotok"}, {"value", encode_f58(a)}},
                                            {{"scheme", "after"}, {"value", encode_f58(a)}},
                                            {{"scheme", "singleton"}, {"value", ""}}}));
  ASSERT_TRUE(deps.ok()) << deps.error().text;
  ASSERT_EQ(deps->size(), 5u);
  EXPECT_EQ((*deps)[0], (Dependency{DependencyScheme::kAfterOk, a}));
  EXPECT_EQ((*deps)[1], (Dependency{DependencyScheme::kAfterAny, a}));
  EXPECT_EQ((*deps)[1].description(), "afterany:" + encode_f58(a));
  EXPECT_EQ((*deps)[4].description(), "singleton");
  // None without the key; the same dependency twice is one.
  EXPECT_TRUE(parse_dependencies(Json{{"attributes", {{"system", {{"duration", 0}}}}}})->empty());
  auto twice = parse_dependencies(
      with_deps({{{"scheme", "afterok"}, {"value", "1234567"}}, {{"scheme", "afterok"}, {"value", encode_f58(a)}}}));
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(twice->size(), 1u);
}

TEST(Dependencies, RefusesWhatLoomCannotFollowWithOneLine) {
  struct Case {
    Json deps;
    const char* says;
  };
  std::vector<Case> bad = {
      {Json::array(), "non-empty list"},
      {"afterok:1", "non-empty list"},
      {Json::array({"afterok:1"}), "must be an object"},
      {Json::array({{{"scheme", "before"}, {"value", "1"}}}), "unknown dependency type \"before\""},
      {Json::array({{{"scheme", "afterok"}, {"value", "nosuch"}}}), "\"nosuch\" is not a job id"},
      {Json::array({{{"scheme", "afterok"}, {"value", ""}}}), "needs a job id"},
      {Json::array({{{"scheme", "afterok"}, {"value", 12}}}), "string \"value\""},
      {Json::array({{{"scheme", "afterok"}, {"value", "1"}, {"type", "in"}}}), "unknown key \"type\""},
      {Json::array({{{"scheme", "singleton"}, {"value", "1"}}}), "takes no job id"},
  };
  for (auto& c : bad) {
    std::string e = error_of(parse_dependencies(with_deps(c.deps)));
    EXPECT_NE(e.find(c.says), std::string::npos) << c.deps.dump() << ": " << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
}

TEST(Dependencies, ReadsTheConcurrencyLimitAsTheLastDependency) {
  JobId g{1234567};
  Json js = with_deps({{{"scheme", "singleton"}, {"value", ""}}});
  js["attributes"]["system"]["cc_limit"] = {{"max", 5}};
  auto deps = parse_dependencies(js);
  ASSERT_TRUE(deps.ok()) << deps.error().text;
  ASSERT_EQ(deps->size(), 2u);
  EXPECT_EQ((*deps)[1], (Dependency{DependencyScheme::kCcLimit, JobId{0}, 5}));
  EXPECT_EQ((*deps)[1].description(), "cc_limit:5");
  for (Json group : {Json(g.value()), Json(encode_f58(g))}) {
    Json one{{"attributes", {{"system", {{"cc_limit", {{"max", 2}, {"group", group}}}}}}}};
    auto d = parse_dependencies(one);
    ASSERT_TRUE(d.ok()) << d.error().text;
    ASSERT_EQ(d->size(), 1u);
    EXPECT_EQ((*d)[0].description(), "cc_limit:" + encode_f58(g) + ":2");
  }
  for (Json bad : {Json{{"max", 0}}, Json{{"max", -1}}, Json{{"max", "5"}}, Json::object(), Json{{"max", 2}, {"x", 1}},
                   Json{{"max", 2}, {"group", "nope"}}, Json(5)}) {
    Json one{{"attributes", {{"system", {{"cc_limit", bad}}}}}};
    auto d = parse_dependencies(one);
    ASSERT_FALSE(d.ok()) << bad.dump();
    EXPECT_NE(d.error().text.find("cc_limit"), std::string::npos) << d.error().text;
  }
}

TEST(Dependencies, TranslatesTheCommandLineForm) {
  JobId a{1234567}, b{7654321};
  auto one = parse_dependency_option("afterok:" + encode_f58(a) + ":7654321,singleton,afterany:1234567");
  ASSERT_TRUE(one.ok()) << one.error().text;
  EXPECT_EQ(*one, (Json::array({{{"scheme", "afterok"}, {"value", encode_f58(a)}},
                                {{"scheme", "afterok"}, {"value", encode_f58(b)}},
                                {{"scheme", "singleton"}, {"value", ""}},
                                {{"scheme", "afterany"}, {"value", encode_f58(a)}}})));
  // What it gives is what the jobspec reads back.
  auto back = parse_dependencies(with_deps(*one));
  ASSERT_TRUE(back.ok()) << back.error().text;
  EXPECT_EQ(back->size(), 4u);
  EXPECT_NE(error_of(parse_dependency_option("afterwards:1")).find("unknown dependency type \"afterwards\""),
            std::string::npos);
  EXPECT_NE(error_of(parse_dependency_option("afterok:xyz")).find("\"xyz\" is not a job id"), std::string::npos);
  EXPECT_NE(error_of(parse_dependency_option("afterok")).find("needs a job id"), std::string::npos);
  EXPECT_NE(error_of(parse_dependency_option("afterok:1:")).find("needs a job id"), std::string::npos);
  EXPECT_NE(error_of(parse_dependency_option("afterok:1,,after:2")).find("empty item"), std::string::npos);
  EXPECT_NE(error_of(parse_dependency_option("singleton:1")).find("takes no job id"), std::string::npos);
  EXPECT_FALSE(parse_dependency_option("").ok());
}

TEST(SystemAttributes, UnknownKeysAreRefusedByName) {
  Json js{{"attributes", {{"system", {{"duration", 0}, {"cwd", "/"}, {"queue", "batch"}}}}}};
  auto st = check_system_keys(js);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EINVAL);
  EXPECT_NE(st.error().text.find("attributes.system.queue"), std::string::npos) << st.error().text;
  EXPECT_EQ(st.error().text.find('\n'), std::string::npos);
  for (auto key : kSystemAttributes) {
    Json ok{{"attributes", {{"system", {{std::string(key), Json::object()}}}}}};
    EXPECT_TRUE(check_system_keys(ok)) << key;
  }
  EXPECT_TRUE(check_system_keys(Json{{"attributes", {{"user", {{"queue", "batch"}}}}}}));
}

}  // namespace loom
