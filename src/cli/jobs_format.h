// The output format language of `loom jobs -o` (docs/commands.md, "loom
// jobs formats"), that of `flux jobs`: Python's str.format syntax over the
// fields of a job as job-manager.list describes it.
//
//   format  = (text | "{{" | "}}" | ["?:"] field)*
//   field   = "{" name ["!" conv] [":" spec] "}"
//   conv    = "s" | "D" (ISO 8601 local time) | "d" (a datetime: spec is an
//             strftime format, then "::" and a spec for the text) | "F"
//             (Flux Standard Duration) | "H" (hours:minutes:seconds) | "P"
//             (a fraction as a percentage)
//   spec    = Python's [[fill]align][sign][#][0][width][,|_][.precision][type]
//             then "h" (an empty, zero-duration or epoch value is "-") then
//             "+" (a value cut to fit ends in "+")
//
// A field after "?:" is left out, with the text before it, when it is empty
// for every job listed. Python's default alignment holds: numbers right,
// text left. An unknown field or a bad spec is found when the format is
// parsed; a spec that does not fit a value's type (a "d" for a name) when
// it is rendered: either is one line of error.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "cli/jobs_fields.h"
#include "msg/json.h"

namespace loom::cli {

class JobsFormat {
 public:
  static Result<JobsFormat> parse(std::string_view text);

  // This format without the "?:" fields that are empty for all of `jobs`.
  JobsFormat without_empty(const std::vector<Json>& jobs, double now) const;

  // The header line: each field's heading aligned as its values are.
  std::string header() const;
  // One job's line; trailing blanks are cut.
  Result<std::string> render(const Json& job, double now) const;

  struct Spec {
    std::string fill = " ";  // one character, perhaps of several bytes
    char align = 0;          // '<' '>' '^' '=' or 0 for the type's default
    char sign = 0;           // '+' '-' ' ' or 0
    bool alt = false;        // '#'
    bool zero = false;       // '0'
    size_t width = 0;
    char grouping = 0;  // ',' '_' or 0
    int precision = -1;
    char type = 0;
    bool hyphen = false;     // the "h" suffix
    bool truncmark = false;  // the "+" suffix
  };
  struct Piece {
    std::string text;  // literal text before the field
    bool field = false;
    bool collapsible = false;  // "?:" before it
    std::string name;
    char conv = 0;
    std::string raw_spec;  // for !d: the strftime format
    Spec spec;
  };

 private:
  std::vector<Piece> pieces_;
};

// Named formats: default, long, deps, endreason (`loom jobs -o NAME`).
struct NamedFormat {
  const char* name;
  const char* description;
  const char* format;
};
const std::vector<NamedFormat>& named_formats();

}  // namespace loom::cli
