// loom status [--json]: every rank's state, and the services on each.
#include <cstdio>
#include <iostream>

#include "cli/common.h"

namespace loom::cli {

namespace {
struct StatusOpts {
  bool json = false;
};

int run_status(const StatusOpts& o) {
  auto s = connect_session();
  if (!s.ok()) return fail("status", s.error());
  Session& sess = **s;
  auto st = sess.client->call("broker.status", Json::object(), {0, false, 10});
  if (!st.ok()) return fail("status", st.error());
  // Ask every online rank for its info at once.
  Json ranks = (*st)["ranks"];
  int pending = 0;
  for (auto& r : ranks) {
    if (r["state"] != "online") continue;
    ++pending;
    uint32_t rank = r["rank"].get<uint32_t>();
    sess.handle().rpc("broker.info", Json::object(), {rank, false, 5}, [&r, &pending](const Message& m) {
      --pending;
      if (m.errnum) {
        r["error"] = error_text(m);
        return;
      }
      auto j = parse_json(m.payload);
      if (j.ok()) r["info"] = *j;
    });
  }
  // The jobs, from the job manager on rank 0 (absent in a bare broker).
  Json jobs;
  ++pending;
  sess.handle().rpc("job-manager.stats", Json::object(), {0, false, 5}, [&](const Message& m) {
    --pending;
    if (m.errnum) return;
    auto j = parse_json(m.payload);
    if (j.ok()) jobs = *j;
  });
  while (pending > 0 && sess.client->is_open()) sess.io.run_one();
  if (o.json) {
    Json out = *st;
    out["ranks"] = ranks;
    if (!jobs.is_null()) out["jobs"] = jobs;
    std::cout << dump_json(out) << "\n";
    return 0;
  }
  std::printf("%zu ranks, fanout %d, %s\n", ranks.size(), (*st)["fanout"].get<int>(),
              (*st)["ready"].get<bool>() ? "all online" : "NOT all online");
  std::printf("%-6s %-8s %-7s %-10s %s\n", "RANK", "STATE", "PARENT", "UPTIME", "SERVICES");
  for (auto& r : ranks) {
    std::string parent = "-", uptime = "-", services;
    if (r.contains("info")) {
      auto& info = r["info"];
      if (!info["parent"].is_null()) parent = std::to_string(info["parent"].get<int>());
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.1fs", info["uptime"].get<double>());
      uptime = buf;
      for (auto& sv : info["services"]) services += (services.empty() ? "" : ",") + sv.get<std::string>();
    } else if (r.contains("error")) {
      services = "(" + r["error"].get<std::string>() + ")";
    }
    std::printf("%-6d %-8s %-7s %-10s %s\n", r["rank"].get<int>(), r["state"].get<std::string>().c_str(),
                parent.c_str(), uptime.c_str(), services.c_str());
  }
  if (jobs.is_object() && jobs.contains("states")) {
    std::string line;
    for (auto& [name, n] : jobs["states"].items()) {
      if (n.get<int>() > 0) line += (line.empty() ? "" : ", ") + std::to_string(n.get<int>()) + " " + name;
    }
    std::printf("\njobs: %s\n", line.empty() ? "none" : line.c_str());
    for (auto& b : jobs["bad"]) {
      std::printf("job %s set aside at restart: %s\n", b.value("id", "?").c_str(), b.value("error", "").c_str());
    }
  }
  return 0;
}
}  // namespace

void add_status_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<StatusOpts>();
  auto* sub = app.add_subcommand("status", "Show the instance: every rank's state and its services");
  sub->add_flag("--json", o->json, "Print one JSON object");
  sub->callback([o, &run] { run = [o] { return run_status(*o); }; });
}

}  // namespace loom::cli
