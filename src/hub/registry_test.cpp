#include <fmt/format.h>
#include <gtest/gtest.h>

#include <random>

#include "hub/hub.hpp"

namespace outpost::hub {
namespace {

using core::Json;

core::DeviceReport report(const std::string& id, std::optional<core::Location> at = std::nullopt,
                          core::TimePoint when = core::now()) {
  core::DeviceReport r;
  r.id = id;
  r.transport = core::Transport::kUdp;
  r.address = "127.0.0.1:5000";
  r.received = when;
  Json attrs = {{"name", "dev " + id}};
  if (at) attrs["location"] = {{"lat", at->lat}, {"lon", at->lon}};
  r.attributes = attrs;
  core::Sensor s;
  s.id = "light";
  s.attributes = Json{{"type", "light"}};
  s.value = core::SensorValue{"lx", "double", when, Json(58.6)};
  r.sensors.push_back(s);
  return r;
}

TEST(Distance, KnownGreatCircleDistances) {
  // Oulu to Helsinki, about 512 km.
  EXPECT_NEAR(distance_m({65.0121, 25.4651}, {60.1699, 24.9384}) / 1000, 539.3, 1.5);
  EXPECT_DOUBLE_EQ(distance_m({10, 20}, {10, 20}), 0);
  // Across the antimeridian: 0.2 degrees of longitude at the equator.
  EXPECT_NEAR(distance_m({0, 179.9}, {0, -179.9}), 22'239, 5);
  EXPECT_NEAR(distance_m({90, 0}, {-90, 0}), kMaxRadiusM, 10);
}

TEST(Registry, MergeCreatesThenUpdatesAndKeepsOtherSensors) {
  Registry reg(10);
  auto m = reg.merge(report("a", core::Location{65.4, 25.4}));
  EXPECT_TRUE(m.created);
  EXPECT_TRUE(m.came_online);
  auto r2 = report("a");
  r2.attributes.reset();  // attributes not restated: kept
  r2.sensors[0].id = "pressure";
  m = reg.merge(r2);
  EXPECT_FALSE(m.created);
  EXPECT_FALSE(m.came_online);
  auto d = reg.get("a");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->name, "dev a");
  ASSERT_TRUE(d->location);
  EXPECT_DOUBLE_EQ(d->location->lat, 65.4);
  ASSERT_EQ(d->sensors.size(), 2u);
  EXPECT_EQ(d->sensors[0].id, "light");
  EXPECT_EQ(d->sensors[1].id, "pressure");
  EXPECT_EQ(reg.size(), 1u);
  EXPECT_FALSE(reg.get("b"));
}

TEST(Registry, ALatePacketDoesNotReplaceANewerValue) {
  Registry reg(10);
  auto t = core::now();
  auto newer = report("a", std::nullopt, t);
  newer.sensors[0].value->values = Json(2.0);
  reg.merge(newer);
  auto older = report("a", std::nullopt, t - std::chrono::seconds(5));
  older.sensors[0].value->values = Json(1.0);
  reg.merge(older);
  EXPECT_EQ(*reg.get("a")->sensors[0].value->values, 2.0);
  EXPECT_EQ(reg.get("a")->last_seen, t);
}

TEST(Registry, RefusesNewDevicesOverTheCapButUpdatesKnownOnes) {
  Registry reg(2);
  EXPECT_FALSE(reg.merge(report("a")).refused);
  EXPECT_FALSE(reg.merge(report("b")).refused);
  EXPECT_TRUE(reg.merge(report("c")).refused);
  EXPECT_FALSE(reg.merge(report("a")).refused);
  EXPECT_EQ(reg.size(), 2u);
  EXPECT_FALSE(reg.get("c"));
}

TEST(Registry, OfflineAfterSilenceAndOnlineAgain) {
  Registry reg(10);
  auto t0 = core::now();
  reg.merge(report("a", std::nullopt, t0));
  reg.merge(report("b", std::nullopt, t0 + std::chrono::seconds(10)));
  EXPECT_EQ(reg.online(), 2u);
  auto off = reg.mark_offline(t0 + std::chrono::seconds(5));
  ASSERT_EQ(off, std::vector<std::string>{"a"});
  EXPECT_FALSE(reg.get("a")->online);
  EXPECT_EQ(reg.online(), 1u);
  EXPECT_TRUE(reg.mark_offline(t0 + std::chrono::seconds(5)).empty());
  EXPECT_TRUE(reg.merge(report("a")).came_online);
  EXPECT_EQ(reg.online(), 2u);
}

TEST(Registry, FiltersPagingAndTotal) {
  Registry reg(100);
  for (int i = 0; i < 10; ++i) {
    auto r = report(fmt::format("d{}", i));
    if (i % 2) r.transport = core::Transport::kMqtt;
    reg.merge(r);
  }
  auto page = reg.find({.transport = core::Transport::kMqtt, .offset = 1, .limit = 2});
  EXPECT_EQ(page.total, 5u);
  ASSERT_EQ(page.devices.size(), 2u);
  EXPECT_EQ(page.devices[0].id, "d3");
  EXPECT_EQ(page.devices[1].id, "d5");
  EXPECT_EQ(reg.find({.sensor_type = "light"}).total, 10u);
  EXPECT_EQ(reg.find({.sensor_type = "humidity"}).total, 0u);
  EXPECT_EQ(reg.find({.online = false}).total, 0u);
}

TEST(Registry, NearestFirstWithinRadiusAndMovedDevices) {
  Registry reg(100);
  reg.merge(report("center", core::Location{65.4, 25.4}));
  reg.merge(report("1km", core::Location{65.409, 25.4}));    // ~1.0 km north
  reg.merge(report("10km", core::Location{65.49, 25.4}));    // ~10 km north
  reg.merge(report("nowhere"));                              // no location: never in spatial results
  auto page = reg.find({.near = Circle{{65.4, 25.4}, 1500}});
  ASSERT_EQ(page.total, 2u);
  EXPECT_EQ(page.devices[0].id, "center");
  EXPECT_EQ(page.devices[1].id, "1km");
  // The 10 km device moves next to the centre.
  reg.merge(report("10km", core::Location{65.4001, 25.4}));
  page = reg.find({.near = Circle{{65.4, 25.4}, 1500}});
  ASSERT_EQ(page.total, 3u);
  EXPECT_EQ(page.devices[1].id, "10km");
  EXPECT_EQ(reg.find({.near = Circle{{65.49, 25.4}, 1500}}).total, 0u);
}

TEST(Registry, BoxesAndCirclesAcrossTheAntimeridianAndNearAPole) {
  Registry reg(100);
  reg.merge(report("west", core::Location{0, 179.99}));
  reg.merge(report("east", core::Location{0, -179.99}));
  reg.merge(report("pole", core::Location{89.99, 10}));
  reg.merge(report("pole2", core::Location{89.99, -170}));
  EXPECT_EQ(reg.find({.near = Circle{{0, 180}, 5000}}).total, 2u);
  EXPECT_EQ(reg.find({.bbox = Box{-1, 1, 179, -179}}).total, 2u);
  EXPECT_EQ(reg.find({.bbox = Box{-1, 1, -179, 179}}).total, 0u);
  EXPECT_EQ(reg.find({.near = Circle{{90, 0}, 5000}}).total, 2u);
}

// The R-tree answers exactly what a scan of every device would.
TEST(Registry, SpatialIndexAgreesWithBruteForceOnRandomDevices) {
  Registry reg(20'000);
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> lat(-89, 89), lon(-180, 180);
  std::vector<core::Location> where;
  for (int i = 0; i < 5000; ++i) {
    core::Location l{lat(rng), lon(rng)};
    where.push_back(l);
    reg.merge(report(fmt::format("d{:05}", i), l));
  }
  for (int q = 0; q < 50; ++q) {
    Circle c{{lat(rng), lon(rng)}, std::uniform_real_distribution<double>(1e4, 3e6)(rng)};
    size_t expected = 0;
    for (const auto& l : where) expected += distance_m(c.center, l) <= c.radius_m;
    auto page = reg.find({.near = c, .limit = 100'000});
    EXPECT_EQ(page.total, expected) << c.center.lat << "," << c.center.lon << " r=" << c.radius_m;
    for (size_t i = 1; i < page.devices.size(); ++i) {
      EXPECT_LE(distance_m(c.center, *page.devices[i - 1].location), distance_m(c.center, *page.devices[i].location));
    }
  }
}

TEST(Registry, DirtyDevicesAreTakenOnce) {
  Registry reg(10);
  reg.merge(report("a"));
  reg.merge(report("a"));
  reg.merge(report("b"));
  auto dirty = reg.take_dirty();
  EXPECT_EQ(dirty.size(), 2u);
  EXPECT_TRUE(reg.take_dirty().empty());
}

TEST(Registry, DocumentRoundTrip) {
  Registry reg(10);
  auto r = report("a", core::Location{1, 2});
  core::Actuator act;
  act.actions = Json::parse(R"([{"parameter": "viewstate", "value": "[m1]"}])");
  r.actuators = std::vector<core::Actuator>{act};
  reg.merge(r);
  auto d = *reg.get("a");
  auto back = from_doc("a", to_doc(d));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(to_doc(*back), to_doc(d));
  EXPECT_FALSE(back->online);  // loaded devices wait for their next report
  EXPECT_EQ(back->location->lon, 2);
  EXPECT_FALSE(from_doc("a", Json::parse(R"({"sensors": 3})")).is_ok());
}

}  // namespace
}  // namespace outpost::hub
