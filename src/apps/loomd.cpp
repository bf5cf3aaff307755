// loomd: one broker. Started by `loom start` for an instance on one
// machine, or as `loomd --config FILE` on each host of an instance spread
// over hosts (docs/deploy.md), where the file's [bootstrap] table gives
// the hosts, and this broker's rank is found from its hostname.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "base/clock.h"
#include "base/log.h"
#include "bootstrap/bootstrap.h"
#include "broker/broker.h"
#include "cli/config.h"
#include "job_exec/job_exec.h"
#include "job_manager/job_manager.h"
#include "kvs/kvs.h"
#include "kvs/storage.h"
#include "metrics/metrics.h"
#include "sched/sched.h"
#include "shell/launcher.h"

namespace {

// Where a broker started from a bootstrap configuration makes its local
// socket (RUNDIR/local.sock) unless told otherwise.
constexpr const char* kDefaultRundir = "/run/loom";

// The value of `--name VALUE` or `--name=VALUE` in argv (the last one).
std::optional<std::string> find_arg(int argc, char** argv, std::string_view name) {
  std::optional<std::string> found;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == name && i + 1 < argc) {
      found = argv[++i];
    } else if (a.size() > name.size() && a.starts_with(name) && a[name.size()] == '=') {
      found = std::string(a.substr(name.size() + 1));
    }
  }
  return found;
}

// What `--config FILE` adds: the loomd options of the file's settings
// (those `loom start --config` would pass), and, when it has [bootstrap],
// this host's rank, the size, the tree and the TLS overlay.
struct FromFile {
  std::vector<std::string> options;
  std::optional<loom::BrokerConfig::Hosts> hosts;
};

loom::Result<FromFile> read_config(const std::string& path, std::optional<std::string> rank_arg) {
  auto settings = loom::cli::read_config_file(path);
  if (!settings.ok()) return settings.error();
  std::vector<loom::cli::Setting> instance;
  bool bootstrap = false;
  for (const auto& s : *settings) {
    if (s.key.starts_with("bootstrap.")) {
      bootstrap = true;
    } else {
      instance.push_back(s);
    }
  }
  auto merged = loom::cli::merge_config(instance);
  if (!merged.ok()) return merged.error();
  FromFile out;
  out.options = loom::cli::loomd_options(*merged);
  if (!bootstrap) {
    if (!merged->host_resources.empty()) {
      return loom::Error{EINVAL, path +
                                     ": resource.config is for instances over hosts ([bootstrap]); on one machine "
                                     "use resource.cores-per-rank and resource.gpus-per-rank"};
    }
    return out;
  }
  auto boot = loom::parse_bootstrap(*settings, path);
  if (!boot.ok()) return boot.error();
  for (const auto& hr : merged->host_resources) {
    for (const auto& name : hr.names) {
      if (std::find(boot->hosts.begin(), boot->hosts.end(), name) == boot->hosts.end()) {
        return loom::Error{EINVAL, path + ": resource.config names " + name + ", which is not in bootstrap.hosts"};
      }
    }
  }
  std::optional<uint32_t> rank_override;
  if (rank_arg) {
    char* end = nullptr;
    unsigned long r = std::strtoul(rank_arg->c_str(), &end, 10);
    if (rank_arg->empty() || *end != '\0') return loom::Error{EINVAL, "--rank " + *rank_arg + " is not a number"};
    rank_override = static_cast<uint32_t>(r);
  }
  auto host = loom::local_hostname();
  if (!host.ok()) return host.error();
  auto place = boot->place(*host, rank_override);
  if (!place.ok()) return place.error();
  for (std::string o : {"--rank=" + std::to_string(place->rank), "--size=" + std::to_string(boot->size()),
                        "--fanout=" + std::to_string(boot->fanout)}) {
    out.options.push_back(std::move(o));
  }
  // This host's own, over the instance-wide ones above.
  auto mine = loom::cli::resources_of(*merged, place->host);
  if (mine.cores) out.options.push_back("--cores-per-rank=" + std::to_string(*mine.cores));
  if (mine.gpus) out.options.push_back("--gpus-per-rank=" + std::to_string(*mine.gpus));
  out.hosts = loom::BrokerConfig::Hosts{boot->hosts,
                                        boot->port,
                                        boot->bind_address(place->rank),
                                        boot->ca,
                                        boot->cert_path(place->rank),
                                        boot->key_path(place->rank),
                                        {}};
  for (uint32_t r = 0; r < boot->size(); ++r) out.hosts->addresses.push_back(boot->connect_address(r));
  return out;
}

// Holds RUNDIR/loomd.lock (flock) for as long as this process lives, with
// this process's pid in it; EBUSY naming the holder if another has it.
loom::Status lock_rundir(const std::string& rundir) {
  std::string path = rundir + "/loomd.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return loom::Error{errno, "cannot open " + path + ": " + std::strerror(errno)};
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {};
    ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
    ::close(fd);
    std::string holder = n > 0 ? std::string(pid, static_cast<size_t>(n)) : std::string("?");
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    return loom::Error{EBUSY, "another loomd (pid " + holder + ") serves the run directory " + rundir +
                                  "; stop it first, or give this one another --rundir"};
  }
  std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) < 0) {
    // The lock is what matters; the pid is for the message above.
  }
  return {};  // fd stays open (and locked) until exit
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  // The file's options go first, so that the command line wins over them.
  FromFile from_file;
  std::string config_path;
  if (auto path = find_arg(argc, argv, "--config")) {
    config_path = *path;
    auto f = read_config(*path, find_arg(argc, argv, "--rank"));
    if (!f.ok()) {
      std::cerr << "loomd: " << f.error().text << "\n";
      return 1;
    }
    from_file = std::move(*f);
  }
  std::vector<char*> args{argv[0]};
  for (auto& o : from_file.options) args.push_back(o.data());
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);

  CLI::App app{"loomd: the loom broker (started by `loom start`, or with --config on each host)"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--config", config_path,
                 "TOML configuration file; with a [bootstrap] table, rank, size and the overlay between hosts come "
                 "from it (docs/deploy.md)");
  loom::BrokerConfig cfg;
  std::string log_level = "warn";
  std::string rundir;
  std::string state_dir;
  app.add_option("--rank", cfg.rank, "This broker's rank")->required();
  app.add_option("--size", cfg.size, "Number of ranks in the instance")->required()->check(CLI::PositiveNumber);
  app.add_option("--fanout", cfg.fanout, "Children per broker")->check(CLI::PositiveNumber);
  app.add_option("--local-fd", cfg.local_fd, "Inherited listening Unix socket for clients");
  app.add_option("--local-path", cfg.local_path, "Unix socket path to listen on for clients");
  app.add_option("--overlay-fd", cfg.overlay_fd, "Inherited listening Unix socket for child brokers");
  app.add_option("--overlay-path", cfg.overlay_path, "Unix socket path to listen on for child brokers");
  app.add_option("--parent-path", cfg.parent_path, "Unix socket of the parent broker");
  app.add_option("--frame-timeout", cfg.frame_timeout, "Seconds a peer may stall in the middle of a message")
      ->check(CLI::PositiveNumber);
  app.add_option("--heartbeat-interval", cfg.heartbeat_interval, "Seconds between heartbeats")
      ->check(CLI::PositiveNumber);
  app.add_option("--heartbeat-timeout", cfg.heartbeat_timeout, "Seconds of silence before a link is lost")
      ->check(CLI::PositiveNumber);
  app.add_option("--rundir", rundir,
                 std::string("Run directory of the instance (with [bootstrap]: default ") + kDefaultRundir +
                     ", where the local socket is local.sock)");
  std::string kvs_sync = "normal";
  app.add_option("--state-dir", state_dir, "Durable state directory (default: a temporary one, removed at exit)");
  app.add_option("--kvs-synchronous", kvs_sync, "off, normal (survives a process crash) or full (survives power loss)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  loom::SchedConfig sched_cfg;
  sched_cfg.size = 0;  // set from --size below
  uint32_t cores = 0, gpus = 0;
  auto* cores_opt = app.add_option("--cores-per-rank", cores,
                                   "Cores per rank for the scheduler (default: hwloc); with [bootstrap], this host's");
  auto* gpus_opt = app.add_option("--gpus-per-rank", gpus,
                                  "GPUs per rank for the scheduler (default: hwloc); with [bootstrap], this host's");
  app.add_option("--sched-policy", sched_cfg.policy, "fcfs, easy or easy-sjbf")
      ->check(CLI::IsMember({"fcfs", "easy", "easy-sjbf"}));
  app.add_option("--sched-backfill-depth", sched_cfg.backfill_depth, "EASY: candidates tried per pass (0: all)")
      ->check(CLI::NonNegativeNumber);
  loom::JobManagerConfig jm_cfg;
  app.add_option("--inactive-num-limit", jm_cfg.inactive_num_limit, "Inactive jobs kept (0: all)");
  app.add_option("--jobspec-size-limit", jm_cfg.jobspec_size_limit, "Largest jobspec accepted at submit (bytes)")
      ->check(CLI::Range(size_t{1024}, size_t{16} << 20));
  app.add_option("--max-active-jobs-per-user", jm_cfg.max_active_per_user,
                 "Jobs a user other than the owner may have active at once (0: no limit)");
  app.add_option("--exec-allow-guest-test", jm_cfg.allow_guest_test,
                 "Users other than the owner may submit jobs in test execution mode (true/false)");
  loom::ShellLauncherConfig shell_cfg;
  loom::JobExecConfig exec_cfg;
  app.add_option("--exec-epilog", shell_cfg.epilog, "Command run (sh -c) on a rank after a job's shell there exits")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--exec-epilog-timeout", shell_cfg.epilog_timeout, "Seconds an epilog may take")
      ->check(CLI::PositiveNumber)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--exec-prolog", shell_cfg.prolog, "Command run (sh -c) on a rank before a job's shell there starts")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--exec-prolog-timeout", shell_cfg.prolog_timeout, "Seconds a prolog may take")
      ->check(CLI::PositiveNumber)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--exec-shell-exit-timeout", exec_cfg.shell_exit_timeout,
                 "Seconds from a job shell's failed exit to killing the job's other ranks (0: never)")
      ->check(CLI::NonNegativeNumber)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--exec-kill-timeout", exec_cfg.kill_timeout, "Seconds from SIGTERM to SIGKILL")
      ->check(CLI::PositiveNumber)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--exec-reattach-timeout", exec_cfg.reattach_timeout,
                 "Seconds a job shell whose broker died waits for a restarted one (0: it kills its tasks)")
      ->check(CLI::NonNegativeNumber)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  loom::MetricsConfig metrics_cfg;
  app.add_option("--metrics-listen", metrics_cfg.listen,
                 "HOST:PORT of the OpenMetrics endpoint, served by rank 0 alone (docs/metrics.md)");
  try {
    app.parse(static_cast<int>(args.size()), args.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  cfg.hosts = from_file.hosts;
  if (cfg.hosts) {
    // Over hosts, each broker reports what its own host has (broker.online),
    // and that is the scheduler's inventory of its rank.
    if (!*cores_opt || !*gpus_opt) {
      auto found = loom::discover_local_resources();
      if (!*cores_opt) cores = found.ncores;
      if (!*gpus_opt) gpus = found.ngpus;
    }
    cfg.hosts->cores = cores;
    cfg.hosts->gpus = gpus;
  }
  if (cfg.hosts && cfg.local_path.empty() && cfg.local_fd < 0) {
    if (rundir.empty()) rundir = kDefaultRundir;
    std::error_code ec;
    std::filesystem::create_directories(rundir, ec);
    if (ec) {
      std::cerr << "loomd: cannot create the run directory " << rundir << ": " << ec.message() << "\n";
      return 1;
    }
    cfg.local_path = rundir + "/local.sock";
    // One broker per run directory: a second would take the first's socket
    // away from its clients and job shells.
    if (auto held = lock_rundir(rundir); !held.ok()) {
      std::cerr << "loomd: " << held.error().text << "\n";
      return 1;
    }
  }
  exec_cfg.prolog = !shell_cfg.prolog.empty();
  if (cfg.rank >= cfg.size) {
    std::cerr << "loomd: --rank must be below --size\n";
    return 2;
  }

  loom::init_logging("loomd[" + std::to_string(cfg.rank) + "]", log_level);
  asio::io_context io;
  auto clock = loom::make_real_clock(io);
  loom::Broker broker(io, *clock, cfg);
  int exit_code = 0;
  broker.on_finished([&](int code) {
    exit_code = code;
    io.stop();
  });
  // Rank 0 holds the KVS. Open its store before serving anything, so a
  // bad state directory stops the broker with one clear line.
  std::unique_ptr<loom::Storage> storage;
  std::string temp_state;
  if (cfg.rank == 0) {
    auto sync = loom::parse_synchronous(kvs_sync);
    if (!sync.ok()) {
      std::cerr << "loomd: " << sync.error().text << "\n";
      return 1;
    }
    if (state_dir.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/loom-state-XXXXXX";
      if (!::mkdtemp(tmpl.data())) {
        std::cerr << "loomd: cannot create a temporary state directory\n";
        return 1;
      }
      state_dir = temp_state = tmpl;
    }
    auto st = loom::open_sqlite_storage(state_dir, *sync);
    if (!st.ok()) {
      std::cerr << "loomd: " << st.error().text << "\n";
      if (!temp_state.empty()) std::filesystem::remove_all(temp_state);
      return 1;
    }
    storage = std::move(*st);
  }
  struct TempDir {
    std::string path;
    ~TempDir() {
      std::error_code ec;
      if (!path.empty()) std::filesystem::remove_all(path, ec);
    }
  } temp_dir{temp_state};

  if (auto st = broker.start(); !st) {
    std::cerr << "loomd: " << st.error().text << "\n";
    return 1;
  }
  std::unique_ptr<loom::Kvs> kvs;
  if (storage) {
    auto k = loom::Kvs::create(io, broker.add_module({"kvs"}), std::move(storage), static_cast<uint32_t>(::getuid()));
    if (!k.ok()) {
      std::cerr << "loomd: " << k.error().text << "\n";
      return 1;
    }
    kvs = std::move(*k);
  }
  // Every rank launches the job shells of its part of a job.
  shell_cfg.rank = cfg.rank;
  if (const char* p = std::getenv("LOOM_SHELL_PATH"); p && *p) {
    shell_cfg.shell_path = p;
  } else {
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    shell_cfg.shell_path = (ec ? std::filesystem::path(argv[0]) : self).parent_path() / "loom-shell";
  }
  std::string socket =
      !cfg.local_path.empty() ? cfg.local_path : rundir + "/rank-" + std::to_string(cfg.rank) + ".sock";
  shell_cfg.local_uri = "local://" + socket;
  shell_cfg.cut_off_timeout = exec_cfg.reattach_timeout;
  auto shell = loom::ShellLauncher::create(io, broker.add_module({"shell"}), shell_cfg);
  broker.on_parent_link([&shell](bool up) { shell->parent_link(up); });
  // The job manager and the scheduler live on rank 0 beside the KVS and
  // reach it, and each other, only through messages.
  std::unique_ptr<loom::JobManager> job_manager;
  std::unique_ptr<loom::Sched> sched;
  std::unique_ptr<loom::JobExec> job_exec;
  if (cfg.rank == 0) {
    jm_cfg.owner = static_cast<uint32_t>(::getuid());
    job_manager = loom::JobManager::create(io, broker.add_module({"job-manager", "job-info"}), jm_cfg);
    sched_cfg.size = cfg.size;
    if (*cores_opt || cfg.hosts) sched_cfg.cores_per_rank = cores;
    if (*gpus_opt || cfg.hosts) sched_cfg.gpus_per_rank = gpus;
    if (cfg.hosts) sched_cfg.hostnames = cfg.hosts->names;
    auto s = loom::Sched::create(io, broker.add_module({"sched"}), sched_cfg);
    if (!s.ok()) {
      std::cerr << "loomd: " << s.error().text << "\n";
      return 1;
    }
    sched = std::move(*s);
    job_exec = loom::JobExec::create(broker.add_module({"job-exec"}), exec_cfg);
    // An orderly stop ends every running job and stores its end first;
    // pending jobs stay pending.
    broker.add_shutdown_hook([&](const std::function<void()>& done) {
      job_manager->stop_scheduling();
      done();
    });
    broker.add_shutdown_hook([&](std::function<void()> done) { job_exec->stop(std::move(done)); });
    broker.add_shutdown_hook([&](std::function<void()> done) { job_manager->quiesce(std::move(done)); });
  }
  // Rank 0 alone serves metrics: it gathers them from the services that
  // live there and from broker.status, which knows every rank.
  std::unique_ptr<loom::MetricsServer> metrics;
  if (cfg.rank == 0 && !metrics_cfg.listen.empty()) {
    auto m = loom::MetricsServer::create(io, broker.add_module({"metrics"}), metrics_cfg);
    if (!m.ok()) {
      std::cerr << "loomd: metrics.listen " << m.error().text << "\n";
      return 1;
    }
    metrics = std::move(*m);
  }
  asio::signal_set signals(io, SIGINT, SIGTERM);
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](const std::error_code& ec, int sig) {
      if (ec) return;
      std::string why = std::string("signal ") + strsignal(sig);
      if (cfg.hosts && cfg.rank != 0) {
        // One host's broker stops (systemctl stop loomd there), not the
        // instance: its jobs end; rank 0's stops the instance.
        shell->kill_all("this host's broker is stopping (" + why + ")", [&broker, why] { broker.leave(why); });
        return;
      }
      broker.stop_instance(why);
      wait_signal();
    });
  };
  wait_signal();
  io.run();
  return exit_code;
}
