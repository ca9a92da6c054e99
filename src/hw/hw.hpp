// The hardware abstraction layer: the board's LED, relay, button, CPU temperature and camera servo
// behind small interfaces, with a Linux implementation (libgpiod 1.6 character-device API,
// sysfs thermal, sysfs PWM) and a simulated one, so nothing outside hw/ needs a board, root or
// a GPIO chip.
//
// Ownership: open_board() returns a Board that owns every part; parts that share a GPIO chip
// keep it open between them, so parts may be destroyed in any order. No part throws.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "core/status.hpp"
#include "core/time.hpp"

namespace outpost::hw {

// A digital output: an LED or a relay. `true` = on (driven high).
//
// Thread safety: every member may be called from any thread at once; set() and toggle() are
// serialized, so concurrent toggles never lose an update.
class DigitalOutput {
 public:
  virtual ~DigitalOutput() = default;
  // The state last driven onto the line.
  virtual core::Result<bool> get() const = 0;
  virtual core::Status set(bool on) = 0;
  // Atomic read-modify-write; returns the new state.
  virtual core::Result<bool> toggle() = 0;
  // "simulated", or e.g. "gpiod /dev/gpiochip0 line 17".
  virtual std::string describe() const = 0;
};

// Called with the input's new logical state and the time the change began.
using EdgeCallback = std::function<void(bool active, core::TimePoint when)>;

// A digital input: a button. `true` = active (pressed); active-low wiring is handled inside.
//
// Thread safety: every member may be called from any thread at once.
class DigitalInput {
 public:
  virtual ~DigitalInput() = default;
  // The current logical level, read now (not debounced).
  virtual core::Result<bool> get() const = 0;
  // Installs the one edge callback, replacing any previous one; nullptr removes it. May be
  // called at any time; edges that happened before are not replayed. The callback runs on an
  // internal thread (the simulated input: on the thread calling TEST_press), one call at a
  // time, with edges in order and alternating; it must not throw and should return quickly.
  // After on_edge() returns, the previous callback may still be running once; after the
  // input is destroyed, no callback runs. Edges are debounced (libgpiod: reported once the
  // line has been quiet for 20 ms). If the line fails (the chip goes away), that is logged
  // once and no further edges come; get() then returns the error.
  virtual void on_edge(EdgeCallback cb) = 0;
  // "simulated", or e.g. "gpiod /dev/gpiochip0 line 27 active-low".
  virtual std::string describe() const = 0;
};

// A temperature sensor, in degrees Celsius.
//
// Thread safety: celsius() may be called from any thread at once.
class Thermal {
 public:
  virtual ~Thermal() = default;
  // Reads the sensor now. Errors: Status::io naming the source.
  virtual core::Result<double> celsius() const = 0;
  // "simulated", or e.g. "sysfs /sys/class/thermal/thermal_zone0/temp".
  virtual std::string describe() const = 0;
};

// The limits of a Servo's angle, in degrees; 0 is the centre.
inline constexpr double kServoMinDegrees = -90.0;
inline constexpr double kServoMaxDegrees = 90.0;

// A hobby servo (the camera's pan), positioned by angle.
//
// Slew limit (config max_speed > 0): set_angle() only records the target and returns at once;
// an internal thread moves the pulse toward it every 20 ms at no more than max_speed degrees
// per second, and the destructor stops that thread where the servo is (the channel is left
// enabled, holding that position). Without it, set_angle() moves the servo before returning.
//
// Thread safety: every member may be called from any thread at once; set_angle() calls are
// serialized, the last one wins.
class Servo {
 public:
  virtual ~Servo() = default;
  // The commanded position in degrees, -90..90: the last angle set_angle() accepted (initially
  // 0, or the position a Linux servo found and adopted). With a slew limit the servo may still
  // be on its way there.
  virtual core::Result<double> angle() const = 0;
  // Commands a new position. Status::invalid when `degrees` is not finite or outside
  // [-90, 90]: nothing is written and the commanded angle stays. Linux: Status::io naming the
  // path when the pulse width cannot be written (the commanded angle then stays too; with a
  // slew limit: when the worker's last write failed and it is still retrying).
  virtual core::Status set_angle(double degrees) = 0;
  // "simulated", or e.g. "sysfs-pwm /sys/class/pwm/pwmchip0/pwm0" (+ ", max 60 deg/s").
  virtual std::string describe() const = 0;
};

// The simulated button, with a hook for tests to press it.
class SimInput : public DigitalInput {
 public:
  // Sets the simulated level. When it changes, calls the edge callback (if any) on the calling
  // thread before returning; the same level twice fires nothing. Must not be called from
  // inside the edge callback.
  virtual void TEST_press(bool active) = 0;
};

// The parts of the board Outpost runs on. All five are always non-null after open_board().
struct Board {
  std::unique_ptr<DigitalOutput> led;
  std::unique_ptr<DigitalOutput> relay;  // e.g. the greenhouse's ventilation (rules switch it)
  std::unique_ptr<DigitalInput> button;
  std::unique_ptr<Thermal> cpu;
  std::unique_ptr<Servo> servo;  // chosen on its own; see servo->describe()
  // GPIO (led, relay and button together) is simulated: what /api/status reports as "simulated".
  // The thermal sensor is chosen on its own; see cpu->describe().
  bool simulated = true;
  // The button as a SimInput when simulated (not owned; lives as long as `button`), else null.
  SimInput* sim_button = nullptr;
};

// Chooses the implementations:
//  - GPIO: libgpiod on chip cfg.gpio_chip (a device path, not under `root`), LED on output line
//    cfg.led_line and relay on output line cfg.relay_line (both initially off), button on input
//    line cfg.button_line (both edges; pull-up and active-low when cfg.button_active_low, else
//    pull-down), when !cfg.simulate and the chip path exists. Otherwise simulated. LED, relay
//    and button are real or simulated together: if the chip exists but cannot be opened or any
//    line cannot be requested (permissions, line busy, not a GPIO chip), all three are simulated
//    and a warning saying why is logged.
//  - Thermal: <root>/sys/class/thermal/<cfg.thermal_zone>/temp when it reads as a number now,
//    simulated otherwise (logged at info).
//  - Servo: sysfs PWM channel <root>/sys/class/pwm/<servo.pwm_chip>/pwm<servo.pwm_channel>
//    (exported if needed; see detail/servo.hpp) when !hw.simulate and the chip directory exists,
//    simulated otherwise (info); if the chip exists but the channel cannot be set up, simulated
//    with a warning saying why. Exporting may make this wait up to 1 s for the channel.
// `root` is the filesystem root: "/" in production, a fake tree in tests. Never throws.
Board open_board(const config::HwConfig& hw, const config::ServoConfig& servo,
                 const std::filesystem::path& root);
// The same with a default ServoConfig.
Board open_board(const config::HwConfig& cfg, const std::filesystem::path& root);

// Simulated parts, for tests of other modules.
//
// An LED or relay held in memory, initially off.
std::unique_ptr<DigitalOutput> make_sim_output();
// A button that is never pressed unless TEST_press says so; initially released.
std::unique_ptr<SimInput> make_sim_input();
// A CPU at 42.0 °C (seed 002's FakeCPU) plus a sine wave of ±2.0 °C with a 10-minute period,
// phase taken from `clock`'s time since the epoch (so 42.0 at every multiple of 600 s, 44.0
// at +150 s, 40.0 at +450 s): deterministic, and slow enough that charts and rules see
// plausible movement. `clock` must outlive the returned object.
std::unique_ptr<Thermal> make_sim_thermal(const core::Clock& clock = core::Clock::system());
// A servo held in memory at 0 degrees; moves at once.
std::unique_ptr<Servo> make_sim_servo();

}  // namespace outpost::hw
