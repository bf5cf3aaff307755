// `cmake --install` as an administrator runs it (docs/install.md): the
// files land where the document says, the systemd unit names the
// installed loomd and passes `systemd-analyze verify`, the man pages list
// every command and option the binaries have and render without warnings,
// bash completes loom's subcommands and options, the installed binaries
// find each other, the example configuration is one loomd reads, and
// loomd's log lines carry syslog priorities when stderr is the journal.
//
// One installation into a temporary prefix serves every test.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

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
  static fs::path man_page(const std::string& page) {
    return prefix() / "share/man" / ("man" + page.substr(page.size() - 1)) / page;
  }
  static fs::path completion() { return prefix() / "share/bash-completion/completions/loom"; }

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
  EXPECT_TRUE(fs::is_regular_file(man_page("loom.1")));
  EXPECT_TRUE(fs::is_regular_file(man_page("loomd.8")));
  EXPECT_TRUE(fs::is_regular_file(man_page("loom-shell.8")));
  EXPECT_TRUE(fs::is_regular_file(completion()));
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

// The names of the entries of one section ("Subcommands:", "Options:")
// of a CLI11 --help: the first word of each line indented by two spaces.
std::vector<std::string> help_entries(const std::string& help, const std::string& section) {
  std::vector<std::string> names;
  bool in = false;
  for (const auto& l : split_lines(help)) {
    if (!l.empty() && l[0] != ' ' && l.back() == ':') {
      in = l == section;
    } else if (in && l.size() > 2 && l.starts_with("  ") && l[2] != ' ') {
      names.push_back(l.substr(2, l.find(' ', 2) - 2));
    }
  }
  return names;
}

// How a man page writes an option name: hyphens as \-.
std::string roff_name(const std::string& name) {
  std::string r;
  for (char c : name) r += c == '-' ? std::string("\\-") : std::string(1, c);
  return r;
}

// One command of loom's tree as its --help shows it.
struct CommandHelp {
  std::vector<std::string> words;  // {"kvs", "eventlog", "get"}; {} for loom itself
  std::string title;               // "loom kvs eventlog get"
  std::vector<std::string> options, subcommands;
};
// Calls `visit` for `loom` itself and every command and nested command
// under it, from what each --help lists (any failing --help fails the test).
void each_command(const fs::path& loom, const std::function<void(const CommandHelp&)>& visit) {
  std::vector<std::vector<std::string>> todo{{}};
  while (!todo.empty()) {
    CommandHelp c;
    c.words = todo.back();
    todo.pop_back();
    std::vector<std::string> argv{loom.string()};
    argv.insert(argv.end(), c.words.begin(), c.words.end());
    argv.push_back("--help");
    auto help = run_cmd(argv, kClean);
    c.title = "loom";
    for (const auto& w : c.words) c.title += " " + w;
    ASSERT_EQ(help.code, 0) << c.title << ": " << help.err;
    c.options = help_entries(help.out, "Options:");
    c.subcommands = help_entries(help.out, "Subcommands:");
    for (const auto& sub : c.subcommands) {
      auto w = c.words;
      w.push_back(sub);
      todo.push_back(w);
    }
    visit(c);
  }
}

TEST_F(Installed, TheManPageOfLoomHasASectionForEveryCommand) {
  // Every command that `loom --help` lists, and every nested one
  // (`loom job attach`, `loom kvs eventlog get`), with its options.
  fs::path loom = prefix() / "bin/loom";
  std::string page = read_text(man_page("loom.1"));
  ASSERT_THAT(page, HasSubstr(".TH LOOM 1 "));
  auto top = run_cmd({loom.string(), "--help"}, kClean);
  ASSERT_EQ(top.code, 0) << top.err;
  ASSERT_GE(help_entries(top.out, "Subcommands:").size(), 10u) << top.out;
  size_t nested = 0;
  each_command(loom, [&](const CommandHelp& c) {
    if (c.words.empty()) return;  // loom itself: the page's SYNOPSIS
    if (c.words.size() > 1) ++nested;
    auto at = page.find("\n.SS \"" + c.title + "\"\n");
    EXPECT_NE(at, std::string::npos) << "loom.1 has no section for " << c.title;
    if (at == std::string::npos) return;
    std::string section = page.substr(at, page.find("\n.S", at + 1) - at);
    for (const auto& o : c.options) {
      if (o == "-h,--help") continue;  // said once, under OPTIONS
      // "-l,--label-io": in bold, as a tag of the command's section.
      EXPECT_NE(section.find("\n\\fB" + roff_name(o) + "\\fR"), std::string::npos)
          << "the section of " << c.title << " does not list " << o << ":\n"
          << section;
    }
  });
  EXPECT_GE(nested, 10u);
  // What the page says besides the commands.
  EXPECT_THAT(page, HasSubstr("\n.SH ENVIRONMENT\n.TP\n.B LOOM_URI\n"));
  EXPECT_THAT(page, HasSubstr("/run/loom/local.sock"));
  // SEE ALSO names the documentation as installed, in this prefix.
  EXPECT_THAT(page, HasSubstr(".IR " + (prefix() / "share/doc/loom").string() + " :"));
  EXPECT_EQ(page.find('@'), std::string::npos) << "an unconfigured @VARIABLE@ is left";
}

TEST_F(Installed, TheManPageOfLoomdListsEveryOption) {
  auto help = run_cmd({(prefix() / "bin/loomd").string(), "--help"}, kClean);
  ASSERT_EQ(help.code, 0) << help.err;
  std::string page = read_text(man_page("loomd.8"));
  ASSERT_THAT(page, HasSubstr(".TH LOOMD 8 "));
  auto options = help_entries(help.out, "Options:");
  EXPECT_GE(options.size(), 20u) << help.out;
  for (const auto& o : options) {
    EXPECT_NE(page.find("\n\\fB" + roff_name(o) + "\\fR"), std::string::npos) << "loomd.8 does not list " << o;
  }
  EXPECT_THAT(page, HasSubstr(".IR " + (prefix() / "share/doc/loom").string() + " :"));
  EXPECT_EQ(page.find('@'), std::string::npos) << "an unconfigured @VARIABLE@ is left";
}

TEST_F(Installed, TheManPageOfLoomShellHasItsUsage) {
  // loom-shell has no --help to make a page from: its page is written by
  // hand, and its SYNOPSIS is what loom-shell says it takes.
  auto r = run_cmd({(prefix() / "bin/loom-shell").string()}, kClean);
  EXPECT_EQ(r.code, 2);
  ASSERT_THAT(r.err, HasSubstr("usage: loom-shell JOBID ")) << r.err;
  std::string page = read_text(man_page("loom-shell.8"));
  EXPECT_THAT(page, HasSubstr("\n.SH SYNOPSIS\n.B loom\\-shell\n.I JOBID\n.SH "));
  EXPECT_THAT(page, HasSubstr(".IR " + (prefix() / "share/doc/loom").string() + " :"));
  EXPECT_EQ(page.find('@'), std::string::npos) << "an unconfigured @VARIABLE@ is left";
}

// loom-CMD(1) for every command `loom --help` lists, with each option of
// the command and of its nested commands; `man loom-submit` finds it.
TEST_F(Installed, EveryCommandHasAManPageOfItsOwn) {
  fs::path loom = prefix() / "bin/loom";
  auto top = run_cmd({loom.string(), "--help"}, kClean);
  ASSERT_EQ(top.code, 0) << top.err;
  auto commands = help_entries(top.out, "Subcommands:");
  ASSERT_GE(commands.size(), 10u) << top.out;
  for (const auto& c : commands) {
    fs::path file = man_page("loom-" + c + ".1");
    ASSERT_TRUE(fs::is_regular_file(file)) << file;
    std::string page = read_text(file);
    std::string upper = "LOOM\\-";
    for (char ch : c) upper += ch == '-' ? std::string("\\-") : std::string(1, static_cast<char>(std::toupper(ch)));
    EXPECT_THAT(page, HasSubstr(".TH " + upper + " 1 ")) << c;
    EXPECT_THAT(page, HasSubstr("\n.SH NAME\nloom\\-" + c + " \\- ")) << c;
    auto help = run_cmd({loom.string(), c, "--help"}, kClean);
    ASSERT_EQ(help.code, 0) << c << ": " << help.err;
    for (const auto& o : help_entries(help.out, "Options:")) {
      if (o == "-h,--help") continue;
      EXPECT_NE(page.find("\n\\fB" + roff_name(o) + "\\fR"), std::string::npos) << "loom-" << c << ".1 lacks " << o;
    }
    for (const auto& sub : help_entries(help.out, "Subcommands:")) {
      EXPECT_NE(page.find("\n.SS \"loom " + c + " " + sub + "\"\n"), std::string::npos)
          << "loom-" << c << ".1 lacks loom " << c << " " << sub;
    }
    EXPECT_EQ(page.find('@'), std::string::npos) << "an unconfigured @VARIABLE@ is left in loom-" << c << ".1";
  }
  if (::access("/usr/bin/man", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/man here: `man loom-submit` not tried";
  auto r = run_cmd({"/usr/bin/man", "-w", "loom-submit"}, {{"MANPATH", (prefix() / "share/man").string()}});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, man_page("loom-submit.1").string() + "\n");
}

TEST_F(Installed, TheManPagesRenderWithoutWarnings) {
  bool checked = false;
  std::vector<std::string> pages = {"loom.1", "loomd.8", "loom-shell.8"};
  for (const auto& e : fs::directory_iterator(prefix() / "share/man/man1")) {
    if (e.path().filename().string().starts_with("loom-")) pages.push_back(e.path().filename().string());
  }
  EXPECT_GE(pages.size(), 13u);
  for (const auto& page : pages) {
    std::string file = man_page(page).string();
    if (::access("/usr/bin/groff", X_OK) == 0) {
      // -ww: every warning groff has.
      auto r = run_cmd({"/usr/bin/groff", "-ww", "-z", "-man", "-Tutf8", file});
      EXPECT_EQ(r.code, 0) << page << ": " << r.err;
      EXPECT_EQ(r.err, "") << page;
      checked = true;
    }
    if (::access("/usr/bin/man", X_OK) == 0) {
      auto r = run_cmd({"/usr/bin/man", "--warnings", "-l", file}, {{"MANWIDTH", "80"}, {"MANPAGER", "cat"}});
      EXPECT_EQ(r.code, 0) << page << ": " << r.err;
      EXPECT_EQ(r.err, "") << page;
      checked = true;
      if (page == "loom.1") {
        EXPECT_THAT(r.out, HasSubstr("loom job attach"));
        EXPECT_THAT(r.out, HasSubstr("loom resource list"));
      }
    }
  }
  if (!checked) GTEST_SKIP() << "neither /usr/bin/groff nor /usr/bin/man here: the pages are not rendered";
}

// COMPREPLY for the command line `words` (the last one being completed),
// from the installed completion script in bash, as bash's completion
// calls the function: the words sorted, on one line; nothing at all for
// none. PATH has no loom: the completion runs none.
CmdResult complete(const fs::path& script, const std::vector<std::string>& words) {
  std::vector<std::string> argv{"/bin/bash", "--norc", "-c",
                                "source \"$0\" && COMP_WORDS=(\"$@\") && COMP_CWORD=$(($# - 1)) && _loom && "
                                "if ((${#COMPREPLY[@]})); then printf '%s\\n' \"${COMPREPLY[@]}\" | "
                                "LC_ALL=C sort | paste -sd ' '; fi",
                                script.string()};
  argv.insert(argv.end(), words.begin(), words.end());
  Env env = kClean;
  env.emplace_back("PATH", "/usr/bin:/bin");
  return run_cmd(argv, env);
}

TEST_F(Installed, BashCompletesSubcommandsAndOptions) {
  auto p = run_cmd({"/bin/bash", "--norc", "-c", "source \"$0\" && complete -p loom", completion().string()}, kClean);
  EXPECT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(p.out, "complete -F _loom loom\n") << p.err;
  auto r = complete(completion(), {"loom", "sub"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out, "submit\n");
  EXPECT_EQ(complete(completion(), {"loom", "jo"}).out, "job jobs\n");
  EXPECT_EQ(complete(completion(), {"loom", "submit", "--ur"}).out, "--urgency\n");
  EXPECT_EQ(complete(completion(), {"loom", "job", ""}).out,
            "attach eventlog info kill purge status urgency wait wait-event\n");
  // Nested subcommands, and the options of the command typed so far.
  EXPECT_EQ(complete(completion(), {"loom", "job", "at"}).out, "attach\n");
  EXPECT_EQ(complete(completion(), {"loom", "resource", "li"}).out, "list\n");
  EXPECT_EQ(complete(completion(), {"loom", "kvs", "eventlog", "wait"}).out, "wait-event\n");
  EXPECT_EQ(complete(completion(), {"loom", "job", "attach", "--lab"}).out, "--label-io\n");
  EXPECT_EQ(complete(completion(), {"loom", "run", "-N2", "--time"}).out, "--time-limit\n");
}

TEST_F(Installed, BashCompletionKnowsOptionValuesAndTheCommandToRun) {
  // An option's value is not a subcommand, separate or after "=" (which
  // bash makes a word of its own).
  EXPECT_EQ(complete(completion(), {"loom", "submit", "-t", "5m", "--ur"}).out, "--urgency\n");
  EXPECT_EQ(complete(completion(), {"loom", "submit", "--urgency", "=", "hold", "--job"}).out, "--job-name\n");
  EXPECT_EQ(complete(completion(), {"loom", "kvs", "--namespace", "job", "ge"}).out, "get\n");
  EXPECT_EQ(complete(completion(), {"loom", "submit", "--output", ""}).out, "");
  // What loom run, loom submit and loom start -- run is a command line of
  // its own: not loom's options, unless it is loom.
  EXPECT_EQ(complete(completion(), {"loom", "run", "-N2", "hostname", "--lab"}).out, "");
  EXPECT_EQ(complete(completion(), {"loom", "start", "--test-size=2", "--", "loom", "job", "at"}).out, "attach\n");
  EXPECT_EQ(complete(completion(), {"loom", "start", "--", "loom", "run", "-N", "2", "--lab"}).out, "--label-io\n");
}

TEST_F(Installed, BashCompletionLoadsThroughBashCompletion) {
  const char* loader = "/usr/share/bash-completion/bash_completion";
  if (::access(loader, R_OK) != 0) GTEST_SKIP() << "no " << loader << " here: loading on demand not tried";
  // As an interactive shell with bash-completion has it: the completion
  // is found under PREFIX/share (docs/install.md) when `loom` is first
  // completed, and the command that loom run runs is completed by that
  // command's own completion (ls: its options).
  std::string script =
      "source \"$0\" && __load_completion loom && complete -p loom && "
      "c() { COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); COMP_LINE=\"$*\"; COMP_POINT=${#COMP_LINE}; _loom; "
      "printf '%s\\n' \"${COMPREPLY[@]}\" | LC_ALL=C sort -u | paste -sd ' '; } && "
      "c loom job at && c loom run -N2 ls --al";
  Env env = kClean;
  env.emplace_back("PATH", (prefix() / "bin").string() + ":/usr/bin:/bin");
  env.emplace_back("XDG_DATA_DIRS", (prefix() / "share").string());
  env.emplace_back("HOME", prefix().string());
  auto r = run_cmd({"/bin/bash", "--norc", "-c", script, loader}, env);
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  auto lines = split_lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out << r.err;
  EXPECT_EQ(lines[0], "complete -F _loom loom");
  EXPECT_EQ(lines[1], "attach");
  EXPECT_THAT(lines[2], HasSubstr("--all")) << r.err;
}

// The completion offers what the binary's --help lists, for every command
// and nested one: it is made from it at build time, and must not drift.
TEST_F(Installed, BashCompletionOffersWhatHelpListsForEveryCommand) {
  fs::path loom = prefix() / "bin/loom";
  size_t commands = 0;
  auto line = [](std::vector<std::string> names) {
    std::sort(names.begin(), names.end());
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : " ") + n;
    return out.empty() ? out : out + "\n";
  };
  each_command(loom, [&](const CommandHelp& c) {
    std::vector<std::string> options;
    for (const auto& o : c.options) {
      std::stringstream names(o);
      for (std::string n; std::getline(names, n, ',');) options.push_back(n);
    }
    std::vector<std::string> typed{"loom"};
    typed.insert(typed.end(), c.words.begin(), c.words.end());
    typed.push_back("-");
    EXPECT_EQ(complete(completion(), typed).out, line(options)) << c.title;
    if (!c.subcommands.empty()) {
      typed.back() = "";
      EXPECT_EQ(complete(completion(), typed).out, line(c.subcommands)) << c.title;
    }
    ++commands;
  });
  EXPECT_GE(commands, 40u);
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
