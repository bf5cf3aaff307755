// Containment of a job's processes (docs/security.md; docs/protocols/exec.md,
// "Containment"): each job's shell and tasks in a cgroup of their own on
// each rank, where a writable cgroup v2 hierarchy exists, so that cancel
// and time limits end every process of the job, `setsid` or not, and the
// cgroup is gone once the job has ended; tasks bound to their cores and
// seeing only their GPUs.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kit/exec.h"
#include "kit/instance.h"
#include "kit/jobs.h"
#include "msg/json.h"

namespace loom::test {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The cgroup2 mount point and our own cgroup there, as the brokers (our
// children) find them; "" if there is none.
std::string cgroup2_mount() {
  std::istringstream in(read_text("/proc/self/mounts"));
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string dev, dir, type;
    if (f >> dev >> dir >> type && type == "cgroup2") return dir;
  }
  return "";
}
std::string cgroup_of(pid_t pid) {
  std::istringstream in(read_text("/proc/" + std::to_string(pid) + "/cgroup"));
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("0::")) return line.substr(3);
  }
  return "";
}

// Why there is no writable cgroup v2 hierarchy here (a directory made and
// removed again in our own cgroup), or "".
std::string no_cgroups() {
  std::string mount = cgroup2_mount();
  if (mount.empty()) return "no cgroup2 file system is mounted";
  std::string own = cgroup_of(::getpid());
  std::string probe = mount + (own == "/" ? "" : own) + "/loom-probe-" + std::to_string(::getpid());
  if (::mkdir(probe.c_str(), 0755) != 0) return "cannot make a cgroup in " + mount + own + ": " + std::strerror(errno);
  bool kill_file = ::access((probe + "/cgroup.kill").c_str(), W_OK) == 0;
  ::rmdir(probe.c_str());
  if (!kill_file) return "cgroups here have no cgroup.kill";
  return "";
}

// "0-2,5" (a kernel CPU list) as a set.
std::set<int> cpu_list(const std::string& text) {
  std::set<int> out;
  std::istringstream in(text);
  for (std::string part; std::getline(in, part, ',');) {
    if (part.empty()) continue;
    size_t dash = part.find('-');
    int lo = std::stoi(part.substr(0, dash));
    int hi = dash == std::string::npos ? lo : std::stoi(part.substr(dash + 1));
    for (int c = lo; c <= hi; ++c) out.insert(c);
  }
  return out;
}

// A task that starts an escapee: a process in a session of its own that
// ignores SIGTERM and SIGALRM, its output away from the job's; the task
// prints its pid (setsid does not fork: it is not a group leader), then
// waits.
const char* kEscape =
    "setsid sh -c 'trap \"\" TERM ALRM; exec sleep 1000' </dev/null >/dev/null 2>&1 & echo escapee $!; exec sleep 1000";

class Contain : public JobsFixture {
 protected:
  void SetUp() override {
    if (std::string why = no_cgroups(); !why.empty()) GTEST_SKIP() << "no writable cgroup v2 hierarchy: " << why;
    std::vector<std::string> opts{"--cores-per-rank=2", "--gpus-per-rank=0"};
    opts.insert(opts.end(), extra_.begin(), extra_.end());
    ASSERT_TRUE(inst.start(2, opts));
  }
  std::vector<std::string> extra_;  // more options of `loom start`

  // The escapee's pid, from the job's output once it is there.
  pid_t escapee(const std::string& id) {
    auto num = parse_jobid(id).value().value();
    auto up = loom(
        {"kvs", "--namespace", "job-" + std::to_string(num), "eventlog", "wait-event", "-t", "20", "output", "data"});
    EXPECT_EQ(up.code, 0) << show(up);
    auto out = loom({"job", "eventlog", "-p", "output", id});
    size_t at = out.out.find("escapee ");
    if (at == std::string::npos) {
      ADD_FAILURE() << "no escapee in the output: " << out.out;
      return -1;
    }
    return static_cast<pid_t>(std::stol(out.out.substr(at + 8)));
  }

  // The escapee runs in a session of its own, in the job's cgroup; that
  // cgroup's path.
  std::string check_escaped(pid_t pid, const std::string& id) {
    EXPECT_NE(::getsid(pid), -1) << "the escapee runs";
    std::string cg = cgroup_of(pid);
    std::string job = "/job-" + std::to_string(parse_jobid(id).value().value());
    EXPECT_TRUE(cg.ends_with(job)) << "escapee " << pid << " is in cgroup " << cg;
    EXPECT_NE(cg.find("/loom-"), std::string::npos) << cg;
    return cgroup2_mount() + cg;
  }
};

TEST_F(Contain, CancelKillsATaskThatLeftItsSessionAndRemovesTheJobsCgroup) {
  std::string id = submit_job({"-N1", "sh", "-c", kEscape});
  wait_event(id, "start");
  pid_t pid = escapee(id);
  ASSERT_GT(pid, 0);
  std::string dir = check_escaped(pid, id);
  EXPECT_TRUE(std::filesystem::exists(dir)) << dir;
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  wait_event(id, "clean");
  expect_all_exit({pid});
  EXPECT_FALSE(std::filesystem::exists(dir)) << dir << " is left behind";
}

TEST_F(Contain, ATimeLimitKillsATaskThatLeftItsSession) {
  auto r = loom({"run", "-t", "2s", "sh", "-c", kEscape});
  EXPECT_EQ(r.code, 128 + SIGALRM) << show(r);
  size_t at = r.out.find("escapee ");
  ASSERT_NE(at, std::string::npos) << show(r);
  pid_t pid = static_cast<pid_t>(std::stol(r.out.substr(at + 8)));
  // `loom run` has returned: the job has finished, its escapee with it.
  expect_all_exit({pid});
}

// With a short kill timeout, so that the escalation to SIGKILL comes soon.
class ContainEscalation : public Contain {
 protected:
  ContainEscalation() { extra_ = {"--setconf=exec.kill-timeout=0.5"}; }
};

TEST_F(ContainEscalation, SigkillReachesAnEscapeeThatKeepsTheShellWaiting) {
  // The escapee holds the job's stdout: after SIGTERM its shell waits for
  // it, until the kill timeout's SIGKILL ends the whole cgroup.
  std::string id = submit_job(
      {"-N1", "sh", "-c", "setsid sh -c 'trap \"\" TERM ALRM; exec sleep 1000' & echo escapee $!; exec sleep 1000"});
  wait_event(id, "start");
  pid_t pid = escapee(id);
  ASSERT_GT(pid, 0);
  std::string dir = check_escaped(pid, id);
  ASSERT_EQ(loom({"cancel", id}).code, 0);
  wait_event(id, "clean");
  expect_all_exit({pid});
  EXPECT_FALSE(std::filesystem::exists(dir)) << dir << " is left behind";
  // Killed, not given up on: the rank is not drained.
  auto log = loom({"resource", "list", "--json"});
  EXPECT_EQ(log.out.find("unkillable"), std::string::npos) << log.out;
}

// Resources with GPUs; needs no cgroups.
class Bind : public JobsFixture {
 protected:
  void SetUp() override { ASSERT_TRUE(inst.start(2, {"--cores-per-rank=4", "--gpus-per-rank=2"})); }

  // What a job's one task saw (its output, after the job) and its R.
  std::pair<std::string, Json> run_job(std::vector<std::string> args) {
    args.insert(args.end(),
                {"sh", "-c", "grep Cpus_allowed_list /proc/self/status; echo CUDA=${CUDA_VISIBLE_DEVICES-unset}"});
    std::string id = submit_job(args);
    wait_event(id, "clean");
    auto out = loom({"job", "attach", id});
    EXPECT_EQ(out.code, 0) << show(out);
    auto R = loom({"job", "info", id, "R"});
    EXPECT_EQ(R.code, 0) << show(R);
    auto j = parse_json(R.out);
    return {out.out, j.ok() ? *j : Json()};
  }

  // The CPUs a task of R's rank 0 entry may use: core i is the i-th CPU
  // the brokers may use (ours), counted round again.
  static std::set<int> expected_cpus(const Json& R) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    EXPECT_EQ(::sched_getaffinity(0, sizeof allowed, &allowed), 0);
    std::vector<int> cpus;
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
    }
    std::set<int> out;
    for (int core : cpu_list(R["execution"]["R_lite"][0]["children"].value("core", std::string()))) {
      out.insert(cpus[static_cast<size_t>(core) % cpus.size()]);
    }
    return out;
  }

  static std::string field(const std::string& out, const std::string& name) {
    size_t at = out.find(name);
    if (at == std::string::npos) return "(none)";
    at += name.size();
    size_t end = out.find('\n', at);
    std::string v = out.substr(at, end - at);
    v.erase(0, v.find_first_not_of(" \t"));
    return v;
  }
};

TEST_F(Bind, ATaskRunsOnItsCoresAndSeesItsGpus) {
  auto [out, R] = run_job({"-n1", "-c1", "-g2"});
  ASSERT_TRUE(R.is_object()) << out;
  const Json& children = R["execution"]["R_lite"][0]["children"];
  EXPECT_EQ(cpu_list(field(out, "Cpus_allowed_list:")), expected_cpus(R)) << out << dump_json(R);
  std::string gpus = children.value("gpu", std::string());
  ASSERT_FALSE(gpus.empty()) << dump_json(R);
  std::string want;
  for (int g : cpu_list(gpus)) want += (want.empty() ? "" : ",") + std::to_string(g);
  EXPECT_EQ(field(out, "CUDA="), want) << out;
}

TEST_F(Bind, ATaskWithoutGpusSeesNone) {
  auto [out, R] = run_job({"-n1", "-c1", "--env=CUDA_VISIBLE_DEVICES=0,1"});
  ASSERT_TRUE(R.is_object()) << out;
  EXPECT_EQ(cpu_list(field(out, "Cpus_allowed_list:")), expected_cpus(R)) << out << dump_json(R);
  EXPECT_EQ(field(out, "CUDA="), "unset") << out;
}

// A broker that was killed leaves its cgroups behind. The next broker to
// start on the machine removes those of dead brokers that hold no process
// (their jobs' first), and keeps a job cgroup with a process in it: a
// shell that waits for its broker to come back.
TEST(ContainCleanup, AStartingBrokerRemovesDeadBrokersEmptyCgroupsOnly) {
  if (std::string why = no_cgroups(); !why.empty()) GTEST_SKIP() << "no writable cgroup v2 hierarchy: " << why;
  std::string own = cgroup_of(::getpid());
  std::string base = cgroup2_mount() + (own == "/" ? "" : own);
  // Two pids no process has any more.
  auto dead_pid = [] {
    pid_t p = ::fork();
    if (p == 0) ::_exit(0);
    EXPECT_TRUE(wait_child(p, 10));
    return p;
  };
  std::string idle = base + "/loom-" + std::to_string(dead_pid());
  std::string busy = base + "/loom-" + std::to_string(dead_pid());
  for (const std::string& d : {idle, idle + "/job-7", busy, busy + "/job-8"}) {
    ASSERT_EQ(::mkdir(d.c_str(), 0755), 0) << d << ": " << std::strerror(errno);
  }
  pid_t waiting = ::fork();
  if (waiting == 0) {
    ::pause();
    ::_exit(0);
  }
  {
    std::ofstream procs(busy + "/job-8/cgroup.procs");
    procs << waiting << "\n";
  }
  ASSERT_NE(read_text(busy + "/job-8/cgroup.procs").find(std::to_string(waiting)), std::string::npos);
  Instance inst;
  ASSERT_TRUE(inst.start(1));
  auto r = inst.loom({"run", "true"});
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_FALSE(std::filesystem::exists(idle)) << idle;
  EXPECT_TRUE(std::filesystem::exists(busy + "/job-8")) << busy;
  EXPECT_EQ(inst.stop(), std::optional<int>(0));
  ::kill(waiting, SIGKILL);
  EXPECT_TRUE(wait_child(waiting, 10));
  ::rmdir((busy + "/job-8").c_str());
  ::rmdir(busy.c_str());
  ::rmdir((idle + "/job-7").c_str());
  ::rmdir(idle.c_str());
}

}  // namespace
}  // namespace loom::test
