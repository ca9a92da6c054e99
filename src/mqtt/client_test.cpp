// Client and KitClient against a real mosquitto broker (TestBroker) on a loopback port. The
// kits are played by further Clients, and once by mosquitto_pub.

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mqtt/mqtt.hpp"
#include "mqtt/test_broker.hpp"
#include "mqtt/test_util.hpp"

namespace outpost::mqtt {
namespace {

using namespace std::chrono_literals;
using core::Json;
using testing::TestBroker;

using testing::config_for;
using testing::eventually;
using testing::Inbox;
using testing::metric;
using testing::Received;
// A kit: a plain client that subscribes to its patterns and keeps what arrives.
using Kit = testing::Peer;

// The hub's side: a KitClient whose sink fills inboxes.
struct Hub {
  core::Registry registry;
  Inbox<core::DeviceReport> reports;
  Inbox<KitAck> acks;
  std::unique_ptr<KitClient> kits;

  explicit Hub(const config::MqttConfig& cfg) {
    KitSink sink;
    sink.report = [this](core::DeviceReport r) { reports.push(std::move(r)); };
    sink.ack = [this](KitAck a) { acks.push(std::move(a)); };
    auto k = KitClient::create(cfg, "outpost-test", std::move(sink), registry);
    if (!k) throw std::runtime_error(k.status().to_string());
    kits = std::move(*k);
  }
  explicit Hub(const std::string& url) : Hub(config_for(url)) {}
  ~Hub() { kits->stop(); }

  bool connected() {
    return eventually([&] { return kits->health().connected; });
  }
};

Json raw(int peripheral, int quantity_type, double value) {
  return {{"peripheral", peripheral}, {"quantity_type", quantity_type}, {"value", value}};
}

auto sensor_is(const std::string& id) {
  return
      [id](const core::DeviceReport& r) { return r.sensors.size() == 1 && r.sensors[0].id == id; };
}

TEST(KitClient, MeasurementsFromKitsBecomeReports) {
  TestBroker broker;
  broker.start();
  Hub hub(broker.url());
  ASSERT_TRUE(hub.connected()) << hub.kits->health().detail;
  EXPECT_EQ(hub.kits->health().detail, "connected");
  EXPECT_EQ(metric(hub.registry, "outpost_mqtt_connected"), 1);

  Kit kit(broker.url(), "kit-k1");
  kit.publish("kit/k1/measurement/raw", Json{{"peripheral", 1},
                                             {"quantity_type", 2},
                                             {"value", 21.5},
                                             {"datetime", "2026-01-01T12:00:00Z"}});
  auto r = hub.reports.take();
  ASSERT_TRUE(r) << broker.log();
  EXPECT_EQ(r->id, "k1");
  EXPECT_EQ(r->transport, core::Transport::kMqtt);
  ASSERT_EQ(r->sensors.size(), 1u);
  EXPECT_EQ(r->sensors[0].id, "1.2");
  EXPECT_EQ(*r->sensors[0].value->values, 21.5);
  EXPECT_EQ(core::format_iso8601(r->sensors[0].value->ts), "2026-01-01T12:00:00.000000Z");

  kit.publish("kit/k1/measurement/aggregate",
              Json{{"peripheral", "air"},
                   {"quantityType", "co2"},
                   {"count", 3},
                   {"average", 400},
                   {"minimum", 390},
                   {"maximum", 410},
                   {"window", {{"start", 1767268800000}, {"end", 1767269700000}}}});
  auto a = hub.reports.take();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->sensors[0].id, "air.co2.aggregate");
  EXPECT_EQ((*a->sensors[0].value->values)["count"], 3);

  // An independent publisher: the broker's own command-line client.
  std::string cmd = "mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker.port()) +
                    " -q 1 -t kit/k2/measurement/raw -m '{\"peripheral\": 3, \"quantity_type\": 4, "
                    "\"value\": 1}'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto p = hub.reports.take();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->id, "k2");
  EXPECT_EQ(p->sensors[0].id, "3.4");

  // Dropped, counted by reason; the client carries on.
  kit.publish("kit/k1/measurement/raw", std::string("{not json"));
  kit.publish("kit/k1/measurement/raw",
              Json{{"peripheral", 1}, {"quantity_type", 2}, {"value", "21"}});
  kit.publish("kit/k%201/measurement/raw", raw(1, 2, 3));  // '%' is fine: a report
  kit.publish("kit/k 1/measurement/raw", raw(1, 2, 3));    // a space is not
  kit.publish("kit/k1/measurement/raw", raw(9, 9, 9));
  ASSERT_TRUE(hub.reports.take(sensor_is("9.9")));
  ASSERT_TRUE(hub.reports.take([](const core::DeviceReport& rep) { return rep.id == "k%201"; }));
  EXPECT_EQ(metric(hub.registry, "outpost_mqtt_messages_total"), 8);
  EXPECT_EQ(metric(hub.registry, R"(outpost_mqtt_dropped_total{reason="invalid_json"})"), 1);
  EXPECT_EQ(metric(hub.registry, R"(outpost_mqtt_dropped_total{reason="bad_type"})"), 1);
  EXPECT_EQ(metric(hub.registry, R"(outpost_mqtt_dropped_total{reason="bad_topic"})"), 1);
  EXPECT_EQ(metric(hub.registry, R"(outpost_mqtt_dropped_total{reason="missing_fields"})"), 0);
  EXPECT_EQ(hub.kits->health().messages, 8u);
  EXPECT_EQ(hub.kits->health().dropped, 3u);
  EXPECT_EQ(hub.reports.size(), 0u);
}

TEST(KitClient, CommandGoesToTheKitAndItsAnswerComesBackAsAnAck) {
  TestBroker broker;
  broker.start();
  Hub hub(broker.url());
  // The kit answers every request: "ok" for the pump, an error for anything else.
  Kit kit(broker.url(), "kit-k1", {"kit/k1/kit-rpc/request"}, [](Client& c, const Received& r) {
    Json req = Json::parse(r.payload);
    Json resp = req["target"] == "pump"
                    ? Json{{"id", req["id"]}, {"status", "ok"}, {"result", req["value"]}}
                    : Json{{"id", req["id"]}, {"status", "error"}, {"detail", "no such target"}};
    EXPECT_TRUE(c.publish("kit/k1/kit-rpc/response", resp.dump(), 1));
  });
  ASSERT_TRUE(hub.connected());
  ASSERT_TRUE(eventually([&] { return kit.client->connected(); }));
  // The kit's subscription is made in its on_connect; give the broker a moment to register it.
  std::this_thread::sleep_for(200ms);

  auto s = hub.kits->send_command("k1", "cmd-1", "pump", "on", Json(true));
  ASSERT_TRUE(s) << s.to_string();
  auto req = kit.inbox.take();
  ASSERT_TRUE(req) << broker.log();
  EXPECT_EQ(req->topic, "kit/k1/kit-rpc/request");
  EXPECT_EQ(Json::parse(req->payload),
            (Json{{"id", "cmd-1"}, {"target", "pump"}, {"parameter", "on"}, {"value", true}}));
  auto ack = hub.acks.take();
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->serial, "k1");
  EXPECT_EQ(ack->ack.command_id, "cmd-1");
  EXPECT_TRUE(ack->ack.ok);
  EXPECT_EQ(ack->ack.detail, "true");

  ASSERT_TRUE(hub.kits->send_command("k1", "cmd-2", "fan", "speed", Json(3)));
  auto nack = hub.acks.take();
  ASSERT_TRUE(nack);
  EXPECT_EQ(nack->ack.command_id, "cmd-2");
  EXPECT_FALSE(nack->ack.ok);
  EXPECT_EQ(nack->ack.detail, "no such target");

  EXPECT_EQ(hub.kits->send_command("k/1", "cmd-3", "pump", "on", Json(true)).code(),
            core::Code::kInvalid);
}

TEST(KitClient, BrokerDownAtStartIsRetriedUntilItComes) {
  TestBroker broker;  // port chosen, not started
  Hub hub(broker.url());
  ASSERT_TRUE(eventually([&] { return hub.kits->health().detail.rfind("connecting: ", 0) == 0; }))
      << hub.kits->health().detail;
  auto h = hub.kits->health();
  EXPECT_FALSE(h.connected);
  EXPECT_NE(h.detail.find("Connection refused since "), std::string::npos) << h.detail;
  EXPECT_EQ(metric(hub.registry, "outpost_mqtt_connected"), 0);
  ASSERT_TRUE(eventually([&] { return hub.kits->health().reconnects >= 2; })) << "backoff stuck?";
  EXPECT_GE(metric(hub.registry, "outpost_mqtt_reconnects_total").value_or(0), 2);

  auto s = hub.kits->send_command("k1", "cmd-1", "pump", "on", Json(true));
  EXPECT_EQ(s.code(), core::Code::kUnavailable);
  EXPECT_NE(s.message().find("Connection refused"), std::string::npos) << s.message();

  broker.start();
  ASSERT_TRUE(hub.connected()) << hub.kits->health().detail;
  EXPECT_EQ(metric(hub.registry, "outpost_mqtt_connected"), 1);
  Kit kit(broker.url(), "kit-k1");
  std::this_thread::sleep_for(100ms);  // the hub subscribes right after its CONNACK
  kit.publish("kit/k1/measurement/raw", raw(1, 2, 3));
  EXPECT_TRUE(hub.reports.take(sensor_is("1.2"))) << broker.log();
}

TEST(KitClient, ReconnectsAndResubscribesWhenTheBrokerRestarts) {
  TestBroker broker;
  broker.start();
  Hub hub(broker.url());
  ASSERT_TRUE(hub.connected());
  {
    Kit kit(broker.url(), "kit-k1");
    kit.publish("kit/k1/measurement/raw", raw(1, 1, 1));
    ASSERT_TRUE(hub.reports.take(sensor_is("1.1")));
  }

  broker.stop();
  ASSERT_TRUE(eventually([&] { return !hub.kits->health().connected; }));
  EXPECT_EQ(hub.kits->health().detail.rfind("connecting: ", 0), 0u) << hub.kits->health().detail;
  EXPECT_EQ(metric(hub.registry, "outpost_mqtt_connected"), 0);
  auto s = hub.kits->send_command("k1", "c", "pump", "on", Json(true));
  EXPECT_EQ(s.code(), core::Code::kUnavailable);

  // A fresh broker (no persistence) knows nothing of the old subscriptions: a report after
  // the restart proves the client subscribed again.
  broker.start();
  ASSERT_TRUE(hub.connected()) << hub.kits->health().detail;
  EXPECT_GE(hub.kits->health().reconnects, 1u);
  Kit kit(broker.url(), "kit-k1");
  std::this_thread::sleep_for(100ms);
  kit.publish("kit/k1/measurement/raw", raw(2, 2, 2));
  EXPECT_TRUE(hub.reports.take(sensor_is("2.2"))) << broker.log();

  // Once more, to see the backoff reset after a good connection.
  broker.stop();
  ASSERT_TRUE(eventually([&] { return !hub.kits->health().connected; }));
  broker.start();
  ASSERT_TRUE(hub.connected());
  ASSERT_TRUE(eventually([&] { return kit.client->connected(); }));
  std::this_thread::sleep_for(100ms);
  kit.publish("kit/k1/measurement/raw", raw(3, 3, 3));
  EXPECT_TRUE(hub.reports.take(sensor_is("3.3"))) << broker.log();
}

TEST(KitClient, StopDisconnectsCleanly) {
  TestBroker broker;
  broker.start();
  Hub hub(broker.url());
  ASSERT_TRUE(hub.connected());
  auto t0 = std::chrono::steady_clock::now();
  hub.kits->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_EQ(hub.kits->health().detail, "stopped");
  EXPECT_FALSE(hub.kits->health().connected);
  EXPECT_EQ(metric(hub.registry, "outpost_mqtt_connected"), 0);
  // mosquitto logs "Client <id> disconnected." for a DISCONNECT packet, "closed its
  // connection" when the socket just goes away.
  EXPECT_TRUE(eventually([&] {
    return broker.log().find("Client outpost-test disconnected.") != std::string::npos;
  })) << broker.log();
  hub.kits->stop();  // idempotent
}

TEST(KitClient, StopIsPromptWhileWaitingToReconnect) {
  TestBroker broker;  // never started
  auto cfg = config_for(broker.url());
  cfg.reconnect_max_backoff = 60s;
  Hub hub(cfg);
  // After a few failures the client sleeps for seconds between attempts.
  ASSERT_TRUE(eventually([&] { return hub.kits->health().reconnects >= 4; }));
  auto t0 = std::chrono::steady_clock::now();
  hub.kits->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
  EXPECT_EQ(hub.kits->health().detail, "stopped");
}

TEST(KitClient, UsesTheConfiguredClientId) {
  TestBroker broker;
  broker.start();
  auto cfg = config_for(broker.url());
  cfg.client_id = "hub-7";
  Hub hub(cfg);
  ASSERT_TRUE(hub.connected());
  EXPECT_TRUE(eventually([&] { return broker.log().find(" as hub-7 ") != std::string::npos; }))
      << broker.log();
}

TEST(BrokerUrl, Parses) {
  auto a = parse_broker_url("mqtt://broker.local:1883");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "broker.local");
  EXPECT_EQ(a->port, 1883);
  EXPECT_FALSE(a->tls);
  auto b = parse_broker_url("mqtts://[::1]:8883");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 8883);
  EXPECT_TRUE(b->tls);
  for (const char* bad : {"", "broker:1883", "http://h:1", "mqtt://h", "mqtt://h:0",
                          "mqtt://h:70000", "mqtt://:1883", "mqtt://h:1883/x", "MQTT://h:1"}) {
    EXPECT_FALSE(parse_broker_url(bad)) << bad;
  }
}

TEST(Client, RejectsBadConfig) {
  ClientCallbacks none;
  auto cfg = config_for("http://127.0.0.1:1883");
  EXPECT_EQ(Client::create(cfg, "x", "t", none).status().code(), core::Code::kInvalid);
  cfg = config_for("mqtts://127.0.0.1:8883");
  cfg.ca_file = "/nonexistent/ca.pem";
  auto c = Client::create(cfg, "x", "t", none);
  EXPECT_EQ(c.status().code(), core::Code::kInvalid);
  EXPECT_NE(c.status().message().find("mqtt.ca_file"), std::string::npos);

  core::Registry r;
  EXPECT_EQ(KitClient::create(config_for("mqtt://nohost"), "x", {}, r).status().code(),
            core::Code::kInvalid);
}

TEST(Client, PublishAndSubscribeNeedAConnection) {
  TestBroker broker;  // never started
  auto c = Client::create(config_for(broker.url()), "x", "t", {});
  ASSERT_TRUE(c);
  EXPECT_EQ((*c)->publish("a/b", "x", 1).code(), core::Code::kUnavailable);
  EXPECT_EQ((*c)->subscribe("a/#", 1).code(), core::Code::kUnavailable);
  EXPECT_EQ((*c)->health().detail.rfind("connecting", 0), 0u);
}

TEST(Client, RejectsBadTopics) {
  TestBroker broker;
  broker.start();
  auto c = Client::create(config_for(broker.url()), "x", "t", {});
  ASSERT_TRUE(c);
  ASSERT_TRUE(eventually([&] { return (*c)->connected(); }));
  EXPECT_EQ((*c)->publish("a/+", "x", 1).code(), core::Code::kInvalid);
  EXPECT_EQ((*c)->subscribe("a/#/b", 1).code(), core::Code::kInvalid);
  EXPECT_TRUE((*c)->publish("a/b", "x", 0));
}

// mqtts:// with a CA of the test's own: a server certificate for "localhost" signed by it, and
// a second CA that signed nothing of the broker's.
TEST(Client, TlsWithTheCaFileAndNotWithAnotherCa) {
  TestBroker broker;
  const std::string d = broker.dir().string();
  std::ofstream(broker.dir() / "san.cnf") << "subjectAltName=DNS:localhost\n";
  // mosquitto, started as root, reads these after dropping to its own user: make them readable.
  const std::string cmd = "cd '" + d +
                          "' && chmod 755 . && "
                          "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "
                          "/CN=outpost-test-ca -keyout ca.key -out ca.pem && "
                          "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "
                          "server.key -out server.csr && "
                          "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
                          "-CAcreateserial -days 2 -extfile san.cnf "
                          "-out server.pem && "
                          "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca "
                          "-keyout other.key -out other.pem && "
                          "chmod 644 *";
  ASSERT_EQ(std::system(("(" + cmd + ") >/dev/null 2>&1").c_str()), 0) << "openssl failed: " << cmd;
  const uint16_t tls_port = testing::free_port();
  broker.add_config("listener " + std::to_string(tls_port) + " 127.0.0.1\ncafile " + d +
                    "/ca.pem\ncertfile " + d + "/server.pem\nkeyfile " + d + "/server.key\n");
  broker.start();

  Inbox<int> connects;
  ClientCallbacks cb;
  cb.on_connect = [&connects](Client&) { connects.push(1); };
  auto cfg = config_for("mqtts://localhost:" + std::to_string(tls_port));
  cfg.ca_file = d + "/ca.pem";
  auto good = Client::create(cfg, "tls-good", "tls", cb);
  ASSERT_TRUE(good) << good.status().to_string();
  ASSERT_TRUE(connects.take()) << (*good)->health().detail << "\n" << broker.log();
  EXPECT_TRUE((*good)->publish("a/b", "over TLS", 1));
  (*good)->stop();

  cfg.ca_file = d + "/other.pem";
  auto bad = Client::create(cfg, "tls-bad", "tls", {});
  ASSERT_TRUE(bad);
  ASSERT_TRUE(eventually([&] { return (*bad)->health().detail.rfind("connecting: ", 0) == 0; }));
  EXPECT_FALSE((*bad)->connected());
  EXPECT_NE((*bad)->health().detail.find("certificate verify failed"), std::string::npos)
      << (*bad)->health().detail;
  // Retried like any other failure (libmosquitto's own loop would give up on a TLS error).
  EXPECT_TRUE(eventually([&] { return (*bad)->health().reconnects >= 2; }))
      << (*bad)->health().detail;
}

TEST(Client, RejectsABadWillAndAPersistentSessionWithoutAnId) {
  TestBroker broker;  // never started
  ClientOptions o;
  o.will = Will{"a/+", "offline", 1, true};
  auto c = Client::create(config_for(broker.url()), "x", "t", {}, {}, o);
  EXPECT_EQ(c.status().code(), core::Code::kInvalid);
  EXPECT_NE(c.status().message().find("will"), std::string::npos) << c.status().message();
  o.will = Will{"a/b", "offline", 3, true};
  EXPECT_EQ(Client::create(config_for(broker.url()), "x", "t", {}, {}, o).status().code(),
            core::Code::kInvalid);
  ClientOptions persistent;
  persistent.clean_session = false;
  EXPECT_EQ(Client::create(config_for(broker.url()), "", "t", {}, {}, persistent).status().code(),
            core::Code::kInvalid);
}

// The honest way for a client to die uncleanly: a process of its own, killed with SIGKILL while
// connected. The kernel closes the socket, no DISCONNECT is sent, and the broker publishes the
// will. (Forked before this process starts threads of its own, so the child is a sound copy.)
TEST(Client, TheWillIsPublishedWhenTheProcessDiesWithoutADisconnect) {
  TestBroker broker;
  broker.start();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(ready[0]);
    ClientOptions o;
    o.will = Will{"dev/7/availability", "offline", 1, true};
    auto c = Client::create(config_for(broker.url()), "dying", "dying", {}, {}, o);
    if (!c) ::_exit(2);
    for (int i = 0; i < 2000 && !(*c)->connected(); ++i) ::usleep(5000);
    if (!(*c)->connected()) ::_exit(3);
    if (!(*c)->publish("dev/7/availability", "online", 1, true)) ::_exit(4);
    char one = 1;
    if (::write(ready[1], &one, 1) != 1) ::_exit(5);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the child did not connect:\n" << broker.log();
  ::close(ready[0]);

  Kit watcher(broker.url(), "watcher", {"dev/7/availability"});
  ASSERT_TRUE(watcher.ready());
  auto online = watcher.inbox.take([](const Received& r) { return r.topic == "dev/7/availability"; });
  ASSERT_TRUE(online);
  EXPECT_EQ(online->payload, "online");

  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  auto will = watcher.inbox.take([](const Received& r) { return r.topic == "dev/7/availability"; });
  ASSERT_TRUE(will) << broker.log();
  EXPECT_EQ(will->payload, "offline");

  // Retained: whoever subscribes later learns the device is gone.
  Kit late(broker.url(), "late", {"dev/7/availability"});
  auto kept = late.inbox.take([](const Received& r) { return r.topic == "dev/7/availability"; });
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->payload, "offline");
  EXPECT_TRUE(kept->retain);
}

TEST(Client, AStopSendsADisconnectSoTheWillIsNotPublished) {
  TestBroker broker;
  broker.start();
  Kit watcher(broker.url(), "watcher", {"dev/8/#"});
  ASSERT_TRUE(watcher.ready());
  ClientOptions o;
  o.will = Will{"dev/8/availability", "offline", 1, false};
  auto c = Client::create(config_for(broker.url()), "leaving", "leaving", {}, {}, o);
  ASSERT_TRUE(c);
  ASSERT_TRUE(eventually([&] { return (*c)->connected(); }));
  (*c)->stop();
  ASSERT_TRUE(eventually([&] {
    return broker.log().find("Client leaving disconnected.") != std::string::npos;
  })) << broker.log();
  // The broker has handled the DISCONNECT; a will would have been published by now, so it
  // would arrive before this marker.
  watcher.publish("dev/8/marker", std::string("after"));
  auto first = watcher.inbox.take([](const Received& r) { return r.topic.rfind("dev/8/", 0) == 0; });
  ASSERT_TRUE(first);
  EXPECT_EQ(first->topic, "dev/8/marker");
}

TEST(Client, OnPublishReportsEachMessageTheBrokerConfirmed) {
  TestBroker broker;
  broker.start();
  Inbox<int> confirmed;
  ClientCallbacks cb;
  cb.on_publish = [&confirmed](int mid) { confirmed.push(mid); };
  auto c = Client::create(config_for(broker.url()), "pub", "pub", cb);
  ASSERT_TRUE(c);
  ASSERT_TRUE(eventually([&] { return (*c)->connected(); }));
  std::set<int> mids;
  for (int i = 0; i < 5; ++i) {
    auto mid = (*c)->publish_with_id("a/b", "m" + std::to_string(i), 1);
    ASSERT_TRUE(mid) << mid.status().to_string();
    EXPECT_TRUE(mids.insert(*mid).second) << "a message id twice: " << *mid;
  }
  std::set<int> got;
  for (int i = 0; i < 5; ++i) {
    auto mid = confirmed.take();
    ASSERT_TRUE(mid) << "only " << got.size() << " confirmations";
    got.insert(*mid);
  }
  EXPECT_EQ(got, mids);
  (*c)->stop();
  EXPECT_EQ(confirmed.size(), 0u);  // once per message
}

// on_publish is the PUBACK, not the write: a broker that holds the PUBACK back holds it back.
TEST(Client, OnPublishWaitsForThePuback) {
  testing::HoldingBroker broker;
  Inbox<int> confirmed;
  ClientCallbacks cb;
  cb.on_publish = [&confirmed](int mid) { confirmed.push(mid); };
  auto c = Client::create(config_for(broker.url()), "pub", "pub", cb);
  ASSERT_TRUE(c);
  ASSERT_TRUE(eventually([&] { return (*c)->connected(); })) << (*c)->health().detail;
  auto mid = (*c)->publish_with_id("a/b", "held", 1);
  ASSERT_TRUE(mid);
  ASSERT_TRUE(broker.wait_published(1));
  EXPECT_EQ(broker.published()[0].mid, *mid);
  EXPECT_EQ(broker.published()[0].payload, "held");
  // The message is at the broker and unconfirmed: no callback, however long one waits.
  EXPECT_FALSE(confirmed.take(300ms));
  broker.ack(static_cast<uint16_t>(*mid));
  auto got = confirmed.take();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, *mid);
}

// A persistent session: what is published while the subscriber is away waits for it.
TEST(Client, APersistentSessionGetsWhatWasPublishedWhileItWasAway) {
  TestBroker broker;
  broker.start();
  ClientOptions persistent;
  persistent.clean_session = false;
  {
    Kit sub(broker.url(), "keeper", {"kept/#"}, nullptr, persistent);
    ASSERT_TRUE(sub.ready());
  }  // a clean stop: the session stays on the broker
  Kit pub(broker.url(), "pub");
  pub.publish("kept/1", std::string("while away"));
  Kit sub(broker.url(), "keeper", {"kept/#"}, nullptr, persistent);
  auto m = sub.inbox.take([](const Received& r) { return r.topic == "kept/1"; });
  ASSERT_TRUE(m) << broker.log();
  EXPECT_EQ(m->payload, "while away");
}

}  // namespace
}  // namespace outpost::mqtt
