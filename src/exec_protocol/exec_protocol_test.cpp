// The execution protocol's responses (exec_protocol.h): what job-exec
// writes, the job manager reads back the same; what it cannot read is
// named in one line.
#include "exec_protocol/exec_protocol.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace loom::exec_protocol {
namespace {

std::string why(const Json& j) {
  auto r = parse_response(j);
  return r.ok() ? "ok" : r.error().text;
}

TEST(ExecProtocol, EveryResponseReadsBackAsWritten) {
  IdSet some;
  some.insert_range(2, 5);
  std::vector<Response> all = {Started{},
                               Reattached{},
                               Finished{256},
                               Released::of(some, false),
                               Released::rank(7, true),
                               Released::everything(true),
                               Raised(Severity::kFatal, ExceptionType::kNodeFailure, "rank 3 was lost"),
                               Raised(Severity::kNonFatal, ExceptionType::kEpilog, "")};
  for (const auto& r : all) {
    Json j = to_json(42, r);
    SCOPED_TRACE(j.dump());
    auto id = response_id(j);
    ASSERT_TRUE(id.ok());
    EXPECT_EQ(*id, 42u);
    auto back = parse_response(j);
    ASSERT_TRUE(back.ok()) << back.error().text;
    EXPECT_EQ(back->index(), r.index());
    EXPECT_EQ(to_json(42, *back), j);
  }
}

TEST(ExecProtocol, TheWireFormIsTheDocumentedOne) {
  EXPECT_EQ(to_json(1, Started{}), Json::parse(R"({"id":1,"type":"start","data":{}})"));
  EXPECT_EQ(to_json(1, Finished{9}), Json::parse(R"({"id":1,"type":"finish","data":{"status":9}})"));
  EXPECT_EQ(to_json(1, Released::rank(3, false)),
            Json::parse(R"({"id":1,"type":"release","data":{"ranks":"3","final":false}})"));
  EXPECT_EQ(to_json(1, Released::everything(true)),
            Json::parse(R"({"id":1,"type":"release","data":{"ranks":"all","final":true}})"));
  EXPECT_EQ(to_json(1, Raised(Severity::kFatal, ExceptionType::kTimeout, "resource allocation expired")),
            Json::parse(R"({"id":1,"type":"exception",
                            "data":{"severity":0,"type":"timeout","note":"resource allocation expired"}})"));
  EXPECT_EQ(type_name(ExceptionType::kProlog), "prolog");
  EXPECT_EQ(type_name(ExceptionType::kExec), "exec");
}

// The typed forms stand for exactly the JSON of the protocol: a service
// behind a socket reads what one in the job manager's process reads.
TEST(ExecProtocol, TypedPayloadsAreTheWireForm) {
  EXPECT_EQ(payload_json_of(JobResponse{5, Finished{9}}), to_json(5, Finished{9}));

  StartRequest head;
  head.id = 77;
  head.userid = 1000;
  head.reattach = true;
  head.started = true;
  head.released.insert(1);
  head.finished = true;
  auto R = ResourceSet::parse(Json::parse(
      R"({"version":1,"execution":{"R_lite":[{"rank":"0-1","children":{"core":"0-3"}}],"expiration":100}})"));
  ASSERT_TRUE(R.ok()) << R.error().text;
  Json spec = Json::parse(R"({"version":1,"attributes":{"system":{"duration":60}}})");
  Json j = payload_json_of(Start{head, *R, std::make_shared<const Json>(spec)});
  auto back = parse_start_request(j);
  ASSERT_TRUE(back.ok()) << back.error().text;
  EXPECT_EQ(*back, head);
  auto back_R = ResourceSet::parse(j["R"]);
  ASSERT_TRUE(back_R.ok());
  EXPECT_EQ(back_R->to_json(), R->to_json());
  EXPECT_EQ(j["jobspec"], spec);
  Json expected = to_json(head);
  expected["R"] = R->to_json();
  expected["jobspec"] = spec;
  EXPECT_EQ(j, expected);
}

TEST(ExecProtocol, WhatCannotBeReadIsNamed) {
  EXPECT_EQ(why(Json::array()), "a response must be a JSON object");
  EXPECT_EQ(why(Json{{"id", 1}}), "response without a type");
  EXPECT_EQ(why(Json{{"id", 1}, {"type", "begin"}}), "unknown response type \"begin\"");
  EXPECT_EQ(why(Json{{"id", 1}, {"type", "exception"}, {"data", {{"severity", 9}}}}), "malformed exception");
  EXPECT_EQ(why(Json{{"id", 1}, {"type", "exception"}, {"data", {{"note", 5}}}}), "malformed exception");
  EXPECT_EQ(why(Json{{"id", 1}, {"type", "finish"}, {"data", {{"status", -1}}}}).rfind("finish: ", 0), 0u);
  EXPECT_EQ(why(Json{{"id", 1}, {"type", "release"}, {"data", {{"final", true}}}}), "release needs ranks and final");
  EXPECT_EQ(
      why(Json{{"id", 1}, {"type", "release"}, {"data", {{"ranks", "3-"}, {"final", true}}}}).rfind("release: ", 0),
      0u);
  // What may be left out: an exception's severity (0), type (exec), note;
  // a release's final (false); data for start.
  auto e = parse_response(Json{{"id", 1}, {"type", "exception"}});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(std::get<Raised>(*e), Raised(Severity::kFatal, ExceptionType::kExec, ""));
  auto r = parse_response(Json{{"id", 1}, {"type", "release"}, {"data", {{"ranks", "0-1"}}}});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(std::get<Released>(*r).final);
  EXPECT_EQ(why(Json{{"id", 1}, {"type", "start"}}), "ok");
  EXPECT_FALSE(response_id(Json{{"id", -3}}).ok());
  EXPECT_FALSE(response_id(Json{{"type", "start"}}).ok());
}

// A start's fields around the jobspec and R.
StartRequest start_of(uint64_t id, uint32_t userid, bool reattach, bool started) {
  StartRequest s;
  s.id = id;
  s.userid = userid;
  s.reattach = reattach;
  s.started = started;
  return s;
}

TEST(ExecProtocol, AStartReadsBackAndSaysWhatIsWrong) {
  StartRequest s = start_of(7, 1000, true, false);
  auto back = parse_start_request(to_json(s));
  ASSERT_TRUE(back.ok()) << back.error().text;
  EXPECT_EQ(*back, s);
  // A reattach carries what the job manager recorded of the stream.
  StartRequest found = start_of(9, 0, true, true);
  found.released = IdSet::parse("1,3-4").value();
  found.finished = true;
  found.fatal = true;
  auto again = parse_start_request(to_json(found));
  ASSERT_TRUE(again.ok()) << again.error().text;
  EXPECT_EQ(*again, found);
  EXPECT_EQ(to_json(found)["released"], "1,3-4");
  EXPECT_FALSE(to_json(start_of(9, 0, false, false)).contains("released"));  // a first start carries none of it
  EXPECT_FALSE(parse_start_request(Json{{"id", 1}, {"reattach", true}, {"released", "2-"}}).ok());
  EXPECT_FALSE(parse_start_request(Json{{"id", 1}, {"reattach", true}, {"fatal", 1}}).ok());
  auto dflt = parse_start_request(Json{{"id", 3}, {"reattach", true}});
  ASSERT_TRUE(dflt.ok());
  EXPECT_EQ(*dflt, start_of(3, 0, true, true));  // started defaults to reattach
  EXPECT_FALSE(parse_start_request(Json{{"userid", 1}}).ok());
  EXPECT_FALSE(parse_start_request(Json{{"id", 1}, {"reattach", "yes"}}).ok());
  EXPECT_FALSE(parse_start_request(Json{{"id", 1}, {"userid", -1}}).ok());
  EXPECT_FALSE(parse_start_request(Json::array()).ok());
}

// A job-exception event names the job whose tasks are to be killed only
// when it is fatal; anything else, or anything malformed, names none. (An
// id is unsigned, as the job manager writes it and as its text parses.)
TEST(ExecProtocol, AFatalExceptionEventNamesItsJob) {
  EXPECT_EQ(fatal_exception_job(Json{{"id", 7u}, {"severity", 0}, {"type", "cancel"}}), 7u);
  EXPECT_EQ(fatal_exception_job(Json{{"id", 7u}, {"severity", 1}, {"type", "memo"}}), std::nullopt);
  EXPECT_EQ(fatal_exception_job(Json{{"id", 7u}, {"type", "cancel"}}), std::nullopt);
  EXPECT_EQ(fatal_exception_job(Json{{"id", 7u}, {"severity", "0"}}), std::nullopt);
  EXPECT_EQ(fatal_exception_job(Json{{"id", -7}, {"severity", 0}}), std::nullopt);
  EXPECT_EQ(fatal_exception_job(Json{{"severity", 0}}), std::nullopt);
  EXPECT_EQ(fatal_exception_job(Json::array()), std::nullopt);
}

}  // namespace
}  // namespace loom::exec_protocol
