#include "shell/input.h"

#include <fcntl.h>
#include <unistd.h>

#include <asio/write.hpp>
#include <cerrno>
#include <cstring>

#include "shell/output.h"

namespace loom {

Json input_entry(std::string_view data, bool eof) {
  Json e = data_entry("stdin", "all", data);
  if (eof) e["context"]["eof"] = true;
  return e;
}

Result<int> TaskInput::add(int task_rank) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Error{errno, std::string("pipe: ") + std::strerror(errno)};
  auto s = std::make_unique<Sink>();
  s->task_rank = task_rank;
  s->fd = std::make_unique<asio::posix::stream_descriptor>(io_, fds[1]);
  s->fd->non_blocking(true);
  sinks_.push_back(std::move(s));
  return fds[0];
}

void TaskInput::feed(std::string_view text) {
  // What an earlier watch delivered was taken already.
  if (offset_ < taken_) {
    size_t skip = std::min(text.size(), taken_ - offset_);
    offset_ += skip;
    text.remove_prefix(skip);
  }
  offset_ += text.size();
  taken_ += text.size();
  partial_.append(text);
  size_t start = 0;
  for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
    take(std::string_view(partial_).substr(start, nl - start));
  }
  partial_.erase(0, start);
}

// One entry: data for every task, or the end. Entries that are not data
// of stdin are not ours (a header, should one be written).
// The user writes the eventlog: any field may be of any type, and what is
// not as above is passed over.
void TaskInput::take(std::string_view line) {
  auto e = parse_json(line);
  auto is = [](const Json& o, const char* key, const char* value) {
    auto it = o.find(key);
    return it != o.end() && it->is_string() && it->get<std::string>() == value;
  };
  if (!e.ok() || !e->is_object() || !is(*e, "name", "data")) return;
  auto c = e->find("context");
  if (c == e->end() || !c->is_object() || !is(*c, "stream", "stdin")) return;
  const Json& ctx = *c;
  bool eof = ctx.contains("eof") && ctx["eof"].is_boolean() && ctx["eof"].get<bool>();
  std::string data;
  if (ctx.contains("data")) {
    auto d = output_data(ctx);
    if (!d.ok()) return;
    data = std::move(*d);
  }
  for (auto& s : sinks_) {
    if (!s->fd || s->eof) continue;
    s->buf += data;
    s->eof = eof;
    write(*s);
  }
}

void TaskInput::write(Sink& s) {
  if (s.writing || !s.fd) return;
  if (s.out_at == s.out.size()) {
    s.out.clear();
    s.out_at = 0;
    std::swap(s.out, s.buf);
  }
  if (s.out.empty()) {
    if (s.eof) close(s);
    return;
  }
  s.writing = true;
  auto rest = asio::buffer(s.out.data() + s.out_at, s.out.size() - s.out_at);
  s.fd->async_write_some(rest, [this, &s](const std::error_code& ec, size_t n) {
    s.writing = false;
    if (ec) {
      // The task closed its stdin, or exited: nothing more goes to it.
      s.out.clear();
      s.out_at = 0;
      s.buf.clear();
      s.eof = true;
      return close(s);
    }
    s.out_at += n;
    write(s);
  });
}

void TaskInput::close(Sink& s) {
  if (!s.fd) return;
  std::error_code ignored;
  s.fd->close(ignored);
  s.fd.reset();
}

}  // namespace loom
