// keygen: the files it writes, what it refuses, and how it reuses a CA.
#include "tls/keygen.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tls/test_keys.h"
#include "tls/tls.h"

namespace loom::tls {
namespace {

using namespace test_keys;  // NOLINT(google-build-using-namespace): the tls/ test kit
using ::testing::HasSubstr;

TEST(Keygen, WritesTheAuthorityAndAKeyAndCertificatePerHost) {
  TempDir tmp;
  fs::path dir = tmp.path() / "keys";
  auto w = keygen(KeygenRequest{dir, {"node0", "node1"}});
  ASSERT_TRUE(w.ok()) << w.error().text;
  ASSERT_EQ(w->size(), 6u);
  for (const char* name : {"ca.key", "ca.crt", "node0.key", "node0.crt", "node1.key", "node1.crt"}) {
    EXPECT_TRUE(fs::exists(dir / name)) << name;
  }
  EXPECT_EQ(mode_of(dir), 0700u);
  EXPECT_EQ(mode_of(dir / "ca.key"), 0600u);
  EXPECT_EQ(mode_of(dir / "node0.key"), 0600u);
  EXPECT_EQ(mode_of(dir / "node0.crt"), 0644u);
  EXPECT_EQ((*w)[0].what, "created");
  auto own = check_own_certificate(Files::for_host(dir, "node1"));
  EXPECT_TRUE(own.ok()) << own.error().text;
}

TEST(Keygen, RefusesToReplaceHostFilesWithoutForce) {
  Instance inst;
  auto before = file_text(inst.dir.path() / "node1.crt");
  auto w = keygen(KeygenRequest{inst.dir.path(), {"node3", "node1"}});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().text, (inst.dir.path() / "node1.key").string() + " exists (--force replaces it)");
  EXPECT_FALSE(fs::exists(inst.dir.path() / "node3.key")) << "nothing is written when anything is refused";
  EXPECT_EQ(file_text(inst.dir.path() / "node1.crt"), before);

  auto forced = keygen(KeygenRequest{inst.dir.path(), {"node1"}, 3650, true});
  ASSERT_TRUE(forced.ok()) << forced.error().text;
  EXPECT_EQ(forced->back().what, "replaced");
  EXPECT_NE(file_text(inst.dir.path() / "node1.crt"), before);
}

TEST(Keygen, ReusesTheAuthoritySoHostsCanBeAddedLater) {
  Instance inst;
  auto ca_before = file_text(inst.dir.path() / "ca.crt");
  auto w = keygen(KeygenRequest{inst.dir.path(), {"node3"}});
  ASSERT_TRUE(w.ok()) << w.error().text;
  EXPECT_EQ((*w)[0].what, "using");
  EXPECT_EQ(file_text(inst.dir.path() / "ca.crt"), ca_before);
  auto own = check_own_certificate(inst.files("node3"));
  EXPECT_TRUE(own.ok()) << own.error().text;
  // (TlsLink.AHostAddedLaterJoinsTheOthers makes the handshake.)
}

TEST(Keygen, HostCertificatesEndNoLaterThanTheAuthority) {
  TempDir tmp;
  ASSERT_TRUE(keygen(KeygenRequest{tmp.path(), {"node0"}, 30}).ok());
  auto w = keygen(KeygenRequest{tmp.path(), {"node1"}, 3650});
  ASSERT_TRUE(w.ok()) << w.error().text;
  auto until = [](const Written& x) { return x.about.substr(x.about.find("valid until ")); };
  EXPECT_EQ((*w)[0].path.filename(), "ca.crt");
  EXPECT_EQ(until(w->back()), until((*w)[0])) << "node1 ends when the CA does";
}

TEST(Keygen, AnExpiredAuthorityIsNotUsed) {
  TempDir tmp;
  auto ca = make_authority(Validity{-2 * 86400, -86400});
  ASSERT_TRUE(ca.ok());
  ASSERT_TRUE(write_pair(*ca, tmp.path(), "ca").ok());
  auto w = keygen(KeygenRequest{tmp.path(), {"node0"}});
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.error().text, HasSubstr("ca.crt expired on "));
  EXPECT_THAT(w.error().text, HasSubstr(": make a new authority and certificates in a new directory"));
}

TEST(Keygen, AMissingAuthorityKeyIsOneLineNamingIt) {
  Instance inst;
  fs::remove(inst.dir.path() / "ca.key");
  auto w = keygen(KeygenRequest{inst.dir.path(), {"node3"}});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().text, "cannot read " + (inst.dir.path() / "ca.key").string() +
                                ": No such file or directory (the CA's key is needed to issue certificates)");
  // Even when the hosts asked for exist already: the CA is the problem.
  EXPECT_THAT(keygen(KeygenRequest{inst.dir.path(), {"node1"}}).error().text, HasSubstr("ca.key: No such file"));
}

TEST(Keygen, AnUnreadableAuthorityKeyIsOneLineNamingIt) {
  Instance inst;
  // A directory in its place: unreadable even by root.
  fs::remove(inst.dir.path() / "ca.key");
  fs::create_directory(inst.dir.path() / "ca.key");
  auto w = keygen(KeygenRequest{inst.dir.path(), {"node3"}});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().text, "cannot read " + (inst.dir.path() / "ca.key").string() + ": Is a directory");
}

TEST(Keygen, AnAuthorityKeyThatIsNotTheCertificatesIsRefused) {
  Instance inst;
  Instance other;
  fs::copy_file(other.dir.path() / "ca.key", inst.dir.path() / "ca.key", fs::copy_options::overwrite_existing);
  auto w = keygen(KeygenRequest{inst.dir.path(), {"node3"}});
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.error().text, HasSubstr("ca.key is not the key of"));
}

TEST(Keygen, RefusesBadHostNamesAndDuplicates) {
  TempDir tmp;
  EXPECT_THAT(keygen(KeygenRequest{tmp.path(), {"node0", "a/b"}}).error().text,
              HasSubstr("bad host name 'a/b': only letters, digits"));
  EXPECT_THAT(keygen(KeygenRequest{tmp.path(), {"ca"}}).error().text, HasSubstr("'ca' is the certificate authority"));
  EXPECT_THAT(keygen(KeygenRequest{tmp.path(), {"-x"}}).error().text, HasSubstr("starts with '-'"));
  EXPECT_EQ(keygen(KeygenRequest{tmp.path(), {"n1", "n1"}}).error().text, "host n1 is listed twice");
  EXPECT_EQ(keygen(KeygenRequest{tmp.path(), {}}).error().text, "no hosts given");
  EXPECT_FALSE(fs::exists(tmp.path() / "ca.crt"));
}

}  // namespace
}  // namespace loom::tls
