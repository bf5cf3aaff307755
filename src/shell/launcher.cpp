// shell.launch and shell.kill (launcher.h).
#include "shell/launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/write.hpp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "base/fluid.h"
#include "kvs/layout.h"
#include "msg/payload.h"
#include "shell/cgroup.h"
#include "shell/perilog.h"
#include "shell/released.h"
#include "shell/spawn.h"
#include "shell/user.h"

namespace loom {

namespace {
// How long a `shell.reattach` waits for its shell to connect again, and how
// long an adopted shell waits for job-exec to claim it before it is killed.
constexpr double kAdoptWait = 5;

// Whether a job's prolog and epilog run: not for a job step, which
// job-exec marks `perilogs: false` in each request's info.
bool wants_perilogs(const Json& info) {
  auto it = info.find("perilogs");
  return it == info.end() || !it->is_boolean() || it->get<bool>();
}
constexpr double kClaimWait = 60;
// How long a leaving broker waits for the shells it killed to be gone.
constexpr double kLeaveWait = 5;
// How long the service starts shells one by one before it starts a fork
// server again after one went away.
constexpr double kForkServerRetry = 10;
// Adopted shells of one user waiting to be claimed, at most.
constexpr size_t kMaxUnclaimedPerUser = 1024;
// How long a job's cgroup may take to empty once killed (its processes
// dying), tried every 10 ms; then it is left behind with a warning.
constexpr double kCgroupRetry = 0.01;
constexpr int kCgroupTries = 500;

// The real and effective uid of process `pid` (from /proc: its own files
// belong to root once a root process became a user), or nullopt.
std::optional<uint32_t> process_uid(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (!line.starts_with("Uid:")) continue;
    std::istringstream fields(line.substr(4));
    uint64_t real = 0, effective = 0;
    if (!(fields >> real >> effective) || real != effective || real > UINT32_MAX) return std::nullopt;
    return static_cast<uint32_t>(real);
  }
  return std::nullopt;
}
}  // namespace

struct ShellLauncher::Impl {
  struct Shell {
    Message req;          // the launch or reattach request the answers go to
    bool claimed = true;  // false: adopted, no reattach request yet
    pid_t pid = -1;
    uint32_t userid = 0;         // whose shell it is (an adopted one: who adopted it)
    bool owner_adopted = false;  // adopted through a connection of the owner (any job may claim it)
    std::unique_ptr<ChildWatch> watch;
    // The shell's stdin while the rest of a job larger than the pipe is written.
    std::unique_ptr<asio::posix::stream_descriptor> input;
    Json job_info;                // for the epilog
    std::optional<int> reported;  // an adopted shell's exit, as a wait status
    std::string error;            // why the shell could not run the job (its report), if so
    std::optional<int> status;    // exited (unclaimed: kept until claimed)
    int report = -1;              // the read end of the shell's stdout: its tasks' exits
    Json tasks;                   // [[task rank, wait status]...], once known
    uint64_t more_tasks = 0;      // tasks whose exits did not fit in the report
    std::unique_ptr<Timer> timer;
    std::string cgroup;                   // the job's cgroup here (cgroup.h), "" without
    std::unique_ptr<Timer> cgroup_timer;  // its removal, tried again while processes die
  };

  Impl(asio::io_context& io, Handle& h, ShellLauncherConfig cfg)
      : io_(io), h_(h), cfg_(std::move(cfg)), perilogs_(io, h.clock(), cfg_.local_uri, cfg_.rank) {}
  ~Impl() {
    stop_fork_server();
    // Shells outlive their broker (a restarted one can find them again),
    // and so do their cgroups (and ours, then).
    for (auto& [id, s] : shells_) {
      if (!s.status) spdlog::info("shell: leaving the shell of job {} (pid {}) running", encode_f58(JobId{id}), s.pid);
    }
    if (!cgroup_root_.empty()) remove_cgroup(cgroup_root_);
  }

  asio::io_context& io_;
  Handle& h_;
  ShellLauncherConfig cfg_;
  std::map<uint64_t, Shell> shells_;
  // Where jobs' cgroups are made (cgroup.h); "" where there is no writable
  // cgroup v2 hierarchy (a job is then its shell's process group).
  std::string cgroup_root_;
  struct Claim {
    Message req;
    Json job_info;
    std::unique_ptr<Timer> timer;
  };
  std::map<uint64_t, Claim> claims_;  // reattach requests waiting for their shell
  Perilogs perilogs_;                 // prologs and epilogs

  // The shell fork server (loom-shell --fork-server): a socket to it, and
  // its pid (our child), while it serves.
  int server_ = -1;
  pid_t server_pid_ = -1;
  double server_tried_ = 0;  // when it was last started (one that is gone is started again after a while)
  std::unique_ptr<ChildWatch> server_watch_;
  void start_fork_server();
  void stop_fork_server();
  // A shell of job `jid` from the fork server for `info` (its job, JSON),
  // given the write end of its report pipe; an error if the server cannot
  // (then the caller starts one: ENOTCONN and EMSGSIZE when the server
  // never had the pipe).
  Result<pid_t> fork_shell(uint64_t jid, const std::string& info, int report);
  std::vector<std::string> shell_env() const {
    auto env = current_environment();
    std::erase_if(env, [](const std::string& e) { return e.starts_with("LOOM_URI="); });
    env.push_back("LOOM_URI=" + cfg_.local_uri);
    return env;
  }

  // Runs the job's perilog of `kind` and answers `req` {type: KIND,
  // status, timeout} and ENODATA when it ends; {type: "KIND-start", pid}
  // first if `announce`.
  void run_perilog(PerilogKind kind, const Message& req, uint64_t jid, const Json& info, bool announce);
  void perilog_request(PerilogKind kind, const Message& m);
  void exited(uint64_t jid, int status);
  void remove_job_cgroup(uint64_t jid, int status, int tries);
  void report(uint64_t jid);
  void claim(uint64_t jid, Message req, Json job_info);

  // The payload of a request about a job (`id`), or nullopt once it was
  // answered with why not.
  std::optional<Json> job_request(const Message& m, int64_t& id) {
    auto p = payload_object(m);
    if (!p.ok()) {
      h_.respond_error(m, p.error());
      return std::nullopt;
    }
    auto v = get_int(*p, "id", 0, INT64_MAX);
    if (!v.ok()) {
      h_.respond_error(m, v.error());
      return std::nullopt;
    }
    id = *v;
    return std::move(*p);
  }

  // The shell of job `id` here, or nullptr once `m` was answered ENOENT.
  Shell* shell_for(const Message& m, int64_t id) {
    auto it = shells_.find(static_cast<uint64_t>(id));
    if (it != shells_.end()) return &it->second;
    h_.respond_error(m, ENOENT, "no shell of job " + std::to_string(id) + " here");
    return nullptr;
  }

  void launch(const Message& m);
  void kill(const Message& m);
  void parent_link(bool up);
  // SIGKILL to a job shell here and what its job started, saying why.
  void kill_shell_here(uint64_t jid, const std::string& why);
  void kill_all_here(const std::string& why);
  // kill_all's `done`, once no shell here runs (or kLeaveWait passed).
  void maybe_left();
  std::function<void()> leave_done_;
  bool leaving_ = false;  // kill_all was called: no new shell, prolog or epilog
  std::unique_ptr<Timer> leave_timer_;
  void expect_claim(uint64_t jid);
  void kill_job_here(uint64_t jid, const Shell& s);
  std::unique_ptr<Timer> cut_off_timer_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // answers that come after us are dropped
  void adopt(const Message& m);
  void reattach(const Message& m);
  void done(const Message& m);
};

void ShellLauncher::Impl::launch(const Message& m) {
  if (leaving_) return h_.respond_error(m, EHOSTUNREACH, "this broker is leaving the instance");
  int64_t id = 0;
  auto p = job_request(m, id);
  if (!p) return;
  if (!p->contains("info") || !(*p)["info"].is_object()) return h_.respond_error(m, EPROTO, "missing \"info\"");
  uint64_t jid = static_cast<uint64_t>(id);
  // Whose job (user.h): a shell never runs a job of another user as us.
  Json& job = (*p)["info"];
  uint32_t userid = static_cast<uint32_t>(::geteuid());
  if (job.contains("userid")) {
    if (!job["userid"].is_number_unsigned() || job["userid"].get<uint64_t>() > UINT32_MAX - 1) {
      return h_.respond_error(m, EPROTO, "\"userid\" must be a uid");
    }
    userid = job["userid"].get<uint32_t>();
  }
  if (auto it = shells_.find(jid); it != shells_.end()) {
    // Anyone may offer a process of their own as the shell of any job id
    // (shell.adopt cannot know whose job it will be): one nobody claimed,
    // offered by another user, is not this job's. It is forgotten, not
    // killed (it is that user's process), and the job starts.
    const Shell& s = it->second;
    if (s.claimed || s.owner_adopted || s.userid == userid) {
      return h_.respond_error(m, EEXIST, "job " + encode_f58(JobId{jid}) + " already has a shell on this rank");
    }
    spdlog::warn("shell: job {}: forgetting process {}, offered as its shell by uid {}, not the job's user",
                 encode_f58(JobId{jid}), s.pid, s.userid);
    shells_.erase(it);
  }
  job.erase("user");
  if (userid != ::geteuid()) {
    if (!can_switch_users()) return h_.respond_error(m, EPERM, cannot_switch_text(userid));
    auto user = lookup_user(userid);
    if (!user.ok()) return h_.respond_error(m, user.error().code, user.error().text);
    job["user"] = user->to_json();
  }
  // The job's cgroup, which the shell joins first thing (as root, before
  // it becomes the job's user). Without one, its process group.
  job.erase("cgroup");
  std::string cgroup;
  if (!cgroup_root_.empty()) {
    auto made = make_job_cgroup(cgroup_root_, jid);
    if (made.ok()) {
      cgroup = *made;
      job["cgroup"] = cgroup;
    } else {
      spdlog::warn("shell: job {}: {}; its processes are kept together by process group only", encode_f58(JobId{jid}),
                   made.error().text);
    }
  }
  // Who the shell's parent is (it checks that we are still there).
  job["broker_pid"] = ::getpid();
  // The shell's stdin (its job, when it is started here) and stdout (its
  // exit report).
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  auto close_all = [&] {
    for (int* fd : {&in[0], &in[1], &out[0], &out[1]}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  };
  auto make_pipes = [&]() -> bool {
    close_all();
    if (::pipe2(in, O_CLOEXEC) == 0 && ::pipe2(out, O_CLOEXEC | O_NONBLOCK) == 0) return true;
    int e = errno;
    close_all();
    h_.respond_error(m, e, std::string("pipe: ") + std::strerror(e));
    return false;
  };
  if (!make_pipes()) return;
  auto info = std::make_shared<std::string>(dump_json((*p)["info"]));
  // Forked by the fork server when it can, else started here.
  if (server_ < 0 && server_pid_ < 0 && h_.clock().now() - server_tried_ > kForkServerRetry) start_fork_server();
  auto pid = fork_shell(jid, *info, out[1]);
  size_t written = info->size();
  if (pid.ok()) {
    ::close(in[1]);
    in[1] = -1;
  } else {
    // A server that failed may have passed the pipes on: fresh ones.
    if (pid.error().code != ENOTCONN && pid.error().code != EMSGSIZE && !make_pipes()) return;
    SpawnSpec spec;
    spec.argv = {cfg_.shell_path, std::to_string(jid)};
    spec.env = shell_env();
    spec.new_session = true;
    spec.stdin_fd = in[0];
    spec.stdout_fd = out[1];
    pid = spawn(spec);
    if (pid.ok()) {
      // The shell reads its job from stdin: written now, the shell never
      // waits for our loop; the rest of one larger than the pipe as the
      // shell reads.
      ::fcntl(in[1], F_SETFL, O_NONBLOCK);
      ssize_t n = ::write(in[1], info->data(), info->size());
      written = n > 0 ? static_cast<size_t>(n) : 0;
      if (written == info->size()) {
        ::close(in[1]);
        in[1] = -1;
      }
    }
  }
  ::close(in[0]);
  ::close(out[1]);
  in[0] = out[1] = -1;
  if (!pid.ok()) {
    close_all();
    if (!cgroup.empty()) remove_cgroup(cgroup);
    return h_.respond_error(m, pid.error().code, "cannot start the job shell: " + pid.error().text);
  }
  Shell& s = shells_[jid];
  s.req = head_of(m);
  s.pid = *pid;
  s.userid = userid;
  s.report = out[0];
  s.cgroup = cgroup;
  if (in[1] >= 0) {
    s.input = std::make_unique<asio::posix::stream_descriptor>(io_, in[1]);
    auto rest = asio::buffer(*info) + written;
    asio::async_write(*s.input, rest, [this, jid, info](const std::error_code& ec, size_t) {
      auto it = shells_.find(jid);
      if (it == shells_.end()) return;
      if (ec) spdlog::warn("shell: job {}: cannot give the shell its job: {}", encode_f58(JobId{jid}), ec.message());
      it->second.input.reset();  // EOF for the shell
    });
  }
  s.job_info = std::move((*p)["info"]);
  auto watch = ChildWatch::create(io_, *pid, [this, jid](int status) { exited(jid, status); });
  if (!watch.ok()) {
    ::kill(-*pid, SIGKILL);
    ::waitpid(*pid, nullptr, 0);
    ::close(s.report);
    if (!cgroup.empty()) {
      (void)kill_cgroup(cgroup);
      remove_cgroup(cgroup);
    }
    shells_.erase(jid);
    return h_.respond_error(m, watch.error().code, "cannot watch the job shell: " + watch.error().text);
  }
  s.watch = std::move(*watch);
  h_.respond(m, Json{{"type", "started"}, {"pid", *pid}});
}

// The job's shell on this rank is gone: nothing of the job may outlive it
// here. Whoever claimed it hears of it; an adopted shell nobody has claimed
// yet keeps its status for the claim.
void ShellLauncher::Impl::exited(uint64_t jid, int status) {
  auto it = shells_.find(jid);
  if (it == shells_.end() || it->second.status) return;
  Shell& s = it->second;
  // Not our child: what it reported, else it was killed before it could.
  if (status < 0) status = s.reported.value_or(SIGKILL);
  kill_job_here(jid, s);
  s.watch.reset();
  if (s.report >= 0) {
    // The shell has exited: its report (one line) is all in the pipe.
    std::string text;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(s.report, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    ::close(s.report);
    s.report = -1;
    // Its last whole line: the one at start counts the tasks, the one at
    // the end (if it got that far) tells their exits.
    size_t end = text.rfind('\n');
    size_t begin = end == std::string::npos || end == 0 ? std::string::npos : text.rfind('\n', end - 1);
    begin = begin == std::string::npos ? 0 : begin + 1;
    auto j = parse_json(text.substr(begin, end == std::string::npos ? end : end - begin));
    if (j.ok() && j->is_object() && (*j)["tasks"].is_array()) {
      s.tasks = (*j)["tasks"];
      if ((*j)["more"].is_number_unsigned()) s.more_tasks = (*j)["more"].get<uint64_t>();
      if ((*j)["error"].is_string()) s.error = (*j)["error"].get<std::string>();
    }
  }
  remove_job_cgroup(jid, status, 0);
}

// Once the job's cgroup is empty (its processes, killed, have died), it is
// removed; only then is the shell's exit reported, so that a job that has
// ended has nothing left here.
void ShellLauncher::Impl::remove_job_cgroup(uint64_t jid, int status, int tries) {
  auto it = shells_.find(jid);
  if (it == shells_.end()) return;
  Shell& s = it->second;
  if (!s.cgroup.empty()) {
    std::string why;
    if (!remove_cgroup(s.cgroup, &why)) {
      if (why.empty() && tries < kCgroupTries) {
        if (!s.cgroup_timer) s.cgroup_timer = h_.clock().make_timer();
        s.cgroup_timer->arm(kCgroupRetry, [this, jid, status, tries] { remove_job_cgroup(jid, status, tries + 1); });
        return;
      }
      spdlog::warn("shell: job {}: cannot remove its cgroup {}: {}", encode_f58(JobId{jid}), s.cgroup,
                   why.empty() ? "processes remain in it" : why);
    } else if (std::string parent = s.cgroup.substr(0, s.cgroup.rfind('/')); parent != cgroup_root_) {
      // An adopted shell's, in the cgroup of a broker that died: that one
      // goes too once it holds no other job's.
      remove_cgroup(parent);
    }
    s.cgroup.clear();
  }
  s.status = status;
  if (s.claimed) report(jid);
  maybe_left();
}

void ShellLauncher::Impl::maybe_left() {
  if (!leave_done_) return;
  for (const auto& [jid, s] : shells_) {
    if (!s.status) return;
  }
  auto done = std::move(leave_done_);
  leave_done_ = nullptr;
  if (leave_timer_) leave_timer_->cancel();
  done();
}

// The exit of a claimed shell: the answer, then the epilog (if any).
void ShellLauncher::Impl::report(uint64_t jid) {
  auto it = shells_.find(jid);
  Message req = std::move(it->second.req);
  Json job_info = std::move(it->second.job_info);
  int status = *it->second.status;
  // Not while this broker leaves: it would outlive the broker, unwatched.
  // Nor for a job step: its allocation's epilog runs around it.
  bool epilog = !cfg_.epilog.empty() && !leaving_ && wants_perilogs(job_info);
  Json answer{{"type", "exited"}, {"status", status}, {"epilog", epilog}};
  if (it->second.tasks.is_array()) answer["tasks"] = std::move(it->second.tasks);
  if (it->second.more_tasks) answer["more_tasks"] = it->second.more_tasks;
  if (!it->second.error.empty()) answer["error"] = it->second.error;
  shells_.erase(it);
  h_.respond(req, answer);
  if (!epilog) return h_.respond_error(req, ENODATA, "");
  run_perilog(PerilogKind::kEpilog, req, jid, job_info, false);
}

// job-exec found the shell again: it gets the rest of the stream. A shell
// a user's connection adopted is the job's only if that user is the job's.
void ShellLauncher::Impl::claim(uint64_t jid, Message req, Json job_info) {
  Shell& s = shells_.at(jid);
  uint32_t job_user = job_info.contains("userid") && job_info["userid"].is_number_unsigned()
                          ? job_info["userid"].get<uint32_t>()
                          : static_cast<uint32_t>(::geteuid());
  if (!s.owner_adopted && s.userid != job_user) {
    spdlog::warn("shell: uid {} adopted a shell (pid {}) for job {} of uid {}; not the job's", s.userid, s.pid,
                 encode_f58(JobId{jid}), job_user);
    shells_.erase(jid);
    return h_.respond_error(req, EPERM,
                            "the shell that came back for job " + std::to_string(jid) + " is not its user's");
  }
  s.req = std::move(req);
  s.job_info = std::move(job_info);
  s.claimed = true;
  s.timer.reset();
  h_.respond(s.req, Json{{"type", "reattached"}, {"pid", s.pid}});
  if (s.status) report(jid);
}

// shell.adopt {id, rank, pid}: a job shell whose broker died connected to
// us. It is not our child; it tells us its exit (shell.done), and a pidfd
// tells us if it dies first.
void ShellLauncher::Impl::adopt(const Message& m) {
  int64_t id = 0;
  auto p = job_request(m, id);
  if (!p) return;
  auto pid = get_int(*p, "pid", 2, INT32_MAX);
  if (!pid.ok()) return h_.respond_error(m, pid.error());
  uint64_t jid = static_cast<uint64_t>(id);
  // A shell runs as its job's user: a user may only offer a process of
  // their own (and only their own job will take it, see claim()).
  bool owner = m.rolemask & role::kOwner;
  if (!owner && process_uid(static_cast<pid_t>(*pid)) != std::optional<uint32_t>(m.userid)) {
    return h_.respond_error(
        m, EPERM, "process " + std::to_string(*pid) + " is not one of uid " + std::to_string(m.userid) + "'s");
  }
  if (shells_.count(jid)) {
    return h_.respond_error(m, EEXIST, "job " + encode_f58(JobId{jid}) + " already has a shell on this rank");
  }
  // Each adopted shell holds a pidfd until it is claimed (or a minute has
  // passed): one process is one shell, and a user's unclaimed ones are
  // bounded, so that nobody can fill the broker's descriptor table.
  size_t unclaimed = 0;
  for (const auto& [other, sh] : shells_) {
    if (sh.pid == static_cast<pid_t>(*pid)) {
      return h_.respond_error(m, EEXIST, "process " + std::to_string(*pid) + " is already a shell here");
    }
    if (!sh.claimed && !sh.owner_adopted && sh.userid == m.userid) ++unclaimed;
  }
  if (!owner && unclaimed >= kMaxUnclaimedPerUser) {
    return h_.respond_error(m, EAGAIN, "uid " + std::to_string(m.userid) + " has too many shells waiting here");
  }
  Shell& s = shells_[jid];
  s.pid = static_cast<pid_t>(*pid);
  s.claimed = false;
  s.userid = m.userid;
  s.owner_adopted = owner;
  // Its tasks count as unreported until it tells their exits (shell.done).
  if (auto n = get_int(*p, "ntasks", 0, INT32_MAX); n.ok() && *n > 0) {
    s.tasks = Json::array();
    s.more_tasks = static_cast<uint64_t>(*n);
  }
  // Its job's cgroup, made by the broker before us: the one it is in, if
  // that is a job cgroup of this job (a user cannot move a process into a
  // cgroup that root made).
  if (auto cg = cgroup_of(s.pid);
      cg && cg->ends_with("/job-" + std::to_string(jid)) && cg->find("/loom-") != std::string::npos) {
    s.cgroup = *cg;
  }
  auto watch = ChildWatch::create(io_, s.pid, [this, jid](int status) { exited(jid, status); });
  if (!watch.ok()) {
    shells_.erase(jid);
    return h_.respond_error(m, watch.error().code, "cannot watch the shell: " + watch.error().text);
  }
  s.watch = std::move(*watch);
  spdlog::info("shell: adopted the shell of job {} (pid {})", encode_f58(JobId{jid}), s.pid);
  h_.respond(m, Json::object());
  if (auto c = claims_.find(jid); c != claims_.end()) {
    Claim claimed = std::move(c->second);
    claims_.erase(c);
    return claim(jid, std::move(claimed.req), std::move(claimed.job_info));
  }
  expect_claim(jid);
}

// An unclaimed shell that nobody claims within kClaimWait belongs to a job
// that ended while the shell was away: it is killed and forgotten.
void ShellLauncher::Impl::expect_claim(uint64_t jid) {
  Shell& s = shells_.at(jid);
  s.timer = h_.clock().make_timer();
  // A restarted rank 0 claims its shells once it has loaded its jobs,
  // which may take a while with many.
  s.timer->arm(std::max(kClaimWait, cfg_.cut_off_timeout), [this, jid] {
    auto it = shells_.find(jid);
    if (it == shells_.end() || it->second.claimed) return;
    if (!it->second.status) {
      spdlog::warn("shell: nobody claimed the shell of job {} (pid {}); killing it", encode_f58(JobId{jid}),
                   it->second.pid);
      kill_job_here(jid, it->second);
    }
    shells_.erase(it);
  });
}

// shell.done {id, status}: an adopted shell's exit code, just before it exits.
void ShellLauncher::Impl::done(const Message& m) {
  int64_t id = 0;
  auto p = job_request(m, id);
  if (!p) return;
  auto code = get_int(*p, "status", 0, 255);
  if (!code.ok()) return h_.respond_error(m, code.error());
  Shell* s = shell_for(m, id);
  if (!s) return;
  if (!(m.rolemask & role::kOwner) && (s->owner_adopted || s->userid != m.userid)) {
    return h_.respond_error(
        m, EPERM, "the shell of job " + std::to_string(id) + " is not uid " + std::to_string(m.userid) + "'s");
  }
  s->reported = static_cast<int>(*code) << 8;  // a wait status: exited with that code
  if (p->contains("tasks") && (*p)["tasks"].is_array()) {
    s->tasks = (*p)["tasks"];
    s->more_tasks = 0;
  }
  h_.respond(m, Json::object());
}

// shell.reattach {id, info}: job-exec, restarted, looks for the job's shell
// here. Waits up to kAdoptWait for the shell to connect again.
void ShellLauncher::Impl::reattach(const Message& m) {
  int64_t id = 0;
  auto p = job_request(m, id);
  if (!p) return;
  uint64_t jid = static_cast<uint64_t>(id);
  Json job_info = p->contains("info") && (*p)["info"].is_object() ? (*p)["info"] : Json::object();
  Message req = head_of(m);
  if (auto it = shells_.find(jid); it != shells_.end()) {
    if (it->second.claimed) return h_.respond_error(m, EBUSY, "the shell of job " + std::to_string(jid) + " is taken");
    return claim(jid, std::move(req), std::move(job_info));
  }
  if (claims_.count(jid)) return h_.respond_error(m, EBUSY, "job " + std::to_string(jid) + " is being reattached");
  Claim& c = claims_[jid];
  c.req = std::move(req);
  c.job_info = std::move(job_info);
  c.timer = h_.clock().make_timer();
  c.timer->arm(kAdoptWait, [this, jid] {
    auto it = claims_.find(jid);
    if (it == claims_.end()) return;
    Message req = std::move(it->second.req);
    claims_.erase(it);
    h_.respond_error(req, ENOENT, "its shell did not come back");
  });
}

void ShellLauncher::Impl::run_perilog(PerilogKind kind, const Message& req, uint64_t jid, const Json& info,
                                      bool announce) {
  bool prolog = kind == PerilogKind::kProlog;
  const std::string& command = prolog ? cfg_.prolog : cfg_.epilog;
  double timeout = prolog ? cfg_.prolog_timeout : cfg_.epilog_timeout;
  std::string name = perilog_name(kind);
  auto pid = perilogs_.run(kind, command, timeout, jid, info, [this, req, name](int status, bool timed_out) {
    h_.respond(req, Json{{"type", name}, {"status", status}, {"timeout", timed_out}});
    h_.respond_error(req, ENODATA, "");
  });
  if (pid.ok() && announce) h_.respond(req, Json{{"type", name + "-start"}, {"pid", *pid}});
  // (One that could not start has answered as one that exited 127.)
  if (!pid.ok() && pid.error().code == EEXIST) h_.respond_error(req, EEXIST, pid.error().text);
}

// shell.prolog and shell.epilog {id, info}: job-exec asks for a rank's
// prolog before its shell starts, or for an epilog where no shell of the
// job will report one. What a broker before us left running of the job's
// is ended first: the job's prolog or epilog never runs twice at once.
void ShellLauncher::Impl::perilog_request(PerilogKind kind, const Message& m) {
  if (leaving_) return h_.respond_error(m, EHOSTUNREACH, "this broker is leaving the instance");
  int64_t id = 0;
  auto p = job_request(m, id);
  if (!p) return;
  uint64_t jid = static_cast<uint64_t>(id);
  const std::string& command = kind == PerilogKind::kProlog ? cfg_.prolog : cfg_.epilog;
  Json info = p->contains("info") && (*p)["info"].is_object() ? (*p)["info"] : Json::object();
  if (command.empty() || !wants_perilogs(info)) return h_.respond_error(m, ENODATA, "");
  if (perilogs_.running(kind, jid)) {
    return h_.respond_error(
        m, EEXIST,
        std::string("the ") + perilog_name(kind) + " of job " + encode_f58(JobId{jid}) + " runs here already");
  }
  Message req = head_of(m);
  perilogs_.end_orphans(jid, [this, kind, req, jid, info] { run_perilog(kind, req, jid, info, true); });
}

void ShellLauncher::Impl::kill(const Message& m) {
  int64_t id = 0;
  auto p = job_request(m, id);
  if (!p) return;
  auto sig = get_int(*p, "signal", 1, 64);
  if (!sig.ok()) return h_.respond_error(m, sig.error());
  // Before its shell, the job is its prolog: the signal to its process group.
  uint64_t jid = static_cast<uint64_t>(id);
  if (!shells_.count(jid) && perilogs_.signal(PerilogKind::kProlog, jid, static_cast<int>(*sig))) {
    return h_.respond(m, Json::object());
  }
  Shell* shell = shell_for(m, id);
  if (!shell) return;
  // The shell forwards these signals to its tasks; any other goes to the
  // whole process group (shell and tasks), as SIGKILL must.
  // With a cgroup, "the whole" is every process in it: SIGKILL through
  // cgroup.kill, another signal to each process it lists.
  int s = static_cast<int>(*sig);
  bool forwarded = s == SIGTERM || s == SIGINT || s == SIGHUP || s == SIGALRM || s == SIGUSR1 || s == SIGUSR2;
  pid_t target = forwarded ? shell->pid : -shell->pid;
  if (::kill(target, static_cast<int>(*sig)) != 0 && errno != ESRCH) {
    return h_.respond_error(m, errno, std::string("kill: ") + std::strerror(errno));
  }
  if (!forwarded && !shell->cgroup.empty()) {
    if (s == SIGKILL) {
      if (auto st = kill_cgroup(shell->cgroup); !st.ok()) return h_.respond_error(m, st.error());
    } else {
      signal_cgroup(shell->cgroup, s);
    }
  }
  h_.respond(m, Json::object());
}

std::unique_ptr<ShellLauncher> ShellLauncher::create(asio::io_context& io, Handle& h, ShellLauncherConfig cfg) {
  auto impl = std::make_unique<Impl>(io, h, std::move(cfg));
  Impl* raw = impl.get();
  // A cgroup of ours for our jobs' (cgroup.h), named after us: every rank
  // of an instance on one machine has its own.
  auto root = make_cgroup_root("loom-" + std::to_string(::getpid()));
  if (root.ok()) {
    raw->cgroup_root_ = *root;
    spdlog::info("shell: each job runs in a cgroup of its own under {}", *root);
  } else {
    spdlog::info("shell: no job cgroups ({}); a job's processes are kept together by process group only",
                 root.error().text);
  }
  raw->start_fork_server();
  // Reads its payload as JSON only (job-exec's jobs travel parsed).
  h.add_json_method("shell.launch", Access::kOwner, [raw](const Message& m) { raw->launch(m); });
  h.add_method("shell.kill", Access::kOwner, [raw](const Message& m) { raw->kill(m); });
  h.add_method("shell.prolog", Access::kOwner,
               [raw](const Message& m) { raw->perilog_request(PerilogKind::kProlog, m); });
  h.add_method("shell.epilog", Access::kOwner,
               [raw](const Message& m) { raw->perilog_request(PerilogKind::kEpilog, m); });
  // Job shells run as their jobs' users: these two come from users too
  // (checked in adopt() and done()).
  h.add_method("shell.adopt", Access::kUser, [raw](const Message& m) { raw->adopt(m); });
  h.add_method("shell.done", Access::kUser, [raw](const Message& m) { raw->done(m); });
  h.add_method("shell.reattach", Access::kOwner, [raw](const Message& m) { raw->reattach(m); });
  return std::unique_ptr<ShellLauncher>(new ShellLauncher(std::move(impl)));
}

void ShellLauncher::Impl::start_fork_server() {
  server_tried_ = h_.clock().now();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return;
  SpawnSpec spec;
  spec.argv = {cfg_.shell_path, "--fork-server", std::string(24, ' ')};  // room for a job id
  spec.env = shell_env();
  spec.stdin_fd = sv[1];
  spec.new_session = true;  // the terminal's signals are for the broker
  auto pid = spawn(spec);
  ::close(sv[1]);
  if (!pid.ok()) {
    spdlog::warn("shell: cannot start the shell fork server ({}); shells are started one by one", pid.error().text);
    ::close(sv[0]);
    return;
  }
  server_ = sv[0];
  server_pid_ = *pid;
  // A server that does not answer within seconds is not waited for again.
  timeval limit{2, 0};
  ::setsockopt(server_, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  auto watch = ChildWatch::create(io_, *pid, [this, pid = *pid](int status) {
    if (pid != server_pid_) return;  // one given up on, reaped
    server_pid_ = -1;
    if (server_ < 0) return;
    spdlog::warn("shell: the shell fork server exited (status {}); starting shells one by one for now", status);
    ::close(server_);
    server_ = -1;
  });
  if (watch.ok()) server_watch_ = std::move(*watch);
}

// Given up on: killed, reaped by its watch (never waited for here).
void ShellLauncher::Impl::stop_fork_server() {
  if (server_ < 0) return;
  ::close(server_);
  server_ = -1;
  if (server_pid_ > 0) ::kill(server_pid_, SIGKILL);
}

Result<pid_t> ShellLauncher::Impl::fork_shell(uint64_t jid, const std::string& info, int report) {
  if (server_ < 0) return Error{ENOTCONN, "no fork server"};
  std::string id = std::to_string(jid) + "\n";
  size_t size = id.size() + info.size();
  if (size > kForkServerMaxJob) return Error{EMSGSIZE, "the job is larger than the fork server takes"};
  iovec iov[2] = {{id.data(), id.size()}, {const_cast<char*>(info.data()), info.size()}};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof report)] = {};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof report);
  std::memcpy(CMSG_DATA(cm), &report, sizeof report);
  ssize_t n;
  while ((n = ::sendmsg(server_, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  char answer[32];
  ssize_t got = -1;
  if (n == static_cast<ssize_t>(size)) {
    // The shell's pid, from the shell itself once it leads its session (a
    // fork: a tenth of a millisecond, waited for as posix_spawn is), or
    // -errno from the server.
    got = ::recv(server_, answer, sizeof answer - 1, 0);
    if (got < 0 && errno == EINTR) got = ::recv(server_, answer, sizeof answer - 1, 0);
  }
  if (got <= 0) {
    spdlog::warn("shell: the shell fork server stopped answering; starting shells one by one for now");
    stop_fork_server();
    return Error{EPIPE, "the fork server is gone"};
  }
  answer[got] = '\0';
  long pid = std::strtol(answer, nullptr, 10);
  if (pid <= 0) return Error{static_cast<int>(-pid), "the fork server could not fork"};
  return static_cast<pid_t>(pid);
}

ShellLauncher::ShellLauncher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

void ShellLauncher::parent_link(bool up) { impl_->parent_link(up); }

void ShellLauncher::kill_all(const std::string& why, std::function<void()> done) {
  impl_->leaving_ = true;
  impl_->kill_all_here(why);
  impl_->leave_done_ = std::move(done);
  impl_->leave_timer_ = impl_->h_.clock().make_timer();
  impl_->leave_timer_->arm(kLeaveWait, [impl = impl_.get()] {
    spdlog::warn("shell: job shells still here after {}s; going on without them", kLeaveWait);
    auto done = std::move(impl->leave_done_);
    impl->leave_done_ = nullptr;
    if (done) done();
  });
  impl_->maybe_left();
}

void ShellLauncher::Impl::kill_all_here(const std::string& why) {
  std::vector<uint64_t> ids;
  for (const auto& [jid, s] : shells_) ids.push_back(jid);
  for (uint64_t jid : ids) kill_shell_here(jid, why);
}

void ShellLauncher::Impl::kill_shell_here(uint64_t jid, const std::string& why) {
  auto it = shells_.find(jid);
  if (it == shells_.end() || it->second.status) return;
  Shell& s = it->second;
  spdlog::warn("shell: job {}: killing its shell here (pid {}): {}", encode_f58(JobId{jid}), s.pid, why);
  kill_job_here(jid, s);
}

// SIGKILL to the shell's process group, and whatever left it (setsid):
// the whole cgroup.
void ShellLauncher::Impl::kill_job_here(uint64_t jid, const Shell& s) {
  ::kill(-s.pid, SIGKILL);
  if (!s.cgroup.empty()) {
    if (auto st = kill_cgroup(s.cgroup); !st.ok())
      spdlog::warn("shell: job {}: {}", encode_f58(JobId{jid}), st.error().text);
  }
}

void ShellLauncher::Impl::parent_link(bool up) {
  if (!cut_off_timer_) cut_off_timer_ = h_.clock().make_timer();
  if (!up) {
    // The launch streams these shells answer went with the link (the
    // instance declares this rank lost, or rank 0 is gone): each shell
    // waits to be claimed again by a restarted rank 0's shell.reattach,
    // keeping its exit for it, as an adopted one does.
    for (auto& [jid, sh] : shells_) sh.claimed = false;
    // A reattach waiting for its shell came from the rank 0 of before.
    for (auto& [jid, c] : claims_) h_.respond_error(c.req, EHOSTUNREACH, "this rank was cut off from the instance");
    claims_.clear();
    if (cut_off_timer_->armed()) return;
    cut_off_timer_->arm(cfg_.cut_off_timeout,
                        [this] { kill_all_here("this rank was cut off from the instance for too long"); });
    return;
  }
  cut_off_timer_->cancel();
  for (auto& [job, s] : shells_) {
    // Not claimed again soon (the job was let go meanwhile): forgotten.
    if (!s.claimed) expect_claim(job);
    if (s.status) continue;
    uint64_t jid = job;
    h_.rpc("job-info.lookup", Json{{"id", jid}, {"keys", Json::array({kvs_key::kEventlog})}}, RpcOptions{.timeout = 30},
           [this, jid, alive = std::weak_ptr<int>(alive_)](const Message& r) {
             if (alive.expired()) return;
             if (r.errnum == ENOENT) return kill_shell_here(jid, "the instance does not know the job");
             auto p = parse_json(r.payload);
             if (r.errnum || !p.ok() || !p->is_object() || !(*p)[kvs_key::kEventlog].is_string()) return;
             if (auto why = released_here((*p)[kvs_key::kEventlog].get<std::string>(), cfg_.rank))
               kill_shell_here(jid, *why);
           });
  }
}
ShellLauncher::~ShellLauncher() { impl_->h_.remove_methods("shell"); }

}  // namespace loom
