#include "config/config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

namespace outpost::config {

using core::Status;

namespace {

// How a key reads its value: from text (flag, environment) or from a TOML node.
struct KeyDef {
  KeyInfo info;
  std::function<Status(Config&, const std::string&)> from_text;
  std::function<Status(Config&, const toml::node&)> from_toml;
};

std::string name_of(const KeyInfo& k) { return k.section + "." + k.key; }

template <typename T>
using Field = std::function<T&(Config&)>;

Status bad(const KeyInfo& k, const std::string& why) {
  return Status::invalid(fmt::format("{}: {}", name_of(k), why));
}

KeyDef string_key(KeyInfo info, Field<std::string> field, std::vector<std::string> allowed = {},
                  bool allow_empty = true) {
  KeyDef d{std::move(info), {}, {}};
  auto check_set = [info = d.info, field, allowed, allow_empty](Config& c, const std::string& v) {
    if (!allow_empty && v.empty()) return bad(info, "must not be empty");
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), v) == allowed.end())
      return bad(info, fmt::format("'{}' is not one of: {}", v, fmt::join(allowed, ", ")));
    field(c) = v;
    return Status::ok();
  };
  d.from_text = check_set;
  d.from_toml = [info = d.info, check_set](Config& c, const toml::node& n) {
    auto s = n.value<std::string>();
    if (!n.is_string() || !s) return bad(info, "expected a string");
    return check_set(c, *s);
  };
  return d;
}

template <typename Int>
KeyDef int_key(KeyInfo info, Field<Int> field, int64_t lo, int64_t hi) {
  KeyDef d{std::move(info), {}, {}};
  auto check_set = [info = d.info, field, lo, hi](Config& c, int64_t v) {
    if (v < lo || v > hi) return bad(info, fmt::format("{} is out of range [{}, {}]", v, lo, hi));
    field(c) = static_cast<Int>(v);
    return Status::ok();
  };
  d.from_text = [info = d.info, check_set](Config& c, const std::string& s) {
    int64_t v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size())
      return bad(info, fmt::format("'{}' is not an integer", s));
    return check_set(c, v);
  };
  d.from_toml = [info = d.info, check_set](Config& c, const toml::node& n) {
    if (!n.is_integer()) return bad(info, "expected an integer");
    return check_set(c, *n.value<int64_t>());
  };
  return d;
}

KeyDef double_key(KeyInfo info, Field<double> field, double lo, double hi) {
  KeyDef d{std::move(info), {}, {}};
  auto check_set = [info = d.info, field, lo, hi](Config& c, double v) {
    if (!(v >= lo && v <= hi)) return bad(info, fmt::format("{} is out of range [{}, {}]", v, lo, hi));
    field(c) = v;
    return Status::ok();
  };
  d.from_text = [info = d.info, check_set](Config& c, const std::string& s) {
    double v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size())
      return bad(info, fmt::format("'{}' is not a number", s));
    return check_set(c, v);
  };
  d.from_toml = [info = d.info, check_set](Config& c, const toml::node& n) {
    if (n.is_integer()) return check_set(c, static_cast<double>(*n.value<int64_t>()));
    if (!n.is_floating_point()) return bad(info, "expected a number");
    return check_set(c, *n.value<double>());
  };
  return d;
}

KeyDef bool_key(KeyInfo info, Field<bool> field) {
  KeyDef d{std::move(info), {}, {}};
  d.from_text = [info = d.info, field](Config& c, const std::string& s) {
    if (s == "true" || s == "1" || s == "yes" || s == "on") field(c) = true;
    else if (s == "false" || s == "0" || s == "no" || s == "off") field(c) = false;
    else return bad(info, fmt::format("'{}' is not a boolean (true/false)", s));
    return Status::ok();
  };
  d.from_toml = [info = d.info, field](Config& c, const toml::node& n) {
    if (!n.is_boolean()) return bad(info, "expected a boolean");
    field(c) = *n.value<bool>();
    return Status::ok();
  };
  return d;
}

KeyDef duration_key(KeyInfo info, Field<milliseconds> field, milliseconds lo, milliseconds hi) {
  KeyDef d{std::move(info), {}, {}};
  auto check_set = [info = d.info, field, lo, hi](Config& c, milliseconds v) {
    if (v < lo || v > hi)
      return bad(info, fmt::format("{} ms is out of range [{} ms, {} ms]", v.count(), lo.count(),
                                   hi.count()));
    field(c) = v;
    return Status::ok();
  };
  d.from_text = [info = d.info, check_set](Config& c, const std::string& s) {
    auto v = core::parse_duration(s);
    if (!v) return bad(info, fmt::format("'{}' is not a duration (e.g. 500ms, 10s, 5m, 1h, 30d)", s));
    return check_set(c, *v);
  };
  d.from_toml = [info = d.info, check_set, text = d.from_text](Config& c, const toml::node& n) {
    if (n.is_integer()) {
      int64_t secs = *n.value<int64_t>();
      if (secs < 0 || secs > (int64_t(1) << 40)) return bad(info, "out of range");
      return check_set(c, milliseconds(secs * 1000));
    }
    if (n.is_string()) return text(c, *n.value<std::string>());
    return bad(info, "expected a duration string such as \"10s\" or a number of seconds");
  };
  return d;
}

// In text form (flags, environment) the items are separated by `sep`.
KeyDef list_key(KeyInfo info, Field<std::vector<std::string>> field, char sep = ',') {
  KeyDef d{std::move(info), {}, {}};
  d.from_text = [field, sep](Config& c, const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size() && !s.empty()) {
      size_t comma = s.find(sep, start);
      std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!item.empty()) out.push_back(item);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    field(c) = std::move(out);
    return Status::ok();
  };
  d.from_toml = [info = d.info, field](Config& c, const toml::node& n) {
    const toml::array* arr = n.as_array();
    if (!arr) return bad(info, "expected an array of strings");
    std::vector<std::string> out;
    for (const auto& item : *arr) {
      if (!item.is_string()) return bad(info, "expected an array of strings");
      out.push_back(*item.value<std::string>());
    }
    field(c) = std::move(out);
    return Status::ok();
  };
  return d;
}

// A TOML table of name = duration (or, in text form, "name=duration,name=duration"). Every
// duration must lie in [lo, hi]; names must not be empty.
KeyDef duration_map_key(KeyInfo info, Field<std::map<std::string, milliseconds>> field, milliseconds lo,
                        milliseconds hi) {
  KeyDef d{std::move(info), {}, {}};
  auto one = [info = d.info, lo, hi](const std::string& name, const std::string& text,
                                      std::map<std::string, milliseconds>& out) {
    if (name.empty()) return bad(info, "an entry has an empty name");
    auto v = core::parse_duration(text);
    if (!v) return bad(info, fmt::format("'{}': '{}' is not a duration (e.g. 30s, 1m, 1h)", name, text));
    if (*v < lo || *v > hi)
      return bad(info, fmt::format("'{}': {} ms is out of range [{} ms, {} ms]", name, v->count(), lo.count(),
                                   hi.count()));
    out[name] = *v;
    return Status::ok();
  };
  d.from_text = [info = d.info, field, one](Config& c, const std::string& s) {
    std::map<std::string, milliseconds> out;
    size_t start = 0;
    while (start < s.size()) {
      size_t comma = s.find(',', start);
      std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      start = comma == std::string::npos ? s.size() : comma + 1;
      if (item.empty()) continue;
      size_t eq = item.rfind('=');
      if (eq == std::string::npos) return bad(info, fmt::format("'{}' is not name=duration", item));
      if (auto st = one(item.substr(0, eq), item.substr(eq + 1), out); !st) return st;
    }
    field(c) = std::move(out);
    return Status::ok();
  };
  d.from_toml = [info = d.info, field, one](Config& c, const toml::node& n) {
    const toml::table* t = n.as_table();
    if (!t) return bad(info, "expected a table of name = duration");
    std::map<std::string, milliseconds> out;
    for (const auto& [k, v] : *t) {
      std::string name(k.str());
      std::string text;
      if (v.is_string()) {
        text = *v.value<std::string>();
      } else if (v.is_integer()) {
        text = std::to_string(*v.value<int64_t>());
      } else {
        return bad(info, fmt::format("'{}': expected a duration string such as \"1m\" or a number of seconds", name));
      }
      if (auto st = one(name, text, out); !st) return st;
    }
    field(c) = std::move(out);
    return Status::ok();
  };
  return d;
}

#define FIELD(path) [](Config& c) -> auto& { return c.path; }

const std::vector<KeyDef>& defs() {
  static const std::vector<KeyDef> d = [] {
    using std::chrono::hours;
    using ms = milliseconds;
    constexpr int64_t kMiB = 1 << 20;
    std::vector<KeyDef> v;
    v.push_back(string_key({"server", "listen", "string", "HOST:PORT to serve HTTP on; port 0 picks a free port"},
                           FIELD(server.listen), {}, false));
    v.push_back(int_key<int>({"server", "threads", "integer", "I/O threads; 0 = one per core"},
                             FIELD(server.threads), 0, 256));
    v.push_back(int_key<size_t>({"server", "header_limit", "integer", "bytes of request line and headers; more gets 431"},
                                FIELD(server.header_limit), 1024, kMiB));
    v.push_back(int_key<size_t>({"server", "body_limit", "integer", "bytes of request body; more gets 413"},
                                FIELD(server.body_limit), 0, 1024 * kMiB));
    v.push_back(duration_key({"server", "header_timeout", "duration", "time for a request's headers to arrive"},
                             FIELD(server.header_timeout), ms(100), hours(1)));
    v.push_back(duration_key({"server", "body_timeout", "duration", "time for a request's body to arrive"},
                             FIELD(server.body_timeout), ms(100), hours(1)));
    v.push_back(duration_key({"server", "idle_timeout", "duration", "keep-alive connections idle this long are closed"},
                             FIELD(server.idle_timeout), ms(100), hours(24)));
    v.push_back(duration_key({"server", "shutdown_grace", "duration", "on SIGTERM, wait this long for in-flight requests"},
                             FIELD(server.shutdown_grace), ms(0), ms(600'000)));
    v.push_back(int_key<size_t>({"server", "max_connections", "integer", "connections beyond this are closed at accept"},
                                FIELD(server.max_connections), 1, 1'000'000));
    v.push_back(list_key({"server", "cors_origins", "string list", "origins allowed by CORS; \"*\" allows any; default none"},
                         FIELD(server.cors_origins)));
    v.push_back(string_key({"log", "level", "string", "trace, debug, info, warn, error or off"}, FIELD(log.level),
                           {"trace", "debug", "info", "warn", "error", "off"}));
    v.push_back(string_key({"log", "access", "string", "access log: \"stdout\", \"off\" or a file path"},
                           FIELD(log.access), {}, false));
    v.push_back(string_key({"store", "data_dir", "string", "directory of the database and other state"},
                           FIELD(store.data_dir), {}, false));
    v.push_back(int_key<size_t>({"store", "readings_max_per_series", "integer", "retention: readings kept per sensor"},
                                FIELD(store.readings_max_per_series), 1, int64_t(1) << 40));
    v.push_back(duration_key({"store", "readings_max_age", "duration", "retention: readings older than this are deleted"},
                             FIELD(store.readings_max_age), ms(60'000), hours(24 * 365 * 100)));
    v.push_back(int_key<size_t>({"store", "batch_max", "integer", "rows per write transaction, at most"},
                                FIELD(store.batch_max), 1, 1'000'000));
    v.push_back(string_key({"store", "synchronous", "string", "SQLite synchronous mode: normal or full"},
                           FIELD(store.synchronous), {"normal", "full"}));
    v.push_back(duration_key({"store", "summaries_max_age", "duration", "retention: windowed summaries older than this are deleted"},
                             FIELD(store.summaries_max_age), ms(60'000), hours(24 * 365 * 100)));
    v.push_back(int_key<size_t>({"store", "max_size", "integer", "bytes the database may grow to; 0 = no limit but the disk's"},
                                FIELD(store.max_size), 0, int64_t(1) << 46));
    v.push_back(bool_key({"hw", "simulate", "boolean", "force simulated hardware"}, FIELD(hw.simulate)));
    v.push_back(string_key({"hw", "gpio_chip", "string", "GPIO chip device; if absent, GPIO is simulated"},
                           FIELD(hw.gpio_chip), {}, false));
    v.push_back(int_key<unsigned>({"hw", "led_line", "integer", "GPIO line of the LED"}, FIELD(hw.led_line), 0, 1023));
    v.push_back(int_key<unsigned>({"hw", "button_line", "integer", "GPIO line of the button"}, FIELD(hw.button_line), 0, 1023));
    v.push_back(int_key<unsigned>({"hw", "relay_line", "integer", "GPIO line of the relay"}, FIELD(hw.relay_line), 0, 1023));
    v.push_back(bool_key({"hw", "button_active_low", "boolean", "button pulls the line to ground when pressed"},
                         FIELD(hw.button_active_low)));
    v.push_back(string_key({"hw", "thermal_zone", "string", "thermal zone under <root>/sys/class/thermal"},
                           FIELD(hw.thermal_zone), {}, false));
    v.push_back(string_key({"system", "root", "string", "where /proc, /sys and /etc are read from"},
                           FIELD(system.root), {}, false));
    v.push_back(string_key({"system", "device_id", "string", "this board's device id; default: the hostname"},
                           FIELD(system.device_id)));
    v.push_back(duration_key({"collector", "interval", "duration", "how often every local sensor is sampled"},
                             FIELD(collector.interval), ms(100), hours(24)));
    v.push_back(bool_key({"auth", "create_initial_key", "boolean", "with no key at all, serve creates and prints one admin key"},
                         FIELD(auth.create_initial_key)));
    v.push_back(duration_key({"auth", "token_ttl", "duration", "lifetime of tokens from /login and /signup"},
                             FIELD(auth.token_ttl), ms(1000), hours(24 * 365)));
    v.push_back(int_key<int>({"auth", "login_max_failures", "integer", "failed logins from one address before refusal"},
                             FIELD(auth.login_max_failures), 1, 1000));
    v.push_back(duration_key({"auth", "login_window", "duration", "failed logins older than this are forgotten"},
                             FIELD(auth.login_window), ms(1000), hours(24)));
    v.push_back(duration_key({"auth", "login_lockout", "duration", "how long logins from that address are refused"},
                             FIELD(auth.login_lockout), ms(1000), hours(24)));

    v.push_back(string_key({"camera", "source", "string", "auto, synthetic, file:PATH, v4l2:/dev/videoN, gst:PIPELINE or off"},
                           FIELD(camera.source), {}, false));
    v.push_back(int_key<int>({"camera", "width", "integer", "frame width"}, FIELD(camera.width), 16, 4096));
    v.push_back(int_key<int>({"camera", "height", "integer", "frame height"}, FIELD(camera.height), 16, 4096));
    v.push_back(int_key<int>({"camera", "fps", "integer", "frames per second"}, FIELD(camera.fps), 1, 120));
    v.push_back(int_key<int>({"camera", "jpeg_quality", "integer", "JPEG quality 1..100"}, FIELD(camera.jpeg_quality), 1, 100));
    v.push_back(int_key<int>({"camera", "stream_max_fps", "integer", "frame rate cap per viewer of /video_feed"},
                             FIELD(camera.stream_max_fps), 1, 120));
    v.push_back(int_key<size_t>({"camera", "max_viewers", "integer", "stream viewers at once; more get 503"},
                                FIELD(camera.max_viewers), 1, 10'000));
    v.push_back(duration_key({"camera", "reopen_max_backoff", "duration", "a lost camera is reopened with backoff up to this"},
                             FIELD(camera.reopen_max_backoff), ms(100), hours(1)));
    v.push_back(int_key<size_t>({"camera", "snapshot_max_count", "integer", "snapshots kept, at most"},
                                FIELD(camera.snapshot_max_count), 1, 10'000'000));
    v.push_back(int_key<size_t>({"camera", "snapshot_max_bytes", "integer", "total size of snapshots kept, at most"},
                                FIELD(camera.snapshot_max_bytes), 1 << 20, int64_t(1) << 44));
    v.push_back(string_key({"camera", "plugin", "string",
                            "path of outpost-camera.so; default: beside the executable, else ../lib/outpost/"},
                           FIELD(camera.plugin)));

    v.push_back(bool_key({"motion", "enabled", "boolean", "motion detection on at start"}, FIELD(motion.enabled)));
    v.push_back(int_key<int>({"motion", "analysis_width", "integer", "frames are downscaled to this width for analysis"},
                             FIELD(motion.analysis_width), 32, 4096));
    v.push_back(int_key<int>({"motion", "blur", "integer", "Gaussian blur kernel size (odd), at analysis resolution"},
                             FIELD(motion.blur), 1, 99));
    v.push_back(int_key<int>({"motion", "threshold", "integer", "per-pixel difference (0..255) that counts as change"},
                             FIELD(motion.threshold), 1, 255));
    v.push_back(double_key({"motion", "min_area", "number", "changed area, as a fraction of the frame, that counts as motion"},
                           FIELD(motion.min_area), 0.0, 1.0));
    v.push_back(int_key<int>({"motion", "confirm_frames", "integer", "consecutive frames with motion before an event starts"},
                             FIELD(motion.confirm_frames), 1, 1000));
    v.push_back(duration_key({"motion", "cooldown", "duration", "quiet time before an event ends"},
                             FIELD(motion.cooldown), ms(0), hours(1)));
    v.push_back(double_key({"motion", "background_alpha", "number", "weight of each frame in the running background"},
                           FIELD(motion.background_alpha), 0.0001, 1.0));
    v.push_back(list_key({"motion", "masks", "string list",
                          "ignored regions: \"x,y,w,h\" or \"x1,y1 x2,y2 x3,y3 ...\" in pixels; ';' between them in flags"},
                         FIELD(motion.masks), ';'));
    v.push_back(bool_key({"motion", "snapshot", "boolean", "save a snapshot of each motion event"}, FIELD(motion.snapshot)));

    v.push_back(bool_key({"face", "enabled", "boolean", "face detection on at start"}, FIELD(face.enabled)));
    v.push_back(string_key({"face", "cascade", "string", "Haar cascade file (Debian's opencv-data)"}, FIELD(face.cascade), {}, false));
    v.push_back(double_key({"face", "scale_factor", "number", "detectMultiScale scale factor"}, FIELD(face.scale_factor), 1.01, 2.0));
    v.push_back(int_key<int>({"face", "min_neighbors", "integer", "detectMultiScale minimum neighbours"},
                             FIELD(face.min_neighbors), 0, 100));
    v.push_back(int_key<int>({"face", "min_size", "integer", "smallest face in pixels, at analysis resolution"},
                             FIELD(face.min_size), 4, 4096));
    v.push_back(int_key<int>({"face", "analysis_width", "integer", "frames are downscaled to this width for detection"},
                             FIELD(face.analysis_width), 32, 4096));
    v.push_back(duration_key({"face", "interval", "duration", "at most one detection per interval"},
                             FIELD(face.interval), ms(0), hours(1)));

    v.push_back(string_key({"servo", "pwm_chip", "string", "PWM chip under <root>/sys/class/pwm"}, FIELD(servo.pwm_chip), {}, false));
    v.push_back(int_key<unsigned>({"servo", "pwm_channel", "integer", "PWM channel of the servo"}, FIELD(servo.pwm_channel), 0, 1023));
    v.push_back(int_key<unsigned>({"servo", "period_ns", "integer", "PWM period in nanoseconds"}, FIELD(servo.period_ns),
                                  1'000'000, 100'000'000));
    v.push_back(int_key<unsigned>({"servo", "min_pulse_ns", "integer", "pulse at -90 degrees, nanoseconds"},
                                  FIELD(servo.min_pulse_ns), 1'000, 100'000'000));
    v.push_back(int_key<unsigned>({"servo", "max_pulse_ns", "integer", "pulse at +90 degrees, nanoseconds"},
                                  FIELD(servo.max_pulse_ns), 1'000, 100'000'000));
    v.push_back(double_key({"servo", "max_speed", "number", "degrees per second; 0 moves at once"}, FIELD(servo.max_speed), 0, 100'000));

    v.push_back(duration_key({"hub", "offline_after", "duration", "a device silent this long is marked offline"},
                             FIELD(hub.offline_after), ms(1'000), hours(24 * 365)));
    v.push_back(duration_key({"hub", "command_timeout", "duration", "a command not answered in this time is timed out"},
                             FIELD(hub.command_timeout), ms(10), hours(1)));
    v.push_back(int_key<size_t>({"hub", "max_devices", "integer", "reports from further new devices are dropped"},
                                FIELD(hub.max_devices), 1, 100'000'000));
    v.push_back(bool_key({"hub", "anonymous_read", "boolean", "FIWARE routes and the WebSocket readable without a key"},
                         FIELD(hub.anonymous_read)));
    v.push_back(string_key({"hub", "fiware_cors_origin", "string", "Access-Control-Allow-Origin of FIWARE answers; empty for none"},
                           FIELD(hub.fiware_cors_origin), {}, true));

    v.push_back(string_key({"udp", "listen", "string", "HOST:PORT for FIWARE device packets, or off"}, FIELD(udp.listen), {}, false));
    v.push_back(int_key<size_t>({"udp", "max_datagram", "integer", "larger datagrams are dropped"},
                                FIELD(udp.max_datagram), 64, 65'507));
    v.push_back(int_key<size_t>({"udp", "max_decompressed", "integer", "bytes a gzip payload may inflate to"},
                                FIELD(udp.max_decompressed), 64, 16 * kMiB));
    v.push_back(int_key<size_t>({"udp", "receive_buffer", "integer", "socket receive buffer (SO_RCVBUF), bytes"},
                                FIELD(udp.receive_buffer), 4096, 1024 * kMiB));
    v.push_back(bool_key({"udp", "require_key", "boolean", "packets must carry a valid device key"}, FIELD(udp.require_key)));

    v.push_back(string_key({"mqtt", "url", "string", "broker for AstroPlant kits: mqtt://HOST:PORT or mqtts://HOST:PORT; empty for none"},
                           FIELD(mqtt.url), {}, true));
    v.push_back(string_key({"mqtt", "username", "string", "broker user name"}, FIELD(mqtt.username), {}, true));
    v.push_back(string_key({"mqtt", "password", "string", "broker password"}, FIELD(mqtt.password), {}, true));
    v.push_back(string_key({"mqtt", "client_id", "string", "client id; default outpost-<device id>"}, FIELD(mqtt.client_id), {}, true));
    v.push_back(string_key({"mqtt", "ca_file", "string", "CA certificates for mqtts://; default the system's"}, FIELD(mqtt.ca_file), {}, true));
    v.push_back(duration_key({"mqtt", "keepalive", "duration", "MQTT keepalive"}, FIELD(mqtt.keepalive), ms(5'000), hours(1)));
    v.push_back(duration_key({"mqtt", "reconnect_max_backoff", "duration", "a lost broker is retried with backoff up to this"},
                             FIELD(mqtt.reconnect_max_backoff), ms(100), hours(1)));

    v.push_back(bool_key({"homeassistant", "enabled", "boolean", "publish this board to Home Assistant over MQTT (discovery, states, commands)"},
                         FIELD(homeassistant.enabled)));
    v.push_back(string_key({"homeassistant", "url", "string", "broker: mqtt://HOST:PORT or mqtts://HOST:PORT; empty for [mqtt]'s"},
                           FIELD(homeassistant.url), {}, true));
    v.push_back(string_key({"homeassistant", "username", "string", "broker user name, with url"}, FIELD(homeassistant.username), {}, true));
    v.push_back(string_key({"homeassistant", "password", "string", "broker password, with url"}, FIELD(homeassistant.password), {}, true));
    v.push_back(string_key({"homeassistant", "ca_file", "string", "CA certificates for an mqtts:// url; default the system's"},
                           FIELD(homeassistant.ca_file), {}, true));
    v.push_back(string_key({"homeassistant", "client_id", "string", "client id; default outpost-<device id>-ha"},
                           FIELD(homeassistant.client_id), {}, true));
    v.push_back(string_key({"homeassistant", "discovery_prefix", "string", "Home Assistant's MQTT discovery prefix"},
                           FIELD(homeassistant.discovery_prefix), {}, false));
    v.push_back(string_key({"homeassistant", "node_id", "string", "node id in discovery topics ([A-Za-z0-9_-]); default the device id"},
                           FIELD(homeassistant.node_id), {}, true));
    v.push_back(string_key({"homeassistant", "base_topic", "string", "prefix of state, command and availability topics; default outpost/<node id>"},
                           FIELD(homeassistant.base_topic), {}, true));

    v.push_back(int_key<size_t>({"ws", "max_clients", "integer", "WebSocket clients at once; more get 503"}, FIELD(ws.max_clients), 1, 1'000'000));
    v.push_back(int_key<size_t>({"ws", "send_queue", "integer", "messages queued per WebSocket client before it is closed"},
                                FIELD(ws.send_queue), 1, 1'000'000));
    v.push_back(int_key<size_t>({"ws", "max_message", "integer", "bytes of a client message; larger closes the connection"},
                                FIELD(ws.max_message), 128, 16 * kMiB));

    v.push_back(bool_key({"edge", "summaries", "boolean", "windowed summaries of every numeric sensor of every device"},
                         FIELD(aggregator.summaries)));
    v.push_back(duration_key({"edge", "summary_window", "duration", "default summary window, aligned to the epoch"},
                             FIELD(aggregator.summary_window), ms(1'000), hours(24)));
    v.push_back(duration_key({"edge", "summary_grace", "duration", "a window closes this long after its end, for late readings"},
                             FIELD(aggregator.summary_grace), ms(0), hours(1)));
    v.push_back(duration_map_key({"edge", "summary_windows", "duration map",
                                  "per-sensor windows: \"sensor\" or \"device/sensor\" = duration; name=duration,... in flags"},
                                 FIELD(aggregator.summary_windows), ms(1'000), hours(24)));
    v.push_back(duration_key({"upstream", "backoff_initial", "duration", "first wait after a failed upstream delivery"},
                             FIELD(upstream.backoff_initial), ms(10), hours(1)));
    v.push_back(duration_key({"upstream", "backoff_max", "duration", "the wait doubles (with jitter) up to this"},
                             FIELD(upstream.backoff_max), ms(10), hours(24)));
    v.push_back(string_key({"upstream", "tls_plugin", "string",
                            "path of outpost-tls.so; default: beside the executable, else ../lib/outpost/"},
                           FIELD(upstream.tls_plugin)));
    return v;
  }();
  return d;
}

#undef FIELD

const KeyDef* find_def(const std::string& section, const std::string& key) {
  for (const auto& d : defs())
    if (d.info.section == section && d.info.key == key) return &d;
  return nullptr;
}

std::string upper(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return s;
}

// A TOML value as JSON, for [[rules]] (whose fields edge/rules checks). Dates and times have no
// meaning in a rule: an error naming where they are.
Status toml_to_json(const toml::node& n, const std::string& where, nlohmann::json& out) {
  if (auto t = n.as_table()) {
    out = nlohmann::json::object();
    for (const auto& [k, v] : *t) {
      std::string key(k.str());
      if (auto s = toml_to_json(v, where + "." + key, out[key]); !s) return s;
    }
  } else if (auto a = n.as_array()) {
    out = nlohmann::json::array();
    for (size_t i = 0; i < a->size(); ++i) {
      if (auto s = toml_to_json(*a->get(i), fmt::format("{}[{}]", where, i), out.emplace_back()); !s) return s;
    }
  } else if (n.is_string()) {
    out = *n.value<std::string>();
  } else if (n.is_integer()) {
    out = *n.value<int64_t>();
  } else if (n.is_floating_point()) {
    out = *n.value<double>();
  } else if (n.is_boolean()) {
    out = *n.value<bool>();
  } else {
    return Status::invalid(fmt::format("{}: dates and times mean nothing here", where));
  }
  return Status::ok();
}

Status apply_rules(Config& cfg, const toml::node& node, const std::string& origin) {
  const toml::array* list = node.as_array();
  if (!list || !list->is_array_of_tables())
    return Status::invalid(fmt::format("{}: rules must be an array of tables: [[rules]]", origin));
  for (size_t i = 0; i < list->size(); ++i) {
    const toml::node& table = *list->get(i);
    std::string where = fmt::format("rules[{}]", i);
    nlohmann::json doc;
    if (auto s = toml_to_json(table, where, doc); !s) return Status::invalid(fmt::format("{}: {}", origin, s.message()));
    const auto& src = table.source();
    std::string at = src.begin.line > 0 ? fmt::format("{}:{}", origin, src.begin.line) : origin;
    cfg.rules.push_back({doc.dump(), at});
  }
  return Status::ok();
}

// [[upstream.destinations]]: an array of tables, each checked key by key. Errors name
// upstream.destinations[i].key (i counts from 0, in file order).
Status parse_destinations(Config& cfg, const toml::node& node) {
  const toml::array* arr = node.as_array();
  if (!arr || !arr->is_array_of_tables())
    return Status::invalid("upstream.destinations: expected [[upstream.destinations]] tables");
  std::vector<UpstreamDestination> out;
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::table& t = *arr->get(i)->as_table();
    UpstreamDestination d;
    std::string where = fmt::format("upstream.destinations[{}]", i);
    auto err = [&](std::string_view key, const std::string& why) {
      return Status::invalid(fmt::format("{}.{}: {}", where, key, why));
    };
    auto text = [&](std::string_view key, const toml::node& n, std::string& field) {
      if (!n.is_string()) return err(key, "expected a string");
      field = *n.value<std::string>();
      return Status::ok();
    };
    auto count = [&](std::string_view key, const toml::node& n, size_t& field, int64_t lo, int64_t hi) {
      if (!n.is_integer()) return err(key, "expected an integer");
      int64_t v = *n.value<int64_t>();
      if (v < lo || v > hi) return err(key, fmt::format("{} is out of range [{}, {}]", v, lo, hi));
      field = static_cast<size_t>(v);
      return Status::ok();
    };
    for (const auto& [k, n] : t) {
      std::string key(k.str());
      Status s;
      if (key == "name") {
        s = text(key, n, d.name);
      } else if (key == "url") {
        s = text(key, n, d.url);
      } else if (key == "kinds") {
        const toml::array* kinds = n.as_array();
        if (!kinds) {
          s = err(key, "expected an array of strings");
        } else {
          d.kinds.clear();
          for (const auto& item : *kinds) {
            if (!item.is_string()) {
              s = err(key, "expected an array of strings");
              break;
            }
            d.kinds.push_back(*item.value<std::string>());
          }
        }
      } else if (key == "headers") {
        const toml::table* headers = n.as_table();
        if (!headers) {
          s = err(key, "expected a table of strings, e.g. { \"X-API-Key\" = \"...\" }");
        } else {
          for (const auto& [hk, hv] : *headers) {
            if (!hv.is_string()) {
              s = err(key, fmt::format("the value of '{}' must be a string", hk.str()));
              break;
            }
            d.headers[std::string(hk.str())] = *hv.value<std::string>();
          }
        }
      } else if (key == "timeout") {
        std::optional<milliseconds> v;
        if (n.is_integer() && *n.value<int64_t>() >= 0) v = milliseconds(*n.value<int64_t>() * 1000);
        if (n.is_string()) v = core::parse_duration(*n.value<std::string>());
        if (!v) {
          s = err(key, "expected a duration such as \"10s\" or a number of seconds");
        } else if (*v < milliseconds(100) || *v > milliseconds(600'000)) {
          s = err(key, fmt::format("{} ms is out of range [100 ms, 600000 ms]", v->count()));
        } else {
          d.timeout = *v;
        }
      } else if (key == "batch") {
        s = count(key, n, d.batch, 1, 1000);
      } else if (key == "max_messages") {
        s = count(key, n, d.max_messages, 1, int64_t(1) << 32);
      } else if (key == "max_bytes") {
        s = count(key, n, d.max_bytes, 1024, int64_t(1) << 44);
      } else if (key == "overflow") {
        s = text(key, n, d.overflow);
        if (s && d.overflow != "drop_oldest" && d.overflow != "refuse_new")
          s = err(key, fmt::format("'{}' is not one of: drop_oldest, refuse_new", d.overflow));
      } else if (key == "ca_file") {
        s = text(key, n, d.ca_file);
      } else if (key == "topic") {
        s = text(key, n, d.topic);
      } else if (key == "username") {
        s = text(key, n, d.username);
      } else if (key == "password") {
        s = text(key, n, d.password);
      } else if (key == "client_id") {
        s = text(key, n, d.client_id);
      } else {
        s = Status::invalid(fmt::format("unknown key {}.{}", where, key));
      }
      if (!s) return s;
    }
    out.push_back(std::move(d));
  }
  cfg.upstream.destinations = std::move(out);
  return Status::ok();
}

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

// What validate() checks of one destination; `where` is "upstream.destinations[i]".
Status validate_destination(const UpstreamDestination& d, const std::string& where) {
  if (d.name.empty()) return Status::invalid(where + ".name: is required");
  if (d.name.size() > 64 || !std::all_of(d.name.begin(), d.name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
      }))
    return Status::invalid(fmt::format("{}.name: '{}' must be 1..64 letters, digits, '_', '-' or '.'", where, d.name));
  if (d.url.empty()) return Status::invalid(where + ".url: is required");
  auto url = parse_url(d.url);
  if (!url)
    return Status::invalid(fmt::format("{}.url: '{}' is not a URL (scheme://host[:port][/path])", where, d.url));
  static const std::vector<std::string> schemes = {"http", "https", "mqtt", "mqtts"};
  if (std::find(schemes.begin(), schemes.end(), url->scheme) == schemes.end())
    return Status::invalid(
        fmt::format("{}.url: unknown scheme '{}' in '{}' (http, https, mqtt or mqtts)", where, url->scheme, d.url));
  bool mqtt = url->scheme == "mqtt" || url->scheme == "mqtts";
  if (mqtt && d.topic.empty()) return Status::invalid(where + ".topic: is required for an mqtt:// destination");
  if (!mqtt && !d.topic.empty())
    return Status::invalid(where + ".topic: only an mqtt:// or mqtts:// destination has a topic");
  if (d.kinds.empty()) return Status::invalid(where + ".kinds: must name at least one kind");
  for (const auto& k : d.kinds) {
    if (k.empty() || k.size() > 64 || !std::all_of(k.begin(), k.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == ':';
        }))
      return Status::invalid(fmt::format("{}.kinds: '{}' is not a kind (letters, digits, '_', '-', '.', ':')", where, k));
  }
  static const std::vector<std::string> reserved = {"host", "content-length", "content-type", "transfer-encoding",
                                                    "connection", "idempotency-key"};
  for (const auto& [name, value] : d.headers) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), is_token_char))
      return Status::invalid(fmt::format("{}.headers: '{}' is not a header name", where, name));
    std::string lower = name;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (std::find(reserved.begin(), reserved.end(), lower) != reserved.end())
      return Status::invalid(fmt::format("{}.headers: '{}' is set by Outpost itself", where, name));
    if (std::any_of(value.begin(), value.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; }))
      return Status::invalid(fmt::format("{}.headers: the value of '{}' contains a line break", where, name));
  }
  return Status::ok();
}

}  // namespace

const std::vector<KeyInfo>& keys() {
  static const std::vector<KeyInfo> k = [] {
    std::vector<KeyInfo> out;
    for (const auto& d : defs()) out.push_back(d.info);
    return out;
  }();
  return k;
}

Status set_key(Config& cfg, const std::string& section, const std::string& key, const std::string& value,
               const std::string& origin) {
  const KeyDef* d = find_def(section, key);
  if (!d) return Status::invalid(fmt::format("{}: unknown key {}.{}", origin, section, key));
  Status s = d->from_text(cfg, value);
  if (!s) return Status::invalid(fmt::format("{}: {}", origin, s.message()));
  return s;
}

Status apply_toml(Config& cfg, const std::string& toml_text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return Status::invalid(fmt::format("{}:{}:{}: {}", origin, where.line, where.column, e.description()));
  }
  for (const auto& [section_key, section_node] : root) {
    std::string section(section_key.str());
    if (section == "rules") {
      if (auto s = apply_rules(cfg, section_node, origin); !s) return s;
      continue;
    }
    const toml::table* table = section_node.as_table();
    if (!table) return Status::invalid(fmt::format("{}: '{}' must be a [section]", origin, section));
    bool known_section = std::any_of(defs().begin(), defs().end(),
                                     [&](const KeyDef& d) { return d.info.section == section; });
    if (!known_section) return Status::invalid(fmt::format("{}: unknown section [{}]", origin, section));
    for (const auto& [k, node] : *table) {
      std::string key(k.str());
      if (section == "upstream" && key == "destinations") {
        Status s = parse_destinations(cfg, node);
        if (!s) return Status::invalid(fmt::format("{}: {}", origin, s.message()));
        continue;
      }
      const KeyDef* d = find_def(section, key);
      if (!d) return Status::invalid(fmt::format("{}: unknown key {}.{}", origin, section, key));
      Status s = d->from_toml(cfg, node);
      if (!s) return Status::invalid(fmt::format("{}: {}", origin, s.message()));
    }
  }
  return Status::ok();
}

Status apply_toml_file(Config& cfg, const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return Status::invalid(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::string text;
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  std::fclose(f);
  return apply_toml(cfg, text, path);
}

Status apply_env(Config& cfg, char** env) {
  static const std::string kPrefix = "OUTPOST_";
  for (char** e = env; e && *e; ++e) {
    std::string entry(*e);
    if (entry.rfind(kPrefix, 0) != 0) continue;
    size_t eq = entry.find('=');
    if (eq == std::string::npos) continue;
    std::string name = entry.substr(0, eq), value = entry.substr(eq + 1);
    // Variables the program itself uses for other purposes.
    if (name == "OUTPOST_CONFIG" || name == "OUTPOST_SOURCE_DIR" || name == "OUTPOST_BIN") continue;
    const KeyDef* match = nullptr;
    for (const auto& d : defs()) {
      if (name == kPrefix + upper(d.info.section) + "_" + upper(d.info.key)) {
        match = &d;
        break;
      }
    }
    if (!match) return Status::invalid(fmt::format("environment: unknown setting {}", name));
    Status s = match->from_text(cfg, value);
    if (!s) return Status::invalid(fmt::format("environment {}: {}", name, s.message()));
  }
  return Status::ok();
}

std::optional<HostPort> parse_host_port(const std::string& s) {
  std::string host, port;
  if (!s.empty() && s[0] == '[') {
    size_t close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') return std::nullopt;
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string::npos || s.find(':') != colon) return std::nullopt;
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (host.empty() || port.empty()) return std::nullopt;
  unsigned p = 0;
  auto r = std::from_chars(port.data(), port.data() + port.size(), p);
  if (r.ec != std::errc() || r.ptr != port.data() + port.size() || p > 65535) return std::nullopt;
  return HostPort{host, static_cast<uint16_t>(p)};
}

namespace {

// An MQTT topic level or levels to build topics from: no wildcards, no empty level, no NUL.
bool topic_prefix_ok(std::string_view t) {
  if (t.empty() || t.size() > 1024 || t.front() == '/' || t.back() == '/') return false;
  if (t.find("//") != std::string_view::npos) return false;
  for (unsigned char c : t) {
    if (c == '+' || c == '#' || c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

bool node_id_ok(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (unsigned char c : id) {
    if (!std::isalnum(c) && c != '_' && c != '-') return false;
  }
  return true;
}

Status validate_homeassistant(const Config& cfg) {
  const HomeAssistantConfig& ha = cfg.homeassistant;
  if (!topic_prefix_ok(ha.discovery_prefix))
    return Status::invalid(fmt::format(
        "homeassistant.discovery_prefix: '{}' is not a topic prefix (levels without '+', '#', "
        "control characters or empty levels)",
        ha.discovery_prefix));
  if (!ha.node_id.empty() && !node_id_ok(ha.node_id))
    return Status::invalid(fmt::format(
        "homeassistant.node_id: '{}' must be 1..128 characters of A-Z, a-z, 0-9, '_' and '-'", ha.node_id));
  if (!ha.base_topic.empty() && !topic_prefix_ok(ha.base_topic))
    return Status::invalid(fmt::format(
        "homeassistant.base_topic: '{}' is not a topic prefix (levels without '+', '#', control "
        "characters or empty levels)",
        ha.base_topic));
  if (ha.enabled && ha.url.empty() && cfg.mqtt.url.empty())
    return Status::invalid("homeassistant.url: Home Assistant is enabled but no broker is set (set "
                           "homeassistant.url or mqtt.url)");
  // One broker, one id: the two connections would take turns throwing each other off.
  bool same_broker = ha.url.empty() || ha.url == cfg.mqtt.url;
  if (ha.enabled && !cfg.mqtt.url.empty() && same_broker && !ha.client_id.empty() &&
      ha.client_id == cfg.mqtt.client_id)
    return Status::invalid(fmt::format(
        "homeassistant.client_id: '{}' is mqtt.client_id too, on the same broker", ha.client_id));
  return Status::ok();
}

}  // namespace

std::optional<Url> parse_url(const std::string& s) {
  Url u;
  size_t sep = s.find("://");
  if (sep == std::string::npos || sep == 0) return std::nullopt;
  for (char c : s)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '#') return std::nullopt;
  u.scheme = s.substr(0, sep);
  for (auto& c : u.scheme) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') return std::nullopt;
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  std::string rest = s.substr(sep + 3);
  size_t end = rest.find_first_of("/?");
  std::string authority = rest.substr(0, end);
  if (end != std::string::npos) u.target = rest.substr(end);
  if (!u.target.empty() && u.target[0] == '?') u.target = "/" + u.target;
  if (authority.empty() || authority.find('@') != std::string::npos) return std::nullopt;
  std::string port;
  if (authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos || close == 1) return std::nullopt;
    u.host = authority.substr(1, close - 1);
    std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return std::nullopt;
      port = after.substr(1);
      if (port.empty()) return std::nullopt;
    }
  } else {
    size_t colon = authority.find(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return std::nullopt;
    }
    if (u.host.empty()) return std::nullopt;
    for (char c : u.host)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') return std::nullopt;
  }
  if (!port.empty()) {
    unsigned p = 0;
    auto r = std::from_chars(port.data(), port.data() + port.size(), p);
    if (r.ec != std::errc() || r.ptr != port.data() + port.size() || p == 0 || p > 65535) return std::nullopt;
    u.port = static_cast<uint16_t>(p);
  } else if (u.scheme == "http") {
    u.port = 80;
  } else if (u.scheme == "https") {
    u.port = 443;
  } else if (u.scheme == "mqtt") {
    u.port = 1883;
  } else if (u.scheme == "mqtts") {
    u.port = 8883;
  } else {
    return std::nullopt;
  }
  return u;
}

Status validate(const Config& cfg) {
  if (!parse_host_port(cfg.server.listen))
    return Status::invalid(fmt::format("server.listen: '{}' is not HOST:PORT", cfg.server.listen));
  for (const auto& o : cfg.server.cors_origins) {
    if (o != "*" && o.rfind("http://", 0) != 0 && o.rfind("https://", 0) != 0)
      return Status::invalid(
          fmt::format("server.cors_origins: '{}' is not an origin (scheme://host[:port]) or \"*\"", o));
    if (o != "*" && o.back() == '/')
      return Status::invalid(fmt::format("server.cors_origins: '{}' must not end with '/'", o));
  }
  if (cfg.servo.min_pulse_ns >= cfg.servo.max_pulse_ns || cfg.servo.max_pulse_ns > cfg.servo.period_ns)
    return Status::invalid("servo: need min_pulse_ns < max_pulse_ns <= period_ns");
  if (cfg.motion.blur % 2 == 0) return Status::invalid("motion.blur: must be odd");
  if (cfg.udp.listen != "off" && !parse_host_port(cfg.udp.listen))
    return Status::invalid(fmt::format("udp.listen: '{}' is not HOST:PORT or off", cfg.udp.listen));
  auto broker_url = [](const std::string& url) {
    std::string_view u = url;
    size_t scheme = u.find("://");
    std::string_view sch = scheme == std::string_view::npos ? std::string_view() : u.substr(0, scheme);
    return (sch == "mqtt" || sch == "mqtts") && parse_host_port(std::string(u.substr(scheme + 3)));
  };
  if (!cfg.mqtt.url.empty() && !broker_url(cfg.mqtt.url))
    return Status::invalid(fmt::format("mqtt.url: '{}' is not mqtt://HOST:PORT or mqtts://HOST:PORT", cfg.mqtt.url));
  if (auto s = validate_homeassistant(cfg); !s) return s;
  if (!cfg.homeassistant.url.empty() && !broker_url(cfg.homeassistant.url))
    return Status::invalid(fmt::format("homeassistant.url: '{}' is not mqtt://HOST:PORT or mqtts://HOST:PORT",
                                       cfg.homeassistant.url));
  if (cfg.upstream.backoff_initial > cfg.upstream.backoff_max)
    return Status::invalid("upstream.backoff_initial: must not be longer than upstream.backoff_max");
  for (size_t i = 0; i < cfg.upstream.destinations.size(); ++i) {
    const auto& d = cfg.upstream.destinations[i];
    if (auto s = validate_destination(d, fmt::format("upstream.destinations[{}]", i)); !s) return s;
    for (size_t j = 0; j < i; ++j) {
      if (cfg.upstream.destinations[j].name == d.name)
        return Status::invalid(fmt::format("upstream.destinations[{}].name: '{}' is already the name of "
                                           "upstream.destinations[{}]",
                                           i, d.name, j));
    }
  }
  return Status::ok();
}

}  // namespace outpost::config
