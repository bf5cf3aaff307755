// The PMI-1 server of a shell: the protocol is in pmi_server.h, the design
// in docs/pmi.md.
#include "shell/pmi_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <asio/write.hpp>
#include <cerrno>
#include <cstring>

#include "kvs/layout.h"
#include "msg/handle.h"
#include "msg/json.h"

namespace loom {

namespace {

// Answers queued for a task that does not read them, at most; beyond, its
// connection ends.
constexpr size_t kMaxQueued = 1u << 20;

}  // namespace

// PMI_process_mapping for shells running `per_shell` tasks each, in task
// order: MPICH's "(vector,(NODE,NODES,TASKS),...)", one triple per run of
// consecutive nodes with as many tasks.
std::string pmi_process_mapping(const std::vector<uint32_t>& per_shell) {
  std::string out = "(vector";
  for (size_t i = 0; i < per_shell.size();) {
    size_t j = i;
    while (j < per_shell.size() && per_shell[j] == per_shell[i]) ++j;
    out += ",(" + std::to_string(i) + "," + std::to_string(j - i) + "," + std::to_string(per_shell[i]) + ")";
    i = j;
  }
  return out + ")";
}

PmiExchange pmi_kvs_exchange(const std::function<Handle*()>& handle, const std::string& ns) {
  PmiExchange ex;
  ex.append = [handle, ns](std::string line, const std::function<void(const Error*)>& done) {
    Handle* h = handle();
    if (!h) {
      Error e{EHOSTUNREACH, "the broker is away"};
      return done(&e);
    }
    Json ops = Json::array({Json{{"op", "append"}, {"key", kvs_key::kPmi}, {"value", std::move(line)}}});
    h->rpc("kvs.commit", Json{{"namespace", ns}, {"ops", ops}}, {}, [done](const Message& r) {
      if (!r.errnum) return done(nullptr);
      Error e{r.errnum, error_text(r)};
      done(&e);
    });
  };
  ex.watch = [handle, ns](const std::function<void(std::string_view, const Error*)>& chunk) {
    Handle* h = handle();
    if (!h) return;
    Json req{{"namespace", ns}, {"key", kvs_key::kPmi}, {"append", true}, {"waitcreate", true}, {"from", "start"}};
    h->rpc("kvs.watch", req, {kNodeAny, true, 0}, [chunk](const Message& m) {
      if (m.errnum) {
        Error e{m.errnum, error_text(m)};
        return chunk({}, &e);
      }
      auto j = parse_json(m.payload);
      if (!j.ok() || !j->contains("data") || !(*j)["data"].is_string()) return;
      chunk((*j)["data"].get<std::string>(), nullptr);
    });
  };
  return ex;
}

PmiServer::PmiServer(asio::io_context& io, PmiJob job, PmiExchange exchange,
                     std::function<void(const std::string&)> abort_job)
    : io_(io), job_(std::move(job)), exchange_(std::move(exchange)), abort_job_(std::move(abort_job)) {
  if (!job_.process_mapping.empty()) kvs_["PMI_process_mapping"] = job_.process_mapping;
}

PmiServer::~PmiServer() = default;

Result<int> PmiServer::add_task(int task_rank) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return Error{errno, std::string("socketpair: ") + std::strerror(errno)};
  }
  if (sv[1] < 4) {
    // Never the descriptor the task finds it on (3): posix_spawn's dup2
    // onto itself would keep it close-on-exec on older C libraries.
    int moved = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 4);
    ::close(sv[1]);
    if (moved < 0) {
      ::close(sv[0]);
      return Error{errno, std::string("fcntl: ") + std::strerror(errno)};
    }
    sv[1] = moved;
  }
  auto c = std::make_unique<Conn>();
  c->task_rank = task_rank;
  c->sd = std::make_unique<asio::posix::stream_descriptor>(io_, sv[0]);
  read(*c);
  conns_.push_back(std::move(c));
  return sv[1];
}

bool PmiServer::idle() const { return appending_ == 0; }

// The connection ends with the task, whoever else holds its end (a
// process it left running). What the task wrote before it exited is
// taken first (a finalize, or an abort sent just before exit): the read
// under way is cancelled, and its handler, with what it read if anything,
// finishes the connection.
void PmiServer::task_exited(int task_rank) {
  for (auto& c : conns_) {
    if (c->task_rank != task_rank || c->closed) continue;
    c->exited = true;
    std::error_code ignored;
    c->sd->cancel(ignored);
  }
}

// Task c exited: what is left in the socket, then the end.
void PmiServer::finish(Conn& c) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(c.sd->native_handle(), buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) break;
    c.in.append(buf, static_cast<size_t>(n));
    if (c.in.size() > 4 * kPmiLineMax) break;
  }
  size_t start = 0;
  for (size_t nl; !c.closed && (nl = c.in.find('\n', start)) != std::string::npos; start = nl + 1) {
    take(c, std::string_view(c.in).substr(start, nl - start));
  }
  close(c, "");
}

void PmiServer::read(Conn& c) {
  c.sd->async_read_some(
      asio::buffer(c.buf), [this, &c, a = std::weak_ptr<int>(alive_)](const std::error_code& ec, size_t n) {
        if (a.expired() || c.closed) return;
        if (c.exited) {
          if (!ec) c.in.append(c.buf.data(), n);
          return finish(c);
        }
        if (ec) return close(c, "");
        c.in.append(c.buf.data(), n);
        size_t start = 0;
        for (size_t nl; !c.closed && (nl = c.in.find('\n', start)) != std::string::npos; start = nl + 1) {
          take(c, std::string_view(c.in).substr(start, nl - start));
        }
        if (c.closed) return;
        c.in.erase(0, start);
        if (c.in.size() > kPmiLineMax) {
          return close(c, "a PMI request line longer than " + std::to_string(kPmiLineMax) + " bytes");
        }
        read(c);
      });
}

// One request line of task c.
void PmiServer::take(Conn& c, std::string_view line) {
  if (line.size() > kPmiLineMax) {
    return close(c, "a PMI request line longer than " + std::to_string(kPmiLineMax) + " bytes");
  }
  if (c.in_multi) {
    // The words of a request of several lines (spawn): not served.
    if (line == "endcmd") {
      c.in_multi = false;
      reply(c, pmi_error("spawn_result", "spawn is not supported"));
    }
    return;
  }
  auto req = parse_pmi_line(line);
  if (!req.ok()) return reply(c, pmi_error("error", req.error().text));
  const std::string& cmd = req->cmd;
  if (req->multi) {
    c.in_multi = true;
    return;
  }
  if (cmd == "init") {
    if (req->arg("pmi_version") != "1") {
      return reply(c, pmi_error("response_to_init", "only PMI version 1 is served"));
    }
    // Again after a finalize: the task runs one MPI program after
    // another, and takes part in barriers again.
    c.inited = true;
    c.finalized = false;
    start_watch();
    return reply(c, "cmd=response_to_init rc=0 pmi_version=1 pmi_subversion=1\n");
  }
  if (cmd == "get_maxes") {
    return reply(c, "cmd=maxes rc=0 kvsname_max=" + std::to_string(kPmiKvsnameMax) + " keylen_max=" +
                        std::to_string(kPmiKeyMax) + " vallen_max=" + std::to_string(kPmiValueMax) + "\n");
  }
  if (cmd == "get_appnum") return reply(c, "cmd=appnum rc=0 appnum=0\n");
  if (cmd == "get_universe_size") return reply(c, "cmd=universe_size rc=0 size=" + std::to_string(job_.size) + "\n");
  if (cmd == "get_my_kvsname") return reply(c, "cmd=my_kvsname rc=0 kvsname=" + job_.kvsname + "\n");
  if (cmd == "put") {
    std::string key = req->arg("key");
    std::string value = req->arg("value");
    if (key.empty() || !req->has("value")) return reply(c, pmi_error("put_result", "a put needs key= and value="));
    if (key.size() > kPmiKeyMax) return reply(c, pmi_error("put_result", "key too long"));
    if (value.size() > kPmiValueMax) return reply(c, pmi_error("put_result", "value too long"));
    c.puts[key] = std::move(value);
    return reply(c, "cmd=put_result rc=0\n");
  }
  if (cmd == "get") {
    std::string key = req->arg("key");
    // A task sees its own keys at once, the others' after a barrier.
    auto it = c.puts.find(key);
    if (it == c.puts.end()) {
      it = kvs_.find(key);
      if (it == kvs_.end()) return reply(c, pmi_error("get_result", "key " + key.substr(0, kPmiKeyMax) + " not found"));
    }
    return reply(c, "cmd=get_result rc=0 value=" + it->second + "\n");
  }
  if (cmd == "barrier_in") {
    if (c.in_barrier) return reply(c, pmi_error("barrier_out", "already in the barrier"));
    c.in_barrier = true;
    return check_barrier();
  }
  if (cmd == "finalize") {
    c.finalized = true;
    reply(c, "cmd=finalize_ack rc=0\n");
    // A finalized task takes no part in later barriers.
    return check_barrier();
  }
  if (cmd == "abort") {
    std::string why = "task " + std::to_string(c.task_rank) + " aborted the job";
    if (req->has("exitcode")) why += " (exit code " + req->arg("exitcode").substr(0, 16) + ")";
    std::string msg = req->has("message") ? req->arg("message") : req->arg("msg");
    if (!msg.empty()) why += ": " + msg.substr(0, 256);
    return abort(why, true);
  }
  std::string response = cmd == "publish_name"     ? "publish_result"
                         : cmd == "unpublish_name" ? "unpublish_result"
                         : cmd == "lookup_name"    ? "lookup_result"
                         : cmd == "spawn"          ? "spawn_result"
                                                   : cmd.substr(0, 64) + "_result";
  reply(c, pmi_error(response, "unknown or unsupported request " + cmd.substr(0, 64)));
}

void PmiServer::reply(Conn& c, std::string text) {
  if (c.closed) return;
  c.out_bytes += text.size();
  c.out.push_back(std::move(text));
  if (c.out_bytes > kMaxQueued) return close(c, "a task that does not read its PMI answers");
  write(c);
}

void PmiServer::write(Conn& c) {
  if (c.writing || c.out.empty() || c.closed) return;
  c.writing = true;
  asio::async_write(*c.sd, asio::buffer(c.out.front()),
                    [this, &c, a = std::weak_ptr<int>(alive_)](const std::error_code& ec, size_t) {
                      if (a.expired()) return;
                      c.writing = false;
                      // (Cancelled when the task exited: the read's handler ends it.)
                      if (c.closed || ec == asio::error::operation_aborted) return;
                      if (ec) return close(c, "");
                      c.out_bytes -= c.out.front().size();
                      c.out.pop_front();
                      write(c);
                    });
}

// The connection of task c is over: it closed its end (`why` empty), or
// broke the protocol. A task gone after init and before finalize leaves
// the others waiting for it for ever: the job is aborted.
void PmiServer::close(Conn& c, const std::string& why) {
  if (c.closed) return;
  c.closed = true;
  std::error_code ignored;
  c.sd->close(ignored);
  c.out.clear();
  c.out_bytes = 0;
  if (c.inited && !c.finalized && !ending_) {
    std::string what = why.empty() ? "left after PMI init, before finalize" : "sent " + why;
    return abort("task " + std::to_string(c.task_rank) + " " + what, true);
  }
  check_barrier();
}

// A barrier ends here once every task still connected and not finalized
// is in it: then our tasks' puts go to the other shells.
void PmiServer::check_barrier() {
  if (contributed_ || aborted_) return;
  bool any = false;
  for (const auto& c : conns_) {
    if (c->closed || c->finalized) continue;
    if (!c->in_barrier) return;
    any = true;
  }
  if (!any) return;
  contributed_ = true;
  Json kvs = Json::object();
  for (auto& c : conns_) {
    for (auto& [k, v] : c->puts) kvs[k] = std::move(v);
    c->puts.clear();
  }
  std::string line = dump_json(Json{{"epoch", epoch_}, {"rank", job_.broker_rank}, {"kvs", std::move(kvs)}}) + "\n";
  start_watch();
  ++appending_;
  exchange_.append(std::move(line), [this, a = std::weak_ptr<int>(alive_)](const Error* e) {
    if (a.expired()) return;
    --appending_;
    if (e) abort("cannot exchange the PMI keys: " + e->text, false);
  });
}

void PmiServer::start_watch() {
  if (!watching_) watch_from_start();
}

void PmiServer::rewatch() {
  if (watching_) watch_from_start();
}

// What was read already (taken_) is passed over.
void PmiServer::watch_from_start() {
  watching_ = true;
  offset_ = 0;
  exchange_.watch([this, a = std::weak_ptr<int>(alive_)](std::string_view chunk, const Error* e) {
    if (a.expired()) return;
    if (e) return watch_failed(*e);
    feed(chunk);
  });
}

// The watch ended with an error. The broker gone (ECONNRESET) is the
// shell's to mend: it reconnects and calls rewatch(). Anything else (the
// job's user overwrote the key, say) leaves the barriers without the
// other shells' lines: a task in the wire-up would wait for ever, so the
// job ends with the reason; with none in it, the next init watches anew.
void PmiServer::watch_failed(const Error& e) {
  if (e.code == ECONNRESET) return;
  watching_ = false;
  if (ending_ || aborted_) return;
  for (const auto& c : conns_) {
    if (c->inited && !c->finalized && !c->closed) {
      return abort("cannot follow the PMI exchange: " + e.text, true);
    }
  }
}

void PmiServer::feed(std::string_view chunk) {
  if (offset_ < taken_) {
    // Read through an earlier watch.
    size_t skip = std::min(chunk.size(), taken_ - offset_);
    offset_ += skip;
    chunk.remove_prefix(skip);
  }
  offset_ += chunk.size();
  taken_ += chunk.size();
  partial_.append(chunk);
  size_t start = 0;
  for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
    take_line(std::string_view(partial_).substr(start, nl - start));
  }
  partial_.erase(0, start);
}

// A line of the `pmi` key: a shell's contribution to a barrier, or an
// abort. The job's user may write the namespace: what is not one of these
// is passed over.
void PmiServer::take_line(std::string_view line) {
  auto j = parse_json(line);
  if (!j.ok() || !j->is_object()) return;
  if (auto ab = j->find("abort"); ab != j->end()) {
    if (ab->is_string()) abort(ab->get<std::string>(), false);
    return;
  }
  auto e = j->find("epoch");
  auto kvs = j->find("kvs");
  if (e == j->end() || !e->is_number_unsigned() || kvs == j->end() || !kvs->is_object()) return;
  uint64_t epoch = e->get<uint64_t>();
  auto& keys = arriving_[epoch];
  for (auto& [k, v] : kvs->items()) {
    if (v.is_string()) keys[k] = v.get<std::string>();
  }
  if (++contributions_[epoch] < job_.nshells || epoch != epoch_ || !contributed_) return;
  // Every shell is in: the barrier is over, and its keys are seen.
  contributions_.erase(epoch);
  for (auto& [k, v] : arriving_[epoch]) kvs_[k] = std::move(v);
  arriving_.erase(epoch);
  ++epoch_;
  contributed_ = false;
  for (auto& c : conns_) {
    if (!c->in_barrier) continue;
    c->in_barrier = false;
    reply(*c, "cmd=barrier_out rc=0\n");
  }
}

void PmiServer::abort(const std::string& why, bool tell_others) {
  if (aborted_) return;
  aborted_ = true;
  if (tell_others) {
    ++appending_;
    exchange_.append(dump_json(Json{{"abort", why}}) + "\n", [this, a = std::weak_ptr<int>(alive_)](const Error*) {
      if (!a.expired()) --appending_;
    });
  }
  abort_job_(why);
}

}  // namespace loom
