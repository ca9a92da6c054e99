// The pure rule logic: expressions, rule documents, and the evaluator with a fake clock.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "config/config.hpp"
#include "edge/rules.hpp"

namespace outpost::edge {
namespace {

using core::Json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const core::TimePoint kT0 = core::from_micros(1'800'000'000'000'000);

// ---- Expressions ----

std::optional<Expression> expr(const std::string& text, RuleError* err_out = nullptr) {
  RuleError err;
  auto e = Expression::parse(text, "pi", err);
  if (err_out) *err_out = err;
  return e;
}

double eval(const std::string& text, std::vector<double> values = {}) {
  auto e = expr(text);
  EXPECT_TRUE(e) << text;
  if (!e) return kNaN;
  values.resize(e->refs().size(), kNaN);
  return e->eval(values);
}

TEST(Expression, ArithmeticPrecedenceAndParentheses) {
  EXPECT_EQ(eval("1 + 2 * 3 > 6"), 1);
  EXPECT_EQ(eval("(1 + 2) * 3 == 9"), 1);
  EXPECT_EQ(eval("10 - 4 - 3 == 3"), 1);  // left-associative
  EXPECT_EQ(eval("8 / 4 / 2 == 1"), 1);
  EXPECT_EQ(eval("-2 * -3 == 6"), 1);
  EXPECT_EQ(eval("2.5e1 >= 25"), 1);
  EXPECT_EQ(eval(".5 < 1"), 1);
  EXPECT_EQ(eval("3 != 3"), 0);
  EXPECT_EQ(eval("1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 3"), 1);
  EXPECT_EQ(eval("1 > 2 || 2 > 1"), 1);
  EXPECT_EQ(eval("!(1 > 2)"), 1);
  EXPECT_EQ(eval("!!5"), 1);
  EXPECT_EQ(eval("1 / 0 > 1000"), 1);  // +inf compares
}

TEST(Expression, ReferencesDeviceSlashSensorBoardAndQuoted) {
  auto e = expr("greenhouse/temp > 30 && greenhouse/humidity < 40 && cpu_temp_c > 0 && 'my-pi/light#2' > 1 && "
                "440cd2d8c18d7d3a/light > 2 && greenhouse/temp < 50");
  ASSERT_TRUE(e);
  ASSERT_EQ(e->refs().size(), 5u);  // greenhouse/temp once
  EXPECT_EQ(e->refs()[0], (SensorRef{"greenhouse", "temp", 0}));
  EXPECT_EQ(e->refs()[0].position, 0u);
  EXPECT_EQ(e->refs()[1], (SensorRef{"greenhouse", "humidity", 0}));
  EXPECT_EQ(e->refs()[2], (SensorRef{"pi", "cpu_temp_c", 0}));
  EXPECT_EQ(e->refs()[3], (SensorRef{"my-pi", "light#2", 0}));
  EXPECT_EQ(e->refs()[4], (SensorRef{"440cd2d8c18d7d3a", "light", 0}));
  EXPECT_EQ(e->eval({31, 35, 40, 2, 3}), 1);
  EXPECT_EQ(e->eval({31, 45, 40, 2, 3}), 0);
  // "a / b" with spaces divides two sensors of this board.
  auto div = expr("a / b > 2");
  ASSERT_TRUE(div);
  ASSERT_EQ(div->refs().size(), 2u);
  EXPECT_EQ(div->refs()[0].device, "pi");
  EXPECT_EQ(div->eval({10, 4}), 1);
  EXPECT_EQ(div->eval({10, 5}), 0);
}

TEST(Expression, UnknownValuesUseThreeValuedLogic) {
  // refs: a, b
  EXPECT_TRUE(std::isnan(eval("a > 1", {kNaN})));
  EXPECT_TRUE(std::isnan(eval("!(a > 1)", {kNaN})));  // not "true" because a is missing
  EXPECT_EQ(eval("a > 1 && b > 1", {kNaN, 0}), 0);     // false && unknown = false
  EXPECT_EQ(eval("a > 1 && b > 1", {0, kNaN}), 0);
  EXPECT_TRUE(std::isnan(eval("a > 1 && b > 1", {5, kNaN})));
  EXPECT_EQ(eval("a > 1 || b > 1", {kNaN, 5}), 1);     // unknown || true = true
  EXPECT_TRUE(std::isnan(eval("a > 1 || b > 1", {0, kNaN})));
  EXPECT_TRUE(std::isnan(eval("a + 1 > 0", {kNaN})));
  EXPECT_TRUE(std::isnan(eval("0 / 0 > 1")));  // NaN is unknown, not false
}

struct BadExpr {
  std::string text;
  size_t position;
  std::string says;
};

TEST(Expression, SyntaxErrorsSayWhatAndWhere) {
  std::vector<BadExpr> cases = {
      {"", 0, "empty"},
      {"temp >", 6, "unexpected end"},
      {"temp > > 3", 7, "unexpected '>'"},
      {"(temp > 3", 9, "expected ')'"},
      {"temp > 3)", 8, "unexpected ')'"},
      {"temp = 3", 5, "'=='"},
      {"temp > 3 & x", 9, "'&&'"},
      {"temp > 3 | x", 9, "'||'"},
      {"1 < temp < 3", 9, "do not chain"},
      {"1 == 1 == 1", 7, "do not chain"},
      {"2x > 1", 0, "neither a number"},
      {"temp $ 3", 5, "unexpected character '$'"},
      {"'unterminated > 3", 0, "unterminated"},
      {"'' > 3", 0, "empty quoted"},
      {"'a/b/c' > 3", 0, "not device/sensor"},
      {"'/x' > 3", 0, "not device/sensor"},
      {"1e999 > 3", 0, "out of range"},
      {"temp 3", 5, "unexpected '3'"},
  };
  for (const auto& c : cases) {
    RuleError err;
    EXPECT_FALSE(expr(c.text, &err)) << c.text;
    EXPECT_EQ(err.field, "expr") << c.text;
    ASSERT_TRUE(err.position) << c.text;
    EXPECT_EQ(*err.position, c.position) << c.text << ": " << err.message;
    EXPECT_NE(err.message.find(c.says), std::string::npos) << c.text << ": " << err.message;
    EXPECT_NE(err.message.find("at position " + std::to_string(c.position)), std::string::npos) << err.message;
  }
}

TEST(Expression, BoundedInLengthNodesAndDepth) {
  RuleError err;
  EXPECT_FALSE(expr(std::string(1025, '1'), &err));
  EXPECT_NE(err.message.find("longer than 1024"), std::string::npos) << err.message;
  std::string deep = std::string(40, '(') + "1" + std::string(40, ')');
  EXPECT_FALSE(expr(deep, &err));
  EXPECT_NE(err.message.find("nested more than"), std::string::npos) << err.message;
  std::string negs = std::string(40, '-') + "1 > 0";
  EXPECT_FALSE(expr(negs, &err));
  EXPECT_NE(err.message.find("nested more than"), std::string::npos) << err.message;
  std::string many = "1";
  for (int i = 0; i < 200; ++i) many += "+1";
  EXPECT_FALSE(expr(many, &err));
  EXPECT_NE(err.message.find("more than 256 terms"), std::string::npos) << err.message;
  // Within bounds is fine.
  EXPECT_EQ(eval(std::string(30, '(') + "1 > 0" + std::string(30, ')')), 1);
}

// ---- Rule documents ----

Json doc(const std::string& text) { return Json::parse(text); }

std::optional<Rule> parse(const std::string& text, RuleError* err_out = nullptr) {
  RuleError err;
  auto r = parse_rule(doc(text), "pi", err);
  if (err_out) *err_out = err;
  return r;
}

TEST(RuleDoc, ThresholdWithDefaults) {
  auto r = parse(R"({"id": "vent", "sensor": "cpu_temp_c", "above": 30, "clear_below": 27, "for": "1m",
                     "on": {"command": {"target": "relay", "value": "on"}, "alert": "hot"},
                     "off": {"command": {"target": "relay", "value": "off"}}})");
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->threshold);
  EXPECT_EQ(r->threshold->device, "pi");
  EXPECT_TRUE(r->threshold->above);
  EXPECT_EQ(r->threshold->threshold, 30);
  EXPECT_EQ(r->threshold->clear, 27);
  EXPECT_EQ(r->hold, milliseconds(60'000));
  ASSERT_TRUE(r->on.command);
  EXPECT_EQ(r->on.command->device, "pi");
  EXPECT_EQ(r->on.command->parameter, "state");
  EXPECT_EQ(r->on.command->value, "on");
  EXPECT_EQ(*r->on.alert, "hot");
  EXPECT_FALSE(r->off.alert);
  EXPECT_EQ(rule_json(*r).dump(),
            R"({"id":"vent","enabled":true,"device":"pi","sensor":"cpu_temp_c","above":30.0,"clear_below":27.0,)"
            R"("for":"1m","on":{"command":{"device":"pi","target":"relay","parameter":"state","value":"on"},)"
            R"("alert":"hot"},"off":{"command":{"device":"pi","target":"relay","parameter":"state","value":"off"}}})");
  // Below, no hysteresis given: it clears at the threshold; for as seconds.
  auto b = parse(R"({"id": "cold", "device": "gh", "sensor": "t", "below": 5, "for": 1.5, "on": {"alert": "cold"}})");
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->threshold->above);
  EXPECT_EQ(b->threshold->clear, 5);
  EXPECT_EQ(b->hold, milliseconds(1500));
  EXPECT_EQ(rule_json(*b)["for"], "1500ms");
}

TEST(RuleDoc, Expression) {
  auto r = parse(R"({"id": "e", "expr": "greenhouse/temp > 30 && greenhouse/humidity < 40",
                     "clear": "greenhouse/temp < 27", "on": {"alert": "dry and hot"}})");
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->expr);
  ASSERT_TRUE(r->clear);
  EXPECT_EQ(r->inputs().size(), 2u);
  EXPECT_EQ(rule_json(*r)["clear"], "greenhouse/temp < 27");
}

struct BadDoc {
  std::string doc;
  std::string field;
  std::string says;
};

TEST(RuleDoc, EveryMistakeNamesItsField) {
  std::vector<BadDoc> cases = {
      {R"([1])", "", "JSON object"},
      {R"({"sensor": "t", "above": 1, "on": {"alert": "x"}})", "id", "required"},
      {R"({"id": "a b", "sensor": "t", "above": 1, "on": {"alert": "x"}})", "id", "must be 1 to 64"},
      {R"({"id": 7, "sensor": "t", "above": 1, "on": {"alert": "x"}})", "id", "a string"},
      {R"({"id": "x", "sensor": "t", "abov": 1, "on": {"alert": "x"}})", "abov", "unknown field 'abov'"},
      {R"({"id": "x", "on": {"alert": "x"}})", "sensor", "needs a condition"},
      {R"({"id": "x", "sensor": "t", "on": {"alert": "x"}})", "above", "needs above"},
      {R"({"id": "x", "sensor": "t", "above": 1, "below": 0, "on": {"alert": "x"}})", "below", "not both"},
      {R"({"id": "x", "sensor": "t", "above": "30", "on": {"alert": "x"}})", "above", "must be a number"},
      {R"({"id": "x", "sensor": "t", "above": true, "on": {"alert": "x"}})", "above", "must be a number"},
      {R"({"id": "x", "sensor": "t", "above": 30, "clear_below": 33, "on": {"alert": "x"}})", "clear_below",
       "inverted"},
      {R"({"id": "x", "sensor": "t", "below": 5, "clear_above": 3, "on": {"alert": "x"}})", "clear_above", "inverted"},
      {R"({"id": "x", "sensor": "t", "above": 30, "clear_above": 33, "on": {"alert": "x"}})", "clear_above",
       "goes with below"},
      {R"({"id": "x", "sensor": "t", "above": 30, "clear": "t < 3", "on": {"alert": "x"}})", "clear",
       "for expressions"},
      {R"({"id": "x", "sensor": "", "above": 30, "on": {"alert": "x"}})", "sensor", "not be empty"},
      {R"({"id": "x", "sensor": "t", "expr": "t > 1", "on": {"alert": "x"}})", "expr", "not both"},
      {R"({"id": "x", "expr": "t > 1", "device": "d", "on": {"alert": "x"}})", "device", "goes with sensor"},
      {R"({"id": "x", "expr": "t >", "on": {"alert": "x"}})", "expr", "at position 3"},
      {R"({"id": "x", "expr": "t > 1", "clear": "(", "on": {"alert": "x"}})", "clear", "at position 1"},
      {R"({"id": "x", "sensor": "t", "above": 1, "for": "soon", "on": {"alert": "x"}})", "for", "not a duration"},
      {R"({"id": "x", "sensor": "t", "above": 1, "for": "-5s", "on": {"alert": "x"}})", "for", "not a duration"},
      {R"({"id": "x", "sensor": "t", "above": 1, "for": -5, "on": {"alert": "x"}})", "for", "non-negative"},
      {R"({"id": "x", "sensor": "t", "above": 1, "for": "31d", "on": {"alert": "x"}})", "for", "30 days"},
      {R"({"id": "x", "sensor": "t", "above": 1, "for": true, "on": {"alert": "x"}})", "for", "not a boolean"},
      {R"({"id": "x", "sensor": "t", "above": 1})", "on", "does nothing"},
      {R"({"id": "x", "sensor": "t", "above": 1, "on": {}})", "on", "does nothing"},
      {R"({"id": "x", "sensor": "t", "above": 1, "on": "relay on"})", "on", "must be an object"},
      {R"({"id": "x", "sensor": "t", "above": 1, "on": {"alarm": "x"}})", "on.alarm", "unknown field"},
      {R"({"id": "x", "sensor": "t", "above": 1, "on": {"alert": ""}})", "on.alert", "not be empty"},
      {R"({"id": "x", "sensor": "t", "above": 1, "on": {"command": {"value": 1}}})", "on.command.target", "required"},
      {R"({"id": "x", "sensor": "t", "above": 1, "off": {"command": {"target": "relay"}}})", "off.command.value",
       "required"},
      {R"({"id": "x", "sensor": "t", "above": 1, "off": {"command": {"target": "relay", "value": null}}})",
       "off.command.value", "required"},
      {R"({"id": "x", "sensor": "t", "above": 1, "on": {"command": {"target": "r", "value": 1, "pin": 3}}})",
       "on.command.pin", "unknown field"},
      {R"({"id": "x", "sensor": "t", "above": 1, "on": {"command": {"target": "r", "value": 1, "device": 3}}})",
       "on.command.device", "a string"},
      {R"({"id": "x", "sensor": "t", "above": 1, "enabled": "yes", "on": {"alert": "x"}})", "enabled", "true or false"},
  };
  for (const auto& c : cases) {
    RuleError err;
    EXPECT_FALSE(parse(c.doc, &err)) << c.doc;
    EXPECT_EQ(err.field, c.field) << c.doc << ": " << err.message;
    EXPECT_NE(err.message.find(c.says), std::string::npos) << c.doc << ": " << err.message;
  }
}

// The greenhouse example of config/outpost.example.toml (commented there, so that copying the
// file does not switch a relay): uncommented, it is a valid configuration with this rule.
TEST(RuleDoc, TheGreenhouseExampleOfTheExampleFileParses) {
  const char* src = std::getenv("OUTPOST_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  std::ifstream in(std::string(src) + "/config/outpost.example.toml");
  ASSERT_TRUE(in);
  std::string line, toml;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line == "# [[rules]]") inside = true;
    if (inside && line.rfind("# ", 0) != 0) break;
    if (inside) toml += line.substr(2) + "\n";
  }
  ASSERT_FALSE(toml.empty());
  config::Config cfg;
  ASSERT_TRUE(config::apply_toml(cfg, toml, "example")) << toml;
  ASSERT_EQ(cfg.rules.size(), 1u);
  RuleError err;
  auto r = parse_rule(Json::parse(cfg.rules[0].json), "pi", err);
  ASSERT_TRUE(r) << err.field << ": " << err.message;
  EXPECT_EQ(r->id, "greenhouse-vent");
  EXPECT_EQ(r->threshold->sensor, "cpu_temp_c");
  EXPECT_EQ(r->threshold->device, "pi");
  EXPECT_EQ(r->threshold->threshold, 30);
  EXPECT_EQ(r->threshold->clear, 27);
  EXPECT_EQ(r->hold, std::chrono::minutes(1));
  EXPECT_EQ(r->on.command->target, "relay");
  EXPECT_EQ(r->on.command->value, "on");
  EXPECT_EQ(r->off.command->value, "off");
  EXPECT_TRUE(r->on.alert);
}

// ---- The evaluator ----

core::Reading reading(const std::string& device, const std::string& sensor, double v) {
  return core::Reading{device, sensor, kT0, v, "", ""};
}

Rule rule(const std::string& text) {
  RuleError err;
  auto r = parse_rule(Json::parse(text), "pi", err);
  EXPECT_TRUE(r) << err.field << ": " << err.message;
  return r ? std::move(*r) : Rule{};
}

const char* kGreenhouse = R"({"id": "vent", "sensor": "temp", "above": 30, "clear_below": 27, "for": "1m",
  "on": {"command": {"target": "relay", "value": "on"}, "alert": "hot"},
  "off": {"command": {"target": "relay", "value": "off"}}})";

class EvaluatorTest : public ::testing::Test {
 protected:
  // Feeds one reading at kT0 + `at`; returns what fired.
  std::vector<Firing> feed(const std::string& sensor, double v, milliseconds at, const std::string& device = "pi") {
    std::vector<Firing> out;
    ev_.on_reading(reading(device, sensor, v), kT0 + at, out);
    return out;
  }
  std::vector<Firing> tick(milliseconds at) {
    std::vector<Firing> out;
    ev_.tick(kT0 + at, out);
    return out;
  }
  Evaluator ev_;
};

TEST_F(EvaluatorTest, ThresholdWithHysteresis) {
  ev_.put(rule(R"({"id": "r", "sensor": "temp", "above": 30, "clear_below": 27, "on": {"alert": "hot"},
                   "off": {"alert": "ok"}})"),
          kT0);
  EXPECT_TRUE(feed("temp", 25, seconds(0)).empty());
  EXPECT_TRUE(feed("temp", 30, seconds(1)).empty());  // strictly above
  auto on = feed("temp", 30.5, seconds(2));
  ASSERT_EQ(on.size(), 1u);
  EXPECT_TRUE(on[0].on);
  EXPECT_EQ(on[0].rule, "r");
  EXPECT_EQ(on[0].value, 30.5);
  EXPECT_EQ(on[0].device, "pi");
  EXPECT_EQ(on[0].sensor, "temp");
  EXPECT_EQ(on[0].at, kT0 + seconds(2));
  EXPECT_EQ(*on[0].actions.alert, "hot");
  EXPECT_TRUE(feed("temp", 35, seconds(3)).empty());  // already on
  EXPECT_TRUE(feed("temp", 28, seconds(4)).empty());  // in the band: stays on
  EXPECT_TRUE(feed("temp", 27, seconds(5)).empty());  // strictly below
  auto off = feed("temp", 26.9, seconds(6));
  ASSERT_EQ(off.size(), 1u);
  EXPECT_FALSE(off[0].on);
  EXPECT_EQ(*off[0].actions.alert, "ok");
  EXPECT_TRUE(feed("temp", 29, seconds(7)).empty());  // in the band: stays off
  auto st = ev_.state("r");
  ASSERT_TRUE(st);
  EXPECT_FALSE(st->active);
  EXPECT_EQ(st->firings, 2u);
  EXPECT_EQ(*st->last_fired, kT0 + seconds(6));
  EXPECT_EQ(st->since, kT0 + seconds(6));
  EXPECT_FALSE(*st->last_transition);
  EXPECT_EQ(st->last_value, 29.0);
}

TEST_F(EvaluatorTest, BelowMirrorsAbove) {
  ev_.put(rule(R"({"id": "r", "sensor": "t", "below": 5, "clear_above": 7, "on": {"alert": "cold"}})"), kT0);
  EXPECT_TRUE(feed("t", 6, seconds(0)).empty());
  EXPECT_EQ(feed("t", 4, seconds(1)).size(), 1u);
  EXPECT_TRUE(feed("t", 6.5, seconds(2)).empty());
  auto off = feed("t", 7.5, seconds(3));
  ASSERT_EQ(off.size(), 1u);
  EXPECT_FALSE(off[0].on);
  EXPECT_TRUE(off[0].actions.empty());  // no off actions: still a firing (an event)
}

TEST_F(EvaluatorTest, MinimumDurationFiresOnTheReadingThatCompletesIt) {
  ev_.put(rule(kGreenhouse), kT0);
  EXPECT_TRUE(feed("temp", 31, seconds(0)).empty());
  EXPECT_EQ(ev_.state("vent")->pending_since, kT0);
  EXPECT_EQ(ev_.next_deadline(), kT0 + seconds(60));
  EXPECT_TRUE(feed("temp", 32, seconds(30)).empty());
  EXPECT_TRUE(feed("temp", 31, milliseconds(59'999)).empty());
  auto on = feed("temp", 31, seconds(60));
  ASSERT_EQ(on.size(), 1u);
  EXPECT_TRUE(on[0].on);
  EXPECT_EQ(on[0].actions.command->value, "on");
  EXPECT_FALSE(ev_.next_deadline());
}

TEST_F(EvaluatorTest, MinimumDurationRestartsWhenTheConditionBreaks) {
  ev_.put(rule(kGreenhouse), kT0);
  feed("temp", 31, seconds(0));
  feed("temp", 29.5, seconds(50));  // not above 30: the minute starts again
  EXPECT_FALSE(ev_.state("vent")->pending_since);
  EXPECT_FALSE(ev_.next_deadline());
  EXPECT_TRUE(tick(seconds(61)).empty());
  feed("temp", 31, seconds(70));
  EXPECT_TRUE(feed("temp", 31, seconds(120)).empty());
  EXPECT_EQ(feed("temp", 31, seconds(130)).size(), 1u);
}

TEST_F(EvaluatorTest, MinimumDurationFiresOnTickWithoutAnotherReading) {
  ev_.put(rule(kGreenhouse), kT0);
  feed("temp", 31, seconds(10));
  EXPECT_TRUE(tick(seconds(69)).empty());
  EXPECT_EQ(ev_.next_deadline(), kT0 + seconds(70));
  auto on = tick(seconds(70));
  ASSERT_EQ(on.size(), 1u);
  EXPECT_TRUE(on[0].on);
  EXPECT_EQ(on[0].at, kT0 + seconds(70));
  EXPECT_EQ(on[0].value, 31.0);  // the latest value
  EXPECT_TRUE(tick(seconds(200)).empty());  // once
  EXPECT_TRUE(ev_.state("vent")->active);
  // Clearing needs a reading below 27.
  EXPECT_EQ(feed("temp", 26, seconds(201)).size(), 1u);
}

TEST_F(EvaluatorTest, UnknownValuesChangeNothing) {
  ev_.put(rule(kGreenhouse), kT0);
  feed("temp", 31, seconds(0));
  EXPECT_TRUE(feed("temp", kNaN, seconds(10)).empty());  // a failed read: still pending
  EXPECT_EQ(ev_.state("vent")->pending_since, kT0);
  core::Reading text = reading("pi", "temp", 0);
  text.text = "[1,2,3]";
  std::vector<Firing> out;
  ev_.on_reading(text, kT0 + seconds(20), out);
  EXPECT_TRUE(out.empty());
  auto on = tick(seconds(60));
  ASSERT_EQ(on.size(), 1u);
  EXPECT_TRUE(feed("temp", kNaN, seconds(70)).empty());  // active stays active
  EXPECT_TRUE(ev_.state("vent")->active);
}

TEST_F(EvaluatorTest, ExpressionOverSeveralSensorsAndDevices) {
  ev_.put(rule(R"({"id": "dry", "expr": "greenhouse/temp > 30 && greenhouse/humidity < 40",
                   "on": {"alert": "hot and dry"}, "off": {"alert": "fine"}})"),
          kT0);
  EXPECT_TRUE(ev_.watches("greenhouse", "temp"));
  EXPECT_TRUE(ev_.watches("greenhouse", "humidity"));
  EXPECT_FALSE(ev_.watches("pi", "temp"));
  EXPECT_TRUE(feed("temp", 35, seconds(0), "greenhouse").empty());  // humidity unknown
  EXPECT_TRUE(feed("humidity", 50, seconds(1), "greenhouse").empty());
  auto on = feed("humidity", 35, seconds(2), "greenhouse");
  ASSERT_EQ(on.size(), 1u);
  EXPECT_TRUE(on[0].on);
  EXPECT_EQ(on[0].value, (Json{{"greenhouse/temp", 35.0}, {"greenhouse/humidity", 35.0}}));
  EXPECT_EQ(on[0].device, "greenhouse");
  EXPECT_EQ(on[0].sensor, "temp");
  EXPECT_TRUE(feed("temp", 33, seconds(3), "greenhouse").empty());
  auto off = feed("temp", 29, seconds(4), "greenhouse");  // no clear: off when false
  ASSERT_EQ(off.size(), 1u);
  EXPECT_FALSE(off[0].on);
  // Another device's "temp" is another sensor.
  EXPECT_TRUE(feed("temp", 99, seconds(5), "attic").empty());
}

TEST_F(EvaluatorTest, ExpressionWithClearIsHysteresis) {
  ev_.put(rule(R"({"id": "e", "expr": "t > 30", "clear": "t < 27 || door > 0", "on": {"alert": "x"}})"), kT0);
  EXPECT_EQ(feed("t", 31, seconds(0)).size(), 1u);
  EXPECT_TRUE(feed("t", 29, seconds(1)).empty());  // not true, but clear is not true either
  EXPECT_TRUE(ev_.state("e")->active);
  auto off = feed("door", 1, seconds(2));  // a sensor only the clear expression reads
  ASSERT_EQ(off.size(), 1u);
  EXPECT_FALSE(off[0].on);
  EXPECT_EQ(off[0].value, (Json{{"pi/t", 29.0}, {"pi/door", 1.0}}));
}

TEST_F(EvaluatorTest, ManyRulesOnOneSensorAndOneRuleOnMany) {
  ev_.put(rule(R"({"id": "warm", "sensor": "t", "above": 20, "on": {"alert": "a"}})"), kT0);
  ev_.put(rule(R"({"id": "hot", "sensor": "t", "above": 30, "on": {"alert": "b"}})"), kT0);
  ev_.put(rule(R"({"id": "sum", "expr": "t + u > 50", "on": {"alert": "c"}})"), kT0);
  std::vector<Firing> out;
  EXPECT_EQ(ev_.on_reading(reading("pi", "t", 35), kT0, out), 3u);
  ASSERT_EQ(out.size(), 2u);  // sum: u unknown
  EXPECT_EQ(out[0].rule, "warm");
  EXPECT_EQ(out[1].rule, "hot");
  out.clear();
  EXPECT_EQ(ev_.on_reading(reading("pi", "u", 20), kT0, out), 1u);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].rule, "sum");
  EXPECT_EQ(ev_.active_count(), 3u);
  out.clear();
  EXPECT_EQ(ev_.on_reading(reading("pi", "nobody", 1), kT0, out), 0u);
  EXPECT_EQ(ev_.ids(), (std::vector<std::string>{"hot", "sum", "warm"}));
}

TEST_F(EvaluatorTest, ReplacingKeepsActiveDisablingAndRemovingStop) {
  ev_.put(rule(kGreenhouse), kT0);
  feed("temp", 31, seconds(0));
  tick(seconds(60));
  ASSERT_TRUE(ev_.state("vent")->active);
  // A new threshold: still on, and its off runs when the new clear holds.
  ev_.put(rule(R"({"id": "vent", "sensor": "temp", "above": 35, "clear_below": 32,
                   "off": {"command": {"target": "relay", "value": "off"}}})"),
          kT0 + seconds(61));
  EXPECT_TRUE(ev_.state("vent")->active);
  EXPECT_EQ(ev_.state("vent")->last_value, 31.0);  // the latest value carried over
  auto off = feed("temp", 31.5, seconds(62));
  ASSERT_EQ(off.size(), 1u);
  EXPECT_FALSE(off[0].on);
  // On again at once (no for); then a pending rule starts over when replaced.
  feed("temp", 40, seconds(63));
  ASSERT_TRUE(ev_.state("vent")->active);
  ev_.put(rule(R"({"id": "other", "sensor": "temp", "above": 45, "for": "1m", "on": {"alert": "x"}})"),
          kT0 + seconds(63));
  feed("temp", 46, seconds(63));
  EXPECT_EQ(ev_.state("other")->pending_since, kT0 + seconds(63));
  ev_.put(rule(R"({"id": "other", "sensor": "temp", "above": 45, "for": "2m", "on": {"alert": "x"}})"),
          kT0 + seconds(64));
  EXPECT_FALSE(ev_.state("other")->pending_since);
  EXPECT_TRUE(feed("temp", 46, seconds(65)).empty());
  EXPECT_EQ(ev_.next_deadline(), kT0 + seconds(65 + 120));
  EXPECT_TRUE(ev_.remove("other"));
  // Disabled: not evaluated, and off without running its off.
  ev_.put(rule(R"({"id": "vent", "enabled": false, "sensor": "temp", "above": 35, "on": {"alert": "x"}})"),
          kT0 + seconds(65));
  EXPECT_FALSE(ev_.state("vent")->active);
  EXPECT_TRUE(feed("temp", 50, seconds(66)).empty());
  EXPECT_TRUE(feed("temp", 10, seconds(67)).empty());
  EXPECT_TRUE(ev_.remove("vent"));
  EXPECT_FALSE(ev_.remove("vent"));
  EXPECT_FALSE(ev_.state("vent"));
  EXPECT_FALSE(ev_.watches("pi", "temp"));
  EXPECT_TRUE(feed("temp", 50, seconds(68)).empty());
}

TEST_F(EvaluatorTest, SeedGivesAValueOnlyWhereThereIsNone) {
  ev_.put(rule(R"({"id": "sum", "expr": "t + u > 50", "on": {"alert": "c"}})"), kT0);
  ev_.seed("pi", "u", 30);
  ev_.seed("pi", "nobody", 1);  // not read by any rule: ignored
  feed("u", 10, seconds(0));
  ev_.seed("pi", "u", 99);  // has a value: kept
  EXPECT_TRUE(feed("t", 35, seconds(1)).empty());  // 35 + 10
  EXPECT_EQ(feed("t", 45, seconds(2)).size(), 1u);
}

TEST_F(EvaluatorTest, NextDeadlineIsTheEarliestPendingEnd) {
  ev_.put(rule(R"({"id": "a", "sensor": "t", "above": 1, "for": "30s", "on": {"alert": "a"}})"), kT0);
  ev_.put(rule(R"({"id": "b", "sensor": "t", "above": 1, "for": "10s", "on": {"alert": "b"}})"), kT0);
  EXPECT_FALSE(ev_.next_deadline());
  feed("t", 5, seconds(0));
  EXPECT_EQ(ev_.next_deadline(), kT0 + seconds(10));
  auto first = tick(seconds(10));
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].rule, "b");
  EXPECT_EQ(ev_.next_deadline(), kT0 + seconds(30));
  auto second = tick(seconds(31));
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].rule, "a");
}

}  // namespace
}  // namespace outpost::edge
