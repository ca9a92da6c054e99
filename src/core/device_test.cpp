#include "core/device.hpp"

#include <gtest/gtest.h>

namespace outpost::core {
namespace {

TEST(SharedJson, CopiesShareOneValue) {
  SharedJson a = Json{{"type", "light"}, {"power", 0.5}};
  SharedJson b = a;
  EXPECT_TRUE(a.same(b));
  EXPECT_EQ(&*a, &*b);
  EXPECT_EQ((*b)["type"], "light");
  b = Json{{"type", "light"}, {"power", 0.5}};  // equal, but another value
  EXPECT_FALSE(a.same(b));
  EXPECT_EQ(a, b);
  b = Json{{"type", "dark"}};
  EXPECT_NE(a, b);
  EXPECT_EQ((*a)["type"], "light");  // a kept its own
}

TEST(SharedJson, EmptyValuesAreTheSharedOnes) {
  Sensor s;
  Actuator act;
  EXPECT_TRUE(s.attributes.same(SharedJson::object()));
  EXPECT_TRUE(s.configuration.same(SharedJson::array()));
  EXPECT_TRUE(act.actions.same(SharedJson::array()));
  EXPECT_TRUE(act.attributes.same(SharedJson::object()));
  EXPECT_TRUE(SharedJson().same(SharedJson::null()));
  EXPECT_TRUE(SharedJson(Json::object()).same(SharedJson::object()));
  EXPECT_TRUE(SharedJson(Json::array()).same(SharedJson::array()));
  EXPECT_TRUE(SharedJson(Json()).same(SharedJson::null()));
  EXPECT_TRUE(SharedJson::object()->is_object());
  EXPECT_TRUE(SharedJson::array()->is_array());
  EXPECT_TRUE(SharedJson::null()->is_null());
  EXPECT_FALSE(SharedJson(Json::array({1})).same(SharedJson::array()));
}

TEST(Device, LocationFromNestedObject) {
  auto l = location_of(Json::parse(R"({"location": {"lat": 65.4, "lon": 25.4}})"));
  ASSERT_TRUE(l);
  EXPECT_DOUBLE_EQ(l->lat, 65.4);
  EXPECT_DOUBLE_EQ(l->lon, 25.4);
}

TEST(Device, LocationFromFlatAttributesAndNumericStrings) {
  auto l = location_of(Json::parse(R"({"name": "x", "lat": "-33.5", "lon": "151.25"})"));
  ASSERT_TRUE(l);
  EXPECT_DOUBLE_EQ(l->lat, -33.5);
  EXPECT_DOUBLE_EQ(l->lon, 151.25);
}

TEST(Device, LocationRejectsOutOfRangeAndGarbage) {
  EXPECT_FALSE(location_of(Json::parse(R"({"lat": 91, "lon": 0})")));
  EXPECT_FALSE(location_of(Json::parse(R"({"lat": 0, "lon": -180.5})")));
  EXPECT_FALSE(location_of(Json::parse(R"({"lat": "12abc", "lon": 0})")));
  EXPECT_FALSE(location_of(Json::parse(R"({"lat": null, "lon": 0})")));
  EXPECT_FALSE(location_of(Json::parse(R"({"lat": 1})")));
  EXPECT_FALSE(location_of(Json::parse(R"([1, 2])")));
  // A bad nested location falls back to flat attributes.
  auto l = location_of(Json::parse(R"({"location": "here", "lat": 1, "lon": 2})"));
  ASSERT_TRUE(l);
  EXPECT_DOUBLE_EQ(l->lon, 2);
}

TEST(Device, TransportNames) {
  EXPECT_EQ(transport_name(Transport::kLocal), "local");
  EXPECT_EQ(transport_name(Transport::kUdp), "udp");
  EXPECT_EQ(transport_name(Transport::kMqtt), "mqtt");
}

}  // namespace
}  // namespace outpost::core
