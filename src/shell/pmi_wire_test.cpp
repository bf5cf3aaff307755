#include "shell/pmi_wire.h"

#include <gtest/gtest.h>

#include "shell/pmi_server.h"

namespace loom {
namespace {

TEST(PmiWire, ParsesTheCommandAndItsWords) {
  auto r = parse_pmi_line("cmd=init pmi_version=1 pmi_subversion=1");
  ASSERT_TRUE(r.ok()) << r.error().text;
  EXPECT_EQ(r->cmd, "init");
  EXPECT_FALSE(r->multi);
  EXPECT_EQ(r->arg("pmi_version"), "1");
  EXPECT_EQ(r->arg("pmi_subversion"), "1");
  EXPECT_EQ(r->arg("nosuch"), "");
}

TEST(PmiWire, AValueTakesTheRestOfTheLine) {
  auto r = parse_pmi_line("cmd=put kvsname=loom_1 key=card-0 value=a b=c  d\r");
  ASSERT_TRUE(r.ok()) << r.error().text;
  EXPECT_EQ(r->arg("key"), "card-0");
  EXPECT_EQ(r->arg("value"), "a b=c  d");
  auto empty = parse_pmi_line("cmd=put key=k value=");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->has("value"));
  EXPECT_EQ(empty->arg("value"), "");
}

TEST(PmiWire, MarksRequestsOfSeveralLines) {
  auto r = parse_pmi_line("mcmd=spawn");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->multi);
  EXPECT_EQ(r->cmd, "spawn");
}

TEST(PmiWire, RefusesWhatIsNotARequest) {
  for (const char* bad : {"", "   ", "hello", "=x", "key=v cmd=init", "cmd=", "cmd=put junk"}) {
    auto r = parse_pmi_line(bad);
    EXPECT_FALSE(r.ok()) << "'" << bad << "'";
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, EINVAL);
    }
  }
}

TEST(PmiWire, AnErrorIsOneLineOfWords) {
  EXPECT_EQ(pmi_error("get_result", "key x not found"), "cmd=get_result rc=-1 msg=key_x_not_found\n");
  EXPECT_EQ(pmi_error("error", "a=b\nc"), "cmd=error rc=-1 msg=a_b_c\n");
}

TEST(PmiProcessMapping, GroupsNodesWithAsManyTasks) {
  EXPECT_EQ(pmi_process_mapping({2, 2}), "(vector,(0,2,2))");
  EXPECT_EQ(pmi_process_mapping({3, 3, 2}), "(vector,(0,2,3),(2,1,2))");
  EXPECT_EQ(pmi_process_mapping({1}), "(vector,(0,1,1))");
}

}  // namespace
}  // namespace loom
