#include "tls/ossl.h"

#include <fcntl.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <cstring>

namespace loom::tls::ossl {

std::string take_error(const std::string& fallback) {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    text = reason != nullptr ? reason : "error " + std::to_string(e);
  }
  return text.empty() ? fallback : text;
}

Result<std::string> read_file(const std::filesystem::path& path) {
  auto fail = [&](int e) { return Error{e, "cannot read " + path.string() + ": " + std::strerror(e)}; };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errno);
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : 0;
      ::close(fd);
      if (e != 0) return fail(e);
      return text;
    }
    // Keys and certificates are a few kilobytes; anything big is not one.
    if (text.size() > (1u << 20)) {
      ::close(fd);
      return Error{EFBIG, path.string() + ": too large for a key or certificate"};
    }
    text.append(buf, static_cast<size_t>(n));
  }
}

Result<Cert> parse_cert(const std::string& pem, const std::filesystem::path& path) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    ERR_clear_error();
    return Error{EINVAL, path.string() + ": not a PEM certificate"};
  }
  return cert;
}

Result<PKey> parse_key(const std::string& pem, const std::filesystem::path& path) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  // A null password callback with no password: an encrypted key fails
  // here instead of prompting on the terminal.
  PKey key(PEM_read_bio_PrivateKey(
      bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
  if (!key) {
    ERR_clear_error();
    return Error{EINVAL, path.string() + ": not a PEM private key (or an encrypted one)"};
  }
  return key;
}

Result<Cert> load_cert(const std::filesystem::path& path) {
  auto text = read_file(path);
  if (!text) return text.error();
  return parse_cert(*text, path);
}

Result<PKey> load_key(const std::filesystem::path& path) {
  auto text = read_file(path);
  if (!text) return text.error();
  return parse_key(*text, path);
}

namespace {
std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}
}  // namespace

std::string cert_pem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  LOOM_ASSERT(PEM_write_bio_X509(bio.get(), cert) == 1);
  return bio_text(bio.get());
}

std::string key_pem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  LOOM_ASSERT(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  return bio_text(bio.get());
}

std::string cert_host(X509* cert) {
  Names names(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names.get(), i);
    if (n->type != GEN_DNS) continue;
    const ASN1_IA5STRING* dns = n->d.dNSName;
    return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                       static_cast<size_t>(ASN1_STRING_length(dns)));
  }
  char cn[256] = {};
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  return n > 0 ? std::string(cn, static_cast<size_t>(n)) : std::string();
}

}  // namespace loom::tls::ossl
