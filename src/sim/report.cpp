#include "sim/report.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>

namespace loom::sim {
namespace {

// Numbers are written by std::to_chars alone: no locale, no printf state, so
// the same double always gives the same characters.
void append_fixed(std::string& out, double v, int precision) {
  if (v == 0) v = 0;  // no "-0"
  char buf[400];      // the longest double in fixed notation, with room for decimals
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, precision);
  if (r.ec != std::errc{}) r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

std::string fixed(double v, int precision) {
  std::string s;
  append_fixed(s, v, precision);
  return s;
}

void append_int(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// The shortest text in plain decimal notation that reads back as the same
// double: "12", "0.5", "100000" (never "1e+05", which plain to_chars would
// write, being shorter). Whole numbers, most times of a trace, take the
// faster integer path, with the same characters.
void append_shortest(std::string& out, double v) {
  if (v == 0) v = 0;
  if (std::abs(v) < 0x1p53 && v == std::trunc(v)) {
    append_int(out, static_cast<int64_t>(v));
    return;
  }
  char buf[400];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  out.append(buf, r.ptr);
}

double percentile_of_sorted(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  // p * n is exact for the integers involved, so 95 % of 20 is rank 19, not 20.
  double rank = std::ceil(p * static_cast<double>(sorted.size()) / 100.0);
  size_t r = static_cast<size_t>(std::clamp(rank, 1.0, static_cast<double>(sorted.size())));
  return sorted[r - 1];
}

}  // namespace

double percentile_nearest_rank(std::vector<double>& values, double p) {
  if (!std::is_sorted(values.begin(), values.end())) std::sort(values.begin(), values.end());
  return percentile_of_sorted(values, p);
}

Summary summarize(const std::vector<JobResult>& jobs, int64_t total_cores, double wall_seconds) {
  Summary s;
  s.jobs = jobs.size();
  s.wall_seconds = wall_seconds;
  s.jobs_per_second = wall_seconds > 0 ? static_cast<double>(jobs.size()) / wall_seconds : 0;

  std::vector<double> waits;
  waits.reserve(jobs.size());
  double first_submit = std::numeric_limits<double>::infinity();
  double last_end = -std::numeric_limits<double>::infinity();
  double sum_wait = 0, sum_bsld = 0, core_seconds = 0;
  for (const JobResult& j : jobs) {
    first_submit = std::min(first_submit, j.submit);
    if (!j.ran()) {
      ++s.not_started;
      continue;
    }
    double wait = j.start - j.submit;
    double run = j.end - j.start;
    waits.push_back(wait);
    sum_wait += wait;
    sum_bsld += std::max(1.0, (wait + run) / std::max(run, kBoundedSlowdownTau));
    core_seconds += static_cast<double>(j.cores) * run;
    last_end = std::max(last_end, j.end);
  }
  if (waits.empty()) return s;

  double n = static_cast<double>(waits.size());
  s.avg_wait = sum_wait / n;
  s.avg_bounded_slowdown = sum_bsld / n;
  s.makespan = std::max(0.0, last_end - first_submit);
  if (s.makespan > 0 && total_cores > 0) {
    s.utilization = core_seconds / (static_cast<double>(total_cores) * s.makespan);
  }
  std::sort(waits.begin(), waits.end());
  s.p50_wait = percentile_of_sorted(waits, 50);
  s.p95_wait = percentile_of_sorted(waits, 95);
  return s;
}

std::string summary_table(const PolicySummaries& by_policy) {
  bool any_not_started =
      std::any_of(by_policy.begin(), by_policy.end(), [](const auto& p) { return p.second.not_started > 0; });
  struct Row {
    std::string label;
    std::vector<std::string> cells;
  };
  std::vector<Row> rows;
  auto row = [&](std::string label, auto cell) {
    Row r{std::move(label), {}};
    for (const auto& [name, s] : by_policy) r.cells.push_back(cell(s));
    rows.push_back(std::move(r));
  };
  Row header{"policy", {}};
  for (const auto& [name, s] : by_policy) header.cells.push_back(name);
  rows.push_back(std::move(header));
  row("jobs", [](const Summary& s) { return std::to_string(s.jobs); });
  if (any_not_started) row("not started", [](const Summary& s) { return std::to_string(s.not_started); });
  row("makespan (s)", [](const Summary& s) { return fixed(s.makespan, 0); });
  row("makespan (days)", [](const Summary& s) { return fixed(s.makespan / 86400, 2); });
  row("utilization (%)", [](const Summary& s) { return fixed(100 * s.utilization, 2); });
  row("average wait (s)", [](const Summary& s) { return fixed(s.avg_wait, 1); });
  row("median wait (s)", [](const Summary& s) { return fixed(s.p50_wait, 1); });
  row("95th pct wait (s)", [](const Summary& s) { return fixed(s.p95_wait, 1); });
  row("avg bounded slowdown", [](const Summary& s) { return fixed(s.avg_bounded_slowdown, 2); });
  row("wall time (s)", [](const Summary& s) { return fixed(s.wall_seconds, 3); });
  row("jobs per second", [](const Summary& s) { return fixed(s.jobs_per_second, 0); });

  size_t label_width = 0;
  std::vector<size_t> widths(by_policy.size(), 10);
  for (const Row& r : rows) {
    label_width = std::max(label_width, r.label.size());
    for (size_t i = 0; i < r.cells.size(); ++i) widths[i] = std::max(widths[i], r.cells[i].size());
  }
  std::string out;
  for (const Row& r : rows) {
    std::string line = r.label;
    line.append(label_width - r.label.size(), ' ');
    for (size_t i = 0; i < r.cells.size(); ++i) {
      line.append(2 + widths[i] - r.cells[i].size(), ' ');
      line += r.cells[i];
    }
    out += line;
    out += '\n';
  }
  return out;
}

std::string report_json(const PolicySummaries& by_policy) {
  // ordered_json keeps the keys in the order of the issue and of the policies
  // given, rather than sorting them.
  auto object = [](const Summary& s) {
    nlohmann::ordered_json o;
    o["jobs"] = s.jobs;
    o["makespan"] = s.makespan;
    o["utilization"] = s.utilization;
    o["avg_wait"] = s.avg_wait;
    o["p50_wait"] = s.p50_wait;
    o["p95_wait"] = s.p95_wait;
    o["avg_bounded_slowdown"] = s.avg_bounded_slowdown;
    o["wall_seconds"] = s.wall_seconds;
    o["jobs_per_second"] = s.jobs_per_second;
    return o;
  };
  nlohmann::ordered_json doc;
  if (by_policy.size() == 1) {
    doc = object(by_policy[0].second);
  } else {
    doc["policies"] = nlohmann::ordered_json::object();
    for (const auto& [name, s] : by_policy) doc["policies"][name] = object(s);
  }
  return doc.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

namespace {

// RFC 4180 quoting, for a field that needs it.
void append_csv_text(std::string& out, const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) {
    out += s;
    return;
  }
  out += '"';
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

// Batsim writes an interval set as "0-3 7": our idset text with spaces for
// commas and without brackets.
void append_batsim_intervals(std::string& out, const std::string& idset) {
  for (char c : idset) {
    if (c == '[' || c == ']') continue;
    out += c == ',' ? ' ' : c;
  }
}

const char* final_state(const JobResult& j) {
  if (!j.ran()) return "REJECTED";
  if (j.timeout) return "COMPLETED_WALLTIME_REACHED";
  if (j.status != 0) return "COMPLETED_FAILED";
  return "COMPLETED_SUCCESSFULLY";
}

}  // namespace

std::string jobs_csv(const std::vector<JobResult>& jobs, const std::string& workload_name) {
  std::string out =
      "job_id,workload_name,profile,submission_time,requested_number_of_resources,requested_time,success,"
      "final_state,starting_time,execution_time,finish_time,waiting_time,turnaround_time,stretch,"
      "allocated_resources,consumed_energy,metadata\n";
  out.reserve(out.size() + jobs.size() * 128);
  std::string workload;
  append_csv_text(workload, workload_name);
  for (const JobResult& j : jobs) {
    const char* state = final_state(j);
    append_int(out, j.id);
    out += ',';
    out += workload;
    out += ",,";  // profile: loom's jobs have none
    append_shortest(out, j.submit);
    out += ',';
    append_int(out, j.cores);
    out += ',';
    append_shortest(out, j.requested_time);
    out += ',';
    out += std::string_view(state) == "COMPLETED_SUCCESSFULLY" ? '1' : '0';
    out += ',';
    out += state;
    out += ',';
    if (j.ran()) {
      double run = j.end - j.start;
      double turnaround = j.end - j.submit;
      append_shortest(out, j.start);
      out += ',';
      append_shortest(out, run);
      out += ',';
      append_shortest(out, j.end);
      out += ',';
      append_shortest(out, j.start - j.submit);
      out += ',';
      append_shortest(out, turnaround);
      out += ',';
      if (run > 0) {
        append_shortest(out, turnaround / run);
      } else {
        out += turnaround > 0 ? "inf" : "nan";
      }
      out += ',';
    } else {
      out += ",,,,,,";
    }
    append_batsim_intervals(out, j.allocated);
    out += ",-1,\"\"\n";
  }
  return out;
}

// ---- The plot ----
//
// Two panels stacked, each a plot area with axes, ticks, grid lines and a
// legend on its right. Geometry in SVG user units (pixels).
namespace {

constexpr double kWidth = 860;
constexpr double kPanelHeight = 360;
constexpr double kLeft = 70;     // plot area, from the left
constexpr double kRight = 690;   // plot area's right edge; the legend beyond
constexpr double kTop = 40;      // plot area, from the panel's top
constexpr double kBottom = 300;  // plot area's bottom, from the panel's top
constexpr const char* kColors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                   "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

const char* color(size_t i) { return kColors[i % std::size(kColors)]; }

void append_xml_text(std::string& out, const std::string& s) {
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
}

void append_coord(std::string& out, double v) { append_fixed(out, v, 1); }

// A panel: maps data to its plot area; x in [x_lo, x_hi] (already
// transformed for a log axis), y in [0, 1].
struct Panel {
  const char* id;  // of its <g>; its plot area's clip path is ID-area
  double top;      // the panel's top in the document
  double x_lo, x_hi;
  double px(double x) const { return kLeft + (x - x_lo) / (x_hi - x_lo) * (kRight - kLeft); }
  double py(double y) const { return top + kBottom - y * (kBottom - kTop); }
};

void append_line(std::string& out, double x1, double y1, double x2, double y2, const char* style) {
  out += "<line x1=\"";
  append_coord(out, x1);
  out += "\" y1=\"";
  append_coord(out, y1);
  out += "\" x2=\"";
  append_coord(out, x2);
  out += "\" y2=\"";
  append_coord(out, y2);
  out += "\" ";
  out += style;
  out += "/>\n";
}

void append_text(std::string& out, double x, double y, const char* anchor, const std::string& text,
                 const char* extra = "") {
  out += "<text x=\"";
  append_coord(out, x);
  out += "\" y=\"";
  append_coord(out, y);
  out += "\" text-anchor=\"";
  out += anchor;
  out += "\"";
  out += extra;
  out += ">";
  append_xml_text(out, text);
  out += "</text>\n";
}

// Frame, title, y axis of fractions shown as percentages, the x axis label.
void append_frame(std::string& out, const Panel& p, const std::string& title, const std::string& x_label,
                  const std::string& y_label) {
  append_text(out, (kLeft + kRight) / 2, p.top + 22, "middle", title, " font-size=\"14\" font-weight=\"bold\"");
  for (int i = 0; i <= 4; ++i) {
    double y = p.py(i / 4.0);
    append_line(out, kLeft, y, kRight, y, "stroke=\"#e0e0e0\"");
    append_line(out, kLeft - 5, y, kLeft, y, "stroke=\"black\"");
    append_text(out, kLeft - 8, y + 4, "end", std::to_string(i * 25));
  }
  // The plot area: its frame, and its clip path (curves stay inside it
  // whatever their values).
  auto area = [&](const char* attrs) {
    out += "<rect x=\"";
    append_coord(out, kLeft);
    out += "\" y=\"";
    append_coord(out, p.top + kTop);
    out += "\" width=\"";
    append_coord(out, kRight - kLeft);
    out += "\" height=\"";
    append_coord(out, kBottom - kTop);
    out += "\"";
    out += attrs;
    out += "/>";
  };
  area(" fill=\"none\" stroke=\"black\"");
  out += "\n<clipPath id=\"";
  out += p.id;
  out += "-area\">";
  area("");
  out += "</clipPath>\n";
  append_text(out, (kLeft + kRight) / 2, p.top + kBottom + 40, "middle", x_label);
  double yc = p.top + (kTop + kBottom) / 2;
  std::string rotate = " transform=\"rotate(-90 ";
  append_coord(rotate, 22);
  rotate += ' ';
  append_coord(rotate, yc);
  rotate += ")\"";
  append_text(out, 22, yc, "middle", y_label, rotate.c_str());
}

void append_x_tick(std::string& out, const Panel& p, double x, const std::string& label) {
  double px = p.px(x);
  append_line(out, px, p.top + kTop, px, p.top + kBottom, "stroke=\"#e0e0e0\"");
  append_line(out, px, p.top + kBottom, px, p.top + kBottom + 5, "stroke=\"black\"");
  append_text(out, px, p.top + kBottom + 18, "middle", label);
}

void append_legend(std::string& out, const Panel& p, const PolicyJobs& by_policy) {
  for (size_t i = 0; i < by_policy.size(); ++i) {
    double y = p.top + kTop + 10 + 20 * static_cast<double>(i);
    std::string style = "stroke=\"";
    style += color(i);
    style += "\" stroke-width=\"2\"";
    append_line(out, kRight + 15, y, kRight + 40, y, style.c_str());
    append_text(out, kRight + 46, y + 4, "start", by_policy[i].first);
  }
}

void open_polyline(std::string& out, const Panel& p, const std::string& policy, size_t i) {
  out += "<polyline data-policy=\"";
  append_xml_text(out, policy);
  out += "\" clip-path=\"url(#";
  out += p.id;
  out += "-area)\" fill=\"none\" stroke=\"";
  out += color(i);
  out += "\" stroke-width=\"1.2\" points=\"";
}

void append_point(std::string& out, double x, double y) {
  append_coord(out, x);
  out += ',';
  append_coord(out, y);
  out += ' ';
}

void close_polyline(std::string& out) {
  if (out.back() == ' ') out.pop_back();
  out += "\"/>\n";
}

// Ticks at 1, 2 or 5 times a power of ten, three to eight over [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int& decimals) {
  double raw = (hi - lo) / 8;
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double f = raw / mag;
  double step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step))));
  std::vector<double> ticks;
  for (double k = std::ceil(lo / step); k * step <= hi + step * 1e-9; ++k) ticks.push_back(k * step);
  return ticks;
}

bool is_busy(const JobResult& j) { return j.ran() && j.end > j.start && j.cores > 0; }

// Cores busy over time: (time, busy) after every change, in time order.
std::vector<std::pair<double, double>> busy_steps(const std::vector<JobResult>& jobs) {
  std::vector<std::pair<double, double>> deltas;
  for (const JobResult& j : jobs) {
    if (!is_busy(j)) continue;
    deltas.emplace_back(j.start, static_cast<double>(j.cores));
    deltas.emplace_back(j.end, -static_cast<double>(j.cores));
  }
  std::sort(deltas.begin(), deltas.end());
  std::vector<std::pair<double, double>> steps;
  double busy = 0;
  for (size_t i = 0; i < deltas.size();) {
    double t = deltas[i].first;
    for (; i < deltas.size() && deltas[i].first == t; ++i) busy += deltas[i].second;
    steps.emplace_back(t, busy);
  }
  return steps;
}

// Core-seconds busy in each of n equal slices of [lo, hi], exactly, in one
// pass without sorting: a job adds its part of the slices where it starts and
// ends, and the slices wholly inside it through a difference array.
std::vector<double> busy_area(const std::vector<JobResult>& jobs, double lo, double hi, size_t n) {
  const double width = (hi - lo) / static_cast<double>(n);
  auto slice = [&](double t) {
    return static_cast<size_t>(std::clamp(std::floor((t - lo) / width), 0.0, static_cast<double>(n - 1)));
  };
  auto edge = [&](size_t i) { return lo + static_cast<double>(i) * width; };
  std::vector<double> area(n, 0), whole(n + 1, 0);
  for (const JobResult& j : jobs) {
    if (!is_busy(j)) continue;
    auto c = static_cast<double>(j.cores);
    size_t first = slice(j.start), last = slice(j.end);
    if (first == last) {
      area[first] += c * (j.end - j.start);
      continue;
    }
    area[first] += c * (edge(first + 1) - j.start);
    area[last] += c * (j.end - edge(last));
    whole[first + 1] += c;
    whole[last] -= c;
  }
  double cores = 0;
  for (size_t i = 0; i < n; ++i) {
    cores += whole[i];
    area[i] += cores * width;
  }
  return area;
}

void append_utilization_curve(std::string& out, const Panel& p, const std::string& policy, size_t index,
                              const std::vector<JobResult>& jobs, double total) {
  open_polyline(out, p, policy, index);
  append_point(out, p.px(p.x_lo), p.py(0));
  size_t changes = 2 * static_cast<size_t>(std::count_if(jobs.begin(), jobs.end(), is_busy));
  if (changes <= kMaxUtilizationPoints) {
    double prev = 0;
    for (const auto& [t, busy] : busy_steps(jobs)) {
      append_point(out, p.px(t), p.py(prev / total));
      append_point(out, p.px(t), p.py(busy / total));
      prev = busy;
    }
    append_point(out, p.px(p.x_hi), p.py(prev / total));
  } else {
    // Each slice's exact time-average, so that the area under the curve is
    // the trace's core-seconds.
    const size_t n = kUtilizationBuckets;
    const double width = (p.x_hi - p.x_lo) / static_cast<double>(n);
    std::vector<double> area = busy_area(jobs, p.x_lo, p.x_hi, n);
    double prev = 0;
    for (size_t i = 0; i < n; ++i) {
      double u = area[i] / (width * total);
      double x = p.px(p.x_lo + static_cast<double>(i) * width);
      append_point(out, x, p.py(prev));
      append_point(out, x, p.py(u));
      prev = u;
    }
    append_point(out, p.px(p.x_hi), p.py(prev));
  }
  close_polyline(out);
}

std::string decade_label(int d) {
  static const char* const kLabels[] = {"1", "10", "100", "1k", "10k", "100k", "1M", "10M", "100M"};
  if (d >= 0 && d < static_cast<int>(std::size(kLabels))) return kLabels[d];
  return "1e" + std::to_string(d);
}

}  // namespace

std::string plot_svg(const PolicyJobs& by_policy, int64_t total_cores) {
  const double total = total_cores > 0 ? static_cast<double>(total_cores) : 1;
  double t_lo = std::numeric_limits<double>::infinity();
  double t_hi = -std::numeric_limits<double>::infinity();
  double max_wait = 0;
  for (const auto& [name, jobs] : by_policy) {
    for (const JobResult& j : jobs) {
      t_lo = std::min(t_lo, j.submit);
      if (!j.ran()) continue;
      t_hi = std::max(t_hi, j.end);
      max_wait = std::max(max_wait, j.start - j.submit);
    }
  }
  if (!std::isfinite(t_lo)) t_lo = 0;
  if (!(t_hi > t_lo)) t_hi = t_lo + 1;

  std::string out;
  out.reserve(16384 + by_policy.size() * (kUtilizationBuckets * 2 + kCdfPoints) * 14);
  const std::string w = fixed(kWidth, 0), h = fixed(2 * kPanelHeight, 0);
  out += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + w +
         "\" height=\"" + h + "\" viewBox=\"0 0 " + w + " " + h +
         "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";

  // Utilization over time, in the unit that suits the span.
  {
    double span = t_hi - t_lo;
    double unit = 1;
    const char* unit_name = "s";
    if (span >= 3 * 86400) {
      unit = 86400, unit_name = "days";
    } else if (span >= 3 * 3600) {
      unit = 3600, unit_name = "hours";
    } else if (span >= 3 * 60) {
      unit = 60, unit_name = "minutes";
    }
    Panel p{"utilization", 0, t_lo, t_hi};
    out += "<g id=\"utilization\">\n";
    append_frame(out, p, "Utilization over time", std::string("time since the trace's start (") + unit_name + ")",
                 "cores busy (%)");
    int decimals = 0;
    for (double tick : nice_ticks(t_lo / unit, t_hi / unit, decimals)) {
      append_x_tick(out, p, tick * unit, fixed(tick, decimals));
    }
    for (size_t i = 0; i < by_policy.size(); ++i) {
      append_utilization_curve(out, p, by_policy[i].first, i, by_policy[i].second, total);
    }
    append_legend(out, p, by_policy);
    out += "</g>\n";
  }

  // The wait-time distribution on a log axis from 1 s to a whole decade.
  {
    int decades = std::max(1, static_cast<int>(std::ceil(std::log10(std::max(max_wait, 10.0)))));
    Panel p{"wait-cdf", kPanelHeight, 0, static_cast<double>(decades)};
    out += "<g id=\"wait-cdf\">\n";
    append_frame(out, p, "Wait-time distribution", "wait (s, log scale; waits under 1 s at 1 s)", "jobs (%)");
    for (int d = 0; d <= decades; ++d) append_x_tick(out, p, d, decade_label(d));
    // The CDF at each sample x: how many waits are <= x, counted without
    // sorting by finding each wait's first sample at or above it.
    std::vector<double> xs(kCdfPoints), lxs(kCdfPoints);
    for (size_t k = 0; k < kCdfPoints; ++k) {
      lxs[k] = static_cast<double>(decades) * static_cast<double>(k) / static_cast<double>(kCdfPoints - 1);
      xs[k] = std::pow(10.0, lxs[k]);
    }
    std::vector<size_t> at(kCdfPoints + 1);
    for (size_t i = 0; i < by_policy.size(); ++i) {
      std::fill(at.begin(), at.end(), 0);
      size_t n = 0;
      for (const JobResult& j : by_policy[i].second) {
        if (!j.ran()) continue;
        ++n;
        ++at[static_cast<size_t>(std::lower_bound(xs.begin(), xs.end(), j.start - j.submit) - xs.begin())];
      }
      open_polyline(out, p, by_policy[i].first, i);
      size_t below = 0;
      for (size_t k = 0; k < kCdfPoints; ++k) {
        below += at[k];
        append_point(out, p.px(lxs[k]), p.py(n > 0 ? static_cast<double>(below) / static_cast<double>(n) : 0));
      }
      close_polyline(out);
    }
    append_legend(out, p, by_policy);
    out += "</g>\n";
  }
  out += "</svg>\n";
  return out;
}

}  // namespace loom::sim
