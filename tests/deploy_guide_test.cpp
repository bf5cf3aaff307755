// docs/deploy.md, "From three hosts to `loom run -N3 hostname`", run as
// written on three simulated hosts (kit/netns.h) named as the guide names
// them: node1, node2 and login. The commands and the configuration file
// are read from the guide itself (LOOM_DEPLOY_GUIDE names another copy),
// so the test breaks when the guide's commands stop working.
//
// Each host has its own /etc/loom, /run/loom and /var/lib/loom (private
// directories bind-mounted in its mount namespace), as real hosts have.
// `ssh HOST CMD...` and `scp SRC... HOST:DST` are small scripts first in
// PATH: ssh runs CMD in HOST, scp copies this host's files into HOST's.
// The block is bash (brace expansion), as an administrator's shell is; it
// is split by its comments: `# on node1` runs on node1 as a
// script, `# on each host (node1 with ARGS)` starts its command in every
// host (node1's with ARGS), `# on any host` runs on every host in turn.
//
// Needs root (ctest label `cluster`); skipped with the reason otherwise.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "hostlist/hostlist.h"
#include "kit/netns.h"
#include "kit/process.h"

namespace loom::test {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kHosts = {"node1", "node2", "login"};
// The directories each host has of its own.
const std::vector<std::pair<std::string, std::string>> kPrivate = {
    {"/etc/loom", "etc-loom"}, {"/run/loom", "run-loom"}, {"/var/lib/loom", "var-lib-loom"}};

std::string guide_path() {
  if (const char* p = std::getenv("LOOM_DEPLOY_GUIDE"); p && *p) return p;
  return std::string(LOOM_SOURCE_DIR) + "/docs/deploy.md";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The text of the section under `heading` (a "## " line), to the next one;
// "" if there is none.
std::string section(const std::string& doc, const std::string& heading) {
  size_t begin = doc.find("\n" + heading + "\n");
  if (begin == std::string::npos) return "";
  begin += heading.size() + 2;
  size_t end = doc.find("\n## ", begin);
  return doc.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

// The first ```LANG block of `text`, without its fences; "" if none.
std::string first_block(const std::string& text, const std::string& lang) {
  std::string fence = "```" + lang + "\n";
  size_t begin = text.find(fence);
  if (begin == std::string::npos) return "";
  begin += fence.size();
  size_t end = text.find("\n```", begin - 1);
  if (end == std::string::npos) return "";
  return text.substr(begin, end + 1 - begin);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = s.find_first_not_of(" \t");
  return i == std::string::npos ? "" : s.substr(i);
}

// The hosts `hosts = [...]` of a [bootstrap] table names, expanded.
std::vector<std::string> bootstrap_hosts(const std::string& toml) {
  std::vector<std::string> out;
  for (const auto& line : lines_of(toml)) {
    if (!std::regex_search(line, std::regex("^hosts\\s*="))) continue;
    std::regex quoted("\"([^\"]*)\"");
    for (auto it = std::sregex_iterator(line.begin(), line.end(), quoted); it != std::sregex_iterator(); ++it) {
      auto list = Hostlist::parse((*it)[1].str());
      if (!list.ok()) return {"(bad hostlist " + (*it)[1].str() + ")"};
      out.insert(out.end(), list->hosts().begin(), list->hosts().end());
    }
  }
  return out;
}

// A part of the guide's block: where its comment says it runs, that
// comment, and its lines.
struct Part {
  std::string where;  // a host's name, "each host" or "any host"
  std::string comment;
  std::vector<std::string> lines;
};

std::vector<Part> split(const std::string& block, std::string* error) {
  std::vector<Part> parts;
  std::regex marker("^# on (each host|any host|[A-Za-z0-9._-]+)\\b(.*)$");
  for (const auto& line : lines_of(block)) {
    std::smatch m;
    if (std::regex_match(line, m, marker)) {
      parts.push_back({m[1].str(), line, {}});
    } else if (parts.empty()) {
      if (!trim(line).empty()) *error = "a line before any `# on HOST` comment: " + line;
    } else {
      parts.back().lines.push_back(line);
    }
  }
  return parts;
}

std::string joined_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// `text` as one word of sh.
std::string sh_quote(const std::string& text) {
  std::string out = "'";
  for (char ch : text) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.insert(e.path().filename().string());
  return out;
}

class DeployGuide : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = Hosts::unavailable(); !why.empty()) GTEST_SKIP() << why;
    char tmpl[] = "/tmp/loom-guide-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(hosts_.create(kHosts));
    for (size_t i = 0; i < kHosts.size(); ++i) {
      for (const auto& [path, name] : kPrivate) ASSERT_TRUE(hosts_.add_private_dir(i, path, own(i, name)));
    }
    fs::create_directories(dir_ + "/bin");
    fs::create_directories(dir_ + "/xdg");
    write_ssh_and_scp();
  }

  void TearDown() override {
    for (auto& b : brokers_) {
      if (b) b->signal(SIGKILL);
    }
    brokers_.clear();
    (void)hosts_.destroy();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  // Host i's own directory for a path of kPrivate, seen from the machine.
  std::string own(size_t i, const std::string& name) const { return dir_ + "/" + kHosts[i] + "/" + name; }

  // ssh HOST CMD...: CMD (words joined, as ssh does) run by sh in HOST.
  // scp SRC... HOST:DST: each SRC of this host written into HOST's DST (a
  // directory, or the file's new name), its mode kept.
  void write_ssh_and_scp() {
    std::string ssh =
        "#!/bin/sh\n# ssh HOST CMD... for deploy_guide_test's simulated hosts\nhost=$1\nshift\ncase $host in\n";
    for (size_t i = 0; i < kHosts.size(); ++i) {
      ssh += "  " + kHosts[i] + ") exec";
      for (const auto& w : hosts_.enter(i)) ssh += " " + sh_quote(w);
      ssh += " sh -c \"$*\" ;;\n";
    }
    ssh += "  *) echo \"ssh: Could not resolve hostname $host\" >&2; exit 255 ;;\nesac\n";
    std::string scp = R"(#!/bin/sh
# scp SRC... HOST:DST for deploy_guide_test's simulated hosts
[ $# -ge 2 ] || { echo "usage: scp SRC... HOST:DST" >&2; exit 1; }
for last; do :; done
case $last in *:*) ;; *) echo "scp: $last: not HOST:DST" >&2; exit 1 ;; esac
host=${last%%:*}
dst=${last#*:}
while [ $# -gt 1 ]; do
  src=$1
  shift
  [ -f "$src" ] || { echo "scp: $src: No such file or directory" >&2; exit 1; }
  mode=$(stat -c %a "$src")
  name=${src##*/}
  "${0%/*}/ssh" "$host" "d='$dst'; if [ -d \"\$d\" ]; then d=\"\$d/$name\"; fi; (umask 077; cat > \"\$d\") && chmod $mode \"\$d\"" < "$src" || exit 1
done
)";
    for (const auto& [name, text] : {std::pair{"ssh", ssh}, std::pair{"scp", scp}}) {
      std::string path = dir_ + "/bin/" + name;
      std::ofstream(path) << text;
      fs::permissions(path, fs::perms::owner_all);
    }
  }

  // What an administrator's shell on a host has: ssh and scp first in
  // PATH, then loom's binaries; no LOOM_URI nor a `loom start` instance to
  // find instead of /run/loom.
  Env env() const {
    std::string path = std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin";
    return {{"PATH", dir_ + "/bin:" + fs::path(bin("loom")).parent_path().string() + ":" + path},
            {"LOOM_URI", ""},
            {"XDG_RUNTIME_DIR", dir_ + "/xdg"}};
  }

  size_t host_index(const std::string& name) const {
    return static_cast<size_t>(std::find(kHosts.begin(), kHosts.end(), name) - kHosts.begin());
  }

  std::string broker_logs() {
    std::string logs;
    for (size_t i = 0; i < brokers_.size(); ++i) {
      if (!brokers_[i]) continue;
      brokers_[i]->wait_for_err("\x01", 0.2);  // reads what is there
      logs += "\n" + kHosts[i] + ": " + brokers_[i]->so_far().err;
    }
    return logs;
  }

  // Every rank online: node1's socket, then broker.wait-ready there.
  ::testing::AssertionResult wait_ready(double timeout = 30) {
    if (!wait_created(own(0, "run-loom"), "local.sock", timeout)) {
      return ::testing::AssertionFailure() << "no /run/loom/local.sock on node1" << broker_logs();
    }
    auto r = hosts_.run(0, {"loom", "rpc", "--timeout", std::to_string(static_cast<int>(timeout)), "broker.wait-ready"},
                        env(), timeout + 5);
    if (r.code != 0) return ::testing::AssertionFailure() << "not ready: " << r.out << r.err << broker_logs();
    return ::testing::AssertionSuccess();
  }

  std::string dir_;
  Hosts hosts_;
  std::vector<std::unique_ptr<Background>> brokers_;
};

TEST_F(DeployGuide, ThreeHostsToLoomRunAsWritten) {
  std::string doc = slurp(guide_path());
  ASSERT_FALSE(doc.empty()) << "cannot read " << guide_path();
  std::string toml = first_block(section(doc, "## Bootstrap configuration"), "toml");
  ASSERT_FALSE(toml.empty()) << guide_path() << ": no ```toml block under \"## Bootstrap configuration\"";
  ASSERT_EQ(bootstrap_hosts(toml), kHosts) << "the guide's example must name the hosts its commands use:\n" << toml;
  std::string block = first_block(section(doc, "## From three hosts to `loom run -N3 hostname`"), "bash");
  ASSERT_FALSE(block.empty()) << guide_path() << ": no ```bash block under \"## From three hosts to ...\"";
  std::string error;
  auto parts = split(block, &error);
  ASSERT_EQ(error, "");
  ASSERT_FALSE(parts.empty());

  // As the guide starts: the file in /etc/loom/loom.toml on node1.
  std::ofstream(own(0, "etc-loom") + "/loom.toml") << toml;

  bool ran_status = false, ran_job = false;
  for (const auto& part : parts) {
    SCOPED_TRACE(part.comment);
    std::string script = joined_lines(part.lines);
    if (part.where == "each host") {
      // One command, started in the background on every host: ARGS added
      // on the host the comment names, "(HOST with ARGS)".
      std::vector<std::string> commands;
      for (const auto& l : part.lines) {
        if (!trim(l).empty() && !trim(l).starts_with("#")) commands.push_back(trim(l));
      }
      ASSERT_EQ(commands.size(), 1u) << "one command per host expected:\n" << script;
      std::string command = commands[0];
      ASSERT_TRUE(command.ends_with("&")) << "a broker started in the background expected: " << command;
      command = trim(command.substr(0, command.size() - 1));
      std::smatch m;
      std::map<size_t, std::string> extra;
      if (std::regex_search(part.comment, m, std::regex("\\(([A-Za-z0-9._-]+) with ([^)]*)\\)"))) {
        size_t i = host_index(m[1].str());
        ASSERT_LT(i, kHosts.size()) << "the comment names a host that is not in the example: " << m[1];
        extra[i] = " " + m[2].str();
      }
      brokers_.resize(kHosts.size());
      for (size_t i = kHosts.size(); i-- > 0;) {
        brokers_[i] = hosts_.spawn(i, {"bash", "-c", "exec " + command + extra[i]}, env());
      }
      ASSERT_TRUE(wait_ready());
    } else if (part.where == "any host") {
      // Each command on every host in turn, checked one by one.
      for (size_t i = 0; i < kHosts.size(); ++i) {
        for (const auto& l : part.lines) {
          std::string line = trim(l);
          if (line.empty() || line.starts_with("#")) continue;
          auto r = hosts_.run(i, {"bash", "-c", line}, env(), 90);
          EXPECT_EQ(r.code, 0) << "on " << kHosts[i] << ": " << line << "\n" << r.out << r.err << broker_logs();
          if (line == "loom status") ran_status = true;
          if (line == "loom run -N3 hostname") {
            ran_job = true;
            auto names = r.out_lines();
            std::sort(names.begin(), names.end());
            EXPECT_EQ(names, (std::vector<std::string>{"login", "node1", "node2"})) << "on " << kHosts[i] << ":\n"
                                                                                    << r.out << r.err;
          }
        }
      }
    } else {
      size_t i = host_index(part.where);
      ASSERT_LT(i, kHosts.size()) << "a part for a host not in the example: " << part.where;
      auto r = hosts_.run(i, {"bash", "-e", "-x", "-c", script}, env(), 120);
      ASSERT_EQ(r.code, 0) << "on " << part.where << ":\n" << script << "\n" << r.out << r.err;
    }
  }
  EXPECT_TRUE(ran_status) << "the guide's block has no `loom status` under `# on any host`";
  EXPECT_TRUE(ran_job) << "the guide's block has no `loom run -N3 hostname` under `# on any host`";

  // What each host ends with: the file, the CA's certificate, its own
  // certificate and key; the CA's key on node1 only, no other host's key.
  std::map<std::string, std::set<std::string>> expected = {
      {"node1", {"ca.crt", "ca.key", "node1.crt", "node1.key"}},
      {"node2", {"ca.crt", "node2.crt", "node2.key"}},
      {"login", {"ca.crt", "login.crt", "login.key"}},
  };
  for (size_t i = 0; i < kHosts.size(); ++i) {
    const auto& h = kHosts[i];
    EXPECT_EQ(files_in(own(i, "etc-loom") + "/certs"), expected[h]) << h << ": /etc/loom/certs";
    EXPECT_EQ(slurp(own(i, "etc-loom") + "/loom.toml"), toml) << h << ": /etc/loom/loom.toml";
    struct stat sb {};
    ASSERT_EQ(::stat((own(i, "etc-loom") + "/certs/" + h + ".key").c_str(), &sb), 0) << h;
    EXPECT_EQ(sb.st_mode & 0777, 0600u) << h << ": its key";
    ASSERT_EQ(::stat((own(i, "etc-loom") + "/certs").c_str(), &sb), 0) << h;
    EXPECT_EQ(sb.st_mode & 0777, 0700u) << h << ": /etc/loom/certs";
  }
  // Rank 0 kept its state where the guide said.
  EXPECT_FALSE(files_in(own(0, "var-lib-loom")).empty()) << "nothing in node1's /var/lib/loom";
}

}  // namespace
}  // namespace loom::test
