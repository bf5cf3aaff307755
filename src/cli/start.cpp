// loom start [--test-size=N] [--fanout=F] [--rundir=D] [-- CMD...]
//
// Binds every broker's sockets itself (a Unix socket per rank for clients,
// and one per rank that has children for the brokers below it, in the run
// directory's private overlay/ folder), then starts one loomd per rank with
// those sockets inherited. Because the sockets exist
// before any broker runs, a child's connect never races its parent's
// listen. Waits until rank 0 reports every rank online, then runs CMD with
// LOOM_URI set (stopping the instance when CMD exits, and exiting with its
// status), or serves until SIGINT/SIGTERM/SIGHUP.
//
// The configuration (the --config file, --setconf, the plain options) is
// merged and checked once, before any broker starts (cli/config.h), and
// every broker gets the same options from it. The brokers run in a process
// group of their own, so that the terminal's signals reach only us; we
// stop the instance in order by asking rank 0 (SIGTERM), which ends the
// running jobs before any broker stops.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>

#include "broker/topology.h"
#include "cli/common.h"
#include "cli/config.h"
#include "metrics/metrics.h"

namespace loom::cli {

namespace {
namespace fs = std::filesystem;

struct StartOpts {
  uint32_t size = 1;
  std::string rundir;
  std::string state_dir;
  std::string log_level = "warn";
  double wait_timeout = 60.0;
  std::string config;
  std::vector<std::string> setconf;
  std::vector<std::string> command;
  // The plain options that are configuration keys too (the last word).
  std::map<std::string, std::string> plain;  // option → value
  InstanceConfig cfg;                        // merged and checked
};

// The plain options that set a configuration key, in the order applied.
const std::pair<const char*, const char*> kPlainKeys[] = {
    {"--fanout", "broker.fanout"},
    {"--heartbeat-interval", "broker.heartbeat-interval"},
    {"--heartbeat-timeout", "broker.heartbeat-timeout"},
    {"--cores-per-rank", "resource.cores-per-rank"},
    {"--gpus-per-rank", "resource.gpus-per-rank"},
};

// The file, then each --setconf in order, then the plain options: merged
// once, checked whole before any broker starts.
Result<InstanceConfig> merge_start_config(const StartOpts& o) {
  std::vector<Setting> settings;
  if (!o.config.empty()) {
    auto file = read_config_file(o.config);
    if (!file.ok()) return file.error();
    settings = std::move(*file);
  }
  for (const auto& kv : o.setconf) {
    auto s = parse_setconf(kv);
    if (!s.ok()) return s.error();
    settings.push_back(std::move(*s));
  }
  for (const auto& [option, key] : kPlainKeys) {
    if (auto it = o.plain.find(option); it != o.plain.end())
      settings.push_back(Setting{key, it->second, false, option});
  }
  auto cfg = merge_config(settings);
  if (cfg.ok() && !cfg->host_resources.empty()) {
    return Error{EINVAL,
                 "resource.config is for instances over hosts ([bootstrap], loomd --config); `loom start` "
                 "gives every rank the same: use resource.cores-per-rank and resource.gpus-per-rank"};
  }
  // Rank 0 would find it too, but after the other brokers started: one
  // line now instead (docs/metrics.md).
  if (cfg.ok() && !cfg->metrics_listen.empty()) {
    if (auto st = check_listen_address(cfg->metrics_listen); !st) {
      return Error{st.error().code, "metrics.listen " + st.error().text};
    }
  }
  return cfg;
}

Result<int> listen_unix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return Error{ENAMETOOLONG, "socket path too long: " + path};
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{errno, std::string("socket: ") + std::strerror(errno)};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, SOMAXCONN) != 0) {
    int e = errno;
    ::close(fd);
    return Error{e, "cannot listen on " + path + ": " + std::strerror(e)};
  }
  return fd;
}

std::string self_dir() {
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

std::string loomd_path() {
  if (const char* p = std::getenv("LOOM_BROKER_PATH"); p && *p) return p;
  return self_dir() + "/loomd";
}

// How a child of ours is started.
struct SpawnOpts {
  std::vector<int> keep_fds;               // inherited across exec
  std::map<std::string, std::string> env;  // set in its environment
  bool die_with_parent = false;            // SIGTERM when we die
  // Its process group: -1 ours, 0 a new one it leads, else that one.
  pid_t group = -1;
};

// Starts a child; -1 and errno if fork failed.
pid_t spawn(const std::vector<std::string>& argv, const SpawnOpts& so, const sigset_t& saved_mask) {
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid != 0) {
    // Also here, so that it holds before we signal the group.
    if (pid > 0 && so.group >= 0) ::setpgid(pid, so.group ? so.group : pid);
    return pid;
  }
  if (so.group >= 0 && ::setpgid(0, so.group) != 0) ::setpgid(0, 0);
  if (so.die_with_parent) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
  }
  if (so.group >= 0) {
    // Out of the terminal's foreground group, a write to the terminal
    // (its log) must not stop it when the terminal has `tostop` set.
    ::signal(SIGTTOU, SIG_IGN);
    ::signal(SIGTTIN, SIG_IGN);
  }
  ::sigprocmask(SIG_SETMASK, &saved_mask, nullptr);
  for (int fd : so.keep_fds) ::fcntl(fd, F_SETFD, 0);  // inherit across exec
  for (auto& [k, v] : so.env) ::setenv(k.c_str(), v.c_str(), 1);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execvp(args[0], args.data());
  std::fprintf(stderr, "loom start: cannot run %s: %s\n", args[0], std::strerror(errno));
  ::_exit(127);
}

int status_to_exit(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// Waits for the next signal in `set`, up to `timeout` seconds (<0: forever).
int wait_signal(const sigset_t& set, double timeout) {
  if (timeout < 0) return ::sigwaitinfo(&set, nullptr);
  timespec ts{static_cast<time_t>(timeout), static_cast<long>((timeout - static_cast<time_t>(timeout)) * 1e9)};
  return ::sigtimedwait(&set, nullptr, &ts);
}

class Launcher {
 public:
  explicit Launcher(const StartOpts& o) : o_(o) {}

  int run() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    ::sigprocmask(SIG_BLOCK, &set, &saved_mask_);
    set_ = set;

    if (auto st = make_rundir(); !st) return fail("start", st.error());
    if (auto st = launch_brokers(); !st) {
      stop_brokers();
      cleanup();
      return fail("start", st.error());
    }
    std::string uri = "local://" + rundir_ + "/rank-0.sock";
    if (auto st = wait_ready(uri); !st) {
      stop_brokers();
      cleanup();
      return fail("start", st.error());
    }
    record_latest(uri);
    int rc = o_.command.empty() ? serve(uri) : run_command(uri);
    int brc = stop_brokers();
    cleanup();
    if (rc == 0 && brc != 0) rc = brc;
    return rc;
  }

 private:
  Status make_rundir() {
    if (!o_.rundir.empty()) {
      rundir_ = o_.rundir;
      std::error_code ec;
      fs::create_directories(rundir_, ec);
      if (ec) return Error{ec.value(), "cannot create " + rundir_ + ": " + ec.message()};
      return {};
    }
    std::string tmp = std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : "/tmp";
    if (!o_.state_dir.empty()) {
      // With a state directory, the sockets go in a directory named after
      // it: job shells that outlived a crash find the restarted instance
      // there (docs/protocols/exec.md). Ours alone (no one else may write in it), or a
      // temporary one after all.
      std::error_code ec;
      std::string state = fs::weakly_canonical(fs::absolute(o_.state_dir, ec), ec).string();
      uint64_t h = 1469598103934665603ull;  // FNV-1a
      for (unsigned char ch : state) h = (h ^ ch) * 1099511628211ull;
      char name[32];
      std::snprintf(name, sizeof name, "/loom-run-%016llx", static_cast<unsigned long long>(h));
      std::string run = tmp + name;
      struct stat st {};
      bool made = ::mkdir(run.c_str(), 0700) == 0;
      if (made || (errno == EEXIST && ::lstat(run.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
                   st.st_uid == ::getuid() && (st.st_mode & 022) == 0)) {
        // Not while another `loom start` uses it (it would lose its sockets,
        // or remove ours as it exits): a lock for as long as we run.
        int lock = ::open((run + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lock < 0 || ::flock(lock, LOCK_EX | LOCK_NB) != 0) {
          if (lock >= 0) ::close(lock);
          return Error{EBUSY, "another loom start uses state directory " + state + " (its sockets: " + run + ")"};
        }
        rundir_lock_ = lock;
        rundir_ = run;
        remove_rundir_ = true;
        return {};
      }
      std::fprintf(stderr,
                   "loom start: %s is not a directory of ours alone; using a temporary one (job shells will not "
                   "find this instance again after a crash)\n",
                   run.c_str());
    }
    std::string tmpl = tmp + "/loom-XXXXXX";
    if (!::mkdtemp(tmpl.data())) return Error{errno, std::string("mkdtemp: ") + std::strerror(errno)};
    rundir_ = tmpl;
    remove_rundir_ = true;
    return {};
  }

  // The brokers' sockets. Clients connect to rank-R.sock; where the
  // brokers run as root they serve every user (each job runs as its
  // submitter, docs/security.md), so those sockets are open to all and the
  // broker decides what each uid may do; otherwise they are the owner's
  // alone. Brokers join each other through overlay/rank-R.sock, in a
  // directory only the owner can enter, and each end checks the other's
  // uid as well (docs/security.md).
  Status launch_brokers() {
    Topology topo{o_.size, o_.cfg.fanout};
    bool shared = ::geteuid() == 0;
    std::string overlay_dir = rundir_ + "/overlay";
    if (::mkdir(overlay_dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return Error{errno, "cannot create " + overlay_dir + ": " + std::strerror(errno)};
    }
    struct stat ost {};
    if (::lstat(overlay_dir.c_str(), &ost) != 0 || !S_ISDIR(ost.st_mode) || ost.st_uid != ::geteuid() ||
        ::chmod(overlay_dir.c_str(), 0700) != 0) {
      return Error{EPERM, overlay_dir + " is not a directory of ours alone"};
    }
    // Only a run directory of our making: --rundir may name anything.
    if (remove_rundir_ && ::chmod(rundir_.c_str(), shared ? 0755 : 0700) != 0) {
      return Error{errno, "cannot set the mode of " + rundir_ + ": " + std::strerror(errno)};
    }
    std::vector<int> local_fd(o_.size, -1), overlay_fd(o_.size, -1);
    auto overlay_path = [&](uint32_t r) { return overlay_dir + "/rank-" + std::to_string(r) + ".sock"; };
    for (uint32_t r = 0; r < o_.size; ++r) {
      std::string path = rundir_ + "/rank-" + std::to_string(r) + ".sock";
      auto fd = listen_unix(path);
      if (!fd.ok()) return fd.error();
      local_fd[r] = *fd;
      if (::chmod(path.c_str(), shared ? 0666 : 0600) != 0) {
        return Error{errno, "cannot set the mode of " + path + ": " + std::strerror(errno)};
      }
      if (!topo.children(r).empty()) {
        auto t = listen_unix(overlay_path(r));
        if (!t.ok()) return t.error();
        overlay_fd[r] = *t;
      }
    }
    std::string loomd = loomd_path();
    for (uint32_t r = 0; r < o_.size; ++r) {
      std::vector<std::string> argv = {loomd,
                                       "--rank=" + std::to_string(r),
                                       "--size=" + std::to_string(o_.size),
                                       "--local-fd=" + std::to_string(local_fd[r]),
                                       "--rundir=" + rundir_,
                                       "--log-level=" + o_.log_level};
      auto config = loomd_options(o_.cfg);
      argv.insert(argv.end(), config.begin(), config.end());
      std::vector<int> keep = {local_fd[r]};
      if (overlay_fd[r] >= 0) {
        argv.push_back("--overlay-fd=" + std::to_string(overlay_fd[r]));
        keep.push_back(overlay_fd[r]);
      }
      if (auto p = topo.parent(r)) argv.push_back("--parent-path=" + overlay_path(*p));
      if (!o_.state_dir.empty() && r == 0) argv.push_back("--state-dir=" + o_.state_dir);
      // The brokers share a process group of their own (rank 0's), apart
      // from ours: an interrupt for the terminal's foreground group (Ctrl-C),
      // or `kill %1`, reaches us alone, and we stop the instance in order
      // (docs/configuration.md, "Stopping an instance"). Only rank 0 gets
      // SIGTERM if we die: it stops the others in order, and a broker
      // whose parent is gone stops anyway, while a SIGTERM to every
      // broker at once would stop each without the others.
      SpawnOpts so{keep, {}, r == 0, r == 0 ? 0 : broker_group_};
      pid_t pid = spawn(argv, so, saved_mask_);
      if (pid < 0) return Error{errno, std::string("fork: ") + std::strerror(errno)};
      if (r == 0) broker_group_ = pid;
      brokers_[pid] = r;
    }
    for (uint32_t r = 0; r < o_.size; ++r) {
      ::close(local_fd[r]);
      if (overlay_fd[r] >= 0) ::close(overlay_fd[r]);
    }
    return {};
  }

  Status wait_ready(const std::string& uri) {
    asio::io_context io;
    auto clock = make_real_clock(io);
    auto c = Client::connect(io, *clock, uri);
    if (!c.ok()) return c.error();
    auto r = (*c)->call("broker.wait-ready", Json::object(), {0, false, o_.wait_timeout});
    if (!r.ok()) return Error{r.error().code, "the instance did not come up: " + r.error().text};
    return {};
  }

  void record_latest(const std::string& uri) {
    std::string file = latest_uri_file();
    std::error_code ec;
    fs::create_directories(fs::path(file).parent_path(), ec);
    ::chmod(fs::path(file).parent_path().c_str(), 0700);
    std::string tmp = file + "." + std::to_string(::getpid());
    {
      std::ofstream out(tmp);
      out << uri << "\n";
    }
    fs::rename(tmp, file, ec);
  }

  // Reaps exited children; returns true if rank 0 is gone.
  bool reap(pid_t cmd_pid, int* cmd_status) {
    bool rank0_gone = false;
    while (true) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      if (pid == cmd_pid) {
        *cmd_status = status;
        continue;
      }
      auto it = brokers_.find(pid);
      if (it == brokers_.end()) continue;
      if (status_to_exit(status) != 0) {
        std::cerr << "loom start: broker rank " << it->second << " exited with status " << status_to_exit(status)
                  << "\n";
        broker_failed_ = true;
      }
      if (it->second == 0) rank0_gone = true;
      brokers_.erase(it);
    }
    return rank0_gone;
  }

  int serve(const std::string& uri) {
    std::cout << uri << std::endl;  // one line, then serve: scripts read it
    while (true) {
      int sig = wait_signal(set_, -1);
      if (sig == SIGCHLD) {
        int ignored = 0;
        if (reap(-1, &ignored)) {
          std::cerr << "loom start: rank 0 exited; stopping the instance\n";
          return 1;
        }
        continue;
      }
      if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) return 0;
    }
  }

  int run_command(const std::string& uri) {
    pid_t cmd = spawn(o_.command, SpawnOpts{{}, {{"LOOM_URI", uri}}, false, -1}, saved_mask_);
    if (cmd < 0) return fail("start", std::string("fork: ") + std::strerror(errno));
    int status = -1;
    while (status < 0) {
      int sig = wait_signal(set_, -1);
      if (sig == SIGCHLD) {
        reap(cmd, &status);
      } else if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
        ::kill(cmd, sig);  // let the command decide; we stop when it exits
      }
    }
    return status_to_exit(status);
  }

  // Stops rank 0 (which stops its subtree first), then waits for every
  // broker; stragglers get SIGTERM, then SIGKILL. Never hangs on a rank
  // that is gone.
  int stop_brokers() {
    for (auto& [pid, rank] : brokers_) {
      if (rank == 0) ::kill(pid, SIGTERM);
    }
    double grace = o_.cfg.heartbeat_timeout + 5.0;
    auto deadline = [](double secs) {
      timespec now{};
      ::clock_gettime(CLOCK_MONOTONIC, &now);
      return now.tv_sec + now.tv_nsec / 1e9 + secs;
    };
    auto now = [] {
      timespec t{};
      ::clock_gettime(CLOCK_MONOTONIC, &t);
      return t.tv_sec + t.tv_nsec / 1e9;
    };
    for (int round = 0; round < 3 && !brokers_.empty(); ++round) {
      if (round == 1) {
        for (auto& [pid, rank] : brokers_) ::kill(pid, SIGTERM);
      } else if (round == 2) {
        for (auto& [pid, rank] : brokers_) {
          std::cerr << "loom start: rank " << rank << " did not stop; killing it\n";
          ::kill(pid, SIGKILL);
        }
      }
      double until = deadline(round == 0 ? grace : 5.0);
      int ignored = 0;
      reap(-1, &ignored);
      while (!brokers_.empty() && now() < until) {
        wait_signal(set_, until - now());
        reap(-1, &ignored);
      }
    }
    return broker_failed_ ? 1 : 0;
  }

  void cleanup() {
    std::error_code ec;
    for (uint32_t r = 0; r < o_.size; ++r) fs::remove(rundir_ + "/rank-" + std::to_string(r) + ".sock", ec);
    if (remove_rundir_) fs::remove_all(rundir_, ec);
  }

  const StartOpts& o_;
  std::string rundir_;
  bool remove_rundir_ = false;
  int rundir_lock_ = -1;  // held while we run, on a run directory named after the state directory
  std::map<pid_t, uint32_t> brokers_;
  pid_t broker_group_ = 0;  // rank 0's pid, the brokers' process group
  bool broker_failed_ = false;
  sigset_t set_{};
  sigset_t saved_mask_{};
};

}  // namespace

void add_start_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<StartOpts>();
  auto* sub = app.add_subcommand("start", "Start an instance of one or more brokers on this machine");
  sub->add_option("--test-size", o->size, "Number of brokers (ranks) to start (default 1)")
      ->check(CLI::Range(1u, 4096u));
  // These five are configuration keys too, checked with them (and taking
  // the same values: durations as `loom submit -t` writes them).
  auto plain = [&](const char* name, const char* help) {
    bool count = std::string_view(name).ends_with("-per-rank") || std::string_view(name) == "--fanout";
    sub->add_option_function<std::string>(
           name, [o, name](const std::string& v) { o->plain[name] = v; }, help)
        ->type_name(count ? "UINT" : "DURATION")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  };
  plain("--fanout", "Children per broker in the overlay tree (default 2; broker.fanout)");
  sub->add_option(
      "--rundir", o->rundir,
      "Directory for the brokers' sockets (default: one named after --state-dir, else a new temporary one)");
  sub->add_option("--state-dir", o->state_dir, "Directory for durable state (default: none, nothing kept)");
  sub->add_option("--log-level", o->log_level, "Broker log level: trace, debug, info, warn, error (default warn)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  plain("--heartbeat-interval", "Time between overlay heartbeats (default 1s; broker.heartbeat-interval)");
  plain("--heartbeat-timeout", "Silence after which a broker is declared lost (default 10s; broker.heartbeat-timeout)");
  sub->add_option("--wait-timeout", o->wait_timeout, "Seconds to wait for every rank to come up (default 60)")
      ->check(CLI::PositiveNumber);
  plain("--cores-per-rank",
        "Cores the scheduler sees on each rank (default: what hwloc finds; resource.cores-per-rank)");
  plain("--gpus-per-rank", "GPUs the scheduler sees on each rank (default: found by hwloc; resource.gpus-per-rank)");
  sub->add_option("--config", o->config, "TOML configuration file (see docs/configuration.md)");
  sub->add_option("--setconf", o->setconf, "Set one configuration key, KEY=VALUE (e.g. kvs.synchronous=full)")
      ->allow_extra_args(false);
  sub->add_option("command", o->command, "Command to run inside the instance (after --)");
  sub->footer(
      "With a command: run it with LOOM_URI set, stop the instance when it exits, exit with its status.\n"
      "Without: print the instance's URI and serve until SIGINT or SIGTERM.\n"
      "Example: loom start --test-size=4 -- loom rpc --rank 3 broker.info");
  sub->callback([o, &run] {
    run = [o] {
      auto cfg = merge_start_config(*o);
      if (!cfg.ok()) return fail("start", cfg.error());
      o->cfg = std::move(*cfg);
      return Launcher(*o).run();
    };
  });
}

}  // namespace loom::cli
