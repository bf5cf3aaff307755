// Crash durability of the KVS (docs/storage.md): a commit is durable when its
// response is sent. Several clients append eventlog lines, the
// rank-0 broker is killed with SIGKILL at a random (seeded) moment, and a
// new instance on the same state directory must hold every line whose
// commit was acknowledged, each commit whole, and no half-written line.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "eventlog/eventlog.h"
#include "kit/client.h"
#include "kit/instance.h"
#include "kit/kvs_kit.h"

namespace loom::test {
namespace {

constexpr int kClients = 4;
constexpr int kPerClient = 3000;  // more than can be acknowledged before the kill

std::string own_key(int cycle, int c) { return "crash." + std::to_string(cycle) + ".c" + std::to_string(c); }
std::string shared_key(int cycle) { return "crash." + std::to_string(cycle) + ".shared"; }

// What one cycle's clients sent and were told.
struct Cycle {
  int index = 0;
  std::vector<int> sent = std::vector<int>(kClients, 0);
  std::vector<std::vector<int>> acked = std::vector<std::vector<int>>(kClients);
};

// The lines of client `c` in `ev`, as seq numbers in the order found.
std::vector<int> seqs_of(const std::vector<EventEntry>& ev, int c) {
  std::vector<int> out;
  for (auto& e : ev) {
    if (e.context.value("client", -1) == c) out.push_back(e.context.value("seq", -1));
  }
  return out;
}

// Checks one cycle's keys in a restarted instance.
void verify(Loop& loop, Handle& h, const Cycle& cy) {
  SCOPED_TRACE("cycle " + std::to_string(cy.index));
  auto shared_text = kvs_value(loop, h, shared_key(cy.index));
  ASSERT_TRUE(shared_text) << "no shared eventlog";
  auto shared = parse_eventlog(*shared_text);
  ASSERT_TRUE(shared.ok()) << "shared eventlog: " << shared.error().text;
  size_t shared_lines = 0;
  for (int c = 0; c < kClients; ++c) {
    SCOPED_TRACE("client " + std::to_string(c));
    std::string why;
    auto own_text = kvs_value(loop, h, own_key(cy.index, c), "", &why);
    std::vector<EventEntry> own;
    if (own_text) {
      auto parsed = parse_eventlog(*own_text);
      ASSERT_TRUE(parsed.ok()) << "own eventlog: " << parsed.error().text;
      own = std::move(*parsed);
    } else {
      ASSERT_TRUE(cy.acked[c].empty()) << why;
    }
    // Only this client's lines, numbered 0..m-1 in order: commits on one
    // connection are applied in order and none is lost from the middle.
    std::vector<int> got = seqs_of(own, c);
    ASSERT_EQ(got.size(), own.size()) << "lines of other clients in its own eventlog";
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], static_cast<int>(i)) << "line " << i;
    // Every acknowledged commit is there; nothing that was never sent is.
    for (int n : cy.acked[c]) ASSERT_LT(n, static_cast<int>(got.size())) << "acknowledged line " << n << " is lost";
    EXPECT_LE(static_cast<int>(got.size()), cy.sent[c]);
    // The same lines in the shared eventlog: each commit was all or nothing.
    std::vector<int> in_shared = seqs_of(*shared, c);
    EXPECT_EQ(in_shared, got) << "the shared eventlog disagrees with the client's own";
    shared_lines += in_shared.size();
    // Each line of the own eventlog is byte-for-byte one we sent.
    for (size_t i = 0; i < own.size(); ++i) {
      EXPECT_EQ(own[i].name, "line");
      EXPECT_EQ(own[i].context.value("pad", ""), std::string(40, static_cast<char>('a' + c)));
    }
  }
  EXPECT_EQ(shared_lines, shared->size()) << "lines in the shared eventlog from nobody";
}

TEST(KvsCrash, AcknowledgedLinesSurviveSigkillAndNoLineIsHalfWritten) {
  const std::vector<unsigned> seeds = {20240101u, 777u, 4242u};
  TempDir tmp;
  std::string dir = tmp / "state";
  std::vector<Cycle> done;
  double t0 = monotonic_now();

  for (size_t k = 0; k <= seeds.size(); ++k) {
    SCOPED_TRACE("instance " + std::to_string(k));
    Instance inst;
    ASSERT_TRUE(inst.start(1, {"--state-dir=" + dir}));
    Loop loop;
    {
      // Everything acknowledged before each earlier kill is still here.
      auto c = loop.connect(inst.socket(0));
      ASSERT_TRUE(c.ok()) << c.error().text;
      for (auto& cy : done) {
        verify(loop, (*c)->handle(), cy);
        if (::testing::Test::HasFatalFailure()) return;
      }
      // The key listing of every cycle so far holds only what we wrote,
      // and every eventlog in it parses.
      if (!done.empty()) {
        Reply r = kvs_lookup(loop, (*c)->handle(), "crash");
        ASSERT_EQ(r.errnum, 0) << r.errstr;
        EXPECT_EQ(r.json()["dir"].size(), done.size()) << r.payload;
      }
    }
    if (k == seeds.size()) break;

    std::mt19937 rng(seeds[k]);
    int kill_at = std::uniform_int_distribution<int>(200, 3000)(rng);
    std::cout << "cycle " << k << ": seed " << seeds[k] << ", SIGKILL after " << kill_at << " acknowledgements"
              << std::endl;
    std::string why;
    auto pid = inst.broker_pid(0, &why);
    ASSERT_TRUE(pid) << why;

    Cycle cy;
    cy.index = static_cast<int>(k);
    std::vector<std::unique_ptr<Client>> clients;
    std::vector<std::unique_ptr<Appender>> apps;
    int acks = 0;
    bool killed = false;
    for (int c = 0; c < kClients; ++c) {
      auto cl = loop.connect(inst.socket(0));
      ASSERT_TRUE(cl.ok()) << cl.error().text;
      clients.push_back(std::move(*cl));
      std::string pad(40, static_cast<char>('a' + c));
      auto ops_for = [c, k, pad](int n) {
        std::string line = event_line(1700000000.0 + n / 1000.0, "line", {{"client", c}, {"seq", n}, {"pad", pad}});
        return Json::array(
            {append_op(own_key(static_cast<int>(k), c), line), append_op(shared_key(static_cast<int>(k)), line)});
      };
      // Clients keep different numbers of commits in flight.
      apps.push_back(std::make_unique<Appender>(clients.back()->handle(), ops_for, kPerClient, 2 + 3 * c));
      apps.back()->on_ack = [&, c](int n) {
        cy.acked[c].push_back(n);
        if (++acks == kill_at && !killed) {
          ::kill(*pid, SIGKILL);
          killed = true;
        }
      };
    }
    for (auto& a : apps) a->start();
    // After the kill every connection closes and what was in flight fails.
    ASSERT_TRUE(
        loop.run_until([&] { return std::all_of(apps.begin(), apps.end(), [](auto& a) { return a->done(); }); }, 30));
    ASSERT_TRUE(killed) << "all commits were acknowledged before the kill point";
    for (int c = 0; c < kClients; ++c) {
      cy.sent[c] = apps[c]->sent();
      EXPECT_GT(apps[c]->failed(), 0) << "client " << c << " saw no failure";
    }
    std::cout << "  acknowledged per client:";
    for (int c = 0; c < kClients; ++c) std::cout << " " << cy.acked[c].size() << "/" << cy.sent[c];
    std::cout << " (" << acks << " in all)" << std::endl;
    ASSERT_GE(acks, kill_at);
    EXPECT_TRUE(wait_gone(*pid, 10)) << "rank 0 (pid " << *pid << ") survived SIGKILL";
    // `loom start` reports the lost rank 0 with a failure.
    clients.clear();
    EXPECT_EQ(inst.stop(20), 1);
    done.push_back(std::move(cy));
  }
  std::cout << "crash test took " << monotonic_now() - t0 << " s" << std::endl;
}

}  // namespace
}  // namespace loom::test
