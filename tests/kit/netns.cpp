#include "kit/netns.h"

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace loom::test {

namespace fs = std::filesystem;

namespace {

// Every name of ours starts "lm<pid>" and goes on with 'b' (bridge), 'v'
// (veth) or 'n' (namespace), then the Hosts counter.
constexpr const char* kNetnsPrefix = "lm";
constexpr const char* kNetnsDir = "/run/netns";  // where `ip netns` mounts namespaces
constexpr const char* kEtcNetns = "/etc/netns";  // what `ip netns exec` binds over /etc
constexpr const char* kLock = "/run/loom-test-netns.lock";
constexpr size_t kMaxHosts = 99;

const std::string& ip_tool() {
  static const std::string path = system_tool("ip");
  return path;
}

std::string joined(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& a : args) out += (out.empty() ? "" : " ") + a;
  return out;
}

// Runs `ip ARGS...`; "" on success, else the command and what it said.
std::string ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {ip_tool()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_cmd(argv, {}, 30);
  if (r.code == 0) return "";
  return "ip " + joined(args) + ": " + brief(r);
}

// A name of ours: the pid of the process that made it and its kind ('b',
// 'v' or 'n'); pid 0 if the name is not ours.
struct Owner {
  pid_t pid = 0;
  char kind = 0;
};
Owner owner(const std::string& name) {
  if (!name.starts_with(kNetnsPrefix)) return {};
  size_t end = name.find_first_not_of("0123456789", 2);
  if (end == 2 || end > 2 + 9 || end == std::string::npos) return {};
  if (name[end] != 'b' && name[end] != 'v' && name[end] != 'n') return {};
  return {static_cast<pid_t>(std::stol(name.substr(2, end - 2))), name[end]};
}

bool is_gone(pid_t pid) { return pid > 0 && pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH; }

std::vector<std::string> entries(const char* dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
  return out;
}

bool netns_exists(const std::string& ns) { return fs::exists(fs::path(kNetnsDir) / ns); }
bool link_exists(const std::string& name) { return fs::exists(fs::path("/sys/class/net") / name); }

// Kills every process inside namespace `ns` and waits for them to exit, so
// that the namespace (and the link in it) goes with its mount.
std::string kill_inside(const std::string& ns) {
  auto r = run_cmd({ip_tool(), "netns", "pids", ns}, {}, 30);
  if (r.code != 0) return "ip netns pids " + ns + ": " + brief(r);
  std::vector<pid_t> pids;
  for (const auto& line : r.out_lines()) {
    if (line.empty() || !std::all_of(line.begin(), line.end(), ::isdigit)) continue;
    auto pid = static_cast<pid_t>(std::stol(line));
    if (pid != ::getpid() && ::kill(pid, SIGKILL) == 0) pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    if (!wait_gone(pid, 10)) return "process " + std::to_string(pid) + " in " + ns + " survived SIGKILL";
  }
  return "";
}

// Each remove_* removes one object if it is there: "" if it is not (any
// more), else why it could not be removed.
std::string remove_link(const std::string& name) { return link_exists(name) ? ip({"link", "del", name}) : ""; }

std::string remove_netns(const std::string& ns) {
  if (!netns_exists(ns)) return "";
  if (auto why = kill_inside(ns); !why.empty()) return why;
  return ip({"netns", "del", ns});
}

std::string remove_etc(const std::string& ns) {
  std::error_code ec;
  fs::remove_all(fs::path(kEtcNetns) / ns, ec);
  if (ec) return std::string(kEtcNetns) + "/" + ns + ": " + ec.message();
  // Only if empty: another Hosts may have its files there.
  fs::remove(kEtcNetns, ec);
  return "";
}

// Namespaces, links and /etc/netns directories of test processes that are
// gone (killed before their destructor ran). Best effort: what cannot be
// removed now is tried again by the next one.
void remove_stale() {
  // Links before namespaces: deleting the root end of a veth deletes the
  // namespace's end at once, where a namespace's own interfaces go only when
  // the kernel frees it. Veths before their bridges, as destroy() does.
  auto links = entries("/sys/class/net");
  for (char kind : {'v', 'b'}) {
    for (const auto& name : links) {
      auto o = owner(name);
      if (o.kind == kind && is_gone(o.pid)) remove_link(name);
    }
  }
  for (const auto& ns : entries(kNetnsDir)) {
    if (is_gone(owner(ns).pid)) remove_netns(ns);
  }
  for (const auto& ns : entries(kEtcNetns)) {
    if (is_gone(owner(ns).pid)) remove_etc(ns);
  }
}

// Serialises building and removing networks between test processes: the
// first `ip netns add` on a machine makes /run/netns a mount point, and two
// at once could stack two mounts (hiding the namespaces of the first).
class MachineLock {
 public:
  MachineLock() : fd_(::open(kLock, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    if (fd_ < 0) {
      why_ = std::string(kLock) + ": " + std::strerror(errno);
      return;
    }
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) {
        why_ = std::string("flock ") + kLock + ": " + std::strerror(errno);
        return;
      }
    }
  }
  ~MachineLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  MachineLock(const MachineLock&) = delete;
  MachineLock& operator=(const MachineLock&) = delete;
  const std::string& why() const { return why_; }

 private:
  int fd_;
  std::string why_;
};

// What is missing before even trying: "" if nothing.
std::string missing() {
  if (::geteuid() != 0) return "needs root: it creates network namespaces, a bridge and veth links (simulated hosts)";
  if (ip_tool().empty()) return "needs ip (iproute2) to create network namespaces";
  return "";
}

}  // namespace

std::string Hosts::unavailable() {
  static const std::string why = [] {
    if (auto m = missing(); !m.empty()) return m;
    Hosts probe;
    auto made = probe.create(1, "probe");
    std::string out;
    if (!made) {
      out = std::string("cannot create a network namespace linked to a bridge: ") + made.message();
    } else if (auto r = probe.run(0, {"cat", "/proc/sys/kernel/hostname"}, {}, 30); r.out != "probe0\n") {
      out = "cannot run a command in a network namespace with its own hostname: " + brief(r);
    }
    auto removed = probe.destroy();
    if (out.empty() && !removed) out = std::string("cannot remove a network namespace: ") + removed.message();
    return out;
  }();
  return why;
}

Hosts::~Hosts() {
  auto removed = destroy();
  if (!removed) ADD_FAILURE() << "simulated hosts not removed: " << removed.message();
}

::testing::AssertionResult Hosts::create(size_t n, const std::string& prefix) {
  if (n == 0 || n > kMaxHosts) return ::testing::AssertionFailure() << "Hosts::create: 1 to 99 hosts, not " << n;
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) names.push_back(prefix + std::to_string(i));
  return make(names);
}

::testing::AssertionResult Hosts::create(const std::vector<std::string>& names) {
  if (names.empty() || names.size() > kMaxHosts) {
    return ::testing::AssertionFailure() << "Hosts::create: 1 to 99 hosts, not " << names.size();
  }
  for (size_t i = 0; i < names.size(); ++i) {
    const auto& name = names[i];
    bool good = !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.' || ch == '_';
    });
    if (!good) return ::testing::AssertionFailure() << "Hosts::create: not a host name: \"" << name << "\"";
    if (std::find(names.begin(), names.begin() + i, name) != names.begin() + i) {
      return ::testing::AssertionFailure() << "Hosts::create: host " << name << " named twice";
    }
  }
  return make(names);
}

::testing::AssertionResult Hosts::make(const std::vector<std::string>& names) {
  if (created_) return ::testing::AssertionFailure() << "Hosts::create called twice";
  size_t n = names.size();
  if (auto m = missing(); !m.empty()) return ::testing::AssertionFailure() << m;
  MachineLock lock;
  if (!lock.why().empty()) return ::testing::AssertionFailure() << lock.why();
  remove_stale();

  static unsigned counter = 0;
  unsigned c = counter++ % 100;
  auto pid = static_cast<unsigned>(::getpid());
  std::string tag = kNetnsPrefix + std::to_string(pid);
  // 10.X.Y.0/24, X in 100..199: distinct for tests running at once unless
  // their pids are 25,600 apart; separate bridges keep them apart anyway.
  unsigned id = pid * 100 + c;
  std::string net = "10." + std::to_string(100 + (id / 256) % 100) + "." + std::to_string(id % 256) + ".";
  bridge_ = tag + "b" + std::to_string(c);
  hosts_file_ = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  for (size_t i = 0; i < n; ++i) {
    Host h;
    h.hostname = names[i];
    h.address = net + std::to_string(i + 1);
    h.netns = tag + "n" + std::to_string(c) + "h" + std::to_string(i);
    h.link = tag + "v" + std::to_string(c) + "h" + std::to_string(i);
    hosts_file_ += h.address + "\t" + h.hostname + "\n";
    hosts_.push_back(h);
  }
  // From here destroy() removes whatever exists under these names, also
  // when a step below fails. Names of ours still there are a crashed
  // process's whose pid we now have: cleared first.
  created_ = true;
  auto fail = [](const std::string& why) { return ::testing::AssertionFailure() << why; };
  for (const auto& h : hosts_) {
    for (const auto& why : {remove_link(h.link), remove_netns(h.netns), remove_etc(h.netns)}) {
      if (!why.empty()) return fail("a leftover of an earlier run: " + why);
    }
  }
  if (auto why = remove_link(bridge_); !why.empty()) return fail("a leftover of an earlier run: " + why);

  // addrgenmode none: no IPv6 link-local addresses, so the links carry only
  // what the test sends to the addresses it assigned.
  for (const auto& cmd : std::vector<std::vector<std::string>>{
           {"link", "add", bridge_, "type", "bridge"},
           {"link", "set", bridge_, "addrgenmode", "none"},
           {"link", "set", bridge_, "up"},
       }) {
    if (auto why = ip(cmd); !why.empty()) return fail(why);
  }
  for (const auto& h : hosts_) {
    const std::string& ns = h.netns;
    for (const auto& cmd : std::vector<std::vector<std::string>>{
             {"netns", "add", ns},
             {"link", "add", h.link, "type", "veth", "peer", "name", "eth0", "netns", ns},
             {"link", "set", h.link, "addrgenmode", "none"},
             {"link", "set", h.link, "master", bridge_},
             {"link", "set", h.link, "up"},
             {"-n", ns, "link", "set", "lo", "up"},
             {"-n", ns, "link", "set", "eth0", "addrgenmode", "none"},
             {"-n", ns, "addr", "add", h.address + "/24", "dev", "eth0"},
             {"-n", ns, "link", "set", "eth0", "up"},
         }) {
      if (auto why = ip(cmd); !why.empty()) return fail(why);
    }
    std::error_code ec;
    fs::path dir = fs::path(kEtcNetns) / ns;
    fs::create_directories(dir, ec);
    if (ec) return fail(dir.string() + ": " + ec.message());
    std::ofstream out(dir / "hosts");
    out << hosts_file_;
    out.close();
    if (!out) return fail((dir / "hosts").string() + ": cannot write");
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Hosts::destroy() {
  if (!created_) return ::testing::AssertionSuccess();
  MachineLock lock;
  if (!lock.why().empty()) return ::testing::AssertionFailure() << lock.why();
  std::vector<std::string> errors;
  auto note = [&](std::string why) {
    if (!why.empty()) errors.push_back(std::move(why));
  };
  // The processes first (a namespace lives on while one is inside), then
  // the links: deleting the root end of a veth deletes both ends at once,
  // where a namespace's own interfaces go only when the kernel frees it.
  for (const auto& h : hosts_) {
    if (netns_exists(h.netns)) note(kill_inside(h.netns));
  }
  for (const auto& h : hosts_) note(remove_link(h.link));
  note(remove_link(bridge_));
  for (const auto& h : hosts_) {
    note(remove_netns(h.netns));
    note(remove_etc(h.netns));
  }
  // Mount points we made, deepest first, each only if still empty (its
  // bind mounts went with the processes' mount namespaces).
  for (auto it = made_paths_.rbegin(); it != made_paths_.rend(); ++it) {
    std::error_code ec;
    if (fs::is_directory(*it, ec) && fs::is_empty(*it, ec)) fs::remove(*it, ec);
    if (ec) note(*it + ": " + ec.message());
  }
  made_paths_.clear();
  for (auto& h : hosts_) h.private_dirs.clear();
  created_ = false;
  if (errors.empty()) return ::testing::AssertionSuccess();
  auto failure = ::testing::AssertionFailure();
  for (const auto& e : errors) failure << e << "; ";
  return failure;
}

namespace {

// `text` as one word of sh.
std::string quoted(const std::string& text) {
  std::string out = "'";
  for (char ch : text) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

}  // namespace

::testing::AssertionResult Hosts::add_private_dir(size_t i, const std::string& path, const std::string& dir) {
  if (i >= hosts_.size()) return ::testing::AssertionFailure() << "add_private_dir: no host " << i;
  if (path.empty() || path[0] != '/' || dir.empty() || dir[0] != '/') {
    return ::testing::AssertionFailure() << "add_private_dir: absolute paths, not " << path << " and " << dir;
  }
  if (system_tool("unshare").empty() || system_tool("mount").empty()) {
    return ::testing::AssertionFailure() << "add_private_dir: needs unshare and mount (util-linux)";
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return ::testing::AssertionFailure() << dir << ": " << ec.message();
  // Creates the mount point and its missing parents, noting each.
  std::vector<fs::path> missing;
  for (fs::path p = path; !p.empty() && p != p.root_path() && !fs::exists(p, ec); p = p.parent_path()) {
    missing.push_back(p);
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (!fs::create_directory(*it, ec) && ec)
      return ::testing::AssertionFailure() << it->string() << ": " << ec.message();
    made_paths_.push_back(it->string());
  }
  if (!fs::is_directory(path, ec)) return ::testing::AssertionFailure() << path << ": not a directory";
  hosts_[i].private_dirs.emplace_back(path, dir);
  return ::testing::AssertionSuccess();
}

std::string Hosts::mount_script(size_t i) const {
  std::string script;
  for (const auto& [path, dir] : hosts_.at(i).private_dirs) {
    script += "mount --bind " + quoted(dir) + " " + quoted(path) + " && ";
  }
  return script + "exec \"$@\"";
}

std::vector<std::string> Hosts::wrap(size_t i, const std::vector<std::string>& argv) const {
  std::vector<std::string> out = {ip_tool(), "netns", "exec", netns(i)};
  if (!hosts_.at(i).private_dirs.empty()) {
    // The hostname is set in the child (with_hostname); the mounts here.
    out.insert(out.end(), {system_tool("unshare"), "--mount", "sh", "-c", mount_script(i), "sh"});
  }
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::vector<std::string> Hosts::enter(size_t i) const {
  // unshare's new mount namespace is private: the binds stay in it.
  return {ip_tool(), "netns", "exec", netns(i), system_tool("unshare"),
          "--mount", "--uts", "sh",   "-c",     "hostname " + quoted(hostname(i)) + " && " + mount_script(i),
          "sh"};
}

namespace {

// In the forked child, before `ip netns exec`: a UTS namespace of its own
// with the host's name. `ip netns exec` execs the command in place (no
// fork), so the command and all it starts keep this hostname.
std::function<std::string()> with_hostname(const std::string& name) {
  return [name] {
    if (::unshare(CLONE_NEWUTS) != 0) return std::string("unshare(CLONE_NEWUTS): ") + std::strerror(errno);
    if (::sethostname(name.data(), name.size()) != 0) return "sethostname " + name + ": " + std::strerror(errno);
    return std::string();
  };
}

}  // namespace

CmdResult Hosts::run(size_t i, const std::vector<std::string>& argv, const Env& env, double timeout) const {
  return Background(wrap(i, argv), env, with_hostname(hostname(i))).finish(timeout);
}

std::unique_ptr<Background> Hosts::spawn(size_t i, const std::vector<std::string>& argv, const Env& env) const {
  return std::make_unique<Background>(wrap(i, argv), env, with_hostname(hostname(i)));
}

::testing::AssertionResult Hosts::set_link(size_t i, bool up) const {
  if (auto why = ip({"link", "set", link(i), up ? "up" : "down"}); !why.empty()) {
    return ::testing::AssertionFailure() << why;
  }
  return ::testing::AssertionSuccess();
}

bool wait_created(const std::string& dir, const std::string& name, double timeout) {
  int in = ::inotify_init1(IN_CLOEXEC);
  if (in < 0) return false;
  bool found = ::inotify_add_watch(in, dir.c_str(), IN_CREATE | IN_MOVED_TO) >= 0;
  double deadline = monotonic_now() + timeout;
  while (found && !fs::exists(dir + "/" + name)) {
    double left = deadline - monotonic_now();
    if (left <= 0) {
      found = false;
      break;
    }
    pollfd p{in, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left * 1000) + 1) > 0) {
      char buf[4096];
      (void)::read(in, buf, sizeof buf);
    }
  }
  ::close(in);
  return found;
}

}  // namespace loom::test
