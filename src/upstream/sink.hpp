// What carries outbox messages to one upstream destination: the interface between the outbox
// (upstream/, which keeps messages durable and orders, retries and dead-letters them) and a
// transport (HTTP and another Outpost hub here in upstream/; MQTT in mqtt/).
//
// A sink only talks to its destination. It never touches the store: the outbox deletes what a
// sink reports delivered, keeps what it reports for retry, and moves to the dead letters what it
// reports dead.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "core/time.hpp"

namespace outpost::upstream {

// One outbox message as a sink sees it.
struct Message {
  std::string id;            // idempotency key, unique per destination; receivers deduplicate on it
  std::string kind;          // "summary", "alert", "event", "snapshot", "reading"...
  std::string content_type;  // "application/json", or "image/jpeg" for a snapshot
  std::string body;          // a JSON document, or the bytes of a JPEG
  core::TimePoint created{};
  uint32_t attempts = 0;     // earlier delivery attempts
};

enum class Outcome {
  kDelivered,  // every message of the batch was confirmed
  kRetry,      // messages[delivered] was not confirmed and may be next time (down, 5xx, 429, time-out)
  kDead,       // the destination refused messages[delivered] for good (a 4xx other than 408/429)
};

struct Delivery {
  size_t delivered = 0;  // how many leading messages of the batch the destination confirmed
  Outcome rest = Outcome::kDelivered;
  std::string error;     // why messages[delivered] was not confirmed, for the log and the API
};

class Sink {
 public:
  virtual ~Sink() = default;

  // Delivers `batch` (oldest first, never empty) in order, and returns once every message is
  // confirmed or one is not, within about `timeout` in all. A message counts as delivered only
  // once its destination confirmed it (HTTP 2xx, MQTT PUBACK). Called from one thread at a time
  // (the destination's own); may block for up to `timeout`.
  virtual Delivery deliver(std::span<const Message> batch, std::chrono::milliseconds timeout) = 0;

  // How many messages deliver() takes at once (1 for a sink that sends one message per request).
  virtual size_t max_batch() const = 0;

  // For logs and GET /api/outbox: "http://127.0.0.1:9000/ingest", "mqtt://broker:1883 topic t".
  // Never contains a password or a header value.
  virtual std::string describe() const = 0;
};

}  // namespace outpost::upstream
