#include "hub/hub.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

namespace outpost::hub {
namespace {

namespace fs = std::filesystem;
using core::Json;

class HubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "outpost-hub-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    store_cfg_.data_dir = root_.string();
    open();
  }
  void TearDown() override {
    hub_.reset();
    if (store_) store_->close();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  void open() {
    auto s = store::Store::open(store_cfg_, nullptr);
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store_ = std::move(*s);
    hub_ = std::make_unique<Hub>(cfg_, *store_, bus_, metrics_, [this](core::Event e) {
      std::lock_guard lk(mu_);
      events_.push_back(e);
    });
    ASSERT_TRUE(hub_->load());
  }
  void reopen() {
    hub_.reset();
    store_->close();
    {
      std::lock_guard lk(mu_);
      events_.clear();
    }
    open();
  }
  std::vector<core::Event> events(const std::string& kind) {
    std::lock_guard lk(mu_);
    std::vector<core::Event> out;
    for (const auto& e : events_)
      if (e.kind == kind) out.push_back(e);
    return out;
  }
  static core::DeviceReport report(const std::string& id, const std::string& address = "127.0.0.1:5000") {
    core::DeviceReport r;
    r.id = id;
    r.address = address;
    r.received = core::now();
    r.attributes = Json{{"name", "Android device"}, {"lat", 65.4}, {"lon", 25.4}};
    core::Sensor light;
    light.id = "light";
    light.value = core::SensorValue{"lx", "double", r.received, Json(58.6)};
    core::Sensor mag;
    mag.id = "magneticfield";
    mag.value = core::SensorValue{"uT", "3DPoint", r.received, Json::array({10.4, -16.6, -37.5})};
    r.sensors = {light, mag};
    return r;
  }

  fs::path root_;
  config::StoreConfig store_cfg_;
  config::HubConfig cfg_;
  core::Registry metrics_;
  core::Bus bus_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Hub> hub_;
  std::mutex mu_;
  std::vector<core::Event> events_;
};

TEST_F(HubTest, IngestStoresEveryReadingAndPublishesItLive) {
  auto sub = bus_.subscribe("test", 100, nullptr);
  std::vector<core::DeviceReport> batch{report("d1")};
  hub_->ingest(std::move(batch));
  ASSERT_TRUE(store_->flush());
  auto light = store_->query({.device = "d1", .sensor = "light"});
  ASSERT_EQ(light->size(), 1u);
  EXPECT_DOUBLE_EQ((*light)[0].value, 58.6);
  EXPECT_EQ((*light)[0].unit, "lx");
  auto mag = store_->query({.device = "d1", .sensor = "magneticfield"});
  ASSERT_EQ(mag->size(), 1u);
  EXPECT_EQ(Json::parse((*mag)[0].text), Json::array({10.4, -16.6, -37.5}));
  auto published = sub->take();
  ASSERT_EQ(published.size(), 2u);
  EXPECT_EQ(published[0].kind, "reading");
  EXPECT_EQ(published[0].device, "d1");
  auto p = Json::parse(published[0].payload);
  EXPECT_EQ(p["sensor"], "light");
  EXPECT_EQ(p["value"], 58.6);
  EXPECT_EQ(p["unit"], "lx");
  ASSERT_EQ(events("online").size(), 1u);
  EXPECT_EQ(Json::parse(events("online")[0].payload)["address"], "127.0.0.1:5000");
}

TEST_F(HubTest, ObserversSeeEveryAcceptedReadingOfIngestAndObserve) {
  std::vector<core::Reading> seen;
  hub_->add_readings_observer([&](const std::vector<core::Reading>& rs) { seen.insert(seen.end(), rs.begin(), rs.end()); });
  std::vector<core::DeviceReport> batch{report("d1")};
  hub_->ingest(std::move(batch));
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].device, "d1");
  EXPECT_EQ(seen[0].sensor, "light");
  EXPECT_DOUBLE_EQ(seen[0].value, 58.6);
  EXPECT_EQ(seen[1].sensor, "magneticfield");
  EXPECT_FALSE(seen[1].is_numeric());

  core::DeviceReport local{.id = "board", .transport = core::Transport::kLocal, .received = core::now()};
  core::Sensor t{.id = "cpu_temp_c"};
  t.value = core::SensorValue{"C", "double", local.received, Json(31.5)};
  local.sensors.push_back(t);
  hub_->observe(std::move(local));
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[2].device, "board");
  EXPECT_DOUBLE_EQ(seen[2].value, 31.5);

  // A device over max_devices is refused, and so are its readings.
  hub_->save();  // d1 and board
  cfg_.max_devices = 2;
  reopen();
  ASSERT_EQ(hub_->registry().size(), 2u);
  seen.clear();
  hub_->add_readings_observer([&](const std::vector<core::Reading>& rs) { seen.insert(seen.end(), rs.begin(), rs.end()); });
  std::vector<core::DeviceReport> third{report("d3")};
  hub_->ingest(std::move(third));
  EXPECT_TRUE(seen.empty());
}

TEST_F(HubTest, DevicesSurviveARestartOfflineUntilTheyReport) {
  std::vector<core::DeviceReport> batch{report("d1"), report("d2")};
  hub_->ingest(std::move(batch));
  hub_->tick(core::now());  // writes changed devices
  reopen();
  auto d = hub_->registry().get("d1");
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->online);
  EXPECT_EQ(d->address, "127.0.0.1:5000");
  EXPECT_EQ(d->name, "Android device");
  ASSERT_EQ(d->sensors.size(), 2u);
  EXPECT_EQ(*d->sensors[0].value->values, 58.6);
  EXPECT_EQ(hub_->registry().find({.near = Circle{{65.4, 25.4}, 100}}).total, 2u);
  std::vector<core::DeviceReport> again{report("d1")};
  hub_->ingest(std::move(again));
  EXPECT_TRUE(hub_->registry().get("d1")->online);
  EXPECT_EQ(events("online").size(), 1u);  // d1 came back
}

TEST_F(HubTest, SilentDevicesGoOffline) {
  cfg_.offline_after = std::chrono::seconds(60);
  reopen();
  std::vector<core::DeviceReport> batch{report("d1")};
  hub_->ingest(std::move(batch));
  hub_->tick(core::now() + std::chrono::seconds(30));
  EXPECT_TRUE(events("offline").empty());
  hub_->tick(core::now() + std::chrono::seconds(61));
  ASSERT_EQ(events("offline").size(), 1u);
  EXPECT_EQ(events("offline")[0].device, "d1");
  EXPECT_FALSE(hub_->registry().get("d1")->online);
}

TEST_F(HubTest, CommandsAreSentAcknowledgedFromTheDevicesAddressOnly) {
  std::vector<std::string> sent;
  hub_->set_sender(core::Transport::kUdp, [&](const core::Device& d, const Command& c, Delivery&) {
    sent.push_back(d.address + " " + c.target + " " + c.parameter + " " + c.value.dump());
    return core::Status::ok();
  });
  std::vector<core::DeviceReport> batch{report("d1", "127.0.0.1:5000")};
  hub_->ingest(std::move(batch));
  auto c = hub_->submit("d1", "viewstate", "markers", "[m1]", "alice");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->state, CommandState::kSent);
  EXPECT_EQ(c->id.rfind("cmd_", 0), 0u);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0], R"(127.0.0.1:5000 viewstate markers "[m1]")");
  hub_->ack({c->id, true, "done"}, "10.0.0.9:5000");  // someone else: ignored
  EXPECT_EQ(hub_->command(c->id)->state, CommandState::kSent);
  hub_->ack({c->id, true, "done"}, "127.0.0.1:40000");  // same host, another port: accepted
  EXPECT_EQ(hub_->command(c->id)->state, CommandState::kAcknowledged);
  EXPECT_EQ(hub_->command(c->id)->detail, "done");
  hub_->ack({c->id, false, "late"}, "127.0.0.1:5000");  // finished: ignored
  EXPECT_EQ(hub_->command(c->id)->state, CommandState::kAcknowledged);
  auto ev = events("command");
  ASSERT_EQ(ev.size(), 1u);
  auto p = Json::parse(ev[0].payload);
  EXPECT_EQ(p["who"], "alice");
  EXPECT_EQ(p["state"], "acknowledged");
}

TEST_F(HubTest, UnansweredCommandsTimeOutAndFailuresAreRecorded) {
  cfg_.command_timeout = std::chrono::milliseconds(5000);
  reopen();
  bool fail = false;
  hub_->set_sender(core::Transport::kUdp, [&](const core::Device&, const Command&, Delivery&) {
    return fail ? core::Status::io("network unreachable") : core::Status::ok();
  });
  std::vector<core::DeviceReport> batch{report("d1")};
  hub_->ingest(std::move(batch));
  auto c = hub_->submit("d1", "t", "p", 1, "bob");
  ASSERT_TRUE(c.is_ok());
  hub_->tick(core::now() + std::chrono::seconds(1));
  EXPECT_EQ(hub_->command(c->id)->state, CommandState::kSent);
  hub_->tick(core::now() + std::chrono::seconds(6));
  EXPECT_EQ(hub_->command(c->id)->state, CommandState::kTimedOut);
  fail = true;
  auto f = hub_->submit("d1", "t", "p", 1, "bob");
  ASSERT_TRUE(f.is_ok());
  EXPECT_EQ(f->state, CommandState::kFailed);
  EXPECT_EQ(f->detail, "network unreachable");
  EXPECT_EQ(events("command").size(), 2u);
}

TEST_F(HubTest, CommandsRefusedForUnknownDevicesMissingFieldsAndNoTransport) {
  std::vector<core::DeviceReport> batch{report("d1"), report("noaddr", "")};
  hub_->ingest(std::move(batch));
  EXPECT_EQ(hub_->submit("nope", "t", "p", 1, "x").status().code(), core::Code::kNotFound);
  EXPECT_EQ(hub_->submit("d1", "", "p", 1, "x").status().code(), core::Code::kInvalid);
  EXPECT_EQ(hub_->submit("d1", "t", "", 1, "x").status().code(), core::Code::kInvalid);
  EXPECT_EQ(hub_->submit("d1", "t", "p", 1, "x").status().code(), core::Code::kUnavailable);  // no UDP sender
  hub_->set_sender(core::Transport::kUdp, [](const core::Device&, const Command&, Delivery&) { return core::Status::ok(); });
  EXPECT_EQ(hub_->submit("noaddr", "t", "p", 1, "x").status().code(), core::Code::kUnavailable);
  EXPECT_FALSE(hub_->command("cmd_0000000000000000"));
}

TEST_F(HubTest, LocalCommandsKnowTheirOutcomeAtOnce) {
  hub_->set_sender(core::Transport::kLocal, [](const core::Device&, const Command& c, Delivery& out) {
    out.done = true;
    out.detail = "led " + c.value.get<std::string>();
    return core::Status::ok();
  });
  core::DeviceReport board;
  board.id = "pi";
  board.transport = core::Transport::kLocal;
  board.received = core::now();
  hub_->observe(std::move(board));
  auto c = hub_->submit("pi", "led", "state", "on", "admin");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->state, CommandState::kAcknowledged);
  EXPECT_EQ(c->detail, "led on");
}

TEST_F(HubTest, ListNamesDevicesSensorsAndActuators) {
  auto r = report("d1");
  core::Actuator a;
  a.actions = Json::parse(R"([{"parameter": "viewstate"}])");
  a.callbacks = Json::parse(R"([{"target": "viewstate"}])");
  r.actuators = std::vector<core::Actuator>{a};
  std::vector<core::DeviceReport> batch{r};
  hub_->ingest(std::move(batch));
  auto list = hub_->list_json();
  EXPECT_EQ(list["total"], 1);
  EXPECT_EQ(list["devices"][0]["id"], "d1");
  EXPECT_EQ(list["devices"][0]["sensors"][1]["id"], "magneticfield");
  EXPECT_EQ(list["devices"][0]["actuators"], Json::parse(R"(["viewstate", "viewstate"])"));
}

}  // namespace
}  // namespace outpost::hub
