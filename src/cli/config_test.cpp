#include "cli/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace loom::cli {

namespace {
std::vector<std::string> sorted(const std::vector<Setting>& settings) {
  std::vector<std::string> v;
  for (const auto& s : settings) v.push_back(s.key + "=" + s.value + (s.list ? " (list)" : ""));
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
                                                  R"(exec.epilog=["/bin/sh","-c","echo [done]"] (list))",
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

// [[resource.config]]: per-host resources for an instance over hosts.
TEST(Config, ReadsWhatHostsHaveFromAListOfTables) {
  auto r = parse_config_toml(R"([resource]
cores-per-rank = 4
[[resource.config]]
hosts = "node[0-1]"
cores = 8
[[resource.config]]
hosts = "gpu1"
gpus = 2
)",
                             "loom.toml");
  ASSERT_TRUE(r.ok()) << r.error().text;
  auto c = merge_config(*r);
  ASSERT_TRUE(c.ok()) << c.error().text;
  ASSERT_EQ(c->host_resources.size(), 2u);
  EXPECT_EQ(c->host_resources[0].names, (std::vector<std::string>{"node0", "node1"}));
  auto node1 = resources_of(*c, "node1"), gpu1 = resources_of(*c, "gpu1"), other = resources_of(*c, "node7");
  EXPECT_EQ(node1.cores, 8u);
  EXPECT_EQ(node1.gpus, std::nullopt);  // hwloc's
  EXPECT_EQ(gpu1.cores, 4u);            // cores-per-rank
  EXPECT_EQ(gpu1.gpus, 2u);
  EXPECT_EQ(other.cores, 4u);
  // --setconf takes the same list as JSON.
  auto s = merge_config({*parse_setconf(R"(resource.config=[{"hosts":"n[1-2]","cores":2,"gpus":0}])")});
  ASSERT_TRUE(s.ok()) << s.error().text;
  EXPECT_EQ(resources_of(*s, "n2").gpus, 0u);
}

TEST(Config, RefusesABadHostEntryWithOneLine) {
  auto bad = [](std::string_view entries) {
    auto r = parse_config_toml(std::string("[resource]\n") + std::string(entries), "loom.toml");
    if (!r.ok()) return r.error().text;
    auto c = merge_config(*r);
    return c.ok() ? std::string() : c.error().text;
  };
  EXPECT_EQ(bad("[[resource.config]]\nhosts = \"n[1-\"\ncores = 2\n")
                .find("loom.toml: resource.config: entry 1: hosts must be a hostlist"),
            0u);
  EXPECT_EQ(bad("[[resource.config]]\nhosts = \"n1\"\ncores = 0\n"),
            "loom.toml: resource.config: entry 1: cores must be an integer 1-1048576");
  EXPECT_EQ(bad("[[resource.config]]\nhosts = \"n1\"\n"),
            "loom.toml: resource.config: entry 1 (n1) sets neither cores nor gpus");
  EXPECT_EQ(bad("[[resource.config]]\nhosts = \"n1\"\ncore = 2\n"),
            "loom.toml: resource.config: entry 1: unknown key \"core\" (known: hosts, cores, gpus)");
  EXPECT_EQ(bad("[[resource.config]]\nhosts = \"n[1-2]\"\ncores = 2\n[[resource.config]]\nhosts = \"n2\"\ngpus = 1\n"),
            "loom.toml: resource.config: host n2 is in two entries");
  EXPECT_EQ(bad("[[resource.config]]\nhosts = \"n1\"\ncores = 2.5\n"),
            "loom.toml: resource.config has cores, which must be a string, an integer or a boolean");
  EXPECT_NE(bad("config = [1, {hosts = \"n1\"}]\n"), "");  // mixed: refused by toml11 or here
  EXPECT_NE(bad("[[exec.epilog]]\nx = 1\n").find("list of strings"), std::string::npos);
}

namespace {
Setting file(std::string key, std::string value) { return Setting{std::move(key), std::move(value), false, "p.toml"}; }
Setting setconf(std::string_view text) { return *parse_setconf(text); }
Setting plain(std::string option, std::string key, std::string value) {
  return Setting{std::move(key), std::move(value), false, std::move(option)};
}
std::string merge_error(const std::vector<Setting>& settings) {
  auto r = merge_config(settings);
  return r.ok() ? "" : r.error().text;
}
bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}
}  // namespace

TEST(Config, LaterSettingsOfAKeyWin) {
  auto c = merge_config({file("sched.policy", "easy"), setconf("sched.policy=fcfs"), setconf("broker.fanout=3"),
                         setconf("broker.fanout=4"), file("broker.heartbeat-timeout", "30"),
                         plain("--heartbeat-timeout", "broker.heartbeat-timeout", "20"),
                         plain("--fanout", "broker.fanout", "1")});
  ASSERT_TRUE(c.ok()) << c.error().text;
  EXPECT_EQ(c->sched_policy, "fcfs");
  EXPECT_EQ(c->fanout, 1u);
  EXPECT_EQ(c->heartbeat_timeout, 20);
  // Each option once in what loomd gets, whatever was set twice.
  auto o = loomd_options(*c);
  EXPECT_EQ(std::count_if(o.begin(), o.end(), [](auto& a) { return a.starts_with("--sched-policy="); }), 1);
  EXPECT_TRUE(has(o, "--sched-policy=fcfs"));
  EXPECT_TRUE(has(o, "--fanout=1"));
  EXPECT_TRUE(has(o, "--heartbeat-timeout=20"));
}

TEST(Config, DurationsTakeWhatTimeLimitsTakeWithSecondsBare) {
  auto c = merge_config({setconf("exec.kill-timeout=5s"), setconf("exec.epilog-timeout=1m"),
                         setconf("exec.reattach-timeout=0"), setconf("broker.heartbeat-interval=0.5"),
                         setconf("broker.heartbeat-timeout=2.5s"), setconf("exec.prolog-timeout=1h"),
                         setconf("exec.shell-exit-timeout=1.5m"), file("broker.frame-timeout", "0.25")});
  ASSERT_TRUE(c.ok()) << c.error().text;
  EXPECT_EQ(c->kill_timeout, 5);
  EXPECT_EQ(c->epilog_timeout, 60);
  EXPECT_EQ(c->reattach_timeout, 0);
  EXPECT_EQ(c->prolog_timeout, 3600);
  EXPECT_EQ(c->shell_exit_timeout, 90);
  // loomd gets plain seconds.
  auto o = loomd_options(*c);
  for (const char* want : {"--exec-kill-timeout=5", "--exec-epilog-timeout=60", "--exec-reattach-timeout=0",
                           "--heartbeat-interval=0.5", "--heartbeat-timeout=2.5", "--frame-timeout=0.25",
                           "--exec-prolog-timeout=3600", "--exec-shell-exit-timeout=90"}) {
    EXPECT_TRUE(has(o, want)) << want;
  }
  // The defaults, as docs/configuration.md gives them.
  auto d = loomd_options(*merge_config({}));
  for (const char* want :
       {"--exec-kill-timeout=5", "--exec-epilog-timeout=60", "--exec-reattach-timeout=60", "--exec-prolog-timeout=60",
        "--exec-shell-exit-timeout=30", "--fanout=2", "--heartbeat-interval=1", "--heartbeat-timeout=10",
        "--frame-timeout=10", "--sched-policy=fcfs", "--sched-backfill-depth=500", "--kvs-synchronous=normal"}) {
    EXPECT_TRUE(has(d, want)) << want;
  }
}

TEST(Config, TakesEasySjbfAndAnUncappedBackfill) {
  auto c = merge_config({file("sched.policy", "easy-sjbf"), setconf("sched.backfill-depth=0")});
  ASSERT_TRUE(c.ok()) << c.error().text;
  auto o = loomd_options(*c);
  EXPECT_TRUE(has(o, "--sched-policy=easy-sjbf"));
  EXPECT_TRUE(has(o, "--sched-backfill-depth=0"));
}

TEST(Config, EachBadValueIsOneLineNamingWhereAndWhat) {
  EXPECT_EQ(merge_error({setconf("exec.kill-timeout=5x")}),
            "--setconf exec.kill-timeout: must be a duration above 0 and at most 365d (seconds, or with a unit: 30s, "
            "5m, 2h, 1d), not \"5x\"");
  EXPECT_EQ(merge_error({file("exec.epilog-timeout", "0")}).rfind("p.toml: exec.epilog-timeout: must be", 0), 0u);
  EXPECT_NE(merge_error({setconf("exec.kill-timeout=inf")}), "");
  EXPECT_NE(merge_error({setconf("exec.kill-timeout=-1")}), "");
  EXPECT_NE(merge_error({setconf("exec.reattach-timeout=400d")}), "");
  EXPECT_NE(merge_error({setconf("exec.kill-timeout=")}), "");
  EXPECT_EQ(merge_error({plain("--fanout", "broker.fanout", "0")}), "--fanout: must be an integer 1-1024, not \"0\"");
  EXPECT_EQ(merge_error({setconf("broker.fanout=2x")}),
            "--setconf broker.fanout: must be an integer 1-1024, not \"2x\"");
  EXPECT_EQ(merge_error({setconf("sched.policy=lifo")}),
            "--setconf sched.policy: must be fcfs, easy or easy-sjbf, not \"lifo\"");
  EXPECT_EQ(merge_error({setconf("sched.backfill-depth=-1")}),
            "--setconf sched.backfill-depth: must be an integer 0-2147483647, not \"-1\"");
  EXPECT_EQ(merge_error({setconf("kvs.synchronous=yes")}),
            "--setconf kvs.synchronous: must be off, normal or full, not \"yes\"");
  EXPECT_EQ(
      merge_error({file("sched.polciy", "fcfs")}).rfind("p.toml: unknown configuration key sched.polciy (known: ", 0),
      0u);
  EXPECT_EQ(merge_error({setconf("broker.heartbeat-interval=20s")}),
            "broker.heartbeat-timeout (10s) must be longer than broker.heartbeat-interval (20s)");
  EXPECT_NE(merge_error({setconf("a b=1")}).find("unknown configuration key \"a b\""), std::string::npos);
  EXPECT_FALSE(parse_setconf("sched.policy").ok());
  EXPECT_FALSE(parse_setconf("=fcfs").ok());
  for (const auto& key : config_keys()) {
    std::string e = merge_error({setconf(key + "=[\nbad")});
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    EXPECT_NE(e.find(key), std::string::npos) << e;
  }
}

TEST(Config, ACommandIsShellTextOrAListAndEmptyMeansNone) {
  auto c = merge_config({file("exec.epilog", "/etc/loom/epilog"), setconf("exec.epilog=")});
  ASSERT_TRUE(c.ok()) << c.error().text;
  EXPECT_EQ(c->epilog, "");
  auto o = loomd_options(*c);
  EXPECT_EQ(std::count_if(o.begin(), o.end(), [](auto& a) { return a.starts_with("--exec-epilog="); }), 0);
  c = merge_config({setconf(R"(exec.epilog=["/bin/true", "x"])"), setconf("exec.prolog=echo hi")});
  ASSERT_TRUE(c.ok()) << c.error().text;
  EXPECT_EQ(c->epilog, R"(["/bin/true","x"])");
  EXPECT_EQ(c->prolog, "echo hi");
  o = loomd_options(*c);
  EXPECT_TRUE(has(o, R"(--exec-epilog=["/bin/true","x"])"));
  EXPECT_TRUE(has(o, "--exec-prolog=echo hi"));
  // The test command in the file is shell text, not a list.
  c = merge_config({file("exec.epilog", "[ -x /etc/e ] && /etc/e")});
  ASSERT_TRUE(c.ok()) << c.error().text;
  EXPECT_EQ(c->epilog, R"(["/bin/sh","-c","[ -x /etc/e ] && /etc/e"])");
  EXPECT_NE(merge_error({setconf("exec.epilog=[]")}), "");
  EXPECT_NE(merge_error({setconf(R"(exec.epilog=[""])")}), "");
  EXPECT_NE(merge_error({setconf("exec.epilog=[1]")}), "");
  EXPECT_NE(merge_error({setconf("exec.prolog=[ -x f ]")}).find("not a JSON list of strings"), std::string::npos);
}

}  // namespace loom::cli
