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
  size_t batch_max = 1000;                         // rows per write transaction, at most
  std::string synchronous = "normal";              // SQLite synchronous: "normal" or "full"
};

struct HwConfig {
  bool simulate = false;                     // force simulated hardware
  std::string gpio_chip = "/dev/gpiochip0";  // libgpiod chip; if absent, hardware is simulated
  unsigned led_line = 17;                    // output line of the LED (seed 002)
  unsigned button_line = 27;                 // input line of the button (seed 002)
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
};

struct Config {
  ServerConfig server;
  LogConfig log;
  StoreConfig store;
  HwConfig hw;
  SystemConfig system;
  CollectorConfig collector;
  AuthConfig auth;
};

// One settable key, for the loaders, `config check` and the documentation test.
struct KeyInfo {
  std::string section;
  std::string key;
  std::string type;  // "string", "integer", "boolean", "duration", "string list"
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

}  // namespace outpost::config
