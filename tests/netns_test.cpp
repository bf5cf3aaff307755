// Simulated hosts (kit/netns.h): each host its own name, addresses and
// names resolved between hosts and nothing beyond them, a link taken down
// and up, and nothing left behind, also by a test process that was killed.
// Needs root (ctest label `cluster`); skipped with the reason otherwise.
#include "kit/netns.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kit/process.h"

namespace loom::test {
namespace {

namespace fs = std::filesystem;

class HostsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = Hosts::unavailable(); !why.empty()) GTEST_SKIP() << why;
  }
};

// A `netprobe listen 0` in host i; its port in *port.
std::unique_ptr<Background> listener(const Hosts& hosts, size_t i, int* port) {
  auto l = hosts.spawn(i, {test_tool("netprobe"), "listen", "0"});
  if (!l->wait_for_out("\n", 10)) {
    ADD_FAILURE() << "no listener in host " << i << ": " << l->so_far().err;
    return l;
  }
  const std::string& out = l->so_far().out;
  *port = std::stoi(out.substr(out.find_last_of(' ') + 1));
  return l;
}

CmdResult connect(const Hosts& hosts, size_t from, const std::string& to, int port, double timeout) {
  return hosts.run(from, {test_tool("netprobe"), "connect", to, std::to_string(port), std::to_string(timeout)});
}

std::string machine_hostname() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

// Names in `dir` that start with `prefix`.
std::vector<std::string> named(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.starts_with(prefix)) out.push_back(name);
  }
  return out;
}

TEST_F(HostsTest, EachHostRunsUnderItsOwnName) {
  std::string ours = machine_hostname();
  Hosts hosts;
  ASSERT_TRUE(hosts.create(3));
  for (size_t i = 0; i < 3; ++i) {
    auto r = hosts.run(i, {"hostname"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "node" + std::to_string(i) + "\n");
    // Inherited by what the command starts.
    r = hosts.run(i, {"sh", "-c", "sh -c 'cat /proc/sys/kernel/hostname'"});
    EXPECT_EQ(r.out, hosts.hostname(i) + "\n") << r.err;
  }
  EXPECT_EQ(machine_hostname(), ours);
}

// Named hosts, each with a directory of its own over one path (as real
// hosts each have their /etc/loom), reached also from another host.
TEST_F(HostsTest, NamedHostsHaveDirectoriesOfTheirOwn) {
  char tmpl[] = "/tmp/loom-netns-dirs-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string tmp = tmpl;
  // A mount point the machine lacks: created, and removed by destroy().
  std::string top = "/run/loom-netns-test-" + std::to_string(::getpid());
  std::string path = top + "/etc";
  ASSERT_FALSE(fs::exists(top));
  {
    Hosts hosts;
    ASSERT_TRUE(hosts.create({"alpha", "login"}));
    EXPECT_EQ(hosts.hostname(1), "login");
    ASSERT_TRUE(hosts.add_private_dir(0, path, tmp + "/alpha"));
    ASSERT_TRUE(hosts.add_private_dir(1, path, tmp + "/login"));
    ASSERT_TRUE(fs::is_directory(path));
    auto r = hosts.run(0, {"sh", "-c", "hostname && echo a > " + path + "/f"});
    EXPECT_EQ(r.out, "alpha\n") << r.err;
    r = hosts.run(1, {"sh", "-c", "hostname && ls " + path + " && echo b > " + path + "/f"});
    EXPECT_EQ(r.out, "login\n") << r.err;  // nothing of alpha's there
    EXPECT_EQ(run_cmd({"/bin/cat", tmp + "/alpha/f", tmp + "/login/f"}).out, "a\nb\n");
    EXPECT_TRUE(fs::is_empty(path)) << "the machine sees the hosts' files";
    // enter(): from the machine, and from inside another host.
    auto argv = hosts.enter(1);
    argv.insert(argv.end(), {"sh", "-c", "hostname && cat " + path + "/f"});
    r = run_cmd(argv);
    EXPECT_EQ(r.out, "login\nb\n") << r.err;
    r = hosts.run(0, argv);
    EXPECT_EQ(r.out, "login\nb\n") << r.err;
    EXPECT_FALSE(hosts.create({"x"})) << "create twice";
    Hosts bad;
    EXPECT_FALSE(bad.create({"a", "a"}));
    EXPECT_FALSE(bad.create({"a/b"}));
  }
  EXPECT_FALSE(fs::exists(top)) << "the mount point made for the hosts is left";
  fs::remove_all(tmp);
}

TEST_F(HostsTest, SignalsReachTheCommandItself) {
  // No process stands between the handle and the command: the command's
  // own trap answers.
  Hosts hosts;
  ASSERT_TRUE(hosts.create(1));
  auto p = hosts.spawn(0, {"sh", "-c", "trap 'echo term; exit 7' TERM; echo ready; sleep 1000 >/dev/null 2>&1 & wait"});
  ASSERT_TRUE(p->wait_for_out("ready\n", 10)) << p->so_far().err;
  ASSERT_TRUE(p->signal(SIGTERM));
  auto r = p->finish(10);
  EXPECT_EQ(r.code, 7) << r.err;
  EXPECT_EQ(r.out, "ready\nterm\n");
}

TEST_F(HostsTest, HostHasOnlyLoopbackAndItsLinkWithNoDefaultRoute) {
  Hosts hosts;
  ASSERT_TRUE(hosts.create(2));
  auto r = hosts.run(1, {"cat", "/proc/net/dev"});
  ASSERT_EQ(r.code, 0) << r.err;
  // Two header lines, then one line per interface.
  ASSERT_EQ(r.out_lines().size(), 4u) << r.out;
  EXPECT_NE(r.out.find(" lo:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("eth0:"), std::string::npos) << r.out;
  r = hosts.run(1, {"ip", "-4", "-o", "addr", "show", "dev", "eth0"});
  EXPECT_NE(r.out.find(" " + hosts.address(1) + "/24 "), std::string::npos) << r.out << r.err;
  r = hosts.run(1, {"ip", "route", "show", "default"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  // Nowhere to go beyond the test's hosts: no route, refused at once.
  r = connect(hosts, 0, "192.0.2.1", 80, 10);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("Network is unreachable"), std::string::npos) << r.err;
}

TEST_F(HostsTest, HostsReachEachOtherByName) {
  Hosts hosts;
  ASSERT_TRUE(hosts.create(3));
  auto r = hosts.run(1, {"getent", "hosts", "node2"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, r.out.find(' ')), hosts.address(2)) << r.out;
  EXPECT_EQ(hosts.run(0, {"cat", "/etc/hosts"}).out, hosts.hosts_file());

  int port = 0;
  auto l = listener(hosts, 2, &port);
  ASSERT_GT(port, 0);
  r = connect(hosts, 0, "node2", port, 10);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "node2\n");
  // Its own name is its own address, not loopback.
  r = connect(hosts, 2, "node2", port, 10);
  EXPECT_EQ(r.out, "node2\n") << r.err;
  // The listener is in host 2 only.
  int other = 0;
  auto l0 = listener(hosts, 0, &other);
  r = connect(hosts, 1, "node0", other, 10);
  EXPECT_EQ(r.out, "node0\n") << r.err;
}

TEST_F(HostsTest, UnpluggedHostIsUnreachableUntilPluggedBack) {
  Hosts hosts;
  ASSERT_TRUE(hosts.create(3));
  int port = 0;
  auto l = listener(hosts, 2, &port);
  ASSERT_GT(port, 0);
  ASSERT_EQ(connect(hosts, 0, "node2", port, 10).out, "node2\n");

  ASSERT_TRUE(hosts.set_link(2, false));
  // Host 2 sees its cable gone.
  EXPECT_EQ(hosts.run(2, {"cat", "/sys/class/net/eth0/carrier"}).out, "0\n");
  double start = monotonic_now();
  auto r = connect(hosts, 0, "node2", port, 2);
  double took = monotonic_now() - start;
  EXPECT_TRUE(r.code == 1 || r.code == 2) << r.code << " " << r.out << r.err;
  EXPECT_LT(took, 5) << r.err;
  // The others still talk.
  int other = 0;
  auto l1 = listener(hosts, 1, &other);
  EXPECT_EQ(connect(hosts, 0, "node1", other, 10).out, "node1\n");

  ASSERT_TRUE(hosts.set_link(2, true));
  // A lost SYN (while the kernel brings the link up) is sent again: the
  // timeout covers it.
  r = connect(hosts, 0, "node2", port, 10);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "node2\n");
}

TEST_F(HostsTest, TwoNetworksAtOnceAreApart) {
  Hosts a, b;
  ASSERT_TRUE(a.create(2));
  ASSERT_TRUE(b.create(2));
  EXPECT_NE(a.bridge(), b.bridge());
  EXPECT_NE(a.netns(0), b.netns(0));
  EXPECT_NE(a.address(0), b.address(0));
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_LE(a.link(i).size(), 15u);
    EXPECT_LE(b.link(i).size(), 15u);
  }
  int port = 0;
  auto l = listener(b, 1, &port);
  ASSERT_GT(port, 0);
  EXPECT_EQ(connect(b, 0, "node1", port, 10).out, "node1\n");
  auto r = connect(a, 0, b.address(1), port, 2);
  EXPECT_NE(r.code, 0) << r.out;
}

TEST_F(HostsTest, DestroyLeavesNothingBehind) {
  std::vector<std::string> namespaces, links;
  std::unique_ptr<Background> l;
  {
    Hosts hosts;
    ASSERT_TRUE(hosts.create(3));
    for (size_t i = 0; i < 3; ++i) {
      namespaces.push_back(hosts.netns(i));
      links.push_back(hosts.link(i));
    }
    links.push_back(hosts.bridge());
    int port = 0;
    // Still running in host 1 when the hosts go.
    l = listener(hosts, 1, &port);
    ASSERT_GT(port, 0);
  }
  EXPECT_EQ(l->finish(10).code, 128 + SIGKILL);
  auto r = run_cmd({"/bin/sh", "-c", "ip netns list; ip -o link"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const auto& name : namespaces) {
    EXPECT_EQ(r.out.find(name), std::string::npos) << r.out;
    EXPECT_FALSE(fs::exists("/etc/netns/" + name));
  }
  for (const auto& name : links) EXPECT_EQ(r.out.find(name), std::string::npos) << r.out;
}

TEST_F(HostsTest, LeftoversOfAKilledTestAreRemoved) {
  // A child makes two hosts with a process running in one (outside its own
  // process tree: it outlives the child), reports, and stops; then it is
  // killed, as a test that crashes never reaches its destructors.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    Hosts hosts;
    std::string report = "failed\n";
    if (hosts.create(2)) {
      auto p = hosts.spawn(1, {"sh", "-c", "sleep 1000 </dev/null >/dev/null 2>&1 & echo $!"});
      auto done = p->finish(10);
      if (done.code == 0) report = done.out;
    }
    (void)!::write(fds[1], report.data(), report.size());
    ::raise(SIGSTOP);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string report;
  char buf[64];
  for (ssize_t k; (k = ::read(fds[0], buf, sizeof buf)) > 0;) {
    report.append(buf, static_cast<size_t>(k));
    if (report.back() == '\n') break;
  }
  ::close(fds[0]);
  // Checked while the child is stopped: no other test's create() removes
  // the leftovers of a process that is still there.
  std::string theirs = "lm" + std::to_string(child);
  EXPECT_EQ(named("/run/netns", theirs).size(), 2u);
  EXPECT_EQ(named("/sys/class/net", theirs).size(), 3u);
  EXPECT_EQ(named("/etc/netns", theirs).size(), 2u);
  ::kill(child, SIGKILL);
  int st = 0;
  ASSERT_EQ(::waitpid(child, &st, 0), child);
  ASSERT_NE(report, "failed\n");
  pid_t sleeper = std::stoi(report);
  EXPECT_TRUE(is_alive(sleeper));

  Hosts hosts;
  ASSERT_TRUE(hosts.create(1));
  EXPECT_EQ(named("/run/netns", theirs), std::vector<std::string>{});
  EXPECT_EQ(named("/sys/class/net", theirs), std::vector<std::string>{});
  EXPECT_EQ(named("/etc/netns", theirs), std::vector<std::string>{});
  EXPECT_TRUE(wait_gone(sleeper, 10));
  EXPECT_EQ(hosts.run(0, {"hostname"}).out, "node0\n");
}

TEST_F(HostsTest, NamesLeftByAnEarlierProcessWithOurPidAreCleared) {
  // An earlier test process with the pid we now have left the network its
  // next Hosts would make (names as kit/netns.h gives them): a bridge, a
  // namespace with a process inside, a veth between them, a stale hosts
  // file.
  std::string bridge;
  {
    Hosts first;
    ASSERT_TRUE(first.create(1));
    bridge = first.bridge();
  }
  size_t b = bridge.rfind('b');
  std::string next = std::to_string(std::stoi(bridge.substr(b + 1)) + 1);
  std::string tag = bridge.substr(0, b);
  std::string ns = tag + "n" + next + "h0", veth = tag + "v" + next + "h0";
  bridge = tag + "b" + next;
  for (const auto& cmd : std::vector<std::vector<std::string>>{
           {"ip", "netns", "add", ns},
           {"ip", "link", "add", bridge, "type", "bridge"},
           {"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
           {"ip", "link", "set", veth, "master", bridge},
           {"mkdir", "-p", "/etc/netns/" + ns},
           {"sh", "-c", "echo '10.0.0.1 node0' > /etc/netns/" + ns + "/hosts"},
       }) {
    std::vector<std::string> argv = {"/usr/bin/env"};
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    auto r = run_cmd(argv);
    ASSERT_EQ(r.code, 0) << cmd[0] << " " << cmd[1] << ": " << r.err;
  }
  auto inside = std::make_unique<Background>(
      std::vector<std::string>{"/usr/bin/env", "ip", "netns", "exec", ns, "sh", "-c", "echo in; exec sleep 1000"});
  ASSERT_TRUE(inside->wait_for_out("in\n", 10)) << inside->so_far().err;

  Hosts hosts;
  ASSERT_TRUE(hosts.create(1));
  ASSERT_EQ(hosts.netns(0), ns);
  ASSERT_EQ(hosts.bridge(), bridge);
  EXPECT_EQ(inside->finish(10).code, 128 + SIGKILL);
  EXPECT_EQ(hosts.run(0, {"getent", "hosts", "node0"}).out.substr(0, hosts.address(0).size()), hosts.address(0));
  int port = 0;
  auto l = listener(hosts, 0, &port);
  ASSERT_GT(port, 0);
  EXPECT_EQ(connect(hosts, 0, "node0", port, 10).out, "node0\n");
}

}  // namespace
}  // namespace loom::test
