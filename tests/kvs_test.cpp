// The KVS service end to end (docs/storage.md; docs/design.md, "Storage" and
// "Restart and recovery"): real loomd processes, real SQLite files, real
// sockets. Transactions, watches from several ranks, access rules and guest
// namespaces, restarts on the same state directory, and state directories
// that are not loom's.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "eventlog/eventlog.h"
#include "kit/client.h"
#include "kit/instance.h"
#include "kit/kvs_kit.h"

namespace loom::test {
namespace {

std::string show(const CmdResult& r) {
  return "exit " + std::to_string(r.code) + (r.timed_out ? " (timed out)" : "") + "\nstdout: " + r.out +
         "\nstderr: " + r.err;
}

std::unique_ptr<Client> must_connect(Loop& loop, const std::string& socket) {
  auto c = loop.connect(socket);
  if (!c.ok()) {
    ADD_FAILURE() << "connect " << socket << ": " << c.error().text;
    return nullptr;
  }
  return std::move(*c);
}

Json dir_of(Loop& loop, Handle& h, const std::string& key, const std::string& ns = "") {
  Reply r = kvs_lookup(loop, h, key, ns);
  if (r.errnum != 0) return Json(r.errnum);
  Json j = r.json();
  return j.contains("dir") ? j["dir"] : Json(nullptr);
}

Json names(std::initializer_list<const char*> l) {
  Json a = Json::array();
  for (auto* s : l) a.push_back(s);
  return a;
}

// A user's view: the same connection, speaking as `uid` with the user role
// (the broker lets the instance owner impersonate; docs/protocols/messages.md).
struct AsUser {
  AsUser(Loop& loop, const std::string& socket, uint32_t uid) : client(must_connect(loop, socket)) {
    if (client) client->handle().set_credentials(uid, role::kUser);
  }
  Handle& h() { return client->handle(); }
  std::unique_ptr<Client> client;
};

// One broker keeping its state in `dir`, and a client of it: how each
// restart test begins. ok() is false (and the failure recorded) unless
// both came up. Members in that order, for a structured binding.
struct OnStateDir {
  explicit OnStateDir(const std::string& dir) {
    if (inst.start(1, {"--state-dir=" + dir})) {
      c = must_connect(loop, inst.socket(0));
    } else {
      ADD_FAILURE() << "no broker started on " << dir;
    }
  }
  bool ok() const { return c != nullptr; }
  Instance inst;
  Loop loop;
  std::unique_ptr<Client> c;
};

Env user_env(uint32_t uid) { return {{"LOOM_HANDLE_USERID", std::to_string(uid)}, {"LOOM_HANDLE_ROLEMASK", "2"}}; }

class KvsOneRank : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(inst_.start(1));
    owner_ = must_connect(loop_, inst_.socket(0));
    ASSERT_TRUE(owner_);
  }
  Handle& h() { return owner_->handle(); }
  std::optional<std::string> value(const std::string& key, const std::string& ns = "") {
    return kvs_value(loop_, h(), key, ns);
  }
  int lookup_errnum(const std::string& key, const std::string& ns = "") {
    return kvs_lookup(loop_, h(), key, ns).errnum;
  }

  Instance inst_;
  Loop loop_;
  std::unique_ptr<Client> owner_;
};

// --- 1. transactions ---

TEST_F(KvsOneRank, ACommitWithAnInvalidOpChangesNothing) {
  ASSERT_EQ(kvs_commit(loop_, h(), {put_op("base", "0"), append_op("base.log", "zero\n")}).errnum, 0);

  struct Bad {
    const char* what;
    Json op;
    int errnum;
  };
  std::vector<Bad> bad = {
      {"a key with an empty component", put_op("a..b", "2"), EINVAL},
      {"a key ending in a dot", put_op("atom.", "2"), EINVAL},
      {"a key with a space", put_op("atom. x", "2"), EINVAL},
      {"an unknown op", Json{{"op", "frob"}, {"key", "atom.y"}, {"value", "1"}}, EPROTO},
      {"a put without a value", Json{{"op", "put"}, {"key", "atom.y"}}, EPROTO},
      {"an append of a number", Json{{"op", "append"}, {"key", "atom.y"}, {"value", 5}}, EPROTO},
      {"an op without a key", Json{{"op", "unlink"}}, EPROTO},
      {"an op that is not an object", Json("put"), EPROTO},
  };
  for (auto& b : bad) {
    SCOPED_TRACE(b.what);
    // The valid ops come first and last: none of them may happen.
    std::vector<Json> ops = {put_op("atom.x", "1"), append_op("base.log", "one\n"), unlink_op("base"), b.op,
                             put_op("atom.z", "3")};
    Reply r = kvs_commit(loop_, h(), ops);
    EXPECT_EQ(r.errnum, b.errnum) << r.payload;
    EXPECT_EQ(lookup_errnum("atom.x"), ENOENT);
    EXPECT_EQ(lookup_errnum("atom.z"), ENOENT);
    EXPECT_EQ(lookup_errnum("atom"), ENOENT);
    EXPECT_EQ(value("base"), "0");
    EXPECT_EQ(value("base.log"), "zero\n");
  }
  // The same ops without the bad one go through: the errors were not sticky.
  ASSERT_EQ(kvs_commit(loop_, h(), {put_op("atom.x", "1"), append_op("base.log", "one\n")}).errnum, 0);
  EXPECT_EQ(value("atom.x"), "1");
  EXPECT_EQ(value("base.log"), "zero\none\n");
}

TEST_F(KvsOneRank, PutAppendAndUnlinkInOneCommitAreAllVisibleAfterwards) {
  ASSERT_EQ(
      kvs_commit(loop_, h(), {put_op("old.sub.k", "v"), put_op("old.j", "w"), append_op("log", "first\n")}).errnum, 0);
  std::vector<Json> ops = {put_op("d.a", "1"),         append_op("d.log", "l1\n"), append_op("log", "second\n"),
                           append_op("d.log", "l2\n"), unlink_op("old"),           put_op("d.b.c", "2")};
  Reply r = kvs_commit(loop_, h(), ops);
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  EXPECT_EQ(value("d.a"), "1");
  EXPECT_EQ(value("d.log"), "l1\nl2\n");
  EXPECT_EQ(value("log"), "first\nsecond\n");
  EXPECT_EQ(value("d.b.c"), "2");
  EXPECT_EQ(lookup_errnum("old"), ENOENT);
  EXPECT_EQ(lookup_errnum("old.sub.k"), ENOENT);
  EXPECT_EQ(lookup_errnum("old.j"), ENOENT);

  // A directory lists its children (once each, in order).
  EXPECT_EQ(dir_of(loop_, h(), "d"), names({"a", "b", "log"}));
  EXPECT_EQ(dir_of(loop_, h(), "d.b"), names({"c"}));
  // (the job manager keeps its own key at the top)
  EXPECT_EQ(dir_of(loop_, h(), "."), names({"d", "job-manager", "log"}));

  // Ops apply in their order within a commit.
  ASSERT_EQ(
      kvs_commit(loop_, h(), {put_op("o.k", "1"), unlink_op("o.k"), put_op("o.k", "2"), append_op("o.k", "3")}).errnum,
      0);
  EXPECT_EQ(value("o.k"), "23");
  ASSERT_EQ(kvs_commit(loop_, h(), {put_op("o.k", "4"), unlink_op("o")}).errnum, 0);
  EXPECT_EQ(lookup_errnum("o.k"), ENOENT);
}

TEST_F(KvsOneRank, UnlinkRemovesASubtreeAndNothingBesideIt) {
  std::vector<Json> ops = {put_op("t.x.y", "1"), put_op("t.x.z.q", "2"), put_op("t.w", "3"),
                           put_op("t.xa", "4"),  put_op("tx", "5"),      put_op("t.x", "6")};
  ASSERT_EQ(kvs_commit(loop_, h(), ops).errnum, 0);
  // "t.x" is both a value and a directory: lookup gives the value.
  EXPECT_EQ(value("t.x"), "6");
  ASSERT_EQ(kvs_commit(loop_, h(), {unlink_op("t.x")}).errnum, 0);
  EXPECT_EQ(lookup_errnum("t.x"), ENOENT);
  EXPECT_EQ(lookup_errnum("t.x.y"), ENOENT);
  EXPECT_EQ(lookup_errnum("t.x.z.q"), ENOENT);
  EXPECT_EQ(lookup_errnum("t.x.z"), ENOENT);
  EXPECT_EQ(value("t.w"), "3");
  EXPECT_EQ(value("t.xa"), "4");
  EXPECT_EQ(value("tx"), "5");
  EXPECT_EQ(dir_of(loop_, h(), "t"), names({"w", "xa"}));
  // Unlinking what is not there is not an error.
  EXPECT_EQ(kvs_commit(loop_, h(), {unlink_op("nothing.here")}).errnum, 0);
}

// Requests sent back to back on one connection, without waiting: they
// reach the service in one loop turn and so share one group commit.
struct Pipelined {
  std::vector<std::shared_ptr<std::optional<Reply>>> replies;
  void send(Handle& h, const std::string& topic, const Json& payload) {
    auto out = std::make_shared<std::optional<Reply>>();
    replies.push_back(out);
    h.rpc(topic, payload, RpcOptions{}, [out](const Message& m) {
      Reply r;
      r.errnum = m.errnum;
      r.payload = m.payload;
      if (m.errnum) r.errstr = error_text(m);
      *out = r;
    });
  }
  bool wait(Loop& loop) {
    return loop.run_until(
        [&] { return std::all_of(replies.begin(), replies.end(), [](auto& r) { return r->has_value(); }); });
  }
  const Reply& operator[](size_t i) const { return **replies[i]; }
};

TEST_F(KvsOneRank, CommitsSharingAGroupCommitStayInOrderAndApart) {
  Pipelined p;
  p.send(h(), "kvs.commit", {{"ops", Json::array({put_op("g.a", "1")})}});
  p.send(h(), "kvs.commit", {{"ops", Json::array({put_op("g.b", "2"), put_op("bad..key", "x")})}});
  p.send(h(), "kvs.commit", {{"ops", Json::array({append_op("g.log", "1\n"), unlink_op("g.a")})}});
  p.send(h(), "kvs.commit", {{"ops", Json::array({append_op("g.log", "2\n"), put_op("g.a", "3")})}});
  ASSERT_TRUE(p.wait(loop_));
  EXPECT_EQ(p[0].errnum, 0);
  EXPECT_EQ(p[1].errnum, EINVAL);
  EXPECT_EQ(p[2].errnum, 0);
  EXPECT_EQ(p[3].errnum, 0);
  EXPECT_EQ(value("g.a"), "3");
  EXPECT_EQ(lookup_errnum("g.b"), ENOENT);
  EXPECT_EQ(value("g.log"), "1\n2\n");
}

TEST_F(KvsOneRank, ALinkSentRightAfterACommitCopiesWhatTheCommitWrote) {
  // Created, written and linked without waiting in between: each request
  // is served after the ones before it, as the client sent them.
  Pipelined p;
  p.send(h(), "kvs.namespace-create", {{"name", "behind"}, {"owner", 5000}});
  p.send(h(), "kvs.commit", {{"namespace", "behind"}, {"ops", Json::array({append_op("log", "1\n")})}});
  p.send(h(), "kvs.namespace-link", {{"namespace", "behind"}, {"key", "job.9.guest"}});
  p.send(h(), "kvs.commit", {{"ops", Json::array({append_op("job.9.guest.log", "2\n")})}});
  ASSERT_TRUE(p.wait(loop_));
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(p[i].errnum, 0) << i << ": " << p[i].errstr;
  EXPECT_EQ(value("job.9.guest.log"), "1\n2\n");
}

TEST_F(KvsOneRank, ANamespaceCreatedTwiceInOneTurnHasOneOwner) {
  Pipelined p;
  p.send(h(), "kvs.namespace-create", {{"name", "twice"}, {"owner", 5000}});
  p.send(h(), "kvs.namespace-create", {{"name", "twice"}, {"owner", 5001}});
  ASSERT_TRUE(p.wait(loop_));
  EXPECT_EQ(p[0].errnum, 0) << p[0].errstr;
  EXPECT_EQ(p[1].errnum, EEXIST) << "the second create of the same namespace succeeded too";
  AsUser u5000(loop_, inst_.socket(0), 5000);
  ASSERT_TRUE(u5000.client);
  EXPECT_EQ(kvs_commit(loop_, u5000.h(), {put_op("k", "v")}, "twice").errnum, 0);
}

// --- 3. access ---

TEST_F(KvsOneRank, AUserCannotReadOrWriteThePrimaryNamespace) {
  ASSERT_EQ(kvs_commit(loop_, h(), {put_op("secret", "s3cr3t"), append_op("job.1.eventlog", "x\n")}).errnum, 0);
  AsUser u(loop_, inst_.socket(0), 5000);
  ASSERT_TRUE(u.client);
  EXPECT_EQ(kvs_lookup(loop_, u.h(), "secret").errnum, EPERM);
  EXPECT_EQ(kvs_lookup(loop_, u.h(), ".").errnum, EPERM);
  EXPECT_EQ(kvs_lookup(loop_, u.h(), "secret", "primary").errnum, EPERM);
  EXPECT_EQ(kvs_commit(loop_, u.h(), {put_op("mine", "1")}).errnum, EPERM);
  EXPECT_EQ(kvs_commit(loop_, u.h(), {append_op("job.1.eventlog", "forged\n")}).errnum, EPERM);
  EXPECT_EQ(kvs_commit(loop_, u.h(), {unlink_op("secret")}).errnum, EPERM);
  Watcher w;
  start_watch(u.h(), {{"key", "job.1.eventlog"}, {"append", true}}, w);
  ASSERT_TRUE(loop_.run_until([&] { return w.ended(); }));
  EXPECT_EQ(w.end_errnum, EPERM);
  EXPECT_EQ(w.responses, 0u);
  // Nothing changed.
  EXPECT_EQ(lookup_errnum("mine"), ENOENT);
  EXPECT_EQ(value("secret"), "s3cr3t");
  EXPECT_EQ(value("job.1.eventlog"), "x\n");

  // The same through the command line, with the documented variables; and
  // the owner's own `kvs get` as the control.
  auto r = inst_.loom({"kvs", "get", "secret"}, user_env(5000));
  EXPECT_NE(r.code, 0) << show(r);
  EXPECT_EQ(r.out.find("s3cr3t"), std::string::npos) << show(r);
  EXPECT_NE(r.err.find("not allowed"), std::string::npos) << show(r);
  r = inst_.loom({"kvs", "put", "mine=1"}, user_env(5000));
  EXPECT_NE(r.code, 0) << show(r);
  r = inst_.loom({"kvs", "get", "secret"});
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out, "s3cr3t\n");
  EXPECT_EQ(lookup_errnum("mine"), ENOENT);
}

TEST_F(KvsOneRank, AGuestNamespaceBelongsToItsOwnerAndLinksIntoPrimary) {
  AsUser u5000(loop_, inst_.socket(0), 5000);
  AsUser u5001(loop_, inst_.socket(0), 5001);
  ASSERT_TRUE(u5000.client && u5001.client);

  // Only the owner creates namespaces.
  Reply r = call(loop_, u5000.h(), "kvs.namespace-create", R"({"name":"mine","owner":5000})");
  EXPECT_EQ(r.errnum, EPERM) << r.payload;
  r = call(loop_, h(), "kvs.namespace-create", R"({"name":"g5000","owner":5000})");
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  r = call(loop_, h(), "kvs.namespace-create", R"({"name":"g5000","owner":5001})");
  EXPECT_EQ(r.errnum, EEXIST);

  // 5000 writes and reads its namespace.
  std::string line = event_line(1.5, "data", {{"stream", "stdout"}, {"data", "hello\n"}});
  // Except the keys under `exec`, which only the instance writes (the
  // commit is refused whole).
  r = kvs_commit(loop_, u5000.h(), {put_op("a", "1"), put_op("exec.state", "run")}, "g5000");
  EXPECT_EQ(r.errnum, EPERM) << r.errstr;
  EXPECT_EQ(r.errstr, "key exec.state of namespace g5000 is written only by the instance");
  EXPECT_EQ(kvs_lookup(loop_, u5000.h(), "a", "g5000").errnum, ENOENT);
  r = kvs_commit(loop_, h(), {put_op("exec.state", "run")}, "g5000");
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  r = kvs_commit(loop_, u5000.h(), {put_op("a", "1"), append_op("output", line)}, "g5000");
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  EXPECT_EQ(kvs_value(loop_, u5000.h(), "exec.state", "g5000"), "run");
  EXPECT_EQ(kvs_value(loop_, u5000.h(), "a", "g5000"), "1");
  EXPECT_EQ(dir_of(loop_, u5000.h(), ".", "g5000"), names({"a", "exec", "output"}));
  Watcher mine;
  start_watch(u5000.h(), {{"namespace", "g5000"}, {"key", "output"}, {"append", true}}, mine);
  ASSERT_TRUE(loop_.run_until([&] { return mine.data == line || mine.ended(); })) << mine.data;
  EXPECT_FALSE(mine.ended()) << mine.end_text;
  // ...but still not primary.
  EXPECT_EQ(kvs_lookup(loop_, u5000.h(), "a").errnum, EPERM);

  // 5001 can do nothing with it.
  EXPECT_EQ(kvs_lookup(loop_, u5001.h(), "a", "g5000").errnum, EPERM);
  EXPECT_EQ(kvs_lookup(loop_, u5001.h(), ".", "g5000").errnum, EPERM);
  EXPECT_EQ(kvs_commit(loop_, u5001.h(), {put_op("a", "2")}, "g5000").errnum, EPERM);
  EXPECT_EQ(kvs_commit(loop_, u5001.h(), {append_op("output", line)}, "g5000").errnum, EPERM);
  Watcher theirs;
  start_watch(u5001.h(), {{"namespace", "g5000"}, {"key", "output"}, {"append", true}}, theirs);
  ASSERT_TRUE(loop_.run_until([&] { return theirs.ended(); }));
  EXPECT_EQ(theirs.end_errnum, EPERM);
  EXPECT_TRUE(theirs.data.empty());
  EXPECT_EQ(call(loop_, u5001.h(), "kvs.namespace-remove", R"({"name":"g5000"})").errnum, EPERM);
  EXPECT_EQ(kvs_value(loop_, u5000.h(), "a", "g5000"), "1");

  // namespace-list: each user sees their own; the owner sees all.
  auto listed = [&](Handle& hh) {
    std::set<std::string> out;
    Reply lr = call(loop_, hh, "kvs.namespace-list");
    for (auto& n : lr.json().value("namespaces", Json::array())) out.insert(n["name"].get<std::string>());
    return out;
  };
  EXPECT_EQ(listed(u5000.h()), (std::set<std::string>{"g5000"}));
  EXPECT_EQ(listed(u5001.h()), (std::set<std::string>{}));
  EXPECT_EQ(listed(h()), (std::set<std::string>{"g5000", "primary"}));

  // The command line with the documented variables.
  auto cr = inst_.loom({"kvs", "--namespace=g5000", "get", "a"}, user_env(5000));
  EXPECT_EQ(cr.code, 0) << show(cr);
  EXPECT_EQ(cr.out, "1\n");
  cr = inst_.loom({"kvs", "--namespace=g5000", "get", "a"}, user_env(5001));
  EXPECT_NE(cr.code, 0) << show(cr);
  EXPECT_EQ(cr.out, "");
  cr = inst_.loom({"kvs", "namespace", "create", "--owner=5001", "g5001"}, user_env(5001));
  EXPECT_NE(cr.code, 0) << show(cr);

  // Linking: a user may not; the owner copies the namespace under a key of
  // primary, replacing whatever was there.
  r = call(loop_, u5000.h(), "kvs.namespace-link", R"({"namespace":"g5000","key":"job.1.guest"})");
  EXPECT_EQ(r.errnum, EPERM);
  ASSERT_EQ(kvs_commit(loop_, h(), {put_op("job.1.guest.stale", "x"), put_op("job.1.R", "r")}).errnum, 0);
  EXPECT_EQ(lookup_errnum("job.1.guest.a"), ENOENT);
  r = call(loop_, h(), "kvs.namespace-link", R"({"namespace":"g5000","key":"job.1.guest"})");
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  EXPECT_EQ(value("job.1.guest.a"), "1");
  EXPECT_EQ(value("job.1.guest.output"), line);
  EXPECT_EQ(value("job.1.guest.exec.state"), "run");
  EXPECT_EQ(lookup_errnum("job.1.guest.stale"), ENOENT);
  EXPECT_EQ(dir_of(loop_, h(), "job.1.guest"), names({"a", "exec", "output"}));
  EXPECT_EQ(value("job.1.R"), "r");
  EXPECT_EQ(call(loop_, h(), "kvs.namespace-link", R"({"namespace":"nope","key":"job.2.guest"})").errnum, ENOENT);
  // The copy is in primary: the user still cannot read it there.
  EXPECT_EQ(kvs_lookup(loop_, u5000.h(), "job.1.guest.a").errnum, EPERM);
  // The guest namespace itself is untouched and still the user's.
  EXPECT_EQ(kvs_value(loop_, u5000.h(), "output", "g5000"), line);
}

// --- 2. watches ---

class KvsFourRanks : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(inst_.start(4));
    owner_ = must_connect(loop_, inst_.socket(0));
    ASSERT_TRUE(owner_);
  }
  Handle& h() { return owner_->handle(); }

  Instance inst_;
  Loop loop_;
  std::unique_ptr<Client> owner_;
};

Json line_ops(const std::string& key, int client, int n) {
  return Json::array({append_op(key, event_line(1000 + n, "line", {{"client", client}, {"seq", n}}))});
}

// Checks that `log` holds each (client, seq) for seq < per_client exactly
// once, in seq order per client.
::testing::AssertionResult every_line_once_in_order(const std::string& log, int clients, int per_client,
                                                    size_t skip_first = 0) {
  auto ev = parse_eventlog(log);
  if (!ev.ok()) return ::testing::AssertionFailure() << ev.error().text;
  if (ev->size() != skip_first + static_cast<size_t>(clients * per_client)) {
    return ::testing::AssertionFailure() << ev->size() << " lines, expected " << skip_first + clients * per_client;
  }
  std::vector<int> next(clients, 0);
  for (size_t i = skip_first; i < ev->size(); ++i) {
    auto& c = (*ev)[i].context;
    int cl = c.value("client", -1), seq = c.value("seq", -1);
    if (cl < 0 || cl >= clients) return ::testing::AssertionFailure() << "line " << i << ": bad client";
    if (seq != next[cl]) {
      return ::testing::AssertionFailure()
             << "line " << i << ": client " << cl << " seq " << seq << ", expected " << next[cl];
    }
    ++next[cl];
  }
  return ::testing::AssertionSuccess();
}

TEST_F(KvsFourRanks, TwentyWatchersOnTwoRanksGetEveryLineOnceAndInOrder) {
  const std::string key = "job.7.eventlog";
  std::string first = event_line(1, "submit", {{"userid", 1}});
  ASSERT_EQ(kvs_commit(loop_, h(), {append_op(key, first)}).errnum, 0);

  std::vector<std::unique_ptr<Client>> wc;
  std::vector<Watcher> w(20);
  for (int i = 0; i < 20; ++i) {
    wc.push_back(must_connect(loop_, inst_.socket(i < 10 ? 0 : 3)));
    ASSERT_TRUE(wc.back());
    start_watch(wc.back()->handle(), {{"key", key}, {"append", true}}, w[i]);
  }
  // From the start: each has the existing line first, so each is in place.
  ASSERT_TRUE(loop_.run_until([&] {
    return std::all_of(w.begin(), w.end(), [&](auto& x) { return x.data.size() >= first.size() || x.ended(); });
  }));
  for (auto& x : w) ASSERT_EQ(x.data, first) << x.end_text;

  // Four appenders, one per rank, 125 lines each, several commits in flight.
  constexpr int kClients = 4, kPer = 125;
  std::vector<std::unique_ptr<Client>> ac;
  std::vector<std::unique_ptr<Appender>> app;
  for (int c = 0; c < kClients; ++c) {
    ac.push_back(must_connect(loop_, inst_.socket(static_cast<uint32_t>(c))));
    ASSERT_TRUE(ac.back());
    app.push_back(std::make_unique<Appender>(
        ac.back()->handle(), [&key, c](int n) { return line_ops(key, c, n); }, kPer, 6));
  }
  for (auto& a : app) a->start();
  ASSERT_TRUE(
      loop_.run_until([&] { return std::all_of(app.begin(), app.end(), [](auto& a) { return a->done(); }); }, 30));
  for (auto& a : app) ASSERT_EQ(a->acked(), kPer) << a->first_error();

  auto final_log = kvs_value(loop_, h(), key);
  ASSERT_TRUE(final_log);
  ASSERT_TRUE(every_line_once_in_order(*final_log, kClients, kPer, 1));
  ASSERT_TRUE(final_log->starts_with(first));

  ASSERT_TRUE(loop_.run_until(
      [&] {
        return std::all_of(w.begin(), w.end(),
                           [&](auto& x) { return x.data.size() >= final_log->size() || x.ended(); });
      },
      20));
  for (int i = 0; i < 20; ++i) {
    SCOPED_TRACE("watcher " + std::to_string(i) + " on rank " + (i < 10 ? "0" : "3"));
    EXPECT_FALSE(w[i].ended()) << w[i].end_text;
    EXPECT_FALSE(w[i].bad_payload);
    EXPECT_TRUE(w[i].data == *final_log) << "got " << w[i].data.size() << " bytes of " << final_log->size();
    EXPECT_TRUE(every_line_once_in_order(w[i].data, kClients, kPer, 1));
  }
  // Nothing more arrives after a quiet round trip.
  for (int i = 0; i < 20; ++i) ASSERT_EQ(kvs_lookup(loop_, wc[i]->handle(), key).errnum, 0);
  for (auto& x : w) EXPECT_EQ(x.data.size(), final_log->size());
}

TEST_F(KvsFourRanks, FromNowSkipsExistingContentAndFromStartDoesNot) {
  std::string old_lines = event_line(1, "a", {}) + event_line(2, "b", {}) + event_line(3, "c", {});
  ASSERT_EQ(kvs_commit(loop_, h(), {append_op("ev", old_lines)}).errnum, 0);
  for (uint32_t rank : {0u, 3u}) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    auto c = must_connect(loop_, inst_.socket(rank));
    ASSERT_TRUE(c);
    Watcher now, start;
    // On one connection requests arrive in order: both watches are in
    // place before the append.
    start_watch(c->handle(), {{"key", "ev"}, {"append", true}, {"from", "now"}}, now);
    start_watch(c->handle(), {{"key", "ev"}, {"append", true}, {"from", "start"}}, start);
    std::string added = event_line(10 + rank, "new", {{"rank", rank}});
    Reply r = kvs_commit(loop_, c->handle(), {append_op("ev", added)});
    ASSERT_EQ(r.errnum, 0);
    ASSERT_TRUE(loop_.run_until([&] { return now.data.size() >= added.size() || now.ended(); }));
    EXPECT_EQ(now.data, added);
    ASSERT_TRUE(loop_.run_until([&] { return start.data.size() >= old_lines.size() + added.size() || start.ended(); }));
    EXPECT_EQ(start.data, old_lines + added);
    old_lines += added;
  }
  // A bad `from` is refused.
  Watcher bad;
  start_watch(h(), {{"key", "ev"}, {"append", true}, {"from", "yesterday"}}, bad);
  ASSERT_TRUE(loop_.run_until([&] { return bad.ended(); }));
  EXPECT_EQ(bad.end_errnum, EPROTO);
}

TEST_F(KvsFourRanks, WaitcreateWaitsForAKeyCreatedLater) {
  auto c = must_connect(loop_, inst_.socket(3));
  ASSERT_TRUE(c);
  Watcher missing, waiting, value_waiting;
  start_watch(c->handle(), {{"key", "later.log"}, {"append", true}}, missing);
  start_watch(c->handle(), {{"key", "later.log"}, {"append", true}, {"waitcreate", true}}, waiting);
  start_watch(c->handle(), {{"key", "later.v"}, {"waitcreate", true}}, value_waiting);
  // A round trip on the same connection: anything the watches were going
  // to answer at once has arrived before this answer.
  ASSERT_EQ(kvs_lookup(loop_, c->handle(), "later").errnum, ENOENT);
  EXPECT_EQ(missing.end_errnum, ENOENT);
  EXPECT_EQ(waiting.responses, 0u);
  EXPECT_FALSE(waiting.ended());
  EXPECT_EQ(value_waiting.responses, 0u);

  std::string l1 = event_line(1, "created", {});
  ASSERT_EQ(kvs_commit(loop_, h(), {append_op("later.log", l1), put_op("later.v", "1")}).errnum, 0);
  ASSERT_TRUE(loop_.run_until([&] { return waiting.data == l1 && !value_waiting.values.empty(); }));
  ASSERT_EQ(kvs_commit(loop_, h(), {put_op("later.v", "2")}).errnum, 0);
  ASSERT_TRUE(loop_.run_until([&] { return value_waiting.values.size() >= 2 || value_waiting.ended(); }));
  EXPECT_EQ(value_waiting.values, (std::vector<std::string>{"1", "2"}));
  EXPECT_FALSE(waiting.ended());
}

TEST_F(KvsFourRanks, UnlinkEndsWatchesWithEnodata) {
  ASSERT_EQ(kvs_commit(loop_, h(), {append_op("u.log", "x\n"), put_op("u.dir.k", "v"), put_op("keep", "1")}).errnum, 0);
  auto c3 = must_connect(loop_, inst_.socket(3));
  ASSERT_TRUE(c3);
  Watcher log0, log3, below, other;
  start_watch(h(), {{"key", "u.log"}, {"append", true}}, log0);
  start_watch(c3->handle(), {{"key", "u.log"}, {"append", true}}, log3);
  start_watch(c3->handle(), {{"key", "u.dir.k"}}, below);
  start_watch(h(), {{"key", "keep"}}, other);
  ASSERT_TRUE(loop_.run_until([&] { return log0.responses && log3.responses && below.responses && other.responses; }));
  // Removing the key ends its watches; removing a directory ends the
  // watches of the keys below it.
  ASSERT_EQ(kvs_commit(loop_, h(), {unlink_op("u.log")}).errnum, 0);
  ASSERT_TRUE(loop_.run_until([&] { return log0.ended() && log3.ended(); }));
  EXPECT_EQ(log0.end_errnum, ENODATA);
  EXPECT_EQ(log3.end_errnum, ENODATA);
  EXPECT_FALSE(below.ended());
  ASSERT_EQ(kvs_commit(loop_, h(), {unlink_op("u")}).errnum, 0);
  ASSERT_TRUE(loop_.run_until([&] { return below.ended(); }));
  EXPECT_EQ(below.end_errnum, ENODATA);
  // An unrelated watch goes on.
  ASSERT_EQ(kvs_commit(loop_, h(), {put_op("keep", "2")}).errnum, 0);
  ASSERT_TRUE(loop_.run_until([&] { return other.values.size() >= 2 || other.ended(); }));
  EXPECT_EQ(other.values, (std::vector<std::string>{"1", "2"}));
}

TEST_F(KvsFourRanks, WatchCancelEndsOnlyTheCallersWatchWithEnodata) {
  ASSERT_EQ(kvs_commit(loop_, h(), {append_op("c.log", "0\n")}).errnum, 0);
  // Fresh connections on two ranks: their first requests likely share a
  // matchtag, which must not confuse the service.
  auto a = must_connect(loop_, inst_.socket(0));
  auto b = must_connect(loop_, inst_.socket(3));
  auto d = must_connect(loop_, inst_.socket(3));
  ASSERT_TRUE(a && b && d);
  Watcher wa, wb, wd;
  uint32_t ta = start_watch(a->handle(), {{"key", "c.log"}, {"append", true}}, wa);
  uint32_t tb = start_watch(b->handle(), {{"key", "c.log"}, {"append", true}}, wb);
  uint32_t td = start_watch(d->handle(), {{"key", "c.log"}, {"append", true}}, wd);
  ASSERT_TRUE(loop_.run_until([&] { return wa.responses && wb.responses && wd.responses; }));

  // An unknown matchtag is ENOENT and ends nothing.
  Reply r = call(loop_, a->handle(), "kvs.watch-cancel", dump_json(Json{{"matchtag", ta + 1000}}));
  EXPECT_EQ(r.errnum, ENOENT);
  r = call(loop_, b->handle(), "kvs.watch-cancel", dump_json(Json{{"matchtag", tb}}));
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  ASSERT_TRUE(loop_.run_until([&] { return wb.ended(); }));
  EXPECT_EQ(wb.end_errnum, ENODATA);
  r = call(loop_, a->handle(), "kvs.watch-cancel", dump_json(Json{{"matchtag", ta}}));
  ASSERT_EQ(r.errnum, 0) << r.errstr;
  ASSERT_TRUE(loop_.run_until([&] { return wa.ended(); }));
  EXPECT_EQ(wa.end_errnum, ENODATA);
  // Cancelling twice: the watch is gone.
  EXPECT_EQ(call(loop_, a->handle(), "kvs.watch-cancel", dump_json(Json{{"matchtag", ta}})).errnum, ENOENT);

  // d's watch (same rank as b, maybe the same matchtag) still runs.
  EXPECT_FALSE(wd.ended());
  ASSERT_EQ(kvs_commit(loop_, h(), {append_op("c.log", "1\n")}).errnum, 0);
  ASSERT_TRUE(loop_.run_until([&] { return wd.data == "0\n1\n" || wd.ended(); }));
  EXPECT_EQ(wd.data, "0\n1\n");
  r = call(loop_, d->handle(), "kvs.watch-cancel", dump_json(Json{{"matchtag", td}}));
  EXPECT_EQ(r.errnum, 0);
  ASSERT_TRUE(loop_.run_until([&] { return wd.ended(); }));
  EXPECT_EQ(wd.end_errnum, ENODATA);
}

TEST_F(KvsFourRanks, AWatcherThatDisconnectsCostsNothing) {
  const std::string key = "dc.log";
  ASSERT_EQ(kvs_commit(loop_, h(), {append_op(key, event_line(1, "start", {}))}).errnum, 0);
  std::vector<std::unique_ptr<Client>> wc;
  std::vector<Watcher> w(10);
  for (int i = 0; i < 10; ++i) {
    wc.push_back(must_connect(loop_, inst_.socket(i % 2 ? 3 : 0)));
    ASSERT_TRUE(wc.back());
    start_watch(wc.back()->handle(), {{"key", key}, {"append", true}}, w[i]);
  }
  ASSERT_TRUE(
      loop_.run_until([&] { return std::all_of(w.begin(), w.end(), [](auto& x) { return x.responses > 0; }); }));

  auto ac = must_connect(loop_, inst_.socket(1));
  ASSERT_TRUE(ac);
  Appender app(
      ac->handle(), [&](int n) { return line_ops(key, 0, n); }, 400, 4);
  // Half the watchers (on both ranks) go away a quarter of the way in,
  // abruptly, with responses for them in flight.
  bool closed = false;
  app.on_ack = [&](int n) {
    if (n == 100 && !closed) {
      for (int i = 0; i < 10; i += 2) wc[i]->close();
      for (int i = 1; i < 10; i += 4) wc[i]->close();
      closed = true;
    }
  };
  app.start();
  ASSERT_TRUE(loop_.run_until([&] { return app.done(); }, 30));
  ASSERT_EQ(app.acked(), 400) << app.first_error();
  ASSERT_TRUE(closed);
  auto final_log = kvs_value(loop_, h(), key);
  ASSERT_TRUE(final_log);
  ASSERT_TRUE(every_line_once_in_order(*final_log, 1, 400, 1));
  std::vector<int> kept = {3, 7};
  ASSERT_TRUE(loop_.run_until(
      [&] {
        return std::all_of(kept.begin(), kept.end(), [&](int i) { return w[i].data.size() >= final_log->size(); });
      },
      20));
  for (int i : kept) EXPECT_EQ(w[i].data, *final_log) << "watcher " << i;
  // A fresh watcher after all that sees the same log.
  Watcher late;
  start_watch(h(), {{"key", key}, {"append", true}}, late);
  ASSERT_TRUE(loop_.run_until([&] { return late.data.size() >= final_log->size() || late.ended(); }));
  EXPECT_EQ(late.data, *final_log);
}

TEST_F(KvsFourRanks, OverwritingAnEventlogEndsItsAppendWatchers) {
  ASSERT_EQ(kvs_commit(loop_, h(), {append_op("ow.log", "abc\n")}).errnum, 0);
  Watcher w, v;
  start_watch(h(), {{"key", "ow.log"}, {"append", true}}, w);
  start_watch(h(), {{"key", "ow.log"}}, v);
  ASSERT_TRUE(loop_.run_until([&] { return w.responses && v.responses; }));
  // A longer value that is not an append of the old one: an append
  // watcher must not be handed its tail as if it had been appended.
  ASSERT_EQ(kvs_commit(loop_, h(), {put_op("ow.log", "xyzw-new\n")}).errnum, 0);
  ASSERT_TRUE(loop_.run_until([&] { return w.ended() || w.data.size() > 4; }));
  EXPECT_EQ(w.data, "abc\n");
  EXPECT_EQ(w.end_errnum, EINVAL) << w.end_text;
  // A value watcher just sees the new value.
  ASSERT_TRUE(loop_.run_until([&] { return v.values.size() >= 2 || v.ended(); }));
  EXPECT_EQ(v.values, (std::vector<std::string>{"abc\n", "xyzw-new\n"}));
  // A put that creates the key is fine for an append watcher waiting for it.
  Watcher c;
  start_watch(h(), {{"key", "ow.new"}, {"append", true}, {"waitcreate", true}}, c);
  ASSERT_EQ(kvs_commit(loop_, h(), {put_op("ow.new", "first\n")}).errnum, 0);
  ASSERT_EQ(kvs_commit(loop_, h(), {append_op("ow.new", "second\n")}).errnum, 0);
  ASSERT_TRUE(loop_.run_until([&] { return c.data.size() >= 13 || c.ended(); }));
  EXPECT_EQ(c.data, "first\nsecond\n");
}

TEST_F(KvsFourRanks, ManyWatchersComingAndGoingDoNotAccumulateInTheBroker) {
  // Each watch request carries 64 KiB of padding (ignored by the service,
  // but kept with the watch): if disconnected watches were kept, 1000 of
  // them would hold 64 MiB.
  const std::string key = "rss.log";
  ASSERT_EQ(kvs_commit(loop_, h(), {append_op(key, "0\n")}).errnum, 0);
  std::string why;
  auto pid = inst_.broker_pid(0, &why);
  ASSERT_TRUE(pid) << why;
  const std::string pad(64 * 1024, 'p');
  // Under ASan (slow, and RSS not checked) fewer rounds still exercise it.
  constexpr int kPerRound = 25, kWarmup = 4;
  const int kRounds = sanitized() ? 8 : 44;
  std::optional<long> rss_after_warmup;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::unique_ptr<Client>> cs;
    std::vector<Watcher> w(kPerRound);
    for (int i = 0; i < kPerRound; ++i) {
      cs.push_back(must_connect(loop_, inst_.socket(i % 2 ? 3 : 0)));
      ASSERT_TRUE(cs.back());
      start_watch(cs.back()->handle(), {{"key", key}, {"append", true}, {"pad", pad}}, w[i]);
    }
    ASSERT_TRUE(loop_.run_until(
        [&] { return std::all_of(w.begin(), w.end(), [](auto& x) { return x.responses > 0 || x.ended(); }); }));
    for (auto& x : w) ASSERT_FALSE(x.ended()) << x.end_text;
    cs.clear();  // disconnect them all
    // The broker keeps serving: an append after each round is acknowledged.
    ASSERT_EQ(kvs_commit(loop_, h(), {append_op(key, std::to_string(round + 1) + "\n")}).errnum, 0);
    if (round + 1 == kWarmup) rss_after_warmup = rss_kib(*pid);
  }
  auto rss_end = rss_kib(*pid);
  ASSERT_TRUE(rss_after_warmup && rss_end);
  long grown = *rss_end - *rss_after_warmup;
  std::cout << "rank 0 RSS after warm-up " << *rss_after_warmup << " KiB, after " << kRounds * kPerRound << " watchers "
            << *rss_end << " KiB\n";
  if (sanitized()) {
    // ASan's quarantine holds freed memory: RSS says nothing here.
    std::cout << "(not checked under AddressSanitizer)\n";
  } else {
    // (kRounds - kWarmup) * kPerRound * 64 KiB = 64 MiB if they leaked.
    EXPECT_LT(grown, 16 * 1024) << "rank 0 grew by " << grown << " KiB";
  }
}

// --- 4. restart ---

Env path_env() {
  const char* p = std::getenv("PATH");
  return {{"PATH", build_dir() + "/bin:" + (p ? p : "/usr/bin:/bin")}, {"LOOM_URI", ""}};
}

TEST(KvsRestart, AValuePutInOneInstanceIsThereInTheNext) {
  TempDir tmp;
  std::string dir = tmp / "state";
  auto r = run_cmd({bin("loom"), "start", "--state-dir=" + dir, "--", "loom", "kvs", "put", "a=1"}, path_env());
  ASSERT_EQ(r.code, 0) << show(r);
  r = run_cmd({bin("loom"), "start", "--state-dir=" + dir, "--", "loom", "kvs", "get", "a"}, path_env());
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out, "1\n");
  // Control: without the state directory, nothing is kept.
  r = run_cmd({bin("loom"), "start", "--", "loom", "kvs", "get", "a"}, path_env());
  EXPECT_NE(r.code, 0) << show(r);
}

TEST(KvsRestart, EventlogsUnlinksAndNamespacesSurviveRestarts) {
  TempDir tmp;
  std::string dir = tmp / "state";
  std::vector<std::string> lines;
  for (int i = 0; i < 6; ++i) lines.push_back(event_line(100 + i, "ev" + std::to_string(i), {{"i", i}}));
  auto join = [&](size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s += lines[i];
    return s;
  };
  {
    OnStateDir on(dir);
    ASSERT_TRUE(on.ok());
    auto& [inst, loop, c] = on;
    Handle& h = c->handle();
    // Three appends in three commits, then one commit of two more ops.
    for (int i = 0; i < 3; ++i) ASSERT_EQ(kvs_commit(loop, h, {append_op("job.1.eventlog", lines[i])}).errnum, 0);
    ASSERT_EQ(kvs_commit(loop, h, {put_op("k.a", "1"), put_op("k.b", "2"), put_op("k.c.d", "3")}).errnum, 0);
    ASSERT_EQ(kvs_commit(loop, h, {unlink_op("k.a"), unlink_op("k.c"), put_op("k.b", "22")}).errnum, 0);
    ASSERT_EQ(kvs_commit(loop, h,
                         {append_op("over", "a"), append_op("over", "b"), put_op("over", "c"), append_op("over", "d")})
                  .errnum,
              0);
    ASSERT_EQ(call(loop, h, "kvs.namespace-create", R"({"name":"g5000","owner":5000})").errnum, 0);
    ASSERT_EQ(call(loop, h, "kvs.namespace-create", R"({"name":"gone","owner":5001})").errnum, 0);
    ASSERT_EQ(kvs_commit(loop, h, {put_op("x", "1")}, "gone").errnum, 0);
    ASSERT_EQ(call(loop, h, "kvs.namespace-remove", R"({"name":"gone"})").errnum, 0);
    AsUser u(loop, inst.socket(0), 5000);
    ASSERT_TRUE(u.client);
    ASSERT_EQ(kvs_commit(loop, u.h(), {append_op("output", lines[0]), put_op("a", "guest")}, "g5000").errnum, 0);
    c.reset();
    u.client.reset();
    ASSERT_EQ(inst.stop(), 0);
  }
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE("restart " + std::to_string(pass + 1));
    OnStateDir on(dir);
    ASSERT_TRUE(on.ok());
    auto& [inst, loop, c] = on;
    Handle& h = c->handle();
    size_t expect = pass == 0 ? 3 : 6;
    EXPECT_EQ(kvs_value(loop, h, "job.1.eventlog"), join(expect));
    EXPECT_EQ(kvs_lookup(loop, h, "k.a").errnum, ENOENT);
    EXPECT_EQ(kvs_lookup(loop, h, "k.c.d").errnum, ENOENT);
    EXPECT_EQ(kvs_value(loop, h, "k.b"), "22");
    EXPECT_EQ(kvs_value(loop, h, "over"), pass == 0 ? "cd" : "cde");
    // A watcher from the start sees the whole eventlog, and appends after
    // the restart follow it (no segment written over).
    Watcher w;
    start_watch(h, {{"key", "job.1.eventlog"}, {"append", true}}, w);
    ASSERT_TRUE(loop.run_until([&] { return w.data.size() >= join(expect).size() || w.ended(); }));
    EXPECT_EQ(w.data, join(expect));
    if (pass == 0) {
      for (int i = 3; i < 6; ++i) ASSERT_EQ(kvs_commit(loop, h, {append_op("job.1.eventlog", lines[i])}).errnum, 0);
      ASSERT_EQ(kvs_commit(loop, h, {append_op("over", "e")}).errnum, 0);
      ASSERT_TRUE(loop.run_until([&] { return w.data.size() >= join(6).size() || w.ended(); }));
      EXPECT_EQ(w.data, join(6));
    }
    // Namespaces with their owners and keys; the removed one stays removed.
    Reply r = call(loop, h, "kvs.namespace-list");
    std::map<std::string, uint32_t> owners;
    for (auto& n : r.json().value("namespaces", Json::array())) owners[n["name"]] = n["owner"].get<uint32_t>();
    EXPECT_EQ(owners, (std::map<std::string, uint32_t>{{"g5000", 5000}, {"primary", ::getuid()}}));
    AsUser u5000(loop, inst.socket(0), 5000), u5001(loop, inst.socket(0), 5001);
    ASSERT_TRUE(u5000.client && u5001.client);
    EXPECT_EQ(kvs_value(loop, u5000.h(), "output", "g5000"), lines[0]);
    EXPECT_EQ(kvs_value(loop, u5000.h(), "a", "g5000"), "guest");
    EXPECT_EQ(kvs_lookup(loop, u5001.h(), "a", "g5000").errnum, EPERM);
    EXPECT_EQ(kvs_lookup(loop, u5000.h(), "k.b").errnum, EPERM);
    EXPECT_EQ(kvs_lookup(loop, h, "x", "gone").errnum, ENOENT);
    c.reset();
    EXPECT_EQ(inst.stop(), 0);
  }
}

// One commit of many keys (more than the flush's short list of counts,
// so its index is used, with an unlink in the middle): each
// key's appended segments are numbered in order, and read back whole
// after a restart, the unlinked ones from where they began again.
TEST(KvsRestart, ALongCommitNumbersEveryKeysSegments) {
  TempDir tmp;
  std::string dir = tmp / "state";
  constexpr int kKeys = 40;
  std::map<std::string, std::string> want;
  {
    OnStateDir on(dir);
    ASSERT_TRUE(on.ok());
    auto& [inst, loop, c] = on;
    Handle& h = c->handle();
    // A key appended to before this commit: its count comes from memory.
    ASSERT_EQ(kvs_commit(loop, h, {append_op("d.k0", "0")}).errnum, 0);
    want["d.k0"] = "0";
    std::vector<Json> ops;
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < kKeys; ++i) {
        std::string key = "d.k" + std::to_string(i), v = std::to_string(round) + "." + std::to_string(i) + ";";
        ops.push_back(append_op(key, v));
        want[key] += v;
      }
      if (round == 0) {
        // Everything under d.k1 and d.k2x goes; d.k1's later appends start
        // a new value. (d.k10 to d.k19 are not under d.k1: a key's children
        // are under "d.k1.".)
        ops.push_back(append_op("d.k1.sub", "s"));
        ops.push_back(unlink_op("d.k1"));
        want.erase("d.k1");
      }
    }
    ASSERT_EQ(kvs_commit(loop, h, ops).errnum, 0);
    for (const auto& [k, v] : want) EXPECT_EQ(kvs_value(loop, h, k), v) << k;
    EXPECT_EQ(kvs_lookup(loop, h, "d.k1.sub").errnum, ENOENT);
    c.reset();
    ASSERT_EQ(inst.stop(), 0);
  }
  // Twice: the first start reads the journal, the second what it was
  // folded into (segments by their numbers).
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE("restart " + std::to_string(pass + 1));
    OnStateDir on(dir);
    ASSERT_TRUE(on.ok());
    auto& [inst, loop, c] = on;
    for (const auto& [k, v] : want) EXPECT_EQ(kvs_value(loop, c->handle(), k), v) << k;
    EXPECT_EQ(kvs_value(loop, c->handle(), "d.k1"), "1.1;");
    EXPECT_EQ(kvs_lookup(loop, c->handle(), "d.k1.sub").errnum, ENOENT);
    c.reset();
    EXPECT_EQ(inst.stop(), 0);
  }
}

TEST(KvsRestart, ACommitBehindANamespaceRemoveInOneTurnDoesNotComeBack) {
  TempDir tmp;
  std::string dir = tmp / "state";
  {
    OnStateDir on(dir);
    ASSERT_TRUE(on.ok());
    auto& [inst, loop, c] = on;
    ASSERT_EQ(call(loop, c->handle(), "kvs.namespace-create", R"({"name":"gx","owner":5000})").errnum, 0);
    ASSERT_EQ(kvs_commit(loop, c->handle(), {put_op("old", "1")}, "gx").errnum, 0);
    // Remove, then write into it, in one turn: the write must not survive
    // in the store, to reappear in a namespace of the same name later.
    Pipelined p;
    p.send(c->handle(), "kvs.namespace-remove", {{"name", "gx"}});
    p.send(c->handle(), "kvs.commit", {{"namespace", "gx"}, {"ops", Json::array({put_op("ghost", "boo")})}});
    ASSERT_TRUE(p.wait(loop));
    EXPECT_EQ(p[0].errnum, 0);
    EXPECT_EQ(p[1].errnum, ENOENT) << "a commit into a removed namespace was acknowledged";
    ASSERT_EQ(call(loop, c->handle(), "kvs.namespace-create", R"({"name":"gx","owner":5001})").errnum, 0);
    EXPECT_EQ(kvs_lookup(loop, c->handle(), "ghost", "gx").errnum, ENOENT);
    EXPECT_EQ(kvs_lookup(loop, c->handle(), "old", "gx").errnum, ENOENT);
    c.reset();
    ASSERT_EQ(inst.stop(), 0);
  }
  OnStateDir on(dir);
  ASSERT_TRUE(on.ok());
  auto& [inst, loop, c] = on;
  EXPECT_EQ(kvs_lookup(loop, c->handle(), "ghost", "gx").errnum, ENOENT);
  EXPECT_EQ(kvs_lookup(loop, c->handle(), "old", "gx").errnum, ENOENT);
  EXPECT_EQ(dir_of(loop, c->handle(), ".", "gx"), Json::array());
}

// A store made by loom, then changed with SQLite directly.
void sql(const std::string& db_path, const std::string& statements) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, statements.c_str(), nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
  ASSERT_EQ(rc, SQLITE_OK) << msg;
}

TEST(KvsRestart, StateDirectoriesThatAreNotLoomsAreRefusedAndLeftAlone) {
  TempDir tmp;
  std::mt19937 rng(20240917);
  std::string random_bytes(16384, '\0');
  for (auto& ch : random_bytes) ch = static_cast<char>(rng());

  struct Case {
    std::string name;
    std::function<void(const std::string& dir)> make;
  };
  std::vector<Case> cases = {
      {"not-empty",
       [](const std::string& d) {
         std::filesystem::create_directories(d);
         write_file(d + "/notes.txt", "my thesis\n");
       }},
      {"random-bytes",
       [&](const std::string& d) {
         std::filesystem::create_directories(d);
         write_file(d + "/loom.db", random_bytes);
       }},
      {"foreign-sqlite",
       [](const std::string& d) {
         std::filesystem::create_directories(d);
         sql(d + "/loom.db", "CREATE TABLE people(name TEXT, age INTEGER); INSERT INTO people VALUES('ada', 36);");
       }},
      {"foreign-meta",
       [](const std::string& d) {
         std::filesystem::create_directories(d);
         sql(d + "/loom.db",
             "CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT); INSERT INTO meta VALUES('format','other');");
       }},
      {"version-99",
       [](const std::string& d) {
         auto r = run_cmd({bin("loom"), "start", "--state-dir=" + d, "--", "loom", "kvs", "put", "a=1"}, path_env());
         ASSERT_EQ(r.code, 0) << show(r);
         sql(d + "/loom.db", "UPDATE meta SET v='99' WHERE k='version';");
       }},
      {"a-file", [](const std::string& d) { write_file(d, "not a directory\n"); }},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string dir = tmp / ("state-" + c.name);
    c.make(dir);
    if (::testing::Test::HasFatalFailure()) return;
    auto before = snapshot_dir(dir);
    auto before_file = c.name == "a-file" ? snapshot_dir(tmp.path()) : before;
    auto r = run_cmd({bin("loom"), "start", "--state-dir=" + dir, "--", "loom", "kvs", "put", "b=2"}, path_env(), 30);
    EXPECT_NE(r.code, 0) << show(r);
    EXPECT_FALSE(r.timed_out);
    std::vector<std::string> loomd_lines;
    for (auto& l : r.err_lines()) {
      if (l.starts_with("loomd")) loomd_lines.push_back(l);
    }
    ASSERT_EQ(loomd_lines.size(), 1u) << show(r);
    EXPECT_NE(loomd_lines[0].find(dir), std::string::npos) << loomd_lines[0];
    EXPECT_EQ(r.out, "");
    if (c.name == "a-file") {
      EXPECT_TRUE(snapshot_dir(tmp.path()) == before_file) << "the state file was changed";
    } else {
      EXPECT_TRUE(snapshot_dir(dir) == before) << "the state directory was changed";
      EXPECT_EQ(snapshot_dir(dir).size(), before.size());
    }
  }
  // Control: a store of this version opens (the version-99 one, put back).
  std::string dir = tmp / "state-version-99";
  sql(dir + "/loom.db", "UPDATE meta SET v='1' WHERE k='version';");
  auto r = run_cmd({bin("loom"), "start", "--state-dir=" + dir, "--", "loom", "kvs", "get", "a"}, path_env());
  EXPECT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out, "1\n");
}

}  // namespace
}  // namespace loom::test
