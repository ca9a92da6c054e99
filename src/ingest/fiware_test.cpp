#include <fmt/format.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "ingest/ingest.hpp"
#include "ingest/ingest_test_util.hpp"

namespace outpost::ingest {
namespace {

using core::Json;
using std::chrono::seconds;

constexpr std::string_view kFrom = "192.0.2.7:5683";
const core::TimePoint kReceived = core::from_micros(1'700'000'000'000'000);

struct Outcome {
  Parsed parsed;
  std::vector<core::DeviceReport> reports;
};

Outcome parse_with(Parser& p, std::string_view datagram) {
  Outcome o;
  o.parsed = p.parse(datagram, kFrom, kReceived, o.reports);
  return o;
}

Outcome parse(std::string_view datagram, const config::UdpConfig& cfg = {}) {
  Parser p(cfg);
  return parse_with(p, datagram);
}

std::string packet(const Json& j) { return j.dump(); }

core::TimePoint utc(const char* iso) { return *core::parse_iso8601(iso); }

TEST(Fiware, SeedPacketIsParsedExactly) {
  const std::string text = test::seed_packet();
  const Json src = Json::parse(text)["d23c058698435eff"]["d23c058698435eff"];
  auto o = parse(text);
  ASSERT_EQ(o.parsed.kind, Parsed::Kind::kReports) << o.parsed.detail;
  ASSERT_EQ(o.parsed.reports, 1u);
  ASSERT_EQ(o.reports.size(), 1u);
  const core::DeviceReport& r = o.reports[0];
  EXPECT_EQ(r.id, "d23c058698435eff");
  EXPECT_EQ(r.transport, core::Transport::kUdp);
  EXPECT_EQ(r.address, kFrom);
  EXPECT_EQ(r.received, kReceived);
  ASSERT_TRUE(r.attributes);
  EXPECT_EQ(*r.attributes, Json({{"name", "Android device"}}));

  ASSERT_EQ(r.sensors.size(), 4u);
  const char* ids[] = {"orientation", "gyroscope", "magneticfield", "linearacceleration"};
  for (size_t i = 0; i < 4; ++i) {
    const core::Sensor& s = r.sensors[i];
    const Json& js = src["sensors"][i];
    EXPECT_EQ(s.id, ids[i]);
    EXPECT_EQ(*s.attributes, js["attributes"]);
    EXPECT_EQ(*s.configuration, js["configuration"]);
    ASSERT_TRUE(s.value);
    EXPECT_EQ(s.value->unit, js["value"]["unit"]);
    EXPECT_EQ(s.value->primitive, "3DPoint");
    EXPECT_EQ(s.value->ts, utc("2014-02-19T09:40:06Z"));
    EXPECT_EQ(*s.value->values, js["value"]["values"]);
  }
  EXPECT_EQ(r.sensors[3].value->unit, "m/s2");
  EXPECT_DOUBLE_EQ((*r.sensors[3].value->values)[2].get<double>(), -0.5983058214187622);
  EXPECT_EQ((*r.sensors[0].attributes)["power"], 0.5);

  ASSERT_TRUE(r.actuators);
  ASSERT_EQ(r.actuators->size(), 1u);
  const core::Actuator& a = (*r.actuators)[0];
  const Json& ja = src["actuators"][0];
  EXPECT_EQ(*a.actions, ja["actions"]);
  EXPECT_EQ(*a.callbacks, ja["callbacks"]);
  EXPECT_EQ(*a.configuration, ja["configuration"]);
  EXPECT_EQ(*a.attributes, Json({{"dimensions", "[480,800]"}}));
  EXPECT_EQ((*a.actions)[0]["parameter"], "viewstate");
}

TEST(Fiware, DataformatVersionAndApiKeyNeverReachTheReport) {
  Json j = Json::parse(test::seed_packet());
  j["api_key"] = "secret";
  auto o = parse(packet(j));
  ASSERT_EQ(o.parsed.kind, Parsed::Kind::kReports) << o.parsed.detail;
  ASSERT_EQ(o.reports.size(), 1u);  // neither became a device
  std::string all = (*o.reports[0].attributes)->dump();
  for (const auto& s : o.reports[0].sensors) all += s.attributes->dump() + s.value->values->dump();
  EXPECT_EQ(all.find("dataformat_version"), std::string::npos);
  EXPECT_EQ(all.find("secret"), std::string::npos);
}

TEST(Fiware, FlatFormEqualsNestedForm) {
  Json nested = Json::parse(test::seed_packet());
  Json flat = {{"dataformat_version", "1.0"},
               {"d23c058698435eff", nested["d23c058698435eff"]["d23c058698435eff"]}};
  auto a = parse(packet(nested));
  auto b = parse(packet(flat));
  ASSERT_EQ(a.reports.size(), 1u);
  ASSERT_EQ(b.reports.size(), 1u);
  const auto &x = a.reports[0], &y = b.reports[0];
  EXPECT_EQ(x.id, y.id);
  EXPECT_EQ(x.attributes, y.attributes);
  ASSERT_EQ(x.sensors.size(), y.sensors.size());
  for (size_t i = 0; i < x.sensors.size(); ++i) {
    EXPECT_EQ(x.sensors[i].id, y.sensors[i].id);
    EXPECT_EQ(x.sensors[i].attributes, y.sensors[i].attributes);
    EXPECT_EQ(x.sensors[i].value->values, y.sensors[i].value->values);
  }
  EXPECT_EQ((*x.actuators)[0].actions, (*y.actuators)[0].actions);
}

TEST(Fiware, NestedFormOnlyWhenTheSoleMemberIsTheDeviceIdAndAnObject) {
  // Two members: flat; the member named as the device is just an unknown member.
  auto o = parse(R"({"dataformat_version": "1.0",
                     "d": {"d": {"attributes": {"name": "inner"}}, "attributes": {"name": "outer"}}})");
  ASSERT_EQ(o.reports.size(), 1u) << o.parsed.detail;
  EXPECT_EQ((**o.reports[0].attributes)["name"], "outer");
  // One member of another name: flat (a heartbeat with an unknown member).
  o = parse(R"({"dataformat_version": "1.0", "d": {"e": {"attributes": {"name": "inner"}}}})");
  ASSERT_EQ(o.reports.size(), 1u);
  EXPECT_FALSE(o.reports[0].attributes);
  // Only one level is unwrapped.
  o = parse(R"({"dataformat_version": "1.0", "d": {"d": {"d": {"attributes": {}}}}})");
  ASSERT_EQ(o.reports.size(), 1u);
  EXPECT_FALSE(o.reports[0].attributes);
}

TEST(Fiware, AbsentPartsStayAbsent) {
  auto o = parse(R"({"dataformat_version": "1.0", "beacon": {}})");
  ASSERT_EQ(o.reports.size(), 1u);
  const auto& r = o.reports[0];
  EXPECT_EQ(r.id, "beacon");
  EXPECT_FALSE(r.attributes);
  EXPECT_TRUE(r.sensors.empty());
  EXPECT_FALSE(r.actuators);  // "no actuators stated", unlike an empty list
  o = parse(R"({"dataformat_version": "1.0", "beacon": {"actuators": []}})");
  ASSERT_TRUE(o.reports[0].actuators);
  EXPECT_TRUE(o.reports[0].actuators->empty());
}

TEST(Fiware, SeveralDevicesInOnePacketInOrder) {
  auto o = parse(R"({"dataformat_version": "1.0",
                     "zeta": {"zeta": {"attributes": {"name": "Z"}}},
                     "alpha": {"sensors": [{"value": {"values": 1}}]}})");
  ASSERT_EQ(o.parsed.kind, Parsed::Kind::kReports) << o.parsed.detail;
  ASSERT_EQ(o.parsed.reports, 2u);
  ASSERT_EQ(o.reports.size(), 2u);
  EXPECT_EQ(o.reports[0].id, "zeta");
  EXPECT_EQ(o.reports[1].id, "alpha");
  EXPECT_EQ(o.reports[1].sensors.size(), 1u);
}

TEST(Fiware, ReportsAreAppendedAndADropLeavesTheVectorAsItWas) {
  Parser p(config::UdpConfig{});
  std::vector<core::DeviceReport> out(1);
  out[0].id = "earlier";
  auto r = p.parse(R"({"dataformat_version": "1.0", "a": {}})", kFrom, kReceived, out);
  EXPECT_EQ(r.reports, 1u);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].id, "a");
  // The first device is fine, the second is not: nothing of the packet is kept.
  r = p.parse(R"({"dataformat_version": "1.0", "b": {}, "c": {"sensors": [{}]}})", kFrom, kReceived,
              out);
  EXPECT_TRUE(r.dropped());
  EXPECT_EQ(r.reason, DropReason::kMissingFields);
  EXPECT_NE(r.detail.find("device 'c': sensor 0"), std::string::npos) << r.detail;
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].id, "earlier");
  EXPECT_EQ(out[1].id, "a");
}

TEST(Fiware, SensorIdsFromTypeThenNameThenIndex) {
  auto o = parse(R"({"dataformat_version": "1.0", "d": {"sensors": [
      {"value": {"values": 1}, "attributes": {"type": "light", "name": "GP2A"}},
      {"value": {"values": 1}, "attributes": {"name": "BMP180"}},
      {"value": {"values": 1}, "attributes": {"vendor": "Bosch"}},
      {"value": {"values": 1}},
      {"value": {"values": 1}, "attributes": {"type": "", "name": "has/slash"}},
      {"value": {"values": 1}, "attributes": {"type": 7, "name": "fallback"}},
      {"value": {"values": 1}, "attributes": {"type": " padded", "name": "MPL Gyro"}},
      {"value": {"values": 1}, "attributes": {"type": "tab\there"}}]}})");
  ASSERT_EQ(o.reports.size(), 1u) << o.parsed.detail;
  std::vector<std::string> ids;
  for (const auto& s : o.reports[0].sensors) ids.push_back(s.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"light", "BMP180", "sensor2", "sensor3", "sensor4",
                                           "fallback", "MPL Gyro", "sensor7"}));
}

TEST(Fiware, DuplicateSensorIdsGetASuffix) {
  auto o = parse(R"({"dataformat_version": "1.0", "d": {"sensors": [
      {"value": {"values": 1}, "attributes": {"name": "MPL magnetic field"}},
      {"value": {"values": 2}, "attributes": {"name": "MPL magnetic field"}},
      {"value": {"values": 3}, "attributes": {"type": "x#2"}},
      {"value": {"values": 4}, "attributes": {"type": "x"}},
      {"value": {"values": 5}, "attributes": {"type": "x"}},
      {"value": {"values": 6}, "attributes": {"type": "MPL magnetic field"}}]}})");
  ASSERT_EQ(o.reports.size(), 1u) << o.parsed.detail;
  std::vector<std::string> ids;
  for (const auto& s : o.reports[0].sensors) ids.push_back(s.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"MPL magnetic field", "MPL magnetic field#2", "x#2", "x",
                                           "x#3", "MPL magnetic field#3"}));
}

TEST(Fiware, DuplicateSensorIdsStayUniqueWithManySensors) {
  Json sensors = Json::array();
  for (int i = 0; i < 40; ++i)
    sensors.push_back(
        {{"value", {{"values", i}}}, {"attributes", {{"type", i % 2 ? "odd" : "even"}}}});
  sensors.push_back({{"value", {{"values", 0}}}, {"attributes", {{"type", "odd#3"}}}});
  auto o = parse(packet({{"dataformat_version", "1.0"}, {"d", {{"sensors", sensors}}}}));
  ASSERT_EQ(o.reports.size(), 1u) << o.parsed.detail;
  const auto& ss = o.reports[0].sensors;
  ASSERT_EQ(ss.size(), 41u);
  std::set<std::string> unique;
  for (const auto& s : ss) unique.insert(s.id);
  EXPECT_EQ(unique.size(), 41u);
  EXPECT_EQ(ss[0].id, "even");
  EXPECT_EQ(ss[1].id, "odd");
  EXPECT_EQ(ss[39].id, "odd#20");
  EXPECT_EQ(ss[40].id, "odd#3#2");  // "odd#3" is the third sensor of type odd
}

TEST(Fiware, Times) {
  auto time_of = [](const char* t) {
    Json j = {{"dataformat_version", "1.0"},
              {"d", {{"sensors", {{{"value", {{"values", 1}, {"time", t}}}}}}}}};
    auto o = parse(packet(j));
    EXPECT_EQ(o.reports.size(), 1u) << o.parsed.detail;
    return o.reports.empty() ? core::TimePoint{} : o.reports[0].sensors[0].value->ts;
  };
  EXPECT_EQ(time_of("2014-02-19 09:40:06"), utc("2014-02-19T09:40:06Z"));
  EXPECT_EQ(time_of("2014-02-19T09:40:06Z"), utc("2014-02-19T09:40:06Z"));
  EXPECT_EQ(time_of("2014-02-19T09:40:06"), utc("2014-02-19T09:40:06Z"));
  EXPECT_EQ(time_of("2014-02-19T11:40:06.250+02:00"), utc("2014-02-19T09:40:06.25Z"));
  EXPECT_EQ(time_of("2014-02-19 09:40:06.5"), utc("2014-02-19T09:40:06.5Z"));
  EXPECT_EQ(time_of("2014-02-19"), utc("2014-02-19T00:00:00Z"));
  EXPECT_EQ(time_of("yesterday"), kReceived);
  EXPECT_EQ(time_of("2014-02-30 09:40:06"), kReceived);
  EXPECT_EQ(time_of(""), kReceived);
  EXPECT_EQ(time_of("2014-02-19 09:40:06 and a very long tail that is not a time"), kReceived);
}

TEST(Fiware, ValuesKeepTheirJsonType) {
  auto o = parse(R"({"dataformat_version": "1.0", "d": {"sensors": [
      {"value": {"values": 58.607452, "primitive": "double", "unit": "lx"}, "attributes": {"type": "a"}},
      {"value": {"values": [1, -2, 3.5]}, "attributes": {"type": "b"}},
      {"value": {"values": "open"}, "attributes": {"type": "c"}},
      {"value": {"values": true}, "attributes": {"type": "d"}},
      {"value": {"values": {"x": 1}}, "attributes": {"type": "e"}},
      {"value": {"values": 18446744073709551615}, "attributes": {"type": "f"}},
      {"value": {"values": -9223372036854775808}, "attributes": {"type": "g"}},
      {"value": {"values": 1.7976931348623157e308}, "attributes": {"type": "h"}},
      {"value": {"values": "NaN"}, "attributes": {"type": "i"}},
      {"value": {"values": 5e-324}, "attributes": {"type": "j"}}]}})");
  ASSERT_EQ(o.reports.size(), 1u) << o.parsed.detail;
  const auto& s = o.reports[0].sensors;
  EXPECT_EQ(*s[0].value->values, 58.607452);
  EXPECT_EQ(s[0].value->unit, "lx");
  EXPECT_EQ(s[0].value->primitive, "double");
  EXPECT_EQ(*s[1].value->values, Json::parse("[1, -2, 3.5]"));
  EXPECT_EQ(*s[2].value->values, "open");
  EXPECT_EQ(*s[3].value->values, true);
  EXPECT_EQ(*s[4].value->values, Json({{"x", 1}}));
  EXPECT_TRUE(s[5].value->values->is_number_unsigned());
  EXPECT_EQ(s[5].value->values->get<uint64_t>(), 18446744073709551615ULL);
  EXPECT_EQ(s[6].value->values->get<int64_t>(), INT64_MIN);
  EXPECT_EQ(s[7].value->values->get<double>(), 1.7976931348623157e308);
  EXPECT_TRUE(s[8].value->values->is_string());  // a string, never a number
  EXPECT_EQ(s[9].value->values->get<double>(), 5e-324);
  EXPECT_EQ(s[0].value->ts, kReceived);
}

TEST(Fiware, ARepeatedPartIsTheValueAlreadyBuilt) {
  Parser p(config::UdpConfig{});
  const std::string text = test::seed_packet();
  auto a = parse_with(p, text), b = parse_with(p, text);
  ASSERT_EQ(a.reports.size(), 1u) << a.parsed.detail;
  ASSERT_EQ(b.reports.size(), 1u) << b.parsed.detail;
  const core::DeviceReport &x = a.reports[0], &y = b.reports[0];
  EXPECT_TRUE(x.attributes->same(*y.attributes));
  ASSERT_EQ(y.sensors.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(x.sensors[i].attributes.same(y.sensors[i].attributes)) << i;
    EXPECT_TRUE(x.sensors[i].configuration.same(y.sensors[i].configuration)) << i;
    EXPECT_TRUE(x.sensors[i].value->values.same(y.sensors[i].value->values)) << i;
  }
  const core::Actuator &xa = (*x.actuators)[0], &ya = (*y.actuators)[0];
  EXPECT_TRUE(xa.actions.same(ya.actions));
  EXPECT_TRUE(xa.callbacks.same(ya.callbacks));
  EXPECT_TRUE(xa.configuration.same(ya.configuration));
  EXPECT_TRUE(xa.attributes.same(ya.attributes));

  // What changes is built anew, with its new content; the rest is still shared.
  Json changed = Json::parse(text);
  Json& body = changed["d23c058698435eff"]["d23c058698435eff"];
  body["attributes"]["name"] = "renamed";
  body["sensors"][1]["value"]["values"][0] = 1.5;
  body["actuators"][0]["callbacks"][0]["return_type"] = "string";
  auto c = parse_with(p, changed.dump());
  ASSERT_EQ(c.reports.size(), 1u) << c.parsed.detail;
  const core::DeviceReport& z = c.reports[0];
  EXPECT_FALSE(z.attributes->same(*y.attributes));
  EXPECT_EQ(**z.attributes, body["attributes"]);
  EXPECT_FALSE(z.sensors[1].value->values.same(y.sensors[1].value->values));
  EXPECT_EQ(*z.sensors[1].value->values, body["sensors"][1]["value"]["values"]);
  EXPECT_TRUE(z.sensors[1].attributes.same(y.sensors[1].attributes));
  EXPECT_TRUE(z.sensors[0].value->values.same(y.sensors[0].value->values));
  const core::Actuator& za = (*z.actuators)[0];
  EXPECT_FALSE(za.callbacks.same(ya.callbacks));
  EXPECT_EQ(*za.callbacks, body["actuators"][0]["callbacks"]);
  EXPECT_TRUE(za.actions.same(ya.actions));
  // And the value before the change is as it was.
  EXPECT_EQ((**y.attributes)["name"], "Android device");
}

// A part is reused only when it would be built exactly the same: 1 is not 1.0, 0.0 is not -0.0,
// and of a repeated key the first counts, as when it is built.
TEST(Fiware, ReuseKeepsEveryJsonTypeAndTheFirstOfRepeatedKeys) {
  Parser p(config::UdpConfig{});
  const char* sequence[][2] = {
      {"1", "1"},
      {"1.0", "1.0"},
      {"1", "1"},
      {"0.0", "0.0"},
      {"-0.0", "-0.0"},
      {"true", "true"},
      {"\"1\"", "\"1\""},
      {"[1]", "[1]"},
      {"[1.0]", "[1.0]"},
      {"18446744073709551615", "18446744073709551615"},
      {"-9223372036854775808", "-9223372036854775808"},
      {"null", "null"},
      {"{\"a\": 1}", "{\"a\":1}"},
      {"{\"a\": 1, \"a\": 2}", "{\"a\":1}"},
      {"{\"a\": 2, \"a\": 1}", "{\"a\":2}"},
      {"{\"a\": 2, \"b\": 1}", "{\"a\":2,\"b\":1}"},
      {"{\"b\": 1, \"a\": 2}", "{\"a\":2,\"b\":1}"},
      {"{\"a\": [1, {\"c\": \"x\"}]}", "{\"a\":[1,{\"c\":\"x\"}]}"},
      {"{\"a\": [1, {\"c\": \"y\"}]}", "{\"a\":[1,{\"c\":\"y\"}]}"},
  };
  for (const auto& [values, rendered] : sequence) {
    SCOPED_TRACE(values);
    auto o = parse_with(p, fmt::format(R"({{"dataformat_version": "1.0", "d": {{"sensors": [
        {{"value": {{"values": {}}}, "attributes": {{"type": "t"}}, "configuration": [{}]}}]}}}})",
                                       values, values));
    ASSERT_EQ(o.reports.size(), 1u) << o.parsed.detail;
    EXPECT_EQ(o.reports[0].sensors[0].value->values->dump(), rendered);
    EXPECT_EQ(o.reports[0].sensors[0].configuration->dump(), fmt::format("[{}]", rendered));
  }
}

// The parts are kept for a bounded number of devices; a device whose parts were let go is
// built again, the same.
TEST(Fiware, ManyDevicesStillParseTheSame) {
  Parser p(config::UdpConfig{});
  auto report = [&](int i) {
    auto o = parse_with(p, fmt::format(R"({{"dataformat_version": "1.0", "d{}": {{"attributes": {{"n": {}}},
        "sensors": [{{"value": {{"values": [{}, 2]}}, "attributes": {{"type": "t"}}}}]}}}})",
                                       i, i, i));
    EXPECT_EQ(o.reports.size(), 1u) << o.parsed.detail;
    return o.reports.empty() ? core::DeviceReport{} : o.reports[0];
  };
  const core::DeviceReport first = report(0);
  for (int i = 1; i <= 5000; ++i) report(i);
  const core::DeviceReport again = report(0);
  EXPECT_EQ(*again.attributes, *first.attributes);
  EXPECT_EQ((**again.attributes)["n"], 0);
  EXPECT_EQ(*again.sensors[0].value->values, Json::parse("[0, 2]"));
  EXPECT_EQ(*report(4999).sensors[0].value->values, Json::parse("[4999, 2]"));
}

TEST(Fiware, DevicesWithManySensorsStillParseTheSame) {
  config::UdpConfig cfg;
  cfg.max_datagram = 1 << 20;  // packets larger than UDP carries: a unit test of the parser only
  Parser p(cfg);
  auto report = [&](int device, int sensors) {
    std::string list;
    for (int i = 0; i < sensors; ++i)
      list += fmt::format(R"({}{{"value": {{"values": {}}}}})", i ? "," : "", device * 10'000 + i);
    auto o = parse_with(
        p, fmt::format(R"({{"dataformat_version": "1.0", "d{}": {{"sensors": [{}]}}}})", device, list));
    EXPECT_EQ(o.reports.size(), 1u) << o.parsed.detail;
    return o.reports.empty() ? core::DeviceReport{} : o.reports[0];
  };
  // 40 devices of 3,000 sensors: more parts than are kept.
  for (int d = 0; d < 40; ++d) {
    auto r = report(d, 3000);
    ASSERT_EQ(r.sensors.size(), 3000u);
    EXPECT_EQ(*r.sensors[0].value->values, d * 10'000);
    EXPECT_EQ(*r.sensors[2999].value->values, d * 10'000 + 2999);
  }
  auto again = report(0, 3000);
  EXPECT_EQ(*again.sensors[1234].value->values, 1234);
}

TEST(Fiware, Unicode) {
  auto o = parse(
      "{\"dataformat_version\": \"1.0\", \"th\xc3\xa9rmo-\xe2\x98\x83\": {\"attributes\": "
      "{\"name\": \"Temp\\u00e9rature \xf0\x9f\x98\x80\", \"note\": \"line\\nbreak \\\"q\\\"\"}}}");
  ASSERT_EQ(o.reports.size(), 1u) << o.parsed.detail;
  EXPECT_EQ(o.reports[0].id, "th\xc3\xa9rmo-\xe2\x98\x83");
  EXPECT_EQ((**o.reports[0].attributes)["name"], "Temp\xc3\xa9rature \xf0\x9f\x98\x80");
  EXPECT_EQ((**o.reports[0].attributes)["note"], "line\nbreak \"q\"");
  // Invalid UTF-8 is refused outright.
  o = parse("{\"dataformat_version\": \"1.0\", \"d\": {\"attributes\": {\"n\": \"\xff\xfe\"}}}");
  EXPECT_EQ(o.parsed.reason, DropReason::kInvalidJson);
  o = parse("{\"dataformat_version\": \"1.0\", \"\xc3\": {}}");
  EXPECT_EQ(o.parsed.reason, DropReason::kInvalidJson);
}

TEST(Fiware, TooDeepIsInvalidJson) {
  std::string deep = R"({"dataformat_version": "1.0", "d": {"attributes": {"x": )";
  for (int i = 0; i < 100; ++i) deep += "[";
  for (int i = 0; i < 100; ++i) deep += "]";
  deep += "}}}";
  auto o = parse(deep);
  EXPECT_TRUE(o.parsed.dropped());
  EXPECT_EQ(o.parsed.reason, DropReason::kInvalidJson);
}

TEST(Fiware, Gzip) {
  const std::string text = test::seed_packet();
  auto plain = parse(text);
  auto zipped = parse(test::gzip(text));
  ASSERT_EQ(zipped.parsed.kind, Parsed::Kind::kReports) << zipped.parsed.detail;
  ASSERT_EQ(zipped.reports.size(), 1u);
  EXPECT_EQ(zipped.reports[0].sensors.size(), plain.reports[0].sensors.size());
  EXPECT_EQ(zipped.reports[0].sensors[2].value->values, plain.reports[0].sensors[2].value->values);
  // An ack may be compressed too.
  auto ack = parse(test::gzip(R"({"ack": "c1", "status": "ok"})"));
  EXPECT_EQ(ack.parsed.kind, Parsed::Kind::kAck);
}

TEST(Fiware, GzipBombIsDroppedCheaply) {
  // 10 MB of zeros inflate from about 10 KB.
  const std::string bomb = test::gzip(std::string(10'000'000, '\0'));
  ASSERT_LT(bomb.size(), 20'000u);
  Parser p(config::UdpConfig{});
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    auto o = parse_with(p, bomb);
    ASSERT_TRUE(o.parsed.dropped());
    EXPECT_EQ(o.parsed.reason, DropReason::kDecompression);
    EXPECT_NE(o.parsed.detail.find("more than 65536 bytes"), std::string::npos) << o.parsed.detail;
  }
  // Inflating 10 MB ten times takes far longer than 64 KiB ten times (generous for sanitizers).
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
  // The parser is still fine afterwards.
  EXPECT_EQ(parse_with(p, test::gzip(test::seed_packet())).reports.size(), 1u);
}

TEST(Fiware, GzipAtTheCapIsAcceptedOneMoreByteIsNot) {
  config::UdpConfig cfg;
  cfg.max_decompressed = 1000;
  std::string body = R"({"dataformat_version": "1.0", "d": {}})";
  std::string exact = body + std::string(1000 - body.size(), ' ');
  EXPECT_EQ(parse(test::gzip(exact), cfg).parsed.kind, Parsed::Kind::kReports);
  auto o = parse(test::gzip(exact + " "), cfg);
  EXPECT_EQ(o.parsed.reason, DropReason::kDecompression);
  // Plain packets are bounded by max_datagram only.
  EXPECT_EQ(parse(exact + "  ", cfg).parsed.kind, Parsed::Kind::kReports);
}

TEST(Fiware, BrokenGzip) {
  const std::string gz = test::gzip(test::seed_packet());
  for (size_t cut : {size_t{2}, size_t{10}, gz.size() / 2, gz.size() - 4, gz.size() - 1}) {
    auto o = parse(gz.substr(0, cut));
    EXPECT_EQ(o.parsed.reason, DropReason::kDecompression) << "cut at " << cut;
    EXPECT_TRUE(o.parsed.dropped());
  }
  std::string bad_crc = gz;
  bad_crc[gz.size() - 6] ^= 0x55;
  EXPECT_EQ(parse(bad_crc).parsed.reason, DropReason::kDecompression);
  std::string corrupt = gz;
  for (size_t i = 12; i < 40; ++i) corrupt[i] = '\xff';
  EXPECT_EQ(parse(corrupt).parsed.reason, DropReason::kDecompression);
  auto trailing = parse(gz + "xx");
  EXPECT_EQ(trailing.parsed.reason, DropReason::kDecompression);
  EXPECT_NE(trailing.parsed.detail.find("2 bytes after"), std::string::npos);
  // Gzip of something that is not JSON inflates fine and is then invalid JSON.
  EXPECT_EQ(parse(test::gzip("not json")).parsed.reason, DropReason::kInvalidJson);
}

TEST(Fiware, TooLarge) {
  config::UdpConfig cfg;
  cfg.max_datagram = 100;
  std::string body = R"({"dataformat_version": "1.0", "d": {}})";
  EXPECT_EQ(parse(body + std::string(100 - body.size(), ' '), cfg).parsed.kind,
            Parsed::Kind::kReports);
  auto o = parse(body + std::string(101 - body.size(), ' '), cfg);
  EXPECT_EQ(o.parsed.reason, DropReason::kTooLarge);
  EXPECT_EQ(o.parsed.detail, "101 bytes, over 100");
}

TEST(Fiware, RequireKey) {
  config::UdpConfig cfg;
  cfg.require_key = true;
  std::vector<std::pair<std::string, std::string>> asked;
  Parser p(cfg, [&](std::string_view id, std::string_view key) {
    asked.emplace_back(id, key);
    return (id == "a" && key == "ka") || (id == "b" && key == "ka");
  });
  auto drop = [&](const std::string& text) {
    auto o = parse_with(p, text);
    EXPECT_TRUE(o.parsed.dropped()) << text;
    EXPECT_TRUE(o.reports.empty());
    return o.parsed.reason;
  };
  EXPECT_EQ(drop(R"({"dataformat_version": "1.0", "a": {}})"), DropReason::kUnauthorized);
  EXPECT_EQ(drop(R"({"dataformat_version": "1.0", "api_key": "", "a": {}})"),
            DropReason::kUnauthorized);
  EXPECT_EQ(drop(R"({"dataformat_version": "1.0", "api_key": 5, "a": {}})"),
            DropReason::kUnauthorized);
  EXPECT_EQ(drop(R"({"dataformat_version": "1.0", "api_key": "kb", "a": {}})"),
            DropReason::kUnauthorized);
  EXPECT_EQ(drop(R"({"dataformat_version": "1.0", "api_key": "ka", "a": {}, "c": {}})"),
            DropReason::kUnauthorized);
  auto o = parse_with(p, R"({"dataformat_version": "1.0", "api_key": "ka", "a": {}, "b": {}})");
  ASSERT_EQ(o.parsed.kind, Parsed::Kind::kReports) << o.parsed.detail;
  EXPECT_EQ(o.reports.size(), 2u);
  EXPECT_EQ(asked.back(), (std::pair<std::string, std::string>{"b", "ka"}));
  // Without a check function, require_key refuses everything.
  Parser closed(cfg);
  EXPECT_EQ(parse_with(closed, R"({"dataformat_version": "1.0", "api_key": "ka", "a": {}})")
                .parsed.reason,
            DropReason::kUnauthorized);
}

TEST(Fiware, Acks) {
  auto o = parse(R"({"ack": "cmd-17", "status": "ok"})");
  ASSERT_EQ(o.parsed.kind, Parsed::Kind::kAck) << o.parsed.detail;
  EXPECT_TRUE(o.reports.empty());
  EXPECT_EQ(o.parsed.ack.command_id, "cmd-17");
  EXPECT_TRUE(o.parsed.ack.ok);
  EXPECT_EQ(o.parsed.ack.detail, "");
  o = parse(R"({"status": "failed", "detail": "servo jammed", "ack": "cmd-18"})");
  ASSERT_EQ(o.parsed.kind, Parsed::Kind::kAck);
  EXPECT_EQ(o.parsed.ack.command_id, "cmd-18");
  EXPECT_FALSE(o.parsed.ack.ok);
  EXPECT_EQ(o.parsed.ack.detail, "servo jammed");
}

TEST(Fiware, DropReasonNamesAreStable) {
  std::set<std::string_view> names;
  for (size_t i = 0; i < kDropReasonCount; ++i)
    names.insert(drop_reason_name(static_cast<DropReason>(i)));
  EXPECT_EQ(names, (std::set<std::string_view>{"too_large", "decompression", "invalid_json",
                                               "wrong_version", "missing_fields", "invalid_id",
                                               "unauthorized"}));
}

// testdata/cases.json: one line per wire-format case, {"name", "packet" (a JSON value sent as
// its text) or "raw" (the text as is), "expect": "reports" | "ack" | a drop reason, "reports"}.
TEST(Fiware, Cases) {
  std::ifstream in(test::testdata("cases.json"));
  ASSERT_TRUE(in) << test::testdata("cases.json");
  Json cases = Json::parse(in);
  ASSERT_GT(cases.size(), 50u);
  Parser p(config::UdpConfig{});  // one parser for all: state must not leak between packets
  for (const auto& c : cases) {
    const std::string name = c.at("name");
    const std::string text =
        c.contains("raw") ? c["raw"].get<std::string>() : c.at("packet").dump();
    const std::string expect = c.at("expect");
    for (bool zipped : {false, true}) {
      auto o = parse_with(p, zipped ? test::gzip(text) : text);
      SCOPED_TRACE(name + (zipped ? " (gzip)" : ""));
      if (expect == "reports") {
        EXPECT_EQ(o.parsed.kind, Parsed::Kind::kReports) << o.parsed.detail;
        EXPECT_EQ(o.reports.size(), c.at("reports").get<size_t>());
        EXPECT_EQ(o.parsed.reports, o.reports.size());
      } else if (expect == "ack") {
        EXPECT_EQ(o.parsed.kind, Parsed::Kind::kAck) << o.parsed.detail;
      } else {
        EXPECT_TRUE(o.parsed.dropped());
        EXPECT_EQ(drop_reason_name(o.parsed.reason), expect) << o.parsed.detail;
        EXPECT_FALSE(o.parsed.detail.empty());
        EXPECT_TRUE(o.reports.empty());
      }
    }
  }
}

}  // namespace
}  // namespace outpost::ingest
