#include "cli/stdin_pump.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <asio/posix/stream_descriptor.hpp>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <system_error>

#include "kvs/layout.h"
#include "shell/input.h"

namespace loom::cli {

namespace {

class Pump : public StdinPump {
 public:
  Pump(Session& s, std::string cmd, JobId id) : s_(s), cmd_(std::move(cmd)), id_(id) {}
  ~Pump() override {
    *alive_ = false;
    if (fd_) {
      std::error_code ignored;
      fd_->cancel(ignored);
      fd_->close(ignored);
      // Waiting on it made our stdin non-blocking, and the flag is the
      // open file's, which whoever reads it after us shares.
      if (flags_ >= 0) ::fcntl(0, F_SETFL, flags_);
    }
  }

  void begin() {
    bool tty = ::isatty(0) == 1;
    if (tty && ::tcgetpgrp(0) != ::getpgrp()) return send("", true);
    // What can be waited on (pipes, sockets, terminals, most devices) is;
    // what cannot (regular files) is read as it is, a chunk per commit.
    flags_ = ::fcntl(0, F_GETFL);
    int fd = ::fcntl(0, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) return send("", true);
    try {
      fd_ = std::make_unique<asio::posix::stream_descriptor>(s_.io, fd);
    } catch (const std::system_error&) {
      ::close(fd);
      blocking_ = true;
    }
    next();
  }

 private:
  void next() {
    if (blocking_) {
      ssize_t n;
      do {
        n = ::read(0, buf_.data(), buf_.size());
      } while (n < 0 && errno == EINTR);
      if (n < 0) std::cerr << "loom " << cmd_ << ": stdin: " << std::strerror(errno) << "\n";
      if (n <= 0) return send("", true);
      return send(std::string_view(buf_.data(), static_cast<size_t>(n)), false);
    }
    fd_->async_read_some(asio::buffer(buf_), [this, alive = alive_](const std::error_code& ec, size_t n) {
      if (!*alive || ec == asio::error::operation_aborted) return;
      if (ec) {
        if (ec != asio::error::eof) std::cerr << "loom " << cmd_ << ": stdin: " << ec.message() << "\n";
        return send("", true);
      }
      send(std::string_view(buf_.data(), n), false);
    });
  }

  // One entry, stored before the next chunk is read. The input is kept in
  // the instance (in memory, and with the job once it ends) whether or not
  // a task reads it: past kMaxInput it ends, and we say so.
  void send(std::string_view data, bool eof) {
    if (!eof && sent_ + data.size() > kMaxInput) {
      std::cerr << "loom " << cmd_ << ": stdin: the job's input ends after " << (kMaxInput >> 20)
                << " MiB (the limit; --input=FILE has none)\n";
      data = data.substr(0, kMaxInput - sent_);
      eof = true;
    }
    sent_ += data.size();
    std::string line = dump_json(input_entry(data, eof)) + "\n";
    Json ops = Json::array({Json{{"op", "append"}, {"key", kvs_key::kInput}, {"value", std::move(line)}}});
    s_.handle().rpc("kvs.commit", Json{{"namespace", kvs_key::guest_namespace(id_)}, {"ops", ops}}, {},
                    [this, eof, alive = alive_](const Message& r) {
                      if (!*alive) return;
                      if (r.errnum) {
                        // ENOENT: the job is over (its namespace gone), nobody reads on.
                        if (r.errnum != ENOENT) std::cerr << "loom " << cmd_ << ": stdin: " << error_text(r) << "\n";
                        return;
                      }
                      if (!eof) next();
                    });
  }

  Session& s_;
  std::string cmd_;
  JobId id_;
  std::unique_ptr<asio::posix::stream_descriptor> fd_;
  static constexpr size_t kMaxInput = size_t{64} << 20;
  bool blocking_ = false;
  int flags_ = -1;   // of our stdin before we waited on it
  size_t sent_ = 0;  // bytes of input sent
  // Answers and reads that come after we are gone find it false.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::array<char, 65536> buf_{};
};

}  // namespace

std::unique_ptr<StdinPump> StdinPump::start(Session& s, const std::string& cmd, JobId id) {
  auto p = std::make_unique<Pump>(s, cmd, id);
  p->begin();
  return p;
}

}  // namespace loom::cli
