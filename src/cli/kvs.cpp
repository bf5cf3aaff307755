// loom kvs get|put|unlink|ls|eventlog|namespace: the KVS from the shell.
#include <cmath>
#include <cstdio>
#include <iostream>

#include "cli/common.h"
#include "eventlog/eventlog.h"
#include "kvs/layout.h"

namespace loom::cli {

namespace {

struct KvsOpts {
  std::string ns = kvs_key::kPrimaryNamespace;
  std::vector<std::string> args;
  std::string key;
  std::string name;
  std::string context;
  std::vector<std::string> match;
  bool follow = false;
  bool json = false;
  double timeout = -1;
  int64_t owner = -1;
};

Json with_ns(const KvsOpts& o, Json j) {
  j["namespace"] = o.ns;
  return j;
}

int run_get(const KvsOpts& o) {
  auto s = connect_session();
  if (!s.ok()) return fail("kvs get", s.error());
  auto r = (*s)->client->call("kvs.lookup", with_ns(o, {{"key", o.key}}));
  if (!r.ok()) return fail("kvs get", r.error());
  if (!r->contains("value")) return fail("kvs get", o.key + " is a directory");
  std::string v = (*r)["value"].get<std::string>();
  std::cout << v << (v.empty() || v.back() != '\n' ? "\n" : "");
  return 0;
}

// One kvs.commit of `ops`; the exit status of `cmd`.
int commit(const std::string& cmd, const KvsOpts& o, Json ops) {
  auto s = connect_session();
  if (!s.ok()) return fail(cmd, s.error());
  auto r = (*s)->client->call("kvs.commit", with_ns(o, {{"ops", std::move(ops)}}));
  if (!r.ok()) return fail(cmd, r.error());
  return 0;
}

int run_put(const KvsOpts& o) {
  Json ops = Json::array();
  for (const auto& kv : o.args) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return fail("kvs put", "expected KEY=VALUE, got \"" + kv + "\"", kExitUsage);
    ops.push_back({{"op", "put"}, {"key", kv.substr(0, eq)}, {"value", kv.substr(eq + 1)}});
  }
  return commit("kvs put", o, std::move(ops));
}

int run_unlink(const KvsOpts& o) {
  Json ops = Json::array();
  for (const auto& k : o.args) ops.push_back({{"op", "unlink"}, {"key", k}});
  return commit("kvs unlink", o, std::move(ops));
}

int run_ls(const KvsOpts& o) {
  auto s = connect_session();
  if (!s.ok()) return fail("kvs ls", s.error());
  auto r = (*s)->client->call("kvs.lookup", with_ns(o, {{"key", o.key.empty() ? "." : o.key}}));
  if (!r.ok()) return fail("kvs ls", r.error());
  if (!r->contains("dir")) {
    std::cout << o.key << "\n";
    return 0;
  }
  for (auto& n : (*r)["dir"]) std::cout << n.get<std::string>() << "\n";
  return 0;
}

int run_append(const KvsOpts& o) {
  EventEntry e;
  e.name = o.name;
  if (!o.context.empty()) {
    auto c = parse_json(o.context);
    if (!c.ok()) return fail("kvs eventlog append", "context: " + c.error().text, kExitUsage);
    e.context = *c;
  }
  auto s = connect_session();
  if (!s.ok()) return fail("kvs eventlog append", s.error());
  e.timestamp = (*s)->clock->wall();
  if (auto st = validate_event(e); !st) return fail("kvs eventlog append", st.error(), kExitUsage);
  Json ops = Json::array({{{"op", "append"}, {"key", o.key}, {"value", format_event(e)}}});
  auto r = (*s)->client->call("kvs.commit", with_ns(o, {{"ops", ops}}));
  if (!r.ok()) return fail("kvs eventlog append", r.error());
  return 0;
}

// Follows KEY's eventlog; `on_event` returns true to stop.
int follow_eventlog(const std::string& cmd, const KvsOpts& o, bool follow,
                    const std::function<bool(const std::string& line, const EventEntry&)>& on_event) {
  auto s = connect_session();
  if (!s.ok()) return fail(cmd, s.error());
  Session& sess = **s;
  if (!follow) {
    auto r = sess.client->call("kvs.lookup", with_ns(o, {{"key", o.key}}));
    if (!r.ok()) return fail(cmd, r.error());
    if (!r->contains("value")) return fail(cmd, o.key + " is a directory");
    LineSplitter split;
    for (auto& line : split.feed((*r)["value"].get<std::string>())) {
      auto e = parse_event(line);
      if (!e.ok()) return fail(cmd, o.key + ": " + e.error().text);
      if (on_event(line, *e)) break;
    }
    return 0;
  }
  LineSplitter split;
  Json req = with_ns(o, {{"key", o.key}, {"append", true}, {"waitcreate", true}, {"from", "start"}});
  return stream_until_end(sess, cmd, "kvs.watch", req, o.timeout, [&](const Json& j) {
    if (!j.contains("data") || !j["data"].is_string()) return fail(cmd, "unexpected response from kvs.watch");
    for (auto& line : split.feed(j["data"].get<std::string>())) {
      auto e = parse_event(line);
      if (!e.ok()) return fail(cmd, o.key + ": " + e.error().text);
      if (on_event(line, *e)) return 0;
    }
    return -1;
  });
}

int run_eventlog_get(const KvsOpts& o) {
  return follow_eventlog("kvs eventlog get", o, o.follow, [&](const std::string& line, const EventEntry& e) {
    std::cout << (o.json ? line : format_event_human(e)) << "\n" << std::flush;
    return false;
  });
}

int run_wait_event(const KvsOpts& o) {
  auto match = EventMatch::parse(o.name, o.match);
  if (!match.ok()) return fail("kvs eventlog wait-event", match.error(), kExitUsage);
  bool found = false;
  int rc = follow_eventlog("kvs eventlog wait-event", o, true, [&](const std::string& line, const EventEntry& e) {
    if (!(*match)(e)) return false;
    std::cout << (o.json ? line : format_event_human(e)) << "\n";
    found = true;
    return true;
  });
  if (rc == 0 && !found) return fail("kvs eventlog wait-event", o.key + " was removed before " + o.name + " appeared");
  return rc;
}

int run_ns_create(const KvsOpts& o) {
  auto s = connect_session();
  if (!s.ok()) return fail("kvs namespace create", s.error());
  Json req = {{"name", o.name}};
  if (o.owner >= 0) req["owner"] = o.owner;
  auto r = (*s)->client->call("kvs.namespace-create", req);
  if (!r.ok()) return fail("kvs namespace create", r.error());
  return 0;
}

int run_ns_remove(const KvsOpts& o) {
  auto s = connect_session();
  if (!s.ok()) return fail("kvs namespace remove", s.error());
  auto r = (*s)->client->call("kvs.namespace-remove", {{"name", o.name}});
  if (!r.ok()) return fail("kvs namespace remove", r.error());
  return 0;
}

int run_ns_list(const KvsOpts& o) {
  auto s = connect_session();
  if (!s.ok()) return fail("kvs namespace list", s.error());
  auto r = (*s)->client->call("kvs.namespace-list", Json::object());
  if (!r.ok()) return fail("kvs namespace list", r.error());
  if (o.json) {
    std::cout << dump_json((*r)["namespaces"]) << "\n";
    return 0;
  }
  std::printf("%-24s %-8s %s\n", "NAMESPACE", "OWNER", "KEYS");
  for (auto& n : (*r)["namespaces"]) {
    std::printf("%-24s %-8u %zu\n", n["name"].get<std::string>().c_str(), n["owner"].get<uint32_t>(),
                n["keys"].get<size_t>());
  }
  return 0;
}

CLI::App* leaf(CLI::App* parent, const char* name, const char* help, const std::shared_ptr<KvsOpts>& o, Runner& run,
               int (*fn)(const KvsOpts&)) {
  auto* sub = parent->add_subcommand(name, help);
  sub->callback([o, &run, fn] { run = [o, fn] { return fn(*o); }; });
  return sub;
}

}  // namespace

void add_kvs_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<KvsOpts>();
  auto* kvs = app.add_subcommand("kvs", "Read and write the key-value store");
  kvs->require_subcommand(1);
  kvs->add_option("--namespace", o->ns, "Namespace (default: primary)");

  leaf(kvs, "get", "Print the value of KEY", o, run, run_get)->add_option("key", o->key, "Key")->required();
  leaf(kvs, "put", "Store KEY=VALUE pairs in one transaction", o, run, run_put)
      ->add_option("pairs", o->args, "KEY=VALUE ...")
      ->required();
  leaf(kvs, "unlink", "Remove keys (and everything below them)", o, run, run_unlink)
      ->add_option("keys", o->args, "KEY ...")
      ->required();
  leaf(kvs, "ls", "List the keys directly below DIR (default: the top)", o, run, run_ls)
      ->add_option("dir", o->key, "Directory");

  auto* ev = kvs->add_subcommand("eventlog", "Eventlogs (one JSON event per line)");
  ev->require_subcommand(1);
  auto* append = leaf(ev, "append", "Append event NAME to the eventlog at KEY", o, run, run_append);
  append->add_option("key", o->key, "Key")->required();
  append->add_option("name", o->name, "Event name")->required();
  append->add_option("context", o->context, "Context: a JSON object");
  auto* get = leaf(ev, "get", "Print the eventlog at KEY", o, run, run_eventlog_get);
  get->add_option("key", o->key, "Key")->required();
  get->add_flag("-f,--follow", o->follow, "Keep printing events as they are appended");
  get->add_flag("--json", o->json, "Print events as stored (JSON lines)");
  auto* wait = leaf(ev, "wait-event", "Wait until event NAME is in the eventlog at KEY", o, run, run_wait_event);
  wait->add_option("key", o->key, "Key")->required();
  wait->add_option("name", o->name, "Event name")->required();
  wait->add_option("-t,--timeout", o->timeout, "Give up after SECS seconds")->check(CLI::NonNegativeNumber);
  wait->add_flag("--json", o->json, "Print the event as stored");
  wait->add_option("-m,--match-context", o->match, "Also require context KEY=VALUE (repeatable)")
      ->allow_extra_args(false);

  auto* ns = kvs->add_subcommand("namespace", "Namespaces");
  ns->require_subcommand(1);
  auto* create = leaf(ns, "create", "Create namespace NAME", o, run, run_ns_create);
  create->add_option("name", o->name, "Name")->required();
  create->add_option("--owner", o->owner, "Owner uid (default: the instance owner)");
  leaf(ns, "remove", "Remove namespace NAME and its keys", o, run, run_ns_remove)
      ->add_option("name", o->name, "Name")
      ->required();
  leaf(ns, "list", "List namespaces", o, run, run_ns_list)->add_flag("--json", o->json, "Print JSON");
}

}  // namespace loom::cli
