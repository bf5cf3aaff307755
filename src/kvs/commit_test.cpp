// kvs.commit with a typed payload (kvs/commit.h), as services of the KVS's
// own process send it: the same checks and the same stored result as the
// JSON request it stands for. The KVS runs on a Handle wired to a list of
// what it sends, over a store in memory.
#include "kvs/commit.h"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <cerrno>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/stepped_clock.h"
#include "kvs/kvs.h"
#include "msg/handle.h"
#include "msg/payload.h"

namespace loom {
namespace {

class MemoryStorage final : public Storage {
 public:
  Result<std::map<std::string, StoredNamespace>> load() override { return std::map<std::string, StoredNamespace>{}; }
  Status write(const std::vector<StoredOp>& ops) override {
    written += ops.size();
    return {};
  }
  size_t written = 0;
};

constexpr uint32_t kOwner = 500;
constexpr uint32_t kUser = 1000;

struct KvsHarness {
  asio::io_context io;
  SteppedClock clock;
  std::vector<Message> sent;
  Handle handle{clock, [this](Message m) { sent.push_back(std::move(m)); }};
  std::unique_ptr<Kvs> kvs;

  KvsHarness() {
    handle.keep_text_lazy();
    auto k = Kvs::create(io, handle, std::make_unique<MemoryStorage>(), kOwner);
    LOOM_ASSERT(k.ok());
    kvs = std::move(*k);
  }

  // Sends `m` as user `uid` and returns the KVS's answer.
  Message call(Message m, uint32_t uid) {
    m.matchtag = 1;
    m.route = {make_hop(0, 7)};
    m.userid = uid;
    m.rolemask = uid == kOwner ? role::kOwner : role::kUser;
    size_t before = sent.size();
    handle.dispatch(std::move(m));
    io.poll();
    io.restart();
    LOOM_ASSERT(sent.size() == before + 1);
    return sent.back();
  }
  Message typed(const KvsCommit& c, uint32_t uid) {
    Message m = make_request("kvs.commit");
    m.typed = std::make_shared<const TypedAs<KvsCommit>>(c);
    return call(std::move(m), uid);
  }
  Message json(const Json& payload, uint32_t uid) { return call(make_request("kvs.commit", dump_json(payload)), uid); }
  std::string lookup(const std::string& ns, const std::string& key) {
    Message r = call(make_request("kvs.lookup", dump_json(Json{{"namespace", ns}, {"key", key}})), kOwner);
    if (r.errnum) return "error: " + error_text(r);
    r.write_text();
    return parse_json(r.payload)->value("value", "");
  }
};

TEST(KvsTypedCommit, StoresWhatTheSameJsonCommitStores) {
  KvsHarness typed_kvs;
  KvsCommit c;
  c.ops = {KvsOp::put("job.1.R", "{}"), KvsOp::append("job.1.eventlog", "a\n"), KvsOp::append("job.1.eventlog", "b\n"),
           KvsOp::put("job.2.R", "x"), KvsOp::unlink("job.2")};
  Message r = typed_kvs.typed(c, kOwner);
  EXPECT_EQ(r.errnum, 0) << error_text(r);

  KvsHarness json_kvs;
  EXPECT_EQ(payload_json_of(c)["ops"].size(), 5u);
  r = json_kvs.json(payload_json_of(c), kOwner);
  EXPECT_EQ(r.errnum, 0) << error_text(r);

  for (auto* k : {&typed_kvs, &json_kvs}) {
    EXPECT_EQ(k->lookup("primary", "job.1.eventlog"), "a\nb\n");
    EXPECT_EQ(k->lookup("primary", "job.1.R"), "{}");
    EXPECT_EQ(k->lookup("primary", "job.2.R"), "error: no key job.2.R");
  }
}

TEST(KvsTypedCommit, IsRefusedAsTheSameJsonCommitIs) {
  KvsHarness k;
  Message created =
      k.call(make_request("kvs.namespace-create", dump_json(Json{{"name", "job-5"}, {"owner", kUser}})), kOwner);
  ASSERT_EQ(created.errnum, 0) << error_text(created);
  std::vector<KvsCommit> refused;
  refused.push_back(KvsCommit{"job-5", {KvsOp::put("output", "ok"), KvsOp::put("exec.eventlog", "forged")}});
  refused.push_back(KvsCommit{"primary", {KvsOp::put("job.1.R", "{}")}});
  refused.push_back(KvsCommit{"job-5", {KvsOp::put("bad..key", "x")}});
  refused.push_back(KvsCommit{"job-6", {KvsOp::put("output", "x")}});
  for (const auto& c : refused) {
    Message t = k.typed(c, kUser);
    Message j = k.json(payload_json_of(c), kUser);
    EXPECT_NE(t.errnum, 0);
    EXPECT_EQ(t.errnum, j.errnum);
    EXPECT_EQ(error_text(t), error_text(j));
  }
  // All or nothing: the allowed op of the first commit was not stored.
  EXPECT_EQ(k.lookup("job-5", "output"), "error: no key output");
  Message ok = k.typed(KvsCommit{"job-5", {KvsOp::put("output", "ok")}}, kUser);
  EXPECT_EQ(ok.errnum, 0) << error_text(ok);
  EXPECT_EQ(k.lookup("job-5", "output"), "ok");
}

}  // namespace
}  // namespace loom
