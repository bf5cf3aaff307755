// loom-shell ID: the job shell of one rank (src/shell/job_shell.cpp says
// what it does), started by the shell launch service with the job on
// stdin as JSON; or `loom-shell --fork-server PADDING`, which forks such
// shells (fork_server below). Here: reading the job, joining its cgroup,
// becoming its user and connecting to the broker, before the shell runs.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/fluid.h"
#include "msg/client.h"
#include "shell/cgroup.h"
#include "shell/job_shell.h"
#include "shell/spawn.h"
#include "shell/user.h"

namespace loom {
namespace {

// Everything on stdin: the job, as the shell launch service writes it.
std::string read_stdin() {
  std::string text;
  char buf[65536];
  for (ssize_t n; (n = ::read(0, buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) shell_die(std::string("stdin: ") + std::strerror(errno));
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

// The job cannot run here at all: why, in the exit report (shell/report.h)
// that the shell launch service reads once we have exited, so that the job
// fails with it; and on stderr.
int cannot_run(const Json& info, const std::string& why) {
  auto at = info.find("id");
  std::string id = at != info.end() && at->is_number_unsigned() ? encode_f58(JobId{at->get<uint64_t>()}) : "?";
  std::fprintf(stderr, "loom-shell: job %s: %s\n", id.c_str(), why.c_str());
  std::string line = dump_json(Json{{"tasks", Json::array()}, {"error", why}}) + "\n";
  if (::write(1, line.data(), line.size()) < 0) return 1;
  return 1;
}

// The broker that started us is gone: we are no longer its child (it
// names itself in the job as `broker_pid`).
bool broker_gone(const Json& info) {
  auto at = info.find("broker_pid");
  return at != info.end() && at->is_number_integer() && at->get<int64_t>() != ::getppid();
}

// The job's user (user.h): the shell becomes it before it connects, opens
// a file or starts a task. The job names its user (`userid`); a shell
// that is not that user already needs the launch service's `user` (the
// passwd entry and groups) and root to become it, else the job cannot run.
Result<std::optional<JobUser>> take_identity(const Json& info) {
  uint32_t me = static_cast<uint32_t>(::geteuid());
  auto at = info.find("userid");
  uint32_t userid = at != info.end() && at->is_number_unsigned() ? at->get<uint32_t>() : me;
  if (!info.contains("user")) {
    if (userid != me) return Error{EPERM, cannot_switch_text(userid)};
    return std::optional<JobUser>();
  }
  auto user = JobUser::from_json(*info.find("user"));
  if (!user.ok()) return user.error();
  if (user->uid != userid) {
    return Error{EPROTO,
                 "the job is uid " + std::to_string(userid) + "'s, not uid " + std::to_string(user->uid) + "'s"};
  }
  if (userid == me) return std::optional<JobUser>();
  if (!can_switch_users()) return Error{EPERM, cannot_switch_text(userid)};
  if (auto st = become_user(*user); !st.ok()) return st.error();
  return std::optional<JobUser>(std::move(*user));
}

// One job shell, its job (JSON) in `text`.
int run_shell(const std::string& text) {
  auto info = parse_json(text);
  if (!info.ok() || !info->is_object()) shell_die("stdin: not a JSON object");
  // stdout is the report pipe of a broker that may be gone by the end.
  ::signal(SIGPIPE, SIG_IGN);
  // Into the job's cgroup while we may (before we become the job's user).
  if (auto cg = info->find("cgroup"); cg != info->end() && cg->is_string()) {
    if (auto st = join_cgroup(cg->get<std::string>()); !st.ok()) {
      // A broker restarted after ours died removes the cgroups its jobs
      // left empty: this one, if it came before us. The job goes on,
      // kept together by our process group.
      if (!broker_gone(*info)) return cannot_run(*info, "cannot join the job's cgroup: " + st.error().text);
      std::fprintf(stderr, "loom-shell: cannot join the job's cgroup (%s); its broker is gone\n",
                   st.error().text.c_str());
      info->erase("cgroup");
    }
  }
  // Started by a broker, as its uid: the brokers are that uid, before and
  // after a crash; nothing else listening at their socket is believed.
  auto broker_uid = static_cast<uint32_t>(::getuid());
  auto user = take_identity(*info);
  if (!user.ok()) return cannot_run(*info, user.error().text);
  const char* uri = std::getenv("LOOM_URI");
  if (!uri) shell_die("LOOM_URI is not set");
  asio::io_context io;
  auto clock = make_real_clock(io);
  auto c = Client::connect(io, *clock, uri);
  if (c.ok() && (*c)->peer_uid() != broker_uid) {
    shell_die(std::string("refusing what listens at ") + uri + ": it runs as uid " + std::to_string((*c)->peer_uid()) +
              ", not the brokers' " + std::to_string(broker_uid));
  }
  // The broker that started us (our parent) may have died before we could
  // connect: nobody listens, or a restarted broker does, which does not
  // know us. Either way the job has started (job-exec said so when we were
  // spawned), so we run it as a shell whose broker was lost: the tasks
  // start, and we wait for a broker to adopt us (docs/protocols/exec.md).
  // (A broker that dies once we are connected closes our connection.)
  // (A broker that is still there but cannot be reached is no such case:
  // the job fails at once, nothing runs.)
  std::unique_ptr<Client> client;
  if (!broker_gone(*info)) {
    if (!c.ok()) shell_die(c.error().text);
    client = std::move(*c);
  } else if (info->value("reattach_timeout", 0.0) <= 0) {
    shell_die("the broker that started this shell is gone");
  } else {
    std::fprintf(stderr, "loom-shell: the broker that started this shell is gone (%s)\n",
                 c.ok() ? "another listens at its socket" : c.error().text.c_str());
    if (c.ok()) (*c)->close();  // it is asked again, to adopt us, once the tasks run
  }
  return run_job_shell(io, *clock, uri, broker_uid, std::move(client), std::move(*info), std::move(*user));
}

// --fork-server PADDING: stdin is a SOCK_SEQPACKET socket to the shell
// launch service. Each message is a job id, a newline and the job (JSON),
// with the write end of the shell's report pipe attached. The server forks
// a shell as a child of the broker (CLONE_PARENT: the broker waits for it
// as for any shell; its exit signal is the server's, SIGCHLD). The shell
// leads a session of its own, then sends its pid itself (the server
// answers only a failed fork, -errno) and goes on only if that worked: a
// service that gave up waiting has closed the socket, and the shell exits
// having started nothing. A fork of this small process costs about half of
// starting a program (exec, and libc's start-up, which asks the CPU about
// its caches: slow under virtualization). The shell's command line reads
// `loom-shell ID` as when it is started alone (PADDING makes room for the
// id). Ends when the service closes the socket.
int fork_server(int argc, char** argv) {
  char* args = argv[1];
  size_t room = static_cast<size_t>(argv[argc - 1] + std::strlen(argv[argc - 1]) - args);
  std::vector<char> buf(kForkServerMaxJob);
  for (;;) {
    iovec iov{buf.data(), buf.size()};
    int report = -1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof report)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(0, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    if (cm && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof report)) {
      std::memcpy(&report, CMSG_DATA(cm), sizeof report);
    }
    long pid = -EINVAL;
    if (report >= 0 && !(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
      pid = ::syscall(SYS_clone, CLONE_PARENT | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
      if (pid == 0) {
        ::setsid();
        std::string me = std::to_string(::getpid());
        if (::send(0, me.data(), me.size(), MSG_NOSIGNAL) < 0) std::_Exit(1);
        int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull < 0 || ::dup2(devnull, 0) < 0 || ::dup2(report, 1) < 0) std::_Exit(1);  // our socket goes
        ::close(devnull);
        ::close(report);
        std::string_view job(buf.data(), static_cast<size_t>(n));
        std::string_view id = job.substr(0, job.find('\n'));
        std::memset(args, 0, room);
        std::memcpy(args, id.data(), std::min(id.size(), room));
        std::_Exit(run_shell(std::string(job.substr(std::min(job.size(), id.size() + 1)))));
      }
      if (pid < 0) pid = -errno;
    }
    if (report >= 0) ::close(report);
    if (pid < 0) {
      std::string answer = std::to_string(pid);
      if (::send(0, answer.data(), answer.size(), MSG_NOSIGNAL) < 0) return 0;
    }
  }
}

}  // namespace
}  // namespace loom

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--fork-server") return loom::fork_server(argc, argv);
  if (argc != 2) {
    std::fprintf(stderr, "usage: loom-shell JOBID (started by the shell launch service, the job on stdin)\n");
    return 2;
  }
  return loom::run_shell(loom::read_stdin());
}
