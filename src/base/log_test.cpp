#include "base/log.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>

namespace loom {
namespace {

// The lines a logger named loomd[2] writes in `format`, one per level.
std::string lines_in(LogFormat format) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out);
  spdlog::logger logger("loomd[2]", sink);
  logger.set_formatter(make_log_formatter(format));
  logger.set_level(spdlog::level::trace);
  logger.error("lost rank {}", 3);
  logger.warn("slow");
  logger.info("joined");
  logger.debug("hello");
  return out.str();
}

TEST(Log, TheJournalFormatIsTakenOnlyWhenJournalStreamIsStderr) {
  const FileId err{64769, 1234567};
  EXPECT_EQ(choose_log_format("64769:1234567", err), LogFormat::kJournal);
  // Not under systemd, or stderr closed.
  EXPECT_EQ(choose_log_format(std::nullopt, err), LogFormat::kStderr);
  EXPECT_EQ(choose_log_format("64769:1234567", std::nullopt), LogFormat::kStderr);
  // Inherited by a process whose stderr went elsewhere (another file, a pipe).
  EXPECT_EQ(choose_log_format("64769:1234568", err), LogFormat::kStderr);
  EXPECT_EQ(choose_log_format("64770:1234567", err), LogFormat::kStderr);
  // Not what systemd writes.
  for (const char* bad : {"", ":", "64769", "64769:", ":1234567", "64769:1234567x", "x64769:1234567", "64769:1234567:1",
                          "-64769:1234567", "64769 :1234567", "99999999999999999999999:1"}) {
    EXPECT_EQ(choose_log_format(bad, err), LogFormat::kStderr) << bad;
  }
}

TEST(Log, JournalLinesCarryTheirSyslogPriorityAndNoTimestamp) {
  EXPECT_EQ(lines_in(LogFormat::kJournal),
            "<3>loomd[2] error: lost rank 3\n"
            "<4>loomd[2] warning: slow\n"
            "<6>loomd[2] info: joined\n"
            "<7>loomd[2] debug: hello\n");
}

TEST(Log, StderrLinesBeginWithTheirTime) {
  std::istringstream lines(lines_in(LogFormat::kStderr));
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    ++n;
    // 2026-12-05T00:16:12.345 loomd[2] ...
    ASSERT_GT(line.size(), 24u) << line;
    EXPECT_EQ(line[4], '-') << line;
    EXPECT_EQ(line[10], 'T') << line;
    EXPECT_EQ(line[19], '.') << line;
    EXPECT_EQ(line.substr(23, 10), " loomd[2] ") << line;
  }
  EXPECT_EQ(n, 4);
}

TEST(Log, LevelsMapToSyslogPriorities) {
  EXPECT_EQ(syslog_priority(spdlog::level::critical), 2);
  EXPECT_EQ(syslog_priority(spdlog::level::err), 3);
  EXPECT_EQ(syslog_priority(spdlog::level::warn), 4);
  EXPECT_EQ(syslog_priority(spdlog::level::info), 6);
  EXPECT_EQ(syslog_priority(spdlog::level::debug), 7);
  EXPECT_EQ(syslog_priority(spdlog::level::trace), 7);
}

}  // namespace
}  // namespace loom
