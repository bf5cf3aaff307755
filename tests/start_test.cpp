// `loom start` as an operator uses it: the configuration merged once in the
// documented precedence and checked before any broker starts, every example
// of docs/configuration.md run as written, and an interrupt (Ctrl-C, or a
// signal to the whole process group) giving the orderly stop.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>

#include "cli/config.h"
#include "kit/exec.h"
#include "kit/instance.h"
#include "kit/jobs.h"
#include "kit/process.h"

namespace loom::test {
namespace {
namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A broker's command line, its arguments one by one.
std::vector<std::string> cmdline(pid_t pid) {
  std::string text = read_text("/proc/" + std::to_string(pid) + "/cmdline");
  std::vector<std::string> args;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\0', start);
    if (end == std::string::npos) end = text.size();
    args.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return args;
}

// The arguments of `args` that begin with `prefix`.
std::vector<std::string> with_prefix(const std::vector<std::string>& args, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& a : args) {
    if (a.starts_with(prefix)) out.push_back(a);
  }
  return out;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/loom-start-test-XXXXXX";
    path_ = ::mkdtemp(tmpl) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = path_ + "/" + name;
    std::ofstream(p) << text;
    return p;
  }

 private:
  std::string path_;
};

// `loom start ARGS... -- true`, to see it refuse a configuration.
CmdResult start_and_exit(std::vector<std::string> args) {
  args.insert(args.begin(), {bin("loom"), "start"});
  args.insert(args.end(), {"--", "true"});
  return run_cmd(args, {{"LOOM_URI", ""}}, 60);
}

// --- configuration merged once -------------------------------------------

class StartConfig : public JobsFixture {
 protected:
  TempDir dir;
  std::vector<std::string> rank0_args() {
    std::string why;
    auto pid = inst.broker_pid(0, &why);
    EXPECT_TRUE(pid) << why;
    return pid ? cmdline(*pid) : std::vector<std::string>{};
  }
  Json rpc(const std::string& topic) {
    auto r = loom({"rpc", topic});
    EXPECT_EQ(r.code, 0) << show(r);
    auto j = parse_json(r.out);
    return j.ok() ? *j : Json::object();
  }
};

// The example of docs/configuration.md crashed rank 0: the file's policy
// and the --setconf one both went to loomd ("At Most 1 required but
// received 2").
TEST_F(StartConfig, SetconfBeatsTheFileForTheSameKey) {
  std::string toml = dir.write("p.toml", "[sched]\npolicy = \"easy\"\n");
  ASSERT_TRUE(inst.start(1, {"--setconf", "sched.policy=fcfs", "--config", toml}));
  EXPECT_EQ(rpc("sched.resource-status").value("policy", ""), "fcfs");
  EXPECT_EQ(with_prefix(rank0_args(), "--sched-policy="), (std::vector<std::string>{"--sched-policy=fcfs"}));
}

TEST_F(StartConfig, TheLaterOfTwoSetconfsOfAKeyWins) {
  ASSERT_TRUE(inst.start(1, {"--setconf", "sched.policy=easy", "--setconf", "sched.policy=fcfs", "--setconf",
                             "kvs.synchronous=full", "--setconf", "kvs.synchronous=off"}));
  EXPECT_EQ(rpc("sched.resource-status").value("policy", ""), "fcfs");
  EXPECT_EQ(with_prefix(rank0_args(), "--kvs-synchronous="), (std::vector<std::string>{"--kvs-synchronous=off"}));
}

// The file's fanout and heartbeat timeout used to beat the plain options.
TEST_F(StartConfig, PlainOptionsBeatTheFileAndSetconf) {
  std::string toml = dir.write("p.toml", "[broker]\nfanout = 3\nheartbeat-timeout = 30\n");
  ASSERT_TRUE(inst.start(
      4, {"--config", toml, "--setconf", "broker.heartbeat-timeout=25", "--fanout=1", "--heartbeat-timeout=20s"}));
  auto r = loom({"rpc", "--rank", "0", "broker.info"});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(parse_json(r.out)->value("fanout", 0), 1) << r.out;
  // A chain with fanout 1: rank 3's parent is rank 2.
  r = loom({"rpc", "--rank", "3", "broker.info"});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(parse_json(r.out)->value("parent", -1), 2) << r.out;
  EXPECT_EQ(with_prefix(rank0_args(), "--heartbeat-timeout="), (std::vector<std::string>{"--heartbeat-timeout=20"}));
}

// These passed the check in `loom start` and then stopped the broker
// ("Value 5s not in range", an empty --exec-epilog).
TEST_F(StartConfig, DurationsTakeUnitsAndAnEmptyEpilogMeansNone) {
  std::string toml = dir.write("p.toml", "[exec]\nepilog = \"exit 3\"\nkill-timeout = \"1m\"\n");
  ASSERT_TRUE(inst.start(
      1, {"--config", toml, "--setconf", "exec.kill-timeout=5s", "--setconf", "exec.epilog-timeout=1m", "--setconf",
          "exec.epilog=", "--setconf", "exec.reattach-timeout=0.5m", "--heartbeat-interval=0.5s"}));
  auto args = rank0_args();
  EXPECT_EQ(with_prefix(args, "--exec-kill-timeout="), (std::vector<std::string>{"--exec-kill-timeout=5"}));
  EXPECT_EQ(with_prefix(args, "--exec-epilog-timeout="), (std::vector<std::string>{"--exec-epilog-timeout=60"}));
  EXPECT_EQ(with_prefix(args, "--exec-reattach-timeout="), (std::vector<std::string>{"--exec-reattach-timeout=30"}));
  EXPECT_EQ(with_prefix(args, "--heartbeat-interval="), (std::vector<std::string>{"--heartbeat-interval=0.5"}));
  EXPECT_TRUE(with_prefix(args, "--exec-epilog=").empty());
  // No epilog runs: the job's rank comes back without an epilog failure.
  std::string id = submit_job({"true"});
  wait_event(id, "clean");
  for (const auto& e : eventlog(id)) EXPECT_NE(e["name"], "exception") << e;
}

// Every broker is given the same configuration, rank 0's services' too.
TEST_F(StartConfig, EveryBrokerGetsTheWholeConfiguration) {
  ASSERT_TRUE(inst.start(2, {"--setconf", "exec.prolog=[\"/bin/true\"]", "--setconf", "exec.shell-exit-timeout=2m"}));
  for (uint32_t rank : {0u, 1u}) {
    std::string why;
    auto pid = inst.broker_pid(rank, &why);
    ASSERT_TRUE(pid) << why;
    auto args = cmdline(*pid);
    EXPECT_EQ(with_prefix(args, "--exec-shell-exit-timeout="),
              (std::vector<std::string>{"--exec-shell-exit-timeout=120"}));
    EXPECT_EQ(with_prefix(args, "--exec-prolog="), (std::vector<std::string>{R"(--exec-prolog=["/bin/true"])"}));
    EXPECT_EQ(with_prefix(args, "--sched-policy="), (std::vector<std::string>{"--sched-policy=fcfs"}));
  }
}

TEST(StartRefuses, ABadSettingWithOneLineAndStartsNothing) {
  TempDir dir;
  std::string toml = dir.write("p.toml", "[exec]\nkill-timeout = \"5 s\"\n");
  struct Case {
    std::vector<std::string> args;
    std::string line;
  } cases[] = {
      {{"--setconf", "exec.kill-timeout=5x"},
       "loom start: --setconf exec.kill-timeout: must be a duration above 0 and at most 365d (seconds, or with a "
       "unit: 30s, 5m, 2h, 1d), not \"5x\""},
      {{"--config", toml},
       "loom start: " + toml +
           ": exec.kill-timeout: must be a duration above 0 and at most 365d (seconds, or with a unit: 30s, 5m, 2h, "
           "1d), not \"5 s\""},
      {{"--setconf", "exec.epilog-timeout=0"}, ""},
      {{"--setconf", "broker.fanout=0"}, "loom start: --setconf broker.fanout: must be an integer 1-1024, not \"0\""},
      {{"--fanout=many"}, "loom start: --fanout: must be an integer 1-1024, not \"many\""},
      {{"--heartbeat-interval=1x"}, ""},
      {{"--setconf", "sched.policy=lifo"},
       "loom start: --setconf sched.policy: must be fcfs, easy or easy-sjbf, not \"lifo\""},
      {{"--setconf", "sched.backfill-depth=-1"},
       "loom start: --setconf sched.backfill-depth: must be an integer 0-2147483647, not \"-1\""},
      {{"--setconf", "exec.epilog=[\"/bin/true\""}, ""},
      {{"--setconf", "broker.heartbeat-interval=20"},
       "loom start: broker.heartbeat-timeout (10s) must be longer than broker.heartbeat-interval (20s)"},
      {{"--setconf", "sched.polcy=fcfs"}, ""},
  };
  for (const auto& c : cases) {
    auto r = start_and_exit(c.args);
    std::string what = c.args.back();
    EXPECT_EQ(r.code, 1) << what << ": " << show(r);
    ASSERT_EQ(r.err_lines().size(), 1u) << what << ": " << show(r);
    EXPECT_TRUE(r.err.starts_with("loom start: ")) << r.err;
    if (!c.line.empty()) {
      EXPECT_EQ(r.err, c.line + "\n");
    }
    EXPECT_EQ(r.out, "");
  }
}

// --- docs/configuration.md, every example as written ------------------------

// The doc's fenced blocks of one language, in order.
std::vector<std::string> fenced(const std::string& doc, const std::string& lang) {
  std::vector<std::string> blocks;
  std::string open = "```" + lang + "\n";
  for (size_t at = doc.find(open); at != std::string::npos; at = doc.find(open, at)) {
    at += open.size();
    size_t end = doc.find("```", at);
    if (end == std::string::npos) break;
    blocks.push_back(doc.substr(at, end - at));
    at = end + 3;
  }
  return blocks;
}

TEST(ConfigurationDoc, EveryExampleRunsAsWritten) {
  std::string doc = read_text(std::string(LOOM_SOURCE_DIR) + "/docs/configuration.md");
  ASSERT_FALSE(doc.empty());
  TempDir dir;
  // The TOML examples, each under the name its first line gives.
  auto tomls = fenced(doc, "toml");
  ASSERT_FALSE(tomls.empty());
  for (const auto& t : tomls) {
    std::smatch m;
    ASSERT_TRUE(std::regex_search(t, m, std::regex("^# ([\\w.-]+\\.toml)\n"))) << "unnamed TOML example:\n" << t;
    dir.write(m[1], t);
  }
  // Every `loom start` line of the shell examples, in that directory, with
  // the loom just built first on PATH. "# prints `TEXT`" after a command
  // is what its output holds.
  std::string path = fs::path(bin("loom")).parent_path().string() + ":" + std::getenv("PATH");
  std::vector<std::pair<std::string, std::string>> commands;  // command, printed text
  for (const auto& block : fenced(doc, "sh")) {
    std::istringstream lines(block);
    for (std::string line; std::getline(lines, line);) {
      if (!line.starts_with("loom start ")) continue;
      std::string comment;
      if (auto hash = line.find("   # "); hash != std::string::npos) {
        comment = line.substr(hash + 5);
        line = line.substr(0, hash);
      }
      std::smatch m;
      std::string prints = std::regex_search(comment, m, std::regex("^prints `([^`]*)`")) ? m[1].str() : "";
      commands.emplace_back(line, prints);
    }
  }
  // And each `--setconf ...` in the text but the form itself, KEY=VALUE.
  std::regex inline_setconf("`(--setconf [^`]*)`");
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), inline_setconf); it != std::sregex_iterator(); ++it) {
    if ((*it)[1].str().find("KEY=VALUE") == std::string::npos) {
      commands.emplace_back("loom start " + (*it)[1].str() + " -- true", "");
    }
  }
  ASSERT_GE(commands.size(), 5u);
  for (const auto& [command, prints] : commands) {
    auto r = run_cmd({"/bin/sh", "-c", "cd " + shell_quote(dir.path()) + " && " + command},
                     {{"PATH", path}, {"LOOM_URI", ""}}, 60);
    EXPECT_EQ(r.code, 0) << command << "\n" << show(r);
    if (!prints.empty()) {
      EXPECT_NE(r.out.find(prints), std::string::npos) << command << " printed:\n" << r.out;
    }
  }
}

TEST(ConfigurationDoc, ItsTableHasEveryKeyAndNoOther) {
  std::string doc = read_text(std::string(LOOM_SOURCE_DIR) + "/docs/configuration.md");
  std::vector<std::string> documented;
  std::regex row("\n\\| `([a-z-]+\\.[a-z-]+)` \\|");
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), row); it != std::sregex_iterator(); ++it) {
    documented.push_back((*it)[1]);
  }
  EXPECT_EQ(documented, cli::config_keys());
}

// --- an interrupt stops the instance in order --------------------------------

// Where the interrupt goes: `loom start` alone, its process group (as a
// terminal's Ctrl-C or `kill %1` sends it), or every broker at once (the
// brokers' own process group).
enum class Target { kStart, kStartGroup, kBrokerGroup };

class StartInterrupt : public JobsFixture, public ::testing::WithParamInterface<Target> {
 protected:
  TempDir dir;
  std::vector<std::string> args() {
    return {"--cores-per-rank=1", "--gpus-per-rank=0", "--state-dir=" + dir.path() + "/state"};
  }
};

// A job of real tasks on every rank runs when the interrupt comes. The job
// ends with an exception, its tasks are gone at once (not after the
// reattach timeout), the brokers stop, children first, and none reports
// another lost.
TEST_P(StartInterrupt, EndsRunningJobsThenStopsTheBrokers) {
  inst.capture_log();
  ASSERT_TRUE(inst.start(3, args()));
  for (int r = 0; r < 3; ++r) ASSERT_EQ(::mkfifo((dir.path() + "/up." + std::to_string(r)).c_str(), 0600), 0);
  std::string id = submit_job({"-N3", "sh", "-c", "echo $$ > " + dir.path() + "/up.$LOOM_RANK; exec sleep 300"});
  std::vector<pid_t> tasks;
  for (int r = 0; r < 3; ++r) {
    auto up = run_cmd({"/bin/cat", dir.path() + "/up." + std::to_string(r)}, {}, 20);
    ASSERT_EQ(up.code, 0) << show(up);
    tasks.push_back(static_cast<pid_t>(std::stol(up.out)));
  }
  pid_t target = inst.pid();
  if (GetParam() == Target::kStartGroup) target = -inst.pid();
  if (GetParam() == Target::kBrokerGroup) {
    std::string why;
    auto rank0 = inst.broker_pid(0, &why);
    ASSERT_TRUE(rank0) << why;
    target = -::getpgid(*rank0);
    ASSERT_NE(-target, inst.pid());
  }
  ASSERT_EQ(::kill(target, SIGINT), 0) << std::strerror(errno);
  auto code = inst.wait_exit(30);
  ASSERT_TRUE(code) << "loom start did not stop";
  // Rank 0 stopping on its own (not asked by loom start) is news to it.
  EXPECT_EQ(*code, GetParam() == Target::kBrokerGroup ? 1 : 0);
  expect_all_exit(tasks);
  EXPECT_EQ(inst.log_count("lost"), 0u) << inst.log();
  EXPECT_EQ(inst.log_count("did not stop"), 0u) << inst.log();
  // The job's end was stored before the brokers stopped.
  ASSERT_TRUE(inst.start(3, args()));
  wait_event(id, "clean");
  bool shut_down = false;
  for (const auto& e : eventlog(id)) {
    if (e["name"] == "exception") {
      EXPECT_EQ(e["context"].value("type", ""), "exec") << e;
      shut_down = shut_down || e["context"].value("note", "").find("shutting down") != std::string::npos;
    }
  }
  EXPECT_TRUE(shut_down) << "no exception saying the instance was shutting down";
}

INSTANTIATE_TEST_SUITE_P(Signal, StartInterrupt,
                         ::testing::Values(Target::kStart, Target::kStartGroup, Target::kBrokerGroup),
                         [](const auto& info) {
                           switch (info.param) {
                             case Target::kStart: return "ToLoomStartAlone";
                             case Target::kStartGroup: return "ToItsProcessGroup";
                             case Target::kBrokerGroup: return "ToEveryBroker";
                           }
                           return "?";
                         });

}  // namespace
}  // namespace loom::test
