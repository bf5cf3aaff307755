// Logging: spdlog to stderr, with the broker's rank in every line.
//
// Two line formats, chosen once at start (docs/install.md, "Logs"):
//   - on a terminal or a file: `2026-12-05T00:16:12.345 loomd[0] info: text`;
//   - to the systemd journal: `<6>loomd[0] info: text`, no timestamp (the
//     journal stamps every entry), a syslog priority prefix as sd-daemon(3)
//     describes it, so that `journalctl -p warning` filters by level.
// The journal format is taken when JOURNAL_STREAM ("DEV:INO", which
// systemd sets for a service whose stderr is its journal stream) names the
// file that stderr is; a child that inherits the variable with stderr sent
// elsewhere keeps timestamps.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace loom {

enum class LogFormat {
  kStderr,   // timestamped lines
  kJournal,  // `<N>` priority prefixes, no timestamp
};

// A file's identity as JOURNAL_STREAM writes it: st_dev and st_ino.
struct FileId {
  unsigned long long dev = 0;
  unsigned long long ino = 0;
};

// The format for `journal_stream` (JOURNAL_STREAM's value, nullopt when
// unset) and stderr's identity (nullopt when stderr is closed). Pure.
LogFormat choose_log_format(std::optional<std::string_view> journal_stream, std::optional<FileId> stderr_id);

// The format for this process: JOURNAL_STREAM against fstat(2) of stderr.
LogFormat detect_log_format();

// The syslog priority of a level: 3 error (and critical: 2), 4 warning,
// 6 info, 7 debug and trace.
int syslog_priority(spdlog::level::level_enum level);

// A formatter that writes lines in `format`.
std::unique_ptr<spdlog::formatter> make_log_formatter(LogFormat format);

// Sets up the default logger: `name` prefixes every line (e.g. "loomd[3]").
// `level` is one of spdlog's names ("info", "debug", ...). The format is
// detect_log_format()'s.
void init_logging(const std::string& name, const std::string& level);

}  // namespace loom
