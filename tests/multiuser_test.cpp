// Jobs run as their users (docs/security.md; docs/protocols/exec.md, "Whose
// processes"). With real users made for the test (kit/users.h) and an
// instance started as root, each user submits from their own account (a
// `loom` run as that user, in their own directory), and the test checks
// who each job's processes are, what they see, and what they may touch.
// These need root and are skipped otherwise; the refusal of other users'
// jobs by an instance that cannot switch users runs either way.
#include <dirent.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/fluid.h"
#include "kit/exec.h"
#include "kit/instance.h"
#include "kit/users.h"
#include "msg/json.h"

namespace loom::test {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string field; std::getline(in, field, sep);) out.push_back(field);
  return out;
}

// "3 1 2" → "1 2 3"
std::string sorted_words(const std::string& s) {
  std::vector<long> v;
  std::stringstream in(s);
  for (long x; in >> x;) v.push_back(x);
  std::sort(v.begin(), v.end());
  std::string out;
  for (long x : v) out += (out.empty() ? "" : " ") + std::to_string(x);
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Real and effective uid of a process (from /proc/PID/status), or -1.
long process_uid(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (!line.starts_with("Uid:")) continue;
    std::stringstream f(line.substr(4));
    long real = -1, effective = -1;
    f >> real >> effective;
    return real == effective ? real : -1;
  }
  return -1;
}

// Every process of session `sid` (a job shell leads its own).
std::vector<pid_t> session_members(pid_t sid) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    pid_t pid = static_cast<pid_t>(std::stol(name));
    if (::getsid(pid) == sid) out.push_back(pid);
  }
  return out;
}

class MultiUser : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = TestUsers::unavailable(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(users_.add_group("g", &group_));
    ASSERT_TRUE(users_.add("a", &a_, {group_}));
    ASSERT_TRUE(users_.add("b", &b_));
    shared_ = "/tmp/loomt-" + std::to_string(::getpid()) + "-shared";
    std::filesystem::remove_all(shared_);
    ASSERT_EQ(::mkdir(shared_.c_str(), 0777), 0);
    ::chmod(shared_.c_str(), 01777);  // like /tmp: anyone creates, only the owner changes
    start();
  }
  void TearDown() override {
    if (!shared_.empty()) std::filesystem::remove_all(shared_);
  }
  virtual std::vector<std::string> instance_args() { return {}; }
  void start() { ASSERT_TRUE(inst_.start(2, instance_args())); }

  // `loom ARGS` as `u`, in `cwd` (default: their home).
  CmdResult loom_as(const TestUser& u, std::vector<std::string> args, const std::string& cwd = "") {
    args.insert(args.begin(), bin("loom"));
    return run_as(u, args, {{"LOOM_URI", inst_.uri()}}, cwd);
  }
  // A job of `u`'s, submitted from `cwd`; its id.
  std::string submit_as(const TestUser& u, std::vector<std::string> args, const std::string& cwd = "") {
    args.insert(args.begin(), "submit");
    auto r = loom_as(u, args, cwd);
    EXPECT_EQ(r.code, 0) << show(r);
    return trim(r.out);
  }

  // Declared before the instance: the users go after it has stopped.
  TestUsers users_;
  std::string group_;
  TestUser a_, b_;
  Instance inst_;
  std::string shared_;  // a directory every user may create files in
};

TEST_F(MultiUser, TasksRunAsTheirUserWithTheirGroupsEnvironmentAndDirectory) {
  std::string work = a_.home + "/work";
  ASSERT_EQ(run_as(a_, {"/bin/mkdir", work}).code, 0);
  // Each task says who it is, what it sees, and who its job shell (its
  // parent) is.
  std::string probe =
      "echo \"$(id -un)|$(id -u)|$(id -g)|$(id -G)|$HOME|$USER|$LOGNAME|$SHELL|$(pwd)|"
      "$(awk '/^Uid:/{print $2\" \"$3}' /proc/$PPID/status)\"";
  auto r = loom_as(a_, {"run", "-N2", "-n2", "sh", "-c", probe}, work);
  ASSERT_EQ(r.code, 0) << show(r);
  auto lines = r.out_lines();
  ASSERT_EQ(lines.size(), 2u) << show(r);
  for (const auto& line : lines) {
    auto f = split(line, '|');
    ASSERT_EQ(f.size(), 10u) << line;
    EXPECT_EQ(f[0], a_.name) << line;
    EXPECT_EQ(f[1], std::to_string(a_.uid)) << line;
    EXPECT_EQ(f[2], std::to_string(a_.gid)) << line;
    EXPECT_EQ(sorted_words(f[3]), a_.groups_text()) << "supplementary groups: " << line;
    EXPECT_EQ(f[4], a_.home) << line;
    EXPECT_EQ(f[5], a_.name) << line;
    EXPECT_EQ(f[6], a_.name) << line;
    EXPECT_EQ(f[7], "/bin/sh") << line;
    EXPECT_EQ(f[8], work) << line;
    EXPECT_EQ(f[9], std::to_string(a_.uid) + " " + std::to_string(a_.uid)) << "the job shell: " << line;
  }
  // The supplementary group is really there (not only the primary one).
  EXPECT_NE(a_.groups.size(), 1u) << "useradd --groups did not add " << group_;

  // The other user's job runs as them, in their home by default.
  auto rb = loom_as(b_, {"run", "sh", "-c", "echo \"$(id -un)|$(id -G)|$HOME|$(pwd)\""});
  ASSERT_EQ(rb.code, 0) << show(rb);
  EXPECT_EQ(trim(rb.out), b_.name + "|" + b_.groups_text() + "|" + b_.home + "|" + b_.home) << show(rb);
}

TEST_F(MultiUser, NoProcessOfAUsersJobRunsAsRoot) {
  // Each task names its job shell (its parent) once its own child runs.
  std::string id = submit_as(a_, {"-N2", "sh", "-c", "sleep 300 & echo \"shell $PPID\"; wait"});
  ASSERT_FALSE(id.empty());
  auto attach = inst_.loom_background({"job", "attach", "-l", id});
  ASSERT_TRUE(attach->wait_for_out("0: shell ")) << show(attach->so_far());
  ASSERT_TRUE(attach->wait_for_out("1: shell ")) << show(attach->so_far());
  std::vector<pid_t> shells;
  for (const auto& line : attach->so_far().out_lines()) {
    auto at = line.find(": shell ");
    if (at != std::string::npos) shells.push_back(std::stoi(line.substr(at + 8)));
  }
  ASSERT_EQ(shells.size(), 2u) << attach->so_far().out;
  // Its whole session (a job shell leads its own): the shell, the task and
  // what the task started, all the user's.
  for (pid_t shell : shells) {
    auto members = session_members(shell);
    EXPECT_GE(members.size(), 3u) << "session of shell " << shell;
    for (pid_t p : members) EXPECT_EQ(process_uid(p), static_cast<long>(a_.uid)) << "process " << p;
  }
  ASSERT_EQ(loom_as(a_, {"job", "kill", "-s", "KILL", id}).code, 0);
  EXPECT_EQ(inst_.loom({"job", "wait-event", id, "clean"}).code, 0);
}

TEST_F(MultiUser, OutputFilesAreTheirUsersAndOthersCannotWriteThem) {
  std::string file = shared_ + "/a.out";
  auto r = loom_as(a_, {"run", "--output=" + file, "echo", "from a"});
  ASSERT_EQ(r.code, 0) << show(r);
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0) << file;
  EXPECT_EQ(st.st_uid, a_.uid);
  EXPECT_EQ(st.st_gid, a_.gid);
  EXPECT_EQ(read_file(file), "from a\n");

  // The other user's job cannot make it its output: the job says so, and
  // the file is as it was.
  auto rb = loom_as(b_, {"run", "--output=" + file, "echo", "from b"});
  EXPECT_NE(rb.err.find("cannot open " + file + ": Permission denied"), std::string::npos) << show(rb);
  // Nor can its tasks write there.
  auto wb = loom_as(b_, {"run", "sh", "-c", "echo from b >> " + file});
  EXPECT_NE(wb.code, 0) << show(wb);
  EXPECT_EQ(read_file(file), "from a\n");
  // A file of their own in the same directory is theirs.
  std::string mine = shared_ + "/b.out";
  ASSERT_EQ(loom_as(b_, {"run", "--output=" + mine, "echo", "from b"}).code, 0);
  ASSERT_EQ(::stat(mine.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, b_.uid);
  EXPECT_EQ(read_file(mine), "from b\n");
}

// A user's active jobs are bounded (job-manager.max-active-jobs-per-user),
// so that one user cannot fill rank 0's memory; the owner's are not.
class MultiUserLimit : public MultiUser {
 protected:
  std::vector<std::string> instance_args() override { return {"--setconf", "job-manager.max-active-jobs-per-user=3"}; }
};

TEST_F(MultiUserLimit, AUsersActiveJobsAreLimitedTheOwnersAreNot) {
  std::string first = submit_as(a_, {"--urgency=hold", "true"});
  submit_as(a_, {"--urgency=hold", "true"});
  // A batch that would pass the limit is refused whole.
  auto batch = loom_as(a_, {"submit", "--cc=1-2", "--urgency=hold", "true"});
  EXPECT_EQ(batch.code, 1) << show(batch);
  EXPECT_NE(batch.err.find("uid " + std::to_string(a_.uid) +
                           " has 2 active jobs; 2 more would pass its limit of 3 "
                           "(job-manager.max-active-jobs-per-user)"),
            std::string::npos)
      << show(batch);
  EXPECT_TRUE(batch.out.empty()) << show(batch);
  submit_as(a_, {"--urgency=hold", "true"});
  auto fourth = loom_as(a_, {"submit", "--urgency=hold", "true"});
  EXPECT_EQ(fourth.code, 1) << show(fourth);
  EXPECT_NE(fourth.err.find("has 3 active jobs; one more would pass its limit of 3"), std::string::npos)
      << show(fourth);
  // Another user has a limit of their own; the owner has none.
  submit_as(b_, {"--urgency=hold", "true"});
  for (int i = 0; i < 4; ++i) EXPECT_EQ(inst_.loom({"submit", "--urgency=hold", "true"}).code, 0);
  // A job that ends makes room.
  ASSERT_EQ(loom_as(a_, {"cancel", first}).code, 0);
  ASSERT_EQ(inst_.loom({"job", "wait-event", first, "clean"}).code, 0);
  submit_as(a_, {"--urgency=hold", "true"});
  EXPECT_EQ(loom_as(a_, {"jobs", "--no-header"}).out_lines().size(), 3u);
}

TEST_F(MultiUser, AUserCannotTouchAnotherUsersJob) {
  std::string id = submit_as(a_, {"sleep", "300"});
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(inst_.loom({"job", "wait-event", id, "start"}).code, 0);
  auto jid = parse_jobid(id);
  ASSERT_TRUE(jid.ok());
  // Its output namespace is the job user's: the other user cannot write
  // into it (the shell of the job writes there as its user).
  std::string ns = "job-" + std::to_string(jid->value());
  auto commit =
      loom_as(b_, {"rpc", "kvs.commit",
                   R"({"namespace":")" + ns + R"(","ops":[{"op":"append","key":"output","value":"forged\n"}]})"});
  EXPECT_NE(commit.code, 0) << show(commit);
  // Nor pass a process for its shell, nor end the shell it has.
  std::string num = std::to_string(jid->value());
  auto broker = inst_.broker_pid(0);  // a process of root's
  ASSERT_TRUE(broker);
  std::string pid = std::to_string(*broker);
  auto adopt = loom_as(b_, {"rpc", "shell.adopt", R"({"id":)" + num + R"(,"rank":0,"pid":)" + pid + "}"});
  EXPECT_NE(adopt.err.find("process " + pid + " is not one of uid " + std::to_string(b_.uid) + "'s"), std::string::npos)
      << show(adopt);
  auto done = loom_as(b_, {"rpc", "shell.done", R"({"id":)" + num + R"(,"status":0})"});
  EXPECT_NE(done.err.find("is not uid " + std::to_string(b_.uid) + "'s"), std::string::npos) << show(done);
  for (auto args : std::vector<std::vector<std::string>>{
           {"cancel", id}, {"job", "kill", id}, {"job", "attach", id}, {"job", "eventlog", id}}) {
    auto rb = loom_as(b_, args);
    EXPECT_NE(rb.code, 0) << args[0] << ": " << show(rb);
    EXPECT_NE(rb.err.find("another user"), std::string::npos) << args[0] << ": " << show(rb);
  }
  // Still running; its owner ends it.
  EXPECT_EQ(trim(inst_.loom({"jobs", "-A", "-n", "-o", "{state}"}).out), "RUN");
  ASSERT_EQ(loom_as(a_, {"cancel", id}).code, 0);
  ASSERT_EQ(inst_.loom({"job", "wait-event", id, "clean"}).code, 0);
  auto out = loom_as(a_, {"job", "eventlog", "-p", "output", id});
  EXPECT_EQ(out.out.find("forged"), std::string::npos) << out.out;
}

// shell.adopt takes a process for any job id (a shell coming back cannot
// prove whose job it ran): another user's offer for a job that has not
// started yet must not keep that job from starting.
TEST_F(MultiUser, AShellOfferedByAnotherUserDoesNotKeepAJobFromStarting) {
  std::string id = submit_as(a_, {"--urgency=hold", "-N2", "true"});
  ASSERT_FALSE(id.empty());
  std::string num = std::to_string(parse_jobid(id).value().value());
  auto sleeper = run_as(b_, {"/bin/sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"});
  ASSERT_EQ(sleeper.code, 0) << show(sleeper);
  std::string pid = trim(sleeper.out);
  for (const char* rank : {"0", "1"}) {
    auto adopt = loom_as(b_, {"rpc", "--rank", rank, "shell.adopt",
                              R"({"id":)" + num + R"(,"rank":)" + rank + R"(,"pid":)" + pid + "}"});
    EXPECT_EQ(adopt.code, 0) << show(adopt);
  }
  ASSERT_EQ(loom_as(a_, {"job", "urgency", id, "default"}).code, 0);
  ASSERT_EQ(inst_.loom({"job", "wait-event", id, "clean"}).code, 0);
  EXPECT_EQ(trim(inst_.loom({"jobs", "-A", "-a", "-n", "-o", "{result}", id}).out), "COMPLETED");
  ::kill(std::stoi(pid), SIGKILL);
}

// The exec eventlog is job-exec's record, which it trusts after a restart
// (a rank with `shell-exit` counts as finished and is released): the job's
// user writes their job's namespace (the shells write its output as them)
// but not the keys under `exec`, so they cannot forge a shell's exit.
TEST_F(MultiUser, AUserCannotWriteTheExecEventlogOfTheirOwnJob) {
  std::string id = submit_as(a_, {"-N2", "sleep", "300"});
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(inst_.loom({"job", "wait-event", id, "start"}).code, 0);
  auto jid = parse_jobid(id);
  ASSERT_TRUE(jid.ok());
  std::string ns = "job-" + std::to_string(jid->value());
  auto commit = [&](const Json& op) {
    return loom_as(a_, {"rpc", "kvs.commit", Json{{"namespace", ns}, {"ops", Json::array({op})}}.dump()});
  };
  Json forged = {{"timestamp", 1}, {"name", "shell-exit"}, {"context", {{"rank", 1}, {"status", 0}, {"forged", 1}}}};
  for (const auto& op :
       {Json{{"op", "append"}, {"key", "exec.eventlog"}, {"value", forged.dump() + "\n"}},
        Json{{"op", "put"}, {"key", "exec.eventlog"}, {"value", ""}}, Json{{"op", "unlink"}, {"key", "exec"}},
        Json{{"op", "put"}, {"key", "exec.x"}, {"value", "x"}}}) {
    auto r = commit(op);
    EXPECT_NE(r.code, 0) << op << ": " << show(r);
    EXPECT_NE(r.err.find("is written only by the instance"), std::string::npos) << op << ": " << show(r);
  }
  // The rest of the namespace is theirs, as before.
  auto output = commit(Json{{"op", "put"}, {"key", "scratch"}, {"value", "mine"}});
  EXPECT_EQ(output.code, 0) << show(output);
  ASSERT_EQ(loom_as(a_, {"cancel", id}).code, 0);
  ASSERT_EQ(inst_.loom({"job", "wait-event", id, "clean"}).code, 0);
  auto exec = loom_as(a_, {"job", "eventlog", "-p", "exec", id});
  EXPECT_EQ(exec.code, 0) << show(exec);
  EXPECT_EQ(exec.out.find("forged"), std::string::npos) << exec.out;
  EXPECT_NE(exec.out.find("shell-exit"), std::string::npos) << exec.out;
}

TEST_F(MultiUser, AUserReadsTheOutputOfTheirOwnJobsOnly) {
  auto run = loom_as(a_, {"run", "-N2", "sh", "-c", "echo hello from $LOOM_RANK"});
  ASSERT_EQ(run.code, 0) << show(run);
  auto ids = loom_as(a_, {"jobs", "-a", "-n", "-o", "{id}"}).out_lines();
  ASSERT_EQ(ids.size(), 1u);
  std::string id = ids[0];
  auto attach = loom_as(a_, {"job", "attach", "-l", id});
  EXPECT_EQ(attach.code, 0) << show(attach);
  auto lines = attach.out_lines();
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"0: hello from 0", "1: hello from 1"})) << attach.out;
  auto exec = loom_as(a_, {"job", "eventlog", "-p", "exec", id});
  EXPECT_EQ(exec.code, 0) << show(exec);
  EXPECT_NE(exec.out.find("complete status=0"), std::string::npos) << exec.out;
  for (auto args : std::vector<std::vector<std::string>>{
           {"job", "attach", id}, {"job", "eventlog", "-p", "output", id}, {"job", "eventlog", "-p", "exec", id}}) {
    auto r = loom_as(b_, args);
    EXPECT_NE(r.code, 0) << show(r);
    EXPECT_NE(r.err.find("another user"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

TEST_F(MultiUser, AJobOfAUidWithoutAnAccountFailsWithAClearException) {
  uint32_t uid = 48000;
  while (::getpwuid(uid)) ++uid;
  Env as_uid = {{"LOOM_HANDLE_USERID", std::to_string(uid)}, {"LOOM_HANDLE_ROLEMASK", "2"}};
  auto r = inst_.loom({"run", "-N2", "true"}, as_uid);
  EXPECT_FALSE(r.timed_out);
  EXPECT_NE(r.code, 0) << show(r);
  EXPECT_NE(r.err.find("no user with uid " + std::to_string(uid)), std::string::npos) << show(r);
  // Both ranks are free again.
  auto own = inst_.loom({"run", "-N2", "true"});
  EXPECT_EQ(own.code, 0) << show(own);
}

// A crash of the whole instance while a user's job runs, then a restart on
// the same state directory (docs/protocols/exec.md): the job shells, running as the
// user, connect to their restarted brokers as that user and are adopted,
// and the job completes as if nothing happened.
class MultiUserReattach : public MultiUser {
 protected:
  std::vector<std::string> instance_args() override {
    return {"--state-dir=" + shared_ + "/state", "--setconf", "exec.reattach-timeout=30"};
  }
  void crash() { crash_instance(inst_); }
  std::string fifo(const char* name, int rank) { return shared_ + "/" + name + "." + std::to_string(rank); }
  // Lets the task of rank R go on (it waits reading a FIFO).
  void go(int rank) {
    auto r = run_cmd({"/bin/sh", "-c", "echo go > " + fifo("go", rank)}, {}, 20);
    ASSERT_EQ(r.code, 0) << "the task of rank " << rank << " is not waiting: " << show(r);
  }
};

TEST_F(MultiUserReattach, AUsersJobRunningThroughACrashIsFoundAgainAndCompletes) {
  for (int r = 0; r < 2; ++r) {
    for (const char* name : {"up", "go"}) {
      ASSERT_EQ(::mkfifo(fifo(name, r).c_str(), 0600), 0);
      ASSERT_EQ(::chown(fifo(name, r).c_str(), a_.uid, a_.gid), 0);
    }
  }
  std::string id = submit_as(a_, {"-N2", "sh", "-c",
                                  "echo before $(id -un); echo up > " + shared_ + "/up.$LOOM_RANK; read x < " +
                                      shared_ + "/go.$LOOM_RANK; echo after $(id -un)"});
  ASSERT_FALSE(id.empty());
  auto up = run_cmd({"/bin/cat", fifo("up", 0), fifo("up", 1)}, {}, 20);
  ASSERT_EQ(up.code, 0) << show(up);
  crash();
  go(0);
  start();
  go(1);
  auto clean = inst_.loom({"job", "wait-event", id, "clean"}, {}, 60);
  ASSERT_EQ(clean.code, 0) << show(clean);
  auto info = inst_.loom({"jobs", "-a", "-A", "-n", "-o", "{result}"});
  EXPECT_EQ(trim(info.out), "COMPLETED") << show(info);
  auto out = loom_as(a_, {"job", "attach", id});
  ASSERT_EQ(out.code, 0) << show(out);
  auto lines = out.out_lines();
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"after " + a_.name, "after " + a_.name, "before " + a_.name,
                                             "before " + a_.name}))
      << out.out;
  auto exec = loom_as(a_, {"job", "eventlog", "--path=exec", id});
  EXPECT_NE(exec.out.find("shell-reattach pid="), std::string::npos) << exec.out;
  EXPECT_NE(exec.out.find("complete status=0"), std::string::npos) << exec.out;
}

// An instance that cannot switch users (its brokers are not root) refuses
// a job of anyone but its owner when it is submitted, saying why; a job
// that runs nothing (test execution, where the owner allows users it) is
// taken. Its sockets are the
// owner's alone, so another user's submission reaches it only as the
// owner speaking for that user (the broker believes only the owner's
// stamp): the path through the job manager is the same.
TEST(MultiUserRefusal, AnInstanceThatCannotSwitchUsersRefusesOtherUsersJobsAtSubmit) {
  auto check = [](const std::function<CmdResult(const std::vector<std::string>&, const Env&)>& loom, uid_t owner) {
    uint32_t other = owner + 4242;
    Env as_other = {{"LOOM_HANDLE_USERID", std::to_string(other)}, {"LOOM_HANDLE_ROLEMASK", "2"}};
    auto refused = loom({"submit", "true"}, as_other);
    EXPECT_EQ(refused.code, 1) << show(refused);
    EXPECT_EQ(refused.err_lines().size(), 1u) << show(refused);
    EXPECT_NE(refused.err.find("this instance runs as uid " + std::to_string(owner) +
                               " and cannot run jobs as other users (you are uid " + std::to_string(other) + ")"),
              std::string::npos)
        << show(refused);
    auto none = loom({"jobs", "-a", "-A", "-n", "-o", "{id}"}, {});
    EXPECT_EQ(none.out, "") << "a refused job was created: " << none.out;
    auto test = loom({"submit", "--setattr=exec.test.run_duration=0", "true"}, as_other);
    EXPECT_EQ(test.code, 0) << show(test);
    auto own = loom({"run", "id", "-u"}, {});
    EXPECT_EQ(own.code, 0) << show(own);
    EXPECT_EQ(trim(own.out), std::to_string(owner));
  };
  if (::geteuid() != 0) {
    Instance inst;
    ASSERT_TRUE(inst.start(1, {"--setconf", "exec.allow-guest-test=true"}));
    check([&](const std::vector<std::string>& args, const Env& env) { return inst.loom(args, env); }, ::geteuid());
    return;
  }
  // As root: the instance is started by a user made for the test.
  if (auto why = TestUsers::unavailable(); !why.empty()) GTEST_SKIP() << why;
  TestUsers users;
  TestUser a;
  ASSERT_TRUE(users.add("o", &a));
  std::string uri;
  {
    auto start = background_as(a, {bin("loom"), "start", "--test-size=1", "--setconf", "exec.allow-guest-test=true"});
    ASSERT_TRUE(start->wait_for_out("\n", 30)) << show(start->so_far());
    uri = trim(start->so_far().out);
    check(
        [&](const std::vector<std::string>& args, const Env& env) {
          std::vector<std::string> argv = args;
          argv.insert(argv.begin(), bin("loom"));
          Env all = env;
          all.emplace_back("LOOM_URI", uri);
          return run_as(a, argv, all);
        },
        a.uid);
    start->signal(SIGTERM);
    auto stopped = start->finish(30);
    EXPECT_EQ(stopped.code, 0) << show(stopped);
  }
}

}  // namespace
}  // namespace loom::test
