// loom resource list [--json] | status [--json] | drain [-f] [RANKS [REASON...]] | undrain RANKS
// loom queue status | enable | disable [REASON] | start | stop [REASON] | drain
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>

#include "cli/common.h"
#include "hostlist/hostlist.h"
#include "idset/idset.h"

namespace loom::cli {

namespace {

struct ResourceOpts {
  bool json = false;
  bool force = false;
  std::string ranks;
  std::vector<std::string> reason;
  double timeout = -1;
};

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

// Wall seconds as local time, 2026-12-05T10:12:00.
std::string drain_time(double t) {
  std::string s = local_time(t, "%Y-%m-%dT%H:%M:%S");
  return s.empty() ? "-" : s;
}

// The hosts of these ranks' entries, each once, as a hostlist.
std::string hosts_of(const std::vector<const Json*>& ranks) {
  Hostlist hosts;
  std::vector<std::string> seen;
  for (const Json* r : ranks) {
    std::string h = r->value("host", "");
    if (h.empty() || std::find(seen.begin(), seen.end(), h) != seen.end()) continue;
    seen.push_back(h);
    (void)hosts.append(h);
  }
  return hosts.encode();
}

Result<Json> resource_status(Session& s) { return s.client->call("sched.resource-status", Json::object()); }

// Each rank counted once, in its state (sched.resource-status, `ranks`): a
// rank with anything allocated is allocated (its free cores still count
// as free cores), a drained one that still runs a job draining.
int run_list(const ResourceOpts& o) {
  auto s = connect_session();
  if (!s.ok()) return fail("resource list", s.error());
  auto r = resource_status(**s);
  if (!r.ok()) return fail("resource list", r.error());
  if (o.json) {
    std::cout << dump_json(*r) << "\n";
    return 0;
  }
  struct Row {
    std::vector<const Json*> ranks;
    uint64_t ncores = 0, ngpus = 0;
  };
  std::map<std::string, Row> rows;
  const Json ranks = r->value("ranks", Json::array());  // the rows point into it
  for (const Json& rk : ranks) {
    std::string st = rk.value("state", "");
    uint64_t nc = rk.value("ncores", uint64_t{0}), ng = rk.value("ngpus", uint64_t{0});
    uint64_t uc = std::min(nc, rk.value("used_cores", uint64_t{0}));
    uint64_t ug = std::min(ng, rk.value("used_gpus", uint64_t{0}));
    rows[st].ranks.push_back(&rk);
    if (st == "free" || st == "allocated") {
      rows["free"].ncores += nc - uc;
      rows["free"].ngpus += ng - ug;
      rows["allocated"].ncores += uc;
      rows["allocated"].ngpus += ug;
    } else {
      rows[st].ncores += nc;
      rows[st].ngpus += ng;
    }
  }
  std::printf("%10s %6s %6s %6s %-10s %s\n", "STATE", "NNODES", "NCORES", "NGPUS", "RANKS", "NODELIST");
  for (const char* st : {"free", "allocated", "draining", "drained", "down"}) {
    const Row& row = rows[st];
    if (row.ranks.empty() && std::string(st) == "draining") continue;  // listed only when there are
    IdSet ids;
    for (const Json* rk : row.ranks) ids.insert(rk->value("rank", 0u));
    std::printf("%10s %6zu %6llu %6llu %-10s %s\n", st, row.ranks.size(), static_cast<unsigned long long>(row.ncores),
                static_cast<unsigned long long>(row.ngpus), ids.encode().c_str(), hosts_of(row.ranks).c_str());
  }
  if (r->contains("drain") && !(*r)["drain"].empty()) {
    std::printf("\n%-12s %-19s %s\n", "DRAINED", "SINCE", "REASON");
    for (auto& d : (*r)["drain"]) {
      std::printf("%-12s %-19s %s\n", d.value("ranks", "").c_str(), drain_time(d.value("timestamp", 0.0)).c_str(),
                  d.value("reason", "").c_str());
    }
  }
  return 0;
}

// One line per rank: its state, host, and why it is drained.
int run_status(const ResourceOpts& o) {
  auto s = connect_session();
  if (!s.ok()) return fail("resource status", s.error());
  auto r = resource_status(**s);
  if (!r.ok()) return fail("resource status", r.error());
  Json ranks = r->value("ranks", Json::array());
  if (o.json) {
    std::cout << dump_json(ranks) << "\n";
    return 0;
  }
  std::printf("%6s %-10s %-20s %-9s %-19s %s\n", "RANK", "STATE", "HOST", "CORES", "SINCE", "REASON");
  for (const Json& rk : ranks) {
    std::string cores = std::to_string(rk.value("used_cores", 0)) + "/" + std::to_string(rk.value("ncores", 0));
    bool drained = rk.contains("timestamp");
    std::printf("%6u %-10s %-20s %-9s %-19s %s\n", rk.value("rank", 0u), rk.value("state", "").c_str(),
                rk.value("host", "").c_str(), cores.c_str(),
                drained ? drain_time(rk.value("timestamp", 0.0)).c_str() : "-", rk.value("reason", "").c_str());
  }
  return 0;
}

int run_drain(const ResourceOpts& o, bool drain) {
  const char* cmd = drain ? "resource drain" : "resource undrain";
  if (drain && o.ranks.empty()) {
    // No ranks: the drained ones, when and why.
    auto s = connect_session();
    if (!s.ok()) return fail(cmd, s.error());
    auto r = resource_status(**s);
    if (!r.ok()) return fail(cmd, r.error());
    std::printf("%-12s %-19s %s\n", "RANKS", "SINCE", "REASON");
    for (auto& d : r->value("drain", Json::array())) {
      std::printf("%-12s %-19s %s\n", d.value("ranks", "").c_str(), drain_time(d.value("timestamp", 0.0)).c_str(),
                  d.value("reason", "").c_str());
    }
    return 0;
  }
  auto s = connect_session();
  if (!s.ok()) return fail(cmd, s.error());
  if (drain && !o.force) {
    // A drained rank keeps its reason unless --force replaces it.
    auto ids = IdSet::parse(o.ranks);
    auto r = resource_status(**s);
    if (!r.ok()) return fail(cmd, r.error());
    if (ids.ok()) {
      for (const Json& rk : r->value("ranks", Json::array())) {
        if (!rk.contains("timestamp") || !ids->contains(rk.value("rank", 0u))) continue;
        std::string why = rk.value("reason", "");
        return fail(cmd, "rank " + std::to_string(rk.value("rank", 0u)) + " is already drained" +
                             (why.empty() ? "" : " (" + why + ")") + "; --force replaces the reason");
      }
    }
  }
  Json req{{"ranks", o.ranks}};
  if (drain) req["reason"] = join(o.reason);
  auto r = (*s)->client->call(drain ? "sched.drain" : "sched.undrain", req);
  if (!r.ok()) return fail(cmd, r.error());
  return 0;
}

struct QueueOpts {
  std::vector<std::string> reason;
  double timeout = -1;
};

int run_queue_status(const QueueOpts&) {
  auto s = connect_session();
  if (!s.ok()) return fail("queue status", s.error());
  auto r = (*s)->client->call("job-manager.queue-status", Json::object());
  if (!r.ok()) return fail("queue status", r.error());
  const Json& sub = (*r)["submit"];
  const Json& sch = (*r)["sched"];
  std::string sr = sub.value("reason", ""), cr = sch.value("reason", "");
  std::printf("Job submission is %s%s\n", sub.value("enabled", false) ? "enabled" : "disabled",
              sr.empty() ? "" : (": " + sr).c_str());
  std::printf("Scheduling is %s%s\n", sch.value("started", false) ? "started" : "stopped",
              cr.empty() ? "" : (": " + cr).c_str());
  std::printf("%zu pending, %zu running; scheduler %s\n", r->value("pending", size_t{0}),
              r->value("running", size_t{0}), r->value("scheduler", "").c_str());
  return 0;
}

int run_queue_control(const char* action, const QueueOpts& o) {
  std::string cmd = std::string("queue ") + action;
  auto s = connect_session();
  if (!s.ok()) return fail(cmd, s.error());
  auto r = (*s)->client->call("job-manager.queue-control", Json{{"action", action}, {"reason", join(o.reason)}});
  if (!r.ok()) return fail(cmd, r.error());
  return 0;
}

int run_queue_drain(const QueueOpts& o) {
  auto s = connect_session();
  if (!s.ok()) return fail("queue drain", s.error());
  RpcOptions opts;
  if (o.timeout >= 0) opts.timeout = o.timeout;
  auto r = (*s)->client->call("job-manager.queue-drain", Json::object(), opts);
  if (!r.ok()) return fail("queue drain", r.error());
  return 0;
}

}  // namespace

void add_resource_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<ResourceOpts>();
  auto* res = app.add_subcommand("resource", "The instance's resources as the scheduler sees them");
  res->require_subcommand(1);
  auto* ls = res->add_subcommand("list", "Free, allocated, drained and down nodes, cores and gpus");
  ls->add_flag("--json", o->json, "Print one JSON object");
  ls->callback([o, &run] { run = [o] { return run_list(*o); }; });
  auto* stat = res->add_subcommand("status", "Each rank on a line: its state, host, cores in use, drain reason");
  stat->add_flag("--json", o->json, "Print a JSON array of ranks");
  stat->callback([o, &run] { run = [o] { return run_status(*o); }; });
  auto* dr = res->add_subcommand(
      "drain", "Give no new jobs to RANKS (running ones continue); with no RANKS, list the drained ranks");
  dr->add_flag("-f,--force", o->force, "Replace the reason of ranks already drained");
  dr->add_option("ranks", o->ranks, "Ranks, e.g. 0-1,3");
  dr->add_option("reason", o->reason, "Why");
  dr->callback([o, &run] { run = [o] { return run_drain(*o, true); }; });
  auto* ud = res->add_subcommand("undrain", "Make drained RANKS available again");
  ud->add_option("ranks", o->ranks, "Ranks, e.g. 0-1,3")->required();
  ud->callback([o, &run] { run = [o] { return run_drain(*o, false); }; });
}

void add_queue_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<QueueOpts>();
  auto* q = app.add_subcommand("queue", "Control the job queue");
  q->require_subcommand(1);
  q->add_subcommand("status", "Show whether submission and scheduling are on")->callback([o, &run] {
    run = [o] { return run_queue_status(*o); };
  });
  auto* en = q->add_subcommand("enable", "Accept new jobs");
  en->callback([o, &run] { run = [o] { return run_queue_control("enable", *o); }; });
  auto* di = q->add_subcommand("disable", "Refuse new jobs (with REASON)");
  di->add_option("reason", o->reason, "Why");
  di->callback([o, &run] { run = [o] { return run_queue_control("disable", *o); }; });
  auto* st = q->add_subcommand("start", "Start scheduling pending jobs");
  st->callback([o, &run] { run = [o] { return run_queue_control("start", *o); }; });
  auto* sp = q->add_subcommand("stop", "Stop scheduling: pending jobs wait (with REASON)");
  sp->add_option("reason", o->reason, "Why");
  sp->callback([o, &run] { run = [o] { return run_queue_control("stop", *o); }; });
  auto* dr = q->add_subcommand("drain", "Wait until no job is active");
  dr->add_option("-t,--timeout", o->timeout, "Give up after SECS seconds")->check(CLI::NonNegativeNumber);
  dr->callback([o, &run] { run = [o] { return run_queue_drain(*o); }; });
}

}  // namespace loom::cli
