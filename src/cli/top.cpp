// loom top: a live view of the instance in the terminal (docs/commands.md,
// "loom top"): its queue, a utilization bar per rank, the active jobs.
//
// The job table is kept from the job manager's journal (job-manager.events,
// docs/protocols/jobs.md): the active jobs once, then each job's events as
// they happen, so that a large queue is never listed again. The resource
// status and the queue state are small: asked for once a second, when the
// screen is drawn again.
//
// Plain ANSI escapes rather than ncurses: the screen is drawn whole once a
// second (ncurses's diffing would save little), loom needs nothing more
// than the sequences every terminal since the VT100 knows (cursor home,
// erase line, the alternate screen), and no terminfo lookup means no
// dependency and no TERM to get wrong inside containers and tmux.
//
// With stdout not a terminal it prints the screen once, uncut, without
// escapes, and exits: what `top -b -n 1` users expect from a pipe.
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <asio/posix/stream_descriptor.hpp>
#include <asio/signal_set.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>

#include "cli/common.h"
#include "cli/top_view.h"

namespace loom::cli {

namespace {

struct TopOpts {
  double interval = 1;
};

// The terminal as loom top found it, given back however top ends.
class RawTerminal {
 public:
  // `tty`: the terminal, opened for the keys (keys_fd()).
  explicit RawTerminal(int tty) : tty_(tty) {
    if (::tcgetattr(tty_, &saved_) == 0) {
      termios raw = saved_;
      raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
      raw.c_cc[VMIN] = 1;
      raw.c_cc[VTIME] = 0;
      have_saved_ = ::tcsetattr(tty_, TCSANOW, &raw) == 0;
    }
    // The alternate screen, the cursor hidden, the screen cleared.
    put("\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J");
  }
  ~RawTerminal() {
    put("\x1b[?25h\x1b[?1049l");
    if (have_saved_) ::tcsetattr(tty_, TCSANOW, &saved_);
    ::close(tty_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

  // Writes all of `s`, waiting while the terminal takes no more (stopped
  // with Ctrl-S, or a descriptor someone else made non-blocking).
  static void put(const std::string& s) {
    size_t done = 0;
    while (done < s.size()) {
      ssize_t n = ::write(STDOUT_FILENO, s.data() + done, s.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        pollfd p{STDOUT_FILENO, POLLOUT, 0};
        ::poll(&p, 1, -1);
        continue;
      }
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }

  // A descriptor of the terminal to read keys from: of a description of
  // our own, so that Asio making it non-blocking leaves stdin and stdout
  // (which share the shell's) as they were.
  int keys_fd() const { return ::dup(tty_); }

 private:
  int tty_;
  termios saved_{};
  bool have_saved_ = false;
};

std::pair<size_t, size_t> screen_size() {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) return {ws.ws_row, ws.ws_col};
  return {24, 80};
}

// One frame: from the top left, each line erased to its end, the job
// table's heading in reverse video, nothing left below.
std::string frame(const TopView& view, double now) {
  auto [rows, cols] = screen_size();
  auto lines = view.render(now, rows, cols);
  std::string out = "\x1b[H";
  for (size_t i = 0; i < lines.size(); ++i) {
    bool heading = i == view.heading_row();
    if (heading) out += "\x1b[7m";
    out += lines[i];
    out += heading ? "\x1b[K\x1b[0m" : "\x1b[K";
    if (i + 1 < lines.size()) out += "\r\n";  // never past the last row: no scrolling
  }
  out += "\x1b[J";
  return out;
}

// Asks rank 0 for what the screen shows besides the jobs; `done` once
// both answers (or errors) are in.
void refresh(Session& s, TopView& view, int& outstanding) {
  if (outstanding > 0) return;  // the last round is not back yet
  outstanding = 2;
  s.handle().rpc("sched.resource-status", Json::object(), {0, false, 10}, [&](const Message& m) {
    --outstanding;
    auto j = m.errnum ? Result<Json>(Error{m.errnum, ""}) : parse_json(m.payload);
    view.set_resources(j.ok() ? *j : Json());
  });
  s.handle().rpc("job-manager.queue-status", Json::object(), {0, false, 10}, [&](const Message& m) {
    --outstanding;
    auto j = m.errnum ? Result<Json>(Error{m.errnum, ""}) : parse_json(m.payload);
    view.set_queue(j.ok() ? *j : Json());
  });
}

int run_top(const TopOpts& o) {
  auto sess = connect_session();
  if (!sess.ok()) return fail("top", sess.error());
  Session& s = **sess;
  TopView view;
  auto info = s.client->call("broker.info", Json::object(), {0, false, 10});
  if (!info.ok()) return fail("top", info.error());
  view.set_instance(*info, s.clock->wall());

  // The journal: its first answer fills the table.
  int rc = -1;
  std::string error;
  bool have_jobs = false;
  uint32_t tag = s.handle().rpc("job-manager.events", Json::object(), {0, true, 0}, [&](const Message& m) {
    if (rc >= 0 || !error.empty()) return;
    if (m.errnum) {
      error = m.errnum == ENODATA ? "the job manager ended the journal" : error_text(m);
      return;
    }
    auto j = parse_json(m.payload);
    if (!j.ok() || !view.apply_journal(*j)) {
      error = "unexpected response from job-manager.events";
      return;
    }
    have_jobs = view.has_all_jobs();
  });
  int outstanding = 0;
  refresh(s, view, outstanding);
  auto stop_journal = [&] {
    s.handle().cancel_rpc(tag);
    if (s.client->is_open())
      s.handle().rpc("job-manager.events-cancel", Json{{"matchtag", tag}}, {0, false, 5}, [](const Message&) {});
  };

  if (!::isatty(STDOUT_FILENO)) {
    while ((!have_jobs || outstanding > 0) && error.empty() && s.client->is_open()) s.io.run_one();
    stop_journal();
    if (!error.empty()) return fail("top", error);
    if (!s.client->is_open()) return fail("top", s.client->lost_text());
    for (const auto& line : view.render(s.clock->wall(), 0, 0)) std::cout << line << "\n";
    return 0;
  }

  // The keys come from the terminal itself, whatever stdin is.
  int tty = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (tty < 0) return fail("top", std::string("cannot open the terminal (/dev/tty): ") + std::strerror(errno));
  std::optional<RawTerminal> term;
  term.emplace(tty);
  auto draw = [&] { RawTerminal::put(frame(view, s.clock->wall())); };
  auto tick = s.clock->make_timer();
  std::function<void()> every;
  every = [&] {
    refresh(s, view, outstanding);
    draw();
    tick->arm(o.interval, every);
  };
  tick->arm(o.interval, every);

  // Keys, and the signals that end or resize it.
  asio::posix::stream_descriptor keys(s.io, term->keys_fd());
  char key = 0;
  std::function<void(const std::error_code&, size_t)> on_key = [&](const std::error_code& ec, size_t n) {
    if (ec || n == 0) {
      rc = 0;  // the terminal closed: nobody can press q any more
      return;
    }
    if (key == 'q') {
      rc = 0;
      return;
    }
    if (view.press(key)) draw();
    keys.async_read_some(asio::buffer(&key, 1), on_key);
  };
  keys.async_read_some(asio::buffer(&key, 1), on_key);
  asio::signal_set signals(s.io, SIGINT, SIGTERM, SIGHUP);
  std::function<void(const std::error_code&, int)> on_signal = [&](const std::error_code& ec, int sig) {
    if (ec) return;
    rc = sig == SIGINT ? 0 : 128 + sig;
  };
  signals.async_wait(on_signal);
  asio::signal_set resize(s.io, SIGWINCH);
  std::function<void(const std::error_code&, int)> on_resize = [&](const std::error_code& ec, int) {
    if (ec) return;
    draw();
    resize.async_wait(on_resize);
  };
  resize.async_wait(on_resize);

  bool drawn = false;
  while (rc < 0 && error.empty() && s.client->is_open()) {
    s.io.run_one();
    // The first screen as soon as there is something to show.
    if (!drawn && have_jobs && outstanding == 0) {
      draw();
      drawn = true;
    }
  }
  tick->cancel();
  keys.cancel();
  signals.cancel();
  resize.cancel();
  bool lost = rc < 0 && error.empty();
  term.reset();  // the terminal as it was, before any message
  if (!error.empty()) return fail("top", error);
  if (lost) return fail("top", s.client->lost_text());
  stop_journal();
  // Let the cancel go out before the connection closes (its answer does
  // not matter).
  s.io.poll();
  return rc;
}

}  // namespace

void add_top_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<TopOpts>();
  auto* top = app.add_subcommand(
      "top",
      "A live view of the instance: queue state, a utilization bar per rank, running and pending jobs with the "
      "reason each waits.\nKeys: q quits; the job table is sorted by i id, u user, s state (the default: running "
      "first), n name, N nodes, T tasks, t time (run time, or time waited); r reverses the order.\nThe screen is "
      "drawn again every second; jobs come from the job manager's journal as they change. With stdout not a "
      "terminal, prints the screen once and exits.");
  top->add_option("-d,--delay", o->interval, "Seconds between redraws (default 1)")->check(CLI::Range(0.1, 3600.0));
  top->callback([o, &run] { run = [o] { return run_top(*o); }; });
}

}  // namespace loom::cli
