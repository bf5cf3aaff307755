#include "cli/jobs_format.h"

#include <gtest/gtest.h>

namespace loom::cli {
namespace {

// A job's name is its user's words: listed on another user's terminal
// (root's, with -A), an escape sequence in it would drive that terminal.
TEST(JobsFormat, ControlCharactersInFieldsShowAsQuestionMarks) {
  auto f = JobsFormat::parse("[{name:<12}] {id.dec}");
  ASSERT_TRUE(f.ok()) << f.error().text;
  Json job{{"id", 7},
           {"state", "SCHED"},
           {"name",
            "a\x1b]0;x\x07z\nq\xc2\x9b"
            "b"}};
  auto line = f->render(job, 0);
  ASSERT_TRUE(line.ok()) << line.error().text;
  EXPECT_EQ(*line, "[a?]0;x?z?q?b] 7") << "one column for one: the width holds";
  // Printable UTF-8 passes as it is.
  job["name"] = "d\xc3\xa9j\xc3\xa0";
  EXPECT_EQ(*f->render(job, 0), "[d\xc3\xa9j\xc3\xa0        ] 7");
}

}  // namespace
}  // namespace loom::cli
