// The job shell on one rank (docs/protocols/exec.md), which the program
// loom-shell runs (loom_shell.cpp). Started by the shell launch service
// with the job on stdin as JSON
//   {id, rank, jobspec, R, namespace, userid, ranks, reattach_timeout,
//    broker_pid, user?, cgroup?}
// (job-exec's `info`, to which the launch service adds the last three: see
// docs/protocols/exec.md, "job-exec: real execution", item 2), or forked by
// `loom-shell --fork-server`, the job in its request (see fork_server in
// loom_shell.cpp), it starts this rank's tasks with the environment users expect, writes
// their stdout and stderr to the job's output eventlog (key `output` of the
// job's KVS namespace, Flux RFC 24: one `data` entry per line, tagged with
// the task rank and the stream; base64 where a chunk is not UTF-8),
// forwards signals to the tasks, and exits once every task has exited and
// all output is stored: 0 if every task did, else the largest task status
// as a shell reports it (the exit code, or 128+N for signal N).
//
// It runs as the job's user: started as root, it becomes that user (the
// `user` the launch service looked up, user.h) before anything else, and
// refuses a job of another user it cannot become. Before that it joins the
// job's cgroup (`cgroup` of the job, where the launch service made one:
// cgroup.h), so that every process of the job stays in it. Its tasks are
// bound to the cores R gives the job on this rank and see only its GPUs
// there (docs/protocols/exec.md, "Containment").
//
// If its broker goes away (a crash), the shell keeps its tasks running and
// their output in memory, and connects again to the same socket for up to
// `reattach_timeout` seconds (from the job info): a restarted broker there
// adopts it (`shell.adopt`), the output is stored, and job-exec finds the
// job again. A shell that was adopted tells the broker its exit code
// (`shell.done`), since it is no longer the broker's child. When nobody
// comes back in time, the tasks are killed: nothing runs unseen for long.
// Meanwhile it asks rank 0 (its socket is beside the broker's), and once
// adopted its new broker, whether the job still holds this rank
// (`job-info.lookup` of the job's eventlog): a rank lost while the job ran
// is released from it (node-failure), and then the tasks are killed at
// once. A SIGTERM, SIGINT or SIGHUP while the broker is away does the same.
//
// Signals are forwarded to every process of the job here (its cgroup, else
// our process group). Once the job is being ended (SIGTERM, SIGINT,
// SIGHUP, SIGALRM) and every task has exited, what the tasks left running
// is killed: it may hold their output open, and the SIGKILL that would
// follow would kill us too, losing the tasks' statuses.
#include "shell/job_shell.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/signal_set.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/fluid.h"
#include "base/wait_status.h"
#include "base/write_all.h"
#include "idset/idset.h"
#include "jobspec/jobspec.h"
#include "kvs/layout.h"
#include "msg/client.h"
#include "rset/rset.h"
#include "shell/affinity.h"
#include "shell/batch_script.h"
#include "shell/cgroup.h"
#include "shell/input.h"
#include "shell/output.h"
#include "shell/pmi_server.h"
#include "shell/released.h"
#include "shell/report.h"
#include "shell/spawn.h"
#include "shell/user.h"

namespace loom {

void shell_die(const std::string& why) {
  std::fprintf(stderr, "loom-shell: %s\n", why.c_str());
  std::exit(1);
}

namespace {

struct Task {
  int rank = 0;  // global task rank
  pid_t pid = -1;
  int status = 0;
  bool exited = false;
  std::unique_ptr<ChildWatch> watch;
};

struct Stream {
  int task_rank;
  const char* name;
  std::unique_ptr<asio::posix::stream_descriptor> fd;
  std::array<char, 65536> buf{};
  std::string partial;
};

// Output kept while the broker is away, at most this much (as stored);
// beyond it the output is dropped, and the job's output says so.
constexpr size_t kMaxHeldOutput = 64u << 20;
// One commit carries at most about this much output (a message is at most
// 64 MiB).
constexpr size_t kCommitChunk = 4u << 20;
// A job's output eventlog holds at most about this much (as stored), its
// shells' shares together: it is read back whole (loom job attach, loom
// run), in one message of at most 64 MiB, and a job that writes more
// wants --output. Past its share a shell drops its tasks' output and says
// so once on the job's stderr (docs/commands.md, "Output files").
constexpr size_t kMaxStoredOutput = 16u << 20;

class Shell {
 public:
  Shell(asio::io_context& io, Clock& clock, std::string uri, uint32_t broker_uid, std::unique_ptr<Client> c, Json info,
        std::optional<JobUser> user)
      : io_(io),
        clock_(clock),
        uri_(std::move(uri)),
        broker_uid_(broker_uid),
        c_(std::move(c)),
        info_(std::move(info)),
        user_(std::move(user)) {}
  ~Shell() { remove_script(); }
  // A batch script's copy goes with us.
  void remove_script() {
    if (script_dir_.empty()) return;
    std::error_code ignored;
    std::filesystem::remove_all(script_dir_, ignored);
    script_dir_.clear();
  }
  int run();
  int cannot_start(int from, const std::string& why);
  int wait_tasks();

 private:
  asio::io_context& io_;
  Clock& clock_;
  std::string uri_;
  uint32_t broker_uid_;  // the uid of the brokers that started us: the only one we talk to
  std::unique_ptr<Client> c_;
  Json info_;
  std::optional<JobUser> user_;  // the job's user, when we became it (not the broker's uid)
  std::string cgroup_;           // the job's cgroup, which we joined ("" without: our process group)
  std::string id_text_;
  std::string script_dir_;  // where a batch job's script was written ("" for other jobs)
  uint32_t rank_ = 0;
  double reattach_timeout_ = 0;            // seconds to wait for a broker that went away
  bool adopted_ = false;                   // by a broker that is not our parent: tell it our exit
  size_t report_written_ = 0;              // bytes of the exit report's first line in the pipe (report.h)
  size_t held_bytes_ = 0;                  // output waiting in pending_, as stored
  bool dropped_ = false;                   // output dropped during this absence of the broker
  size_t stored_bytes_ = 0;                // of the tasks' output, put in the eventlog (as stored)
  size_t store_limit_ = kMaxStoredOutput;  // this shell's share of kMaxStoredOutput
  bool truncated_ = false;                 // output dropped past the share
  uint64_t generation_ = 0;                // of the connection; a commit answered after a reconnect is void
  std::unique_ptr<Timer> retry_timer_;     // a commit refused for now is tried again
  bool connected() const { return c_ && c_->is_open(); }
  bool reconnect(double timeout);
  void kill_tasks();
  // The job is being ended (SIGTERM, SIGINT, SIGHUP, SIGALRM: a cancel, the
  // time limit, Ctrl-C): once every task has exited, what they left running
  // is killed, so that we exit with the tasks' statuses before the SIGKILL
  // that would follow (and kill us too).
  bool ending_ = false;
  bool end_while_away_ = false;  // such a signal came while the broker was away: wait no more
  bool leftovers_killed_ = false;
  bool tasks_exited() const {
    return std::all_of(tasks_.begin(), tasks_.end(), [](const Task& t) { return t.exited; });
  }
  void signal_job(int sig);
  void kill_leftovers();
  // Whether the instance still holds this rank for the job (a rank lost
  // while the job ran is released from it: node-failure). Asked of our
  // broker once it adopted us, and of rank 0 while our broker is away.
  std::string gone_;               // why the job is over here, once known
  bool held_ = false;              // the instance said it still holds this rank for the job
  bool asking_ = false;            // a lookup is out
  uint64_t ask_gen_ = 0;           // of the client asked; an answer through a client dropped since is void
  double asked_at_ = -1e9;         // when rank 0 was last asked
  std::string instance_uri_;       // rank 0's socket, "" when ours is it
  std::unique_ptr<Client> probe_;  // to rank 0 while our broker is away
  std::unique_ptr<Timer> ask_timer_;
  void ask_instance(Handle& h);
  void check_held();
  void probe_instance();
  void forget_asks() {
    ++ask_gen_;
    asking_ = false;
  }
  void report_exit(int code);
  std::string ns_;
  std::vector<Task> tasks_;
  std::vector<std::unique_ptr<Stream>> streams_;
  size_t open_streams_ = 0;
  // The tasks' stdin, from the job's input eventlog (shell/input.h).
  TaskInput input_{io_};
  void watch_input();
  // MPI wire-up for the tasks (docs/pmi.md).
  std::unique_ptr<PmiServer> pmi_;
  void start_pmi(const PmiJob& job);
  std::deque<std::string> pending_;     // output eventlog lines not yet stored, in order
  std::vector<std::string> in_flight_;  // sent, not yet acknowledged
  int out_fd_ = -1;                     // --output file, else -1 (the output eventlog)
  int err_fd_ = -1;                     // --error file (or the --output one)
  // Why a file could not be opened (the job's tasks do not start then), or
  // "".
  std::string open_output_files(const Json& sys, JobId id, const std::string& node, const std::string& cwd);
  Result<int> task_stdin(const InputSpec& in, int task_rank, const std::string& cwd);
  bool commit_in_flight_ = false;
  std::string error_;

  void read(Stream& s);
  void emit(const Stream& s, std::string_view data);
  void note(const std::string& text);
  void flush();
  void requeue();
  bool done() const {
    return open_streams_ == 0 && std::all_of(tasks_.begin(), tasks_.end(), [](const Task& t) { return t.exited; }) &&
           pending_.empty() && !commit_in_flight_ && (!pmi_ || pmi_->idle());
  }
};

// A line of the shell's own on the job's stderr (task rank -1).
void Shell::note(const std::string& text) {
  std::string line = dump_json(output_entry("stderr", -1, "loom-shell: " + text + "\n")) + "\n";
  held_bytes_ += line.size();
  pending_.push_back(std::move(line));
  flush();
}

void Shell::emit(const Stream& s, std::string_view data) {
  int fd = std::string_view(s.name) == "stdout" ? out_fd_ : err_fd_;
  if (fd >= 0) {
    // To the file the job asked for (opened O_APPEND: shells of other
    // ranks append to it too).
    if (!write_all(fd, data) && error_.empty()) error_ = std::string("cannot write output: ") + std::strerror(errno);
    return;
  }
  std::string line = dump_json(output_entry(s.name, s.task_rank, data)) + "\n";
  if (stored_bytes_ + line.size() > store_limit_) {
    if (!truncated_) {
      truncated_ = true;
      note("output past " + std::to_string(store_limit_ >> 10) +
           " KiB on this rank is dropped (a job's output holds 16 MiB; --output writes it all to a file)");
    }
    return;
  }
  stored_bytes_ += line.size();
  if (!connected() && held_bytes_ + line.size() > kMaxHeldOutput) {
    if (!dropped_) {
      dropped_ = true;
      note("output dropped while the broker was away");
    }
    return;
  }
  held_bytes_ += line.size();
  pending_.push_back(std::move(line));
  flush();
}

// --output/--error of the job: attributes.system.shell.options.output.
// The templates the submitter left for the shell to fill in (the others,
// {{name}} and {{cc}}, are filled in at submit, which refuses unknown ones):
// {{id}} and {{id.f58}} the job id, {{id.dec}} in decimal, {{node}} this
// rank's host name.
std::string Shell::open_output_files(const Json& sys, JobId id, const std::string& node, const std::string& cwd) {
  if (!sys.contains("shell") || !sys["shell"].is_object()) return "";
  const Json& opts = sys["shell"].value("options", Json::object());
  if (!opts.is_object() || !opts.contains("output") || !opts["output"].is_object()) return "";
  std::string failed;
  auto open_one = [&](const char* stream) -> int {
    const Json& o = opts["output"];
    if (!o.contains(stream) || !o[stream].is_object() || o[stream].value("type", "") != "file") return -1;
    std::string path = o[stream].value("path", "");
    for (const auto& [key, value] : {std::pair<std::string, std::string>{"{{id}}", encode_f58(id)},
                                     {"{{id.f58}}", encode_f58(id)},
                                     {"{{id.dec}}", std::to_string(id.value())},
                                     {"{{node}}", node}}) {
      // (On after what was put in: a host name may hold anything.)
      for (size_t at = 0; (at = path.find(key, at)) != std::string::npos; at += value.size()) {
        path.replace(at, key.size(), value);
      }
    }
    if (!path.empty() && path[0] != '/' && !cwd.empty()) path = cwd + "/" + path;
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 && failed.empty()) failed = "cannot open " + path + ": " + std::strerror(errno);
    return fd;
  };
  out_fd_ = open_one("stdout");
  err_fd_ = open_one("stderr");
  if (err_fd_ < 0 && out_fd_ >= 0 && !opts["output"].contains("stderr")) err_fd_ = out_fd_;
  return failed;
}

void Shell::flush() {
  if (commit_in_flight_ || pending_.empty() || !connected() || (retry_timer_ && retry_timer_->armed())) return;
  std::string lines;
  while (!pending_.empty() && (lines.empty() || lines.size() + pending_.front().size() <= kCommitChunk)) {
    lines += pending_.front();
    in_flight_.push_back(std::move(pending_.front()));
    pending_.pop_front();
  }
  Json ops = Json::array({Json{{"op", "append"}, {"key", kvs_key::kOutput}, {"value", std::move(lines)}}});
  commit_in_flight_ = true;
  uint64_t gen = generation_;
  c_->handle().rpc("kvs.commit", Json{{"namespace", ns_}, {"ops", ops}}, {}, [this, gen](const Message& r) {
    if (gen != generation_) return;  // requeued by reconnect()
    commit_in_flight_ = false;
    bool transient = r.errnum == EHOSTUNREACH || r.errnum == ENOSYS || r.errnum == EAGAIN;
    if (r.errnum && (!connected() || transient)) {
      // The broker went away with the commit, or cannot reach the KVS yet
      // (a restarted rank still joining): it goes again, first (at least
      // once: it may end up stored twice).
      requeue();
      if (connected()) {
        if (!retry_timer_) retry_timer_ = clock_.make_timer();
        retry_timer_->arm(0.25, [this] { flush(); });
      }
      return;
    }
    if (r.errnum && error_.empty()) error_ = "cannot store output: " + error_text(r);
    for (const auto& l : in_flight_) held_bytes_ -= std::min(held_bytes_, l.size());
    in_flight_.clear();
    flush();
  });
}

// What was in flight goes back to the front of the queue.
void Shell::requeue() {
  for (auto it = in_flight_.rbegin(); it != in_flight_.rend(); ++it) pending_.push_front(std::move(*it));
  in_flight_.clear();
  commit_in_flight_ = false;
}

void Shell::kill_tasks() {
  // Whatever the tasks started, setsid or not (cgroup.kill is root's: one
  // by one).
  if (!cgroup_.empty()) signal_cgroup(cgroup_, SIGKILL, ::getpid());
  for (auto& t : tasks_) {
    if (t.exited) continue;
    ::kill(t.pid, SIGKILL);
    int st = 0;
    ::waitpid(t.pid, &st, 0);
    t.exited = true;
    t.status = st;
  }
}

// `sig` to every process of the job here but us: with a cgroup, every
// process in it; else our process group (we lead it), what the tasks
// started included.
void Shell::signal_job(int sig) {
  pid_t me = ::getpid();
  if (!cgroup_.empty()) return signal_cgroup(cgroup_, sig, me);
  if (::getpgrp() == me) {
    for (pid_t p : process_group_members(me)) {
      if (p != me) ::kill(p, sig);
    }
    return;
  }
  for (auto& t : tasks_) {
    if (!t.exited) ::kill(t.pid, sig);
  }
}

// SIGKILL to every process of the job here but us, until none is left (one
// may fork meanwhile).
void Shell::kill_leftovers() {
  pid_t me = ::getpid();
  for (int round = 0; round < 8; ++round) {
    std::vector<pid_t> left;
    if (!cgroup_.empty()) {
      left = cgroup_pids(cgroup_);
    } else if (::getpgrp() == me) {
      left = process_group_members(me);
    }
    std::erase(left, me);
    if (left.empty()) return;
    for (pid_t p : left) ::kill(p, SIGKILL);
  }
}

// The descriptor task `task_rank` reads as its stdin (-1: /dev/null): a
// pipe from the input eventlog, or the input file opened for it alone.
Result<int> Shell::task_stdin(const InputSpec& in, int task_rank, const std::string& cwd) {
  if (!in.reads(task_rank)) return -1;
  if (in.kind == InputSpec::Kind::kKvs) return input_.add(task_rank);
  std::string path = in.path[0] == '/' || cwd.empty() ? in.path : cwd + "/" + in.path;
  // Not waiting on a FIFO or a device: a regular file only.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Error{errno, "cannot open the input " + path + ": " + std::strerror(errno)};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error{EINVAL, "the input " + path + " is not a regular file"};
  }
  ::fcntl(fd, F_SETFL, O_RDONLY);
  return fd;
}

// Follows the job's input eventlog for the tasks here that read it (again
// from its start after the broker came back: what was taken is skipped).
void Shell::watch_input() {
  if (input_.empty() || !connected()) return;
  input_.restart();
  Json req{{"namespace", ns_}, {"key", kvs_key::kInput}, {"append", true}, {"waitcreate", true}, {"from", "start"}};
  uint64_t gen = generation_;
  c_->handle().rpc("kvs.watch", req, {kNodeAny, true, 0}, [this, gen](const Message& m) {
    if (gen != generation_ || m.errnum) return;
    auto j = parse_json(m.payload);
    if (!j.ok() || !j->contains("data") || !(*j)["data"].is_string()) return;
    input_.feed((*j)["data"].get<std::string>());
  });
}

// The PMI server of this shell's tasks; its exchange with the other shells
// goes through the job's `pmi` key (docs/pmi.md). A task that aborts the
// job, or leaves the wire-up half done, ends it: every process of the job
// here is killed, and the other shells do the same on reading why.
void Shell::start_pmi(const PmiJob& job) {
  auto handle = [this] { return connected() ? &c_->handle() : nullptr; };  // none while the broker is away
  pmi_ = std::make_unique<PmiServer>(io_, job, pmi_kvs_exchange(handle, ns_), [this](const std::string& why) {
    note(why + "; killing the job's tasks");
    ending_ = true;
    pmi_->set_ending();
    signal_job(SIGKILL);
  });
}

// Rank 0's socket, beside ours: the brokers of an instance listen side by
// side (RUNDIR/rank-R.sock, `loom start`). "" when ours is rank 0's or is
// named otherwise.
std::string rank0_uri(const std::string& uri) {
  size_t slash = uri.rfind('/');
  if (slash == std::string::npos) return "";
  std::string name = uri.substr(slash + 1);
  if (!name.starts_with("rank-") || !name.ends_with(".sock") || name == "rank-0.sock") return "";
  return uri.substr(0, slash + 1) + "rank-0.sock";
}

// Asks the instance (through `h`) whether the job still holds this rank:
// its eventlog, from job-info. Sets gone_ or held_ (for now: rank 0 is
// asked again while our broker is away) once it knows; an error leaves
// both for the next time.
void Shell::ask_instance(Handle& h) {
  if (asking_ || !gone_.empty()) return;
  asking_ = true;
  asked_at_ = clock_.now();
  uint64_t gen = ask_gen_;
  Json ask{{"id", info_["id"]}, {"keys", Json::array({kvs_key::kEventlog})}};
  h.rpc("job-info.lookup", ask, RpcOptions{.timeout = 5}, [this, gen](const Message& r) {
    if (gen != ask_gen_) return;
    asking_ = false;
    if (r.errnum == ENOENT) {
      // Not a job of this instance (any more), or one with no eventlog.
      gone_ = "the instance does not know the job";
      return;
    }
    auto p = parse_json(r.payload);
    if (r.errnum || !p.ok() || !p->is_object() || !(*p)[kvs_key::kEventlog].is_string()) return;
    if (auto why = released_here((*p)[kvs_key::kEventlog].get<std::string>(), rank_)) {
      gone_ = *why;
    } else {
      held_ = true;
    }
  });
}

// Once adopted by a broker: does the instance still hold this rank for the
// job? Asked until it says (a restarted instance may not answer yet).
void Shell::check_held() {
  if (!connected() || held_ || !gone_.empty()) return;
  ask_instance(c_->handle());
  if (!ask_timer_) ask_timer_ = clock_.make_timer();
  ask_timer_->arm(0.5, [this] { check_held(); });
}

// While our broker is away: rank 0, once a second, if it listens beside
// it. A rank lost while the job ran (the broker killed, or stopped for
// longer than the heartbeat timeout) is released from the job, which ends
// with a node-failure: then nobody will come back for these tasks.
void Shell::probe_instance() {
  if (instance_uri_.empty() || asking_ || clock_.now() - asked_at_ < 1.0) return;
  if (!probe_ || !probe_->is_open()) {
    forget_asks();
    probe_.reset();
    asked_at_ = clock_.now();
    auto c = Client::connect(io_, clock_, instance_uri_);
    if (!c.ok() || (*c)->peer_uid() != broker_uid_) return;
    probe_ = std::move(*c);
  }
  ask_instance(probe_->handle());
}

// The broker is gone: keep the tasks going (their output is held) and try
// its socket again every quarter of a second, for up to `timeout` seconds.
// A broker there adopts us; true once it did. Meanwhile rank 0 is asked
// whether the job still holds this rank: false at once when it does not,
// or when we are told to end (SIGTERM...).
bool Shell::reconnect(double timeout) {
  std::fprintf(stderr, "loom-shell: job %s: lost the broker; waiting up to %g s for it to come back\n",
               id_text_.c_str(), timeout);
  // A commit in flight has no answer coming: it is sent again later.
  ++generation_;
  requeue();
  if (retry_timer_) retry_timer_->cancel();
  forget_asks();
  c_.reset();
  dropped_ = false;
  held_ = false;
  double deadline = clock_.now() + timeout;
  while (clock_.now() < deadline) {
    double until = std::min(deadline, clock_.now() + 0.25);
    // Serve the tasks' output and exits meanwhile.
    while (clock_.now() < until) {
      io_.restart();
      auto slice = std::chrono::microseconds(static_cast<int64_t>((until - clock_.now()) * 1e6));
      if (io_.run_for(slice) == 0) {
        // Nothing to wait on (every task is done): just wait.
        double left = until - clock_.now();
        if (left > 0) {
          timespec ts{static_cast<time_t>(left), static_cast<long>((left - static_cast<time_t>(left)) * 1e9)};
          ::nanosleep(&ts, nullptr);
        }
      }
      if (!gone_.empty() || end_while_away_) break;
    }
    if (end_while_away_) {
      std::fprintf(stderr, "loom-shell: job %s: told to end while the broker is away; killing the tasks\n",
                   id_text_.c_str());
      return false;
    }
    probe_instance();
    if (!gone_.empty()) {
      std::fprintf(stderr, "loom-shell: job %s: %s; killing the tasks\n", id_text_.c_str(), gone_.c_str());
      return false;
    }
    auto c = Client::connect(io_, clock_, uri_);
    if (!c.ok()) continue;
    if ((*c)->peer_uid() != broker_uid_) {
      // Someone else listens where the broker was (its run directory went
      // with it): tell it nothing, not even who we are.
      std::fprintf(stderr, "loom-shell: job %s: refusing what listens at %s: it runs as uid %u, not the brokers' %u\n",
                   id_text_.c_str(), uri_.c_str(), (*c)->peer_uid(), broker_uid_);
      continue;
    }
    c_ = std::move(*c);
    auto adopted = c_->call("shell.adopt",
                            Json{{"id", info_["id"]}, {"rank", rank_}, {"pid", ::getpid()}, {"ntasks", tasks_.size()}});
    if (!adopted.ok()) {
      std::fprintf(stderr, "loom-shell: job %s: the broker did not adopt this shell: %s\n", id_text_.c_str(),
                   adopted.error().text.c_str());
      c_.reset();
      return false;
    }
    std::fprintf(stderr, "loom-shell: job %s: adopted by the restarted broker\n", id_text_.c_str());
    adopted_ = true;
    forget_asks();
    probe_.reset();
    flush();
    watch_input();
    if (pmi_) pmi_->rewatch();
    check_held();
    return true;
  }
  std::fprintf(stderr, "loom-shell: job %s: the broker did not come back; killing the tasks\n", id_text_.c_str());
  return false;
}

// An adopted shell is not the broker's child: it says how it exits.
// Each task's exit, for the exec eventlog: to the broker that adopted us
// with our exit code, else on stdout, a pipe the shell launch service
// reads once we have exited (shell/report.h). The line must fit in the
// pipe, or the write would block with nobody reading: the pipe is grown to
// hold it (thousands of tasks), and if it cannot be, the tasks that do not
// fit are only counted.
void Shell::report_exit(int code) {
  if (adopted_) {
    if (!connected()) return;
    Json tasks = Json::array();
    for (const auto& t : tasks_) tasks.push_back(Json::array({t.rank, t.status}));
    auto r = c_->call("shell.done", Json{{"id", info_["id"]}, {"status", code}, {"tasks", tasks}});
    if (!r.ok()) std::fprintf(stderr, "loom-shell: job %s: shell.done: %s\n", id_text_.c_str(), r.error().text.c_str());
    return;
  }
  std::vector<std::pair<int, int>> tasks;
  for (const auto& t : tasks_) tasks.emplace_back(t.rank, t.status);
  std::string line = exit_report(tasks, 0);
  // (The first line is in the pipe already: what is left of it is ours.)
  int cap = ::fcntl(1, F_GETPIPE_SZ);  // -1: not a pipe (then a write cannot stall)
  if (cap > 0 && line.size() + report_written_ > static_cast<size_t>(cap)) {
    int got = ::fcntl(1, F_SETPIPE_SZ, static_cast<int>(line.size() + report_written_));
    if (got > cap) cap = got;
    size_t room = static_cast<size_t>(cap) - std::min(static_cast<size_t>(cap), report_written_);
    if (line.size() > room) line = exit_report(tasks, room);
  }
  if (::write(1, line.data(), line.size()) < 0) return;  // nobody reads it (not started by the service)
}

void Shell::read(Stream& s) {
  s.fd->async_read_some(asio::buffer(s.buf), [this, &s](const std::error_code& ec, size_t n) {
    if (!ec) {
      s.partial.append(s.buf.data(), n);
      // Whole lines go out as they come; a line longer than a chunk is cut.
      size_t start = 0;
      for (;;) {
        size_t nl = s.partial.find('\n', start);
        if (nl == std::string::npos) break;
        emit(s, std::string_view(s.partial).substr(start, nl + 1 - start));
        start = nl + 1;
      }
      s.partial.erase(0, start);
      while (s.partial.size() >= kOutputChunk) {
        emit(s, std::string_view(s.partial).substr(0, kOutputChunk));
        s.partial.erase(0, kOutputChunk);
      }
      return read(s);
    }
    if (!s.partial.empty()) emit(s, s.partial);
    s.partial.clear();
    s.fd.reset();
    --open_streams_;
  });
}

int Shell::run() {
  auto js = parse_jobspec(info_["jobspec"]);
  if (!js.ok()) shell_die("jobspec: " + js.error().text);
  auto R = ResourceSet::parse(info_["R"]);
  if (!R.ok()) shell_die("R: " + R.error().text);
  store_limit_ = std::max<size_t>(kMaxStoredOutput / std::max<size_t>(1, R->ranks().size()), 4u << 10);
  if (!info_["rank"].is_number_unsigned() || !info_["id"].is_number_unsigned()) shell_die("bad job info");
  uint32_t my_rank = info_["rank"].get<uint32_t>();
  JobId id{info_["id"].get<uint64_t>()};
  rank_ = my_rank;
  id_text_ = encode_f58(id);
  reattach_timeout_ = info_.value("reattach_timeout", 0.0);
  instance_uri_ = rank0_uri(uri_);
  ns_ = info_.value("namespace", "");
  if (ns_.empty()) shell_die("no namespace for the output");

  // Which tasks run here: slots rank by rank, one task per slot in order.
  std::vector<std::pair<uint32_t, uint32_t>> slots;  // rank, slots there
  uint32_t total_slots = 0;
  for (const auto& [rank, res] : R->ranks()) {
    uint32_t n = js->nnodes > 0 ? js->slots_per_node
                                : static_cast<uint32_t>(res.cores.count()) / std::max(1u, js->cores_per_slot);
    slots.emplace_back(rank, n);
    total_slots += n;
  }
  uint32_t per_slot = total_slots > 0 ? std::max(1u, (js->ntasks + total_slots - 1) / total_slots) : 1;
  int first = 0, count = 0;
  uint32_t next = 0;
  // The shells with tasks take part in every PMI barrier; PMI_process_mapping
  // tells MPI which tasks share a node (docs/pmi.md).
  PmiJob pmi_job{.size = static_cast<int>(js->ntasks),
                 .kvsname = "loom_" + std::to_string(id.value()),
                 .nshells = 0,
                 .broker_rank = my_rank,
                 .process_mapping = {}};
  std::vector<uint32_t> per_shell;
  for (auto [rank, n] : slots) {
    uint32_t here = std::min(js->ntasks - std::min(js->ntasks, next), n * per_slot);
    if (rank == my_rank) {
      first = static_cast<int>(next);
      count = static_cast<int>(here);
    }
    if (here > 0) per_shell.push_back(here);
    next += here;
  }
  pmi_job.nshells = static_cast<int>(per_shell.size());
  pmi_job.process_mapping = pmi_process_mapping(per_shell);

  // The environment: the jobspec's (the submitter's), else ours; never
  // the broker's for another user's job.
  std::vector<std::string> env;
  const Json& sys = js->raw["attributes"]["system"];
  if (sys.contains("environment") && sys["environment"].is_object()) {
    for (auto& [k, v] : sys["environment"].items()) {
      if (v.is_string()) env.push_back(k + "=" + v.get<std::string>());
    }
  } else if (!user_) {
    env = current_environment();
  } else {
    env.push_back("PATH=/usr/local/bin:/usr/bin:/bin");
  }
  std::erase_if(env, [](const std::string& e) {
    // Ours to set; and an enclosing job's PMI is not this job's.
    return e.starts_with("LOOM_URI=") || e.starts_with("PMI_FD=") || e.starts_with("PMI_RANK=") ||
           e.starts_with("PMI_SIZE=") || e.starts_with("PMI_SPAWNED=") || e.starts_with("PMI_PORT=") ||
           e.starts_with("PMI_ID=");
  });
  std::string cwd = js->cwd;
  if (user_) {
    // Who the tasks are, from the passwd entry, whatever the jobspec says.
    std::erase_if(env, [](const std::string& e) {
      return e.starts_with("HOME=") || e.starts_with("USER=") || e.starts_with("LOGNAME=") || e.starts_with("SHELL=");
    });
    env.push_back("HOME=" + user_->home);
    env.push_back("USER=" + user_->name);
    env.push_back("LOGNAME=" + user_->name);
    if (!user_->shell.empty()) env.push_back("SHELL=" + user_->shell);
    // Not the broker's working directory.
    if (cwd.empty()) cwd = user_->home;
  }
  // Opened as the job's user: its files are the user's, and a file the
  // user may not write is not written (nor one read that the user may not
  // read).
  std::string node = std::to_string(my_rank);
  if (auto mine = R->ranks().find(my_rank); mine != R->ranks().end() && !mine->second.hostname.empty()) {
    node = mine->second.hostname;
  }
  // A job whose output has nowhere to go does not run (it would be lost).
  const std::string output_failed = open_output_files(sys, id, node, cwd);
  if (const char* uri = std::getenv("LOOM_URI")) env.push_back(std::string("LOOM_URI=") + uri);
  env.push_back("LOOM_JOB_ID=" + encode_f58(id));
  if (js->batch) {
    // Inside a batch job, loom run and loom submit place their work in its
    // allocation (docs/steps.md).
    std::erase_if(env, [](const std::string& e) { return e.starts_with("LOOM_ALLOCATION="); });
    env.push_back("LOOM_ALLOCATION=" + encode_f58(id));
  }
  env.push_back("LOOM_JOB_SIZE=" + std::to_string(js->ntasks));
  env.push_back("LOOM_JOB_NNODES=" + std::to_string(R->ranks().size()));
  env.push_back("LOOM_JOB_RANKS=" + R->rank_set().encode());
  env.push_back("LOOM_RANK=" + std::to_string(my_rank));
  // The hosts of the job's ranks, as a hostlist (when R names them).
  std::string nodelist;
  for (const auto& [rank, res] : R->ranks()) {
    if (!res.hostname.empty()) nodelist += (nodelist.empty() ? "" : ",") + res.hostname;
  }
  if (!nodelist.empty()) env.push_back("LOOM_JOB_NODELIST=" + nodelist);
  env.push_back("PMI_SIZE=" + std::to_string(js->ntasks));
  env.push_back("PMI_FD=" + std::to_string(kPmiFd));
  cgroup_ = info_.value("cgroup", std::string());

  // This rank's cores and GPUs in R: the tasks run on those cores (our own
  // affinity, which they inherit) and see those GPUs only.
  std::erase_if(env, [](const std::string& e) { return e.starts_with("CUDA_VISIBLE_DEVICES="); });
  if (auto mine = R->ranks().find(my_rank); mine != R->ranks().end()) {
    if (auto st = bind_to_cores(mine->second.cores); !st.ok()) note(st.error().text);
    std::string gpus;
    for (uint32_t g : mine->second.gpus.to_vector()) gpus += (gpus.empty() ? "" : ",") + std::to_string(g);
    if (!gpus.empty()) env.push_back("CUDA_VISIBLE_DEVICES=" + gpus);
  }

  asio::signal_set signals(io_, SIGTERM, SIGINT, SIGHUP);
  signals.add(SIGALRM);
  signals.add(SIGUSR1);
  signals.add(SIGUSR2);
  std::function<void()> forward = [&] {
    signals.async_wait([&](const std::error_code& ec, int sig) {
      if (ec) return;
      // To every process of the job here: the tasks and what they started.
      signal_job(sig);
      if (sig != SIGUSR1 && sig != SIGUSR2) {
        ending_ = true;
        if (pmi_) pmi_->set_ending();
        if (!connected()) end_while_away_ = true;
      }
      forward();
    });
  };
  forward();

  tasks_.resize(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) tasks_[static_cast<size_t>(i)].rank = first + i;
  // The report's first line (shell/report.h): should we be killed before
  // we can tell the tasks' exits, they are still counted.
  std::string first_line = start_report(tasks_.size());
  if (::write(1, first_line.data(), first_line.size()) == static_cast<ssize_t>(first_line.size())) {
    report_written_ = first_line.size();
  }
  // Two pipes and a pidfd per task, and the end we write of the stdin pipe
  // of each task that reads the job's input: many tasks need more
  // descriptors than a default soft limit allows (the hard limit is ours
  // to take).
  if (!output_failed.empty()) return cannot_start(0, output_failed);
  rlimit nofile{};
  // And the shell's end of each task's PMI connection.
  rlim_t needed = 4 * static_cast<rlim_t>(count) + 64;
  for (int i = 0; i < count; ++i) {
    if (js->input.kind == InputSpec::Kind::kKvs && js->input.reads(first + i)) ++needed;
  }
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < needed) {
    if (nofile.rlim_max < needed) {
      return cannot_start(0, std::to_string(count) + " tasks on rank " + std::to_string(my_rank) + " need " +
                                 std::to_string(needed) + " file descriptors; the limit here is " +
                                 std::to_string(nofile.rlim_max));
    }
    nofile.rlim_cur = needed;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }
  start_pmi(pmi_job);
  for (int i = 0; i < count; ++i) {
    Task& t = tasks_[static_cast<size_t>(i)];
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return cannot_start(i, std::string("pipe: ") + std::strerror(errno));
    if (::pipe2(err, O_CLOEXEC) != 0) {
      ::close(out[0]);
      ::close(out[1]);
      return cannot_start(i, std::string("pipe: ") + std::strerror(errno));
    }
    SpawnSpec spec;
    spec.argv = js->command;
    if (js->batch) {
      // The script as it was submitted, not the file it came from.
      auto path = write_batch_script(id_text_, js->script, env, script_dir_);
      if (!path.ok()) {
        for (int fd : {out[0], out[1], err[0], err[1]}) ::close(fd);
        return cannot_start(i, path.error().text);
      }
      spec.argv[0] = *path;
    }
    spec.env = env;
    spec.env.push_back("LOOM_TASK_RANK=" + std::to_string(t.rank));
    spec.env.push_back("PMI_RANK=" + std::to_string(t.rank));
    spec.env.push_back("LOOM_TASK_LOCAL_ID=" + std::to_string(i));
    spec.cwd = cwd;
    spec.stdout_fd = out[1];
    spec.stderr_fd = err[1];
    auto in = task_stdin(js->input, t.rank, cwd);
    if (!in.ok()) {
      for (int fd : {out[0], out[1], err[0], err[1]}) ::close(fd);
      return cannot_start(i, in.error().text);
    }
    spec.stdin_fd = *in;
    auto pmi_fd = pmi_->add_task(t.rank);
    if (!pmi_fd.ok()) {
      for (int fd : {out[0], out[1], err[0], err[1], *in}) {
        if (fd >= 0) ::close(fd);
      }
      return cannot_start(i, pmi_fd.error().text);
    }
    spec.pmi_fd = *pmi_fd;
    auto pid = spawn(spec);
    ::close(out[1]);
    ::close(err[1]);
    ::close(*pmi_fd);
    if (*in >= 0) ::close(*in);
    for (auto [fd, name] : {std::pair{out[0], "stdout"}, std::pair{err[0], "stderr"}}) {
      auto s = std::make_unique<Stream>();
      s->task_rank = t.rank;
      s->name = name;
      s->fd = std::make_unique<asio::posix::stream_descriptor>(io_, fd);
      ++open_streams_;
      read(*s);
      streams_.push_back(std::move(s));
    }
    if (!pid.ok()) {
      // Like a shell: the error on the task's stderr, exit code 127 (not
      // found) or 126 (cannot run).
      Stream& es = *streams_.back();
      emit(es, "loom-shell: " + pid.error().text + "\n");
      t.exited = true;
      t.status = (pid.error().code == ENOENT ? 127 : 126) << 8;
      continue;
    }
    t.pid = *pid;
    auto w = ChildWatch::create(io_, *pid, [this, &t](int st) {
      t.exited = true;
      t.status = st;
      pmi_->task_exited(t.rank);
    });
    if (!w.ok()) return cannot_start(i + 1, w.error().text);
    t.watch = std::move(*w);
  }
  watch_input();
  return wait_tasks();
}

// Not every task could be started (from task `from` on): the job fails
// whole. Those started are killed, the others count as not runnable (126),
// and the job's stderr says why.
int Shell::cannot_start(int from, const std::string& why) {
  note(why);
  for (int i = 0; i < from; ++i) {
    Task& t = tasks_[static_cast<size_t>(i)];
    if (t.exited || t.pid <= 0) continue;
    ::kill(t.pid, SIGKILL);
    if (!t.watch) {  // not watched: reaped here
      ::waitpid(t.pid, &t.status, 0);
      t.exited = true;
    }
  }
  for (size_t i = static_cast<size_t>(from); i < tasks_.size(); ++i) {
    tasks_[i].exited = true;
    tasks_[i].status = 126 << 8;
  }
  return wait_tasks();
}

// Until every task has exited and its output is stored; then the exit
// code, as a shell would give it.
int Shell::wait_tasks() {
  while (!done()) {
    if (!gone_.empty()) {
      // Adopted by a broker of an instance that is done with the job here.
      std::fprintf(stderr, "loom-shell: job %s: %s; killing the tasks\n", id_text_.c_str(), gone_.c_str());
      kill_tasks();
      kill_leftovers();
      break;
    }
    if (connected()) {
      io_.run_one();
      if (ending_ && !leftovers_killed_ && open_streams_ > 0 && tasks_exited()) {
        leftovers_killed_ = true;
        kill_leftovers();
      }
      continue;
    }
    if (reattach_timeout_ > 0 && reconnect(reattach_timeout_)) continue;
    // Nobody will store the output or end the job: nothing may keep
    // running unseen.
    if (reattach_timeout_ <= 0) {
      std::fprintf(stderr, "loom-shell: job %s: lost the broker; killing the tasks\n", id_text_.c_str());
    }
    kill_tasks();
    // And whatever they started, in our process group (ours alone: we
    // lead a session). Nobody is left to read our exit status.
    std::fflush(nullptr);
    remove_script();
    if (::getsid(0) == ::getpid()) ::kill(0, SIGKILL);
    break;
  }
  if (!error_.empty()) std::fprintf(stderr, "loom-shell: %s\n", error_.c_str());
  // Exit as a shell would for the worst task: 128+N for a task killed by
  // signal N ranks above any exit code up to 128.
  int worst = 0;
  for (const auto& t : tasks_) worst = std::max(worst, shell_exit_code(t.status));
  report_exit(worst);
  return worst;
}

}  // namespace

int run_job_shell(asio::io_context& io, Clock& clock, std::string uri, uint32_t broker_uid, std::unique_ptr<Client> c,
                  Json info, std::optional<JobUser> user) {
  Shell shell(io, clock, std::move(uri), broker_uid, std::move(c), std::move(info), std::move(user));
  return shell.run();
}

}  // namespace loom
