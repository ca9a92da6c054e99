// UpstreamSink: outbox messages published with QoS 1 on one topic; a PUBACK is a delivery.

#include <fmt/format.h>
#include <mosquitto.h>
#include <nlohmann/json.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "mqtt/mqtt.hpp"

namespace outpost::mqtt {

namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 |
                 uint32_t(uint8_t(in[i + 2]));
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (size_t rest = in.size() - i; rest > 0) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// A label value in the Prometheus text format.
std::string label_value(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

std::string upstream_envelope(const upstream::Message& m) {
  nlohmann::ordered_json head = {{"id", m.id},
                                 {"kind", m.kind},
                                 {"created", core::format_iso8601(m.created)},
                                 {"content_type", m.content_type}};
  std::string out = head.dump();
  out.pop_back();  // the closing brace: the body follows
  // The body is spliced in as it is, not re-serialized: a consumer sees the producer's bytes
  // (key order, number formatting) and the sink does not pay for a parse-and-dump.
  if (nlohmann::json::accept(m.body)) {
    out += ",\"body\":";
    out += m.body;
  } else {
    out += ",\"body_base64\":\"";
    out += base64(m.body);
    out += '"';
  }
  out += '}';
  return out;
}

struct UpstreamSink::State {
  std::string url, topic;
  int qos = 1;
  core::Gauge& connected;
  core::Counter& reconnects;
  core::Counter& published;
  core::Counter& confirmed_total;
  Client* client = nullptr;  // set once create() has it; deliver() only runs after that

  std::mutex mu;  // the maps below; held across a publish so on_publish never sees an unknown mid
  std::condition_variable cv;
  struct Flight {
    int mid = 0;
    uint32_t calls = 0;  // deliver() calls since it was published
  };
  std::unordered_map<int, std::string> by_mid;    // published, not yet confirmed: mid -> id
  std::unordered_map<std::string, Flight> by_id;  // the same, by message id (the latest publish)
  std::unordered_set<std::string> confirmed;      // confirmed, not yet reported delivered

  State(std::string u, std::string t, int q, const std::string& client_id, core::Registry& metrics)
      : url(std::move(u)),
        topic(std::move(t)),
        qos(q),
        connected(metrics.gauge("outpost_mqtt_upstream_connected",
                                "1 while an MQTT upstream destination is connected, else 0.",
                                label(client_id))),
        reconnects(metrics.counter("outpost_mqtt_upstream_reconnects_total",
                                   "Connection attempts of an MQTT upstream after the first.",
                                   label(client_id))),
        published(metrics.counter("outpost_mqtt_upstream_published_total",
                                  "Outbox messages published to an MQTT upstream, again included.",
                                  label(client_id))),
        confirmed_total(metrics.counter("outpost_mqtt_upstream_confirmed_total",
                                        "Outbox messages an MQTT upstream's broker confirmed.",
                                        label(client_id))) {}

  static std::string label(const std::string& client_id) {
    return fmt::format("client_id=\"{}\"", label_value(client_id));
  }

  void on_publish(int mid) {
    std::lock_guard lk(mu);
    auto it = by_mid.find(mid);
    if (it == by_mid.end()) return;  // a publish of an earlier batch, forgotten since
    confirmed_total.inc();
    auto f = by_id.find(it->second);
    if (f != by_id.end() && f->second.mid == mid) by_id.erase(f);
    confirmed.insert(std::move(it->second));
    by_mid.erase(it);
    cv.notify_all();
  }

  void on_connect() {
    std::lock_guard lk(mu);
    cv.notify_all();
  }

  // What the last calls left that this batch does not need: messages the outbox has since
  // deleted or dropped. A forgotten message still in libmosquitto's queue may reach the broker
  // once more; its PUBACK then matches nothing.
  void forget_others(std::span<const upstream::Message> batch) {
    std::unordered_set<std::string_view> ids;
    for (const auto& m : batch) ids.insert(m.id);
    for (auto it = confirmed.begin(); it != confirmed.end();) {
      it = ids.count(*it) ? std::next(it) : confirmed.erase(it);
    }
    for (auto it = by_mid.begin(); it != by_mid.end();) {
      it = ids.count(it->second) ? std::next(it) : by_mid.erase(it);
    }
    for (auto it = by_id.begin(); it != by_id.end();) {
      it = ids.count(it->first) ? std::next(it) : by_id.erase(it);
    }
  }
};

core::Result<std::unique_ptr<UpstreamSink>> UpstreamSink::create(const config::MqttConfig& broker,
                                                                 std::string topic, int qos,
                                                                 std::string client_id,
                                                                 core::Registry& metrics) {
  if (auto url = parse_broker_url(broker.url); !url) return url.status();
  if (topic.empty() || topic.size() > 65535 ||
      mosquitto_pub_topic_check2(topic.c_str(), topic.size()) != MOSQ_ERR_SUCCESS ||
      mosquitto_validate_utf8(topic.c_str(), static_cast<int>(topic.size())) != MOSQ_ERR_SUCCESS)
    return core::Status::invalid(fmt::format(
        "mqtt upstream: topic '{}' is not a topic to publish on (1..65535 bytes of UTF-8, no "
        "'+', '#' or NUL)",
        topic));
  if (qos != 1 && qos != 2)
    return core::Status::invalid(fmt::format(
        "mqtt upstream: qos {} is not 1 or 2 (a delivery needs the broker's confirmation)", qos));
  auto state = std::make_unique<State>(broker.url, topic, qos, client_id, metrics);
  State* st = state.get();
  ClientCallbacks callbacks;
  callbacks.on_connect = [st](Client&) { st->on_connect(); };
  callbacks.on_publish = [st](int mid) { st->on_publish(mid); };
  auto client = Client::create(broker, client_id, "upstream " + topic, std::move(callbacks),
                               ClientMetrics{&st->connected, &st->reconnects});
  if (!client) return client.status();
  st->client = client->get();
  return std::unique_ptr<UpstreamSink>(new UpstreamSink(std::move(state), std::move(*client)));
}

UpstreamSink::UpstreamSink(std::unique_ptr<State> state, std::unique_ptr<Client> client)
    : state_(std::move(state)), client_(std::move(client)) {}

UpstreamSink::~UpstreamSink() { client_->stop(); }

std::string UpstreamSink::describe() const {
  return fmt::format("{} topic {}", state_->url, state_->topic);
}

ClientHealth UpstreamSink::health() const { return client_->health(); }

upstream::Delivery UpstreamSink::deliver(std::span<const upstream::Message> batch,
                                         std::chrono::milliseconds timeout) {
  State& st = *state_;
  const auto deadline = Steady::now() + timeout;
  std::unique_lock lk(st.mu);
  st.forget_others(batch);

  // The first connection attempt may still be under way (a sink made a moment ago): wait for
  // it within the timeout. A broker already known to be down is reported at once.
  while (!client_->connected() && Steady::now() < deadline) {
    auto h = client_->health();
    if (h.detail.rfind("connecting since ", 0) != 0) break;
    st.cv.wait_until(lk, std::min(deadline, Steady::now() + 20ms));
  }

  // A message in flight is left to libmosquitto, which resends it after a reconnect; only one
  // the broker has left unconfirmed through kRepublishAfter calls made while connected is
  // published again.
  const bool connected = client_->connected();
  size_t limit = batch.size();  // messages published or in flight, from the first
  core::Status refused;
  for (size_t i = 0; i < batch.size(); ++i) {
    const upstream::Message& m = batch[i];
    if (st.confirmed.count(m.id)) continue;
    if (auto f = st.by_id.find(m.id); f != st.by_id.end()) {
      if (connected) ++f->second.calls;
      if (f->second.calls < kRepublishAfter) continue;
    }
    // Under the lock: on_publish waits until the mid is known.
    auto mid = client_->publish_with_id(st.topic, upstream_envelope(m), st.qos, false);
    if (!mid) {
      limit = i;
      refused = mid.status();
      break;
    }
    st.published.inc();
    st.by_mid[*mid] = m.id;
    st.by_id[m.id] = State::Flight{*mid, 0};
  }

  auto leading = [&] {
    size_t n = 0;
    while (n < limit && st.confirmed.count(batch[n].id)) ++n;
    return n;
  };
  st.cv.wait_until(lk, deadline, [&] { return leading() == limit; });
  size_t n = leading();
  for (size_t i = 0; i < n; ++i) st.confirmed.erase(batch[i].id);

  upstream::Delivery out;
  out.delivered = n;
  if (n == batch.size()) return out;
  if (n == limit) {
    // The client would not take messages[n].
    bool dead = refused.code() == core::Code::kTooLarge || refused.code() == core::Code::kInvalid;
    out.rest = dead ? upstream::Outcome::kDead : upstream::Outcome::kRetry;
    out.error = refused.message();
    if (refused.code() == core::Code::kUnavailable) out.error += " (" + health().detail + ")";
    return out;
  }
  out.rest = upstream::Outcome::kRetry;
  auto h = client_->health();
  out.error = fmt::format("no confirmation from {} for message {} within {} ms ({})", st.url,
                          batch[n].id, timeout.count(), h.detail);
  return out;
}

core::Result<std::unique_ptr<upstream::Sink>> make_upstream_sink(const config::MqttConfig& broker,
                                                                 std::string topic, int qos,
                                                                 std::string client_id,
                                                                 core::Registry& metrics) {
  auto s = UpstreamSink::create(broker, std::move(topic), qos, std::move(client_id), metrics);
  if (!s) return s.status();
  return std::unique_ptr<upstream::Sink>(std::move(*s));
}

}  // namespace outpost::mqtt
