// libFuzzer target for eventlogs (Flux RFC 18, as eventlog.h reads it): what
// `loom job eventlog` and every watcher read back from the KVS, and what
// services append.
//
// The input is read three ways:
// - as one line: parse_event either fails with a one-line error or yields
//   an event that passes validate_event and whose format_event is a single
//   line that parses back to the same event;
// - as a whole eventlog: parse_eventlog either fails naming a line, or its
//   events, formatted and concatenated, parse back to the same events;
// - as a stream cut into chunks: LineSplitter yields exactly the complete
//   lines, however the input is cut.
//
// Build with the `fuzz` preset; ctest runs it for a bounded time on the
// seeds in fuzz_corpus/.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/fuzz_check.h"
#include "eventlog/eventlog.h"

namespace loom {
namespace {

void check_event(const EventEntry& e) {
  FUZZ_CHECK(validate_event(e).ok());
  std::string line = format_event(e);
  FUZZ_CHECK(!line.empty() && line.back() == '\n');
  FUZZ_CHECK(line.find('\n') == line.size() - 1);
  auto back = parse_event(std::string_view(line).substr(0, line.size() - 1));
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(*back == e);
  // And formatted again, the very same bytes.
  FUZZ_CHECK(format_event(*back) == line);
}

}  // namespace
}  // namespace loom

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loom;
  std::string_view text(reinterpret_cast<const char*>(data), size);

  auto e = parse_event(text);
  if (e.ok()) {
    check_event(*e);
  } else {
    FUZZ_CHECK(e.error().code == EINVAL && fuzz::one_line(e.error().text));
  }

  auto log = parse_eventlog(text);
  if (log.ok()) {
    std::string again;
    for (const EventEntry& entry : *log) {
      check_event(entry);
      again += format_event(entry);
    }
    auto back = parse_eventlog(again);
    FUZZ_CHECK(back.ok());
    FUZZ_CHECK(*back == *log);
    FUZZ_CHECK(size_t(std::count(text.begin(), text.end(), '\n')) == log->size());
  } else {
    FUZZ_CHECK(log.error().code == EINVAL && fuzz::one_line(log.error().text));
    FUZZ_CHECK(log.error().text.starts_with("line "));
  }

  // The complete lines, whatever the chunks.
  std::vector<std::string> expected;
  for (size_t start = 0, nl; (nl = text.find('\n', start)) != std::string_view::npos; start = nl + 1) {
    expected.emplace_back(text.substr(start, nl - start));
  }
  fuzz::SplitMix rng{fuzz::fnv1a(text)};
  LineSplitter splitter;
  std::vector<std::string> got;
  for (size_t fed = 0; fed < size;) {
    size_t n = std::min<size_t>(size - fed, 1 + rng.next() % 16);
    for (auto& line : splitter.feed(text.substr(fed, n))) got.push_back(std::move(line));
    fed += n;
  }
  FUZZ_CHECK(got == expected);
  return 0;
}
