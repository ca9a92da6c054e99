// Route handlers: the device's own API (seed 002), RaspAP's system routes (seed 001), and the
// service routes (health, metrics, OpenAPI, docs). Each register_* adds its routes to the table.
#pragma once

#include <atomic>
#include <mutex>
#include <string>

#include "auth/auth.hpp"
#include "camera/camera.hpp"
#include "config/config.hpp"
#include "core/core.hpp"
#include "edge/edge.hpp"
#include "edge/rules.hpp"
#include "hw/hw.hpp"
#include "http/http.hpp"
#include "hub/hub.hpp"
#include "store/store.hpp"
#include "sysinfo/sysinfo.hpp"
#include "upstream/upstream.hpp"

namespace outpost::api {

// Viewers of the MJPEG stream.
struct StreamMetrics {
  explicit StreamMetrics(core::Registry& r)
      : viewers(r.gauge("outpost_stream_viewers", "Viewers of /video_feed now.")),
        sent(r.counter("outpost_stream_frames_sent_total", "JPEG frames written to stream viewers.")),
        skipped(r.counter("outpost_stream_frames_skipped_total", "Frames a slow viewer did not get (it got a newer one).")) {}
  core::Gauge& viewers;
  core::Counter& sent;
  core::Counter& skipped;
};

// Short-lived tokens that let a browser's <img> open /video_feed (it cannot send a header).
// HMAC-SHA256 with a key made at start, so they die with the process; good for one path only.
class StreamTokens {
 public:
  explicit StreamTokens(std::chrono::seconds ttl = std::chrono::minutes(10));
  std::string issue() const;
  bool verify(std::string_view token) const;

 private:
  unsigned char key_[32];
  std::chrono::seconds ttl_;
};

// What the handlers use. Everything is owned by app/ and outlives the router. Pointers may be
// null where a feature is off (camera: camera.source = "off").
struct Deps {
  const config::Config& cfg;
  std::string device_id;
  store::Store& store;
  hw::Board& board;
  edge::Collector& collector;
  const sysinfo::SysInfo& sys;
  core::Registry& metrics;
  core::TimePoint started;
  const auth::Authenticator& auth;
  const auth::TokenIssuer* tokens = nullptr;
  auth::LoginLimiter* limiter = nullptr;
  camera::Camera* camera = nullptr;
  camera::SnapshotStore* snapshots = nullptr;
  StreamMetrics* stream_metrics = nullptr;
  StreamTokens* stream_tokens = nullptr;
  // Stores an event and, once committed, publishes it on the bus.
  std::function<void(core::Event)> record_event;
  // Runs blocking work (password hashing, file I/O) off the I/O threads.
  std::function<void(std::function<void()>)> run_blocking;
  // Called with the name of every snapshot saved, for upload (the edge pipeline's outbox).
  std::function<void(const std::string&)> on_snapshot_saved;
  // The hub (devices, commands); null when it is off.
  hub::Hub* hub = nullptr;
  // WebSocket handshakes on / (the live event stream); empty when off.
  http::UpgradeHandler ws_upgrade;
  // The hub's part of /api/health (devices, UDP, MQTT, WebSocket clients), from app/.
  std::function<nlohmann::json()> hub_health;
  // The windowed summaries (its stats go into /api/health); null when off.
  edge::Aggregator* aggregator = nullptr;
  // The local rules; null when there is no hub.
  edge::RuleEngine* rules = nullptr;
  // The upstream outbox (GET /api/outbox, dead letters, /api/health); null when off.
  upstream::Outbox* outbox = nullptr;
  // Publishes an event already stored (those POST /api/ingest stored) on the bus.
  std::function<void(const core::Event&)> publish_event;
};

// GET /api/status, GET /api/readings, POST /api/led.
void register_device_routes(http::Router& router, Deps& deps);
// GET /system, GET /networking (RaspAP's shapes and error style).
void register_raspap_routes(http::Router& router, Deps& deps);
// GET /api/health, GET /metrics, GET /openapi.json, GET /docs[/...].
void register_service_routes(http::Router& router, Deps& deps);
// GET / (seed 000's hello, seed 004's FIWARE queries, WebSocket handshakes) and POST / (FIWARE
// update).
void register_root_routes(http::Router& router, Deps& deps);
// GET /api/devices[/{id}[/readings]], POST /api/devices/{id}/commands, GET /api/commands/{id},
// and AstroPlant's GET /kits[/{id}[/data]]. Nothing when the hub is off.
void register_device_hub_routes(http::Router& router, Deps& deps);
// GET/POST /api/rules, GET/PUT/DELETE /api/rules/{id} (admin). Nothing without a rule engine.
void register_rule_routes(http::Router& router, Deps& deps);
// A stored reading's value: the number (null for NaN), or the JSON its text holds (a 3DPoint...).
nlohmann::ordered_json reading_value(const core::Reading& r);
// A device in the native API's shape.
nlohmann::ordered_json device_json(const core::Device& d);
// Seed 000's GET / answer.
http::Response seed000_hello();

// GET /api/summaries (the edge's windowed summaries).
void register_summary_routes(http::Router& router, Deps& deps);

// Seed 000: /motion, /face, /angle, /video_feed, /stream, /snapshot, /signup, /login.
void register_seed000_routes(http::Router& router, Deps& deps);
// GET /api/outbox, GET/DELETE /api/outbox/dead, POST /api/outbox/dead/retry (when deps.outbox is
// set), and POST /api/ingest (the hub's door for other Outposts).
void register_upstream_routes(http::Router& router, Deps& deps);
// The upstream part of /api/health: totals and per destination pending, dead letters, dropped,
// refused, the last error.
nlohmann::json upstream_health(const upstream::Outbox& outbox);
// GET /api/events, GET/DELETE /api/snapshots[/{name}].
void register_camera_routes(http::Router& router, Deps& deps);

// The MJPEG stream response (shared by /video_feed).
http::Response mjpeg_response(Deps& d);
// Takes and saves a snapshot; seed 000's answer.
http::Response take_snapshot(Deps& d);

// Parses a non-negative integer query value: nullopt if it is not one. Values beyond `cap`
// (however many digits) give `cap`.
std::optional<size_t> parse_limit(std::string_view s, size_t cap);

// Reads the `from` and `to` query parameters (ISO 8601) into the two fields; a 400 problem
// naming the parameter when one does not parse or from is later than to.
std::optional<http::Response> parse_time_range(const http::Request& req, std::optional<core::TimePoint>& from,
                                               std::optional<core::TimePoint>& to);

}  // namespace outpost::api
