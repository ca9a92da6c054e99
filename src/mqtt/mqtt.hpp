// MQTT: AstroPlant kits: measurements in, kit-rpc commands out, their answers in.
//
// Topics of a kit (one kit = one device, id = its serial):
//   kit/{serial}/measurement/raw        in,  QoS 1  -> DeviceReport, sensor "<p>.<q>"
//   kit/{serial}/measurement/aggregate  in,  QoS 1  -> DeviceReport, sensor "<p>.<q>.aggregate"
//   kit/{serial}/kit-rpc/request        out, QoS 1  <- send_command()
//   kit/{serial}/kit-rpc/response       in,  QoS 1  -> KitAck
// (<p> = peripheral, <q> = quantity type, each a string or an integer as the kit sent it.)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "core/device.hpp"
#include "core/status.hpp"
#include "core/time.hpp"

namespace outpost::mqtt {

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

}  // namespace outpost::mqtt
