// The fixture of the `sched` service's tests (sched_test.cpp,
// sched_policy_test.cpp): a Handle that records what it sends, the stepped
// clock, and the test playing the job manager, the KVS and the broker.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "base/stepped_clock.h"
#include "jobspec/jobspec.h"
#include "msg/handle.h"
#include "msg/message.h"
#include "sched/sched.h"
#include "sched/test_util.h"

namespace loom::sched_test {

using test::nodes;
using test::R;
using test::show;
using test::slots;

// --- the sched service over a fake transport ---

// One Sched on a Handle whose messages land in `sent`. The test answers
// for the KVS, the broker and the job manager.
class SchedTest : public ::testing::Test {
 protected:
  void create(SchedConfig cfg) {
    auto s = Sched::create(io, h, std::move(cfg));
    ASSERT_TRUE(s.ok()) << s.error().text;
    sched = std::move(*s);
  }
  // Creates a Sched and takes it through startup to ready, with the given
  // jobs reported by the hello.
  void start(SchedConfig cfg, std::vector<Json> hello_jobs = {}, Json drain = nullptr) {
    create(std::move(cfg));
    Message lookup = take("kvs.lookup");
    EXPECT_EQ(Json::parse(lookup.payload)["key"], "resource.drain");
    if (drain.is_null()) {
      answer_error(lookup, ENOENT);
    } else {
      answer(lookup, Json{{"value", drain.dump()}});
    }
    answer(take("broker.status"), Json{{"ranks", Json::array()}});
    Message hello = take("job-manager.sched-hello");
    EXPECT_TRUE(hello.has_flag(msgflag::kStreaming));
    for (auto& j : hello_jobs) answer(hello, j);
    answer_error(hello, ENODATA);
    Message ready = take("job-manager.sched-ready");
    EXPECT_EQ(Json::parse(ready.payload), Json::parse(R"({"mode":"unlimited"})"));
    answer(ready, Json{{"count", 0}});
    run();
    ASSERT_TRUE(sched->ready());
  }

  // The first message sent on `topic` (removed from `sent`); fails the test
  // if there is none.
  Message take(const std::string& topic) {
    for (auto it = sent.begin(); it != sent.end(); ++it) {
      if (it->topic == topic) {
        Message m = std::move(*it);
        sent.erase(it);
        return m;
      }
    }
    ADD_FAILURE() << "nothing was sent on " << topic;
    return Message{};
  }
  size_t count(const std::string& topic, MsgType type) const {
    return std::count_if(sent.begin(), sent.end(),
                         [&](const Message& m) { return m.topic == topic && m.type == type; });
  }
  // The payloads of responses sent on `topic`, oldest first, removed.
  std::vector<Json> responses(const std::string& topic) {
    std::vector<Json> out;
    for (auto it = sent.begin(); it != sent.end();) {
      if (it->topic == topic && it->is_response()) {
        out.push_back(it->errnum ? Json{{"errnum", it->errnum}, {"errstr", error_text(*it)}}
                                 : Json::parse(it->payload));
        it = sent.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }
  void answer(const Message& req, const Json& payload) { h.dispatch(make_response(req, payload.dump())); }
  void answer_error(const Message& req, int errnum, const std::string& text = "") {
    h.dispatch(make_error_response(req, errnum, text));
  }
  // A request as the job manager (an owner) sends it; matchless ones have
  // matchtag 0 and want responses.
  void request(const std::string& topic, const Json& payload, bool matchless = false, uint32_t rolemask = role::kOwner,
               std::string raw = {}) {
    Message m = make_request(topic, raw.empty() ? payload.dump() : raw, kNodeAny, matchless ? msgflag::kStreaming : 0);
    m.matchtag = matchless ? 0 : 5;
    m.route = {make_hop(0, 4)};
    m.userid = 1000;
    m.rolemask = rolemask;
    h.dispatch(std::move(m));
  }
  void alloc(uint64_t id, const Jobspec& js, int64_t priority = 16, double t_submit = 1) {
    request("sched.alloc",
            Json{{"id", id}, {"priority", priority}, {"userid", 1000}, {"t_submit", t_submit}, {"jobspec", js.raw}},
            true);
  }
  void free(uint64_t id, const Json& R, bool final = true) {
    request("sched.free", Json{{"id", id}, {"R", R}, {"final", final}}, true);
  }
  // Answers every pending kvs.commit with success; returns the keys.
  std::vector<std::string> commit_all() {
    std::vector<std::string> keys;
    std::vector<Message> commits;
    for (auto it = sent.begin(); it != sent.end();) {
      if (it->topic == "kvs.commit" && it->is_request()) {
        commits.push_back(std::move(*it));
        it = sent.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& c : commits) {
      Json payload = Json::parse(c.payload);
      for (auto& op : payload["ops"]) keys.push_back(op["key"]);
      answer(c, Json::object());
    }
    return keys;
  }
  // Runs what was posted (the scheduling pass).
  void run() {
    io.poll();
    io.restart();
  }
  // Runs the posted scheduling pass, answers what it committed (drains),
  // and returns the jobs it started: those whose allocs it answered with
  // success (the responses stay in `sent`).
  std::vector<uint64_t> settle() {
    const size_t before = sent.size();
    run();
    std::vector<uint64_t> started;
    for (size_t i = before; i < sent.size(); ++i) {
      const Message& m = sent[i];
      if (m.topic != "sched.alloc" || !m.is_response() || m.errnum) continue;
      Json r = Json::parse(m.payload);
      if (r.value("type", -1) == 0) started.push_back(r["id"]);
    }
    commit_all();
    return started;
  }
  Json status() {
    request("sched.resource-status", Json::object(), false, role::kUser);
    auto r = responses("sched.resource-status");
    LOOM_ASSERT(r.size() == 1);
    return r[0];
  }
  // The ids of the alloc responses of `type` among `rs`.
  static std::vector<uint64_t> ids_of(const std::vector<Json>& rs, int type) {
    std::vector<uint64_t> ids;
    for (auto& r : rs) {
      if (r.value("type", -1) == type) ids.push_back(r["id"]);
    }
    return ids;
  }

  asio::io_context io;
  SteppedClock clock;
  std::vector<Message> sent;
  Handle h{clock, [this](Message m) { sent.push_back(std::move(m)); }};
  std::unique_ptr<Sched> sched;
};

inline SchedConfig config(uint32_t size, uint32_t cores, std::string policy = "fcfs", uint32_t gpus = 0) {
  SchedConfig c;
  c.size = size;
  c.cores_per_rank = cores;
  c.gpus_per_rank = gpus;
  c.policy = std::move(policy);
  return c;
}

}  // namespace loom::sched_test
