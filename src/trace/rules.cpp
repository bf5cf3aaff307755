// The rules of docs/simulator.md, "Traces", the summary line, and reading a
// file through zlib (which passes plain files through as they are).
#include "trace/rules.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace loom::trace {
namespace detail {

namespace {

enum class Verdict { kKeep, kDrop };

// One job through the rules; counts what it did. The order of the drop
// tests decides only under which reason a job is counted.
Verdict judge(Job& job, int64_t machine, Filter filter, Tally& t) {
  const SwfRecord& r = job.swf;
  const bool strong = filter == Filter::kStrong;
  // Size: field 8, field 5 when 8 is missing (the published convention;
  // the strong filter's "take the other" is the same choice).
  job.procs = r.req_procs > 0 ? r.req_procs : r.alloc_procs;
  if (machine > 0 && (strong ? (r.alloc_procs > machine || r.req_procs > machine) : job.procs > machine)) {
    ++t.larger_than_machine;
    return Verdict::kDrop;
  }
  if (job.procs <= 0) {
    ++t.without_size;
    return Verdict::kDrop;
  }
  if (job.submit < 0) {
    ++t.without_submit;
    return Verdict::kDrop;
  }
  if (strong ? job.run <= 0 : job.run < 0) {
    ++t.without_run;
    return Verdict::kDrop;
  }
  if (strong) {
    if (r.req_time <= 0) {
      ++t.without_requested;
      return Verdict::kDrop;
    }
    job.requested_time = r.req_time;
    if (job.run > job.requested_time) {
      job.run = job.requested_time;
      ++t.run_cut;
    }
    return Verdict::kKeep;
  }
  if (r.req_time <= 0) {
    // LANL, NASA: no estimate; the job asks for what it used (at least a
    // second, so that a duration is never 0).
    job.requested_time = std::max(job.run, 1.0);
    ++t.requested_from_run;
  } else {
    job.requested_time = r.req_time;
    if (job.run > job.requested_time) ++t.ran_longer;
  }
  return Verdict::kKeep;
}

void append_count(std::string& out, bool& first, int64_t n, std::string_view what) {
  if (n == 0) return;
  out += first ? "" : ", ";
  first = false;
  out += std::to_string(n);
  out += ' ';
  out += what;
}

void append_change(std::string& out, bool& first, int64_t n, std::string_view what) {
  if (n == 0) return;
  out += first ? "" : "; ";
  first = false;
  out += what;
  out += ": ";
  out += std::to_string(n);
}

}  // namespace

void apply_rules(std::vector<Job>& jobs, int64_t machine, Filter filter, Tally& tally) {
  tally.read += static_cast<int64_t>(jobs.size());
  auto removed = std::remove_if(jobs.begin(), jobs.end(),
                                [&](Job& j) { return judge(j, machine, filter, tally) == Verdict::kDrop; });
  jobs.erase(removed, jobs.end());
  for (size_t i = 1; i < jobs.size(); ++i) {
    if (jobs[i].submit < jobs[i - 1].submit) ++tally.out_of_order;
    if (jobs[i].submit == jobs[i - 1].submit) ++tally.same_submit;
  }
  if (tally.out_of_order > 0) {
    std::stable_sort(jobs.begin(), jobs.end(), [](const Job& a, const Job& b) { return a.submit < b.submit; });
  }
}

std::string summarize(const Tally& t, int64_t kept, Filter filter, std::string_view machine_note) {
  const bool strong = filter == Filter::kStrong;
  std::string s =
      "read " + std::to_string(t.read) + (t.read == 1 ? " job, kept " : " jobs, kept ") + std::to_string(kept);
  if (strong) s += " (strong filter)";
  s += ": dropped " + std::to_string(t.dropped());
  if (t.dropped() > 0) {
    s += " (";
    bool first = true;
    append_count(s, first, t.larger_than_machine, "larger than the machine");
    append_count(s, first, t.without_size, "without a size");
    append_count(s, first, t.without_submit, "without a submit time");
    append_count(s, first, t.without_run, strong ? "with run time <= 0" : "without a run time");
    append_count(s, first, t.without_requested, "with requested time <= 0");
    s += ')';
  }
  s += ", changed " + std::to_string(t.changed());
  if (t.changed() > 0) {
    s += " (";
    bool first = true;
    append_change(s, first, t.run_cut, "run time cut to the requested time");
    append_change(s, first, t.requested_from_run, "no requested time, run time used");
    append_change(s, first, t.run_from_requested, "profile without a delay, walltime used as run time");
    s += ')';
  }
  if (t.ran_longer > 0) {
    s += ", " + std::to_string(t.ran_longer) + " ran longer than requested (kept: timed out at their limit)";
  }
  if (t.out_of_order > 0) {
    s += "; sorted by submit time (" + std::to_string(t.out_of_order) + " out of order)";
  } else {
    s += "; in submit order";
  }
  if (t.same_submit > 0) {
    s += " (" + std::to_string(t.same_submit) + " submitted at the same time as the one before, file order kept)";
  }
  if (t.renumbered) s += "; string ids renumbered 1.." + std::to_string(t.read) + " in file order";
  if (!machine_note.empty()) {
    s += "; ";
    s += machine_note;
  }
  return s;
}

Status check_unique_ids(const std::vector<Job>& jobs, const std::string& name, bool lines) {
  // Logs number their jobs in file order: one pass proves them unique.
  bool increasing = true;
  for (size_t i = 1; i < jobs.size() && increasing; ++i) increasing = jobs[i].id > jobs[i - 1].id;
  if (increasing) return {};
  std::vector<std::pair<int64_t, int64_t>> ids;  // (id, line)
  ids.reserve(jobs.size());
  for (const Job& j : jobs) ids.emplace_back(j.id, j.line);
  std::sort(ids.begin(), ids.end());
  for (size_t i = 1; i < ids.size(); ++i) {
    if (ids[i].first != ids[i - 1].first) continue;
    std::string id = std::to_string(ids[i].first);
    if (!lines) {
      return Error{EINVAL, name + ": jobs " + std::to_string(ids[i - 1].second) + " and " +
                               std::to_string(ids[i].second) + " both have id " + id};
    }
    return Error{EINVAL, name + ":" + std::to_string(ids[i].second) + ": job " + id + " again (first on line " +
                             std::to_string(ids[i - 1].second) + ")"};
  }
  return {};
}

}  // namespace detail

std::optional<Filter> parse_filter(std::string_view text) {
  if (text == "none") return Filter::kNone;
  if (text == "strong") return Filter::kStrong;
  return std::nullopt;
}

Result<std::string> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error{errno, path + ": " + std::strerror(errno)};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    int e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
    ::close(fd);
    return Error{e, path + (e == EISDIR ? ": is a directory" : ": not a regular file")};
  }
  gzFile gz = ::gzdopen(fd, "rb");  // owns fd from here
  if (gz == nullptr) {
    ::close(fd);
    return Error{ENOMEM, path + ": cannot read (zlib)"};
  }
  ::gzbuffer(gz, 1 << 18);
  std::string text;
  // Plain files: their size; gzip: a first guess (logs shrink about 8
  // times), grown as it goes. gzdirect reads the first bytes to tell.
  int64_t guess = ::gzdirect(gz) ? st.st_size + 1 : st.st_size * 8 + 4096;
  text.reserve(static_cast<size_t>(std::min<int64_t>(guess, kMaxFileBytes)));
  constexpr size_t kChunk = 1 << 20;
  for (;;) {
    size_t old = text.size();
    if (static_cast<int64_t>(old) >= kMaxFileBytes) {
      ::gzclose(gz);
      return Error{EFBIG, path + ": more than " + std::to_string(kMaxFileBytes >> 30) + " GiB"};
    }
    text.resize(old + kChunk);
    int n = ::gzread(gz, text.data() + old, static_cast<unsigned>(kChunk));
    if (n < 0) {
      int err = 0;
      std::string what = ::gzerror(gz, &err);
      if (err == Z_ERRNO) what = std::strerror(errno);
      ::gzclose(gz);
      return Error{EIO, path + ": not a readable gzip file: " + what};
    }
    text.resize(old + static_cast<size_t>(n));
    if (n == 0) break;
  }
  int err = 0;
  std::string what = ::gzerror(gz, &err);
  ::gzclose(gz);
  // zlib reports a gzip that ends early as Z_BUF_ERROR after the last read.
  if (err == Z_BUF_ERROR) return Error{EIO, path + ": truncated gzip file (" + what + ")"};
  if (err != Z_OK) return Error{EIO, path + ": not a readable gzip file: " + what};
  return text;
}

namespace {

bool ends_with_json(const std::string& path) { return path.ends_with(".json") || path.ends_with(".json.gz"); }

bool looks_like_json(std::string_view text) {
  size_t i = text.find_first_not_of(" \t\r\n");
  return i != std::string_view::npos && text[i] == '{';
}

}  // namespace

Result<Workload> read_swf(const std::string& path, Filter filter) {
  auto text = read_file(path);
  if (!text) return text.error();
  return parse_swf(*text, path, filter);
}

Result<Workload> read_batsim(const std::string& path, Filter filter) {
  auto text = read_file(path);
  if (!text) return text.error();
  return parse_batsim(*text, path, filter);
}

Result<Workload> read_trace(const std::string& path, Filter filter) {
  auto text = read_file(path);
  if (!text) return text.error();
  if (ends_with_json(path) || looks_like_json(*text)) return parse_batsim(*text, path, filter);
  return parse_swf(*text, path, filter);
}

}  // namespace loom::trace
