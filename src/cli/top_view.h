// What `loom top` shows (docs/commands.md, "loom top"), apart from the
// terminal: the active jobs as the job manager's journal reports them
// (docs/protocols/jobs.md, "Journal"), the scheduler's resource status and
// the queue's state, drawn as lines of text. Pure: no I/O, the time given,
// so that a test can feed it responses and read the lines.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "msg/json.h"

namespace loom::cli {

// The columns the job table can be sorted by, each with its key.
enum class TopSort : char {
  kId = 'i',
  kUser = 'u',
  kState = 's',
  kName = 'n',
  kNodes = 'N',
  kTasks = 'T',
  kTime = 't',
};

class TopView {
 public:
  // A response of job-manager.events: the first ({jobs, more}) replaces
  // every job, the parts after it while `more` add to them; each later
  // one ({id, event?, job?}) updates or drops one job.
  // False for a payload of neither form.
  bool apply_journal(const Json& payload);
  void set_resources(Json status) { resources_ = std::move(status); }
  void set_queue(Json status) { queue_ = std::move(status); }
  // From broker.info of rank 0, at wall time `now`.
  void set_instance(const Json& info, double now);

  // A key pressed: true if it changed the order (the sort keys above, and
  // 'r', which reverses it).
  bool press(char key);
  TopSort sort() const { return sort_; }
  bool reversed() const { return reversed_; }
  size_t job_count() const { return jobs_.size(); }
  // Whether every part of the first answer has come.
  bool has_all_jobs() const { return !in_snapshot_; }

  // The screen at wall time `now`, `rows` lines of at most `cols`
  // characters (0: as many as there are, uncut: a one-shot print). The
  // job table's heading line is the one at index heading_row().
  std::vector<std::string> render(double now, size_t rows, size_t cols) const;
  size_t heading_row() const { return heading_row_; }

 private:
  std::vector<const Json*> sorted_jobs(double now) const;
  std::map<uint64_t, Json> jobs_;  // active jobs by id
  bool in_snapshot_ = false;       // more parts of the active jobs follow
  Json resources_;
  Json queue_;
  uint32_t size_ = 0;
  double started_ = 0;  // when rank 0 started (wall time); 0: unknown
  TopSort sort_ = TopSort::kState;
  bool reversed_ = false;
  mutable size_t heading_row_ = 0;
};

// The footer's help: "q quit  sort: i id  u user ...".
std::string top_keys_help();

}  // namespace loom::cli
