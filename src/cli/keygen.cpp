// loom keygen [--dir DIR] --hosts HOSTLIST [--days N] [--force]
// Creates the instance's certificate authority (once) and a key and
// certificate per host (docs/deploy.md, "Keys and certificates"); the
// work is in src/tls/keygen.h. DIR defaults to /etc/loom/certs, where the
// bootstrap configuration looks for them.
#include "tls/keygen.h"

#include <cstdio>

#include "cli/common.h"
#include "hostlist/hostlist.h"

namespace loom::cli {

namespace {
struct KeygenOpts {
  std::string dir = "/etc/loom/certs";
  std::string hosts;
  int days = 3650;
  bool force = false;
};

// The host names of a HOSTLIST argument: an RFC 29 hostlist
// ("node[0-15],login"; blanks are dropped, so "node0, node1" reads as
// people write it).
Result<std::vector<std::string>> host_names(std::string list) {
  std::erase_if(list, [](char c) { return c == ' ' || c == '\t'; });
  auto hosts = Hostlist::parse(list);
  if (!hosts.ok()) return hosts.error();
  if (hosts->empty()) return Error{EINVAL, "no hosts given"};
  return hosts->hosts();
}

int run_keygen(const KeygenOpts& o) {
  auto hosts = host_names(o.hosts);
  if (!hosts) return fail("keygen", hosts.error());
  auto written = tls::keygen(tls::KeygenRequest{o.dir, std::move(*hosts), o.days, o.force});
  if (!written) return fail("keygen", written.error());
  for (const auto& w : *written) {
    std::printf("%-8s %s (%s)\n", w.what.c_str(), w.path.c_str(), w.about.c_str());
  }
  return 0;
}
}  // namespace

void add_keygen_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<KeygenOpts>();
  auto* sub = app.add_subcommand("keygen", "Create the instance's certificate authority and host certificates");
  sub->add_option("--dir", o->dir,
                  "Directory of the keys (created with mode 0700 if absent; default /etc/loom/certs, where "
                  "[bootstrap] looks for them)");
  sub->add_option("--hosts", o->hosts, "Hosts to issue certificates for, a hostlist: node[0-15],login")->required();
  sub->add_option("--days", o->days, "Days the certificates (and a new CA) stay valid (default 3650)")
      ->check(CLI::Range(1, 36500));
  sub->add_flag("--force", o->force, "Replace existing host keys and certificates");
  sub->footer(
      "In DIR: ca.crt and ca.key, the certificate authority (created if absent, else\n"
      "reused, so hosts can be added later); for each host, HOST.key and HOST.crt\n"
      "(EC P-256, the host name as CN and subjectAltName). Keys are mode 0600.\n"
      "Copy ca.crt, HOST.crt and HOST.key to each host; keep ca.key only where you\n"
      "issue certificates. Example: loom keygen --hosts 'node[0-2]'");
  sub->callback([o, &run] { run = [o] { return run_keygen(*o); }; });
}

}  // namespace loom::cli
