// Tests of the `sched` service (sched.h) over a fake transport
// (sched_fixture.h): hello and restart, hosts and their inventories,
// allocs, frees, drains and bad requests. The policies: sched_policy_test.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sched/alloc_protocol.h"
#include "sched/sched_fixture.h"

namespace loom::sched_test {
namespace {

TEST(SchedConfigTest, RefusesAnUnknownPolicyInOneLine) {
  SchedConfig c;
  c.policy = "lifo";
  auto r = validate_sched_config(c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().text, "sched.policy must be fcfs, easy or easy-sjbf, not lifo");
  for (const char* p : {"fcfs", "easy", "easy-sjbf"}) {
    c.policy = p;
    EXPECT_TRUE(validate_sched_config(c).ok()) << p;
  }
  c.backfill_depth = -1;
  r = validate_sched_config(c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().text, "sched.backfill-depth must be 0 (no cap) or more, not -1");
  c.backfill_depth = 0;
  EXPECT_TRUE(validate_sched_config(c).ok());
  c.cores_per_rank = 0;
  EXPECT_FALSE(validate_sched_config(c).ok());
}

TEST(SchedDiscover, FindsAtLeastOneCoreAndAHostname) {
  RankInventory inv = discover_local_resources();
  EXPECT_GE(inv.ncores, 1u);
  EXPECT_FALSE(inv.hostname.empty());
}

TEST_F(SchedTest, RetriesTheHelloUntilTheJobManagerAnswers) {
  create(config(2, 2));
  answer_error(take("kvs.lookup"), ENOENT);
  answer(take("broker.status"), Json::object());
  answer_error(take("job-manager.sched-hello"), ENOSYS, "unknown method job-manager.sched-hello");
  EXPECT_EQ(count("job-manager.sched-hello", MsgType::kRequest), 0u);
  clock.advance(0.5);
  EXPECT_EQ(count("job-manager.sched-hello", MsgType::kRequest), 0u);
  clock.advance(0.5);
  Message hello = take("job-manager.sched-hello");
  // A job holding ranks 0-1, of which rank 1 was already released.
  answer(hello, Json{{"id", 42},
                     {"priority", 16},
                     {"userid", 1000},
                     {"t_submit", 1.0},
                     {"R", R({{0, "0-1"}, {1, "0-1"}}).to_json()},
                     {"free", "1"}});
  answer_error(hello, ENODATA);
  EXPECT_FALSE(sched->ready());
  answer(take("job-manager.sched-ready"), Json{{"count", 0}});
  EXPECT_TRUE(sched->ready());
  Json st = status();
  EXPECT_EQ(st["allocated"]["ranks"], "0");
  EXPECT_EQ(st["free"]["ranks"], "1");
  EXPECT_EQ(st["alarms"], 0);
  // Rank 0 is not handed out again.
  alloc(1, nodes(2));
  settle();
  EXPECT_TRUE(ids_of(responses("sched.alloc"), 0).empty());
}

// A job manager of the same process gets its grant as the ResourceSet
// allocated, and frees with one: the same R and the same effect as the
// JSON a job manager behind a socket sends and reads.
TEST_F(SchedTest, TypedGrantsAndFreesCarryTheSameRAsJson) {
  start(config(2, 2));
  alloc(1, slots(3));
  settle();
  auto granted = std::find_if(sent.begin(), sent.end(),
                              [](const Message& m) { return m.topic == "sched.alloc" && m.is_response(); });
  ASSERT_NE(granted, sent.end());
  const auto* typed = typed_payload<sched_protocol::AllocGranted>(*granted);
  ASSERT_NE(typed, nullptr);
  EXPECT_EQ(typed->id, 1u);
  EXPECT_EQ(typed->R.to_json(), Json::parse(granted->payload)["R"]);
  EXPECT_EQ(typed->R.to_json()["execution"]["R_lite"], R({{0, "0-1"}, {1, "0"}}).to_json()["execution"]["R_lite"]);
  ResourceSet held = typed->R;
  sent.erase(granted);
  EXPECT_EQ(status()["allocated"]["ranks"], "0-1");

  // Rank 1 back on its own, then the rest with the final free.
  auto typed_free = [&](ResourceSet r, bool final) {
    Message m = make_request("sched.free", {}, kNodeAny, msgflag::kStreaming);
    m.typed = std::make_shared<const TypedAs<sched_protocol::Free>>(sched_protocol::Free{1, std::move(r), final});
    m.route = {make_hop(0, 4)};
    m.userid = 1000;
    m.rolemask = role::kOwner;
    h.dispatch(std::move(m));
  };
  typed_free(held.subset(IdSet::parse("1").value()), false);
  EXPECT_EQ(responses("sched.free"), (std::vector<Json>{Json{{"id", 1}}}));
  EXPECT_EQ(status()["allocated"]["ranks"], "0");
  typed_free(held.subset(IdSet::parse("0").value()), true);
  EXPECT_EQ(responses("sched.free"), (std::vector<Json>{Json{{"id", 1}}}));
  EXPECT_EQ(status()["free"]["ranks"], "0-1");
  EXPECT_EQ(status()["allocated"]["ranks"], "");
}

// sched.alloc from a job manager of the same process: its jobspec
// decoded already, or only as the document. Each is scheduled, or denied
// with the same note, as the JSON request a job manager behind a socket
// sends.
TEST_F(SchedTest, ATypedAllocIsScheduledAsTheJsonOne) {
  start(config(5, 2));
  auto typed_alloc = [&](uint64_t id, const Jobspec& js, bool decoded) {
    sched_protocol::AllocRequest a{id,     16, 1000, static_cast<double>(id), std::make_shared<const Json>(js.raw),
                                   nullptr};
    if (decoded) {
      Jobspec d = js;
      d.raw = nullptr;
      a.decoded = std::make_shared<const Jobspec>(std::move(d));
    }
    Message m = make_request("sched.alloc", {}, kNodeAny, msgflag::kStreaming);
    m.typed = std::make_shared<const TypedAs<sched_protocol::AllocRequest>>(std::move(a));
    m.route = {make_hop(0, 4)};
    m.userid = 1000;
    m.rolemask = role::kOwner;
    h.dispatch(std::move(m));
  };
  typed_alloc(1, slots(3), true);
  typed_alloc(2, slots(3), false);
  alloc(3, slots(3), 16, 3);
  EXPECT_EQ(settle().size(), 3u);
  auto granted = responses("sched.alloc");
  EXPECT_EQ(ids_of(granted, 0), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(status()["allocated"]["ncores"], 9);

  // Never feasible (11 cores of 10): the same denial either way.
  typed_alloc(4, slots(11), true);
  typed_alloc(5, slots(11), false);
  alloc(6, slots(11), 16, 6);
  auto denied = responses("sched.alloc");
  ASSERT_EQ(ids_of(denied, 2), (std::vector<uint64_t>{4, 5, 6}));
  EXPECT_EQ(denied[0]["note"], denied[2]["note"]);
  EXPECT_EQ(denied[1]["note"], denied[2]["note"]);
}

TEST_F(SchedTest, AJobWhoseResourcesAreGoneAfterARestartGetsAFatalException) {
  // Job 7 ran on cores 0-1 of rank 0 and on rank 2; the instance came back
  // with one core per rank and two ranks.
  Json job{{"id", 7},
           {"priority", 16},
           {"userid", 1000},
           {"t_submit", 1.0},
           {"R", R({{0, "0-1"}, {1, "0"}, {2, "0"}}).to_json()},
           {"free", ""}};
  start(config(2, 1), {job});
  Message raise = take("job-manager.raise");
  EXPECT_EQ(Json::parse(raise.payload),
            (Json{{"id", 7},
                  {"severity", 0},
                  {"type", "scheduler-restart"},
                  {"note",
                   "its resources cannot all be allocated again after the restart: rank 0 has no cores 1 (it "
                   "has 1 core); rank 2 is not in this instance (size 2)"}}));
  answer(raise, Json::object());
  Json st = status();
  EXPECT_EQ(st["alarms"], 0);
  EXPECT_EQ(st["allocated"]["ranks"], "0-1");  // what exists stays held until the job's processes are gone
  alloc(8, slots(1));
  settle();
  EXPECT_TRUE(ids_of(responses("sched.alloc"), 0).empty());
  // Its ranks come back as it releases them, the missing one included.
  free(7, R({{0, "0-1"}, {2, "0"}}).to_json(), false);
  EXPECT_EQ(responses("sched.free"), (std::vector<Json>{Json{{"id", 7}}}));
  EXPECT_EQ(settle(), std::vector<uint64_t>{8});
  free(7, R({{1, "0"}}).to_json(), true);
  EXPECT_EQ(responses("sched.free"), (std::vector<Json>{Json{{"id", 7}}}));
  EXPECT_EQ(status()["allocated"]["ranks"], "0");
  EXPECT_EQ(status()["alarms"], 0);
}

// Across hosts the bootstrap configuration names each rank's host: the
// inventory, and so R and `resource list`, carry them.
// An instance over hosts: rank 0's inventory is its own (here
// configured); every other host's is what its broker reports, in
// broker.status, in its broker.online, or saved from an earlier run.
class SchedHosts : public SchedTest {
 protected:
  SchedConfig hosts(uint32_t size) {
    SchedConfig c = config(size, 2);
    for (uint32_t r = 0; r < size; ++r) c.hostnames.push_back("node" + std::to_string(r));
    return c;
  }
  // Startup with `saved` in resource.inventory and `ranks` from broker.status.
  void start_hosts(SchedConfig c, Json saved, Json ranks, std::vector<Json> hello_jobs = {}) {
    create(std::move(c));
    answer_error(take("kvs.lookup"), ENOENT);  // resource.drain
    Message inv = take("kvs.lookup");
    EXPECT_EQ(Json::parse(inv.payload)["key"], "resource.inventory");
    if (saved.is_null()) {
      answer_error(inv, ENOENT);
    } else {
      answer(inv, Json{{"value", saved.dump()}});
    }
    answer(take("broker.status"), Json{{"ranks", ranks}});
    Message hello = take("job-manager.sched-hello");
    for (auto& j : hello_jobs) answer(hello, j);
    answer_error(hello, ENODATA);
    answer(take("job-manager.sched-ready"), Json{{"count", 0}});
    run();
    ASSERT_TRUE(sched->ready());
  }
  // The last resource.inventory committed (answered), or null.
  Json saved_inventory() {
    Json last;
    for (auto it = sent.begin(); it != sent.end();) {
      if (it->topic == "kvs.commit" && it->is_request() &&
          Json::parse(it->payload)["ops"][0]["key"] == "resource.inventory") {
        last = Json::parse(Json::parse(it->payload)["ops"][0]["value"].get<std::string>());
        answer(*it, Json::object());
        it = sent.erase(it);
      } else {
        ++it;
      }
    }
    return last;
  }
};

TEST_F(SchedHosts, EachHostIsWhatItsBrokerReports) {
  start_hosts(hosts(3), Json{{"2", {{"host", "node2"}, {"cores", 3}, {"gpus", 0}}}},
              Json::array({Json{{"rank", 0}, {"state", "online"}, {"cores", 2}, {"gpus", 0}},
                           Json{{"rank", 1}, {"state", "online"}, {"cores", 4}, {"gpus", 1}},
                           Json{{"rank", 2}, {"state", "offline"}}}));
  Json st = status();
  EXPECT_EQ(st["all"]["nodelist"], "node[0-2]");
  EXPECT_EQ(st["all"]["ncores"], 9);  // 2 + 4 + 3 saved for the host not back yet
  EXPECT_EQ(st["all"]["ngpus"], 1);
  EXPECT_EQ(st["free"]["nodelist"], "node[0-1]");
  EXPECT_EQ(st["down"]["nodelist"], "node2");
  EXPECT_EQ(saved_inventory(), Json::parse(R"({"0":{"host":"node0","cores":2,"gpus":0},
                                               "1":{"host":"node1","cores":4,"gpus":1},
                                               "2":{"host":"node2","cores":3,"gpus":0}})"));
  // A node of 4 cores and a gpu is only on node1.
  alloc(1, nodes(1, 1, 4, 1));
  settle();
  auto r = responses("sched.alloc");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]["R"]["execution"]["nodelist"], Json::array({"node1"}));
  // node2 comes back bigger than it was.
  h.dispatch(make_event("broker.online", R"({"rank":2,"cores":8,"gpus":0})"));
  EXPECT_EQ(status()["free"]["ncores"], 10);
  run();  // the save is posted: one per loop turn
  EXPECT_EQ(saved_inventory()["2"], Json::parse(R"({"host":"node2","cores":8,"gpus":0})"));
  // The same report again changes and saves nothing.
  h.dispatch(make_event("broker.online", R"({"rank":2,"cores":8,"gpus":0})"));
  run();
  EXPECT_TRUE(saved_inventory().is_null());
  // A report that makes no sense is ignored.
  h.dispatch(make_event("broker.online", R"({"rank":2,"cores":0})"));
  h.dispatch(make_event("broker.online", R"({"rank":2,"cores":"many"})"));
  EXPECT_EQ(status()["all"]["ncores"], 14);
  auto bad = validate_sched_config([] {
    SchedConfig c = config(3, 1);
    c.hostnames = {"node0", "node1"};
    return c;
  }());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().text, "2 host names for 3 ranks");
}

// A job no known host can hold waits while a host has not reported (it
// might); once every host has and none can, it waits aside with the
// reason, holding up no other job, and runs if a bigger host reports.
TEST_F(SchedHosts, AJobThatFitsNoHostWaitsAsideWithTheReason) {
  start_hosts(hosts(3), nullptr,
              Json::array({Json{{"rank", 0}, {"state", "online"}, {"cores", 2}, {"gpus", 0}},
                           Json{{"rank", 1}, {"state", "offline"}}, Json{{"rank", 2}, {"state", "offline"}}}));
  alloc(1, slots(1, 8));  // 8 cores in one slot: first in the queue
  alloc(2, slots(1, 4));  // 4 cores in one slot
  settle();
  auto r = responses("sched.alloc");
  EXPECT_EQ(ids_of(r, 0), std::vector<uint64_t>{});
  EXPECT_EQ(status()["all"]["ncores"], 2);
  h.dispatch(make_event("broker.online", R"({"rank":1,"cores":4})"));
  settle();
  EXPECT_EQ(ids_of(responses("sched.alloc"), 0), std::vector<uint64_t>{});  // fcfs: job 1 is first
  h.dispatch(make_event("broker.online", R"({"rank":2,"cores":4})"));
  settle();
  r = responses("sched.alloc");
  EXPECT_EQ(ids_of(r, 0), std::vector<uint64_t>{2});  // job 1 no longer holds it up
  EXPECT_EQ(ids_of(r, 2), std::vector<uint64_t>{});   // and is not denied
  ASSERT_FALSE(r.empty());
  EXPECT_EQ(r.front()["annotations"]["sched"]["reason_pending"], "8 cores per slot but a rank has at most 4 cores")
      << r.front();
  // node2 comes back with 8 cores: job 1 runs there.
  h.dispatch(make_event("broker.lost", R"({"rank":2,"reason":"reboot"})"));
  h.dispatch(make_event("broker.online", R"({"rank":2,"cores":8})"));
  settle();
  r = responses("sched.alloc");
  EXPECT_EQ(ids_of(r, 0), std::vector<uint64_t>{1});
}

// Reports that come before the hello has restored running jobs wait for
// it; a host back smaller than what a running job holds keeps the job's
// cores for it, and never gives out the missing ones.
TEST_F(SchedHosts, AHostBackSmallerLeavesRunningJobsWhatTheyHold) {
  Json job{{"id", 5}, {"priority", 1}, {"userid", 1}, {"t_submit", 1}, {"R", R({{1, "0-3"}}).to_json()}, {"free", ""}};
  // Saved from before: node1 had 4 cores; now it says 2.
  start_hosts(hosts(2), Json{{"1", {{"host", "node1"}, {"cores", 4}, {"gpus", 0}}}},
              Json::array({Json{{"rank", 0}, {"state", "online"}, {"cores", 2}},
                           Json{{"rank", 1}, {"state", "online"}, {"cores", 2}}}),
              {job});
  EXPECT_EQ(count("job-manager.raise", MsgType::kRequest), 0u);  // restored whole
  Json st = status();
  EXPECT_EQ(st["alarms"], 0);
  EXPECT_EQ(st["all"]["ncores"], 4);        // node1's 2 cores now
  EXPECT_EQ(st["allocated"]["ncores"], 4);  // job 5 still holds its 4
  EXPECT_EQ(st["free"]["ranks"], "0");
  free(5, R({{1, "0-3"}}).to_json(), true);
  run();
  st = status();
  EXPECT_EQ(st["free"]["ncores"], 4);
  EXPECT_EQ(saved_inventory()["1"], Json::parse(R"({"host":"node1","cores":2,"gpus":0})"));
}

// What was saved for another host (bootstrap.hosts changed) is not used.
TEST_F(SchedHosts, ASavedInventoryOfAnotherHostIsIgnored) {
  start_hosts(hosts(2), Json{{"1", {{"host", "oldnode"}, {"cores", 64}, {"gpus", 0}}}},
              Json::array({Json{{"rank", 0}, {"state", "online"}, {"cores", 2}}}));
  EXPECT_EQ(status()["all"]["ncores"], 2);
}

TEST_F(SchedTest, LearnsDrainedRanksAndDownRanksAtStartup) {
  create(config(3, 1));
  answer(take("kvs.lookup"), Json{{"value", R"({"1":{"reason":"fan","timestamp":5}})"}});
  answer(take("broker.status"),
         Json{{"ranks", Json::array({Json{{"rank", 0}, {"state", "online"}}, Json{{"rank", 1}, {"state", "online"}},
                                     Json{{"rank", 2}, {"state", "offline"}}})}});
  Message hello = take("job-manager.sched-hello");
  answer_error(hello, ENODATA);
  answer(take("job-manager.sched-ready"), Json{{"count", 0}});
  Json st = status();
  EXPECT_EQ(st["drained"]["ranks"], "1");
  EXPECT_EQ(st["drain"], Json::parse(R"([{"ranks":"1","reason":"fan","timestamp":5.0}])"));
  EXPECT_EQ(st["down"]["ranks"], "2");
  EXPECT_EQ(st["free"]["ranks"], "0");
  h.dispatch(make_event("broker.online", R"({"rank":2})"));
  EXPECT_EQ(status()["free"]["ranks"], "0,2");
  // Each state names its hosts: every rank here is this machine.
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  st = status();
  EXPECT_EQ(st["free"]["nodelist"], host);
  EXPECT_EQ(st["all"]["nodelist"], host);
  EXPECT_EQ(st["allocated"]["nodelist"], "");
}

TEST_F(SchedTest, AnswersAGrantWithItsRAtOnceAndWritesNothing) {
  start(config(2, 4));
  clock.advance(100);
  alloc(7, slots(3, 1, 0, 60));
  run();
  // The job manager stores R with the alloc event: nothing goes to the KVS.
  EXPECT_EQ(count("kvs.commit", MsgType::kRequest), 0u);
  auto rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0]["id"], 7);
  EXPECT_EQ(rs[0]["type"], 0);
  auto R = ResourceSet::parse(rs[0]["R"]);
  ASSERT_TRUE(R.ok());
  EXPECT_EQ(show(*R), "0:0-2");
  EXPECT_EQ(R->starttime, SteppedClock::kEpoch + 100);
  EXPECT_EQ(R->expiration, SteppedClock::kEpoch + 160);
}

TEST_F(SchedTest, RanksWithoutNamesGiveAnRWithoutANodelist) {
  SchedConfig c = config(2, 1);
  c.name_ranks = false;  // as a simulation's nodes
  start(c);
  alloc(7, slots(2, 1, 0, 60));
  settle();
  auto rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0]["R"]["execution"]["R_lite"][0]["rank"], "0-1");
  EXPECT_FALSE(rs[0]["R"]["execution"].contains("nodelist")) << rs[0]["R"].dump();
  EXPECT_EQ(status()["all"]["nodelist"], "");
}

TEST_F(SchedTest, AnswersAllocsInPriorityOrderThenOldestFirst) {
  start(config(1, 1));
  // All arrive in one loop turn, so one pass sees them all.
  alloc(1, slots(1), 10, 1);
  alloc(2, slots(1), 20, 3);
  alloc(3, slots(1), 20, 2);
  EXPECT_EQ(settle(), std::vector<uint64_t>{3});
  free(3, R({{0, "0"}}).to_json());
  EXPECT_EQ(settle(), std::vector<uint64_t>{2});
  // A reprioritized job jumps the queue.
  request("sched.prioritize", Json{{"jobs", Json::array({Json::array({1, 30}), Json::array({99, 1})})}}, false);
  alloc(4, slots(1), 25, 0);
  free(2, R({{0, "0"}}).to_json());
  EXPECT_EQ(settle(), std::vector<uint64_t>{1});
}

TEST_F(SchedTest, FcfsStopsAtTheFirstJobThatDoesNotFitAndAnnotatesItOnce) {
  start(config(1, 4));
  alloc(1, slots(3));
  alloc(2, slots(2));
  alloc(3, slots(1));  // would fit, but FCFS does not pass job 2
  EXPECT_EQ(settle(), std::vector<uint64_t>{1});
  auto rs = responses("sched.alloc");
  EXPECT_EQ(ids_of(rs, 0), std::vector<uint64_t>{1});
  ASSERT_EQ(ids_of(rs, 1), std::vector<uint64_t>{2});
  auto annotation = std::find_if(rs.begin(), rs.end(), [](const Json& r) { return r["type"] == 1; });
  EXPECT_EQ((*annotation)["annotations"], Json::parse(R"({"sched":{"reason_pending":"insufficient resources"}})"));
  alloc(4, slots(1));
  settle();
  EXPECT_TRUE(responses("sched.alloc").empty());  // the same annotation is not sent again
  free(1, R({{0, "0-2"}}).to_json());
  EXPECT_EQ(settle(), (std::vector<uint64_t>{2, 3, 4}));
}

TEST_F(SchedTest, DeniesWhatCanNeverFitAndCancelsWhatIsPending) {
  start(config(2, 2));
  alloc(1, nodes(3));
  auto rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0], Json::parse(R"({"id":1,"type":2,"note":"3 nodes requested but the instance has 2 ranks"})"));
  alloc(2, slots(4));
  alloc(3, slots(1));
  settle();
  responses("sched.alloc");
  request("sched.cancel", Json{{"id", 3}}, false);
  request("sched.cancel", Json{{"id", 2}}, false);  // not pending any more: ignored
  rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0], Json::parse(R"({"id":3,"type":3})"));
  EXPECT_EQ(sched->pending(), 0u);
}

TEST_F(SchedTest, PartialFreeMakesThoseRanksAvailableAtOnce) {
  start(config(4, 1));
  alloc(1, nodes(4));
  settle();
  responses("sched.alloc");
  alloc(2, nodes(2));
  settle();
  free(1, R({{1, "0"}, {3, "0"}}).to_json(), false);
  auto rs = responses("sched.free");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0], Json::parse(R"({"id":1})"));
  EXPECT_EQ(settle(), std::vector<uint64_t>{2});
  rs = responses("sched.alloc");
  ASSERT_EQ(ids_of(rs, 0), std::vector<uint64_t>{2});
  EXPECT_EQ(show(ResourceSet::parse(rs.back()["R"]).value()), "1:0 3:0");
  // The final free carries what is left.
  free(1, R({{0, "0"}, {2, "0"}}).to_json(), true);
  EXPECT_EQ(responses("sched.free").size(), 1u);
  EXPECT_EQ(status()["free"]["ranks"], "0,2");
  EXPECT_EQ(status()["alarms"], 0);
}

TEST_F(SchedTest, RefusesBadFreesAndKeepsGoing) {
  start(config(2, 1));
  alloc(1, nodes(1));
  settle();
  free(9, R({{0, "0"}}).to_json(), false);
  free(1, R({{1, "0"}}).to_json(), false);
  free(1, Json{{"version", 1}}, false);
  request("sched.free", Json::object(), true, role::kOwner, "not json");
  request("sched.free", Json{{"id", "one"}, {"R", R({{0, "0"}}).to_json()}}, true);
  auto rs = responses("sched.free");
  ASSERT_EQ(rs.size(), 5u);
  // Wrong content is EINVAL; a payload of the wrong shape, EPROTO.
  for (size_t i = 0; i < rs.size(); ++i) EXPECT_EQ(rs[i]["errnum"], i < 3 ? EINVAL : EPROTO) << rs[i].dump();
  EXPECT_EQ(rs[0]["errstr"], "job 9 holds no resources");
  EXPECT_EQ(rs[1]["errstr"], "job 1 does not hold ranks 1 (it holds 0)");
  EXPECT_EQ(rs[2]["errstr"], "R: missing execution");
  EXPECT_EQ(status()["allocated"]["ranks"], "0");
  free(1, R({{0, "0"}}).to_json());
  EXPECT_EQ(responses("sched.free")[0], Json::parse(R"({"id":1})"));
}

TEST_F(SchedTest, FinalFreeGivesBackWhatTheJobHoldsAndNothingElse) {
  start(config(3, 1));
  alloc(1, nodes(2));
  alloc(2, nodes(1));
  settle();
  ASSERT_EQ(status()["allocated"]["ranks"], "0-2");
  // Job 1 gave back rank 0 in a way its final free does not know about: the
  // final free names ranks 0-1, and only rank 1, which it still holds, goes.
  free(1, R({{0, "0"}}).to_json(), false);
  free(1, R({{0, "0"}, {1, "0"}}).to_json(), true);
  auto rs = responses("sched.free");
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[1], Json::parse(R"({"id":1})"));
  EXPECT_EQ(status()["allocated"]["ranks"], "2");
  // A final free of a job that holds nothing is harmless.
  free(1, R({{2, "0"}}).to_json(), true);
  EXPECT_EQ(responses("sched.free")[0], Json::parse(R"({"id":1})"));
  EXPECT_EQ(status()["allocated"]["ranks"], "2");
  EXPECT_EQ(status()["alarms"], 0);
}

TEST_F(SchedTest, RefusesMalformedRequestsWithOneLine) {
  start(config(2, 1));
  request("sched.alloc", Json{{"priority", 1}, {"jobspec", slots(1).raw}}, true);
  request("sched.alloc", Json{{"id", 1}, {"priority", "high"}, {"jobspec", slots(1).raw}}, true);
  request("sched.alloc", Json{{"id", 1}, {"priority", 1}}, true);
  request("sched.alloc", Json::array(), true);
  auto rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 4u);
  EXPECT_EQ(rs[0]["errstr"], "missing \"id\"");
  EXPECT_EQ(rs[1]["errstr"], "\"priority\" must be an integer");
  EXPECT_EQ(rs[2]["errstr"], "missing \"jobspec\"");
  EXPECT_EQ(rs[3]["errstr"], "payload must be a JSON object");
  // A request of the wrong shape is a protocol error.
  for (auto& r : rs) EXPECT_EQ(r["errnum"], EPROTO);
  // A jobspec that cannot be read is denied, as is one that never fits.
  request("sched.alloc", Json{{"id", 2}, {"priority", 1}, {"jobspec", Json{{"version", 2}}}}, true);
  rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0], Json::parse(R"({"id":2,"type":2,"note":"jobspec: missing \"resources\""})"));

  request("sched.prioritize", Json{{"jobs", Json::array({Json::array({1})})}});
  request("sched.cancel", Json{{"id", -1}});
  request("sched.drain", Json{{"ranks", 1}});
  request("sched.undrain", Json::object());
  request("sched.feasibility", Json{{"jobspecs", "none"}});
  for (const char* topic : {"sched.prioritize", "sched.cancel", "sched.drain", "sched.undrain", "sched.feasibility"}) {
    auto got = responses(topic);
    ASSERT_EQ(got.size(), 1u) << topic;
    EXPECT_EQ(got[0]["errnum"], EPROTO) << topic << ": " << got[0].dump();
  }
  // Well-formed, but not an idset.
  request("sched.drain", Json{{"ranks", "1-"}});
  auto bad_ranks = responses("sched.drain");
  ASSERT_EQ(bad_ranks.size(), 1u);
  EXPECT_EQ(bad_ranks[0]["errnum"], EINVAL) << bad_ranks[0].dump();
  EXPECT_EQ(status()["alarms"], 0);
}

TEST_F(SchedTest, ChecksFeasibilityOfEachJobspec) {
  start(config(4, 2));
  request("sched.feasibility", Json{{"jobspecs", Json::array({slots(8).raw, nodes(4).raw})}});
  EXPECT_EQ(responses("sched.feasibility"), std::vector<Json>{Json::object()});
  request("sched.feasibility", Json{{"jobspecs", Json::array({slots(8).raw, slots(8, 2).raw})}});
  request("sched.feasibility", Json{{"jobspecs", Json::array({Json{{"version", 1}}})}});
  auto rs = responses("sched.feasibility");
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0]["errnum"], EINVAL);
  EXPECT_EQ(rs[0]["errstr"], "jobspec 1: 8 slots of 2 cores need 16 cores; the instance has 8");
  EXPECT_EQ(rs[1]["errstr"], "jobspec 0: missing \"resources\"");
}

// From a job manager of the same process the jobspecs come decoded: the
// same answers as for their documents.
TEST_F(SchedTest, ChecksFeasibilityOfTypedJobspecsAsOfTheirDocuments) {
  start(config(4, 2));
  auto typed_check = [&](std::vector<Jobspec> specs) {
    Message m = make_request("sched.feasibility");
    sched_protocol::Feasibility f;
    for (auto& s : specs) {
      auto doc = std::make_shared<const Json>(std::exchange(s.raw, nullptr));
      f.jobspecs.push_back({std::move(doc), std::make_shared<const Jobspec>(std::move(s))});
    }
    m.typed = std::make_shared<const TypedAs<sched_protocol::Feasibility>>(std::move(f));
    m.matchtag = 5;
    m.route = {make_hop(0, 4)};
    m.userid = 1000;
    m.rolemask = role::kOwner;
    h.dispatch(std::move(m));
  };
  typed_check({slots(8), nodes(4)});
  EXPECT_EQ(responses("sched.feasibility"), std::vector<Json>{Json::object()});
  typed_check({slots(8), slots(8, 2)});
  request("sched.feasibility", Json{{"jobspecs", Json::array({slots(8).raw, slots(8, 2).raw})}});
  auto rs = responses("sched.feasibility");
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0]["errstr"], "jobspec 1: 8 slots of 2 cores need 16 cores; the instance has 8");
  EXPECT_EQ(rs[0], rs[1]);
}

TEST_F(SchedTest, DrainIsSavedBeforeItIsAnsweredAndKeepsNewJobsOff) {
  start(config(4, 1));
  request("sched.drain", Json{{"ranks", "5-6"}, {"reason", "x"}});
  auto rs = responses("sched.drain");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0]["errstr"], "ranks 5-6 are not in this instance (size 4)");

  alloc(1, nodes(1));  // runs on rank 0 and keeps running when drained
  EXPECT_EQ(settle(), std::vector<uint64_t>{1});
  responses("sched.alloc");
  request("sched.drain", Json{{"ranks", "0-1"}, {"reason", "bad disk"}});
  EXPECT_TRUE(responses("sched.drain").empty());
  Message commit = take("kvs.commit");
  Json op = Json::parse(commit.payload)["ops"][0];
  EXPECT_EQ(op["key"], "resource.drain");
  double t = SteppedClock::kEpoch;
  EXPECT_EQ(Json::parse(op["value"].get<std::string>()), (Json{{"0", {{"reason", "bad disk"}, {"timestamp", t}}},
                                                               {"1", {{"reason", "bad disk"}, {"timestamp", t}}}}));
  answer(commit, Json::object());
  EXPECT_EQ(responses("sched.drain"), std::vector<Json>{Json::object()});

  Json st = status();
  EXPECT_EQ(st["drained"]["ranks"], "0-1");
  EXPECT_EQ(st["allocated"]["ranks"], "0");
  EXPECT_EQ(st["free"]["ranks"], "2-3");
  EXPECT_EQ(st["drain"], Json::parse(R"([{"ranks":"0-1","reason":"bad disk","timestamp":1.7e9}])"));
  EXPECT_EQ(st["policy"], "fcfs");

  alloc(2, nodes(3));
  settle();
  EXPECT_TRUE(ids_of(responses("sched.alloc"), 0).empty());
  request("sched.undrain", Json{{"ranks", "1-2"}});
  EXPECT_EQ(responses("sched.undrain")[0]["errstr"], "rank 2 is not drained");
  request("sched.undrain", Json{{"ranks", "1"}});
  commit_all();
  EXPECT_EQ(responses("sched.undrain"), std::vector<Json>{Json::object()});
  EXPECT_EQ(settle(), std::vector<uint64_t>{2});
}

TEST_F(SchedTest, DrainAndUndrainAreForTheOwner) {
  start(config(2, 1));
  request("sched.drain", Json{{"ranks", "0"}}, false, role::kUser);
  auto rs = responses("sched.drain");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0]["errnum"], EPERM);
}

TEST_F(SchedTest, ALostRankGetsNoNewJobsUntilItIsBack) {
  start(config(2, 1));
  h.dispatch(make_event("broker.lost", R"({"rank":0,"reason":"heartbeat"})"));
  EXPECT_EQ(status()["down"]["ranks"], "0");
  alloc(1, nodes(2));
  alloc(2, nodes(1), 1);
  EXPECT_EQ(settle(), std::vector<uint64_t>{});  // FCFS: job 1 waits, so does job 2
  h.dispatch(make_event("broker.online", R"({"rank":0})"));
  EXPECT_EQ(settle(), std::vector<uint64_t>{1});
}

TEST_F(SchedTest, AHelloThatFailsHalfwayIsStartedAfresh) {
  create(config(2, 2));
  answer_error(take("kvs.lookup"), ENOENT);
  answer(take("broker.status"), Json::object());
  Json job{{"id", 5}, {"priority", 1}, {"userid", 1}, {"t_submit", 1}, {"R", R({{0, "0-1"}}).to_json()}, {"free", ""}};
  Message hello = take("job-manager.sched-hello");
  answer(hello, job);
  answer_error(hello, EPROTO, "the job manager restarted");
  clock.advance(1);
  hello = take("job-manager.sched-hello");
  answer(hello, job);  // the same job again: not a double-booking
  answer_error(hello, ENODATA);
  answer_error(take("job-manager.sched-ready"), ENOSYS);
  clock.advance(1);
  hello = take("job-manager.sched-hello");
  answer(hello, job);
  answer_error(hello, ENODATA);
  answer(take("job-manager.sched-ready"), Json{{"count", 0}});
  EXPECT_TRUE(sched->ready());
  Json st = status();
  EXPECT_EQ(st["alarms"], 0);
  EXPECT_EQ(st["allocated"]["ranks"], "0");
}

TEST_F(SchedTest, TheFinalFreeEndsTheAllocation) {
  start(config(3, 1));
  alloc(1, nodes(3));
  settle();
  free(1, R({{2, "0"}}).to_json(), false);
  free(1, R({{0, "0"}}).to_json(), true);  // rank 1 is left out: freed all the same
  EXPECT_EQ(responses("sched.free"), (std::vector<Json>{Json{{"id", 1}}, Json{{"id", 1}}}));
  EXPECT_EQ(status()["free"]["ranks"], "0-2");
  // Everything was given back before: the final free carries an empty R.
  alloc(2, nodes(1));
  settle();
  free(2, R({{0, "0"}}).to_json(), false);
  free(2, ResourceSet().to_json(), true);
  EXPECT_EQ(responses("sched.free"), (std::vector<Json>{Json{{"id", 2}}, Json{{"id", 2}}}));
  EXPECT_EQ(status()["alarms"], 0);
}

TEST_F(SchedTest, RefusesASecondAllocForTheSameJob) {
  start(config(2, 1));
  alloc(1, nodes(1));
  alloc(1, nodes(1));
  auto rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0]["errstr"], "job 1 is already pending");
  settle();
  responses("sched.alloc");
  alloc(1, nodes(1));
  rs = responses("sched.alloc");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0]["errstr"], "job 1 already holds resources");
}

TEST_F(SchedTest, ForgetsTheAllocsOfAClientThatDisconnected) {
  start(config(1, 1));
  alloc(1, slots(1));
  alloc(2, slots(1));
  settle();
  EXPECT_EQ(sched->pending(), 1u);
  request("sched.disconnect", Json::object(), false, role::kUser);
  EXPECT_EQ(sched->pending(), 0u);
}

TEST_F(SchedTest, RestoredAllocationsThatClashCountAsAlarms) {
  Json job{{"priority", 1}, {"userid", 1}, {"t_submit", 1}, {"R", R({{0, "0"}}).to_json()}, {"free", ""}};
  Json a = job, b = job;
  a["id"] = 1;
  b["id"] = 2;
  start(config(1, 2), {a, b});
  Message raise = take("job-manager.raise");
  EXPECT_EQ(Json::parse(raise.payload)["id"], 2);  // the second claim fails, and says why
  EXPECT_EQ(Json::parse(raise.payload)["note"],
            "its resources cannot all be allocated again after the restart: cores 0 of rank 0 are already allocated "
            "to job 1");
  Json st = status();
  EXPECT_EQ(st["alarms"], 1);
  EXPECT_EQ(st["allocated"]["ncores"], 1);
}

}  // namespace
}  // namespace loom::sched_test
