#include "bootstrap/bootstrap.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <unordered_map>

#include "base/quote.h"
#include "hostlist/hostlist.h"
#include "msg/json.h"

namespace loom {

namespace {

constexpr const char* kKeys[] = {"hosts", "port", "bind", "fanout", "ca", "cert", "key"};

Error bad(const std::string& origin, const std::string& why) { return Error{EINVAL, origin + ": " + why}; }

// A host name as find_rank compares it: lower case, no trailing '.'.
std::string folded(std::string_view name) {
  if (name.ends_with('.')) name.remove_suffix(1);
  std::string out(name);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Result<uint32_t> integer(const cli::Setting& s, uint32_t lo, uint32_t hi) {
  uint64_t v = 0;
  const char* end = s.value.data() + s.value.size();
  auto [ptr, ec] = std::from_chars(s.value.data(), end, v);
  if (s.list || s.value.empty() || ec != std::errc{} || ptr != end || v < lo || v > hi) {
    return Error{EINVAL, s.key + ": must be an integer " + std::to_string(lo) + "-" + std::to_string(hi) + ", not " +
                             quote_input(s.value)};
  }
  return static_cast<uint32_t>(v);
}

// What bind may hold: an IPv4 or IPv6 address, or a host name (letters,
// digits, '-' and '.', with at least one letter so that it is not a
// mistyped address), in which "{host}" stands for each host's name.
bool is_bind_address(std::string v) {
  unsigned char buf[sizeof(in6_addr)];
  if (inet_pton(AF_INET, v.c_str(), buf) == 1 || inet_pton(AF_INET6, v.c_str(), buf) == 1) return true;
  for (size_t at = v.find("{host}"); at != std::string::npos; at = v.find("{host}")) v.replace(at, 6, "h");
  bool letter = false;
  for (char c : v) {
    if (std::isalpha(static_cast<unsigned char>(c))) {
      letter = true;
    } else if (!std::isdigit(static_cast<unsigned char>(c)) && c != '-' && c != '.') {
      return false;
    }
  }
  return letter && v.size() <= 253;
}

Result<std::string> path(const cli::Setting& s) {
  if (s.list || !s.value.starts_with("/") || s.value.find('\0') != std::string::npos) {
    return Error{EINVAL, s.key + ": must be an absolute path, not " + quote_input(s.value)};
  }
  return s.value;
}

// bootstrap.hosts: a list of hostlists, expanded in order.
Result<std::vector<std::string>> host_list(const cli::Setting& s) {
  std::optional<Json> items;
  if (auto j = s.list ? parse_json(s.value) : Result<Json>(Json()); j.ok() && j->is_array()) items = std::move(*j);
  if (!items) {
    return Error{EINVAL, "bootstrap.hosts: must be a list of hostlists, such as [\"node[0-15]\", \"login1\"], not " +
                             quote_input(s.value)};
  }
  std::vector<std::string> hosts;
  for (size_t i = 0; i < items->size(); ++i) {
    const Json& item = (*items)[i];
    if (!item.is_string()) return Error{EINVAL, "bootstrap.hosts[" + std::to_string(i) + "]: must be a string"};
    auto text = item.get<std::string>();
    if (text.empty()) return Error{EINVAL, "bootstrap.hosts[" + std::to_string(i) + "]: is empty"};
    auto list = Hostlist::parse(text);
    if (!list.ok()) return Error{EINVAL, "bootstrap.hosts[" + std::to_string(i) + "]: " + list.error().text};
    if (list->size() > Hostlist::kMaxHosts - hosts.size()) {
      return Error{EINVAL, "bootstrap.hosts: names more than " + std::to_string(Hostlist::kMaxHosts) + " hosts"};
    }
    hosts.insert(hosts.end(), list->hosts().begin(), list->hosts().end());
  }
  if (hosts.empty()) return Error{EINVAL, "bootstrap.hosts: is empty; it must name at least one host"};
  return hosts;
}

// A name DNS and /etc/hosts take (RFC 1123, with '_' as some sites use
// it). It also goes into the cert and key paths, so no '/' may pass.
bool is_host_name(std::string_view name) {
  if (name.empty() || name.size() > 253 || name.front() == '.' || name.front() == '-') return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

std::string with_host(const std::string& pattern, const std::string& host) {
  std::string out = pattern;
  static constexpr std::string_view kHost = "{host}";
  for (size_t at = out.find(kHost); at != std::string::npos; at = out.find(kHost, at + host.size())) {
    out.replace(at, kHost.size(), host);
  }
  return out;
}

// The hosts as a hostlist, short enough for one line of an error.
std::string hosts_text(const std::vector<std::string>& hosts) {
  Hostlist list;
  for (const auto& h : hosts) {
    if (!list.append(h).ok()) return std::to_string(hosts.size()) + " hosts";
  }
  std::string text = list.encode();
  if (text.size() > 100) text = text.substr(0, 100) + "...";
  return text;
}

}  // namespace

HostMatch match_hostname(std::string_view listed, std::string_view actual) {
  std::string l = folded(listed), a = folded(actual);
  if (l.empty() || a.empty()) return HostMatch::kNone;
  if (l == a) return HostMatch::kExact;
  size_t ldot = l.find('.'), adot = a.find('.');
  // One short name and one full name: compare the first labels.
  if ((ldot == std::string::npos) != (adot == std::string::npos) && l.substr(0, ldot) == a.substr(0, adot)) {
    return HostMatch::kShort;
  }
  return HostMatch::kNone;
}

Result<BootstrapConfig> parse_bootstrap(const std::vector<cli::Setting>& settings, const std::string& origin) {
  BootstrapConfig cfg;
  cfg.origin = origin;
  bool have_hosts = false, seen_table = false;
  std::optional<uint32_t> bootstrap_fanout, broker_fanout;
  for (const cli::Setting& s : settings) {
    if (s.key == "broker.fanout") {
      // The tree of `loom start`, which is the same tree.
      auto v = integer(s, 1, 1024);
      if (!v.ok()) return bad(origin, v.error().text);
      broker_fanout = *v;
      continue;
    }
    if (!s.key.starts_with("bootstrap.")) continue;
    seen_table = true;
    std::string name = s.key.substr(std::strlen("bootstrap."));
    if (name == "hosts") {
      auto hosts = host_list(s);
      if (!hosts.ok()) return bad(origin, hosts.error().text);
      cfg.hosts = std::move(*hosts);
      have_hosts = true;
    } else if (name == "port") {
      auto v = integer(s, 1, 65535);
      if (!v.ok()) return bad(origin, v.error().text);
      cfg.port = static_cast<uint16_t>(*v);
    } else if (name == "fanout") {
      auto v = integer(s, 1, 1024);
      if (!v.ok()) return bad(origin, v.error().text);
      bootstrap_fanout = *v;
    } else if (name == "bind") {
      if (s.list || !is_bind_address(s.value)) {
        return bad(origin,
                   "bootstrap.bind: must be an IP address (such as 0.0.0.0 or ::) or a host name (\"{host}\": each "
                   "host's), not " +
                       quote_input(s.value));
      }
      cfg.bind = s.value;
    } else if (name == "ca" || name == "cert" || name == "key") {
      auto p = path(s);
      if (!p.ok()) return bad(origin, p.error().text);
      (name == "ca" ? cfg.ca : name == "cert" ? cfg.cert : cfg.key) = std::move(*p);
    } else {
      std::string known;
      for (const char* k : kKeys) known += (known.empty() ? "" : ", ") + std::string(k);
      return bad(origin, "unknown key " + quote_input(name) + " in [bootstrap] (known: " + known + ")");
    }
  }
  if (!seen_table) return bad(origin, "no [bootstrap] table (hosts = [...] names the instance's hosts)");
  if (!have_hosts) return bad(origin, "[bootstrap] has no hosts (hosts = [...] names the instance's hosts)");
  if (bootstrap_fanout && broker_fanout && *bootstrap_fanout != *broker_fanout) {
    return bad(origin, "bootstrap.fanout (" + std::to_string(*bootstrap_fanout) + ") and broker.fanout (" +
                           std::to_string(*broker_fanout) + ") differ: set one");
  }
  cfg.fanout = bootstrap_fanout.value_or(broker_fanout.value_or(BootstrapConfig::kDefaultFanout));

  // Each host once: a name written twice would give two ranks one host.
  std::unordered_map<std::string, uint32_t> seen;
  seen.reserve(cfg.hosts.size());
  for (uint32_t rank = 0; rank < cfg.size(); ++rank) {
    if (!is_host_name(cfg.hosts[rank])) {
      return bad(origin, "bootstrap.hosts: " + quote_input(cfg.hosts[rank]) + " (rank " + std::to_string(rank) +
                             ") is not a host name: letters, digits, '-', '_' and '.' only");
    }
    auto [it, fresh] = seen.emplace(folded(cfg.hosts[rank]), rank);
    if (!fresh) {
      return bad(origin, "bootstrap.hosts: host " + cfg.hosts[it->second] + " is listed twice, at ranks " +
                             std::to_string(it->second) + " and " + std::to_string(rank));
    }
  }
  return cfg;
}

Result<BootstrapConfig> read_bootstrap_file(const std::string& file) {
  auto settings = cli::read_config_file(file);
  if (!settings.ok()) return settings.error();
  return parse_bootstrap(*settings, file);
}

Result<uint32_t> BootstrapConfig::find_rank(std::string_view hostname, std::optional<uint32_t> rank_override) const {
  if (rank_override) {
    if (*rank_override >= size()) {
      return Error{EINVAL, "rank " + std::to_string(*rank_override) + " is not in [bootstrap] hosts of " + origin +
                               ", which has ranks 0-" + std::to_string(size() - 1)};
    }
    return *rank_override;
  }
  std::vector<uint32_t> by_short;
  for (uint32_t rank = 0; rank < size(); ++rank) {
    switch (match_hostname(hosts[rank], hostname)) {
      case HostMatch::kExact: return rank;
      case HostMatch::kShort: by_short.push_back(rank); break;
      case HostMatch::kNone: break;
    }
  }
  if (by_short.size() == 1) return by_short[0];
  std::string name = quote_input(hostname, 64);
  name = name.substr(1, name.size() - 2);  // as it is, escaped but without quotes
  if (by_short.empty()) {
    return Error{EINVAL,
                 "this host (" + name + ") is not in [bootstrap] hosts of " + origin + ": " + hosts_text(hosts)};
  }
  std::string which;
  for (size_t i = 0; i < by_short.size() && i < 4; ++i) {
    which += (i == 0 ? "" : ", ") + hosts[by_short[i]] + " (rank " + std::to_string(by_short[i]) + ")";
  }
  if (by_short.size() > 4) which += ", ...";
  return Error{EINVAL, "this host (" + name + ") matches more than one of [bootstrap] hosts of " + origin + ": " +
                           which + "; write its full name there, or give its rank"};
}

Result<BootstrapPlace> BootstrapConfig::place(std::string_view hostname, std::optional<uint32_t> rank_override) const {
  auto rank = find_rank(hostname, rank_override);
  if (!rank.ok()) return rank.error();
  Topology tree = topology();
  return BootstrapPlace{*rank, hosts[*rank], tree.parent(*rank), tree.children(*rank)};
}

std::string BootstrapConfig::cert_path(uint32_t rank) const {
  LOOM_ASSERT(rank < size());
  return with_host(cert, hosts[rank]);
}

std::string BootstrapConfig::bind_address(uint32_t rank) const {
  LOOM_ASSERT(rank < size());
  return with_host(bind, hosts[rank]);
}

std::string BootstrapConfig::connect_address(uint32_t rank) const {
  LOOM_ASSERT(rank < size());
  return bind.find("{host}") != std::string::npos ? with_host(bind, hosts[rank]) : hosts[rank];
}

std::string BootstrapConfig::key_path(uint32_t rank) const {
  LOOM_ASSERT(rank < size());
  return with_host(key, hosts[rank]);
}

Result<std::string> local_hostname() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) {
    return Error{errno, std::string("cannot read this host's name: ") + std::strerror(errno)};
  }
  return std::string(buf);
}

}  // namespace loom
