// The CPU temperature from a sysfs thermal zone.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string_view>
#include <system_error>
#include <utility>

#include "hw/detail/linux.hpp"

namespace outpost::hw::detail {
namespace {

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

class SysfsThermal final : public Thermal {
 public:
  explicit SysfsThermal(std::filesystem::path path) : path_(std::move(path)) {}

  core::Result<double> celsius() const override {
    // Open, read once and close on every call: sysfs produces the value at read time, and a
    // zone that disappears (module unloaded) shows up as an error instead of a stale number.
    int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      return core::Status::io(path_.string() + ": " + errno_text(err));
    }
    char buf[32];
    ssize_t n;
    do {
      n = ::read(fd, buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    int err = errno;
    ::close(fd);
    if (n < 0) return core::Status::io(path_.string() + ": " + errno_text(err));
    // A full buffer means more text than any temperature has: not a thermal zone.
    if (static_cast<size_t>(n) == sizeof buf) return malformed();

    std::string_view text(buf, static_cast<size_t>(n));
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
    long long millideg = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), millideg);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return malformed();
    return static_cast<double>(millideg) / 1000.0;
  }

  std::string describe() const override { return "sysfs " + path_.string(); }

 private:
  core::Status malformed() const {
    return core::Status::io(path_.string() + ": not an integer temperature in millidegrees");
  }

  std::filesystem::path path_;
};

}  // namespace

std::unique_ptr<Thermal> make_sysfs_thermal(std::filesystem::path path) {
  return std::make_unique<SysfsThermal>(std::move(path));
}

}  // namespace outpost::hw::detail
