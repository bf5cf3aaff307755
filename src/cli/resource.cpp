// loom resource list [--json] | drain RANKS [REASON...] | undrain RANKS
// loom queue status | enable | disable [REASON] | start | stop [REASON] | drain
#include <cstdio>
#include <iostream>

#include "cli/common.h"

namespace loom::cli {

namespace {

struct ResourceOpts {
  bool json = false;
  std::string ranks;
  std::vector<std::string> reason;
  double timeout = -1;
};

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

int run_list(const ResourceOpts& o) {
  auto s = connect_session();
  if (!s.ok()) return fail("resource list", s.error());
  auto r = (*s)->client->call("sched.resource-status", Json::object());
  if (!r.ok()) return fail("resource list", r.error());
  if (o.json) {
    std::cout << dump_json(*r) << "\n";
    return 0;
  }
  std::printf("%10s %6s %6s %6s %-10s %s\n", "STATE", "NNODES", "NCORES", "NGPUS", "RANKS", "NODELIST");
  for (const char* st : {"free", "allocated", "drained", "down"}) {
    if (!r->contains(st)) continue;
    const Json& x = (*r)[st];
    std::printf("%10s %6d %6d %6d %-10s %s\n", st, x.value("nnodes", 0), x.value("ncores", 0), x.value("ngpus", 0),
                x.value("ranks", "").c_str(), x.value("nodelist", "").c_str());
  }
  if (r->contains("drain") && !(*r)["drain"].empty()) {
    std::printf("\n%-12s %s\n", "DRAINED", "REASON");
    for (auto& d : (*r)["drain"]) {
      std::printf("%-12s %s\n", d.value("ranks", "").c_str(), d.value("reason", "").c_str());
    }
  }
  return 0;
}

int run_drain(const ResourceOpts& o, bool drain) {
  const char* cmd = drain ? "resource drain" : "resource undrain";
  auto s = connect_session();
  if (!s.ok()) return fail(cmd, s.error());
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
  auto* dr = res->add_subcommand("drain", "Give no new jobs to RANKS (running ones continue)");
  dr->add_option("ranks", o->ranks, "Ranks, e.g. 0-1,3")->required();
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
