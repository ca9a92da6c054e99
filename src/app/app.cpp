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
#include "http/http.hpp"
#include "hw/hw.hpp"
#include "store/store.hpp"
#include "sysinfo/sysinfo.hpp"

extern char** environ;

namespace outpost::app {

namespace {

constexpr const char* kVersion = OUTPOST_VERSION;

// Flags shared by the subcommands that read the configuration.
struct ConfigFlags {
  std::string config_file;
  std::string data_dir;
  std::string listen;
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
  spdlog::info("hardware: {} (led: {}, button: {}, cpu temperature: {}, servo: {})",
               board.simulated ? "simulated" : "gpio", board.led->describe(),
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

  // Every event is stored, then, once committed (with its id), published on the bus.
  store::Store* store_ptr = store->get();
  auto record_event = [store_ptr, &bus](core::Event e) {
    store_ptr->append_event(e, [&bus, e](core::Result<int64_t> id) mutable {
      if (!id) return;  // the store logs and counts write failures
      e.id = *id;
      bus.publish(e);
    });
  };

  edge::Collector collector(cfg.collector, device_id, board, **store, metrics, record_event);

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
                 }};
  http::Router router;
  api::register_service_routes(router, deps);
  api::register_device_routes(router, deps);
  api::register_raspap_routes(router, deps);
  api::register_seed000_routes(router, deps);
  api::register_camera_routes(router, deps);

  http::Server server(cfg.server, cfg.log, router, auth, metrics);
  auto bound = server.start();
  if (!bound) return fail(bound.status());
  collector.start();
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
        server.stop();
        return;
      }
      auth.refresh();
    }
  });
  server.run();
  done = true;
  housekeeping.join();

  if (cam) cam->stop();
  blocking.join();
  collector.stop();
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
  std::printf("configuration OK: listen %s, data dir %s, hardware %s\n", cfg->server.listen.c_str(),
              cfg->store.data_dir.c_str(), cfg->hw.simulate ? "simulated" : "auto");
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
  if (*check_cmd) return config_check(check_flags);
  if (*password_set_cmd) return password_set(password_flags);
  if (*version_cmd) {
    std::printf("outpost %s\n", kVersion);
    return 0;
  }
  return 0;
}

}  // namespace outpost::app
