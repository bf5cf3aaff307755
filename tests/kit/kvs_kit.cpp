#include "kit/kvs_kit.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "eventlog/eventlog.h"

namespace loom::test {

namespace fs = std::filesystem;

Json put_op(const std::string& key, const std::string& value) {
  return {{"op", "put"}, {"key", key}, {"value", value}};
}
Json append_op(const std::string& key, const std::string& value) {
  return {{"op", "append"}, {"key", key}, {"value", value}};
}
Json unlink_op(const std::string& key) { return {{"op", "unlink"}, {"key", key}}; }

Reply kvs_commit(Loop& loop, Handle& h, const std::vector<Json>& ops, const std::string& ns) {
  Json arr = Json::array();
  for (auto& op : ops) arr.push_back(op);
  Json req = {{"ops", arr}};
  if (!ns.empty()) req["namespace"] = ns;
  return call(loop, h, "kvs.commit", dump_json(req));
}

Reply kvs_lookup(Loop& loop, Handle& h, const std::string& key, const std::string& ns) {
  Json req = {{"key", key}};
  if (!ns.empty()) req["namespace"] = ns;
  return call(loop, h, "kvs.lookup", dump_json(req));
}

std::optional<std::string> kvs_value(Loop& loop, Handle& h, const std::string& key, const std::string& ns,
                                     std::string* why) {
  Reply r = kvs_lookup(loop, h, key, ns);
  if (r.errnum != 0) {
    if (why) *why = "lookup " + key + ": errnum " + std::to_string(r.errnum) + " " + r.errstr;
    return std::nullopt;
  }
  Json j = r.json();
  if (!j.is_object() || !j.contains("value") || !j["value"].is_string()) {
    if (why) *why = "lookup " + key + ": not a value: " + r.payload;
    return std::nullopt;
  }
  return j["value"].get<std::string>();
}

uint32_t start_watch(Handle& h, const Json& req, Watcher& w, uint32_t nodeid) {
  w.matchtag = h.rpc("kvs.watch", req, RpcOptions{nodeid, true, 0}, [&w](const Message& m) {
    if (m.errnum != 0) {
      w.end_errnum = m.errnum;
      w.end_text = error_text(m);
      return;
    }
    auto j = parse_json(m.payload);
    if (!j.ok() || !j->is_object()) {
      w.bad_payload = true;
      return;
    }
    ++w.responses;
    if (auto it = j->find("data"); it != j->end() && it->is_string()) {
      w.data += it->get<std::string>();
    } else if (auto v = j->find("value"); v != j->end() && v->is_string()) {
      w.values.push_back(v->get<std::string>());
    } else {
      w.bad_payload = true;
    }
  });
  return w.matchtag;
}

Appender::Appender(Handle& h, std::function<Json(int n)> ops_for, int total, int window, std::string ns)
    : h_(h), ops_for_(std::move(ops_for)), total_(total), window_(window), ns_(std::move(ns)) {}

void Appender::start() { pump(); }

void Appender::pump() {
  while (failed_ == 0 && in_flight_ < window_ && next_ < total_) {
    int n = next_++;
    Json req = {{"ops", ops_for_(n)}};
    if (!ns_.empty()) req["namespace"] = ns_;
    ++in_flight_;
    h_.rpc("kvs.commit", req, RpcOptions{}, [this, n](const Message& m) {
      --in_flight_;
      if (m.errnum != 0) {
        if (failed_++ == 0) first_error_ = "commit " + std::to_string(n) + ": " + error_text(m);
        return;
      }
      ++acked_;
      if (on_ack) on_ack(n);
      pump();
    });
  }
}

std::string event_line(double timestamp, const std::string& name, const Json& context) {
  EventEntry e;
  e.timestamp = timestamp;
  e.name = name;
  e.context = context;
  return format_event(e);
}

TempDir::TempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp " + tmpl + " failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::map<std::string, std::string> snapshot_dir(const std::string& dir) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::string rel = fs::relative(it->path(), dir, ec).string();
    if (it->is_symlink(ec)) {
      out[rel] = "<symlink>";
    } else if (it->is_regular_file(ec)) {
      std::ifstream in(it->path(), std::ios::binary);
      std::ostringstream ss;
      ss << in.rdbuf();
      out[rel] = ss.str();
    } else if (it->is_directory(ec)) {
      out[rel] = "<dir>";
    } else {
      out[rel] = "<other>";
    }
  }
  if (ec) out["<error>"] = ec.message();
  return out;
}

void write_file(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::optional<long> rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) {
      try {
        return std::stol(line.substr(6));
      } catch (const std::exception&) {
        return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

}  // namespace loom::test
