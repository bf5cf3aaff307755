// loom job attach [-l] [-i] ID: the job's output as it is written, then its end.
// Used by `loom run` after it submits.
//
// The job's eventlog is followed to its `clean`. From its `start`, the
// output eventlog in the job's namespace is watched and each entry goes to
// stdout or stderr as written (byte for byte; -l puts "RANK: " before each
// line). Once the job is clean its namespace has been linked into
// job.ID.guest: whatever the watch had not delivered is read from there
// (through job-info, which users may read for their own jobs). With
// forward_stdin (`loom run`, `job attach --stdin`) our stdin goes to the
// job's input eventlog from its start (stdin_pump.h). Fatal exceptions
// are printed as they happen, and Ctrl-C twice within two seconds cancels
// the job; `loom job eventlog -f --path=...`, which follows
// an eventlog through here too, does neither.
#include "cli/attach.h"

#include <signal.h>
#include <sys/wait.h>

#include <asio/signal_set.hpp>
#include <cstdio>
#include <iostream>
#include <optional>

#include "base/wait_status.h"
#include "cli/stdin_pump.h"
#include "eventlog/eventlog.h"
#include "shell/output.h"

namespace loom::cli {

namespace {

struct Attach {
  Attach(Session& session, JobId job, AttachOpts opts) : s(session), id(job), o(std::move(opts)) {}
  Session& s;
  JobId id;
  AttachOpts o;
  size_t printed = 0;  // data entries written out
  LineSplitter lines;
  bool watching = false;
  uint32_t watch_tag = 0;
  int rc = -1;  // set on an error

  void print_entry(const Json& e) {
    if (!e.is_object() || e.value("name", "") != "data") return;
    const Json& ctx = e["context"];
    auto data = output_data(ctx);
    if (!data.ok()) return;
    ++printed;
    FILE* to = ctx.value("stream", "") == "stderr" ? stderr : stdout;
    if (o.label) {
      std::string label = ctx.value("rank", "?") + ": ";
      std::fwrite(label.data(), 1, label.size(), to);
    }
    std::fwrite(data->data(), 1, data->size(), to);
    std::fflush(to);
  }

  void watch_output() {
    if (watching) return;
    watching = true;
    Json req{{"namespace", kvs_key::guest_namespace(id)},
             {"key", o.key},
             {"append", true},
             {"waitcreate", true},
             {"from", "start"}};
    watch_tag = s.handle().rpc("kvs.watch", req, {kNodeAny, true, 0}, [this](const Message& m) {
      if (m.errnum) return;  // the namespace is gone: the rest is read after clean
      auto j = parse_json(m.payload);
      if (!j.ok() || !j->contains("data") || !(*j)["data"].is_string()) return;
      for (auto& line : lines.feed((*j)["data"].get<std::string>())) {
        if (o.on_line) {
          ++printed;
          o.on_line(line);
          continue;
        }
        auto e = parse_json(line);
        if (e.ok()) print_entry(*e);
      }
    });
  }

  // After clean: the entries the watch had not delivered.
  void read_rest() {
    auto text = lookup_guest(*s.client, id, o.key);
    if (!text.ok()) {
      // No output at all is not an error.
      if (text.error().code != ENOENT) rc = fail(o.cmd, text.error());
      return;
    }
    LineSplitter all;
    size_t n = 0;
    for (auto& line : all.feed(*text)) {
      if (o.on_line) {
        if (n++ >= printed) o.on_line(line);
        continue;
      }
      auto e = parse_json(line);
      if (!e.ok() || e->value("name", "") != "data") continue;
      if (n++ < printed) continue;
      print_entry(*e);
    }
  }
};

}  // namespace

Result<std::string> lookup_guest(Client& c, JobId id, const std::string& key) {
  std::string k = std::string(kvs_key::kGuest) + "." + key;
  auto r = c.call("job-info.lookup", Json{{"id", id.value()}, {"keys", {k}}});
  if (!r.ok()) return r.error();
  if (!(*r)[k].is_string()) return Error{EPROTO, "the " + key + " eventlog is not text"};
  return (*r)[k].get<std::string>();
}

int attach_job(Session& s, JobId id, const AttachOpts& o) {
  Attach a(s, id, o);
  std::string cmd = o.cmd;
  // Following another eventlog is only reading: Ctrl-C ends it as usual.
  bool attached = !o.on_line;
  std::optional<asio::signal_set> sigint;
  if (attached) sigint.emplace(s.io, SIGINT);
  double last_int = -1;
  std::function<void()> on_int = [&] {
    sigint->async_wait([&](const std::error_code& ec, int) {
      if (ec) return;
      double now = s.clock->now();
      if (last_int >= 0 && now - last_int <= 2.0) {
        std::cerr << "loom " << cmd << ": cancelling " << encode_f58(id) << "\n";
        s.handle().rpc("job-manager.cancel", Json{{"ids", {id.value()}}, {"note", "interrupted"}}, {},
                       [](const Message&) {});
      } else {
        std::cerr << "loom " << cmd << ": one more Ctrl-C within 2s cancels " << encode_f58(id) << "\n";
      }
      last_int = now;
      on_int();
    });
  };
  if (attached) on_int();
  std::unique_ptr<StdinPump> input;
  // Read until the job is clean (or the stream ends without it).
  int rc =
      stream_until_end(s, cmd, "job-info.eventlog", Json{{"id", id.value()}, {"follow", true}}, -1, [&](const Json& j) {
        if (!j.contains("event")) return -1;
        const Json& e = j["event"];
        std::string name = e.value("name", "");
        if (name == "start") {
          a.watch_output();
          if (o.forward_stdin && !input) input = StdinPump::start(s, cmd, id);
        }
        if (attached && name == "exception" && e["context"].value("severity", 1) == 0) {
          std::string note = e["context"].value("note", "");
          std::cerr << "loom " << cmd << ": " << encode_f58(id) << ": " << e["context"].value("type", "")
                    << " exception" << (note.empty() ? "" : ": " + note) << "\n";
        }
        return name == "clean" ? 0 : -1;
      });
  if (sigint) sigint->cancel();
  input.reset();
  if (rc != 0) return rc;
  if (a.watching) s.handle().cancel_rpc(a.watch_tag);
  a.read_rest();
  if (a.rc >= 0) return a.rc;
  if (o.on_line) return 0;
  // The job's end, as it is stored.
  auto r = s.client->call("job-manager.wait", Json{{"id", id.value()}});
  if (!r.ok()) return fail(cmd, encode_f58(id) + ": " + r.error().text);
  int code = r->value("success", false) ? 0 : 1;
  if (r->contains("status")) {
    if (int st = shell_exit_code((*r)["status"].get<int>()); st != 0) code = st;
  }
  if (code != 0 && !r->contains("exception")) {
    std::cerr << "loom " << cmd << ": " << encode_f58(id) << ": task(s) exited with exit code " << code << "\n";
  }
  return code;
}

}  // namespace loom::cli
