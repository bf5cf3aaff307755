// Workload traces for the simulator: the Standard Workload Format (SWF) of
// the Parallel Workloads Archive and Batsim's JSON workloads, read into one
// list of jobs ready to replay, sorted by submit time.
//
// Pure: reads one file (gzip or plain), sends no messages, reads no clock,
// throws nothing. Every rule (which jobs are dropped, which are changed,
// the strong filter, what is an error) is in docs/simulator.md, "Traces"; the
// reader says what it did in one summary line (Workload::summary), e.g.
//
//   read 28476 jobs, kept 28467 (strong filter): dropped 9 (8 with run time <= 0,
//   1 without a size), changed 475 (run time cut to the requested time: 475);
//   in submit order (332 submitted at the same time as the one before)
//
// (one line; wrapped here). Bad input (a missing or empty file, a truncated
// gzip, a line that is not 18 numbers, a negative value other than -1, a
// number too large) is an Error whose text is one line, `FILE:LINE: what`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace loom::trace {

// One SWF record as the file holds it (-1: unknown). Batsim jobs fill
// submit, run (the profile's delay), req_procs (res) and req_time
// (walltime) and leave the rest -1.
struct SwfRecord {
  int64_t job = -1;            // 1  job number
  double submit = -1;          // 2  submit time, s since the log's start
  double wait = -1;            // 3  wait time, s
  double run = -1;             // 4  run time, s
  int64_t alloc_procs = -1;    // 5  allocated processors
  double avg_cpu = -1;         // 6  average CPU time used, s
  double used_memory = -1;     // 7  used memory, KB per processor
  int64_t req_procs = -1;      // 8  requested processors
  double req_time = -1;        // 9  requested time, s
  double req_memory = -1;      // 10 requested memory, KB per processor
  int64_t status = -1;         // 11 1 completed, 0 failed, 5 cancelled...
  int64_t user = -1;           // 12
  int64_t group = -1;          // 13
  int64_t executable = -1;     // 14
  int64_t queue = -1;          // 15
  int64_t partition = -1;      // 16
  int64_t preceding_job = -1;  // 17
  double think_time = -1;      // 18 s after the preceding job
};

// One job as the simulator runs it, after the rules.
struct Job {
  int64_t id = 0;             // SWF field 1; Batsim's id (or its place, see `name`)
  std::string name;           // Batsim: the id as written; SWF: empty
  double submit = 0;          // s since the trace's start, >= 0
  double run = 0;             // s, >= 0 (may exceed requested_time: see Workload)
  double requested_time = 0;  // s, > 0: the jobspec's duration
  int64_t procs = 0;          // processors, 1..Header::max_procs
  int64_t line = 0;           // SWF: line in the file; Batsim: 1 + place in `jobs`
  SwfRecord swf;              // the record as read, before the rules
};

struct Header {
  // The machine's processors as used to drop jobs larger than it: MaxProcs
  // (its leading number when the line holds text), else MaxNodes, else the
  // largest job (summary says which). Batsim: nb_res.
  int64_t max_procs = 0;
  std::optional<int64_t> max_nodes;    // MaxNodes; Batsim: nb_res
  std::optional<int64_t> max_records;  // MaxRecords
  std::optional<int64_t> unix_start_time;
  std::string time_zone_string;  // TimeZoneString, e.g. Europe/Stockholm
  // Every `; Key: value` line in file order (Batsim: top-level strings).
  std::vector<std::pair<std::string, std::string>> keys;
};

// What the rules did, counted; Workload::summary says it in words.
struct Tally {
  int64_t read = 0;  // job records in the file
  // dropped (each job counted once, under the first reason in this order)
  int64_t larger_than_machine = 0;
  int64_t without_size = 0;       // fields 5 and 8 both <= 0
  int64_t without_submit = 0;     // submit < 0
  int64_t without_run = 0;        // run < 0 (strong filter: <= 0)
  int64_t without_requested = 0;  // strong filter: requested time <= 0
  // changed (each job counted once)
  int64_t run_cut = 0;             // strong filter: run cut to requested
  int64_t requested_from_run = 0;  // no requested time: run time used
  int64_t run_from_requested = 0;  // Batsim: profile without a delay
  // kept as they are, counted
  int64_t ran_longer = 0;    // run > requested (no filter)
  int64_t out_of_order = 0;  // submit earlier than the record before it
  int64_t same_submit = 0;   // submit equal to the record before it (file order kept)
  bool renumbered = false;   // Batsim: string ids, renumbered 1..N in file order

  int64_t dropped() const {
    return larger_than_machine + without_size + without_submit + without_run + without_requested;
  }
  int64_t changed() const { return run_cut + requested_from_run + run_from_requested; }
};

struct Workload {
  Header header;
  std::vector<Job> jobs;  // sorted by submit time, stable (file order at equal times)
  Tally tally;
  std::string summary;  // one line: read, kept, dropped and changed, and why
};

enum class Filter {
  kNone,    // keep what can run; jobs that ran longer than requested stay so
  kStrong,  // the strong filter of docs/simulator.md, "Traces", exactly
};

// "none" or "strong" (the CLI's --filter); nullopt otherwise.
std::optional<Filter> parse_filter(std::string_view text);

// Reads an SWF file (gzip or plain).
Result<Workload> read_swf(const std::string& path, Filter filter = Filter::kNone);
// Reads a Batsim JSON workload (gzip or plain). The filter applies as to
// SWF (res as field 8, walltime as field 9, the profile's delay as run).
Result<Workload> read_batsim(const std::string& path, Filter filter = Filter::kNone);
// Batsim when the name ends in .json (or .json.gz) or the text begins
// with '{', SWF otherwise.
Result<Workload> read_trace(const std::string& path, Filter filter = Filter::kNone);

// The same from memory; `name` stands for the file in messages.
Result<Workload> parse_swf(std::string_view text, const std::string& name, Filter filter = Filter::kNone);
Result<Workload> parse_batsim(std::string_view text, const std::string& name, Filter filter = Filter::kNone);

// The whole file, gunzipped when it is gzip (plain files pass as they
// are); errors: missing, unreadable, a directory, a corrupt or truncated
// gzip, over kMaxFileBytes.
inline constexpr int64_t kMaxFileBytes = int64_t{4} << 30;
Result<std::string> read_file(const std::string& path);

}  // namespace loom::trace
