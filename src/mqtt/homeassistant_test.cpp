// Home Assistant: the pure payload builders checked against what Home Assistant's MQTT discovery
// requires, and the publisher against a real mosquitto (TestBroker) with Home Assistant played
// by a Peer.

#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "mqtt/mqtt.hpp"
#include "mqtt/test_broker.hpp"
#include "mqtt/test_util.hpp"

namespace outpost::mqtt {
namespace {

using namespace std::chrono_literals;
using core::Json;
using testing::eventually;
using testing::Inbox;
using testing::metric;
using testing::Peer;
using testing::Received;
using testing::TestBroker;

// What Home Assistant's MQTT discovery accepts (homeassistant/components/mqtt: the platform
// schemas of sensor, binary_sensor, switch and number, the shared entity and availability
// schemas, and the device/origin blocks), for the keys Outpost uses and the ones it might.
// Returns the problems found; empty when Home Assistant would accept the entity and tie it to
// its device.
std::vector<std::string> ha_problems(const std::string& prefix, const std::string& topic,
                                     const Json& p) {
  std::vector<std::string> out;
  std::smatch m;
  static const std::regex kTopic(
      R"(^(.+)/(sensor|binary_sensor|switch|number)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)/config$)");
  if (!std::regex_match(topic, m, kTopic) || m[1] != prefix)
    return {"discovery topic '" + topic + "' is not <prefix>/<component>/<node>/<object>/config"};
  const std::string component = m[3].matched ? m[2].str() : "";
  if (!p.is_object()) return {"payload is not an object"};

  std::set<std::string> allowed = {"name",
                                   "unique_id",
                                   "availability_topic",
                                   "payload_available",
                                   "payload_not_available",
                                   "availability",
                                   "availability_mode",
                                   "qos",
                                   "device",
                                   "origin",
                                   "state_topic",
                                   "device_class",
                                   "icon",
                                   "enabled_by_default",
                                   "entity_category",
                                   "json_attributes_topic",
                                   "value_template",
                                   "encoding",
                                   "object_id",
                                   "default_entity_id"};
  std::set<std::string> required = {"unique_id", "device"};
  std::set<std::string> device_classes;
  if (component == "sensor") {
    allowed.insert({"unit_of_measurement", "state_class", "expire_after", "force_update",
                    "suggested_display_precision", "options", "last_reset_value_template"});
    required.insert("state_topic");
    device_classes = {"temperature", "humidity",        "pressure", "voltage",
                      "current",     "power",           "energy",   "illuminance",
                      "battery",     "signal_strength", "duration", "data_size",
                      "frequency",   "carbon_dioxide",  "pm25",     "distance"};
  } else if (component == "binary_sensor") {
    allowed.insert({"payload_on", "payload_off", "expire_after", "force_update", "off_delay"});
    required.insert("state_topic");
    device_classes = {"motion",  "occupancy", "opening",      "door",     "window",
                      "problem", "power",     "connectivity", "moisture", "running",
                      "safety",  "light",     "sound"};
  } else if (component == "switch") {
    allowed.insert({"command_topic", "payload_on", "payload_off", "state_on", "state_off",
                    "optimistic", "retain", "command_template"});
    required.insert("command_topic");
    device_classes = {"outlet", "switch"};
  } else if (component == "number") {
    allowed.insert({"command_topic", "min", "max", "step", "mode", "optimistic", "retain",
                    "unit_of_measurement", "command_template", "payload_reset"});
    required.insert("command_topic");
    device_classes = {"temperature", "humidity", "distance", "voltage", "power"};
  }
  for (const auto& [k, v] : p.items()) {
    if (!allowed.count(k)) out.push_back("extra key not allowed: " + k);
  }
  for (const auto& k : required) {
    if (!p.contains(k)) out.push_back("required key missing: " + k);
  }
  auto is_string = [&](const char* k) {
    return p.contains(k) && p[k].is_string() && !p[k].get<std::string>().empty();
  };
  auto topic_ok = [&](const char* k) {
    if (!p.contains(k)) return;
    if (!is_string(k)) return out.push_back(std::string(k) + " is not a string");
    std::string t = p[k];
    if (t.find_first_of("+#") != std::string::npos)
      out.push_back(std::string(k) + " has a wildcard");
  };
  for (const char* k : {"state_topic", "command_topic", "availability_topic"}) topic_ok(k);
  for (const char* k :
       {"name", "unique_id", "payload_available", "payload_not_available", "payload_on",
        "payload_off", "state_on", "state_off", "unit_of_measurement"}) {
    if (p.contains(k) && !is_string(k))
      out.push_back(std::string(k) + " is not a non-empty string");
  }
  if (p.contains("availability_topic") &&
      (!p.contains("payload_available") || !p.contains("payload_not_available")))
    out.push_back("availability_topic without its payloads");
  if (p.contains("qos") && (!p["qos"].is_number_integer() || p["qos"] < 0 || p["qos"] > 2))
    out.push_back("qos is not 0, 1 or 2");
  if (p.contains("device_class") &&
      (!p["device_class"].is_string() || !device_classes.count(p["device_class"])))
    out.push_back("device_class is not one of the component's");
  if (p.value("device_class", "") == "temperature") {
    std::string u = p.value("unit_of_measurement", "");
    if (u != "°C" && u != "°F" && u != "K") out.push_back("a temperature needs °C, °F or K");
  }
  if (p.contains("state_class")) {
    static const std::set<std::string> kStateClasses = {"measurement", "total", "total_increasing",
                                                        "measurement_angle"};
    if (!p["state_class"].is_string() || !kStateClasses.count(p["state_class"]))
      out.push_back("state_class is not one of measurement, total, total_increasing");
  }
  for (const char* k : {"optimistic", "retain"}) {
    if (p.contains(k) && !p[k].is_boolean()) out.push_back(std::string(k) + " is not a boolean");
  }
  if (component == "number") {
    if (!p.value("min", Json()).is_number() || !p.value("max", Json()).is_number() ||
        !(p["min"].get<double>() < p["max"].get<double>()))
      out.push_back("number needs min < max");
    if (p.contains("step") && (!p["step"].is_number() || p["step"].get<double>() < 0.001))
      out.push_back("step must be >= 0.001");
    if (p.contains("mode") && p["mode"] != "auto" && p["mode"] != "box" && p["mode"] != "slider")
      out.push_back("mode is not auto, box or slider");
  }
  if (p.contains("device")) {
    const Json& d = p["device"];
    static const std::set<std::string> kDeviceKeys = {
        "identifiers", "connections",       "manufacturer",  "model",
        "name",        "sw_version",        "hw_version",    "suggested_area",
        "via_device",  "configuration_url", "serial_number", "model_id"};
    if (!d.is_object()) {
      out.push_back("device is not an object");
    } else {
      for (const auto& [k, v] : d.items()) {
        if (!kDeviceKeys.count(k))
          out.push_back("extra key in device: " + k);
        else if (k != "identifiers" && k != "connections" && !v.is_string())
          out.push_back("device." + k + " is not a string");
      }
      if (!d.contains("identifiers") || !d["identifiers"].is_array() || d["identifiers"].empty())
        out.push_back("device needs identifiers");
      for (const char* k : {"name", "manufacturer", "model", "sw_version"}) {
        if (!d.contains(k)) out.push_back(std::string("device.") + k + " missing");
      }
    }
  }
  if (p.contains("origin") && (!p["origin"].is_object() || !p["origin"].contains("name")))
    out.push_back("origin needs a name");
  return out;
}

HaNode node() {
  return HaNode{.node_id = "node1",
                .discovery_prefix = "homeassistant",
                .base_topic = "outpost/node1",
                .device_name = "node1.local",
                .model = "Raspberry Pi 3 Model B (simulated hardware)",
                .sw_version = "0.1.0"};
}

// The board as app/ describes it (a relay as another part of the issue adds one).
std::vector<core::Actuator> board_actuators() {
  core::Actuator led, servo, relay, nameless, unknown;
  led.actions =
      Json::array({{{"parameter", "state"}, {"primitive", "string"}, {"value", "on|off|toggle"}}});
  led.attributes = Json{{"name", "led"}, {"type", "led"}};
  servo.actions = Json::array({{{"parameter", "angle"}, {"primitive", "double"}, {"unit", "deg"}}});
  servo.attributes = Json{{"name", "servo"}, {"type", "servo"}, {"min", -90}, {"max", 90}};
  relay.actions = Json::array({{{"parameter", "state"}, {"primitive", "string"}}});
  relay.attributes = Json{{"name", "ventilation_relay"}, {"type", "relay"}};
  nameless.actions = led.actions;
  unknown.actions = Json::array({{{"parameter", "colour"}, {"primitive", "string"}}});
  unknown.attributes = Json{{"name", "lamp"}};
  return {led, servo, relay, nameless, unknown};
}

std::vector<HaEntity> entities() {
  std::vector<HaEntity> e = {
      {.component = HaComponent::kSensor,
       .object_id = "cpu_temp_c",
       .name = "CPU temperature",
       .state_sensor = "cpu_temp_c",
       .device_class = "temperature",
       .unit = "°C",
       .state_class = "measurement"},
      {.component = HaComponent::kBinarySensor,
       .object_id = "button_pressed",
       .name = "Button",
       .state_sensor = "button_pressed"},
  };
  for (auto& a : ha_actuator_entities(board_actuators())) e.push_back(std::move(a));
  return e;
}

TEST(HomeAssistantPure, ActuatorsBecomeSwitchesAndNumbersFromTheirDescription) {
  auto e = ha_actuator_entities(board_actuators());
  ASSERT_EQ(e.size(), 3u);  // the nameless one and the one with no known action are left out
  EXPECT_EQ(e[0].component, HaComponent::kSwitch);
  EXPECT_EQ(e[0].object_id, "led");
  EXPECT_EQ(e[0].name, "LED");
  EXPECT_EQ(e[0].state_sensor, "led_state");
  EXPECT_EQ(e[0].target, "led");
  EXPECT_EQ(e[0].parameter, "state");
  EXPECT_EQ(e[1].component, HaComponent::kNumber);
  EXPECT_EQ(e[1].object_id, "servo");
  EXPECT_EQ(e[1].name, "Servo");
  EXPECT_EQ(e[1].parameter, "angle");
  EXPECT_EQ(e[1].min, -90);
  EXPECT_EQ(e[1].max, 90);
  EXPECT_EQ(e[1].unit, "°");
  EXPECT_EQ(e[1].state_sensor, "");
  EXPECT_EQ(e[2].component, HaComponent::kSwitch);
  EXPECT_EQ(e[2].object_id, "ventilation_relay");
  EXPECT_EQ(e[2].name, "Ventilation relay");
  EXPECT_EQ(e[2].state_sensor, "ventilation_relay_state");

  // A label wins; a number without a range, or with an empty one, is left out.
  core::Actuator fan;
  fan.actions = Json::array({{{"parameter", "speed"}, {"primitive", "int"}}});
  fan.attributes = Json{{"name", "fan"}, {"label", "Fan speed"}, {"min", 0}, {"max", 3}};
  core::Actuator no_range = fan;
  no_range.attributes = Json{{"name", "fan2"}};
  core::Actuator empty_range = fan;
  empty_range.attributes = Json{{"name", "fan3"}, {"min", 3}, {"max", 3}};
  core::Actuator bad_name = fan;
  bad_name.attributes = Json{{"name", "fan 4"}, {"min", 0}, {"max", 3}};
  auto f = ha_actuator_entities({fan, no_range, empty_range, bad_name});
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].name, "Fan speed");
  EXPECT_EQ(f[0].parameter, "speed");
  EXPECT_EQ(f[0].max, 3);
}

TEST(HomeAssistantPure, DiscoveryPayloadsHaveWhatHomeAssistantRequires) {
  const HaNode n = node();
  std::map<std::string, std::string> topics;
  std::set<std::string> unique_ids;
  for (const auto& e : entities()) {
    auto d = ha_discovery(n, e);
    auto problems = ha_problems("homeassistant", d.topic, d.payload);
    EXPECT_TRUE(problems.empty()) << d.topic << ": " << Json(problems).dump() << "\n"
                                  << d.payload.dump(2);
    topics[e.object_id] = d.topic;
    EXPECT_TRUE(unique_ids.insert(d.payload["unique_id"]).second);
    EXPECT_EQ(d.payload["availability_topic"], "outpost/node1/availability");
    EXPECT_EQ(d.payload["payload_available"], "online");
    EXPECT_EQ(d.payload["payload_not_available"], "offline");
    EXPECT_EQ(d.payload["device"]["identifiers"], Json::array({"outpost_node1"}));
    EXPECT_EQ(d.payload["device"]["name"], "node1.local");
    EXPECT_EQ(d.payload["device"]["manufacturer"], "Outpost");
    EXPECT_EQ(d.payload["device"]["sw_version"], "0.1.0");
    EXPECT_EQ(d.payload["state_topic"], "outpost/node1/" + e.object_id + "/state");
  }
  EXPECT_EQ(topics["cpu_temp_c"], "homeassistant/sensor/node1/cpu_temp_c/config");
  EXPECT_EQ(topics["button_pressed"], "homeassistant/binary_sensor/node1/button_pressed/config");
  EXPECT_EQ(topics["led"], "homeassistant/switch/node1/led/config");
  EXPECT_EQ(topics["servo"], "homeassistant/number/node1/servo/config");

  auto e = entities();
  auto cpu = ha_discovery(n, e[0]).payload;
  EXPECT_EQ(cpu["device_class"], "temperature");
  EXPECT_EQ(cpu["unit_of_measurement"], "°C");
  EXPECT_EQ(cpu["state_class"], "measurement");
  EXPECT_EQ(cpu["unique_id"], "outpost_node1_cpu_temp_c");
  EXPECT_FALSE(cpu.contains("command_topic"));
  auto led = ha_discovery(n, e[2]).payload;
  EXPECT_EQ(led["command_topic"], "outpost/node1/led/set");
  EXPECT_EQ(led["payload_on"], "ON");
  EXPECT_EQ(led["state_off"], "OFF");
  auto servo = ha_discovery(n, e[3]).payload;
  EXPECT_EQ(servo["command_topic"], "outpost/node1/servo/set");
  EXPECT_EQ(servo["min"], -90);
  EXPECT_EQ(servo["max"], 90);
}

// The checker above can fail: payloads Home Assistant would refuse.
TEST(HomeAssistantPure, TheRequirementsCheckRefusesWhatHomeAssistantWould) {
  const HaNode n = node();
  auto e = entities();
  auto led = ha_discovery(n, e[2]);
  Json no_command = led.payload;
  no_command.erase("command_topic");
  EXPECT_FALSE(ha_problems("homeassistant", led.topic, no_command).empty());
  Json extra = led.payload;
  extra["colour"] = "red";
  EXPECT_FALSE(ha_problems("homeassistant", led.topic, extra).empty());
  auto cpu = ha_discovery(n, e[0]);
  Json fahrenheit_less = cpu.payload;
  fahrenheit_less["unit_of_measurement"] = "C";
  EXPECT_FALSE(ha_problems("homeassistant", cpu.topic, fahrenheit_less).empty());
  Json no_device = cpu.payload;
  no_device["device"].erase("identifiers");
  EXPECT_FALSE(ha_problems("homeassistant", cpu.topic, no_device).empty());
  EXPECT_FALSE(
      ha_problems("homeassistant", "homeassistant/sensor/no.de/cpu/config", cpu.payload).empty());
  EXPECT_FALSE(ha_problems("other", cpu.topic, cpu.payload).empty());
  auto servo = ha_discovery(n, e[3]);
  Json upside_down = servo.payload;
  upside_down["min"] = 90;
  upside_down["max"] = -90;
  EXPECT_FALSE(ha_problems("homeassistant", servo.topic, upside_down).empty());
}

TEST(HomeAssistantPure, StatesAndCommandValues) {
  auto e = entities();
  const HaEntity &cpu = e[0], &button = e[1], &led = e[2], &servo = e[3];
  EXPECT_EQ(ha_state_payload(cpu, 47.25), "47.25");
  EXPECT_EQ(ha_state_payload(cpu, -3), "-3");
  EXPECT_EQ(ha_state_payload(cpu, std::nan("")), std::nullopt);
  EXPECT_EQ(ha_state_payload(button, 1), "ON");
  EXPECT_EQ(ha_state_payload(button, 0), "OFF");
  EXPECT_EQ(ha_state_payload(led, 1), "ON");
  EXPECT_EQ(ha_state_payload(servo, 45), "45");
  EXPECT_EQ(ha_state_payload(servo, -12.5), "-12.5");

  EXPECT_EQ(*ha_command_value(led, "ON"), Json("on"));
  EXPECT_EQ(*ha_command_value(led, "OFF"), Json("off"));
  EXPECT_EQ(*ha_command_value(led, "on"), Json("on"));
  EXPECT_EQ(*ha_command_value(servo, "45"), Json(45.0));
  EXPECT_EQ(*ha_command_value(servo, "-90"), Json(-90.0));
  EXPECT_EQ(*ha_command_value(servo, "12.5"), Json(12.5));
  for (const char* bad : {"", "ONN", "1", "true", " ON", "OFF\n"}) {
    EXPECT_EQ(ha_command_value(led, bad).status().code(), core::Code::kInvalid) << bad;
  }
  for (const char* bad : {"", "abc", "45deg", "nan", "inf", "90.5", "-91", "1e3", " 4"}) {
    auto v = ha_command_value(servo, bad);
    EXPECT_EQ(v.status().code(), core::Code::kInvalid) << bad;
  }
  EXPECT_NE(ha_command_value(servo, "120").status().message().find("-90..90"), std::string::npos);
  EXPECT_EQ(ha_command_value(cpu, "1").status().code(), core::Code::kInvalid);
}

TEST(HomeAssistantPure, NodeAndBrokerFromTheConfig) {
  config::HomeAssistantConfig ha;
  auto n = ha_node(ha, "pi-4.local", "m", "v");
  EXPECT_EQ(n.node_id, "pi-4_local");
  EXPECT_EQ(n.base_topic, "outpost/pi-4_local");
  EXPECT_EQ(n.discovery_prefix, "homeassistant");
  EXPECT_EQ(n.device_name, "pi-4.local");
  ha.node_id = "greenhouse";
  ha.base_topic = "farm/gh1";
  ha.discovery_prefix = "ha";
  n = ha_node(ha, "pi-4.local", "m", "v");
  EXPECT_EQ(n.node_id, "greenhouse");
  EXPECT_EQ(n.base_topic, "farm/gh1");
  EXPECT_EQ(n.discovery_prefix, "ha");

  config::MqttConfig kits;
  kits.url = "mqtt://kits:1883";
  kits.username = "kit-user";
  kits.password = "kit-pass";
  kits.client_id = "outpost-kits";
  kits.keepalive = 7s;
  config::HomeAssistantConfig same;
  auto b = ha_broker(same, kits, "pi");
  EXPECT_EQ(b.url, "mqtt://kits:1883");
  EXPECT_EQ(b.username, "kit-user");
  EXPECT_EQ(b.client_id, "outpost-pi-ha");
  EXPECT_EQ(b.keepalive, 7s);
  config::HomeAssistantConfig own;
  own.url = "mqtts://ha:8883";
  own.username = "ha-user";
  own.client_id = "mine";
  b = ha_broker(own, kits, "pi");
  EXPECT_EQ(b.url, "mqtts://ha:8883");
  EXPECT_EQ(b.username, "ha-user");
  EXPECT_EQ(b.password, "");
  EXPECT_EQ(b.client_id, "mine");
  EXPECT_EQ(b.keepalive, 7s);
}

struct Call {
  std::string target, parameter;
  Json value;
};

// The publisher with a hub of its own: commands are recorded; the relay's always fail.
struct Publisher {
  core::Registry registry;
  Inbox<Call> calls;
  std::unique_ptr<HomeAssistant> ha;

  explicit Publisher(const std::string& url) {
    auto cfg = testing::config_for(url);
    cfg.client_id = "outpost-node1-ha";
    auto h = HomeAssistant::create(
        cfg, node(), entities(), "node1.local",
        [this](const std::string& t, const std::string& p, const Json& v) -> core::Status {
          calls.push(Call{t, p, v});
          if (t == "ventilation_relay") return core::Status::unavailable("relay is stuck");
          return core::Status::ok();
        },
        registry);
    if (!h) throw std::runtime_error(h.status().to_string());
    ha = std::move(*h);
  }
  ~Publisher() { ha->stop(); }
  double m(const std::string& series) { return metric(registry, series).value_or(-1); }
};

auto on(const std::string& topic) {
  return [topic](const Received& r) { return r.topic == topic; };
}

core::Reading reading(const std::string& device, const std::string& sensor, double v) {
  return core::Reading{device, sensor, core::now(), v, "", ""};
}

TEST(HomeAssistant, RefusesBadEntities) {
  core::Registry r;
  auto cfg = testing::config_for("mqtt://127.0.0.1:1");
  auto e = entities();
  e.push_back(e[0]);
  EXPECT_EQ(HomeAssistant::create(cfg, node(), e, "d", nullptr, r).status().code(),
            core::Code::kInvalid);
  e = entities();
  e[0].object_id = "cpu temp";
  EXPECT_EQ(HomeAssistant::create(cfg, node(), e, "d", nullptr, r).status().code(),
            core::Code::kInvalid);
}

TEST(HomeAssistant, DiscoveryStatesAndCommandsOverARealBroker) {
  TestBroker broker;
  broker.start();
  Peer home(broker.url(), "home-assistant", {"homeassistant/#", "outpost/node1/#"});
  ASSERT_TRUE(home.ready());
  // An old retained command: it reaches Outpost when it subscribes, and must not be acted on.
  home.publish("outpost/node1/led/set", std::string("ON"), /*retain=*/true);
  ASSERT_TRUE(home.inbox.take(on("outpost/node1/led/set")));
  Publisher pub(broker.url());

  // Discovery: one config per entity, each as Home Assistant requires; then "online".
  std::map<std::string, Json> configs;
  for (int i = 0; i < 5; ++i) {
    auto c =
        home.inbox.take([](const Received& r) { return r.topic.rfind("homeassistant/", 0) == 0; });
    ASSERT_TRUE(c) << "got " << configs.size() << " configs\n" << broker.log();
    Json p = Json::parse(c->payload);
    auto problems = ha_problems("homeassistant", c->topic, p);
    EXPECT_TRUE(problems.empty()) << c->topic << ": " << Json(problems).dump();
    configs[c->topic] = p;
  }
  EXPECT_EQ(configs.size(), 5u);
  for (const char* t :
       {"homeassistant/sensor/node1/cpu_temp_c/config",
        "homeassistant/binary_sensor/node1/button_pressed/config",
        "homeassistant/switch/node1/led/config", "homeassistant/number/node1/servo/config",
        "homeassistant/switch/node1/ventilation_relay/config"}) {
    EXPECT_TRUE(configs.count(t)) << t;
  }
  auto online = home.inbox.take(on("outpost/node1/availability"));
  ASSERT_TRUE(online);
  EXPECT_EQ(online->payload, "online");
  EXPECT_EQ(pub.m("outpost_homeassistant_connected"), 1);

  // Retained: a Home Assistant that starts later finds them all.
  {
    Peer late(broker.url(), "late",
              {"homeassistant/+/node1/+/config", "outpost/node1/availability"});
    std::set<std::string> seen;
    while (seen.size() < 6) {
      auto r = late.inbox.take();
      ASSERT_TRUE(r) << seen.size();
      EXPECT_TRUE(r->retain) << r->topic;
      seen.insert(r->topic);
    }
  }

  // States: the board's readings, not another device's; only when they change.
  pub.ha->on_readings({reading("node1.local", "cpu_temp_c", 47.25),
                       reading("other", "cpu_temp_c", 99), reading("node1.local", "led_state", 1),
                       reading("node1.local", "button_pressed", 0),
                       reading("node1.local", "not_an_entity", 5)});
  auto cpu = home.inbox.take(on("outpost/node1/cpu_temp_c/state"));
  ASSERT_TRUE(cpu);
  EXPECT_EQ(cpu->payload, "47.25");
  auto led = home.inbox.take(on("outpost/node1/led/state"));
  ASSERT_TRUE(led);
  EXPECT_EQ(led->payload, "ON");
  auto button = home.inbox.take(on("outpost/node1/button_pressed/state"));
  ASSERT_TRUE(button);
  EXPECT_EQ(button->payload, "OFF");
  EXPECT_EQ(pub.m("outpost_homeassistant_states_total"), 3);
  pub.ha->on_readings(
      {reading("node1.local", "cpu_temp_c", 47.25), reading("node1.local", "led_state", 1)});
  EXPECT_EQ(pub.m("outpost_homeassistant_states_total"), 3);
  pub.ha->on_readings({reading("node1.local", "cpu_temp_c", 48)});
  EXPECT_EQ(pub.m("outpost_homeassistant_states_total"), 4);
  pub.ha->on_readings({reading("node1.local", "cpu_temp_c", std::nan(""))});  // a failed read
  EXPECT_EQ(pub.m("outpost_homeassistant_states_total"), 4);

  // Commands: into the hub, then the new state.
  home.publish("outpost/node1/led/set", std::string("OFF"));
  auto call = pub.calls.take();
  ASSERT_TRUE(call);
  EXPECT_EQ(call->target, "led");
  EXPECT_EQ(call->parameter, "state");
  EXPECT_EQ(call->value, "off");
  led = home.inbox.take(on("outpost/node1/led/state"));
  ASSERT_TRUE(led);
  EXPECT_EQ(led->payload, "OFF");
  home.publish("outpost/node1/servo/set", std::string("45"));
  call = pub.calls.take();
  ASSERT_TRUE(call);
  EXPECT_EQ(call->target, "servo");
  EXPECT_EQ(call->parameter, "angle");
  EXPECT_EQ(call->value, 45.0);
  auto servo = home.inbox.take(on("outpost/node1/servo/state"));
  ASSERT_TRUE(servo);
  EXPECT_EQ(servo->payload, "45");

  // Bad ones: dropped and counted, never carried; a good one after them still works.
  home.publish("outpost/node1/led/set", std::string("BLINK"));
  home.publish("outpost/node1/servo/set", std::string("120"));
  home.publish("outpost/node1/cpu_temp_c/set", std::string("1"));
  home.publish("outpost/node1/nothing/set", std::string("ON"));
  home.publish("outpost/node1/ventilation_relay/set", std::string("ON"));
  call = pub.calls.take();
  ASSERT_TRUE(call);
  EXPECT_EQ(call->target, "ventilation_relay") << "a bad command reached the hub";
  EXPECT_TRUE(eventually(
      [&] { return pub.m(R"(outpost_homeassistant_commands_total{outcome="failed"})") == 1; }));
  EXPECT_EQ(pub.m(R"(outpost_homeassistant_commands_total{outcome="ok"})"), 2);
  EXPECT_EQ(pub.m(R"(outpost_homeassistant_dropped_total{reason="bad_payload"})"), 2);
  EXPECT_EQ(pub.m(R"(outpost_homeassistant_dropped_total{reason="unknown_entity"})"), 2);
  EXPECT_EQ(pub.m(R"(outpost_homeassistant_dropped_total{reason="retained"})"), 1);
  auto h = pub.ha->health();
  EXPECT_TRUE(h.connected);
  EXPECT_EQ(h.commands, 3u);
  EXPECT_EQ(h.dropped, 5u);
  EXPECT_EQ(pub.calls.size(), 0u);
  // The failed relay command published no state.
  EXPECT_FALSE(home.inbox.take(on("outpost/node1/ventilation_relay/state"), 300ms));

  // Home Assistant restarted: it says "online" and gets the configs again.
  home.publish("homeassistant/status", std::string("online"));
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(home.inbox.take([](const Received& r) {
      return r.topic.rfind("homeassistant/", 0) == 0 &&
             r.topic.find("/config") != std::string::npos;
    })) << i;
  }

  // A clean stop says "offline" itself (a DISCONNECT publishes no will).
  pub.ha->stop();
  auto offline = home.inbox.take([](const Received& r) {
    return r.topic == "outpost/node1/availability" && r.payload == "offline";
  });
  ASSERT_TRUE(offline) << broker.log();
  EXPECT_EQ(pub.m("outpost_homeassistant_connected"), 0);
  pub.ha->on_readings({reading("node1.local", "cpu_temp_c", 50)});  // after stop: nothing, no crash
}

// States that come while the broker is away are published when it is back.
TEST(HomeAssistant, StatesKeptWhileTheBrokerIsDownArePublishedOnConnect) {
  TestBroker broker;  // not started yet
  Publisher pub(broker.url());
  pub.ha->on_readings({reading("node1.local", "cpu_temp_c", 40.5)});
  pub.ha->set_state("servo", -30);
  pub.ha->set_state("no_such_entity", 1);
  EXPECT_EQ(pub.m("outpost_homeassistant_states_total"), 0);
  broker.start();
  ASSERT_TRUE(eventually([&] { return pub.m("outpost_homeassistant_states_total") == 2; }))
      << pub.ha->health().detail;
  Peer home(broker.url(), "home-assistant", {"outpost/node1/+/state"});
  std::map<std::string, Received> states;
  while (states.size() < 2) {
    auto r = home.inbox.take();
    ASSERT_TRUE(r) << states.size();
    states[r->topic] = *r;
  }
  EXPECT_EQ(states["outpost/node1/cpu_temp_c/state"].payload, "40.5");
  EXPECT_TRUE(states["outpost/node1/cpu_temp_c/state"].retain);
  EXPECT_EQ(states["outpost/node1/servo/state"].payload, "-30");
}

}  // namespace
}  // namespace outpost::mqtt
