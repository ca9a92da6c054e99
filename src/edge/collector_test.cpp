#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "edge/edge.hpp"

namespace outpost::edge {
namespace {

class CollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("outpost-edge-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    config::StoreConfig sc;
    sc.data_dir = dir_.string();
    auto s = store::Store::open(sc, nullptr);
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store_ = std::move(s.value());
    board_.led = hw::make_sim_output();
    board_.relay = hw::make_sim_output();
    auto button = hw::make_sim_input();
    board_.sim_button = button.get();
    board_.button = std::move(button);
    board_.cpu = hw::make_sim_thermal();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::function<void(core::Event)> record() {
    return [this](core::Event e) { store_->append_event(std::move(e), nullptr); };
  }
  std::vector<core::Reading> series(const std::string& sensor) {
    store::ReadingQuery q;
    q.device = "pi";
    q.sensor = sensor;
    q.limit = 100;
    auto r = store_->query(q);
    EXPECT_TRUE(r.is_ok());
    return r.is_ok() ? *r : std::vector<core::Reading>{};
  }
  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  hw::Board board_;
  core::Registry metrics_;
};

TEST_F(CollectorTest, SampleStoresEverySensorWithOneTimestamp) {
  Collector c({}, "pi", board_, *store_, metrics_, record());
  ASSERT_TRUE(board_.led->set(true));
  c.sample_now();
  ASSERT_TRUE(store_->flush());
  auto temp = series(kCpuTemp), led = series(kLedState), button = series(kButtonPressed), relay = series(kRelayState);
  ASSERT_EQ(temp.size(), 1u);
  ASSERT_EQ(led.size(), 1u);
  ASSERT_EQ(button.size(), 1u);
  ASSERT_EQ(relay.size(), 1u);
  EXPECT_EQ(temp[0].ts, led[0].ts);
  EXPECT_EQ(temp[0].ts, button[0].ts);
  EXPECT_EQ(temp[0].ts, relay[0].ts);
  EXPECT_EQ(relay[0].value, 0.0);
  EXPECT_NEAR(temp[0].value, 42.0, 2.01);
  EXPECT_EQ(led[0].value, 1.0);
  EXPECT_EQ(button[0].value, 0.0);
}

TEST_F(CollectorTest, ButtonEdgesAreStoredAsEventsNotReadings) {
  Collector c({}, "pi", board_, *store_, metrics_, record());
  board_.sim_button->TEST_press(true);
  board_.sim_button->TEST_press(false);
  ASSERT_TRUE(store_->flush());
  EXPECT_TRUE(series(kButtonPressed).empty());  // the series holds samples only
  store::EventQuery q;
  q.kind = "button";
  auto events = store_->query_events(q);
  ASSERT_TRUE(events.is_ok());
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].payload, R"({"pressed":true})");
  EXPECT_EQ((*events)[1].payload, R"({"pressed":false})");
}

TEST_F(CollectorTest, BackgroundThreadSamplesOnItsInterval) {
  config::CollectorConfig cfg;
  cfg.interval = std::chrono::milliseconds(20);
  Collector c(cfg, "pi", board_, *store_, metrics_, record());
  c.start();
  for (int i = 0; i < 200 && series(kCpuTemp).size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(store_->flush());
  }
  c.stop();
  EXPECT_GE(series(kCpuTemp).size(), 3u);
}

}  // namespace
}  // namespace outpost::edge
