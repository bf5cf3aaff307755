// An instance over four simulated hosts (kit/netns.h), set up as
// docs/deploy.md tells an administrator: `loom keygen` for node0..node3,
// one configuration file with [bootstrap], and `loomd --config` on each
// host. The overlay runs over TCP and TLS between the hosts' addresses.
// Tree (fanout 2): node0 → node1, node2; node1 → node3.
//
// Needs root (ctest label `cluster`); skipped with the reason otherwise.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "kit/exec.h"
#include "kit/netns.h"
#include "kit/process.h"
#include "kit/users.h"
#include "msg/json.h"

namespace loom::test {
namespace {

namespace fs = std::filesystem;

constexpr int kPort = 8050;

class Cluster : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = Hosts::unavailable(); !why.empty()) GTEST_SKIP() << why;
    char tmpl[] = "/tmp/loom-cluster-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(hosts_.create(4));
    auto r = run_cmd({bin("loom"), "keygen", "--dir", certs(), "--hosts", "node0,node1,node2,node3"});
    ASSERT_EQ(r.code, 0) << r.err;
    std::ofstream(config()) << "[bootstrap]\n"
                            << "hosts = [\"node[0-3]\"]\n"
                            << "port = " << kPort << "\n"
                            << "ca = \"" << certs() << "/ca.crt\"\n"
                            << "cert = \"" << certs() << "/{host}.crt\"\n"
                            << "key = \"" << certs() << "/{host}.key\"\n"
                            << "\n[broker]\n"
                            << "heartbeat-interval = \"0.2s\"\n"
                            << "heartbeat-timeout = \"2s\"\n"
                            << "frame-timeout = \"3s\"\n";
  }

  void TearDown() override {
    for (auto& b : brokers_) {
      if (b) b->signal(SIGKILL);
    }
    brokers_.clear();
    (void)hosts_.destroy();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  std::string certs() const { return dir_ + "/certs"; }
  std::string config() const { return dir_ + "/loom.toml"; }
  std::string rundir(size_t i) const { return dir_ + "/run/node" + std::to_string(i); }
  Env client_env(size_t i) const { return {{"LOOM_URI", "local://" + rundir(i) + "/local.sock"}}; }

  // loomd --config on host i, as on a real host (its rank from its name).
  std::unique_ptr<Background> start_broker(size_t i, const std::string& log_level = "",
                                           const std::vector<std::string>& more = {}) {
    fs::create_directories(rundir(i));
    std::vector<std::string> argv{bin("loomd"),
                                  "--config",
                                  config(),
                                  "--rundir",
                                  rundir(i),
                                  "--log-level",
                                  log_level.empty() ? log_level_ : log_level};
    argv.insert(argv.end(), more.begin(), more.end());
    return hosts_.spawn(i, argv);
  }
  void start_all() {
    brokers_.resize(4);
    // From the leaves up: children wait for their parents.
    for (size_t i = 4; i-- > 0;) brokers_[i] = start_broker(i);
  }
  // Waits (at rank 0) until every rank is online.
  ::testing::AssertionResult wait_ready(double timeout = 30) {
    if (!wait_created(rundir(0), "local.sock", timeout)) {
      brokers_[0]->wait_for_err("\x01", 0.2);  // reads what is there
      return ::testing::AssertionFailure() << "no local socket on node0: " << brokers_[0]->so_far().err;
    }
    auto r = hosts_.run(0, {bin("loom"), "rpc", "--timeout", std::to_string(timeout), "broker.wait-ready"},
                        client_env(0), timeout + 5);
    if (r.code != 0) {
      std::string logs;
      for (size_t i = 0; i < brokers_.size(); ++i) {
        if (brokers_[i]) brokers_[i]->wait_for_err("\x01", 0.2);  // reads what is there
        if (brokers_[i]) logs += "\nnode" + std::to_string(i) + ": " + brokers_[i]->so_far().err;
      }
      return ::testing::AssertionFailure() << "not ready: " << r.out << r.err << logs;
    }
    return ::testing::AssertionSuccess();
  }
  // A job of `sleep MARKER` on every host, each running; its sleeps in
  // *tasks. (The job's start says its shells are up, not that their tasks
  // have run exec yet: each task says so itself, on a FIFO of the test's,
  // once its sleep is one.)
  std::string sleep_everywhere(const std::string& marker, std::vector<pid_t>* tasks) {
    std::string fifo = dir_ + "/up." + marker;
    EXPECT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
    // Opened for writing too, so that it never reads end-of-file between
    // the tasks' writes.
    int fd = ::open(fifo.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    auto job = loom(0, {"submit", "-N4", "sh", "-c",
                        "sleep " + marker + " & until [ \"$(cat /proc/$!/comm)\" = sleep ]; do :; done; echo up > " +
                            fifo + "; wait"});
    EXPECT_EQ(job.code, 0) << job.err;
    std::string id = job.out.substr(0, job.out.find('\n'));
    std::string ups;
    while (fd >= 0 && ups.size() < 4 * 3) {
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, 30000) != 1) break;
      char buf[64];
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) ups.append(buf, static_cast<size_t>(n));
    }
    if (fd >= 0) ::close(fd);
    EXPECT_EQ(ups, "up\nup\nup\nup\n") << "not every task of " << id << " is running";
    *tasks = processes_with(marker);
    EXPECT_EQ(tasks->size(), 4u);
    return id;
  }
  CmdResult loom(size_t host, const std::vector<std::string>& args, double timeout = 30) {
    std::vector<std::string> argv{bin("loom")};
    argv.insert(argv.end(), args.begin(), args.end());
    return hosts_.run(host, argv, client_env(host), timeout);
  }

  std::string dir_;
  std::string log_level_ = std::getenv("LOOM_TEST_LOG") ? std::getenv("LOOM_TEST_LOG") : "warn";
  Hosts hosts_;
  std::vector<std::unique_ptr<Background>> brokers_;
};

TEST_F(Cluster, FourHostsJoinAndRunAJobOnEach) {
  start_all();
  ASSERT_TRUE(wait_ready());
  // Root's brokers serve every local user and the job shells, which run
  // as their users: the sockets are open to all, as under `loom start`.
  for (size_t i = 0; i < 4; ++i) {
    struct stat sb {};
    ASSERT_EQ(::stat((rundir(i) + "/local.sock").c_str(), &sb), 0) << i;
    EXPECT_EQ(sb.st_mode & 0777, 0666u) << "node" << i;
  }
  auto r = loom(0, {"status", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto st = parse_json(r.out);
  ASSERT_TRUE(st.ok()) << r.out;
  ASSERT_EQ((*st)["ranks"].size(), 4u) << r.out;
  for (const auto& rank : (*st)["ranks"]) EXPECT_EQ(rank["state"], "online") << r.out;
  // The farthest rank answers through two TLS links.
  r = loom(0, {"ping", "--rank", "3", "broker"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;

  // Each rank's shell runs on its own host.
  r = loom(0, {"run", "-N4", "hostname"}, 60);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto lines = r.out_lines();
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"node0", "node1", "node2", "node3"})) << r.out;
}

// Each host has what [[resource.config]] gives it, or what its hwloc
// finds (node3), and the scheduler places jobs by it.
TEST_F(Cluster, EachHostHasItsOwnResources) {
  // node3: hwloc's cores (gpus-per-rank keeps a GPU machine from holding
  // the job meant for node2).
  std::ofstream(config(), std::ios::app) << "\n[resource]\ngpus-per-rank = 0\n"
                                         << "[[resource.config]]\nhosts = \"node[0-1]\"\ncores = 2\n"
                                         << "[[resource.config]]\nhosts = \"node2\"\ncores = 64\ngpus = 3\n";
  start_all();
  ASSERT_TRUE(wait_ready());
  // Every host has reported once it is online (broker.status), and the
  // scheduler sees the union.
  auto r = loom(0, {"rpc", "broker.status"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto st = parse_json(r.out);
  ASSERT_TRUE(st.ok()) << r.out;
  EXPECT_EQ((*st)["ranks"][1]["cores"], 2) << r.out;
  EXPECT_EQ((*st)["ranks"][2]["cores"], 64) << r.out;
  EXPECT_EQ((*st)["ranks"][2]["gpus"], 3) << r.out;
  uint64_t node3 = (*st)["ranks"][3].value("cores", 0);
  EXPECT_GE(node3, 1u) << r.out;
  EXPECT_EQ((*st)["ranks"][3]["gpus"], 0) << r.out;
  r = loom(0, {"resource", "list", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  st = parse_json(r.out);
  ASSERT_TRUE(st.ok()) << r.out;
  EXPECT_EQ((*st)["all"]["ncores"], 68 + node3) << r.out;
  EXPECT_EQ((*st)["all"]["ngpus"], 3) << r.out;
  // A job that needs node2's size runs there, from any host.
  r = loom(3, {"run", "-N1", "-c", "64", "-g", "3", "hostname"}, 60);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "node2\n");
  // Two such nodes do not exist (unless hwloc finds 64 cores on node3):
  // refused at submit, saying why.
  if (node3 < 64) {
    r = loom(1, {"submit", "-N2", "-c", "64", "hostname"});
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_NE(r.err.find("2 nodes of 64 cores requested but only 1 of 4 ranks have that many"), std::string::npos)
        << r.err;
  }
}

// Users on any host: their commands go through that host's broker and
// the tree; their jobs run as them on every host; one user cannot touch
// another's job from anywhere.
TEST_F(Cluster, UsersOnEveryHostRunTheirOwnJobs) {
  if (auto why = TestUsers::unavailable(); !why.empty()) GTEST_SKIP() << why;
  TestUsers users;
  TestUser a, b;
  ASSERT_TRUE(users.add("a", &a));
  ASSERT_TRUE(users.add("b", &b));
  // The run directories hold the sockets every user connects to, as
  // /run/loom does (the test's directory is the test's own otherwise).
  ASSERT_EQ(::chmod(dir_.c_str(), 0711), 0);
  start_all();
  ASSERT_TRUE(wait_ready());
  // `loom ARGS` as `u` on host `i`, from u's home.
  auto as = [&](const TestUser& u, size_t i, std::vector<std::string> args, double timeout = 30) {
    std::vector<std::string> argv{"setpriv",
                                  "--reuid=" + std::to_string(u.uid),
                                  "--regid=" + std::to_string(u.gid),
                                  "--init-groups",
                                  "env",
                                  "HOME=" + u.home,
                                  "USER=" + u.name,
                                  "sh",
                                  "-c",
                                  "cd \"$HOME\" && exec \"$@\"",
                                  "sh",
                                  bin("loom")};
    argv.insert(argv.end(), args.begin(), args.end());
    return hosts_.run(i, argv, client_env(i), timeout);
  };
  // From the farthest host, a job on every host, run as its submitter.
  auto r = as(a, 3, {"submit", "-N4", "sh", "-c", "echo $(id -un)@$(hostname)"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string id = r.out.substr(0, r.out.find('\n'));
  r = as(a, 2, {"job", "attach", id}, 60);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto lines = r.out_lines();
  std::sort(lines.begin(), lines.end());
  std::vector<std::string> want;
  for (int i = 0; i < 4; ++i) want.push_back(a.name + "@node" + std::to_string(i));
  EXPECT_EQ(lines, want) << r.out;
  r = as(a, 1, {"jobs", "-a", "-n", "-o", "{id} {user} {result}"});
  EXPECT_NE(r.out.find(id + " " + a.name + " COMPLETED"), std::string::npos) << r.out << r.err;

  // b cannot cancel a's job, from any host; a can, from another.
  r = as(a, 1, {"submit", "-N2", "sleep", "300"});
  ASSERT_EQ(r.code, 0) << r.err;
  id = r.out.substr(0, r.out.find('\n'));
  r = as(a, 1, {"job", "wait-event", "-t", "30", id, "start"}, 40);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  r = as(b, 3, {"cancel", id});
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.err.find("belongs to another user"), std::string::npos) << r.err;
  r = as(a, 2, {"cancel", id});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  r = as(b, 0, {"job", "wait-event", "-t", "30", id, "clean"}, 40);
  EXPECT_NE(r.err.find("belongs to another user"), std::string::npos) << r.err;
  r = as(a, 0, {"job", "wait-event", "-t", "30", id, "clean"}, 40);
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  r = as(b, 3, {"resource", "list", "--json"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto st = parse_json(r.out);
  ASSERT_TRUE(st.ok()) << r.out;
  EXPECT_EQ((*st)["free"]["nodelist"], "node[0-3]") << r.out;
}

TEST_F(Cluster, ChildrenThatComeFirstWaitForTheirParentToJoin) {
  // node3 reaches node1 before node1 has reached node0: its hello (and
  // its broker.online after it) wait in node1, and go up once node1 has
  // joined, so rank 0 sees rank 3 online without a link dropped.
  brokers_.resize(4);
  brokers_[1] = start_broker(1, "info");
  brokers_[3] = start_broker(3);
  ASSERT_TRUE(brokers_[1]->wait_for_err("waits until this broker has joined", 20)) << brokers_[1]->so_far().err;
  brokers_[0] = start_broker(0);
  brokers_[2] = start_broker(2);
  ASSERT_TRUE(wait_ready());
  for (size_t i = 0; i < 4; ++i) {
    brokers_[i]->wait_for_err("\x01", 0.2);  // reads what is there
    EXPECT_EQ(brokers_[i]->so_far().err.find("closing it"), std::string::npos) << brokers_[i]->so_far().err;
    EXPECT_EQ(brokers_[i]->so_far().err.find("lost the parent"), std::string::npos) << brokers_[i]->so_far().err;
  }
  auto r = loom(0, {"ping", "--rank", "3", "broker"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
}

TEST_F(Cluster, BrokerOfAnotherInstanceIsRefused) {
  start_all();
  ASSERT_TRUE(wait_ready());
  // A host of another instance: its own CA, a certificate naming node3.
  std::string rogue = dir_ + "/rogue";
  auto r = run_cmd({bin("loom"), "keygen", "--dir", rogue, "--hosts", "node3"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string rogue_config = dir_ + "/rogue.toml";
  std::ofstream(rogue_config) << "[bootstrap]\n"
                              << "hosts = [\"node[0-3]\"]\n"
                              << "port = " << kPort << "\n"
                              << "ca = \"" << rogue << "/ca.crt\"\n"
                              << "cert = \"" << rogue << "/{host}.crt\"\n"
                              << "key = \"" << rogue << "/{host}.key\"\n";
  // It runs on node2 claiming node3's rank; its parent is node1. Each
  // side refuses the other's certificate.
  auto b = hosts_.spawn(2, {bin("loomd"), "--config", rogue_config, "--rank", "3", "--rundir", dir_ + "/run/rogue"});
  ASSERT_TRUE(brokers_[1]->wait_for_err("refusing a broker: TLS peer " + hosts_.address(2), 20))
      << brokers_[1]->so_far().err << b->so_far().err;
  EXPECT_TRUE(b->wait_for_err("certificate signed by another authority", 20)) << b->so_far().err;
  b->signal(SIGKILL);
  // node3 stays online, served by the real broker.
  r = loom(0, {"ping", "--rank", "3", "broker"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
}

TEST_F(Cluster, AnotherHostsCertificateCannotClaimARank) {
  start_all();
  ASSERT_TRUE(wait_ready());
  // node2's own, valid certificate, used by a broker claiming node3's
  // rank: the parent (node1) checks the certificate against the host of
  // the rank claimed, and refuses it.
  std::string impostor_config = dir_ + "/impostor.toml";
  std::ofstream(impostor_config) << "[bootstrap]\n"
                                 << "hosts = [\"node[0-3]\"]\n"
                                 << "port = " << kPort << "\n"
                                 << "ca = \"" << certs() << "/ca.crt\"\n"
                                 << "cert = \"" << certs() << "/node2.crt\"\n"
                                 << "key = \"" << certs() << "/node2.key\"\n";
  auto b =
      hosts_.spawn(2, {bin("loomd"), "--config", impostor_config, "--rank", "3", "--rundir", dir_ + "/run/impostor"});
  ASSERT_TRUE(brokers_[1]->wait_for_err("names host node2, expected node3", 20))
      << brokers_[1]->so_far().err << b->so_far().err;
  b->signal(SIGKILL);
  // node3 stays online, served by the real broker.
  auto r = loom(0, {"ping", "--rank", "3", "broker"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  r = loom(0, {"status", "--json"});
  auto st = parse_json(r.out);
  ASSERT_TRUE(st.ok()) << r.out << r.err;
  EXPECT_EQ((*st)["ranks"][3]["state"], "online") << r.out;
}

TEST_F(Cluster, SelfSignedCertificateIsRefused) {
  start_all();
  ASSERT_TRUE(wait_ready());
  // A peer that trusts the instance's CA but shows a certificate it signed
  // itself, naming node3 (loomd itself would not start with it).
  std::string key = dir_ + "/self.key", crt = dir_ + "/self.crt";
  auto r = run_cmd({"/usr/bin/env", "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "1", "-subj", "/CN=node3", "-addext",
                    "subjectAltName=DNS:node3"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = hosts_.run(2,
                 {"openssl", "s_client", "-connect", "node1:" + std::to_string(kPort), "-tls1_3", "-CAfile",
                  certs() + "/ca.crt", "-cert", crt, "-key", key, "-verify_return_error"},
                 {}, 20);
  EXPECT_TRUE(brokers_[1]->wait_for_err("TLS peer " + hosts_.address(2), 20)) << brokers_[1]->so_far().err;
  EXPECT_NE(brokers_[1]->so_far().err.find("(claims node3): self-signed"), std::string::npos)
      << brokers_[1]->so_far().err;
}

TEST_F(Cluster, PlainTcpClientGetsNothing) {
  start_all();
  ASSERT_TRUE(wait_ready());
  // netprobe connects and prints what it reads until the peer closes:
  // nothing, within the handshake deadline.
  auto r = hosts_.run(3, {test_tool("netprobe"), "connect", "node0", std::to_string(kPort), "10"});
  EXPECT_EQ(r.out, "") << r.err;
  EXPECT_TRUE(brokers_[0]->wait_for_err("no TLS handshake within", 10)) << brokers_[0]->so_far().err;
}

// Many connections that never finish a handshake (someone holding
// descriptors on the overlay port) are capped: beyond 64, new ones are
// closed at once, with one log line; the instance goes on.
TEST_F(Cluster, HandshakesUnderWayAreCapped) {
  start_all();
  ASSERT_TRUE(wait_ready());
  auto flood = hosts_.run(3,
                          {"sh", "-c",
                           "i=0; while [ $i -lt 100 ]; do " + test_tool("netprobe") + " connect node0 " +
                               std::to_string(kPort) + " 20 & i=$((i+1)); done; wait"},
                          {}, 60);
  EXPECT_EQ(flood.out, "");  // none of them was told anything
  // (At most one line a minute, however many are refused.)
  EXPECT_TRUE(brokers_[0]->wait_for_err("TLS handshakes are already under way", 10)) << brokers_[0]->so_far().err;
  brokers_[0]->wait_for_err("\x01", 0.2);  // reads what is there
  const std::string& log = brokers_[0]->so_far().err;
  size_t lines = 0;
  for (size_t at = log.find("already under way"); at != std::string::npos; at = log.find("already under way", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << log;
  auto r = loom(2, {"run", "-N4", "hostname"}, 60);
  EXPECT_EQ(r.code, 0) << r.out << r.err;
}

// bootstrap.bind may name the address to listen on: "{host}" is each
// host's own name, resolved when its broker starts; a name that does not
// resolve stops loomd with one line.
TEST_F(Cluster, BindMayNameEachHostsAddress) {
  std::ifstream in(config());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string named = text, bad = text;
  named.insert(named.find("port = "), "bind = \"{host}\"\n");
  bad.insert(bad.find("port = "), "bind = \"{host}-nosuch\"\n");
  std::ofstream(config()) << named;
  std::ofstream(dir_ + "/bad.toml") << bad;
  start_all();
  ASSERT_TRUE(wait_ready());
  auto r = loom(3, {"run", "-N4", "hostname"}, 60);
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  // Each broker with children listens on its own address, not on all.
  for (size_t i : {0, 1}) {
    auto ss = hosts_.run(i, {"ss", "-ltnH"});
    EXPECT_NE(ss.out.find(hosts_.address(i) + ":" + std::to_string(kPort)), std::string::npos) << ss.out << ss.err;
    EXPECT_EQ(ss.out.find("0.0.0.0:" + std::to_string(kPort)), std::string::npos) << ss.out;
  }
  // node1 has a child (node3): it must listen, on a name that is nowhere.
  brokers_[1]->signal(SIGKILL);
  r = hosts_.run(1, {bin("loomd"), "--config", dir_ + "/bad.toml", "--rundir", rundir(1) + "-bad"}, {}, 20);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_NE(r.err.find("bootstrap.bind node1-nosuch: cannot resolve it"), std::string::npos) << r.err;
}

TEST_F(Cluster, HostNotInTheListStopsWithOneLine) {
  Hosts other;
  ASSERT_TRUE(other.create(1, "login"));
  auto r = other.run(0, {bin("loomd"), "--config", config(), "--rundir", dir_ + "/run/login"}, {}, 10);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_NE(r.err.find("login0"), std::string::npos) << r.err;
}

TEST_F(Cluster, PortInUseStopsWithOneLine) {
  auto l = hosts_.spawn(0, {test_tool("netprobe"), "listen", std::to_string(kPort)});
  ASSERT_TRUE(l->wait_for_out("\n", 10)) << l->so_far().err;
  auto r = hosts_.run(0, {bin("loomd"), "--config", config(), "--rundir", rundir(0)}, {}, 10);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_NE(r.err.find("0.0.0.0:8050: Address already in use"), std::string::npos) << r.err;
}

// A second loomd on a host (a manual start beside systemd's) would take
// the first one's socket: it stops with one line instead.
TEST_F(Cluster, SecondBrokerOnAHostStopsWithOneLine) {
  brokers_.resize(1);
  brokers_[0] = start_broker(0);
  ASSERT_TRUE(wait_created(rundir(0), "local.sock", 30));
  auto r = hosts_.run(0, {bin("loomd"), "--config", config(), "--rundir", rundir(0)}, {}, 10);
  EXPECT_EQ(r.code, 1);
  ASSERT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_NE(r.err.find("another loomd (pid " + std::to_string(brokers_[0]->pid()) + ") serves the run directory"),
            std::string::npos)
      << r.err;
  r = loom(0, {"ping", "broker"});  // the first one still serves
  EXPECT_EQ(r.code, 0) << r.out << r.err;
}

TEST_F(Cluster, DuplicateHostStopsWithOneLine) {
  std::ofstream(dir_ + "/dup.toml") << "[bootstrap]\nhosts = [\"node[0-1]\", \"node1\"]\n";
  auto r = hosts_.run(0, {bin("loomd"), "--config", dir_ + "/dup.toml", "--rundir", rundir(0)}, {}, 10);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_NE(r.err.find("node1"), std::string::npos) << r.err;
}

TEST_F(Cluster, ForeignCertificateStopsWithOneLine) {
  // This host's certificate comes from another CA than the file's ca.
  std::string other = dir_ + "/other";
  auto r = run_cmd({bin("loom"), "keygen", "--dir", other, "--hosts", "node0"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::ofstream(dir_ + "/foreign.toml") << "[bootstrap]\n"
                                        << "hosts = [\"node[0-3]\"]\n"
                                        << "ca = \"" << certs() << "/ca.crt\"\n"
                                        << "cert = \"" << other << "/{host}.crt\"\n"
                                        << "key = \"" << other << "/{host}.key\"\n";
  r = hosts_.run(0, {bin("loomd"), "--config", dir_ + "/foreign.toml", "--rundir", rundir(0)}, {}, 10);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_NE(r.err.find(other + "/node0.crt"), std::string::npos) << r.err;
}

TEST_F(Cluster, RestartedBrokerRejoins) {
  start_all();
  ASSERT_TRUE(wait_ready());
  // node2 dies; rank 0 notices the link gone; a new loomd on node2 rejoins.
  brokers_[2]->signal(SIGKILL);
  brokers_[2]->finish(10);
  ASSERT_TRUE(brokers_[0]->wait_for_err("rank 2 lost", 20)) << brokers_[0]->so_far().err;
  brokers_[2] = start_broker(2);
  ASSERT_TRUE(brokers_[0]->wait_for_err("rank 2 back online", 20)) << brokers_[0]->so_far().err;
  ASSERT_TRUE(wait_ready());
  auto r = loom(0, {"run", "-N4", "hostname"}, 60);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("node2"), std::string::npos) << r.out;
}

TEST_F(Cluster, BrokerBackBeforeItsOldLinkTimedOutReplacesIt) {
  // A long heartbeat timeout: node0 still holds node2's old link when the
  // restarted broker says hello.
  {
    std::ifstream in(config());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string short_timeout = "heartbeat-timeout = \"2s\"";
    text.replace(text.find(short_timeout), short_timeout.size(), "heartbeat-timeout = \"60s\"");
    std::ofstream(config()) << text;
  }
  start_all();
  ASSERT_TRUE(wait_ready());
  // The old broker hangs (stopped): its link stays open and silent, as
  // one whose host froze. A new broker on node2 says hello meanwhile.
  auto old = std::move(brokers_[2]);
  ASSERT_TRUE(old->signal(SIGSTOP));
  // (The host rebooted, as far as the new broker goes: its own run
  // directory, the frozen one holding the old.)
  brokers_[2] = start_broker(2, "", {"--rundir", rundir(2) + "-new"});
  ASSERT_TRUE(brokers_[0]->wait_for_err("rank 2 lost: it connected again", 30)) << brokers_[0]->so_far().err;
  ASSERT_TRUE(brokers_[0]->wait_for_err("rank 2 back online", 30)) << brokers_[0]->so_far().err;
  ASSERT_TRUE(wait_ready());
  auto r = loom(0, {"run", "-N4", "hostname"}, 60);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("node2"), std::string::npos) << r.out;
  old->signal(SIGKILL);
}

// `systemctl stop loomd` on one host (SIGTERM to a broker other than rank
// 0) stops that host's broker alone: its jobs end, its rank and those
// below it are lost, and the broker below it (node3 under node1) keeps
// running and rejoins through it once it is back.
TEST_F(Cluster, StoppingOneHostsBrokerLeavesTheRestRunning) {
  start_all();
  ASSERT_TRUE(wait_ready());
  std::string marker = "303." + std::to_string(::getpid());
  std::vector<pid_t> tasks;
  std::string id = sleep_everywhere(marker, &tasks);
  ASSERT_FALSE(HasFailure());

  ASSERT_TRUE(brokers_[1]->signal(SIGTERM));
  auto stopped = brokers_[1]->finish(10);
  EXPECT_EQ(stopped.code, 0) << stopped.err;
  auto ex = loom(0, {"job", "wait-event", "-t", "30", id, "exception"}, 40);
  EXPECT_NE(ex.out.find("node-failure"), std::string::npos) << ex.out << ex.err;
  auto clean = loom(0, {"job", "wait-event", "-t", "30", id, "clean"}, 40);
  EXPECT_EQ(clean.code, 0) << clean.out << clean.err;
  // Gone: node1's task (its broker killed it) and those of node0 and
  // node2 (released); node3's runs on while node3 is cut off.
  EXPECT_EQ(processes_with(marker).size(), 1u);
  ASSERT_TRUE(brokers_[0]->wait_for_err("rank 3 lost", 20)) << brokers_[0]->so_far().err;
  auto r = loom(0, {"status", "--json"});
  auto st = parse_json(r.out);
  ASSERT_TRUE(st.ok()) << r.out << r.err;
  EXPECT_EQ((*st)["ranks"][1]["state"], "lost") << r.out;
  EXPECT_EQ((*st)["ranks"][2]["state"], "online") << r.out;
  ASSERT_TRUE(brokers_[3]->wait_for_err("lost the parent broker", 10)) << brokers_[3]->so_far().err;
  EXPECT_TRUE(brokers_[3]->signal(0)) << "node3's broker stopped with its parent";
  // A job that fits on the hosts left still runs meanwhile.
  r = loom(2, {"run", "-N2", "hostname"}, 60);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto lines = r.out_lines();
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"node0", "node2"}));

  brokers_[1] = start_broker(1);
  ASSERT_TRUE(brokers_[0]->wait_for_err("rank 3 back online", 30)) << brokers_[0]->so_far().err;
  expect_all_exit(tasks);  // node3 back: it learns the job let it go
  ASSERT_TRUE(wait_ready());
  r = loom(3, {"run", "-N4", "hostname"}, 60);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(r.out_lines().size(), 4u) << r.out;
}

// Rank 0's broker crashes and is started again on its state directory
// while the other hosts' brokers run on: they reconnect, and the running
// job is found again on every host and ends as it would have.
TEST_F(Cluster, RankZeroRestartedFindsRunningJobsOnEveryHost) {
  const std::vector<std::string> state{"--state-dir", dir_ + "/state"};
  brokers_.resize(4);
  for (size_t i = 4; i-- > 1;) brokers_[i] = start_broker(i);
  brokers_[0] = start_broker(0, "", state);
  ASSERT_TRUE(wait_ready());
  // Each task waits for the file `go`, then exits 3.
  std::string go = dir_ + "/go";
  auto job = loom(0, {"submit", "-N4", "sh", "-c", "while [ ! -e " + go + " ]; do sleep 0.05; done; exit 3"});
  ASSERT_EQ(job.code, 0) << job.err;
  std::string id = job.out.substr(0, job.out.find('\n'));
  auto started = loom(0, {"job", "wait-event", "-t", "30", id, "start"}, 40);
  ASSERT_EQ(started.code, 0) << started.out << started.err;

  // (Its job shell keeps the broker's stderr open: wait for the process.)
  brokers_[0]->signal(SIGKILL);
  ASSERT_TRUE(wait_gone(brokers_[0]->pid(), 10));
  ASSERT_TRUE(brokers_[2]->wait_for_err("lost the parent broker", 20)) << brokers_[2]->so_far().err;
  fs::remove(rundir(0) + "/local.sock");  // so that wait_ready waits for the new one
  brokers_[0] = start_broker(0, "", state);
  ASSERT_TRUE(wait_ready());
  // Let the four tasks go: their shells' exits reach the restarted rank
  // 0, whether it has claimed them already or does so after.
  std::ofstream(go) << "go\n";
  auto done = loom(0, {"job", "wait-event", "-t", "30", id, "clean"}, 40);
  ASSERT_EQ(done.code, 0) << done.out << done.err;
  auto log = loom(0, {"job", "eventlog", id});
  EXPECT_EQ(log.out.find("exception"), std::string::npos) << log.out;
  EXPECT_NE(log.out.find("finish status=768"), std::string::npos) << log.out;  // exit 3
  auto r = loom(1, {"run", "-N4", "hostname"}, 60);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(r.out_lines().size(), 4u) << r.out;
}

TEST_F(Cluster, UnpluggedHostGoesDownAndComesBack) {
  start_all();
  ASSERT_TRUE(wait_ready());
  std::string marker = "302." + std::to_string(::getpid());
  std::vector<pid_t> tasks;
  std::string id = sleep_everywhere(marker, &tasks);
  ASSERT_FALSE(HasFailure());

  ASSERT_TRUE(hosts_.set_link(2, false));
  // The job's rank on node2 is gone: node-failure, and the job ends (its
  // other ranks released) without waiting for node2.
  auto ex = loom(0, {"job", "wait-event", "-t", "30", id, "exception"}, 40);
  EXPECT_EQ(ex.code, 0) << ex.out << ex.err;
  EXPECT_NE(ex.out.find("node-failure"), std::string::npos) << ex.out;
  auto clean = loom(0, {"job", "wait-event", "-t", "30", id, "clean"}, 40);
  EXPECT_EQ(clean.code, 0) << clean.out << clean.err;
  // Rank 0 declares rank 2 lost after the heartbeat timeout.
  ASSERT_TRUE(brokers_[0]->wait_for_err("rank 2 lost", 20)) << brokers_[0]->so_far().err;
  auto r = loom(0, {"status", "--json"});
  auto st = parse_json(r.out);
  ASSERT_TRUE(st.ok()) << r.out << r.err;
  EXPECT_EQ((*st)["ranks"][2]["state"], "lost") << r.out;
  ASSERT_TRUE(hosts_.set_link(2, true));
  // node2's broker reconnects by itself.
  ASSERT_TRUE(brokers_[0]->wait_for_err("rank 2 back online", 30)) << brokers_[0]->so_far().err;
  // Back, node2's broker learns that the instance released rank 2 from
  // the job, and kills the task it kept running while cut off.
  expect_all_exit(tasks);
  ASSERT_TRUE(wait_ready());
  r = loom(0, {"run", "-N4", "hostname"}, 60);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("node2"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace loom::test
