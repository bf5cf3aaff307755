// `cmake --install` as an administrator runs it (docs/install.md): the
// files land where the document says, the systemd unit names the
// installed loomd and passes `systemd-analyze verify`, the installed
// binaries find each other, the example configuration is one loomd reads,
// and loomd's log lines carry syslog priorities when stderr is the journal.
//
// One installation into a temporary prefix serves every test.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bootstrap/bootstrap.h"
#include "cli/config.h"
#include "kit/process.h"

namespace loom::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool is_executable(const fs::path& p) { return ::access(p.c_str(), X_OK) == 0 && fs::is_regular_file(p); }

// The environment of an administrator's shell: nothing that points the
// binaries at the build tree or at another instance.
const Env kClean{{"LOOM_BROKER_PATH", ""}, {"LOOM_SHELL_PATH", ""}, {"LOOM_URI", ""}, {"JOURNAL_STREAM", ""}};

class Installed : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = (fs::temp_directory_path() / "loom-install-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    prefix_ = new fs::path(tmpl);
    install_ = new CmdResult(run_cmd({LOOM_CMAKE_COMMAND, "--install", build_dir(), "--prefix", tmpl}, {}, 120));
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(*prefix_, ec);
    delete prefix_;
    delete install_;
  }
  void SetUp() override { ASSERT_EQ(install_->code, 0) << install_->out << install_->err; }

  static fs::path prefix() { return *prefix_; }
  static fs::path unit() { return prefix() / "lib/systemd/system/loomd.service"; }
  static fs::path example() { return prefix() / "share/doc/loom/loom.toml.example"; }

 private:
  static inline fs::path* prefix_ = nullptr;
  static inline CmdResult* install_ = nullptr;
};

TEST_F(Installed, PutsEveryFileWhereTheDocumentSays) {
  for (const char* name : {"loom", "loomd", "loom-shell"}) {
    EXPECT_TRUE(is_executable(prefix() / "bin" / name)) << name;
  }
  EXPECT_TRUE(fs::is_regular_file(unit()));
  EXPECT_TRUE(fs::is_regular_file(example()));
  for (const char* doc : {"install.md", "deploy.md", "configuration.md"}) {
    EXPECT_TRUE(fs::is_regular_file(prefix() / "share/doc/loom" / doc)) << doc;
  }
  // Nothing outside the prefix: /etc/loom/ is the administrator's.
  EXPECT_FALSE(fs::exists(prefix() / "etc"));
}

TEST_F(Installed, TheUnitStartsTheInstalledLoomdWithTheSystemPaths) {
  std::string text = read_text(unit());
  EXPECT_THAT(text, HasSubstr("\nExecStart=" + (prefix() / "bin/loomd").string() +
                              " --config /etc/loom/loom.toml --state-dir /var/lib/loom --rundir /run/loom\n"));
  EXPECT_THAT(text, HasSubstr("\nStateDirectory=loom\n"));
  EXPECT_THAT(text, HasSubstr("\nRuntimeDirectory=loom\n"));
  // Job shells outlive a broker that crashes or is restarted (reattach).
  EXPECT_THAT(text, HasSubstr("\nKillMode=process\n"));
  EXPECT_THAT(text, HasSubstr("\nRestart=on-failure\n"));
  EXPECT_THAT(text, HasSubstr("\nDelegate=yes\n"));
  EXPECT_THAT(text, HasSubstr("\nLimitNOFILE=1048576\n"));
  EXPECT_THAT(text, HasSubstr("\nAfter=network-online.target\n"));
  EXPECT_EQ(text.find('@'), std::string::npos) << "an unconfigured @VARIABLE@ is left:\n" << text;
}

TEST(Staged, ADestdirInstallNamesTheFinalPathsInTheUnit) {
  // A package stages the files under DESTDIR; the unit must name where
  // they will be, not where they were staged.
  std::string tmpl = (fs::temp_directory_path() / "loom-destdir-test-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  fs::path stage = tmpl;
  auto r =
      run_cmd({LOOM_CMAKE_COMMAND, "--install", build_dir(), "--prefix", "/usr"}, {{"DESTDIR", stage.string()}}, 120);
  std::string unit = read_text(stage / "usr/lib/systemd/system/loomd.service");
  bool loomd = is_executable(stage / "usr/bin/loomd");
  std::error_code ec;
  fs::remove_all(stage, ec);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_TRUE(loomd);
  EXPECT_THAT(unit, HasSubstr("\nExecStart=/usr/bin/loomd --config /etc/loom/loom.toml "));
}

TEST_F(Installed, SystemdAnalyzeVerifiesTheUnit) {
  const char* analyze = "/usr/bin/systemd-analyze";
  if (::access(analyze, X_OK) != 0) GTEST_SKIP() << "no " << analyze << " here: the unit is not verified";
  // It checks that ExecStart's program exists and is executable: the
  // unit names the one just installed.
  auto r = run_cmd({analyze, "verify", unit().string()});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  // It reports some problems (an unknown key, say) only as warnings.
  EXPECT_THAT(r.out + r.err, ::testing::Not(HasSubstr("loomd.service:"))) << r.out << r.err;
}

TEST_F(Installed, TheInstalledBinariesFindEachOther) {
  // `loom start` finds loomd beside itself, and loomd finds loom-shell
  // beside itself (/proc/self/exe): a real job runs on both ranks.
  fs::path loom = prefix() / "bin/loom";
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  auto h =
      run_cmd({loom.string(), "start", "--test-size=2", "--", loom.string(), "run", "-N2", "hostname"}, kClean, 60);
  ASSERT_EQ(h.code, 0) << h.out << h.err;
  EXPECT_EQ(h.out, std::string(host) + "\n" + host + "\n") << h.err;
}

TEST_F(Installed, TheExampleConfigurationIsOneLoomdReads) {
  auto boot = read_bootstrap_file(example().string());
  ASSERT_TRUE(boot.ok()) << boot.error().text;
  EXPECT_EQ(boot->hosts, (std::vector<std::string>{"node1", "node2", "login"}));
  EXPECT_EQ(boot->port, 8050);
  EXPECT_EQ(boot->cert_path(2), "/etc/loom/certs/login.crt");
  // Its other tables are those of docs/configuration.md, each key valid.
  auto settings = cli::read_config_file(example().string());
  ASSERT_TRUE(settings.ok()) << settings.error().text;
  std::vector<cli::Setting> rest;
  for (const auto& s : *settings) {
    if (!s.key.starts_with("bootstrap.")) rest.push_back(s);
  }
  EXPECT_GE(rest.size(), 3u);
  auto merged = cli::merge_config(rest);
  EXPECT_TRUE(merged.ok()) << merged.error().text;
}

// loomd's stderr as systemd gives it to a service: JOURNAL_STREAM names
// it. Runs `loom start` with the brokers' stderr appended to `log`.
CmdResult start_with_stderr(const fs::path& loom, const fs::path& log, const std::string& journal_stream) {
  Env env = kClean;
  env.emplace_back("JOURNAL_STREAM", journal_stream);
  env.emplace_back("LOOM_TEST_LOG", log.string());
  return run_cmd({"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>>\"$LOOM_TEST_LOG\"", loom.string(), "start", "--test-size=2",
                  "--log-level=debug", "--", "true"},
                 env, 60);
}

// The lines that loomd wrote (those naming a broker).
std::vector<std::string> broker_lines(const fs::path& log) {
  std::vector<std::string> lines;
  for (auto& l : split_lines(read_text(log))) {
    if (l.find("loomd[") != std::string::npos) lines.push_back(l);
  }
  return lines;
}

TEST_F(Installed, LoomdLogsPrioritiesWithoutTimesWhenStderrIsTheJournal) {
  fs::path log = prefix() / "journal.log";
  std::ofstream(log).close();
  struct stat st {};
  ASSERT_EQ(::stat(log.c_str(), &st), 0);
  auto r = start_with_stderr(prefix() / "bin/loom", log, std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
  ASSERT_EQ(r.code, 0) << r.out << read_text(log);
  auto lines = broker_lines(log);
  ASSERT_FALSE(lines.empty()) << read_text(log);
  bool debug = false, info = false;
  for (const auto& l : lines) {
    EXPECT_TRUE(l.size() > 3 && l[0] == '<' && l[2] == '>' && l.substr(3, 6) == "loomd[") << l;
    debug |= l.starts_with("<7>") && l.find(" debug: ") != std::string::npos;
    info |= l.starts_with("<6>") && l.find(" info: ") != std::string::npos;
  }
  EXPECT_TRUE(debug && info) << read_text(log);
}

TEST_F(Installed, LoomdKeepsItsTimestampsWhenJournalStreamIsNotItsStderr) {
  // A process started from a service inherits JOURNAL_STREAM even when
  // its stderr goes elsewhere.
  fs::path log = prefix() / "elsewhere.log";
  std::ofstream(log).close();
  struct stat st {};
  ASSERT_EQ(::stat(log.c_str(), &st), 0);
  auto r =
      start_with_stderr(prefix() / "bin/loom", log, std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1));
  ASSERT_EQ(r.code, 0) << r.out << read_text(log);
  auto lines = broker_lines(log);
  ASSERT_FALSE(lines.empty()) << read_text(log);
  for (const auto& l : lines) {
    // 2026-12-05T00:16:12.345 loomd[0] debug: ...
    EXPECT_TRUE(l.size() > 24 && l[4] == '-' && l[10] == 'T' && l.substr(23, 7) == " loomd[") << l;
  }
}

}  // namespace
}  // namespace loom::test
