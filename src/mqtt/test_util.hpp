// For the MQTT tests: waiting for what the MQTT threads hand over, metrics, and a peer client.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mqtt/mqtt.hpp"

namespace outpost::mqtt::testing {

// Things handed over by the MQTT thread, waited for by the test.
template <typename T>
class Inbox {
 public:
  void push(T v) {
    std::lock_guard lk(mu_);
    items_.push_back(std::move(v));
    cv_.notify_all();
  }
  // The first item (oldest first) that satisfies `pred`, removed; nullopt after `timeout`.
  template <typename Pred>
  std::optional<T> take(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lk(mu_);
    std::optional<T> out;
    cv_.wait_for(lk, timeout, [&] {
      for (auto it = items_.begin(); it != items_.end(); ++it) {
        if (pred(*it)) {
          out = std::move(*it);
          items_.erase(it);
          return true;
        }
      }
      return false;
    });
    return out;
  }
  std::optional<T> take(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return take([](const T&) { return true; }, timeout);
  }
  size_t size() const {
    std::lock_guard lk(mu_);
    return items_.size();
  }
  // A copy of everything not taken yet.
  std::vector<T> items() const {
    std::lock_guard lk(mu_);
    return {items_.begin(), items_.end()};
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<T> items_;
};

template <typename Cond>
bool eventually(Cond cond, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

// The value of one series in the registry's text, e.g.
// `outpost_mqtt_dropped_total{reason="bad_type"}`.
inline std::optional<double> metric(const core::Registry& r, const std::string& series) {
  std::istringstream in(r.render());
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

inline config::MqttConfig config_for(const std::string& url) {
  config::MqttConfig cfg;
  cfg.url = url;
  cfg.keepalive = std::chrono::seconds(5);
  cfg.reconnect_max_backoff = std::chrono::milliseconds(400);  // tests wait for reconnects
  return cfg;
}

struct Received {
  std::string topic, payload;
  bool retain = false;
};

// Another party on the broker (a kit, Home Assistant, a consumer): a plain Client that
// subscribes to `patterns` (QoS 1, on every connect) and keeps what arrives.
struct Peer {
  Inbox<Received> inbox;
  std::vector<std::string> patterns;
  std::function<void(Client&, const Received&)> respond;
  std::string probe;                   // a topic of its own, to tell when it is subscribed
  std::atomic<Client*> self{nullptr};  // for respond: set once create() returns
  std::unique_ptr<Client> client;

  Peer(const std::string& url, const std::string& id, std::vector<std::string> subscribe = {},
       std::function<void(Client&, const Received&)> responder = nullptr,
       ClientOptions options = {})
      : patterns(std::move(subscribe)), respond(std::move(responder)), probe("probe/" + id) {
    ClientCallbacks cb;
    cb.on_connect = [this](Client& c) {
      for (const auto& p : patterns) EXPECT_TRUE(c.subscribe(p, 1)) << p;
      EXPECT_TRUE(c.subscribe(probe, 1));
    };
    cb.on_message = [this](const Message& m) {
      Received r{std::string(m.topic), std::string(m.payload), m.retain};
      if (Client* c = self.load(); respond && c) respond(*c, r);
      inbox.push(std::move(r));
    };
    auto c =
        Client::create(config_for(url), id, "peer " + id, std::move(cb), {}, std::move(options));
    if (!c) throw std::runtime_error(c.status().to_string());
    client = std::move(*c);
    self = client.get();
  }
  ~Peer() { client->stop(); }  // before the members the callbacks use go away

  // Connected, and its subscriptions in force: a message to its probe topic, published after
  // the subscriptions were sent, came back (the broker handles one connection's packets in
  // order).
  bool ready() {
    if (!eventually([&] { return client->connected(); })) return false;
    return eventually(
        [&] {
          if (!client->publish(probe, "probe", 1)) return false;
          return inbox
              .take([&](const Received& r) { return r.topic == probe; },
                    std::chrono::milliseconds(500))
              .has_value();
        },
        std::chrono::seconds(10));
  }

  void publish(const std::string& topic, const core::Json& payload) {
    publish(topic, payload.dump());
  }
  void publish(const std::string& topic, const std::string& payload, bool retain = false) {
    ASSERT_TRUE(eventually([&] { return client->connected(); })) << client->health().detail;
    auto s = client->publish(topic, payload, 1, retain);
    ASSERT_TRUE(s) << s.to_string();
  }
};

}  // namespace outpost::mqtt::testing
