// libFuzzer target for jobspecs (Flux RFC 25, as jobspec.h reads it), as
// `loom submit` users and anyone who can reach job-manager.submit send them.
//
// For any input, parse_jobspec_text either fails with a one-line "jobspec:"
// error or yields a Jobspec whose counts hold together (at least one slot
// and task, no more tasks than slots, nodes × slots per node = slots).
// What it accepted, written out with dump_json and parsed again, gives the
// same Jobspec: nothing it keeps depends on how the text was spelled.
//
// Short inputs are also read as a duration (`-t`, attributes), which must
// fail cleanly or give a non-negative number of seconds.
//
// Build with the `fuzz` preset; ctest runs it for a bounded time on the
// seeds in fuzz_corpus/.
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>

#include "base/fuzz_check.h"
#include "jobspec/jobspec.h"

namespace loom {
namespace {

auto fields(const Jobspec& js) {
  return std::tie(js.raw, js.nnodes, js.nslots, js.slots_per_node, js.cores_per_slot, js.gpus_per_slot, js.exclusive,
                  js.ntasks, js.command, js.duration, js.cwd, js.name);
}

void check_jobspec(const Jobspec& js) {
  FUZZ_CHECK(js.nslots >= 1);
  FUZZ_CHECK(js.ntasks >= 1 && js.ntasks <= js.nslots);
  FUZZ_CHECK(js.cores_per_slot >= 1);
  if (js.nnodes > 0) {
    FUZZ_CHECK(js.slots_per_node >= 1);
    FUZZ_CHECK(uint64_t{js.slots_per_node} * js.nnodes == js.nslots);
    FUZZ_CHECK(js.ntasks >= js.nnodes);
  } else {
    FUZZ_CHECK(js.slots_per_node == 0 && !js.exclusive);
  }
  FUZZ_CHECK(!js.command.empty() && !js.command[0].empty());
  FUZZ_CHECK(std::isfinite(js.duration) && js.duration >= 0);
  FUZZ_CHECK(js.raw.is_object());
}

void check_duration(std::string_view text, Result<double> (*parse)(std::string_view)) {
  auto d = parse(text);
  if (!d.ok()) {
    FUZZ_CHECK(d.error().code == EINVAL && fuzz::one_line(d.error().text));
    return;
  }
  FUZZ_CHECK(!std::isnan(*d) && *d >= 0);
}

}  // namespace
}  // namespace loom

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loom;
  std::string_view text(reinterpret_cast<const char*>(data), size);

  if (size <= 32) {
    check_duration(text, parse_fsd);
    check_duration(text, parse_time_limit);
  }

  auto js = parse_jobspec_text(text);
  if (!js.ok()) {
    FUZZ_CHECK(js.error().code == EINVAL);
    FUZZ_CHECK(js.error().text.starts_with("jobspec: "));
    FUZZ_CHECK(fuzz::one_line(js.error().text));
    return 0;
  }
  check_jobspec(*js);

  // Written out and read back, the same jobspec; the same from the JSON
  // value without the text in between.
  auto again = parse_jobspec_text(dump_json(js->raw));
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(fields(*again) == fields(*js));
  auto direct = parse_jobspec(js->raw);
  FUZZ_CHECK(direct.ok());
  FUZZ_CHECK(fields(*direct) == fields(*js));
  return 0;
}
