// Reading payload fields (payload.h): the wrong shape is EPROTO, a value
// out of its range EINVAL, each with a one-line reason naming the field.
#include "msg/payload.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <limits>

namespace loom {
namespace {

TEST(Payload, ReadsAnUnsignedIntegerOfAll64Bits) {
  Json j{{"id", UINT64_MAX}};
  auto id = get_uint(j, "id");
  ASSERT_TRUE(id.ok()) << id.error().text;
  EXPECT_EQ(*id, UINT64_MAX);
}

TEST(Payload, AnUnsignedIntegerThatIsNegativeOrNotANumberIsMalformed) {
  for (const Json& j : {Json{{"id", -1}}, Json{{"id", "1"}}, Json{{"id", 1.5}}, Json::object()}) {
    auto id = get_uint(j, "id");
    ASSERT_FALSE(id.ok()) << j.dump();
    EXPECT_EQ(id.error().code, EPROTO) << j.dump();
  }
  EXPECT_EQ(get_uint(Json{{"id", -1}}, "id").error().text, "\"id\" must be a non-negative integer");
  EXPECT_EQ(get_uint(Json::object(), "id").error().text, "missing \"id\"");
}

TEST(Payload, ReadsANumberOrItsDefault) {
  EXPECT_EQ(get_number(Json{{"t", 1.5}}, "t", 0).value(), 1.5);
  EXPECT_EQ(get_number(Json{{"t", 2}}, "t", 0).value(), 2.0);
  EXPECT_EQ(get_number(Json::object(), "t", 7).value(), 7.0);
}

TEST(Payload, ANumberThatIsNotFiniteOrNotANumberIsMalformed) {
  for (const Json& j : {Json{{"t", "1"}}, Json{{"t", std::numeric_limits<double>::infinity()}},
                        Json{{"t", std::numeric_limits<double>::quiet_NaN()}}, Json{{"t", nullptr}}}) {
    auto t = get_number(j, "t", 0);
    ASSERT_FALSE(t.ok()) << j.dump();
    EXPECT_EQ(t.error().code, EPROTO) << j.dump();
    EXPECT_EQ(t.error().text, "\"t\" must be a number");
  }
}

TEST(Payload, AnIntegerOutsideItsRangeIsInvalidNotMalformed) {
  auto v = get_int(Json{{"n", 40}}, "n", 0, 31);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code, EINVAL);
  EXPECT_EQ(v.error().text, "\"n\" must be 0-31, not 40");
  EXPECT_EQ(get_int(Json{{"n", "x"}}, "n", 0, 31).error().code, EPROTO);
}

}  // namespace
}  // namespace loom
