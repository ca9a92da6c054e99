#include <gtest/gtest.h>

#include "ws/detail/protocol.hpp"

namespace outpost::ws::detail {
namespace {

using Json = core::Json;

Subscription subscription(std::string_view text) {
  Message m = parse_message(text);
  EXPECT_EQ(m.op, Op::kSubscribe) << text << ": " << m.error;
  return m.subscription;
}

Removal removal(std::string_view text) {
  Message m = parse_message(text);
  EXPECT_EQ(m.op, Op::kUnsubscribe) << text << ": " << m.error;
  return m.removal;
}

EventKey key(std::string_view type, std::string_view device, std::string_view sensor = "") {
  return {type, device, sensor};
}

// ---- Filters ----

TEST(WsFilter, NewFilterDeliversEverything) {
  Filter f;
  EXPECT_TRUE(f.matches(key("reading", "a", "temp")));
  EXPECT_TRUE(f.matches(key("motion", "cam")));
  EXPECT_EQ(f.to_json().dump(), R"([{"devices":"*","sensors":"*","types":"*"}])");
}

TEST(WsFilter, FirstSubscribeReplacesTheDefaultLaterOnesAddUp) {
  Filter f;
  ASSERT_TRUE(f.add(subscription(R"({"op":"subscribe","devices":["a"],"types":["reading"]})")));
  EXPECT_TRUE(f.matches(key("reading", "a", "temp")));
  EXPECT_FALSE(f.matches(key("reading", "b", "temp")));
  EXPECT_FALSE(f.matches(key("motion", "a")));
  ASSERT_TRUE(f.add(subscription(R"({"op":"subscribe","devices":["b"],"types":["motion"]})")));
  EXPECT_TRUE(f.matches(key("reading", "a", "temp")));
  EXPECT_TRUE(f.matches(key("motion", "b")));
  EXPECT_FALSE(f.matches(key("reading", "b", "temp")));  // a union of subscriptions, not of fields
  EXPECT_FALSE(f.matches(key("motion", "a")));
  EXPECT_EQ(f.subscriptions().size(), 2u);
  ASSERT_TRUE(f.add(subscription(R"({"op":"subscribe","types":["motion"],"devices":["b"]})")));
  EXPECT_EQ(f.subscriptions().size(), 2u) << "an equal subscription is not added twice";
}

TEST(WsFilter, SensorsApplyToReadingsOnly) {
  Filter f;
  ASSERT_TRUE(f.add(subscription(R"({"op":"subscribe","devices":"*","sensors":["temp"]})")));
  EXPECT_TRUE(f.matches(key("reading", "a", "temp")));
  EXPECT_FALSE(f.matches(key("reading", "a", "humidity")));
  EXPECT_FALSE(f.matches(key("reading", "a", "")));
  EXPECT_TRUE(f.matches(key("online", "a")));
  EXPECT_TRUE(f.matches(key("button", "a")));
}

TEST(WsFilter, UnsubscribeRemovesNamesFromListsAndExcludesFromStar) {
  Filter f;
  ASSERT_TRUE(f.add(subscription(R"({"op":"subscribe","devices":["a","b"]})")));
  ASSERT_TRUE(f.remove(removal(R"({"op":"unsubscribe","devices":["a"]})")));
  EXPECT_FALSE(f.matches(key("motion", "a")));
  EXPECT_TRUE(f.matches(key("motion", "b")));
  ASSERT_TRUE(f.remove(removal(R"({"op":"unsubscribe","devices":["b"]})")));
  EXPECT_TRUE(f.subscriptions().empty()) << "a subscription with no device left is dropped";
  EXPECT_FALSE(f.matches(key("motion", "b")));

  Filter g;  // the default "everything", then one device less
  ASSERT_TRUE(g.remove(removal(R"({"op":"unsubscribe","devices":["noisy"]})")));
  EXPECT_FALSE(g.matches(key("reading", "noisy", "t")));
  EXPECT_TRUE(g.matches(key("reading", "quiet", "t")));
  EXPECT_EQ(g.to_json().dump(),
            R"([{"devices":"*","sensors":"*","types":"*","except":{"devices":["noisy"]}}])");
  // A later subscribe adds to that (the default no longer applies).
  ASSERT_TRUE(g.add(subscription(R"({"op":"subscribe","devices":["noisy"],"types":["alert"]})")));
  EXPECT_TRUE(g.matches(key("alert", "noisy")));
  EXPECT_FALSE(g.matches(key("motion", "noisy")));
}

TEST(WsFilter, UnsubscribingTheLastSensorStopsReadingsButNotOtherEvents) {
  Filter f;
  ASSERT_TRUE(f.add(subscription(R"({"op":"subscribe","devices":["a"],"sensors":["temp"]})")));
  ASSERT_TRUE(f.remove(removal(R"({"op":"unsubscribe","sensors":["temp"]})")));
  EXPECT_FALSE(f.matches(key("reading", "a", "temp")));
  EXPECT_TRUE(f.matches(key("motion", "a")));
  // Readings only, no sensor left: nothing can match, so the subscription goes.
  Filter g;
  ASSERT_TRUE(g.add(subscription(R"({"op":"subscribe","types":["reading"],"sensors":["temp"]})")));
  ASSERT_TRUE(g.remove(removal(R"({"op":"unsubscribe","sensors":["temp"]})")));
  EXPECT_TRUE(g.subscriptions().empty());
}

TEST(WsFilter, UnsubscribeWithoutFieldsOrWithStarRemovesAll) {
  for (const char* text : {R"({"op":"unsubscribe"})", R"({"op":"unsubscribe","devices":"*"})",
                           R"({"op":"unsubscribe","types":"*","sensors":["x"]})"}) {
    Filter f;
    ASSERT_TRUE(f.add(subscription(R"({"op":"subscribe","devices":["a"]})")));
    ASSERT_TRUE(f.remove(removal(text)));
    EXPECT_TRUE(f.subscriptions().empty()) << text;
    EXPECT_FALSE(f.matches(key("motion", "a"))) << text;
    EXPECT_EQ(f.to_json().dump(), "[]");
  }
}

TEST(WsFilter, LimitsLeaveTheFilterUnchanged) {
  Filter f;
  for (size_t i = 0; i < kMaxSubscriptions; ++i) {
    Json one = {{"op", "subscribe"}, {"devices", {std::to_string(i)}}};
    ASSERT_TRUE(f.add(subscription(one.dump())));
  }
  auto s = f.add(subscription(R"({"op":"subscribe","devices":["one-more"]})"));
  EXPECT_FALSE(s);
  EXPECT_NE(s.message().find("too many subscriptions"), std::string::npos);
  EXPECT_EQ(f.subscriptions().size(), kMaxSubscriptions);

  Filter g;
  Json many = {{"op", "subscribe"}, {"devices", Json::array()}};
  for (size_t i = 0; i <= kMaxFilterNames; ++i) many["devices"].push_back(std::to_string(i));
  EXPECT_FALSE(g.add(subscription(many.dump())));
  EXPECT_TRUE(g.matches(key("motion", "anything"))) << "still the default";
}

// ---- Parsing ----

TEST(WsParse, Ops) {
  auto m = parse_message(R"({"op":"auth","key":"opk_x"})");
  EXPECT_EQ(m.op, Op::kAuth);
  EXPECT_EQ(m.credential, "opk_x");
  m = parse_message(R"({"op":"auth","token":"eyJ"})");
  EXPECT_EQ(m.op, Op::kAuth);
  EXPECT_EQ(m.credential, "eyJ");
  EXPECT_EQ(parse_message(R"({"op":"list"})").op, Op::kList);
  EXPECT_EQ(parse_message(R"({"op":"ping","ref":1})").op, Op::kPing);
  m = parse_message(R"({"op":"subscribe","devices":"*","sensors":["t"],"types":["reading","motion"],"ref":"s1"})");
  ASSERT_EQ(m.op, Op::kSubscribe);
  EXPECT_FALSE(m.subscription.devices.only);
  EXPECT_EQ(m.subscription.sensors.only->size(), 1u);
  EXPECT_EQ(m.subscription.types.only->size(), 2u);
  EXPECT_EQ(m.ref, "s1");
  m = parse_message(R"({"op":"unsubscribe","sensors":["t"]})");
  ASSERT_EQ(m.op, Op::kUnsubscribe);
  EXPECT_FALSE(m.removal.all);
  EXPECT_EQ(m.removal.sensors, std::vector<std::string>{"t"});
  EXPECT_TRUE(parse_message(R"({"op":"unsubscribe"})").removal.all);
}

TEST(WsParse, Command) {
  auto m = parse_message(R"({"op":"command","device":"d1","target":"display","parameter":"viewstate",
                             "value":"marker5","ref":9})");
  ASSERT_EQ(m.op, Op::kCommand) << m.error;
  EXPECT_EQ(m.command, Json::parse(R"({"device":"d1","target":"display","parameter":"viewstate","value":"marker5"})"));
  EXPECT_EQ(m.ref, 9);
  m = parse_message(R"({"op":"command","device":"d1","value":{"a":[1,2]}})");
  ASSERT_EQ(m.op, Op::kCommand) << m.error;
  EXPECT_EQ(m.command, Json::parse(R"({"device":"d1","value":{"a":[1,2]}})"));
}

// Each bad message gives an error that says what was wrong, and the ref when there is one.
TEST(WsParse, ErrorsSayWhatWasWrong) {
  struct Case {
    const char* text;
    const char* error_contains;
  };
  const Case cases[] = {
      {"", "invalid JSON"},
      {"{", "invalid JSON"},
      {"[1]", "must be a JSON object"},
      {R"({"ref":1})", "missing \"op\""},
      {R"({"op":5})", "\"op\" must be a string"},
      {R"({"op":"dance"})", "unknown op \"dance\""},
      {R"({"op":"auth"})", "auth needs \"key\""},
      {R"({"op":"auth","key":""})", "auth needs \"key\""},
      {R"({"op":"auth","key":5})", "auth needs \"key\""},
      {R"({"op":"subscribe","device":["a"]})", "unknown field \"device\" in subscribe"},
      {R"({"op":"subscribe","devices":[]})", "\"devices\" must be \"*\" or a non-empty array of strings"},
      {R"({"op":"subscribe","devices":"a"})", "\"devices\" must be \"*\""},
      {R"({"op":"subscribe","devices":[1]})", "\"devices\" must be \"*\""},
      {R"({"op":"subscribe","sensors":{}})", "\"sensors\" must be \"*\""},
      {R"({"op":"subscribe","types":["readings"]})", "unknown event type \"readings\""},
      {R"({"op":"unsubscribe","types":[]})", "\"types\" must be"},
      {R"({"op":"ping","extra":1})", "unknown field \"extra\" in ping"},
      {R"({"op":"command","target":"x"})", "command needs \"device\""},
      {R"({"op":"command","device":""})", "command needs \"device\""},
      {R"({"op":"command","device":"d","target":3})", "\"target\" must be a string"},
      {R"({"op":"command","device":"d","parameter":[]})", "\"parameter\" must be a string"},
      {R"({"op":"command","device":"d","speed":3})", "unknown field \"speed\" in command"},
      {R"({"op":"ping","ref":{"a":1}})", "\"ref\" must be a string or a number"},
  };
  for (const auto& c : cases) {
    auto m = parse_message(c.text);
    EXPECT_EQ(m.op, Op::kInvalid) << c.text;
    EXPECT_NE(m.error.find(c.error_contains), std::string::npos) << c.text << " -> " << m.error;
  }
  auto m = parse_message(R"({"op":"dance","ref":"r7"})");
  EXPECT_EQ(m.ref, "r7");
  EXPECT_EQ(error_reply(m.error, m.ref),
            R"j({"op":"error","error":"unknown op \"dance\" (one of auth, subscribe, unsubscribe, list, command, ping)","ref":"r7"})j");
}

TEST(WsParse, DeeplyNestedCommandValueIsRefused) {
  std::string deep = R"({"op":"command","device":"d","value":)" + std::string(100, '[') + std::string(100, ']') + "}";
  auto m = parse_message(deep);
  EXPECT_EQ(m.op, Op::kInvalid);
  EXPECT_NE(m.error.find("nested deeper"), std::string::npos);
  // Deep JSON elsewhere is just JSON nlohmann parses without recursion.
  std::string very_deep(100000, '[');
  EXPECT_EQ(parse_message(very_deep).op, Op::kInvalid);
}

// ---- Server messages ----

TEST(WsRender, EventShapeAndSensor) {
  core::Event e;
  e.id = 42;
  e.ts = core::from_micros(1'700'000'000'123'456);
  e.device = "d23c058698435eff";
  e.kind = "reading";
  e.payload = R"({"sensor":"orientation","value":[1.5,2,-0.25],"unit":"uT"})";
  auto r = render_event(e);
  EXPECT_EQ(r.sensor, "orientation");
  EXPECT_EQ(r.json,
            R"({"op":"event","id":42,"type":"reading","device":"d23c058698435eff","time":"2023-11-14T22:13:20.123456Z",)"
            R"("data":{"sensor":"orientation","value":[1.5,2,-0.25],"unit":"uT"}})");
  auto j = Json::parse(r.json);
  EXPECT_EQ(j["data"]["value"][2], -0.25);
}

TEST(WsRender, UnstoredEventsEmptyAndBrokenPayloads) {
  core::Event e;
  e.ts = core::from_micros(0);
  e.device = "cam\"1";
  e.kind = "motion";
  auto r = render_event(e);
  EXPECT_EQ(r.json, R"({"op":"event","id":null,"type":"motion","device":"cam\"1","time":"1970-01-01T00:00:00.000000Z","data":{}})");
  EXPECT_EQ(r.sensor, "");
  e.payload = "not json";
  EXPECT_EQ(Json::parse(render_event(e).json)["data"], "not json");
  e.payload = "\xff{";  // not UTF-8 either: still valid JSON out
  EXPECT_NO_THROW(Json::parse(render_event(e).json));
  e.kind = "motion";
  e.payload = R"({"sensor":"pir"})";
  EXPECT_EQ(render_event(e).sensor, "") << "only readings have a sensor for filtering";
}

TEST(WsRender, Replies) {
  EXPECT_EQ(reply({{"op", "pong"}}, nullptr), R"({"op":"pong"})");
  EXPECT_EQ(reply({{"op", "pong"}}, 3), R"({"op":"pong","ref":3})");
  EXPECT_EQ(error_reply("bad", "x"), R"({"op":"error","error":"bad","ref":"x"})");
}

TEST(WsSubprotocol, FirstOfferedThatIsSupported) {
  EXPECT_EQ(select_subprotocol("chat, superchat"), "chat");
  EXPECT_EQ(select_subprotocol("superchat, chat"), "chat");
  EXPECT_EQ(select_subprotocol("superchat,outpost.v1,chat"), "outpost.v1");
  EXPECT_EQ(select_subprotocol(" chat "), "chat");
  EXPECT_EQ(select_subprotocol("superchat"), "");
  EXPECT_EQ(select_subprotocol("Chat"), "");
  EXPECT_EQ(select_subprotocol(""), "");
  EXPECT_EQ(select_subprotocol(",,"), "");
}

}  // namespace
}  // namespace outpost::ws::detail
