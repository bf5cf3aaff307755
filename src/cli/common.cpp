#include "cli/common.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>

#include "base/quote.h"
#include "jobspec/jobspec.h"

namespace loom::cli {

std::string latest_uri_file() {
  const char* dir = std::getenv("XDG_RUNTIME_DIR");
  std::string base = (dir && *dir) ? dir : "/tmp";
  return base + "/loom-" + std::to_string(::getuid()) + "/latest";
}

std::string local_time(double t, const char* fmt) {
  std::time_t secs = static_cast<std::time_t>(std::floor(t));
  std::tm tm{};
  char buf[256];
  if (!::localtime_r(&secs, &tm)) return "";
  size_t n = std::strftime(buf, sizeof buf, fmt, &tm);
  return std::string(buf, n);
}

std::string user_name(uint32_t uid) {
  static std::map<uint32_t, std::string> cache;
  auto it = cache.find(uid);
  if (it != cache.end()) return it->second;
  passwd pw{};
  passwd* found = nullptr;
  char buf[4096];
  std::string name;
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found) name = found->pw_name;
  return cache[uid] = name;
}

Result<std::string> instance_uri() {
  if (const char* uri = std::getenv("LOOM_URI"); uri && *uri) return std::string(uri);
  std::ifstream in(latest_uri_file());
  std::string uri;
  if (in && std::getline(in, uri) && !uri.empty()) return uri;
  // The host's broker of an instance spread over hosts (docs/deploy.md).
  if (::access("/run/loom/local.sock", F_OK) == 0) return std::string("local:///run/loom/local.sock");
  return Error{ENOENT, "no instance found: set LOOM_URI, start one with `loom start`, or start loomd --config"};
}

int stream_until_end(Session& s, const std::string& cmd, const std::string& topic, const Json& req, double timeout,
                     const std::function<int(const Json& payload)>& on_response) {
  int rc = -1;
  auto timer = s.clock->make_timer();
  if (timeout >= 0) {
    timer->arm(timeout, [&] {
      char buf[64];
      std::snprintf(buf, sizeof buf, "timed out after %gs", timeout);
      rc = fail(cmd, buf);
    });
  }
  uint32_t tag = s.handle().rpc(topic, req, {kNodeAny, true, 0}, [&](const Message& m) {
    if (rc >= 0) return;
    if (m.errnum == ENODATA) {
      rc = 0;
      return;
    }
    if (m.errnum) {
      rc = fail(cmd, error_text(m));
      return;
    }
    auto j = parse_json(m.payload);
    if (!j.ok()) {
      rc = fail(cmd, "unexpected response from " + topic);
      return;
    }
    rc = on_response(*j);
  });
  while (rc < 0 && s.client->is_open()) s.io.run_one();
  // Stopped before its end: the handler, which refers to this frame, goes.
  s.handle().cancel_rpc(tag);
  if (rc < 0) return fail(cmd, s.client->lost_text());
  return rc;
}

Result<std::unique_ptr<Session>> connect_session() {
  auto uri = instance_uri();
  if (!uri.ok()) return uri.error();
  auto s = std::make_unique<Session>();
  s->clock = make_real_clock(s->io);
  auto c = Client::connect(s->io, *s->clock, *uri);
  if (!c.ok()) return c.error();
  s->client = std::move(*c);
  return s;
}

Result<EventMatch> EventMatch::parse(const std::string& name, const std::vector<std::string>& key_values) {
  EventMatch m{name, {}};
  for (const auto& kv : key_values) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) return Error{EINVAL, "-m wants KEY=VALUE, got \"" + kv + "\""};
    m.context.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return m;
}

bool EventMatch::operator()(const EventEntry& e) const {
  if (e.name != name) return false;
  for (const auto& [k, v] : context) {
    if (!e.context.is_object() || !e.context.contains(k)) return false;
    const Json& c = e.context[k];
    if ((c.is_string() ? c.get<std::string>() : dump_json(c)) != v) return false;
  }
  return true;
}

std::string format_event_human(const EventEntry& e) {
  char ts[64];
  std::snprintf(ts, sizeof ts, "%.6f", e.timestamp);
  std::string out = std::string(ts) + " " + e.name;
  if (e.context.is_object()) {
    for (auto& [k, v] : e.context.items()) {
      // A string as it is, unless it would break the line (output data
      // ends in a newline): then quoted, as JSON writes it.
      bool plain =
          v.is_string() && std::none_of(v.get_ref<const std::string&>().begin(), v.get_ref<const std::string&>().end(),
                                        [](char c) { return static_cast<unsigned char>(c) < 0x20; });
      out += " " + k + "=" + (plain ? v.get<std::string>() : dump_json(v));
    }
  }
  return out;
}

Result<int> urgency_arg(const std::string& s) {
  if (s == "hold") return 0;
  if (s == "default") return 16;
  if (s == "expedite") return 31;
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end || v < 0 || v > 31) {
    return Error{EINVAL, "urgency must be 0-31, hold, default or expedite, not \"" + s + "\""};
  }
  return static_cast<int>(v);
}

Result<JobId> job_arg(const std::string& s) {
  auto id = parse_jobid(s);
  if (!id.ok()) return Error{EINVAL, quote_input(s) + " is not a job id"};
  return id;
}

bool run_until(Session& s, const bool& done) {
  while (!done && s.client->is_open()) s.io.run_one();
  return done;
}

std::string terminal_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      out += '?';
    } else if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(s[i + 1]) <= 0x9f) {
      out += '?';
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

int fail(const std::string& cmd, const std::string& text, int code) {
  // One line, whatever the text (a service's error may hold newlines),
  // and never the terminal's to obey: a service may be a user's own.
  std::string line = text;
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  std::replace(line.begin(), line.end(), '\n', ' ');
  std::cerr << "loom " << cmd << ": " << terminal_text(line) << "\n";
  return code;
}

int fail(const std::string& cmd, const Error& e, int code) { return fail(cmd, e.text, code); }

uint32_t rank_or_any(int rank) { return rank < 0 ? kNodeAny : static_cast<uint32_t>(rank); }

namespace {

// Edits (insert, delete, replace, swap two neighbours) from a to b.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// "loom" for the top level, else "submit", "resource drain", ...
std::string command_path(const CLI::App* app) {
  std::string path;
  for (; app && app->get_parent(); app = app->get_parent()) path = app->get_name() + (path.empty() ? "" : " ") + path;
  return path;
}

// The last subcommand named on the command line.
CLI::App* deepest_command(CLI::App* app) {
  for (;;) {
    auto subs = app->get_subcommands();
    if (subs.empty()) return app;
    app = subs.back();
  }
}

std::vector<std::string> subcommand_names(CLI::App* app) {
  std::vector<std::string> names;
  for (const auto* sub : app->get_subcommands([](CLI::App*) { return true; })) names.push_back(sub->get_name());
  return names;
}

std::vector<std::string> option_names(CLI::App* app) {
  std::vector<std::string> names;
  for (const auto* opt : app->get_options()) {
    for (const auto& l : opt->get_lnames()) names.push_back("--" + l);
    for (const auto& s : opt->get_snames()) names.push_back("-" + s);
  }
  return names;
}

// One line, whatever CLI11 wrote.
std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  if (!text.empty() && std::isupper(static_cast<unsigned char>(text[0])) &&
      (text.size() < 2 || std::islower(static_cast<unsigned char>(text[1])))) {
    text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  }
  return text;
}

std::string in_quotes(const std::string& s) { return "\"" + s + "\""; }

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : ", ") + w;
  return out;
}

// ' (did you mean "a" or "b"?)', or "" for no names.
std::string did_you_mean(const std::vector<std::string>& names) {
  if (names.empty()) return "";
  std::string out = " (did you mean ";
  for (size_t i = 0; i < names.size(); ++i) out += (i == 0 ? "" : " or ") + in_quotes(names[i]);
  return out + "?)";
}

// The line for a parse error of the command `at` (the deepest one named).
std::string usage_error_text(CLI::App* at, const CLI::ParseError& e) {
  // An argument that nothing took: an unknown option or command, else one
  // too many. The command whose arguments it was is the deepest that has
  // any left over.
  for (CLI::App* app = at; app; app = app->get_parent()) {
    auto left = app->remaining();
    if (left.empty()) continue;
    const std::string& word = left.front();
    if (word.size() > 1 && word[0] == '-') {
      std::string name = word.substr(0, word.find('='));
      return "unknown option " + in_quotes(name) + did_you_mean(nearest_names(name, option_names(app)));
    }
    auto subs = subcommand_names(app);
    if (!subs.empty() && app == at) {
      auto near = nearest_names(word, subs);
      return "unknown command " + in_quotes(word) +
             (near.empty() ? " (commands: " + joined(subs) + ")" : did_you_mean(near));
    }
    return "unexpected argument " + in_quotes(word);
  }
  if (dynamic_cast<const CLI::RequiredError*>(&e) && !at->get_subcommands([](CLI::App*) { return true; }).empty() &&
      at->get_subcommands().empty() && std::string(e.what()).find("subcommand") != std::string::npos) {
    return "a command is required: " + joined(subcommand_names(at));
  }
  std::string text = one_line(e.what());
  // "--nodes: 1 required UINT:UINT in [1 - 1048576] missing"
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e) && text.find(" required ") != std::string::npos &&
      text.ends_with(" missing") && text.find(": ") != std::string::npos) {
    return text.substr(0, text.find(": ")) + " needs a value";
  }
  return text;
}

}  // namespace

std::vector<std::string> nearest_names(const std::string& word, const std::vector<std::string>& names) {
  // A one-letter option ("-x") is near every other: none is suggested.
  if (word.size() <= 2) return {};
  // The names it starts, if any ("stat": "status", never "start"); else
  // the nearest within one or two edits (one for short words).
  std::vector<std::string> out;
  for (const auto& n : names) {
    if (n.starts_with(word) && std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  }
  if (!out.empty()) return out;
  size_t best = word.size() <= 4 ? 1 : 2;
  for (const auto& n : names) {
    size_t d = edit_distance(word, n);
    if (d > best) continue;
    if (d < best) out.clear();
    best = d;
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  }
  return out;
}

namespace {

// CLI11 reads `--opt=`, an empty value, as `--opt` alone and takes the
// next argument for its value: `--job-name= --urgency=20` named the job
// "--urgency=20" and kept the default urgency. The name of such an option
// of the command, if one is given: options before the command's own words
// (after `--`, or from its first positional) are looked at, never those.
std::optional<std::string> empty_option_value(CLI::App& app, int argc, char** argv, CLI::App*& at) {
  at = &app;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") return std::nullopt;
    if (a.size() < 2 || a[0] != '-') {
      // A subcommand's name goes one level down; any other word is a
      // positional, and the command's own words may follow.
      auto subs = at->get_subcommands([&](CLI::App* sub) { return sub->check_name(std::string(a)); });
      if (subs.empty()) return std::nullopt;
      at = subs.front();
      continue;
    }
    size_t eq = a.find('=');
    std::string name(a.substr(0, eq));
    const CLI::Option* opt = nullptr;
    for (CLI::App* up = at; up && !opt; up = up->get_parent()) opt = up->get_option_no_throw(name);
    if (!opt || opt->get_items_expected_min() == 0) continue;  // unknown (CLI11 says so), or a flag
    if (eq != std::string_view::npos) {
      if (eq + 1 == a.size()) return name;
      continue;
    }
    // Its value is the next argument, unless given joined ("-N2").
    if (a.starts_with("--") || a.size() == 2) ++i;
  }
  return std::nullopt;
}

}  // namespace

int parse_and_run(CLI::App& app, int argc, char** argv, const Runner& run) {
  CLI::App* given = nullptr;
  if (auto name = empty_option_value(app, argc, argv, given)) {
    std::string cmd = command_path(given);
    std::cerr << "loom" << (cmd.empty() ? "" : " " + cmd) << ": " << *name << "= needs a value (" << *name
              << "=VALUE)\n";
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    CLI::App* at = deepest_command(&app);
    std::string cmd = command_path(at);
    std::cerr << "loom" << (cmd.empty() ? "" : " " + cmd) << ": " << usage_error_text(at, e) << "\n";
    return kExitUsage;
  }
  if (!run) return 0;
  try {
    return run();
  } catch (const std::exception& e) {
    // Something unforeseen (a response of an unexpected shape): still one
    // line, never an abort.
    return fail(command_path(deepest_command(&app)), std::string("internal error: ") + e.what());
  }
}

namespace {

// Digits only, as a number; -1 if not.
long digits(const std::string& s) {
  if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stol(s);
}

}  // namespace

Result<double> time_limit_arg(const std::string& s) {
  if (s.find(':') == std::string::npos && s.find('-') == std::string::npos) {
    auto d = parse_time_limit(s);
    if (!d.ok()) return d.error();
    if (*d < 0) return Error{EINVAL, "invalid time limit \"" + s + "\""};
    // inf: no limit, which a jobspec says as duration 0.
    if (std::isinf(*d)) return 0.0;
    return d;
  }
  // Slurm's forms: MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
  Error bad{EINVAL, "invalid time limit \"" + s + "\" (e.g. 30s, 5m, 2h, 1d, MM:SS, HH:MM:SS, D-HH, D-HH:MM:SS)"};
  long days = 0;
  std::string rest = s;
  bool with_days = false;
  if (auto dash = s.find('-'); dash != std::string::npos) {
    days = digits(s.substr(0, dash));
    if (days < 0) return bad;
    rest = s.substr(dash + 1);
    with_days = true;
  }
  std::vector<long> parts;
  for (size_t start = 0;;) {
    size_t colon = rest.find(':', start);
    long v = digits(rest.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
    if (v < 0) return bad;
    parts.push_back(v);
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  if (parts.size() > 3) return bad;
  double secs = 0;
  if (with_days) {
    // D-HH, D-HH:MM, D-HH:MM:SS
    static const double kUnits[] = {3600, 60, 1};
    for (size_t i = 0; i < parts.size(); ++i) secs += static_cast<double>(parts[i]) * kUnits[i];
  } else if (parts.size() == 2) {
    secs = static_cast<double>(parts[0]) * 60 + static_cast<double>(parts[1]);  // MM:SS
  } else if (parts.size() == 3) {
    secs = static_cast<double>(parts[0]) * 3600 + static_cast<double>(parts[1]) * 60 + static_cast<double>(parts[2]);
  } else {
    return bad;
  }
  return static_cast<double>(days) * 86400 + secs;
}

Result<Json> list_jobs(Client& c, Json req) {
  Json jobs = Json::array();
  size_t limit = req.value("limit", size_t{0});
  for (;;) {
    auto r = c.call("job-manager.list", req);
    if (!r.ok()) return r.error();
    auto part = r->find("jobs");
    if (part == r->end() || !part->is_array()) return Error{EPROTO, "job-manager.list answered without \"jobs\""};
    bool more = r->value("more", false) && !part->empty();
    if (more) {
      auto id = part->back().find("id");
      if (id == part->back().end() || !id->is_number_unsigned()) {
        return Error{EPROTO, "job-manager.list answered a job without an id"};
      }
      req["before"] = *id;
    }
    for (auto& j : *part) jobs.push_back(std::move(j));
    if (!more) return jobs;
    if (limit > 0) {
      // The next part is asked for what the limit still wants.
      if (jobs.size() >= limit) return jobs;
      req["limit"] = limit - jobs.size();
    }
  }
}

}  // namespace loom::cli
