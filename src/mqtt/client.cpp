// Client: one libmosquitto connection, driven by a thread of our own with poll().
//
// libmosquitto is told it is threaded (mosquitto_threaded_set), so publish/subscribe from other
// threads only queue the packet; they then write to `wake_fd_` and this thread, which does all
// socket I/O, picks the packet up. All callbacks run on this thread.

#include <errno.h>
#include <fmt/format.h>
#include <mosquitto.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <mutex>
#include <system_error>
#include <thread>

#include "mqtt/detail/libmosquitto.hpp"
#include "mqtt/mqtt.hpp"

namespace outpost::mqtt {

namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kInitialBackoff = 100ms;
constexpr std::chrono::milliseconds kDisconnectFlush = 1000ms;
constexpr const char* kSystemCaPath = "/etc/ssl/certs";

// Loads libmosquitto (see detail/libmosquitto.hpp). mosquitto_lib_init is not thread-safe and
// belongs once to the process; a function-local static gives both, and cleans up at exit.
core::Status ensure_library() {
  if (auto s = detail::load_libmosquitto(); !s) return s;
  struct Library {
    Library() { mosquitto_lib_init(); }
    ~Library() { mosquitto_lib_cleanup(); }
  };
  static Library library;
  return core::Status::ok();
}

// mosquitto_strerror(MOSQ_ERR_ERRNO) reads errno through strerror(), which is not thread-safe.
std::string error_text(int rc, int err) {
  if (rc == MOSQ_ERR_ERRNO) return std::system_category().message(err);
  std::string s = mosquitto_strerror(rc);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

std::string seconds_text(std::chrono::milliseconds d) {
  return fmt::format("{:.1f} s", static_cast<double>(d.count()) / 1000.0);
}

}  // namespace

core::Result<BrokerUrl> parse_broker_url(std::string_view url) {
  BrokerUrl b;
  std::string_view rest;
  if (url.substr(0, 7) == "mqtt://") {
    rest = url.substr(7);
  } else if (url.substr(0, 8) == "mqtts://") {
    rest = url.substr(8);
    b.tls = true;
  } else {
    return core::Status::invalid(
        fmt::format("mqtt.url: '{}' is not mqtt://HOST:PORT or mqtts://HOST:PORT", url));
  }
  auto hp = config::parse_host_port(std::string(rest));
  if (!hp || hp->port == 0) {
    return core::Status::invalid(
        fmt::format("mqtt.url: '{}' is not mqtt://HOST:PORT or mqtts://HOST:PORT", url));
  }
  b.host = hp->host;
  b.port = hp->port;
  return b;
}

struct Client::Impl {
  config::MqttConfig cfg;
  BrokerUrl url;
  std::string name;
  ClientCallbacks callbacks;
  ClientMetrics metrics;
  Client* owner = nullptr;
  mosquitto* mosq = nullptr;
  int wake_fd = -1;
  std::thread thread;
  std::mutex stop_mu;  // one stop() at a time

  std::atomic<bool> stopping{false};
  std::atomic<bool> connected{false};
  std::atomic<uint64_t> reconnects{0};

  mutable std::mutex mu;  // guards the health fields below
  bool stopped = false;
  bool faulted = false;
  core::TimePoint started = core::now();
  core::TimePoint fault_since{};
  uint64_t fault_failures = 0;  // attempts that failed since the fault started
  std::string last_error;

  // The client thread's own.
  std::string session_error;  // why the current connection attempt or session ended
  bool session_connected = false;

  std::mutex lib_error_mu;
  std::string lib_error;  // the first error libmosquitto logged in this attempt (OpenSSL's reason)

  ~Impl() {
    if (mosq) mosquitto_destroy(mosq);
    if (wake_fd >= 0) ::close(wake_fd);
  }

  void wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd, &one, sizeof one);  // adds to the count
  }

  void drain_wake() {
    uint64_t v;
    [[maybe_unused]] ssize_t n = ::read(wake_fd, &v, sizeof v);
  }

  int keepalive_seconds() const {
    auto s = (cfg.keepalive.count() + 999) / 1000;
    return static_cast<int>(std::clamp<int64_t>(s, 5, 65535));
  }

  // --- libmosquitto callbacks (client thread) ---

  static void on_connect_cb(mosquitto*, void* self, int rc) {
    static_cast<Impl*>(self)->on_connect(rc);
  }
  static void on_disconnect_cb(mosquitto*, void* self, int rc) {
    int err = errno;  // before libmosquitto closes the socket
    auto* impl = static_cast<Impl*>(self);
    if (impl->session_error.empty())
      impl->session_error = rc == 0 ? "disconnected" : error_text(rc, err);
  }
  static void on_message_cb(mosquitto*, void* self, const mosquitto_message* m) {
    static_cast<Impl*>(self)->on_message(m);
  }
  static void on_publish_cb(mosquitto*, void* self, int mid) {
    auto* impl = static_cast<Impl*>(self);
    if (!impl->callbacks.on_publish) return;
    try {
      impl->callbacks.on_publish(mid);
    } catch (const std::exception& e) {
      spdlog::error("mqtt {}: on_publish failed: {}", impl->name, e.what());
    }
  }
  // libmosquitto says why TLS failed only in its log ("OpenSSL Error[0]: ...certificate verify
  // failed").
  static void on_log_cb(mosquitto*, void* self, int level, const char* text) {
    if (!(level & MOSQ_LOG_ERR) || text == nullptr) return;
    auto* impl = static_cast<Impl*>(self);
    std::lock_guard lk(impl->lib_error_mu);
    if (impl->lib_error.empty()) impl->lib_error = std::string(text).substr(0, 300);
  }

  // The error of a failed attempt or a lost session, with libmosquitto's logged reason if any.
  std::string with_lib_error(std::string error) {
    std::lock_guard lk(lib_error_mu);
    if (!lib_error.empty()) error += " (" + lib_error + ")";
    return error;
  }

  void on_connect(int rc) {
    if (rc != 0) {
      session_error = std::string("refused: ") + mosquitto_connack_string(rc);
      return;
    }
    session_connected = true;
    connected.store(true, std::memory_order_release);
    if (metrics.connected) metrics.connected->set(1);
    {
      std::lock_guard lk(mu);
      if (faulted) {
        auto down =
            std::chrono::duration_cast<std::chrono::milliseconds>(core::now() - fault_since);
        spdlog::info("mqtt {}: connected to {} after {} unreachable and {} failed attempt{}", name,
                     cfg.url, seconds_text(down), fault_failures, fault_failures == 1 ? "" : "s");
      } else {
        spdlog::info("mqtt {}: connected to {}", name, cfg.url);
      }
      faulted = false;
      last_error.clear();
    }
    if (!callbacks.on_connect) return;
    try {
      callbacks.on_connect(*owner);
    } catch (const std::exception& e) {
      spdlog::error("mqtt {}: on_connect failed: {}", name, e.what());
    }
  }

  void on_message(const mosquitto_message* m) {
    if (!callbacks.on_message) return;
    Message msg{m->topic ? std::string_view(m->topic) : std::string_view(),
                std::string_view(static_cast<const char*>(m->payload),
                                 m->payloadlen > 0 ? size_t(m->payloadlen) : 0),
                m->qos, m->retain};
    try {
      callbacks.on_message(msg);
    } catch (const std::exception& e) {
      spdlog::error("mqtt {}: handling a message on '{}' failed: {}", name, msg.topic, e.what());
    }
  }

  // --- the client thread ---

  void run() {
    auto backoff = std::min(kInitialBackoff, cfg.reconnect_max_backoff);
    bool first = true;
    while (!stopping.load()) {
      if (!first) {
        reconnects.fetch_add(1);
        if (metrics.reconnects) metrics.reconnects->inc();
      }
      first = false;
      session_error.clear();
      session_connected = false;
      {
        std::lock_guard lk(lib_error_mu);
        lib_error.clear();
      }
      errno = 0;
      // Blocks for name resolution; the TCP connect and the MQTT handshake continue in session().
      int rc = mosquitto_connect_async(mosq, url.host.c_str(), url.port, keepalive_seconds());
      std::string error = rc == MOSQ_ERR_SUCCESS ? session() : error_text(rc, errno);
      if (stopping.load()) break;
      lost(with_lib_error(std::move(error)));
      if (session_connected) backoff = std::min(kInitialBackoff, cfg.reconnect_max_backoff);
      sleep_for(backoff);
      backoff = std::min(backoff * 2, cfg.reconnect_max_backoff);
    }
    disconnect();
  }

  // Runs one connection until it ends (returns why) or stop() is called (returns "").
  std::string session() {
    for (;;) {
      if (stopping.load()) return {};
      int fd = mosquitto_socket(mosq);
      if (fd < 0) return session_error.empty() ? "connection closed" : session_error;
      short events = POLLIN;
      if (mosquitto_want_write(mosq)) events |= POLLOUT;
      pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
      // At least once a second: mosquitto_loop_misc sends the keepalive pings.
      if (::poll(fds, 2, 1000) < 0) {
        if (errno == EINTR) continue;
        return "poll: " + std::system_category().message(errno);
      }
      if (fds[1].revents & POLLIN) drain_wake();
      if (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) {
        errno = 0;
        int rc = mosquitto_loop_read(mosq, 1);
        if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(mosq) < 0) return ended(rc, errno);
      }
      if (fds[0].revents & POLLOUT) {
        errno = 0;
        int rc = mosquitto_loop_write(mosq, 1);
        if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(mosq) < 0) return ended(rc, errno);
      }
      int rc = mosquitto_loop_misc(mosq);
      if (rc != MOSQ_ERR_SUCCESS) return ended(rc, errno);
    }
  }

  std::string ended(int rc, int err) {
    if (!session_error.empty()) return session_error;
    return rc == MOSQ_ERR_SUCCESS ? "connection closed" : error_text(rc, err);
  }

  // A failed attempt or a lost connection: logged when the fault starts, counted while it lasts.
  void lost(const std::string& error) {
    bool was_connected = connected.exchange(false);
    if (metrics.connected) metrics.connected->set(0);
    std::lock_guard lk(mu);
    last_error = error;
    if (faulted) {
      ++fault_failures;
      return;
    }
    faulted = true;
    fault_since = core::now();
    fault_failures = was_connected ? 0 : 1;  // a lost session is not a failed attempt
    if (was_connected) {
      spdlog::warn("mqtt {}: connection to {} lost: {}; reconnecting with backoff up to {}", name,
                   cfg.url, error, seconds_text(cfg.reconnect_max_backoff));
    } else {
      spdlog::warn("mqtt {}: cannot connect to {}: {}; retrying with backoff up to {}", name,
                   cfg.url, error, seconds_text(cfg.reconnect_max_backoff));
    }
  }

  void sleep_for(std::chrono::milliseconds d) {
    auto deadline = Steady::now() + d;
    while (!stopping.load()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Steady::now());
      if (left <= 0ms) return;
      pollfd fd{wake_fd, POLLIN, 0};
      if (::poll(&fd, 1, static_cast<int>(std::min<int64_t>(left.count(), INT_MAX))) > 0)
        drain_wake();
    }
  }

  // On stop: DISCONNECT when connected, flushed for at most kDisconnectFlush.
  void disconnect() {
    if (connected.exchange(false) && mosquitto_disconnect(mosq) == MOSQ_ERR_SUCCESS) {
      auto deadline = Steady::now() + kDisconnectFlush;
      // Writing the DISCONNECT makes libmosquitto close the socket.
      while (mosquitto_socket(mosq) >= 0 && mosquitto_want_write(mosq) &&
             Steady::now() < deadline) {
        pollfd fd{mosquitto_socket(mosq), POLLOUT, 0};
        if (::poll(&fd, 1, 100) > 0 && mosquitto_loop_write(mosq, 1) != MOSQ_ERR_SUCCESS) break;
      }
      spdlog::info("mqtt {}: disconnected from {}", name, cfg.url);
    }
    if (metrics.connected) metrics.connected->set(0);
  }
};

core::Result<std::unique_ptr<Client>> Client::create(const config::MqttConfig& cfg,
                                                     std::string client_id, std::string name,
                                                     ClientCallbacks callbacks,
                                                     ClientMetrics metrics, ClientOptions options) {
  auto url = parse_broker_url(cfg.url);
  if (!url) return url.status();
  if (!options.clean_session && client_id.empty())
    return core::Status::invalid("mqtt: a persistent session needs a client id");
  if (auto s = ensure_library(); !s) return s;

  auto impl = std::make_unique<Impl>();
  impl->cfg = cfg;
  impl->url = *url;
  impl->name = std::move(name);
  impl->callbacks = std::move(callbacks);
  impl->metrics = metrics;
  // An empty id lets libmosquitto make a random one (clean sessions only: checked above).
  impl->mosq = mosquitto_new(client_id.empty() ? nullptr : client_id.c_str(), options.clean_session,
                             impl.get());
  if (!impl->mosq) {
    int err = errno;
    if (err == EINVAL)
      return core::Status::invalid(fmt::format("mqtt.client_id: '{}' is not usable", client_id));
    return core::Status::internal("mqtt: mosquitto_new: " + std::system_category().message(err));
  }
  mosquitto_threaded_set(impl->mosq, true);
  mosquitto_int_option(impl->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  if (!cfg.username.empty()) {
    int rc = mosquitto_username_pw_set(impl->mosq, cfg.username.c_str(),
                                       cfg.password.empty() ? nullptr : cfg.password.c_str());
    if (rc != MOSQ_ERR_SUCCESS) return core::Status::invalid("mqtt.username: " + error_text(rc, 0));
  }
  if (url->tls) {
    bool own_ca = !cfg.ca_file.empty();
    int rc = mosquitto_tls_set(impl->mosq, own_ca ? cfg.ca_file.c_str() : nullptr,
                               own_ca ? nullptr : kSystemCaPath, nullptr, nullptr, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
      return core::Status::invalid(own_ca
                                       ? fmt::format("mqtt.ca_file: cannot read '{}'", cfg.ca_file)
                                       : "mqtt: TLS setup failed: " + error_text(rc, errno));
    }
  }
  if (options.will) {
    const Will& w = *options.will;
    if (w.payload.size() > static_cast<size_t>(INT_MAX))
      return core::Status::too_large("mqtt: will payload too large");
    // libmosquitto 2.0.11 does not check the will's QoS itself.
    int rc = w.qos < 0 || w.qos > 2 ? MOSQ_ERR_INVAL
                                    : mosquitto_will_set(impl->mosq, w.topic.c_str(),
                                                         static_cast<int>(w.payload.size()),
                                                         w.payload.data(), w.qos, w.retain);
    if (rc != MOSQ_ERR_SUCCESS) {
      return core::Status::invalid(
          fmt::format("mqtt: cannot use '{}' as the will's topic with QoS {}: {}", w.topic, w.qos,
                      error_text(rc, 0)));
    }
  }
  mosquitto_connect_callback_set(impl->mosq, &Impl::on_connect_cb);
  mosquitto_publish_callback_set(impl->mosq, &Impl::on_publish_cb);
  mosquitto_disconnect_callback_set(impl->mosq, &Impl::on_disconnect_cb);
  mosquitto_message_callback_set(impl->mosq, &Impl::on_message_cb);
  mosquitto_log_callback_set(impl->mosq, &Impl::on_log_cb);
  impl->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (impl->wake_fd < 0)
    return core::Status::internal("mqtt: eventfd: " + std::system_category().message(errno));
  if (metrics.connected) metrics.connected->set(0);

  std::unique_ptr<Client> client(new Client(std::move(impl)));
  Impl* i = client->impl_.get();
  i->thread = std::thread([i] { i->run(); });
  return client;
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) { impl_->owner = this; }

Client::~Client() { stop(); }

void Client::stop() {
  std::lock_guard lk(impl_->stop_mu);
  impl_->stopping.store(true);
  impl_->wake();
  if (impl_->thread.joinable()) impl_->thread.join();
  std::lock_guard lk2(impl_->mu);
  impl_->stopped = true;
}

bool Client::connected() const { return impl_->connected.load(std::memory_order_acquire); }

ClientHealth Client::health() const {
  ClientHealth h;
  h.connected = connected();
  h.reconnects = impl_->reconnects.load();
  std::lock_guard lk(impl_->mu);
  if (impl_->stopped)
    h.detail = "stopped";
  else if (h.connected)
    h.detail = "connected";
  else if (impl_->faulted)
    h.detail = fmt::format("connecting: {} since {}", impl_->last_error,
                           core::format_iso8601(impl_->fault_since));
  else
    h.detail = "connecting since " + core::format_iso8601(impl_->started);
  return h;
}

core::Status Client::subscribe(const std::string& pattern, int qos) {
  if (!connected())
    return core::Status::unavailable(
        fmt::format("mqtt {}: not connected to {}", impl_->name, impl_->cfg.url));
  int rc = mosquitto_subscribe(impl_->mosq, nullptr, pattern.c_str(), qos);
  impl_->wake();
  if (rc == MOSQ_ERR_SUCCESS) return core::Status::ok();
  if (rc == MOSQ_ERR_INVAL || rc == MOSQ_ERR_MALFORMED_UTF8) {
    return core::Status::invalid(
        fmt::format("mqtt: cannot subscribe to '{}': {}", pattern, error_text(rc, 0)));
  }
  return core::Status::unavailable(
      fmt::format("mqtt {}: subscribe: {}", impl_->name, error_text(rc, errno)));
}

core::Status Client::publish(const std::string& topic, std::string_view payload, int qos,
                             bool retain) {
  return publish_with_id(topic, payload, qos, retain).status();
}

core::Result<int> Client::publish_with_id(const std::string& topic, std::string_view payload,
                                          int qos, bool retain) {
  if (payload.size() > static_cast<size_t>(INT_MAX))
    return core::Status::too_large("mqtt: payload too large");
  if (!connected())
    return core::Status::unavailable(
        fmt::format("mqtt {}: not connected to {}", impl_->name, impl_->cfg.url));
  int mid = 0;
  int rc = mosquitto_publish(impl_->mosq, &mid, topic.c_str(), static_cast<int>(payload.size()),
                             payload.data(), qos, retain);
  impl_->wake();
  switch (rc) {
    case MOSQ_ERR_SUCCESS:
      return mid;
    case MOSQ_ERR_INVAL:
    case MOSQ_ERR_MALFORMED_UTF8:
      return core::Status::invalid(
          fmt::format("mqtt: cannot publish to '{}': {}", topic, error_text(rc, 0)));
    case MOSQ_ERR_PAYLOAD_SIZE:
    case MOSQ_ERR_OVERSIZE_PACKET:
      return core::Status::too_large(
          fmt::format("mqtt: cannot publish to '{}': {}", topic, error_text(rc, 0)));
    default:
      return core::Status::unavailable(
          fmt::format("mqtt {}: publish: {}", impl_->name, error_text(rc, errno)));
  }
}

}  // namespace outpost::mqtt
