// open_board(): picks real or simulated parts and says in the log which it picked and why.

#include <exception>
#include <system_error>

#include <spdlog/spdlog.h>

#include "hw/detail/linux.hpp"
#include "hw/detail/servo.hpp"
#include "hw/hw.hpp"

namespace outpost::hw {
namespace {

// Real GPIO, or why not. A missing chip is the normal case on a laptop or in CI (info); a chip
// that is there but unusable is a deployment problem someone should see (warning).
bool open_gpio(Board& board, const config::HwConfig& cfg) {
  if (cfg.simulate) {
    spdlog::info("hw: GPIO simulated (hw.simulate is set)");
    return false;
  }
  std::error_code ec;
  if (!std::filesystem::exists(cfg.gpio_chip, ec)) {
    spdlog::info("hw: GPIO simulated: no chip at {}", cfg.gpio_chip);
    return false;
  }
  auto parts = detail::open_gpiod(cfg);
  if (!parts) {
    spdlog::warn("hw: GPIO simulated: {}", parts.status().message());
    return false;
  }
  board.led = std::move(parts->led);
  board.relay = std::move(parts->relay);
  board.button = std::move(parts->button);
  return true;
}

void open_thermal(Board& board, const config::HwConfig& cfg, const std::filesystem::path& root) {
  auto sysfs = detail::make_sysfs_thermal(root / "sys/class/thermal" / cfg.thermal_zone / "temp");
  // One read up front: a zone that is missing or unreadable now is not going to start working,
  // and a simulated value is more useful to /api/status than a permanent error.
  if (auto probe = sysfs->celsius(); !probe) {
    spdlog::info("hw: CPU temperature simulated: {}", probe.status().message());
    board.cpu = make_sim_thermal();
    return;
  }
  board.cpu = std::move(sysfs);
}

// Real PWM, or why not; like GPIO, a missing chip is normal (info), an unusable one is not.
std::unique_ptr<Servo> open_servo(const config::HwConfig& hw, const config::ServoConfig& cfg,
                                  const std::filesystem::path& root) {
  if (hw.simulate) {
    spdlog::info("hw: servo simulated (hw.simulate is set)");
    return make_sim_servo();
  }
  const auto chip = root / "sys/class/pwm" / cfg.pwm_chip;
  std::error_code ec;
  if (!std::filesystem::exists(chip, ec)) {
    spdlog::info("hw: servo simulated: no PWM chip at {}", chip.string());
    return make_sim_servo();
  }
  auto servo = detail::open_sysfs_servo(cfg, chip);
  if (!servo) {
    spdlog::warn("hw: servo simulated: {}", servo.status().message());
    return make_sim_servo();
  }
  return std::move(*servo);
}

}  // namespace

Board open_board(const config::HwConfig& cfg, const std::filesystem::path& root) {
  return open_board(cfg, config::ServoConfig{}, root);
}

Board open_board(const config::HwConfig& cfg, const config::ServoConfig& servo,
                 const std::filesystem::path& root) {
  Board board;
  board.simulated = !open_gpio(board, cfg);
  if (board.simulated) {
    auto button = make_sim_input();
    board.sim_button = button.get();
    board.button = std::move(button);
    board.led = make_sim_output();
    board.relay = make_sim_output();
  }
  open_thermal(board, cfg, root);
  board.servo = open_servo(cfg, servo, root);
  spdlog::info("hw: led: {}; relay: {}; button: {}; cpu: {}; servo: {}", board.led->describe(),
               board.relay->describe(), board.button->describe(), board.cpu->describe(), board.servo->describe());
  return board;
}

}  // namespace outpost::hw
