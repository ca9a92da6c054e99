#include "core/time.hpp"

#include <gtest/gtest.h>

namespace outpost::core {
namespace {

TEST(Time, FormatsUtcWithMicrosecondsAndZ) {
  auto t = from_micros(1'795'305'599'123'456);  // 2026-11-21T23:59:59.123456Z
  EXPECT_EQ(format_iso8601(t), "2026-11-21T23:59:59.123456Z");
  EXPECT_EQ(format_iso8601(from_micros(0)), "1970-01-01T00:00:00.000000Z");
}

TEST(Time, ParsesWhatItFormats) {
  auto t = from_micros(1'795'305'599'123'456);
  EXPECT_EQ(parse_iso8601(format_iso8601(t)), t);
}

TEST(Time, ParsesOffsetsFractionsAndDates) {
  EXPECT_EQ(parse_iso8601("2026-11-21T23:59:59Z"), from_micros(1'795'305'599'000'000));
  EXPECT_EQ(parse_iso8601("2026-11-22T00:59:59+01:00"), from_micros(1'795'305'599'000'000));
  EXPECT_EQ(parse_iso8601("2026-11-21T23:59:59.5Z"), from_micros(1'795'305'599'500'000));
  EXPECT_EQ(parse_iso8601("2026-11-21"), from_micros(1'795'219'200'000'000));
}

TEST(Time, RejectsMalformedAndImpossible) {
  for (const char* bad : {"", "yesterday", "2026-13-01", "2026-02-30", "2026-11-21T25:00:00Z",
                          "2026-11-21T10:00:00", "2026-11-21T10:00:00Zjunk", "2026-11-21T10:00:00.Z",
                          "2026-11-21T10:00Z"}) {
    EXPECT_FALSE(parse_iso8601(bad).has_value()) << bad;
  }
}

TEST(Time, ParsesDurations) {
  using namespace std::chrono;
  EXPECT_EQ(parse_duration("10s"), milliseconds(10'000));
  EXPECT_EQ(parse_duration("10"), milliseconds(10'000));
  EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
  EXPECT_EQ(parse_duration("5m"), milliseconds(300'000));
  EXPECT_EQ(parse_duration("30d"), milliseconds(30LL * 86'400'000));
  for (const char* bad : {"", "s", "-1s", "10x", "1.5s", "99999999999999999999"})
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
}

}  // namespace
}  // namespace outpost::core
