#include "base/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>

namespace loom {
namespace {

// Parses one unsigned decimal number, all of `s`.
std::optional<unsigned long long> parse_number(std::string_view s) {
  unsigned long long v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// `%*`: the line's syslog priority, `<N>`.
class PriorityFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm& /*tm*/, spdlog::memory_buf_t& dest) override {
    dest.push_back('<');
    dest.push_back(static_cast<char>('0' + syslog_priority(msg.level)));
    dest.push_back('>');
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<PriorityFlag>(); }
};

}  // namespace

LogFormat choose_log_format(std::optional<std::string_view> journal_stream, std::optional<FileId> stderr_id) {
  // systemd writes it as "%lu:%lu" (systemd.exec(5), JOURNAL_STREAM); it
  // stays in the environment of every process the service starts, so it
  // counts only while stderr is still that very stream.
  if (!journal_stream || !stderr_id) return LogFormat::kStderr;
  auto colon = journal_stream->find(':');
  if (colon == std::string_view::npos) return LogFormat::kStderr;
  auto dev = parse_number(journal_stream->substr(0, colon));
  auto ino = parse_number(journal_stream->substr(colon + 1));
  if (!dev || !ino || *dev != stderr_id->dev || *ino != stderr_id->ino) return LogFormat::kStderr;
  return LogFormat::kJournal;
}

LogFormat detect_log_format() {
  std::optional<std::string_view> stream;
  if (const char* s = std::getenv("JOURNAL_STREAM")) stream = s;
  std::optional<FileId> id;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) == 0) id = FileId{st.st_dev, st.st_ino};
  return choose_log_format(stream, id);
}

int syslog_priority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::critical: return 2;
    case spdlog::level::err: return 3;
    case spdlog::level::warn: return 4;
    case spdlog::level::info: return 6;
    default: return 7;
  }
}

std::unique_ptr<spdlog::formatter> make_log_formatter(LogFormat format) {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  if (format == LogFormat::kJournal) {
    f->add_flag<PriorityFlag>('*').set_pattern("%*%n %l: %v");
  } else {
    f->set_pattern("%Y-%m-%dT%H:%M:%S.%e %n %l: %v");
  }
  return f;
}

void init_logging(const std::string& name, const std::string& level) {
  auto format = detect_log_format();
  auto logger = spdlog::stderr_color_st(name);
  logger->set_formatter(make_log_formatter(format));
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
}

}  // namespace loom
