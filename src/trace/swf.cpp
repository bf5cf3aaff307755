// The Standard Workload Format: header lines `; Key: value`, then one job
// per line as 18 whitespace-separated numbers (-1: unknown). One pass over
// the text with std::from_chars; the rules come after (rules.cpp).
//
// Errors (the whole read fails, naming the line): a job line without
// exactly 18 fields, a field that is not a number, inf or nan, a negative
// value other than -1 in a field the simulator reads (1, 2, 4, 5, 8, 9;
// the others are stored as they are), a time over kMaxSeconds or a
// processor count over kMaxProcs, a job number seen before. Dropped and
// counted instead: what the rules drop (a size, run or submit time of -1,
// jobs larger than the machine).
#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>

#include "base/quote.h"
#include "trace/rules.h"
#include "trace/trace.h"

namespace loom::trace {
namespace {

constexpr int kFields = 18;
using detail::kMaxSeconds;
constexpr int64_t kMaxProcs = 1'000'000'000;

constexpr std::array<const char*, kFields> kFieldNames = {"job number",
                                                          "submit time",
                                                          "wait time",
                                                          "run time",
                                                          "allocated processors",
                                                          "average CPU time",
                                                          "used memory",
                                                          "requested processors",
                                                          "requested time",
                                                          "requested memory",
                                                          "status",
                                                          "user",
                                                          "group",
                                                          "executable",
                                                          "queue",
                                                          "partition",
                                                          "preceding job",
                                                          "think time"};

enum class Kind { kInt, kSeconds, kProcs, kNumber };
// Which fields the simulator reads (strict: -1 or >= 0) and their bounds.
struct FieldRule {
  Kind kind;
  bool strict;
};
constexpr std::array<FieldRule, kFields> kRules = {{
    {Kind::kInt, true},      // 1 job number
    {Kind::kSeconds, true},  // 2 submit
    {Kind::kNumber, false},  // 3 wait
    {Kind::kSeconds, true},  // 4 run
    {Kind::kProcs, true},    // 5 allocated processors
    {Kind::kNumber, false},  // 6 average CPU time
    {Kind::kNumber, false},  // 7 used memory
    {Kind::kProcs, true},    // 8 requested processors
    {Kind::kSeconds, true},  // 9 requested time
    {Kind::kNumber, false},  // 10 requested memory
    {Kind::kInt, false},     // 11 status
    {Kind::kInt, false},     // 12 user
    {Kind::kInt, false},     // 13 group
    {Kind::kInt, false},     // 14 executable
    {Kind::kInt, false},     // 15 queue
    {Kind::kInt, false},     // 16 partition
    {Kind::kInt, false},     // 17 preceding job
    {Kind::kNumber, false},  // 18 think time
}};

inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

Error bad_line(const std::string& name, int64_t line, const std::string& what) {
  return Error{EINVAL, name + ":" + std::to_string(line) + ": " + what};
}

std::string field_label(int i) { return "field " + std::to_string(i + 1) + " (" + kFieldNames[i] + ")"; }

// One field into its slot: int64 for counts and ids, double for times and
// memory. Returns an empty string, or what is wrong.
std::string parse_field(int i, std::string_view tok, int64_t& as_int, double& as_double) {
  const FieldRule rule = kRules[i];
  const char* first = tok.data();
  const char* last = tok.data() + tok.size();
  if (rule.kind == Kind::kInt || rule.kind == Kind::kProcs) {
    auto [p, ec] = std::from_chars(first, last, as_int);
    if (ec == std::errc::result_out_of_range) return field_label(i) + ": " + quote_input(tok, 40) + " is too large";
    if (ec != std::errc() || p != last) return field_label(i) + ": " + quote_input(tok, 40) + " is not an integer";
    if (rule.strict && as_int < 0 && as_int != -1) {
      return field_label(i) + ": " + std::to_string(as_int) + " is negative (only -1, unknown, may be)";
    }
    if (i == 0 && as_int < 0) return field_label(i) + ": must not be negative";
    if (rule.kind == Kind::kProcs && as_int > kMaxProcs) {
      return field_label(i) + ": " + std::to_string(as_int) + " is too large (more than " + std::to_string(kMaxProcs) +
             ")";
    }
    return {};
  }
  auto [p, ec] = std::from_chars(first, last, as_double);
  if (ec == std::errc::result_out_of_range) return field_label(i) + ": " + quote_input(tok, 40) + " is out of range";
  if (ec != std::errc() || p != last || !std::isfinite(as_double)) {
    return field_label(i) + ": " + quote_input(tok, 40) + " is not a number";
  }
  if (rule.strict && as_double < 0 && as_double != -1) {
    return field_label(i) + ": " + quote_input(tok, 40) + " is negative (only -1, unknown, may be)";
  }
  if (rule.kind == Kind::kSeconds && as_double > kMaxSeconds) {
    return field_label(i) + ": " + quote_input(tok, 40) + " s is too large (more than 1e10 s)";
  }
  return {};
}

void store(SwfRecord& r, int i, int64_t v, double d) {
  switch (i) {
    case 0: r.job = v; break;
    case 1: r.submit = d; break;
    case 2: r.wait = d; break;
    case 3: r.run = d; break;
    case 4: r.alloc_procs = v; break;
    case 5: r.avg_cpu = d; break;
    case 6: r.used_memory = d; break;
    case 7: r.req_procs = v; break;
    case 8: r.req_time = d; break;
    case 9: r.req_memory = d; break;
    case 10: r.status = v; break;
    case 11: r.user = v; break;
    case 12: r.group = v; break;
    case 13: r.executable = v; break;
    case 14: r.queue = v; break;
    case 15: r.partition = v; break;
    case 16: r.preceding_job = v; break;
    case 17: r.think_time = d; break;
    default: break;
  }
}

// A header value's leading integer ("93312", "1024 (but ...)"): nullopt
// when it does not begin with one; `rest` tells whether text followed.
std::optional<int64_t> leading_int(std::string_view value, bool& rest) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc()) return std::nullopt;
  rest = p != value.data() + value.size();
  return v;
}

// What the header said about the machine, for the rules and the summary.
struct MachineLines {
  std::optional<std::string> max_procs_text;  // first MaxProcs value
  std::optional<std::string> max_nodes_text;
};

// `; Key: value` (a key is letters, digits and '_' right before ": " or
// the line's end). Other comment lines (continuations, ";") return false.
bool header_key(std::string_view body, std::string_view& key, std::string_view& value) {
  body = trim(body);
  size_t k = 0;
  while (k < body.size() && (std::isalnum(static_cast<unsigned char>(body[k])) || body[k] == '_')) ++k;
  if (k == 0 || k >= body.size() || body[k] != ':') return false;
  if (k + 1 < body.size() && !is_space(body[k + 1])) return false;  // "http://..."
  key = body.substr(0, k);
  value = trim(body.substr(k + 1));
  return true;
}

}  // namespace

Result<Workload> parse_swf(std::string_view text, const std::string& name, Filter filter) {
  if (text.empty()) return Error{EINVAL, name + ": empty file"};
  Workload w;
  MachineLines machine_lines;
  std::vector<Job> jobs;
  jobs.reserve(text.size() / 64);
  int64_t line_no = 0;
  int64_t header_lines = 0;
  size_t pos = 0;
  std::array<std::string_view, kFields> tok;
  while (pos < text.size()) {
    const char* nl = static_cast<const char*>(std::memchr(text.data() + pos, '\n', text.size() - pos));
    size_t end = nl != nullptr ? static_cast<size_t>(nl - text.data()) : text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;

    size_t i = 0;
    while (i < line.size() && is_space(line[i])) ++i;
    if (i == line.size()) continue;  // blank
    if (line[i] == ';') {
      ++header_lines;
      std::string_view key, value;
      if (!header_key(line.substr(i + 1), key, value)) continue;
      w.header.keys.emplace_back(std::string(key), std::string(value));
      bool rest = false;
      if (key == "MaxProcs" && !machine_lines.max_procs_text) {
        machine_lines.max_procs_text = std::string(value);
      } else if (key == "MaxNodes" && !machine_lines.max_nodes_text) {
        machine_lines.max_nodes_text = std::string(value);
      } else if (key == "MaxRecords" && !w.header.max_records) {
        w.header.max_records = leading_int(value, rest);
      } else if (key == "UnixStartTime" && !w.header.unix_start_time) {
        w.header.unix_start_time = leading_int(value, rest);
      } else if (key == "TimeZoneString" && w.header.time_zone_string.empty()) {
        w.header.time_zone_string = std::string(value);
      }
      continue;
    }

    int n = 0;
    while (i < line.size()) {
      size_t start = i;
      while (i < line.size() && !is_space(line[i])) ++i;
      if (n < kFields) tok[n] = line.substr(start, i - start);
      ++n;
      while (i < line.size() && is_space(line[i])) ++i;
    }
    if (n != kFields) {
      return bad_line(name, line_no,
                      std::to_string(n) + (n == 1 ? " field" : " fields") +
                          ", an SWF job line has 18: " + quote_input(trim(line), 60));
    }
    Job job;
    job.line = line_no;
    for (int f = 0; f < kFields; ++f) {
      int64_t v = -1;
      double d = -1;
      std::string what = parse_field(f, tok[f], v, d);
      if (!what.empty()) return bad_line(name, line_no, what);
      store(job.swf, f, v, d);
    }
    job.id = job.swf.job;
    job.submit = job.swf.submit;
    job.run = job.swf.run;
    jobs.push_back(std::move(job));
  }
  if (jobs.empty()) {
    return Error{EINVAL, name + ": no jobs (" + std::to_string(header_lines) + " header lines, no job line)"};
  }

  // The machine: MaxProcs, else MaxNodes, else the largest job.
  std::string note;
  int64_t machine = 0;
  auto from_header = [&](const std::optional<std::string>& text_value, const char* key) -> int64_t {
    if (!text_value) return 0;
    bool rest = false;
    auto v = leading_int(*text_value, rest);
    if (!v || *v <= 0 || *v > kMaxProcs) {
      note += std::string(note.empty() ? "" : ", ") + key + " " + quote_input(*text_value, 80) +
              " is not a processor count";
      return 0;
    }
    if (rest)
      note += std::string(note.empty() ? "" : ", ") + key + " " + quote_input(*text_value, 80) + " read as " +
              std::to_string(*v);
    return *v;
  };
  machine = from_header(machine_lines.max_procs_text, "MaxProcs");
  int64_t nodes = from_header(machine_lines.max_nodes_text, "MaxNodes");
  if (nodes > 0) w.header.max_nodes = nodes;
  if (machine == 0 && nodes > 0) {
    machine = nodes;
    note += std::string(note.empty() ? "" : ": ") + (machine_lines.max_procs_text ? "" : "no MaxProcs: ") +
            "machine of " + std::to_string(machine) + " processors from MaxNodes";
  }

  detail::apply_rules(jobs, machine, filter, w.tally);
  if (machine == 0) {
    for (const Job& j : jobs) machine = std::max(machine, j.procs);
    note += std::string(note.empty() ? "" : ": ") + (machine_lines.max_procs_text ? "" : "no MaxProcs or MaxNodes: ") +
            "machine of " + std::to_string(machine) + " processors, the largest job";
  }
  w.header.max_procs = machine;
  w.summary = detail::summarize(w.tally, static_cast<int64_t>(jobs.size()), filter, note);
  if (jobs.empty()) return Error{EINVAL, name + ": no job left: " + w.summary};
  if (auto ok = detail::check_unique_ids(jobs, name, true); !ok) return ok.error();
  w.jobs = std::move(jobs);
  return w;
}

}  // namespace loom::trace
