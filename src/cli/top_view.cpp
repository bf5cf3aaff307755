// loom top's screen, drawn from the journal's jobs (top_view.h).
#include "cli/top_view.h"

#include <algorithm>
#include <cstdio>

#include "cli/common.h"
#include "cli/jobs_fields.h"

namespace loom::cli {

namespace {

// Columns a UTF-8 string takes (one per code point: ids begin with ƒ).
size_t columns(const std::string& s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

// `s` cut to `width` columns (never inside a code point).
std::string cut(const std::string& s, size_t width) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((s[i] & 0xC0) != 0x80 && n++ == width) return s.substr(0, i);
  }
  return s;
}

// `s` left-aligned in `width` columns (cut if longer); right-aligned with `right`.
std::string pad(const std::string& s, size_t width, bool right = false) {
  std::string c = cut(s, width);
  std::string fill(width - columns(c), ' ');
  return right ? fill + c : c + fill;
}

std::string field(const Json& j, const char* name, double now) {
  auto v = job_field(j, name, now);
  if (!v.ok()) return "";
  if (v->kind == FieldValue::Kind::kInt) return std::to_string(v->i);
  return v->s;
}

// j[a][b] when it is of dflt's type, else dflt.
Json member(const Json& j, const char* a, const char* b, Json dflt) {
  if (!j.is_object() || !j.contains(a) || !j[a].is_object() || !j[a].contains(b)) return dflt;
  const Json& v = j[a][b];
  return v.type() == dflt.type() ? v : dflt;
}

// Running (and cleaning up) first, then the pending ones by how near they
// are to running.
int state_rank(const std::string& st) {
  static const char* kOrder[] = {"RUN", "CLEANUP", "SCHED", "PRIORITY", "DEPEND", "NEW"};
  for (int i = 0; i < 6; ++i) {
    if (st == kOrder[i]) return i;
  }
  return 6;
}

bool is_running(const Json& j) {
  std::string st = j.value("state", "");
  return st == "RUN" || st == "CLEANUP";
}

// Run time for running jobs, time waited so far for pending ones.
double time_of_job(const Json& j, double now) {
  if (is_running(j)) return std::max(0.0, now - j.value("t_run", now));
  return std::max(0.0, now - j.value("t_submit", now));
}

std::string bar(uint64_t used, uint64_t total, size_t width) {
  size_t fill = total == 0 ? 0 : static_cast<size_t>((used * width + total - 1) / total);
  return "[" + std::string(std::min(fill, width), '|') + std::string(width - std::min(fill, width), ' ') + "]";
}

std::string duration_text(double secs) {
  auto s = static_cast<uint64_t>(secs);
  char buf[64];
  if (s >= 86400) {
    std::snprintf(buf, sizeof buf, "%llud%02lluh", static_cast<unsigned long long>(s / 86400),
                  static_cast<unsigned long long>(s % 86400 / 3600));
  } else if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lluh%02llum", static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s % 3600 / 60));
  } else {
    std::snprintf(buf, sizeof buf, "%llum%02llus", static_cast<unsigned long long>(s / 60),
                  static_cast<unsigned long long>(s % 60));
  }
  return buf;
}

const char* sort_name(TopSort s) {
  switch (s) {
    case TopSort::kId: return "id";
    case TopSort::kUser: return "user";
    case TopSort::kState: return "state";
    case TopSort::kName: return "name";
    case TopSort::kNodes: return "nodes";
    case TopSort::kTasks: return "tasks";
    case TopSort::kTime: return "time";
  }
  return "?";
}

}  // namespace

std::string top_keys_help() {
  return "q quit  sort: i id  u user  s state  n name  N nodes  T tasks  t time  r reverse";
}

bool TopView::apply_journal(const Json& p) {
  if (!p.is_object()) return false;
  if (auto it = p.find("jobs"); it != p.end() && it->is_array()) {
    // The first part of the active jobs replaces the table; those after
    // it (`more` in the one before) add to it.
    if (!in_snapshot_) jobs_.clear();
    in_snapshot_ = p.value("more", false);
    for (const auto& j : *it) {
      if (j.is_object() && j.contains("id") && j["id"].is_number_integer() && j["id"].get<int64_t>() >= 0) {
        jobs_[j["id"].get<uint64_t>()] = j;
      }
    }
    return true;
  }
  auto id = p.find("id");
  if (id == p.end() || !id->is_number_integer() || id->get<int64_t>() < 0) return false;
  auto job = p.find("job");
  // Gone (purged), or no longer active: off the table.
  if (job == p.end() || !job->is_object() || job->value("state", "") == "INACTIVE") {
    jobs_.erase(id->get<uint64_t>());
  } else {
    jobs_[id->get<uint64_t>()] = *job;
  }
  return true;
}

void TopView::set_instance(const Json& info, double now) {
  size_ = info.value("size", uint32_t{0});
  if (info.contains("uptime") && info["uptime"].is_number()) started_ = now - info["uptime"].get<double>();
}

bool TopView::press(char key) {
  if (key == 'r') {
    reversed_ = !reversed_;
    return true;
  }
  for (TopSort s : {TopSort::kId, TopSort::kUser, TopSort::kState, TopSort::kName, TopSort::kNodes, TopSort::kTasks,
                    TopSort::kTime}) {
    if (key == static_cast<char>(s)) {
      sort_ = s;
      return true;
    }
  }
  return false;
}

std::vector<const Json*> TopView::sorted_jobs(double now) const {
  std::vector<const Json*> out;
  out.reserve(jobs_.size());
  for (const auto& [id, j] : jobs_) out.push_back(&j);
  auto key_less = [&](const Json* a, const Json* b) {
    switch (sort_) {
      case TopSort::kId: return false;
      case TopSort::kUser: return field(*a, "username", now) < field(*b, "username", now);
      case TopSort::kState: return state_rank(a->value("state", "")) < state_rank(b->value("state", ""));
      case TopSort::kName: return a->value("name", "") < b->value("name", "");
      case TopSort::kNodes: return a->value("nnodes", 0) > b->value("nnodes", 0);
      case TopSort::kTasks: return a->value("ntasks", 0) > b->value("ntasks", 0);
      case TopSort::kTime: return time_of_job(*a, now) > time_of_job(*b, now);
    }
    return false;
  };
  // Equal keys keep submit order (by id).
  std::stable_sort(out.begin(), out.end(),
                   [&](const Json* a, const Json* b) { return reversed_ ? key_less(b, a) : key_less(a, b); });
  if (reversed_ && sort_ == TopSort::kId) std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> TopView::render(double now, size_t rows, size_t cols) const {
  std::vector<std::string> lines;
  const size_t width = cols == 0 ? std::string::npos : cols;
  auto add = [&](const std::string& s) {
    std::string line = terminal_text(s);
    lines.push_back(width == std::string::npos ? line : cut(line, width));
  };

  // The instance and the queue.
  std::string head = "loom top  " + std::to_string(size_) + (size_ == 1 ? " rank" : " ranks");
  if (started_ > 0) head += "  up " + duration_text(now - started_);
  if (queue_.is_object()) {
    bool submit = member(queue_, "submit", "enabled", Json(true)).get<bool>();
    bool sched = member(queue_, "sched", "started", Json(true)).get<bool>();
    head += std::string("  queue: submit ") + (submit ? "enabled" : "disabled") + ", scheduling " +
            (sched ? "started" : "stopped");
    std::string why = member(queue_, "sched", "reason", Json("")).get<std::string>();
    if (!sched && !why.empty()) head += " (" + why + ")";
    head += "  scheduler " + queue_.value("scheduler", "?");
  }
  add(head);
  std::map<std::string, size_t> by_state;
  for (const auto& [id, j] : jobs_) ++by_state[j.value("state", "?")];
  size_t running = by_state["RUN"], cleanup = by_state["CLEANUP"];
  size_t pending = jobs_.size() - running - cleanup;
  std::string counts = "jobs: " + std::to_string(running) + " running, " + std::to_string(pending) + " pending";
  std::string detail;
  for (const char* st : {"SCHED", "PRIORITY", "DEPEND", "NEW"}) {
    if (by_state[st] > 0) detail += (detail.empty() ? "" : ", ") + std::to_string(by_state[st]) + " " + st;
  }
  if (!detail.empty()) counts += " (" + detail + ")";
  if (cleanup > 0) counts += ", " + std::to_string(cleanup) + " in cleanup";

  // Utilization: the whole instance, then one bar per rank.
  const Json* ranks = resources_.is_object() && resources_.contains("ranks") && resources_["ranks"].is_array()
                          ? &resources_["ranks"]
                          : nullptr;
  uint64_t used_c = 0, all_c = 0, used_g = 0, all_g = 0;
  if (ranks) {
    for (const auto& r : *ranks) {
      used_c += r.value("used_cores", uint64_t{0});
      all_c += r.value("ncores", uint64_t{0});
      used_g += r.value("used_gpus", uint64_t{0});
      all_g += r.value("ngpus", uint64_t{0});
    }
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "  cores %llu/%llu used  gpus %llu/%llu used", static_cast<unsigned long long>(used_c),
                static_cast<unsigned long long>(all_c), static_cast<unsigned long long>(used_g),
                static_cast<unsigned long long>(all_g));
  add(counts + (ranks ? buf : "  (no resource status)"));
  add("");
  size_t job_rows_min = 5;  // what the rank bars leave to the job table at least
  size_t rank_lines = ranks ? ranks->size() : 0;
  if (rows > 0) {
    size_t budget = rows > lines.size() + 3 + job_rows_min ? rows - lines.size() - 3 - job_rows_min : 0;
    rank_lines = std::min(rank_lines, budget);
  }
  if (ranks) {
    // When they do not all fit, the last line says how many are left out.
    size_t shown = 0, limit = rank_lines < ranks->size() && rank_lines > 0 ? rank_lines - 1 : rank_lines;
    for (const auto& r : *ranks) {
      if (shown == limit) break;
      uint64_t uc = r.value("used_cores", uint64_t{0}), nc = r.value("ncores", uint64_t{0});
      uint64_t ug = r.value("used_gpus", uint64_t{0}), ng = r.value("ngpus", uint64_t{0});
      std::snprintf(buf, sizeof buf, "rank %-5u %-14s %s %3llu/%-3llu cores", r.value("rank", 0u),
                    cut(r.value("host", ""), 14).c_str(), bar(uc, nc, 24).c_str(), static_cast<unsigned long long>(uc),
                    static_cast<unsigned long long>(nc));
      std::string line = buf;
      if (ng > 0) {
        std::snprintf(buf, sizeof buf, "  %s %llu/%llu gpus", bar(ug, ng, 8).c_str(),
                      static_cast<unsigned long long>(ug), static_cast<unsigned long long>(ng));
        line += buf;
      }
      line += "  " + r.value("state", "");
      add(line);
      ++shown;
    }
    if (shown < ranks->size()) add("  ... " + std::to_string(ranks->size() - shown) + " more ranks");
    add("");
  }

  // The jobs.
  std::string sort_desc = std::string("sorted by ") + sort_name(sort_) + (reversed_ ? ", reversed" : "");
  heading_row_ = lines.size();
  add(pad("JOBID", 13) + " " + pad("USER", 10) + " " + pad("STATE", 8) + " " + pad("NAME", 16) + " " +
      pad("NODES", 5, true) + " " + pad("TASKS", 5, true) + " " + pad("TIME", 12, true) + "  INFO  (" + sort_desc +
      ")");
  auto jobs = sorted_jobs(now);
  bool queue_stopped = queue_.is_object() && !member(queue_, "sched", "started", Json(true)).get<bool>();
  size_t room = rows == 0 ? jobs.size() : (rows > lines.size() + 1 ? rows - lines.size() - 1 : 0);
  size_t n = 0;
  for (const Json* j : jobs) {
    if (n + 1 == room && jobs.size() > room) {
      add("  ... " + std::to_string(jobs.size() - n) + " more jobs");
      break;
    }
    if (n == room) break;
    std::string tm = format_fsd(time_of_job(*j, now));
    std::string info;
    if (queue_stopped && j->value("state", "") == "SCHED") {
      // As loom jobs says it: the job is not before the scheduler at all.
      Json c = *j;
      c["queue_stopped"] = member(queue_, "sched", "reason", Json("")).get<std::string>();
      info = field(c, "info", now);
    } else {
      info = field(*j, "info", now);
    }
    if (!is_running(*j)) tm = "wait " + tm;
    add(pad(field(*j, "id", now), 13) + " " + pad(field(*j, "username", now), 10) + " " +
        pad(j->value("state", ""), 8) + " " + pad(j->value("name", ""), 16) + " " +
        pad(field(*j, "nnodes", now), 5, true) + " " + pad(field(*j, "ntasks", now), 5, true) + " " +
        pad(tm, 12, true) + "  " + info);
    ++n;
  }
  if (rows > 0) {
    // A screen too small for the header: what fits, never a scroll.
    if (lines.size() + 1 > rows) lines.resize(rows - 1);
    while (lines.size() + 1 < rows) lines.emplace_back();
    add(top_keys_help());
  }
  return lines;
}

}  // namespace loom::cli
