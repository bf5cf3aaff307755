// The keys as docs/kvs-layout.md spells them: stored instances depend on
// these exact names, so renaming one is a format change.
#include "kvs/layout.h"

#include <gtest/gtest.h>

namespace loom {
namespace {

TEST(KvsLayout, JobKeysAreUnderJobDotDecimalId) {
  JobId id{42};
  EXPECT_EQ(kvs_key::job_dir(id), "job.42");
  EXPECT_EQ(kvs_key::job_eventlog(id), "job.42.eventlog");
  EXPECT_EQ(kvs_key::job_jobspec(id), "job.42.jobspec");
  EXPECT_EQ(kvs_key::job_R(id), "job.42.R");
  EXPECT_EQ(kvs_key::job_guest(id), "job.42.guest");
  EXPECT_EQ(kvs_key::job_guest_output(id), "job.42.guest.output");
  EXPECT_EQ(kvs_key::job_guest_exec_eventlog(id), "job.42.guest.exec.eventlog");
  EXPECT_EQ(kvs_key::job_leaf("17", kvs_key::kR), "job.17.R");
  // Ids as the job manager makes them (FLUIDs) have 16 to 20 digits.
  EXPECT_EQ(kvs_key::job_eventlog(JobId{18446744073709551615u}), "job.18446744073709551615.eventlog");
  EXPECT_EQ(kvs_key::job_R(JobId{0}), "job.0.R");
}

TEST(KvsLayout, GuestNamespaceIsJobDashDecimalId) {
  EXPECT_EQ(kvs_key::guest_namespace(JobId{42}), "job-42");
  // Linked at job.ID.guest, the namespace's keys become the guest leaves.
  EXPECT_EQ(std::string(kvs_key::kGuest) + "." + kvs_key::kOutput, kvs_key::kGuestOutput);
  EXPECT_EQ(std::string(kvs_key::kGuest) + "." + kvs_key::kExecEventlog, kvs_key::kGuestExecEventlog);
  EXPECT_EQ(std::string(kvs_key::kExecEventlog).rfind(std::string(kvs_key::kExecDir) + ".", 0), 0u);
}

}  // namespace
}  // namespace loom
