// libFuzzer target for the trace readers (trace.h), SWF and Batsim JSON
// from memory, with and without the strong filter.
//
// For any input, parse_swf and parse_batsim either fail with a one-line
// error that begins with the name given, or yield at least one job, every
// job as the rules promise (docs/simulator.md, "Traces"): submit >= 0, run
// >= 0, requested time > 0, 1 <= procs <= the machine, sorted by submit
// time, the strong filter's run never over its requested time; and a
// one-line summary whose counts add up: read = kept + dropped.
//
// Build with the `fuzz` preset; ctest runs it for a bounded time on the
// seeds in fuzz_corpus/.
#include <cstdint>
#include <string>
#include <string_view>

#include "base/fuzz_check.h"
#include "trace/trace.h"

namespace {

void check(const loom::Result<loom::trace::Workload>& w, loom::trace::Filter filter) {
  using namespace loom::trace;
  if (!w.ok()) {
    FUZZ_CHECK(w.error().code != 0);
    FUZZ_CHECK(w.error().text.starts_with("in:"));
    FUZZ_CHECK(loom::fuzz::one_line(w.error().text));
    return;
  }
  FUZZ_CHECK(!w->jobs.empty());
  FUZZ_CHECK(loom::fuzz::one_line(w->summary));
  FUZZ_CHECK(w->tally.read == static_cast<int64_t>(w->jobs.size()) + w->tally.dropped());
  FUZZ_CHECK(w->header.max_procs > 0);
  double last = 0;
  for (const Job& j : w->jobs) {
    FUZZ_CHECK(j.submit >= 0 && j.submit >= last);
    last = j.submit;
    FUZZ_CHECK(j.run >= 0);
    FUZZ_CHECK(j.requested_time > 0);
    FUZZ_CHECK(j.procs >= 1 && j.procs <= w->header.max_procs);
    if (filter == Filter::kStrong) FUZZ_CHECK(j.run > 0 && j.run <= j.requested_time);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loom::trace;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (Filter f : {Filter::kNone, Filter::kStrong}) {
    check(parse_swf(text, "in", f), f);
    check(parse_batsim(text, "in", f), f);
  }
  return 0;
}
