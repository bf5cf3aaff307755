#include "shell/report.h"

#include <gtest/gtest.h>

#include "msg/json.h"

namespace loom {
namespace {

TEST(ExitReport, AllTasksWhenTheyFit) {
  std::string r = exit_report({{0, 0}, {1, 256}, {2, 9}}, 4096);
  EXPECT_EQ(r, "{\"tasks\":[[0,0],[1,256],[2,9]]}\n");
  EXPECT_EQ(exit_report({}, 4096), "{\"tasks\":[]}\n");
}

TEST(ExitReport, NeverLongerThanThePipeHoldsAndCountsTheRest) {
  // Long entries first (tasks that failed), short ones after: a guess from
  // the average length would not fit.
  for (size_t cap : {64ul, 100ul, 4096ul, 65536ul}) {
    std::vector<std::pair<int, int>> tasks;
    for (int i = 0; i < 20000; ++i) tasks.emplace_back(i, i < 2000 ? 65280 : 0);
    std::string r = exit_report(tasks, cap);
    ASSERT_LE(r.size(), cap) << cap;
    ASSERT_EQ(r.back(), '\n');
    auto j = parse_json(r.substr(0, r.size() - 1));
    ASSERT_TRUE(j.ok()) << r;
    size_t told = (*j)["tasks"].size();
    EXPECT_GT(told, 0u) << cap;
    EXPECT_EQ(told + (*j)["more"].get<size_t>(), tasks.size()) << cap;
    for (size_t i = 0; i < told; ++i) EXPECT_EQ((*j)["tasks"][i][0], static_cast<int>(i));
  }
}

}  // namespace
}  // namespace loom
