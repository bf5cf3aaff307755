// OpenSSL objects owned by unique_ptr, and OpenSSL's error queue as one
// line of text. Private to src/tls/.
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <filesystem>
#include <memory>
#include <string>

#include "base/result.h"

namespace loom::tls::ossl {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};
using PKey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using BigNum = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using Ext = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;
using Store = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using StoreCtx = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using Names = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;

// What OpenSSL's error queue says (the last entry's reason), emptying it;
// `fallback` when it is empty.
std::string take_error(const std::string& fallback);

// The whole of a file, or "cannot read PATH: REASON".
Result<std::string> read_file(const std::filesystem::path& path);

// Parses PEM text read from `path` (named in errors).
Result<Cert> parse_cert(const std::string& pem, const std::filesystem::path& path);
Result<PKey> parse_key(const std::string& pem, const std::filesystem::path& path);

// Reads and parses in one step.
Result<Cert> load_cert(const std::filesystem::path& path);
Result<PKey> load_key(const std::filesystem::path& path);

// PEM text of a certificate or of a private key (PKCS#8, not encrypted).
std::string cert_pem(X509* cert);
std::string key_pem(EVP_PKEY* key);

// The first subjectAltName DNS name of a certificate, else its CN, else "".
std::string cert_host(X509* cert);

}  // namespace loom::tls::ossl
