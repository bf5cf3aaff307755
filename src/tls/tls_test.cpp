// Contexts from `keygen`'s files, then real TLS handshakes over loopback
// TCP inside one io_context: who is let in, who is refused, and the reason
// each side gives.
#include "tls/tls.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/local/connect_pair.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>

#include "tls/keygen.h"
#include "tls/test_keys.h"

namespace loom::tls {
namespace {

using namespace test_keys;  // NOLINT(google-build-using-namespace): the tls/ test kit
using asio::ip::tcp;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kWelcome = "welcome to the overlay";

std::unique_ptr<asio::ssl::context> server_ctx(const Files& f) {
  auto ctx = server_context(f);
  LOOM_ASSERT(ctx.ok());
  return std::move(*ctx);
}
std::unique_ptr<asio::ssl::context> client_ctx(const Files& f) {
  auto ctx = client_context(f);
  LOOM_ASSERT(ctx.ok());
  return std::move(*ctx);
}

// What one end of a link saw.
struct Side {
  bool handshake_ok = false;
  std::string peer_host;  // from the verified certificate
  std::string error;      // a refusal, one line
  std::string received;   // application data (the client only)
};

struct Outcome {
  Side server;
  Side client;
  bool finished = false;
};

// One link over loopback: the server accepts, handshakes, checks that the
// client is `client_host` (if given), sends kWelcome and ends TLS; the
// client connects, handshakes, checks that the server is `server_host` (if
// given) and reads until the end.
Outcome link(asio::ssl::context& sctx, asio::ssl::context& cctx, const std::string& client_host,
             const std::string& server_host) {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  std::optional<TlsStream> server;
  TlsStream client(io, cctx);
  Outcome out;
  char buf[256];

  acceptor.async_accept([&](const std::error_code& ec, tcp::socket sock) {
    if (ec) {
      out.server.error = ec.message();
      return;
    }
    server.emplace(std::move(sock), sctx);
    server->async_handshake(TlsStream::server, [&](const std::error_code& ec) {
      if (ec) {
        out.server.error = failure(*server, ec).text;
        server->lowest_layer().close();
        return;
      }
      out.server.handshake_ok = true;
      auto host = peer_host(*server);
      out.server.peer_host = host ? *host : host.error().text;
      if (!client_host.empty()) {
        if (auto s = peer_is(*server, client_host); !s) {
          out.server.error = s.error().text;
          server->lowest_layer().close();
          return;
        }
      }
      asio::async_write(*server, asio::buffer(kWelcome), [&](const std::error_code& ec, size_t) {
        if (ec) {
          server->lowest_layer().close();
          return;
        }
        server->async_shutdown([&](const std::error_code&) { server->lowest_layer().close(); });
      });
    });
  });

  std::function<void()> read_more = [&] {
    client.async_read_some(asio::buffer(buf), [&](const std::error_code& ec, size_t n) {
      out.client.received.append(buf, n);
      if (ec) {
        if (ec != asio::error::eof) out.client.error = failure(client, ec).text;
        client.lowest_layer().close();
        return;
      }
      read_more();
    });
  };
  client.next_layer().async_connect(acceptor.local_endpoint(), [&](const std::error_code& ec) {
    if (ec) {
      out.client.error = ec.message();
      return;
    }
    client.async_handshake(TlsStream::client, [&](const std::error_code& ec) {
      if (ec) {
        out.client.error = failure(client, ec).text;
        client.lowest_layer().close();
        return;
      }
      out.client.handshake_ok = true;
      auto host = peer_host(client);
      out.client.peer_host = host ? *host : host.error().text;
      if (!server_host.empty()) {
        if (auto s = peer_is(client, server_host); !s) {
          out.client.error = s.error().text;
          client.lowest_layer().close();
          return;
        }
      }
      read_more();
    });
  });
  // A bound, not a wait: every path above ends with both sockets closed,
  // which stops the loop; a hang would be a bug reported here.
  io.run_for(std::chrono::seconds(30));
  out.finished = io.stopped();
  return out;
}

// ---------------------------------------------------------------- contexts

TEST(TlsContext, AMissingFileIsOneLineNamingIt) {
  Instance inst;
  auto ctx = server_context(inst.files("node9"));
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.error().text,
            "cannot read " + (inst.dir.path() / "node9.crt").string() + ": No such file or directory");
}

TEST(TlsContext, AKeyOfAnotherHostIsRefused) {
  Instance inst;
  Files f = inst.files("node0");
  f.key = inst.dir.path() / "node1.key";
  auto ctx = client_context(f);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.error().text, f.key.string() + " is not the key of " + f.cert.string());
}

TEST(TlsContext, AFileThatIsNotPemIsNamed) {
  Instance inst;
  std::ofstream(inst.dir.path() / "node0.crt") << "hello\n";
  auto ctx = client_context(inst.files("node0"));
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.error().text, (inst.dir.path() / "node0.crt").string() + ": not a PEM certificate");
}

// ---------------------------------------------------------------- handshakes

TEST(TlsLink, AGoodPairConnectsAndEachSideSeesTheOtherHost) {
  Instance inst;
  auto s = server_ctx(inst.files("node0"));
  auto c = client_ctx(inst.files("node1"));
  Outcome out = link(*s, *c, "node1", "node0");
  ASSERT_TRUE(out.finished);
  EXPECT_TRUE(out.server.handshake_ok);
  EXPECT_TRUE(out.client.handshake_ok);
  EXPECT_EQ(out.server.peer_host, "node1");
  EXPECT_EQ(out.client.peer_host, "node0");
  EXPECT_EQ(out.server.error, "");
  EXPECT_EQ(out.client.error, "");
  EXPECT_EQ(out.client.received, kWelcome);
}

// Files for a rogue client: `pair` as HOST.crt/HOST.key next to the
// instance's ca.crt, so the rogue trusts the real server and only its own
// certificate is in question.
Files rogue_files(const TempDir& dir, const Instance& inst, const KeyPair& pair, const std::string& host) {
  LOOM_ASSERT(write_pair(pair, dir.path(), host).ok());
  fs::copy_file(inst.dir.path() / "ca.crt", dir.path() / "ca.crt", fs::copy_options::overwrite_existing);
  return Files::for_host(dir.path(), host);
}

TEST(TlsLink, ASelfSignedClientIsRefused) {
  Instance inst;
  TempDir rogue;
  auto pair = make_self_signed_host("node1");
  ASSERT_TRUE(pair.ok());
  auto s = server_ctx(inst.files("node0"));
  auto c = client_ctx(rogue_files(rogue, inst, *pair, "node1"));
  Outcome out = link(*s, *c, "", "");
  ASSERT_TRUE(out.finished);
  EXPECT_FALSE(out.server.handshake_ok);
  EXPECT_THAT(out.server.error, StartsWith("TLS peer 127.0.0.1:"));
  EXPECT_THAT(out.server.error, HasSubstr(" (claims node1): self-signed"));
  EXPECT_EQ(out.client.received, "");
  EXPECT_THAT(out.client.error, HasSubstr("refused our certificate (unknown authority)"));
}

TEST(TlsLink, AClientOfAnotherInstanceIsRefused) {
  Instance inst;
  Instance other;
  TempDir rogue;
  KeyPair pair{file_text(other.dir.path() / "node1.key"), file_text(other.dir.path() / "node1.crt")};
  auto s = server_ctx(inst.files("node0"));
  auto c = client_ctx(rogue_files(rogue, inst, pair, "node1"));
  Outcome out = link(*s, *c, "", "");
  ASSERT_TRUE(out.finished);
  EXPECT_FALSE(out.server.handshake_ok);
  EXPECT_THAT(out.server.error, HasSubstr(" (claims node1): certificate signed by another authority"));
  EXPECT_EQ(out.client.received, "");
}

TEST(TlsLink, AServerOfAnotherInstanceIsRefusedByTheClient) {
  Instance inst;
  Instance other;
  // Even where OpenSSL's default store would trust the other CA: only the
  // instance's own CA is loaded.
  struct Unset {
    ~Unset() {
      ::unsetenv("SSL_CERT_FILE");
      ::unsetenv("SSL_CERT_DIR");
    }
  } unset;
  ::setenv("SSL_CERT_FILE", (other.dir.path() / "ca.crt").c_str(), 1);
  ::setenv("SSL_CERT_DIR", other.dir.path().c_str(), 1);
  auto s = server_ctx(other.files("node0"));
  auto c = client_ctx(inst.files("node1"));
  Outcome out = link(*s, *c, "", "");
  ASSERT_TRUE(out.finished);
  EXPECT_FALSE(out.client.handshake_ok);
  EXPECT_THAT(out.client.error, HasSubstr(" (claims node0): certificate signed by another authority"));
  EXPECT_FALSE(out.server.handshake_ok);
  EXPECT_THAT(out.server.error, HasSubstr("refused our certificate (unknown authority)"));
}

TEST(TlsContext, OwnCertificateOfAnotherAuthorityIsNamed) {
  Instance inst;
  Instance other;
  Files f = inst.files("node0");
  f.ca = other.dir.path() / "ca.crt";
  EXPECT_EQ(check_own_certificate(f).error().text, f.cert.string() + ": certificate signed by another authority");
}

TEST(TlsLink, AnExpiredCertificateIsRefused) {
  Instance inst;
  TempDir rogue;
  auto ca = load_authority(inst.dir.path());
  ASSERT_TRUE(ca.ok());
  auto pair = issue_host(*ca, "node1", Validity{-2 * 86400, -86400});
  ASSERT_TRUE(pair.ok());
  Files files = rogue_files(rogue, inst, *pair, "node1");
  EXPECT_EQ(check_own_certificate(files).error().text, files.cert.string() + ": expired");
  auto s = server_ctx(inst.files("node0"));
  auto c = client_ctx(files);
  Outcome out = link(*s, *c, "", "");
  ASSERT_TRUE(out.finished);
  EXPECT_FALSE(out.server.handshake_ok);
  EXPECT_THAT(out.server.error, HasSubstr(" (claims node1): expired"));
  EXPECT_THAT(out.client.error, HasSubstr("refused our certificate (expired)"));
  EXPECT_EQ(out.client.received, "");
}

// When the authority itself has expired, both ends say so rather than
// blame each other's certificates.
TEST(TlsLink, AnExpiredAuthorityIsNamedAsSuch) {
  TempDir dir;
  auto ca = make_authority(Validity{-2 * 86400, -86400});
  ASSERT_TRUE(ca.ok());
  ASSERT_TRUE(write_pair(*ca, dir.path(), "ca").ok());
  for (const char* host : {"node0", "node1"}) ASSERT_TRUE(write_pair(*issue_host(*ca, host), dir.path(), host).ok());
  Files f0 = Files::for_host(dir.path(), "node0");
  EXPECT_EQ(check_own_certificate(f0).error().text, f0.cert.string() + ": the authority's certificate expired");
  auto s = server_ctx(f0);
  auto c = client_ctx(Files::for_host(dir.path(), "node1"));
  Outcome out = link(*s, *c, "", "");
  ASSERT_TRUE(out.finished);
  EXPECT_THAT(out.client.error, HasSubstr(" (claims node0): the authority's certificate expired"));
}

TEST(TlsLink, ACertificateNotYetValidIsRefused) {
  Instance inst;
  TempDir rogue;
  auto pair = issue_host(*load_authority(inst.dir.path()), "node1", Validity{86400, 2 * 86400});
  ASSERT_TRUE(pair.ok());
  auto s = server_ctx(inst.files("node0"));
  auto c = client_ctx(rogue_files(rogue, inst, *pair, "node1"));
  Outcome out = link(*s, *c, "", "");
  EXPECT_THAT(out.server.error, HasSubstr(" (claims node1): not yet valid"));
}

TEST(TlsLink, APeerOfTheWrongHostIsRefusedByPeerIs) {
  Instance inst;
  auto s = server_ctx(inst.files("node0"));
  // A parent expecting node1 (the host of the rank the child named) meets node2.
  auto c2 = client_ctx(inst.files("node2"));
  Outcome out = link(*s, *c2, "node1", "");
  ASSERT_TRUE(out.finished);
  EXPECT_TRUE(out.server.handshake_ok);
  EXPECT_THAT(out.server.error, StartsWith("TLS peer 127.0.0.1:"));
  EXPECT_THAT(out.server.error, HasSubstr(": names host node2, expected node1"));
  EXPECT_EQ(out.client.received, "");

  // A child expecting its parent on node1 meets node0.
  auto c1 = client_ctx(inst.files("node1"));
  out = link(*s, *c1, "", "node1");
  ASSERT_TRUE(out.finished);
  EXPECT_THAT(out.client.error, HasSubstr(": names host node0, expected node1"));
  EXPECT_EQ(out.client.received, "");
}

TEST(TlsLink, AHostAddedLaterJoinsTheOthers) {
  Instance inst;
  ASSERT_TRUE(keygen(KeygenRequest{inst.dir.path(), {"node3"}}).ok());
  auto s = server_ctx(inst.files("node0"));
  auto c = client_ctx(inst.files("node3"));
  Outcome out = link(*s, *c, "node3", "node0");
  EXPECT_EQ(out.server.error, "");
  EXPECT_EQ(out.client.received, kWelcome);
}

TEST(TlsLink, HostNamesCompareWithoutCase) {
  Instance inst;
  auto s = server_ctx(inst.files("node0"));
  auto c = client_ctx(inst.files("node1"));
  Outcome out = link(*s, *c, "NODE1", "Node0");
  EXPECT_EQ(out.server.error, "");
  EXPECT_EQ(out.client.received, kWelcome);
}

TEST(TlsLink, AClientWithoutACertificateIsRefused) {
  Instance inst;
  auto s = server_ctx(inst.files("node0"));
  // A client that trusts the instance's CA but has no certificate.
  asio::ssl::context c(asio::ssl::context::tls_client);
  c.load_verify_file((inst.dir.path() / "ca.crt").string());
  c.set_verify_mode(asio::ssl::verify_peer);
  Outcome out = link(*s, c, "", "");
  ASSERT_TRUE(out.finished);
  EXPECT_FALSE(out.server.handshake_ok);
  EXPECT_THAT(out.server.error, HasSubstr(": no certificate"));
  EXPECT_EQ(out.client.received, "");
}

TEST(TlsLink, ATls12ClientIsRefused) {
  Instance inst;
  auto s = server_ctx(inst.files("node0"));
  auto c = client_ctx(inst.files("node1"));
  SSL_CTX_set_max_proto_version(c->native_handle(), TLS1_2_VERSION);
  SSL_CTX_set_min_proto_version(c->native_handle(), TLS1_2_VERSION);
  Outcome out = link(*s, *c, "", "");
  ASSERT_TRUE(out.finished);
  EXPECT_FALSE(out.server.handshake_ok);
  EXPECT_THAT(out.server.error, HasSubstr("does not speak TLS 1.3"));
  EXPECT_THAT(out.client.error, HasSubstr("refused our TLS version"));
  EXPECT_EQ(out.client.received, "");
}

// The same contexts and checks over a Unix socket pair, through the SSL*
// forms: one handshake could serve links on one machine too.
TEST(TlsLink, WorksOverAUnixSocketWithTheSslForms) {
  Instance inst;
  auto sctx = server_ctx(inst.files("node0"));
  auto cctx = client_ctx(inst.files("node2"));
  asio::io_context io;
  using UnixTls = asio::ssl::stream<asio::local::stream_protocol::socket>;
  UnixTls server(io, *sctx);
  UnixTls client(io, *cctx);
  asio::local::connect_pair(server.next_layer(), client.next_layer());
  std::error_code server_ec = asio::error::would_block;
  std::error_code client_ec = asio::error::would_block;
  server.async_handshake(UnixTls::server, [&](const std::error_code& ec) { server_ec = ec; });
  client.async_handshake(UnixTls::client, [&](const std::error_code& ec) { client_ec = ec; });
  io.run_for(std::chrono::seconds(30));
  ASSERT_FALSE(server_ec) << failure(server.native_handle(), server_ec, "rank 2").text;
  ASSERT_FALSE(client_ec) << failure(client.native_handle(), client_ec, "parent").text;
  EXPECT_TRUE(peer_is(server.native_handle(), "node2", "rank 2").ok());
  EXPECT_EQ(peer_is(server.native_handle(), "node1", "rank 1").error().text,
            "TLS peer rank 1: names host node2, expected node1");
  auto host = peer_host(client.native_handle(), "parent");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(*host, "node0");
}

TEST(TlsLink, APlainTcpClientSendingGarbageGetsNoApplicationData) {
  Instance inst;
  auto sctx = server_ctx(inst.files("node0"));
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  std::optional<TlsStream> server;
  std::string server_error;
  bool server_ok = false;
  acceptor.async_accept([&](const std::error_code& ec, tcp::socket sock) {
    ASSERT_FALSE(ec);
    server.emplace(std::move(sock), *sctx);
    server->async_handshake(TlsStream::server, [&](const std::error_code& ec) {
      if (ec) {
        server_error = failure(*server, ec).text;
        server->lowest_layer().close();
        return;
      }
      server_ok = true;
      asio::async_write(*server, asio::buffer(kWelcome),
                        [&](const std::error_code&, size_t) { server->lowest_layer().close(); });
    });
  });
  tcp::socket plain(io);
  const std::string garbage = "GET / HTTP/1.0\r\n\r\n\x01\x02garbage";
  std::string received;
  char buf[256];
  std::function<void()> read_more = [&] {
    plain.async_read_some(asio::buffer(buf), [&](const std::error_code& ec, size_t n) {
      received.append(buf, n);
      if (ec) return plain.close();
      read_more();
    });
  };
  plain.async_connect(acceptor.local_endpoint(), [&](const std::error_code& ec) {
    ASSERT_FALSE(ec);
    asio::async_write(plain, asio::buffer(garbage), [&](const std::error_code&, size_t) { read_more(); });
  });
  io.run_for(std::chrono::seconds(30));
  ASSERT_TRUE(io.stopped());
  EXPECT_FALSE(server_ok);
  EXPECT_THAT(server_error, HasSubstr("does not speak TLS 1.3"));
  EXPECT_EQ(received.find(kWelcome), std::string::npos);
  // At most a TLS alert record (content type 21), never application data.
  if (!received.empty()) {
    EXPECT_EQ(static_cast<unsigned char>(received[0]), 21) << received.size() << " bytes";
  }
}

}  // namespace
}  // namespace loom::tls
