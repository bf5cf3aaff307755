// job-manager.submit with a typed payload (job_manager/submit_protocol.h),
// as the simulator sends it: the same checks, answers and stored jobspecs
// as the JSON request it stands for. The KVS, the job manager and the
// scheduler run in one broker with no socket, as in a simulation.
#include <gtest/gtest.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "base/stepped_clock.h"
#include "broker/broker.h"
#include "job_manager/job_manager.h"
#include "job_manager/submit_protocol.h"
#include "jobspec/jobspec.h"
#include "kvs/kvs.h"
#include "kvs/layout.h"
#include "kvs/storage.h"
#include "msg/json.h"
#include "msg/payload.h"
#include "sched/sched.h"

namespace loom {
namespace {

class MemoryStorage final : public Storage {
 public:
  Result<std::map<std::string, StoredNamespace>> load() override { return std::map<std::string, StoredNamespace>{}; }
  Status write(const std::vector<StoredOp>& /*ops*/) override { return {}; }
};

struct Instance {
  asio::io_context io;
  SteppedClock clock;
  std::unique_ptr<Broker> broker;
  std::unique_ptr<Kvs> kvs;
  std::unique_ptr<JobManager> jm;
  std::unique_ptr<Sched> sched;
  Handle* client = nullptr;

  Instance() {
    BrokerConfig bcfg;
    bcfg.no_local_clients = true;
    broker = std::make_unique<Broker>(io, clock, bcfg);
    LOOM_ASSERT(broker->start().ok());
    auto uid = static_cast<uint32_t>(::getuid());
    auto k = Kvs::create(io, broker->add_module({"kvs"}), std::make_unique<MemoryStorage>(), uid);
    LOOM_ASSERT(k.ok());
    kvs = std::move(*k);
    JobManagerConfig jcfg;
    jcfg.owner = uid;
    jm = JobManager::create(io, broker->add_module({"job-manager", "job-info"}), jcfg);
    SchedConfig scfg;
    scfg.size = 2;
    scfg.cores_per_rank = 4;
    scfg.gpus_per_rank = 0;
    auto s = Sched::create(io, broker->add_module({"sched"}), scfg);
    LOOM_ASSERT(s.ok());
    sched = std::move(*s);
    client = &broker->add_module({"client"});
    settle();
  }

  void settle() {
    while (io.poll() > 0) io.restart();
    io.restart();
  }

  // The answer to a submit of `docs`, sent typed or as JSON.
  Json submit(const std::vector<Json>& docs, bool typed, std::vector<std::string> texts = {},
              std::vector<std::shared_ptr<const Jobspec>> decoded = {}) {
    Json answer;
    auto got = [&](const Message& m) {
      answer = m.errnum ? Json{{"errnum", m.errnum}, {"errstr", error_text(m)}} : **payload_json(m);
    };
    if (typed) {
      SubmitJobs s;
      for (const auto& d : docs) s.jobspecs.push_back(std::make_shared<const Json>(d));
      s.texts = std::move(texts);
      s.decoded = std::move(decoded);
      client->rpc_typed("job-manager.submit", std::move(s), {}, got);
    } else {
      Json jobs = Json::array();
      for (const auto& d : docs) jobs.push_back(Json{{"jobspec", d}});
      client->rpc("job-manager.submit", Json{{"jobs", std::move(jobs)}}, {}, got);
    }
    settle();
    return answer;
  }

  std::string lookup(const std::string& key) {
    std::string value;
    client->rpc("kvs.lookup", Json{{"key", key}}, {}, [&](const Message& m) {
      if (!m.errnum) value = (**payload_json(m)).value("value", "");
    });
    settle();
    return value;
  }
};

Json jobspec(uint32_t tasks, double run) {
  JobRequest r;
  r.tasks = tasks;
  r.duration = 100;
  r.command = {"sim"};
  Json doc = *build_jobspec(r);
  doc["attributes"]["system"]["exec"] = Json{{"test", Json{{"run_duration", run}}}};
  return doc;
}

TEST(TypedSubmit, StoresTheSameJobspecsAsTheJsonSubmit) {
  Instance inst;
  std::vector<Json> docs{jobspec(1, 5), jobspec(3, 7)};
  Json typed = inst.submit(docs, true);
  Json json = inst.submit(docs, false);
  ASSERT_TRUE(typed.contains("ids")) << typed.dump();
  ASSERT_TRUE(json.contains("ids")) << json.dump();
  ASSERT_EQ(typed["ids"].size(), 2u);
  ASSERT_EQ(json["ids"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    std::string a = inst.lookup(kvs_key::job_jobspec(JobId{typed["ids"][i].get<uint64_t>()}));
    std::string b = inst.lookup(kvs_key::job_jobspec(JobId{json["ids"][i].get<uint64_t>()}));
    EXPECT_FALSE(a.empty());
    EXPECT_EQ(a, b);
    EXPECT_EQ(Json::parse(a), docs[i]);
  }
}

// The sender may hand over each document's text (the simulator does):
// it is what the job manager stores, and it must come one per document.
TEST(TypedSubmit, StoresTheTextsItIsGiven) {
  Instance inst;
  std::vector<Json> docs{jobspec(1, 5), jobspec(2, 0.25)};
  std::vector<std::string> texts{dump_json(docs[0]), dump_json(docs[1])};
  Json typed = inst.submit(docs, true, texts);
  ASSERT_TRUE(typed.contains("ids")) << typed.dump();
  ASSERT_EQ(typed["ids"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(inst.lookup(kvs_key::job_jobspec(JobId{typed["ids"][i].get<uint64_t>()})), texts[i]);
  }
  Json refused = inst.submit(docs, true, {texts[0]});
  EXPECT_EQ(refused.value("errnum", 0), EPROTO) << refused.dump();
  EXPECT_EQ(refused.value("errstr", ""), "one text for each jobspec, or none");
}

// The sender may hand over each document decoded (the simulator shares
// one decoding among the jobs of a shape): the jobs are those of the
// documents, and there must be one decoding per document.
TEST(TypedSubmit, TakesTheDecodingsItIsGiven) {
  Instance inst;
  std::vector<Json> docs{jobspec(2, 5), jobspec(2, 9), jobspec(3, 1)};
  auto shape = std::make_shared<const Jobspec>(*decode_jobspec(docs[0]));  // the run time is not decoded
  auto other = std::make_shared<const Jobspec>(*decode_jobspec(docs[2]));
  Json typed = inst.submit(docs, true, {}, {shape, shape, other});
  ASSERT_TRUE(typed.contains("ids")) << typed.dump();
  ASSERT_EQ(typed["ids"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(Json::parse(inst.lookup(kvs_key::job_jobspec(JobId{typed["ids"][i].get<uint64_t>()}))), docs[i]);
  }
  // Each job holds what its own decoding asks: 2 and 2 cores of rank 0,
  // then 3 of rank 1.
  EXPECT_EQ(Json::parse(inst.lookup(kvs_key::job_R(JobId{typed["ids"][2].get<uint64_t>()})))["execution"]["R_lite"],
            Json::parse(R"([{"rank":"1","children":{"core":"0-2"}}])"));
  Json refused = inst.submit(docs, true, {}, {shape});
  EXPECT_EQ(refused.value("errnum", 0), EPROTO) << refused.dump();
  EXPECT_EQ(refused.value("errstr", ""), "one decoding for each jobspec, or none");
}

TEST(TypedSubmit, IsRefusedAsTheJsonSubmitIs) {
  Instance inst;
  Json unknown = jobspec(1, 5);
  unknown["attributes"]["system"]["bogus"] = 1;
  Json too_big = jobspec(9, 5);  // the instance has 8 cores
  Json bad_version = jobspec(1, 5);
  bad_version["version"] = 2;
  for (const auto& batch : std::vector<std::vector<Json>>{
           {unknown}, {too_big}, {bad_version}, {jobspec(1, 5), too_big}, {jobspec(1, 5), unknown}}) {
    Json typed = inst.submit(batch, true);
    Json json = inst.submit(batch, false);
    EXPECT_TRUE(typed.contains("errnum")) << typed.dump();
    EXPECT_EQ(typed, json);
  }
}

}  // namespace
}  // namespace loom
