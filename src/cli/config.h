// The configuration of an instance (docs/configuration.md): the TOML file
// of `loom start --config`, `--setconf KEY=VALUE` and the plain options of
// `loom start`, merged once into one checked InstanceConfig, which then
// becomes the same loomd options for every rank.
//
// Precedence: the file, then each --setconf in the order given, then the
// plain options; a later setting of a key replaces an earlier one. Every
// setting goes through the same table of keys, so a value means the same
// wherever it is written.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace loom::cli {

// One KEY=VALUE before it is checked. `list`: the value is a JSON list of
// strings (a TOML list, or --setconf text that begins with '[').
struct Setting {
  std::string key;    // TABLE.KEY, e.g. "kvs.synchronous"
  std::string value;  // as text: "full", "8", "0.5", "5m", "true", or a JSON list
  bool list = false;
  // Where it was written, for errors: the file's path, "--setconf" or a
  // plain option such as "--fanout".
  std::string origin;
};

// One [[resource.config]] entry: what the hosts it names have, where
// hwloc should not be asked (a test, or a host whose devices it misreads).
struct HostResources {
  std::string hosts;               // an RFC 29 hostlist, as written
  std::vector<std::string> names;  // the same, expanded
  std::optional<uint32_t> cores;   // unset: hwloc's (or cores-per-rank)
  std::optional<uint32_t> gpus;
};

struct InstanceConfig {
  uint32_t fanout = 2;
  double heartbeat_interval = 1.0;  // seconds, as are all durations here
  double heartbeat_timeout = 10.0;
  double frame_timeout = 10.0;
  std::string kvs_synchronous = "normal";
  std::string sched_policy = "fcfs";
  uint32_t sched_backfill_depth = 500;     // 0: no cap
  std::optional<uint32_t> cores_per_rank;  // unset: what hwloc finds
  std::optional<uint32_t> gpus_per_rank;
  // Per host, over cores-per-rank and gpus-per-rank; only for instances
  // over hosts ([bootstrap]), where each broker reports its host's.
  std::vector<HostResources> host_resources;
  uint32_t jobspec_size_limit = 1u << 20;
  uint32_t inactive_num_limit = 0;
  uint32_t max_active_per_user = 100'000;
  // A command as loomd takes it: text run with /bin/sh -c, or a JSON list
  // of a program and its arguments. Empty: none.
  std::string epilog;
  std::string prolog;
  double epilog_timeout = 60;
  double prolog_timeout = 60;
  double kill_timeout = 5;
  double reattach_timeout = 60;
  double shell_exit_timeout = 30;
  bool allow_guest_test = false;
  // HOST:PORT of rank 0's OpenMetrics endpoint (docs/metrics.md); empty: off.
  std::string metrics_listen;
};

// Every configuration key, in the order of docs/configuration.md.
const std::vector<std::string>& config_keys();

// "KEY=VALUE" as --setconf takes it.
Result<Setting> parse_setconf(std::string_view text);

// Applies one setting: an unknown key or a bad value is an error of one
// line that names where the setting was written, the key and what is wrong.
Status apply_setting(InstanceConfig& cfg, const Setting& s);

// The settings applied in order (later ones win), then the rules that
// join keys (a heartbeat timeout longer than the interval) checked.
// resource.config, one list, is replaced whole by a later one.
Result<InstanceConfig> merge_config(const std::vector<Setting>& settings);

// The loomd options of a checked configuration, the same for every rank
// (each uses those of the services it runs); durations in seconds.
std::vector<std::string> loomd_options(const InstanceConfig& cfg);

// A TOML document as settings, in the file's order (toml11's, that is).
// Every top-level entry must be a table of values; each value becomes
// text: a string as it is, a number in its shortest exact form, a boolean
// as true or false, a list of strings as a JSON list. `origin` (the file's
// path) begins every error, which is one line.
Result<std::vector<Setting>> parse_config_toml(std::string_view text, const std::string& origin);

// What `host` (a name of [bootstrap] hosts) has by `cfg`: its
// [[resource.config]] entry's cores and gpus, else cores-per-rank and
// gpus-per-rank; unset ones are left to hwloc.
HostResources resources_of(const InstanceConfig& cfg, std::string_view host);

// The same for the file at `path`.
Result<std::vector<Setting>> read_config_file(const std::string& path);

}  // namespace loom::cli
