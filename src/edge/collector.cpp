#include <spdlog/spdlog.h>

#include <cmath>

#include "edge/edge.hpp"

namespace outpost::edge {

Collector::Collector(const config::CollectorConfig& cfg, std::string device_id, hw::Board& board,
                     store::Store& store, core::Registry& metrics, std::function<void(core::Event)> record_event)
    : cfg_(cfg),
      device_id_(std::move(device_id)),
      board_(board),
      store_(store),
      record_event_(std::move(record_event)),
      samples_(metrics.counter("outpost_collector_samples_total", "Samples taken of the local sensors.")),
      errors_(metrics.counter("outpost_collector_errors_total",
                              "Sensor reads or store writes of the collector that failed.")) {
  board_.button->on_edge([this](bool active, core::TimePoint when) {
    record_event_(core::Event{0, when, device_id_, "button", active ? R"({"pressed":true})" : R"({"pressed":false})"});
  });
}

Collector::~Collector() { stop(); }

void Collector::start() { thread_ = std::thread([this] { run(); }); }

void Collector::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  board_.button->on_edge(nullptr);
}

void Collector::run() {
  std::unique_lock lk(mu_);
  while (!stopping_) {
    lk.unlock();
    sample_now();
    lk.lock();
    cv_.wait_for(lk, cfg_.interval, [this] { return stopping_; });
  }
}

void Collector::append(std::vector<core::Reading> rs) {
  if (!on_stored_) {
    store_.append(std::move(rs), [this](core::Status s) {
      if (!s) errors_.inc();  // the store logs the failure itself, once while it lasts
    });
    return;
  }
  auto copy = rs;
  store_.append(std::move(rs), [this, copy = std::move(copy)](core::Status s) {
    if (!s) return errors_.inc();  // the store logs the failure itself, once while it lasts
    on_stored_(copy);
  });
}

void Collector::sample_now() {
  auto ts = core::now();
  auto temp = board_.cpu->celsius();
  if (!temp && !thermal_failing_) spdlog::warn("collector: CPU temperature unreadable: {}", temp.status().to_string());
  if (temp && thermal_failing_) spdlog::info("collector: CPU temperature readable again");
  thermal_failing_ = !temp;
  auto led = board_.led->get();
  auto button = board_.button->get();
  auto relay = board_.relay->get();
  if (!temp || !led || !button || !relay) errors_.inc();
  auto value = [](bool ok, double v) { return ok ? v : std::nan(""); };
  append({
      core::Reading{device_id_, kCpuTemp, ts, value(temp.is_ok(), temp ? *temp : 0), "Cel", ""},
      core::Reading{device_id_, kLedState, ts, value(led.is_ok(), led && *led ? 1 : 0), "", ""},
      core::Reading{device_id_, kButtonPressed, ts, value(button.is_ok(), button && *button ? 1 : 0), "", ""},
      core::Reading{device_id_, kRelayState, ts, value(relay.is_ok(), relay && *relay ? 1 : 0), "", ""},
  });
  samples_.inc();
}


}  // namespace outpost::edge
