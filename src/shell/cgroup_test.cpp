#include "shell/cgroup.h"

#include <gtest/gtest.h>

namespace loom {
namespace {

TEST(Cgroup, FindsTheVersion2MountBesideVersion1Controllers) {
  std::string hybrid =
      "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n"
      "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
      "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
  EXPECT_EQ(find_cgroup2_mount(hybrid), "/sys/fs/cgroup/unified");
  EXPECT_EQ(find_cgroup2_mount("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n"), "/sys/fs/cgroup");
  EXPECT_EQ(find_cgroup2_mount("none /my\\040cgroups cgroup2 rw 0 0\n"), "/my cgroups");
}

TEST(Cgroup, NoVersion2MountIsNone) {
  EXPECT_EQ(find_cgroup2_mount("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"), std::nullopt);
  EXPECT_EQ(find_cgroup2_mount(""), std::nullopt);
}

TEST(Cgroup, OwnCgroupIsTheLineOfHierarchyZero) {
  EXPECT_EQ(own_cgroup2("4:memory:/x\n0::/user.slice/session-1.scope\n"), "/user.slice/session-1.scope");
  EXPECT_EQ(own_cgroup2("0::/\n"), "/");
  EXPECT_EQ(own_cgroup2("4:memory:/x\n"), std::nullopt);
}

TEST(Cgroup, TheProcessGroupOfALiveProcessFromItsStat) {
  EXPECT_EQ(live_process_group("1234 (sleep) S 1200 1200 1200 0 -1 4194304"), 1200);
  // A command name with spaces and parentheses.
  EXPECT_EQ(live_process_group("1234 (a) b (c)) R 1 77 77 0"), 77);
  // A zombie holds nothing: it is not counted.
  EXPECT_EQ(live_process_group("1234 (sh) Z 1200 1200 1200 0"), std::nullopt);
  EXPECT_EQ(live_process_group("garbage"), std::nullopt);
}

}  // namespace
}  // namespace loom
