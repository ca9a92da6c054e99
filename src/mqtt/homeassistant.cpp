// Home Assistant: discovery configs, states and commands of this board over MQTT.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <mutex>
#include <set>
#include <unordered_map>

#include "mqtt/mqtt.hpp"

namespace outpost::mqtt {

namespace {

using namespace std::chrono_literals;

constexpr const char* kOnline = "online";
constexpr const char* kOffline = "offline";
constexpr const char* kOn = "ON";
constexpr const char* kOff = "OFF";
constexpr auto kDropLogInterval = 10s;

bool id_char(unsigned char c) { return std::isalnum(c) || c == '_' || c == '-'; }

bool valid_object_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (unsigned char c : id) {
    if (!id_char(c)) return false;
  }
  return true;
}

std::string sanitized_id(std::string_view id) {
  std::string out;
  for (unsigned char c : id.substr(0, 128)) out += id_char(c) ? static_cast<char>(c) : '_';
  return out.empty() ? "outpost" : out;
}

std::string display_name(const std::string& name) {
  std::string out = name;
  for (char& c : out) {
    if (c == '_') c = ' ';
  }
  if (out.size() <= 3) {
    for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  } else if (!out.empty()) {
    out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  }
  return out;
}

std::string number_text(double v) { return fmt::format("{}", v); }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

// Something from the broker for a log line: bounded, without control characters.
std::string printable(std::string_view s) {
  std::string out(s.substr(0, 80));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  if (s.size() > 80) out += "...";
  return out;
}

enum class HaDrop { kBadPayload, kUnknownEntity, kRetained };
constexpr std::array<const char*, 3> kDropNames = {"bad_payload", "unknown_entity", "retained"};

}  // namespace

std::string_view ha_component_name(HaComponent c) {
  switch (c) {
    case HaComponent::kSensor:
      return "sensor";
    case HaComponent::kBinarySensor:
      return "binary_sensor";
    case HaComponent::kSwitch:
      return "switch";
    case HaComponent::kNumber:
      return "number";
  }
  return "sensor";
}

HaNode ha_node(const config::HomeAssistantConfig& cfg, const std::string& device_id,
               std::string model, std::string sw_version) {
  HaNode n;
  n.node_id = cfg.node_id.empty() ? sanitized_id(device_id) : cfg.node_id;
  n.discovery_prefix = cfg.discovery_prefix;
  n.base_topic = cfg.base_topic.empty() ? "outpost/" + n.node_id : cfg.base_topic;
  n.device_name = device_id;
  n.model = std::move(model);
  n.sw_version = std::move(sw_version);
  return n;
}

config::MqttConfig ha_broker(const config::HomeAssistantConfig& ha, const config::MqttConfig& mqtt,
                             const std::string& device_id) {
  config::MqttConfig b = mqtt;
  if (!ha.url.empty()) {
    b.url = ha.url;
    b.username = ha.username;
    b.password = ha.password;
    b.ca_file = ha.ca_file;
  }
  b.client_id = ha.client_id.empty() ? "outpost-" + device_id + "-ha" : ha.client_id;
  return b;
}

std::string ha_availability_topic(const HaNode& n) { return n.base_topic + "/availability"; }
std::string ha_state_topic(const HaNode& n, const HaEntity& e) {
  return n.base_topic + "/" + e.object_id + "/state";
}
std::string ha_command_topic(const HaNode& n, const HaEntity& e) {
  return n.base_topic + "/" + e.object_id + "/set";
}
bool ha_takes_commands(const HaEntity& e) {
  return e.component == HaComponent::kSwitch || e.component == HaComponent::kNumber;
}

HaDiscovery ha_discovery(const HaNode& n, const HaEntity& e) {
  core::Json p = {
      {"name", e.name},
      {"unique_id", fmt::format("outpost_{}_{}", n.node_id, e.object_id)},
      {"availability_topic", ha_availability_topic(n)},
      {"payload_available", kOnline},
      {"payload_not_available", kOffline},
      {"qos", 1},
      {"device",
       {{"identifiers", core::Json::array({"outpost_" + n.node_id})},
        {"name", n.device_name},
        {"manufacturer", "Outpost"},
        {"model", n.model},
        {"sw_version", n.sw_version}}},
      {"origin", {{"name", "Outpost"}, {"sw_version", n.sw_version}}},
  };
  p["state_topic"] = ha_state_topic(n, e);
  if (!e.device_class.empty()) p["device_class"] = e.device_class;
  switch (e.component) {
    case HaComponent::kSensor:
      if (!e.unit.empty()) p["unit_of_measurement"] = e.unit;
      if (!e.state_class.empty()) p["state_class"] = e.state_class;
      break;
    case HaComponent::kBinarySensor:
      p["payload_on"] = kOn;
      p["payload_off"] = kOff;
      break;
    case HaComponent::kSwitch:
      p["command_topic"] = ha_command_topic(n, e);
      p["payload_on"] = kOn;
      p["payload_off"] = kOff;
      p["state_on"] = kOn;
      p["state_off"] = kOff;
      p["optimistic"] = false;
      p["retain"] = false;  // commands are not retained (a retained one would replay)
      break;
    case HaComponent::kNumber:
      p["command_topic"] = ha_command_topic(n, e);
      p["min"] = e.min;
      p["max"] = e.max;
      p["step"] = e.step;
      p["mode"] = "slider";
      p["optimistic"] = false;
      p["retain"] = false;
      if (!e.unit.empty()) p["unit_of_measurement"] = e.unit;
      break;
  }
  return HaDiscovery{fmt::format("{}/{}/{}/{}/config", n.discovery_prefix,
                                 ha_component_name(e.component), n.node_id, e.object_id),
                     std::move(p)};
}

std::optional<std::string> ha_state_payload(const HaEntity& e, double value) {
  if (!std::isfinite(value)) return std::nullopt;
  switch (e.component) {
    case HaComponent::kBinarySensor:
    case HaComponent::kSwitch:
      return std::string(value != 0 ? kOn : kOff);
    case HaComponent::kSensor:
    case HaComponent::kNumber:
      return number_text(value);
  }
  return std::nullopt;
}

core::Result<core::Json> ha_command_value(const HaEntity& e, std::string_view payload) {
  if (e.component == HaComponent::kSwitch) {
    if (iequals(payload, kOn)) return core::Json("on");
    if (iequals(payload, kOff)) return core::Json("off");
    return core::Status::invalid(
        fmt::format("{} takes ON or OFF, got '{}'", e.object_id, printable(payload)));
  }
  if (e.component == HaComponent::kNumber) {
    double v = 0;
    auto r = std::from_chars(payload.data(), payload.data() + payload.size(), v);
    if (payload.empty() || r.ec != std::errc() || r.ptr != payload.data() + payload.size() ||
        !std::isfinite(v))
      return core::Status::invalid(
          fmt::format("{} takes a number, got '{}'", e.object_id, printable(payload)));
    if (v < e.min || v > e.max)
      return core::Status::invalid(fmt::format("{} takes {}..{}, got {}", e.object_id,
                                               number_text(e.min), number_text(e.max), v));
    return core::Json(v);
  }
  return core::Status::invalid(fmt::format("{} takes no commands", e.object_id));
}

std::vector<HaEntity> ha_actuator_entities(const std::vector<core::Actuator>& actuators) {
  std::vector<HaEntity> out;
  for (const auto& a : actuators) {
    auto name_it = a.attributes->find("name");
    if (name_it == a.attributes->end() || !name_it->is_string()) continue;
    const std::string name = name_it->get<std::string>();
    if (!valid_object_id(name)) continue;
    auto label = a.attributes->find("label");
    std::string shown = label != a.attributes->end() && label->is_string()
                            ? label->get<std::string>()
                            : display_name(name);
    if (!a.actions->is_array()) continue;
    for (const auto& act : *a.actions) {
      if (!act.is_object()) continue;
      auto param = act.find("parameter");
      if (param == act.end() || !param->is_string()) continue;
      const std::string parameter = param->get<std::string>();
      if (parameter == "state") {
        out.push_back(HaEntity{.component = HaComponent::kSwitch,
                               .object_id = name,
                               .name = shown,
                               .state_sensor = name + "_state",
                               .target = name,
                               .parameter = parameter});
        break;
      }
      std::string primitive = act.value("primitive", "");
      auto min = a.attributes->find("min"), max = a.attributes->find("max");
      bool numeric = primitive == "double" || primitive == "int" || primitive == "float" ||
                     primitive == "number";
      if (numeric && min != a.attributes->end() && max != a.attributes->end() && min->is_number() &&
          max->is_number() && min->get<double>() < max->get<double>()) {
        std::string unit = act.value("unit", "");
        out.push_back(HaEntity{.component = HaComponent::kNumber,
                               .object_id = name,
                               .name = shown,
                               .unit = unit == "deg" ? "°" : unit,
                               .target = name,
                               .parameter = parameter,
                               .min = min->get<double>(),
                               .max = max->get<double>(),
                               .step = 1});
        break;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The publisher

struct HomeAssistant::State {
  HaNode node;
  std::vector<HaEntity> entities;
  std::string device_id;
  HaSubmit submit;
  std::unordered_multimap<std::string, size_t> by_sensor;  // state_sensor -> entity index
  std::unordered_map<std::string, size_t> by_command;      // command topic -> entity index
  std::string availability, status_topic, command_pattern;

  core::Gauge& connected;
  core::Counter& reconnects;
  std::array<core::Counter*, 2> commands{};  // ok, failed
  std::array<core::Counter*, kDropNames.size()> dropped{};
  core::Counter& states;

  // Guards the client pointer and the states; held while publishing, so a state never overtakes
  // a newer one of the same entity on its way to the client's queue.
  std::mutex mu;
  Client* client = nullptr;       // set at the first connect
  std::vector<std::string> last;  // per entity: the latest state ("" none yet)
  std::vector<bool> sent;         // per entity: `last` was handed to the client
  bool stopped = false;

  // The MQTT thread's own: drop logging.
  std::chrono::steady_clock::time_point last_drop_log{};
  uint64_t drops_unlogged = 0;

  State(HaNode n, std::vector<HaEntity> e, std::string id, HaSubmit s, core::Registry& metrics)
      : node(std::move(n)),
        entities(std::move(e)),
        device_id(std::move(id)),
        submit(std::move(s)),
        connected(metrics.gauge("outpost_homeassistant_connected",
                                "1 while connected to Home Assistant's MQTT broker, else 0.")),
        reconnects(
            metrics.counter("outpost_homeassistant_reconnects_total",
                            "Connection attempts to Home Assistant's broker after the first.")),
        states(metrics.counter("outpost_homeassistant_states_total",
                               "State messages published to Home Assistant.")),
        last(entities.size()),
        sent(entities.size(), false) {
    const char* outcomes[] = {"ok", "failed"};
    for (size_t i = 0; i < 2; ++i) {
      commands[i] = &metrics.counter("outpost_homeassistant_commands_total",
                                     "Commands from Home Assistant carried to the hub, by outcome.",
                                     fmt::format("outcome=\"{}\"", outcomes[i]));
    }
    for (size_t i = 0; i < kDropNames.size(); ++i) {
      dropped[i] = &metrics.counter("outpost_homeassistant_dropped_total",
                                    "Command messages from Home Assistant dropped, by reason.",
                                    fmt::format("reason=\"{}\"", kDropNames[i]));
    }
    for (size_t i = 0; i < entities.size(); ++i) {
      if (!entities[i].state_sensor.empty()) by_sensor.emplace(entities[i].state_sensor, i);
      if (ha_takes_commands(entities[i]))
        by_command.emplace(ha_command_topic(node, entities[i]), i);
    }
    availability = ha_availability_topic(node);
    status_topic = node.discovery_prefix + "/status";
    command_pattern = node.base_topic + "/+/set";
  }

  // mu held.
  void publish_state(size_t i) {
    if (client == nullptr || last[i].empty() || !client->connected()) return;
    auto s = client->publish(ha_state_topic(node, entities[i]), last[i], 1, true);
    sent[i] = s.is_ok();
    if (s) states.inc();
  }

  // mu held. Discovery, availability, every known state.
  void announce(Client& c) {
    for (const auto& e : entities) {
      auto d = ha_discovery(node, e);
      if (auto s = c.publish(d.topic, d.payload.dump(), 1, true); !s)
        spdlog::warn("mqtt homeassistant: {}", s.to_string());
    }
    if (auto s = c.publish(availability, kOnline, 1, true); !s)
      spdlog::warn("mqtt homeassistant: {}", s.to_string());
    for (size_t i = 0; i < entities.size(); ++i) publish_state(i);
  }

  void on_connect(Client& c) {
    for (const std::string& t : {command_pattern, status_topic}) {
      if (auto s = c.subscribe(t, 1); !s) spdlog::error("mqtt homeassistant: {}", s.to_string());
    }
    std::lock_guard lk(mu);
    client = &c;
    announce(c);
  }

  void update(size_t i, std::string payload) {
    std::lock_guard lk(mu);
    if (stopped) return;
    if (last[i] == payload && sent[i]) return;  // unchanged, and Home Assistant has it
    last[i] = std::move(payload);
    sent[i] = false;
    publish_state(i);
  }

  void on_message(const Message& m) {
    if (m.topic == status_topic) {
      // Home Assistant (re)started and asks for the configs again.
      if (m.payload != kOnline) return;
      std::lock_guard lk(mu);
      if (client != nullptr && !stopped) announce(*client);
      return;
    }
    if (m.retain) return drop(HaDrop::kRetained, m.topic, "a retained command is not acted on");
    auto it = by_command.find(std::string(m.topic));
    if (it == by_command.end())
      return drop(HaDrop::kUnknownEntity, m.topic, "no entity takes commands there");
    const HaEntity& e = entities[it->second];
    auto value = ha_command_value(e, m.payload);
    if (!value) return drop(HaDrop::kBadPayload, m.topic, value.status().message());
    core::Status done = core::Status::internal("no hub");
    try {
      done = submit ? submit(e.target, e.parameter, *value) : done;
    } catch (const std::exception& ex) {
      done = core::Status::internal(ex.what());
    }
    if (!done) {
      commands[1]->inc();
      spdlog::warn("mqtt homeassistant: command {} {} = {} failed: {}", e.target, e.parameter,
                   value->dump(), done.message());
      return;
    }
    commands[0]->inc();
    double v = value->is_number() ? value->get<double>() : (*value == "on" ? 1.0 : 0.0);
    if (auto p = ha_state_payload(e, v)) update(it->second, std::move(*p));
  }

  void drop(HaDrop reason, std::string_view topic, const std::string& why) {
    dropped[static_cast<size_t>(reason)]->inc();
    auto now = std::chrono::steady_clock::now();
    if (last_drop_log != std::chrono::steady_clock::time_point{} &&
        now - last_drop_log < kDropLogInterval) {
      ++drops_unlogged;
      return;
    }
    std::string more = drops_unlogged
                           ? fmt::format(" ({} more dropped since the last report)", drops_unlogged)
                           : "";
    spdlog::warn("mqtt homeassistant: dropped a command on '{}': {}: {}{}", printable(topic),
                 kDropNames[static_cast<size_t>(reason)], why, more);
    last_drop_log = now;
    drops_unlogged = 0;
  }
};

core::Result<std::unique_ptr<HomeAssistant>> HomeAssistant::create(
    const config::MqttConfig& broker, HaNode node, std::vector<HaEntity> entities,
    std::string device_id, HaSubmit submit, core::Registry& metrics) {
  if (auto url = parse_broker_url(broker.url); !url) return url.status();
  std::set<std::string> ids;
  for (const auto& e : entities) {
    if (!valid_object_id(e.object_id))
      return core::Status::invalid(fmt::format(
          "homeassistant: entity '{}' needs an object id of [A-Za-z0-9_-]", e.object_id));
    if (!ids.insert(e.object_id).second)
      return core::Status::invalid(
          fmt::format("homeassistant: two entities have the object id '{}'", e.object_id));
  }
  auto state = std::make_unique<State>(std::move(node), std::move(entities), std::move(device_id),
                                       std::move(submit), metrics);
  State* st = state.get();
  ClientCallbacks callbacks;
  callbacks.on_connect = [st](Client& c) { st->on_connect(c); };
  callbacks.on_message = [st](const Message& m) { st->on_message(m); };
  ClientOptions options;
  options.will = Will{st->availability, kOffline, 1, true};
  auto client = Client::create(broker, broker.client_id, "homeassistant", std::move(callbacks),
                               ClientMetrics{&st->connected, &st->reconnects}, std::move(options));
  if (!client) return client.status();
  return std::unique_ptr<HomeAssistant>(new HomeAssistant(std::move(state), std::move(*client)));
}

HomeAssistant::HomeAssistant(std::unique_ptr<State> state, std::unique_ptr<Client> client)
    : state_(std::move(state)), client_(std::move(client)) {}

HomeAssistant::~HomeAssistant() { stop(); }

void HomeAssistant::on_readings(const std::vector<core::Reading>& readings) {
  State& st = *state_;
  for (const auto& r : readings) {
    if (r.device != st.device_id || !r.is_numeric()) continue;
    auto [from, to] = st.by_sensor.equal_range(r.sensor);
    for (auto it = from; it != to; ++it) {
      if (auto p = ha_state_payload(st.entities[it->second], r.value))
        st.update(it->second, std::move(*p));
    }
  }
}

void HomeAssistant::set_state(std::string_view object_id, double value) {
  State& st = *state_;
  for (size_t i = 0; i < st.entities.size(); ++i) {
    if (st.entities[i].object_id != object_id) continue;
    if (auto p = ha_state_payload(st.entities[i], value)) st.update(i, std::move(*p));
  }
}

const std::vector<HaEntity>& HomeAssistant::entities() const { return state_->entities; }

HaHealth HomeAssistant::health() const {
  auto c = client_->health();
  HaHealth h{c.connected, c.detail, c.reconnects, 0, 0};
  for (auto* n : state_->commands) h.commands += n->value();
  for (auto* n : state_->dropped) h.dropped += n->value();
  return h;
}

void HomeAssistant::stop() {
  {
    std::lock_guard lk(state_->mu);
    if (!state_->stopped && client_->connected()) {
      // A clean DISCONNECT does not publish the will: say it ourselves, before it.
      if (auto s = client_->publish(state_->availability, kOffline, 1, true); !s)
        spdlog::warn("mqtt homeassistant: {}", s.to_string());
    }
    state_->stopped = true;
  }
  client_->stop();
}

}  // namespace outpost::mqtt
