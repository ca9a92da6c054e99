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
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/time.hpp"

namespace outpost::core {

using Json = nlohmann::json;

// A free-form part of a device (attributes, configuration, actions, callbacks, a sensor's
// values): an immutable JSON value that every copy shares. A device repeats its description in
// every report; the UDP parser hands over the value it already holds when a part is unchanged,
// so a repeat costs a comparison instead of a tree of allocations, and copying a Device (for a
// query, for the store) copies pointers. Read it with * and ->: it never turns into a Json by
// itself, so every copy of a tree is written out. Replace it by assignment from a Json.
// Thread-safe as a shared_ptr<const Json> is: copies may be used on any thread.
class SharedJson {
 public:
  SharedJson() : SharedJson(null()) {}
  SharedJson(Json j);  // NOLINT(google-explicit-constructor): a part is set from a Json
  // Braces would be read as the arguments of a constructor, so {{"type", x}} would become the
  // array ["type", x]: write Json{{"type", x}}.
  SharedJson(std::initializer_list<nlohmann::detail::json_ref<Json>>) = delete;
  // The empty object, array and null, shared process-wide: defaults that allocate nothing
  // and count no references.
  static const SharedJson& object();
  static const SharedJson& array();
  static const SharedJson& null();

  const Json& operator*() const { return *p_; }
  const Json* operator->() const { return p_.get(); }
  // The same value, not merely an equal one (a repeat that the parser reused).
  bool same(const SharedJson& o) const { return p_ == o.p_; }
  friend bool operator==(const SharedJson& a, const SharedJson& b) { return a.same(b) || *a == *b; }
  friend std::ostream& operator<<(std::ostream& o, const SharedJson& v) { return o << *v; }

 private:
  // A process-wide value: a pointer that owns nothing (the aliasing constructor with no
  // owner), so copies of the defaults touch no reference count that other threads touch too.
  // The value is never destroyed, so copies held by anything that outlives the static (other
  // statics, threads still running at exit) stay valid.
  struct Static {};
  SharedJson(Static, const Json* j) : p_(std::shared_ptr<const Json>(), j) {}
  std::shared_ptr<const Json> p_;
};

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
  SharedJson values;      // a number, an array of numbers, a string, ... as received
};

struct Sensor {
  // Unique within its device: attributes.type, else attributes.name, else "sensor<N>" (its
  // index in the report). The `sensor` of the readings stored for it.
  std::string id;
  SharedJson attributes = SharedJson::object();    // as stated: type, name, vendor, power, ...
  SharedJson configuration = SharedJson::array();  // as stated
  std::optional<SensorValue> value;                // the latest
};

// An actuator as the device describes it (FIWARE: actions it accepts, callbacks, its
// configuration). Commands name an actuator by `target`: an action's "parameter" or a
// callback's "target".
struct Actuator {
  SharedJson actions = SharedJson::array();
  SharedJson callbacks = SharedJson::array();
  SharedJson configuration = SharedJson::array();
  SharedJson attributes = SharedJson::object();
};

// What one message (a UDP packet, an MQTT measurement, the local collector) says about a
// device. The hub merges it into the registry: sensors listed here replace the sensor of the
// same id (others stay); attributes and actuators, when present, replace the stored ones.
struct DeviceReport {
  std::string id;
  Transport transport = Transport::kUdp;
  std::string address;  // where it was heard from: "HOST:PORT" (UDP), the kit serial (MQTT), ""
  TimePoint received;
  std::optional<SharedJson> attributes;  // an object
  std::vector<Sensor> sensors;
  std::optional<std::vector<Actuator>> actuators;
};

// A device as the registry knows it.
struct Device {
  std::string id;
  std::string name;  // attributes.name, else the id
  SharedJson attributes = SharedJson::object();
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
