// The reasons a link is refused come from two places. The side that
// judged a certificate has OpenSSL's verify result on its SSL object
// (SSL_get_verify_result), which says what was wrong with the peer's
// certificate. The side whose certificate was refused gets only the TLS
// alert the other side sent (unknown CA, certificate expired, ...), as an
// error in the SSL category on the operation that received it. A peer that
// sends no TLS at all shows as a record-layer error on the server.
#include "tls/tls.h"

#include <openssl/ssl.h>

#include "tls/ossl.h"

namespace loom::tls {

namespace {
using namespace ossl;

// What the verify callback saw of a certificate it refused, kept on the
// SSL object so that a refusal can say who the stranger claims to be, and
// whether the fault was in its certificate or in its authority's.
struct Refusal {
  std::string claimed;
  int depth = 0;  // 0: the peer's own certificate; 1: its issuer
};

int refusal_index() {
  static const int index = SSL_get_ex_new_index(
      0, nullptr, nullptr, nullptr,
      [](void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<Refusal*>(ptr); });
  return index;
}

const Refusal* refusal(SSL* ssl) { return static_cast<const Refusal*>(SSL_get_ex_data(ssl, refusal_index())); }

// A name from a certificate no one vouches for, made safe for a log line.
std::string printable(const std::string& name) {
  std::string out;
  for (char c : name.substr(0, 64)) {
    bool fine = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    out += fine ? c : '?';
  }
  return out;
}

int verify_callback(int preverify_ok, X509_STORE_CTX* store) {
  if (preverify_ok == 1) return 1;
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  X509* leaf = X509_STORE_CTX_get0_cert(store);
  if (ssl != nullptr && leaf != nullptr && refusal(ssl) == nullptr) {
    auto* r = new Refusal{printable(cert_host(leaf)), X509_STORE_CTX_get_error_depth(store)};
    if (SSL_set_ex_data(ssl, refusal_index(), r) != 1) delete r;
  }
  return 0;
}

// `depth` > 0: the fault is in an authority's certificate, not the peer's.
std::string verify_reason(long result, int depth = 0) {
  if (depth > 0) {
    switch (result) {
      case X509_V_ERR_CERT_HAS_EXPIRED: return "the authority's certificate expired";
      case X509_V_ERR_CERT_NOT_YET_VALID: return "the authority's certificate is not yet valid";
      default: break;
    }
  }
  switch (result) {
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: return "self-signed";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_CERT_UNTRUSTED: return "certificate signed by another authority";
    case X509_V_ERR_CERT_HAS_EXPIRED: return "expired";
    case X509_V_ERR_CERT_NOT_YET_VALID: return "not yet valid";
    case X509_V_ERR_INVALID_PURPOSE: return "certificate not issued for a loom host";
    default: return std::string("certificate refused: ") + X509_verify_cert_error_string(result);
  }
}

std::string ssl_reason(unsigned long e) {
  const char* text = ERR_reason_error_string(e);
  return text != nullptr ? text : "error " + std::to_string(ERR_GET_REASON(e));
}

// A host's three files, read, with its key checked against its certificate.
struct Loaded {
  Cert ca, cert;
  PKey key;
};

Result<Loaded> load_files(const Files& files) {
  auto ca = load_cert(files.ca);
  if (!ca) return ca.error();
  auto cert = load_cert(files.cert);
  if (!cert) return cert.error();
  auto key = load_key(files.key);
  if (!key) return key.error();
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    ERR_clear_error();
    return Error{EINVAL, files.key.string() + " is not the key of " + files.cert.string()};
  }
  return Loaded{std::move(*ca), std::move(*cert), std::move(*key)};
}

Result<std::unique_ptr<asio::ssl::context>> make_context(const Files& files, bool server) {
  auto loaded = load_files(files);
  if (!loaded) return loaded.error();
  auto ctx =
      std::make_unique<asio::ssl::context>(server ? asio::ssl::context::tls_server : asio::ssl::context::tls_client);
  SSL_CTX* c = ctx->native_handle();
  // TLS 1.3 only; no session tickets or cache: a link handshakes once in
  // its life, and a resumed session would skip the certificate check.
  bool ok = SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) == 1 &&
            SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) == 1 && SSL_CTX_set_num_tickets(c, 0) == 1;
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  ok = ok && SSL_CTX_use_certificate(c, loaded->cert.get()) == 1 && SSL_CTX_use_PrivateKey(c, loaded->key.get()) == 1;
  // The instance's CA is the only trust anchor: no system store is loaded.
  ok = ok && X509_STORE_add_cert(SSL_CTX_get_cert_store(c), loaded->ca.get()) == 1;
  if (!ok) return Error{EIO, "cannot set up TLS with " + files.cert.string() + ": " + take_error("unknown error")};
  X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(c), X509_V_FLAG_X509_STRICT);
  int mode = server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER;
  SSL_CTX_set_verify(c, mode, verify_callback);
  return ctx;
}
}  // namespace

Files Files::for_host(const std::filesystem::path& dir, const std::string& host) {
  return Files{dir / "ca.crt", dir / (host + ".crt"), dir / (host + ".key")};
}

Result<std::unique_ptr<asio::ssl::context>> server_context(const Files& files) { return make_context(files, true); }

Result<std::unique_ptr<asio::ssl::context>> client_context(const Files& files) { return make_context(files, false); }

Status check_own_certificate(const Files& files) {
  auto loaded = load_files(files);
  if (!loaded) return loaded.error();
  Store store(X509_STORE_new());
  if (!store || X509_STORE_add_cert(store.get(), loaded->ca.get()) != 1) {
    return Error{ENOMEM, "cannot check " + files.cert.string() + ": " + take_error("out of memory")};
  }
  // A broker is a TLS client to its parent and a server to its children.
  for (int purpose : {X509_PURPOSE_SSL_CLIENT, X509_PURPOSE_SSL_SERVER}) {
    StoreCtx ctx(X509_STORE_CTX_new());
    if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), loaded->cert.get(), nullptr) != 1) {
      return Error{ENOMEM, "cannot check " + files.cert.string() + ": " + take_error("out of memory")};
    }
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx.get()), X509_V_FLAG_X509_STRICT);
    X509_STORE_CTX_set_purpose(ctx.get(), purpose);
    if (X509_verify_cert(ctx.get()) != 1) {
      ERR_clear_error();
      return Error{EINVAL,
                   files.cert.string() + ": " +
                       verify_reason(X509_STORE_CTX_get_error(ctx.get()), X509_STORE_CTX_get_error_depth(ctx.get()))};
    }
  }
  return {};
}

std::string peer_label(const TlsStream& stream) {
  std::error_code ec;
  auto ep = stream.next_layer().remote_endpoint(ec);
  if (ec) return "an unknown peer";
  std::string addr = ep.address().to_string();
  if (ep.address().is_v6()) addr = "[" + addr + "]";
  return addr + ":" + std::to_string(ep.port());
}

std::string failure_reason(SSL* ssl, const std::error_code& ec) {
  long verified = ssl != nullptr ? SSL_get_verify_result(ssl) : X509_V_OK;
  if (verified != X509_V_OK) {
    const Refusal* r = ssl != nullptr ? refusal(ssl) : nullptr;
    return verify_reason(verified, r != nullptr ? r->depth : 0);
  }
  if (ec.category() == asio::error::get_ssl_category()) {
    auto e = static_cast<unsigned long>(ec.value());
    if (ERR_GET_LIB(e) == ERR_LIB_SSL) {
      switch (ERR_GET_REASON(e)) {
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE: return "no certificate";
        case SSL_R_TLSV1_ALERT_UNKNOWN_CA: return "refused our certificate (unknown authority)";
        case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED: return "refused our certificate (expired)";
        case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN: return "refused our certificate";
        case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED: return "refused us: we sent no certificate";
        case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION: return "refused our TLS version (only TLS 1.3 is spoken)";
        case SSL_R_UNSUPPORTED_PROTOCOL:
        case SSL_R_NO_PROTOCOLS_AVAILABLE:
        case SSL_R_WRONG_VERSION_NUMBER:
        case SSL_R_HTTP_REQUEST:
        case SSL_R_HTTPS_PROXY_REQUEST:
        case SSL_R_PACKET_LENGTH_TOO_LONG:
        case SSL_R_RECORD_LENGTH_MISMATCH:
        case SSL_R_UNKNOWN_PROTOCOL:
        case SSL_R_UNEXPECTED_MESSAGE:
        case SSL_R_UNEXPECTED_RECORD:
        case SSL_R_LENGTH_MISMATCH: return "does not speak TLS 1.3 (" + ssl_reason(e) + ")";
        default: return "TLS error (" + ssl_reason(e) + ")";
      }
    }
    return "TLS error (" + ssl_reason(e) + ")";
  }
  if (ec == asio::ssl::error::stream_truncated) return "closed the connection without ending TLS";
  if (ec == asio::error::eof) return "closed the connection";
  return ec.message();
}

Error failure(SSL* ssl, const std::error_code& ec, const std::string& label) {
  std::string who = label;
  if (const Refusal* r = refusal(ssl); r != nullptr && !r->claimed.empty()) who += " (claims " + r->claimed + ")";
  return Error{EPERM, "TLS peer " + who + ": " + failure_reason(ssl, ec)};
}

Error failure(TlsStream& stream, const std::error_code& ec) {
  return failure(stream.native_handle(), ec, peer_label(stream));
}

Result<std::string> peer_host(SSL* ssl, const std::string& label) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return Error{EPERM, "TLS peer " + label + ": no certificate"};
  if (long v = SSL_get_verify_result(ssl); v != X509_V_OK) {
    return Error{EPERM, "TLS peer " + label + ": " + verify_reason(v)};
  }
  return cert_host(cert);
}

Result<std::string> peer_host(TlsStream& stream) { return peer_host(stream.native_handle(), peer_label(stream)); }

Status peer_is(SSL* ssl, std::string_view host, const std::string& label) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return Error{EPERM, "TLS peer " + label + ": no certificate"};
  if (long v = SSL_get_verify_result(ssl); v != X509_V_OK) {
    return Error{EPERM, "TLS peer " + label + ": " + verify_reason(v)};
  }
  // The subjectAltName only: keygen always writes one, and the CN is a
  // fallback that RFC 6125 deprecates.
  unsigned int flags = X509_CHECK_FLAG_NO_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT;
  if (!host.empty() && X509_check_host(cert, host.data(), host.size(), flags, nullptr) == 1) return {};
  ERR_clear_error();
  return Error{EPERM,
               "TLS peer " + label + ": names host " + printable(cert_host(cert)) + ", expected " + std::string(host)};
}

Status peer_is(TlsStream& stream, std::string_view host) {
  return peer_is(stream.native_handle(), host, peer_label(stream));
}

}  // namespace loom::tls
