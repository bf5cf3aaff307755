// Simulated hosts for tests across hosts: one Linux network namespace per
// host, each with its own link to a shared bridge, an address the test
// assigns, its own hostname and name resolution for every other host.
//
//   if (auto why = Hosts::unavailable(); !why.empty()) GTEST_SKIP() << why;
//   Hosts hosts;
//   ASSERT_TRUE(hosts.create(3));                    // node0, node1, node2
//   auto r = hosts.run(1, {"hostname"});             // "node1\n"
//   auto d = hosts.spawn(2, {bin("loomd"), ...});    // a broker on node2
//   ASSERT_TRUE(hosts.set_link(2, false));           // node2 unplugged
//
// Hosts may be named (create({"node1", "node2", "login"})) and have
// directories of their own, as real hosts have their own /etc/loom:
//
//   ASSERT_TRUE(hosts.add_private_dir(0, "/etc/loom", tmp + "/node1/etc"));
//   hosts.run(0, {"ls", "/etc/loom"});               // what is in tmp/node1/etc
//
// The network, per Hosts object:
//
//   root namespace:  bridge lm<pid>b<c>   (no address, no forwarding)
//                      ├── lm<pid>v<c>h0 ──veth── eth0 10.X.Y.1/24  in namespace lm<pid>n<c>h0 (node0)
//                      ├── lm<pid>v<c>h1 ──veth── eth0 10.X.Y.2/24  in namespace lm<pid>n<c>h1 (node1)
//                      └── ...
//
// <pid> is the test process, <c> a counter of Hosts objects in it (mod
// 100), so tests running at once (ctest -j) never share a name; interface
// names stay within 15 characters. Each host has only loopback and eth0,
// whose one route is the connected /24: no default route, no NAT, so
// traffic goes only to the test's own addresses (10.X.Y differs per test as
// well, though separate bridges already keep tests apart).
//
// Processes run in host i (run, spawn) through `ip netns exec`, in a new
// UTS namespace whose hostname is host i's name, set before the command
// starts and inherited by everything it starts. Name resolution: each host
// has /etc/netns/<namespace>/hosts (localhost and every host's name and
// address), which `ip netns exec` bind-mounts over /etc/hosts in the
// process's own mount namespace; the machine's /etc/hosts is untouched.
//
// Private directories: a command in a host with some runs in a mount
// namespace of its own (`unshare --mount`, inside `ip netns exec`'s), in
// which each host directory is bind-mounted over its path; the machine's
// view is untouched. enter() gives the same as a command prefix, for
// scripts that reach another host (a test's `ssh`).
//
// Everything is removed by the destructor (processes still inside a host
// are killed first), whatever the test's outcome. Leftovers of a test
// process that was killed are removed by the next create() once that
// process is gone, and names about to be reused are cleared first.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "kit/process.h"

namespace loom::test {

class Hosts {
 public:
  Hosts() = default;
  ~Hosts();
  Hosts(const Hosts&) = delete;
  Hosts& operator=(const Hosts&) = delete;

  // Why simulated hosts cannot be made here ("" if they can): not root, no
  // `ip`, or a namespace, bridge or veth cannot be created (the first time
  // it is asked, it builds a one-host network and runs a command in it).
  static std::string unavailable();

  // Creates `n` hosts named PREFIX0..PREFIXn-1 (at most 99). Call once.
  ::testing::AssertionResult create(size_t n, const std::string& prefix = "node");
  // Creates one host per name (1 to 99 distinct host names), in order:
  // host i is names[i]. Call once, instead of the above.
  ::testing::AssertionResult create(const std::vector<std::string>& names);
  // Removes every namespace, interface and file of these hosts, after
  // killing the processes still inside them. The destructor calls it.
  ::testing::AssertionResult destroy();

  size_t size() const { return hosts_.size(); }
  const std::string& hostname(size_t i) const { return hosts_.at(i).hostname; }
  // Host i's IPv4 address, "10.X.Y.<i+1>".
  const std::string& address(size_t i) const { return hosts_.at(i).address; }
  // The namespace (`ip netns` name) and the root-side end of its link.
  const std::string& netns(size_t i) const { return hosts_.at(i).netns; }
  const std::string& link(size_t i) const { return hosts_.at(i).link; }
  const std::string& bridge() const { return bridge_; }
  // What every host has as /etc/hosts.
  const std::string& hosts_file() const { return hosts_file_; }

  // Gives host i a directory of its own at `path` (absolute): `dir` on the
  // machine (created if absent) is bind-mounted over `path` for every
  // command run in host i afterwards (run, spawn, enter). `path` must exist
  // on the machine to be mounted over: if it does not, it is created, and
  // destroy() removes what it created (if still empty).
  ::testing::AssertionResult add_private_dir(size_t i, const std::string& path, const std::string& dir);

  // The words that run a command in host i from any process of the
  // machine, one inside another host included: ENTER... CMD ARGS...; the
  // command has host i's network, hostname and private directories.
  std::vector<std::string> enter(size_t i) const;

  // Runs argv in host i (argv[0] looked up in PATH), as run_cmd does.
  CmdResult run(size_t i, const std::vector<std::string>& argv, const Env& env = {}, double timeout = 30) const;
  // The same, left running beside the test; its pid is the command's own,
  // so signal() reaches it.
  std::unique_ptr<Background> spawn(size_t i, const std::vector<std::string>& argv, const Env& env = {}) const;

  // Takes host i's link down (the cable unplugged at the switch: eth0 in
  // the host loses its carrier, frames to it are dropped) or up again.
  ::testing::AssertionResult set_link(size_t i, bool up) const;

 private:
  struct Host {
    std::string hostname;
    std::string address;
    std::string netns;
    std::string link;
    std::vector<std::pair<std::string, std::string>> private_dirs;  // (path, dir)
  };
  ::testing::AssertionResult make(const std::vector<std::string>& names);
  // `mount --bind` of host i's private directories, then `exec "$@"`.
  std::string mount_script(size_t i) const;
  std::vector<std::string> wrap(size_t i, const std::vector<std::string>& argv) const;
  std::vector<Host> hosts_;
  std::string bridge_;
  std::string hosts_file_;
  std::vector<std::string> made_paths_;  // mount points we created, parents first
  bool created_ = false;
};

// Waits up to `timeout` seconds for `name` to appear in `dir` (inotify).
bool wait_created(const std::string& dir, const std::string& name, double timeout);

}  // namespace loom::test
