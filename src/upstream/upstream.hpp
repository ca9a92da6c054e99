// Upstream delivery: everything that leaves the device goes through a durable outbox.
//
// A producer (summaries, alerts, chosen events, camera snapshots) offers a message; the Outbox
// commits one copy per destination that takes its kind to the store's outbox table and only then
// acknowledges the producer. One delivery thread per destination takes the oldest pending batch,
// hands it to the destination's Sink (sink.hpp: HTTP(S) here, MQTT in mqtt/), deletes what the
// destination confirmed, moves what it refused for good to the dead letters, and retries the rest
// with exponential backoff and jitter, in order. The outbox lives in the store, so delivery
// resumes where it stopped after a restart or a crash; a message is deleted only once confirmed
// (at-least-once: receivers deduplicate on the message id, as a hub's POST /api/ingest does).
//
// The envelope: an HTTP destination gets JSON messages as one POST of
//   {"source": "<device id>", "messages": [{"id", "kind", "created", "attempts", "body": {...}}]}
// and a non-JSON message (a snapshot) alone, as its bytes with its Content-Type and the headers
// Idempotency-Key (the id), X-Outpost-Source, X-Outpost-Kind and X-Outpost-Created. A hub's
// POST /api/ingest accepts that same envelope (parse_ingest below).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/metrics.hpp"
#include "core/model.hpp"
#include "core/status.hpp"
#include "core/summary.hpp"
#include "store/store.hpp"
#include "upstream/sink.hpp"

namespace outpost::upstream {

// Builds the Sink of one destination. app/ passes one that knows every transport it has; the
// HTTP(S) one is make_http_sink. It returns Status::unavailable (or invalid) with a message for
// the operator when it cannot carry that destination; start-up then fails naming it.
using SinkFactory = std::function<core::Result<std::unique_ptr<Sink>>(const config::UpstreamDestination&)>;

// The HTTP(S) sink of `d` (its url must be http:// or https://): POSTs batches in the envelope
// above, from `source` (this device's id). Invalid when the URL is not http(s) or ca_file cannot
// be read. Responses: 2xx delivered; 408, 429, 5xx, 3xx (redirects are not followed), a time-out
// or a connection error: retry; any other 4xx: dead — for a batch of several messages the sink
// then sends them one by one, so only the message the destination refuses is dead-lettered.
// https:// loads the TLS plugin (outpost-tls.so) from `tls_plugin`, or when that is empty from
// beside the executable, else ../lib/outpost/; unavailable, naming where it looked, without it.
core::Result<std::unique_ptr<Sink>> make_http_sink(const config::UpstreamDestination& d, std::string source,
                                                   const std::string& tls_plugin = {});

// The JSON envelope of `batch` (JSON messages only) from `source`.
std::string envelope(std::string_view source, std::span<const Message> batch);

// The body of an event's outbox message: {"device", "kind", "time", "payload"}. (Not the local
// event id: the message is built before the transaction that gives the event its id.)
std::string event_body(const core::Event& e);

// A POST /api/ingest request, checked: the source and the items to store. Readings come from
// messages of kind "reading" (body {"device", "sensor", "time", "value", "unit"?}); any other
// kind becomes an event of that kind: device = body.device, time = body.time, else
// body.period_end (a summary's), else the message's created, else now; payload = body.payload
// when it is an object, else the whole body (a summary is stored as a "summary" event).
struct IngestRequest {
  std::string source;
  std::vector<store::IngestItem> items;
};
inline constexpr size_t kMaxIngestMessages = 1000;
// Invalid with a message naming the field ("messages[3].body.device: ...") for a malformed
// envelope; too_large for more than max_messages messages.
core::Result<IngestRequest> parse_ingest(std::string_view body, size_t max_messages = kMaxIngestMessages,
                                         core::TimePoint now = core::now());

// What GET /api/outbox, /api/health and /metrics show of one destination.
struct DestinationStatus {
  std::string name;
  std::string target;  // the sink's describe(): no secrets
  std::vector<std::string> kinds;
  bool configured = true;  // false: rows left in the outbox by a destination no longer configured
  store::OutboxStats stats;
  // Since start:
  uint64_t retries = 0;    // failed delivery attempts
  uint64_t refused = 0;    // offers refused by the cap (refuse_new) or too large
  uint64_t dead_lettered = 0;
  std::string state;       // "idle", "delivering", "backing_off", "stopped"
  uint32_t failures = 0;   // consecutive failed attempts (0 once one succeeds)
  std::string last_error;  // of the latest failed attempt; kept after success for the record
  std::optional<core::TimePoint> last_error_at, next_attempt, last_delivered_at;
};

// Producers call offer() (a message of any kind: a summary, an alert that is not an event, a
// snapshot) or record_event() (an event, and its message in the same transaction); the kinds a
// destination takes come from its config, so a producer never names a destination. A JSON body
// should be an object with "device" and "time" (a summary may give "period_end" instead): that is
// what a hub's POST /api/ingest needs to store it (parse_ingest above).
//
// Thread safety: every member may be called from any thread; start() and stop() not concurrently
// with each other.
class Outbox {
 public:
  // Builds a sink per destination with `sinks`; fails naming the destination when one cannot be
  // built (an MQTT topic with a wildcard, an unreadable ca_file). `source` is this
  // device's id. Registers its /metrics families in `metrics` (one Outbox per Registry). The
  // store must outlive the Outbox; stop() before closing the store.
  static core::Result<std::unique_ptr<Outbox>> create(const config::UpstreamConfig& cfg, std::string source,
                                                      store::Store& store, core::Registry& metrics,
                                                      SinkFactory sinks);
  ~Outbox();  // stop()
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Starts one delivery thread per destination. Once.
  void start();
  // Stops and joins the delivery threads; a delivery in progress finishes first (at most about
  // its destination's timeout) and its outcome is recorded. Idempotent. Offers still work after
  // it (they are committed and delivered after the next start, by this or another process).
  void stop();

  // Whether some destination takes messages of this kind.
  bool wants(std::string_view kind) const;

  // Commits one message per destination that takes `kind` (under one new id), then calls `done`
  // (on the store's writer thread: keep it short); the producer may forget the message once
  // `done` said ok. Never waits for a destination. `done` gets ok when every such destination
  // stored it (also when none takes the kind: nothing to do), busy naming the destinations that
  // refused it (their cap under refuse_new, or larger than their max_bytes; the others have it),
  // or the store's error (nothing was stored). `done` may be empty.
  // `id` is the message's idempotency key, "" for a new random one. A producer that may offer
  // the same thing twice (it hands over again after a crash what it could not see committed)
  // passes its own stable id: a destination that holds that id already keeps the one it has.
  using Done = std::function<void(core::Status)>;
  void offer(std::string kind, std::string content_type, std::string body, Done done, std::string id = {});

  // offer() of each of `messages` ({id, body}, all of one kind and content type); `done` once,
  // after the last commit: ok, busy when some destination refused some of them (their caps), or
  // the first store error.
  struct Item {
    std::string id;
    std::string body;
  };
  void offer_all(const std::string& kind, const std::string& content_type, std::vector<Item> messages, Done done);

  // The aggregator's handoff (edge::Aggregator::Handoff): each summary as an outbox message of
  // kind "summary", its body core::summary_json, its id core::summary_id (so a summary handed over
  // again after a crash is recognised). `done`: ok once they are committed, also when a
  // destination's cap refused some (the policy the operator chose, counted by the outbox; a retry
  // would not change it); the store error otherwise, for the aggregator to retry.
  void offer_summaries(const std::vector<core::Summary>& summaries, Done done);

  // Stores an event and, in the same transaction, its outbox message for every destination that
  // takes its kind (as store::Store::append_event_outbox; an event no destination wants is a
  // plain append_event). `done` as append_event's: the committed id or the error.
  void record_event(core::Event e, store::Store::EventDone done);

  std::vector<DestinationStatus> status() const;
  bool has_destination(const std::string& name) const;

  // Dead letters of a destination (or of all: ""), paged by seq; retry puts them back in line
  // and wakes the destination; delete forgets them. `id` "" means all of that destination.
  core::Result<std::vector<store::OutboxMessage>> dead_letters(const std::string& destination, int64_t after_seq,
                                                               size_t limit) const;
  core::Result<size_t> retry_dead(const std::string& destination, const std::string& id);
  core::Result<size_t> delete_dead(const std::string& destination, const std::string& id);

  struct Impl;

 private:
  explicit Outbox(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The wait after `failures` (>= 1) consecutive failed attempts, for a uniform draw u in [0, 1):
// min(max, initial * 2^(failures-1)) * (0.5 + u / 2) ("equal jitter": never less than half the
// exponential step, so a fleet that failed together spreads out without retrying at once).
std::chrono::milliseconds backoff_delay(std::chrono::milliseconds initial, std::chrono::milliseconds max,
                                       uint32_t failures, double u);

}  // namespace outpost::upstream
