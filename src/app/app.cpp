#include "app/app.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <termios.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include <iterator>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <optional>
#include <thread>

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include "api/api.hpp"
#include "auth/auth.hpp"
#include "camera/camera.hpp"
#include "config/config.hpp"
#include "edge/edge.hpp"
#include "edge/rules.hpp"
#include "http/http.hpp"
#include "hub/hub.hpp"
#include "ingest/ingest.hpp"
#include "ws/ws.hpp"
#include "mqtt/mqtt.hpp"
#include "hw/hw.hpp"
#include "store/store.hpp"
#include "sysinfo/sysinfo.hpp"
#include "upstream/upstream.hpp"

extern char** environ;

namespace outpost::app {

namespace {

constexpr const char* kVersion = OUTPOST_VERSION;

// Flags shared by the subcommands that read the configuration.
struct ConfigFlags {
  std::string config_file;
  std::string data_dir;
  std::string listen;
  std::string udp_listen;
  std::string mqtt_url;
  std::string log_level;
  bool simulate = false;
  std::vector<std::string> sets;  // --set section.key=value
};

void add_config_flags(CLI::App& cmd, ConfigFlags& f, bool server_flags) {
  cmd.add_option("--config", f.config_file, "TOML configuration file")->check(CLI::ExistingFile);
  cmd.add_option("--data-dir", f.data_dir, "Data directory (default ./var)");
  if (server_flags) {
    cmd.add_option("--listen", f.listen,
                   "HOST:PORT to listen on (default 127.0.0.1:8080; port 0 picks one)");
    cmd.add_flag("--simulate", f.simulate, "Force simulated hardware");
    cmd.add_option("--udp-listen", f.udp_listen,
                   "HOST:PORT for FIWARE device packets (default 127.0.0.1:44446), or off");
    cmd.add_option("--mqtt-url", f.mqtt_url, "Broker of AstroPlant kits: mqtt://HOST:PORT or mqtts://HOST:PORT");
  }
  cmd.add_option("--log-level", f.log_level, "trace, debug, info, warn, error or off");
  cmd.add_option("--set", f.sets,
                 "Any setting as section.key=value (repeatable), e.g. --set collector.interval=5s");
}

// Defaults, then the TOML file, then OUTPOST_* variables, then flags.
core::Result<config::Config> load_config(const ConfigFlags& f) {
  config::Config cfg;
  if (!f.config_file.empty()) {
    if (auto s = config::apply_toml_file(cfg, f.config_file); !s) return s;
  }
  if (auto s = config::apply_env(cfg, environ); !s) return s;
  auto set = [&](const char* section, const char* key, const std::string& value,
                 const char* flag) -> core::Status {
    if (value.empty()) return core::Status::ok();
    return config::set_key(cfg, section, key, value, flag);
  };
  for (const auto& kv : f.sets) {
    size_t dot = kv.find('.'), eq = kv.find('=');
    if (dot == std::string::npos || eq == std::string::npos || dot > eq)
      return core::Status::invalid(fmt::format("--set: '{}' is not section.key=value", kv));
    if (auto s = set_key(cfg, kv.substr(0, dot), kv.substr(dot + 1, eq - dot - 1),
                         kv.substr(eq + 1), "--set");
        !s)
      return s;
  }
  if (auto s = set("store", "data_dir", f.data_dir, "--data-dir"); !s) return s;
  if (auto s = set("server", "listen", f.listen, "--listen"); !s) return s;
  if (auto s = set("udp", "listen", f.udp_listen, "--udp-listen"); !s) return s;
  if (auto s = set("mqtt", "url", f.mqtt_url, "--mqtt-url"); !s) return s;
  if (auto s = set("log", "level", f.log_level, "--log-level"); !s) return s;
  if (f.simulate) cfg.hw.simulate = true;
  if (auto s = config::validate(cfg); !s) return s;
  return cfg;
}

void setup_logging(const config::LogConfig& log) {
  auto logger = std::make_shared<spdlog::logger>("outpost",
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %l %v", spdlog::pattern_time_type::utc);
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log.level));
  spdlog::flush_on(spdlog::level::info);
  spdlog::flush_every(std::chrono::seconds(1));
}

// A server holds a descriptor per connection: take the hard limit, not the soft default
// (often 1024), as nginx's worker_rlimit_nofile would.
void raise_open_files_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

int fail(const core::Status& s) {
  std::fprintf(stderr, "outpost: %s\n", s.message().c_str());
  return s.code() == core::Code::kInvalid ? 2 : 1;
}

core::Result<std::unique_ptr<store::Store>> open_store(const config::Config& cfg,
                                                       core::Registry* metrics) {
  auto store = store::Store::open(cfg.store, metrics);
  if (!store) return core::Status(store.status());
  return std::move(store.value());
}

// application/x-www-form-urlencoded escaping of one value.
std::string form_escape(std::string_view v) {
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else if (c == ' ') {
      out += '+';
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// A native command to a UDP device: seed 004's update body plus the command id the device
// answers with ({"ack": "<command_id>", "status": "ok"|"failed"}).
std::string udp_command_body(const core::Device& d, const hub::Command& c) {
  std::string value = c.value.is_string() ? c.value.get<std::string>() : c.value.dump();
  return fmt::format("action=update&device_id={}&sensor_id={}&parameter={}&value={}&command_id={}", form_escape(d.id),
                     form_escape(c.target), form_escape(c.parameter), form_escape(value), form_escape(c.id));
}

// This board as a device of the hub: its actuators (the LED, the relay, the servo) and no sensors
// yet (the collector's first sample brings them).
core::DeviceReport board_report(const std::string& device_id, hw::Board& board) {
  core::DeviceReport r{.id = device_id, .transport = core::Transport::kLocal, .received = core::now()};
  r.attributes = core::Json{{"name", device_id}, {"simulated", board.simulated}};
  core::Actuator led;
  led.actions = core::Json::array({{{"parameter", "state"}, {"primitive", "string"}, {"value", "on|off|toggle"}}});
  led.attributes = core::Json{{"name", "led"}, {"type", "led"}};
  core::Actuator relay;
  relay.actions = core::Json::array({{{"parameter", "state"}, {"primitive", "string"}, {"value", "on|off|toggle"}}});
  relay.attributes = core::Json{{"name", "relay"}, {"type", "relay"}};
  core::Actuator servo;
  servo.actions = core::Json::array({{{"parameter", "angle"}, {"primitive", "double"}, {"unit", "deg"}}});
  servo.attributes = core::Json{{"name", "servo"}, {"type", "servo"}, {"min", -90}, {"max", 90}};
  r.actuators = std::vector<core::Actuator>{led, relay, servo};
  return r;
}

// A command to this board: led or relay (state: on, off, toggle, true, false, 1, 0) or servo
// (angle: -90..90). Invalid for anything else (the client gets 400 and nothing is recorded).
core::Status command_board(hw::Board& board, const hub::Command& c, hub::Delivery& out) {
  const core::Json& v = c.value;
  if (c.target == "led" || c.target == "relay") {
    hw::DigitalOutput& output = c.target == "led" ? *board.led : *board.relay;
    if (c.parameter != "state" && c.parameter != "action")
      return core::Status::invalid(fmt::format("{} has parameter 'state', not '{}'", c.target, c.parameter));
    std::string want = v.is_string() ? v.get<std::string>() : v.is_boolean() ? (v.get<bool>() ? "on" : "off")
                       : v.is_number() ? (v.get<double>() != 0 ? "on" : "off") : "";
    if (want == "1" || want == "true") want = "on";
    if (want == "0" || want == "false") want = "off";
    core::Result<bool> state = false;
    if (want == "on" || want == "off") {
      if (auto s = output.set(want == "on"); !s) return s;
      state = want == "on";
    } else if (want == "toggle") {
      state = output.toggle();
      if (!state) return state.status();
    } else {
      return core::Status::invalid(fmt::format("{} state must be on, off or toggle, got {}", c.target, v.dump()));
    }
    out.done = true;
    out.detail = fmt::format("{} {}", c.target, *state ? "on" : "off");
    return core::Status::ok();
  }
  if (c.target == "servo") {
    if (c.parameter != "angle") return core::Status::invalid(fmt::format("servo has parameter 'angle', not '{}'", c.parameter));
    double angle = 0;
    if (v.is_number()) {
      angle = v.get<double>();
    } else if (v.is_string()) {
      auto text = v.get<std::string>();
      char* end = nullptr;
      angle = std::strtod(text.c_str(), &end);
      if (text.empty() || end != text.c_str() + text.size()) return core::Status::invalid("servo angle must be a number");
    } else {
      return core::Status::invalid("servo angle must be a number");
    }
    if (!std::isfinite(angle) || angle < -90 || angle > 90)
      return core::Status::invalid(fmt::format("servo angle must be within -90..90, got {}", v.dump()));
    if (auto s = board.servo->set_angle(angle); !s) return s;
    out.done = true;
    out.detail = fmt::format("servo at {} deg", angle);
    return core::Status::ok();
  }
  return core::Status::invalid(
      fmt::format("this board has no '{}': its actuators are led (state), relay (state) and servo (angle)", c.target));
}

// Home Assistant's view of this board: the collector's sensors, and the board's actuators as
// the hub knows them (so an actuator added to board_report() shows up by itself). Its commands
// go through the hub like anyone's, as "homeassistant".
core::Result<std::unique_ptr<mqtt::HomeAssistant>> start_home_assistant(const config::Config& cfg,
                                                                        const std::string& device_id,
                                                                        hw::Board& board, sysinfo::SysInfo& sys,
                                                                        hub::Hub& hub, core::Registry& metrics) {
  using mqtt::HaComponent;
  std::vector<mqtt::HaEntity> entities = {
      {.component = HaComponent::kSensor,
       .object_id = edge::kCpuTemp,
       .name = "CPU temperature",
       .state_sensor = edge::kCpuTemp,
       .device_class = "temperature",
       .unit = "°C",
       .state_class = "measurement"},
      {.component = HaComponent::kBinarySensor,
       .object_id = edge::kButtonPressed,
       .name = "Button",
       .state_sensor = edge::kButtonPressed},
  };
  auto report = board_report(device_id, board);
  for (auto& e : mqtt::ha_actuator_entities(*report.actuators)) entities.push_back(std::move(e));

  auto facts = sys.system();
  std::string model = facts && facts->rpi_revision != sysinfo::kUnknownDevice
                          ? "Raspberry " + facts->rpi_revision
                          : "Linux computer";
  if (board.simulated) model += " (simulated hardware)";
  auto submit = [&hub, device_id](const std::string& target, const std::string& parameter,
                                  const core::Json& value) -> core::Status {
    auto c = hub.submit(device_id, target, parameter, value, "homeassistant");
    if (!c) return c.status();
    if (c->state == hub::CommandState::kAcknowledged) return core::Status::ok();
    return core::Status::unavailable(
        fmt::format("command {} is {}: {}", c->id, hub::state_name(c->state), c->detail));
  };
  auto broker = mqtt::ha_broker(cfg.homeassistant, cfg.mqtt, device_id);
  auto ha = mqtt::HomeAssistant::create(broker, mqtt::ha_node(cfg.homeassistant, device_id, model, kVersion),
                                        std::move(entities), device_id, submit, metrics);
  if (!ha) return ha.status();
  // The servo has no reading: its state starts as the commanded angle. The LED's comes with the
  // collector's samples.
  if (auto angle = board.servo->angle()) (*ha)->set_state("servo", *angle);
  spdlog::info("homeassistant: node {} on {} (discovery prefix '{}')",
               mqtt::ha_node(cfg.homeassistant, device_id, "", "").node_id, broker.url,
               cfg.homeassistant.discovery_prefix);
  return ha;
}

// The transports of upstream destinations: the one place where a URL scheme maps to a Sink.
// HTTP(S) (plain destinations and other Outpost hubs) is upstream/'s own, https:// through the TLS
// plugin; mqtt:// and mqtts:// are mqtt/'s upstream sink. (config/ has already checked the scheme
// is one of the four.)
upstream::SinkFactory upstream_sinks(const std::string& device_id, const config::MqttConfig& mqtt_cfg,
                                     const std::string& tls_plugin, core::Registry& metrics) {
  return [device_id, mqtt_cfg, tls_plugin, &metrics](const config::UpstreamDestination& d)
             -> core::Result<std::unique_ptr<upstream::Sink>> {
    auto url = config::parse_url(d.url);
    std::string scheme = url ? url->scheme : "";
    if (scheme == "http" || scheme == "https") return upstream::make_http_sink(d, device_id, tls_plugin);
    if (scheme == "mqtt" || scheme == "mqtts") {
      // Its own connection, with [mqtt]'s keepalive and reconnect backoff and the destination's
      // broker, credentials and CA.
      config::MqttConfig broker = mqtt_cfg;
      broker.url = fmt::format("{}://{}:{}", url->scheme, url->host, url->port);
      broker.username = d.username;
      broker.password = d.password;
      broker.ca_file = d.ca_file;
      std::string client_id = d.client_id.empty() ? fmt::format("outpost-{}-{}", device_id, d.name) : d.client_id;
      return mqtt::make_upstream_sink(broker, d.topic, 1, std::move(client_id), metrics);
    }
    return core::Status::invalid(fmt::format("unknown scheme '{}'", scheme));
  };
}

int serve(const ConfigFlags& flags) {
  // Signals are taken by one thread with sigwait, so they are blocked everywhere else: before
  // any thread starts (spdlog's flusher, the store's writer), which inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  raise_open_files_limit();

  auto cfg_r = load_config(flags);
  if (!cfg_r) return fail(cfg_r.status());
  const config::Config& cfg = *cfg_r;
  setup_logging(cfg.log);

  core::Registry metrics;
  core::Bus bus(&metrics);  // before the store: its last callbacks publish here
  auto store = open_store(cfg, &metrics);
  if (!store) return fail(store.status());

  auth::Authenticator auth(**store, &metrics);
  if (!auth.has_active_key() && cfg.auth.create_initial_key) {
    auto key = auth::create_key(**store, auth::Scope::kAdmin, "initial admin key");
    if (!key) return fail(key.status());
    // On the terminal once, never through the logger.
    std::printf(
        "\nNo API key existed, so an admin key was created. It is shown only this once:\n\n    "
        "%s\n\n"
        "Send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'. Make narrower keys with\n"
        "'outpost keys create --scope read|control|admin --data-dir %s'.\n\n",
        key->key.c_str(), cfg.store.data_dir.c_str());
    std::fflush(stdout);
    auth.refresh();
  } else if (!auth.has_active_key()) {
    spdlog::warn(
        "no API key exists: every route except the public ones will answer 401; create one with "
        "'outpost keys create'");
  }

  hw::Board board = hw::open_board(cfg.hw, cfg.servo, cfg.system.root);
  spdlog::info("hardware: {} (led: {}, relay: {}, button: {}, cpu temperature: {}, servo: {})",
               board.simulated ? "simulated" : "gpio", board.led->describe(), board.relay->describe(),
               board.button->describe(), board.cpu->describe(), board.servo->describe());
  sysinfo::SysInfo sys(cfg.system.root);
  std::string device_id = cfg.system.device_id;
  if (device_id.empty()) {
    auto facts = sys.system();
    device_id = facts && !facts->hostname.empty() ? facts->hostname : "outpost";
  }

  // Seed 000's tokens: signed with a secret kept in the store, made on first start.
  auto issuer = auth::TokenIssuer::load_or_create(**store);
  if (!issuer) return fail(issuer.status());
  auto tokens = std::make_shared<const auth::TokenIssuer>(std::move(*issuer));
  auth.attach_tokens(tokens);
  auth::LoginLimiter limiter(cfg.auth);

  // Everything that leaves the device goes through the outbox: committed first, then delivered.
  auto outbox_r = upstream::Outbox::create(cfg.upstream, device_id, **store, metrics, upstream_sinks(device_id, cfg.mqtt, cfg.upstream.tls_plugin, metrics));
  if (!outbox_r) return fail(outbox_r.status());
  upstream::Outbox* outbox = outbox_r->get();

  // Every event is stored (with its outbox message, in the same transaction, when a destination
  // takes its kind), then, once committed (with its id), published on the bus.
  auto record_event = [outbox, &bus](core::Event e) {
    outbox->record_event(e, [&bus, e](core::Result<int64_t> id) mutable {
      if (!id) return;  // the store logs and counts write failures
      e.id = *id;
      bus.publish(e);
    });
  };

  edge::Collector collector(cfg.collector, device_id, board, **store, metrics, record_event);

  // The hub: every device's reports meet here, this board's included (the collector stores its
  // samples itself; the hub keeps the latest values and publishes them).
  hub::Hub hub(cfg.hub, **store, bus, metrics, record_event);
  if (auto s = hub.load(); !s) return fail(s);
  // Windowed summaries of every reading the hub accepts (this board's and remote devices'):
  // stored, published on the bus, closed on time by the housekeeping thread's tick.
  edge::Aggregator aggregator(cfg.aggregator, **store, bus, metrics);
  if (cfg.aggregator.summaries) {
    hub.add_readings_observer([&aggregator](const std::vector<core::Reading>& rs) { aggregator.observe(rs); });
  }
  // Upstream: every committed summary becomes an outbox message; the aggregator marks them handed
  // off once the outbox committed them all (Outbox::offer_summaries).
  if (cfg.aggregator.summaries && outbox->wants("summary")) {
    aggregator.set_handoff([outbox](const std::vector<core::Summary>& xs, std::function<void(core::Status)> done) {
      outbox->offer_summaries(xs, std::move(done));
    });
  }
  if (auto s = aggregator.start(); !s) spdlog::warn("aggregator: {}", s.to_string());
  // Home Assistant (made before the board's first report: readings observers come first).
  std::unique_ptr<mqtt::HomeAssistant> home_assistant;
  if (cfg.homeassistant.enabled) {
    auto h = start_home_assistant(cfg, device_id, board, sys, hub, metrics);
    if (!h) return fail(h.status());
    home_assistant = std::move(*h);
    hub.add_readings_observer(
        [ha = home_assistant.get()](const std::vector<core::Reading>& rs) { ha->on_readings(rs); });
  }
  hub.observe(board_report(device_id, board));
  collector.on_stored([&hub, device_id](const std::vector<core::Reading>& rs) {
    core::DeviceReport r{.id = device_id, .transport = core::Transport::kLocal, .received = core::now()};
    for (const auto& x : rs) {
      core::Sensor s{.id = x.sensor, .attributes = core::Json{{"type", x.sensor}}};
      s.value = core::SensorValue{x.unit, "double", x.ts, std::isfinite(x.value) ? core::Json(x.value) : core::Json()};
      r.sensors.push_back(std::move(s));
    }
    hub.observe(std::move(r));
  });
  hub.set_sender(core::Transport::kLocal, [&board](const core::Device&, const hub::Command& c, hub::Delivery& out) {
    return command_board(board, c, out);
  });
  // Local rules: every reading the hub accepts (this board's, UDP and MQTT devices') is shown to
  // them as it arrives; their commands go out through the hub, their firings are events. Declared
  // before the transports that feed the hub, so it outlives their threads.
  edge::RuleEngine rules(edge::RuleEngine::Deps{
      .hub = hub, .store = **store, .metrics = metrics, .record_event = record_event, .board = device_id});
  if (auto s = rules.load(cfg.rules); !s) return fail(s);
  hub.add_readings_observer([&rules](const std::vector<core::Reading>& rs) { rules.on_readings(rs); });
  // Alerts are "alert" events: record_event stores them with their outbox message in one
  // transaction, so they go upstream to every destination that takes "alert".
  rules.start();
  // FIWARE devices over UDP (seed 004): packets feed the hub; commands and forwards go back
  // from the same socket, so a device behind NAT hears them on the port it talks from.
  std::unique_ptr<ingest::UdpReceiver> udp;
  if (cfg.udp.listen != "off") {
    store::Store* keys_store = store->get();
    udp = std::make_unique<ingest::UdpReceiver>(
        cfg.udp,
        ingest::UdpSink{.reports = [&hub](std::vector<core::DeviceReport>&& r) { hub.ingest(std::move(r)); },
                        .ack = [&hub](core::CommandAck a, std::string from) { hub.ack(a, from); },
                        .check_key =
                            [keys_store](std::string_view id, std::string_view key) {
                              return auth::check_device_key(*keys_store, id, key);
                            }},
        metrics);
    auto at = udp->start();
    if (!at) return fail(at.status());
    hub.set_sender(core::Transport::kUdp, [&udp](const core::Device& d, const hub::Command& c, hub::Delivery&) {
      return udp->send(d.address, c.raw.empty() ? udp_command_body(d, c) : c.raw);
    });
  }
  // AstroPlant kits over MQTT: each kit is a device; commands go out on kit-rpc/request.
  std::unique_ptr<mqtt::KitClient> kits;
  if (!cfg.mqtt.url.empty()) {
    auto k = mqtt::KitClient::create(cfg.mqtt, "outpost-" + device_id,
                                     mqtt::KitSink{.report =
                                                       [&hub](core::DeviceReport r) {
                                                         std::vector<core::DeviceReport> one;
                                                         one.push_back(std::move(r));
                                                         hub.ingest(std::move(one));
                                                       },
                                                   .ack = [&hub](mqtt::KitAck a) { hub.ack(a.ack, a.serial); }},
                                     metrics);
    if (!k) return fail(k.status());
    kits = std::move(*k);
    hub.set_sender(core::Transport::kMqtt, [&kits](const core::Device& d, const hub::Command& c, hub::Delivery&) {
      return kits->send_command(d.id, c.id, c.target, c.parameter, c.value);
    });
    spdlog::info("mqtt: kits from {}", cfg.mqtt.url);
  }

  // Camera events go through record_event too: stored, then published on the bus.
  camera::SnapshotStore snapshots(
      (std::filesystem::path(cfg.store.data_dir) / "snapshots").string(),
      cfg.camera.snapshot_max_count, cfg.camera.snapshot_max_bytes);
  // Password hashes, snapshot files and other work that must hold neither an I/O thread nor
  // the camera's capture thread.
  boost::asio::thread_pool blocking(2);
  // Motion events leave the capture thread at once: saving the snapshot (write + fsync) runs
  // on the pool, through a strand so that "started" is recorded before "ended".
  auto camera_strand = boost::asio::make_strand(blocking);
  camera::CameraEvents camera_events;
  camera_events.on_motion = [&](const camera::MotionEvent& ev, camera::JpegPtr snapshot) {
    boost::asio::post(camera_strand, [&, e = ev, frame = std::move(snapshot)] {
      nlohmann::json boxes = nlohmann::json::array();
      for (const auto& b : e.boxes) boxes.push_back({b.x, b.y, b.w, b.h});
      nlohmann::ordered_json payload = {{"state", e.ended ? "ended" : "started"},
                                        {"start", core::format_iso8601(e.start)},
                                        {"peak_area", e.peak_area},
                                        {"boxes", boxes}};
      if (e.ended) payload["end"] = core::format_iso8601(e.end);
      if (frame && !e.ended) {
        auto name = snapshots.save(*frame);
        if (name) payload["snapshot"] = *name;
        // The outbox keeps its own copy: the file may go to snapshot retention before delivery.
        if (outbox->wants("snapshot")) outbox->offer("snapshot", "image/jpeg", frame->data, nullptr);
      }
      record_event(core::Event{0, e.ended ? e.end : e.start, device_id, "motion", payload.dump()});
    });
  };
  camera_events.on_faces = [&](const std::vector<camera::Box>& faces, core::TimePoint ts) {
    nlohmann::json boxes = nlohmann::json::array();
    for (const auto& b : faces) boxes.push_back({b.x, b.y, b.w, b.h});
    nlohmann::ordered_json payload = {{"count", faces.size()}, {"boxes", boxes}};
    record_event(core::Event{0, ts, device_id, "face", payload.dump()});
  };
  std::unique_ptr<camera::Camera> cam;
  if (cfg.camera.source != "off") {
    auto c = camera::load_camera(cfg.camera, cfg.motion, cfg.face, camera_events, metrics);
    if (!c) return fail(c.status());
    cam = std::move(*c);
  }
  api::StreamMetrics stream_metrics(metrics);
  api::StreamTokens stream_tokens;

  api::Deps deps{.cfg = cfg,
                 .device_id = device_id,
                 .store = **store,
                 .board = board,
                 .collector = collector,
                 .sys = sys,
                 .metrics = metrics,
                 .started = core::now(),
                 .auth = auth,
                 .tokens = tokens.get(),
                 .limiter = &limiter,
                 .camera = cam.get(),
                 .snapshots = &snapshots,
                 .stream_metrics = &stream_metrics,
                 .stream_tokens = &stream_tokens,
                 .record_event = record_event,
                 .run_blocking = [&blocking](std::function<void()> fn) {
                   boost::asio::post(blocking, std::move(fn));
                 },
                 .hub = &hub,
                 .aggregator = &aggregator,
                 .rules = &rules};
  deps.on_snapshot_saved = [outbox, &snapshots](const std::string& name) {
    if (!outbox->wants("snapshot")) return;
    auto bytes = snapshots.read(name);
    if (!bytes) return spdlog::warn("upstream: snapshot {} not offered: {}", name, bytes.status().to_string());
    outbox->offer("snapshot", "image/jpeg", std::move(*bytes), nullptr);
  };
  deps.outbox = outbox;
  deps.publish_event = [&bus](const core::Event& e) { bus.publish(e); };
  // Live events over WebSocket: GET /ws, and a handshake on / for seed 004's browser client.
  ws::Server live(ws::Deps{.cfg = cfg.ws,
                           .bus = bus,
                           .auth = auth,
                           .metrics = metrics,
                           .anonymous_read = cfg.hub.anonymous_read,
                           .list = [&hub] { return hub.list_json(); },
                           .command = [&hub](const core::Json& c,
                                             const auth::Principal& who) -> core::Result<std::string> {
                             auto r = hub.submit(c.value("device", ""), c.value("target", ""), c.value("parameter", ""),
                                                 c.value("value", core::Json()), who.name);
                             if (!r) return r.status();
                             return r->id;
                           }});
  deps.ws_upgrade = live.handler();
  deps.hub_health = [&] {
    nlohmann::json j = {{"devices", hub.registry().size()}, {"online", hub.registry().online()}};
    j["udp"] = udp ? nlohmann::json{{"listening", udp->local_address()}} : nlohmann::json{{"enabled", false}};
    j["websocket_clients"] = live.clients();
    if (kits) {
      auto h = kits->health();
      j["mqtt"] = {{"connected", h.connected}, {"detail", h.detail}, {"messages", h.messages},
                   {"dropped", h.dropped}};
    } else {
      j["mqtt"] = {{"enabled", false}};
    }
    if (home_assistant) {
      auto h = home_assistant->health();
      j["homeassistant"] = {{"connected", h.connected}, {"detail", h.detail}, {"commands", h.commands},
                            {"dropped", h.dropped}};
    } else {
      j["homeassistant"] = {{"enabled", false}};
    }
    return j;
  };
  http::Router router;
  live.register_routes(router);
  api::register_service_routes(router, deps);
  api::register_device_routes(router, deps);
  api::register_raspap_routes(router, deps);
  api::register_root_routes(router, deps);
  api::register_seed000_routes(router, deps);
  api::register_camera_routes(router, deps);
  api::register_device_hub_routes(router, deps);
  api::register_summary_routes(router, deps);
  api::register_rule_routes(router, deps);
  api::register_upstream_routes(router, deps);

  http::Server server(cfg.server, cfg.log, router, auth, metrics);
  auto bound = server.start();
  if (!bound) {
    live.shutdown(std::chrono::milliseconds(0));
    return fail(bound.status());
  }
  collector.start();
  outbox->start();
  if (cam) {
    cam->start();
    spdlog::info("camera: {}", cam->health().source);
  }
  spdlog::info("outpost {} serving device '{}' with data in {}", kVersion, device_id,
               cfg.store.data_dir);
  spdlog::info("listening on {}", *bound);

  // Housekeeping thread: waits for SIGINT/SIGTERM, and once a second lets the authenticator
  // pick up keys made or revoked by `outpost keys` in another process.
  std::atomic<bool> done{false};
  std::thread housekeeping([&] {
    timespec tick{1, 0};
    while (!done) {
      int sig = sigtimedwait(&signals, nullptr, &tick);
      if (sig == SIGINT || sig == SIGTERM) {
        spdlog::info("signal {}: finishing requests in flight, then stopping",
                     sig == SIGINT ? "SIGINT" : "SIGTERM");
        live.shutdown();  // 1001 to every WebSocket client while the io threads still run
        server.stop();
        return;
      }
      auth.refresh();
      auto now = core::now();
      hub.tick(now);
      aggregator.tick(now);
    }
  });
  server.run();
  done = true;
  housekeeping.join();

  if (cam) cam->stop();
  if (home_assistant) home_assistant->stop();  // "offline" first; before the hub it commands
  if (kits) kits->stop();
  if (udp) udp->stop();
  blocking.join();
  collector.stop();
  // No reading comes any more (the collector's last samples reach the hub once committed: flush
  // first). Close what is due, keep the open windows for the next start.
  if (auto s = (*store)->flush(); !s) spdlog::error("store flush at exit: {}", s.to_string());
  (void)aggregator.stop();
  rules.stop();
  outbox->stop();  // a delivery in progress finishes (at most its timeout); the rest waits in the store
  hub.save();  // the devices changed since the last save
  if (auto s = (*store)->flush(); !s) spdlog::error("store flush at exit: {}", s.to_string());
  (*store)->close();
  spdlog::info("stopped");
  spdlog::shutdown();
  return 0;
}

int keys_create(const ConfigFlags& flags, const std::string& scope_text, const std::string& name) {
  auto cfg = load_config(flags);
  if (!cfg) return fail(cfg.status());
  auto scope = auth::parse_scope(scope_text);
  if (!scope)
    return fail(core::Status::invalid(
        fmt::format("--scope: '{}' is not read, control or admin", scope_text)));
  auto store = open_store(*cfg, nullptr);
  if (!store) return fail(store.status());
  auto key = auth::create_key(**store, *scope, name);
  if (!key) return fail(key.status());
  std::printf("Created key %s (name '%s', scope %s). It is shown only this once:\n%s\n",
              auth::key_prefix(key->record.id).c_str(), name.c_str(), auth::scope_name(*scope),
              key->key.c_str());
  return 0;
}

int device_key(const ConfigFlags& flags, const std::string& device) {
  auto cfg = load_config(flags);
  if (!cfg) return fail(cfg.status());
  auto store = open_store(*cfg, nullptr);
  if (!store) return fail(store.status());
  auto key = auth::create_device_key(**store, device);
  if (!key) return fail(key.status());
  std::printf("Key of device '%s' (packets carry it as \"api_key\"; shown only this once):\n%s\n", device.c_str(),
              key->c_str());
  return 0;
}

int keys_list(const ConfigFlags& flags) {
  auto cfg = load_config(flags);
  if (!cfg) return fail(cfg.status());
  auto store = open_store(*cfg, nullptr);
  if (!store) return fail(store.status());
  auto keys = (*store)->list_keys();
  if (!keys) return fail(keys.status());
  std::printf("%-16s %-8s %-28s %-28s %s\n", "PREFIX", "SCOPE", "CREATED", "REVOKED", "NAME");
  for (const auto& k : *keys) {
    std::printf("%-16s %-8s %-28s %-28s %s\n", auth::key_prefix(k.id).c_str(), k.scope.c_str(),
                core::format_iso8601(k.created).c_str(),
                k.revoked ? core::format_iso8601(*k.revoked).c_str() : "-", k.name.c_str());
  }
  return 0;
}

int keys_revoke(const ConfigFlags& flags, std::string which) {
  auto cfg = load_config(flags);
  if (!cfg) return fail(cfg.status());
  auto store = open_store(*cfg, nullptr);
  if (!store) return fail(store.status());
  if (which.rfind("opk_", 0) == 0)
    which = which.substr(4, 10);  // a prefix or a whole key names its id
  if (auto s = (*store)->revoke_key(which); !s) return fail(s);
  std::printf("Revoked %s. A running server stops accepting it within a second.\n", which.c_str());
  return 0;
}

// Reads the device password from standard input (without echo on a terminal) and stores its
// argon2id hash. One trailing newline is not part of the password.
int password_set(const ConfigFlags& flags) {
  auto cfg = load_config(flags);
  if (!cfg) return fail(cfg.status());
  bool tty = isatty(STDIN_FILENO);
  termios saved{};
  if (tty) {
    std::fprintf(stderr, "New device password: ");
    tcgetattr(STDIN_FILENO, &saved);
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  std::string password;
  if (tty) {
    std::getline(std::cin, password);
    tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    std::fprintf(stderr, "\n");
  } else {
    password.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    if (!password.empty() && password.back() == '\n') password.pop_back();
    if (!password.empty() && password.back() == '\r') password.pop_back();
  }
  auto store = open_store(*cfg, nullptr);
  if (!store) return fail(store.status());
  if (auto s = auth::set_password(**store, password); !s) return fail(s);
  std::printf("Device password set. POST /login with {\"password\": ...} now returns a token.\n");
  return 0;
}

int config_check(const ConfigFlags& flags) {
  auto cfg = load_config(flags);
  if (!cfg) return fail(cfg.status());
  // The rules' documents (whether their devices exist is known only to a running hub).
  for (size_t i = 0; i < cfg->rules.size(); ++i) {
    edge::RuleError err;
    auto doc = nlohmann::json::parse(cfg->rules[i].json, nullptr, false);
    if (!edge::parse_rule(doc, cfg->system.device_id.empty() ? "this-board" : cfg->system.device_id, err))
      return fail(core::Status::invalid(
          fmt::format("{}: rules[{}]{}{}: {}", cfg->rules[i].origin, i, err.field.empty() ? "" : ".", err.field, err.message)));
  }
  std::printf("configuration OK: listen %s, data dir %s, hardware %s, %zu rule(s)\n", cfg->server.listen.c_str(),
              cfg->store.data_dir.c_str(), cfg->hw.simulate ? "simulated" : "auto", cfg->rules.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Outpost: an edge API server and device hub for Raspberry Pi-class machines"};
  app.require_subcommand(1);
  app.set_version_flag("--version", kVersion);

  ConfigFlags serve_flags;
  auto* serve_cmd = app.add_subcommand("serve", "Run the server");
  add_config_flags(*serve_cmd, serve_flags, true);

  ConfigFlags keys_flags;
  std::string scope = "read", name = "api key", which;
  auto* keys_cmd = app.add_subcommand("keys", "Manage API keys");
  keys_cmd->require_subcommand(1);
  auto* create_cmd =
      keys_cmd->add_subcommand("create", "Create a key; prints it alone on the last line");
  add_config_flags(*create_cmd, keys_flags, false);
  create_cmd->add_option("--scope", scope, "read, control or admin")->required();
  create_cmd->add_option("--name", name, "A label for the key");
  auto* list_cmd = keys_cmd->add_subcommand("list", "List keys by name and prefix");
  add_config_flags(*list_cmd, keys_flags, false);
  auto* revoke_cmd = keys_cmd->add_subcommand("revoke", "Revoke a key by id, prefix or name");
  add_config_flags(*revoke_cmd, keys_flags, false);
  revoke_cmd->add_option("key", which, "Key id, prefix (opk_...) or name")->required();

  ConfigFlags check_flags;
  ConfigFlags devices_flags;
  std::string device_for_key;
  auto* devices_cmd = app.add_subcommand("devices", "Hub devices");
  devices_cmd->require_subcommand(1);
  auto* device_key_cmd = devices_cmd->add_subcommand(
      "key", "Make (or replace) a device's key for udp.require_key; prints it alone on the last line");
  add_config_flags(*device_key_cmd, devices_flags, false);
  device_key_cmd->add_option("device", device_for_key, "Device id")->required();

  auto* config_cmd = app.add_subcommand("config", "Configuration");
  config_cmd->require_subcommand(1);
  auto* check_cmd = config_cmd->add_subcommand("check", "Load and validate the configuration");
  add_config_flags(*check_cmd, check_flags, true);

  ConfigFlags password_flags;
  auto* password_cmd =
      app.add_subcommand("password", "The device password of seed 000's /login and /signup");
  password_cmd->require_subcommand(1);
  auto* password_set_cmd = password_cmd->add_subcommand(
      "set", "Read the password from standard input; store its argon2id hash");
  add_config_flags(*password_set_cmd, password_flags, false);

  auto* version_cmd = app.add_subcommand("version", "Print the version");

  CLI11_PARSE(app, argc, argv);

  if (*serve_cmd) return serve(serve_flags);
  if (*create_cmd) return keys_create(keys_flags, scope, name);
  if (*list_cmd) return keys_list(keys_flags);
  if (*revoke_cmd) return keys_revoke(keys_flags, which);
  if (*device_key_cmd) return device_key(devices_flags, device_for_key);
  if (*check_cmd) return config_check(check_flags);
  if (*password_set_cmd) return password_set(password_flags);
  if (*version_cmd) {
    std::printf("outpost %s\n", kVersion);
    return 0;
  }
  return 0;
}

}  // namespace outpost::app
