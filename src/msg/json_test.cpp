// parse_json and dump_json (json.h): what a payload from outside may be,
// and the nesting limit that keeps a hostile payload from exhausting the
// stack.
#include "msg/json.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

namespace loom {
namespace {

std::string nested_arrays(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

void expect_eproto(const Result<Json>& r, const std::string& reason) {
  ASSERT_FALSE(r.ok()) << "accepted: " << dump_json(*r);
  EXPECT_EQ(r.error().code, EPROTO);
  EXPECT_NE(r.error().text.find(reason), std::string::npos) << "got: " << r.error().text;
}

TEST(Json, ParsesOrdinaryDocuments) {
  auto j = parse_json(R"({"id": 42, "tags": ["a", "b"], "ok": true, "t": 1.5, "none": null, "u": "\u00e9"})");
  ASSERT_TRUE(j.ok()) << j.error().text;
  EXPECT_EQ((*j)["id"], 42);
  EXPECT_EQ((*j)["tags"][1], "b");
  EXPECT_EQ((*j)["ok"], true);
  EXPECT_DOUBLE_EQ((*j)["t"].get<double>(), 1.5);
  EXPECT_TRUE((*j)["none"].is_null());
  EXPECT_EQ((*j)["u"], "\xc3\xa9");
}

TEST(Json, ParsesScalarsAtTheTopLevel) {
  EXPECT_EQ(*parse_json("17"), 17);
  EXPECT_EQ(*parse_json(R"("text")"), "text");
  EXPECT_TRUE(parse_json("null")->is_null());
  EXPECT_TRUE(parse_json(" \n[]\t")->empty());
}

TEST(Json, RefusesInvalidTextWithEprotoAndAReason) {
  for (const char* text : {"{\"a\":}", "[1,2", "{'a':1}", "nul", "[1] trailing", "\"unterminated", "{\"a\" 1}"}) {
    SCOPED_TRACE(text);
    expect_eproto(parse_json(text), "invalid JSON");
    // The reason locates the problem for a person reading a log.
    EXPECT_NE(parse_json(text).error().text.find("parse error"), std::string::npos);
  }
}

TEST(Json, RefusesANumberTooLargeForADoubleWithoutThrowing) {
  // nlohmann reports this one as out_of_range, not as a parse_error.
  for (const char* text : {"[1e400]", R"({"id":-1E999})", "1e400 trailing"}) {
    SCOPED_TRACE(text);
    Result<Json> r = Error{};
    ASSERT_NO_THROW(r = parse_json(text));
    expect_eproto(r, "invalid JSON");
  }
  EXPECT_NE(parse_json("[1e400]").error().text.find("number overflow"), std::string::npos);
}

TEST(Json, RefusesEmptyText) { expect_eproto(parse_json(""), "invalid JSON"); }

TEST(Json, RefusesInvalidUtf8InStrings) { expect_eproto(parse_json("[\"a\xff\"]"), "invalid JSON"); }

// (The pre-scan stops at level 65: the parser never recurses that deep.)
TEST(Json, RefusesAHundredThousandLevelsWithoutCrashing) {
  expect_eproto(parse_json(std::string(100000, '[')), "nests deeper than 64");
  expect_eproto(parse_json(nested_arrays(100000)), "nests deeper than 64");
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += R"({"a":)";
  expect_eproto(parse_json(objects), "nests deeper than 64");
}

TEST(Json, AcceptsExactly64LevelsAndRefuses65) {
  auto at_limit = parse_json(nested_arrays(kMaxJsonDepth));
  ASSERT_TRUE(at_limit.ok()) << at_limit.error().text;
  expect_eproto(parse_json(nested_arrays(kMaxJsonDepth + 1)), "nests deeper than 64 levels");

  // Objects and arrays count alike.
  std::string mixed;
  for (int i = 0; i < kMaxJsonDepth; ++i) mixed += (i % 2 ? "[" : R"({"k":)");
  std::string tail;
  for (int i = kMaxJsonDepth - 1; i >= 0; --i) tail += (i % 2 ? "]" : "}");
  EXPECT_TRUE(parse_json(mixed + "0" + tail).ok());
  expect_eproto(parse_json("[" + mixed + "0" + tail + "]"), "nests deeper");
}

TEST(Json, CountsDepthNotTotalBrackets) {
  // Many siblings, each shallow: fine however many there are.
  std::string wide = "[";
  for (int i = 0; i < 1000; ++i) wide += (i ? "," : "") + nested_arrays(10);
  wide += "]";
  EXPECT_TRUE(parse_json(wide).ok());
}

TEST(Json, HonoursACallersTighterLimit) {
  EXPECT_TRUE(parse_json("[[1]]", 2).ok());
  expect_eproto(parse_json("[[1]]", 1), "nests deeper than 1 levels");
}

TEST(Json, IgnoresBracketsInsideStrings) {
  std::string brackets(1000, '[');
  auto j = parse_json(R"({"s":")" + brackets + R"(", "t":"]]]}}}"})");
  ASSERT_TRUE(j.ok()) << j.error().text;
  EXPECT_EQ((*j)["s"], brackets);
}

TEST(Json, KeepsAnEscapedQuoteInsideItsString) {
  // Were \" taken as the end of the string, the brackets after it would
  // count as nesting and the text would be refused.
  std::string text = R"(["a\")" + std::string(100, '[') + R"(\"b"])";
  auto j = parse_json(text);
  ASSERT_TRUE(j.ok()) << j.error().text;
  EXPECT_EQ((*j)[0], "a\"" + std::string(100, '[') + "\"b");
}

TEST(Json, LeavesAStringThatEndsInAnEscapedBackslash) {
  // "\\" is a whole string; were its last quote taken as escaped, the deep
  // nesting after it would hide inside a "string" and slip past the limit.
  expect_eproto(parse_json(R"(["\\",)" + nested_arrays(kMaxJsonDepth + 1) + "]"), "nests deeper");
  auto ok = parse_json(R"(["\\",)" + nested_arrays(kMaxJsonDepth - 1) + "]");
  ASSERT_TRUE(ok.ok()) << ok.error().text;
  EXPECT_EQ((*ok)[0], "\\");
}

TEST(Json, RefusesDeepNestingBehindStrayClosingBrackets) {
  // Closers first drive a naive depth count negative; the text is invalid
  // JSON either way and must not reach a deep parse.
  auto r = parse_json(std::string(1000, ']') + std::string(100000, '['));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EPROTO);
  auto r2 = parse_json(std::string(100000, ']') + nested_arrays(100000));
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code, EPROTO);
}

TEST(Json, DumpsCompactly) {
  Json j = {{"a", {1, 2}}, {"b", "x"}};
  EXPECT_EQ(dump_json(j), R"({"a":[1,2],"b":"x"})");
}

TEST(Json, DumpReplacesInvalidUtf8InsteadOfThrowing) {
  Json j = {{"name", std::string("bad \xff\xfe byte")}};
  std::string text;
  ASSERT_NO_THROW(text = dump_json(j));
  auto back = parse_json(text);
  ASSERT_TRUE(back.ok()) << back.error().text << " in " << text;
  EXPECT_EQ((*back)["name"], "bad \xef\xbf\xbd\xef\xbf\xbd byte");  // U+FFFD for each bad byte
}

TEST(Json, RoundTripsThroughDumpAndParse) {
  Json j = {
      {"jobid", 123456789012345ull}, {"spec", {{"tasks", 4}, {"cmd", {"sh", "-c", "echo \"hi\""}}}}, {"f", -0.25}};
  auto back = parse_json(dump_json(j));
  ASSERT_TRUE(back.ok()) << back.error().text;
  EXPECT_EQ(*back, j);
}

// dump_json writes most of the text itself: it must be nlohmann's compact
// text (what Json::dump writes, invalid UTF-8 replaced) byte for byte.
TEST(Json, DumpWritesWhatNlohmannWrites) {
  std::string every_byte;
  for (int c = 0; c < 0x100; ++c) every_byte += static_cast<char>(c);
  std::string controls;
  for (int c = 0; c < 0x20; ++c) controls += static_cast<char>(c);
  const Json samples[] = {
      Json(),
      Json(true),
      Json(false),
      Json(0),
      Json(-1),
      Json(INT64_MIN),
      Json(INT64_MAX),
      Json(UINT64_MAX),
      Json(0.0),
      Json(-0.0),
      Json(5.0),
      Json(-123.0),
      Json(1e14),
      Json(999999999999999.0),
      Json(-1e15),
      Json(1733500800.0),
      Json(1733500800.25),
      Json(0.1),
      Json(1e15),
      Json(1e16),
      Json(1e21),
      Json(1.5e300),
      Json(1e-5),
      Json(123456.789),
      Json(-1.7976931348623157e+308),
      Json(4.9e-324),
      Json(std::nan("")),
      Json(INFINITY),
      Json(""),
      Json("plain"),
      Json(controls),
      Json("a \"quoted\" \\ back\\slash / and \x7f"),
      Json(every_byte),
      Json("d\xc3\xa9j\xc3\xa0 vu \xe2\x82\xac \xf0\x9f\x98\x80"),
      Json(std::string("bad \xff\xfe\xc3 byte")),
      Json::array(),
      Json::object(),
      Json::array({Json::array(), Json::object(), Json::array({1, "x", nullptr})}),
      Json{{"", 1}, {"\n", 2}, {"\xc3\xa9", 3}, {std::string("\xff"), 4}, {"k\"ey", {{"inner", {1.25, -3}}}}},
      Json::binary({1, 2, 3}),
      Json::parse(R"({"version":1,"resources":[{"type":"slot","count":4,"label":"task","with":[{"type":"core",
                  "count":1}]}],"tasks":[{"command":["sh","-c","echo \"hi\"\tthere"],"slot":"task",
                  "count":{"per_slot":1}}],"attributes":{"system":{"duration":60.5,"cwd":"/tmp"}}})"),
  };
  for (const auto& j : samples) {
    std::string text = j.dump(-1, ' ', false, Json::error_handler_t::replace);
    EXPECT_EQ(dump_json(j), text) << j.type_name();
    std::string appended = "x";
    append_json(appended, j);
    EXPECT_EQ(appended, "x" + text);
    if (j.is_string() || j.is_number_float()) {
      std::string one;
      if (j.is_string()) append_json_string(one, j.get_ref<const std::string&>());
      if (j.is_number_float()) append_json_number(one, j.get<double>());
      EXPECT_EQ(one, text);
    }
  }
}

TEST(Json, ObjectsBuiltInPlaceAreTheInitializerListsObjects) {
  std::string text = "x";
  EXPECT_EQ(json_object(), Json::object());
  EXPECT_EQ(json_object("id", 1, "final", true, "s", text, "ranks", "0-3", "t", 1.5, "n", nullptr),
            (Json{{"id", 1}, {"final", true}, {"s", "x"}, {"ranks", "0-3"}, {"t", 1.5}, {"n", nullptr}}));
  EXPECT_EQ(json_object("a", json_object("b", json_object())), (Json{{"a", {{"b", Json::object()}}}}));
  EXPECT_EQ(dump_json(json_object("z", 1, "a", 2)), R"({"a":2,"z":1})");
}

TEST(Json, DumpBoundIsNeverBelowTheText) {
  std::string controls;
  for (int c = 0; c < 0x20; ++c) controls += static_cast<char>(c);
  const Json samples[] = {
      Json::parse(
          R"({"id":1,"name":"a \"quoted\" \\ name","t":1.5e300,"neg":-1.7976931348623157e+308,"ok":true,"n":null})"),
      Json{{"controls", controls}, {"bad utf-8", std::string("\xff\xfe\xc3")}, {"utf-8", "d\xc3\xa9j\xc3\xa0"}},
      Json::array({Json::array(), Json::object(), Json::array({1, 2, 3}), std::string(100000, 'x')}),
      Json::binary({1, 2, 3}),
  };
  for (const auto& j : samples) {
    size_t text = dump_json(j).size();
    EXPECT_GE(dump_json_bound(j), text) << dump_json(j);
    // Close enough to count by: within a small factor for ordinary text.
    EXPECT_LE(dump_json_bound(j), 6 * text + 64) << dump_json(j);
  }
  EXPECT_EQ(dump_json_bound(Json(std::string(1000, 'x'))), 1002u);
}

}  // namespace
}  // namespace loom
