// libFuzzer target for hostlists (RFC 29 text, hostlist.h), as the
// bootstrap configuration's `hosts` and R's nodelist carry them.
//
// For any input, Hostlist::parse either fails with a one-line EINVAL error
// that begins `invalid hostlist "` or yields at most kMaxHosts names that
// round-trip: the encoded text parses back to the same list, and encoding
// that gives the same text again (the form is canonical). Every name is a
// hostlist of one name, itself.
//
// Build with the `fuzz` preset; ctest runs it for a bounded time on the
// seeds in fuzz_corpus/.
#include <cstdint>
#include <string>
#include <string_view>

#include "base/fuzz_check.h"
#include "hostlist/hostlist.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loom;
  std::string_view text(reinterpret_cast<const char*>(data), size);

  auto list = Hostlist::parse(text);
  if (!list.ok()) {
    FUZZ_CHECK(list.error().code == EINVAL);
    FUZZ_CHECK(list.error().text.starts_with("invalid hostlist \""));
    FUZZ_CHECK(fuzz::one_line(list.error().text));
    return 0;
  }
  FUZZ_CHECK(list->size() <= Hostlist::kMaxHosts);
  FUZZ_CHECK(list->empty() == text.empty());
  // A long list only parses: the checks below would take seconds under
  // the sanitizers for nothing a short one does not show.
  if (list->size() > 65536) return 0;

  std::string encoded = list->encode();
  auto back = Hostlist::parse(encoded);
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(*back == *list);
  FUZZ_CHECK(back->encode() == encoded);
  if (list->size() == 1) FUZZ_CHECK(encoded == (*list)[0]);  // a name alone stays as it is

  size_t checked = 0;
  for (const std::string& h : list->hosts()) {
    if (++checked > 64) break;
    auto self = Hostlist::parse(h);
    FUZZ_CHECK(self.ok());
    FUZZ_CHECK(self->size() == 1 && (*self)[0] == h);
  }
  return 0;
}
