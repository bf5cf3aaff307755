// TLS for the overlay between hosts (docs/deploy.md, "Keys and
// certificates"): asio::ssl contexts built from a host's `loom keygen`
// files, and the checks that turn a handshake into "this is the broker of
// host H". The broker's overlay between hosts uses it
// (src/broker/overlay_tcp.cpp).
//
// Both ends speak TLS 1.3 only and verify the other's certificate against
// the instance's CA alone (never the system's store); the server requires
// a client certificate. That proves "a host of this instance". Which host
// is checked after the handshake with `peer_is`: a child checks its
// parent's host at once; a parent checks the host of the rank the child
// names in `overlay.hello`. In TLS 1.3 the client finishes its handshake
// before the server has judged the client's certificate, so a refused
// child learns it from its first read (`failure` names the alert).
//
// Every failure is one line naming the peer and the reason, e.g.
//   TLS peer 10.0.0.9:40312 (claims node2): self-signed
//   TLS peer 10.0.0.3:40312: names host node3, expected node2
#pragma once

#include <asio/ip/tcp.hpp>
#include <asio/ssl.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "base/result.h"

namespace loom::tls {

using TlsStream = asio::ssl::stream<asio::ip::tcp::socket>;

// A host's files in a `loom keygen` directory: DIR/ca.crt, DIR/HOST.crt,
// DIR/HOST.key.
struct Files {
  std::filesystem::path ca;
  std::filesystem::path cert;
  std::filesystem::path key;
  static Files for_host(const std::filesystem::path& dir, const std::string& host);
};

// Contexts for accepting children (server: requires a client
// certificate) and for connecting to a parent (client). Errors name the
// file: "cannot read /etc/loom/certs/node1.key: Permission denied",
// "/etc/loom/certs/node1.key is not the key of /etc/loom/certs/node1.crt".
Result<std::unique_ptr<asio::ssl::context>> server_context(const Files& files);
Result<std::unique_ptr<asio::ssl::context>> client_context(const Files& files);

// Checks that our own certificate is valid now and signed by the CA, so a
// broker can refuse to start with a certificate every peer would refuse:
// "/etc/loom/certs/node1.crt: expired".
Status check_own_certificate(const Files& files);

// "ADDRESS:PORT" of the socket's peer (or "an unknown peer").
std::string peer_label(const TlsStream& stream);

// Why a handshake, or a read or write on a TLS link, failed: one line
// "TLS peer LABEL[ (claims HOST)]: REASON". Reasons for a certificate we
// refused: "certificate signed by another authority", "self-signed",
// "expired", "not yet valid", "no certificate", "the authority's
// certificate expired" (ca.crt is past its date); for one the peer refused:
// "refused our certificate (...)"; for a peer that does not speak TLS 1.3:
// "does not speak TLS 1.3 (...)".
Error failure(TlsStream& stream, const std::error_code& ec);
// The same for any asio::ssl::stream (say over a Unix socket), given its
// SSL object (`stream.native_handle()`) and a label for the peer.
Error failure(SSL* ssl, const std::error_code& ec, const std::string& label);
// The reason alone.
std::string failure_reason(SSL* ssl, const std::error_code& ec);

// The host the peer's verified certificate names (its subjectAltName DNS
// name), or an error if there is no verified certificate.
Result<std::string> peer_host(TlsStream& stream);
Result<std::string> peer_host(SSL* ssl, const std::string& label);

// After a handshake: OK if the peer's verified certificate names `host`
// (subjectAltName DNS, compared without case), else
// "TLS peer LABEL: names host X, expected Y" (or "no certificate").
Status peer_is(TlsStream& stream, std::string_view host);
Status peer_is(SSL* ssl, std::string_view host, const std::string& label);

}  // namespace loom::tls
