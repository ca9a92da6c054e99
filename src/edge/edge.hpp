// Edge processing: the collector that samples the board's sensors in the background, and the
// aggregator of windowed summaries (edge/aggregator.hpp) and the local rules (edge/rules.hpp).
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "config/config.hpp"
#include "edge/aggregator.hpp"
#include "core/core.hpp"
#include "hw/hw.hpp"
#include "store/store.hpp"

namespace outpost::edge {

// Sensor names of the local board, as seed 002 names its fields.
inline constexpr const char* kCpuTemp = "cpu_temp_c";
inline constexpr const char* kLedState = "led_state";
inline constexpr const char* kButtonPressed = "button_pressed";
// The relay's state, sampled like the LED's (1 on, 0 off); not one of seed 002's fields.
inline constexpr const char* kRelayState = "relay_state";

// Samples every local sensor every cfg.interval (CPU temperature, LED, button, relay) and appends the
// sample to the store, all with one timestamp, so a series holds samples only; each button
// edge is stored as it happens as a "button" event.
// A failed sensor read stores NaN for that sensor (shown as null) and is logged once while it
// lasts. Owns one thread; start() once, stop() (or the destructor) joins it.
class Collector {
 public:
  // `record_event` takes the button events (it stores and publishes them; see app/).
  Collector(const config::CollectorConfig& cfg, std::string device_id, hw::Board& board, store::Store& store,
            core::Registry& metrics, std::function<void(core::Event)> record_event);
  ~Collector();

  // Called (on the store's writer thread) with each sample once it is committed; for the hub,
  // which keeps the board's latest values and publishes them. Set before start().
  void on_stored(std::function<void(const std::vector<core::Reading>&)> fn) { on_stored_ = std::move(fn); }

  void start();
  void stop();
  // Takes one sample now (also used by tests); returns once it is queued for the store.
  void sample_now();

 private:
  void run();
  void append(std::vector<core::Reading> rs);

  config::CollectorConfig cfg_;
  std::string device_id_;
  hw::Board& board_;
  store::Store& store_;
  std::function<void(core::Event)> record_event_;
  std::function<void(const std::vector<core::Reading>&)> on_stored_;
  core::Counter& samples_;
  core::Counter& errors_;
  bool thermal_failing_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace outpost::edge
