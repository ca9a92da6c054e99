// LED, relay and button on a GPIO character device through libgpiod 1.6 (Debian bookworm).
//
// There is no GPIO chip on the build machines, so this file is exercised only up to the
// failure paths of open_gpiod(); it is kept to direct libgpiod calls, with the debounce logic
// (the only part with real decisions) in detail/debounce.hpp where it is unit-tested.

#include <gpiod.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "hw/detail/debounce.hpp"
#include "hw/detail/linux.hpp"

namespace outpost::hw::detail {
namespace {

constexpr const char* kConsumer = "outpost";  // shown by `gpioinfo` as the line's user
constexpr unsigned kEventBatch = 16;

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

using ChipPtr = std::shared_ptr<gpiod_chip>;

// A requested line. Releasing it before the chip closes (the shared ChipPtr) lets the LED and
// the button be destroyed in any order.
class LineRequest {
 public:
  LineRequest(ChipPtr chip, gpiod_line* line) : chip_(std::move(chip)), line_(line) {}
  LineRequest(LineRequest&& o) noexcept
      : chip_(std::move(o.chip_)), line_(std::exchange(o.line_, nullptr)) {}
  LineRequest(const LineRequest&) = delete;
  LineRequest& operator=(const LineRequest&) = delete;
  LineRequest& operator=(LineRequest&&) = delete;
  ~LineRequest() {
    if (line_ != nullptr) gpiod_line_release(line_);
  }
  gpiod_line* get() const { return line_; }

 private:
  ChipPtr chip_;
  gpiod_line* line_;
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd& operator=(Fd&&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

core::Result<bool> read_level(gpiod_line* line, const std::string& desc) {
  int v = gpiod_line_get_value(line);
  if (v < 0) {
    int err = errno;
    return core::Status::io(desc + ": " + errno_text(err));
  }
  return v == 1;
}

class GpiodOutput final : public DigitalOutput {
 public:
  GpiodOutput(LineRequest line, std::string desc)
      : line_(std::move(line)), desc_(std::move(desc)) {}

  core::Result<bool> get() const override {
    std::lock_guard lock(mu_);
    return read_level(line_.get(), desc_);
  }
  core::Status set(bool on) override {
    std::lock_guard lock(mu_);
    return write(on);
  }
  core::Result<bool> toggle() override {
    std::lock_guard lock(mu_);
    auto cur = read_level(line_.get(), desc_);
    if (!cur) return cur.status();
    if (auto s = write(!*cur); !s) return s;
    return !*cur;
  }
  std::string describe() const override { return desc_; }

 private:
  core::Status write(bool on) {
    if (gpiod_line_set_value(line_.get(), on ? 1 : 0) < 0) {
      int err = errno;
      return core::Status::io(desc_ + ": " + errno_text(err));
    }
    return core::Status::ok();
  }

  mutable std::mutex mu_;  // makes toggle's read-modify-write atomic against set()
  LineRequest line_;
  std::string desc_;
};

class GpiodInput final : public DigitalInput {
 public:
  // `stop`: an eventfd; `level`: the line's logical level now.
  GpiodInput(LineRequest line, Fd stop, bool level, std::string desc)
      : line_(std::move(line)), stop_(std::move(stop)), desc_(std::move(desc)), debouncer_(level) {
    thread_ = std::thread([this] { watch(); });
  }

  ~GpiodInput() override {
    // Adding 1 to a fresh eventfd counter cannot fail; the watcher wakes from poll and returns.
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_.get(), &one, sizeof one);
    thread_.join();
  }

  core::Result<bool> get() const override {
    std::lock_guard lock(line_mu_);
    return read_level(line_.get(), desc_);
  }

  void on_edge(EdgeCallback cb) override {
    std::lock_guard lock(mu_);
    cb_ = std::move(cb);
  }

  std::string describe() const override { return desc_; }

 private:
  // Waits on the line's event fd and the stop eventfd together, so stopping is immediate
  // rather than bounded by a wait timeout. Events only restart the debounce quiet period;
  // the level reported is read once the line has settled (see detail/debounce.hpp).
  void watch() {
    using Steady = Debouncer::Steady;
    pollfd fds[2] = {{gpiod_line_event_get_fd(line_.get()), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    core::TimePoint began{};  // when the current burst of edges began: the moment of the press
    for (;;) {
      int timeout_ms = -1;
      if (auto deadline = debouncer_.deadline()) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Steady::now());
        timeout_ms = static_cast<int>(std::max<int64_t>(0, left.count()));
      }
      if (::poll(fds, 2, timeout_ms) < 0) {
        if (errno == EINTR) continue;
        return stopped("poll", errno);
      }
      if (fds[1].revents != 0) return;
      if ((fds[0].revents & POLLIN) != 0) {
        gpiod_line_event events[kEventBatch];
        std::unique_lock lock(line_mu_);
        if (gpiod_line_event_read_multiple(line_.get(), events, kEventBatch) < 0) {
          return stopped("reading events", errno);
        }
        lock.unlock();
        if (!debouncer_.deadline()) began = core::now();
        debouncer_.edge(Steady::now());
        continue;
      }
      if (fds[0].revents != 0) return stopped("event fd", EIO);  // POLLERR/POLLHUP: chip gone

      auto t = Steady::now();
      if (auto deadline = debouncer_.deadline(); deadline && t >= *deadline) {
        std::unique_lock lock(line_mu_);
        int v = gpiod_line_get_value(line_.get());
        if (v < 0) return stopped("reading the level", errno);
        lock.unlock();
        if (auto edge = debouncer_.settle(t, v == 1)) deliver(*edge, began);
      }
    }
  }

  void deliver(bool active, core::TimePoint when) {
    EdgeCallback cb;
    {
      std::lock_guard lock(mu_);
      cb = cb_;
    }
    if (!cb) return;
    // An exception escaping a thread would terminate the server over a button callback.
    try {
      cb(active, when);
    } catch (const std::exception& e) {
      spdlog::error("hw: {} edge callback threw: {}", desc_, e.what());
    } catch (...) {
      spdlog::error("hw: {} edge callback threw", desc_);
    }
  }

  // A failing event fd does not recover (the chip went away), so the watcher logs once and
  // ends instead of spinning; get() keeps reporting the error to callers.
  void stopped(const char* what, int err) {
    spdlog::error("hw: {}: {} failed ({}); no more button edges", desc_, what, errno_text(err));
  }

  LineRequest line_;
  // libgpiod objects are not safe for concurrent use, and get() runs on io threads while the
  // watcher reads events from the same line.
  mutable std::mutex line_mu_;
  Fd stop_;
  std::string desc_;
  Debouncer debouncer_;  // watcher thread only
  std::mutex mu_;        // guards cb_
  EdgeCallback cb_;
  std::thread thread_;  // last: starts after, and joins before, everything it uses
};

}  // namespace

core::Result<GpioParts> open_gpiod(const config::HwConfig& cfg) {
  const std::string& path = cfg.gpio_chip;
  // Reads errno before anything else can overwrite it.
  auto failed = [&](const char* what, std::optional<unsigned> line = std::nullopt) {
    int err = errno;
    std::string where = line ? fmt::format("{} line {}", path, *line) : path;
    return core::Status::unavailable(fmt::format("{}: {}: {}", where, what, errno_text(err)));
  };

  gpiod_chip* raw = gpiod_chip_open(path.c_str());
  if (raw == nullptr) return failed("cannot open as a GPIO chip");
  ChipPtr chip(raw, gpiod_chip_close);

  gpiod_line* led = gpiod_chip_get_line(raw, cfg.led_line);
  if (led == nullptr) return failed("no such line", cfg.led_line);
  if (gpiod_line_request_output(led, kConsumer, 0) < 0) {
    return failed("cannot request as output", cfg.led_line);
  }
  LineRequest led_req(chip, led);

  gpiod_line* relay = gpiod_chip_get_line(raw, cfg.relay_line);
  if (relay == nullptr) return failed("no such line", cfg.relay_line);
  if (gpiod_line_request_output(relay, kConsumer, 0) < 0) {
    return failed("cannot request as output", cfg.relay_line);
  }
  LineRequest relay_req(chip, relay);

  gpiod_line* button = gpiod_chip_get_line(raw, cfg.button_line);
  if (button == nullptr) return failed("no such line", cfg.button_line);
  // Active-low: the button shorts the line to ground, so pull it up and let the kernel invert
  // the level; active-high: it connects 3.3 V, so pull it down. Bias needs Linux 5.5+.
  int flags = cfg.button_active_low
                  ? GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_UP | GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW
                  : GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_DOWN;
  if (gpiod_line_request_both_edges_events_flags(button, kConsumer, flags) < 0) {
    return failed("cannot request for edge events", cfg.button_line);
  }
  LineRequest button_req(chip, button);
  int level = gpiod_line_get_value(button);
  if (level < 0) return failed("cannot read", cfg.button_line);

  int efd = ::eventfd(0, EFD_CLOEXEC);
  if (efd < 0) return failed("eventfd");
  Fd stop(efd);

  GpioParts parts;
  try {
    parts.led = std::make_unique<GpiodOutput>(std::move(led_req),
                                              fmt::format("gpiod {} line {}", path, cfg.led_line));
    parts.relay = std::make_unique<GpiodOutput>(std::move(relay_req),
                                                fmt::format("gpiod {} line {}", path, cfg.relay_line));
    parts.button =
        std::make_unique<GpiodInput>(std::move(button_req), std::move(stop), level == 1,
                                     fmt::format("gpiod {} line {}{}", path, cfg.button_line,
                                                 cfg.button_active_low ? " active-low" : ""));
  } catch (const std::system_error& e) {  // std::thread could not start
    return core::Status::unavailable(
        fmt::format("{}: starting the button thread: {}", path, e.what()));
  }
  return parts;
}

}  // namespace outpost::hw::detail
