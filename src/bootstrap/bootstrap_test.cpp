#include "bootstrap/bootstrap.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace loom {

namespace {
Result<BootstrapConfig> parse(std::string_view toml) {
  auto settings = cli::parse_config_toml(toml, "loom.toml");
  if (!settings.ok()) return settings.error();
  return parse_bootstrap(*settings, "loom.toml");
}

BootstrapConfig good(std::string_view toml) {
  auto cfg = parse(toml);
  EXPECT_TRUE(cfg.ok()) << toml << "\n→ " << cfg.error().text;
  return cfg.ok() ? *cfg : BootstrapConfig{};
}

std::string why(std::string_view toml) {
  auto cfg = parse(toml);
  if (cfg.ok()) return "";
  EXPECT_EQ(cfg.error().text.find('\n'), std::string::npos) << cfg.error().text;
  EXPECT_TRUE(cfg.error().text.starts_with("loom.toml: ")) << cfg.error().text;
  return cfg.error().text;
}

std::string rank_error(const BootstrapConfig& cfg, std::string_view host, std::optional<uint32_t> rank = {}) {
  auto r = cfg.find_rank(host, rank);
  return r.ok() ? "rank " + std::to_string(*r) : r.error().text;
}
}  // namespace

TEST(Bootstrap, ReadsTheThreeHostExampleOfTheDocs) {
  // The first TOML block of docs/deploy.md, as written there.
  std::ifstream f(std::string(LOOM_SOURCE_DIR) + "/docs/deploy.md");
  std::stringstream doc;
  doc << f.rdbuf();
  std::string text = doc.str();
  size_t begin = text.find("```toml\n");
  ASSERT_NE(begin, std::string::npos);
  begin += 8;
  size_t end = text.find("```", begin);
  ASSERT_NE(end, std::string::npos);
  auto cfg = good(text.substr(begin, end - begin));
  EXPECT_EQ(cfg.hosts, (std::vector<std::string>{"node1", "node2", "login"}));
  EXPECT_EQ(cfg.origin, "loom.toml");
  auto root = cfg.place("node1");
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->rank, 0u);
  EXPECT_FALSE(root->parent.has_value());
  EXPECT_EQ(root->children, (std::vector<uint32_t>{1, 2}));
  auto login = cfg.place("login");
  ASSERT_TRUE(login.ok());
  EXPECT_EQ(login->rank, 2u);
  EXPECT_EQ(login->host, "login");
  EXPECT_EQ(login->parent, 0u);
  EXPECT_TRUE(login->children.empty());
  EXPECT_EQ(cfg.cert_path(2), "/etc/loom/certs/login.crt");
  EXPECT_EQ(cfg.key_path(1), "/etc/loom/certs/node2.key");
}

TEST(Bootstrap, DefaultsAllButTheHosts) {
  auto cfg = good("[bootstrap]\nhosts = [\"a\"]\n");
  EXPECT_EQ(cfg.port, 8050);
  EXPECT_EQ(cfg.bind, "0.0.0.0");
  EXPECT_EQ(cfg.fanout, 2u);
  EXPECT_EQ(cfg.ca, "/etc/loom/certs/ca.crt");
  EXPECT_EQ(cfg.cert_path(0), "/etc/loom/certs/a.crt");
  EXPECT_EQ(cfg.key_path(0), "/etc/loom/certs/a.key");
  EXPECT_EQ(*cfg.find_rank("a"), 0u);
}

TEST(Bootstrap, RankIsThePositionInTheExpandedList) {
  auto cfg = good(R"([bootstrap]
hosts = ["node[0-15]", "login1", "gpu[00-03]-ib"]
port = 9000
bind = "::"
fanout = 4
)");
  ASSERT_EQ(cfg.size(), 21u);
  EXPECT_EQ(*cfg.find_rank("node0"), 0u);
  EXPECT_EQ(*cfg.find_rank("node15"), 15u);
  EXPECT_EQ(*cfg.find_rank("login1"), 16u);
  EXPECT_EQ(*cfg.find_rank("gpu02-ib"), 19u);
  EXPECT_EQ(cfg.port, 9000);
  EXPECT_EQ(cfg.bind, "::");
  // The tree of broker/topology.h with this fanout.
  auto p = cfg.place("login1");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->parent, 3u);  // (16 - 1) / 4
  EXPECT_EQ(cfg.place("node1")->children, (std::vector<uint32_t>{5, 6, 7, 8}));
  EXPECT_EQ(cfg.place("node4")->children, (std::vector<uint32_t>{17, 18, 19, 20}));
}

TEST(Bootstrap, MatchesShortAndFullNames) {
  EXPECT_EQ(match_hostname("node1", "node1"), HostMatch::kExact);
  EXPECT_EQ(match_hostname("Node1.Example.org", "node1.example.org."), HostMatch::kExact);
  EXPECT_EQ(match_hostname("node1", "node1.example.org"), HostMatch::kShort);
  EXPECT_EQ(match_hostname("node1.example.org", "node1"), HostMatch::kShort);
  EXPECT_EQ(match_hostname("node1.a.org", "node1.b.org"), HostMatch::kNone);  // two full names: all of it
  EXPECT_EQ(match_hostname("node1", "node10"), HostMatch::kNone);
  EXPECT_EQ(match_hostname("node1", "node"), HostMatch::kNone);
  EXPECT_EQ(match_hostname("", ""), HostMatch::kNone);

  auto cfg = good("[bootstrap]\nhosts = [\"login\", \"node[1-2].cluster.example\"]\n");
  EXPECT_EQ(rank_error(cfg, "node2"), "rank 2");
  EXPECT_EQ(rank_error(cfg, "LOGIN.cluster.example"), "rank 0");
  EXPECT_EQ(rank_error(cfg, "node2.other.example"),
            "this host (node2.other.example) is not in [bootstrap] hosts of loom.toml: "
            "login,node[1-2].cluster.example");
}

TEST(Bootstrap, AnEqualNameWinsOverShortNameMatches) {
  auto cfg = good("[bootstrap]\nhosts = [\"n1.a.org\", \"n1\", \"n1.b.org\"]\n");
  EXPECT_EQ(rank_error(cfg, "n1"), "rank 1");
  EXPECT_EQ(rank_error(cfg, "n1.b.org"), "rank 2");
  EXPECT_EQ(rank_error(cfg, "n1.c.org"), "rank 1");  // the only short name that matches

  auto two = good("[bootstrap]\nhosts = [\"n1.a.org\", \"n1.b.org\"]\n");
  EXPECT_EQ(rank_error(two, "n1"),
            "this host (n1) matches more than one of [bootstrap] hosts of loom.toml: n1.a.org (rank 0), "
            "n1.b.org (rank 1); write its full name there, or give its rank");
}

TEST(Bootstrap, RefusesAHostThatIsNotListedUnlessARankIsGiven) {
  auto cfg = good("[bootstrap]\nhosts = [\"node[0-2]\"]\n");
  EXPECT_EQ(rank_error(cfg, "laptop"), "this host (laptop) is not in [bootstrap] hosts of loom.toml: node[0-2]");
  EXPECT_EQ(rank_error(cfg, "laptop", 2), "rank 2");
  EXPECT_EQ(rank_error(cfg, "node0", 1), "rank 1");  // --rank wins over the name
  EXPECT_EQ(rank_error(cfg, "node0", 3), "rank 3 is not in [bootstrap] hosts of loom.toml, which has ranks 0-2");
  EXPECT_EQ(rank_error(cfg, "bad\nname"), "this host (bad\\nname) is not in [bootstrap] hosts of loom.toml: node[0-2]");
  EXPECT_FALSE(cfg.place("laptop").ok());
}

TEST(Bootstrap, RefusesAHostListedTwiceNamingBothRanks) {
  EXPECT_EQ(why("[bootstrap]\nhosts = [\"node[0-3]\", \"login\", \"node2\"]\n"),
            "loom.toml: bootstrap.hosts: host node2 is listed twice, at ranks 2 and 5");
  EXPECT_EQ(why("[bootstrap]\nhosts = [\"a[1,1]\"]\n"),
            "loom.toml: bootstrap.hosts: host a1 is listed twice, at ranks 0 and 1");
  EXPECT_EQ(why("[bootstrap]\nhosts = [\"Login\", \"login.\"]\n"),
            "loom.toml: bootstrap.hosts: host Login is listed twice, at ranks 0 and 1");
}

TEST(Bootstrap, RefusesMissingOrEmptyHosts) {
  EXPECT_EQ(why("[broker]\nfanout = 2\n"),
            "loom.toml: no [bootstrap] table (hosts = [...] names the instance's hosts)");
  EXPECT_EQ(why("[bootstrap]\nport = 8050\n"),
            "loom.toml: [bootstrap] has no hosts (hosts = [...] names the instance's hosts)");
  EXPECT_EQ(why("[bootstrap]\nhosts = []\n"), "loom.toml: bootstrap.hosts: is empty; it must name at least one host");
  EXPECT_EQ(why("[bootstrap]\nhosts = [\"\"]\n"), "loom.toml: bootstrap.hosts[0]: is empty");
  EXPECT_NE(why("[bootstrap]\nhosts = \"node[0-3]\"\n").find("bootstrap.hosts: must be a list of hostlists"),
            std::string::npos);
  EXPECT_NE(why("[bootstrap]\nhosts = [1, 2]\n").find("must be a list of strings"), std::string::npos);
}

TEST(Bootstrap, RefusesABadHostlistNamingItsPlace) {
  EXPECT_EQ(why("[bootstrap]\nhosts = [\"a\", \"node[3-1]\"]\n"),
            "loom.toml: bootstrap.hosts[1]: invalid hostlist \"node[3-1]\": range \"3-1\" is reversed");
  EXPECT_NE(why("[bootstrap]\nhosts = [\"node[0-\"]\n").find("'[' without ']'"), std::string::npos);
  EXPECT_EQ(why("[bootstrap]\nhosts = [\"a\", \"../etc/b\"]\n"),
            "loom.toml: bootstrap.hosts: \"../etc/b\" (rank 1) is not a host name: letters, digits, '-', '_' and '.' "
            "only");
  EXPECT_NE(why("[bootstrap]\nhosts = [\"a:8050\"]\n").find("is not a host name"), std::string::npos);
  EXPECT_NE(why("[bootstrap]\nhosts = [\"n[0-4294967295]\"]\n").find("more than 1000000 hosts"), std::string::npos);
  EXPECT_EQ(why("[bootstrap]\nhosts = [\"a[1-999999]\", \"b[1-2]\"]\n"),
            "loom.toml: bootstrap.hosts: names more than 1000000 hosts");
}

TEST(Bootstrap, RefusesBadValues) {
  for (const char* port : {"0", "65536", "-1", "80.5", "\"http\"", "true"}) {
    EXPECT_NE(why(std::string("[bootstrap]\nhosts = [\"a\"]\nport = ") + port)
                  .find("loom.toml: bootstrap.port: must be an integer 1-65535, not "),
              std::string::npos)
        << port;
  }
  EXPECT_EQ(good("[bootstrap]\nhosts = [\"a\"]\nport = \"9000\"\n").port, 9000);  // as --setconf would write it
  EXPECT_NE(why("[bootstrap]\nhosts = [\"a\"]\nfanout = 0\n").find("bootstrap.fanout: must be an integer 1-1024"),
            std::string::npos);
  EXPECT_NE(why("[bootstrap]\nhosts = [\"a\"]\nbind = \"0.0.0.0:80\"\n").find("bootstrap.bind: must be an IP address"),
            std::string::npos);
  EXPECT_NE(why("[bootstrap]\nhosts = [\"a\"]\nbind = \"300.1.2.3\"\n").find("bootstrap.bind"), std::string::npos);
  EXPECT_EQ(good("[bootstrap]\nhosts = [\"a\"]\nbind = \"node1-ib.example\"\n").bind, "node1-ib.example");
  EXPECT_EQ(good("[bootstrap]\nhosts = [\"a\"]\nbind = \"10.0.0.1\"\n").bind, "10.0.0.1");
  auto each = good("[bootstrap]\nhosts = [\"n[1-2]\"]\nbind = \"{host}-ib\"\n");
  EXPECT_EQ(each.bind_address(0), "n1-ib");
  EXPECT_EQ(each.bind_address(1), "n2-ib");
  EXPECT_EQ(each.connect_address(1), "n2-ib");  // children reach n2 there
  EXPECT_EQ(good("[bootstrap]\nhosts = [\"n[1-2]\"]\n").connect_address(1), "n2");
  EXPECT_NE(why("[bootstrap]\nhosts = [\"a\"]\nbind = \"{host}:80\"\n").find("bootstrap.bind"), std::string::npos);
  EXPECT_EQ(why("[bootstrap]\nhosts = [\"a\"]\ncert = \"certs/a.crt\"\n"),
            "loom.toml: bootstrap.cert: must be an absolute path, not \"certs/a.crt\"");
  EXPECT_NE(why("[bootstrap]\nhosts = [\"a\"]\nca = [\"/a\"]\n").find("bootstrap.ca: must be an absolute path"),
            std::string::npos);
}

TEST(Bootstrap, RefusesUnknownKeysInItsTable) {
  EXPECT_EQ(why("[bootstrap]\nhosts = [\"a\"]\nprot = 8050\n"),
            "loom.toml: unknown key \"prot\" in [bootstrap] (known: hosts, port, bind, fanout, ca, cert, key)");
  EXPECT_NE(why("[bootstrap]\nhosts = [\"a\"]\n[bootstrap.tls]\nca = \"/x\"\n").find("loom.toml: "), std::string::npos);
  // Other tables are the instance configuration's (cli/config.h), read there.
  EXPECT_EQ(good("[exec]\nkill-timeout = 3\n[bootstrap]\nhosts = [\"a\"]\n").size(), 1u);
}

TEST(Bootstrap, FanoutAgreesWithBrokerFanout) {
  EXPECT_EQ(good("[broker]\nfanout = 8\n[bootstrap]\nhosts = [\"a\"]\n").fanout, 8u);
  EXPECT_EQ(good("[broker]\nfanout = 8\n[bootstrap]\nhosts = [\"a\"]\nfanout = 8\n").fanout, 8u);
  EXPECT_EQ(why("[broker]\nfanout = 8\n[bootstrap]\nhosts = [\"a\"]\nfanout = 4\n"),
            "loom.toml: bootstrap.fanout (4) and broker.fanout (8) differ: set one");
}

TEST(Bootstrap, ReadsAFile) {
  auto dir = std::filesystem::temp_directory_path() / ("loom-bootstrap-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto file = (dir / "loom.toml").string();
  {
    std::ofstream f(file);
    f << "[bootstrap]\nhosts = [\"node[1-3]\"]\nport = 8123\n";
  }
  auto cfg = read_bootstrap_file(file);
  ASSERT_TRUE(cfg.ok()) << cfg.error().text;
  EXPECT_EQ(cfg->origin, file);
  EXPECT_EQ(cfg->port, 8123);
  EXPECT_EQ(rank_error(*cfg, "node9"), "this host (node9) is not in [bootstrap] hosts of " + file + ": node[1-3]");
  auto missing = read_bootstrap_file((dir / "none.toml").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().text.find("none.toml: cannot read the configuration file"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(Bootstrap, KnowsThisHostsName) {
  auto name = local_hostname();
  ASSERT_TRUE(name.ok()) << name.error().text;
  EXPECT_FALSE(name->empty());
}

}  // namespace loom
