#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "hw/detail/servo.hpp"
#include "hw/hw.hpp"

namespace outpost::hw {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "servo_test.XXXXXX").string();
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

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// A fake sysfs PWM chip under <root>/sys/class/pwm/pwmchip0 with an "export" file. Nothing
// reacts to export here, so add_channel() plays the kernel's part.
class FakePwm {
 public:
  FakePwm() { write_file(chip() / "export", ""); }
  fs::path root() const { return dir_.path(); }
  fs::path chip() const { return dir_.path() / "sys/class/pwm/pwmchip0"; }
  fs::path channel() const { return chip() / "pwm0"; }
  std::string attr(const std::string& name) const { return read_file(channel() / name); }

  // Creates pwm0/ with empty period, duty_cycle and enable files, atomically (built aside and
  // renamed into place), as the kernel does on export.
  void add_channel() const {
    fs::path staging = dir_.path() / "staging";
    for (const char* name : {"period", "duty_cycle", "enable"}) write_file(staging / name, "");
    fs::rename(staging, channel());
  }

 private:
  TempDir dir_;
};

config::ServoConfig servo_config(double max_speed = 0) {
  config::ServoConfig cfg;  // pwmchip0, channel 0, 20 ms period, 0.5..2.5 ms
  cfg.max_speed = max_speed;
  return cfg;
}

std::unique_ptr<Servo> open_fake(const FakePwm& pwm, double max_speed = 0) {
  auto servo = detail::open_sysfs_servo(servo_config(max_speed), pwm.chip());
  EXPECT_TRUE(servo.is_ok()) << servo.status().to_string();
  return servo ? std::move(*servo) : nullptr;
}

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

// ---- Pure logic ----

TEST(ServoLogic, AcceptsOnlyFiniteAnglesWithinNinetyDegrees) {
  for (double ok : {-90.0, -45.5, 0.0, 12.25, 90.0}) EXPECT_TRUE(detail::check_angle(ok)) << ok;
  for (double bad : {-90.001, 90.001, 91.0, -91.0, 1e300, kNaN, kInf, -kInf}) {
    auto s = detail::check_angle(bad);
    EXPECT_EQ(s.code(), core::Code::kInvalid) << bad;
  }
}

TEST(ServoLogic, PulseIsLinearBetweenTheConfiguredWidths) {
  auto cfg = servo_config();
  EXPECT_EQ(detail::pulse_for(-90, cfg), 500'000u);
  EXPECT_EQ(detail::pulse_for(-45, cfg), 1'000'000u);
  EXPECT_EQ(detail::pulse_for(0, cfg), 1'500'000u);
  EXPECT_EQ(detail::pulse_for(45, cfg), 2'000'000u);
  EXPECT_EQ(detail::pulse_for(90, cfg), 2'500'000u);
  EXPECT_EQ(detail::pulse_for(0.0001, cfg), 1'500'001u);  // rounded to the nearest ns
}

TEST(ServoLogic, ReversedWidthsTurnTheOtherWay) {
  auto cfg = servo_config();
  std::swap(cfg.min_pulse_ns, cfg.max_pulse_ns);
  EXPECT_EQ(detail::pulse_for(-90, cfg), 2'500'000u);
  EXPECT_EQ(detail::pulse_for(90, cfg), 500'000u);
  EXPECT_DOUBLE_EQ(*detail::angle_for(2'000'000, cfg), -45.0);
}

TEST(ServoLogic, AngleForInvertsPulseForWithinRangeOnly) {
  auto cfg = servo_config();
  for (double a : {-90.0, -30.0, 0.0, 17.5, 90.0})
    EXPECT_NEAR(*detail::angle_for(detail::pulse_for(a, cfg), cfg), a, 1e-4) << a;
  EXPECT_FALSE(detail::angle_for(499'999, cfg));
  EXPECT_FALSE(detail::angle_for(2'500'001, cfg));
  EXPECT_FALSE(detail::angle_for(0, cfg));
}

TEST(ServoLogic, StepTowardMovesAtMostTheStepAndLandsExactly) {
  EXPECT_DOUBLE_EQ(detail::step_toward(0, 90, 18), 18);
  EXPECT_DOUBLE_EQ(detail::step_toward(0, -90, 18), -18);
  EXPECT_DOUBLE_EQ(detail::step_toward(80, 90, 18), 90);
  EXPECT_DOUBLE_EQ(detail::step_toward(-85, -90, 18), -90);
  EXPECT_DOUBLE_EQ(detail::step_toward(5, 5, 18), 5);
  EXPECT_DOUBLE_EQ(detail::step_toward(5, 6, 0), 5);
}

// ---- Simulated servo ----

TEST(SimServo, StartsCentredAndFollowsValidAngles) {
  auto servo = make_sim_servo();
  EXPECT_EQ(servo->describe(), "simulated");
  EXPECT_EQ(*servo->angle(), 0.0);
  EXPECT_TRUE(servo->set_angle(-90));
  EXPECT_EQ(*servo->angle(), -90.0);
  EXPECT_TRUE(servo->set_angle(37.5));
  EXPECT_EQ(*servo->angle(), 37.5);
}

TEST(SimServo, RefusesInvalidAnglesAndKeepsItsPosition) {
  auto servo = make_sim_servo();
  ASSERT_TRUE(servo->set_angle(10));
  for (double bad : {91.0, -91.0, kNaN, kInf, -kInf}) {
    EXPECT_EQ(servo->set_angle(bad).code(), core::Code::kInvalid) << bad;
    EXPECT_EQ(*servo->angle(), 10.0);
  }
}

// ---- sysfs PWM ----

TEST(SysfsServo, ConfiguresAnExistingChannelCentred) {
  FakePwm pwm;
  pwm.add_channel();
  auto servo = open_fake(pwm);
  ASSERT_TRUE(servo);
  EXPECT_EQ(pwm.attr("period"), "20000000");
  EXPECT_EQ(pwm.attr("duty_cycle"), "1500000");
  EXPECT_EQ(pwm.attr("enable"), "1");
  EXPECT_EQ(read_file(pwm.chip() / "export"), "");  // already there: not exported again
  EXPECT_EQ(*servo->angle(), 0.0);
  EXPECT_EQ(servo->describe(), "sysfs-pwm " + pwm.channel().string());
}

TEST(SysfsServo, WritesTheDutyCycleForEachAngle) {
  FakePwm pwm;
  pwm.add_channel();
  auto servo = open_fake(pwm);
  ASSERT_TRUE(servo);
  const std::pair<double, const char*> cases[] = {
      {-90, "500000"}, {0, "1500000"}, {90, "2500000"}, {-45, "1000000"}, {22.5, "1750000"}};
  for (auto [deg, duty] : cases) {
    ASSERT_TRUE(servo->set_angle(deg)) << deg;
    EXPECT_EQ(pwm.attr("duty_cycle"), duty) << deg;
    EXPECT_EQ(*servo->angle(), deg);
  }
  EXPECT_EQ(pwm.attr("period"), "20000000");
  EXPECT_EQ(pwm.attr("enable"), "1");
}

TEST(SysfsServo, InvalidAnglesAreRefusedAndNothingIsWritten) {
  FakePwm pwm;
  pwm.add_channel();
  auto servo = open_fake(pwm);
  ASSERT_TRUE(servo);
  ASSERT_TRUE(servo->set_angle(30));
  write_file(pwm.channel() / "duty_cycle", "untouched");
  for (double bad : {91.0, -91.0, 90.5, kNaN, kInf, -kInf}) {
    auto s = servo->set_angle(bad);
    EXPECT_EQ(s.code(), core::Code::kInvalid) << bad;
    EXPECT_EQ(pwm.attr("duty_cycle"), "untouched") << bad;
    EXPECT_EQ(*servo->angle(), 30.0);
  }
}

TEST(SysfsServo, ExportsAMissingChannelAndWaitsForItToAppear) {
  FakePwm pwm;
  std::thread kernel([&] {
    // Plays the kernel: the channel appears a moment after the export.
    while (read_file(pwm.chip() / "export").empty()) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(50ms);
    pwm.add_channel();
  });
  auto servo = detail::open_sysfs_servo(servo_config(), pwm.chip());
  kernel.join();
  ASSERT_TRUE(servo.is_ok()) << servo.status().to_string();
  EXPECT_EQ(read_file(pwm.chip() / "export"), "0");
  EXPECT_EQ(pwm.attr("period"), "20000000");
  EXPECT_EQ(pwm.attr("duty_cycle"), "1500000");
  EXPECT_EQ(pwm.attr("enable"), "1");
}

TEST(SysfsServo, ExportsTheConfiguredChannel) {
  FakePwm pwm;
  auto cfg = servo_config();
  cfg.pwm_channel = 3;
  auto servo = detail::open_sysfs_servo(cfg, pwm.chip(), {.export_timeout = 30ms});
  ASSERT_FALSE(servo.is_ok());
  EXPECT_EQ(read_file(pwm.chip() / "export"), "3");
  EXPECT_EQ(servo.status().code(), core::Code::kIo);
  EXPECT_NE(servo.status().message().find((pwm.chip() / "pwm3").string()), std::string::npos)
      << servo.status().message();
}

TEST(SysfsServo, ChannelThatNeverAppearsIsAnIoErrorAfterTheTimeout) {
  FakePwm pwm;
  auto t0 = Steady::now();
  auto servo = detail::open_sysfs_servo(servo_config(), pwm.chip(), {.export_timeout = 100ms});
  EXPECT_GE(Steady::now() - t0, 100ms);
  ASSERT_FALSE(servo.is_ok());
  EXPECT_EQ(servo.status().code(), core::Code::kIo);
  EXPECT_NE(servo.status().message().find(pwm.channel().string()), std::string::npos);
}

TEST(SysfsServo, MissingExportFileIsAnIoErrorNamingIt) {
  FakePwm pwm;
  fs::remove(pwm.chip() / "export");
  auto servo = detail::open_sysfs_servo(servo_config(), pwm.chip());
  ASSERT_FALSE(servo.is_ok());
  EXPECT_EQ(servo.status().code(), core::Code::kIo);
  EXPECT_NE(servo.status().message().find((pwm.chip() / "export").string()), std::string::npos);
}

TEST(SysfsServo, UnwritableAttributeIsAnIoErrorNamingIt) {
  FakePwm pwm;
  pwm.add_channel();
  fs::remove(pwm.channel() / "enable");
  fs::create_directory(pwm.channel() / "enable");  // open(O_WRONLY) fails: EISDIR
  auto servo = detail::open_sysfs_servo(servo_config(), pwm.chip());
  ASSERT_FALSE(servo.is_ok());
  EXPECT_EQ(servo.status().code(), core::Code::kIo);
  EXPECT_NE(servo.status().message().find((pwm.channel() / "enable").string()), std::string::npos)
      << servo.status().message();
}

TEST(SysfsServo, FailedDutyWriteKeepsTheCommandedAngle) {
  FakePwm pwm;
  pwm.add_channel();
  auto servo = open_fake(pwm);
  ASSERT_TRUE(servo);
  ASSERT_TRUE(servo->set_angle(20));
  fs::remove(pwm.channel() / "duty_cycle");
  fs::create_directory(pwm.channel() / "duty_cycle");
  auto s = servo->set_angle(40);
  EXPECT_EQ(s.code(), core::Code::kIo);
  EXPECT_NE(s.message().find("duty_cycle"), std::string::npos);
  EXPECT_EQ(*servo->angle(), 20.0);
}

TEST(SysfsServo, AdoptsThePositionOfAnEnabledChannel) {
  FakePwm pwm;
  pwm.add_channel();
  write_file(pwm.channel() / "period", "20000000\n");
  write_file(pwm.channel() / "duty_cycle", "2000000\n");
  write_file(pwm.channel() / "enable", "1\n");
  auto servo = open_fake(pwm);
  ASSERT_TRUE(servo);
  EXPECT_DOUBLE_EQ(*servo->angle(), 45.0);
  EXPECT_EQ(pwm.attr("duty_cycle"), "2000000");
}

TEST(SysfsServo, CentresADisabledOrForeignChannel) {
  struct Case {
    const char *period, *duty, *enable;
  } cases[] = {
      {"20000000", "2000000", "0"},  // disabled
      {"10000000", "2000000", "1"},  // another period
      {"20000000", "3000000", "1"},  // a pulse outside the servo's range
      {"20000000", "junk", "1"},
  };
  for (const auto& c : cases) {
    FakePwm pwm;
    pwm.add_channel();
    write_file(pwm.channel() / "period", c.period);
    write_file(pwm.channel() / "duty_cycle", c.duty);
    write_file(pwm.channel() / "enable", c.enable);
    auto servo = open_fake(pwm);
    ASSERT_TRUE(servo);
    EXPECT_EQ(*servo->angle(), 0.0) << c.period << " " << c.duty << " " << c.enable;
    EXPECT_EQ(pwm.attr("duty_cycle"), "1500000");
    EXPECT_EQ(pwm.attr("period"), "20000000");
  }
}

TEST(SysfsServo, ImpossibleConfigurationIsInvalid) {
  FakePwm pwm;
  pwm.add_channel();
  auto zero_period = servo_config();
  zero_period.period_ns = 0;
  auto equal = servo_config();
  equal.max_pulse_ns = equal.min_pulse_ns;
  auto too_long = servo_config();
  too_long.max_pulse_ns = too_long.period_ns + 1;
  for (const auto& cfg : {zero_period, equal, too_long}) {
    auto servo = detail::open_sysfs_servo(cfg, pwm.chip());
    ASSERT_FALSE(servo.is_ok());
    EXPECT_EQ(servo.status().code(), core::Code::kInvalid) << servo.status().message();
  }
  EXPECT_EQ(pwm.attr("period"), "");  // nothing written
}

TEST(SysfsServo, ConcurrentSetsLeaveTheFileAtTheCommandedAngle) {
  FakePwm pwm;
  pwm.add_channel();
  auto servo = open_fake(pwm);
  ASSERT_TRUE(servo);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < 50; ++j) EXPECT_TRUE(servo->set_angle(-90 + 10 * i + j % 7));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(pwm.attr("duty_cycle"),
            std::to_string(detail::pulse_for(*servo->angle(), servo_config())));
}

// ---- Slew limit ----

// Polls the duty cycle file until it reads `final` (or 5 s pass), returning every distinct
// value seen in order.
std::vector<uint64_t> watch_duty(const FakePwm& pwm, uint64_t final) {
  std::vector<uint64_t> seen;
  auto give_up = Steady::now() + 5s;
  while (Steady::now() < give_up) {
    std::string text = pwm.attr("duty_cycle");  // may be caught empty mid-write
    if (!text.empty()) {
      uint64_t v = std::stoull(text);
      if (seen.empty() || seen.back() != v) seen.push_back(v);
      if (v == final) break;
    }
    std::this_thread::sleep_for(1ms);
  }
  return seen;
}

TEST(SlewServo, MovesInStepsNoFasterThanMaxSpeed) {
  FakePwm pwm;
  pwm.add_channel();
  auto servo = open_fake(pwm, 900);  // 90 degrees take 100 ms
  ASSERT_TRUE(servo);
  EXPECT_EQ(servo->describe(), "sysfs-pwm " + pwm.channel().string() + ", max 900 deg/s");
  EXPECT_EQ(pwm.attr("duty_cycle"), "1500000");  // the initial position is set at once

  auto t0 = Steady::now();
  ASSERT_TRUE(servo->set_angle(90));
  EXPECT_LT(Steady::now() - t0, 20ms);  // returns at once
  EXPECT_EQ(*servo->angle(), 90.0);     // the commanded angle, not where the horn is
  auto seen = watch_duty(pwm, 2'500'000);
  auto took = Steady::now() - t0;

  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), 2'500'000u);
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 3s);
  size_t intermediate = 0;
  uint64_t prev = 1'500'000;
  for (uint64_t v : seen) {
    EXPECT_GE(v, prev) << "moves one way";
    // At most two steps' worth (a late wake-up): 900 deg/s * 40 ms = 36 deg = 400 us of pulse.
    EXPECT_LE(v - prev, 400'000u);
    intermediate += v > 1'500'000 && v < 2'500'000;
    prev = v;
  }
  EXPECT_GE(intermediate, 2u);
  EXPECT_EQ(*servo->angle(), 90.0);
}

TEST(SlewServo, ANewTargetMidMoveTurnsBack) {
  FakePwm pwm;
  pwm.add_channel();
  auto servo = open_fake(pwm, 450);  // 90 degrees take 200 ms
  ASSERT_TRUE(servo);
  ASSERT_TRUE(servo->set_angle(90));
  std::this_thread::sleep_for(60ms);
  ASSERT_TRUE(servo->set_angle(-90));
  EXPECT_EQ(*servo->angle(), -90.0);
  auto seen = watch_duty(pwm, 500'000);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), 500'000u);
}

TEST(SlewServo, DestructorStopsTheWorkerMidMove) {
  FakePwm pwm;
  pwm.add_channel();
  auto servo = open_fake(pwm, 10);  // 90 degrees would take 9 s
  ASSERT_TRUE(servo);
  ASSERT_TRUE(servo->set_angle(90));
  std::this_thread::sleep_for(50ms);
  auto t0 = Steady::now();
  servo.reset();
  EXPECT_LT(Steady::now() - t0, 500ms);
  uint64_t stopped_at = std::stoull(pwm.attr("duty_cycle"));
  EXPECT_LT(stopped_at, 1'600'000u);  // 10 deg/s: barely moved
  std::this_thread::sleep_for(60ms);
  EXPECT_EQ(std::stoull(pwm.attr("duty_cycle")), stopped_at);  // and nothing moves it later
}

TEST(SlewServo, WriteFailureIsReportedByTheNextSetAndClearsWhenWritesWorkAgain) {
  FakePwm pwm;
  pwm.add_channel();
  auto servo = open_fake(pwm, 900);
  ASSERT_TRUE(servo);
  fs::remove(pwm.channel() / "duty_cycle");
  fs::create_directory(pwm.channel() / "duty_cycle");
  ASSERT_TRUE(servo->set_angle(45));  // accepted; the worker finds out

  core::Status s;
  for (auto give_up = Steady::now() + 2s; Steady::now() < give_up && s.is_ok();) {
    std::this_thread::sleep_for(5ms);
    s = servo->set_angle(45);
  }
  EXPECT_EQ(s.code(), core::Code::kIo);
  EXPECT_NE(s.message().find("duty_cycle"), std::string::npos);

  fs::remove(pwm.channel() / "duty_cycle");
  write_file(pwm.channel() / "duty_cycle", "");
  auto seen = watch_duty(pwm, 2'000'000);  // the retry (within a second) finishes the move
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), 2'000'000u);
  EXPECT_TRUE(servo->set_angle(0));
}

// ---- open_board ----

config::HwConfig no_gpio() {
  config::HwConfig cfg;
  cfg.gpio_chip = "/nonexistent/gpiochip0";
  return cfg;
}

TEST(OpenBoardServo, UsesSysfsPwmWhenTheChipExists) {
  FakePwm pwm;
  pwm.add_channel();
  Board board = open_board(no_gpio(), servo_config(), pwm.root());
  ASSERT_TRUE(board.servo);
  EXPECT_EQ(board.servo->describe(), "sysfs-pwm " + pwm.channel().string());
  ASSERT_TRUE(board.servo->set_angle(-90));
  EXPECT_EQ(pwm.attr("duty_cycle"), "500000");
}

TEST(OpenBoardServo, SimulatedWithoutAChipOrWhenAskedOrWhenTheChannelFails) {
  TempDir empty;
  EXPECT_EQ(open_board(no_gpio(), servo_config(), empty.path()).servo->describe(), "simulated");
  EXPECT_EQ(open_board(no_gpio(), empty.path()).servo->describe(), "simulated");  // old overload

  FakePwm pwm;
  pwm.add_channel();
  auto simulate = no_gpio();
  simulate.simulate = true;
  EXPECT_EQ(open_board(simulate, servo_config(), pwm.root()).servo->describe(), "simulated");
  EXPECT_EQ(pwm.attr("period"), "");  // untouched

  auto other_chip = servo_config();
  other_chip.pwm_chip = "pwmchip1";
  EXPECT_EQ(open_board(no_gpio(), other_chip, pwm.root()).servo->describe(), "simulated");

  fs::remove(pwm.chip() / "export");
  auto other_channel = servo_config();
  other_channel.pwm_channel = 1;  // not exported, and no export file: fails at once
  EXPECT_EQ(open_board(no_gpio(), other_channel, pwm.root()).servo->describe(), "simulated");
}

}  // namespace
}  // namespace outpost::hw
