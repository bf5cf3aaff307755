// shell.launch and shell.kill (launcher.h).
#include "shell/launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/write.hpp>
#include <cstring>
#include <map>

#include "base/fluid.h"
#include "msg/payload.h"
#include "shell/spawn.h"

namespace loom {

struct ShellLauncher::Impl {
  struct Shell {
    Message req;
    pid_t pid = -1;
    std::unique_ptr<ChildWatch> watch;
    std::unique_ptr<asio::posix::stream_descriptor> input;  // the shell's stdin, until written
    std::shared_ptr<std::string> info;
  };

  Impl(asio::io_context& io, Handle& h, ShellLauncherConfig cfg) : io_(io), h_(h), cfg_(std::move(cfg)) {}
  ~Impl() {
    // Shells outlive their broker (a restarted one can find them again).
    for (auto& [id, s] : shells_) spdlog::info("shell: leaving the shell of job {} (pid {}) running", id, s.pid);
  }

  asio::io_context& io_;
  Handle& h_;
  ShellLauncherConfig cfg_;
  std::map<uint64_t, Shell> shells_;
  struct Epilog {
    std::unique_ptr<ChildWatch> watch;
    std::unique_ptr<Timer> timer;
    bool timed_out = false;
  };
  std::map<uint64_t, std::shared_ptr<Epilog>> epilogs_;

  void run_epilog(const Message& req, uint64_t jid, const Json& info);

  void launch(const Message& m);
  void kill(const Message& m);
};

void ShellLauncher::Impl::launch(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto id = get_int(*p, "id", 0, INT64_MAX);
  if (!id.ok()) return h_.respond_error(m, id.error());
  if (!p->contains("info") || !(*p)["info"].is_object()) return h_.respond_error(m, EPROTO, "missing \"info\"");
  uint64_t jid = static_cast<uint64_t>(*id);
  if (shells_.count(jid)) {
    return h_.respond_error(m, EEXIST, "job " + std::to_string(jid) + " already has a shell on this rank");
  }
  int in[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return h_.respond_error(m, errno, std::string("pipe: ") + std::strerror(errno));
  SpawnSpec spec;
  spec.argv = {cfg_.shell_path, std::to_string(jid)};
  spec.env = current_environment();
  std::erase_if(spec.env, [](const std::string& e) { return e.starts_with("LOOM_URI="); });
  spec.env.push_back("LOOM_URI=" + cfg_.local_uri);
  spec.new_session = true;
  spec.stdin_fd = in[0];
  auto pid = spawn(spec);
  ::close(in[0]);
  if (!pid.ok()) {
    ::close(in[1]);
    return h_.respond_error(m, pid.error().code, "cannot start the job shell: " + pid.error().text);
  }
  Shell& s = shells_[jid];
  s.req = m;
  s.req.payload = std::string();
  s.pid = *pid;
  s.info = std::make_shared<std::string>(dump_json((*p)["info"]));
  s.input = std::make_unique<asio::posix::stream_descriptor>(io_, in[1]);
  // The shell reads its job from stdin; a large jobspec must not block us.
  asio::async_write(*s.input, asio::buffer(*s.info), [this, jid, info = s.info](const std::error_code& ec, size_t) {
    auto it = shells_.find(jid);
    if (it == shells_.end()) return;
    if (ec) spdlog::warn("shell: job {}: cannot give the shell its job: {}", jid, ec.message());
    it->second.input.reset();  // EOF for the shell
  });
  Json job_info = (*p)["info"];
  auto watch = ChildWatch::create(io_, *pid, [this, jid, job_info](int status) {
    auto it = shells_.find(jid);
    if (it == shells_.end()) return;
    Message req = it->second.req;
    pid_t group = it->second.pid;
    shells_.erase(it);
    // Nothing of the job may outlive its shell on this rank.
    ::kill(-group, SIGKILL);
    bool epilog = !cfg_.epilog.empty();
    h_.respond(req, Json{{"type", "exited"}, {"status", status}, {"epilog", epilog}});
    if (!epilog) return h_.respond_error(req, ENODATA, "");
    run_epilog(req, jid, job_info);
  });
  if (!watch.ok()) {
    ::kill(-*pid, SIGKILL);
    ::waitpid(*pid, nullptr, 0);
    shells_.erase(jid);
    return h_.respond_error(m, watch.error().code, "cannot watch the job shell: " + watch.error().text);
  }
  s.watch = std::move(*watch);
  h_.respond(m, Json{{"type", "started"}, {"pid", *pid}});
}

void ShellLauncher::Impl::run_epilog(const Message& req, uint64_t jid, const Json& info) {
  SpawnSpec spec;
  spec.argv = {"/bin/sh", "-c", cfg_.epilog};
  // A JSON list is the command and its arguments, run without a shell.
  if (auto list = cfg_.epilog.starts_with("[") ? parse_json(cfg_.epilog) : Result<Json>(Error{});
      list.ok() && list->is_array() && !list->empty()) {
    spec.argv.clear();
    for (const auto& a : *list) spec.argv.push_back(a.is_string() ? a.get<std::string>() : dump_json(a));
  }
  spec.env = current_environment();
  spec.env.push_back("LOOM_JOB_ID=" + encode_f58(JobId{jid}));
  spec.env.push_back("LOOM_JOB_USERID=" + std::to_string(info.value("userid", 0)));
  spec.env.push_back("LOOM_JOB_RANKS=" + info.value("ranks", std::string()));
  spec.env.push_back("LOOM_RANK=" + std::to_string(cfg_.rank));
  spec.new_session = true;
  auto done = [this, req](int status, bool timeout) {
    h_.respond(req, Json{{"type", "epilog"}, {"status", status}, {"timeout", timeout}});
    h_.respond_error(req, ENODATA, "");
  };
  auto pid = spawn(spec);
  if (!pid.ok()) return done(127 << 8, false);
  auto state = std::make_shared<Epilog>();
  state->timer = h_.clock().make_timer();
  epilogs_[jid] = state;
  auto watch = ChildWatch::create(io_, *pid, [this, jid, done](int status) {
    auto it = epilogs_.find(jid);
    bool timeout = it != epilogs_.end() && it->second->timed_out;
    if (it != epilogs_.end()) epilogs_.erase(it);
    done(status, timeout);
  });
  if (!watch.ok()) {
    ::kill(-*pid, SIGKILL);
    ::waitpid(*pid, nullptr, 0);
    epilogs_.erase(jid);
    return done(SIGKILL, false);
  }
  state->watch = std::move(*watch);
  pid_t group = *pid;
  std::weak_ptr<Epilog> weak = state;
  state->timer->arm(cfg_.epilog_timeout, [weak, group] {
    if (auto e = weak.lock()) {
      e->timed_out = true;
      ::kill(-group, SIGKILL);
    }
  });
}

void ShellLauncher::Impl::kill(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto id = get_int(*p, "id", 0, INT64_MAX);
  if (!id.ok()) return h_.respond_error(m, id.error());
  auto sig = get_int(*p, "signal", 1, 64);
  if (!sig.ok()) return h_.respond_error(m, sig.error());
  auto it = shells_.find(static_cast<uint64_t>(*id));
  if (it == shells_.end()) return h_.respond_error(m, ENOENT, "no shell of job " + std::to_string(*id) + " here");
  // The shell forwards these signals to its tasks; any other goes to the
  // whole process group (shell and tasks), as SIGKILL must.
  int s = static_cast<int>(*sig);
  bool forwarded = s == SIGTERM || s == SIGINT || s == SIGHUP || s == SIGALRM || s == SIGUSR1 || s == SIGUSR2;
  pid_t target = forwarded ? it->second.pid : -it->second.pid;
  if (::kill(target, static_cast<int>(*sig)) != 0 && errno != ESRCH) {
    return h_.respond_error(m, errno, std::string("kill: ") + std::strerror(errno));
  }
  h_.respond(m, Json::object());
}

std::unique_ptr<ShellLauncher> ShellLauncher::create(asio::io_context& io, Handle& h, ShellLauncherConfig cfg) {
  auto impl = std::make_unique<Impl>(io, h, std::move(cfg));
  Impl* raw = impl.get();
  h.add_method("shell.launch", Access::kOwner, [raw](const Message& m) { raw->launch(m); });
  h.add_method("shell.kill", Access::kOwner, [raw](const Message& m) { raw->kill(m); });
  return std::unique_ptr<ShellLauncher>(new ShellLauncher(std::move(impl)));
}

ShellLauncher::ShellLauncher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ShellLauncher::~ShellLauncher() { impl_->h_.remove_methods("shell"); }

}  // namespace loom
