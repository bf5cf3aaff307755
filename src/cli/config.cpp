#include "cli/config.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <toml.hpp>

#include "base/quote.h"
#include "hostlist/hostlist.h"
#include "jobspec/jobspec.h"
#include "metrics/metrics.h"
#include "msg/json.h"

namespace loom::cli {

namespace {
// Keys are bare TOML keys, so that "TABLE.KEY=VALUE" splits back into the
// same key and value (a quoted key could hold '=' or '.').
bool bare_key(std::string_view k) {
  if (k.empty()) return false;
  for (char c : k) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// Where `s` stops being UTF-8 (RFC 3629: no overlong forms, surrogates or
// code points past U+10FFFF), or npos. TOML documents are UTF-8, and
// toml11 (3.7) reads past the end of its buffer on a multi-byte lead
// without its continuation bytes, so it never sees such text.
size_t invalid_utf8_at(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return i;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    bool overlong = (n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
    if (overlong || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return i;
    i += n;
  }
  return std::string_view::npos;
}

// How deep arrays and inline tables nest, brackets in strings and comments
// aside. toml11 parses them by recursion without a limit, so a line of a
// few thousand '[' overflowed its stack.
constexpr int kMaxTomlDepth = 32;
bool nests_deeper_than(std::string_view s, int max_depth) {
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '#') {
      i = s.find('\n', i);
      if (i == std::string_view::npos) break;
    } else if (c == '"' || c == '\'') {
      bool multi = s.substr(i, 3) == std::string(3, c);
      bool escapes = c == '"';
      i += multi ? 3 : 1;
      // To the closing quote(s); a one-line string also ends at a newline.
      for (; i < s.size(); ++i) {
        if (escapes && s[i] == '\\') {
          ++i;
        } else if (!multi && s[i] == '\n') {
          break;
        } else if (s[i] == c && (!multi || s.substr(i, 3) == std::string(3, c))) {
          if (multi) i += 2;
          break;
        }
      }
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;  // a stray closer does not hide the openers after it
    }
  }
  return false;
}

// A TOML float as text a duration or an integer key reads: fixed notation
// ("0.00001", never "1e-05") where it fits.
std::string shortest(double v) {
  char buf[512];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  if (ec == std::errc{}) return std::string(buf, end);
  auto [gend, gec] = std::to_chars(buf, buf + sizeof buf, v);
  return gec == std::errc{} ? std::string(buf, gend) : std::to_string(v);
}
}  // namespace

// One table of an array of tables, as a JSON object: its keys plain
// names, its values strings, integers or booleans.
Result<Json> plain_table(const toml::value& t) {
  if (!t.is_table()) return Error{EINVAL, "must be a list of tables, as in [[resource.config]]"};
  Json out = Json::object();
  for (const auto& [k, v] : t.as_table()) {
    if (!bare_key(k)) return Error{EINVAL, "has \"" + k + "\", which is not a configuration key"};
    if (v.is_string()) {
      out[k] = v.as_string().str;
    } else if (v.is_integer()) {
      out[k] = v.as_integer();
    } else if (v.is_boolean()) {
      out[k] = v.as_boolean();
    } else {
      return Error{EINVAL, "has " + k + ", which must be a string, an integer or a boolean"};
    }
  }
  return out;
}

Result<std::vector<Setting>> parse_config_toml(std::string_view text, const std::string& origin) {
  std::vector<Setting> out;
  if (size_t at = invalid_utf8_at(text); at != std::string_view::npos) {
    return Error{EINVAL, origin + ": not UTF-8 text (at byte " + std::to_string(at) + ")"};
  }
  if (nests_deeper_than(text, kMaxTomlDepth)) {
    return Error{EINVAL, origin + ": lists or tables nest deeper than " + std::to_string(kMaxTomlDepth) + " levels"};
  }
  try {
    std::istringstream in{std::string(text)};
    auto data = toml::parse(in, origin);
    for (const auto& [table, t] : data.as_table()) {
      if (!bare_key(table)) return Error{EINVAL, origin + ": \"" + table + "\" is not a configuration table name"};
      if (!t.is_table()) return Error{EINVAL, origin + ": " + table + " must be a table, as in [" + table + "]"};
      for (const auto& [k, v] : t.as_table()) {
        if (!bare_key(k))
          return Error{EINVAL, origin + ": \"" + k + "\" in [" + table + "] is not a configuration key"};
        std::string value;
        bool list = false;
        if (v.is_string()) {
          value = v.as_string().str;
        } else if (v.is_integer()) {
          value = std::to_string(v.as_integer());
        } else if (v.is_floating()) {
          if (!std::isfinite(v.as_floating())) {
            return Error{EINVAL, origin + ": " + table + "." + k + " must be a finite number"};
          }
          value = shortest(v.as_floating());
        } else if (v.is_boolean()) {
          value = v.as_boolean() ? "true" : "false";
        } else if (v.is_array() && !v.as_array().empty() && v.as_array().front().is_table()) {
          // An array of tables ([[resource.config]]) as a JSON list of
          // objects of plain values.
          Json items = Json::array();
          for (const auto& e : v.as_array()) {
            auto item = plain_table(e);
            if (!item.ok()) return Error{EINVAL, origin + ": " + table + "." + k + " " + item.error().text};
            items.push_back(std::move(*item));
          }
          value = dump_json(items);
          list = true;
        } else if (v.is_array()) {
          // A list of strings (a command and its arguments) as JSON text.
          Json items = Json::array();
          for (const auto& e : v.as_array()) {
            if (!e.is_string()) return Error{EINVAL, origin + ": " + table + "." + k + " must be a list of strings"};
            items.push_back(e.as_string().str);
          }
          value = dump_json(items);
          list = true;
        } else {
          return Error{EINVAL, origin + ": " + table + "." + k + " must be a string, a number, a boolean or a list"};
        }
        out.push_back(Setting{table + "." + k, std::move(value), list, origin});
      }
    }
  } catch (const std::exception& e) {
    // toml11 explains over several lines; the first names the problem.
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    if (what.starts_with("[error] ")) what = what.substr(8);
    return Error{EINVAL, origin + ": " + what};
  }
  return out;
}

Result<std::vector<Setting>> read_config_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Error{EINVAL, path + ": cannot read the configuration file: " + std::strerror(errno)};
  std::ostringstream text;
  text << f.rdbuf();
  if (f.bad()) return Error{EINVAL, path + ": cannot read the configuration file"};
  return parse_config_toml(text.str(), path);
}

// --- the keys ---

namespace {

// What a key's value must be, without saying where it was written.
using Check = std::function<Status(InstanceConfig&, const Setting&)>;

// Durations beyond a year are a mistake, and would overflow the timers
// that hold them (nanoseconds in 64 bits last 292 years).
constexpr double kMaxDuration = 365 * 86400.0;

Result<uint32_t> integer(const Setting& s, uint32_t lo, uint32_t hi) {
  uint64_t v = 0;
  const char* end = s.value.data() + s.value.size();
  auto [ptr, ec] = std::from_chars(s.value.data(), end, v);
  if (s.value.empty() || ec != std::errc{} || ptr != end || v < lo || v > hi) {
    return Error{EINVAL, "must be an integer " + std::to_string(lo) + "-" + std::to_string(hi) + ", not " +
                             quote_input(s.value)};
  }
  return static_cast<uint32_t>(v);
}

// The durations `loom submit -t` takes ("30s", "5m", "2h", "1d"), a bare
// number being seconds here.
Result<double> duration(const Setting& s, bool zero_ok) {
  auto d = parse_fsd(s.value);
  if (!d.ok() || !std::isfinite(*d) || *d > kMaxDuration || *d < 0 || (*d == 0 && !zero_ok)) {
    return Error{EINVAL, std::string("must be a duration ") + (zero_ok ? "of 0 or more" : "above 0") +
                             " and at most 365d (seconds, or with a unit: 30s, 5m, 2h, 1d), not " +
                             quote_input(s.value)};
  }
  return *d;
}

Result<std::string> choice(const Setting& s, std::initializer_list<const char*> allowed) {
  std::string names;
  size_t i = 0;
  for (const char* a : allowed) {
    if (s.value == a) return s.value;
    names += (i == 0 ? "" : i + 1 == allowed.size() ? " or " : ", ") + std::string(a);
    ++i;
  }
  return Error{EINVAL, "must be " + names + ", not " + quote_input(s.value)};
}

// A command as loomd takes it (see InstanceConfig::epilog). Text is a
// command for /bin/sh -c, and an empty one means none; a list names a
// program and its arguments. Shell text that begins with '[' (the test
// command) goes to loomd as a list, so that it cannot be read as one.
Result<std::string> command(const Setting& s) {
  if (s.list) {
    auto list = parse_json(s.value);
    bool ok = list.ok() && list->is_array() && !list->empty();
    for (const auto& e : ok ? *list : Json::array()) {
      ok = ok && e.is_string() && e.get<std::string>().find('\0') == std::string::npos;
    }
    if (!ok || (*list)[0].get<std::string>().empty()) {
      return Error{EINVAL, "must be a command, or a list of a program and its arguments: " + quote_input(s.value) +
                               " is not a JSON list of strings, such as [\"/etc/loom/epilog\", \"--quick\"]"};
    }
    return dump_json(*list);
  }
  if (s.value.find('\0') != std::string::npos) return Error{EINVAL, "must not hold a NUL byte"};
  if (s.value.starts_with("[")) return dump_json(Json::array({"/bin/sh", "-c", s.value}));
  return s.value;
}

struct Key {
  const char* name;
  Check check;
};

// [[resource.config]]: a list of {hosts, cores?, gpus?}, no host in two.
Result<std::vector<HostResources>> host_resources(const Setting& s) {
  auto list = parse_json(s.value);
  if (!list.ok() || !list->is_array()) {
    return Error{EINVAL, "must be a list of tables of hosts, cores and gpus, as in [[resource.config]]"};
  }
  std::vector<HostResources> out;
  std::set<std::string> seen;
  for (size_t i = 0; i < list->size(); ++i) {
    const Json& e = (*list)[i];
    std::string entry = "entry " + std::to_string(i + 1);
    if (!e.is_object()) return Error{EINVAL, entry + " is not a table of hosts, cores and gpus"};
    HostResources hr;
    for (const auto& [k, v] : e.items()) {
      if (k == "hosts") {
        auto hl = v.is_string() ? Hostlist::parse(v.get<std::string>()) : Result<Hostlist>(Error{EINVAL, "not text"});
        if (!hl.ok() || hl->empty()) {
          return Error{EINVAL, entry + ": hosts must be a hostlist such as \"node[0-3]\"" +
                                   (hl.ok() ? std::string() : " (" + hl.error().text + ")")};
        }
        hr.hosts = v.get<std::string>();
        hr.names = hl->hosts();
      } else if (k == "cores" || k == "gpus") {
        const bool cores = k == "cores";
        const int64_t lo = cores ? 1 : 0, hi = cores ? (1 << 20) : (1 << 16);
        if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi) {
          return Error{EINVAL,
                       entry + ": " + k + " must be an integer " + std::to_string(lo) + "-" + std::to_string(hi)};
        }
        (cores ? hr.cores : hr.gpus) = static_cast<uint32_t>(v.get<int64_t>());
      } else {
        return Error{EINVAL, entry + ": unknown key " + quote_input(k) + " (known: hosts, cores, gpus)"};
      }
    }
    if (hr.names.empty()) return Error{EINVAL, entry + " names no hosts"};
    if (!hr.cores && !hr.gpus) return Error{EINVAL, entry + " (" + hr.hosts + ") sets neither cores nor gpus"};
    for (const auto& name : hr.names) {
      if (!seen.insert(name).second) return Error{EINVAL, "host " + name + " is in two entries"};
    }
    out.push_back(std::move(hr));
  }
  return out;
}

template <typename T, typename Set>
Check field(std::function<Result<T>(const Setting&)> parse, Set set) {
  return [parse, set](InstanceConfig& c, const Setting& s) -> Status {
    auto v = parse(s);
    if (!v.ok()) return v.error();
    set(c, *v);
    return {};
  };
}

Check duration_key(double InstanceConfig::*member, bool zero_ok) {
  return field<double>([zero_ok](const Setting& s) { return duration(s, zero_ok); },
                       [member](InstanceConfig& c, double v) { c.*member = v; });
}

Check command_key(std::string InstanceConfig::*member) {
  return field<std::string>(command, [member](InstanceConfig& c, std::string v) { c.*member = std::move(v); });
}

const std::vector<Key>& keys() {
  static const std::vector<Key> table = {
      {"broker.fanout", field<uint32_t>([](const Setting& s) { return integer(s, 1, 1024); },
                                        [](InstanceConfig& c, uint32_t v) { c.fanout = v; })},
      {"broker.heartbeat-interval", duration_key(&InstanceConfig::heartbeat_interval, false)},
      {"broker.heartbeat-timeout", duration_key(&InstanceConfig::heartbeat_timeout, false)},
      {"broker.frame-timeout", duration_key(&InstanceConfig::frame_timeout, false)},
      {"kvs.synchronous", field<std::string>(
                              [](const Setting& s) {
                                return choice(s, {"off", "normal", "full"});
                              },
                              [](InstanceConfig& c, std::string v) { c.kvs_synchronous = std::move(v); })},
      {"sched.policy", field<std::string>(
                           [](const Setting& s) {
                             return choice(s, {"fcfs", "easy", "easy-sjbf"});
                           },
                           [](InstanceConfig& c, std::string v) { c.sched_policy = std::move(v); })},
      {"sched.backfill-depth", field<uint32_t>([](const Setting& s) { return integer(s, 0, UINT32_MAX >> 1); },
                                               [](InstanceConfig& c, uint32_t v) { c.sched_backfill_depth = v; })},
      {"resource.cores-per-rank", field<uint32_t>([](const Setting& s) { return integer(s, 1, 1u << 20); },
                                                  [](InstanceConfig& c, uint32_t v) { c.cores_per_rank = v; })},
      {"resource.gpus-per-rank", field<uint32_t>([](const Setting& s) { return integer(s, 0, 1u << 16); },
                                                 [](InstanceConfig& c, uint32_t v) { c.gpus_per_rank = v; })},
      {"resource.config",
       field<std::vector<HostResources>>(
           host_resources, [](InstanceConfig& c, std::vector<HostResources> v) { c.host_resources = std::move(v); })},
      {"exec.prolog", command_key(&InstanceConfig::prolog)},
      {"exec.prolog-timeout", duration_key(&InstanceConfig::prolog_timeout, false)},
      {"exec.epilog", command_key(&InstanceConfig::epilog)},
      {"exec.epilog-timeout", duration_key(&InstanceConfig::epilog_timeout, false)},
      {"exec.kill-timeout", duration_key(&InstanceConfig::kill_timeout, false)},
      {"exec.shell-exit-timeout", duration_key(&InstanceConfig::shell_exit_timeout, false)},
      {"exec.reattach-timeout", duration_key(&InstanceConfig::reattach_timeout, true)},
      {"exec.allow-guest-test", field<std::string>(
                                    [](const Setting& s) {
                                      return choice(s, {"true", "false"});
                                    },
                                    [](InstanceConfig& c, const std::string& v) { c.allow_guest_test = v == "true"; })},
      {"job-manager.jobspec-size-limit",
       field<uint32_t>([](const Setting& s) { return integer(s, 1024, 16u << 20); },
                       [](InstanceConfig& c, uint32_t v) { c.jobspec_size_limit = v; })},
      {"job-manager.inactive-num-limit",
       field<uint32_t>([](const Setting& s) { return integer(s, 0, UINT32_MAX >> 1); },
                       [](InstanceConfig& c, uint32_t v) { c.inactive_num_limit = v; })},
      {"job-manager.max-active-jobs-per-user",
       field<uint32_t>([](const Setting& s) { return integer(s, 0, UINT32_MAX >> 1); },
                       [](InstanceConfig& c, uint32_t v) { c.max_active_per_user = v; })},
      {"metrics.listen", field<std::string>(
                             [](const Setting& s) -> Result<std::string> {
                               if (s.value.empty()) return s.value;  // off, as by default
                               auto a = parse_listen_address(s.value);
                               if (!a.ok()) return a.error();
                               return s.value;
                             },
                             [](InstanceConfig& c, std::string v) { c.metrics_listen = std::move(v); })},
  };
  return table;
}

// Where a setting was written: "loom.toml: exec.kill-timeout",
// "--setconf exec.kill-timeout", "--fanout".
std::string where(const Setting& s) {
  if (s.origin == "--setconf") return "--setconf " + s.key;
  if (s.origin.starts_with("--")) return s.origin;
  return (s.origin.empty() ? "" : s.origin + ": ") + s.key;
}

std::string seconds(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc{} ? std::string(buf, end) : std::to_string(v);
}

}  // namespace

const std::vector<std::string>& config_keys() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const Key& k : keys()) v.push_back(k.name);
    return v;
  }();
  return names;
}

Result<Setting> parse_setconf(std::string_view text) {
  auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return Error{EINVAL, "--setconf wants KEY=VALUE, got " + quote_input(text)};
  }
  std::string value(text.substr(eq + 1));
  bool list = value.starts_with("[");
  return Setting{std::string(text.substr(0, eq)), std::move(value), list, "--setconf"};
}

Status apply_setting(InstanceConfig& cfg, const Setting& s) {
  for (const Key& k : keys()) {
    if (s.key != k.name) continue;
    if (auto st = k.check(cfg, s); !st) return Error{EINVAL, where(s) + ": " + st.error().text};
    return {};
  }
  std::string known;
  for (const Key& k : keys()) known += (known.empty() ? "" : ", ") + std::string(k.name);
  // A key of plain names as it is, anything else quoted.
  bool plain = !s.key.empty() && std::all_of(s.key.begin(), s.key.end(), [](char c) {
    return c == '.' || bare_key({&c, 1});
  });
  return Error{EINVAL, (s.origin.empty() ? "" : s.origin + ": ") + "unknown configuration key " +
                           (plain ? s.key : quote_input(s.key)) + " (known: " + known + ")"};
}

Result<InstanceConfig> merge_config(const std::vector<Setting>& settings) {
  InstanceConfig cfg;
  for (const Setting& s : settings) {
    if (auto st = apply_setting(cfg, s); !st) return st.error();
  }
  if (cfg.heartbeat_timeout <= cfg.heartbeat_interval) {
    return Error{EINVAL, "broker.heartbeat-timeout (" + seconds(cfg.heartbeat_timeout) +
                             "s) must be longer than broker.heartbeat-interval (" + seconds(cfg.heartbeat_interval) +
                             "s)"};
  }
  return cfg;
}

HostResources resources_of(const InstanceConfig& cfg, std::string_view host) {
  HostResources out{std::string(host), {std::string(host)}, cfg.cores_per_rank, cfg.gpus_per_rank};
  for (const auto& hr : cfg.host_resources) {
    if (std::find(hr.names.begin(), hr.names.end(), host) == hr.names.end()) continue;
    if (hr.cores) out.cores = hr.cores;
    if (hr.gpus) out.gpus = hr.gpus;
  }
  return out;
}

std::vector<std::string> loomd_options(const InstanceConfig& c) {
  std::vector<std::string> o = {
      "--fanout=" + std::to_string(c.fanout),
      "--heartbeat-interval=" + seconds(c.heartbeat_interval),
      "--heartbeat-timeout=" + seconds(c.heartbeat_timeout),
      "--frame-timeout=" + seconds(c.frame_timeout),
      "--kvs-synchronous=" + c.kvs_synchronous,
      "--sched-policy=" + c.sched_policy,
      "--sched-backfill-depth=" + std::to_string(c.sched_backfill_depth),
      "--jobspec-size-limit=" + std::to_string(c.jobspec_size_limit),
      "--inactive-num-limit=" + std::to_string(c.inactive_num_limit),
      "--max-active-jobs-per-user=" + std::to_string(c.max_active_per_user),
      "--exec-allow-guest-test=" + std::string(c.allow_guest_test ? "true" : "false"),
  };
  if (c.cores_per_rank) o.push_back("--cores-per-rank=" + std::to_string(*c.cores_per_rank));
  if (c.gpus_per_rank) o.push_back("--gpus-per-rank=" + std::to_string(*c.gpus_per_rank));
  if (!c.epilog.empty()) o.push_back("--exec-epilog=" + c.epilog);
  o.push_back("--exec-epilog-timeout=" + seconds(c.epilog_timeout));
  if (!c.prolog.empty()) o.push_back("--exec-prolog=" + c.prolog);
  o.push_back("--exec-prolog-timeout=" + seconds(c.prolog_timeout));
  o.push_back("--exec-shell-exit-timeout=" + seconds(c.shell_exit_timeout));
  o.push_back("--exec-kill-timeout=" + seconds(c.kill_timeout));
  o.push_back("--exec-reattach-timeout=" + seconds(c.reattach_timeout));
  if (!c.metrics_listen.empty()) o.push_back("--metrics-listen=" + c.metrics_listen);
  return o;
}

}  // namespace loom::cli
