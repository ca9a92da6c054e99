// The servo's pure logic and the simulated servo.

#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>

#include "hw/detail/servo.hpp"
#include "hw/hw.hpp"

namespace outpost::hw {
namespace detail {

core::Status check_angle(double degrees) {
  if (!std::isfinite(degrees)) return core::Status::invalid("angle is not a finite number");
  if (degrees < kServoMinDegrees || degrees > kServoMaxDegrees)
    return core::Status::invalid("angle " + std::to_string(degrees) + " is outside -90..90");
  return core::Status::ok();
}

uint64_t pulse_for(double degrees, const config::ServoConfig& cfg) {
  const double lo = cfg.min_pulse_ns, hi = cfg.max_pulse_ns;
  const double f = (degrees - kServoMinDegrees) / (kServoMaxDegrees - kServoMinDegrees);
  return static_cast<uint64_t>(std::llround(lo + f * (hi - lo)));
}

std::optional<double> angle_for(uint64_t pulse_ns, const config::ServoConfig& cfg) {
  if (cfg.min_pulse_ns == cfg.max_pulse_ns) return std::nullopt;
  const uint64_t lo = std::min(cfg.min_pulse_ns, cfg.max_pulse_ns);
  const uint64_t hi = std::max(cfg.min_pulse_ns, cfg.max_pulse_ns);
  if (pulse_ns < lo || pulse_ns > hi) return std::nullopt;
  const double f = (static_cast<double>(pulse_ns) - cfg.min_pulse_ns) /
                   (static_cast<double>(cfg.max_pulse_ns) - cfg.min_pulse_ns);
  return std::clamp(kServoMinDegrees + f * (kServoMaxDegrees - kServoMinDegrees), kServoMinDegrees,
                    kServoMaxDegrees);
}

double step_toward(double from, double to, double max_step) {
  if (std::abs(to - from) <= max_step) return to;
  return to > from ? from + max_step : from - max_step;
}

}  // namespace detail

namespace {

class SimServo final : public Servo {
 public:
  core::Result<double> angle() const override {
    std::lock_guard lock(mu_);
    return degrees_;
  }
  core::Status set_angle(double degrees) override {
    if (auto s = detail::check_angle(degrees); !s) return s;
    std::lock_guard lock(mu_);
    degrees_ = degrees;
    return core::Status::ok();
  }
  std::string describe() const override { return "simulated"; }

 private:
  mutable std::mutex mu_;
  double degrees_ = 0;
};

}  // namespace

std::unique_ptr<Servo> make_sim_servo() { return std::make_unique<SimServo>(); }

}  // namespace outpost::hw
