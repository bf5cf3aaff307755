// What the job benchmarks share: a job that runs /bin/true, a blocking call
// that ends the benchmark on an error, and submitting many copies of one
// job in batches that are all in flight at once (what `loom submit --cc`
// does).
#pragma once

#include <algorithm>
#include <asio/io_context.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "msg/client.h"

namespace loom::bench {

// A job that runs /bin/true on one core (on each of `nodes` nodes if not 0):
// in test execution mode (no processes, run_duration 0) unless `real`.
inline Json true_jobspec(int nodes, bool real) {
  Json slot = {{"type", "slot"}, {"count", 1}, {"label", "task"}, {"with", {{{"type", "core"}, {"count", 1}}}}};
  Json resources = Json::array({slot});
  if (nodes > 0) resources = {{{"type", "node"}, {"count", nodes}, {"with", {slot}}}};
  Json system = {{"duration", 0}, {"cwd", "/tmp"}};
  if (!real) system["exec"] = {{"test", {{"run_duration", 0}}}};
  return {{"version", 1},
          {"resources", resources},
          {"tasks", {{{"command", {"/bin/true"}}, {"slot", "task"}, {"count", {{"per_slot", 1}}}}}},
          {"attributes", {{"system", system}}}};
}

// `topic` answered, or the benchmark `name` exits 1 saying why.
inline Json call_or_exit(const char* name, Client& c, const std::string& topic, const Json& payload) {
  auto r = c.call(topic, payload);
  if (!r.ok()) {
    std::fprintf(stderr, "%s: %s: %s\n", name, topic.c_str(), r.error().text.c_str());
    std::exit(1);
  }
  return *r;
}

// Submits `jobs` copies of `one` ({jobspec, ...}) in batches of `batch`, all
// sent before any answer is read; returns the ids, in the order answered.
// A refused batch or a lost connection ends the benchmark.
inline std::vector<uint64_t> submit_copies(const char* name, asio::io_context& io, Client& client, const Json& one,
                                           int jobs, int batch) {
  int left = 0;
  std::vector<uint64_t> ids;
  for (int sent = 0; sent < jobs; sent += batch) {
    Json b = Json::array();
    for (int i = sent; i < std::min(jobs, sent + batch); ++i) b.push_back(one);
    ++left;
    client.handle().rpc("job-manager.submit", Json{{"jobs", b}}, {}, [&, name](const Message& m) {
      --left;
      if (m.errnum) {
        std::fprintf(stderr, "%s: submit: %s\n", name, error_text(m).c_str());
        std::exit(1);
      }
      Json answer = parse_json(m.payload).value();
      for (auto& id : answer["ids"]) ids.push_back(id.get<uint64_t>());
    });
  }
  while (left > 0 && client.is_open()) io.run_one();
  if (left > 0 || ids.size() != static_cast<size_t>(jobs)) {
    std::fprintf(stderr, "%s: the instance went away after %zu of %d jobs were submitted\n", name, ids.size(), jobs);
    std::exit(1);
  }
  return ids;
}

}  // namespace loom::bench
