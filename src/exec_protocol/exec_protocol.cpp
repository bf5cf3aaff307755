#include "exec_protocol/exec_protocol.h"

#include <climits>

#include "msg/payload.h"

namespace loom::exec_protocol {

Json to_json(const StartRequest& s) {
  Json j{{"id", s.id}, {"userid", s.userid}, {"reattach", s.reattach}, {"started", s.started}};
  if (s.reattach) {
    j["released"] = s.released.encode();
    j["finished"] = s.finished;
    j["fatal"] = s.fatal;
  }
  return j;
}

Result<StartRequest> parse_start_request(const Json& j) {
  if (!j.is_object()) return Error{EPROTO, "a start must be a JSON object"};
  StartRequest s;
  auto id = get_int(j, "id", 0, INT64_MAX);
  if (!id.ok()) return id.error();
  s.id = static_cast<uint64_t>(*id);
  int64_t root = 0;
  auto userid = get_int(j, "userid", 0, UINT32_MAX - 1, &root);
  if (!userid.ok()) return userid.error();
  s.userid = static_cast<uint32_t>(*userid);
  auto reattach = get_bool(j, "reattach", false);
  if (!reattach.ok()) return reattach.error();
  s.reattach = *reattach;
  auto started = get_bool(j, "started", s.reattach);
  if (!started.ok()) return started.error();
  s.started = *started;
  auto released = get_string(j, "released", "");
  if (!released.ok()) return released.error();
  auto ranks = IdSet::parse(*released);
  if (!ranks.ok()) return Error{EPROTO, "released: " + ranks.error().text};
  s.released = std::move(*ranks);
  auto finished = get_bool(j, "finished", false);
  if (!finished.ok()) return finished.error();
  s.finished = *finished;
  auto fatal = get_bool(j, "fatal", false);
  if (!fatal.ok()) return fatal.error();
  s.fatal = *fatal;
  return s;
}

std::string_view type_name(ExceptionType t) {
  switch (t) {
    case ExceptionType::kExec: return "exec";
    case ExceptionType::kTimeout: return "timeout";
    case ExceptionType::kProlog: return "prolog";
    case ExceptionType::kEpilog: return "epilog";
    case ExceptionType::kNodeFailure: return "node-failure";
  }
  return "exec";
}

namespace {
struct Namer {
  std::string_view operator()(const Started&) const { return "start"; }
  std::string_view operator()(const Reattached&) const { return "reattached"; }
  std::string_view operator()(const Finished&) const { return "finish"; }
  std::string_view operator()(const Released&) const { return "release"; }
  std::string_view operator()(const Raised&) const { return "exception"; }
};
struct Data {
  Json operator()(const Started&) const { return Json::object(); }
  Json operator()(const Reattached&) const { return Json::object(); }
  Json operator()(const Finished& f) const { return Json{{"status", f.status}}; }
  Json operator()(const Released& r) const { return Json{{"ranks", r.ranks_text()}, {"final", r.final}}; }
  Json operator()(const Raised& e) const { return Json{{"severity", e.severity}, {"type", e.type}, {"note", e.note}}; }
};
}  // namespace

std::string_view type_name(const Response& r) { return std::visit(Namer{}, r); }

Json to_json(uint64_t id, const Response& r) {
  return Json{{"id", id}, {"type", std::string(type_name(r))}, {"data", std::visit(Data{}, r)}};
}

Json payload_json_of(const JobResponse& r) { return to_json(r.id, r.response); }

Json payload_json_of(const Start& s) {
  Json j = to_json(s.head);
  j["R"] = s.R.to_json();
  j["jobspec"] = s.jobspec ? *s.jobspec : Json::object();
  return j;
}

std::optional<uint64_t> fatal_exception_job(const Json& event) {
  if (!event.is_object()) return std::nullopt;
  auto id = event.find("id");
  auto severity = event.find("severity");
  if (id == event.end() || !id->is_number_unsigned()) return std::nullopt;
  if (severity == event.end() || !severity->is_number_integer() || severity->get<int64_t>() != 0) return std::nullopt;
  return id->get<uint64_t>();
}

Result<uint64_t> response_id(const Json& j) {
  if (!j.is_object()) return Error{EPROTO, "a response must be a JSON object"};
  auto id = get_int(j, "id", 0, INT64_MAX);
  if (!id.ok()) return id.error();
  return static_cast<uint64_t>(*id);
}

Result<Response> parse_response(const Json& j) {
  auto bad = [](std::string why) { return Error{EPROTO, std::move(why)}; };
  if (!j.is_object()) return bad("a response must be a JSON object");
  auto type = get_string(j, "type");
  if (!type.ok()) return bad("response without a type");
  static const Json kNoData = Json::object();
  auto data_it = j.find("data");
  const Json& data = data_it != j.end() && data_it->is_object() ? *data_it : kNoData;
  if (*type == "start") return Response{Started{}};
  if (*type == "reattached") return Response{Reattached{}};
  if (*type == "exception") {
    int64_t zero = 0;
    auto sev = get_int(data, "severity", 0, kMaxSeverity, &zero);
    auto etype = get_string(data, "type", "exec");
    auto note = get_string(data, "note", "");
    if (!sev.ok() || !etype.ok() || !note.ok()) return bad("malformed exception");
    Raised e;
    e.severity = static_cast<int>(*sev);
    e.type = std::move(*etype);
    e.note = std::move(*note);
    return Response{std::move(e)};
  }
  if (*type == "finish") {
    auto status = get_int(data, "status", 0, INT32_MAX);
    if (!status.ok()) return bad("finish: " + status.error().text);
    return Response{Finished{static_cast<int>(*status)}};
  }
  if (*type == "release") {
    auto ranks = get_string(data, "ranks");
    auto final = get_bool(data, "final", false);
    if (!ranks.ok() || !final.ok()) return bad("release needs ranks and final");
    if (*ranks == "all") return Response{Released::everything(*final)};
    auto parsed = IdSet::parse(*ranks);
    if (!parsed.ok()) return bad("release: " + parsed.error().text);
    return Response{Released::of(std::move(*parsed), *final)};
  }
  return bad("unknown response type \"" + *type + "\"");
}

}  // namespace loom::exec_protocol
