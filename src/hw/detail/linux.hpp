// The Linux implementations behind open_board(); internal to hw/.
#pragma once

#include <filesystem>
#include <memory>

#include "config/config.hpp"
#include "core/status.hpp"
#include "hw/hw.hpp"

namespace outpost::hw::detail {

struct GpioParts {
  std::unique_ptr<DigitalOutput> led;
  std::unique_ptr<DigitalOutput> relay;
  std::unique_ptr<DigitalInput> button;
};

// Opens cfg.gpio_chip with libgpiod and requests the LED, relay and button lines (consumer
// "outpost"). All or nothing: on any failure, everything acquired so far is released and the
// error says which step failed and why (Status::unavailable).
core::Result<GpioParts> open_gpiod(const config::HwConfig& cfg);

// A Thermal reading `path` (a sysfs thermal zone's "temp": integer millidegrees Celsius) on
// every call. Does not touch the file until then.
std::unique_ptr<Thermal> make_sysfs_thermal(std::filesystem::path path);

}  // namespace outpost::hw::detail
