// `loom keygen` as an administrator runs it (docs/deploy.md, "Keys and
// certificates"): what it prints, its exit status, and its one-line
// errors. The certificates themselves are tested in
// src/tls/keygen_test.cpp and src/tls/tls_test.cpp.
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "kit/process.h"

namespace loom::test {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::StartsWith;

class KeygenCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "loom-keygen-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    tmp_ = tmpl;
    dir_ = (tmp_ / "tls").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
  CmdResult keygen(const std::vector<std::string>& args) {
    std::vector<std::string> argv{bin("loom"), "keygen"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_cmd(argv);
  }
  fs::path tmp_;
  std::string dir_;
};

TEST_F(KeygenCommand, CreatesTheAuthorityAndEachHostAndPrintsOneLinePerFile) {
  auto r = keygen({"--dir", dir_, "--hosts", "node0,node1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  auto lines = r.out_lines();
  ASSERT_EQ(lines.size(), 6u) << r.out;
  EXPECT_THAT(lines[0], StartsWith("created  " + dir_ + "/ca.key ("));
  EXPECT_THAT(lines[1], StartsWith("created  " + dir_ + "/ca.crt (certificate authority, valid until "));
  EXPECT_THAT(lines[5], StartsWith("created  " + dir_ + "/node1.crt (certificate of node1, valid until "));

  // Later: one more host, under the same authority.
  r = keygen({"--dir", dir_, "--hosts", "node2"});
  ASSERT_EQ(r.code, 0) << r.err;
  lines = r.out_lines();
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_THAT(lines[2], StartsWith("created  " + dir_ + "/node2.crt"));
  // Blanks around names, as people write lists.
  r = keygen({"--dir", dir_, "--hosts", "node3, node4"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(fs::path(dir_) / "node4.crt"));
  EXPECT_THAT(lines[0], StartsWith("using    " + dir_ + "/ca.crt ("));
}

TEST_F(KeygenCommand, RefusesToReplaceAHostInOneLineUnlessForced) {
  ASSERT_EQ(keygen({"--dir", dir_, "--hosts", "node0,node1"}).code, 0);
  auto r = keygen({"--dir", dir_, "--hosts", "node1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err_lines(), ElementsAre("loom keygen: " + dir_ + "/node1.key exists (--force replaces it)"));
  r = keygen({"--dir", dir_, "--hosts", "node1", "--force"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out_lines().back(), StartsWith("replaced " + dir_ + "/node1.crt"));
}

TEST_F(KeygenCommand, AMissingAuthorityKeyIsOneLine) {
  ASSERT_EQ(keygen({"--dir", dir_, "--hosts", "node0"}).code, 0);
  fs::remove(fs::path(dir_) / "ca.key");
  auto r = keygen({"--dir", dir_, "--hosts", "node1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err_lines(), ElementsAre("loom keygen: cannot read " + dir_ +
                                         "/ca.key: No such file or directory (the CA's key is needed to issue "
                                         "certificates)"));
}

TEST_F(KeygenCommand, AnUnreadableAuthorityKeyIsOneLine) {
  ASSERT_EQ(keygen({"--dir", dir_, "--hosts", "node0"}).code, 0);
  // Readable by all but the key; root reads anything, so then the
  // command runs as nobody.
  ASSERT_EQ(::chmod(tmp_.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  ASSERT_EQ(::chmod((dir_ + "/ca.key").c_str(), 0), 0);
  std::function<std::string()> as_nobody;
  std::string loom = bin("loom");
  if (::geteuid() == 0) {
    as_nobody = [loom] {
      if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) return "setuid";
      return ::access(loom.c_str(), X_OK) == 0 ? "" : "nobody cannot run loom here";
    };
  }
  Background b({loom, "keygen", "--dir", dir_, "--hosts", "node1"}, {}, as_nobody);
  auto r = b.finish();
  if (r.code == 126) GTEST_SKIP() << r.err;
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err_lines(), ElementsAre("loom keygen: cannot read " + dir_ + "/ca.key: Permission denied"));
}

TEST_F(KeygenCommand, HostlistsAreReadAndBadNamesRefusedInOneLine) {
  auto r = keygen({"--dir", dir_, "--hosts", "node[0,2-3]-ib, login"});
  EXPECT_EQ(r.code, 0) << r.err;
  for (const char* host : {"node0-ib", "node2-ib", "node3-ib", "login"}) {
    EXPECT_TRUE(fs::exists(dir_ + "/" + host + ".crt")) << host;
  }
  EXPECT_FALSE(fs::exists(dir_ + "/node1-ib.crt"));
  fs::remove_all(dir_);
  r = keygen({"--dir", dir_, "--hosts", "node[3-0]"});
  EXPECT_EQ(r.code, 1);
  ASSERT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_THAT(r.err_lines()[0], ::testing::StartsWith("loom keygen: invalid hostlist \"node[3-0]\": "));
  r = keygen({"--dir", dir_, "--hosts", "node0,,node1"});
  ASSERT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_THAT(r.err_lines()[0], ::testing::StartsWith("loom keygen: invalid hostlist \"node0,,node1\": "));
  r = keygen({"--dir", dir_, "--hosts", "node0,../x"});
  EXPECT_THAT(r.err_lines(), ElementsAre("loom keygen: bad host name '../x': starts with '.'"));
  EXPECT_FALSE(fs::exists(dir_)) << "nothing is written when the hosts are refused";
}

}  // namespace
}  // namespace loom::test
