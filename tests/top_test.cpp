// The job manager's journal (job-manager.events, docs/protocols/jobs.md,
// "Journal") and `loom top` on it (docs/commands.md), on a real instance of
// 4 ranks of 2 cores: a test client reads the journal's stream; `loom top`
// runs in a real terminal, a private tmux server's pane, read back with
// capture-pane once its output (piped to a FIFO) shows what is expected.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "kit/client.h"
#include "kit/jobs.h"
#include "kit/process.h"

namespace loom::test {
namespace {

// One journal as a client reads it: every response, then how it ended.
struct Journal {
  uint32_t tag = 0;
  std::vector<Json> got;
  int end = 0;  // the errnum that ended it; 0 while open
};

class Top : public JobsFixture {
 protected:
  Loop loop;

  // A client of rank 0; with `uid`, speaking as that (non-owner) user.
  std::unique_ptr<Client> connect(std::optional<uint32_t> uid = std::nullopt) {
    if (uid) {
      ::setenv("LOOM_HANDLE_USERID", std::to_string(*uid).c_str(), 1);
      ::setenv("LOOM_HANDLE_ROLEMASK", "2", 1);
    }
    auto c = loop.connect(inst.uri());
    ::unsetenv("LOOM_HANDLE_USERID");
    ::unsetenv("LOOM_HANDLE_ROLEMASK");
    EXPECT_TRUE(c.ok()) << c.error().text;
    return c.ok() ? std::move(*c) : nullptr;
  }
  // Asks for a journal: `j` gathers what comes.
  void request(Client& c, Journal& j) {
    j.tag = c.handle().rpc("job-manager.events", "{}", RpcOptions{0, true, 0}, [&j](const Message& m) {
      if (m.errnum) {
        j.end = m.errnum;
        return;
      }
      j.got.push_back(parse_json(m.payload).value());
    });
  }
  // Opens a journal and waits for its first answer, the active jobs.
  void open(Client& c, Journal& j) {
    request(c, j);
    ASSERT_TRUE(loop.run_until([&] { return !j.got.empty() || j.end; }, 20));
    ASSERT_EQ(j.end, 0);
    ASSERT_TRUE(j.got[0].contains("jobs")) << j.got[0];
    EXPECT_EQ(j.got[0]["more"], false) << j.got[0];
  }
  static uint64_t num(const std::string& id) { return parse_jobid(id).value().value(); }
  // The events of job `id` the journal has given so far, by name.
  static Names events_of(const Journal& j, const std::string& id) {
    Names out;
    for (size_t i = 1; i < j.got.size(); ++i) {
      if (j.got[i].value("id", uint64_t{0}) == num(id) && j.got[i].contains("event")) {
        out.push_back(j.got[i]["event"]["name"].get<std::string>());
      }
    }
    return out;
  }
  bool wait_journal_event(const Journal& j, const std::string& id, const std::string& name) {
    return loop.run_until(
        [&] {
          Names n = events_of(j, id);
          return std::find(n.begin(), n.end(), name) != n.end();
        },
        20);
  }
  // A job that runs and one that waits behind it for cores, named so
  // that sorting by name puts the waiting one first.
  std::pair<std::string, std::string> running_and_pending() {
    std::string running = hold({"--job-name=xrunning"});
    wait_event(running, "alloc");
    std::string pending = hold({"--job-name=awaiting", "-n8"});
    wait_event(pending, "priority");
    settle();
    return {running, pending};
  }
  static std::map<uint64_t, std::string> snapshot_states(const Journal& j) {
    std::map<uint64_t, std::string> out;
    for (const auto& job : j.got.at(0)["jobs"]) out[job["id"].get<uint64_t>()] = job["state"].get<std::string>();
    return out;
  }
};

TEST_F(Top, JournalGivesTheActiveJobsThenEveryEventInOrder) {
  start();
  std::string running = hold();
  wait_event(running, "alloc");
  std::string pending = hold({"-n8"});  // one core is taken: it waits
  wait_event(pending, "priority");
  auto c = connect();
  ASSERT_TRUE(c);
  Journal j;
  open(*c, j);
  EXPECT_EQ(snapshot_states(j), (std::map<uint64_t, std::string>{{num(running), "RUN"}, {num(pending), "SCHED"}}));

  // The pending job's end, event by event as its eventlog has them, each
  // with the job as it is after its loop turn.
  ASSERT_EQ(loom({"cancel", pending}).code, 0);
  wait_event(pending, "clean");
  ASSERT_TRUE(wait_journal_event(j, pending, "clean"));
  Names logged = events(pending);
  Names after_snapshot(logged.begin() + static_cast<long>(logged.size() - events_of(j, pending).size()), logged.end());
  EXPECT_EQ(events_of(j, pending), after_snapshot);
  EXPECT_EQ(events_of(j, pending).front(), "exception");
  EXPECT_EQ(j.got.back()["job"]["state"], "INACTIVE") << j.got.back();
  EXPECT_FALSE(j.got.back()["event"].contains("context")) << j.got.back();  // as in the eventlog

  // A new job from its submit on, with what a table shows of it.
  std::string later = hold({"--job-name=later"});
  ASSERT_TRUE(wait_journal_event(j, later, "alloc"));
  EXPECT_EQ(events_of(j, later), (Names{"submit", "validate", "depend", "priority", "alloc"}));
  for (const auto& e : j.got) {
    if (e.value("id", uint64_t{0}) != num(later)) continue;
    EXPECT_EQ(e["job"]["name"], "later") << e;
    EXPECT_EQ(e["event"]["name"] == "submit" ? e["event"]["context"]["userid"] : e["job"]["userid"],
              e["job"]["userid"]);
  }

  // Cancelled: the stream ends with ENODATA, and there is nothing left to cancel.
  Reply r = call(loop, *c, "job-manager.events-cancel", dump_json(Json{{"matchtag", j.tag}}), {0});
  EXPECT_EQ(r.errnum, 0) << r.errstr;
  ASSERT_TRUE(loop.run_until([&] { return j.end != 0; }));
  EXPECT_EQ(j.end, ENODATA);
  r = call(loop, *c, "job-manager.events-cancel", dump_json(Json{{"matchtag", j.tag}}), {0});
  EXPECT_EQ(r.errnum, ENOENT) << r.errstr;
  // Only a streaming request opens one.
  r = call(loop, *c, "job-manager.events", "{}", {0});
  EXPECT_EQ(r.errnum, EPROTO) << r.errstr;
}

TEST_F(Top, JournalGivesALongQueueInParts) {
  start();
  auto r = loom({"submit", "--cc=1-1001", "--urgency=hold", "true"});
  ASSERT_EQ(r.code, 0) << show(r);
  auto c = connect();
  ASSERT_TRUE(c);
  Journal j;
  request(*c, j);
  ASSERT_TRUE(loop.run_until([&] { return j.got.size() >= 2 || j.end; }, 20));
  ASSERT_EQ(j.end, 0);
  EXPECT_EQ(j.got[0]["jobs"].size(), 1000u);
  EXPECT_EQ(j.got[0]["more"], true);
  EXPECT_EQ(j.got[1]["jobs"].size(), 1u);
  EXPECT_EQ(j.got[1]["more"], false);
}

TEST_F(Top, JournalOfAUserHasOnlyTheirJobs) {
  start({"--setconf", "exec.allow-guest-test=true"});  // the user's job, below
  std::string owners = hold();
  wait_event(owners, "alloc");
  auto oc = connect();
  auto uc = connect(4242);
  ASSERT_TRUE(oc && uc);
  Journal owner, user;
  open(*oc, owner);
  open(*uc, user);
  EXPECT_EQ(snapshot_states(owner).size(), 1u);
  EXPECT_TRUE(snapshot_states(user).empty()) << user.got[0];

  Env as_user = {{"LOOM_HANDLE_USERID", "4242"}, {"LOOM_HANDLE_ROLEMASK", "2"}};
  auto s = loom({"submit", "--setattr=exec.test.override=true", "true"}, as_user);
  ASSERT_EQ(s.code, 0) << show(s);
  std::string theirs = trim(s.out);
  ASSERT_TRUE(wait_journal_event(user, theirs, "alloc"));
  // The owner's job ends, then the user's: the user's journal, in order,
  // would have had the first before the second.
  ASSERT_EQ(loom({"cancel", owners}).code, 0);
  wait_event(owners, "clean");
  ASSERT_EQ(loom({"cancel", theirs}).code, 0);
  ASSERT_TRUE(wait_journal_event(user, theirs, "clean"));
  for (const auto& e : user.got) EXPECT_NE(e.value("id", uint64_t{0}), num(owners)) << e;
  ASSERT_TRUE(wait_journal_event(owner, theirs, "clean"));
  EXPECT_EQ(events_of(owner, owners).back(), "clean");
  // A cancel ends the sender's own journal only (a journal is known by
  // its client and matchtag): the owner's is still open after the user's.
  Reply r = call(loop, *uc, "job-manager.events-cancel", dump_json(Json{{"matchtag", user.tag}}), {0});
  EXPECT_EQ(r.errnum, 0) << r.errstr;
  ASSERT_TRUE(loop.run_until([&] { return user.end != 0; }));
  EXPECT_EQ(owner.end, 0);
  r = call(loop, *oc, "job-manager.events-cancel", dump_json(Json{{"matchtag", owner.tag}}), {0});
  EXPECT_EQ(r.errnum, 0) << r.errstr;
}

// A client holds at most 16 journals; a rank that is lost sends no
// disconnect, and the journals of the clients it served end all the same.
TEST_F(Top, JournalsAreCappedPerClientAndEndWithTheirRank) {
  start({"--heartbeat-interval=0.1", "--heartbeat-timeout=1"});
  inst.expect_clean_exit(false);  // rank 3 is killed on purpose
  auto journals = [&] {
    auto r = loom({"rpc", "job-manager.stats"});
    auto j = parse_json(r.out);
    return j.ok() ? j->value("journals", -1) : -1;
  };
  auto c = connect();
  ASSERT_TRUE(c);
  std::vector<Journal> mine(17);
  for (size_t i = 0; i < 16; ++i) open(*c, mine[i]);
  mine[16].tag = c->handle().rpc("job-manager.events", "{}", RpcOptions{0, true, 0}, [&](const Message& m) {
    if (m.errnum) mine[16].end = m.errnum;
  });
  ASSERT_TRUE(loop.run_until([&] { return mine[16].end != 0; }, 20));
  EXPECT_EQ(mine[16].end, EAGAIN);

  auto far = loop.connect(inst.socket(3));
  ASSERT_TRUE(far.ok()) << far.error().text;
  Journal theirs;
  open(**far, theirs);
  EXPECT_EQ(journals(), 17);
  bool lost = false;
  ASSERT_TRUE(subscribe(loop, c->handle(), "broker.lost", [&](const Message&) { lost = true; }));
  std::string why;
  auto pid = inst.broker_pid(3, &why);
  ASSERT_TRUE(pid) << why;
  ASSERT_EQ(::kill(*pid, SIGKILL), 0);
  ASSERT_TRUE(loop.run_until([&] { return lost; }, 20));
  EXPECT_EQ(journals(), 16);
}

// A listing far over one message's share (8 MiB) comes in parts, each
// well within the 64 MiB frame: job-manager.list says `more` and is asked
// again from its last job; the journal's first answer takes several
// parts. 100 held jobs of 100 kB names make 10 MB of listing.
TEST_F(Top, LongListingsComeInPartsWithinTheFrame) {
  start();
  auto submitted = loom({"submit", "--cc=1-100", "--urgency=0", "--job-name=" + std::string(100000, 'n'), "true"});
  ASSERT_EQ(submitted.code, 0) << show(submitted);
  std::vector<std::string> submitted_ids = submitted.out_lines();
  std::set<std::string> ids(submitted_ids.begin(), submitted_ids.end());
  ASSERT_EQ(ids.size(), 100u);

  auto first = loom({"rpc", "job-manager.list", "{}"});
  ASSERT_EQ(first.code, 0) << first.err;
  auto part = parse_json(first.out);
  ASSERT_TRUE(part.ok()) << part.error().text;
  EXPECT_EQ((*part)["more"], true);
  EXPECT_GT((*part)["jobs"].size(), 0u);
  EXPECT_LT((*part)["jobs"].size(), 100u);
  EXPECT_LE(first.out.size(), size_t{9} << 20);

  auto listed = loom({"jobs", "-n", "-o", "{id}"});
  ASSERT_EQ(listed.code, 0) << listed.err;
  std::vector<std::string> lines = listed.out_lines();
  ASSERT_EQ(lines.size(), 100u) << "every job once";
  EXPECT_EQ(std::set<std::string>(lines.begin(), lines.end()), ids);
  // A count (sent to the job manager as its limit) past the first part:
  // the first N of the whole listing.
  const size_t n = std::min<size_t>((*part)["jobs"].size() + 5, lines.size());
  auto some = loom({"jobs", "-n", "-o", "{id}", "-c", std::to_string(n)});
  ASSERT_EQ(some.code, 0) << show(some);
  EXPECT_EQ(some.out_lines(), std::vector<std::string>(lines.begin(), lines.begin() + static_cast<long>(n)));

  auto c = connect();
  ASSERT_TRUE(c);
  Journal j;
  request(*c, j);
  ASSERT_TRUE(loop.run_until([&] { return j.end || (!j.got.empty() && j.got.back()["more"] == false); }, 20));
  ASSERT_EQ(j.end, 0);
  EXPECT_GE(j.got.size(), 2u);
  std::set<uint64_t> journaled;
  size_t total = 0;
  for (const auto& p : j.got) {
    for (const auto& job : p["jobs"]) journaled.insert(job["id"].get<uint64_t>());
    total += p["jobs"].size();
  }
  EXPECT_EQ(total, 100u);
  EXPECT_EQ(journaled.size(), 100u);
}

TEST_F(Top, PrintsTheScreenOnceWhenNotATerminal) {
  start();
  auto [running, pending] = running_and_pending();
  auto r = loom({"top"});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("jobs: 1 running, 1 pending"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cores 1/8 used"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("xrunning"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("awaiting"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rank 3"), std::string::npos) << r.out;

  auto gone = inst.loom({"top"}, {{"LOOM_URI", "local://" + inst.rundir() + "/nothing.sock"}});
  EXPECT_EQ(gone.code, 1) << show(gone);
  ASSERT_EQ(gone.err_lines().size(), 1u) << show(gone);
  EXPECT_TRUE(gone.err.starts_with("loom top: ")) << gone.err;
}

// A directory of its own for the pane's FIFO and what the shell in it
// writes (the instance's run directory goes with the instance).
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "loomtop-XXXXXX").string();
    path = ::mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
};

// The path of `name` in PATH, "" if it is in none.
std::string which(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

// A private tmux server running `loom top` in a 120x40 pane, its output
// piped to a FIFO this test reads. The shell in the pane signals the
// channel `topdone` once loom top has exited and then stays (`read`), so
// that the server is still there for the test's `wait-for`; the
// destructor kills the server.
class Tmux {
 public:
  // `socket`: the private server's socket (tmux -S), in a directory the
  // test removes.
  Tmux(const std::string& dir, const std::string& socket, const std::string& command) : dir_(dir), socket_(socket) {
    fifo_ = dir + "/pane.fifo";
    ::mkfifo(fifo_.c_str(), 0600);
    // Read and write: no EOF between the writers tmux starts.
    fd_ = ::open(fifo_.c_str(), O_RDWR | O_NONBLOCK);
    started_ = tmux({"-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "40", "-s", "top", command}).code == 0;
    if (started_) piped_ = tmux({"pipe-pane", "-t", "top", "-o", "cat > " + fifo_}).code == 0;
  }
  ~Tmux() {
    tmux({"kill-server"});
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return started_ && piped_ && fd_ >= 0; }
  CmdResult tmux(std::vector<std::string> args, double timeout = 20) const {
    args.insert(args.begin(), {which("tmux"), "-S", socket_});
    return run_cmd(args, {{"TMUX", ""}}, timeout);
  }
  // Reads the pane's output until every one of `texts` came after the
  // last call, up to `timeout` seconds.
  bool wait_for(const std::vector<std::string>& texts, double timeout = 20) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
    for (;;) {
      bool all = true;
      for (const auto& t : texts) all = all && seen_.find(t) != std::string::npos;
      if (all) {
        seen_.clear();
        return true;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[65536];
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n > 0) seen_.append(buf, static_cast<size_t>(n));
    }
  }
  std::vector<std::string> screen() const { return tmux({"capture-pane", "-p", "-t", "top"}).out_lines(); }
  void keys(const std::string& k) const { tmux({"send-keys", "-t", "top", k}); }

 private:
  std::string dir_, socket_, fifo_;
  int fd_ = -1;
  bool started_ = false, piped_ = false;
  std::string seen_;
};

size_t row_of(const std::vector<std::string>& screen, const std::string& text) {
  for (size_t i = 0; i < screen.size(); ++i) {
    if (screen[i].find(text) != std::string::npos) return i;
  }
  return std::string::npos;
}

std::string all_of(const std::vector<std::string>& screen) {
  std::string s;
  for (const auto& l : screen) s += l + "\n";
  return s;
}

TEST_F(Top, RunsInATerminalSortsAndQuits) {
  if (which("tmux").empty()) GTEST_SKIP() << "tmux is not installed (scripts/deps installs it)";
  start();
  auto [running, pending] = running_and_pending();

  TempDir tmp;
  const std::string& dir = tmp.path;
  std::string rc_file = dir + "/top.rc";
  std::string sock = dir + "/tmux.sock";
  std::string command = "env LOOM_URI='" + inst.uri() + "' LOOM_HANDLE_USERID= LOOM_HANDLE_ROLEMASK= '" + bin("loom") +
                        "' top; echo $? > '" + rc_file + "'; tmux -S '" + sock + "'" +
                        " wait-for -S topdone; read keep";
  Tmux t(dir, sock, command);
  ASSERT_TRUE(t.ok());

  // The first screens: both jobs, the pending one's reason, the bars.
  ASSERT_TRUE(t.wait_for({"xrunning", "awaiting", "sorted by state"})) << all_of(t.screen());
  auto screen = t.screen();
  std::string text = all_of(screen);
  size_t run_row = row_of(screen, "xrunning"), pend_row = row_of(screen, "awaiting");
  ASSERT_NE(run_row, std::string::npos) << text;
  ASSERT_NE(pend_row, std::string::npos) << text;
  EXPECT_LT(run_row, pend_row) << text;  // running first
  EXPECT_NE(screen[run_row].find("RUN"), std::string::npos) << text;
  EXPECT_NE(screen[pend_row].find("SCHED"), std::string::npos) << text;
  EXPECT_NE(screen[pend_row].find("insufficient resources"), std::string::npos) << text;
  EXPECT_NE(text.find("jobs: 1 running, 1 pending"), std::string::npos) << text;
  EXPECT_NE(text.find("cores 1/8 used"), std::string::npos) << text;
  EXPECT_NE(text.find("[||||||||||||            ]   1/2   cores"), std::string::npos) << text;
  EXPECT_NE(row_of(screen, "rank 3"), std::string::npos) << text;
  EXPECT_NE(screen.back().find("q quit"), std::string::npos) << text;

  // By name: the pending job comes first now.
  t.keys("n");
  ASSERT_TRUE(t.wait_for({"sorted by name", "xrunning"})) << all_of(t.screen());
  screen = t.screen();
  EXPECT_LT(row_of(screen, "awaiting"), row_of(screen, "xrunning")) << all_of(screen);

  // A job that ends leaves the table.
  ASSERT_EQ(loom({"cancel", running}).code, 0);
  wait_event(pending, "alloc");
  ASSERT_TRUE(t.wait_for({"jobs: 1 running, 0 pending"})) << all_of(t.screen());
  EXPECT_EQ(row_of(t.screen(), "xrunning"), std::string::npos) << all_of(t.screen());

  // q ends it, with the terminal given back, exit 0.
  t.keys("q");
  auto w = t.tmux({"wait-for", "topdone"});
  ASSERT_EQ(w.code, 0) << show(w);
  std::ifstream rc(rc_file);
  std::string code;
  std::getline(rc, code);
  EXPECT_EQ(code, "0");
}

}  // namespace
}  // namespace loom::test

namespace loom::test {
namespace {

TEST_F(Top, GivesTheTerminalBackWhenTheInstanceGoes) {
  if (which("tmux").empty()) GTEST_SKIP() << "tmux is not installed (scripts/deps installs it)";
  start();
  std::string running = hold({"--job-name=xrunning"});
  wait_event(running, "alloc");
  TempDir tmp;
  const std::string& dir = tmp.path;
  std::string sock = dir + "/tmux.sock";
  std::string command = "env LOOM_URI='" + inst.uri() + "' LOOM_HANDLE_USERID= LOOM_HANDLE_ROLEMASK= '" + bin("loom") +
                        "' top 2> '" + dir + "/top.err'; echo $? > '" + dir + "/top.rc'; tmux -S '" + sock + "'" +
                        " wait-for -S topdone; read keep";
  Tmux t(dir, sock, command);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t.wait_for({"xrunning", "sorted by state"})) << all_of(t.screen());
  ASSERT_TRUE(inst.stop().has_value());
  // The normal screen and the cursor back, then one line of error, exit 1.
  ASSERT_TRUE(t.wait_for({"\x1b[?25h\x1b[?1049l"}));
  auto w = t.tmux({"wait-for", "topdone"});
  ASSERT_EQ(w.code, 0) << show(w);
  std::ifstream rc(dir + "/top.rc"), err(dir + "/top.err");
  std::string code, line, more;
  std::getline(rc, code);
  std::getline(err, line);
  EXPECT_EQ(code, "1");
  EXPECT_TRUE(line.starts_with("loom top: ")) << line;
  EXPECT_FALSE(std::getline(err, more)) << more;
}

}  // namespace
}  // namespace loom::test
