// loom batch [job options] SCRIPT [ARGS...]: runs SCRIPT once, on the
// first rank of an allocation of its own; prints the job id.
// loom alloc [job options] [COMMAND [ARGS...]]: waits for an allocation,
// then runs COMMAND (default: $SHELL) here, and gives the allocation back
// when it exits, exiting as it did.
//
// Inside either (LOOM_ALLOCATION set), loom run and loom submit place their
// work in that allocation as job steps (docs/steps.md). Scripts given to
// batch and submit may carry #LOOM directives (apply_directives).
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <asio/signal_set.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "cli/common.h"
#include "cli/submit.h"
#include "eventlog/eventlog.h"
#include "jobspec/jobspec.h"
#include "kvs/layout.h"
#include "rset/rset.h"
#include "shell/input.h"
#include "shell/output.h"

extern char** environ;

namespace loom::cli {

namespace {

// The directives of a script's text: (line number, text after "#LOOM").
std::vector<std::pair<int, std::string>> directive_lines(std::string_view text) {
  std::vector<std::pair<int, std::string>> out;
  if (!text.starts_with("#!")) return out;  // not a script
  int n = 0;
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(at, end - at);
    at = end + 1;
    if (++n == 1) continue;  // the #! line
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string_view::npos) continue;
    if (line[start] != '#') break;  // the script's first command: no directives after it
    std::string_view rest = line.substr(start);
    if (!rest.starts_with("#LOOM")) continue;
    rest.remove_prefix(5);
    if (!rest.empty() && rest[0] != ' ' && rest[0] != '\t') continue;  // "#LOOMY": a comment
    out.emplace_back(n, std::string(rest));
  }
  return out;
}

// The words of a directive as a POSIX shell splits them: blanks separate;
// '...' keeps all it holds; "..." all but \", \\, \$ and \` (the character
// after the backslash); elsewhere a backslash keeps the next character.
Result<std::vector<std::string>> split_words(std::string_view s) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == ' ' || c == '\t') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    if (c == '\\') {
      if (++i < s.size()) word += s[i];
    } else if (c == '\'') {
      size_t close = s.find('\'', i + 1);
      if (close == std::string_view::npos) return Error{EINVAL, "unterminated '"};
      word += s.substr(i + 1, close - i - 1);
      i = close;
    } else if (c == '"') {
      for (++i;; ++i) {
        if (i >= s.size()) return Error{EINVAL, "unterminated \""};
        if (s[i] == '"') break;
        if (s[i] == '\\' && i + 1 < s.size() && std::string_view("\"\\$`").find(s[i + 1]) != std::string_view::npos) {
          ++i;
        }
        word += s[i];
      }
    } else {
      word += c;
    }
  }
  if (in_word) words.push_back(std::move(word));
  return words;
}

// `words` parsed as the job options into `app` (fresh, without --help:
// a directive cannot ask for it), or the error.
Status parse_options(CLI::App& app, std::vector<std::string> words) {
  std::reverse(words.begin(), words.end());  // CLI11 takes them last first
  app.set_help_flag();
  app.allow_extras();
  try {
    app.parse(words);
  } catch (const CLI::ParseError& e) {
    std::string why = e.what();
    if (!why.empty()) why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
    return Error{EINVAL, why};
  }
  // (CLI11's own error would list them last first.)
  if (auto extra = app.remaining(); !extra.empty()) {
    std::string list;
    for (const auto& w : extra) list += (list.empty() ? "" : " ") + w;
    return Error{EINVAL, std::string(extra.size() == 1 ? "the following argument was not expected: "
                                                       : "the following arguments were not expected: ") +
                             list};
  }
  return {};
}

// A directive as an error message may show it: control characters (a
// stray \r, a NUL) as \xNN.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 && c != '\t') {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", u);
      out += hex;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

Status apply_directives(CLI::App* sub, const std::string& name, std::string_view text) {
  // Line by line, so that an error names its line; a later line's value
  // of an option replaces an earlier one's (repeatable options add up).
  std::vector<std::pair<std::string, std::vector<std::string>>> given;  // in order, by option name
  for (const auto& [n, line] : directive_lines(text)) {
    auto where = [&, n = n, &line = line](const std::string& why) {
      return Error{EINVAL, name + " line " + std::to_string(n) + ": #LOOM" + printable(line) + ": " + why};
    };
    if (line.find('\r') != std::string::npos) {
      return where("ends in \\r\\n (DOS line breaks): convert the script, e.g. with dos2unix");
    }
    if (std::any_of(line.begin(), line.end(),
                    [](char c) { return static_cast<unsigned char>(c) < 0x20 && c != '\t'; })) {
      return where("a control character in a directive");
    }
    auto words = split_words(line);
    if (!words.ok()) return where(words.error().text);
    SubmitOpts scratch;
    CLI::App one;
    add_job_options(&one, scratch, false);
    if (auto st = parse_options(one, std::move(*words)); !st) return where(st.error().text);
    for (const CLI::Option* opt : one.get_options()) {
      if (opt->count() == 0 || opt->get_name() == "--help") continue;
      auto it = std::find_if(given.begin(), given.end(), [&](const auto& g) { return g.first == opt->get_name(); });
      if (it == given.end()) {
        given.emplace_back(opt->get_name(), opt->results());
      } else if (opt->get_expected_max() > 1) {
        it->second.insert(it->second.end(), opt->results().begin(), opt->results().end());
      } else {
        it->second = opt->results();
      }
    }
  }
  // The command line wins: only what it did not say comes from the script.
  for (const auto& [option, results] : given) {
    CLI::Option* mine = sub->get_option_no_throw(option);
    if (!mine || mine->count() > 0) continue;
    try {
      mine->add_result(results);
      mine->run_callback();
    } catch (const CLI::Error& e) {
      return Error{EINVAL, name + ": #LOOM " + option + ": " + e.what()};
    }
  }
  return {};
}

Status apply_directives(CLI::App* sub, const std::string& path) {
  // Only a path (as exec takes it: a name without a slash is looked up in
  // PATH, not here), only a regular file, only what a script may hold.
  if (path.find('/') == std::string::npos) return {};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return {};
  std::ifstream in(path, std::ios::binary);
  std::string text(std::min<size_t>(static_cast<size_t>(st.st_size), kMaxScript), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return apply_directives(sub, path, text);
}

namespace {

// The script's text: it must exist, be a script (#!), be text with Unix
// line ends, and fit in a jobspec. Read once: the directives come from the
// same text (a pipe can be read only once, a file may change).
Result<std::string> read_script(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{ENOENT, "cannot read " + path + ": " + std::strerror(errno)};
  std::string s(kMaxScript + 1, '\0');
  in.read(s.data(), static_cast<std::streamsize>(s.size()));
  s.resize(static_cast<size_t>(in.gcount()));
  if (s.size() > kMaxScript) {
    return Error{EFBIG, path + " is over " + std::to_string(kMaxScript >> 20) + " MiB, the most a batch script may be"};
  }
  if (!s.starts_with("#!")) {
    return Error{EINVAL, path + " does not start with #! and the interpreter to run it with (e.g. #!/bin/sh)"};
  }
  if (size_t bad = first_invalid_utf8(s); bad != std::string::npos) {
    return Error{EINVAL, path + " is not UTF-8 text (byte " + std::to_string(bad + 1) +
                             "): a batch script travels as text; keep binary data in a file of its own"};
  }
  if (size_t crlf = s.find("\r\n"); crlf != std::string::npos) {
    int line = static_cast<int>(std::count(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(crlf), '\n')) + 1;
    return Error{EINVAL, path + " line " + std::to_string(line) +
                             " ends in \\r\\n (DOS line breaks): convert the script, e.g. with dos2unix"};
  }
  return s;
}

int run_batch(CLI::App* sub, const std::shared_ptr<SubmitOpts>& given) {
  const std::string path = given->command[0];
  auto script = read_script(path);
  if (!script.ok()) return fail("batch", script.error());
  // (Into *given, through the options of `sub`.)
  if (auto st = apply_directives(sub, path, *script); !st) return fail("batch", st.error(), kExitUsage);
  SubmitOpts o = *given;
  o.script = std::move(*script);
  // As sbatch and flux batch do: the output in a file of the job's own.
  if (o.output.empty()) o.output = "loom-{{id}}.out";
  return run_submit(o, "batch");
}

// What an alloc job runs: it holds the allocation until loom alloc's
// command exits, whose exit status then comes on its stdin.
constexpr const char* kHoldScript =
    "#!/bin/sh\n"
    "# loom alloc: holds the allocation while loom alloc runs its command;\n"
    "# the command's exit status comes on stdin when it exits.\n"
    "read status || exit 1\n"
    "exit \"$status\"\n";

pid_t alloc_child = -1;  // signals loom alloc forwards go to it
void forward_to_child(int sig) {
  if (alloc_child > 0) ::kill(alloc_child, sig);
}

// Waits for the job's allocation (its start), or the exception that ends
// it; Ctrl-C (or SIGTERM, SIGHUP) meanwhile cancels it. 0 once started.
int wait_for_allocation(Session& sess, JobId id) {
  asio::signal_set signals(sess.io, SIGINT, SIGTERM, SIGHUP);
  int interrupted = 0;
  signals.async_wait([&](const std::error_code& ec, int sig) {
    if (ec) return;
    interrupted = sig;
    sess.handle().rpc("job-manager.cancel", Json{{"ids", {id.value()}}, {"note", "interrupted"}}, {},
                      [](const Message&) {});
  });
  bool started = false;
  std::string ended;
  int rc = stream_until_end(sess, "alloc", "job-info.eventlog", Json{{"id", id.value()}, {"follow", true}}, -1,
                            [&](const Json& j) {
                              if (!j.contains("event")) return fail("alloc", "unexpected response from job-info");
                              auto e = parse_event(dump_json(j["event"]));
                              if (!e.ok()) return -1;
                              if (e->name == "start") {
                                started = true;
                                return 0;
                              }
                              if (e->name == "exception" && e->context.value("severity", 1) == 0 && ended.empty()) {
                                ended = e->context.value("type", "") + ": " + e->context.value("note", "");
                              }
                              return e->name == "clean" ? 0 : -1;
                            });
  std::error_code ignored;
  signals.cancel(ignored);
  if (rc != 0) return rc;
  if (started) return 0;
  if (interrupted) {
    std::cerr << "loom alloc: job " << encode_f58(id) << " cancelled\n";
    return 128 + interrupted;
  }
  return fail("alloc", "job " + encode_f58(id) + " ended before it was allocated" +
                           (ended.empty() ? std::string() : " (" + ended + ")"));
}

// Runs `cmd` here with the allocation's variables set; its exit status as
// a shell gives it. Ctrl-C is the command's (we ignore it meanwhile), and
// SIGTERM and SIGHUP are passed on to it.
int run_here(const std::vector<std::string>& cmd, const std::vector<std::pair<std::string, std::string>>& vars) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return fail("alloc", std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Not our connection to the instance: it must close when we go.
    ::close_range(3, ~0U, 0);
    for (const auto& [k, v] : vars) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    for (const auto& a : cmd) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "loom alloc: %s: %s\n", cmd[0].c_str(), std::strerror(errno));
    ::_exit(errno == ENOENT ? 127 : 126);
  }
  alloc_child = pid;
  struct sigaction ignore {
  }, forward{}, old_int{}, old_quit{}, old_term{}, old_hup{};
  ignore.sa_handler = SIG_IGN;
  forward.sa_handler = forward_to_child;
  ::sigaction(SIGINT, &ignore, &old_int);
  ::sigaction(SIGQUIT, &ignore, &old_quit);
  ::sigaction(SIGTERM, &forward, &old_term);
  ::sigaction(SIGHUP, &forward, &old_hup);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGQUIT, &old_quit, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  ::sigaction(SIGHUP, &old_hup, nullptr);
  alloc_child = -1;
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

int run_alloc(const SubmitOpts& given) {
  SubmitOpts o = given;
  if (o.command.empty()) {
    const char* shell = std::getenv("SHELL");
    o.command = {shell && *shell ? shell : "/bin/sh"};
  }
  std::vector<std::string> cmd = o.command;  // (the job's name; the hold script ignores its arguments)
  o.script = kHoldScript;
  o.input = "0";
  auto js = make_jobspec(o);
  if (!js.ok()) return fail("alloc", js.error(), kExitUsage);
  auto s = connect_session();
  if (!s.ok()) return fail("alloc", s.error());
  Session& sess = **s;
  // Cancelled if we go away: nobody else would give the allocation back.
  auto sub = sess.client->call("job-manager.submit", Json{{"jobs", {{{"jobspec", *js}, {"urgency", o.urgency}}}},
                                                          {"cancel_on_disconnect", true}});
  if (!sub.ok()) return fail("alloc", sub.error());
  JobId id{(*sub)["ids"][0].get<uint64_t>()};
  if (int rc = wait_for_allocation(sess, id); rc != 0) return rc;

  // Where it is: the variables a job's tasks see.
  std::vector<std::pair<std::string, std::string>> vars{{"LOOM_ALLOCATION", encode_f58(id)},
                                                        {"LOOM_JOB_ID", encode_f58(id)}};
  std::string ranks;
  auto info = sess.client->call("job-info.lookup", Json{{"id", id.value()}, {"keys", {kvs_key::kR}}});
  if (info.ok() && (*info)[kvs_key::kR].is_string()) {
    if (auto R = ResourceSet::parse_text((*info)[kvs_key::kR].get<std::string>()); R.ok()) {
      ranks = R->rank_set().encode();
      std::string nodelist;
      for (const auto& [rank, res] : R->ranks()) {
        if (!res.hostname.empty()) nodelist += (nodelist.empty() ? "" : ",") + res.hostname;
      }
      vars.emplace_back("LOOM_JOB_NNODES", std::to_string(R->ranks().size()));
      vars.emplace_back("LOOM_JOB_RANKS", ranks);
      if (!nodelist.empty()) vars.emplace_back("LOOM_JOB_NODELIST", nodelist);
    }
  }
  std::cerr << "loom alloc: job " << encode_f58(id) << " holds rank" << ranks << "\n";
  int rc = run_here(cmd, vars);

  // The command's status ends the job (its hold script exits with it).
  std::string line = std::to_string(rc) + "\n";
  Json ops = Json::array(
      {Json{{"op", "append"}, {"key", kvs_key::kInput}, {"value", dump_json(input_entry(line, false)) + "\n"}},
       Json{{"op", "append"}, {"key", kvs_key::kInput}, {"value", dump_json(input_entry("", true)) + "\n"}}});
  auto put = sess.client->call("kvs.commit", Json{{"namespace", kvs_key::guest_namespace(id)}, {"ops", ops}});
  if (!put.ok()) {
    // ENOENT: the job is over already (its time limit, a cancel).
    if (put.error().code != ENOENT) return fail("alloc", put.error());
    std::cerr << "loom alloc: job " << encode_f58(id) << " ended before " << cmd[0] << " did\n";
    return rc;
  }
  (void)stream_until_end(
      sess, "alloc", "job-info.eventlog", Json{{"id", id.value()}, {"follow", true}}, -1,
      [](const Json& j) { return j.contains("event") && j["event"].value("name", "") == "clean" ? 0 : -1; });
  return rc;
}

}  // namespace

void add_batch_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<SubmitOpts>();
  auto* sub = app.add_subcommand("batch", "Run a script once, on the first node of an allocation of its own");
  add_job_options(sub, *o, false);
  sub->add_option("script", o->command, "The script (it starts with #!) and its arguments")->required();
  sub->positionals_at_end(true);
  sub->footer(
      "The script's #LOOM lines (after #!, before its first command) take the options above; the command "
      "line wins.\nInside it, loom run and loom submit place their work in its allocation (docs/steps.md).\n"
      "Its output goes to loom-{{id}}.out unless --output says otherwise.\n"
      "Examples:\n  loom batch -N2 -t 1h job.sh\n  printf '#!/bin/sh\\n#LOOM -N2\\nloom run -N2 hostname\\n' > job.sh; "
      "loom batch job.sh");
  sub->callback([o, sub, &run] { run = [o, sub] { return run_batch(sub, o); }; });
}

void add_alloc_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<SubmitOpts>();
  auto* sub = app.add_subcommand("alloc", "Hold an allocation while COMMAND (default: $SHELL) runs here");
  add_job_options(sub, *o, false);
  sub->add_option("command", o->command, "The command to run here with the allocation, and its arguments");
  sub->positionals_at_end(true);
  sub->footer(
      "Inside COMMAND (LOOM_ALLOCATION set), loom run and loom submit place their work in the allocation.\n"
      "loom alloc exits as COMMAND did; the allocation is given back then.\n"
      "Examples:\n  loom alloc -N2\n  loom alloc -N2 loom run -N2 hostname");
  sub->callback([o, &run] { run = [o] { return run_alloc(*o); }; });
}

}  // namespace loom::cli
