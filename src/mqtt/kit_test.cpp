// parse_kit_message and make_kit_request: the cases in testdata/kit_messages.json, then the
// inputs too large or too odd to write there.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "mqtt/mqtt.hpp"

namespace outpost::mqtt {
namespace {

namespace fs = std::filesystem;
using core::Json;

const core::TimePoint kReceived = *core::parse_iso8601("2026-01-02T03:04:05Z");

// $OUTPOST_SOURCE_DIR/src/mqtt/testdata (set by ctest), else beside this file.
fs::path testdata(std::string_view name) {
  const char* src = std::getenv("OUTPOST_SOURCE_DIR");
  const fs::path dir = src != nullptr ? fs::path(src) / "src/mqtt/testdata"
                                      : fs::path(__FILE__).parent_path() / "testdata";
  return dir / name;
}

// "\u00ff" in the JSON file -> the single byte 0xff, for payloads that are not UTF-8.
std::string latin1(const std::string& utf8) {
  std::string out;
  for (size_t i = 0; i < utf8.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(utf8[i]);
    if ((c & 0xE0) == 0xC0 && i + 1 < utf8.size()) {
      out += static_cast<char>(((c & 0x1F) << 6) | (static_cast<unsigned char>(utf8[++i]) & 0x3F));
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string describe(const KitMessage& m) {
  if (auto* d = std::get_if<Drop>(&m))
    return "drop " + std::string(drop_reason_name(d->reason)) + ": " + d->detail;
  if (std::holds_alternative<KitAck>(m)) return "an ack";
  return "a report";
}

void check_report(const Json& want, const std::string& topic, const KitMessage& got) {
  const auto* r = std::get_if<core::DeviceReport>(&got);
  ASSERT_NE(r, nullptr) << "expected a report, got " << describe(got);
  std::string serial = topic.substr(4, topic.find('/', 4) - 4);
  EXPECT_EQ(r->id, serial);
  EXPECT_EQ(r->address, serial);
  EXPECT_EQ(r->transport, core::Transport::kMqtt);
  EXPECT_EQ(r->received, kReceived);
  EXPECT_FALSE(r->attributes.has_value());
  EXPECT_FALSE(r->actuators.has_value());
  ASSERT_EQ(r->sensors.size(), 1u);
  const core::Sensor& s = r->sensors[0];
  EXPECT_EQ(s.id, want.at("sensor").get<std::string>());
  ASSERT_TRUE(s.value.has_value());
  if (want.contains("attributes")) {
    EXPECT_EQ(*s.attributes, want["attributes"]);
  }
  if (want.contains("unit")) {
    EXPECT_EQ(s.value->unit, want["unit"].get<std::string>());
  }
  if (want.contains("primitive")) {
    EXPECT_EQ(s.value->primitive, want["primitive"].get<std::string>());
  }
  if (want.contains("values")) {
    EXPECT_EQ(*s.value->values, want["values"]) << s.value->values->dump();
    // Doubles stay doubles (20.0, not 20), so every reader sees one type per sensor.
    if (want["values"].is_number()) {
      EXPECT_TRUE(s.value->values->is_number_float());
    }
  }
  if (want.contains("ts")) {
    auto ts = want["ts"].get<std::string>();
    EXPECT_EQ(core::format_iso8601(s.value->ts),
              ts == "received" ? core::format_iso8601(kReceived) : ts);
  }
}

void check_ack(const Json& want, const std::string& topic, const KitMessage& got) {
  const auto* a = std::get_if<KitAck>(&got);
  ASSERT_NE(a, nullptr) << "expected an ack, got " << describe(got);
  EXPECT_EQ(a->serial, want.value("serial", topic.substr(4, topic.find('/', 4) - 4)));
  EXPECT_EQ(a->ack.command_id, want.at("id").get<std::string>());
  EXPECT_EQ(a->ack.ok, want.at("ok").get<bool>());
  if (want.contains("detail")) {
    EXPECT_EQ(a->ack.detail, want["detail"].get<std::string>());
  }
}

TEST(KitMessages, CasesFromTestdata) {
  std::ifstream in(testdata("kit_messages.json"));
  ASSERT_TRUE(in) << "cannot open " << testdata("kit_messages.json");
  Json doc = Json::parse(in);
  std::set<std::string> reasons_seen;
  size_t n = 0;
  for (const Json& c : doc.at("cases")) {
    const std::string name = c.at("name").get<std::string>();
    SCOPED_TRACE(name);
    ++n;
    const std::string topic = c.at("topic").get<std::string>();
    std::string payload =
        c.contains("payload_text") ? c["payload_text"].get<std::string>() : c.at("payload").dump();
    if (c.value("latin1", false)) payload = latin1(payload);
    KitMessage got = parse_kit_message(topic, payload, kReceived);
    if (c.contains("drop")) {
      const auto* d = std::get_if<Drop>(&got);
      ASSERT_NE(d, nullptr) << "expected a drop, got " << describe(got);
      EXPECT_EQ(drop_reason_name(d->reason), c["drop"].get<std::string>()) << d->detail;
      EXPECT_FALSE(d->detail.empty());
      reasons_seen.insert(std::string(drop_reason_name(d->reason)));
    } else if (c.contains("ack")) {
      check_ack(c["ack"], topic, got);
    } else {
      check_report(c.at("report"), topic, got);
    }
  }
  EXPECT_GT(n, 50u);
  // Every reason but too_large (tested below) has a case in the file.
  for (size_t i = 0; i < kDropReasons; ++i) {
    auto r = static_cast<DropReason>(i);
    if (r != DropReason::kTooLarge) {
      EXPECT_TRUE(reasons_seen.count(std::string(drop_reason_name(r)))) << drop_reason_name(r);
    }
  }
}

const char* kRawTopic = "kit/k1/measurement/raw";

TEST(KitMessages, PayloadOverTheLimitIsTooLarge) {
  std::string body = R"({"peripheral": 1, "quantity_type": 2, "value": 1})";
  std::string at_limit = body + std::string(kMaxPayload - body.size(), ' ');
  EXPECT_TRUE(std::holds_alternative<core::DeviceReport>(
      parse_kit_message(kRawTopic, at_limit, kReceived)));
  auto over = parse_kit_message(kRawTopic, at_limit + " ", kReceived);
  ASSERT_TRUE(std::holds_alternative<Drop>(over));
  EXPECT_EQ(std::get<Drop>(over).reason, DropReason::kTooLarge);
}

TEST(KitMessages, DeepNestingIsInvalidJson) {
  auto nested = [](int depth) {
    return R"({"peripheral": 1, "quantity_type": 2, "value": 1, "extra": )" +
           std::string(depth, '[') + std::string(depth, ']') + "}";
  };
  EXPECT_TRUE(std::holds_alternative<core::DeviceReport>(
      parse_kit_message(kRawTopic, nested(20), kReceived)));
  for (int depth : {40, 10000}) {
    auto m = parse_kit_message(kRawTopic, nested(depth), kReceived);
    ASSERT_TRUE(std::holds_alternative<Drop>(m)) << depth;
    EXPECT_EQ(std::get<Drop>(m).reason, DropReason::kInvalidJson);
  }
}

TEST(KitMessages, SerialLengthLimit) {
  std::string payload = R"({"peripheral": 1, "quantity_type": 2, "value": 1})";
  std::string s128(128, 'k'), s129(129, 'k');
  auto ok = parse_kit_message("kit/" + s128 + "/measurement/raw", payload, kReceived);
  ASSERT_TRUE(std::holds_alternative<core::DeviceReport>(ok));
  EXPECT_EQ(std::get<core::DeviceReport>(ok).id, s128);
  auto bad = parse_kit_message("kit/" + s129 + "/measurement/raw", payload, kReceived);
  ASSERT_TRUE(std::holds_alternative<Drop>(bad));
  EXPECT_EQ(std::get<Drop>(bad).reason, DropReason::kBadTopic);
}

TEST(KitMessages, ValidSerial) {
  EXPECT_TRUE(valid_serial("k-abcd-1234"));
  EXPECT_TRUE(valid_serial("~!@$%^&*()_=[]{};:'\",.<>?\\|`"));
  EXPECT_FALSE(valid_serial(""));
  for (std::string_view bad : {"a b", "a/b", "a+", "#", "a\x7f", "\t", "\xc3\xa9"}) {
    EXPECT_FALSE(valid_serial(bad)) << bad;
  }
  EXPECT_FALSE(valid_serial(std::string_view("a\0b", 3)));
}

TEST(KitMessages, AckDetailIsCutOnACodePoint) {
  std::string detail;
  for (int i = 0; i < 600; ++i) detail += "\xc3\xa9";  // 1200 bytes of 'é'
  Json payload = {{"id", "c"}, {"status", "error"}, {"detail", detail}};
  auto m = parse_kit_message("kit/k1/kit-rpc/response", payload.dump(), kReceived);
  ASSERT_TRUE(std::holds_alternative<KitAck>(m));
  const std::string& got = std::get<KitAck>(m).ack.detail;
  EXPECT_EQ(got.size(), 1024u);
  EXPECT_NO_THROW((void)Json(got).dump());  // still valid UTF-8
}

TEST(KitMessages, DropReasonNames) {
  std::set<std::string> names;
  for (size_t i = 0; i < kDropReasons; ++i)
    names.insert(std::string(drop_reason_name(static_cast<DropReason>(i))));
  EXPECT_EQ(names, (std::set<std::string>{"too_large", "bad_topic", "invalid_json",
                                          "missing_fields", "bad_type", "bad_value", "bad_time"}));
}

TEST(KitRequest, TopicAndPayload) {
  auto r = make_kit_request("k-1", "cmd-7", "pump", "on", Json(true));
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ(r->topic, "kit/k-1/kit-rpc/request");
  EXPECT_EQ(Json::parse(r->payload),
            (Json{{"id", "cmd-7"}, {"target", "pump"}, {"parameter", "on"}, {"value", true}}));

  auto v = make_kit_request("k-1", "c", "led", "rgb", Json::array({1, 2, 3}));
  ASSERT_TRUE(v);
  EXPECT_EQ(Json::parse(v->payload)["value"], Json::array({1, 2, 3}));
}

TEST(KitRequest, Rejects) {
  EXPECT_EQ(make_kit_request("", "c", "t", "p", 1).status().code(), core::Code::kInvalid);
  EXPECT_EQ(make_kit_request("k/1", "c", "t", "p", 1).status().code(), core::Code::kInvalid);
  EXPECT_EQ(make_kit_request("k+", "c", "t", "p", 1).status().code(), core::Code::kInvalid);
  EXPECT_EQ(make_kit_request("k1", "", "t", "p", 1).status().code(), core::Code::kInvalid);
}

TEST(KitRequest, BytesThatAreNotUtf8AreReplaced) {
  auto r = make_kit_request("k1", "c", "t\xff", "p", 1);
  ASSERT_TRUE(r);
  EXPECT_EQ(Json::parse(r->payload)["target"], "t\xef\xbf\xbd");
}

}  // namespace
}  // namespace outpost::mqtt
