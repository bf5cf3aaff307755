// A test fixture for jobs on a real instance, driven through the `loom`
// command line as users drive it: submit, wait for eventlog entries, read
// eventlogs, job listings and resources. TearDown checks the scheduler's
// double-booking alarm never fired.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/fluid.h"
#include "kit/instance.h"
#include "msg/json.h"

namespace loom::test {

inline std::string show(const CmdResult& r) {
  return "exit " + std::to_string(r.code) + (r.timed_out ? " (timed out)" : "") + "\nstdout: " + r.out +
         "\nstderr: " + r.err;
}

inline std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

using Names = std::vector<std::string>;

class JobsFixture : public ::testing::Test {
 protected:
  Instance inst;

  CmdResult loom(const std::vector<std::string>& args, const Env& env = {}) { return inst.loom(args, env); }

  // `loom submit ARGS...`; returns the printed id.
  std::string submit_job(std::vector<std::string> args) {
    args.insert(args.begin(), "submit");
    auto r = loom(args);
    EXPECT_EQ(r.code, 0) << show(r);
    auto id = parse_jobid(trim(r.out));
    EXPECT_TRUE(id.ok()) << "not a job id: " << r.out;
    return trim(r.out);
  }

  void wait_event(const std::string& id, const std::string& event) {
    auto r = loom({"job", "wait-event", "-t", "20", id, event});
    ASSERT_EQ(r.code, 0) << "waiting for " << event << " of " << id << ": " << show(r);
  }

  // The job's eventlog entries, {timestamp, name, context} each; `path`
  // exec or output for those eventlogs of the job.
  std::vector<Json> eventlog(const std::string& id, const std::string& path = "eventlog") {
    auto r = loom({"job", "eventlog", "--json", "--path=" + path, id});
    EXPECT_EQ(r.code, 0) << show(r);
    std::vector<Json> out;
    for (auto& line : r.out_lines()) {
      auto j = parse_json(line);
      if (j.ok()) out.push_back(std::move(*j));
    }
    return out;
  }

  Names events(const std::string& id) {
    Names names;
    for (auto& e : eventlog(id)) names.push_back(e["name"].get<std::string>());
    return names;
  }

  Json resources() {
    auto r = loom({"resource", "list", "--json"});
    EXPECT_EQ(r.code, 0) << show(r);
    auto j = parse_json(r.out);
    EXPECT_TRUE(j.ok()) << r.out;
    return j.ok() ? *j : Json::object();
  }
  // A scheduler round trip: the scheduler has then considered every alloc
  // the job manager sent before it.
  Json settle() { return resources(); }
  std::string allocated_ranks() { return settle()["allocated"].value("ranks", ""); }

  // The job as `loom jobs -a --json` lists it.
  Json job(const std::string& id) {
    auto r = loom({"jobs", "-a", "--json"});
    EXPECT_EQ(r.code, 0) << show(r);
    auto j = parse_json(r.out);
    uint64_t want = parse_jobid(id).value().value();
    if (j.ok()) {
      for (auto& x : *j) {
        if (x["id"].get<uint64_t>() == want) return x;
      }
    }
    ADD_FAILURE() << "job " << id << " is not listed";
    return Json::object();
  }
  std::string state(const std::string& id) { return job(id).value("state", "?"); }

  // The usual instance: 4 ranks of 2 cores, no GPUs, and `extra` options.
  void start(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--cores-per-rank=2", "--gpus-per-rank=0"};
    args.insert(args.end(), extra.begin(), extra.end());
    ASSERT_TRUE(inst.start(4, args));
  }
  // `loom submit ARGS true` in test execution: once started, the job holds
  // its resources until finish() or a cancel.
  std::string hold(std::vector<std::string> args = {}) {
    args.insert(args.begin(), "--setattr=exec.test.override=true");
    args.push_back("true");
    return submit_job(args);
  }
  // Ends a hold() job with wait status `status` (256 is exit 1): starts it
  // once it is allocated, finishes it, waits for its clean.
  void finish(const std::string& id, int status = 0) {
    wait_event(id, "alloc");
    std::string n = std::to_string(parse_jobid(id).value().value());
    auto override_event = [&](const std::string& event) {
      auto r = loom({"rpc", "job-exec.override",
                     R"({"event":")" + event + R"(","id":)" + n + R"(,"status":)" + std::to_string(status) + "}"});
      ASSERT_EQ(r.code, 0) << show(r);
    };
    override_event("start");
    wait_event(id, "start");
    override_event("finish");
    wait_event(id, "clean");
  }

  void TearDown() override {
    if (!inst.running()) return;
    // The double-booking check must never have fired.
    auto r = inst.loom({"resource", "list", "--json"});
    auto j = parse_json(r.out);
    ASSERT_TRUE(j.ok()) << r.out;
    EXPECT_EQ((*j).value("alarms", -1), 0) << r.out;
  }
};

}  // namespace loom::test
