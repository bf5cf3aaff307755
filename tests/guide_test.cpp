// docs/guide.md names only commands and options that loom has: every
// `loom ...` command line in it (in code blocks and in `code` spans, the
// translation tables too) is walked as loom parses it, each subcommand
// and option looked up in the --help of the command typed so far. A
// renamed or removed option or command breaks the test, not the reader.
//
// The walk stops at the first positional argument (a job id, the command
// that `loom run` runs, a placeholder such as ID): what follows it is not
// loom's to check.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kit/process.h"

namespace loom::test {
namespace {

// What the --help of one command lists.
struct Help {
  std::set<std::string> subcommands;
  std::set<std::string> options;  // each name: -N, --nodes
  std::set<std::string> values;   // those that take a value
};

// CLI11 writes an entry as two spaces, its names (comma-separated), then,
// for an option that takes one, a space and the type of its value; two
// spaces or more before the description.
Help parse_help(const std::string& text) {
  Help h;
  std::string section;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty() && l[0] != ' ' && l.back() == ':') {
      section = l;
      continue;
    }
    if (l.size() < 3 || !l.starts_with("  ") || l[2] == ' ') continue;
    size_t end = l.find(' ', 2);
    std::string names = l.substr(2, end == std::string::npos ? std::string::npos : end - 2);
    if (section == "Subcommands:") {
      h.subcommands.insert(names);
    } else if (section == "Options:" && names.starts_with("-")) {
      bool value = end != std::string::npos && end + 1 < l.size() && l[end + 1] != ' ';
      std::istringstream each(names);
      for (std::string n; std::getline(each, n, ',');) {
        h.options.insert(n);
        if (value) h.values.insert(n);
      }
    }
  }
  return h;
}

const Help& help_of(const std::vector<std::string>& path) {
  static std::map<std::vector<std::string>, Help> cache;
  auto it = cache.find(path);
  if (it != cache.end()) return it->second;
  std::vector<std::string> argv{bin("loom")};
  argv.insert(argv.end(), path.begin(), path.end());
  argv.push_back("--help");
  auto r = run_cmd(argv, {{"LOOM_URI", ""}});
  EXPECT_EQ(r.code, 0) << r.err;
  return cache[path] = parse_help(r.out);
}

// The `loom ...` command lines of the guide: from each "loom " that starts
// a command (at a line's or span's start, or after "$ ", "$(", "| ", an
// assignment or `env -u VAR`), up to the end of its line or span, a pipe,
// a ")" or a comment.
std::vector<std::string> command_lines(const std::string& text) {
  std::vector<std::string> pieces;
  std::string prose;  // outside code blocks; a span may go over two lines
  bool block = false;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l.starts_with("```")) {
      block = !block;
    } else if (block) {
      pieces.push_back(l);
    } else {
      prose += l + " ";
    }
  }
  static const std::regex span("`([^`]+)`");
  for (std::sregex_iterator m(prose.begin(), prose.end(), span), end; m != end; ++m) pieces.push_back((*m)[1]);
  std::vector<std::string> lines;
  static const std::regex start(R"((^|\$ |\$\(|\| |[= ])loom ([^|)#]*))");
  for (const auto& p : pieces) {
    for (std::sregex_iterator m(p.begin(), p.end(), start), end; m != end; ++m) lines.push_back((*m)[2]);
  }
  return lines;
}

TEST(UserGuide, NamesOnlyCommandsAndOptionsLoomHas) {
  std::ifstream in(std::string(LOOM_SOURCE_DIR) + "/docs/guide.md");
  ASSERT_TRUE(in) << "cannot read docs/guide.md";
  std::stringstream text;
  text << in.rdbuf();
  auto lines = command_lines(text.str());
  size_t checked = 0, options = 0;
  std::set<std::string> commands;
  for (const auto& line : lines) {
    std::istringstream words(line);
    std::vector<std::string> path;
    bool value = false;  // the next word is an option's value
    for (std::string w; words >> w;) {
      if (value) {
        value = false;
        continue;
      }
      // A synopsis: "[-N -n -c ... the options of loom submit]".
      if (w.starts_with("[")) w = w.substr(1);
      if (w.empty() || w == "..." || w == "…") continue;
      if (w == "--") break;  // a command to run follows
      const Help& h = help_of(path);
      if (w.starts_with("-")) {
        std::string name = w.substr(0, w.find('='));
        // -N2: a short option with its value.
        if (!name.starts_with("--") && name.size() > 2 && !h.options.count(name)) name = name.substr(0, 2);
        std::string title = "loom";
        for (const auto& p : path) title += " " + p;
        EXPECT_TRUE(h.options.count(name)) << title << " has no option " << name << ", in: loom " << line;
        ++options;
        value = h.values.count(name) && name == w;
        continue;
      }
      // An error line as loom prints it: "loom run: TEXT".
      if (w.ends_with(":") && h.subcommands.count(w.substr(0, w.size() - 1))) break;
      if (h.subcommands.count(w)) {
        path.push_back(w);
        continue;
      }
      EXPECT_FALSE(path.empty()) << "loom has no command " << w << ", in: loom " << line;
      break;
    }
    if (!path.empty()) commands.insert(path[0]);
    ++checked;
  }
  EXPECT_GE(checked, 100u);
  EXPECT_GE(options, 40u);
  // The everyday commands are all there.
  for (const char* c : {"start", "run", "submit", "jobs", "cancel", "job", "resource", "queue"}) {
    EXPECT_TRUE(commands.count(c)) << "the guide never shows loom " << c;
  }
}

}  // namespace
}  // namespace loom::test
