// libFuzzer target for PMI-1 request lines (pmi_wire.h), as a task writes
// them to its shell (the shell splits its input at newlines first).
//
// For any line without a newline, parse_pmi_line either fails with a
// one-line EINVAL error, or yields a request whose command is not empty,
// whose argument names are not empty and hold no '=' or space, and whose
// values, `value` aside, hold no space. The shell's error answer for any
// text is one line of words: `cmd=NAME rc=-1 msg=TEXT` and a newline.
//
// Build with the `fuzz` preset; ctest runs it for a bounded time on the
// seeds in pmi_fuzz_corpus/.
#include <cstdint>
#include <string>
#include <string_view>

#include "base/fuzz_check.h"
#include "shell/pmi_wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loom;
  std::string_view line(reinterpret_cast<const char*>(data), size);
  if (line.find('\n') != std::string_view::npos) return 0;

  auto req = parse_pmi_line(line);
  if (!req.ok()) {
    FUZZ_CHECK(req.error().code == EINVAL);
    FUZZ_CHECK(fuzz::one_line(req.error().text));
  } else {
    FUZZ_CHECK(!req->cmd.empty());
    FUZZ_CHECK(req->cmd.find(' ') == std::string::npos);
    for (const auto& [name, value] : req->args) {
      FUZZ_CHECK(!name.empty());
      FUZZ_CHECK(name.find('=') == std::string::npos && name.find(' ') == std::string::npos);
      if (name != "value") FUZZ_CHECK(value.find(' ') == std::string::npos);
    }
  }

  std::string text = req.ok() ? req->cmd : req.error().text;
  std::string answer = pmi_error("error", text);
  FUZZ_CHECK(answer.starts_with("cmd=error rc=-1 msg="));
  FUZZ_CHECK(answer.back() == '\n');
  std::string_view body(answer.data(), answer.size() - 1);
  FUZZ_CHECK(body.find('\n') == std::string_view::npos);
  FUZZ_CHECK(body.substr(body.find("msg=") + 4).find_first_of(" =") == std::string_view::npos);
  return 0;
}
