// The rules engine with a real Hub and store: readings in through the hub's observer, commands
// out through the hub's senders (a simulated board, a fake UDP transport), events recorded, rules
// validated against the registry and persisted.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "edge/edge.hpp"
#include "edge/rules.hpp"
#include "hw/hw.hpp"

namespace outpost::edge {
namespace {

namespace fs = std::filesystem;
using core::Json;
using std::chrono::milliseconds;
using std::chrono::seconds;

class FakeClock : public core::Clock {
 public:
  core::TimePoint now() const override { return core::from_micros(us_.load()); }
  void advance(std::chrono::microseconds d) { us_ += d.count(); }

 private:
  std::atomic<int64_t> us_{core::to_micros(core::now())};
};

const char* kGreenhouse = R"({"id": "greenhouse-vent", "sensor": "cpu_temp_c", "above": 30, "clear_below": 27,
  "for": "1m", "on": {"command": {"target": "relay", "value": "on"}, "alert": "greenhouse hot: ventilation on"},
  "off": {"command": {"target": "relay", "value": "off"}}})";

class RuleEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "outpost-rules-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    store_cfg_.data_dir = root_.string();
    led_ = hw::make_sim_output();
    relay_ = hw::make_sim_output();
    open_store();
  }
  void TearDown() override {
    engine_.reset();
    hub_.reset();
    if (store_) store_->close();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  void open_store() {
    auto s = store::Store::open(store_cfg_, nullptr);
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store_ = std::move(*s);
    hub_ = std::make_unique<hub::Hub>(hub_cfg_, *store_, bus_, metrics_, record());
    ASSERT_TRUE(hub_->load());
    // This board: led and relay, answered at once like app/'s command_board.
    hub_->set_sender(core::Transport::kLocal, [this](const core::Device&, const hub::Command& c, hub::Delivery& out) {
      if (c.target != "led" && c.target != "relay") return core::Status::invalid("no such actuator");
      if (!c.value.is_string() || (c.value != "on" && c.value != "off")) return core::Status::invalid("on or off");
      auto set = (c.target == "led" ? led_ : relay_)->set(c.value == "on");
      if (!set) return set;
      out.done = true;
      out.detail = c.target + " " + c.value.get<std::string>();
      return core::Status::ok();
    });
    hub_->set_sender(core::Transport::kUdp, [this](const core::Device& d, const hub::Command& c, hub::Delivery&) {
      std::lock_guard lk(mu_);
      sent_.push_back(d.address + " " + c.target + " " + c.parameter + "=" + c.value.dump() + " by " + c.who);
      return udp_status_;
    });
    core::DeviceReport board{.id = "pi", .transport = core::Transport::kLocal, .received = core::now()};
    core::Actuator led, relay;
    led.actions = Json::array({{{"parameter", "state"}}});
    led.attributes = Json{{"name", "led"}};
    relay.actions = Json::array({{{"parameter", "state"}}});
    relay.attributes = Json{{"name", "relay"}, {"type", "relay"}};
    board.actuators = std::vector<core::Actuator>{led, relay};
    hub_->observe(std::move(board));
  }
  void make_engine() {
    engine_.reset();
    engine_metrics_ = std::make_unique<core::Registry>();  // metrics register once per registry
    engine_ = std::make_unique<RuleEngine>(RuleEngine::Deps{.hub = *hub_,
                                                            .store = *store_,
                                                            .metrics = *engine_metrics_,
                                                            .record_event = record(),
                                                            .board = "pi",
                                                            .clock = clock_});
  }
  // A new engine (and hub) over the same store, as after a restart.
  void restart() {
    engine_.reset();
    hub_->save();
    hub_.reset();
    store_->close();
    open_store();
  }
  std::function<void(core::Event)> record() {
    return [this](core::Event e) {
      std::lock_guard lk(mu_);
      events_.push_back(std::move(e));
    };
  }
  core::Status load(std::vector<std::string> docs) {
    make_engine();
    std::vector<config::RuleConfig> cfg;
    for (auto& d : docs) cfg.push_back({Json::parse(d).dump(), "test.toml:1"});
    auto s = engine_->load(cfg);
    if (s) hub_->add_readings_observer([e = engine_.get()](const std::vector<core::Reading>& rs) { e->on_readings(rs); });
    return s;
  }
  // One sample of this board's CPU temperature, as the collector's on_stored hands it to the hub.
  void board_temp(double celsius) {
    core::DeviceReport r{.id = "pi", .transport = core::Transport::kLocal, .received = core::now()};
    core::Sensor s{.id = kCpuTemp};
    s.value = core::SensorValue{"Cel", "double", core::now(), Json(celsius)};
    r.sensors.push_back(std::move(s));
    hub_->observe(std::move(r));
  }
  // A FIWARE device over UDP with temp, humidity, a 3DPoint and a window actuator.
  void greenhouse(double temp, double humidity = 50, bool with_actuators = true) {
    core::DeviceReport r{.id = "gh", .transport = core::Transport::kUdp, .address = "127.0.0.1:5000",
                         .received = core::now()};
    for (auto [id, v] : {std::pair{"temp", temp}, std::pair{"humidity", humidity}}) {
      core::Sensor s{.id = id};
      s.value = core::SensorValue{"", "double", core::now(), Json(v)};
      r.sensors.push_back(std::move(s));
    }
    core::Sensor mag{.id = "magneticfield"};
    mag.value = core::SensorValue{"uT", "3DPoint", core::now(), Json::array({1.0, 2.0, 3.0})};
    r.sensors.push_back(std::move(mag));
    if (with_actuators) {
      core::Actuator window;
      window.actions = Json::array({{{"parameter", "position"}}});
      window.attributes = Json{{"name", "window"}};
      r.actuators = std::vector<core::Actuator>{window};
    }
    std::vector<core::DeviceReport> batch;
    batch.push_back(std::move(r));
    hub_->ingest(std::move(batch));
  }
  std::vector<Json> events(const std::string& kind) {
    std::lock_guard lk(mu_);
    std::vector<Json> out;
    for (const auto& e : events_) {
      if (e.kind != kind) continue;
      Json j = Json::parse(e.payload);
      j["_device"] = e.device;
      out.push_back(std::move(j));
    }
    return out;
  }
  bool relay() { return *relay_->get(); }
  Json view(const std::string& id) {
    auto v = engine_->get(id);
    EXPECT_TRUE(v) << id;
    return v ? Json::parse(v->json.dump()) : Json();
  }

  fs::path root_;
  config::StoreConfig store_cfg_;
  config::HubConfig hub_cfg_;
  core::Registry metrics_;
  std::unique_ptr<core::Registry> engine_metrics_ = std::make_unique<core::Registry>();
  core::Bus bus_;
  FakeClock clock_;
  std::unique_ptr<hw::DigitalOutput> led_, relay_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<hub::Hub> hub_;
  std::unique_ptr<RuleEngine> engine_;
  std::mutex mu_;
  std::vector<core::Event> events_;
  std::vector<std::string> sent_;
  core::Status udp_status_ = core::Status::ok();
};

TEST_F(RuleEngineTest, TheGreenhouseOnThisBoard) {
  ASSERT_TRUE(load({kGreenhouse}));
  board_temp(25);
  board_temp(31);  // above 30: a minute starts
  EXPECT_FALSE(relay());
  EXPECT_EQ(view("greenhouse-vent")["state"]["pending_since"], core::format_iso8601(clock_.now()));
  clock_.advance(seconds(30));
  board_temp(32);
  engine_->tick();
  EXPECT_FALSE(relay());
  clock_.advance(seconds(30));
  engine_->tick();  // the minute is over with no new reading: on time
  EXPECT_TRUE(relay());
  board_temp(29);  // in the band
  EXPECT_TRUE(relay());
  board_temp(26.5);
  EXPECT_FALSE(relay());

  auto rule_events = events("rule");
  ASSERT_EQ(rule_events.size(), 2u);
  const Json& on = rule_events[0];
  EXPECT_EQ(on["rule"], "greenhouse-vent");
  EXPECT_EQ(on["transition"], "on");
  EXPECT_EQ(on["value"], 32.0);
  EXPECT_EQ(on["device"], "pi");
  EXPECT_EQ(on["sensor"], "cpu_temp_c");
  EXPECT_EQ(on["outcome"], "ok");
  ASSERT_EQ(on["actions"].size(), 2u);
  EXPECT_EQ(on["actions"][0]["type"], "command");
  EXPECT_EQ(on["actions"][0]["target"], "relay");
  EXPECT_EQ(on["actions"][0]["outcome"], "acknowledged");
  EXPECT_EQ(on["actions"][0]["detail"], "relay on");
  EXPECT_TRUE(on["actions"][0]["command"].get<std::string>().rfind("cmd_", 0) == 0);
  EXPECT_EQ(on["actions"][1], (Json{{"type", "alert"}, {"message", "greenhouse hot: ventilation on"}, {"outcome", "recorded"}}));
  EXPECT_EQ(rule_events[1]["transition"], "off");
  EXPECT_EQ(rule_events[1]["value"], 26.5);
  EXPECT_EQ(rule_events[1]["actions"][0]["detail"], "relay off");
  auto alerts = events("alert");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]["rule"], "greenhouse-vent");
  EXPECT_EQ(alerts[0]["message"], "greenhouse hot: ventilation on");
  EXPECT_EQ(alerts[0]["_device"], "pi");
  // The hub's own command events say who: the rule.
  auto commands = events("command");
  ASSERT_EQ(commands.size(), 2u);
  EXPECT_EQ(commands[0]["who"], "rule:greenhouse-vent");
  EXPECT_EQ(commands[0]["state"], "acknowledged");

  Json v = view("greenhouse-vent");
  EXPECT_EQ(v["source"], "config");
  EXPECT_EQ(v["state"]["active"], false);
  EXPECT_EQ(v["state"]["firings"], 2);
  EXPECT_EQ(v["state"]["last_transition"], "off");
  EXPECT_EQ(v["state"]["last_value"], 26.5);
  EXPECT_EQ(v["state"]["last_outcome"], "ok");
  EXPECT_EQ(v["state"]["last_fired"], core::format_iso8601(clock_.now()));
  std::string m = engine_metrics_->render();
  EXPECT_NE(m.find("outpost_rule_firings_total{transition=\"on\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("outpost_rule_firings_total{transition=\"off\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("outpost_rule_evaluations_total 5"), std::string::npos) << m;
  EXPECT_NE(m.find("outpost_rule_actions_failed_total 0"), std::string::npos) << m;
  EXPECT_NE(m.find("outpost_rules 1"), std::string::npos) << m;
  EXPECT_NE(m.find("outpost_rules_active 0"), std::string::npos) << m;
  EXPECT_NE(m.find("outpost_rule_latency_seconds_count 1"), std::string::npos) << m;  // the off (the on came from a tick)
}

TEST_F(RuleEngineTest, TheTimerThreadFiresAMinimumDurationWithoutAnotherReading) {
  engine_metrics_ = std::make_unique<core::Registry>();
  engine_ = std::make_unique<RuleEngine>(RuleEngine::Deps{
      .hub = *hub_, .store = *store_, .metrics = *engine_metrics_, .record_event = record(), .board = "pi"});
  ASSERT_TRUE(engine_->load({{R"({"id": "soon", "sensor": "cpu_temp_c", "above": 30, "for": "300ms",
                                  "on": {"command": {"target": "relay", "value": "on"}}})",
                              "t"}}));
  hub_->add_readings_observer([e = engine_.get()](const std::vector<core::Reading>& rs) { e->on_readings(rs); });
  engine_->start();
  board_temp(35);  // the only reading: the timer has to fire it
  for (int i = 0; i < 1000 && !relay(); ++i) std::this_thread::sleep_for(milliseconds(10));
  EXPECT_TRUE(relay());
  auto fired = view("soon")["state"];
  EXPECT_EQ(fired["active"], true);
  EXPECT_EQ(fired["pending_since"], nullptr);
  engine_->stop();
}

TEST_F(RuleEngineTest, AlertsGoToTheCallbackOnTheEnginesThread) {
  ASSERT_TRUE(load({R"({"id": "hot", "sensor": "cpu_temp_c", "above": 30, "on": {"alert": "hot!"},
                        "off": {"alert": "cool again"}})"}));
  std::mutex mu;
  std::vector<std::pair<std::string, std::thread::id>> got;
  engine_->on_alert([&](const core::Event& e) {
    std::lock_guard lk(mu);
    got.emplace_back(Json::parse(e.payload)["message"], std::this_thread::get_id());
  });
  engine_->start();
  board_temp(31);
  board_temp(20);
  auto count = [&] {
    std::lock_guard lk(mu);
    return got.size();
  };
  for (int i = 0; i < 1000 && count() < 2; ++i) std::this_thread::sleep_for(milliseconds(10));
  engine_->stop();
  std::lock_guard lk(mu);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].first, "hot!");
  EXPECT_EQ(got[1].first, "cool again");
  EXPECT_NE(got[0].second, std::this_thread::get_id());  // not the producer's (this) thread
  EXPECT_EQ(events("alert").size(), 2u);  // and recorded as events
}

TEST_F(RuleEngineTest, ARemoteDeviceIsCommandedOverItsTransport) {
  greenhouse(20);
  ASSERT_TRUE(load({}));
  RuleError err;
  auto v = engine_->create(Json::parse(R"({"id": "open-window", "expr": "gh/temp > 30 && gh/humidity < 40",
      "on": {"command": {"device": "gh", "target": "window", "parameter": "position", "value": 100}},
      "off": {"command": {"device": "gh", "target": "window", "parameter": "position", "value": 0}}})"),
                           err);
  ASSERT_TRUE(v) << err.field << ": " << err.message;
  greenhouse(31, 45);
  EXPECT_TRUE(sent_.empty());
  greenhouse(31, 35);
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0], "127.0.0.1:5000 window position=100 by rule:open-window");
  greenhouse(25, 35);
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sent_[1], "127.0.0.1:5000 window position=0 by rule:open-window");
  auto fired = events("rule");
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[0]["actions"][0]["outcome"], "sent");  // the device answers later (or times out)
  EXPECT_EQ(fired[0]["value"], (Json{{"gh/temp", 31.0}, {"gh/humidity", 35.0}}));
  EXPECT_EQ(fired[0]["_device"], "gh");
}

TEST_F(RuleEngineTest, AFailedCommandIsAFailedFiringAndCounted) {
  greenhouse(20);
  ASSERT_TRUE(load({}));
  udp_status_ = core::Status::io("network is unreachable");
  RuleError err;
  ASSERT_TRUE(engine_->create(Json::parse(R"({"id": "w", "device": "gh", "sensor": "temp", "above": 30,
      "on": {"command": {"device": "gh", "target": "window", "parameter": "position", "value": 1}, "alert": "hot"}})"),
                              err));
  greenhouse(35);
  auto fired = events("rule");
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0]["outcome"], "failed");
  EXPECT_EQ(fired[0]["actions"][0]["outcome"], "failed");
  EXPECT_EQ(fired[0]["actions"][0]["detail"], "network is unreachable");
  EXPECT_EQ(fired[0]["actions"][1]["outcome"], "recorded");  // the alert still goes out
  EXPECT_EQ(view("w")["state"]["last_outcome"], "failed");
  EXPECT_EQ(view("w")["state"]["active"], true);  // the condition holds, whatever the command did
  EXPECT_NE(engine_metrics_->render().find("outpost_rule_actions_failed_total 1"), std::string::npos);
}

struct Refused {
  std::string doc;
  std::string field;
  std::string says;
  std::optional<size_t> position = std::nullopt;
};

TEST_F(RuleEngineTest, TheApiChecksDevicesSensorsAndActuatorsAgainstTheRegistry) {
  greenhouse(20);
  ASSERT_TRUE(load({}));
  std::vector<Refused> cases = {
      {R"({"id": "x", "device": "nobody", "sensor": "temp", "above": 1, "on": {"alert": "a"}})", "device",
       "no device 'nobody'"},
      {R"({"id": "x", "device": "gh", "sensor": "tmp", "above": 1, "on": {"alert": "a"}})", "sensor",
       "has no sensor 'tmp' (it has: temp, humidity, magneticfield)"},
      {R"({"id": "x", "device": "gh", "sensor": "magneticfield", "above": 1, "on": {"alert": "a"}})", "sensor",
       "3DPoint"},
      {R"({"id": "x", "sensor": "cpu_temp", "above": 1, "on": {"alert": "a"}})", "sensor", "no sensor 'cpu_temp'"},
      {R"({"id": "x", "expr": "gh/temp > 1 && gh/hum < 2", "on": {"alert": "a"}})", "expr",
       "no sensor 'hum' at position 15", 15},
      {R"({"id": "x", "expr": "gh/temp > 1", "clear": "ghost/temp < 1", "on": {"alert": "a"}})", "clear",
       "no device 'ghost' at position 0", 0},
      {R"({"id": "x", "sensor": "cpu_temp_c", "above": 1, "on": {"command": {"target": "relya", "value": "on"}}})",
       "on.command.target", "has no actuator 'relya' (it has: led, relay)"},
      {R"({"id": "x", "sensor": "cpu_temp_c", "above": 1,
           "on": {"command": {"target": "relay", "parameter": "speed", "value": "on"}}})",
       "on.command.parameter", "no parameter 'speed'"},
      {R"({"id": "x", "sensor": "cpu_temp_c", "above": 1, "off": {"command": {"device": "nope", "target": "relay",
           "value": "on"}}})",
       "off.command.device", "no device 'nope'"},
      {R"({"id": "x", "sensor": "cpu_temp_c", "above": 1,
           "on": {"command": {"device": "gh", "target": "door", "parameter": "open", "value": 1}}})",
       "on.command.target", "no actuator 'door' (it has: window, position)"},
      {R"({"id": "x", "sensor": "cpu_temp_c", "above": 1,
           "on": {"command": {"device": "gh", "target": "window", "value": 1}}})",
       "on.command.parameter", "no parameter 'state' (it has: position)"},
      // The document's own checks come first.
      {R"({"id": "x", "sensor": "cpu_temp_c", "above": 30, "clear_below": 31, "on": {"alert": "a"}})", "clear_below",
       "inverted"},
  };
  for (const auto& c : cases) {
    RuleError err;
    auto v = engine_->create(Json::parse(c.doc), err);
    ASSERT_FALSE(v) << c.doc;
    EXPECT_EQ(v.status().code(), core::Code::kInvalid) << c.doc;
    EXPECT_EQ(err.field, c.field) << c.doc << ": " << err.message;
    EXPECT_NE(err.message.find(c.says), std::string::npos) << c.doc << ": " << err.message;
    EXPECT_EQ(err.position, c.position) << c.doc;
  }
  EXPECT_TRUE(engine_->list().empty());
  EXPECT_TRUE(store_->load_rules()->empty());
  // A remote actuator by its action's parameter (FIWARE actuators often have no name).
  RuleError err;
  EXPECT_TRUE(engine_->create(Json::parse(R"({"id": "fiware", "device": "gh", "sensor": "temp", "above": 1,
      "on": {"command": {"device": "gh", "target": "position", "value": 1}}})"),
                              err))
      << err.message;
  // ...but not this board's: its actuators go by name.
  EXPECT_FALSE(engine_->create(Json::parse(R"({"id": "board", "sensor": "cpu_temp_c", "above": 1,
      "on": {"command": {"target": "state", "value": "on"}}})"),
                               err));
  EXPECT_EQ(err.field, "on.command.target");
  // This board's sensors are known before their first sample.
  EXPECT_TRUE(engine_->create(Json::parse(R"({"id": "b", "sensor": "relay_state", "above": 0.5, "on": {"alert": "a"}})"),
                              err))
      << err.message;
}

TEST_F(RuleEngineTest, ADeviceWithoutDeclaredActuatorsTakesAnyTarget) {
  greenhouse(20, 50, /*with_actuators=*/false);
  ASSERT_TRUE(load({}));
  RuleError err;
  EXPECT_TRUE(engine_->create(Json::parse(R"({"id": "kit", "device": "gh", "sensor": "temp", "above": 1,
      "on": {"command": {"device": "gh", "target": "pump", "parameter": "on", "value": true}}})"),
                              err))
      << err.message;
}

TEST_F(RuleEngineTest, CreateReplaceDeleteAndConflicts) {
  ASSERT_TRUE(load({kGreenhouse}));
  RuleError err;
  // Without an id, one is made up.
  auto made = engine_->create(Json::parse(R"({"sensor": "cpu_temp_c", "above": 50, "on": {"alert": "melting"}})"), err);
  ASSERT_TRUE(made) << err.message;
  std::string id = made->json["id"];
  EXPECT_EQ(id.rfind("rule_", 0), 0u);
  EXPECT_EQ(made->json["source"], "api");
  EXPECT_EQ(made->json["state"]["active"], false);
  // The same id again: conflict.
  auto again = engine_->create(Json::parse(R"({"id": ")" + id + R"(", "sensor": "cpu_temp_c", "above": 50,
                                                "on": {"alert": "x"}})"),
                               err);
  EXPECT_EQ(again.status().code(), core::Code::kConflict);
  EXPECT_EQ(err.field, "id");
  auto clash = engine_->create(Json::parse(R"({"id": "greenhouse-vent", "sensor": "cpu_temp_c", "above": 50,
                                                "on": {"alert": "x"}})"),
                               err);
  EXPECT_EQ(clash.status().code(), core::Code::kConflict);
  // Config rules are read-only here.
  auto ro = engine_->replace("greenhouse-vent", Json::parse(R"({"sensor": "cpu_temp_c", "above": 50, "on": {"alert": "x"}})"), err);
  EXPECT_EQ(ro.status().code(), core::Code::kConflict);
  EXPECT_NE(err.message.find("configuration file"), std::string::npos);
  EXPECT_EQ(engine_->remove("greenhouse-vent").code(), core::Code::kConflict);
  // Replace: the body's id, if given, must be the path's.
  auto wrong = engine_->replace(id, Json::parse(R"({"id": "other", "sensor": "cpu_temp_c", "above": 60, "on": {"alert": "x"}})"), err);
  EXPECT_EQ(wrong.status().code(), core::Code::kInvalid);
  EXPECT_EQ(err.field, "id");
  auto replaced = engine_->replace(id, Json::parse(R"({"sensor": "cpu_temp_c", "above": 60, "on": {"alert": "x"}})"), err);
  ASSERT_TRUE(replaced) << err.message;
  EXPECT_EQ(replaced->json["above"], 60.0);
  EXPECT_EQ(engine_->replace("nobody", Json::parse("{}"), err).status().code(), core::Code::kNotFound);
  auto list = engine_->list();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].json["id"], "greenhouse-vent");  // by id
  // Persisted with its source.
  auto stored = store_->load_rules();
  ASSERT_EQ(stored->size(), 2u);
  EXPECT_EQ((*stored)[0].source, "config");
  EXPECT_EQ((*stored)[1].source, "api");
  EXPECT_EQ(Json::parse((*stored)[1].doc)["above"], 60);
  ASSERT_TRUE(engine_->remove(id));
  EXPECT_EQ(engine_->remove(id).code(), core::Code::kNotFound);
  EXPECT_FALSE(engine_->get(id));
  EXPECT_EQ(store_->load_rules()->size(), 1u);
}

TEST_F(RuleEngineTest, ApiRulesSurviveARestartAndConfigRulesAreReReadEachStart) {
  greenhouse(20);
  ASSERT_TRUE(load({kGreenhouse, R"({"id": "gone-next-time", "sensor": "cpu_temp_c", "above": 99, "on": {"alert": "x"}})"}));
  RuleError err;
  ASSERT_TRUE(engine_->create(Json::parse(R"({"id": "api-rule", "device": "gh", "sensor": "temp", "above": 30,
      "on": {"alert": "hot"}})"),
                              err));
  ASSERT_TRUE(engine_->create(Json::parse(R"({"id": "shadowed", "sensor": "cpu_temp_c", "above": 30,
      "on": {"alert": "api version"}})"),
                              err));
  restart();
  // The next start's file: the greenhouse, and a rule with the id of an API rule (which it replaces).
  ASSERT_TRUE(load({kGreenhouse, R"({"id": "shadowed", "sensor": "cpu_temp_c", "above": 40, "on": {"alert": "file version"}})"}));
  std::vector<std::string> ids;
  for (const auto& v : engine_->list()) ids.push_back(v.json["id"].get<std::string>() + "=" + v.json["source"].get<std::string>());
  EXPECT_EQ(ids, (std::vector<std::string>{"api-rule=api", "greenhouse-vent=config", "shadowed=config"}));
  EXPECT_EQ(view("shadowed")["above"], 40.0);
  // And the API rule still works after the restart.
  greenhouse(35);
  auto alerts = events("alert");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]["rule"], "api-rule");
}

TEST_F(RuleEngineTest, ConfigRulesFailStartUpOnTheirOwnMistakesAndTheBoardsButWaitForOtherDevices) {
  auto s = load({R"({"id": "a", "sensor": "cpu_temp_c", "above": 30, "clear_below": 40, "on": {"alert": "x"}})"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("test.toml:1: rules[0].clear_below"), std::string::npos) << s.message();
  s = load({R"({"id": "a", "sensor": "cpu_temp_c", "above": 30, "on": {"alert": "x"}})",
            R"({"id": "a", "sensor": "cpu_temp_c", "above": 30, "on": {"alert": "x"}})"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("rules[1].id"), std::string::npos) << s.message();
  s = load({R"({"id": "a", "sensor": "cpu_temp_c", "above": 30, "on": {"command": {"target": "relai", "value": "on"}}})"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("rules[0].on.command.target"), std::string::npos) << s.message();
  s = load({R"({"id": "a", "sensor": "cpu_tmp_c", "above": 30, "on": {"alert": "x"}})"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("rules[0].sensor"), std::string::npos) << s.message();
  // A device that has not reported yet: loaded, and it works once the device reports.
  s = load({R"({"id": "later", "device": "gh", "sensor": "temp", "above": 30, "on": {"alert": "hot"}})"});
  ASSERT_TRUE(s) << s.message();
  greenhouse(35);
  EXPECT_EQ(events("alert").size(), 1u);
}

TEST_F(RuleEngineTest, ARuleSeesWhatTheHubAlreadyKnew) {
  greenhouse(20, 35);  // humidity 35 reported before the rule exists
  ASSERT_TRUE(load({}));
  RuleError err;
  ASSERT_TRUE(engine_->create(Json::parse(R"({"id": "e", "expr": "gh/temp > 30 && gh/humidity < 40",
                                              "on": {"alert": "hot and dry"}})"),
                              err));
  EXPECT_EQ(view("e")["state"]["last_value"], (Json{{"gh/temp", 20.0}, {"gh/humidity", 35.0}}));
  // Only temp reports now: the humidity the hub knew completes the expression.
  core::DeviceReport r{.id = "gh", .transport = core::Transport::kUdp, .address = "127.0.0.1:5000",
                       .received = core::now()};
  core::Sensor t{.id = "temp"};
  t.value = core::SensorValue{"", "double", core::now(), Json(33.0)};
  r.sensors.push_back(std::move(t));
  std::vector<core::DeviceReport> batch;
  batch.push_back(std::move(r));
  hub_->ingest(std::move(batch));
  EXPECT_EQ(events("alert").size(), 1u);
}

// Readings from several producer threads at once: firings are carried out in the order they
// happened, so at the end the relay is what the rule's state says.
TEST_F(RuleEngineTest, ConcurrentProducersNeverLeaveTheRelayOutOfStep) {
  ASSERT_TRUE(load({R"({"id": "flip", "sensor": "cpu_temp_c", "above": 30, "clear_below": 27,
                        "on": {"command": {"target": "relay", "value": "on"}},
                        "off": {"command": {"target": "relay", "value": "off"}}})"}));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < 300; ++i) board_temp((i + t) % 2 ? 35 : 20);
    });
  }
  for (auto& t : threads) t.join();
  bool active = view("flip")["state"]["active"];
  EXPECT_EQ(relay(), active);
  board_temp(35);
  EXPECT_TRUE(relay());
  board_temp(20);
  EXPECT_FALSE(relay());
  auto fired = events("rule");
  ASSERT_FALSE(fired.empty());
  for (size_t i = 1; i < fired.size(); ++i) EXPECT_NE(fired[i]["transition"], fired[i - 1]["transition"]) << i;
}

}  // namespace
}  // namespace outpost::edge
