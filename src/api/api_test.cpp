#include <gtest/gtest.h>

#include "api/api.hpp"

namespace outpost::api {
namespace {

TEST(Api, ParseLimit) {
  EXPECT_EQ(parse_limit("10", 1000), 10u);
  EXPECT_EQ(parse_limit("0", 1000), 0u);
  EXPECT_EQ(parse_limit("1000", 1000), 1000u);
  EXPECT_EQ(parse_limit("1001", 1000), 1000u);
  EXPECT_EQ(parse_limit("99999999999999999999999999", 1000), 1000u);
  for (const char* bad : {"", "-1", "1.5", "abc", "10a", " 10", "+5", "1e3"}) EXPECT_FALSE(parse_limit(bad, 1000)) << bad;
}

}  // namespace
}  // namespace outpost::api
