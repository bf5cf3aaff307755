// The job-exec service (job_exec.h): the execution protocol's side of every
// started job. It reads each start, hands the job to the first of its
// executors that claims it (executor.h: the test executor, then the shell
// executor), keeps one Run per job, sends every response through the
// protocol's types (exec_protocol.h), noting what each stream has said,
// follows the job manager's exceptions and teardown, and stops in order
// with the instance. It knows no executor's inside.
#include "job_exec/job_exec.h"

#include <spdlog/spdlog.h>

#include <csignal>
#include <map>
#include <string>
#include <vector>

#include "base/fluid.h"
#include "job_exec/executor.h"
#include "job_exec/shell_executor.h"
#include "job_exec/test_executor.h"
#include "jobspec/jobspec.h"
#include "msg/payload.h"

namespace loom {

using namespace job_exec;

namespace {
constexpr const char* kService = "job-exec";

constexpr double kHelloRetry = 1.0;

// Member `k` of `j` if `j` is an object that has it, else null.
const Json* member(const Json* j, const char* k) {
  if (!j || !j->is_object()) return nullptr;
  auto it = j->find(k);
  return it == j->end() ? nullptr : &*it;
}
}  // namespace

struct JobExec::Impl final : Service {
  Impl(Handle& h, JobExecConfig cfg) : h_(h), cfg_(cfg) {
    executors_.push_back(make_test_executor(*this));
    executors_.push_back(std::make_unique<ShellExecutor>(*this));
  }

  Handle& h_;
  JobExecConfig cfg_;
  std::vector<std::unique_ptr<Executor>> executors_;
  std::map<uint64_t, std::unique_ptr<Run>> runs_;
  uint64_t next_serial_ = 1;
  bool stopping_ = false;
  std::function<void()> stop_done_;
  std::unique_ptr<Timer> hello_timer_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);

  // Service
  Handle& handle() override { return h_; }
  const JobExecConfig& config() const override { return cfg_; }
  std::weak_ptr<int> alive() const override { return alive_; }
  bool stopping() const override { return stopping_; }
  Run& add(std::unique_ptr<Run> r) override {
    r->serial = next_serial_++;
    auto& slot = runs_[r->id];
    slot = std::move(r);
    return *slot;
  }
  Run* current(uint64_t id, uint64_t serial) override {
    Run* r = find(id);
    return r && r->serial == serial ? r : nullptr;
  }
  void respond(Run& r, const Response& resp) override {
    LOOM_ASSERT(!std::holds_alternative<Released>(resp) || !std::get<Released>(resp).final);
    if (std::holds_alternative<Started>(resp) || std::holds_alternative<Reattached>(resp)) r.started = true;
    if (std::holds_alternative<Finished>(resp)) r.finished = true;
    if (auto* x = std::get_if<Raised>(&resp); x && x->fatal()) r.fatal = true;
    h_.respond_typed(r.req, exec_protocol::JobResponse{r.id, resp});
  }
  void raise(Run& r, ExceptionType type, const std::string& note) override {
    if (r.fatal) return;
    respond(r, Raised(Severity::kFatal, type, note));
  }
  void end(Run& r, const Released& last) override {
    LOOM_ASSERT(last.final);
    auto it = runs_.find(r.id);
    LOOM_ASSERT(it != runs_.end() && it->second.get() == &r);
    // Out of the table first: whatever the response sets off finds the job gone.
    std::unique_ptr<Run> gone = std::move(it->second);
    runs_.erase(it);
    h_.respond_typed(gone->req, exec_protocol::JobResponse{gone->id, last});
    gone.reset();
    if (stopping_ && runs_.empty()) stopped();
  }
  void refuse(const Message& req, uint64_t id, const std::string& note, std::optional<IdSet> ranks) override {
    h_.respond_typed(req, exec_protocol::JobResponse{id, Raised(Severity::kFatal, ExceptionType::kExec, note)});
    h_.respond_typed(req, exec_protocol::JobResponse{
                              id, ranks ? Released::of(std::move(*ranks), true) : Released::everything(true)});
  }

  Run* find(uint64_t id) override {
    auto it = runs_.find(id);
    return it == runs_.end() ? nullptr : it->second.get();
  }
  // The orderly stop is over: every stream has ended.
  void stopped() {
    if (!stop_done_) return;
    auto done = std::move(stop_done_);
    stop_done_ = nullptr;
    done();
  }
  // Each run's id, to go through while runs may end.
  std::vector<std::pair<uint64_t, uint64_t>> run_ids() const {
    std::vector<std::pair<uint64_t, uint64_t>> ids;
    for (auto& [id, r] : runs_) ids.emplace_back(id, r->serial);
    return ids;
  }

  void install();
  void hello();
  void start(const Message& m);
  // R is nullptr if the start's R could not be read (R_error says why).
  void start(const Message& m, const exec_protocol::StartRequest& head, const ResourceSet* R, const Json& R_json,
             const std::string& R_error, const Json* spec);
  void kill(const Message& m);
  void on_exception(const Message& ev);
  void on_teardown(const Message& ev);
  void on_online(const Message& ev);
  void stop(std::function<void()> done);
};

void JobExec::Impl::install() {
  // Reads its payload with payload_json only: the job manager's starts
  // come parsed.
  h_.add_json_method("job-exec.start", Access::kOwner, [this](const Message& m) { start(m); });
  h_.add_method("job-exec.kill", Access::kOwner, [this](const Message& m) { kill(m); });
  auto alive = std::weak_ptr<int>(alive_);
  h_.subscribe("job-exception", [this, alive](const Message& ev) {
    if (!alive.expired()) on_exception(ev);
  });
  h_.subscribe("job-manager.exec-teardown", [this, alive](const Message& ev) {
    if (!alive.expired()) on_teardown(ev);
  });
  h_.subscribe("broker.online", [this, alive](const Message& ev) {
    if (!alive.expired()) on_online(ev);
  });
  hello_timer_ = h_.clock().make_timer();
}

void JobExec::Impl::hello() {
  auto alive = std::weak_ptr<int>(alive_);
  h_.rpc("job-manager.exec-hello", Json{{"service", kService}}, {}, [this, alive](const Message& r) {
    if (alive.expired()) return;
    if (r.errnum == EBUSY) {
      // Another service runs jobs; its teardown event brings us back.
      spdlog::info("job-exec: not registered: {}", error_text(r));
      return;
    }
    if (r.errnum) {
      spdlog::warn("job-exec: exec-hello failed: {}; trying again in {}s", error_text(r), kHelloRetry);
      hello_timer_->arm(kHelloRetry, [this] { hello(); });
      return;
    }
  });
}

void JobExec::Impl::on_teardown(const Message& ev) {
  auto p = parse_json(ev.payload);
  std::string gone = p.ok() && p->is_object() ? p->value("service", "") : "";
  if (gone == kService) {
    // The job manager gave up on us: our streams are void (it sends the
    // jobs again after the next hello). Nothing of them may keep running.
    for (auto& [id, r] : runs_) r->executor->abandon(*r);
    runs_.clear();
    stopped();
  }
  // Whoever was registered is gone: this instance falls back to us.
  hello();
}

void JobExec::Impl::start(const Message& m) {
  if (const auto* s = typed_payload<exec_protocol::Start>(m)) {
    // From the job manager of this process: R as it holds it, the jobspec
    // parsed. Shells and the KVS get R as JSON, written once here.
    return start(m, s->head, &s->R, s->R.to_json(), "", s->jobspec.get());
  }
  // The payload as the job manager built it, not a copy.
  auto payload = payload_json(m);
  const Json* p = payload.ok() ? payload->get() : nullptr;
  auto head = p ? exec_protocol::parse_start_request(*p) : Result<exec_protocol::StartRequest>(payload.error());
  if (!head.ok()) {
    spdlog::warn("job-exec: malformed start: {}", head.error().text);
    // With an id, that job alone fails: an error response would end the
    // job manager's stream, every job's.
    auto id = p ? exec_protocol::response_id(*p) : Result<uint64_t>(payload.error());
    if (id.ok()) return refuse(head_of(m), *id, "start: " + head.error().text, std::nullopt);
    return h_.respond_error(m, head.error());
  }
  auto R = p->contains("R") ? ResourceSet::parse((*p)["R"]) : Result<ResourceSet>(Error{EPROTO, "missing \"R\""});
  static const Json kNoR;
  start(m, *head, R.ok() ? &*R : nullptr, R.ok() ? (*p)["R"] : kNoR, R.ok() ? "" : R.error().text,
        member(p, "jobspec"));
}

void JobExec::Impl::start(const Message& m, const exec_protocol::StartRequest& head, const ResourceSet* R,
                          const Json& R_json, const std::string& R_error, const Json* spec) {
  uint64_t jid = head.id;
  if (runs_.count(jid)) {
    return h_.respond_error(m, EEXIST, "job " + encode_f58(JobId{jid}) + " is already running");
  }
  Message req = head_of(m);
  if (!R) return refuse(req, jid, "R: " + R_error, std::nullopt);
  IdSet all = R->rank_set();
  if (stopping_) return refuse(req, jid, "the instance is shutting down", all);
  // The job manager validated the jobspec at submit: only what is read
  // here is checked again.
  if (!spec || !spec->is_object()) return refuse(req, jid, "jobspec: missing or not an object", all);
  const Json* system = member(member(spec, "attributes"), "system");
  Result<double> asked = 0.0;
  if (const Json* d = member(system, "duration")) asked = jobspec_duration(*d);
  if (!asked.ok()) return refuse(req, jid, asked.error().text, all);
  StartInfo s{std::move(req), head, *spec, R_json, *R, *asked};
  for (auto& e : executors_) {
    if (e->claims(*spec)) return e->start(s);
  }
}

void JobExec::Impl::on_exception(const Message& ev) {
  auto p = payload_json(ev);  // parsed by the job manager, when it is of this process
  auto id = p.ok() ? exec_protocol::fatal_exception_job(**p) : std::nullopt;
  Run* r = id ? find(*id) : nullptr;
  if (!r) return;
  // Cancel and other fatal exceptions kill the tasks.
  r->fatal = true;
  r->executor->cancel(*r);
}

void JobExec::Impl::kill(const Message& m) {
  auto p = payload_object(m);
  auto id = p.ok() ? get_int(*p, "id", 0, INT64_MAX) : Result<int64_t>(p.error());
  if (!id.ok()) return;
  int64_t term = SIGTERM;
  auto sig = get_int(*p, "signal", 1, 64, &term);
  if (!sig.ok()) return;
  Run* r = find(static_cast<uint64_t>(*id));
  if (r && r->started) r->executor->signal(*r, static_cast<int>(*sig));
}

void JobExec::Impl::on_online(const Message& ev) {
  auto p = parse_json(ev.payload);
  if (!p.ok() || !p->is_object() || !(*p)["rank"].is_number_unsigned()) return;
  uint32_t rank = (*p)["rank"].get<uint32_t>();
  for (auto [id, serial] : run_ids()) {
    if (Run* r = current(id, serial)) r->executor->online(*r, rank);
  }
}

void JobExec::Impl::stop(std::function<void()> done) {
  stopping_ = true;
  stop_done_ = std::move(done);
  if (runs_.empty()) return stopped();
  spdlog::info("job-exec: stopping {} running jobs", runs_.size());
  for (auto [id, serial] : run_ids()) {
    if (Run* r = current(id, serial)) r->executor->shutdown(*r);
  }
}

void JobExec::stop(std::function<void()> done) { impl_->stop(std::move(done)); }

std::unique_ptr<JobExec> JobExec::create(Handle& h, JobExecConfig cfg) {
  auto impl = std::make_unique<Impl>(h, cfg);
  impl->install();
  impl->hello();
  return std::unique_ptr<JobExec>(new JobExec(std::move(impl)));
}

JobExec::JobExec(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

JobExec::~JobExec() { impl_->h_.remove_methods("job-exec"); }

}  // namespace loom
