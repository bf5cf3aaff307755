// job-exec (job_exec.h) over a fake transport and base's SteppedClock: each
// test plays the job manager (NAME.start), the shell launchers of the ranks
// (shell.launch, shell.kill), the KVS and the scheduler, and steps virtual
// time through time limits, kill escalation, shell-exit and epilog
// timeouts and the exec eventlog's delay, with no wall-clock wait. The
// responses are read back through exec_protocol, as the job manager reads
// them. End-to-end runs of real shells: tests/exec_*_test.cpp.
#include "job_exec/job_exec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <csignal>
#include <string>
#include <vector>

#include "base/stepped_clock.h"
#include "eventlog/eventlog.h"
#include "exec_protocol/exec_protocol.h"
#include "msg/access.h"
#include "msg/handle.h"
#include "msg/message.h"

namespace loom {
namespace {

using namespace exec_protocol;

class JobExecTest : public ::testing::Test {
 protected:
  void create(JobExecConfig cfg) {
    exec = JobExec::create(h, cfg);
    answer(take("job-manager.exec-hello"), Json::object());
  }
  // NAME.start of a real job (no exec.test) on `ranks`, with a time limit
  // ending at `expiration` (wall seconds; 0: none), as the job manager
  // sends it: matchless, streaming.
  void start(uint64_t id, const std::string& ranks, double expiration = 0) {
    send_start(Json{{"id", id}, {"userid", 0}, {"reattach", false}}, ranks, expiration);
    answer_all("kvs.namespace-create");
  }
  // NAME.start with `fields`, R on `ranks` and a plain jobspec, as the job
  // manager sends it: matchless, streaming.
  void send_start(Json fields, const std::string& ranks, double expiration) {
    fields["R"] = Json{{"version", 1},
                       {"execution",
                        {{"R_lite", Json::array({Json{{"rank", ranks}, {"children", {{"core", "0"}}}}})},
                         {"starttime", clock.wall()},
                         {"expiration", expiration}}}};
    fields["jobspec"] = Json{{"version", 1}, {"attributes", {{"system", Json::object()}}}};
    Message m = make_request("job-exec.start", fields.dump(), kNodeAny, msgflag::kStreaming);
    m.matchtag = 0;
    m.route = {make_hop(0, 4)};
    m.rolemask = role::kOwner;
    h.dispatch(std::move(m));
  }
  // The start of job `id` again after a restart (reattach, started), with
  // what the job manager recorded of its stream; job-exec's lookup of the
  // job's exec eventlog is answered with `exec_log`.
  void reattach(uint64_t id, const std::string& ranks, const std::string& released, bool fatal,
                const std::string& exec_log, bool finished = false, double expiration = 0) {
    send_start(Json{{"id", id},
                    {"userid", 0},
                    {"reattach", true},
                    {"started", true},
                    {"released", released},
                    {"finished", finished},
                    {"fatal", fatal}},
               ranks, expiration);
    Message lookup = take("kvs.lookup");
    Json q = Json::parse(lookup.payload);
    EXPECT_EQ(q["namespace"], "job-" + std::to_string(id));
    EXPECT_EQ(q["key"], "exec.eventlog");
    answer(lookup, Json{{"value", exec_log}});
  }
  // The ranks asked shell.reattach, taken (kept to answer as shells).
  std::vector<uint32_t> reattach_asked() {
    std::vector<uint32_t> out;
    for (auto& m : pending("shell.reattach")) {
      out.push_back(m.nodeid);
      launches.push_back(m);
    }
    return out;
  }
  // The shell.reattach to `rank` answered: found, or not back (EHOSTUNREACH).
  void shell_found(uint32_t rank, bool found) {
    for (auto it = launches.begin(); it != launches.end(); ++it) {
      if (it->nodeid != rank || it->topic != "shell.reattach") continue;
      Message m = *it;
      if (found) return answer(m, Json{{"type", "reattached"}, {"pid", 100 + rank}});
      launches.erase(it);
      return answer_error(m, EHOSTUNREACH);
    }
    ADD_FAILURE() << "rank " << rank << " was not asked for its shell";
  }
  // Each rank's shell.launch answered "started".
  void shells_start() {
    for (auto& m : pending("shell.launch")) {
      launches.push_back(m);
      answer(m, Json{{"type", "started"}, {"pid", 100 + m.nodeid}});
    }
  }
  // The shell on `rank` exits with `code` (as a shell exits: 128+N for a
  // task killed by signal N).
  void shell_exits(uint32_t rank, int code, bool epilog = false) {
    for (auto& m : launches) {
      if (m.nodeid != rank) continue;
      answer(m, Json{{"type", "exited"}, {"status", code << 8}, {"epilog", epilog}});
      if (!epilog) answer_error(m, ENODATA);
    }
  }
  void epilog_ends(uint32_t rank, int status, bool timeout) {
    for (auto& m : launches) {
      if (m.nodeid != rank) continue;
      answer(m, Json{{"type", "epilog"}, {"status", status}, {"timeout", timeout}});
      answer_error(m, ENODATA);
    }
  }
  // The signals sent so far with shell.kill, as "rank:signal", taken.
  std::vector<std::string> kills() {
    std::vector<std::string> out;
    for (auto& m : pending("shell.kill")) {
      out.push_back(std::to_string(m.nodeid) + ":" + std::to_string(Json::parse(m.payload)["signal"].get<int>()));
    }
    return out;
  }
  // The responses to the start so far, as the job manager reads them, taken.
  std::vector<Response> responses() {
    std::vector<Response> out;
    for (auto it = sent.begin(); it != sent.end();) {
      if (it->topic == "job-exec.start" && it->is_response()) {
        auto r = parse_response(Json::parse(it->payload));
        EXPECT_TRUE(r.ok()) << it->payload;
        if (r.ok()) out.push_back(*r);
        it = sent.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }
  static std::vector<std::string> names(const std::vector<Response>& rs) {
    std::vector<std::string> out;
    for (const auto& r : rs) {
      std::string n(type_name(r));
      if (auto* e = std::get_if<Raised>(&r)) n += " " + std::to_string(e->severity) + " " + e->type;
      if (auto* f = std::get_if<Finished>(&r)) n += " " + std::to_string(f->status);
      if (auto* l = std::get_if<Released>(&r)) n += " " + l->ranks_text() + (l->final ? " final" : "");
      out.push_back(n);
    }
    return out;
  }
  // Everything the KVS is asked (namespace link and remove, commits of the
  // exec eventlog) succeeds; the topics answered.
  std::vector<std::string> serve_kvs() {
    std::vector<std::string> topics;
    for (int round = 0; round < 4; ++round) {
      run();
      for (const char* t : {"kvs.commit", "kvs.namespace-link", "kvs.namespace-remove", "kvs.namespace-create"}) {
        for (auto& m : pending(t)) {
          topics.push_back(t);
          answer(m, Json::object());
        }
      }
    }
    return topics;
  }

  Message take(const std::string& topic) {
    auto all = pending(topic);
    if (all.empty()) {
      ADD_FAILURE() << "nothing was sent on " << topic;
      return Message{};
    }
    for (size_t i = 1; i < all.size(); ++i) sent.push_back(all[i]);
    return all[0];
  }
  // The requests sent on `topic`, taken.
  std::vector<Message> pending(const std::string& topic) {
    run();
    std::vector<Message> out;
    for (auto it = sent.begin(); it != sent.end();) {
      if (it->topic == topic && it->is_request()) {
        out.push_back(std::move(*it));
        it = sent.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }
  void answer_all(const std::string& topic) {
    for (auto& m : pending(topic)) answer(m, Json::object());
  }
  void answer(const Message& req, const Json& payload) {
    h.dispatch(make_response(req, payload.dump()));
    run();
  }
  void answer_error(const Message& req, int errnum) {
    h.dispatch(make_error_response(req, errnum, ""));
    run();
  }
  void advance(double seconds) {
    clock.advance(seconds);
    run();
  }
  void run() {
    io.poll();
    io.restart();
  }

  asio::io_context io;
  SteppedClock clock;
  std::vector<Message> sent;
  Handle h{clock, [this](Message m) { sent.push_back(std::move(m)); }};
  std::unique_ptr<JobExec> exec;
  std::vector<Message> launches;  // shell.launch requests, answered as the shells go
};

// A time limit: a fatal timeout exception and SIGALRM to every shell when
// R expires, SIGKILL a kill timeout later; the shells' exits finish the
// job and release its ranks, the last release final.
TEST_F(JobExecTest, ATimeLimitSendsSigalrmThenSigkillAfterTheKillTimeout) {
  create(JobExecConfig{.kill_timeout = 5});
  start(1, "0-1", clock.wall() + 10);
  shells_start();
  EXPECT_EQ(names(responses()), std::vector<std::string>{"start"});
  advance(9.9);
  EXPECT_TRUE(kills().empty());
  EXPECT_TRUE(responses().empty());
  advance(0.1);
  EXPECT_EQ(names(responses()), std::vector<std::string>{"exception 0 timeout"});
  EXPECT_EQ(kills(), (std::vector<std::string>{"0:14", "1:14"}));
  advance(4.9);
  EXPECT_TRUE(kills().empty());
  advance(0.1);
  EXPECT_EQ(kills(), (std::vector<std::string>{"0:9", "1:9"}));
  shell_exits(0, 128 + SIGKILL);
  shell_exits(1, 128 + SIGKILL);
  serve_kvs();
  // Each rank goes back as soon as its shell is done; the finish once all are.
  EXPECT_EQ(names(responses()), (std::vector<std::string>{"release 0", "finish 9", "release 1 final"}));
  advance(60);  // nothing is left to give up on
  EXPECT_TRUE(kills().empty());
  EXPECT_TRUE(pending("sched.drain").empty());
}

// A shell that outlives SIGKILL by the kill timeout: its rank is drained,
// the job gets a non-fatal exception and still completes.
TEST_F(JobExecTest, ARankThatOutlivesSigkillIsDrainedAndTheJobCompletes) {
  create(JobExecConfig{.kill_timeout = 2});
  start(2, "0-1", clock.wall() + 1);
  shells_start();
  advance(1);
  advance(2);
  EXPECT_EQ(kills(), (std::vector<std::string>{"0:14", "1:14", "0:9", "1:9"}));
  shell_exits(0, 128 + SIGKILL);
  responses();
  advance(1.9);
  EXPECT_TRUE(pending("sched.drain").empty());
  advance(0.1);
  auto drain = pending("sched.drain");
  ASSERT_EQ(drain.size(), 1u);
  EXPECT_EQ(Json::parse(drain[0].payload)["ranks"], "1");
  serve_kvs();
  EXPECT_EQ(names(responses()), (std::vector<std::string>{"exception 1 exec", "finish 9", "release 1 final"}));
}

// One shell fails while the other runs on: after exec.shell-exit-timeout
// the job fails and the other shell is killed (SIGTERM, then SIGKILL).
TEST_F(JobExecTest, AFailedShellHasTheOthersKilledAfterTheShellExitTimeout) {
  create(JobExecConfig{.kill_timeout = 5, .shell_exit_timeout = 30});
  start(3, "0-1");
  shells_start();
  responses();
  shell_exits(1, 3);
  advance(29.9);
  EXPECT_TRUE(kills().empty());
  EXPECT_EQ(names(responses()), std::vector<std::string>{"release 1"});
  advance(0.1);
  EXPECT_EQ(names(responses()), std::vector<std::string>{"exception 0 exec"});
  EXPECT_EQ(kills(), std::vector<std::string>{"0:15"});
  advance(5);
  EXPECT_EQ(kills(), std::vector<std::string>{"0:9"});
}

// A failed or timed-out epilog drains its rank and raises a non-fatal
// epilog exception; the rank is released once the epilog is over.
TEST_F(JobExecTest, AnEpilogThatTimesOutDrainsItsRank) {
  create(JobExecConfig{});
  start(4, "0");
  shells_start();
  shell_exits(0, 0, true);
  EXPECT_EQ(names(responses()), (std::vector<std::string>{"start", "finish 0"}));
  epilog_ends(0, SIGKILL, true);
  auto drain = pending("sched.drain");
  ASSERT_EQ(drain.size(), 1u);
  EXPECT_EQ(Json::parse(drain[0].payload)["reason"].get<std::string>().rfind("epilog timed out (job ", 0), 0u);
  serve_kvs();
  EXPECT_EQ(names(responses()), (std::vector<std::string>{"exception 1 epilog", "release 0 final"}));
}

// The exec eventlog is stored kExecLogDelay (0.1 s) after its first new
// entry, with whatever came meanwhile, in one commit to the job's
// namespace.
TEST_F(JobExecTest, TheExecEventlogIsStoredATenthOfASecondAfterItsFirstEntry) {
  create(JobExecConfig{});
  start(5, "0-2");
  shells_start();
  EXPECT_TRUE(pending("kvs.commit").empty());
  advance(0.099);
  EXPECT_TRUE(pending("kvs.commit").empty());
  advance(0.001);
  auto commits = pending("kvs.commit");
  ASSERT_EQ(commits.size(), 1u);
  Json c = Json::parse(commits[0].payload);
  EXPECT_EQ(c["namespace"], "job-5");
  std::string text = c["ops"][0]["value"].get<std::string>();
  EXPECT_NE(text.find("shell-start"), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;  // one entry per rank
}

// After a restart, a rank whose broker is not back yet is asked for its
// shell again every second; once every shell is found the job goes on
// (reattached) and ends as any job does.
TEST_F(JobExecTest, AfterARestartARankNotBackIsAskedAgainEverySecond) {
  create(JobExecConfig{.reattach_timeout = 60});
  reattach(7, "0-1", "", false, "");
  EXPECT_EQ(reattach_asked(), (std::vector<uint32_t>{0, 1}));
  shell_found(0, true);
  shell_found(1, false);
  EXPECT_TRUE(responses().empty());
  advance(0.9);
  EXPECT_TRUE(reattach_asked().empty());
  advance(0.1);
  EXPECT_EQ(reattach_asked(), std::vector<uint32_t>{1});
  shell_found(1, false);
  advance(1);
  EXPECT_EQ(reattach_asked(), std::vector<uint32_t>{1});
  shell_found(1, true);
  EXPECT_EQ(names(responses()), std::vector<std::string>{"reattached"});
  shell_exits(0, 0);
  shell_exits(1, 0);
  serve_kvs();
  EXPECT_EQ(names(responses()), (std::vector<std::string>{"release 0", "finish 0", "release 1 final"}));
}

// A rank still not back at the reattach timeout: the job was lost; the
// shells found are killed and every rank goes back.
TEST_F(JobExecTest, ARankNotBackByTheReattachTimeoutLosesTheJob) {
  create(JobExecConfig{.kill_timeout = 5, .reattach_timeout = 3});
  reattach(8, "0-1", "", false, "");
  reattach_asked();
  shell_found(0, true);
  shell_found(1, false);
  for (int i = 0; i < 2; ++i) {
    advance(1);
    EXPECT_EQ(reattach_asked(), std::vector<uint32_t>{1});
    shell_found(1, false);
  }
  EXPECT_TRUE(responses().empty());
  advance(1);
  auto rs = responses();
  EXPECT_EQ(names(rs), (std::vector<std::string>{"exception 0 exec", "release 1"}));
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(std::get<Raised>(rs[0]).note, "the job was lost in the restart: ranks 1 did not come back");
  EXPECT_EQ(kills(), std::vector<std::string>{"0:9"});
  shell_exits(0, 128 + SIGKILL);
  serve_kvs();
  EXPECT_EQ(names(responses()), std::vector<std::string>{"release 0 final"});
}

// A reattach goes on from what the job manager recorded (rank 1 released,
// a fatal exception: a cancel) and from job-exec's own exec eventlog (rank
// 2's shell had exited and its epilog ended): only rank 0 is looked for,
// and once found its tasks are killed, as the cancel would have had them.
TEST_F(JobExecTest, AReattachGoesOnFromTheJobManagersRecordAndTheExecEventlog) {
  create(JobExecConfig{});
  std::string exec_log = format_event(EventEntry{1.0, "shell-exit", Json{{"rank", 2}, {"status", 0}}}) +
                         format_event(EventEntry{1.0, "epilog-finish", Json{{"rank", 2}, {"status", 0}}});
  reattach(9, "0-2", "1", true, exec_log);
  EXPECT_EQ(reattach_asked(), std::vector<uint32_t>{0});
  EXPECT_EQ(names(responses()), std::vector<std::string>{"release 2"});
  shell_found(0, true);
  EXPECT_EQ(names(responses()), std::vector<std::string>{"reattached"});
  EXPECT_EQ(kills(), std::vector<std::string>{"0:15"});
  shell_exits(0, 128 + SIGTERM);
  serve_kvs();
  EXPECT_EQ(names(responses()), (std::vector<std::string>{"finish 15", "release 0 final"}));
}

// A job found again after its finish, in its epilog past its time limit:
// no timeout (its tasks are done), the epilog's end releases the rank.
TEST_F(JobExecTest, AJobFoundAfterItsFinishHasNoTimeLimitLeft) {
  create(JobExecConfig{});
  std::string exec_log = format_event(EventEntry{1.0, "shell-exit", Json{{"rank", 0}, {"status", 0}}});
  reattach(10, "0", "", false, exec_log, true, clock.wall() - 5);
  EXPECT_TRUE(reattach_asked().empty());
  auto epilog = pending("shell.epilog");
  ASSERT_EQ(epilog.size(), 1u);
  advance(1);
  EXPECT_EQ(names(responses()), std::vector<std::string>{"reattached"});
  answer(epilog[0], Json{{"type", "epilog"}, {"status", 0}});
  answer_error(epilog[0], ENODATA);
  serve_kvs();
  EXPECT_EQ(names(responses()), std::vector<std::string>{"release 0 final"});
  EXPECT_TRUE(kills().empty());
}

// A start job-exec cannot read fails that job alone (exception, release):
// an error response would end the job manager's stream for every job.
TEST_F(JobExecTest, AMalformedStartFailsThatJobAlone) {
  create(JobExecConfig{});
  Message m = make_request("job-exec.start", Json{{"id", 6}, {"userid", -1}, {"reattach", "yes"}}.dump(), kNodeAny,
                           msgflag::kStreaming);
  m.route = {make_hop(0, 4)};
  m.rolemask = role::kOwner;
  h.dispatch(std::move(m));
  run();
  for (const auto& r : sent) EXPECT_FALSE(r.is_response() && r.errnum) << r.topic << " " << r.errnum;
  auto rs = responses();
  EXPECT_EQ(names(rs), (std::vector<std::string>{"exception 0 exec", "release all final"}));
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(std::get<Raised>(rs[0]).note.rfind("start: ", 0), 0u) << std::get<Raised>(rs[0]).note;
}

}  // namespace
}  // namespace loom
