#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "upstream/upstream.hpp"

namespace outpost::upstream {
namespace {

using core::Code;
using json = nlohmann::json;

Message message(std::string id, std::string kind, std::string body) {
  return Message{std::move(id), std::move(kind), "application/json", std::move(body),
                 *core::parse_iso8601("2026-05-01T12:00:00Z"), 2};
}

TEST(Envelope, CarriesSourceIdsKindsAndBodiesAsJson) {
  std::vector<Message> batch = {message("a1", "summary", R"({"device":"e","mean":21.5})"),
                                message("a\"2", "command", R"({"device":"e","payload":{"x":[1,2]}})"),
                                message("a3", "alert", "not json")};
  auto j = json::parse(envelope("edge \"1\"", batch));
  EXPECT_EQ(j["source"], "edge \"1\"");
  ASSERT_EQ(j["messages"].size(), 3u);
  EXPECT_EQ(j["messages"][0]["id"], "a1");
  EXPECT_EQ(j["messages"][0]["kind"], "summary");
  EXPECT_EQ(j["messages"][0]["created"], "2026-05-01T12:00:00.000000Z");
  EXPECT_EQ(j["messages"][0]["attempts"], 2);
  EXPECT_EQ(j["messages"][0]["body"]["mean"], 21.5);
  EXPECT_EQ(j["messages"][1]["id"], "a\"2");
  EXPECT_EQ(j["messages"][1]["body"]["payload"]["x"][1], 2);
  EXPECT_EQ(j["messages"][2]["body"], "not json");  // kept, as a string, rather than break the batch
}

TEST(Envelope, EventBodyRoundTripsThroughIngest) {
  core::Event e{42, *core::parse_iso8601("2026-05-01T12:00:01Z"), "edge-1", "command", R"({"target":"led"})"};
  auto body = json::parse(event_body(e));
  EXPECT_EQ(body["device"], "edge-1");
  EXPECT_EQ(body["kind"], "command");
  EXPECT_EQ(body["payload"]["target"], "led");
  EXPECT_FALSE(body.contains("event_id"));
  std::vector<Message> batch = {message("m1", "command", event_body(e))};
  auto req = parse_ingest(envelope("edge-1", batch));
  ASSERT_TRUE(req.is_ok()) << req.status().to_string();
  EXPECT_EQ(req->source, "edge-1");
  ASSERT_EQ(req->items.size(), 1u);
  EXPECT_EQ(req->items[0].id, "m1");
  ASSERT_TRUE(req->items[0].event);
  EXPECT_EQ(req->items[0].event->kind, "command");
  EXPECT_EQ(req->items[0].event->device, "edge-1");
  EXPECT_EQ(req->items[0].event->ts, e.ts);
  EXPECT_EQ(json::parse(req->items[0].event->payload), json::parse(e.payload));
}

TEST(Ingest, ReadingsSummariesAndEvents) {
  auto req = parse_ingest(R"({"source": "edge-1", "messages": [
    {"id": "r1", "kind": "reading", "body": {"device": "edge-1", "sensor": "temp", "time": "2026-05-01T12:00:00Z",
                                            "value": 21.5, "unit": "C"}},
    {"id": "r2", "kind": "reading", "body": {"device": "edge-1", "sensor": "pos", "time": "2026-05-01T12:00:00Z",
                                            "value": [1, 2, 3]}},
    {"id": "r3", "kind": "reading", "body": {"device": "edge-1", "sensor": "temp", "time": "2026-05-01T12:00:01Z",
                                            "value": null}},
    {"id": "s1", "kind": "summary", "created": "2026-05-01T12:06:00Z",
     "body": {"device": "edge-1", "sensor": "temp", "mean": 21.5, "period_end": "2026-05-01T12:05:00Z"}},
    {"id": "a1", "kind": "alert", "created": "2026-05-01T12:07:00Z", "body": {"device": "edge-1", "rule": "hot"}}
  ]})",
                          100, *core::parse_iso8601("2026-06-01T00:00:00Z"));
  ASSERT_TRUE(req.is_ok()) << req.status().to_string();
  ASSERT_EQ(req->items.size(), 5u);
  const auto& r1 = req->items[0].readings.at(0);
  EXPECT_EQ(r1.device, "edge-1");
  EXPECT_EQ(r1.sensor, "temp");
  EXPECT_EQ(r1.value, 21.5);
  EXPECT_EQ(r1.unit, "C");
  EXPECT_TRUE(r1.is_numeric());
  EXPECT_EQ(req->items[1].readings.at(0).text, "[1,2,3]");
  EXPECT_TRUE(std::isnan(req->items[2].readings.at(0).value));
  const auto& s1 = *req->items[3].event;
  EXPECT_EQ(s1.kind, "summary");
  EXPECT_EQ(s1.ts, *core::parse_iso8601("2026-05-01T12:05:00Z"));  // the window's end
  EXPECT_EQ(json::parse(s1.payload)["mean"], 21.5);                 // the whole body
  const auto& a1 = *req->items[4].event;
  EXPECT_EQ(a1.ts, *core::parse_iso8601("2026-05-01T12:07:00Z"));  // created, lacking a time
  EXPECT_EQ(json::parse(a1.payload)["rule"], "hot");
}

TEST(Ingest, BadEnvelopesNameWhatIsWrong) {
  struct Case {
    const char* body;
    const char* says;
  };
  const Case cases[] = {
      {"not json", "JSON object"},
      {"[]", "JSON object"},
      {R"({"messages": []})", "body.source"},
      {R"({"source": "", "messages": []})", "body.source"},
      {R"({"source": "e"})", "body.messages"},
      {R"({"source": "e", "messages": []})", "body.messages"},
      {R"({"source": "e", "messages": [5]})", "messages[0]"},
      {R"({"source": "e", "messages": [{"kind": "alert", "body": {"device": "d"}}]})", "messages[0].id"},
      {R"({"source": "e", "messages": [{"id": "x", "body": {"device": "d"}}]})", "messages[0].kind"},
      {R"({"source": "e", "messages": [{"id": "x", "kind": "a b", "body": {"device": "d"}}]})", "messages[0].kind"},
      {R"({"source": "e", "messages": [{"id": "x", "kind": "alert"}]})", "messages[0].body"},
      {R"({"source": "e", "messages": [{"id": "x", "kind": "alert", "body": {}}]})", "messages[0].body.device"},
      {R"({"source": "e", "messages": [{"id": "x", "kind": "alert", "body": {"device": "d", "time": "noon"}}]})",
       "messages[0].body.time"},
      {R"({"source": "e", "messages": [{"id": "x", "kind": "alert", "created": 5, "body": {"device": "d"}}]})",
       "messages[0].created"},
      {R"({"source": "e", "messages": [{"id": "x", "kind": "snapshot", "content_type": "image/jpeg", "body": {}}]})",
       "image/jpeg"},
      {R"({"source": "e", "messages": [{"id": "x", "kind": "alert", "body": {"device": "d"}},
                                       {"id": "y", "kind": "reading", "body": {"device": "d", "time": "2026-01-01"}}]})",
       "messages[1].body.sensor"},
      {R"({"source": "e", "messages": [{"id": "y", "kind": "reading", "body": {"device": "d", "sensor": "s"}}]})",
       "messages[0].body.time"},
      {R"({"source": "e", "messages": [{"id": "y", "kind": "reading",
           "body": {"device": "d", "sensor": "s", "time": "2026-01-01T00:00:00Z"}}]})",
       "messages[0].body.value"},
      {R"({"source": "e", "messages": [{"id": "y", "kind": "reading",
           "body": {"device": "d", "sensor": "s", "time": "2026-01-01T00:00:00Z", "value": 1, "unit": 5}}]})",
       "messages[0].body.unit"},
  };
  for (const auto& c : cases) {
    auto r = parse_ingest(c.body);
    ASSERT_FALSE(r.is_ok()) << c.body;
    EXPECT_EQ(r.status().code(), Code::kInvalid) << c.body;
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << c.body << " -> " << r.status().message();
  }
  auto many = parse_ingest(R"({"source": "e", "messages": [{"id": "1", "kind": "a", "body": {"device": "d"}},
                                                         {"id": "2", "kind": "a", "body": {"device": "d"}}]})",
                           1);
  EXPECT_EQ(many.status().code(), Code::kTooLarge);
}

TEST(Backoff, DoublesUpToTheMaximumWithEqualJitter) {
  using ms = std::chrono::milliseconds;
  EXPECT_EQ(backoff_delay(ms(100), ms(1000), 1, 0.0), ms(50));
  EXPECT_EQ(backoff_delay(ms(100), ms(1000), 1, 1.0), ms(100));
  EXPECT_EQ(backoff_delay(ms(100), ms(1000), 2, 1.0), ms(200));
  EXPECT_EQ(backoff_delay(ms(100), ms(1000), 4, 1.0), ms(800));
  EXPECT_EQ(backoff_delay(ms(100), ms(1000), 5, 1.0), ms(1000));
  EXPECT_EQ(backoff_delay(ms(100), ms(1000), 1000, 0.5), ms(750));  // no overflow after many failures
  EXPECT_EQ(backoff_delay(ms(100), ms(1000), 5, 0.0), ms(500));
}

}  // namespace
}  // namespace outpost::upstream
