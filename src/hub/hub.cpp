#include "hub/hub.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

namespace outpost::hub {

using core::Json;
using core::Status;

namespace {

// Commands kept for GET /api/commands/{id}; the oldest finished ones go first beyond it.
constexpr size_t kMaxCommands = 10'000;

Json value_doc(const core::SensorValue& v) {
  return {{"unit", v.unit}, {"primitive", v.primitive}, {"ts", core::to_micros(v.ts)}, {"values", *v.values}};
}

Json actuator_doc(const core::Actuator& a) {
  return {{"actions", *a.actions}, {"callbacks", *a.callbacks}, {"configuration", *a.configuration},
          {"attributes", *a.attributes}};
}

// The host part of "HOST:PORT" / "[v6]:PORT" (or the whole text when there is no port).
std::string_view host_of(std::string_view addr) {
  if (!addr.empty() && addr.front() == '[') {
    size_t close = addr.find(']');
    return close == std::string_view::npos ? addr : addr.substr(1, close - 1);
  }
  size_t colon = addr.rfind(':');
  if (colon == std::string_view::npos || addr.find(':') != colon) return addr;
  return addr.substr(0, colon);
}

// A reading for the store from a sensor's value: numbers (and booleans) as numbers, an
// aggregate as its average, anything else (a 3DPoint, a string, an array) as its JSON text.
core::Reading reading_of(const std::string& device, const core::Sensor& s) {
  core::Reading r;
  r.device = device;
  r.sensor = s.id;
  r.ts = s.value->ts;
  r.unit = s.value->unit;
  const Json& v = *s.value->values;
  if (v.is_number()) {
    r.value = v.get<double>();
  } else if (v.is_boolean()) {
    r.value = v.get<bool>() ? 1 : 0;
  } else if (v.is_array() && v.size() == 1 && v[0].is_number()) {
    r.value = v[0].get<double>();  // a one-element array is the number
  } else if (v.is_object() && v.contains("average") && v["average"].is_number()) {
    r.value = v["average"].get<double>();  // an aggregate (a kit's window): its mean, for charts
  } else {
    r.text = v.dump();
    if (r.text.empty()) r.text = "null";
  }
  return r;
}

}  // namespace

struct HubMetrics {
  explicit HubMetrics(core::Registry& m)
      : devices(m.gauge("outpost_devices", "Devices in the registry.")),
        online(m.gauge("outpost_devices_online", "Devices that reported within hub.offline_after.")),
        reports(m.counter("outpost_hub_reports_total", "Device reports merged into the registry.")),
        readings(m.counter("outpost_hub_readings_stored_total", "Readings from device reports committed to the store.")),
        dropped_store(m.counter("outpost_hub_readings_dropped_total",
                                "Readings from device reports the store refused or failed to write.",
                                R"(reason="store")")),
        refused(m.counter("outpost_hub_devices_refused_total", "Reports from new devices over hub.max_devices.")),
        acks_ignored(m.counter("outpost_hub_acks_ignored_total",
                               "Command answers for unknown or finished commands, or from another address.")) {
    for (auto st : {CommandState::kAcknowledged, CommandState::kFailed, CommandState::kTimedOut}) {
      commands[static_cast<int>(st)] = &m.counter("outpost_commands_total", "Commands by outcome.",
                                                  fmt::format(R"(outcome="{}")", state_name(st)));
    }
    commands[static_cast<int>(CommandState::kSent)] =
        &m.counter("outpost_commands_total", "Commands by outcome.", R"(outcome="sent")");
    commands[static_cast<int>(CommandState::kQueued)] = commands[static_cast<int>(CommandState::kSent)];
  }
  core::Gauge& devices;
  core::Gauge& online;
  core::Counter& reports;
  core::Counter& readings;
  core::Counter& dropped_store;
  core::Counter& refused;
  core::Counter& acks_ignored;
  core::Counter* commands[5] = {};
};

std::string_view state_name(CommandState s) {
  switch (s) {
    case CommandState::kQueued: return "queued";
    case CommandState::kSent: return "sent";
    case CommandState::kAcknowledged: return "acknowledged";
    case CommandState::kFailed: return "failed";
    case CommandState::kTimedOut: return "timed_out";
  }
  return "unknown";
}

Json to_doc(const core::Device& d) {
  Json sensors = Json::array();
  for (const auto& s : d.sensors) {
    Json j = {{"id", s.id}, {"attributes", *s.attributes}, {"configuration", *s.configuration}};
    if (s.value) j["value"] = value_doc(*s.value);
    sensors.push_back(std::move(j));
  }
  Json actuators = Json::array();
  for (const auto& a : d.actuators) actuators.push_back(actuator_doc(a));
  return {{"name", d.name},
          {"attributes", *d.attributes},
          {"sensors", std::move(sensors)},
          {"actuators", std::move(actuators)},
          {"transport", core::transport_name(d.transport)},
          {"address", d.address},
          {"first_seen", core::to_micros(d.first_seen)},
          {"last_seen", core::to_micros(d.last_seen)}};
}

core::Result<core::Device> from_doc(const std::string& id, const Json& doc) {
  try {
    core::Device d;
    d.id = id;
    d.name = doc.value("name", id);
    d.attributes = doc.value("attributes", Json::object());
    d.location = core::location_of(*d.attributes);
    for (const auto& s : doc.at("sensors")) {
      core::Sensor sensor;
      sensor.id = s.at("id").get<std::string>();
      sensor.attributes = s.value("attributes", Json::object());
      sensor.configuration = s.value("configuration", Json::array());
      if (auto v = s.find("value"); v != s.end()) {
        sensor.value = core::SensorValue{v->value("unit", ""), v->value("primitive", ""),
                                         core::from_micros(v->at("ts").get<int64_t>()), v->value("values", Json())};
      }
      d.sensors.push_back(std::move(sensor));
    }
    for (const auto& a : doc.at("actuators")) {
      d.actuators.push_back({a.value("actions", Json::array()), a.value("callbacks", Json::array()),
                             a.value("configuration", Json::array()), a.value("attributes", Json::object())});
    }
    auto t = core::parse_transport(doc.value("transport", ""));
    if (!t) return Status::invalid(fmt::format("device '{}': unknown transport", id));
    d.transport = *t;
    d.address = doc.value("address", "");
    d.first_seen = core::from_micros(doc.at("first_seen").get<int64_t>());
    d.last_seen = core::from_micros(doc.at("last_seen").get<int64_t>());
    d.online = false;
    return d;
  } catch (const Json::exception& e) {
    return Status::invalid(fmt::format("device '{}': stored document is malformed: {}", id, e.what()));
  }
}

Hub::Hub(const config::HubConfig& cfg, store::Store& store, core::Bus& bus, core::Registry& metrics,
         std::function<void(core::Event)> record_event)
    : cfg_(cfg),
      store_(store),
      bus_(bus),
      record_event_(std::move(record_event)),
      registry_(cfg.max_devices),
      m_(std::make_unique<HubMetrics>(metrics)) {}

Hub::~Hub() = default;

Status Hub::load() {
  auto stored = store_.load_devices();
  if (!stored) return stored.status();
  size_t bad = 0;
  for (const auto& s : *stored) {
    auto doc = Json::parse(s.doc, nullptr, false);
    auto d = doc.is_discarded() ? core::Result<core::Device>(Status::invalid("not JSON")) : from_doc(s.id, doc);
    if (!d) {
      if (bad++ == 0) spdlog::warn("hub: skipping a stored device: {}", d.status().message());
      continue;
    }
    registry_.put(std::move(*d));
  }
  m_->devices.set(static_cast<double>(registry_.size()));
  m_->online.set(0);
  if (!stored->empty()) spdlog::info("hub: {} device(s) loaded from the store", stored->size() - bad);
  return Status::ok();
}

Json Hub::reading_payload(const core::Sensor& s) {
  Json j = {{"sensor", s.id}};
  if (auto t = s.attributes->find("type"); t != s.attributes->end() && t->is_string()) j["type"] = *t;
  if (s.value) {
    j["unit"] = s.value->unit;
    j["primitive"] = s.value->primitive;
    j["time"] = core::format_iso8601(s.value->ts);
    j["value"] = *s.value->values;
  }
  return j;
}

void Hub::ingest(std::vector<core::DeviceReport>&& reports) {
  std::vector<core::Reading> readings;
  size_t sensors = 0;
  for (const auto& r : reports) sensors += r.sensors.size();
  readings.reserve(sensors);
  std::vector<core::Event> live;  // built only when someone listens
  bool listening = bus_.subscribers() > 0;
  for (auto& r : reports) {
    // Readings (and live events) first: the merge moves the report's parts into the registry.
    size_t first = readings.size(), first_live = live.size();
    for (const auto& s : r.sensors) {
      if (!s.value) continue;
      readings.push_back(reading_of(r.id, s));
      if (listening) live.push_back(core::Event{0, s.value->ts, r.id, "reading", reading_payload(s).dump()});
    }
    std::string id = r.id, address = r.address;
    auto transport = r.transport;
    auto received = r.received;
    auto merged = registry_.merge(std::move(r));
    if (merged.refused) {
      m_->refused.inc();
      readings.resize(first);
      live.resize(first_live);
      continue;
    }
    m_->reports.inc();
    note_merged(merged, id, transport, address, received);
  }
  if (readings.empty()) return;
  for (const auto& fn : observers_) fn(readings);
  // Live first: a reading is published as it arrives, not after the write transaction that
  // holds it (which batches, and under load takes milliseconds), so WebSocket clients and rules
  // see it at once. The store's answer decides only what is counted.
  for (const auto& e : live) bus_.publish(e);
  size_t n = readings.size();
  // The callback may run after the hub is gone (the store drains at close): it holds only what
  // outlives the store (the metrics registry, see app/).
  store_.append(std::move(readings), [n, stored = &m_->readings, dropped = &m_->dropped_store](Status s) {
    if (!s) return dropped->inc(n);
    stored->inc(n);
  });
}

// After a merge: the device gauge, and an "online" event for a device new or back from silence.
void Hub::note_merged(const Registry::Merged& m, const std::string& id, core::Transport transport,
                      const std::string& address, core::TimePoint received) {
  if (m.created) m_->devices.set(static_cast<double>(registry_.size()));
  if (!m.came_online) return;
  m_->online.set(static_cast<double>(registry_.online()));
  record_event_(core::Event{0, received, id, "online",
                            Json{{"transport", core::transport_name(transport)}, {"address", address}}.dump()});
}

void Hub::observe(core::DeviceReport&& r) {
  auto merged = registry_.merge(core::DeviceReport(r));
  if (merged.refused) return m_->refused.inc();
  note_merged(merged, r.id, r.transport, r.address, r.received);
  if (!observers_.empty()) {
    std::vector<core::Reading> readings;
    for (const auto& s : r.sensors) {
      if (s.value) readings.push_back(reading_of(r.id, s));
    }
    if (!readings.empty()) {
      for (const auto& fn : observers_) fn(readings);
    }
  }
  if (bus_.subscribers() == 0) return;
  for (const auto& s : r.sensors) {
    if (s.value) bus_.publish(core::Event{0, s.value->ts, r.id, "reading", reading_payload(s).dump()});
  }
}

void Hub::set_sender(core::Transport t, Sender s) {
  std::lock_guard lk(mu_);
  senders_[t] = std::move(s);
}

core::Result<Command> Hub::submit(const std::string& device, const std::string& target, const std::string& parameter,
                                  Json value, const std::string& who, std::string raw) {
  if (target.empty()) return Status::invalid("'target' is required: the actuator or sensor to command");
  if (parameter.empty()) return Status::invalid("'parameter' is required");
  auto d = registry_.get(device);
  if (!d) return Status::not_found(fmt::format("no device '{}'", device));
  if (d->transport != core::Transport::kLocal && d->address.empty())
    return Status::unavailable(fmt::format("device '{}' has no known address", device));
  Sender sender;
  Command c;
  {
    std::lock_guard lk(mu_);
    auto it = senders_.find(d->transport);
    if (it == senders_.end() || !it->second)
      return Status::unavailable(
          fmt::format("commands to {} devices are not available (transport off)", core::transport_name(d->transport)));
    sender = it->second;
    static std::mt19937_64 rng{std::random_device{}()};
    do {
      c.id = fmt::format("cmd_{:016x}", rng());
    } while (commands_.count(c.id));
    c.device = device;
    c.target = target;
    c.parameter = parameter;
    c.value = std::move(value);
    c.who = who;
    c.raw = std::move(raw);
    c.created = c.updated = core::now();
    commands_.emplace(c.id, c);
    command_order_.push_back(c.id);
    if (command_order_.size() > kMaxCommands) {
      // Forget the oldest finished commands (a command still in flight is kept).
      size_t removed = 0;
      auto keep = std::remove_if(command_order_.begin(), command_order_.end(), [&](const std::string& id) {
        if (command_order_.size() - removed <= kMaxCommands * 9 / 10) return false;
        auto f = commands_.find(id);
        if (f == commands_.end()) return ++removed, true;
        if (f->second.state == CommandState::kSent || f->second.state == CommandState::kQueued) return false;
        commands_.erase(f);
        return ++removed, true;
      });
      command_order_.erase(keep, command_order_.end());
    }
  }
  Delivery delivery;
  Status sent = Status::ok();
  try {
    sent = sender(*d, c, delivery);
  } catch (const std::exception& e) {
    sent = Status::internal(e.what());
  }
  std::lock_guard lk(mu_);
  auto it = commands_.find(c.id);
  if (it == commands_.end()) return c;
  Command& live = it->second;
  if (sent.code() == core::Code::kInvalid) {
    // The transport refused the command itself (an unknown actuator, a value out of range):
    // the client's mistake, not an outcome; it is not kept.
    commands_.erase(it);
    return sent;
  }
  if (!sent) {
    finish(live, CommandState::kFailed, sent.message());
  } else if (delivery.done) {
    finish(live, CommandState::kAcknowledged, delivery.detail);
  } else if (!live.raw.empty()) {
    finish(live, CommandState::kSent, "forwarded; the device cannot answer a FIWARE update");
  } else if (live.state == CommandState::kQueued) {  // an answer may have come already
    live.state = CommandState::kSent;
    live.updated = core::now();
    m_->commands[static_cast<int>(CommandState::kSent)]->inc();
  }
  return live;
}

void Hub::finish(Command& c, CommandState st, std::string detail) {
  c.state = st;
  c.detail = std::move(detail);
  c.updated = core::now();
  m_->commands[static_cast<int>(st)]->inc();
  Json payload = {{"id", c.id},       {"target", c.target}, {"parameter", c.parameter},
                  {"value", c.value}, {"who", c.who},       {"state", state_name(st)}};
  if (!c.detail.empty()) payload["detail"] = c.detail;
  record_event_(core::Event{0, c.updated, c.device, "command", payload.dump()});
}

void Hub::ack(const core::CommandAck& a, const std::string& from) {
  std::lock_guard lk(mu_);
  auto it = commands_.find(a.command_id);
  if (it == commands_.end() || !it->second.raw.empty() ||
      (it->second.state != CommandState::kSent && it->second.state != CommandState::kQueued)) {
    m_->acks_ignored.inc();
    return;
  }
  auto d = registry_.get(it->second.device);
  if (!d || (from != d->address && host_of(from) != host_of(d->address))) {
    m_->acks_ignored.inc();
    return;
  }
  finish(it->second, a.ok ? CommandState::kAcknowledged : CommandState::kFailed, a.detail);
}

std::optional<Command> Hub::command(const std::string& id) const {
  std::lock_guard lk(mu_);
  auto it = commands_.find(id);
  if (it == commands_.end()) return std::nullopt;
  return it->second;
}

void Hub::tick(core::TimePoint now) {
  for (const auto& id : registry_.mark_offline(now - cfg_.offline_after)) {
    record_event_(core::Event{0, now, id, "offline", Json{{"silent_for_ms", cfg_.offline_after.count()}}.dump()});
  }
  m_->online.set(static_cast<double>(registry_.online()));
  {
    std::lock_guard lk(mu_);
    for (auto& [id, c] : commands_) {
      if (c.state == CommandState::kSent && c.raw.empty() && now - c.updated >= cfg_.command_timeout) {
        finish(c, CommandState::kTimedOut, fmt::format("no answer within {} ms", cfg_.command_timeout.count()));
      }
    }
  }
  {
    std::lock_guard lk(persist_mu_);
    if (last_save_ && now - *last_save_ < kSaveInterval && now >= *last_save_) return;
    last_save_ = now;
  }
  save();
}

void Hub::save() {
  std::lock_guard lk(persist_mu_);
  auto dirty = registry_.take_dirty();
  if (dirty.empty()) return;
  std::vector<store::StoredDevice> rows;
  rows.reserve(dirty.size());
  for (const auto& d : dirty) rows.push_back({d.id, to_doc(d).dump(), d.last_seen});
  if (auto s = store_.put_devices(rows); !s) {
    spdlog::warn("hub: saving {} device(s) failed: {}", rows.size(), s.message());
  }
}

Json Hub::list_json() const {
  constexpr size_t kMaxListed = 1000;
  auto page = registry_.find({.limit = kMaxListed});
  Json devices = Json::array();
  for (const auto& d : page.devices) {
    Json sensors = Json::array();
    for (const auto& s : d.sensors) {
      Json j = {{"id", s.id}};
      if (auto t = s.attributes->find("type"); t != s.attributes->end()) j["type"] = *t;
      if (s.value) j["unit"] = s.value->unit;
      sensors.push_back(std::move(j));
    }
    Json actuators = Json::array();
    for (const auto& a : d.actuators) {
      for (const auto& act : *a.actions)
        if (act.is_object() && act.contains("parameter")) actuators.push_back(act["parameter"]);
      for (const auto& cb : *a.callbacks)
        if (cb.is_object() && cb.contains("target")) actuators.push_back(cb["target"]);
    }
    devices.push_back({{"id", d.id},
                       {"name", d.name},
                       {"transport", core::transport_name(d.transport)},
                       {"online", d.online},
                       {"sensors", std::move(sensors)},
                       {"actuators", std::move(actuators)}});
  }
  return {{"devices", std::move(devices)}, {"total", page.total}};
}

}  // namespace outpost::hub
