// Who may do what (docs/protocols/messages.md, docs/security.md): the broker stamps every client message
// with the uid from SO_PEERCRED and a role (owner or user). The instance
// owner may make its requests carry another user's credentials
// (LOOM_HANDLE_USERID / LOOM_HANDLE_ROLEMASK) to test access rules; the
// broker ignores such credentials from anyone else.
//
// The non-owner cases run a forked child as uid 65534 (nobody), so they
// need root; they are skipped otherwise.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/posix/stream_descriptor.hpp>
#include <asio/read.hpp>
#include <filesystem>
#include <functional>
#include <string>

#include "kit/as_user.h"
#include "kit/client.h"
#include "kit/instance.h"

namespace loom::test {
namespace {

constexpr uint32_t kOtherUid = 4242;

const Env kAsUser = {{"LOOM_HANDLE_USERID", std::to_string(kOtherUid)},
                     {"LOOM_HANDLE_ROLEMASK", std::to_string(role::kUser)}};

std::string show(const CmdResult& r) {
  return "exit " + std::to_string(r.code) + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

class Access : public ::testing::Test {
 protected:
  void start(std::vector<std::string> extra = {}) { ASSERT_TRUE(inst_.start(4, extra)); }

  std::unique_ptr<Client> connect(uint32_t rank) {
    auto c = loop_.connect(inst_.socket(rank));
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().text);
    return c.ok() ? std::move(*c) : nullptr;
  }

  // A service "demo" on rank 0 whose demo.who reports the credentials the
  // broker delivered with each request.
  std::unique_ptr<Client> provide_who() {
    auto p = connect(0);
    if (!p) return nullptr;
    Reply r = call(loop_, *p, "service.add", R"({"service":"demo"})");
    EXPECT_EQ(r.errnum, 0) << r.errstr;
    Handle& h = p->handle();
    h.add_method("demo.who", loom::Access::kUser, [&h](const Message& req) {
      h.respond(req, Json{{"userid", req.userid}, {"rolemask", req.rolemask}});
    });
    h.add_method("demo.owner-only", loom::Access::kOwner,
                 [&h](const Message& req) { h.respond(req, std::string("{}")); });
    return p;
  }

  Json run_as(uid_t uid, const std::function<Json()>& fn) { return test::run_as(loop_, uid, fn); }

  Instance inst_;
  Loop loop_;
};

TEST_F(Access, UserCredentialsCannotShutDownTheInstance) {
  start();
  auto r = inst_.loom({"rpc", "broker.shutdown"}, kAsUser);
  EXPECT_EQ(r.code, 1) << show(r);
  ASSERT_EQ(r.err_lines().size(), 1u) << show(r);
  EXPECT_NE(r.err.find("restricted to the instance owner"), std::string::npos) << show(r);
  // On the wire it is EPERM, on every rank.
  auto c = connect(3);
  ASSERT_TRUE(c);
  c->handle().set_credentials(kOtherUid, role::kUser);
  for (uint32_t rank : {0u, 1u, 3u}) {
    Reply rep = call(loop_, *c, "broker.shutdown", "{}", {rank, false, 0});
    EXPECT_EQ(rep.errnum, EPERM) << "rank " << rank << ": " << rep.errstr;
  }
  // Everything is still up.
  r = inst_.loom({"status", "--json"});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_NE(r.out.find("\"ready\":true"), std::string::npos) << r.out;
  EXPECT_TRUE(inst_.running());

  // The owner itself may: the whole instance stops, and loom start with it.
  r = inst_.loom({"rpc", "broker.shutdown"});
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_TRUE(inst_.wait_exit(20).has_value()) << "loom start still runs after broker.shutdown";
}

TEST_F(Access, OwnerSpeakingAsAUserIsSeenAsThatUser) {
  start();
  auto prov = provide_who();
  ASSERT_TRUE(prov);
  auto c = connect(3);
  ASSERT_TRUE(c);
  Reply r = call(loop_, *c, "demo.who");
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  EXPECT_EQ(r.json()["userid"], ::getuid());
  EXPECT_EQ(r.json()["rolemask"], role::kOwner);
  EXPECT_EQ(call(loop_, *c, "demo.owner-only").errnum, 0);

  c->handle().set_credentials(kOtherUid, role::kUser);
  r = call(loop_, *c, "demo.who");
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  EXPECT_EQ(r.json()["userid"], kOtherUid);
  EXPECT_EQ(r.json()["rolemask"], role::kUser);
  EXPECT_EQ(call(loop_, *c, "demo.owner-only").errnum, EPERM);

  // A rolemask that is neither owner nor user is not kept: the broker
  // stamps the connection's own credentials instead.
  c->handle().set_credentials(kOtherUid, role::kOwner | role::kUser);
  r = call(loop_, *c, "demo.who");
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  EXPECT_EQ(r.json()["userid"], ::getuid());
  EXPECT_EQ(r.json()["rolemask"], role::kOwner);
}

TEST_F(Access, UsersRegisterOnlyServicesNamedAfterTheirUid) {
  start();
  auto c = connect(0);
  ASSERT_TRUE(c);
  c->handle().set_credentials(kOtherUid, role::kUser);
  Reply r = call(loop_, *c, "service.add", R"({"service":"demo"})");
  EXPECT_EQ(r.errnum, EPERM) << r.errstr;
  r = call(loop_, *c, "service.add", R"({"service":"4243-x"})");
  EXPECT_EQ(r.errnum, EPERM) << r.errstr;
  r = call(loop_, *c, "service.add", R"({"service":"4242-x"})");
  EXPECT_EQ(r.errnum, 0) << r.errstr;

  // The same through the CLI and the environment variables.
  auto cli = inst_.loom({"rpc", "service.add", R"({"service":"demo"})"}, kAsUser);
  EXPECT_EQ(cli.code, 1) << show(cli);
  EXPECT_NE(cli.err.find("4242-*"), std::string::npos) << show(cli);
  cli = inst_.loom({"rpc", "service.add", R"({"service":"4242-y"})"}, kAsUser);
  EXPECT_EQ(cli.code, 0) << show(cli);
  // Bad credentials in the environment are one clear line.
  cli = inst_.loom({"rpc", "broker.info"}, {{"LOOM_HANDLE_USERID", "nobody"}});
  EXPECT_EQ(cli.code, 1) << show(cli);
  EXPECT_EQ(cli.err_lines().size(), 1u) << show(cli);
  EXPECT_NE(cli.err.find("LOOM_HANDLE_USERID"), std::string::npos) << show(cli);
}

TEST_F(Access, NoClientMayIssueOverlayControl) {
  start();
  auto c = connect(0);
  ASSERT_TRUE(c);
  std::string why;
  auto pid1 = inst_.broker_pid(1, &why);
  ASSERT_TRUE(pid1) << why;
  // Forwarded over the tree, overlay.shutdown would reach rank 1 from its
  // parent's link; overlay.hello climbing from rank 1 would make rank 0
  // drop the link. Neither is obeyed: there is no such service.
  for (const char* topic : {"overlay.shutdown", "overlay.hello", "overlay.heartbeat"}) {
    for (uint32_t rank : {1u, 3u}) {
      Reply r = call(loop_, *c, topic, R"({"rank":1})", {rank, false, 0});
      EXPECT_EQ(r.errnum, ENOSYS) << topic << " to rank " << rank << ": " << r.errstr;
    }
  }
  auto at1 = connect(1);
  ASSERT_TRUE(at1);
  Reply r = call(loop_, *at1, "overlay.hello", R"({"rank":1})");
  EXPECT_EQ(r.errnum, ENOSYS) << r.errstr;
  // Every rank is still there and online.
  auto res = inst_.loom({"status", "--json"});
  ASSERT_EQ(res.code, 0) << show(res);
  EXPECT_NE(res.out.find("\"ready\":true"), std::string::npos) << res.out;
  EXPECT_TRUE(is_alive(*pid1));
  EXPECT_EQ(call(loop_, *c, "broker.info", "{}", {3, false, 0}).errnum, 0);
}

TEST_F(Access, ARootInstanceServesEveryUserButTheOverlayIsItsOwn) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client as another uid";
  // Run by root, an instance serves every local user (each job runs as
  // its user, docs/security.md): the client sockets are open to all, while the
  // brokers' own links stay behind a directory only root can enter.
  start();
  struct stat st {};
  ASSERT_EQ(::stat(inst_.rundir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u) << "rundir mode " << std::oct << (st.st_mode & 0777);
  ASSERT_EQ(::stat((inst_.rundir() + "/overlay").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u) << "overlay mode " << std::oct << (st.st_mode & 0777);
  std::string sock = inst_.socket(0);
  std::string overlay = inst_.rundir() + "/overlay/rank-0.sock";
  Json out = run_as(kNobody, [&] {
    Loop loop;
    auto c = loop.connect(sock);
    Json res{{"connected", c.ok()}, {"error", c.ok() ? "" : c.error().text}};
    if (c.ok()) res["ping"] = call(loop, **c, "broker.ping", "{}").errnum;
    auto o = loop.connect(overlay);
    res["overlay"] = o.ok() ? "" : o.error().text;
    return res;
  });
  ASSERT_TRUE(out.is_object()) << out.dump();
  EXPECT_EQ(out["connected"], true) << out.dump();
  EXPECT_EQ(out["ping"], 0) << out.dump();
  EXPECT_NE(out["overlay"].get<std::string>().find("ermission denied"), std::string::npos) << out.dump();
}

TEST_F(Access, BrokerIgnoresCredentialsFromANonOwner) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client as another uid";
  // A rundir others can enter, and sockets others can write to.
  char tmpl[] = "/tmp/loom-access-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  start({"--rundir=" + dir + "/run"});
  for (uint32_t r = 0; r < 4; ++r) ASSERT_EQ(::chmod(inst_.socket(r).c_str(), 0666), 0);
  auto prov = provide_who();
  ASSERT_TRUE(prov);
  // The owner listens to everything under demo.
  auto sub = connect(0);
  ASSERT_TRUE(sub);
  std::vector<std::string> events;
  ASSERT_TRUE(subscribe(loop_, sub->handle(), "demo.", [&](const Message& m) { events.push_back(m.topic); }));

  std::string sock3 = inst_.socket(3);
  Json out = run_as(kNobody, [&] {
    Json res = Json::object();
    Loop loop;
    auto c = loop.connect(sock3);
    if (!c.ok()) return Json{{"connect", c.error().text}};
    // Claim to be root and the owner: the broker must not believe it.
    (*c)->handle().set_credentials(0, role::kOwner);
    auto errnum = [&](const std::string& topic, const std::string& payload, uint32_t nodeid) {
      return call(loop, **c, topic, payload, {nodeid, false, 0}).errnum;
    };
    res["shutdown0"] = errnum("broker.shutdown", "{}", 0);
    res["shutdown3"] = errnum("broker.shutdown", "{}", 3);
    res["add_demo"] = errnum("service.add", R"({"service":"mine"})", kNodeAny);
    res["add_prefixed"] = errnum("service.add", R"({"service":"65534-mine"})", kNodeAny);
    res["owner_only"] = errnum("demo.owner-only", "{}", kNodeAny);
    res["overlay_shutdown"] = errnum("overlay.shutdown", "{}", 1);
    Reply who = call(loop, **c, "demo.who");
    res["who"] = who.json();
    // Events from a user are dropped; the ping orders it before the fence
    // the test publishes afterwards.
    (*c)->handle().publish("demo.from-nobody", "{}");
    res["ping"] = errnum("broker.ping", "{}", 0);
    return res;
  });
  ASSERT_TRUE(out.is_object()) << out.dump();
  ASSERT_FALSE(out.contains("connect")) << out.dump();
  ASSERT_FALSE(out.contains("setup")) << out.dump();
  EXPECT_EQ(out["shutdown0"], EPERM) << out.dump();
  EXPECT_EQ(out["shutdown3"], EPERM) << out.dump();
  EXPECT_EQ(out["add_demo"], EPERM) << out.dump();
  EXPECT_EQ(out["add_prefixed"], 0) << out.dump();
  EXPECT_EQ(out["owner_only"], EPERM) << out.dump();
  EXPECT_EQ(out["overlay_shutdown"], ENOSYS) << out.dump();
  EXPECT_EQ(out["who"]["userid"], kNobody) << out.dump();
  EXPECT_EQ(out["who"]["rolemask"], role::kUser) << out.dump();
  EXPECT_EQ(out["ping"], 0) << out.dump();

  sub->handle().publish("demo.fence", "{}");
  ASSERT_TRUE(loop_.run_until([&] { return !events.empty() && events.back() == "demo.fence"; }));
  EXPECT_EQ(events, std::vector<std::string>{"demo.fence"});
  auto res = inst_.loom({"status", "--json"});
  EXPECT_NE(res.out.find("\"ready\":true"), std::string::npos) << res.out;
  EXPECT_EQ(inst_.stop(20), std::optional<int>(0));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace loom::test
