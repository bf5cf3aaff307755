// A job's standard input (docs/protocols/exec.md, "Standard input"):
// where its tasks read it is the jobspec's (jobspec/input.h).
//
// The input eventlog (key `input` of the job's namespace) is written by
// `loom run` and `loom job attach` from their own stdin: one `data` entry
// per chunk, as in the output eventlog (Flux RFC 24), the last one with
// "eof": true:
//
//   {"timestamp": T, "name": "data",
//    "context": {"stream": "stdin", "rank": "all", "data": "hello\n"}}
//   {"timestamp": T, "name": "data",
//    "context": {"stream": "stdin", "rank": "all", "eof": true}}
//
// The shell of each rank watches it and writes what it says to the stdin
// of its tasks that read it; at the end of the input their stdin closes.
#pragma once

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "jobspec/input.h"
#include "msg/json.h"

namespace loom {

// An entry of the input eventlog: a chunk of data, or the end (`eof`).
Json input_entry(std::string_view data, bool eof);

// The tasks' ends of the input: one pipe per task that reads the input
// eventlog, fed as the watch delivers the eventlog's text.
class TaskInput {
 public:
  explicit TaskInput(asio::io_context& io) : io_(io) {}
  // A pipe for task `task_rank`'s stdin: the end the task reads (to give it
  // and close once it is spawned).
  Result<int> add(int task_rank);
  bool empty() const { return sinks_.empty(); }
  // Text of the input eventlog from its start, as a watch delivers it.
  // A new watch (after the broker came back) starts over: call restart()
  // first, and what was already taken is skipped.
  void feed(std::string_view text);
  void restart() { offset_ = 0; }

 private:
  struct Sink {
    int task_rank;
    std::unique_ptr<asio::posix::stream_descriptor> fd;
    std::string buf;    // what came and is not being written
    std::string out;    // being written: left alone until the write ends
    size_t out_at = 0;  // of `out`, written
    bool writing = false;
    bool eof = false;
  };
  void take(std::string_view line);
  void write(Sink& s);
  void close(Sink& s);

  asio::io_context& io_;
  std::vector<std::unique_ptr<Sink>> sinks_;
  std::string partial_;  // of a line
  size_t taken_ = 0;     // bytes of the eventlog taken
  size_t offset_ = 0;    // bytes delivered by the current watch
};

}  // namespace loom
