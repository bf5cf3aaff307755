// The DEPEND state (impl.h; the rules in dependencies.h): the dependency
// events of RFC 21, posted so that a restarted job manager, replaying the
// eventlog, finds the same dependencies still waited on and checks them
// again against what every other job became meanwhile.
#include "job_manager/impl.h"

namespace loom {

namespace {
bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}
const Dependency* scheme_of(const JobManager::Impl::Job& j, DependencyScheme scheme) {
  for (const auto& d : j.deps) {
    if (d.scheme == scheme) return &d;
  }
  return nullptr;
}
const Dependency* cc_limit_of(const JobManager::Impl::Job& j) { return scheme_of(j, DependencyScheme::kCcLimit); }
// Whether nothing but `d` and `limit` (either may be null) holds `j`.
bool only_left(const JobManager::Impl::Job& j, const Dependency* d, const Dependency* limit) {
  return std::all_of(j.rec.deps_pending.begin(), j.rec.deps_pending.end(), [&](const std::string& desc) {
    return (d && desc == d->description()) || (limit && desc == limit->description());
  });
}
}  // namespace

DependencyCheck JobManager::Impl::check_one(const Job& j, const Dependency& d) const {
  if (d.scheme == DependencyScheme::kSingleton) {
    std::vector<SingletonPeer> peers;
    for (const auto& [id, k] : jobs_) {
      if (id == j.id || !is_active(k.rec.state) || k.rec.userid != j.rec.userid || k.name != j.name) continue;
      // A step's own allocation is no peer: it ends only after the step.
      if (j.allocation && id.value() == j.allocation) continue;
      peers.push_back({id, k.rec.state != JobState::kNew && k.rec.state != JobState::kDepend});
    }
    return check_singleton(j.id, peers);
  }
  if (d.scheme == DependencyScheme::kCcLimit) {
    JobId group = d.target.value() ? d.target : j.id;
    std::vector<CcLimitPeer> peers;
    for (const auto& [id, k] : jobs_) {
      if (id == j.id || !is_active(k.rec.state) || k.rec.userid != j.rec.userid) continue;
      const Dependency* limit = cc_limit_of(k);
      if (!limit || (limit->target.value() ? limit->target : id) != group) continue;
      bool in_depend = k.rec.state == JobState::kNew || k.rec.state == JobState::kDepend;
      peers.push_back({id, !in_depend,
                       in_depend && k.rec.deps_pending.size() == 1 && k.rec.deps_pending[0] == limit->description()});
    }
    return check_cc_limit(j.id, d.max, peers);
  }
  Antecedent a;
  if (auto it = jobs_.find(d.target); it != jobs_.end()) {
    const JobRecord& r = it->second.rec;
    a.known = true;
    a.entered_run = r.allocated;
    a.inactive = r.state == JobState::kInactive;
    a.result = result_of(r);
  }
  return check_dependency(d, a);
}

bool JobManager::Impl::wait_on_dependencies(Job& j) {
  for (const auto& d : j.deps) {
    std::string desc = d.description();
    if (has(j.rec.deps_added, desc)) continue;
    if (!post(j, "dependency-add", Json{{"description", desc}})) return true;
  }
  // A copy: each removal changes the list.
  std::vector<std::string> pending = j.rec.deps_pending;
  const Dependency* limit = cc_limit_of(j);
  const Dependency* singleton = scheme_of(j, DependencyScheme::kSingleton);
  for (const auto& desc : pending) {
    // cc_limit last, once nothing else holds the job, and singleton just
    // before it: met earlier, either would be gone by the time the job
    // leaves DEPEND (another job of the name, or of the --cc set, could
    // start meanwhile).
    if ((limit && desc == limit->description()) || (singleton && desc == singleton->description())) continue;
    auto d = std::find_if(j.deps.begin(), j.deps.end(), [&](const Dependency& x) { return x.description() == desc; });
    DependencyCheck c;
    if (d == j.deps.end()) {
      // Added by a job manager that read the jobspec otherwise: nothing
      // here can meet it, and nothing should hold the job for it.
      spdlog::warn("job-manager: job {}: dependency {} is not in its jobspec; removed", encode_f58(j.id), desc);
      c.verdict = DependencyVerdict::kMet;
    } else {
      c = check_one(j, *d);
    }
    if (c.verdict == DependencyVerdict::kWaiting) continue;
    if (c.verdict == DependencyVerdict::kNever) {
      depend_waiting_.erase(j.id);
      (void)post(j, "exception", exception_context("dependency", 0, c.reason));
      return true;
    }
    if (!post(j, "dependency-remove", Json{{"description", desc}})) return true;
  }
  if (singleton && has(j.rec.deps_pending, singleton->description()) && only_left(j, singleton, limit) &&
      check_one(j, *singleton).verdict == DependencyVerdict::kMet) {
    if (!post(j, "dependency-remove", Json{{"description", singleton->description()}})) return true;
  }
  if (limit && j.rec.deps_pending.size() == 1 && j.rec.deps_pending[0] == limit->description()) {
    std::pair<uint32_t, JobId> group{j.rec.userid, limit->target.value() ? limit->target : j.id};
    bool full = rechecking_ && cc_full_.count(group);
    if (!full && check_one(j, *limit).verdict == DependencyVerdict::kMet) {
      if (!post(j, "dependency-remove", Json{{"description", limit->description()}})) return true;
    } else if (rechecking_) {
      cc_full_.insert(group);
    }
  }
  if (j.rec.deps_pending.empty()) {
    if (!depend_waiting_.empty()) depend_waiting_.erase(j.id);
    return false;
  }
  depend_waiting_.insert(j.id);
  return true;
}

void JobManager::Impl::recheck_dependencies() {
  std::vector<JobId> ids(depend_waiting_.begin(), depend_waiting_.end());
  rechecking_ = true;
  cc_full_.clear();
  for (JobId id : ids) {
    auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second.rec.state != JobState::kDepend) {
      depend_waiting_.erase(id);
      continue;
    }
    advance(it->second);
  }
  rechecking_ = false;
  cc_full_.clear();
}

Status JobManager::Impl::may_depend_on(const Message& m, JobId id) const {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return Error{ENOENT, "job " + encode_f58(id) + " does not exist"};
  if (!may_touch(m, it->second.rec.userid)) return Error{EPERM, "job " + encode_f58(id) + " belongs to another user"};
  return {};
}

}  // namespace loom
