// A whole instance through the command line: `loom start` with and without
// a command, and every rank reachable through the overlay tree.
#include "kit/instance.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <set>
#include <string>
#include <vector>

#include "kit/client.h"

namespace loom::test {
namespace {

Json parse_line(const std::string& line) {
  auto j = parse_json(line);
  return j.ok() ? *j : Json(nullptr);
}

std::string show(const CmdResult& r) {
  return "exit " + std::to_string(r.code) + (r.timed_out ? " (timed out)" : "") + "\nstdout: " + r.out +
         "\nstderr: " + r.err;
}

TEST(LoomStart, RunsTheCommandInsideAFourRankInstance) {
  auto r = run_cmd({bin("loom"), "start", "--test-size=4", "--", bin("loom"), "rpc", "--rank", "3", "broker.info"},
                   {{"LOOM_URI", ""}});
  ASSERT_EQ(r.code, 0) << show(r);
  auto lines = r.out_lines();
  ASSERT_EQ(lines.size(), 1u) << show(r);
  Json info = parse_line(lines[0]);
  ASSERT_TRUE(info.is_object()) << lines[0];
  EXPECT_EQ(info["rank"], 3);
  EXPECT_EQ(info["parent"], 1);
  EXPECT_EQ(info["size"], 4);
  EXPECT_EQ(info["children"], Json::array());
}

TEST(LoomStart, ExitsWithTheCommandsStatus) {
  auto r = run_cmd({bin("loom"), "start", "--", "/bin/sh", "-c", "exit 7"});
  EXPECT_EQ(r.code, 7) << show(r);
  r = run_cmd({bin("loom"), "start", "--", "/bin/sh", "-c", "kill -9 $$"});
  EXPECT_EQ(r.code, 128 + 9) << show(r);
}

TEST(LoomStart, GivesTheCommandTheInstancesUri) {
  auto r =
      run_cmd({bin("loom"), "start", "--test-size=2", "--", "/bin/sh", "-c", "echo \"$LOOM_URI\""}, {{"LOOM_URI", ""}});
  ASSERT_EQ(r.code, 0) << show(r);
  auto lines = r.out_lines();
  ASSERT_EQ(lines.size(), 1u) << show(r);
  EXPECT_TRUE(lines[0].starts_with("local:///")) << lines[0];
  EXPECT_TRUE(lines[0].ends_with("/rank-0.sock")) << lines[0];
}

TEST(LoomStart, ServesUntilSigtermThenRemovesItsRundir) {
  Instance inst;
  ASSERT_TRUE(inst.start(2));
  EXPECT_TRUE(inst.uri().starts_with("local://")) << inst.uri();
  struct stat st {};
  ASSERT_EQ(::stat(inst.socket(1).c_str(), &st), 0) << inst.socket(1);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_TRUE(inst.running());
  auto code = inst.stop(20);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0);
  EXPECT_NE(::stat(inst.rundir().c_str(), &st), 0) << inst.rundir() << " is still there";
}

TEST(SingleRank, AnswersInfoStatusAndPing) {
  Instance inst;
  ASSERT_TRUE(inst.start(1));
  auto r = inst.loom({"rpc", "--rank", "0", "broker.info"});
  ASSERT_EQ(r.code, 0) << show(r);
  Json info = parse_line(r.out_lines().at(0));
  EXPECT_EQ(info["rank"], 0);
  EXPECT_EQ(info["size"], 1);
  EXPECT_TRUE(info["parent"].is_null());
  EXPECT_EQ(info["children"], Json::array());

  r = inst.loom({"status", "--json"});
  ASSERT_EQ(r.code, 0) << show(r);
  Json st = parse_line(r.out);
  EXPECT_EQ(st["ready"], true);
  ASSERT_EQ(st["ranks"].size(), 1u);
  EXPECT_EQ(st["ranks"][0]["state"], "online");

  r = inst.loom({"ping", "broker"});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out_lines().size(), 1u) << show(r);
}

class FourRanks : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(inst_.start(4)); }
  Instance inst_;
};

TEST_F(FourRanks, EveryRankAnswersInfoAndPingAsItself) {
  for (uint32_t rank = 0; rank < 4; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    auto r = inst_.loom({"rpc", "--rank", std::to_string(rank), "broker.info"});
    ASSERT_EQ(r.code, 0) << show(r);
    Json info = parse_line(r.out);
    EXPECT_EQ(info["rank"], rank);
    EXPECT_EQ(info["size"], 4);
    if (rank == 0) EXPECT_TRUE(info["parent"].is_null());
    else EXPECT_EQ(info["parent"], (rank - 1) / 2);

    // broker.ping echoes its payload from the addressed rank.
    std::string payload = "{\"from\":\"test\",\"to\":" + std::to_string(rank) + "}";
    r = inst_.loom({"rpc", "--rank", std::to_string(rank), "broker.ping", payload});
    ASSERT_EQ(r.code, 0) << show(r);
    EXPECT_EQ(parse_line(r.out), parse_line(payload)) << show(r);
  }
  // The pids differ: four brokers, not one answering for all.
  std::set<pid_t> pids;
  for (uint32_t rank = 0; rank < 4; ++rank) {
    std::string why;
    auto pid = inst_.broker_pid(rank, &why);
    ASSERT_TRUE(pid.has_value()) << why;
    pids.insert(*pid);
  }
  EXPECT_EQ(pids.size(), 4u);
}

TEST_F(FourRanks, StatusJsonShowsEveryRankOnline) {
  auto r = inst_.loom({"status", "--json"});
  ASSERT_EQ(r.code, 0) << show(r);
  ASSERT_EQ(r.out_lines().size(), 1u) << show(r);
  Json st = parse_line(r.out);
  ASSERT_TRUE(st.is_object()) << r.out;
  EXPECT_EQ(st["size"], 4);
  EXPECT_EQ(st["ready"], true);
  ASSERT_EQ(st["ranks"].size(), 4u);
  for (uint32_t rank = 0; rank < 4; ++rank) {
    auto& e = st["ranks"][rank];
    EXPECT_EQ(e["rank"], rank);
    EXPECT_EQ(e["state"], "online");
    EXPECT_EQ(e["info"]["rank"], rank) << e.dump();
  }
  // The human form says so too.
  r = inst_.loom({"status"});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_NE(r.out.find("all online"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("NOT all online"), std::string::npos) << r.out;
}

TEST_F(FourRanks, UnknownServiceIsEnosysWithOneClearLine) {
  for (const char* rank : {"0", "3"}) {
    auto r = inst_.loom({"rpc", "--rank", rank, "nosuch.method"});
    EXPECT_EQ(r.code, 1) << show(r);
    EXPECT_TRUE(r.out.empty()) << show(r);
    ASSERT_EQ(r.err_lines().size(), 1u) << show(r);
    EXPECT_NE(r.err.find("no service nosuch"), std::string::npos) << show(r);
  }
  // Without a rank the request climbs to rank 0 and fails there.
  auto r = inst_.loom({"rpc", "nosuch.method"});
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_NE(r.err.find("no service nosuch"), std::string::npos) << show(r);

  // On the wire it is ENOSYS, from rank 3 as well as rank 0.
  Loop loop;
  auto c = loop.connect(inst_.socket(3));
  ASSERT_TRUE(c.ok()) << c.error().text;
  for (uint32_t nodeid : {kNodeAny, 0u, 2u, 3u}) {
    Reply rep = call(loop, **c, "nosuch.method", "{}", {nodeid, false, 0});
    EXPECT_EQ(rep.errnum, ENOSYS) << "nodeid " << nodeid << ": " << rep.errstr;
  }
  // An unknown method of a known service too.
  Reply rep = call(loop, **c, "broker.nosuch", "{}", {1, false, 0});
  EXPECT_EQ(rep.errnum, ENOSYS) << rep.errstr;
}

TEST_F(FourRanks, RankOutOfRangeIsAClearError) {
  auto r = inst_.loom({"rpc", "--rank", "9", "broker.info"});
  EXPECT_EQ(r.code, 1) << show(r);
  ASSERT_EQ(r.err_lines().size(), 1u) << show(r);
  EXPECT_NE(r.err.find("rank 9 does not exist"), std::string::npos) << show(r);

  r = inst_.loom({"ping", "--rank", "4", "broker"});
  EXPECT_EQ(r.code, 1) << show(r);
  EXPECT_NE(r.err.find("rank 4 does not exist"), std::string::npos) << show(r);

  // Also when asked from a rank other than 0 (the request climbs first).
  Loop loop;
  auto c = loop.connect(inst_.socket(3));
  ASSERT_TRUE(c.ok()) << c.error().text;
  Reply rep = call(loop, **c, "broker.info", "{}", {100, false, 0});
  EXPECT_EQ(rep.errnum, ENXIO) << rep.errstr;
}

TEST_F(FourRanks, PingCountPrintsOneLinePerAnswer) {
  auto r = inst_.loom({"ping", "--rank", "3", "-c", "3", "-i", "0", "broker"});
  ASSERT_EQ(r.code, 0) << show(r);
  auto lines = r.out_lines();
  ASSERT_EQ(lines.size(), 3u) << show(r);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(lines[i].starts_with("broker.ping rank=3 seq=" + std::to_string(i) + " time=")) << lines[i];
  }
}

TEST_F(FourRanks, InvalidJsonPayloadIsOneLineError) {
  for (std::string bad : {std::string("{bad"), std::string("[1,2"), std::string(100, '[') + std::string(100, ']')}) {
    auto r = inst_.loom({"rpc", "broker.info", bad});
    EXPECT_EQ(r.code, 2) << show(r);  // a bad value: a usage error (docs/commands.md)
    EXPECT_TRUE(r.out.empty()) << show(r);
    ASSERT_EQ(r.err_lines().size(), 1u) << show(r);
    EXPECT_TRUE(r.err.starts_with("loom rpc: payload: ")) << show(r);
  }
}

// Every rank of a tree answers as itself, pipelined on one connection.
void expect_tree(uint32_t size, uint32_t fanout) {
  Instance inst;
  ASSERT_TRUE(inst.start(size, {"--fanout=" + std::to_string(fanout)}));
  Loop loop;
  auto c = loop.connect(inst.socket(0));
  ASSERT_TRUE(c.ok()) << c.error().text;
  std::vector<Json> infos(size);
  int pending = 0;
  for (uint32_t rank = 0; rank < size; ++rank) {
    ++pending;
    (*c)->handle().rpc("broker.info", std::string("{}"), {rank, false, 0}, [&, rank](const Message& m) {
      --pending;
      infos[rank] = m.errnum ? Json(error_text(m)) : parse_line(m.payload);
    });
  }
  ASSERT_TRUE(loop.run_until([&] { return pending == 0; }));
  for (uint32_t rank = 0; rank < size; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    ASSERT_TRUE(infos[rank].is_object()) << infos[rank].dump();
    EXPECT_EQ(infos[rank]["rank"], rank);
    EXPECT_EQ(infos[rank]["fanout"], fanout);
    if (rank == 0) EXPECT_TRUE(infos[rank]["parent"].is_null());
    else EXPECT_EQ(infos[rank]["parent"], (rank - 1) / fanout);
    for (auto& child : infos[rank]["children"]) EXPECT_EQ(child["connected"], true) << child.dump();
  }
  // And from the deepest rank back to rank 0 and across.
  auto deep = loop.connect(inst.socket(size - 1));
  ASSERT_TRUE(deep.ok()) << deep.error().text;
  for (uint32_t rank = 0; rank < size; ++rank) {
    Reply r = call(loop, **deep, "broker.info", "{}", {rank, false, 0});
    ASSERT_EQ(r.errnum, 0) << r.errstr;
    EXPECT_EQ(r.json()["rank"], rank);
  }
  auto code = inst.stop(20);
  EXPECT_EQ(code, std::optional<int>(0));
}

TEST(Topology, ChainOfSevenRoutesToEveryRank) { expect_tree(7, 1); }
TEST(Topology, FanoutThreeOfSevenRoutesToEveryRank) { expect_tree(7, 3); }

}  // namespace
}  // namespace loom::test
