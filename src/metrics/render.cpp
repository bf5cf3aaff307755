// The exposition text of docs/metrics.md, from what the services answered.
// Pure: the same answers give the same text, which tests/metrics_test.cpp
// checks with a real OpenMetrics parser.
#include <cctype>
#include <charconv>
#include <cmath>
#include <string>
#include <vector>

#include "metrics/metrics.h"

namespace loom {

namespace {

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  std::string s = ec == std::errc{} ? std::string(buf, end) : std::to_string(v);
  return s;
}

// A `le` bound: OpenMetrics wants a float's text ("1.0", not "1").
std::string bound(double v) {
  std::string s = number(v);
  if (s.find_first_of(".eEIN") == std::string::npos) s += ".0";
  return s;
}

std::string escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

class Writer {
 public:
  explicit Writer(bool openmetrics) : om_(openmetrics) {}

  // `name` is the family's: without _total for a counter.
  void family(const std::string& name, const char* type, const std::string& help) {
    std::string shown = (!om_ && std::string(type) == "counter") ? name + "_total" : name;
    out_ += "# HELP " + shown + " " + help + "\n";
    out_ += "# TYPE " + shown + " " + type + "\n";
  }
  void sample(const std::string& name, const std::string& labels, double v) {
    out_ += name;
    if (!labels.empty()) out_ += "{" + labels + "}";
    out_ += " " + number(v) + "\n";
  }
  // A histogram as a stats response carries it (msg/histogram_json.h).
  void histogram(const std::string& name, const Json& h) {
    const Json& bounds = h.at("bounds");
    const Json& counts = h.at("counts");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      cumulative += counts[i].get<uint64_t>();
      std::string le = i < bounds.size() ? bound(bounds[i].get<double>()) : "+Inf";
      sample(name + "_bucket", "le=\"" + le + "\"", static_cast<double>(cumulative));
    }
    sample(name + "_count", "", static_cast<double>(cumulative));
    sample(name + "_sum", "", h.at("sum").get<double>());
  }
  std::string finish() {
    if (om_) out_ += "# EOF\n";
    return std::move(out_);
  }

 private:
  bool om_;
  std::string out_;
};

bool is_histogram(const Json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return false;
  const Json& h = j[key];
  return h.is_object() && h.contains("bounds") && h["bounds"].is_array() && h.contains("counts") &&
         h["counts"].is_array() && h["counts"].size() == h["bounds"].size() + 1 && h.contains("sum") &&
         h["sum"].is_number();
}

double num(const Json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : 0;
}

void jobs(Writer& w, const Json& jm) {
  if (jm.contains("states") && jm["states"].is_object()) {
    w.family("loom_jobs", "gauge", "Jobs known to the job manager, by state.");
    for (const auto& [state, n] : jm["states"].items()) {
      std::string lower;
      for (char c : state) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (n.is_number()) w.sample("loom_jobs", "state=\"" + escape(lower) + "\"", n.get<double>());
    }
  }
  w.family("loom_jobs_submitted", "counter", "Jobs submitted since rank 0 started.");
  w.sample("loom_jobs_submitted_total", "", num(jm, "submitted_total"));
  w.family("loom_jobs_completed", "counter", "Jobs that became inactive since rank 0 started, whatever their result.");
  w.sample("loom_jobs_completed_total", "", num(jm, "completed_total"));
  if (is_histogram(jm, "wait_seconds")) {
    w.family("loom_job_wait_seconds", "histogram", "Time from a job's submission to its allocation.");
    w.histogram("loom_job_wait_seconds", jm["wait_seconds"]);
  }
  if (is_histogram(jm, "sched_latency_seconds")) {
    w.family("loom_sched_latency_seconds", "histogram",
             "Time from a job becoming eligible (state SCHED) to its allocation.");
    w.histogram("loom_sched_latency_seconds", jm["sched_latency_seconds"]);
  }
}

void resources(Writer& w, const Json& sched) {
  static const char* kStates[] = {"free", "allocated", "drained", "down"};
  struct Kind {
    const char* field;
    const char* name;
    const char* what;
  };
  for (Kind k : {Kind{"ncores", "loom_resource_cores", "Cores"}, Kind{"ngpus", "loom_resource_gpus", "GPUs"},
                 Kind{"nnodes", "loom_resource_ranks", "Ranks"}}) {
    w.family(k.name, "gauge",
             std::string(k.what) + " by state (a draining rank's allocated cores count as allocated and drained).");
    for (const char* s : kStates) {
      if (sched.contains(s)) w.sample(k.name, std::string("state=\"") + s + "\"", num(sched[s], k.field));
    }
    std::string total = std::string(k.name) + "_all";
    w.family(total, "gauge", std::string(k.what) + " in the instance, in any state.");
    w.sample(total, "", sched.contains("all") ? num(sched["all"], k.field) : 0);
  }
}

void kvs(Writer& w, const Json& k) {
  if (is_histogram(k, "commit_seconds")) {
    w.family("loom_kvs_commit_seconds", "histogram", "Time of each KVS group write (one storage transaction).");
    w.histogram("loom_kvs_commit_seconds", k["commit_seconds"]);
  }
  if (is_histogram(k, "group_size")) {
    w.family("loom_kvs_commit_group_size", "histogram", "Commit requests written together in one group write.");
    w.histogram("loom_kvs_commit_group_size", k["group_size"]);
  }
}

void ranks(Writer& w, const Json& status) {
  if (!status.contains("ranks") || !status["ranks"].is_array()) return;
  w.family("loom_rank_up", "gauge", "1 when the rank's broker is online, else 0.");
  for (const Json& r : status["ranks"]) {
    if (!r.is_object() || !r.contains("rank") || !r["rank"].is_number_unsigned()) continue;
    bool up = r.contains("state") && r["state"] == "online";
    w.sample("loom_rank_up", "rank=\"" + std::to_string(r["rank"].get<uint64_t>()) + "\"", up ? 1 : 0);
  }
}

void messages(Writer& w, const Json& info) {
  if (!info.contains("requests") || !info["requests"].is_object()) return;
  w.family("loom_broker_requests", "counter", "Requests rank 0's broker routed, by the service they named.");
  for (const auto& [service, n] : info["requests"].items()) {
    if (n.is_number()) w.sample("loom_broker_requests_total", "service=\"" + escape(service) + "\"", n.get<double>());
  }
}

}  // namespace

std::string render_metrics(const MetricsSources& s, bool openmetrics) {
  Writer w(openmetrics);
  w.family("loom_metrics_source_up", "gauge", "1 when the service answered this scrape, else 0.");
  struct Source {
    const char* name;
    const Json& answer;
  };
  for (Source src : {Source{"job-manager", s.job_manager}, Source{"sched", s.sched}, Source{"kvs", s.kvs},
                     Source{"broker", s.broker_status}}) {
    w.sample("loom_metrics_source_up", std::string("source=\"") + src.name + "\"", src.answer.is_object() ? 1 : 0);
  }
  if (s.job_manager.is_object()) jobs(w, s.job_manager);
  if (s.sched.is_object()) resources(w, s.sched);
  if (s.kvs.is_object()) kvs(w, s.kvs);
  if (s.broker_status.is_object()) ranks(w, s.broker_status);
  if (s.broker_info.is_object()) messages(w, s.broker_info);
  return w.finish();
}

}  // namespace loom
