// The bootstrap configuration of an instance spread over hosts
// (docs/deploy.md): the [bootstrap] table of the one TOML file that every
// host reads, checked once into a BootstrapConfig.
//
//   [bootstrap]
//   hosts = ["node[0-15]", "login1"]   # RFC 29 hostlists; rank = position
//   port = 8050                        # every broker listens on it
//   bind = "0.0.0.0"                   # the address it listens on (or a
//                                      #   name; "{host}": each host's own)
//   fanout = 2                         # children per broker in the tree
//   ca = "/etc/loom/certs/ca.crt"      # the instance's CA certificate
//   cert = "/etc/loom/certs/{host}.crt"  # this host's certificate and key;
//   key = "/etc/loom/certs/{host}.key"   # {host}: its name in `hosts`
//
// Reads and checks; opens no socket and no certificate. Every error is one
// line that begins with the file's path.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "broker/topology.h"
#include "cli/config.h"

namespace loom {

// This broker's place in the instance.
struct BootstrapPlace {
  uint32_t rank = 0;
  std::string host;                // its name in `hosts`
  std::optional<uint32_t> parent;  // none for rank 0
  std::vector<uint32_t> children;
};

struct BootstrapConfig {
  static constexpr uint16_t kDefaultPort = 8050;
  static constexpr uint32_t kDefaultFanout = 2;  // as `loom start` (broker.fanout)

  std::string origin;              // the file, for errors
  std::vector<std::string> hosts;  // the expanded list: hosts[rank]
  uint16_t port = kDefaultPort;
  std::string bind = "0.0.0.0";
  uint32_t fanout = kDefaultFanout;
  std::string ca = "/etc/loom/certs/ca.crt";
  std::string cert = "/etc/loom/certs/{host}.crt";
  std::string key = "/etc/loom/certs/{host}.key";

  uint32_t size() const { return static_cast<uint32_t>(hosts.size()); }
  Topology topology() const { return Topology{size(), fanout}; }

  // The rank of the host called `hostname` (as gethostname gives it), or
  // `rank_override` (loomd --rank) when given, which must be below size().
  // A name matches an entry of `hosts` when they are equal, ignoring case
  // and a trailing '.'; failing that, when one of the two is a short name
  // (no '.') and the other a full name that begins with it and a '.'
  // ("node1" and "node1.example.org"). An equal entry wins over short-name
  // matches; two short-name matches and no equal entry is an error.
  Result<uint32_t> find_rank(std::string_view hostname, std::optional<uint32_t> rank_override = {}) const;

  // find_rank with the rank's name, parent and children in the tree.
  Result<BootstrapPlace> place(std::string_view hostname, std::optional<uint32_t> rank_override = {}) const;

  // `cert` and `key` for a rank (below size()): each "{host}" replaced by
  // hosts[rank].
  std::string cert_path(uint32_t rank) const;
  // `bind` for a rank: "{host}" replaced by hosts[rank].
  std::string bind_address(uint32_t rank) const;
  // What a child connects to for the broker of `rank`: its bind_address
  // when `bind` names each host's ("{host}..."), else hosts[rank].
  std::string connect_address(uint32_t rank) const;
  std::string key_path(uint32_t rank) const;
};

// The bootstrap configuration in `settings` (those of one file, as
// cli::parse_config_toml gives them): the bootstrap.* ones, and
// broker.fanout, which must agree with bootstrap.fanout when both are set.
// Other tables are not read here. `origin` names the file in errors.
Result<BootstrapConfig> parse_bootstrap(const std::vector<cli::Setting>& settings, const std::string& origin);

// The same for the TOML file at `path`.
Result<BootstrapConfig> read_bootstrap_file(const std::string& path);

// This host's name (gethostname: the UTS namespace's).
Result<std::string> local_hostname();

// The rule of find_rank for one entry: whether `listed` names the host
// called `actual`, exactly (kExact) or by its short name (kShort).
enum class HostMatch { kNone, kExact, kShort };
HostMatch match_hostname(std::string_view listed, std::string_view actual);

}  // namespace loom
