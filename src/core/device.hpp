// The device model: anything with sensors and actuators — the board Outpost runs on, a FIWARE
// device reporting over UDP, an AstroPlant kit over MQTT. Every compatibility API is a view
// over these types (FIWARE loadById renders a Device in its shape, AstroPlant's /kits renders
// the devices whose transport is MQTT).
//
// The free-form parts a device states about itself (attributes, configuration, actions,
// callbacks, a sensor's values) are kept as JSON exactly as received, so they are rendered
// back unchanged.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/time.hpp"

namespace outpost::core {

using Json = nlohmann::json;

struct Location {
  double lat = 0;  // degrees, -90..90
  double lon = 0;  // degrees, -180..180
};

// kEdge: a device of another Outpost (an edge) whose readings and events that Outpost sent to
// this hub's POST /api/ingest; its address is the edge's id. Commands cannot reach it (yet).
enum class Transport { kLocal, kUdp, kMqtt, kEdge };
std::string_view transport_name(Transport t);  // "local", "udp", "mqtt", "edge"
std::optional<Transport> parse_transport(std::string_view name);  // the inverse; nullopt otherwise

// One value of a sensor as the device stated it.
struct SensorValue {
  std::string unit;       // "uT", "lx", "" when not given
  std::string primitive;  // "double", "3DPoint", "string", "array", "int", "boolean", ...
  TimePoint ts;           // the device's time for it, else when it was received
  Json values;            // a number, an array of numbers, a string, ... as received
};

struct Sensor {
  // Unique within its device: attributes.type, else attributes.name, else "sensor<N>" (its
  // index in the report). The `sensor` of the readings stored for it.
  std::string id;
  Json attributes = Json::object();     // as stated: type, name, vendor, power, ...
  Json configuration = Json::array();   // as stated
  std::optional<SensorValue> value;     // the latest
};

// An actuator as the device describes it (FIWARE: actions it accepts, callbacks, its
// configuration). Commands name an actuator by `target`: an action's "parameter" or a
// callback's "target".
struct Actuator {
  Json actions = Json::array();
  Json callbacks = Json::array();
  Json configuration = Json::array();
  Json attributes = Json::object();
};

// What one message (a UDP packet, an MQTT measurement, the local collector) says about a
// device. The hub merges it into the registry: sensors listed here replace the sensor of the
// same id (others stay); attributes and actuators, when present, replace the stored ones.
struct DeviceReport {
  std::string id;
  Transport transport = Transport::kUdp;
  std::string address;  // where it was heard from: "HOST:PORT" (UDP), the kit serial (MQTT), ""
  TimePoint received;
  std::optional<Json> attributes;  // an object
  std::vector<Sensor> sensors;
  std::optional<std::vector<Actuator>> actuators;
};

// A device as the registry knows it.
struct Device {
  std::string id;
  std::string name;  // attributes.name, else the id
  Json attributes = Json::object();
  std::optional<Location> location;  // from attributes (see location_of)
  std::vector<Sensor> sensors;
  std::vector<Actuator> actuators;
  Transport transport = Transport::kUdp;
  std::string address;  // last known address (see DeviceReport::address)
  TimePoint first_seen, last_seen;
  bool online = true;  // false after a configured silence
};

// The location a device states in its attributes: "location": {"lat": .., "lon": ..}, else
// "lat"/"lon" directly. Numbers or numeric strings; nullopt when absent or out of range.
std::optional<Location> location_of(const Json& attributes);

// A command's answer from a device, heard over its transport (a UDP datagram
// {"ack": "<command id>", "status": "ok"|"failed", "detail": ".."}, an MQTT kit-rpc response).
struct CommandAck {
  std::string command_id;
  bool ok = true;
  std::string detail;
};

}  // namespace outpost::core
