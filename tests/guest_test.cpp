// Guest rules (docs/security.md; the access column of docs/protocols/jobs.md and
// exec.md): a real second user, created here with useradd, connects to an
// instance started by root and walks every job-related method against the
// owner's jobs (EPERM, never ENOENT) and against their own (allowed); the
// methods only the instance's own services call are refused outright;
// test execution and the owner's system attributes are refused at submit;
// an oversize jobspec is refused for everyone and nothing is stored.
//
// Needs root (useradd, and a client running as the user); skipped otherwise.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kit/as_user.h"
#include "kit/client.h"
#include "kit/instance.h"
#include "kit/jobs.h"
#include "kit/users.h"

namespace loom::test {
namespace {

// A jobspec running `cmd` on one core, with `system` added to its
// attributes.system.
Json jobspec(std::vector<std::string> cmd, Json system = Json::object()) {
  system["duration"] = 0;
  system["cwd"] = "/";
  return Json{{"version", 1},
              {"resources", Json::array({{{"type", "slot"},
                                          {"count", 1},
                                          {"label", "task"},
                                          {"with", Json::array({{{"type", "core"}, {"count", 1}}})}}})},
              {"tasks", Json::array({{{"command", cmd}, {"slot", "task"}, {"count", {{"per_slot", 1}}}}})},
              {"attributes", {{"system", system}}}};
}

// A reply as the child reports it: errnum, errstr and the payload.
Json report(const Reply& r) { return Json{{"errnum", r.errnum}, {"errstr", r.errstr}, {"payload", r.json()}}; }

// The first error (or ENODATA) of a streaming request, with the number of
// responses before it.
Json stream(Loop& loop, Client& c, const std::string& topic, const Json& payload) {
  int errnum = ETIMEDOUT;
  std::string errstr;
  int responses = 0;
  bool done = false;
  uint32_t tag = c.handle().rpc(topic, payload, RpcOptions{.streaming = true}, [&](const Message& m) {
    if (m.errnum) {
      errnum = m.errnum;
      errstr = error_text(m);
      done = true;
      return;
    }
    ++responses;
  });
  if (!loop.run_until([&] { return done; }, 20)) c.handle().cancel_rpc(tag);
  return Json{{"errnum", errnum}, {"errstr", errstr}, {"responses", responses}};
}

bool loomd_knows(const std::string& option) {
  auto r = run_cmd({bin("loomd"), "--help"});
  return r.out.find(option) != std::string::npos;
}

class Guest : public JobsFixture {
 protected:
  void SetUp() override {
    if (auto why = TestUsers::unavailable(); !why.empty()) GTEST_SKIP() << why;
    users_ = std::make_unique<TestUsers>();
    ASSERT_TRUE(users_->add("g", &user_));
  }

  // An instance whose sockets the user may reach (the default run
  // directory is private to the owner).
  void start(std::vector<std::string> extra = {}) {
    char tmpl[] = "/tmp/loom-guest-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
    extra.push_back("--rundir=" + dir_ + "/run");
    extra.push_back("--cores-per-rank=4");
    ASSERT_TRUE(inst.start(2, extra));
    for (uint32_t r = 0; r < 2; ++r) ASSERT_EQ(::chmod(inst.socket(r).c_str(), 0666), 0);
  }

  void TearDown() override {
    JobsFixture::TearDown();
    if (inst.running()) {
      EXPECT_EQ(inst.stop(30), std::optional<int>(0));
    }
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  // Runs `fn` as the user, with a client of rank 0.
  Json as_guest(const std::function<Json(Loop&, Client&)>& fn) {
    std::string sock = inst.socket(0);
    Json out = run_as(loop_, user_.uid, user_.gid, [&] {
      Loop loop;
      auto c = loop.connect(sock);
      if (!c.ok()) return Json{{"connect", c.error().text}};
      return fn(loop, **c);
    });
    EXPECT_TRUE(out.is_object()) << out.dump();
    EXPECT_FALSE(out.is_object() && out.contains("connect")) << out.dump();
    return out.is_object() ? out : Json::object();
  }

  // The user submits `spec`; the reply.
  Json guest_submit(const Json& spec, int urgency = 16) {
    return as_guest([&](Loop& loop, Client& c) {
      return report(call(loop, c, "job-manager.submit", dump_json(Json{{"jobspec", spec}, {"urgency", urgency}})));
    });
  }
  std::string guest_job(const Json& spec, int urgency = 16) {
    Json r = guest_submit(spec, urgency);
    EXPECT_EQ(r.value("errnum", -1), 0) << r.dump();
    if (r.value("errnum", -1) != 0) return "";
    return encode_f58(JobId{r["payload"]["ids"][0].get<uint64_t>()});
  }

  // The job as the owner lists it among every user's jobs.
  Json any_job(const std::string& id) {
    auto r = loom({"jobs", "-A", "-a", "--json"});
    auto j = parse_json(r.out);
    uint64_t want = parse_jobid(id).value().value();
    if (j.ok()) {
      for (auto& x : *j) {
        if (x["id"].get<uint64_t>() == want) return x;
      }
    }
    ADD_FAILURE() << "job " << id << " is not listed: " << r.out;
    return Json::object();
  }

  std::unique_ptr<TestUsers> users_;
  TestUser user_;
  std::string dir_;
  Loop loop_;
};

TEST_F(Guest, TouchesOnlyTheirOwnJobs) {
  start();
  // The owner's jobs: running, held (pending), finished.
  std::string o_run = submit_job({"--setattr=exec.test.run_duration=600", "true"});
  std::string o_held = submit_job({"--urgency=0", "true"});
  std::string o_done = submit_job({"--setattr=exec.test.run_duration=0", "true"});
  wait_event(o_run, "start");
  wait_event(o_held, "priority");
  wait_event(o_done, "clean");
  // The user's own: the same three (real execution).
  std::string g_run = guest_job(jobspec({"sleep", "600"}));
  std::string g_held = guest_job(jobspec({"true"}), 0);
  std::string g_done = guest_job(jobspec({"echo", "hi"}));
  ASSERT_FALSE(g_run.empty() || g_held.empty() || g_done.empty());
  wait_event(g_run, "start");
  wait_event(g_held, "priority");
  wait_event(g_done, "clean");

  // Every method that names a job, against the owner's job and the user's.
  struct Case {
    std::string name, topic;
    Json payload;  // "ID" stands for the job
    std::string theirs, mine;
    bool streaming = false;
  };
  std::vector<Case> cases = {
      {"raise",
       "job-manager.raise",
       {{"id", "ID"}, {"severity", 1}, {"type", "test"}, {"note", "guest"}},
       o_run,
       g_run},
      {"urgency", "job-manager.urgency", {{"id", "ID"}, {"urgency", 0}}, o_held, g_held},
      {"kill", "job-manager.kill", {{"id", "ID"}, {"signal", SIGCONT}}, o_run, g_run},
      {"lookup", "job-info.lookup", {{"id", "ID"}, {"keys", {"jobspec", "R", "eventlog"}}}, o_run, g_run},
      {"lookup-guest",
       "job-info.lookup",
       {{"id", "ID"}, {"keys", {"guest.output", "guest.exec.eventlog"}}},
       o_done,
       g_done},
      {"wait", "job-manager.wait", {{"id", "ID"}}, o_done, g_done},
      {"eventlog", "job-info.eventlog", {{"id", "ID"}}, o_run, g_run, true},
      {"eventlog-follow", "job-info.eventlog", {{"id", "ID"}, {"follow", true}}, o_done, g_done, true},
  };
  auto with_id = [](Json p, const std::string& id) {
    p["id"] = id;
    return p;
  };
  uint64_t o_run_dec = parse_jobid(o_run).value().value();
  std::string g_run_ns = "job-" + std::to_string(parse_jobid(g_run).value().value());
  uint32_t me = user_.uid;
  Json out = as_guest([&](Loop& loop, Client& c) {
    Json res = Json::object();
    for (auto& k : cases) {
      for (auto [side, id] : {std::pair{"theirs", k.theirs}, std::pair{"mine", k.mine}}) {
        Json p = with_id(k.payload, id);
        res[k.name][side] = k.streaming ? stream(loop, c, k.topic, p) : report(call(loop, c, k.topic, dump_json(p)));
      }
    }
    // Cancel answers per job, each error with its errno.
    res["cancel"]["theirs"] = report(call(loop, c, "job-manager.cancel", dump_json(Json{{"ids", {o_held}}})));
    res["cancel"]["mine"] = report(call(loop, c, "job-manager.cancel", dump_json(Json{{"ids", {g_held}}})));
    // Listing: only their own, whatever they ask for.
    res["list"] = report(call(loop, c, "job-manager.list", R"({"userid":0})"));
    res["list-all"] = report(call(loop, c, "job-manager.list", "{}"));
    // The primary KVS (every job's data) is the owner's; their job's own
    // namespace is theirs.
    std::string key = "job." + std::to_string(o_run_dec) + ".jobspec";
    res["kvs-lookup"] = report(call(loop, c, "kvs.lookup", dump_json(Json{{"key", key}})));
    res["kvs-commit"] = report(call(
        loop, c, "kvs.commit", dump_json(Json{{"ops", {{{"op", "put"}, {"key", "guest.was.here"}, {"value", "x"}}}}})));
    res["kvs-watch"] = stream(loop, c, "kvs.watch", Json{{"key", key}});
    res["kvs-own-ns"] = report(call(loop, c, "kvs.lookup", dump_json(Json{{"namespace", g_run_ns}, {"key", "."}})));
    res["kvs-ns-list"] = report(call(loop, c, "kvs.namespace-list", "{}"));
    return res;
  });
  ASSERT_FALSE(out.empty());
  for (auto& k : cases) {
    SCOPED_TRACE(k.name);
    const Json& theirs = out[k.name]["theirs"];
    const Json& mine = out[k.name]["mine"];
    EXPECT_EQ(theirs["errnum"], EPERM) << theirs.dump();
    EXPECT_NE(theirs["errstr"].get<std::string>().find("belongs to another user"), std::string::npos) << theirs.dump();
    if (k.streaming) {
      EXPECT_EQ(theirs["responses"], 0) << theirs.dump();
      EXPECT_EQ(mine["errnum"], ENODATA) << mine.dump();
      EXPECT_GT(mine["responses"].get<int>(), 0) << mine.dump();
    } else {
      EXPECT_EQ(mine["errnum"], 0) << mine.dump();
    }
  }
  EXPECT_NE(out["lookup-guest"]["mine"]["payload"].value("guest.output", "").find("hi"), std::string::npos)
      << out["lookup-guest"].dump();
  // Cancel.
  const Json& ct = out["cancel"]["theirs"];
  EXPECT_EQ(ct["payload"]["canceled"], Json::array()) << ct.dump();
  ASSERT_EQ(ct["payload"]["errors"].size(), 1u) << ct.dump();
  EXPECT_EQ(ct["payload"]["errors"][0]["errnum"], EPERM) << ct.dump();
  EXPECT_EQ(out["cancel"]["mine"]["payload"]["canceled"].size(), 1u) << out["cancel"].dump();
  // Listing.
  for (const char* l : {"list", "list-all"}) {
    const Json& jobs = out[l]["payload"]["jobs"];
    EXPECT_EQ(jobs.size(), 3u) << out[l].dump();
    for (auto& j : jobs) EXPECT_EQ(j["userid"], me) << out[l].dump();
  }
  // The KVS.
  EXPECT_EQ(out["kvs-lookup"]["errnum"], EPERM) << out["kvs-lookup"].dump();
  EXPECT_EQ(out["kvs-commit"]["errnum"], EPERM) << out["kvs-commit"].dump();
  EXPECT_EQ(out["kvs-watch"]["errnum"], EPERM) << out["kvs-watch"].dump();
  EXPECT_EQ(out["kvs-own-ns"]["errnum"], 0) << out["kvs-own-ns"].dump();
  const Json& nss = out["kvs-ns-list"]["payload"]["namespaces"];
  ASSERT_EQ(nss.size(), 1u) << out["kvs-ns-list"].dump();
  EXPECT_EQ(nss[0]["name"], g_run_ns);

  // The owner's jobs are as they were: no exception, no urgency change.
  EXPECT_EQ(state(o_run), "RUN");
  EXPECT_EQ(state(o_held), "SCHED");
  EXPECT_EQ(job(o_held).value("urgency", -1), 0);
  for (auto& e : events(o_run)) EXPECT_NE(e, "exception") << o_run;
  // The user's own changes took effect.
  EXPECT_EQ(any_job(g_held).value("result", ""), "CANCELED");
  bool raised = false;
  for (auto& e : eventlog(g_run)) raised |= e["name"] == "exception" && e["context"]["note"] == "guest";
  EXPECT_TRUE(raised);
}

TEST_F(Guest, MayNotCallWhatOnlyTheInstanceCalls) {
  start();
  std::string o_run = submit_job({"--setattr=exec.test.run_duration=600", "true"});
  wait_event(o_run, "start");
  Json id = parse_jobid(o_run).value().value();
  std::string exec_name = std::to_string(user_.uid) + "-exec";
  // Each with a payload that would be obeyed from the owner.
  std::vector<std::pair<std::string, Json>> owner_only = {
      {"job-manager.exec-hello", {{"service", exec_name}}},
      {"job-manager.sched-hello", Json::object()},
      {"job-manager.sched-ready", {{"mode", "unlimited"}}},
      {"job-manager.purge", {{"num_limit", 0}}},
      {"job-manager.queue-control", {{"action", "stop"}}},
      {"job-manager.queue-drain", Json::object()},
      {"sched.alloc", {{"id", id}, {"priority", 16}, {"userid", 0}, {"t_submit", 0}, {"jobspec", jobspec({"true"})}}},
      {"sched.cancel", {{"id", id}}},
      {"sched.prioritize", {{"jobs", {{id, 0}}}}},
      {"sched.free", {{"id", id}, {"R", Json::object()}, {"final", true}}},
      {"sched.drain", {{"ranks", "0-1"}, {"reason", "guest"}}},
      {"sched.undrain", {{"ranks", "0-1"}}},
      {"job-exec.start", {{"id", id}, {"R", Json::object()}, {"jobspec", jobspec({"true"})}}},
      {"job-exec.kill", {{"id", id}, {"signal", 9}}},
      {"job-exec.override", {{"id", id}, {"event", "finish"}, {"status", 0}}},
      {"shell.launch", {{"id", id}}},
      {"shell.kill", {{"id", id}, {"signal", 9}}},
      {"shell.reattach", {{"id", id}}},
      {"kvs.namespace-create", {{"name", "guest-ns"}}},
      {"kvs.namespace-remove", {{"name", "job-" + std::to_string(id.get<uint64_t>())}}},
      {"kvs.namespace-link", {{"namespace", "guest-ns"}, {"key", "x"}}},
  };
  Json out = as_guest([&](Loop& loop, Client& c) {
    Json res = Json::object();
    // A service of their own is theirs to register; it cannot become the
    // execution service.
    res["service.add"] = report(call(loop, c, "service.add", dump_json(Json{{"service", exec_name}})));
    for (auto& [topic, p] : owner_only) {
      for (uint32_t rank : {0u, 1u}) {
        if (rank == 1 && !topic.starts_with("shell.")) continue;  // the shell launcher serves every rank
        res[topic + "@" + std::to_string(rank)] = report(call(loop, c, topic, dump_json(p), {rank, false, 0}));
      }
    }
    return res;
  });
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out["service.add"]["errnum"], 0) << out["service.add"].dump();
  for (auto& [k, v] : out.items()) {
    if (k == "service.add") continue;
    EXPECT_EQ(v["errnum"], EPERM) << k << ": " << v.dump();
    EXPECT_NE(v["errstr"].get<std::string>().find("restricted to the instance owner"), std::string::npos)
        << k << ": " << v.dump();
  }
  // Nothing moved: the job runs, the queue is started, nothing is drained.
  EXPECT_EQ(state(o_run), "RUN");
  auto q = loom({"queue", "status"});
  EXPECT_EQ(q.out.find("stopped"), std::string::npos) << q.out;
  EXPECT_EQ(resources()["drained"].value("ranks", ""), "");
  // The owner's next job still runs through job-exec.
  auto run = loom({"run", "--setattr=exec.test.run_duration=0", "true"});
  EXPECT_EQ(run.code, 0) << show(run);
}

TEST_F(Guest, SubmitRefusesTheOwnersAttributes) {
  start();
  struct Case {
    const char* name;
    Json system;
    const char* says;
  };
  std::vector<Case> refused = {
      {"test", {{"exec", {{"test", {{"run_duration", 0}}}}}}, "exec.allow-guest-test"},
      {"exec-other", {{"exec", {{"bulkexec", true}}}}, "attributes.system.exec.bulkexec"},
      {"exec-scalar", {{"exec", 1}}, "attributes.system.exec"},
      {"unknown", {{"queue", "batch"}}, "attributes.system.queue"},
  };
  Json out = as_guest([&](Loop& loop, Client& c) {
    Json res = Json::object();
    for (auto& k : refused) {
      res[k.name] =
          report(call(loop, c, "job-manager.submit", dump_json(Json{{"jobspec", jobspec({"true"}, k.system)}})));
    }
    // In a batch, nothing of it is kept.
    res["batch"] = report(call(loop, c, "job-manager.submit",
                               dump_json(Json{{"jobs",
                                               {{{"jobspec", jobspec({"true"}, {{"job", {{"name", "fine"}}}})}},
                                                {{"jobspec", jobspec({"true"}, refused[0].system)}}}}})));
    return res;
  });
  ASSERT_FALSE(out.empty());
  for (auto& k : refused) {
    // A key loom does not read is refused for everyone (EINVAL).
    EXPECT_EQ(out[k.name]["errnum"], k.name == std::string("unknown") ? EINVAL : EPERM)
        << k.name << ": " << out[k.name].dump();
    EXPECT_NE(out[k.name]["errstr"].get<std::string>().find(k.says), std::string::npos) << out[k.name].dump();
  }
  EXPECT_EQ(out["batch"]["errnum"], EPERM) << out["batch"].dump();
  EXPECT_NE(out["batch"]["errstr"].get<std::string>().find("job 2: "), std::string::npos) << out["batch"].dump();
  auto ls = loom({"jobs", "-A", "-a", "--json"});
  EXPECT_EQ(trim(ls.out), "[]") << "a refused job was created: " << ls.out;
  // The owner sets them all but the unknown one, refused for everyone.
  auto r = loom({"submit", "--setattr=exec.test.run_duration=0", "true"});
  EXPECT_EQ(r.code, 0) << show(r);
  r = loom({"submit", "--setattr=queue=batch", "--setattr=exec.test.run_duration=0", "true"});
  EXPECT_NE(r.code, 0) << show(r);
  EXPECT_NE(r.err.find("attributes.system.queue"), std::string::npos) << show(r);
}

TEST_F(Guest, DependsOnlyOnTheirOwnJobs) {
  start();
  std::string owners = submit_job({"--urgency=0", "true"});
  Json deps = Json::array({{{"scheme", "afterany"}, {"value", owners}}});
  Json r = guest_submit(jobspec({"true"}, {{"dependencies", deps}}));
  EXPECT_EQ(r["errnum"], EPERM) << r.dump();
  EXPECT_NE(r["errstr"].get<std::string>().find("job " + owners + " belongs to another user"), std::string::npos)
      << r.dump();
  // On their own job, a user's dependency is taken (and waits).
  std::string own = guest_job(jobspec({"true"}), 0);
  ASSERT_FALSE(own.empty());
  std::string waits = guest_job(jobspec({"true"}, {{"dependencies", {{{"scheme", "afterany"}, {"value", own}}}}}));
  ASSERT_FALSE(waits.empty());
  wait_event(waits, "dependency-add");
  EXPECT_EQ(any_job(waits).value("state", ""), "DEPEND");
}

TEST_F(Guest, TestExecutionWhenTheOwnerAllowsIt) {
  if (!loomd_knows("--exec-allow-guest-test")) {
    GTEST_SKIP() << "exec.allow-guest-test does not reach loomd yet (loom start / loomd wiring)";
  }
  start({"--setconf=exec.allow-guest-test=true"});
  Json r = guest_submit(jobspec({"true"}, {{"exec", {{"test", {{"run_duration", 0}}}}}}));
  ASSERT_EQ(r["errnum"], 0) << r.dump();
  std::string id = encode_f58(JobId{r["payload"]["ids"][0].get<uint64_t>()});
  wait_event(id, "clean");
  EXPECT_EQ(any_job(id).value("result", ""), "COMPLETED");
  // Other exec attributes stay the owner's.
  r = guest_submit(jobspec({"true"}, {{"exec", {{"test", Json::object()}, {"bulkexec", true}}}}));
  EXPECT_EQ(r["errnum"], EPERM) << r.dump();
}

// Job counts and the job directories the KVS holds.
struct Stored {
  size_t listed = 0;
  Json kvs_jobs;
};

class JobspecSize : public JobsFixture {
 protected:
  Stored stored() {
    Stored s;
    auto ls = loom({"jobs", "-A", "-a", "--json"});
    auto j = parse_json(ls.out);
    s.listed = j.ok() ? j->size() : 0;
    auto k = loom({"kvs", "ls", "job"});
    s.kvs_jobs = Json(k.out);
    return s;
  }
  // The owner submits a jobspec padded (in attributes.user) to `bytes`.
  Reply submit_padded(Loop& loop, Client& c, size_t bytes) {
    Json spec = jobspec({"true"}, {{"exec", {{"test", {{"run_duration", 0}}}}}});
    spec["attributes"]["user"] = {{"pad", ""}};
    size_t base = dump_json(spec).size();
    spec["attributes"]["user"]["pad"] = std::string(bytes > base ? bytes - base : 0, 'x');
    return call(loop, c, "job-manager.submit", dump_json(Json{{"jobspec", spec}}));
  }
};

TEST_F(JobspecSize, OverTheLimitIsRefusedForEveryoneAndNothingIsStored) {
  ASSERT_TRUE(inst.start(1));
  Loop loop;
  auto c = loop.connect(inst.socket(0));
  ASSERT_TRUE(c.ok()) << c.error().text;
  // Exactly at the default limit: accepted.
  Reply at = submit_padded(loop, **c, size_t{1} << 20);
  EXPECT_EQ(at.errnum, 0) << at.errstr;
  Stored before = stored();
  // One byte over (2 MiB, and text given as a string): refused, one line.
  for (size_t bytes : {(size_t{1} << 20) + 1, size_t{2} << 20}) {
    Reply r = submit_padded(loop, **c, bytes);
    EXPECT_EQ(r.errnum, EFBIG) << bytes << ": " << r.errstr;
    EXPECT_NE(r.errstr.find("job-manager.jobspec-size-limit"), std::string::npos) << r.errstr;
    EXPECT_EQ(r.errstr.find('\n'), std::string::npos) << r.errstr;
  }
  Json big = jobspec({"true"});
  big["attributes"]["user"] = {{"pad", std::string(size_t{2} << 20, 'y')}};
  Reply text = call(loop, **c, "job-manager.submit", dump_json(Json{{"jobspec", dump_json(big)}}));
  EXPECT_EQ(text.errnum, EFBIG) << text.errstr;
  // Through the command line, from a submitter whose environment (which
  // the job gets) is 1.2 MiB: one line.
  Env fat;
  for (int i = 0; i < 12; ++i) fat.emplace_back("LOOM_TEST_PAD" + std::to_string(i), std::string(100 << 10, 'z'));
  auto cli = loom({"submit", "true"}, fat);
  EXPECT_EQ(cli.code, 1) << cli.err.substr(0, 300);
  EXPECT_EQ(cli.err_lines().size(), 1u) << cli.err.substr(0, 300);
  EXPECT_NE(cli.err.find("over the limit"), std::string::npos) << cli.err.substr(0, 300);
  Stored after = stored();
  EXPECT_EQ(after.listed, before.listed);
  EXPECT_EQ(after.kvs_jobs, before.kvs_jobs);
}

TEST_F(JobspecSize, TheLimitIsConfigurable) {
  if (!loomd_knows("--jobspec-size-limit")) {
    GTEST_SKIP() << "job-manager.jobspec-size-limit does not reach loomd yet (loom start / loomd wiring)";
  }
  ASSERT_TRUE(inst.start(1, {"--setconf=job-manager.jobspec-size-limit=4096"}));
  Loop loop;
  auto c = loop.connect(inst.socket(0));
  ASSERT_TRUE(c.ok()) << c.error().text;
  EXPECT_EQ(submit_padded(loop, **c, 4096).errnum, 0);
  Reply r = submit_padded(loop, **c, 4097);
  EXPECT_EQ(r.errnum, EFBIG) << r.errstr;
  // A limit the frame could not carry is refused when the instance starts.
  Instance bad;
  EXPECT_FALSE(bad.start(1, {"--setconf=job-manager.jobspec-size-limit=67108864"}, 10));
}

}  // namespace
}  // namespace loom::test
