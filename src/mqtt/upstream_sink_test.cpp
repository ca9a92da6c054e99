// UpstreamSink: the envelope (pure), and delivery against a real mosquitto (TestBroker) and a
// broker that holds PUBACKs back (HoldingBroker).

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "mqtt/mqtt.hpp"
#include "mqtt/test_broker.hpp"
#include "mqtt/test_util.hpp"

namespace outpost::mqtt {
namespace {

using namespace std::chrono_literals;
using core::Json;
using testing::config_for;
using testing::eventually;
using testing::HoldingBroker;
using testing::metric;
using testing::Peer;
using testing::Received;
using testing::TestBroker;
using upstream::Message;
using upstream::Outcome;

Message message(const std::string& id, const std::string& body = R"({"mean":21.5})",
                const std::string& kind = "summary") {
  Message m;
  m.id = id;
  m.kind = kind;
  m.content_type = "application/json";
  m.body = body;
  m.created = core::parse_iso8601("2026-03-01T10:00:00Z").value();
  return m;
}

std::vector<Message> messages(const std::string& prefix, int n) {
  std::vector<Message> out;
  for (int i = 0; i < n; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "%s%04d", prefix.c_str(), i);
    out.push_back(message(id, fmt::format(R"({{"n":{}}})", i)));
  }
  return out;
}

std::unique_ptr<UpstreamSink> make_sink(const std::string& url, core::Registry& r,
                                        const std::string& topic = "outpost/up",
                                        const std::string& id = "sink-1") {
  auto s = UpstreamSink::create(config_for(url), topic, 1, id, r);
  if (!s) throw std::runtime_error(s.status().to_string());
  return std::move(*s);
}

// The ids a consumer saw, from the envelopes.
std::vector<std::string> ids_of(const std::vector<Received>& rs, const std::string& topic) {
  std::vector<std::string> out;
  for (const auto& r : rs) {
    if (r.topic == topic) out.push_back(Json::parse(r.payload).at("id").get<std::string>());
  }
  return out;
}

std::string base64_decode(const std::string& in) {
  static const std::string kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    acc = acc << 6 | static_cast<uint32_t>(kAlphabet.find(c));
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

TEST(UpstreamEnvelope, CarriesTheIdAndAJsonBodyByteForByte) {
  Message m = message("sum-42", R"({"z":1,"a":[1.50,2]})");
  std::string text = upstream_envelope(m);
  Json j = Json::parse(text);
  EXPECT_EQ(j["id"], "sum-42");
  EXPECT_EQ(j["kind"], "summary");
  EXPECT_EQ(j["created"], "2026-03-01T10:00:00.000000Z");
  EXPECT_EQ(j["content_type"], "application/json");
  EXPECT_EQ(j["body"], Json::parse(R"({"z":1,"a":[1.5,2]})"));
  EXPECT_FALSE(j.contains("body_base64"));
  // Not re-serialized: key order and number text as the producer wrote them.
  EXPECT_NE(text.find(R"("body":{"z":1,"a":[1.50,2]})"), std::string::npos) << text;
}

TEST(UpstreamEnvelope, ABodyThatIsNotJsonTravelsAsBase64) {
  Message jpeg = message("snap-1", std::string("\xff\xd8\xff\xe0\x00\x10JFIF\x00", 11), "snapshot");
  jpeg.content_type = "image/jpeg";
  Json j = Json::parse(upstream_envelope(jpeg));
  EXPECT_EQ(j["content_type"], "image/jpeg");
  EXPECT_FALSE(j.contains("body"));
  EXPECT_EQ(base64_decode(j["body_base64"]), jpeg.body);
  // RFC 4648's test vectors, padding included.
  for (auto [raw, enc] : std::vector<std::pair<std::string, std::string>>{{"f", "Zg=="},
                                                                          {"fo", "Zm8="},
                                                                          {"foo", "Zm9v"},
                                                                          {"foob", "Zm9vYg=="},
                                                                          {"fooba", "Zm9vYmE="},
                                                                          {"foobar", "Zm9vYmFy"}}) {
    Message t = message("t", raw);
    t.content_type = "text/plain";
    EXPECT_EQ(Json::parse(upstream_envelope(t))["body_base64"], enc) << raw;
  }
  Message empty = message("e", "");
  EXPECT_EQ(Json::parse(upstream_envelope(empty))["body_base64"], "");
  // Not JSON although it says so: still carried, as bytes.
  Message broken = message("b", "{\"a\":");
  EXPECT_EQ(base64_decode(Json::parse(upstream_envelope(broken))["body_base64"]), "{\"a\":");
}

TEST(UpstreamSink, RejectsBadTopicsQosAndUrls) {
  core::Registry r;
  auto cfg = config_for("mqtt://127.0.0.1:1");
  for (const char* bad : {"", "a/+", "a/#", "#"}) {
    auto s = UpstreamSink::create(cfg, bad, 1, "x", r);
    EXPECT_EQ(s.status().code(), core::Code::kInvalid) << bad;
  }
  EXPECT_EQ(UpstreamSink::create(cfg, std::string("a\0b", 3), 1, "x", r).status().code(),
            core::Code::kInvalid);
  EXPECT_EQ(UpstreamSink::create(cfg, "a/\xff", 1, "x", r).status().code(), core::Code::kInvalid);
  auto q0 = UpstreamSink::create(cfg, "a/b", 0, "x", r);
  EXPECT_EQ(q0.status().code(), core::Code::kInvalid);
  EXPECT_NE(q0.status().message().find("qos 0"), std::string::npos) << q0.status().message();
  EXPECT_EQ(UpstreamSink::create(cfg, "a/b", 3, "x", r).status().code(), core::Code::kInvalid);
  EXPECT_EQ(UpstreamSink::create(config_for("http://h:1"), "a/b", 1, "x", r).status().code(),
            core::Code::kInvalid);
  auto ok = make_upstream_sink(cfg, "a/b", 2, "x", r);
  ASSERT_TRUE(ok) << ok.status().to_string();
  EXPECT_EQ((*ok)->describe(), "mqtt://127.0.0.1:1 topic a/b");
  EXPECT_EQ((*ok)->max_batch(), UpstreamSink::kMaxBatch);
}

TEST(UpstreamSink, DeliversABatchInOrderAndCountsEveryPuback) {
  TestBroker broker;
  broker.start();
  Peer consumer(broker.url(), "consumer", {"outpost/up"});
  ASSERT_TRUE(consumer.ready());
  core::Registry r;
  auto sink = make_sink(broker.url(), r);
  auto batch = messages("m", 25);
  Message jpeg = message("snap-1", std::string("\xff\xd8\xff\xd9", 4), "snapshot");
  jpeg.content_type = "image/jpeg";
  batch.push_back(jpeg);

  // Just made: the first connection is under way, and deliver() waits for it.
  auto d = sink->deliver(batch, 10s);
  EXPECT_EQ(d.delivered, batch.size()) << d.error;
  EXPECT_EQ(d.rest, Outcome::kDelivered);
  EXPECT_EQ(d.error, "");
  EXPECT_EQ(metric(r, R"(outpost_mqtt_upstream_confirmed_total{client_id="sink-1"})"), 26);
  EXPECT_EQ(metric(r, R"(outpost_mqtt_upstream_published_total{client_id="sink-1"})"), 26);
  EXPECT_EQ(metric(r, R"(outpost_mqtt_upstream_connected{client_id="sink-1"})"), 1);

  std::vector<Received> got;
  ASSERT_TRUE(eventually([&] {
    got.clear();
    for (auto& m : consumer.inbox.items()) {
      if (m.topic == "outpost/up") got.push_back(m);
    }
    return got.size() >= 26;
  }));
  std::vector<std::string> want;
  for (const auto& m : batch) want.push_back(m.id);
  EXPECT_EQ(ids_of(got, "outpost/up"), want);
  Json last = Json::parse(got.back().payload);
  EXPECT_EQ(base64_decode(last["body_base64"]), jpeg.body);
  EXPECT_FALSE(got.front().retain);

  // The next batch goes out on the same connection.
  auto more = messages("n", 3);
  d = sink->deliver(more, 10s);
  EXPECT_EQ(d.delivered, 3u);
  EXPECT_EQ(d.rest, Outcome::kDelivered);
}

TEST(UpstreamSink, ABrokerThatIsDownIsARetryThatSaysWhy) {
  TestBroker broker;  // port chosen, never started
  core::Registry r;
  auto sink = make_sink(broker.url(), r);
  ASSERT_TRUE(eventually([&] { return sink->health().detail.rfind("connecting: ", 0) == 0; }));
  auto batch = messages("m", 3);
  auto d = sink->deliver(batch, 2s);
  EXPECT_EQ(d.delivered, 0u);
  EXPECT_EQ(d.rest, Outcome::kRetry);
  EXPECT_NE(d.error.find("not connected to " + broker.url()), std::string::npos) << d.error;
  EXPECT_NE(d.error.find("Connection refused"), std::string::npos) << d.error;
  EXPECT_EQ(metric(r, R"(outpost_mqtt_upstream_connected{client_id="sink-1"})"), 0);

  // It comes up: the same batch goes.
  broker.start();
  ASSERT_TRUE(eventually([&] { return sink->health().connected; })) << sink->health().detail;
  d = sink->deliver(batch, 10s);
  EXPECT_EQ(d.delivered, 3u) << d.error;
  EXPECT_EQ(d.rest, Outcome::kDelivered);
}

// Delivered = the leading messages with a PUBACK; a PUBACK that comes after deliver() returned
// still counts, and what is in flight is not published again.
TEST(UpstreamSink, OnlyLeadingConfirmedMessagesAreDeliveredAndLateOnesCountNextTime) {
  HoldingBroker broker;
  core::Registry r;
  auto sink = make_sink(broker.url(), r);
  auto batch = messages("m", 3);

  auto d = sink->deliver(batch, 300ms);
  EXPECT_EQ(d.delivered, 0u);
  EXPECT_EQ(d.rest, Outcome::kRetry);
  EXPECT_NE(d.error.find("no confirmation"), std::string::npos) << d.error;
  EXPECT_NE(d.error.find("m0000"), std::string::npos) << d.error;
  ASSERT_TRUE(broker.wait_published(3));
  auto pubs = broker.published();
  ASSERT_EQ(pubs.size(), 3u);
  EXPECT_EQ(Json::parse(pubs[0].payload)["id"], "m0000");

  // The second and then the first are confirmed, after deliver() gave up.
  broker.ack(pubs[1].mid);
  broker.ack(pubs[0].mid);
  ASSERT_TRUE(eventually([&] {
    return metric(r, R"(outpost_mqtt_upstream_confirmed_total{client_id="sink-1"})") == 2;
  }));
  d = sink->deliver(batch, 300ms);
  EXPECT_EQ(d.delivered, 2u);
  EXPECT_EQ(d.rest, Outcome::kRetry);
  EXPECT_NE(d.error.find("m0002"), std::string::npos) << d.error;
  EXPECT_EQ(broker.published().size(), 3u) << "a message in flight was published again";

  broker.ack(pubs[2].mid);
  d = sink->deliver(std::span(batch).subspan(2), 5s);
  EXPECT_EQ(d.delivered, 1u);
  EXPECT_EQ(d.rest, Outcome::kDelivered);
  EXPECT_EQ(broker.published().size(), 3u);
}

TEST(UpstreamSink, AMessageLeftUnconfirmedThroughSeveralCallsIsPublishedAgain) {
  HoldingBroker broker;
  core::Registry r;
  auto sink = make_sink(broker.url(), r);
  auto batch = messages("m", 1);
  for (uint32_t i = 0; i < UpstreamSink::kRepublishAfter; ++i) {
    auto d = sink->deliver(batch, 100ms);
    EXPECT_EQ(d.delivered, 0u);
    EXPECT_EQ(d.rest, Outcome::kRetry);
  }
  ASSERT_TRUE(broker.wait_published(1));
  EXPECT_EQ(broker.published().size(), 1u);
  broker.set_auto_ack(true);
  auto d = sink->deliver(batch, 5s);
  EXPECT_EQ(d.delivered, 1u) << d.error;
  auto pubs = broker.published();
  ASSERT_EQ(pubs.size(), 2u);
  EXPECT_EQ(pubs[0].payload, pubs[1].payload);  // the same envelope, the same id
  EXPECT_NE(pubs[0].mid, pubs[1].mid);
}

// The issue's test: a real broker restarted mid-stream. Messages delivered before the restart,
// those in flight when it went down, and those after it all reach a consumer with a persistent
// session (at least once: it counts distinct ids).
TEST(UpstreamSink, EveryMessageArrivesAcrossABrokerRestartMidStream) {
  TestBroker broker;
  // Persistence, so the consumer's session and the messages queued for it survive the restart.
  std::filesystem::create_directories(broker.dir() / "db");
  std::filesystem::permissions(broker.dir(), std::filesystem::perms::all);
  std::filesystem::permissions(broker.dir() / "db", std::filesystem::perms::all);
  broker.add_config("persistence true\npersistence_location " + (broker.dir() / "db").string() +
                    "/\n");
  broker.start();
  ClientOptions persistent;
  persistent.clean_session = false;
  Peer consumer(broker.url(), "consumer", {"outpost/up"}, nullptr, persistent);
  ASSERT_TRUE(consumer.ready());

  core::Registry r;
  auto sink = make_sink(broker.url(), r);
  constexpr int kTotal = 300;
  auto all = messages("m", kTotal);
  std::atomic<size_t> next{0};
  std::atomic<int> retries{0};
  std::atomic<bool> dead{false};
  // As the outbox does: in order, from the first unconfirmed, with a pause after a failure.
  std::thread producer([&] {
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (next < all.size() && std::chrono::steady_clock::now() < deadline) {
      size_t n = std::min<size_t>(7, all.size() - next);
      auto d = sink->deliver(std::span(all).subspan(next, n), 2s);
      next += d.delivered;
      if (d.rest == Outcome::kDead) {
        dead = true;
        return;
      }
      if (d.delivered < n) {
        ++retries;
        std::this_thread::sleep_for(50ms);
      } else {
        std::this_thread::sleep_for(10ms);  // a stream, not a burst
      }
    }
  });
  ASSERT_TRUE(eventually([&] { return next >= 60; }, 30s));
  broker.stop();
  ASSERT_TRUE(eventually([&] { return retries > 0; }, 30s)) << "the producer never noticed";
  size_t during = next;
  broker.start();
  producer.join();
  ASSERT_FALSE(dead);
  ASSERT_EQ(next, all.size()) << "delivery did not resume after the restart";
  EXPECT_LT(during, all.size()) << "the restart was not mid-stream";

  std::set<std::string> want;
  for (const auto& m : all) want.insert(m.id);
  std::set<std::string> seen;
  ASSERT_TRUE(eventually(
      [&] {
        auto ids = ids_of(consumer.inbox.items(), "outpost/up");
        seen = std::set<std::string>(ids.begin(), ids.end());
        return seen == want;
      },
      30s))
      << seen.size() << " of " << want.size() << " distinct ids arrived\n"
      << broker.log();
  auto ids = ids_of(consumer.inbox.items(), "outpost/up");
  EXPECT_GE(ids.size(), want.size());
  std::map<std::string, int> copies;
  for (const auto& id : ids) ++copies[id];
  int dups = 0;
  for (const auto& [id, n] : copies) dups += n - 1;
  RecordProperty("duplicates", dups);
  RecordProperty("retries", retries.load());
}

}  // namespace
}  // namespace outpost::mqtt
