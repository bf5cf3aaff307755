// The job manager and the scheduler end to end (docs/protocols/jobs.md;
// docs/design.md, "Job states" and "Restart and recovery"): real `loom
// start` instances with 4 ranks of 2 cores each, driven through the `loom`
// command line as users drive them. Jobs run in test execution mode waiting
// for an override that never comes (submit() below), so each holds what it
// was given until it is cancelled.
//
// Waiting is always on events (`loom job wait-event`). To check that the
// scheduler has *not* started a job, tests call settle(): a
// sched.resource-status round trip. The scheduler considers every alloc
// request in the loop turn after it arrives, and the job manager sends a
// job's alloc before it answers the submit, so once settle() returns, a
// job that could have been allocated shows in the allocated resources.
#include "kit/jobs.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "base/fluid.h"
#include "kit/client.h"
#include "kit/instance.h"
#include "msg/json.h"

namespace loom::test {
namespace {

class Jobs : public JobsFixture {
 protected:
  // Submits and returns the printed id. The job runs in test execution
  // mode and, once started, holds its resources until it is cancelled.
  std::string submit(std::vector<std::string> args) {
    args.insert(args.begin(), "--setattr=exec.test.override=true");
    return submit_job(args);
  }
  // What `loom jobs` says in the INFO column for job `id`.
  std::string info_of(const std::string& id) {
    auto r = loom({"jobs", "--no-header", "-o", "{id} {info}"});
    EXPECT_EQ(r.code, 0) << show(r);
    std::istringstream lines(r.out);
    for (std::string l; std::getline(lines, l);) {
      if (l.starts_with(id + " ")) return l.substr(id.size() + 1);
    }
    ADD_FAILURE() << id << " is not listed:\n" << r.out;
    return "";
  }
};

TEST_F(Jobs, SubmitAllocatesAndCancelGivesBack) {
  start();
  std::string id = submit({"-N2", "hostname"});
  wait_event(id, "alloc");
  EXPECT_EQ(events(id), (Names{"submit", "validate", "depend", "priority", "alloc"}));
  Json res = resources();
  EXPECT_EQ(res["allocated"]["nnodes"], 2) << res;
  EXPECT_EQ(res["allocated"]["ranks"], "0-1") << res;
  EXPECT_EQ(res["free"]["nnodes"], 2) << res;
  EXPECT_EQ(state(id), "RUN");
  auto info = loom({"job", "info", id, "R"});
  ASSERT_EQ(info.code, 0) << show(info);
  EXPECT_NE(info.out.find("R_lite"), std::string::npos) << info.out;

  auto c = loom({"cancel", id});
  ASSERT_EQ(c.code, 0) << show(c);
  wait_event(id, "clean");
  // The job waited for its (override) start: job-exec lets go of its two
  // ranks one by one, the second release final.
  EXPECT_EQ(events(id), (Names{"submit", "validate", "depend", "priority", "alloc", "exception", "release", "release",
                               "free", "clean"}));
  res = resources();
  EXPECT_EQ(res["allocated"].value("nnodes", -1), 0) << res;
  EXPECT_EQ(res["free"]["nnodes"], 4) << res;
  Json j = job(id);
  EXPECT_EQ(j["state"], "INACTIVE");
  EXPECT_EQ(j["result"], "CANCELED");
  // The default listing leaves inactive jobs out; -a shows them.
  auto ls = loom({"jobs"});
  EXPECT_EQ(ls.out_lines().size(), 1u) << ls.out;
  auto all = loom({"jobs", "-a"});
  EXPECT_EQ(all.out_lines().size(), 2u) << all.out;
  EXPECT_NE(all.out.find(" CA "), std::string::npos) << all.out;
}

TEST_F(Jobs, TheSchedulerHearsOfAJobThreeTimes) {
  start();
  // Requests rank 0's broker delivered to the scheduler (broker.info).
  auto sched_requests = [&]() -> uint64_t {
    auto r = loom({"rpc", "broker.info"});
    EXPECT_EQ(r.code, 0) << show(r);
    auto j = parse_json(r.out);
    return j.ok() ? j->at("requests").value("sched", uint64_t{0}) : 0;
  };
  const uint64_t before = sched_requests();
  std::string id = hold({"-N1"});
  finish(id);
  EXPECT_EQ(events(id), (Names{"submit", "validate", "depend", "priority", "alloc", "start", "finish", "release",
                               "free", "clean"}));
  // Whether it could ever run, its alloc, and one free: the final
  // release's ranks go back in the free event's final sched.free, not in
  // one of their own.
  EXPECT_EQ(sched_requests() - before, 3u);
}

TEST_F(Jobs, CancelWhilePendingLogsNoAllocOrFree) {
  start();
  std::string big = submit({"-N4", "-x", "true"});
  wait_event(big, "alloc");
  std::string waiting = submit({"-N1", "true"});
  wait_event(waiting, "priority");
  EXPECT_EQ(state(waiting), "SCHED");
  ASSERT_EQ(loom({"cancel", waiting}).code, 0);
  wait_event(waiting, "clean");
  EXPECT_EQ(events(waiting), (Names{"submit", "validate", "depend", "priority", "exception", "clean"}));
  // Cancelling it again, or cancelling an unknown job, is an error that changes nothing.
  auto again = loom({"cancel", waiting});
  EXPECT_NE(again.code, 0);
  EXPECT_NE(again.err.find("inactive"), std::string::npos) << again.err;
  EXPECT_EQ(events(waiting).size(), 6u);
  auto unknown = loom({"cancel", "123456789"});
  EXPECT_NE(unknown.code, 0);
  EXPECT_NE(unknown.err.find("unknown job"), std::string::npos) << unknown.err;
}

TEST_F(Jobs, FcfsDoesNotLetSmallJobsPass) {
  start();
  std::string a = submit({"-N4", "-x", "true"});
  wait_event(a, "alloc");
  std::string b = submit({"-N3", "true"});  // blocked behind a
  std::string c = submit({"-N1", "true"});  // would fit after a, but b is first
  wait_event(c, "priority");
  EXPECT_EQ(allocated_ranks(), "0-3");
  EXPECT_EQ(state(b), "SCHED");
  EXPECT_EQ(state(c), "SCHED");
  // Every pending job says why it waits: c, never the head, is behind b.
  EXPECT_EQ(info_of(c), "priority");
  ASSERT_EQ(loom({"cancel", a}).code, 0);
  wait_event(b, "alloc");
  wait_event(c, "alloc");  // one rank is left after b's three
  EXPECT_EQ(job(b)["ranks"], "0-2");
  EXPECT_EQ(job(c)["ranks"], "3");
}

TEST_F(Jobs, EasyBackfillsShortJobsWithoutDelayingTheReservation) {
  start({"--setconf", "sched.policy=easy"});
  std::string a = submit({"-N2", "-t", "100s", "true"});  // ranks 0-1 for 100 s
  wait_event(a, "alloc");
  std::string b = submit({"-N4", "-t", "100s", "true"});         // reservation when a ends
  std::string shortjob = submit({"-N1", "-t", "10s", "true"});   // ends long before: backfills
  std::string forever = submit({"-N1", "true"});                 // no duration: never ahead
  std::string longjob = submit({"-N1", "-t", "1000s", "true"});  // would delay b
  wait_event(shortjob, "alloc");
  EXPECT_EQ(job(shortjob)["ranks"], "2");
  settle();
  EXPECT_EQ(state(b), "SCHED");
  EXPECT_EQ(state(forever), "SCHED");
  EXPECT_EQ(state(longjob), "SCHED");
  Json jb = job(b);
  ASSERT_TRUE(jb.contains("annotations")) << jb;
  double t_est = jb["annotations"]["sched"]["t_estimate"].get<double>();
  double a_end = job(a)["t_run"].get<double>() + 100;
  EXPECT_NEAR(t_est, a_end, 2.0) << jb;
}

TEST_F(Jobs, FcfsPolicyDoesNotBackfill) {
  start({"--setconf", "sched.policy=fcfs"});
  std::string a = submit({"-N2", "-t", "100s", "true"});
  wait_event(a, "alloc");
  std::string b = submit({"-N4", "-t", "100s", "true"});
  std::string shortjob = submit({"-N1", "-t", "10s", "true"});
  wait_event(shortjob, "priority");
  EXPECT_EQ(allocated_ranks(), "0-1");
  EXPECT_EQ(state(shortjob), "SCHED");
  EXPECT_EQ(resources()["policy"], "fcfs");
}

TEST_F(Jobs, UrgencyChangesOrderAndHoldKeepsAJobBack) {
  start();
  std::string a = submit({"-N4", "-x", "true"});
  wait_event(a, "alloc");
  std::string first = submit({"-N4", "-x", "true"});
  std::string second = submit({"-N4", "-x", "true"});
  ASSERT_EQ(loom({"job", "urgency", second, "20"}).code, 0);
  ASSERT_EQ(loom({"cancel", a}).code, 0);
  wait_event(second, "alloc");
  settle();
  EXPECT_EQ(state(first), "SCHED");
  auto ev = events(second);
  EXPECT_NE(std::find(ev.begin(), ev.end(), "urgency"), ev.end());

  // A held job stays in SCHED with priority 0 even with resources free.
  ASSERT_EQ(loom({"cancel", second}).code, 0);
  ASSERT_EQ(loom({"cancel", first}).code, 0);
  wait_event(first, "clean");
  std::string held = submit({"--urgency=hold", "-N1", "true"});  // as `loom job urgency` takes it
  wait_event(held, "priority");
  EXPECT_EQ(allocated_ranks(), "");
  EXPECT_EQ(job(held)["priority"], 0);
  EXPECT_EQ(state(held), "SCHED");
  ASSERT_EQ(loom({"job", "urgency", held, "default"}).code, 0);
  wait_event(held, "alloc");
}

TEST_F(Jobs, DrainKeepsRanksFromNewJobs) {
  start();
  auto d = loom({"resource", "drain", "0-1", "bad", "fan"});
  ASSERT_EQ(d.code, 0) << show(d);
  Json res = resources();
  EXPECT_EQ(res["drained"]["ranks"], "0-1") << res;
  EXPECT_EQ(res["free"]["ranks"], "2-3") << res;
  EXPECT_EQ(res["drain"][0]["reason"], "bad fan") << res;
  std::string two = submit({"-N2", "true"});
  wait_event(two, "alloc");
  EXPECT_EQ(job(two)["ranks"], "2-3");
  // Three ranks are up and not drained only once two is gone and 0-1 undrained.
  std::string j = submit({"-N3", "true"});
  wait_event(j, "priority");
  settle();
  EXPECT_EQ(state(j), "SCHED");
  EXPECT_EQ(allocated_ranks(), "2-3");
  ASSERT_EQ(loom({"resource", "undrain", "0-1"}).code, 0);
  settle();
  EXPECT_EQ(state(j), "SCHED");
  ASSERT_EQ(loom({"cancel", two}).code, 0);
  wait_event(j, "alloc");
  auto bad = loom({"resource", "drain", "7"});
  EXPECT_NE(bad.code, 0);
  EXPECT_EQ(bad.err_lines().size(), 1u) << bad.err;
}

TEST_F(Jobs, PartialFreeMakesExactlyThoseRanksAvailable) {
  start();
  std::string a = submit({"-N4", "-x", "true"});
  wait_event(a, "alloc");
  auto R = loom({"job", "info", a, "R"});
  ASSERT_EQ(R.code, 0) << show(R);
  // Give back ranks 0-1 of a as the job manager does on a partial release.
  Loop loop;
  auto c = loop.connect(inst.socket(0));
  ASSERT_TRUE(c.ok()) << c.error().text;
  Json r01 = {{"version", 1}, {"execution", {{"R_lite", {{{"rank", "0-1"}, {"children", {{"core", "0-1"}}}}}}}}};
  bool answered = false;
  int errnum = -1;
  (*c)->handle().on_response("sched.free", [&](const Message& m) {
    answered = true;
    errnum = m.errnum;
  });
  uint64_t id = parse_jobid(a).value().value();
  (*c)->handle().send_matchless("sched.free", dump_json(Json{{"id", id}, {"R", r01}, {"final", false}}));
  ASSERT_TRUE(loop.run_until([&] { return answered; }));
  EXPECT_EQ(errnum, 0);
  EXPECT_EQ(allocated_ranks(), "2-3");
  std::string b = submit({"-N2", "true"});
  wait_event(b, "alloc");
  EXPECT_EQ(job(b)["ranks"], "0-1");
  std::string c1 = submit({"-N1", "true"});
  wait_event(c1, "priority");
  EXPECT_EQ(allocated_ranks(), "0-3");
  EXPECT_EQ(state(c1), "SCHED");
  // Cancelling a gives back only what it still holds: c gets a rank, b keeps its own.
  ASSERT_EQ(loom({"cancel", a}).code, 0);
  wait_event(c1, "alloc");
  EXPECT_EQ(job(c1)["ranks"], "2");
  EXPECT_EQ(state(b), "RUN");
  EXPECT_EQ(allocated_ranks(), "0-2");
}

TEST_F(Jobs, BadJobsAreRefusedWithOneLineAndChangeNothing) {
  start({"--setconf", "exec.allow-guest-test=true"});  // another user's test job, below
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  std::vector<Case> cases = {
      {{"submit", "-N5", "true"}, "5 nodes"},
      {{"submit", "-n1", "-c3", "true"}, "3 cores"},
      {{"submit", "-g1", "true"}, "gpu"},
      {{"submit", "-t", "bogus", "true"}, "-t"},
      {{"rpc", "job-manager.submit", R"({"jobspec":{"resources":[],"tasks":[]}})"}, "version"},
      {{"rpc", "job-manager.submit",
        "{\"jobspec\":{\"version\":1,\"resources\":[{\"type\":\"slot\",\"count\":-1,"
        "\"label\":\"task\",\"with\":[{\"type\":\"core\",\"count\":1}]}],\"tasks\":[{"
        "\"command\":[\"true\"],\"slot\":\"task\",\"count\":{\"per_slot\":1}}],"
        "\"attributes\":{\"system\":{\"duration\":0}}}}"},
       "count"},
      {{"rpc", "job-manager.submit",
        "{\"jobspec\":{\"version\":1,\"resources\":[{\"type\":\"socket\",\"count\":1,"
        "\"label\":\"task\",\"with\":[{\"type\":\"core\",\"count\":1}]}],\"tasks\":[{"
        "\"command\":[\"true\"],\"slot\":\"task\",\"count\":{\"per_slot\":1}}],"
        "\"attributes\":{\"system\":{\"duration\":0}}}}"},
       "socket"},
      {{"rpc", "job-manager.submit",
        "{\"jobspec\":{\"version\":1,\"resources\":[{\"type\":\"slot\",\"count\":1,"
        "\"label\":\"task\",\"with\":[{\"type\":\"core\",\"count\":1}]}],\"tasks\":[{"
        "\"command\":[\"true\"],\"slot\":\"task\",\"count\":{\"total\":0}}],"
        "\"attributes\":{\"system\":{\"duration\":0}}}}"},
       "task"},
      {{"rpc", "job-manager.submit", "[1,2"}, ""},
      {{"job", "urgency", "12345", "40"}, "urgency"},
      {{"cancel", "notanid"}, "not a job id"},
  };
  for (auto& c : cases) {
    auto r = loom(c.args);
    EXPECT_NE(r.code, 0) << c.args[1] << ": " << show(r);
    EXPECT_EQ(r.err_lines().size(), 1u) << show(r);
    if (!c.says.empty()) {
      EXPECT_NE(r.err.find(c.says), std::string::npos) << "expected \"" << c.says << "\": " << r.err;
    }
    // A single job is not numbered as if it were part of a batch.
    EXPECT_EQ(r.err.find("jobspec 0"), std::string::npos) << r.err;
  }
  // In a batch, the error names the job that cannot run, counting from 1.
  auto batch = loom({"submit", "--cc=1-3", "-N5", "true"});
  EXPECT_NE(batch.code, 0);
  EXPECT_NE(batch.err.find("job 1: "), std::string::npos) << batch.err;
  auto ls = loom({"jobs", "-a", "--json"});
  EXPECT_EQ(trim(ls.out), "[]") << "a refused job was created: " << ls.out;

  // A user acting on another user's job.
  std::string mine = submit({"-N4", "-x", "true"});
  wait_event(mine, "alloc");
  std::string queued = submit({"-N1", "true"});
  Env other = {{"LOOM_HANDLE_USERID", "4242"}, {"LOOM_HANDLE_ROLEMASK", "2"}};
  for (auto args : std::vector<std::vector<std::string>>{
           {"cancel", mine}, {"job", "urgency", queued, "1"}, {"job", "eventlog", mine}, {"job", "info", mine, "R"}}) {
    auto r = loom(args, other);
    EXPECT_NE(r.code, 0) << args[0] << ": " << show(r);
    EXPECT_NE(r.err.find("another user"), std::string::npos) << r.err;
  }
  // That user sees none of them, may submit, but not expedite.
  auto theirs = loom({"jobs", "-A", "--json"}, other);
  EXPECT_EQ(trim(theirs.out), "[]") << theirs.out;
  auto expedite = loom({"submit", "--urgency=31", "true"}, other);
  EXPECT_NE(expedite.code, 0);
  EXPECT_NE(expedite.err.find("owner"), std::string::npos) << expedite.err;
  // (A job that runs nothing, which the owner allowed users: an instance
  // that is not root refuses to run anything of another user's, see
  // multiuser_test.)
  auto ok = loom({"submit", "--setattr=exec.test.run_duration=0", "true"}, other);
  ASSERT_EQ(ok.code, 0) << show(ok);
  auto own = loom({"jobs", "--json"}, other);
  EXPECT_NE(own.out.find("4242"), std::string::npos) << own.out;
  EXPECT_EQ(loom({"cancel", trim(ok.out)}, other).code, 0);
  EXPECT_EQ(state(mine), "RUN");
}

// Exceptions carry one word as their type (the eventlog's text form is
// key=value), and an execution service one name of at most 64 bytes.
TEST_F(Jobs, ExceptionTypesAndServiceNamesAreChecked) {
  start();
  std::string id = submit({"-N1", "true"});
  wait_event(id, "alloc");
  std::string n = std::to_string(parse_jobid(id).value().value());
  for (const std::string& type : {std::string("a=b"), std::string("two words"), std::string(65, 'x')}) {
    auto r =
        loom({"rpc", "job-manager.raise", dump_json(Json{{"id", std::stoull(n)}, {"severity", 1}, {"type", type}})});
    EXPECT_NE(r.code, 0) << type << ": " << show(r);
    EXPECT_NE(r.err.find("exception type"), std::string::npos) << r.err;
  }
  // A note is stored and listed with the job: it is bounded, a jobspec is.
  auto long_note =
      loom({"rpc", "job-manager.raise",
            dump_json(Json{{"id", std::stoull(n)}, {"severity", 1}, {"type", "t"}, {"note", std::string(4097, 'n')}})});
  EXPECT_EQ(long_note.err, "loom rpc: job-manager.raise: note is 4097 bytes, over the limit of 4096\n")
      << show(long_note);
  auto long_cancel = loom({"cancel", "-m", std::string(4097, 'n'), id});
  EXPECT_NE(long_cancel.err.find("note is 4097 bytes, over the limit of 4096"), std::string::npos) << show(long_cancel);
  auto ok = loom({"rpc", "job-manager.raise", R"({"id":)" + n + R"(,"severity":1,"type":"my-check"})"});
  EXPECT_EQ(ok.code, 0) << show(ok);
  auto ex = eventlog(id);
  size_t raised = std::count_if(ex.begin(), ex.end(), [](const Json& e) { return e["name"] == "exception"; });
  EXPECT_EQ(raised, 1u) << "only my-check was recorded";

  auto hello = loom({"rpc", "job-manager.exec-hello", dump_json(Json{{"service", std::string(65, 's')}})});
  EXPECT_NE(hello.code, 0) << show(hello);
  EXPECT_NE(hello.err.find("64 bytes"), std::string::npos) << hello.err;
  EXPECT_EQ(state(id), "RUN");
}

// Time limits and test run durations of centuries (or 1e308 s) do not
// overflow the clock into the past: such a job runs until it is cancelled.
TEST_F(Jobs, AHugeTimeLimitDoesNotEndTheJobAtOnce) {
  start();
  std::string limit = submit_job({"--setattr=exec.test.run_duration=1s", "-t", "200000000", "true"});
  std::string duration = submit_job({"--setattr=exec.test.run_duration=1e308", "true"});
  std::string fine = submit_job({"--setattr=exec.test.run_duration=0.1s", "true"});
  wait_event(limit, "start");
  wait_event(duration, "start");
  wait_event(fine, "clean");   // a tenth of a second passed for both
  wait_event(limit, "clean");  // ended by its run duration, not its time limit
  EXPECT_EQ(job(limit)["result"], "COMPLETED");
  EXPECT_EQ(state(duration), "RUN");
  ASSERT_EQ(loom({"cancel", duration}).code, 0);
  wait_event(duration, "clean");
  EXPECT_EQ(job(duration)["result"], "CANCELED");
}

// The README's streaming request, as written there.
TEST_F(Jobs, TheReadmesStreamingRpcPrintsEachResponse) {
  start();
  std::string id = submit_job({"--setattr=exec.test.run_duration=0", "true"});
  wait_event(id, "clean");
  auto r = loom({"rpc", "--stream", "job-info.eventlog", "{\"id\":\"" + id + "\"}"});
  ASSERT_EQ(r.code, 0) << show(r);
  auto lines = r.out_lines();
  ASSERT_EQ(lines.size(), eventlog(id).size()) << r.out;
  EXPECT_NE(lines.front().find("\"submit\""), std::string::npos) << r.out;
  EXPECT_NE(lines.back().find("\"clean\""), std::string::npos) << r.out;
}

// A socket where `loom` expects a broker, for a test that plays one
// (RawConn::accept(fd)); removed with its directory at the end.
struct FakeBroker {
  explicit FakeBroker(const std::string& name)
      : dir(std::filesystem::temp_directory_path() / ("loom-" + name + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path().c_str(), sizeof addr.sun_path - 1);
    ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && ::listen(fd, 4) == 0;
  }
  ~FakeBroker() {
    ::close(fd);
    std::filesystem::remove_all(dir);
  }
  FakeBroker(const FakeBroker&) = delete;
  FakeBroker& operator=(const FakeBroker&) = delete;
  std::string path() const { return dir + "/broker.sock"; }
  std::string uri() const { return "local://" + path(); }
  bool listening() const { return ok; }
  std::string dir;
  int fd = -1;
  bool ok = false;
};

// `loom submit --cc` whose connection is lost after its first batch was
// stored still prints that batch's ids (then one line saying what
// happened), so a user who retries knows which jobs exist. Here the test
// plays the broker: it stores the first batch, then hangs up.
TEST_F(Jobs, ABatchSubmitCutOffHalfwayPrintsTheIdsThatWereStored) {
  FakeBroker broker("cutoff");
  ASSERT_TRUE(broker.listening()) << std::strerror(errno);
  Background submit({bin("loom"), "submit", "--cc=1-5000", "true"}, {{"LOOM_URI", broker.uri()}});
  auto conn = RawConn::accept(broker.fd);
  ASSERT_TRUE(conn.ok()) << conn.error().text;
  auto first = conn->recv();
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->topic, "job-manager.submit");
  size_t n = Json::parse(first->payload)["jobs"].size();
  ASSERT_GT(n, 0u);
  ASSERT_LT(n, 5000u) << "the jobs go in batches";
  Json ids = Json::array();
  for (size_t i = 0; i < n; ++i) ids.push_back(1000 + i);
  ASSERT_TRUE(conn->send(make_response(*first, dump_json(Json{{"ids", ids}}))));
  ASSERT_TRUE(conn->recv().has_value());  // the second batch: never answered
  conn->close();
  auto r = submit.finish();
  EXPECT_EQ(r.code, 1) << show(r);
  auto lines = r.out_lines();
  ASSERT_EQ(lines.size(), n) << show(r);
  EXPECT_EQ(lines.front(), encode_f58(JobId{1000}));
  EXPECT_EQ(lines.back(), encode_f58(JobId{1000 + n - 1}));
  ASSERT_EQ(r.err_lines().size(), 1u) << show(r);
  EXPECT_NE(r.err.find(std::to_string(n) + " of 5000 jobs were submitted"), std::string::npos) << r.err;
}

// `loom submit --cc` of big jobs: requests of at most 8 MiB, four of them
// unanswered at most, the next sent as answers come. Here the test plays
// the broker, and each job carries a 1.4 MB environment.
TEST_F(Jobs, ABatchSubmitSendsRequestsOfBoundedSizeAFewAtATime) {
  FakeBroker broker("batches");
  ASSERT_TRUE(broker.listening()) << std::strerror(errno);
  Env env = {{"LOOM_URI", broker.uri()}};
  for (int i = 0; i < 12; ++i) env.emplace_back("LOOM_TEST_PAD" + std::to_string(i), std::string(120000, 'x'));
  constexpr size_t kJobs = 26;  // five to a request: six requests
  Background submit({bin("loom"), "submit", "--cc=1-" + std::to_string(kJobs), "true"}, env);
  auto conn = RawConn::accept(broker.fd);
  ASSERT_TRUE(conn.ok()) << conn.error().text;
  std::deque<std::pair<Message, size_t>> unanswered;  // and how many jobs each holds
  size_t received = 0, answered = 0, requests = 0;
  while (answered < kJobs) {
    while (unanswered.size() < 4 && received < kJobs) {
      auto m = conn->recv();
      ASSERT_TRUE(m.has_value()) << "request " << requests;
      ASSERT_EQ(m->topic, "job-manager.submit");
      EXPECT_LE(m->payload.size(), size_t{9} << 20) << "request " << requests;
      ++requests;
      // Its jobs, counted without parsing 7 MB (slow under the sanitizers).
      size_t n = 0;
      for (size_t at = 0; (at = m->payload.find("\"jobspec\":", at)) != std::string::npos; ++at) ++n;
      received += n;
      unanswered.emplace_back(std::move(*m), n);
    }
    // Four unanswered: the client waits for an answer before the next.
    if (received < kJobs) {
      EXPECT_FALSE(conn->recv(0).has_value()) << "a fifth request before an answer";
    }
    auto [m, n] = std::move(unanswered.front());
    unanswered.pop_front();
    Json ids = Json::array();
    for (size_t k = 0; k < n; ++k) ids.push_back(1000 + answered++);
    ASSERT_TRUE(conn->send(make_response(m, dump_json(Json{{"ids", ids}}))));
  }
  auto r = submit.finish();
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_GT(requests, 4u) << "more than four requests for jobs of 1.4 MB";
  auto lines = r.out_lines();
  ASSERT_EQ(lines.size(), kJobs) << show(r);
  EXPECT_EQ(lines.front(), encode_f58(JobId{1000}));
  EXPECT_EQ(lines.back(), encode_f58(JobId{1000 + kJobs - 1}));
}

// `loom submit --cc` whose second request is refused (a user at the limit
// of active jobs) sends nothing more: the jobs stored are those of the
// requests already under way, all printed, and its one error line counts
// them. Here the test plays the broker; each job carries a 1.4 MB
// environment, so five go to a request.
TEST_F(Jobs, ABatchSubmitRefusedHalfwaySendsNoMore) {
  FakeBroker broker("refused");
  ASSERT_TRUE(broker.listening()) << std::strerror(errno);
  Env env = {{"LOOM_URI", broker.uri()}};
  for (int i = 0; i < 12; ++i) env.emplace_back("LOOM_TEST_PAD" + std::to_string(i), std::string(120000, 'x'));
  constexpr size_t kJobs = 26;  // six requests: 5, 5, 5, 5, 5, 1
  Background submit({bin("loom"), "submit", "--cc=1-" + std::to_string(kJobs), "true"}, env);
  auto conn = RawConn::accept(broker.fd);
  ASSERT_TRUE(conn.ok()) << conn.error().text;
  auto jobs_in = [](const Message& m) {
    size_t n = 0;
    for (size_t at = 0; (at = m.payload.find("\"jobspec\":", at)) != std::string::npos; ++at) ++n;
    return n;
  };
  uint64_t next_id = 1000;
  auto store = [&](const Message& m) {
    Json ids = Json::array();
    for (size_t k = jobs_in(m); k > 0; --k) ids.push_back(next_id++);
    return conn->send(make_response(m, dump_json(Json{{"ids", ids}})));
  };
  std::deque<Message> under_way;
  for (int i = 0; i < 4; ++i) {
    auto m = conn->recv();
    ASSERT_TRUE(m.has_value()) << "request " << i;
    under_way.push_back(std::move(*m));
  }
  // The first stored, which lets a fifth go; the second refused.
  ASSERT_TRUE(store(under_way.front()));
  under_way.pop_front();
  auto fifth = conn->recv();
  ASSERT_TRUE(fifth.has_value());
  under_way.push_back(std::move(*fifth));
  ASSERT_TRUE(conn->send(make_error_response(under_way.front(), EAGAIN, "user 1000 has too many active jobs")));
  under_way.pop_front();
  // Those under way are still answered, and stored.
  for (auto& m : under_way) ASSERT_TRUE(store(m));
  auto r = submit.finish();
  EXPECT_FALSE(conn->recv(0).has_value()) << "a request after the refusal";
  EXPECT_EQ(r.code, 1) << show(r);
  auto lines = r.out_lines();
  ASSERT_EQ(lines.size(), 20u) << show(r);
  EXPECT_EQ(lines.front(), encode_f58(JobId{1000}));
  EXPECT_EQ(lines.back(), encode_f58(JobId{1019}));
  EXPECT_EQ(r.err,
            "loom submit: user 1000 has too many active jobs; 20 of 26 jobs were submitted (their ids are "
            "printed), the others were not\n");
}

// Every request refused: no job stored, and the line says so.
TEST_F(Jobs, ABatchSubmitRefusedWholeSaysNoneWasSubmitted) {
  FakeBroker broker("refused-all");
  ASSERT_TRUE(broker.listening()) << std::strerror(errno);
  Env env = {{"LOOM_URI", broker.uri()}};
  for (int i = 0; i < 12; ++i) env.emplace_back("LOOM_TEST_PAD" + std::to_string(i), std::string(120000, 'x'));
  Background submit({bin("loom"), "submit", "--cc=1-26", "true"}, env);
  auto conn = RawConn::accept(broker.fd);
  ASSERT_TRUE(conn.ok()) << conn.error().text;
  std::vector<Message> under_way;
  for (int i = 0; i < 4; ++i) {
    auto m = conn->recv();
    ASSERT_TRUE(m.has_value()) << "request " << i;
    under_way.push_back(std::move(*m));
  }
  for (auto& m : under_way) ASSERT_TRUE(conn->send(make_error_response(m, EAGAIN, "too many active jobs")));
  auto r = submit.finish();
  EXPECT_FALSE(conn->recv(0).has_value()) << "a request after the refusals";
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "loom submit: too many active jobs; none of the 26 jobs were submitted\n");
}

// `loom job info ID`: one page, each line a fact of the job.
TEST_F(Jobs, JobInfoIsAPageAboutTheJob) {
  start();
  // The name is its user's words: an escape in it never reaches the terminal.
  std::string id = submit_job({"-N2", "-n2", "-t", "10m", "--job-name=three\x1b[2J", "sh", "-c", "exit 3"});
  wait_event(id, "clean");
  auto r = loom({"job", "info", id});
  ASSERT_EQ(r.code, 0) << show(r);
  std::map<std::string, std::string> page;
  std::istringstream lines(r.out);
  for (std::string l; std::getline(lines, l);) {
    ASSERT_GT(l.size(), 12u) << l;
    page[l.substr(0, l.find(' '))] += l.substr(12);
  }
  EXPECT_EQ(page["job"], id + " (" + std::to_string(parse_jobid(id).value().value()) + ")");
  EXPECT_EQ(page["name"], "three?[2J");
  EXPECT_EQ(page["state"], "INACTIVE, FAILED");
  EXPECT_EQ(page["command"], "sh -c exit 3");
  EXPECT_EQ(page["asked"], "2 tasks on 2 nodes, 1 core per task, time limit 0:10:00");
  EXPECT_EQ(page["exit"], "exit code 3");
  EXPECT_EQ(page["given"].find("rank "), 0u) << page["given"];
  for (const char* key : {"user", "submitted", "started", "ended", "urgency"}) EXPECT_NE(page[key], "") << key;
  // A pending job has no "started"; the exception that ended a job is there.
  std::string all = submit({"-N4", "-x", "true"});  // holds every rank until cancelled
  wait_event(all, "alloc");
  std::string big = submit_job({"-N1", "true"});
  wait_event(big, "priority");
  auto pending = loom({"job", "info", big});
  ASSERT_EQ(pending.code, 0) << show(pending);
  EXPECT_EQ(pending.out.find("\nstarted "), std::string::npos) << pending.out;
  EXPECT_NE(pending.out.find("\nstate       SCHED\n"), std::string::npos) << pending.out;
  ASSERT_EQ(loom({"cancel", big, all}).code, 0);
  wait_event(big, "clean");
  auto canceled = loom({"job", "info", big});
  EXPECT_NE(canceled.out.find("\nexception   cancel (fatal) at "), std::string::npos) << canceled.out;
  auto none = loom({"job", "info", "123"});
  EXPECT_EQ(none.code, 1);
  EXPECT_EQ(none.err, "loom job info: no job " + encode_f58(JobId{123}) + " of yours\n");
}

TEST_F(Jobs, QueueControl) {
  start();
  ASSERT_EQ(loom({"queue", "disable", "maintenance"}).code, 0);
  auto r = loom({"submit", "true"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("maintenance"), std::string::npos) << r.err;
  ASSERT_EQ(loom({"queue", "enable"}).code, 0);
  ASSERT_EQ(loom({"queue", "stop"}).code, 0);
  std::string j = submit({"true"});
  wait_event(j, "priority");
  EXPECT_EQ(allocated_ranks(), "");
  EXPECT_EQ(info_of(j), "queue stopped");
  ASSERT_EQ(loom({"queue", "stop", "a", "reason"}).code, 0);
  EXPECT_EQ(info_of(j), "queue stopped: a reason");
  auto st = loom({"queue", "status"});
  EXPECT_NE(st.out.find("stopped"), std::string::npos) << st.out;
  ASSERT_EQ(loom({"queue", "start"}).code, 0);
  wait_event(j, "alloc");
  // drain returns once nothing is active.
  ASSERT_EQ(loom({"cancel", "--all"}).code, 0);
  auto dr = loom({"queue", "drain", "-t", "20"});
  EXPECT_EQ(dr.code, 0) << show(dr);
  EXPECT_EQ(state(j), "INACTIVE");
}

TEST_F(Jobs, TheQueuesStateSurvivesARestartAndACrash) {
  auto dir = std::filesystem::temp_directory_path() / ("loom-jobs-queue-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  start({"--state-dir", dir.string()});
  ASSERT_EQ(loom({"queue", "disable", "maintenance", "window"}).code, 0);
  ASSERT_EQ(loom({"queue", "stop", "upgrading"}).code, 0);
  ASSERT_EQ(inst.stop(), 0);
  const std::string left = "Job submission is disabled: maintenance window\nScheduling is stopped: upgrading\n";
  {
    // An orderly restart: as it was left, and a submission is refused.
    Instance again;
    ASSERT_TRUE(again.start(4, {"--cores-per-rank=2", "--state-dir", dir.string()}));
    auto st = again.loom({"queue", "status"});
    EXPECT_EQ(st.out.substr(0, left.size()), left) << show(st);
    auto r = again.loom({"submit", "true"});
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.err.find("maintenance window"), std::string::npos) << show(r);
    // Enabled again, still stopped; then every broker is killed.
    ASSERT_EQ(again.loom({"queue", "enable"}).code, 0);
    auto pid = again.broker_pid(0);
    ASSERT_TRUE(pid);
    again.expect_clean_exit(false);
    ASSERT_EQ(::kill(*pid, SIGKILL), 0);
    again.stop(20);
  }
  Instance after;
  ASSERT_TRUE(after.start(4, {"--cores-per-rank=2", "--state-dir", dir.string()}));
  auto st = after.loom({"queue", "status"});
  EXPECT_EQ(st.out.substr(0, st.out.find("\n", st.out.find("\n") + 1) + 1),
            "Job submission is enabled\nScheduling is stopped: upgrading\n")
      << show(st);
  // Submissions are taken again, and run once scheduling starts.
  auto sub = after.loom({"submit", "true"});
  ASSERT_EQ(sub.code, 0) << show(sub);
  std::string id = trim(sub.out);
  ASSERT_EQ(after.loom({"queue", "start"}).code, 0);
  auto clean = after.loom({"job", "wait-event", "-t", "20", id, "clean"});
  EXPECT_EQ(clean.code, 0) << show(clean);
  EXPECT_EQ(after.stop(), 0);
  std::filesystem::remove_all(dir);
}

TEST_F(Jobs, PurgeForgetsInactiveJobs) {
  start();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(submit({"--urgency=0", "true"}));
    ASSERT_EQ(loom({"cancel", ids.back()}).code, 0);
    wait_event(ids.back(), "clean");
  }
  auto keep = loom({"job", "purge", "--num-limit=1"});
  ASSERT_EQ(keep.code, 0) << show(keep);
  auto ls = loom({"jobs", "-a", "--json"});
  auto j = parse_json(ls.out);
  ASSERT_TRUE(j.ok());
  ASSERT_EQ(j->size(), 1u) << ls.out;
  EXPECT_EQ((*j)[0]["id"], parse_jobid(ids[2]).value().value());
  auto gone = loom({"job", "eventlog", ids[0]});
  EXPECT_NE(gone.code, 0);
  std::string active = submit({"--urgency=0", "true"});
  auto busy = loom({"job", "purge", active});
  EXPECT_NE(busy.code, 0);
  EXPECT_NE(busy.err.find("active"), std::string::npos) << busy.err;
}

TEST_F(Jobs, OrderlyStopEndsRunningJobsAndRestartKeepsPendingAndInactiveJobs) {
  auto dir = std::filesystem::temp_directory_path() / ("loom-jobs-restart-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  start({"--state-dir", dir.string()});
  std::string done = submit({"--urgency=0", "true"});
  ASSERT_EQ(loom({"cancel", done}).code, 0);
  wait_event(done, "clean");
  std::string running = submit({"-N3", "true"});
  wait_event(running, "alloc");
  std::string pending = submit({"-N2", "true"});
  wait_event(pending, "priority");
  ASSERT_EQ(inst.stop(), 0);

  Instance again;
  ASSERT_TRUE(again.start(4, {"--cores-per-rank=2", "--state-dir", dir.string()}));
  auto run = [&](std::vector<std::string> a) { return again.loom(a); };
  // The orderly stop ended the running job, with its end stored: an
  // exception, the final release, free, clean. Nothing stays allocated.
  auto ended = run({"job", "eventlog", "--json", running});
  ASSERT_EQ(ended.code, 0) << show(ended);
  std::vector<std::string> tail;
  for (auto& line : ended.out_lines()) tail.push_back(parse_json(line).value()["name"].get<std::string>());
  ASSERT_GE(tail.size(), 4u);
  EXPECT_EQ(std::vector<std::string>(tail.end() - 3, tail.end()), (Names{"release", "free", "clean"})) << ended.out;
  EXPECT_NE(ended.out.find("the instance is shutting down"), std::string::npos) << ended.out;
  // The pending job stayed pending through the stop: it is marked and
  // scheduled again, on the ranks the running job gave back.
  auto wait_restart = run({"job", "wait-event", "-t", "20", pending, "restart"});
  ASSERT_EQ(wait_restart.code, 0) << show(wait_restart);
  auto alloc = run({"job", "wait-event", "-t", "20", pending, "alloc"});
  EXPECT_EQ(alloc.code, 0) << show(alloc);
  auto ls = parse_json(run({"jobs", "-a", "--json"}).out);
  ASSERT_TRUE(ls.ok());
  ASSERT_EQ(ls->size(), 3u) << *ls;
  // Newer ids than any before the restart.
  auto fresh = run({"submit", "--urgency=0", "true"});
  ASSERT_EQ(fresh.code, 0) << show(fresh);
  EXPECT_GT(parse_jobid(trim(fresh.out)).value().value(), parse_jobid(pending).value().value());
  ASSERT_EQ(again.stop(), 0);
  std::filesystem::remove_all(dir);
}

TEST_F(Jobs, RestartKeepsEveryInactiveJobUnderTheRetentionLimit) {
  auto dir = std::filesystem::temp_directory_path() / ("loom-jobs-keep-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  start({"--state-dir", dir.string(), "--setconf", "job-manager.inactive-num-limit=3"});
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(submit_job({"--setattr=exec.test.run_duration=0", "true"}));
    wait_event(ids.back(), "clean");
  }
  ASSERT_EQ(inst.stop(), 0);
  Instance again;
  ASSERT_TRUE(again.start(
      4, {"--cores-per-rank=2", "--state-dir", dir.string(), "--setconf", "job-manager.inactive-num-limit=3"}));
  auto ls = parse_json(again.loom({"jobs", "-a", "--json"}).out);
  ASSERT_TRUE(ls.ok());
  EXPECT_EQ(ls->size(), 3u) << "a restart must not count inactive jobs twice: " << *ls;
  // And the queue is empty: drain answers.
  auto drain = again.loom({"queue", "drain", "-t", "10"});
  EXPECT_EQ(drain.code, 0) << show(drain);
  ASSERT_EQ(again.stop(), 0);
  std::filesystem::remove_all(dir);
}

TEST_F(Jobs, CorruptEventlogIsSetAsideAtRestart) {
  auto dir = std::filesystem::temp_directory_path() / ("loom-jobs-bad-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  start({"--state-dir", dir.string()});
  std::string good = submit({"--urgency=0", "true"});
  // An eventlog that breaks the order: alloc before priority.
  auto put = loom({"kvs", "eventlog", "append", "job.77.eventlog", "alloc"});
  ASSERT_EQ(put.code, 0) << show(put);
  ASSERT_EQ(inst.stop(), 0);
  Instance again;
  ASSERT_TRUE(again.start(4, {"--cores-per-rank=2", "--state-dir", dir.string()}));
  auto st = again.loom({"rpc", "job-manager.stats"});
  ASSERT_EQ(st.code, 0) << show(st);
  EXPECT_NE(st.out.find("77"), std::string::npos) << st.out;
  auto status = again.loom({"status"});
  EXPECT_NE(status.out.find("set aside"), std::string::npos) << status.out;
  EXPECT_EQ(again.loom({"job", "eventlog", good}).code, 0);
  ASSERT_EQ(again.stop(), 0);
  std::filesystem::remove_all(dir);
}

// docs/configuration.md: a TOML file, then --setconf, then the plain options.
TEST(Config, FileSetconfAndOptionsApplyInThatOrder) {
  char tmpl[] = "/tmp/loom-config-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string file = dir + "/loom.toml";
  std::ofstream(file) << "[sched]\npolicy = \"easy\"\n[resource]\ncores-per-rank = 3\ngpus-per-rank = 1\n";
  {
    Instance inst;
    ASSERT_TRUE(inst.start(2, {"--config", file, "--setconf", "resource.gpus-per-rank=2", "--cores-per-rank=5"}));
    auto r = inst.loom({"resource", "list", "--json"});
    ASSERT_EQ(r.code, 0) << show(r);
    Json res = parse_json(r.out).value();
    EXPECT_EQ(res["policy"], "easy") << "from the file";
    EXPECT_EQ(res["all"]["ngpus"], 4) << "--setconf wins over the file";
    EXPECT_EQ(res["all"]["ncores"], 10) << "--cores-per-rank wins over both";
  }
  // A bad file stops loom start with one line naming the key, before any broker runs.
  std::ofstream(file) << "[sched]\npolicy = \"lifo\"\n";
  auto bad = run_cmd({bin("loom"), "start", "--config", file, "--", "true"});
  EXPECT_NE(bad.code, 0);
  EXPECT_EQ(bad.err_lines().size(), 1u) << bad.err;
  EXPECT_NE(bad.err.find("sched.policy"), std::string::npos) << bad.err;
  std::ofstream(file) << "[sched]\nnosuch = 1\n";
  bad = run_cmd({bin("loom"), "start", "--config", file, "--", "true"});
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("unknown configuration key sched.nosuch"), std::string::npos) << bad.err;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace loom::test
