// The instance's certificate authority and its host certificates
// (docs/deploy.md, "Keys and certificates"): what `loom keygen` writes
// and the TLS overlay reads.
//
// In a key directory DIR:
//   ca.crt      the instance's CA certificate (every host needs it)
//   ca.key      the CA's private key, mode 0600 (needed only to issue)
//   HOST.crt    HOST's certificate: CN and subjectAltName DNS = HOST,
//               signed by the CA, usable as TLS server and client
//   HOST.key    HOST's private key, mode 0600
//
// Keys are EC P-256 (ECDSA with SHA-256): accepted by every TLS 1.3 stack
// and by FIPS-restricted OpenSSL builds, which some sites run; Ed25519
// would be as safe and a little faster, but a link makes one handshake in
// its life, so the speed is worth nothing and the compatibility is.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace loom::tls {

// When a certificate is valid, in seconds from now; negative values lie in
// the past (tests make expired certificates that way).
struct Validity {
  // An hour back, so that a host whose clock is a little behind accepts a
  // certificate issued a moment ago.
  long long not_before = -3600;
  long long not_after = 3650LL * 24 * 3600;
  static Validity days(int n) { return Validity{-3600, static_cast<long long>(n) * 24 * 3600}; }
};

// A private key and its certificate, PEM text.
struct KeyPair {
  std::string key_pem;
  std::string cert_pem;
};

// A new certificate authority: a self-signed CA certificate (CA:TRUE,
// pathlen 0) named "loom CA <random hex>", so that two instances' CAs
// never share a name.
Result<KeyPair> make_authority(const Validity& validity = {});

// A new key and certificate for `host`, signed by `ca`.
Result<KeyPair> issue_host(const KeyPair& ca, const std::string& host, const Validity& validity = {});

// A host certificate signed by its own key, trusted by no one: what a
// rogue broker brings (tests).
Result<KeyPair> make_self_signed_host(const std::string& host, const Validity& validity = {});

// A name fit for a certificate and a file name: letters, digits, '-' and
// '.', at most 253 characters, not starting with '-' or '.', and not "ca".
Status check_host_name(std::string_view host);

// Writes DIR/NAME.key (mode 0600) and DIR/NAME.crt (mode 0644), each
// through a temporary file and a rename, replacing what was there.
Status write_pair(const KeyPair& pair, const std::filesystem::path& dir, const std::string& name);

// The CA in DIR (ca.key, ca.crt), checked to belong together.
Result<KeyPair> load_authority(const std::filesystem::path& dir);

struct KeygenRequest {
  std::filesystem::path dir;
  std::vector<std::string> hosts;  // names, already expanded
  int days = 3650;                 // validity of host certificates and of a new CA
  bool force = false;              // replace existing host files
};

// One file written (or, for an existing CA, reused), for people.
struct Written {
  std::filesystem::path path;
  std::string what;  // "created", "replaced" or "using"
  std::string about;
};

// `loom keygen`: creates DIR (mode 0700) if needed, the CA if absent
// (reused if present, so hosts can be added later), then a key and
// certificate per host. Existing host files are an error unless `force`;
// everything is checked before anything is written.
Result<std::vector<Written>> keygen(const KeygenRequest& request);

}  // namespace loom::tls
