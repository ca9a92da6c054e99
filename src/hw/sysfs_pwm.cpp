// The servo on a Linux sysfs PWM channel (/sys/class/pwm/pwmchipN/pwmM).

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <mutex>
#include <sstream>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include <spdlog/spdlog.h>

#include "hw/detail/servo.hpp"

namespace outpost::hw::detail {
namespace {

namespace fs = std::filesystem;
using Steady = std::chrono::steady_clock;

// While a slew write keeps failing, retry this often rather than every step.
constexpr std::chrono::milliseconds kFaultRetry{1000};
// How often to look again for an exported channel's directory and permissions.
constexpr std::chrono::milliseconds kExportPoll{10};

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

core::Status io_error(const fs::path& p, int err) {
  return core::Status::io(p.string() + ": " + errno_text(err));
}

// Writes `text` to a sysfs attribute in one write(2), as sysfs requires. Returns 0 or errno.
// O_TRUNC is a no-op on sysfs and keeps a fake tree's regular files exact.
int write_attr(const fs::path& p, std::string_view text) {
  int fd = ::open(p.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n;
  do {
    n = ::write(fd, text.data(), text.size());
  } while (n < 0 && errno == EINTR);
  int err = n < 0 ? errno : 0;
  if (n >= 0 && static_cast<size_t>(n) != text.size()) err = EIO;
  ::close(fd);
  return err;
}

// Reads a sysfs attribute holding one unsigned integer; nullopt if missing or not a number.
std::optional<uint64_t> read_attr(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[32];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0 || static_cast<size_t>(n) == sizeof buf) return std::nullopt;
  std::string_view text(buf, static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

class SysfsServo final : public Servo {
 public:
  SysfsServo(const config::ServoConfig& cfg, fs::path dir, double initial)
      : cfg_(cfg),
        dir_(std::move(dir)),
        duty_path_(dir_ / "duty_cycle"),
        target_(initial),
        position_(initial) {
    if (cfg_.max_speed > 0) worker_ = std::thread([this] { run(); });
  }

  ~SysfsServo() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
  }

  core::Result<double> angle() const override {
    std::lock_guard lock(mu_);
    return target_;
  }

  core::Status set_angle(double degrees) override {
    if (auto s = check_angle(degrees); !s) return s;
    std::lock_guard lock(mu_);
    if (cfg_.max_speed > 0) {
      if (!fault_.is_ok()) return fault_;
      target_ = degrees;
      cv_.notify_all();
      return core::Status::ok();
    }
    // Under the lock, so that concurrent calls reach the PWM in the order they take effect.
    if (auto s = write_pulse(degrees); !s) return s;
    target_ = position_ = degrees;
    return core::Status::ok();
  }

  std::string describe() const override {
    std::ostringstream out;
    out << "sysfs-pwm " << dir_.string();
    if (cfg_.max_speed > 0) out << ", max " << cfg_.max_speed << " deg/s";
    return out.str();
  }

 private:
  core::Status write_pulse(double degrees) const {
    if (int err = write_attr(duty_path_, std::to_string(pulse_for(degrees, cfg_))))
      return io_error(duty_path_, err);
    return core::Status::ok();
  }

  // The slew worker: idle until the target differs from the position, then one step per
  // kSlewStep. A step covers the time that really passed (a late wake-up does not slow the
  // servo down) but never more than two steps' worth, so a stall never turns into a jump.
  void run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stop_ || position_ != target_; });
      if (stop_) return;
      auto last = Steady::now();
      while (!stop_ && position_ != target_) {
        cv_.wait_for(lock, fault_.is_ok() ? kSlewStep : kFaultRetry, [&] { return stop_; });
        if (stop_) return;
        auto now = Steady::now();
        auto dt = std::min<Steady::duration>(now - last, 2 * kSlewStep);
        last = now;
        double next = step_toward(position_, target_,
                                  cfg_.max_speed * std::chrono::duration<double>(dt).count());
        lock.unlock();  // only this thread writes the duty cycle in slew mode
        core::Status s = write_pulse(next);
        lock.lock();
        if (s) {
          position_ = next;
          if (!fault_.is_ok())
            spdlog::info("hw: servo: writing {} works again", duty_path_.string());
          fault_ = core::Status::ok();
        } else {
          if (fault_.is_ok()) spdlog::warn("hw: servo: cannot move: {}; retrying", s.message());
          fault_ = std::move(s);
        }
      }
    }
  }

  const config::ServoConfig cfg_;
  const fs::path dir_;
  const fs::path duty_path_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  double target_;       // the commanded angle
  double position_;     // the angle the PWM was last set to
  core::Status fault_;  // slew mode: the last write's error while the worker retries
  bool stop_ = false;
  std::thread worker_;  // slew mode only; started last, after every member it uses
};

// Period, duty cycle, enable — in an order the kernel accepts: it refuses a period shorter
// than the current duty cycle (EINVAL), so then the duty cycle goes to 0 first. Returns the
// errno of the failed write (0 when all succeeded) and its status.
std::pair<int, core::Status> configure(const fs::path& dir, const config::ServoConfig& cfg,
                                       uint64_t pulse) {
  const fs::path period = dir / "period", duty = dir / "duty_cycle", enable = dir / "enable";
  const std::string period_text = std::to_string(cfg.period_ns);
  int err = write_attr(period, period_text);
  if (err == EINVAL) {
    if ((err = write_attr(duty, "0"))) return {err, io_error(duty, err)};
    err = write_attr(period, period_text);
  }
  if (err) return {err, io_error(period, err)};
  if ((err = write_attr(duty, std::to_string(pulse)))) return {err, io_error(duty, err)};
  if ((err = write_attr(enable, "1"))) return {err, io_error(enable, err)};
  return {0, core::Status::ok()};
}

}  // namespace

core::Result<std::unique_ptr<Servo>> open_sysfs_servo(const config::ServoConfig& cfg,
                                                      const fs::path& chip_dir,
                                                      const SysfsServoOptions& options) {
  if (cfg.period_ns == 0) return core::Status::invalid("servo.period_ns is 0");
  if (cfg.min_pulse_ns == cfg.max_pulse_ns)
    return core::Status::invalid("servo.min_pulse_ns equals servo.max_pulse_ns");
  if (std::max(cfg.min_pulse_ns, cfg.max_pulse_ns) > cfg.period_ns)
    return core::Status::invalid("servo pulse longer than servo.period_ns");

  const fs::path dir = chip_dir / ("pwm" + std::to_string(cfg.pwm_channel));
  const auto deadline = Steady::now() + options.export_timeout;
  bool exported = false;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    const fs::path export_path = chip_dir / "export";
    // EBUSY: someone else exported it between our look and our write; fine.
    if (int err = write_attr(export_path, std::to_string(cfg.pwm_channel)); err && err != EBUSY)
      return io_error(export_path, err);
    exported = true;
    while (!fs::is_directory(dir, ec)) {
      if (Steady::now() >= deadline)
        return core::Status::io(dir.string() + ": did not appear after exporting channel " +
                                std::to_string(cfg.pwm_channel));
      std::this_thread::sleep_for(kExportPoll);
    }
  }

  double initial = 0;
  if (read_attr(dir / "enable") == 1u && read_attr(dir / "period") == cfg.period_ns) {
    if (auto duty = read_attr(dir / "duty_cycle"))
      if (auto adopted = angle_for(*duty, cfg)) initial = *adopted;
  }

  while (true) {
    auto [err, status] = configure(dir, cfg, pulse_for(initial, cfg));
    if (!err) break;
    // A freshly exported channel's files belong to root until udev hands them to the gpio group.
    bool udev_pending = exported && (err == EACCES || err == EPERM);
    if (!udev_pending || Steady::now() >= deadline) return status;
    std::this_thread::sleep_for(kExportPoll);
  }
  return std::unique_ptr<Servo>(std::make_unique<SysfsServo>(cfg, dir, initial));
}

}  // namespace outpost::hw::detail
