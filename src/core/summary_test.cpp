#include "core/summary.hpp"

#include <gtest/gtest.h>

namespace outpost::core {
namespace {

Summary sample() {
  Summary s;
  s.device = "pi";
  s.sensor = "cpu_temp_c";
  s.unit = "Cel";
  s.period_start = *parse_iso8601("2026-11-21T10:00:00Z");
  s.period_end = *parse_iso8601("2026-11-21T10:05:00Z");
  s.count = 3;
  s.mean = 2;
  s.min = 1;
  s.max = 3;
  s.stdev = 1;
  s.first = 3;
  s.last = 1;
  return s;
}

TEST(Summary, JsonHasEveryFieldWithIsoTimes) {
  auto j = summary_json(sample());
  EXPECT_EQ(j.dump(),
            R"({"device":"pi","sensor":"cpu_temp_c","unit":"Cel","period_start":"2026-11-21T10:00:00.000000Z",)"
            R"("period_end":"2026-11-21T10:05:00.000000Z","count":3,"mean":2.0,"min":1.0,"max":3.0,"stdev":1.0,)"
            R"("first":3.0,"last":1.0})");
  EXPECT_EQ(summary_id(sample()), "summary:pi/cpu_temp_c/2026-11-21T10:00:00.000000Z");
}

TEST(Summary, FromJsonRoundTripsAndRejectsBadFields) {
  auto back = summary_from_json(nlohmann::json::parse(summary_json(sample()).dump()));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(summary_json(*back), summary_json(sample()));

  auto broken = [](const char* field, nlohmann::json value) {
    auto j = nlohmann::json::parse(summary_json(sample()).dump());
    if (value.is_discarded()) {
      j.erase(field);
    } else {
      j[field] = value;
    }
    auto r = summary_from_json(j);
    EXPECT_FALSE(r.is_ok()) << field;
    return r.is_ok() ? std::string() : r.status().message();
  };
  nlohmann::json gone(nlohmann::json::value_t::discarded);
  EXPECT_NE(broken("device", gone).find("'device'"), std::string::npos);
  EXPECT_NE(broken("device", "").find("'device'"), std::string::npos);
  EXPECT_NE(broken("period_start", "yesterday").find("'period_start'"), std::string::npos);
  EXPECT_NE(broken("period_end", "2026-11-21T09:00:00Z").find("'period_end'"), std::string::npos);
  EXPECT_NE(broken("count", 0).find("'count'"), std::string::npos);
  EXPECT_NE(broken("count", -2).find("'count'"), std::string::npos);
  EXPECT_NE(broken("mean", "2").find("'mean'"), std::string::npos);
  EXPECT_NE(broken("stdev", gone).find("'stdev'"), std::string::npos);
  EXPECT_FALSE(summary_from_json(nlohmann::json::array()).is_ok());
}

}  // namespace
}  // namespace outpost::core
