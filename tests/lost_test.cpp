// Losing a broker (docs/protocols/messages.md): a child that dies or stops answering
// heartbeats is declared lost, with one broker.lost event per rank of its
// subtree; requests to it fail with EHOSTUNREACH instead of hanging; the
// instance still stops promptly.
//
// Heartbeats every 0.1 s, lost after 1 s of silence. Tree: 0 → 1, 2; 1 → 3.
#include <gtest/gtest.h>
#include <signal.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kit/client.h"
#include "kit/instance.h"

namespace loom::test {
namespace {

const std::vector<std::string> kFastHeartbeats = {"--heartbeat-interval=0.1", "--heartbeat-timeout=1"};

class Lost : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(inst_.start(4, kFastHeartbeats));
    inst_.expect_clean_exit(false);  // brokers are killed here on purpose
    for (uint32_t r = 0; r < 4; ++r) {
      std::string why;
      auto pid = inst_.broker_pid(r, &why);
      ASSERT_TRUE(pid) << why;
      pids_[r] = *pid;
    }
    auto c = loop_.connect(inst_.socket(0));
    ASSERT_TRUE(c.ok()) << c.error().text;
    watcher_ = std::move(*c);
    ASSERT_TRUE(subscribe(loop_, watcher_->handle(), "broker.lost", [this](const Message& m) {
      auto j = parse_json(m.payload);
      ASSERT_TRUE(j.ok() && j->contains("rank")) << m.payload;
      lost_.push_back((*j)["rank"].get<uint32_t>());
      reasons_[(*j)["rank"].get<uint32_t>()] = j->value("reason", "");
      seqs_.push_back(m.seq);
    }));
  }

  void TearDown() override {
    // Nothing may stay stopped: the instance must be able to shut down.
    for (auto& [rank, pid] : pids_) {
      if (is_alive(pid)) ::kill(pid, SIGCONT);
    }
  }

  bool wait_lost(const std::multiset<uint32_t>& want, double timeout = 15) {
    return loop_.run_until([&] { return std::multiset<uint32_t>(lost_.begin(), lost_.end()) == want; }, timeout);
  }

  Json status() {
    auto r = inst_.loom({"status", "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    auto j = parse_json(r.out);
    return j.ok() ? *j : Json(nullptr);
  }

  Instance inst_;
  std::map<uint32_t, pid_t> pids_;
  Loop loop_;
  std::unique_ptr<Client> watcher_;
  std::vector<uint32_t> lost_;
  std::map<uint32_t, std::string> reasons_;
  std::vector<uint32_t> seqs_;
};

TEST_F(Lost, KilledLeafIsLostAndUnreachable) {
  ASSERT_EQ(::kill(pids_[3], SIGKILL), 0);
  ASSERT_TRUE(wait_lost({3})) << "lost so far: " << lost_.size();
  EXPECT_GT(seqs_.at(0), 0u);
  EXPECT_TRUE(wait_gone(pids_[3], 5));

  Json st = status();
  ASSERT_TRUE(st.is_object());
  EXPECT_EQ(st["ready"], false);
  EXPECT_EQ(st["ranks"][3]["state"], "lost");
  for (uint32_t r : {0u, 1u, 2u}) EXPECT_EQ(st["ranks"][r]["state"], "online") << r;
  // Rank 1 knows its child is gone.
  EXPECT_EQ(st["ranks"][1]["info"]["children"][0]["connected"], false) << st.dump();

  // Requests to rank 3 fail at once, through rank 1, from anywhere.
  for (uint32_t from : {0u, 1u, 2u}) {
    auto c = loop_.connect(inst_.socket(from));
    ASSERT_TRUE(c.ok()) << c.error().text;
    Reply r = call(loop_, **c, "broker.info", "{}", {3, false, 0}, 10);
    EXPECT_EQ(r.errnum, EHOSTUNREACH) << "from rank " << from << ": " << r.errstr;
  }
  auto cli = inst_.loom({"rpc", "--rank", "3", "broker.info"}, {}, 10);
  EXPECT_EQ(cli.code, 1) << cli.err;
  EXPECT_FALSE(cli.timed_out);
  EXPECT_NE(cli.err.find("not reachable"), std::string::npos) << cli.err;
  // Everyone else still answers.
  for (uint32_t r : {0u, 1u, 2u}) {
    EXPECT_EQ(call(loop_, *watcher_, "broker.ping", "{}", {r, false, 0}).errnum, 0) << r;
  }
  // Only rank 3 was announced.
  EXPECT_EQ(lost_, std::vector<uint32_t>{3});
}

TEST_F(Lost, StoppedRankIsLostWithItsSubtreeAfterTheHeartbeatTimeout) {
  double t0 = monotonic_now();
  ASSERT_EQ(::kill(pids_[1], SIGSTOP), 0);
  ASSERT_TRUE(wait_lost({1, 3})) << "lost so far: " << lost_.size();
  double took = monotonic_now() - t0;
  // Not before the timeout (1 s; a little less for timer granularity), and
  // not much after it.
  EXPECT_GE(took, 0.8);
  EXPECT_LT(took, 10.0);
  EXPECT_EQ(reasons_[3], "parent lost");
  EXPECT_NE(seqs_[0], seqs_[1]);

  Json st = status();
  ASSERT_TRUE(st.is_object());
  EXPECT_EQ(st["ranks"][1]["state"], "lost");
  EXPECT_EQ(st["ranks"][3]["state"], "lost");
  EXPECT_EQ(st["ranks"][2]["state"], "online");
  for (uint32_t r : {1u, 3u}) {
    Reply rep = call(loop_, *watcher_, "broker.info", "{}", {r, false, 0}, 10);
    EXPECT_EQ(rep.errnum, EHOSTUNREACH) << r << ": " << rep.errstr;
  }
  EXPECT_EQ(call(loop_, *watcher_, "broker.info", "{}", {2, false, 0}).errnum, 0);

  // Rank 3 loses its silent parent too and stops by itself; rank 1, once
  // resumed, finds its parent gone and stops.
  EXPECT_TRUE(wait_gone(pids_[3], 10)) << "rank 3 still runs under a stopped parent";
  ASSERT_EQ(::kill(pids_[1], SIGCONT), 0);
  EXPECT_TRUE(wait_gone(pids_[1], 10)) << "rank 1 still runs after losing its parent";
  double s0 = monotonic_now();
  EXPECT_TRUE(inst_.stop(10).has_value());
  EXPECT_LT(monotonic_now() - s0, 5.0);
}

TEST_F(Lost, InstanceStopsPromptlyWithARankGone) {
  ASSERT_EQ(::kill(pids_[3], SIGKILL), 0);
  ASSERT_TRUE(wait_lost({3}));
  double t0 = monotonic_now();
  auto code = inst_.stop(15);
  double took = monotonic_now() - t0;
  ASSERT_TRUE(code.has_value()) << "loom start did not stop";
  // The shutdown waits for no one that is gone: well under the grace
  // period loom start gives stragglers (heartbeat timeout + 5 s).
  EXPECT_LT(took, 3.0);
  // A broker died: loom start says so in its status.
  EXPECT_EQ(*code, 1);
  for (uint32_t r : {0u, 1u, 2u}) EXPECT_TRUE(wait_gone(pids_[r], 1)) << "rank " << r << " outlived loom start";
}

TEST_F(Lost, InstanceStopsEvenWithARankStopped) {
  // A rank that never answers again (stopped, not dead) is killed after
  // loom start's grace period; the stop is bounded, not a hang.
  ASSERT_EQ(::kill(pids_[2], SIGSTOP), 0);
  ASSERT_TRUE(wait_lost({2}));
  double t0 = monotonic_now();
  auto code = inst_.stop(30);
  double took = monotonic_now() - t0;
  ASSERT_TRUE(code.has_value()) << "loom start did not stop";
  EXPECT_LT(took, 20.0);
  EXPECT_NE(*code, 0);
  for (auto& [r, pid] : pids_) EXPECT_TRUE(wait_gone(pid, 1)) << "rank " << r << " outlived loom start";
}

// A service on `rank` (a client of it) that holds sink.hold requests and
// answers sink.echo and sink.stream.
std::unique_ptr<Client> sink_on(Loop& loop, Instance& inst, uint32_t rank, int* held) {
  auto c = loop.connect(inst.socket(rank));
  EXPECT_TRUE(c.ok());
  if (!c.ok()) return nullptr;
  EXPECT_EQ(call(loop, **c, "service.add", R"({"service":"sink"})").errnum, 0);
  Handle& h = (*c)->handle();
  h.add_method("sink.hold", loom::Access::kUser, [held](const Message&) { ++*held; });
  h.add_method("sink.echo", loom::Access::kUser, [&h](const Message& req) { h.respond(req, req.payload); });
  h.add_method("sink.stream", loom::Access::kUser, [&h](const Message& req) {
    h.respond(req, std::string("{}"));
    h.respond_error(req, ENODATA, "");
  });
  return std::move(*c);
}

Message request(const std::string& topic, uint32_t tag, uint32_t nodeid, bool streaming = false) {
  Message m = make_request(topic, "{}", nodeid, streaming ? msgflag::kStreaming : 0);
  m.matchtag = tag;
  return m;
}

// Requests waiting on a rank when it is lost fail with EHOSTUNREACH, once;
// requests already answered get nothing more.
void expect_in_flight_requests_fail(Loop& loop, Instance& inst, const std::function<void()>& lose,
                                    const std::function<bool()>& wait_lost) {
  int held = 0;
  auto sink = sink_on(loop, inst, 3, &held);
  ASSERT_TRUE(sink);
  auto conn = RawConn::connect(inst.socket(0));
  ASSERT_TRUE(conn.ok());
  RawConn& c = *conn;
  ASSERT_TRUE(c.send(request("sink.echo", 1, 3)));
  ASSERT_TRUE(c.send(request("sink.stream", 2, 3, true)));
  ASSERT_TRUE(c.send(request("sink.hold", 3, 3)));
  ASSERT_TRUE(c.send(request("sink.hold", 4, 3, true)));
  ASSERT_TRUE(loop.run_until([&] { return held == 2; }));
  std::map<uint32_t, std::vector<int>> got;  // matchtag → errnums
  for (int i = 0; i < 3; ++i) {              // echo, stream item, ENODATA
    auto m = c.recv(loop);
    ASSERT_TRUE(m.has_value());
    got[m->matchtag].push_back(m->errnum);
  }
  EXPECT_EQ(got[1], std::vector<int>{0});
  EXPECT_EQ(got[2], (std::vector<int>{0, ENODATA}));

  lose();
  ASSERT_TRUE(wait_lost());
  for (int i = 0; i < 2; ++i) {
    auto m = c.recv(loop, 10);
    ASSERT_TRUE(m.has_value()) << "a request in flight to a lost rank was never answered";
    got[m->matchtag].push_back(m->errnum);
    EXPECT_NE(error_text(*m).find("lost"), std::string::npos) << error_text(*m);
  }
  EXPECT_EQ(got[3], std::vector<int>{EHOSTUNREACH});
  EXPECT_EQ(got[4], std::vector<int>{EHOSTUNREACH});
  // Nothing else comes: the next message is the answer to a later ping.
  ASSERT_TRUE(c.send(request("broker.ping", 5, 0)));
  auto m = c.recv(loop);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->matchtag, 5u);
}

TEST_F(Lost, RequestsInFlightToADeadRankFail) {
  expect_in_flight_requests_fail(
      loop_, inst_, [&] { ASSERT_EQ(::kill(pids_[3], SIGKILL), 0); }, [&] { return wait_lost({3}); });
}

TEST_F(Lost, RequestsInFlightThroughAStoppedRankFail) {
  // Rank 0 loses rank 1 and answers for everything it had sent down that
  // link, including requests meant for rank 3 beyond it.
  expect_in_flight_requests_fail(
      loop_, inst_, [&] { ASSERT_EQ(::kill(pids_[1], SIGSTOP), 0); },
      [&] {
        return wait_lost({1, 3});
      });
}

}  // namespace
}  // namespace loom::test
