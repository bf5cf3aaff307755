#include "base/fluid.h"

#include <gtest/gtest.h>

namespace loom {

TEST(Fluid, EncodesTheRfc19Example) {
  EXPECT_EQ(encode_f58(JobId{6731191091817518}), "\xc6\x92uZZybuNNy");
  EXPECT_EQ(encode_f58(JobId{0}),
            "\xc6\x92"
            "1");
}

TEST(Fluid, ParsesEveryRepresentation) {
  const uint64_t id = 6731191091817518;
  EXPECT_EQ(parse_jobid("6731191091817518")->value(), id);
  EXPECT_EQ(parse_jobid("\xc6\x92uZZybuNNy")->value(), id);
  EXPECT_EQ(parse_jobid("fuZZybuNNy")->value(), id);
  EXPECT_EQ(parse_jobid("  fuZZybuNNy\n")->value(), id);
  EXPECT_EQ(parse_jobid("0x17e9fb8df16c2e")->value(), 0x17e9fb8df16c2eull);
  EXPECT_EQ(parse_jobid("0017.e9fb.8df1.6c2e")->value(), 0x17e9fb8df16c2eull);
}

TEST(Fluid, RejectsMalformedIds) {
  for (const char* s : {"", "  ", "12a", "-1", "f", "f0OIl", "0x", "0xzz", "0017.e9fb", "0017.e9fb.8df1.6c2",
                        "18446744073709551616", "fzzzzzzzzzzzzzzzz"}) {
    EXPECT_FALSE(parse_jobid(s).ok()) << s;
  }
  EXPECT_EQ(parse_jobid("18446744073709551615")->value(), UINT64_MAX);
}

TEST(Fluid, AnErrorQuotesAtMostTheStartOfALongId) {
  auto r = parse_jobid(std::string(100000, 'x') + "\n");
  ASSERT_FALSE(r.ok());
  EXPECT_LT(r.error().text.size(), 200u) << r.error().text.substr(0, 300);
  EXPECT_NE(r.error().text.find("\"xxxx"), std::string::npos) << r.error().text;
  EXPECT_EQ(r.error().text.find('\n'), std::string::npos);
  auto nl = parse_jobid("a\nb");
  ASSERT_FALSE(nl.ok());
  EXPECT_NE(nl.error().text.find("\"a\\nb\""), std::string::npos) << nl.error().text;
}

TEST(Fluid, RoundTripsThroughF58) {
  FluidGenerator g(1'700'000'000'000, 0);
  for (uint64_t t = 0; t < 5000; t += 7) {
    JobId id = g.next(1'700'000'000'000 + t * 1000);
    auto back = parse_jobid(encode_f58(id));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, id);
  }
}

TEST(Fluid, IdsStrictlyIncreaseEvenWhenTheClockStallsOrStepsBack) {
  FluidGenerator g(1000, 3);
  JobId last = g.next(5000);
  for (int i = 0; i < 5000; ++i) {  // > 1024 in one millisecond: borrows ahead
    JobId id = g.next(i % 2 ? 5000 : 4000);
    ASSERT_GT(id, last);
    last = id;
  }
  EXPECT_EQ((last.value() >> 10) & 0x3fff, 3u);  // generator bits
}

TEST(Fluid, RestoreNeverReissuesAnId) {
  FluidGenerator before(0, 0);
  JobId last{};
  for (int i = 0; i < 100; ++i) last = before.next(10'000);
  FluidGenerator after(0, 0);
  after.restore(last);
  EXPECT_GT(after.next(10'000), last);  // same millisecond as the old ids
  EXPECT_GT(after.next(9'000), last);   // clock went back across the restart

  FluidGenerator other(0, 1);
  other.restore(JobId{(uint64_t{50} << 24) | (uint64_t{7} << 10) | 1});  // generator 7
  EXPECT_GT(other.next(50), JobId((uint64_t{50} << 24) | (uint64_t{7} << 10) | 1));
}

}  // namespace loom
