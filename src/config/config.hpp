// Configuration: one plain struct per module, each field with its documented default.
//
// Filled once in app/ from, in increasing priority: these defaults, a TOML file, the
// environment (OUTPOST_<SECTION>_<KEY>), and command-line flags; then passed by const& to the
// module constructors. Unknown keys and invalid values fail with a message naming section.key.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/status.hpp"
#include "core/time.hpp"

namespace outpost::config {

using std::chrono::milliseconds;

struct ServerConfig {
  std::string listen = "127.0.0.1:8080";  // HOST:PORT; port 0 picks a free port
  int threads = 0;                        // io threads; 0 = one per core
  size_t header_limit = 8192;             // bytes of request line + headers; over it: 431
  size_t body_limit = 1 << 20;            // bytes of request body; over it: 413
  milliseconds header_timeout{10'000};    // a request's headers must arrive within this
  milliseconds body_timeout{30'000};      // ...and its body within this after the headers
  milliseconds idle_timeout{60'000};      // keep-alive connection closed after this silence
  milliseconds shutdown_grace{5'000};     // SIGTERM: wait this long for in-flight requests
  size_t max_connections = 10'000;        // further connections are closed at accept
  std::vector<std::string> cors_origins;  // exact origins allowed; "*" allows any; default none
};

struct LogConfig {
  std::string level = "info";   // trace, debug, info, warn, error, off
  std::string access = "stdout";  // access log: "stdout", "off", or a file path
};

struct StoreConfig {
  std::string data_dir = "./var";                  // SQLite database and other state live here
  size_t readings_max_per_series = 1'000'000;      // retention by count, per sensor
  milliseconds readings_max_age{30LL * 86'400'000};  // retention by age (default 30 days)
  size_t batch_max = 50'000;                       // rows per write transaction, at most
  std::string synchronous = "normal";              // SQLite synchronous: "normal" or "full"
  milliseconds summaries_max_age{365LL * 86'400'000};  // retention of windowed summaries (1 year)
  // The database may grow to at most this many bytes (SQLite's max_page_count); writes beyond
  // it fail with "database or disk is full" and are reported, never silently dropped. 0: no
  // limit but the disk's.
  size_t max_size = 0;
};

struct HwConfig {
  bool simulate = false;                     // force simulated hardware
  std::string gpio_chip = "/dev/gpiochip0";  // libgpiod chip; if absent, hardware is simulated
  unsigned led_line = 17;                    // output line of the LED (seed 002)
  unsigned button_line = 27;                 // input line of the button (seed 002)
  unsigned relay_line = 22;                  // output line of the relay (the greenhouse's ventilation)
  bool button_active_low = true;             // button wired to ground with a pull-up
  std::string thermal_zone = "thermal_zone0";  // under <root>/sys/class/thermal
};

struct SystemConfig {
  std::string root = "/";        // where /proc, /sys and /etc are read from (tests: a fake tree)
  std::string device_id;         // this board's id; default: the hostname
};

struct CollectorConfig {
  milliseconds interval{10'000};  // how often every local sensor is sampled
};

struct AuthConfig {
  bool create_initial_key = true;  // with no key at all, `serve` creates and prints an admin key
  milliseconds token_ttl{24LL * 3'600'000};  // lifetime of tokens from POST /login and /signup
  int login_max_failures = 5;                // failed logins from one address before refusal
  milliseconds login_window{15LL * 60'000};  // failures older than this are forgotten
  milliseconds login_lockout{15LL * 60'000}; // refusal (429 with Retry-After) lasts this long
};

struct CameraConfig {
  // "auto" (v4l2:/dev/video0 when it exists, else synthetic), "synthetic", "file:PATH" (a video
  // or still image, looped), "v4l2:/dev/videoN", "gst:PIPELINE", or "off".
  std::string source = "auto";
  int width = 640;
  int height = 480;
  int fps = 15;
  int jpeg_quality = 80;                      // 1..100
  int stream_max_fps = 15;                    // per viewer of /video_feed
  size_t max_viewers = 20;                    // more get 503
  milliseconds reopen_max_backoff{30'000};    // a lost camera is reopened with backoff up to this
  size_t snapshot_max_count = 1000;           // retention of saved snapshots
  size_t snapshot_max_bytes = 512ULL << 20;   // ...and their total size
  // The camera plugin (outpost-camera.so, OpenCV), loaded unless source is "off". Empty: beside
  // the executable, else <executable's directory>/../lib/outpost/.
  std::string plugin;
};

struct MotionConfig {
  bool enabled = true;                   // detection on at start (GET /motion?motion=0|1 switches)
  int analysis_width = 320;              // frames are downscaled to this width for analysis
  int blur = 5;                          // Gaussian kernel size (odd), at analysis resolution
  int threshold = 25;                    // per-pixel difference (0..255) that counts as change
  double min_area = 0.005;               // changed area, as a fraction of the frame, to count
  int confirm_frames = 2;                // consecutive frames with motion before an event starts
  milliseconds cooldown{2'000};          // quiet time before an event ends
  double background_alpha = 0.05;        // weight of each frame in the running background
  // Regions ignored, in pixels of the camera resolution: "x,y,w,h" rectangles or
  // "x1,y1 x2,y2 x3,y3 ..." polygons.
  std::vector<std::string> masks;
  bool snapshot = true;                  // save a snapshot of each motion event
};

struct FaceConfig {
  bool enabled = false;  // detection on at start (GET /face?detection=0|1 switches)
  std::string cascade = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml";
  double scale_factor = 1.1;
  int min_neighbors = 5;
  int min_size = 30;                // pixels, at analysis resolution
  int analysis_width = 320;
  milliseconds interval{500};       // at most one detection per interval
};

struct ServoConfig {
  // Linux: <system.root>/sys/class/pwm/<pwm_chip>/pwm<pwm_channel>; simulated when absent.
  std::string pwm_chip = "pwmchip0";
  unsigned pwm_channel = 0;
  unsigned period_ns = 20'000'000;   // 50 Hz
  unsigned min_pulse_ns = 500'000;   // at -90 degrees
  unsigned max_pulse_ns = 2'500'000; // at +90 degrees
  double max_speed = 0;              // degrees per second; 0 = move at once
};

struct HubConfig {
  milliseconds offline_after{5LL * 60'000};  // a device silent this long is marked offline
  milliseconds command_timeout{5'000};       // a command without an answer in this time: timed out
  size_t max_devices = 1'000'000;            // reports from further new devices are dropped
  // Anonymous read access to the FIWARE routes (GET /?action=...) and the WebSocket, so seed
  // 004's clients work unchanged; off by default.
  bool anonymous_read = false;
  std::string fiware_cors_origin = "*";      // Access-Control-Allow-Origin of the FIWARE answers; "" = none
};

struct UdpConfig {
  std::string listen = "127.0.0.1:44446";  // HOST:PORT of FIWARE device packets; "off" = no UDP
  size_t max_datagram = 65'507;            // bytes; larger datagrams are dropped (too large)
  size_t max_decompressed = 64 * 1024;     // bytes a gzip payload may inflate to
  size_t receive_buffer = 4 << 20;         // SO_RCVBUF, bytes (the kernel may cap it)
  // When set, a packet must carry "api_key" (a key of the device, see `outpost keys create
  // --device`) next to "dataformat_version"; others are dropped (unauthorized).
  bool require_key = false;
};

struct MqttConfig {
  std::string url;                      // "mqtt://HOST:PORT" or "mqtts://HOST:PORT"; "" = no MQTT
  std::string username;
  std::string password;
  std::string client_id;                // default "outpost-<device id>"
  std::string ca_file;                  // for mqtts://; default: the system's CA store
  milliseconds keepalive{30'000};
  milliseconds reconnect_max_backoff{30'000};
};

// Home Assistant's MQTT integration: discovery, states, availability and commands of this
// board's sensors and actuators. The broker is [mqtt]'s (url, credentials, CA) unless `url` is
// set here; keepalive and reconnect backoff are always [mqtt]'s.
struct HomeAssistantConfig {
  bool enabled = false;
  std::string url;                 // "mqtt://HOST:PORT" or "mqtts://HOST:PORT"; "" = [mqtt]'s broker
  std::string username;            // with url: the broker user name (else [mqtt]'s)
  std::string password;            // with url: the broker password (else [mqtt]'s)
  std::string ca_file;             // with url: CA certificates for mqtts:// (else [mqtt]'s)
  std::string client_id;           // default "outpost-<device id>-ha" (never the kits' client id)
  std::string discovery_prefix = "homeassistant";  // Home Assistant's discovery prefix
  std::string node_id;             // [A-Za-z0-9_-]+; default the device id, other characters as '_'
  std::string base_topic;          // state, command and availability topics; default "outpost/<node id>"
};

struct WsConfig {
  size_t max_clients = 2'000;        // further upgrades get 503
  size_t send_queue = 256;           // messages queued per client; full and stalled 1 s (or 16x over): closed (1008)
  size_t max_message = 64 * 1024;    // bytes of a client message; larger closes the connection (1009)
};

// The edge's windowed summaries (edge::Aggregator), section [edge].
struct AggregatorConfig {
  bool summaries = true;                  // summarise every numeric sensor of every device
  milliseconds summary_window{5 * 60'000};  // default window; windows are aligned to the epoch
  milliseconds summary_grace{2'000};      // a window closes this long after its end (late readings)
  // Per-sensor windows ([edge.summary_windows]): "device/sensor" (one device's sensor) or
  // "sensor" (that sensor of any device) → window. The exact "device/sensor" wins.
  std::map<std::string, milliseconds> summary_windows;
};

// One [[rules]] table of the file (see edge/rules.hpp for its fields): kept as the JSON document
// POST /api/rules would take, and parsed by the rules engine at start-up, so the file and the API
// share one parser and one set of error messages. Rules come from the file only (no environment
// variable or flag sets them).
struct RuleConfig {
  std::string json;    // the table as a JSON object (TOML strings, numbers, booleans, tables, arrays)
  std::string origin;  // "FILE:LINE" of the table, for error messages
};

// One upstream destination ([[upstream.destinations]]): where messages of the chosen kinds go.
// Only TOML sets destinations (an array of tables has no environment or flag form).
struct UpstreamDestination {
  std::string name;  // unique; letters, digits, '_', '-', '.'; labels metrics and the API
  // http://HOST[:PORT]/PATH and https://... : POST of a JSON batch, or of a JPEG alone.
  // mqtt://HOST[:PORT] and mqtts://...: publish with QoS 1 on `topic` (the MQTT upstream).
  std::string url;
  // Message kinds this destination takes: "summary", "alert", "snapshot", or the kind of an
  // event ("command", "button", "motion", "online", ...), which makes that event go upstream.
  std::vector<std::string> kinds = {"summary", "alert"};
  std::map<std::string, std::string> headers;  // sent with every request (an API key...)
  milliseconds timeout{10'000};                // one delivery attempt, at most about this long
  size_t batch = 100;                          // messages per request, at most
  // The outbox of this destination holds at most this many messages and bytes of bodies
  // (pending and dead letters together); then `overflow` decides.
  size_t max_messages = 100'000;
  size_t max_bytes = 64ULL << 20;
  std::string overflow = "drop_oldest";  // "drop_oldest" or "refuse_new"
  std::string ca_file;                   // https/mqtts: CA certificates; default the system's
  // MQTT only: the topic, the broker's credentials, the client id (default outpost-<device>-<name>).
  std::string topic;
  std::string username;
  std::string password;
  std::string client_id;
};

struct UpstreamConfig {
  milliseconds backoff_initial{1'000};  // first wait after a failed delivery
  milliseconds backoff_max{300'000};    // the wait doubles up to this (with jitter)
  // The TLS plugin (outpost-tls.so, OpenSSL), loaded only for an https:// destination. Empty:
  // beside the executable, else ../lib/outpost/.
  std::string tls_plugin;
  std::vector<UpstreamDestination> destinations;
};

struct Config {
  ServerConfig server;
  LogConfig log;
  StoreConfig store;
  HwConfig hw;
  SystemConfig system;
  CollectorConfig collector;
  AuthConfig auth;
  CameraConfig camera;
  MotionConfig motion;
  FaceConfig face;
  ServoConfig servo;
  HubConfig hub;
  UdpConfig udp;
  MqttConfig mqtt;
  HomeAssistantConfig homeassistant;
  WsConfig ws;
  AggregatorConfig aggregator;
  std::vector<RuleConfig> rules;  // [[rules]], in file order
  UpstreamConfig upstream;
};

// One settable key, for the loaders, `config check` and the documentation test.
struct KeyInfo {
  std::string section;
  std::string key;
  std::string type;  // "string", "integer", "boolean", "duration", "string list", "duration map"
  std::string help;
};
const std::vector<KeyInfo>& keys();

// Applies a TOML document (text) onto `cfg`. Errors name the file, section.key and the problem.
core::Status apply_toml(Config& cfg, const std::string& toml_text, const std::string& origin);
core::Status apply_toml_file(Config& cfg, const std::string& path);
// Applies OUTPOST_<SECTION>_<KEY> variables from `env` (e.g. environ). Unknown OUTPOST_* names
// are errors, so a typo never goes unnoticed.
core::Status apply_env(Config& cfg, char** env);
// Sets one key from its text form, as a flag or the environment gives it.
core::Status set_key(Config& cfg, const std::string& section, const std::string& key,
                     const std::string& value, const std::string& origin);
// Checks values that are valid one by one but not together (e.g. listen address syntax).
core::Status validate(const Config& cfg);

// Splits "HOST:PORT" or "[v6]:PORT". nullopt if malformed.
struct HostPort {
  std::string host;
  uint16_t port;
};
std::optional<HostPort> parse_host_port(const std::string& s);

// "scheme://host[:port][/path][?query]" split up; the port defaults by scheme (http 80, https
// 443, mqtt 1883, mqtts 8883; others need one). Host may be "[v6]" (kept without brackets).
// nullopt for anything else, including user info ("user@host"), a fragment, spaces or control
// characters. The scheme is lower-cased; it is not checked against a list here.
struct Url {
  std::string scheme;
  std::string host;
  uint16_t port = 0;
  std::string target = "/";  // path and query, "/" when absent
};
std::optional<Url> parse_url(const std::string& s);

}  // namespace outpost::config
