// The shell's PMI-1 server (docs/pmi.md): MPI wire-up for the tasks of a
// job, as MPICH's simple PMI client speaks it.
//
// Each task gets one end of a socket pair as descriptor PMI_FD (with
// PMI_RANK and PMI_SIZE); the shell answers on the other end, on its loop:
//
//   cmd=init pmi_version=1 pmi_subversion=1
//                       → cmd=response_to_init rc=0 pmi_version=1 pmi_subversion=1
//   cmd=get_maxes       → cmd=maxes rc=0 kvsname_max=256 keylen_max=64 vallen_max=1024
//   cmd=get_appnum      → cmd=appnum rc=0 appnum=0
//   cmd=get_universe_size → cmd=universe_size rc=0 size=N
//   cmd=get_my_kvsname  → cmd=my_kvsname rc=0 kvsname=loom_ID
//   cmd=put kvsname=K key=K value=V → cmd=put_result rc=0
//   cmd=get kvsname=K key=K → cmd=get_result rc=0 value=V (rc=-1: no such key)
//   cmd=barrier_in      → cmd=barrier_out rc=0, once every task of the job is in
//   cmd=finalize        → cmd=finalize_ack rc=0
//   cmd=abort exitcode=N [message=M]   ends the job
//   anything else       → cmd=NAME_result rc=-1 msg=... (spawn, name publishing)
//
// The exchange across shells goes through the job's KVS namespace, key
// `pmi` (docs/kvs-layout.md): at a barrier, once every local task is in,
// the shell appends one JSON line {"epoch": E, "rank": R, "kvs": {...}}
// with the keys its tasks put since the last barrier, and the barrier ends
// when the lines of epoch E number the job's shells. An abort is a line
// {"abort": TEXT}: every shell kills its tasks on reading it.
#pragma once

#include <array>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "shell/pmi_wire.h"

namespace loom {

class Handle;

struct PmiJob {
  int size = 0;         // tasks in the job (PMI_SIZE)
  std::string kvsname;  // loom_ID
  int nshells = 1;      // shells that run tasks: each contributes at every barrier
  uint32_t broker_rank = 0;
  std::string process_mapping;  // PMI_process_mapping, "" for none
};

// How the shell reaches the other shells: through its broker's KVS.
struct PmiExchange {
  // Appends `line` to the job's `pmi` key; `done` gets the error, if any.
  std::function<void(std::string line, std::function<void(const Error*)> done)> append;
  // Follows the `pmi` key from its start: `chunk` gets each appended text,
  // or the error that ended the watch (ECONNRESET: the broker went away).
  std::function<void(std::function<void(std::string_view chunk, const Error* e)> chunk)> watch;
};

// PMI_process_mapping for shells running `per_shell` tasks each, in task
// order (MPICH reads which tasks share a node from it).
std::string pmi_process_mapping(const std::vector<uint32_t>& per_shell);

// The exchange through the KVS namespace `ns` of a job, by the handle
// `handle` gives (null while the broker is away).
PmiExchange pmi_kvs_exchange(const std::function<Handle*()>& handle, const std::string& ns);

class PmiServer {
 public:
  // `abort_job(why)` ends the job here: a task asked for it, left the
  // wire-up half done, or another shell's did.
  PmiServer(asio::io_context& io, PmiJob job, PmiExchange exchange, std::function<void(const std::string&)> abort_job);
  ~PmiServer();
  PmiServer(const PmiServer&) = delete;
  PmiServer& operator=(const PmiServer&) = delete;

  // The task end of a new connection for task `task_rank` (never below
  // descriptor 4): give it as PMI_FD, and close it once the task is started.
  Result<int> add_task(int task_rank);
  // The job is being ended anyway: a connection lost now is no abort.
  void set_ending() { ending_ = true; }
  // Task `task_rank` exited: its connection is over (what it wrote before
  // is served first). Gone after init and before finalize, it aborts the job.
  void task_exited(int task_rank);
  // Nothing is on its way to the other shells (an abort): the shell may exit.
  bool idle() const;
  // The broker came back (a new connection): follow the `pmi` key again,
  // from its start, passing over what was read already.
  void rewatch();

 private:
  struct Conn {
    int task_rank = 0;
    std::unique_ptr<asio::posix::stream_descriptor> sd;
    std::array<char, 4096> buf{};
    std::string in;
    std::deque<std::string> out;
    size_t out_bytes = 0;
    bool writing = false;
    bool closed = false;
    bool inited = false;
    bool finalized = false;
    bool in_barrier = false;
    bool in_multi = false;                    // inside an mcmd=... request, up to endcmd
    bool exited = false;                      // the task did: the connection ends once read
    std::map<std::string, std::string> puts;  // since its last barrier
  };
  void read(Conn& c);
  void take(Conn& c, std::string_view line);
  void reply(Conn& c, std::string text);
  void write(Conn& c);
  void close(Conn& c, const std::string& why);
  void finish(Conn& c);
  void check_barrier();
  void start_watch();
  void watch_from_start();
  void watch_failed(const Error& e);
  void feed(std::string_view chunk);
  void take_line(std::string_view line);
  void abort(const std::string& why, bool tell_others);

  asio::io_context& io_;
  PmiJob job_;
  PmiExchange exchange_;
  std::function<void(const std::string&)> abort_job_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::map<std::string, std::string> kvs_;  // what every shell put, up to the last barrier
  // Keys read from the lines of a barrier not yet over (epoch → keys):
  // a shell that is through a barrier may already have put its tasks'
  // keys of the next, which no task may see before that one ends.
  std::map<uint64_t, std::map<std::string, std::string>> arriving_;
  uint64_t epoch_ = 0;
  bool contributed_ = false;               // to epoch_
  std::map<uint64_t, int> contributions_;  // epoch → lines read
  bool watching_ = false;
  int appending_ = 0;    // appends to the `pmi` key not yet answered
  std::string partial_;  // of a line of the `pmi` key
  size_t taken_ = 0;     // bytes of the `pmi` key read
  size_t offset_ = 0;    // bytes delivered by the current watch
  bool aborted_ = false;
  bool ending_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace loom
