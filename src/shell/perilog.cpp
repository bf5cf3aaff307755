// Prologs and epilogs of a rank (perilog.h).
#include "shell/perilog.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <set>
#include <string_view>

#include "base/fluid.h"
#include "msg/payload.h"
#include "shell/spawn.h"

namespace loom {

namespace {
// How long end_orphans() waits for the leftovers it killed to die, tried
// every 10 ms.
constexpr double kGoneRetry = 0.01;
constexpr int kGoneTries = 500;

// The process group of `pid`, from /proc (field 5 of its stat), or -1.
pid_t process_group(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  char state = 0;
  long ppid = 0, pgrp = -1;
  if (std::sscanf(stat.c_str() + close + 1, " %c %ld %ld", &state, &ppid, &pgrp) != 3) return -1;
  return static_cast<pid_t>(pgrp);
}

// The value of `key` in the NUL-separated environment `env`, if it is set.
std::optional<std::string_view> env_value(std::string_view env, std::string_view key) {
  for (size_t start = 0; start < env.size();) {
    size_t end = env.find('\0', start);
    if (end == std::string_view::npos) end = env.size();
    std::string_view entry = env.substr(start, end - start);
    if (entry.size() > key.size() && entry.starts_with(key) && entry[key.size()] == '=') {
      return entry.substr(key.size() + 1);
    }
    start = end + 1;
  }
  return std::nullopt;
}
}  // namespace

const char* perilog_name(PerilogKind kind) { return kind == PerilogKind::kProlog ? "prolog" : "epilog"; }

struct Perilogs::Running {
  pid_t pid = -1;
  std::unique_ptr<ChildWatch> watch;
  std::unique_ptr<Timer> timer;
  bool timed_out = false;
};

Perilogs::Perilogs(asio::io_context& io, Clock& clock, std::string local_uri, uint32_t rank)
    : io_(io), clock_(clock), local_uri_(std::move(local_uri)), rank_(rank) {}

// Running perilogs outlive us, as a job's shells do: a restarted broker
// ends them (end_orphans) when it is asked to run the job's again.
Perilogs::~Perilogs() = default;

bool Perilogs::running(PerilogKind kind, uint64_t jid) const { return running_.count({jid, kind}) > 0; }

Result<pid_t> Perilogs::run(PerilogKind kind, const std::string& command, double timeout, uint64_t jid,
                            const Json& info, const std::function<void(int, bool)>& done) {
  if (running(kind, jid)) {
    return Error{EEXIST, std::string("the ") + perilog_name(kind) + " of job " + encode_f58(JobId{jid}) + " runs here"};
  }
  SpawnSpec spec;
  spec.argv = {"/bin/sh", "-c", command};
  // A JSON list is the command and its arguments, run without a shell.
  if (auto list = command.starts_with("[") ? parse_json(command) : Result<Json>(Error{});
      list.ok() && list->is_array() && !list->empty()) {
    spec.argv.clear();
    for (const auto& a : *list) spec.argv.push_back(a.is_string() ? a.get<std::string>() : dump_json(a));
  }
  spec.env = current_environment();
  std::erase_if(spec.env,
                [](const std::string& e) { return e.starts_with("LOOM_URI=") || e.starts_with("LOOM_PERILOG="); });
  spec.env.push_back("LOOM_URI=" + local_uri_);
  spec.env.push_back("LOOM_JOB_ID=" + encode_f58(JobId{jid}));
  uint64_t userid = info.contains("userid") && info["userid"].is_number_unsigned() ? info["userid"].get<uint64_t>() : 0;
  spec.env.push_back("LOOM_JOB_USERID=" + std::to_string(userid));
  spec.env.push_back("LOOM_JOB_RANKS=" + (info.contains("ranks") && info["ranks"].is_string()
                                              ? info["ranks"].get<std::string>()
                                              : std::string()));
  spec.env.push_back("LOOM_RANK=" + std::to_string(rank_));
  spec.env.push_back(std::string("LOOM_PERILOG=") + perilog_name(kind));
  spec.new_session = true;
  auto pid = spawn(spec);
  if (!pid.ok()) {
    spdlog::warn("shell: job {}: cannot start the {}: {}", encode_f58(JobId{jid}), perilog_name(kind),
                 pid.error().text);
    done(127 << 8, false);
    return pid.error();
  }
  auto state = std::make_shared<Running>();
  state->pid = *pid;
  state->timer = clock_.make_timer();
  auto key = std::make_pair(jid, kind);
  running_[key] = state;
  pid_t group = *pid;
  std::weak_ptr<Running> weak = state;
  auto watch = ChildWatch::create(io_, *pid, [this, key, weak, group, done](int status) {
    auto s = weak.lock();
    bool timeout = s && s->timed_out;
    // What it started in its process group goes with it.
    ::kill(-group, SIGKILL);
    if (auto it = running_.find(key); it != running_.end() && it->second == s) running_.erase(it);
    done(status, timeout);
  });
  if (!watch.ok()) {
    ::kill(-*pid, SIGKILL);
    ::waitpid(*pid, nullptr, 0);
    running_.erase(key);
    done(SIGKILL, false);
    return watch.error();
  }
  state->watch = std::move(*watch);
  state->timer->arm(timeout, [weak, group] {
    if (auto s = weak.lock()) {
      s->timed_out = true;
      ::kill(-group, SIGKILL);
    }
  });
  return *pid;
}

bool Perilogs::signal(PerilogKind kind, uint64_t jid, int sig) {
  auto it = running_.find({jid, kind});
  if (it == running_.end()) return false;
  ::kill(-it->second->pid, sig);
  return true;
}

// A leftover is a process whose environment names a job, this rank, this
// broker's socket and a perilog: ours are told apart by their process group
// (one of those we run). A broker that died left them before this one
// started, so one reading of /proc finds every job's; each is killed with
// its whole process group when its job's perilog is asked for again.
void Perilogs::end_orphans(uint64_t jid, std::function<void()> then) {
  if (!scanned_) {
    scanned_ = true;
    std::string rank = std::to_string(rank_);
    std::set<pid_t> ours;
    for (const auto& [key, s] : running_) ours.insert(s->pid);
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
      std::string name = entry.path().filename();
      if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
      pid_t pid = static_cast<pid_t>(std::stol(name));
      std::ifstream in(entry.path() / "environ");
      std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      auto job = env_value(env, "LOOM_JOB_ID");
      if (!job || !env_value(env, "LOOM_PERILOG") || env_value(env, "LOOM_RANK") != rank ||
          env_value(env, "LOOM_URI") != local_uri_) {
        continue;
      }
      auto id = parse_jobid(std::string(*job));
      pid_t group = process_group(pid);
      if (id.ok() && group > 1 && !ours.count(group)) orphans_[id->value()].insert(group);
    }
  }
  auto it = orphans_.find(jid);
  if (it == orphans_.end()) return then();
  std::set<pid_t> groups = std::move(it->second);
  orphans_.erase(it);
  for (pid_t g : groups) {
    spdlog::warn("shell: job {}: killing a prolog or epilog (process group {}) left by a broker that died",
                 encode_f58(JobId{jid}), g);
    ::kill(-g, SIGKILL);
  }
  wait_gone(std::vector<pid_t>(groups.begin(), groups.end()), 0, std::move(then));
}

// Not our children: they are gone once kill(-group, 0) finds none.
void Perilogs::wait_gone(std::vector<pid_t> groups, int tries, std::function<void()> then) {
  std::erase_if(groups, [](pid_t g) { return ::kill(-g, 0) != 0 && errno == ESRCH; });
  if (groups.empty() || tries >= kGoneTries) {
    if (!groups.empty())
      spdlog::warn("shell: {} process groups of leftover prologs or epilogs did not die", groups.size());
    return then();
  }
  uint64_t n = next_wait_++;
  auto& timer = waits_[n];
  timer = clock_.make_timer();
  // (A timer may be destroyed from its own callback: it runs a copy.)
  timer->arm(kGoneRetry, [this, n, groups = std::move(groups), tries, then = std::move(then)]() mutable {
    waits_.erase(n);
    wait_gone(std::move(groups), tries + 1, std::move(then));
  });
}

}  // namespace loom
