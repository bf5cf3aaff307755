#include "cli/common.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>

namespace loom::cli {

std::string latest_uri_file() {
  const char* dir = std::getenv("XDG_RUNTIME_DIR");
  std::string base = (dir && *dir) ? dir : "/tmp";
  return base + "/loom-" + std::to_string(::getuid()) + "/latest";
}

Result<std::string> instance_uri() {
  if (const char* uri = std::getenv("LOOM_URI"); uri && *uri) return std::string(uri);
  std::ifstream in(latest_uri_file());
  std::string uri;
  if (in && std::getline(in, uri) && !uri.empty()) return uri;
  // The host's broker of an instance spread over hosts (docs/deploy.md).
  if (::access("/run/loom/local.sock", F_OK) == 0) return std::string("local:///run/loom/local.sock");
  return Error{ENOENT, "no instance found: set LOOM_URI, start one with `loom start`, or start loomd --config"};
}

int stream_until_end(Session& s, const std::string& cmd, const std::string& topic, const Json& req, double timeout,
                     const std::function<int(const Json& payload)>& on_response) {
  int rc = -1;
  auto timer = s.clock->make_timer();
  if (timeout >= 0) {
    timer->arm(timeout, [&] {
      char buf[64];
      std::snprintf(buf, sizeof buf, "timed out after %gs", timeout);
      rc = fail(cmd, buf);
    });
  }
  uint32_t tag = s.handle().rpc(topic, req, {kNodeAny, true, 0}, [&](const Message& m) {
    if (rc >= 0) return;
    if (m.errnum == ENODATA) {
      rc = 0;
      return;
    }
    if (m.errnum) {
      rc = fail(cmd, error_text(m));
      return;
    }
    auto j = parse_json(m.payload);
    if (!j.ok()) {
      rc = fail(cmd, "unexpected response from " + topic);
      return;
    }
    rc = on_response(*j);
  });
  while (rc < 0 && s.client->is_open()) s.io.run_one();
  // Stopped before its end: the handler, which refers to this frame, goes.
  s.handle().cancel_rpc(tag);
  if (rc < 0) return fail(cmd, s.client->lost_text());
  return rc;
}

Result<std::unique_ptr<Session>> connect_session() {
  auto uri = instance_uri();
  if (!uri.ok()) return uri.error();
  auto s = std::make_unique<Session>();
  s->clock = make_real_clock(s->io);
  auto c = Client::connect(s->io, *s->clock, *uri);
  if (!c.ok()) return c.error();
  s->client = std::move(*c);
  return s;
}

Result<EventMatch> EventMatch::parse(const std::string& name, const std::vector<std::string>& key_values) {
  EventMatch m{name, {}};
  for (const auto& kv : key_values) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) return Error{EINVAL, "-m wants KEY=VALUE, got \"" + kv + "\""};
    m.context.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return m;
}

bool EventMatch::operator()(const EventEntry& e) const {
  if (e.name != name) return false;
  for (const auto& [k, v] : context) {
    if (!e.context.is_object() || !e.context.contains(k)) return false;
    const Json& c = e.context[k];
    if ((c.is_string() ? c.get<std::string>() : dump_json(c)) != v) return false;
  }
  return true;
}

std::string format_event_human(const EventEntry& e) {
  char ts[64];
  std::snprintf(ts, sizeof ts, "%.6f", e.timestamp);
  std::string out = std::string(ts) + " " + e.name;
  if (e.context.is_object()) {
    for (auto& [k, v] : e.context.items()) {
      // A string as it is, unless it would break the line (output data
      // ends in a newline): then quoted, as JSON writes it.
      bool plain =
          v.is_string() && std::none_of(v.get_ref<const std::string&>().begin(), v.get_ref<const std::string&>().end(),
                                        [](char c) { return static_cast<unsigned char>(c) < 0x20; });
      out += " " + k + "=" + (plain ? v.get<std::string>() : dump_json(v));
    }
  }
  return out;
}

Result<int> urgency_arg(const std::string& s) {
  if (s == "hold") return 0;
  if (s == "default") return 16;
  if (s == "expedite") return 31;
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end || v < 0 || v > 31) {
    return Error{EINVAL, "urgency must be 0-31, hold, default or expedite, not \"" + s + "\""};
  }
  return static_cast<int>(v);
}

Result<JobId> job_arg(const std::string& s) {
  auto id = parse_jobid(s);
  if (!id.ok()) return Error{EINVAL, "\"" + s + "\" is not a job id"};
  return id;
}

bool run_until(Session& s, const bool& done) {
  while (!done && s.client->is_open()) s.io.run_one();
  return done;
}

int fail(const std::string& cmd, const std::string& text, int code) {
  std::cerr << "loom " << cmd << ": " << text << "\n";
  return code;
}

int fail(const std::string& cmd, const Error& e, int code) { return fail(cmd, e.text, code); }

uint32_t rank_or_any(int rank) { return rank < 0 ? kNodeAny : static_cast<uint32_t>(rank); }

}  // namespace loom::cli
