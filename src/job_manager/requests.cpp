// The job-manager.* requests (docs/protocols/jobs.md; impl.h).
#include "base/assert.h"
#include "hostlist/hostlist.h"
#include "job_manager/impl.h"
#include "job_manager/submit_protocol.h"
#include "msg/histogram_json.h"

namespace loom {

// ---------------------------------------------------------------- requests

Result<JobManager::Impl::Job*> JobManager::Impl::find_job(const Message& m, const Json& p, bool must_be_active) {
  auto id = get_jobid(p);
  if (!id.ok()) return id.error();
  auto it = jobs_.find(*id);
  if (it == jobs_.end()) return Error{ENOENT, "unknown job " + encode_f58(*id)};
  Job& j = it->second;
  if (!may_touch(m, j.rec.userid)) {
    return Error{EPERM, "job " + encode_f58(*id) + " belongs to another user"};
  }
  if (must_be_active && !is_active(j.rec.state)) return Error{EINVAL, "job " + encode_f58(*id) + " is inactive"};
  return &j;
}

namespace {
// A job in test execution mode (attributes.system.exec.test) starts no
// process at all, as nobody.
bool runs_nothing(const Json& doc) {
  const Json* at = &doc;
  for (const char* key : {"attributes", "system", "exec", "test"}) {
    if (!at->is_object()) return false;
    auto it = at->find(key);
    if (it == at->end()) return false;
    at = &*it;
  }
  return true;
}

// The text of a document's `key`, "null" if it has none.
std::string dump_member(const Json& doc, const char* key) {
  auto it = doc.find(key);
  return it == doc.end() ? std::string("null") : dump_json(*it);
}

// The note of a raise or a cancel: it is stored in the job's eventlog and
// given with the job in every listing and journal, so it is bounded as a
// jobspec is (docs/protocols/jobs.md).
Result<std::string> get_note(const Json& p) {
  auto note = get_string(p, "note", "");
  if (note.ok() && note->size() > kMaxNote) {
    return Error{EINVAL,
                 "note is " + std::to_string(note->size()) + " bytes, over the limit of " + std::to_string(kMaxNote)};
  }
  return note;
}
}  // namespace

void JobManager::Impl::submit(const Message& m) {
  // Each job of the batch: a document a service of this process built
  // (typed, kept as it was sent), or an item of the JSON request, read
  // where it is (a batch from a service of this broker comes parsed: no
  // text is written or read).
  struct Item {
    const Json* fields = nullptr;  // the JSON item: its jobspec and urgency
    std::shared_ptr<const Json> doc;
    const std::string* text = nullptr;         // doc's text, when the sender gave it
    std::shared_ptr<const Jobspec> decoded{};  // doc decoded, when the sender gave it
  };
  std::vector<Item> items;
  std::shared_ptr<const Json> payload;  // holds the items' fields
  bool tie = false;
  if (const auto* typed = typed_payload<SubmitJobs>(m)) {
    if (typed->jobspecs.empty()) return h_.respond_error(m, EPROTO, "\"jobs\" must be a non-empty array");
    if (typed->jobspecs.size() > kMaxBatch) {
      return h_.respond_error(m, EINVAL, "at most " + std::to_string(kMaxBatch) + " jobs per submit");
    }
    if (!typed->texts.empty() && typed->texts.size() != typed->jobspecs.size()) {
      return h_.respond_error(m, EPROTO, "one text for each jobspec, or none");
    }
    if (!typed->decoded.empty() && typed->decoded.size() != typed->jobspecs.size()) {
      return h_.respond_error(m, EPROTO, "one decoding for each jobspec, or none");
    }
    items.reserve(typed->jobspecs.size());
    for (size_t i = 0; i < typed->jobspecs.size(); ++i) {
      if (!typed->jobspecs[i]) return h_.respond_error(m, EPROTO, "job " + std::to_string(i + 1) + ": no jobspec");
      items.push_back(Item{nullptr, typed->jobspecs[i], typed->texts.empty() ? nullptr : &typed->texts[i],
                           typed->decoded.empty() ? nullptr : typed->decoded[i]});
    }
  } else {
    auto p = payload_json(m);
    if (!p.ok()) return h_.respond_error(m, p.error());
    payload = std::move(*p);
    // loom alloc's jobs end with its connection (it holds the allocation
    // for a command of its own: nobody else would give it back).
    auto t = get_bool(*payload, "cancel_on_disconnect", false);
    if (!t.ok()) return h_.respond_error(m, t.error());
    tie = *t;
    if (auto it = payload->find("jobs"); it != payload->end()) {
      if (!it->is_array() || it->empty()) return h_.respond_error(m, EPROTO, "\"jobs\" must be a non-empty array");
      if (it->size() > kMaxBatch) {
        return h_.respond_error(m, EINVAL, "at most " + std::to_string(kMaxBatch) + " jobs per submit");
      }
      items.reserve(it->size());
      for (const Json& item : *it) items.push_back(Item{&item, nullptr});
    } else {
      items.push_back(Item{payload.get(), nullptr});
    }
  }
  bool owner = is_owner(m);
  SubmitRules rules = submit_rules();
  std::vector<Submitted> jobs;
  jobs.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    std::string where = items.size() > 1 ? "job " + std::to_string(i + 1) + ": " : "";
    std::shared_ptr<const Json> doc = items[i].doc;
    std::shared_ptr<const Jobspec> decoded = items[i].decoded;
    Result<Jobspec> spec = Error{EPROTO, "no jobspec"};
    if (doc && decoded) {
      LOOM_DEBUG_ASSERT(decode_jobspec(*doc).ok() && *decode_jobspec(*doc) == *decoded);
    } else if (doc) {
      spec = decode_jobspec(*doc);  // kept as sent: decoded, not copied
    } else {
      const Json& it = *items[i].fields;
      if (!it.is_object() || !it.contains("jobspec")) return h_.respond_error(m, EPROTO, where + "missing \"jobspec\"");
      const Json& js = it["jobspec"];
      // Text over the limit is refused before it is parsed; the stored text
      // (compact) is measured again below.
      if (js.is_string()) {
        if (auto st = check_jobspec_size(js.get_ref<const std::string&>().size(), rules); !st) {
          return h_.respond_error(m, st.error().code, where + st.error().text);
        }
      }
      spec = js.is_string() ? parse_jobspec_text(js.get<std::string>()) : parse_jobspec(js);
      if (spec.ok()) doc = std::make_shared<const Json>(std::exchange(spec->raw, nullptr));
    }
    if (!decoded) {
      if (!spec.ok()) return h_.respond_error(m, spec.error().code, where + spec.error().text);
      decoded = std::make_shared<const Jobspec>(std::move(*spec));
    }
    std::string text = items[i].text ? *items[i].text : dump_json(*doc);
    LOOM_DEBUG_ASSERT(!items[i].text || text == dump_json(*doc));
    if (auto st = check_jobspec_size(text.size(), rules); !st) {
      return h_.respond_error(m, st.error().code, where + st.error().text);
    }
    // Nothing in a jobspec is ignored: a system attribute loom does not
    // read, or dependencies it cannot follow, are refused here.
    if (auto st = check_system_keys(*doc); !st) {
      return h_.respond_error(m, st.error().code, where + st.error().text);
    }
    auto deps = parse_dependencies(*doc);
    if (!deps.ok()) return h_.respond_error(m, deps.error().code, where + deps.error().text);
    if (auto st = check_system_attributes(*doc, owner, rules); !st) {
      return h_.respond_error(m, st.error().code, where + st.error().text);
    }
    // A step goes into its allocation (steps.cpp), which must be the
    // sender's, running, and big enough.
    if (decoded->allocation) {
      if (auto st = check_step(m, *decoded, *deps); !st) {
        return h_.respond_error(m, st.error().code, where + st.error().text);
      }
    }
    // A job runs as its user (docs/security.md): brokers that cannot switch
    // users refuse the jobs of anyone but the owner, unless the job runs
    // nothing. The user is the broker's stamp, never the payload's.
    if (m.userid != cfg_.owner && !cfg_.runs_jobs_as_users.value_or(false) && !runs_nothing(*doc)) {
      return h_.respond_error(m, EPERM,
                              where + "this instance runs as uid " + std::to_string(cfg_.owner) +
                                  " and cannot run jobs as other users (you are uid " + std::to_string(m.userid) +
                                  "); ask its owner, or use an instance started as root");
    }
    int64_t urgency = kUrgencyDefault;
    if (items[i].fields) {
      auto u = get_int(*items[i].fields, "urgency", 0, 31, &urgency);
      if (!u.ok()) return h_.respond_error(m, u.error().code, where + "urgency must be 0-31");
      urgency = *u;
    }
    if (urgency > kUrgencyDefault && !owner) {
      return h_.respond_error(m, EPERM, "only the instance owner may set an urgency above 16");
    }
    jobs.push_back(Submitted{std::move(doc), std::move(decoded), std::move(text), static_cast<uint32_t>(urgency),
                             std::move(*deps)});
  }
  // Steps work inside allocations already made: a queue closed to new
  // work (a drain) does not stop them.
  bool all_steps = std::all_of(jobs.begin(), jobs.end(), [](const Submitted& s) { return s.spec->allocation != 0; });
  if (!submit_enabled_ && !all_steps) {
    return h_.respond_error(m, EAGAIN,
                            "submissions are disabled" + (submit_reason_.empty() ? "" : ": " + submit_reason_));
  }
  // Ask the scheduler whether this instance could ever run them, so that
  // an impossible request is refused now rather than denied later (steps
  // were checked against their allocations).
  sched_protocol::Feasibility check;   // a typed payload: the scheduler reads them decoded
  std::map<std::string, size_t> seen;  // identical resource requests are checked once
  std::vector<size_t> index;
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (jobs[i].spec->allocation) continue;
    bool first = true;
    if (jobs.size() > 1) {
      std::string key = dump_member(*jobs[i].doc, "resources") + dump_member(*jobs[i].doc, "tasks");
      first = seen.emplace(std::move(key), i).second;
    }
    if (first) {
      check.jobspecs.push_back({jobs[i].doc, jobs[i].spec});
      index.push_back(i);
    }
  }
  if (check.jobspecs.empty()) return submit_checked(m, std::move(jobs), tie);
  if (tie) ++tie_checks_[m.sender()];
  h_.rpc_typed(
      "sched.feasibility", std::move(check), {},
      [this, m, jobs = std::move(jobs), index = std::move(index), n = items.size(), tie](const Message& r) mutable {
        if (r.errnum && r.errnum != ENOSYS) {
          std::string text = error_text(r);
          // The scheduler numbers the jobspecs it was sent from 0; name
          // the job of the batch (from 1), or nothing for a single job.
          if (text.starts_with("jobspec ")) {
            size_t k = std::strtoul(text.c_str() + 8, nullptr, 10);
            size_t colon = text.find(": ");
            if (k < index.size() && colon != std::string::npos) {
              text = (n > 1 ? "job " + std::to_string(index[k] + 1) + ": " : "") + text.substr(colon + 2);
            }
          }
          h_.respond_error(m, r.errnum, text);
        } else {
          submit_checked(m, std::move(jobs), tie);
        }
        if (tie) end_tie_check(m.sender());
      });
}

void JobManager::Impl::end_tie_check(HopId sender) {
  auto it = tie_checks_.find(sender);
  if (it == tie_checks_.end() || --it->second > 0) return;
  tie_checks_.erase(it);
  // Gone while the scheduler was asked: the jobs just recorded go with the
  // others it tied.
  if (auto gone = tie_gone_.extract(sender)) cancel_tied(sender, gone.mapped());
}

void JobManager::Impl::submit_checked(const Message& m, std::vector<Submitted> jobs, bool tie) {
  if (!submit_enabled_ &&
      !std::all_of(jobs.begin(), jobs.end(), [](const Submitted& s) { return s.spec->allocation != 0; })) {
    return h_.respond_error(m, EAGAIN,
                            "submissions are disabled" + (submit_reason_.empty() ? "" : ": " + submit_reason_));
  }
  // One user may not fill rank 0's memory with jobs; the owner, whose
  // instance it is, may (docs/configuration.md).
  if (const uint64_t limit = cfg_.max_active_per_user; limit > 0 && !is_owner(m)) {
    auto it = active_by_user_.find(m.userid);
    const uint64_t active = it == active_by_user_.end() ? 0 : it->second;
    if (active + jobs.size() > limit) {
      return h_.respond_error(m, EAGAIN,
                              "uid " + std::to_string(m.userid) + " has " + std::to_string(active) + " active jobs; " +
                                  (jobs.size() > 1 ? std::to_string(jobs.size()) + " more" : "one more") +
                                  " would pass its limit of " + std::to_string(limit) +
                                  " (job-manager.max-active-jobs-per-user)");
    }
  }
  Json ids = Json::array();
  std::vector<Job*> created;
  uint64_t now_ms = static_cast<uint64_t>(h_.clock().wall() * 1000);
  // Each job's id first, so that its dependencies are checked, against the
  // jobs as they are now, before any job of the batch is stored (an id
  // given to a job refused here is never used again).
  std::vector<JobId> new_ids;
  new_ids.reserve(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    new_ids.push_back(fluid_->next(now_ms));
    auto st = check_new_dependencies(jobs[i].deps, new_ids.back(), [&](JobId t) { return may_depend_on(m, t); });
    if (!st) {
      std::string where = jobs.size() > 1 ? "job " + std::to_string(i + 1) + ": " : "";
      return h_.respond_error(m, st.error().code, where + st.error().text);
    }
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    JobId id = new_ids[i];
    Job& j = jobs_[id];
    ++jobs_in_state_[state_slot(j.rec.state)];
    const Jobspec& spec = *jobs[i].spec;
    j.deps = std::move(jobs[i].deps);
    j.id = id;
    j.name = spec.name;
    j.ntasks = spec.ntasks;
    j.nnodes = spec.nnodes;
    j.duration = spec.duration;
    j.batch = spec.batch;
    j.allocation = spec.allocation;
    if (Job* a = j.allocation ? allocation_of(j) : nullptr) a->steps.insert(id);
    j.jobspec = std::move(jobs[i].text);
    commit_op(KvsOp::put(kvs_key::job_jobspec(id), j.jobspec));
    (void)post(j, "submit", json_object("userid", m.userid, "urgency", jobs[i].urgency, "flags", 0, "version", 1));
    ids.push_back(id.value());
    created.push_back(&j);
    if (tie) tied_[m.sender()].push_back(id);
  }
  // The submitter hears of its jobs once they are durable.
  after_commit([this, m, ids](const Error* e) {
    if (e) return h_.respond_error(m, e->code, "the jobs could not be stored: " + e->text);
    h_.respond(m, Json{{"ids", ids}});
  });
  for (size_t i = 0; i < created.size(); ++i) {
    fresh_spec_ = FreshSpec{created[i]->id, &jobs[i]};
    advance(*created[i]);
  }
  fresh_spec_ = FreshSpec{};
}

void JobManager::Impl::Job::note_resources(const ResourceSet& r) {
  ranks = r.rank_set().encode();
  nnodes = static_cast<uint32_t>(r.ranks().size());
  ncores = r.ncores();
  expiration = r.expiration;
  Hostlist hosts;
  nodelist.clear();
  for (const auto& [rank, rr] : r.ranks()) {
    if (rr.hostname.empty() || !hosts.append(rr.hostname)) return;
  }
  nodelist = hosts.encode();
}

Json JobManager::Impl::describe(const Job& j) const {
  const JobRecord& r = j.rec;
  Json d{{"id", j.id.value()},   {"userid", r.userid},     {"name", j.name},         {"state", job_state_name(r.state)},
         {"urgency", r.urgency}, {"priority", r.priority}, {"t_submit", r.t_submit}, {"ntasks", j.ntasks},
         {"nnodes", j.nnodes},   {"duration", j.duration}};
  if (r.t_depend > 0) d["t_depend"] = r.t_depend;
  if (r.allocated) {
    d["t_run"] = r.t_run;
    d["ranks"] = j.ranks;
    d["ncores"] = j.ncores;
    if (!j.nodelist.empty()) d["nodelist"] = j.nodelist;
    if (j.expiration > 0) d["expiration"] = j.expiration;
  }
  if (r.t_cleanup > 0) d["t_cleanup"] = r.t_cleanup;
  if (r.state == JobState::kInactive) {
    d["t_inactive"] = r.t_inactive;
    d["result"] = result_of(r);
    d["success"] = d["result"] == "COMPLETED";
  }
  if (r.finished) d["status"] = r.finish_status;
  if (r.fatal_exception) d["exception"] = Json{{"type", r.exception_type}, {"note", r.exception_note}};
  if (!j.annotations.is_null()) d["annotations"] = j.annotations;
  if (j.allocation) d["allocation"] = j.allocation;
  if (r.state == JobState::kDepend && !r.deps_pending.empty()) d["dependencies"] = r.deps_pending;
  if (r.state == JobState::kCleanup && r.allocated && !r.freed) {
    d["ranks_held"] = j.R.rank_set().subtract(r.released).encode();
  }
  return d;
}

void JobManager::Impl::list(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  int64_t any = -1;
  auto userid = get_int(*p, "userid", -1, UINT32_MAX, &any);
  if (!userid.ok()) return h_.respond_error(m, userid.error());
  // Users see only their own jobs (docs/protocols/jobs.md): a user's
  // `userid` is ignored, not refused, so that "all users" asks the same.
  if (!is_owner(m)) userid = static_cast<int64_t>(m.userid);
  int64_t all_states = 127;
  auto states = get_int(*p, "states", 0, 127, &all_states);
  if (!states.ok()) return h_.respond_error(m, states.error());
  int64_t unlimited = 0;
  auto limit = get_int(*p, "limit", 0, INT32_MAX, &unlimited);
  if (!limit.ok()) return h_.respond_error(m, limit.error());
  // Only these jobs, when given (ids unknown or not the user's are left out).
  std::set<uint64_t> only;
  if (p->contains("ids")) {
    const Json& ids = (*p)["ids"];
    if (!ids.is_array()) return h_.respond_error(m, EPROTO, "\"ids\" must be an array of job ids");
    for (const auto& v : ids) {
      if (!v.is_number_unsigned()) return h_.respond_error(m, EPROTO, "\"ids\" must be an array of job ids");
      only.insert(v.get<uint64_t>());
    }
  }
  // Jobs older than `before` only: the next page of a listing cut short.
  auto before = p->contains("before") ? get_uint(*p, "before") : Result<uint64_t>(uint64_t{0});
  if (!before.ok()) return h_.respond_error(m, before.error());
  Json out = Json::array();
  size_t bytes = 0;
  bool more = false;
  auto start = *before > 0 ? std::make_reverse_iterator(jobs_.lower_bound(JobId{*before})) : jobs_.rbegin();
  for (auto it = start; it != jobs_.rend(); ++it) {
    const Job& j = it->second;
    if (p->contains("ids") && !only.count(j.id.value())) continue;
    if (*userid >= 0 && j.rec.userid != static_cast<uint32_t>(*userid)) continue;
    if (!(static_cast<int64_t>(j.rec.state) & *states)) continue;
    Json d = describe(j);
    size_t b = dump_json_bound(d);
    if (!out.empty() && bytes + b > kListPartBytes) {
      more = true;
      break;
    }
    bytes += b;
    out.push_back(std::move(d));
    if (*limit > 0 && out.size() >= static_cast<size_t>(*limit)) break;
  }
  h_.respond(m, Json{{"jobs", std::move(out)}, {"more", more}});
}

void JobManager::Impl::raise(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto j = find_job(m, *p, true);
  if (!j.ok()) return h_.respond_error(m, j.error());
  auto sev = get_int(*p, "severity", 0, 7);
  if (!sev.ok()) return h_.respond_error(m, sev.error());
  auto type = get_string(*p, "type");
  if (!type.ok()) return h_.respond_error(m, type.error());
  auto note = get_note(*p);
  if (!note.ok()) return h_.respond_error(m, note.error());
  EventEntry probe{0, "exception", exception_context(*type, static_cast<int>(*sev), *note)};
  if (auto st = check_exception_type(*type); !st) return h_.respond_error(m, st.error());
  if (auto st = post(**j, "exception", probe.context); !st) return h_.respond_error(m, st.error());
  advance(**j);
  h_.respond(m, "{}");
}

void JobManager::Impl::cancel(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto note = get_note(*p);
  if (!note.ok()) return h_.respond_error(m, note.error());
  auto all = get_bool(*p, "all", false);
  if (!all.ok()) return h_.respond_error(m, all.error());
  // By id, not by pointer: cancelling one job may end others (an
  // allocation's steps) before their turn here.
  std::vector<JobId> targets;
  Json errors = Json::array();
  if (*all) {
    // The filters are applied here, in the same turn of the loop as the
    // cancel: a job that moved on (pending to running) after a client
    // listed it cannot be canceled by a request that asked for pending ones.
    const int64_t self = m.userid, all_states = 127;
    auto userid = get_int(*p, "userid", -1, UINT32_MAX, &self);
    if (!userid.ok()) return h_.respond_error(m, userid.error());
    if (*userid != static_cast<int64_t>(m.userid) && !is_owner(m)) {
      return h_.respond_error(m, EPERM, "only the instance owner may cancel other users' jobs");
    }
    auto states = get_int(*p, "states", 0, 127, &all_states);
    if (!states.ok()) return h_.respond_error(m, states.error());
    auto name = get_string(*p, "name", "");
    if (!name.ok()) return h_.respond_error(m, name.error());
    auto dry_run = get_bool(*p, "dry_run", false);
    if (!dry_run.ok()) return h_.respond_error(m, dry_run.error());
    Json ids = Json::array();
    for (auto& [id, j] : jobs_) {
      if (!is_active(j.rec.state) || j.rec.fatal_exception) continue;
      if (*userid >= 0 && j.rec.userid != static_cast<uint32_t>(*userid)) continue;
      if (!(static_cast<int64_t>(j.rec.state) & *states)) continue;
      if (!name->empty() && j.name != *name) continue;
      targets.push_back(id);
      ids.push_back(id.value());
    }
    if (*dry_run) return h_.respond(m, Json{{"canceled", Json::array()}, {"would_cancel", ids}, {"errors", errors}});
  } else {
    if (!p->contains("ids") || !(*p)["ids"].is_array()) return h_.respond_error(m, EPROTO, "missing \"ids\"");
    for (const auto& v : (*p)["ids"]) {
      auto j = find_job(m, Json{{"id", v}}, true);
      if (!j.ok()) {
        errors.push_back(Json{{"id", v}, {"errnum", j.error().code}, {"error", j.error().text}});
        continue;
      }
      if ((*j)->rec.fatal_exception && (*j)->rec.exception_type == "cancel") {
        errors.push_back(
            Json{{"id", v}, {"errnum", EALREADY}, {"error", "job " + encode_f58((*j)->id) + " is already canceled"}});
        continue;
      }
      targets.push_back((*j)->id);
    }
  }
  Json done = Json::array();
  for (JobId id : targets) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) continue;
    Job& j = it->second;
    if (j.rec.fatal_exception || !is_active(j.rec.state)) {
      // Cancelled already, on the way (a step whose allocation just was).
      if (j.rec.exception_type == "cancel") done.push_back(id.value());
      continue;
    }
    if (!post(j, "exception", exception_context("cancel", 0, *note))) continue;
    done.push_back(id.value());
    advance(j);
  }
  h_.respond(m, Json{{"canceled", done}, {"errors", errors}});
}

void JobManager::Impl::urgency(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto u = get_int(*p, "urgency", 0, 31);
  if (!u.ok())
    return h_.respond_error(m, u.error().code, "urgency must be 0-31 (0 holds, 16 is the default, 31 expedites)");
  auto jr = find_job(m, *p, true);
  if (!jr.ok()) return h_.respond_error(m, jr.error());
  Job& j = **jr;
  if (*u > kUrgencyDefault && !is_owner(m)) {
    return h_.respond_error(m, EPERM, "only the instance owner may set an urgency above 16");
  }
  if (!is_pending(j.rec.state) && j.rec.state != JobState::kNew) {
    return h_.respond_error(m, EINVAL, "job " + encode_f58(j.id) + " is not pending");
  }
  uint32_t old = j.rec.urgency;
  if (auto st = post(j, "urgency", Json{{"urgency", *u}}); !st) return h_.respond_error(m, st.error());
  int64_t prio = priority_of(j.rec.urgency);
  if (j.rec.state == JobState::kSched && prio != j.rec.priority) {
    (void)post(j, "priority", Json{{"priority", prio}});
    if (prio == 0 && j.alloc_pending && !j.cancel_sent) {
      h_.send_oneway("sched.cancel", dump_json(Json{{"id", j.id.value()}}));
      j.cancel_sent = true;
    } else if (j.alloc_pending) {
      h_.send_oneway("sched.prioritize", dump_json(Json{{"jobs", Json::array({Json::array({j.id.value(), prio})})}}));
    } else {
      send_alloc(j);
    }
    step_held_or_released(j);
  }
  h_.respond(m, Json{{"old_urgency", old}});
}

void JobManager::Impl::wait(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto j = find_job(m, *p, false);
  if (!j.ok()) return h_.respond_error(m, j.error());
  if (!is_active((*j)->rec.state)) return h_.respond(m, describe(**j));
  (*j)->waiters.push_back(m);
}

void JobManager::Impl::kill(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto j = find_job(m, *p, true);
  if (!j.ok()) return h_.respond_error(m, j.error());
  auto sig = get_int(*p, "signal", 1, 64);
  if (!sig.ok()) return h_.respond_error(m, sig.error());
  if ((*j)->rec.state != JobState::kRun || !(*j)->rec.started) {
    return h_.respond_error(m, EINVAL, "job " + encode_f58((*j)->id) + " is not running");
  }
  if (exec_service_.empty() || !(*j)->start_sent) {
    return h_.respond_error(m, ENOSYS, "no execution service is running job " + encode_f58((*j)->id));
  }
  h_.send_oneway(exec_service_ + ".kill", dump_json(Json{{"id", (*j)->id.value()}, {"signal", *sig}}));
  h_.respond(m, Json::object());
}

void JobManager::Impl::purge_jobs(const std::vector<JobId>& ids, std::function<void(const Error*)> done) {
  for (JobId id : ids) {
    if (auto it = jobs_.find(id); it != jobs_.end()) {
      --jobs_in_state_[state_slot(it->second.rec.state)];
      if (is_active(it->second.rec.state)) count_active(it->second.rec.userid, -1);
      drop_held_spec(it->second);
      jobs_.erase(it);
    }
    commit_op(KvsOp::unlink(kvs_key::job_dir(id)));
  }
  if (done) after_commit(std::move(done));
}

void JobManager::Impl::purge(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  std::vector<JobId> ids;
  if (p->contains("ids")) {
    if (!(*p)["ids"].is_array()) return h_.respond_error(m, EPROTO, "\"ids\" must be an array");
    for (const auto& v : (*p)["ids"]) {
      auto j = find_job(m, Json{{"id", v}}, false);
      if (!j.ok()) return h_.respond_error(m, j.error());
      if (is_active((*j)->rec.state)) {
        return h_.respond_error(m, EINVAL, "job " + encode_f58((*j)->id) + " is still active");
      }
      ids.push_back((*j)->id);
    }
  } else {
    int64_t none = -1;
    auto num = get_int(*p, "num_limit", 0, INT32_MAX, &none);
    if (!num.ok()) return h_.respond_error(m, num.error());
    double age = -1;
    if (p->contains("age_limit")) {
      if (!(*p)["age_limit"].is_number() || (*p)["age_limit"].get<double>() < 0) {
        return h_.respond_error(m, EPROTO, "\"age_limit\" must be seconds");
      }
      age = (*p)["age_limit"].get<double>();
    }
    if (*num < 0 && age < 0) return h_.respond_error(m, EPROTO, "give ids, num_limit or age_limit");
    double now = h_.clock().wall();
    size_t n = inactive_order_.size();
    for (size_t i = 0; i < n; ++i) {
      JobId id = inactive_order_[i];
      auto it = jobs_.find(id);
      if (it == jobs_.end()) continue;
      bool over_num = *num >= 0 && n - i > static_cast<size_t>(*num);
      bool over_age = age >= 0 && now - it->second.rec.t_inactive > age;
      if (over_num || over_age) ids.push_back(id);
    }
  }
  std::erase_if(inactive_order_, [&](JobId id) { return std::find(ids.begin(), ids.end(), id) != ids.end(); });
  size_t n = ids.size();
  purge_jobs(ids, [this, m, n](const Error* e) {
    if (e) return h_.respond_error(m, *e);
    h_.respond(m, Json{{"purged", n}});
  });
}

// inactive_order_ holds exactly the inactive jobs of jobs_.
bool JobManager::Impl::has_active() const { return inactive_order_.size() < jobs_.size(); }

void JobManager::Impl::check_drain() {
  if (drain_waiters_.empty() || has_active()) return;
  auto waiters = std::move(drain_waiters_);
  drain_waiters_.clear();
  // Answered once the last job's end is stored.
  after_commit([this, waiters = std::move(waiters)](const Error*) {
    for (auto& w : waiters) h_.respond(w, "{}");
  });
}

void JobManager::Impl::queue_status(const Message& m) {
  size_t pending = 0, running = 0;
  for (auto& [id, j] : jobs_) {
    if (is_pending(j.rec.state) || j.rec.state == JobState::kNew) ++pending;
    if (j.rec.state == JobState::kRun || j.rec.state == JobState::kCleanup) ++running;
  }
  h_.respond(m, Json{{"submit", {{"enabled", submit_enabled_}, {"reason", submit_reason_}}},
                     {"sched", {{"started", sched_started_}, {"reason", sched_reason_}}},
                     {"pending", pending},
                     {"running", running},
                     {"scheduler", sched_ready_       ? "ready"
                                   : sched_connected_ ? "connected"
                                                      : "absent"}});
}

void JobManager::Impl::queue_control(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto action = get_string(*p, "action");
  if (!action.ok()) return h_.respond_error(m, action.error());
  auto reason = get_string(*p, "reason", "");
  if (!reason.ok()) return h_.respond_error(m, reason.error());
  if (*action == "enable") {
    submit_enabled_ = true;
    submit_reason_.clear();
  } else if (*action == "disable") {
    submit_enabled_ = false;
    submit_reason_ = *reason;
  } else if (*action == "start") {
    sched_started_ = true;
    sched_reason_.clear();
    offer_pending();
  } else if (*action == "stop") {
    sched_started_ = false;
    sched_reason_ = *reason;
    // Take back what the scheduler has not allocated yet.
    for (auto& [id, j] : jobs_) {
      if (j.alloc_pending && !j.cancel_sent) {
        h_.send_oneway("sched.cancel", dump_json(Json{{"id", id.value()}}));
        j.cancel_sent = true;
      }
    }
  } else {
    return h_.respond_error(m, EINVAL, "action must be enable, disable, start or stop, not " + *action);
  }
  // Answered once the new state is stored: a restart keeps it.
  store_queue();
  after_commit([this, m](const Error* e) {
    if (e) return h_.respond_error(m, e->code, "the queue's state could not be stored: " + e->text);
    h_.respond(m, "{}");
  });
}

void JobManager::Impl::queue_drain(const Message& m) {
  drain_waiters_.push_back(m);
  check_drain();
}

void JobManager::Impl::stats(const Message& m) {
  Json states = Json::object();
  for (JobState s : {JobState::kNew, JobState::kDepend, JobState::kPriority, JobState::kSched, JobState::kRun,
                     JobState::kCleanup, JobState::kInactive}) {
    states[job_state_name(s)] = jobs_in_state_[state_slot(s)];
  }
#ifndef NDEBUG
  // The counts against a walk of every job, in the debug (sanitizer) build.
  std::array<uint64_t, 7> walked{};
  for (auto& [id, j] : jobs_) ++walked[state_slot(j.rec.state)];
  LOOM_ASSERT(walked == jobs_in_state_);
#endif
  Json bad = Json::array();
  for (auto& b : bad_) bad.push_back(Json{{"id", b.name}, {"error", b.error}});
  h_.respond(m, Json{{"states", states},
                     {"total", jobs_.size()},
                     {"bad", bad},
                     {"submitted_total", submitted_total_},
                     {"completed_total", completed_total_},
                     {"journals", journals_.size()},
                     {"wait_seconds", histogram_json(wait_seconds_)},
                     {"sched_latency_seconds", histogram_json(sched_seconds_)}});
}

}  // namespace loom
