// MQTT: a reusable client (a thin RAII wrapper around libmosquitto's `struct mosquitto*` that
// keeps itself connected) and, on top of it: AstroPlant kits (measurements in, kit-rpc commands
// out, their answers in); Home Assistant (discovery, states and commands of this board); and an
// upstream outbox destination (QoS 1 publishes confirmed by PUBACK).
//
// Topics of a kit (one kit = one device, id = its serial):
//   kit/{serial}/measurement/raw        in,  QoS 1  -> DeviceReport, sensor "<p>.<q>"
//   kit/{serial}/measurement/aggregate  in,  QoS 1  -> DeviceReport, sensor "<p>.<q>.aggregate"
//   kit/{serial}/kit-rpc/request        out, QoS 1  <- send_command()
//   kit/{serial}/kit-rpc/response       in,  QoS 1  -> KitAck
// (<p> = peripheral, <q> = quantity type, each a string or an integer as the kit sent it.)
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/config.hpp"
#include "core/device.hpp"
#include "core/metrics.hpp"
#include "core/model.hpp"
#include "core/status.hpp"
#include "core/time.hpp"
#include "upstream/sink.hpp"

namespace outpost::mqtt {

// ---------------------------------------------------------------------------------------------
// The client

// "mqtt://HOST:PORT" or "mqtts://HOST:PORT" (HOST may be "[v6]"). Invalid otherwise.
struct BrokerUrl {
  std::string host;
  uint16_t port = 1883;
  bool tls = false;
};
core::Result<BrokerUrl> parse_broker_url(std::string_view url);

struct ClientHealth {
  bool connected = false;
  // "connected"; "connecting since <ISO time>" before the first attempt has failed;
  // "connecting: <error> since <ISO time>" while the broker cannot be reached (the time the
  // fault started, the latest error); "stopped" after stop().
  std::string detail;
  uint64_t reconnects = 0;  // connection attempts after the first
};

// Metrics the owner registered for this client (names are the owner's); any may be null.
struct ClientMetrics {
  core::Gauge* connected = nullptr;     // 1 while connected, else 0
  core::Counter* reconnects = nullptr;  // connection attempts after the first
};

struct Message {
  std::string_view topic;
  std::string_view payload;
  int qos = 0;
  bool retain = false;
};

class Client;

// Called on the client's thread; they must not block (post elsewhere for slow work). An
// exception they throw is caught and logged. Any may be empty.
struct ClientCallbacks {
  // After every accepted CONNACK: subscribe here (with clean sessions, the default, the broker
  // has forgotten the subscriptions of the last connection).
  std::function<void(Client&)> on_connect;
  std::function<void(const Message&)> on_message;
  // The broker confirmed the message publish_with_id() returned `mid` for: its PUBACK (QoS 1)
  // or PUBCOMP (QoS 2) arrived; a QoS 0 message once it was written to the socket. Once per
  // message, also for one that libmosquitto resent after a reconnect. It may run before
  // publish_with_id() has returned to its caller: a caller that keeps ids holds its own lock
  // across the call and takes it here.
  std::function<void(int mid)> on_publish;
};

// What the broker publishes on the client's behalf when the connection ends without a
// DISCONNECT: the process died, the network went away, the keepalive ran out. stop() sends a
// DISCONNECT, so the will is not published then (publish its payload yourself before stop()).
struct Will {
  std::string topic;
  std::string payload;
  int qos = 1;
  bool retain = true;
};

struct ClientOptions {
  std::optional<Will> will;
  // false: a persistent session. The broker keeps the client's subscriptions and queues QoS 1/2
  // messages for it while it is away (and across its own restart, with persistence on), and
  // delivers them when the same client id connects again. Needs a client id.
  bool clean_session = true;
};

// One connection to one broker, kept up by one thread of its own (never an HTTP io thread).
//
// The thread connects at once, and after a failure or a lost connection retries with
// exponential backoff from 100 ms up to cfg.reconnect_max_backoff, forever: a broker down at
// start-up, an unresolvable host, a TLS or CONNACK refusal are all retried, logged once when
// the fault starts and once when it clears (a warning, then an info line).
//
// TLS for mqtts://: cfg.ca_file, else the system's CA directory /etc/ssl/certs; the broker's
// host name is verified. Username/password when cfg.username is set. MQTT 3.1.1; clean sessions
// unless options.clean_session is false; options.will is set on every connection.
//
// The socket is driven with poll() and mosquitto_loop_read/write/misc rather than
// mosquitto_loop_start(): its loop_forever() ends the thread for good on a DNS, TLS or
// protocol error, mosquitto_loop()'s select() refuses sockets numbered >= FD_SETSIZE (a busy
// server passes 1024 open files), and its delays are whole seconds.
//
// All members are thread-safe. The registry behind `metrics` must outlive the client.
class Client {
 public:
  // Starts the thread. Invalid when the url does not parse, cfg.ca_file is unreadable, the will
  // has a bad topic or QoS, or a persistent session has no client id; the broker's reachability
  // is never an error here. `name` prefixes log lines ("mqtt kits: ...").
  static core::Result<std::unique_ptr<Client>> create(const config::MqttConfig& cfg,
                                                      std::string client_id, std::string name,
                                                      ClientCallbacks callbacks,
                                                      ClientMetrics metrics = {},
                                                      ClientOptions options = {});
  ~Client();  // stop()
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Queue a subscription / a message for the client's thread. Unavailable while not connected
  // (nothing is queued then), Invalid for a bad topic or QoS. QoS 1/2 messages that are queued
  // when the connection drops right after this returns are resent by libmosquitto once it is
  // back. Subscriptions do not survive a reconnect: renew them in on_connect.
  core::Status subscribe(const std::string& pattern, int qos);
  core::Status publish(const std::string& topic, std::string_view payload, int qos,
                       bool retain = false);
  // The same, returning the message id that callbacks.on_publish will be called with once the
  // broker confirmed the message.
  core::Result<int> publish_with_id(const std::string& topic, std::string_view payload, int qos,
                                    bool retain = false);

  bool connected() const;
  ClientHealth health() const;

  // Sends DISCONNECT when connected (waits at most 1 s for it to leave), joins the thread.
  // Prompt: it interrupts a backoff wait (but not a name lookup in progress). Idempotent; no
  // callback runs after it returns. Not from a callback.
  void stop();

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// AstroPlant kits: the pure part

// Why a message from a kit was dropped; the `reason` label of outpost_mqtt_dropped_total.
enum class DropReason {
  kTooLarge,       // payload over kMaxPayload bytes
  kBadTopic,       // not kit/<serial>/{measurement/raw,measurement/aggregate,kit-rpc/response},
                   // or the serial is not valid_serial()
  kInvalidJson,    // not JSON, not an object, or nested deeper than 32 levels
  kMissingFields,  // a required field is absent or null
  kBadType,        // a field of the wrong JSON type ("value": "21.5", a float peripheral, ...)
  kBadValue,       // right type, unusable value: non-finite number, negative id, count < 1,
                   // minimum > maximum, average outside [minimum, maximum], empty or
                   // over-long or control-character strings
  kBadTime,        // a time that is neither ISO 8601 nor epoch milliseconds in 1970..9999, or
                   // a window that ends before it starts
};
inline constexpr size_t kDropReasons = 7;
// "too_large", "bad_topic", "invalid_json", "missing_fields", "bad_type", "bad_value", "bad_time"
std::string_view drop_reason_name(DropReason r);

inline constexpr size_t kMaxPayload = 64 * 1024;
inline constexpr size_t kMaxSerial = 128;

// A kit serial: 1..128 bytes of visible ASCII (0x21..0x7e) other than '+', '#' and '/'.
bool valid_serial(std::string_view serial);

// A kit's answer to a command, with the kit it came from (the hub may check it is the kit the
// command went to).
struct KitAck {
  std::string serial;
  core::CommandAck ack;
};

struct Drop {
  DropReason reason;
  std::string detail;  // for the log: what was wrong, e.g. "'value' is not a number"
};

using KitMessage = std::variant<core::DeviceReport, KitAck, Drop>;

// Turns one message of a kit into a report or an ack, or says why it is dropped. Pure.
//
// Payloads are JSON objects; unknown fields are ignored. Where kits used several names for a
// field, the first name present in this order is used:
//   peripheral:     "peripheral", "peripheral_id", "peripheralId"       string or integer >= 0
//   quantity type:  "quantity_type", "quantityType", "quantity_type_id", "quantityTypeId"
//                                                                        string or integer >= 0
//   raw:            "value" (number, required); "datetime", "dateTime", "timestamp" (optional)
//   aggregate:      "average", "avg", "mean" (number, required); "count" (integer >= 1),
//                   "minimum"/"min", "maximum"/"max" (numbers) optional;
//                   window start: "datetime_start", "datetimeStart", "start", else the same
//                   names inside a "window" object; the end likewise with "datetime_end",
//                   "datetimeEnd", "end" (all optional)
//   unit:           "unit" (string, optional) -> SensorValue::unit
//   response:       "id" (string, or integer >= 0 rendered in decimal; required);
//                   "status" (string): ok iff it is "ok" (any case); without "status", a
//                   non-null "error" means failed, else a "result" means ok, else
//                   missing_fields; detail from "detail", else "error", else "result"
//                   (a string as is, other JSON serialized, cut to 1024 bytes)
// Times are ISO 8601 strings (core::parse_iso8601) or epoch milliseconds (numbers).
//
// A measurement becomes DeviceReport{id = address = serial, transport kMqtt, received,
// attributes/actuators unset} with one Sensor whose attributes are {"peripheral", "quantity_type"}
// as sent and whose value time is the measurement's time (aggregate: the window's end), else
// `received`:
//   raw:       id "<p>.<q>", primitive "double", values = the number (as a double)
//   aggregate: id "<p>.<q>.aggregate", primitive "aggregate", values = {"count", "average",
//              "minimum", "maximum", "start", "end"} (times in ISO 8601; null when not sent)
KitMessage parse_kit_message(std::string_view topic, std::string_view payload,
                             core::TimePoint received);

// The request a command becomes: its topic and payload {"id", "target", "parameter", "value"}.
// Invalid when the serial is not valid_serial() or the command id is empty.
struct KitRequest {
  std::string topic;
  std::string payload;
};
core::Result<KitRequest> make_kit_request(std::string_view serial, std::string_view command_id,
                                          std::string_view target, std::string_view parameter,
                                          const core::Json& value);

// ---------------------------------------------------------------------------------------------
// AstroPlant kits: the client

// Called on the MQTT thread; must not block. Either may be empty.
struct KitSink {
  std::function<void(core::DeviceReport)> report;
  std::function<void(KitAck)> ack;
};

struct KitHealth {
  bool connected = false;
  std::string detail;  // see ClientHealth::detail
  uint64_t reconnects = 0;
  uint64_t messages = 0;  // received, dropped ones included
  uint64_t dropped = 0;
};

// Subscribes (QoS 1, renewed on every connect) to kit/+/measurement/raw,
// kit/+/measurement/aggregate and kit/+/kit-rpc/response, parses what arrives with
// parse_kit_message and hands reports and acks to the sink. Drops are counted by reason and
// logged at most once per 10 s (with the number suppressed since).
//
// Metrics: outpost_mqtt_messages_total, outpost_mqtt_dropped_total{reason=...},
// outpost_mqtt_connected, outpost_mqtt_reconnects_total; register once per registry (one
// KitClient per process). All members are thread-safe; the registry must outlive it.
class KitClient {
 public:
  // Connects in the background (see Client): the broker may be down. The client id is
  // cfg.client_id, else `default_client_id`. Invalid when the config is (url, ca_file).
  static core::Result<std::unique_ptr<KitClient>> create(const config::MqttConfig& cfg,
                                                         std::string default_client_id,
                                                         KitSink sink, core::Registry& metrics);
  ~KitClient();  // stop()

  // Publishes make_kit_request(...) with QoS 1. Unavailable (the message names the broker's
  // state) when not connected: nothing is queued, so a command never reaches a kit long after
  // the hub has given up on it. Invalid for a bad serial or empty command id.
  core::Status send_command(std::string_view serial, std::string_view command_id,
                            std::string_view target, std::string_view parameter,
                            const core::Json& value);

  KitHealth health() const;
  // Disconnects cleanly and joins the thread; idempotent; the sink is not called after it.
  // Not from a sink callback.
  void stop();

 private:
  struct State;
  KitClient(std::unique_ptr<State> state, std::unique_ptr<Client> client);
  std::unique_ptr<State> state_;
  std::unique_ptr<Client> client_;
};

// ---------------------------------------------------------------------------------------------
// Home Assistant: the pure part
//
// Home Assistant's MQTT discovery: one retained config message per entity, on
//   <discovery_prefix>/<component>/<node_id>/<object_id>/config
// makes the entity appear in Home Assistant, grouped under one device, with no setup there.
// The node's own topics (<base> = HaNode::base_topic, e.g. "outpost/<node id>"):
//   <base>/availability     "online" (retained, after every connect); "offline" (retained: the
//                           last will when Outpost dies or loses the network, and at a clean stop)
//   <base>/<object>/state   the entity's state, retained: a number ("47.3") or "ON"/"OFF"
//   <base>/<object>/set     commands from Home Assistant: "ON"/"OFF" (switch), a number (number)

enum class HaComponent { kSensor, kBinarySensor, kSwitch, kNumber };
// "sensor", "binary_sensor", "switch", "number": the <component> of the discovery topic.
std::string_view ha_component_name(HaComponent c);

// One entity of the board in Home Assistant.
struct HaEntity {
  HaComponent component = HaComponent::kSensor;
  std::string object_id;     // [A-Za-z0-9_-]+, unique within the node: "cpu_temp_c", "led"
  std::string name;          // shown in Home Assistant: "CPU temperature", "LED"
  std::string state_sensor;  // the board's reading that carries its state ("cpu_temp_c",
                             // "led_state"); "" when none does (the servo: commands only)
  std::string device_class;  // sensor, binary_sensor: "temperature", ...; "" for none
  std::string unit;          // sensor, number: unit_of_measurement ("°C", "°"); "" for none
  std::string state_class;   // sensor: "measurement"; "" for none
  std::string target;        // switch, number: the hub command's target ("led", "servo")...
  std::string parameter;     // ...and its parameter ("state", "angle")
  double min = 0, max = 0, step = 1;  // number
};

// The device all entities belong to, and where its topics live.
struct HaNode {
  std::string node_id;  // [A-Za-z0-9_-]+
  std::string discovery_prefix = "homeassistant";
  std::string base_topic;   // "outpost/<node id>"
  std::string device_name;  // the device id
  std::string model;        // "Raspberry Pi 3 Model B", ...
  std::string sw_version;   // Outpost's version
};

// The node from the config: node_id as configured, else the device id with every character
// outside [A-Za-z0-9_-] replaced by '_' (the config checks a configured one); base topic as
// configured, else "outpost/<node id>".
HaNode ha_node(const config::HomeAssistantConfig& cfg, const std::string& device_id,
               std::string model, std::string sw_version);

// The broker Home Assistant is reached on: homeassistant.url with its username, password and
// ca_file when set, else [mqtt]'s url and credentials; keepalive and backoff from [mqtt]. The
// client id: homeassistant.client_id, else "outpost-<device id>-ha" (two connections with one
// id would take turns throwing each other off the broker).
config::MqttConfig ha_broker(const config::HomeAssistantConfig& ha, const config::MqttConfig& mqtt,
                             const std::string& device_id);

std::string ha_availability_topic(const HaNode& n);                // <base>/availability
std::string ha_state_topic(const HaNode& n, const HaEntity& e);    // <base>/<object>/state
std::string ha_command_topic(const HaNode& n, const HaEntity& e);  // <base>/<object>/set
bool ha_takes_commands(const HaEntity& e);                         // switch and number

// An entity's discovery message (retained): its topic and config, with the fields Home
// Assistant requires and uses: name, unique_id ("outpost_<node>_<object>"), the availability
// topic and payloads, the device block (identifiers, name, manufacturer, model, sw_version),
// origin, qos; then per component
//   sensor:        state_topic, device_class, unit_of_measurement, state_class (those set)
//   binary_sensor: state_topic, payload_on "ON", payload_off "OFF", device_class (if set)
//   switch:        state_topic, command_topic, payload_on/off, state_on/off, optimistic false
//   number:        command_topic, min, max, step, mode "slider", unit_of_measurement (if set),
//                  and state_topic
struct HaDiscovery {
  std::string topic;
  core::Json payload;
};
HaDiscovery ha_discovery(const HaNode& n, const HaEntity& e);

// An entity's state message for a reading's value: a sensor's or number's value as a number,
// "ON" (non-zero) or "OFF" for a binary_sensor or switch. nullopt for a value that is not
// finite (a failed sensor read), which Home Assistant could not show.
std::optional<std::string> ha_state_payload(const HaEntity& e, double value);

// What a command payload from Home Assistant becomes as the hub command's value: a switch takes
// "ON" or "OFF" (any case) -> "on" / "off"; a number takes a decimal number within [min, max]
// -> the number. Invalid, saying why, for anything else (another component, empty, "ONN",
// "abc", NaN, out of range).
core::Result<core::Json> ha_command_value(const HaEntity& e, std::string_view payload);

// The board's actuators as entities, driven by how each describes itself (core::Actuator; see
// app/'s board report): named by attributes.name; an action with parameter "state" makes a
// switch (commands <name>/state "on"|"off"; its state is the reading "<name>_state" when the
// board has one, and the outcome of each command); an action with a numeric primitive
// ("double", "int", "float", "number") and numeric attributes.min < attributes.max makes a
// number over that range (unit "deg" shown as "°"). Others, and actuators without a name, are
// left out. The shown name is attributes.label, else the name ("led" as "LED": up to three
// letters in capitals, else the first capitalized, '_' as ' ').
std::vector<HaEntity> ha_actuator_entities(const std::vector<core::Actuator>& actuators);

// ---------------------------------------------------------------------------------------------
// Home Assistant: the publisher

// Carries a command from Home Assistant into the hub (app/ wires it to hub::Hub::submit for
// this board, who = "homeassistant", so it takes the same path as any command and becomes a
// "command" event): ok once the device did it; an error is the command's failure. Called on the
// MQTT thread; must not block for long.
using HaSubmit = std::function<core::Status(const std::string& target, const std::string& parameter,
                                            const core::Json& value)>;

struct HaHealth {
  bool connected = false;
  std::string detail;  // see ClientHealth::detail
  uint64_t reconnects = 0;
  uint64_t commands = 0;  // commands from Home Assistant carried to the hub, failed ones included
  uint64_t dropped = 0;   // command messages dropped (bad payload, unknown entity, retained)
};

// Publishes the board to Home Assistant over its own MQTT connection (a Client with the last
// will "offline", retained, on the availability topic).
//
// On every connect: subscribes (QoS 1) to <base>/+/set and to <discovery_prefix>/status, then
// publishes (QoS 1, retained) each entity's discovery config, "online", and the latest known
// state of each entity. When Home Assistant announces itself ("online" on
// <discovery_prefix>/status, after its own restart) the same is published again.
//
// States: on_readings() takes every reading the hub accepts; those of the board whose sensor is
// an entity's state_sensor are published to its state topic (retained, QoS 1) when they differ
// from the last one published, and kept for the next connect while the broker is away.
//
// Commands on <base>/<object>/set go through ha_command_value() and `submit`; once the device
// did it, the new state is published at once. Dropped and counted (never acted on): a retained
// command (an old one; acting on it at every reconnect would replay it), a topic of no entity
// that takes commands, a bad payload; logged at most once per 10 s.
//
// Metrics: outpost_homeassistant_connected, outpost_homeassistant_reconnects_total,
// outpost_homeassistant_commands_total{outcome="ok"|"failed"},
// outpost_homeassistant_dropped_total{reason="bad_payload"|"unknown_entity"|"retained"},
// outpost_homeassistant_states_total (state messages published). Once per registry.
// All members are thread-safe; the registry must outlive it.
class HomeAssistant {
 public:
  // Connects in the background (the broker may be down; see Client). `broker` from
  // ha_broker(). Invalid when the broker config is, or an entity's object id is not
  // [A-Za-z0-9_-]+ or not unique.
  static core::Result<std::unique_ptr<HomeAssistant>> create(const config::MqttConfig& broker,
                                                             HaNode node,
                                                             std::vector<HaEntity> entities,
                                                             std::string device_id, HaSubmit submit,
                                                             core::Registry& metrics);
  ~HomeAssistant();  // stop()

  // Readings of any device (the hub's readings observer); only the board's are used. Quick and
  // non-blocking (the publish is queued for the MQTT thread); any thread.
  void on_readings(const std::vector<core::Reading>& readings);
  // Sets an entity's state from outside the readings (the servo's angle at start), as a reading
  // would. Unknown object ids are ignored.
  void set_state(std::string_view object_id, double value);

  const std::vector<HaEntity>& entities() const;
  HaHealth health() const;
  // Publishes "offline" (retained) when connected, disconnects cleanly, joins the thread.
  // Idempotent; `submit` is not called after it returns. Not from `submit`.
  void stop();

 private:
  struct State;
  HomeAssistant(std::unique_ptr<State> state, std::unique_ptr<Client> client);
  std::unique_ptr<State> state_;
  std::unique_ptr<Client> client_;  // after state_: it goes first, with the thread that uses state_
};

// ---------------------------------------------------------------------------------------------
// Upstream: an outbox destination over MQTT

// The MQTT payload of an outbox message (pure): a JSON envelope that carries the message id, so
// a consumer can deduplicate (delivery is at least once, see UpstreamSink):
//   {"id": "...", "kind": "summary", "created": "<ISO 8601>", "content_type": "application/json",
//    "body": <the body, byte for byte>}
// A body that is not a JSON document (a JPEG snapshot, anything else) is carried as
//   "body_base64": "<standard base64 with padding>"
// in place of "body", so every message on the topic has the same shape and nothing is lost.
std::string upstream_envelope(const upstream::Message& m);

// One outbox destination: each message is published, as upstream_envelope(), on one topic with
// QoS 1 (or 2), not retained, over a connection of its own (a Client; see there for reconnects,
// TLS and credentials). A message counts as delivered once the broker's PUBACK (PUBCOMP for
// QoS 2) for it arrived.
//
// deliver() publishes the batch in order, waits up to the timeout for the confirmations, and
// reports the leading messages confirmed. Not connected: kRetry with the broker's state as the
// error (during the very first connection attempt it waits for it, within the timeout). A
// message the client refuses for good (a payload over the broker's packet size) is kDead.
//
// At least once, never lost: a message whose PUBACK did not arrive in time stays with the
// outbox. libmosquitto resends the messages in flight when the connection comes back, and a
// PUBACK that arrives after deliver() returned still counts: the next deliver() reports that
// message delivered without publishing it again. A message still unconfirmed after
// kRepublishAfter calls is published again. So a consumer may see a message twice (a PUBACK lost
// with the connection, a resend that crossed a republish): it deduplicates on "id".
//
// PUBACK means the broker took the message, not that any subscriber has it: a consumer that must
// not miss messages while it is away uses a persistent session (clean session off, QoS 1
// subscription) on a broker with persistence.
//
// Metrics (labels client_id="<client id>"): outpost_mqtt_upstream_connected,
// outpost_mqtt_upstream_reconnects_total, outpost_mqtt_upstream_published_total (PUBLISH packets
// handed to the client, republished ones included), outpost_mqtt_upstream_confirmed_total
// (PUBACKs). Register each client id once per registry.
//
// deliver() from one thread at a time (the Sink contract); the rest from any thread.
class UpstreamSink final : public upstream::Sink {
 public:
  static constexpr size_t kMaxBatch = 100;
  static constexpr uint32_t kRepublishAfter = 3;

  // Connects in the background. Invalid when the broker config is (url, ca_file), the topic is
  // empty, has a wildcard ('+', '#') or a NUL, or the QoS is not 1 or 2 (QoS 0 has no
  // confirmation). The client id should be unique on the broker (it takes over a connection of
  // the same id); empty lets libmosquitto choose one.
  static core::Result<std::unique_ptr<UpstreamSink>> create(const config::MqttConfig& broker,
                                                            std::string topic, int qos,
                                                            std::string client_id,
                                                            core::Registry& metrics);
  ~UpstreamSink() override;  // disconnects; no callback runs after it

  upstream::Delivery deliver(std::span<const upstream::Message> batch,
                             std::chrono::milliseconds timeout) override;
  size_t max_batch() const override { return kMaxBatch; }
  // "mqtt://HOST:PORT topic TOPIC" (the url never holds credentials: they are separate keys).
  std::string describe() const override;

  ClientHealth health() const;

 private:
  struct State;
  UpstreamSink(std::unique_ptr<State> state, std::unique_ptr<Client> client);
  std::unique_ptr<State> state_;
  std::unique_ptr<Client> client_;  // after state_: it goes first, with the thread that uses state_
};

// The factory the outbox's sink factory calls for an MQTT destination: UpstreamSink::create.
core::Result<std::unique_ptr<upstream::Sink>> make_upstream_sink(const config::MqttConfig& broker,
                                                                 std::string topic, int qos,
                                                                 std::string client_id,
                                                                 core::Registry& metrics);

}  // namespace outpost::mqtt
