#include "cli/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace loom::cli {

namespace {
std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}
std::string why(std::string_view text) {
  auto r = parse_config_toml(text, "loom.toml");
  return r.ok() ? "" : r.error().text;
}
}  // namespace

TEST(Config, TurnsTablesIntoSettings) {
  auto r = parse_config_toml(R"([kvs]
synchronous = "full"
[resource]
cores-per-rank = 8
[broker]
heartbeat-interval = 0.1
[exec]
epilog = ["/bin/sh", "-c", "echo [done]"]  # a list: JSON
allow-guest-test = false
)",
                             "loom.toml");
  ASSERT_TRUE(r.ok()) << r.error().text;
  EXPECT_EQ(sorted(*r), (std::vector<std::string>{"broker.heartbeat-interval=0.1", R"(exec.allow-guest-test=false)",
                                                  R"(exec.epilog=["/bin/sh","-c","echo [done]"])",
                                                  "kvs.synchronous=full", "resource.cores-per-rank=8"}));
}

TEST(Config, RefusesWhatCannotBeASetting) {
  EXPECT_EQ(why("x = 1\n").rfind("loom.toml: x must be a table", 0), 0u) << why("x = 1\n");
  EXPECT_NE(why("[exec]\nepilog = [1]\n").find("list of strings"), std::string::npos);
  EXPECT_NE(why("[broker]\nheartbeat-interval = nan\n").find("finite"), std::string::npos);
  // A quoted key could hold '=' and split into another key and value.
  EXPECT_NE(why("[kvs]\n\"synchronous=off\" = 1\n").find("not a configuration key"), std::string::npos);
  EXPECT_NE(why("[kvs\n").find("loom.toml: "), std::string::npos);
}

// Found by fuzz_config: toml11 (3.7) overflowed its stack on deep nesting
// and read past its buffer on a truncated UTF-8 sequence.
TEST(Config, RefusesDeepNestingAndInvalidUtf8BeforeToml11SeesThem) {
  std::string deep = "[t]\na = " + std::string(5000, '[') + std::string(5000, ']') + "\n";
  EXPECT_NE(why(deep).find("nest deeper than"), std::string::npos) << why(deep);
  EXPECT_NE(why("'\xd2'").find("not UTF-8 text (at byte 1)"), std::string::npos) << why("'\xd2'");
  EXPECT_NE(why("[t]\na = \"\xed\xa0\x80\"\n").find("not UTF-8"), std::string::npos);  // a surrogate
  // Brackets in strings and comments do not count; UTF-8 names pass.
  std::string fine =
      "[t]\n# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\na = \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"\"\n"
      "b = '''\n[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['''\nc = \"caf\xc3\xa9\"\n";
  EXPECT_EQ(why(fine), "");
}

}  // namespace loom::cli
