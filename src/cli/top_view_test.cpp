// loom top's screen from journal responses (top_view.h): no instance, no
// terminal; the time given.
#include "cli/top_view.h"

#include <gtest/gtest.h>

namespace loom::cli {
namespace {

constexpr double kNow = 1'800'000'000;

Json job(uint64_t id, const std::string& state, const std::string& name, int nnodes, int ntasks) {
  Json j{{"id", id},
         {"userid", 0},
         {"name", name},
         {"state", state},
         {"urgency", 16},
         {"priority", 16},
         {"t_submit", kNow - double(id)},
         {"ntasks", ntasks},
         {"nnodes", nnodes}};
  if (state == "RUN") {
    j["t_run"] = kNow - 1;
    j["ranks"] = "0";
  }
  return j;
}

size_t row_of(const std::vector<std::string>& lines, const std::string& text) {
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find(text) != std::string::npos) return i;
  }
  return std::string::npos;
}

TopView with_jobs() {
  TopView v;
  EXPECT_TRUE(v.apply_journal(Json{{"jobs", Json::array({job(1, "SCHED", "bravo", 2, 8), job(2, "RUN", "charlie", 1, 1),
                                                         job(3, "DEPEND", "alpha", 4, 4)})}}));
  return v;
}

// Another user's job name must not drive the terminal of whoever watches:
// escapes, newlines and C1 controls show as '?', one column each.
TEST(TopView, ControlCharactersInNamesNeverReachTheTerminal) {
  TopView v;
  std::string evil =
      "a\x1b]0;owned\x07\x1b[2J\nb\r\x7f\xc2\x9b"
      "31mz";
  ASSERT_TRUE(v.apply_journal(Json{{"jobs", Json::array({job(1, "SCHED", evil, 1, 1)})}}));
  auto lines = v.render(kNow, 0, 0);
  size_t row = row_of(lines, "a?]0;owned");
  ASSERT_NE(row, std::string::npos);
  for (const auto& l : lines) {
    for (unsigned char c : l) {
      EXPECT_TRUE(c >= 0x20 && c != 0x7f) << "control byte " << int(c) << " in: " << l;
    }
    EXPECT_EQ(l.find("\xc2\x9b"), std::string::npos) << l;
  }
  // Cut to the name column (16), each control one '?'.
  EXPECT_NE(lines[row].find("a?]0;owned??[2J?"), std::string::npos) << lines[row];
}

TEST(TopView, SortsByStateThenByTheKeyPressed) {
  TopView v = with_jobs();
  auto lines = v.render(kNow, 0, 0);
  EXPECT_LT(row_of(lines, "charlie"), row_of(lines, "bravo"));
  EXPECT_LT(row_of(lines, "bravo"), row_of(lines, "alpha"));
  ASSERT_TRUE(v.press('n'));
  lines = v.render(kNow, 0, 0);
  EXPECT_LT(row_of(lines, "alpha"), row_of(lines, "bravo"));
  EXPECT_LT(row_of(lines, "bravo"), row_of(lines, "charlie"));
  ASSERT_TRUE(v.press('r'));
  lines = v.render(kNow, 0, 0);
  EXPECT_LT(row_of(lines, "charlie"), row_of(lines, "alpha"));
  EXPECT_NE(lines[v.heading_row()].find("sorted by name, reversed"), std::string::npos);
  ASSERT_TRUE(v.press('N'));
  ASSERT_TRUE(v.press('r'));
  lines = v.render(kNow, 0, 0);
  EXPECT_LT(row_of(lines, "alpha"), row_of(lines, "bravo"));  // most nodes first
  EXPECT_FALSE(v.press('x'));
}

TEST(TopView, EventsUpdateAndEndJobs) {
  TopView v = with_jobs();
  Json started = job(1, "RUN", "bravo", 2, 8);
  ASSERT_TRUE(v.apply_journal(Json{{"id", 1}, {"event", {{"name", "alloc"}}}, {"job", started}}));
  auto lines = v.render(kNow, 0, 0);
  EXPECT_NE(lines[row_of(lines, "bravo")].find("RUN"), std::string::npos);
  EXPECT_NE(lines[1].find("jobs: 2 running, 1 pending (1 DEPEND)"), std::string::npos) << lines[1];
  ASSERT_TRUE(
      v.apply_journal(Json{{"id", 2}, {"event", {{"name", "clean"}}}, {"job", job(2, "INACTIVE", "charlie", 1, 1)}}));
  EXPECT_EQ(v.job_count(), 2u);
  ASSERT_TRUE(v.apply_journal(Json{{"id", 3}}));  // purged
  EXPECT_EQ(v.job_count(), 1u);
  EXPECT_FALSE(v.apply_journal(Json{{"nothing", 1}}));
}

TEST(TopView, TheActiveJobsComeInParts) {
  TopView v;
  ASSERT_TRUE(v.apply_journal(Json{{"jobs", Json::array({job(1, "SCHED", "a", 1, 1)})}, {"more", true}}));
  EXPECT_FALSE(v.has_all_jobs());
  ASSERT_TRUE(v.apply_journal(Json{{"jobs", Json::array({job(2, "SCHED", "b", 1, 1)})}, {"more", false}}));
  EXPECT_TRUE(v.has_all_jobs());
  EXPECT_EQ(v.job_count(), 2u);
  // A new first answer (a journal opened again) starts over.
  ASSERT_TRUE(v.apply_journal(Json{{"jobs", Json::array({job(3, "SCHED", "c", 1, 1)})}, {"more", false}}));
  EXPECT_EQ(v.job_count(), 1u);
}

TEST(TopView, FitsTheScreenAndSaysWhatItLeftOut) {
  TopView v;
  Json jobs = Json::array();
  for (uint64_t i = 1; i <= 50; ++i) jobs.push_back(job(i, "SCHED", "j" + std::to_string(i), 1, 1));
  ASSERT_TRUE(v.apply_journal(Json{{"jobs", jobs}}));
  Json ranks = Json::array();
  for (int r = 0; r < 40; ++r) {
    ranks.push_back(Json{{"rank", r},
                         {"host", "n" + std::to_string(r)},
                         {"state", "free"},
                         {"ncores", 4},
                         {"ngpus", 0},
                         {"used_cores", r == 0 ? 4 : 0},
                         {"used_gpus", 0}});
  }
  v.set_resources(Json{{"ranks", ranks}});
  v.set_queue(Json{{"submit", {{"enabled", true}, {"reason", ""}}},
                   {"sched", {{"started", false}, {"reason", "maintenance"}}},
                   {"scheduler", "ready"}});
  auto lines = v.render(kNow, 30, 110);
  ASSERT_EQ(lines.size(), 30u);
  for (const auto& l : lines) EXPECT_LE(l.size(), 110u + 1) << l;  // ƒ is two bytes, one column
  EXPECT_NE(lines[0].find("scheduling stopped (maintenance)"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("cores 4/160 used"), std::string::npos) << lines[1];
  EXPECT_NE(lines[3].find("[||||||||||||||||||||||||]"), std::string::npos) << lines[3];
  EXPECT_NE(row_of(lines, "more ranks"), std::string::npos);
  EXPECT_NE(row_of(lines, "more jobs"), std::string::npos);
  EXPECT_NE(lines[row_of(lines, "j1 ")].find("queue stopped: maintenance"), std::string::npos);
  EXPECT_EQ(lines.back(), top_keys_help());
  for (size_t rows = 1; rows < 12; ++rows) EXPECT_EQ(v.render(kNow, rows, 40).size(), rows);
}

}  // namespace
}  // namespace loom::cli
