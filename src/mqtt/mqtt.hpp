// MQTT: a reusable client (a thin RAII wrapper around libmosquitto's `struct mosquitto*` that
// keeps itself connected) and, on top of it, AstroPlant kits: measurements in, kit-rpc
// commands out, their answers in.
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
#include <string>
#include <string_view>
#include <variant>

#include "config/config.hpp"
#include "core/device.hpp"
#include "core/metrics.hpp"
#include "core/status.hpp"
#include "core/time.hpp"

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
  // After every accepted CONNACK (the session is clean each time): subscribe here.
  std::function<void(Client&)> on_connect;
  std::function<void(const Message&)> on_message;
};

// One connection to one broker, kept up by one thread of its own (never an HTTP io thread).
//
// The thread connects at once, and after a failure or a lost connection retries with
// exponential backoff from 100 ms up to cfg.reconnect_max_backoff, forever: a broker down at
// start-up, an unresolvable host, a TLS or CONNACK refusal are all retried, logged once when
// the fault starts and once when it clears (a warning, then an info line).
//
// TLS for mqtts://: cfg.ca_file, else the system's CA directory /etc/ssl/certs; the broker's
// host name is verified. Username/password when cfg.username is set. Clean sessions, MQTT 3.1.1.
//
// The socket is driven with poll() and mosquitto_loop_read/write/misc rather than
// mosquitto_loop_start(): its loop_forever() ends the thread for good on a DNS, TLS or
// protocol error, mosquitto_loop()'s select() refuses sockets numbered >= FD_SETSIZE (a busy
// server passes 1024 open files), and its delays are whole seconds.
//
// All members are thread-safe. The registry behind `metrics` must outlive the client.
class Client {
 public:
  // Starts the thread. Invalid when the url does not parse or cfg.ca_file is unreadable; the
  // broker's reachability is never an error here. `name` prefixes log lines ("mqtt kits: ...").
  static core::Result<std::unique_ptr<Client>> create(const config::MqttConfig& cfg,
                                                      std::string client_id, std::string name,
                                                      ClientCallbacks callbacks,
                                                      ClientMetrics metrics = {});
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

}  // namespace outpost::mqtt
