// SysInfo: the thin I/O layer that feeds files under the root to the pure parsers.
#include "sysinfo/sysinfo.hpp"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <system_error>

namespace outpost::sysinfo {

namespace fs = std::filesystem;

namespace {

// Far above any file read here (cpuinfo of a 256-core machine is ~400 KiB); a bound, so a
// strange file under a strange root cannot make one request allocate without limit.
constexpr size_t kMaxFileBytes = 4 << 20;

// Reads a whole small file. /proc and /sys files report size 0, so read until EOF rather than
// trusting stat; one read() usually suffices.
std::optional<std::string> read_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() >= kMaxFileBytes) break;
  }
  ::close(fd);
  return out;
}

std::string trimmed(std::string s) {
  constexpr const char* kSpace = " \t\n\r\v\f";
  s.erase(s.find_last_not_of(kSpace) + 1);
  s.erase(0, s.find_first_not_of(kSpace));
  return s;
}

// Reads files relative to the root and remembers whether any read succeeded, which is how
// system() tells "this file is missing" (fall back) from "this is not a root at all" (error).
class Reader {
 public:
  explicit Reader(const fs::path& root) : root_(root) {}

  std::optional<std::string> read(std::string_view relative) {
    auto text = read_file(root_ / relative);
    if (text) any_read_ = true;
    return text;
  }

  // The first of `relatives` that can be read.
  std::optional<std::string> read_first(std::initializer_list<std::string_view> relatives) {
    for (const auto rel : relatives)
      if (auto text = read(rel)) return text;
    return std::nullopt;
  }

  bool any_read() const { return any_read_; }

 private:
  const fs::path& root_;
  bool any_read_ = false;
};

// Interface names become path components under sys/class/net; refuse anything that could
// walk out of that directory (a real kernel never produces such a name, a fake tree might).
bool safe_path_component(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// pidof's question without pidof: does any proc/<pid>/comm read "hostapd"?
bool process_running(const fs::path& root, std::string_view comm) {
  std::error_code ec;
  fs::directory_iterator it(root / "proc", ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const fs::path& dir = it->path();
    if (!all_digits(dir.filename().native())) continue;
    // The process may exit between listing and reading; a failed read is simply not a match.
    if (auto text = read_file(dir / "comm"); text && trimmed(*text) == comm) return true;
  }
  return false;
}

std::string ipv4_netmask(int prefix) {
  if (prefix < 0) prefix = 0;
  if (prefix > 32) prefix = 32;
  const uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  return std::to_string(mask >> 24) + '.' + std::to_string((mask >> 16) & 0xff) + '.' +
         std::to_string((mask >> 8) & 0xff) + '.' + std::to_string(mask & 0xff);
}

InterfaceFacts named(std::string name) {
  InterfaceFacts i;
  i.name = std::move(name);
  return i;
}

std::string systime_now(const core::Clock& clock) {
  const auto secs = std::chrono::floor<std::chrono::seconds>(clock.now());
  const std::time_t t = static_cast<std::time_t>(secs.time_since_epoch().count());
  // `date` is a fresh process, so it sees a time-zone change at once; tzset() re-reads TZ and
  // /etc/localtime so we do too (localtime_r alone may keep the zone it first loaded).
  ::tzset();
  std::tm local{};
  if (::localtime_r(&t, &local) == nullptr) return "";
  return format_systime(local, local.tm_zone != nullptr ? local.tm_zone : "");
}

}  // namespace

SysInfo::SysInfo(fs::path root, const AddressSource* addresses, const core::Clock* clock)
    : root_(std::move(root)), addresses_(addresses), clock_(clock) {
  if (addresses_ == nullptr) {
    // The host's addresses next to a fake tree's interfaces would be a lie; only the real
    // root gets the real addresses by default.
    static const StaticAddressSource kNone({});
    addresses_ = root_.lexically_normal() == "/" ? &AddressSource::system() : &kNone;
  }
  if (clock_ == nullptr) clock_ = &core::Clock::system();
}

core::Result<double> SysInfo::uptime_seconds() const {
  const auto text = read_file(root_ / "proc/uptime");
  if (!text) return core::Status::io("cannot read " + (root_ / "proc/uptime").string());
  const auto seconds = parse_uptime(*text);
  if (!seconds) return core::Status::io("malformed " + (root_ / "proc/uptime").string());
  return *seconds;
}

core::Result<SystemFacts> SysInfo::system() const {
  Reader reader(root_);
  SystemFacts f;

  if (auto text = reader.read_first({"proc/sys/kernel/hostname", "etc/hostname"}))
    f.hostname = trimmed(std::move(*text));

  if (auto text = reader.read("proc/uptime")) f.uptime_seconds = parse_uptime(*text);
  if (f.uptime_seconds) f.uptime = format_uptime(*f.uptime_seconds);

  f.systime = systime_now(*clock_);

  if (auto text = reader.read("proc/meminfo")) f.used_memory = parse_meminfo(*text).value_or(0);

  struct statvfs vfs {};
  if (::statvfs(root_.c_str(), &vfs) == 0) {
    // All three counts are in f_frsize units, so the ratio needs no conversion.
    f.used_disk = disk_used_percent(vfs.f_blocks, vfs.f_bfree, vfs.f_bavail).value_or(0);
  }

  const auto cpuinfo = reader.read("proc/cpuinfo");
  std::optional<int> cpus = cpuinfo ? count_processors(*cpuinfo) : std::nullopt;
  if (!cpus) {
    if (auto text = reader.read("sys/devices/system/cpu/online")) cpus = parse_cpu_list(*text);
  }
  f.processor_count = cpus.value_or(1);

  if (auto text = reader.read("proc/loadavg")) f.load_avg_1min = parse_loadavg(*text).value_or(0);
  f.system_load_percentage = round2(f.load_avg_1min * 100.0 / f.processor_count);

  if (auto text = reader.read("sys/class/thermal/thermal_zone0/temp"))
    f.system_temperature = parse_temperature(*text);

  f.hostapd_status = process_running(root_, "hostapd") ? 1 : 0;

  if (auto text = reader.read_first({"etc/os-release", "usr/lib/os-release"}))
    f.operating_system = parse_os_release(*text);

  if (auto text = reader.read("proc/sys/kernel/osrelease"))
    f.kernel_version = trimmed(std::move(*text));

  std::optional<std::string> board;
  if (cpuinfo) {
    if (const auto code = cpuinfo_revision(*cpuinfo)) board = decode_revision(*code);
  }
  if (!board) {
    if (auto model =
            reader.read_first({"proc/device-tree/model", "sys/firmware/devicetree/base/model"}))
      board = model_to_board_name(*model);
  }
  f.rpi_revision = board ? *board : std::string(kUnknownDevice);

  if (!reader.any_read())
    return core::Status::io("no system file readable under " + root_.string());
  return f;
}

core::Result<std::vector<InterfaceFacts>> SysInfo::networking() const {
  std::vector<InterfaceFacts> out;
  bool listed = false;

  if (auto text = read_file(root_ / "proc/net/dev")) {
    listed = true;
    for (auto& c : parse_proc_net_dev(*text)) {
      InterfaceFacts i = named(std::move(c.name));
      i.rx_bytes = c.rx_bytes;
      i.rx_packets = c.rx_packets;
      i.tx_bytes = c.tx_bytes;
      i.tx_packets = c.tx_packets;
      out.push_back(std::move(i));
    }
  } else {
    std::error_code ec;
    fs::directory_iterator it(root_ / "sys/class/net", ec);
    if (!ec) listed = true;
    for (; !ec && it != fs::directory_iterator(); it.increment(ec))
      out.push_back(named(it->path().filename().string()));
  }

  const std::vector<InterfaceAddress> addresses = addresses_->addresses();
  if (!listed) {
    for (const auto& a : addresses) {
      const bool known = std::any_of(
          out.begin(), out.end(), [&](const InterfaceFacts& i) { return i.name == a.interface; });
      if (!known) out.push_back(named(a.interface));
    }
    if (out.empty()) return core::Status::io("no network interface found under " + root_.string());
  }

  for (auto& i : out) {
    for (const auto& a : addresses) {
      if (a.interface != i.name) continue;
      if (a.family == InterfaceAddress::Family::kIpv4) {
        if (!i.ipv4) {
          i.ipv4 = a.address;
          i.netmask = ipv4_netmask(a.prefix_length);
        }
      } else {
        i.ipv6.push_back(a.address + '/' + std::to_string(a.prefix_length));
      }
    }
    if (!safe_path_component(i.name)) continue;
    if (auto text = read_file(root_ / "sys/class/net" / i.name / "address")) {
      auto mac = trimmed(std::move(*text));
      if (!mac.empty()) i.mac = std::move(mac);
    }
  }
  return out;
}

}  // namespace outpost::sysinfo
