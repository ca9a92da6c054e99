// Simulated parts: what runs on a laptop, in CI, and whenever the board has no usable GPIO.

#include <chrono>
#include <cmath>
#include <mutex>
#include <numbers>
#include <utility>

#include "hw/hw.hpp"

namespace outpost::hw {
namespace {

class SimOutput final : public DigitalOutput {
 public:
  core::Result<bool> get() const override {
    std::lock_guard lock(mu_);
    return on_;
  }
  core::Status set(bool on) override {
    std::lock_guard lock(mu_);
    on_ = on;
    return core::Status::ok();
  }
  core::Result<bool> toggle() override {
    std::lock_guard lock(mu_);
    on_ = !on_;
    return on_;
  }
  std::string describe() const override { return "simulated"; }

 private:
  mutable std::mutex mu_;
  bool on_ = false;
};

class SimInputImpl final : public SimInput {
 public:
  core::Result<bool> get() const override {
    std::lock_guard lock(mu_);
    return active_;
  }
  void on_edge(EdgeCallback cb) override {
    std::lock_guard lock(mu_);
    cb_ = std::move(cb);
  }
  std::string describe() const override { return "simulated"; }

  void TEST_press(bool active) override {
    // press_mu_ keeps concurrent presses' state changes and deliveries in the same order;
    // the callback runs outside mu_ so it may call get() or on_edge().
    std::lock_guard press(press_mu_);
    EdgeCallback cb;
    {
      std::lock_guard lock(mu_);
      if (active_ == active) return;
      active_ = active;
      cb = cb_;
    }
    if (cb) cb(active, core::now());
  }

 private:
  std::mutex press_mu_;
  mutable std::mutex mu_;
  bool active_ = false;
  EdgeCallback cb_;
};

class SimThermal final : public Thermal {
 public:
  explicit SimThermal(const core::Clock& clock) : clock_(clock) {}

  core::Result<double> celsius() const override {
    // Reduce modulo the period in integer microseconds first: the epoch count is too large for
    // a double to keep sub-second phase precision.
    constexpr int64_t kPeriodUs = std::chrono::microseconds(kPeriod).count();
    int64_t us = core::to_micros(clock_.now()) % kPeriodUs;
    if (us < 0) us += kPeriodUs;
    double phase = 2.0 * std::numbers::pi * static_cast<double>(us) / kPeriodUs;
    return kBase + kAmplitude * std::sin(phase);
  }
  std::string describe() const override { return "simulated"; }

 private:
  static constexpr double kBase = 42.0;      // seed 002's FakeCPU
  static constexpr double kAmplitude = 2.0;  // ± °C
  static constexpr std::chrono::minutes kPeriod{10};
  const core::Clock& clock_;
};

}  // namespace

std::unique_ptr<DigitalOutput> make_sim_output() { return std::make_unique<SimOutput>(); }

std::unique_ptr<SimInput> make_sim_input() { return std::make_unique<SimInputImpl>(); }

std::unique_ptr<Thermal> make_sim_thermal(const core::Clock& clock) {
  return std::make_unique<SimThermal>(clock);
}

}  // namespace outpost::hw
