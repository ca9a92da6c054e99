#include "hw/hw.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hw/detail/debounce.hpp"
#include "hw/detail/linux.hpp"

namespace outpost::hw {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "hw_test.XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}

// Routes spdlog's default logger into memory for the test's lifetime.
class LogCapture {
 public:
  LogCapture()
      : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64)),
        prev_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>("hw_test", sink_);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(prev_); }

  // Whether a message at `level` containing `text` was logged.
  bool has(spdlog::level::level_enum level, const std::string& text) const {
    for (const auto& m : sink_->last_raw()) {
      std::string payload(m.payload.data(), m.payload.size());
      if (m.level == level && payload.find(text) != std::string::npos) return true;
    }
    return false;
  }
  size_t count(spdlog::level::level_enum level) const {
    size_t n = 0;
    for (const auto& m : sink_->last_raw()) n += m.level == level ? 1 : 0;
    return n;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> prev_;
};

class FakeClock : public core::Clock {
 public:
  core::TimePoint now() const override { return t; }
  core::TimePoint t{};
};

config::HwConfig sim_config() {
  config::HwConfig cfg;
  cfg.gpio_chip = "/nonexistent/gpiochip0";
  return cfg;
}

// ---- Simulated LED ----

TEST(SimOutput, StartsOffAndFollowsSetAndToggle) {
  auto led = make_sim_output();
  EXPECT_EQ(led->describe(), "simulated");
  EXPECT_FALSE(*led->get());
  EXPECT_TRUE(led->set(true).is_ok());
  EXPECT_TRUE(*led->get());
  EXPECT_FALSE(*led->toggle());
  EXPECT_FALSE(*led->get());
  EXPECT_TRUE(*led->toggle());
  EXPECT_TRUE(led->set(false).is_ok());
  EXPECT_FALSE(*led->get());
}

TEST(SimOutput, ConcurrentTogglesNeverLoseAnUpdate) {
  auto led = make_sim_output();
  constexpr int kThreads = 8;
  constexpr int kPerThread = 1001;  // 8008 toggles in all: even, so the LED ends off
  std::atomic<int> turned_on{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < kPerThread; ++j) {
        if (*led->toggle()) turned_on.fetch_add(1);
        (void)led->get();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(*led->get());
  // Atomic toggles see the states off→on, on→off, ... in strict alternation: exactly half on.
  EXPECT_EQ(turned_on.load(), kThreads * kPerThread / 2);
}

TEST(SimOutput, ConcurrentSetsEndInTheSetState) {
  auto led = make_sim_output();
  for (bool target : {true, false, true}) {
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&] {
        for (int j = 0; j < 500; ++j) EXPECT_TRUE(led->set(target).is_ok());
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(*led->get(), target);
  }
}

// ---- Simulated button ----

struct Edges {
  std::mutex mu;
  std::vector<bool> seen;
  EdgeCallback callback() {
    return [this](bool active, core::TimePoint) {
      std::lock_guard lock(mu);
      seen.push_back(active);
    };
  }
  std::vector<bool> get() {
    std::lock_guard lock(mu);
    return seen;
  }
};

TEST(SimInput, NeverPressedUntilATestPressesIt) {
  auto button = make_sim_input();
  EXPECT_EQ(button->describe(), "simulated");
  EXPECT_FALSE(*button->get());
  button->TEST_press(true);
  EXPECT_TRUE(*button->get());
  button->TEST_press(false);
  EXPECT_FALSE(*button->get());
}

TEST(SimInput, DeliversAnEdgeOnEachChangeOnly) {
  auto button = make_sim_input();
  Edges edges;
  auto before = core::now();
  core::TimePoint when{};
  button->on_edge([&](bool active, core::TimePoint t) {
    when = t;
    edges.callback()(active, t);
  });
  button->TEST_press(true);
  button->TEST_press(true);  // no change, no edge
  button->TEST_press(false);
  button->TEST_press(false);
  button->TEST_press(true);
  EXPECT_EQ(edges.get(), (std::vector<bool>{true, false, true}));
  EXPECT_GE(when, before);
  EXPECT_LE(when, core::now());
}

TEST(SimInput, CallbackCanBeSetLateReplacedAndRemoved) {
  auto button = make_sim_input();
  button->TEST_press(true);  // no callback yet: nothing to deliver, no crash
  Edges first, second;
  button->on_edge(first.callback());
  button->TEST_press(false);
  button->on_edge(second.callback());
  button->TEST_press(true);
  button->on_edge(nullptr);
  button->TEST_press(false);
  EXPECT_EQ(first.get(), std::vector<bool>{false});
  EXPECT_EQ(second.get(), std::vector<bool>{true});
}

TEST(SimInput, CallbackMayReadTheButton) {
  auto button = make_sim_input();
  std::vector<bool> levels;
  button->on_edge([&](bool, core::TimePoint) { levels.push_back(*button->get()); });
  button->TEST_press(true);
  button->TEST_press(false);
  EXPECT_EQ(levels, (std::vector<bool>{true, false}));
}

TEST(SimInput, ConcurrentPressesDeliverAlternatingEdgesEndingInTheFinalLevel) {
  auto button = make_sim_input();
  Edges edges;
  button->on_edge(edges.callback());
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < 500; ++j) button->TEST_press((i + j) % 2 == 0);
    });
  }
  for (auto& t : threads) t.join();
  auto seen = edges.get();
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(seen.front());  // starts released, so the first edge is a press
  for (size_t k = 1; k < seen.size(); ++k) ASSERT_NE(seen[k], seen[k - 1]) << "at " << k;
  EXPECT_EQ(seen.back(), *button->get());
}

// ---- Simulated thermal ----

TEST(SimThermal, SlowTenMinuteWaveAroundFortyTwo) {
  FakeClock clock;
  auto cpu = make_sim_thermal(clock);
  EXPECT_EQ(cpu->describe(), "simulated");
  auto at = [&](std::chrono::seconds s) {
    clock.t = core::TimePoint(std::chrono::duration_cast<std::chrono::microseconds>(s));
    return *cpu->celsius();
  };
  const auto base = 1'795'305'600s;  // a multiple of 600 s
  EXPECT_NEAR(at(base), 42.0, 1e-9);
  EXPECT_NEAR(at(base + 150s), 44.0, 1e-9);
  EXPECT_NEAR(at(base + 300s), 42.0, 1e-9);
  EXPECT_NEAR(at(base + 450s), 40.0, 1e-9);
  EXPECT_NEAR(at(base + 600s), 42.0, 1e-9);
  // Slow: over 10 s it moves at most 2 °C * 2π * 10/600 ≈ 0.21 °C.
  for (auto s = 0s; s < 600s; s += 10s) {
    double a = at(base + s), b = at(base + s + 10s);
    EXPECT_GE(a, 40.0);
    EXPECT_LE(a, 44.0);
    EXPECT_LE(std::abs(b - a), 0.21);
  }
  // Same instant, same value: deterministic across instances.
  auto other = make_sim_thermal(clock);
  EXPECT_EQ(*other->celsius(), *cpu->celsius());
}

TEST(SimThermal, RealClockGivesAPlausibleValue) {
  auto cpu = make_sim_thermal();
  auto c = cpu->celsius();
  ASSERT_TRUE(c.is_ok());
  EXPECT_GE(*c, 40.0);
  EXPECT_LE(*c, 44.0);
}

// ---- Debouncing (the libgpiod button's logic) ----

TEST(Debouncer, BouncingPressGivesOneEdgeAfterTheQuietPeriod) {
  using detail::Debouncer;
  Debouncer::Steady::time_point t0{};
  Debouncer d(false);
  EXPECT_FALSE(d.deadline());
  d.edge(t0);
  d.edge(t0 + 3ms);
  d.edge(t0 + 7ms);
  EXPECT_EQ(d.deadline(), t0 + 7ms + detail::kDebounceQuiet);
  EXPECT_EQ(d.settle(t0 + 26ms, true), std::nullopt);  // still within 20 ms of the last edge
  EXPECT_EQ(d.settle(t0 + 27ms, true), true);
  EXPECT_FALSE(d.deadline());
  EXPECT_EQ(d.settle(t0 + 100ms, true), std::nullopt);  // nothing pending
  d.edge(t0 + 200ms);
  EXPECT_EQ(d.settle(t0 + 220ms, false), false);  // the release
}

TEST(Debouncer, GlitchEndingWhereItBeganGivesNoEdge) {
  using detail::Debouncer;
  Debouncer::Steady::time_point t0{};
  Debouncer d(false);
  d.edge(t0);
  d.edge(t0 + 2ms);
  EXPECT_EQ(d.settle(t0 + 22ms, false), std::nullopt);
  EXPECT_FALSE(d.deadline());
}

TEST(Debouncer, InitialLevelCountsAsReported) {
  using detail::Debouncer;
  Debouncer::Steady::time_point t0{};
  Debouncer d(true);  // held down at start-up
  d.edge(t0);
  EXPECT_EQ(d.settle(t0 + 20ms, true), std::nullopt);
  d.edge(t0 + 50ms);
  EXPECT_EQ(d.settle(t0 + 70ms, false), false);
}

// ---- sysfs thermal ----

TEST(SysfsThermal, ReadsMillidegrees) {
  TempDir dir;
  auto path = dir.path() / "temp";
  auto cpu = detail::make_sysfs_thermal(path);
  EXPECT_EQ(cpu->describe(), "sysfs " + path.string());
  struct Case {
    const char* text;
    double celsius;
  };
  for (auto [text, celsius] : {Case{"46160\n", 46.16}, Case{"46160", 46.16}, Case{"0\n", 0.0},
                               Case{"-5000\n", -5.0}, Case{"105000\n", 105.0}}) {
    write_file(path, text);
    auto c = cpu->celsius();
    ASSERT_TRUE(c.is_ok()) << text << ": " << c.status().to_string();
    EXPECT_DOUBLE_EQ(*c, celsius) << text;
  }
}

TEST(SysfsThermal, GarbageIsAnIoErrorNamingThePath) {
  TempDir dir;
  auto path = dir.path() / "temp";
  auto cpu = detail::make_sysfs_thermal(path);
  for (const char* text :
       {"", "\n", "garbage\n", "46.16\n", "46160x\n", " 46160\n", "0x10\n",
        "99999999999999999999999\n", "1234567890123456789012345678901234567\n"}) {
    write_file(path, text);
    auto c = cpu->celsius();
    ASSERT_FALSE(c.is_ok()) << '"' << text << '"';
    EXPECT_EQ(c.status().code(), core::Code::kIo);
    EXPECT_NE(c.status().message().find(path.string()), std::string::npos);
  }
}

TEST(SysfsThermal, MissingFileIsAnIoErrorNamingThePath) {
  TempDir dir;
  auto path = dir.path() / "no_such_zone" / "temp";
  auto c = detail::make_sysfs_thermal(path)->celsius();
  ASSERT_FALSE(c.is_ok());
  EXPECT_EQ(c.status().code(), core::Code::kIo);
  EXPECT_NE(c.status().message().find(path.string()), std::string::npos);
}

// ---- open_board ----

TEST(OpenBoard, ReadsTheThermalZoneUnderRootOnEveryCall) {
  TempDir root;
  auto temp = root.path() / "sys/class/thermal/thermal_zone0/temp";
  write_file(temp, "46160\n");
  Board board = open_board(sim_config(), root.path());
  ASSERT_TRUE(board.cpu);
  EXPECT_EQ(board.cpu->describe(), "sysfs " + temp.string());
  EXPECT_DOUBLE_EQ(*board.cpu->celsius(), 46.16);
  write_file(temp, "51234\n");
  EXPECT_DOUBLE_EQ(*board.cpu->celsius(), 51.234);
  write_file(temp, "garbage\n");
  EXPECT_EQ(board.cpu->celsius().status().code(), core::Code::kIo);
  fs::remove(temp);
  EXPECT_EQ(board.cpu->celsius().status().code(), core::Code::kIo);
}

TEST(OpenBoard, UsesTheConfiguredThermalZone) {
  TempDir root;
  write_file(root.path() / "sys/class/thermal/thermal_zone0/temp", "46160\n");
  write_file(root.path() / "sys/class/thermal/thermal_zone3/temp", "38000\n");
  auto cfg = sim_config();
  cfg.thermal_zone = "thermal_zone3";
  Board board = open_board(cfg, root.path());
  EXPECT_DOUBLE_EQ(*board.cpu->celsius(), 38.0);
}

TEST(OpenBoard, MissingOrUnreadableThermalZoneIsSimulated) {
  TempDir root;
  {
    Board board = open_board(sim_config(), root.path());
    EXPECT_EQ(board.cpu->describe(), "simulated");
    auto c = board.cpu->celsius();
    ASSERT_TRUE(c.is_ok());
    EXPECT_GE(*c, 40.0);
    EXPECT_LE(*c, 44.0);
  }
  write_file(root.path() / "sys/class/thermal/thermal_zone0/temp", "garbage\n");
  Board board = open_board(sim_config(), root.path());
  EXPECT_EQ(board.cpu->describe(), "simulated");
}

TEST(OpenBoard, SimulateFlagGivesSimulatedGpioEvenWithAChipPresent) {
  TempDir root;
  LogCapture log;
  auto cfg = sim_config();
  cfg.simulate = true;
  cfg.gpio_chip = "/dev/null";  // exists, but is not even looked at
  Board board = open_board(cfg, root.path());
  EXPECT_TRUE(board.simulated);
  ASSERT_TRUE(board.led && board.relay && board.button && board.cpu);
  EXPECT_EQ(board.led->describe(), "simulated");
  EXPECT_EQ(board.relay->describe(), "simulated");
  EXPECT_EQ(board.button->describe(), "simulated");
  EXPECT_EQ(log.count(spdlog::level::warn), 0u);
  EXPECT_TRUE(log.has(spdlog::level::info, "hw.simulate"));
}

TEST(OpenBoard, MissingChipGivesSimulatedGpioWithoutWarning) {
  TempDir root;
  LogCapture log;
  Board board = open_board(sim_config(), root.path());
  EXPECT_TRUE(board.simulated);
  EXPECT_EQ(board.led->describe(), "simulated");
  EXPECT_EQ(log.count(spdlog::level::warn), 0u);
  EXPECT_TRUE(log.has(spdlog::level::info, "/nonexistent/gpiochip0"));
}

TEST(OpenBoard, ChipThatIsNotAGpioChipGivesSimulatedGpioAndAWarning) {
  TempDir root;
  auto fake_chip = root.path() / "gpiochip0";
  write_file(fake_chip, "not a gpio chip");
  const std::vector<std::string> chips = {fake_chip.string(), "/dev/null", root.path().string()};
  for (const auto& chip : chips) {
    LogCapture log;
    auto cfg = sim_config();
    cfg.gpio_chip = chip;
    Board board = open_board(cfg, root.path());
    EXPECT_TRUE(board.simulated) << chip;
    ASSERT_TRUE(board.led && board.relay && board.button && board.cpu);
    EXPECT_TRUE(log.has(spdlog::level::warn, chip)) << chip;
    EXPECT_TRUE(log.has(spdlog::level::warn, "cannot open as a GPIO chip")) << chip;
    EXPECT_TRUE(board.led->set(true).is_ok());
    EXPECT_TRUE(*board.led->get());
  }
}

TEST(OpenBoard, SimulatedRelayIsItsOwnOutputStartingOff) {
  TempDir root;
  Board board = open_board(sim_config(), root.path());
  ASSERT_TRUE(board.relay);
  EXPECT_FALSE(*board.relay->get());
  ASSERT_TRUE(board.relay->set(true));
  EXPECT_TRUE(*board.relay->get());
  EXPECT_FALSE(*board.led->get());  // not the LED
  EXPECT_FALSE(*board.relay->toggle());
}

TEST(OpenBoard, SimulatedButtonCanBePressedThroughTheBoard) {
  TempDir root;
  Board board = open_board(sim_config(), root.path());
  ASSERT_NE(board.sim_button, nullptr);
  Edges edges;
  board.button->on_edge(edges.callback());
  board.sim_button->TEST_press(true);
  EXPECT_TRUE(*board.button->get());
  EXPECT_EQ(edges.get(), std::vector<bool>{true});
}

}  // namespace
}  // namespace outpost::hw
