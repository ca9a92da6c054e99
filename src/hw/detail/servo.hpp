// The servo's pure logic (angle checks, angle <-> pulse width, slew steps) and the Linux sysfs
// PWM implementation behind open_board(); internal to hw/.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>

#include "config/config.hpp"
#include "core/status.hpp"
#include "hw/hw.hpp"

namespace outpost::hw::detail {

// How often the slew worker moves the pulse width one step: a hobby servo reads one pulse
// per 20 ms period at 50 Hz, so finer steps would not be seen.
inline constexpr std::chrono::milliseconds kSlewStep{20};

// Status::invalid unless `degrees` is finite and within [kServoMinDegrees, kServoMaxDegrees].
core::Status check_angle(double degrees);

// The pulse width for `degrees` (already checked), mapped linearly from -90..90 onto
// cfg.min_pulse_ns..cfg.max_pulse_ns and rounded to the nearest nanosecond.
uint64_t pulse_for(double degrees, const config::ServoConfig& cfg);

// The inverse of pulse_for, or nullopt when `pulse_ns` lies outside the configured range
// (or the range is empty).
std::optional<double> angle_for(uint64_t pulse_ns, const config::ServoConfig& cfg);

// Moves `from` toward `to` by at most `max_step` (>= 0) degrees; lands exactly on `to` when it
// is within reach.
double step_toward(double from, double to, double max_step);

struct SysfsServoOptions {
  // After writing the channel number to <chip>/export: how long to wait for pwm<N>/ to appear
  // and for its files to become writable (udev may change their group a moment later).
  std::chrono::milliseconds export_timeout{1000};
};

// Opens <chip_dir>/pwm<cfg.pwm_channel> (exporting it first when the directory is missing),
// writes cfg.period_ns to "period", the initial pulse to "duty_cycle" and 1 to "enable".
// The initial angle is 0, unless the channel is already enabled with period cfg.period_ns and
// a duty cycle within the configured range: then that position is adopted unchanged, so a
// restart does not jerk the servo back to the centre.
// Errors: Status::invalid for a configuration the PWM cannot produce (period 0, a pulse longer
// than the period, min_pulse_ns == max_pulse_ns); Status::io naming the path that failed.
core::Result<std::unique_ptr<Servo>> open_sysfs_servo(const config::ServoConfig& cfg,
                                                      const std::filesystem::path& chip_dir,
                                                      const SysfsServoOptions& options = {});

}  // namespace outpost::hw::detail
