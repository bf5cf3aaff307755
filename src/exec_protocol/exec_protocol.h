// The execution protocol's responses as C++ types (docs/protocols/exec.md,
// "Responses to a start"). The job manager starts a job with NAME.start;
// the execution service answers with a stream of {id, type, data}:
//
//   start       {}                        the job's tasks run
//   reattached  {}                        a running job found again after a restart
//   exception   {severity, type, note}    severity 0 is fatal
//   finish      {status}                  a wait status
//   release     {ranks: IDSET|"all", final}
//
// Both sides use this header: job-exec builds its responses only through
// to_json, and the job manager reads them only through parse_response,
// whose errors name what was wrong (the job manager turns them into the
// job's fatal `exec` exception). A vocabulary library: it depends on
// nothing but JSON, id sets and R.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "base/result.h"
#include "idset/idset.h"
#include "msg/json.h"
#include "rset/rset.h"

namespace loom::exec_protocol {

// NAME.start, from the job manager: {id, userid, jobspec, R, reattach,
// started}, and with reattach {released, finished, fatal}. The jobspec
// and R travel as they are stored (the job manager splices its jobspec
// text in); these are the fields around them.
struct StartRequest {
  uint64_t id = 0;
  uint32_t userid = 0;
  // A job found again at a restart: running (started), or ended before it
  // started, with what it left on its ranks to be seen to.
  bool reattach = false;
  bool started = false;
  // With reattach, what the job manager has recorded of the job's stream,
  // for the service to go on from: the ranks it has released, whether it
  // has the job's finish, whether the job has had a fatal exception (a
  // cancel, say: its tasks are to be killed once found).
  IdSet released;
  bool finished = false;
  bool fatal = false;
  bool operator==(const StartRequest&) const = default;
};
// The fields above, to which the caller adds "jobspec" and "R".
Json to_json(const StartRequest& s);
// The fields of a start, or why not: an id is required; userid defaults
// to 0, reattach to false, started to reattach, released to none,
// finished and fatal to false.
Result<StartRequest> parse_start_request(const Json& j);

// A whole start as a typed payload (msg/message.h): how a job manager
// hands it to an execution service of its own process, R as the
// ResourceSet it holds and the jobspec parsed, rather than a JSON
// document for the service to read R out of again. Anywhere else it is
// to_json(head) with "R" and "jobspec" added.
struct Start {
  StartRequest head;
  ResourceSet R;
  std::shared_ptr<const Json> jobspec;  // an object
};
Json payload_json_of(const Start& s);

// How bad an exception is: 0 ends the job; 1 to 7 are recorded only.
enum class Severity : int { kFatal = 0, kNonFatal = 1 };
inline constexpr int kMaxSeverity = 7;

// The exception types the instance's execution service raises. Another
// service (or a user, through job-manager.raise) may use other words: on
// the wire a type is text.
enum class ExceptionType { kExec, kTimeout, kProlog, kEpilog, kNodeFailure };
std::string_view type_name(ExceptionType t);

struct Started {};
struct Reattached {};
struct Finished {
  int status = 0;  // a wait status
  bool operator==(const Finished&) const = default;
};
struct Released {
  bool all = false;  // every rank of the job's R ("all" on the wire)
  IdSet ranks;       // else these
  bool final = false;
  static Released of(IdSet ranks, bool final) { return Released{false, std::move(ranks), final}; }
  static Released rank(uint32_t r, bool final) {
    IdSet one;
    one.insert(r);
    return of(std::move(one), final);
  }
  static Released everything(bool final) { return Released{true, IdSet(), final}; }
  std::string ranks_text() const { return all ? "all" : ranks.encode(); }
  bool operator==(const Released&) const = default;
};
struct Raised {
  int severity = 0;
  std::string type;
  std::string note;
  Raised() = default;
  Raised(Severity s, ExceptionType t, std::string why)
      : severity(static_cast<int>(s)), type(type_name(t)), note(std::move(why)) {}
  bool fatal() const { return severity == 0; }
  bool operator==(const Raised&) const = default;
};
using Response = std::variant<Started, Reattached, Finished, Released, Raised>;

// The wire name of a response: "start", "reattached", ...
std::string_view type_name(const Response& r);

// {id, type, data} for job `id`.
Json to_json(uint64_t id, const Response& r);

// One response about one job as a typed payload (msg/message.h): how
// job-exec and the simulated execution service answer a job manager of
// their own process, which then reads neither JSON nor text. Anywhere
// else it is to_json(id, response).
struct JobResponse {
  uint64_t id = 0;
  Response response;
};
Json payload_json_of(const JobResponse& r);

// The job a response (or a start) is about, or why it names none.
Result<uint64_t> response_id(const Json& j);

// The response in `j` ({id, type, data}), or one line naming what is
// wrong: "response without a type", "unknown response type \"X\"",
// "malformed exception", "finish: ...", "release needs ranks and final",
// "release: ..." (ranks neither "all" nor an id set).
Result<Response> parse_response(const Json& j);

// The job a job-exception event ({id, severity, type, note}, as the job
// manager publishes it) ends: its id when the exception is fatal
// (severity 0), nothing when it is not or names no job. An execution
// service kills that job's tasks.
std::optional<uint64_t> fatal_exception_job(const Json& event);

}  // namespace loom::exec_protocol
