// Certificates are built with OpenSSL's X509 API. Host certificates carry
// basicConstraints CA:FALSE (a host key can never issue certificates the
// instance would trust), keyUsage digitalSignature and extendedKeyUsage
// serverAuth + clientAuth: a broker is the TLS server to its children and
// the client of its parent with the same certificate.
#include "tls/keygen.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <set>

#include "base/write_all.h"
#include "tls/ossl.h"

namespace loom::tls {

namespace {
using namespace ossl;

Result<PKey> new_key() {
  PKey key(EVP_EC_gen("P-256"));
  if (!key) return Error{EIO, "cannot create an EC P-256 key: " + take_error("unknown error")};
  return key;
}

bool add_ext(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  Ext ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
  return ext && X509_add_ext(cert, ext.get(), -1) == 1;
}

struct CertSpec {
  std::string cn;
  bool is_ca = false;
  std::string dns;  // subjectAltName, hosts only
  Validity validity;
};

// A certificate for `key` described by `spec`, signed by `issuer_key` as
// `issuer` (both null: self-signed by `key`).
Result<Cert> make_cert(EVP_PKEY* key, const CertSpec& spec, X509* issuer, EVP_PKEY* issuer_key) {
  Cert cert(X509_new());
  if (!cert) return Error{ENOMEM, "cannot allocate a certificate"};
  X509* x = cert.get();
  // A random 159-bit positive serial (RFC 5280 allows 20 octets).
  BigNum serial(BN_new());
  bool ok = X509_set_version(x, X509_VERSION_3) == 1 && serial &&
            BN_rand(serial.get(), 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
            BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(x)) != nullptr &&
            X509_gmtime_adj(X509_getm_notBefore(x), static_cast<long>(spec.validity.not_before)) != nullptr &&
            X509_gmtime_adj(X509_getm_notAfter(x), static_cast<long>(spec.validity.not_after)) != nullptr &&
            X509_set_pubkey(x, key) == 1;
  X509_NAME* name = X509_get_subject_name(x);
  ok = ok &&
       X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("loom"), -1, -1,
                                  0) == 1 &&
       X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(spec.cn.c_str()),
                                  -1, -1, 0) == 1 &&
       X509_set_issuer_name(x, issuer != nullptr ? X509_get_subject_name(issuer) : name) == 1;
  if (!ok) return Error{EIO, "cannot build a certificate for " + spec.cn + ": " + take_error("unknown error")};

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : x, x, nullptr, nullptr, 0);
  ok = add_ext(x, &ctx, NID_subject_key_identifier, "hash") &&
       add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
  if (spec.is_ca) {
    ok = ok && add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
         add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    // check_host_name keeps `dns` free of ',' and ':', so it stays one name.
    ok = ok && add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") &&
         add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") &&
         add_ext(x, &ctx, NID_ext_key_usage, "serverAuth,clientAuth") &&
         add_ext(x, &ctx, NID_subject_alt_name, "DNS:" + spec.dns);
  }
  if (!ok) return Error{EIO, "cannot add extensions for " + spec.cn + ": " + take_error("unknown error")};
  if (X509_sign(x, issuer_key != nullptr ? issuer_key : key, EVP_sha256()) <= 0) {
    return Error{EIO, "cannot sign the certificate of " + spec.cn + ": " + take_error("unknown error")};
  }
  return cert;
}

Result<KeyPair> make_pair(const CertSpec& spec, X509* issuer, EVP_PKEY* issuer_key) {
  auto key = new_key();
  if (!key) return key.error();
  auto cert = make_cert(key->get(), spec, issuer, issuer_key);
  if (!cert) return cert.error();
  return KeyPair{key_pem(key->get()), cert_pem(cert->get())};
}

std::string random_hex(int bytes) {
  std::string out;
  unsigned char buf[32];
  LOOM_ASSERT(bytes <= static_cast<int>(sizeof buf));
  LOOM_ASSERT(RAND_bytes(buf, bytes) == 1);
  static const char* const kDigits = "0123456789abcdef";
  for (int i = 0; i < bytes; ++i) {
    out += kDigits[buf[i] >> 4];
    out += kDigits[buf[i] & 15];
  }
  return out;
}

// Writes `text` to `path` with `mode` whatever the umask, through a
// temporary file renamed over it, so a reader never sees half a key.
Status write_file(const std::filesystem::path& path, const std::string& text, mode_t mode) {
  std::string tmp = path.string() + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return Error{errno, "cannot write " + tmp + ": " + std::strerror(errno)};
  bool ok = ::fchmod(fd, mode) == 0 && write_all(fd, text) && ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    return Error{err, "cannot write " + path.string() + ": " + std::strerror(err)};
  }
  return {};
}

std::string not_after_text(const std::string& cert_pem_text) {
  auto cert = parse_cert(cert_pem_text, "certificate");
  if (!cert) return "?";
  tm t{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert->get()), &t) != 1) return "?";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &t);
  return buf;
}

// Seconds from now until the certificate's notAfter (negative once past).
long long seconds_left(const std::string& cert_pem_text) {
  auto cert = parse_cert(cert_pem_text, "certificate");
  LOOM_ASSERT(cert.ok());
  int days = 0;
  int secs = 0;
  LOOM_ASSERT(ASN1_TIME_diff(&days, &secs, nullptr, X509_get0_notAfter(cert->get())) == 1);
  return static_cast<long long>(days) * 24 * 3600 + secs;
}

bool is_there(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::symlink_status(p, ec).type() != std::filesystem::file_type::not_found;
}
}  // namespace

Result<KeyPair> make_authority(const Validity& validity) {
  CertSpec spec{"loom CA " + random_hex(8), true, "", validity};
  return make_pair(spec, nullptr, nullptr);
}

Result<KeyPair> issue_host(const KeyPair& ca, const std::string& host, const Validity& validity) {
  if (auto s = check_host_name(host); !s) return s.error();
  auto ca_cert = parse_cert(ca.cert_pem, "the CA certificate");
  if (!ca_cert) return ca_cert.error();
  auto ca_key = parse_key(ca.key_pem, "the CA key");
  if (!ca_key) return ca_key.error();
  return make_pair(CertSpec{host, false, host, validity}, ca_cert->get(), ca_key->get());
}

Result<KeyPair> make_self_signed_host(const std::string& host, const Validity& validity) {
  if (auto s = check_host_name(host); !s) return s.error();
  return make_pair(CertSpec{host, false, host, validity}, nullptr, nullptr);
}

Status check_host_name(std::string_view host) {
  auto bad = [&](const std::string& why) { return Error{EINVAL, "bad host name '" + std::string(host) + "': " + why}; };
  if (host.empty()) return bad("empty");
  if (host.size() > 253) return bad("longer than 253 characters");
  if (host.front() == '-' || host.front() == '.') return bad("starts with '" + std::string(1, host.front()) + "'");
  for (char c : host) {
    bool fine = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!fine) return bad("only letters, digits, '-' and '.' may be used");
  }
  if (host == "ca") return bad("'ca' is the certificate authority's file name");
  return {};
}

Status write_pair(const KeyPair& pair, const std::filesystem::path& dir, const std::string& name) {
  // The key first: a certificate on disk always has its key beside it.
  if (auto s = write_file(dir / (name + ".key"), pair.key_pem, 0600); !s) return s;
  return write_file(dir / (name + ".crt"), pair.cert_pem, 0644);
}

Result<KeyPair> load_authority(const std::filesystem::path& dir) {
  auto cert_text = read_file(dir / "ca.crt");
  if (!cert_text) return cert_text.error();
  auto key_text = read_file(dir / "ca.key");
  if (!key_text) return key_text.error();
  auto cert = parse_cert(*cert_text, dir / "ca.crt");
  if (!cert) return cert.error();
  auto key = parse_key(*key_text, dir / "ca.key");
  if (!key) return key.error();
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    ERR_clear_error();
    return Error{EINVAL, (dir / "ca.key").string() + " is not the key of " + (dir / "ca.crt").string()};
  }
  return KeyPair{std::move(*key_text), std::move(*cert_text)};
}

Result<std::vector<Written>> keygen(const KeygenRequest& request) {
  const auto& dir = request.dir;
  if (request.hosts.empty()) return Error{EINVAL, "no hosts given"};
  if (request.days <= 0) return Error{EINVAL, "--days must be positive"};
  std::set<std::string> seen;
  for (const auto& host : request.hosts) {
    if (auto s = check_host_name(host); !s) return s.error();
    if (!seen.insert(host).second) return Error{EINVAL, "host " + host + " is listed twice"};
  }
  // Check everything before writing anything.
  bool have_ca = is_there(dir / "ca.crt");
  if (!have_ca && is_there(dir / "ca.key")) {
    return Error{EEXIST, (dir / "ca.key").string() + " exists without " + (dir / "ca.crt").string() +
                             ": restore the certificate or remove the key"};
  }
  KeyPair ca;
  if (have_ca) {
    auto loaded = load_authority(dir);
    if (!loaded) {
      if (loaded.error().code == ENOENT) {
        return Error{ENOENT, loaded.error().text + " (the CA's key is needed to issue certificates)"};
      }
      return loaded.error();
    }
    ca = std::move(*loaded);
    if (seconds_left(ca.cert_pem) <= 0) {
      return Error{EINVAL, (dir / "ca.crt").string() + " expired on " + not_after_text(ca.cert_pem) +
                               ": make a new authority and certificates in a new directory"};
    }
  }
  for (const auto& host : request.hosts) {
    for (const char* ext : {".key", ".crt"}) {
      auto path = dir / (host + ext);
      if (is_there(path) && !request.force) {
        return Error{EEXIST, path.string() + " exists (--force replaces it)"};
      }
    }
  }
  std::vector<Written> out;
  if (have_ca) {
    out.push_back({dir / "ca.crt", "using", "certificate authority, valid until " + not_after_text(ca.cert_pem)});
  } else {
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) {
      // Parents as the umask says; the key directory itself private.
      std::filesystem::create_directories(dir, ec);
      if (ec) return Error{ec.value(), "cannot create " + dir.string() + ": " + ec.message()};
      std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
      if (ec) return Error{ec.value(), "cannot set the mode of " + dir.string() + ": " + ec.message()};
    }
    auto made = make_authority(Validity::days(request.days));
    if (!made) return made.error();
    ca = std::move(*made);
    if (auto s = write_pair(ca, dir, "ca"); !s) return s.error();
    out.push_back({dir / "ca.key", "created", "certificate authority's private key, mode 0600"});
    out.push_back({dir / "ca.crt", "created", "certificate authority, valid until " + not_after_text(ca.cert_pem)});
  }
  for (const auto& host : request.hosts) {
    bool replacing = is_there(dir / (host + ".crt")) || is_there(dir / (host + ".key"));
    // No later than the authority: past its date the certificate is
    // worth nothing, and the date printed should say so.
    Validity validity = Validity::days(request.days);
    validity.not_after = std::min(validity.not_after, seconds_left(ca.cert_pem));
    auto pair = issue_host(ca, host, validity);
    if (!pair) return pair.error();
    if (auto s = write_pair(*pair, dir, host); !s) return s.error();
    std::string what = replacing ? "replaced" : "created";
    out.push_back({dir / (host + ".key"), what, "private key of " + host + ", mode 0600"});
    out.push_back(
        {dir / (host + ".crt"), what, "certificate of " + host + ", valid until " + not_after_text(pair->cert_pem)});
  }
  return out;
}

}  // namespace loom::tls
