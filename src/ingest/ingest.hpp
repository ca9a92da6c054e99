// Ingestion of device traffic: FIWARE Real Virtual Interaction packets (data format 1.0) and
// command acknowledgements over UDP.
//
// Two parts, pure logic apart from I/O:
//   - Parser turns one datagram's bytes into core::DeviceReports or a core::CommandAck, or
//     says why it was dropped. No sockets, no clock, no logging.
//   - UdpReceiver owns the socket and one receive thread: it reads datagrams in batches,
//     parses them and hands each batch's reports to a sink in one call.
//
// The packet (seed 004, "API examples for device application developers"):
//
//   {"dataformat_version": "1.0",
//    "api_key": "...",                       optional; removed, like dataformat_version
//    "<device id>": {"<device id>": {        the nested form the seed shows, or
//    "<device id>": {                        the flat form; both are accepted
//        "sensors":   [{"value": {"unit", "primitive", "time", "values"},
//                       "configuration": [...], "attributes": {...}}, ...],
//        "actuators": [{"actions": [...], "callbacks": [...],
//                       "configuration": [...], "attributes": {...}}, ...],
//        "attributes": {...}}},
//    "<another device id>": {...}}           several devices per packet are accepted
//
// Rules (what is accepted, what is dropped and why):
//   - Size: a datagram over max_datagram bytes is dropped (too_large). A payload starting with
//     the gzip magic (1f 8b) is inflated first, into at most max_decompressed bytes; a stream
//     that would inflate to more, is corrupt or truncated, or has bytes after its end is
//     dropped (decompression). A gzip bomb costs at most max_decompressed bytes of inflating.
//   - JSON: must parse (invalid_json), nesting at most 64 deep, numbers within int64, uint64
//     or double range, strings valid UTF-8. Repeated keys at the top level are invalid_json;
//     inside a device the first occurrence of a key wins.
//   - The top level must be an object (else missing_fields) with "dataformat_version": "1.0"
//     (a string; missing or anything else: wrong_version). Every other top-level key except
//     "api_key" is a device id, and there must be at least one (missing_fields).
//   - Device ids: 1..128 bytes of UTF-8 without control characters (C0, DEL, C1), ASCII
//     spaces or '/' (invalid_id). Such ids are safe in URLs, logs and file names.
//   - Nested form: a device's value is an object; when that object has exactly one member,
//     whose key equals the device id and whose value is an object, the inner object is the
//     device; otherwise the object itself is the device (flat form).
//   - All or nothing: a packet reporting several devices is dropped entirely if any part of
//     it is malformed, so the registry never gets half a packet.
//   - Strict on structure, lenient on optional parts (missing_fields otherwise): a device is
//     an object; "sensors" and "actuators", when present, are arrays of objects; each sensor
//     has a "value" object with a "values" member (any JSON: number, array, string, ...);
//     "attributes" (device, sensor, actuator) are objects; "configuration", "actions" and
//     "callbacks" are arrays. Unknown members are ignored. A device with none of the parts is
//     accepted (a heartbeat: it updates last seen and the address).
//   - Sensor values: "unit" and "primitive" are taken when strings (else ""); "time" is
//     "YYYY-MM-DD HH:MM:SS" (UTC, as the seed shows) or ISO 8601 with or without a zone (UTC
//     when none); absent or unreadable: the receive time.
//   - Sensor ids: attributes.type, else attributes.name, each only when it is a valid id by the
//     device id rules except that inner spaces are allowed ("MPL magnetic field"); else
//     "sensor<N>" with N the sensor's index in the device's "sensors" (from 0). Duplicates are
//     not refused: a sensor whose id is already taken in its device gets the first free one of
//     "<id>#2", "<id>#3", ... in packet order.
//   - require_key: the packet must carry "api_key", a non-empty string that check_key accepts
//     for every device id in the packet (unauthorized). Without require_key "api_key" is
//     ignored.
//
// A command acknowledgement is a datagram {"ack": "<command id>", "status": "ok"|"failed",
// "detail": "..."} without "dataformat_version"; "detail" is optional, the command id follows
// the device id rules. A malformed one is missing_fields. Acks are not key-checked here: the hub
// should accept an ack only for a command it sent to the address the ack comes from.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/device.hpp"
#include "core/metrics.hpp"
#include "core/status.hpp"
#include "core/time.hpp"

namespace outpost::ingest {

// Why a datagram was dropped. Names are stable: they are the `reason` label of
// outpost_udp_dropped_total.
enum class DropReason {
  kTooLarge,       // "too_large": over max_datagram bytes
  kDecompression,  // "decompression": bad, truncated or too large (over max_decompressed) gzip
  kInvalidJson,    // "invalid_json"
  kWrongVersion,   // "wrong_version": dataformat_version missing or not "1.0"
  kMissingFields,  // "missing_fields": a required part missing or of the wrong type
  kInvalidId,      // "invalid_id": a device id breaking the id rules
  kUnauthorized,   // "unauthorized": require_key and no valid api_key for every device
};
inline constexpr size_t kDropReasonCount = 7;
std::string_view drop_reason_name(DropReason r);

// With udp.require_key: whether `key` is a valid key of `device_id`. Called on the receive
// thread for every device of every packet, so it must be fast (no password hashing per call).
using KeyCheck = std::function<bool(std::string_view device_id, std::string_view key)>;

// The outcome of parsing one datagram.
struct Parsed {
  enum class Kind { kReports, kAck, kDropped };
  Kind kind = Kind::kDropped;
  size_t reports = 0;    // kReports: how many reports were appended (at least one)
  core::CommandAck ack;  // kAck
  DropReason reason = DropReason::kInvalidJson;  // kDropped
  std::string detail;  // kDropped: what was wrong, for the log ("device 'x': sensor 2: ...")

  bool dropped() const { return kind == Kind::kDropped; }
};

// Parses datagrams. Keeps its buffers (input copy, inflate window and output, JSON tape)
// between calls, so a call allocates only what the reports themselves hold. Not thread-safe:
// one Parser per thread.
class Parser {
 public:
  // Uses cfg.max_datagram, cfg.max_decompressed and cfg.require_key. `check_key` is needed
  // only with require_key; without it every packet is then unauthorized.
  explicit Parser(const config::UdpConfig& cfg, KeyCheck check_key = {});
  ~Parser();
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  // Parses one datagram heard from `from` ("IP:PORT", "[IPv6]:PORT") at `received`.
  // A FIWARE packet appends one report per device to `out` (transport kUdp, address `from`,
  // received `received`); an ack or a drop leaves `out` as it was.
  Parsed parse(std::string_view datagram, std::string_view from, core::TimePoint received,
               std::vector<core::DeviceReport>& out);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Where the receiver's output goes. reports and ack are called on the receiver's sink thread
// ("udp-sink"), one at a time, in arrival order, while the receive thread goes on reading and
// parsing: they must not block for long, or parsed batches (at most 8) and then datagrams pile
// up in the socket buffer and the kernel drops them. check_key is called on the receive
// thread. Exceptions they throw are logged and swallowed.
// Senders are named "IP:PORT" or "[IPv6]:PORT" (IPv4-mapped IPv6 as plain IPv4, a link-local
// scope as "[fe80::1%2]:PORT"), which send() accepts back.
struct UdpSink {
  // Every report of one receive batch (up to 64 datagrams), in arrival order, in one call.
  // Not called for a batch without reports.
  std::function<void(std::vector<core::DeviceReport>&&)> reports;
  // A command acknowledgement and the "HOST:PORT" it came from. Optional.
  std::function<void(core::CommandAck, std::string from)> ack;
  // See KeyCheck; needed with udp.require_key.
  KeyCheck check_key;
};

// The UDP receiver: binds cfg.listen, reads with recvmmsg and parses on one thread ("udp-recv"),
// and hands the results to the sink on another ("udp-sink"). Metrics (registered at
// construction):
//   outpost_udp_datagrams_total, outpost_udp_bytes_total, outpost_udp_reports_total,
//   outpost_udp_acks_total, outpost_udp_dropped_total{reason="..."} (one per DropReason),
//   outpost_udp_batch_size (histogram of datagrams per recvmmsg),
//   outpost_udp_receive_buffer_bytes (the SO_RCVBUF the kernel granted),
//   outpost_udp_kernel_dropped_total (datagrams the kernel dropped on this socket, buffer full),
//   outpost_udp_host_rcvbuf_errors_total (host-wide Udp+Udp6 RcvbufErrors, /proc/net/snmp*).
// Drops are logged at most once per reason per 10 s, with the count suppressed since.
class UdpReceiver {
 public:
  UdpReceiver(const config::UdpConfig& cfg, UdpSink sink, core::Registry& metrics);
  // Stops the thread and closes the socket.
  ~UdpReceiver();
  UdpReceiver(const UdpReceiver&) = delete;
  UdpReceiver& operator=(const UdpReceiver&) = delete;

  // Binds cfg.listen (IPv4 or IPv6, "[::]:PORT" also receives IPv4; port 0 picks a free port),
  // sets the receive buffer, starts the two threads and logs "udp receiving on HOST:PORT"
  // (not "listening on", which names the HTTP address that scripts look for).
  // Returns the bound address, or a Status naming the address and the error. Call once.
  core::Result<std::string> start();
  // Stops the receive thread (promptly: it is woken, not polled), waits until the sink has had
  // every batch received, and stops the sink thread. The socket stays open for send() until
  // destruction. Idempotent; safe from any thread but a sink.
  void stop();
  // The bound "HOST:PORT" ("[::1]:PORT" for IPv6); "" before start().
  std::string local_address() const;
  // Sends one datagram to a numeric "IP:PORT" / "[IPv6]:PORT" from the bound socket, so a
  // device behind NAT gets it from the port it talks to. Never blocks: a full send buffer is
  // Busy. Thread-safe; valid from start() until destruction (Unavailable before).
  core::Status send(const std::string& address, std::string_view payload);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::ingest
