// The job manager's journal, `job-manager.events` (docs/protocols/jobs.md,
// "Journal"; impl.h): what a live view such as `loom top` keeps its table
// up to date from, instead of listing every job again and again.
//
//   -> job-manager.events {} (streaming)
//   <- {jobs: [JOB, ...], more}              the active jobs, first, in parts
//                                            of at most 1,000 jobs and 8 MiB
//                                            (more: another follows)
//   <- {id, event: {timestamp, name, context?}, job?: JOB}
//   <- {id, job: JOB}                        a job changed without an event
//   ...                                      until events-cancel or disconnect
//   -> job-manager.events-cancel {matchtag}
//   <- ENODATA ends the stream; the cancel itself gets {}
//
// JOB is what job-manager.list gives for the job (describe()), as it is
// at the end of the loop turn its event was posted in. Users see only
// their own jobs' entries, the owner everyone's.
//
// The journal itself holds nothing between loop turns: each turn's events
// go out at its end. A client that does not read them is the broker's to
// bound: past its output limit for one client (docs/protocols/messages.md,
// "Limits") the broker drops that client with ENOBUFS, and its
// job-manager.disconnect ends the stream here.
#include <iterator>

#include "job_manager/impl.h"

namespace loom {

namespace {
constexpr size_t kJournalPart = 1000;
// Journals one client may hold open: each costs a walk of every job to
// open and a copy of every event it may see.
constexpr size_t kJournalsPerClient = 16;
}  // namespace

void JobManager::Impl::journal_open(const Message& m) {
  if (!m.has_flag(msgflag::kStreaming)) return h_.respond_error(m, EPROTO, "job-manager.events must be streaming");
  if (m.matchtag == 0) return h_.respond_error(m, EPROTO, "job-manager.events needs a matchtag");
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto key = std::make_pair(m.sender(), m.matchtag);
  if (journals_.count(key)) return h_.respond_error(m, EEXIST, "that matchtag already has a journal");
  auto [first, last] = client_journals(m.sender());
  auto open = static_cast<size_t>(std::distance(first, last));
  if (open >= kJournalsPerClient) {
    return h_.respond_error(m, EAGAIN,
                            "this client has " + std::to_string(open) + " journals open already; cancel one first");
  }
  // In parts, so that a long queue never makes a message near the frame
  // limit (docs/protocols/messages.md): `more` says another part follows.
  Json jobs = Json::array();
  size_t bytes = 0;
  for (auto& [id, j] : jobs_) {
    if (!is_active(j.rec.state) || !may_touch(m, j.rec.userid)) continue;
    Json d = describe(j);
    size_t b = dump_json_bound(d);
    if (jobs.size() == kJournalPart || (!jobs.empty() && bytes + b > kListPartBytes)) {
      h_.respond(m, Json{{"jobs", std::move(jobs)}, {"more", true}});
      jobs = Json::array();
      bytes = 0;
    }
    bytes += b;
    jobs.push_back(std::move(d));
  }
  h_.respond(m, Json{{"jobs", std::move(jobs)}, {"more", false}});
  journals_.emplace(key, m);
}

void JobManager::Impl::journal_cancel(const Message& m) {
  auto p = payload_object(m);
  if (!p.ok()) return h_.respond_error(m, p.error());
  auto tag = get_int(*p, "matchtag", 1, UINT32_MAX);
  if (!tag.ok()) return h_.respond_error(m, tag.error());
  auto it = journals_.find(std::make_pair(m.sender(), static_cast<uint32_t>(*tag)));
  if (it == journals_.end()) return h_.respond_error(m, ENOENT, "no such journal");
  h_.respond_error(it->second, ENODATA, "");
  journals_.erase(it);
  h_.respond(m, Json::object());
}

void JobManager::Impl::journal_disconnect(HopId sender) {
  auto [first, last] = client_journals(sender);
  journals_.erase(first, last);
}

// The journals of one client: a range of journals_, keyed (client, matchtag).
std::pair<JobManager::Impl::Journals::iterator, JobManager::Impl::Journals::iterator> JobManager::Impl::client_journals(
    HopId sender) {
  return {journals_.lower_bound(std::make_pair(sender, uint32_t{0})),
          journals_.upper_bound(std::make_pair(sender, UINT32_MAX))};
}

// A lost rank sends no disconnect for the clients it served: their
// journals end here (and a client of the restarted rank that is given the
// same route starts afresh).
void JobManager::Impl::journal_rank_lost(uint32_t rank) {
  std::erase_if(journals_, [rank](const auto& entry) { return hop_rank(entry.first.first) == rank; });
}

void JobManager::Impl::journal_note(const Job& j, const EventEntry* e) {
  if (journals_.empty()) return;
  JournalEntry entry{j.id, j.rec.userid, Json()};
  if (e) {
    // As the eventlog has it: no context when the event has none.
    entry.event = Json{{"timestamp", e->timestamp}, {"name", e->name}};
    if (!e->context.is_null()) entry.event["context"] = e->context;
  }
  journal_pending_.push_back(std::move(entry));
  journal_turn_.request();
}

void JobManager::Impl::journal_flush() {
  auto pending = std::move(journal_pending_);
  journal_pending_.clear();
  if (journals_.empty()) return;
  for (auto& e : pending) {
    Json out{{"id", e.id.value()}};
    if (!e.event.is_null()) out["event"] = std::move(e.event);
    // Described now, after every event of the turn: the latest word on it
    // (none once purged).
    if (auto it = jobs_.find(e.id); it != jobs_.end()) out["job"] = describe(it->second);
    std::string text = dump_json(out);
    for (auto& [key, req] : journals_) {
      if (may_touch(req, e.userid)) h_.respond(req, text);
    }
  }
}

}  // namespace loom
