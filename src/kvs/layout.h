// The KVS layout: every key and namespace name the services and `loom`
// read or write, spelled here once (docs/kvs-layout.md describes each: who
// writes it, who reads it, its format, when it appears and goes away).
//
// Header only and below every service (it needs only base/), so that the
// job manager, the scheduler, job-exec, the shells and the CLI can all
// name the same keys without depending on the kvs service.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <string>
#include <string_view>

#include "base/fluid.h"

namespace loom::kvs_key {

// --- namespaces ---

// The instance owner's namespace, the default of every request.
inline constexpr const char* kPrimaryNamespace = "primary";

// A job's guest namespace, "job-ID" (ID in decimal): its user's, where its
// shells write while it runs; job-exec creates it, links it into
// job.ID.guest at the job's end and removes it.
inline std::string guest_namespace(JobId id) { return "job-" + std::to_string(id.value()); }

// --- the primary namespace ---

// The directory of every job, one entry per job named by its id in decimal.
inline constexpr const char* kJobDir = "job";

// The leaves of a job's directory, as job-info.lookup names them too.
inline constexpr const char* kEventlog = "eventlog";  // RFC 18, the job manager's
inline constexpr const char* kJobspec = "jobspec";    // RFC 25 JSON, as submitted
inline constexpr const char* kR = "R";                // RFC 20 JSON, the scheduler's
inline constexpr const char* kGuest = "guest";        // the guest namespace's linked copy
inline constexpr const char* kGuestOutput = "guest.output";
inline constexpr const char* kGuestExecEventlog = "guest.exec.eventlog";

// "job.ID": a job's directory (unlinked whole when it is purged).
inline std::string job_dir(JobId id) { return std::string(kJobDir) + "." + std::to_string(id.value()); }
// "job.NAME.LEAF" for an entry NAME of the job directory, as listed
// (not yet known to be a job id), written in one string: the job manager
// names one for every event it posts.
inline std::string job_leaf(std::string_view name, std::string_view leaf) {
  constexpr std::string_view dir = kJobDir;
  std::string k(dir.size() + 1 + name.size() + 1 + leaf.size(), '.');  // the dots in place
  char* at = std::copy(dir.begin(), dir.end(), k.data()) + 1;
  at = std::copy(name.begin(), name.end(), at) + 1;
  std::copy(leaf.begin(), leaf.end(), at);
  return k;
}
// "job.ID.LEAF".
inline std::string job_leaf(JobId id, std::string_view leaf) {
  std::array<char, 20> digits{};  // any 64-bit id
  auto [end, ec] = std::to_chars(digits.data(), digits.data() + digits.size(), id.value());
  (void)ec;
  return job_leaf(std::string_view(digits.data(), static_cast<size_t>(end - digits.data())), leaf);
}

inline std::string job_eventlog(JobId id) { return job_leaf(id, kEventlog); }
inline std::string job_jobspec(JobId id) { return job_leaf(id, kJobspec); }
inline std::string job_R(JobId id) { return job_leaf(id, kR); }
inline std::string job_guest(JobId id) { return job_leaf(id, kGuest); }
inline std::string job_guest_output(JobId id) { return job_leaf(id, kGuestOutput); }
inline std::string job_guest_exec_eventlog(JobId id) { return job_leaf(id, kGuestExecEventlog); }

// The job manager's queue state: {submit: {enabled, reason}, sched:
// {started, reason}}.
inline constexpr const char* kJobManagerQueue = "job-manager.queue";
// The job manager's id epoch (milliseconds, decimal), fixed at first start.
inline constexpr const char* kJobManagerEpoch = "job-manager.epoch";

// Drained ranks and why: {"RANK": {reason, timestamp}, ...}.
inline constexpr const char* kResourceDrain = "resource.drain";
// What each rank's host last reported: {"RANK": {host, cores, gpus}}.
inline constexpr const char* kResourceInventory = "resource.inventory";

// --- a job's guest namespace ---

// The shells' output eventlog (RFC 24 entries, src/shell/output.h).
inline constexpr const char* kOutput = "output";
// The tasks' input eventlog, written by `loom run` and `loom job attach`
// (src/shell/input.h).
inline constexpr const char* kInput = "input";
// The shells' PMI exchange: one JSON line per shell and barrier, or an
// abort (src/shell/pmi_server.h, docs/pmi.md).
inline constexpr const char* kPmi = "pmi";
// Keys under `exec` are written only by the instance (the kvs service
// refuses the user): job-exec's record, which it trusts after a restart.
inline constexpr const char* kExecDir = "exec";
// job-exec's exec eventlog of the job.
inline constexpr const char* kExecEventlog = "exec.eventlog";

}  // namespace loom::kvs_key
