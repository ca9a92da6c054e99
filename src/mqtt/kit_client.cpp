// KitClient: the Client subscribed to the kits' topics, parse_kit_message on what arrives.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>

#include "mqtt/mqtt.hpp"

namespace outpost::mqtt {

namespace {

using namespace std::chrono_literals;

constexpr const char* kTopics[] = {"kit/+/measurement/raw", "kit/+/measurement/aggregate",
                                   "kit/+/kit-rpc/response"};
constexpr auto kDropLogInterval = 10s;

// A topic for a log line: bounded, without control characters.
std::string printable(std::string_view s) {
  std::string out(s.substr(0, 160));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  if (s.size() > 160) out += "...";
  return out;
}

}  // namespace

struct KitClient::State {
  KitSink sink;
  core::Counter& messages;
  std::array<core::Counter*, kDropReasons> dropped{};
  core::Gauge& connected;
  core::Counter& reconnects;

  // The MQTT thread's own: drop logging, at most once per kDropLogInterval.
  std::chrono::steady_clock::time_point last_drop_log{};
  uint64_t drops_unlogged = 0;

  State(KitSink s, core::Registry& metrics)
      : sink(std::move(s)),
        messages(metrics.counter("outpost_mqtt_messages_total",
                                 "Messages received from AstroPlant kits, dropped ones included.")),
        connected(metrics.gauge("outpost_mqtt_connected",
                                "1 while connected to the kits' MQTT broker, else 0.")),
        reconnects(
            metrics.counter("outpost_mqtt_reconnects_total",
                            "Connection attempts to the kits' MQTT broker after the first.")) {
    for (size_t i = 0; i < kDropReasons; ++i) {
      dropped[i] = &metrics.counter(
          "outpost_mqtt_dropped_total", "Messages from kits dropped, by reason.",
          fmt::format("reason=\"{}\"", drop_reason_name(static_cast<DropReason>(i))));
    }
  }

  void on_connect(Client& client) {
    for (const char* t : kTopics) {
      if (auto s = client.subscribe(t, 1); !s) spdlog::error("mqtt kits: {}", s.to_string());
    }
  }

  void on_message(const Message& m) {
    messages.inc();
    KitMessage msg = parse_kit_message(m.topic, m.payload, core::now());
    if (auto* r = std::get_if<core::DeviceReport>(&msg)) {
      if (sink.report) sink.report(std::move(*r));
    } else if (auto* a = std::get_if<KitAck>(&msg)) {
      if (sink.ack) sink.ack(std::move(*a));
    } else {
      dropped_message(m.topic, std::get<Drop>(msg));
    }
  }

  void dropped_message(std::string_view topic, const Drop& d) {
    dropped[static_cast<size_t>(d.reason)]->inc();
    auto now = std::chrono::steady_clock::now();
    if (last_drop_log != std::chrono::steady_clock::time_point{} &&
        now - last_drop_log < kDropLogInterval) {
      ++drops_unlogged;
      return;
    }
    std::string more = drops_unlogged
                           ? fmt::format(" ({} more dropped since the last report)", drops_unlogged)
                           : "";
    spdlog::warn("mqtt kits: dropped a message on '{}': {}: {}{}", printable(topic),
                 drop_reason_name(d.reason), d.detail, more);
    last_drop_log = now;
    drops_unlogged = 0;
  }

  uint64_t dropped_total() const {
    uint64_t n = 0;
    for (auto* c : dropped) n += c->value();
    return n;
  }
};

core::Result<std::unique_ptr<KitClient>> KitClient::create(const config::MqttConfig& cfg,
                                                           std::string default_client_id,
                                                           KitSink sink, core::Registry& metrics) {
  if (auto url = parse_broker_url(cfg.url); !url) return url.status();
  auto state = std::make_unique<State>(std::move(sink), metrics);
  State* st = state.get();
  ClientCallbacks callbacks;
  callbacks.on_connect = [st](Client& c) { st->on_connect(c); };
  callbacks.on_message = [st](const Message& m) { st->on_message(m); };
  auto client =
      Client::create(cfg, cfg.client_id.empty() ? std::move(default_client_id) : cfg.client_id,
                     "kits", std::move(callbacks), ClientMetrics{&st->connected, &st->reconnects});
  if (!client) return client.status();
  return std::unique_ptr<KitClient>(new KitClient(std::move(state), std::move(*client)));
}

KitClient::KitClient(std::unique_ptr<State> state, std::unique_ptr<Client> client)
    : state_(std::move(state)), client_(std::move(client)) {}

// client_ is declared after state_, so it (and its thread, which uses state_) goes first.
KitClient::~KitClient() = default;

void KitClient::stop() { client_->stop(); }

core::Status KitClient::send_command(std::string_view serial, std::string_view command_id,
                                     std::string_view target, std::string_view parameter,
                                     const core::Json& value) {
  auto req = make_kit_request(serial, command_id, target, parameter, value);
  if (!req) return req.status();
  if (!client_->connected()) {
    return core::Status::unavailable("mqtt: not connected to the kits' broker (" +
                                     client_->health().detail + ")");
  }
  return client_->publish(req->topic, req->payload, 1);
}

KitHealth KitClient::health() const {
  ClientHealth c = client_->health();
  return KitHealth{c.connected, std::move(c.detail), c.reconnects, state_->messages.value(),
                   state_->dropped_total()};
}

}  // namespace outpost::mqtt
