// System and network facts for the RaspAP-compatible endpoints (GET /system, GET /networking).
//
// Everything is read from /proc, /sys, /etc and the device tree under a root directory ("/" in
// production, a fake tree in tests), plus statvfs(root) for disk usage and getifaddrs() for IP
// addresses when the root is "/". Nothing here ever runs a shell command or spawns a process.
//
// Field semantics follow RaspAP's api/modules/system.py and api/modules/networking.py (which
// shell out to `uptime -p`, `date`, `free`, `df`, `nproc`, `pidof`, ...); the deliberate
// differences are noted at each field.
//
// A missing or malformed file never fails a whole answer: each field falls back to the value
// documented next to it, so a request always gets an answer.
#pragma once

#include <cstdint>
#include <ctime>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.hpp"
#include "core/time.hpp"

namespace outpost::sysinfo {

// rpiRevision when the board is not a Raspberry Pi we recognise: RaspAP's own text for that case.
inline constexpr std::string_view kUnknownDevice = "Unknown Device";

// The facts behind GET /system. Percentages are 0..100, rounded to 2 decimals.
struct SystemFacts {
  std::string hostname;                  // proc/sys/kernel/hostname, else etc/hostname; "" if none
  std::string uptime;                    // `uptime -p` text, "up 2 days, 3 hours"; "" if unknown
  std::optional<double> uptime_seconds;  // proc/uptime; not part of the RaspAP answer
  std::string systime;                   // `date` in en_GB: "Sun 10 Mar 11:11:11 CET 2024"
  double used_memory = 0;                // (MemTotal - MemAvailable) / MemTotal; 0 if unknown
  double used_disk = 0;                  // statvfs(root): used / (used + avail); 0 if unknown
  int processor_count = 1;               // CPUs; 1 if unknown (never 0: it divides the load)
  double load_avg_1min = 0;              // proc/loadavg, 2 decimals; 0 if unknown
  double system_load_percentage = 0;     // load_avg_1min * 100 / processor_count, 2 decimals
  std::optional<double> system_temperature;  // thermal_zone0 in °C; nullopt (JSON null) if absent
  int hostapd_status = 0;                    // 1 if a process named "hostapd" runs, else 0
  std::string operating_system;              // PRETTY_NAME of os-release; "" if no os-release
  std::string kernel_version;                // proc/sys/kernel/osrelease (`uname -r`); "" if none
  std::string rpi_revision{kUnknownDevice};  // "Pi 4 Model B", ...; kUnknownDevice if not a Pi
};

// One network interface for GET /networking.
struct InterfaceFacts {
  std::string name;                    // as in proc/net/dev: "eth0", "wlan0", "lo"
  std::optional<std::string> ipv4;     // the first (primary) IPv4 address, "192.168.1.2"
  std::optional<std::string> netmask;  // that address's netmask, "255.255.255.0"
  std::vector<std::string> ipv6;       // every IPv6 address with its prefix, "fe80::1/64"
  std::optional<std::string> mac;      // sys/class/net/<name>/address, "b8:27:eb:01:02:03"
  uint64_t rx_bytes = 0;
  uint64_t rx_packets = 0;
  uint64_t tx_bytes = 0;
  uint64_t tx_packets = 0;
};

// One address of one interface, as an AddressSource reports it.
struct InterfaceAddress {
  enum class Family { kIpv4, kIpv6 };
  std::string interface;  // "eth0"
  Family family = Family::kIpv4;
  std::string address;    // textual form, "192.168.1.2" or "fe80::1"
  int prefix_length = 0;  // 24 for 255.255.255.0
};

// Where IP addresses come from: /proc has no usable form of them, so they are injected.
// Implementations must be safe to call from several threads at once.
class AddressSource {
 public:
  virtual ~AddressSource() = default;
  // Every address of every interface, in the kernel's order (an interface's primary address
  // before its secondaries). Empty when nothing can be listed.
  virtual std::vector<InterfaceAddress> addresses() const = 0;
  // The real machine's addresses, from getifaddrs().
  static const AddressSource& system();
};

// A fixed list of addresses: for tests, and for a fake root.
class StaticAddressSource final : public AddressSource {
 public:
  explicit StaticAddressSource(std::vector<InterfaceAddress> addresses)
      : addresses_(std::move(addresses)) {}
  std::vector<InterfaceAddress> addresses() const override { return addresses_; }

 private:
  std::vector<InterfaceAddress> addresses_;
};

// Reads the facts under one root. Holds no state besides its arguments, so every member may be
// called from any number of threads at once. Each call reads the files afresh (a handful of
// small reads, plus one comm file per process for hostapdStatus).
class SysInfo {
 public:
  // `root`: where proc/, sys/, etc/ are read from. `addresses`: where IP addresses come from;
  // nullptr means AddressSource::system() when `root` is "/" and no addresses otherwise (a
  // fake tree must not report the host's addresses). `clock`: the time systime shows; nullptr
  // means core::Clock::system(). Neither pointer is owned; both must outlive this object.
  explicit SysInfo(std::filesystem::path root, const AddressSource* addresses = nullptr,
                   const core::Clock* clock = nullptr);

  // GET /system. Io error only when not one file under the root could be read (a wrong root).
  core::Result<SystemFacts> system() const;

  // GET /networking: every interface of proc/net/dev (lo included), in that file's order. Without
  // proc/net/dev the names come from sys/class/net, then from the address source, with zero
  // counters. Io error only when none of the three yields an interface.
  core::Result<std::vector<InterfaceFacts>> networking() const;

  // Seconds since boot from proc/uptime. Io error when it is missing or malformed.
  core::Result<double> uptime_seconds() const;

  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
  const AddressSource* addresses_;  // never null after construction
  const core::Clock* clock_;        // never null after construction
};

// GET /system in RaspAP's field names and JSON types: hostname, uptime, systime (strings);
// usedMemory, usedDisk, LoadAvg1Min, systemLoadPercentage (numbers); processorCount,
// hostapdStatus (integers); systemTemperature (number, or null when unknown: RaspAP answers 0
// there, which a client cannot tell from a real 0 °C); operatingSystem, kernelVersion,
// rpiRevision (strings). uptime_seconds is not rendered.
nlohmann::ordered_json to_json(const SystemFacts& facts);

// GET /networking in RaspAP's shape, keyed by interface name:
//   {"interfaces": {"eth0": {"IP_address": "192.168.1.2" | null, "Netmask": "255.255.255.0" | null,
//                            "MAC_address": "b8:27:eb:01:02:03" | null, "IPv6_addresses": [...]}},
//    "throughput": {"eth0": {"RX_packets": 1, "RX_bytes": 2, "TX_packets": 3, "TX_bytes": 4}}}
// "IPv6_addresses" is our addition. Every interface given is rendered; RaspAP itself hides
// names starting with "lo" or "docker" (see raspap_hides()), callers filter if they want that.
nlohmann::ordered_json to_json(const std::vector<InterfaceFacts>& interfaces);

// True for the interfaces RaspAP leaves out of /networking: names starting "lo" or "docker".
bool raspap_hides(std::string_view interface_name);

// --- Pure parsers and formatters: text in, values out; they never touch the filesystem. ---

// Rounds half away from zero to 2 decimals.
double round2(double v);

// The first field of proc/uptime, in seconds. nullopt when malformed or negative.
std::optional<double> parse_uptime(std::string_view proc_uptime);

// `uptime -p` (procps-ng): "up " then decades, years (365 days), weeks, days, hours and minutes,
// zero parts left out, comma-separated, singular for 1: "up 1 week, 2 days, 3 hours, 4 minutes".
// Under a minute: "up 0 minutes". Whole hours have no minutes part: "up 1 hour". Unlike procps,
// the part below a year is split from the remainder, so 364 days is "up 52 weeks".
std::string format_uptime(double seconds);

// `date` as Raspberry Pi OS prints it (en_GB: "%a %e %b %H:%M:%S %Z %Y"), English names whatever
// the process locale: "Sun 10 Mar 11:11:11 CET 2024", "Sun  3 Mar 09:05:00 UTC 2024".
// `local` is a broken-down local time; `zone` its abbreviation.
std::string format_systime(const std::tm& local, std::string_view zone);

// Percent of memory in use from proc/meminfo: (MemTotal - MemAvailable) / MemTotal, as psutil and
// procps-ng 4 `free` compute it; kernels without MemAvailable use MemFree + Buffers + Cached.
// 2 decimals. nullopt when MemTotal is missing or 0.
std::optional<double> parse_meminfo(std::string_view proc_meminfo);

// Percent of a filesystem in use as df and psutil compute it: used / (used + available to
// unprivileged users), blocks from statvfs. 2 decimals. nullopt when used + available is 0.
std::optional<double> disk_used_percent(uint64_t total_blocks, uint64_t free_blocks,
                                        uint64_t available_blocks);

// Number of "processor" lines in proc/cpuinfo; nullopt when there are none.
std::optional<int> count_processors(std::string_view proc_cpuinfo);

// Number of CPUs in a kernel CPU list such as sys/devices/system/cpu/online ("0-3,5,7-8");
// nullopt when malformed or empty.
std::optional<int> parse_cpu_list(std::string_view list);

// The first field of proc/loadavg, 2 decimals. nullopt when malformed.
std::optional<double> parse_loadavg(std::string_view proc_loadavg);

// A thermal zone's temp file (millidegrees Celsius) in °C, 2 decimals. nullopt when malformed.
std::optional<double> parse_temperature(std::string_view millidegrees);

// PRETTY_NAME of an os-release file, quotes removed and shell escapes undone. "Linux" (the
// os-release default) when the file has no PRETTY_NAME.
std::string parse_os_release(std::string_view os_release);

// The value of the "Revision" line of proc/cpuinfo ("a02082"); nullopt when there is none.
std::optional<std::string> cpuinfo_revision(std::string_view proc_cpuinfo);

// A Raspberry Pi revision code (hex, as in cpuinfo) to a board name. New-style codes (bit 23 set)
// are decoded by their type field: "Pi 3 Model B", "Pi 4 Model B", "Pi Zero 2 W", "Pi 5 Model B",
// "Compute Module 4", ...; old-style codes 0002..0015, with or without the over-voltage prefix,
// give "Pi 1 Model B", "Pi 1 Model A+", "Compute Module 1", ... nullopt for anything else.
std::optional<std::string> decode_revision(std::string_view code);

// A device-tree model string to the same names: "Raspberry Pi 4 Model B Rev 1.4" -> "Pi 4 Model
// B", "Raspberry Pi Compute Module 4 Rev 1.0" -> "Compute Module 4", "... Model B Plus" -> "...
// Model B+". Trailing NULs and whitespace are ignored. nullopt when not a Raspberry Pi model.
std::optional<std::string> model_to_board_name(std::string_view model);

// One line of proc/net/dev: the counters GET /networking reports.
struct NetDevCounters {
  std::string name;
  uint64_t rx_bytes = 0;
  uint64_t rx_packets = 0;
  uint64_t tx_bytes = 0;
  uint64_t tx_packets = 0;
};

// Parses proc/net/dev: skips the two header lines, accepts any spacing around the name and its
// ':' (including none: "eth0:1234 ..."), and takes 64-bit counters from the 16 numeric columns
// (receive bytes, packets at 1-2, transmit bytes, packets at 9-10). Lines without a name, a ':'
// and at least 16 unsigned numbers are skipped; columns past the 16th are ignored.
std::vector<NetDevCounters> parse_proc_net_dev(std::string_view proc_net_dev);

}  // namespace outpost::sysinfo
