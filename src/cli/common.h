// What every loom subcommand shares: finding the instance, connecting,
// reporting errors as one line on stderr.
#pragma once

#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/fluid.h"
#include "base/result.h"
#include "eventlog/eventlog.h"
#include "msg/client.h"

namespace loom::cli {

// The subcommand picked on the command line, run after parsing.
using Runner = std::function<int()>;

// Where `loom start` records the URI of the user's most recent instance.
std::string latest_uri_file();
// LOOM_URI, else the user's most recent instance.
Result<std::string> instance_uri();

// job-manager.list with `req`, every part of the answer (the job manager
// cuts a long one in parts: docs/protocols/jobs.md): the jobs, newest
// first, as one array. With a `limit` in `req`, at most that many in all.
Result<Json> list_jobs(Client& c, Json req);

// A connected client with its own loop and clock.
struct Session {
  asio::io_context io;
  std::unique_ptr<Clock> clock;
  std::unique_ptr<Client> client;
  Handle& handle() { return client->handle(); }
};
Result<std::unique_ptr<Session>> connect_session();

// Exit statuses of the command line's contract (README.md, "Errors"): a
// runtime error 1, a usage error (unknown command or option, a missing
// argument, a bad value) 2. Commands that report a job's result exit as
// the job did.
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

// Prints "loom CMD: TEXT" to stderr and returns `code`.
int fail(const std::string& cmd, const std::string& text, int code = kExitError);
int fail(const std::string& cmd, const Error& e, int code = kExitError);

// `s` with every control character (C0, DEL, and C1 as UTF-8) shown as
// '?', one column for one: job names, notes and hosts are other users'
// words, and must not drive the terminal of whoever lists them (nor
// break a table with a newline).
std::string terminal_text(std::string_view s);

// Parses the command line with `app` and runs the command it picked
// (`run`, set by the subcommand's callback). Help and --version print and
// exit 0; a parse error is one line "loom CMD: TEXT" (an unknown command
// or option with the nearest known one suggested) and exit status 2.
int parse_and_run(CLI::App& app, int argc, char** argv, const Runner& run);

// The known names nearest to `word` (a mistyped command or option): those
// it is the start of, else those within an edit or two; none when nothing
// is near enough to be what was meant.
std::vector<std::string> nearest_names(const std::string& word, const std::vector<std::string>& names);

// A time limit (-t) in seconds: 30s, 5m, 2h, 1d, a bare number of minutes,
// inf, or one of Slurm's forms MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
Result<double> time_limit_arg(const std::string& s);

// Sends the streaming request TOPIC and runs the session's loop until the
// stream is over; returns the exit status. `on_response` gets each
// response's payload and returns -1 to read on, or an exit status to stop
// with. The stream ends with 0 at ENODATA; with `fail` at an error
// response (its text), a payload that is not JSON ("unexpected response
// from TOPIC"), `timeout` seconds (when not negative: "timed out after
// Ns") or a lost connection. Responses after the end are dropped.
int stream_until_end(Session& s, const std::string& cmd, const std::string& topic, const Json& req, double timeout,
                     const std::function<int(const Json& payload)>& on_response);

// "1700000000.123456 name key=value ..." for people reading an eventlog.
std::string format_event_human(const EventEntry& e);

// What `wait-event NAME -m KEY=VALUE...` waits for: an event of that name
// whose context has each KEY with VALUE (a string as is, anything else as
// JSON: -m rank=3, -m final=true).
struct EventMatch {
  std::string name;
  std::vector<std::pair<std::string, std::string>> context;
  static Result<EventMatch> parse(const std::string& name, const std::vector<std::string>& key_values);
  bool operator()(const EventEntry& e) const;
};

// Wall seconds as local time, in strftime's `fmt` ("" if it cannot be
// shown).
std::string local_time(double t, const char* fmt);
// The login name of `uid`, "" for a uid without one (looked up once).
std::string user_name(uint32_t uid);

// A job id argument in any accepted form, or a one-line error.
Result<JobId> job_arg(const std::string& s);
// An urgency as users give it: 0-31, hold (0), default (16), expedite (31).
Result<int> urgency_arg(const std::string& s);

// Runs the session's loop until `done` is true or the connection closes;
// false if it closed first.
bool run_until(Session& s, const bool& done);

// Parses a rank argument, "any" or a number.
uint32_t rank_or_any(int rank);

void add_start_command(CLI::App& app, Runner& run);
void add_sim_command(CLI::App& app, Runner& run);
void add_ping_command(CLI::App& app, Runner& run);
void add_rpc_command(CLI::App& app, Runner& run);
void add_status_command(CLI::App& app, Runner& run);
void add_kvs_command(CLI::App& app, Runner& run);
void add_submit_command(CLI::App& app, Runner& run);
void add_run_command(CLI::App& app, Runner& run);
void add_batch_command(CLI::App& app, Runner& run);
void add_alloc_command(CLI::App& app, Runner& run);
void add_jobs_command(CLI::App& app, Runner& run);
void add_cancel_command(CLI::App& app, Runner& run);
void add_job_command(CLI::App& app, Runner& run);
void add_resource_command(CLI::App& app, Runner& run);
void add_queue_command(CLI::App& app, Runner& run);
void add_keygen_command(CLI::App& app, Runner& run);
void add_top_command(CLI::App& app, Runner& run);

}  // namespace loom::cli
