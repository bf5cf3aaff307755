#include "eventlog/eventlog.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace loom {

TEST(Eventlog, FormatsAndParsesBack) {
  EventEntry e{1700000000.25, "alloc", Json{{"annotations", Json::object()}}};
  std::string line = format_event(e);
  EXPECT_EQ(line.back(), '\n');
  auto back = parse_event(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(back.ok()) << back.error().text;
  EXPECT_EQ(*back, e);
}

TEST(Eventlog, ContextIsOptional) {
  auto e = parse_event(R"({"timestamp":1.5,"name":"clean"})");
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->context.is_null());
  EXPECT_EQ(format_event(*e), "{\"name\":\"clean\",\"timestamp\":1.5}\n");
}

TEST(Eventlog, RejectsWhatRfc18Forbids) {
  EXPECT_FALSE(parse_event(R"({"name":"x"})").ok());                              // no timestamp
  EXPECT_FALSE(parse_event(R"({"timestamp":1})").ok());                           // no name
  EXPECT_FALSE(parse_event(R"({"timestamp":-1,"name":"x"})").ok());               // negative
  EXPECT_FALSE(parse_event(R"({"timestamp":"1","name":"x"})").ok());              // string time
  EXPECT_FALSE(parse_event(R"({"timestamp":1,"name":"two words"})").ok());        // space
  EXPECT_FALSE(parse_event(R"({"timestamp":1,"name":""})").ok());                 // empty
  EXPECT_FALSE(parse_event(R"({"timestamp":1,"name":"x","context":[1]})").ok());  // not object
  EXPECT_FALSE(parse_event(R"({"timestamp":1,"name":"x","extra":1})").ok());      // unknown
  EXPECT_FALSE(parse_event(R"([1,2])").ok());
  EXPECT_FALSE(parse_event("not json").ok());
}

TEST(Eventlog, ErrorsNameTheLine) {
  std::string text = "{\"timestamp\":1,\"name\":\"a\"}\n{\"timestamp\":2,\"name\":\"b c\"}\n";
  auto r = parse_eventlog(text);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().text.find("line 2"), std::string::npos) << r.error().text;
}

TEST(Eventlog, ParsesManyLinesInOrder) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += format_event({double(i), "e" + std::to_string(i), Json{{"i", i}}});
  auto r = parse_eventlog(text);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 100u);
  EXPECT_EQ((*r)[42].name, "e42");
  EXPECT_EQ((*r)[42].context["i"], 42);
}

TEST(Eventlog, EventsAppendedToOneTextReadBackInOrder) {
  const std::vector<EventEntry> events{
      {10.5, "submit", Json{{"userid", 7}}}, {11, "alloc", nullptr}, {12, "finish", Json{{"status", 0}}}};
  std::string log = "{\"name\":\"first\",\"timestamp\":1.0}\n";
  for (const auto& e : events) append_event(log, e);
  auto back = parse_eventlog(log);
  ASSERT_TRUE(back.ok()) << back.error().text;
  ASSERT_EQ(back->size(), 4u);
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ((*back)[i + 1], events[i]);
  EXPECT_EQ(log.substr(log.size() - format_event(events[2]).size()), format_event(events[2]));
}

// Each event's timestamp is its own, however the events before it ran:
// the same instant again, another, and 0 after -0 (equal, written apart).
TEST(Eventlog, EachTimestampIsWrittenAsItIs) {
  const std::vector<std::pair<double, std::string>> cases{{844079881, "844079881.0"},
                                                          {844079881, "844079881.0"},
                                                          {844079881.5, "844079881.5"},
                                                          {844079881, "844079881.0"},
                                                          {-0.0, "-0.0"},
                                                          {0.0, "0.0"},
                                                          {0.0, "0.0"},
                                                          {-0.0, "-0.0"},
                                                          {1e-7, "1e-07"}};
  for (const auto& [t, text] : cases) {
    EXPECT_EQ(format_event({t, "x", nullptr}), "{\"name\":\"x\",\"timestamp\":" + text + "}\n");
  }
}

TEST(Eventlog, UnterminatedLastLineIsAnError) {
  EXPECT_FALSE(parse_eventlog("{\"timestamp\":1,\"name\":\"a\"}").ok());
  EXPECT_TRUE(parse_eventlog("").ok());
}

TEST(LineSplitter, KeepsPartialLinesForLater) {
  LineSplitter s;
  EXPECT_TRUE(s.feed("ab").empty());
  EXPECT_EQ(s.feed("c\nd"), (std::vector<std::string>{"abc"}));
  EXPECT_EQ(s.feed("\ne\nf\n"), (std::vector<std::string>{"d", "e", "f"}));
}

}  // namespace loom
