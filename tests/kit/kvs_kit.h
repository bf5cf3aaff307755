// KVS helpers for end-to-end tests, on top of kit/client.h: commits and
// lookups as one-line calls, streaming watchers that record what they
// got, a temporary directory, directory snapshots and a broker's RSS.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kit/client.h"

namespace loom::test {

// One commit op as JSON: put / append / unlink.
Json put_op(const std::string& key, const std::string& value);
Json append_op(const std::string& key, const std::string& value);
Json unlink_op(const std::string& key);

// kvs.commit {namespace, ops}; the namespace is left out when empty. (A
// vector, not a Json: `{op}` would be the op itself, not an array of one.)
Reply kvs_commit(Loop& loop, Handle& h, const std::vector<Json>& ops, const std::string& ns = "");
// kvs.lookup {namespace, key}.
Reply kvs_lookup(Loop& loop, Handle& h, const std::string& key, const std::string& ns = "");
// The value of KEY, or nullopt (with *why set) when the lookup failed or
// found a directory.
std::optional<std::string> kvs_value(Loop& loop, Handle& h, const std::string& key, const std::string& ns = "",
                                     std::string* why = nullptr);

// A kvs.watch in progress: every response is recorded.
struct Watcher {
  uint32_t matchtag = 0;
  std::string data;                 // concatenated "data" (append) responses
  std::vector<std::string> values;  // "value" responses (non-append)
  size_t responses = 0;             // successful responses so far
  int end_errnum = 0;               // the error that ended it (ENODATA, ...); 0 while running
  std::string end_text;
  bool bad_payload = false;  // a response that was neither data nor value
  bool ended() const { return end_errnum != 0; }
};

// Starts kvs.watch with `req` (key, append, ...) on `h`; the Watcher must
// outlive the RPC (or the RPC be cancelled).
uint32_t start_watch(Handle& h, const Json& req, Watcher& w, uint32_t nodeid = kNodeAny);

// Sends `total` commits on `h`, keeping up to `window` in flight; commit n
// is ops_for(n). Commits on one connection are answered in order, so the
// acknowledged ones are always 0..acked-1. After the first failure no more
// are sent.
class Appender {
 public:
  Appender(Handle& h, std::function<Json(int n)> ops_for, int total, int window = 8, std::string ns = "");
  void start();
  int total() const { return total_; }
  int sent() const { return next_; }
  int acked() const { return acked_; }
  int failed() const { return failed_; }
  int in_flight() const { return in_flight_; }
  const std::string& first_error() const { return first_error_; }
  // Nothing in flight and nothing more to send.
  bool done() const { return in_flight_ == 0 && (next_ == total_ || failed_ > 0); }
  // Called after each acknowledgement with the commit's number.
  std::function<void(int n)> on_ack;

 private:
  void pump();
  Handle& h_;
  std::function<Json(int)> ops_for_;
  int total_;
  int window_;
  std::string ns_;
  int next_ = 0;
  int acked_ = 0;
  int failed_ = 0;
  int in_flight_ = 0;
  std::string first_error_;
};

// One RFC 18 event line (with its newline).
std::string event_line(double timestamp, const std::string& name, const Json& context);

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it
// by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "loom-kvs-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Every regular file below `dir` (relative path → contents); other kinds
// of entries are recorded with a marker, so that any change shows.
std::map<std::string, std::string> snapshot_dir(const std::string& dir);

void write_file(const std::string& path, const std::string& contents);

// VmRSS of `pid` in KiB, from /proc/PID/status; nullopt if unreadable.
std::optional<long> rss_kib(pid_t pid);

}  // namespace loom::test
