#include "sysinfo/sysinfo.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

namespace outpost::sysinfo {
namespace {

namespace fs = std::filesystem;
using Family = InterfaceAddress::Family;

// The fake trees: $OUTPOST_SOURCE_DIR/src/sysinfo/testdata (set by ctest), else beside this file
// so the binary also runs by hand.
fs::path testdata(std::string_view tree) {
  const char* src = std::getenv("OUTPOST_SOURCE_DIR");
  const fs::path dir = src != nullptr ? fs::path(src) / "src/sysinfo/testdata"
                                      : fs::path(__FILE__).parent_path() / "testdata";
  return dir / tree;
}

// A scratch root, removed when the test ends.
class TempTree {
 public:
  TempTree() {
    std::string tmpl = (fs::temp_directory_path() / "sysinfo_test_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    root_ = tmpl;
  }
  ~TempTree() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  TempTree(const TempTree&) = delete;
  TempTree& operator=(const TempTree&) = delete;

  void write(const fs::path& relative, std::string_view text) const {
    const fs::path p = root_ / relative;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
  }
  const fs::path& root() const { return root_; }

 private:
  fs::path root_;
};

class FixedClock final : public core::Clock {
 public:
  explicit FixedClock(core::TimePoint t) : t_(t) {}
  core::TimePoint now() const override { return t_; }

 private:
  core::TimePoint t_;
};

// 2024-03-10T10:11:11Z, a Sunday: 11:11:11 in Central European (winter) time.
const FixedClock kSeedClock(*core::parse_iso8601("2024-03-10T10:11:11Z"));

// systime is local time; pin the zone with a POSIX rule so no tzdata is needed.
void use_central_european_time() {
  ::setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3", 1);
  ::tzset();
}

bool has_two_decimals_at_most(double v) { return std::fabs(v * 100 - std::round(v * 100)) < 1e-6; }

// ---------------------------------------------------------------- pure parsers

TEST(FormatUptime, EdgeCases) {
  const std::pair<double, const char*> cases[] = {
      {0, "up 0 minutes"},
      {59, "up 0 minutes"},
      {59.99, "up 0 minutes"},
      {60, "up 1 minute"},
      {119, "up 1 minute"},
      {120, "up 2 minutes"},
      {3600, "up 1 hour"},
      {3660, "up 1 hour, 1 minute"},
      {7200 + 59, "up 2 hours"},
      {86400 + 60, "up 1 day, 1 minute"},
      {83000.52, "up 23 hours, 3 minutes"},
      {7 * 86400, "up 1 week"},
      {7 * 86400 + 2 * 86400 + 3 * 3600 + 4 * 60, "up 1 week, 2 days, 3 hours, 4 minutes"},
      {14 * 86400 + 86400 + 3600, "up 2 weeks, 1 day, 1 hour"},
      {364 * 86400.0, "up 52 weeks"},
      {365 * 86400.0, "up 1 year"},
      {2 * 365 * 86400.0 + 60, "up 2 years, 1 minute"},
      {10 * 365 * 86400.0, "up 1 decade"},
      {-5, "up 0 minutes"},
      {std::nan(""), "up 0 minutes"},
  };
  for (const auto& [seconds, text] : cases) EXPECT_EQ(format_uptime(seconds), text) << seconds;
}

TEST(ParseUptime, FirstFieldInSeconds) {
  EXPECT_DOUBLE_EQ(*parse_uptime("83000.52 310000.11\n"), 83000.52);
  EXPECT_DOUBLE_EQ(*parse_uptime("12 34"), 12.0);
  EXPECT_FALSE(parse_uptime(""));
  EXPECT_FALSE(parse_uptime("abc 12"));
  EXPECT_FALSE(parse_uptime("-1 2"));
}

TEST(FormatSystime, LikeDateOnRaspberryPiOs) {
  std::tm t{};
  t.tm_year = 2024 - 1900;
  t.tm_mon = 2;
  t.tm_mday = 10;
  t.tm_wday = 0;
  t.tm_hour = 11;
  t.tm_min = 11;
  t.tm_sec = 11;
  EXPECT_EQ(format_systime(t, "CET"), "Sun 10 Mar 11:11:11 CET 2024");
  // en_GB's %e pads single-digit days with a space, as `date` does.
  t.tm_mday = 3;
  t.tm_hour = 9;
  t.tm_min = 5;
  t.tm_sec = 0;
  EXPECT_EQ(format_systime(t, "UTC"), "Sun  3 Mar 09:05:00 UTC 2024");
  EXPECT_EQ(format_systime(t, ""), "Sun  3 Mar 09:05:00 2024");
  t.tm_wday = 6;
  t.tm_mon = 11;
  t.tm_mday = 31;
  EXPECT_EQ(format_systime(t, "CEST"), "Sat 31 Dec 09:05:00 CEST 2024");
}

TEST(ParseMeminfo, UsedIsTotalMinusAvailable) {
  EXPECT_DOUBLE_EQ(*parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 645 kB\n"),
                   35.5);
  EXPECT_DOUBLE_EQ(*parse_meminfo("MemTotal:  3000 kB\nMemAvailable:  2000 kB\n"), 33.33);
  EXPECT_DOUBLE_EQ(*parse_meminfo("MemTotal:  3000 kB\nMemAvailable:  1000 kB\n"), 66.67);
}

TEST(ParseMeminfo, OldKernelWithoutMemAvailable) {
  EXPECT_DOUBLE_EQ(
      *parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n"), 60.0);
}

TEST(ParseMeminfo, Malformed) {
  EXPECT_FALSE(parse_meminfo(""));
  EXPECT_FALSE(parse_meminfo("MemFree: 100 kB\n"));
  EXPECT_FALSE(parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB\n"));
  EXPECT_DOUBLE_EQ(*parse_meminfo("MemTotal: 100 kB\nMemAvailable: 200 kB\n"), 0.0);
}

TEST(DiskUsedPercent, AsDfComputesIt) {
  // 1000 blocks, 400 free, 350 of them available to users: 600 / (600 + 350).
  EXPECT_DOUBLE_EQ(*disk_used_percent(1000, 400, 350), 63.16);
  EXPECT_DOUBLE_EQ(*disk_used_percent(1000, 1000, 1000), 0.0);
  EXPECT_DOUBLE_EQ(*disk_used_percent(1000, 50, 0), 100.0);
  EXPECT_FALSE(disk_used_percent(0, 0, 0));
}

TEST(CountProcessors, CountsProcessorLinesOnly) {
  EXPECT_EQ(count_processors("processor\t: 0\nCPU revision\t: 4\n\nprocessor\t: 1\n"), 2);
  EXPECT_FALSE(count_processors("model name : x\n"));
  EXPECT_FALSE(count_processors(""));
}

TEST(ParseCpuList, Ranges) {
  EXPECT_EQ(parse_cpu_list("0-3\n"), 4);
  EXPECT_EQ(parse_cpu_list("0"), 1);
  EXPECT_EQ(parse_cpu_list("0-3,5,7-8"), 7);
  EXPECT_FALSE(parse_cpu_list(""));
  EXPECT_FALSE(parse_cpu_list("\n"));
  EXPECT_FALSE(parse_cpu_list("3-1"));
  EXPECT_FALSE(parse_cpu_list("a"));
  EXPECT_FALSE(parse_cpu_list("0-3,"));
}

TEST(ParseLoadavg, FirstFieldRounded) {
  EXPECT_DOUBLE_EQ(*parse_loadavg("0.14 0.10 0.05 1/123 4567\n"), 0.14);
  EXPECT_DOUBLE_EQ(*parse_loadavg("12.345 1 1 1/1 1"), 12.35);
  EXPECT_FALSE(parse_loadavg(""));
  EXPECT_FALSE(parse_loadavg("x 1 1"));
}

TEST(ParseTemperature, MillidegreesToCelsius) {
  EXPECT_DOUBLE_EQ(*parse_temperature("46160\n"), 46.16);
  EXPECT_DOUBLE_EQ(*parse_temperature("46165"), 46.17);
  EXPECT_DOUBLE_EQ(*parse_temperature("-5000"), -5.0);
  EXPECT_FALSE(parse_temperature(""));
  EXPECT_FALSE(parse_temperature("hot"));
}

TEST(ParseOsRelease, PrettyNameUnquoted) {
  EXPECT_EQ(parse_os_release("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n"),
            "Debian GNU/Linux 12 (bookworm)");
  EXPECT_EQ(parse_os_release("PRETTY_NAME='Fedora Linux 39'\n"), "Fedora Linux 39");
  EXPECT_EQ(parse_os_release("PRETTY_NAME=Alpine\n"), "Alpine");
  EXPECT_EQ(parse_os_release("PRETTY_NAME=\"Say \\\"hi\\\" \\\\ \\$HOME\"\n"),
            "Say \"hi\" \\ $HOME");
  EXPECT_EQ(parse_os_release("NAME=x\n"), "Linux");  // the os-release default
}

TEST(CpuinfoRevision, RevisionLineOnly) {
  EXPECT_EQ(cpuinfo_revision("processor\t: 0\nCPU revision\t: 4\nRevision\t: c03114\n"), "c03114");
  EXPECT_FALSE(cpuinfo_revision("processor\t: 0\nCPU revision\t: 4\n"));
  EXPECT_FALSE(cpuinfo_revision("Revision\t:\n"));
}

TEST(DecodeRevision, KnownBoards) {
  const std::pair<const char*, const char*> cases[] = {
      {"a02082", "Pi 3 Model B"},
      {"a22082", "Pi 3 Model B"},
      {"a32082", "Pi 3 Model B"},
      {"a020d3", "Pi 3 Model B+"},
      {"9020e0", "Pi 3 Model A+"},
      {"a01041", "Pi 2 Model B"},
      {"a03111", "Pi 4 Model B"},
      {"c03114", "Pi 4 Model B"},
      {"D03115", "Pi 4 Model B"},
      {"c03130", "Pi 400"},
      {"900092", "Pi Zero"},
      {"9000c1", "Pi Zero W"},
      {"902120", "Pi Zero 2 W"},
      {"c04170", "Pi 5 Model B"},
      {"d04170", "Pi 5 Model B"},
      {"a020a0", "Compute Module 3"},
      {"a02100", "Compute Module 3+"},
      {"a03140", "Compute Module 4"},
      {"d03140", "Compute Module 4"},
      {"a03150", "Compute Module 4S"},
      {"c04180", "Compute Module 5"},
      {"b041a0", "Compute Module 5 Lite"},
      {"d04190", "Pi 500"},
      {"900021", "Pi 1 Model A+"},
      {"900032", "Pi 1 Model B+"},
      {"2a02082", "Pi 3 Model B"},   // warranty bit
      {"80c03111", "Pi 4 Model B"},  // bit 31 (mailbox)
      {"0002", "Pi 1 Model B"},
      {"000f", "Pi 1 Model B"},
      {"0007", "Pi 1 Model A"},
      {"0010", "Pi 1 Model B+"},
      {"0011", "Compute Module 1"},
      {"0012", "Pi 1 Model A+"},
      {"1000002", "Pi 1 Model B"},  // over-voltage prefix on an old-style code
      {" a02082\n", "Pi 3 Model B"},
  };
  for (const auto& [code, name] : cases) EXPECT_EQ(decode_revision(code), name) << code;
}

TEST(DecodeRevision, UnknownCodes) {
  for (const char* code : {"", "0000", "0001", "000a", "0016", "a020f0", "a021b0", "a02ff0", "zz",
                           "0x0002", "123456789", "-1"})
    EXPECT_FALSE(decode_revision(code)) << code;
}

TEST(ModelToBoardName, DeviceTreeModels) {
  using namespace std::string_view_literals;
  const std::pair<std::string_view, const char*> cases[] = {
      {"Raspberry Pi 4 Model B Rev 1.4\0"sv, "Pi 4 Model B"},
      {"Raspberry Pi 3 Model B Rev 1.2", "Pi 3 Model B"},
      {"Raspberry Pi 3 Model B Plus Rev 1.3\0"sv, "Pi 3 Model B+"},
      {"Raspberry Pi Zero 2 W Rev 1.0\n", "Pi Zero 2 W"},
      {"Raspberry Pi 5 Model B Rev 1.0\0"sv, "Pi 5 Model B"},
      {"Raspberry Pi Compute Module 4 Rev 1.0\0"sv, "Compute Module 4"},
      {"Raspberry Pi Compute Module 3 Plus Rev 1.0", "Compute Module 3+"},
      {"Raspberry Pi Model B Plus Rev 1.2", "Pi 1 Model B+"},
      {"Raspberry Pi Model B Rev 2", "Pi 1 Model B"},
      {"Raspberry Pi 400 Rev 1.0", "Pi 400"},
  };
  for (const auto& [model, name] : cases) EXPECT_EQ(model_to_board_name(model), name) << model;
  EXPECT_FALSE(model_to_board_name("Pine64 RockPro64 v2.1\0"sv));
  EXPECT_FALSE(model_to_board_name(""));
  EXPECT_FALSE(model_to_board_name("Raspberry Jam"));
}

TEST(ParseProcNetDev, TrickySpacingAndLargeCounters) {
  const std::string_view text =
      "Inter-|   Receive                                                |  Transmit\n"
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
      "drop fifo colls carrier compressed\n"
      "    lo:   52780     620    0    0    0     0          0         0    52780     620    0  "
      "  0    0     0       0          0\n"
      // A counter wider than its column runs straight into the ':'.
      "  eth0:5000000000123 4294967297    0    1    0     0          0        12 "
      "18446744073709551615 42    0    0    0     0       0          0\n"
      "wlan0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
      "enp0s31f6:\t100\t10 0 0 0 0 0 0 200 20 0 0 0 0 0 0\n"
      "short0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n"                       // 15 columns: skipped
      "bad0: 1 2 3 4 5 6 7 8 x 10 11 12 13 14 15 16\n"                      // not a number: skipped
      "over0: 1 2 3 4 5 6 7 8 18446744073709551616 10 11 12 13 14 15 16\n"  // > 2^64: skipped
      "    : 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"                      // no name: skipped
      "wg0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16";                        // no final newline
  const auto devs = parse_proc_net_dev(text);
  ASSERT_EQ(devs.size(), 5u);
  EXPECT_EQ(devs[0].name, "lo");
  EXPECT_EQ(devs[0].rx_bytes, 52780u);
  EXPECT_EQ(devs[0].rx_packets, 620u);
  EXPECT_EQ(devs[0].tx_bytes, 52780u);
  EXPECT_EQ(devs[0].tx_packets, 620u);
  EXPECT_EQ(devs[1].name, "eth0");
  EXPECT_EQ(devs[1].rx_bytes, 5000000000123u);
  EXPECT_EQ(devs[1].rx_packets, 4294967297u);
  EXPECT_EQ(devs[1].tx_bytes, 18446744073709551615u);
  EXPECT_EQ(devs[1].tx_packets, 42u);
  EXPECT_EQ(devs[2].name, "wlan0");
  EXPECT_EQ(devs[2].rx_bytes, 1u);
  EXPECT_EQ(devs[2].rx_packets, 2u);
  EXPECT_EQ(devs[2].tx_bytes, 9u);
  EXPECT_EQ(devs[2].tx_packets, 10u);
  EXPECT_EQ(devs[3].name, "enp0s31f6");
  EXPECT_EQ(devs[3].tx_bytes, 200u);
  EXPECT_EQ(devs[4].name, "wg0");
}

TEST(ParseProcNetDev, HeaderOnlyOrEmpty) {
  EXPECT_TRUE(parse_proc_net_dev("").empty());
  EXPECT_TRUE(parse_proc_net_dev("Inter-|   Receive |  Transmit\n face |bytes packets\n").empty());
}

TEST(RaspapHides, LoopbackAndDocker) {
  EXPECT_TRUE(raspap_hides("lo"));
  EXPECT_TRUE(raspap_hides("docker0"));
  EXPECT_FALSE(raspap_hides("eth0"));
  EXPECT_FALSE(raspap_hides("wlan0"));
}

// ---------------------------------------------------------------- SysInfo on fake trees

TEST(SysInfoSystem, RaspberryPi3Tree) {
  use_central_european_time();
  const SysInfo info(testdata("pi3"), nullptr, &kSeedClock);
  const auto r = info.system();
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const SystemFacts& f = *r;
  EXPECT_EQ(f.hostname, "raspberrypi");
  EXPECT_EQ(f.uptime, "up 23 hours, 3 minutes");
  EXPECT_DOUBLE_EQ(*f.uptime_seconds, 83000.52);
  EXPECT_EQ(f.systime, "Sun 10 Mar 11:11:11 CET 2024");
  EXPECT_DOUBLE_EQ(f.used_memory, 35.46);
  EXPECT_GE(f.used_disk, 0.0);  // the real filesystem holding the source tree
  EXPECT_LE(f.used_disk, 100.0);
  EXPECT_TRUE(has_two_decimals_at_most(f.used_disk));
  EXPECT_EQ(f.processor_count, 4);
  EXPECT_DOUBLE_EQ(f.load_avg_1min, 0.14);
  EXPECT_DOUBLE_EQ(f.system_load_percentage, 3.5);
  ASSERT_TRUE(f.system_temperature);
  EXPECT_DOUBLE_EQ(*f.system_temperature, 46.16);
  EXPECT_EQ(f.hostapd_status, 1);
  EXPECT_EQ(f.operating_system, "Debian GNU/Linux 12 (bookworm)");
  EXPECT_EQ(f.kernel_version, "6.1.0-rpi4-rpi-v8");
  EXPECT_EQ(f.rpi_revision, "Pi 3 Model B");
}

TEST(SysInfoSystem, RaspberryPi3TreeAsRaspapJson) {
  use_central_european_time();
  const SysInfo info(testdata("pi3"), nullptr, &kSeedClock);
  auto r = info.system();
  ASSERT_TRUE(r.is_ok());
  r->used_disk = 41.2;  // the only field that depends on the machine running the test
  const auto expected = nlohmann::json::parse(R"json({
    "hostname": "raspberrypi", "uptime": "up 23 hours, 3 minutes",
    "systime": "Sun 10 Mar 11:11:11 CET 2024", "usedMemory": 35.46, "usedDisk": 41.2,
    "processorCount": 4, "LoadAvg1Min": 0.14, "systemLoadPercentage": 3.5,
    "systemTemperature": 46.16, "hostapdStatus": 1,
    "operatingSystem": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0-rpi4-rpi-v8",
    "rpiRevision": "Pi 3 Model B"})json");
  const nlohmann::json j = to_json(*r);
  EXPECT_EQ(j, expected) << j.dump(2);
  // The JSON types RaspAP clients see: integers stay integers, percentages are floats.
  EXPECT_TRUE(j["processorCount"].is_number_integer());
  EXPECT_TRUE(j["hostapdStatus"].is_number_integer());
  for (const char* k :
       {"usedMemory", "usedDisk", "LoadAvg1Min", "systemLoadPercentage", "systemTemperature"})
    EXPECT_TRUE(j[k].is_number_float()) << k;
  EXPECT_EQ(j.size(), 13u);
}

TEST(SysInfoSystem, NonPiTreeUsesFallbacks) {
  const SysInfo info(testdata("pc"), nullptr, &kSeedClock);
  const auto r = info.system();
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const SystemFacts& f = *r;
  EXPECT_EQ(f.hostname, "workstation");  // etc/hostname
  EXPECT_EQ(f.uptime, "up 2 weeks, 6 hours, 56 minutes");
  EXPECT_DOUBLE_EQ(f.used_memory, 25.0);
  EXPECT_EQ(f.processor_count, 2);  // cpuinfo wins over sys/devices/system/cpu/online
  EXPECT_DOUBLE_EQ(f.load_avg_1min, 1.5);
  EXPECT_DOUBLE_EQ(f.system_load_percentage, 75.0);
  EXPECT_FALSE(f.system_temperature);
  EXPECT_EQ(f.hostapd_status, 0);  // hostapd_cli is not hostapd; proc/self is not a pid
  EXPECT_EQ(f.operating_system, "Fedora Linux 39 (Workstation Edition)");  // usr/lib
  EXPECT_EQ(f.kernel_version, "6.5.6-300.fc39.x86_64");
  EXPECT_EQ(f.rpi_revision, kUnknownDevice);
  EXPECT_EQ(f.rpi_revision, "Unknown Device");
  EXPECT_TRUE(to_json(f)["systemTemperature"].is_null());
}

TEST(SysInfoSystem, MissingFilesFallBackFieldByField) {
  TempTree t;
  t.write("proc/uptime", "42.0 1.0\n");
  t.write("sys/devices/system/cpu/online", "0-3\n");
  t.write("proc/loadavg", "2.00 1 1 1/1 1\n");
  const auto r = SysInfo(t.root(), nullptr, &kSeedClock).system();
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const SystemFacts& f = *r;
  EXPECT_EQ(f.hostname, "");
  EXPECT_EQ(f.uptime, "up 0 minutes");
  EXPECT_FALSE(f.systime.empty());
  EXPECT_DOUBLE_EQ(f.used_memory, 0.0);
  EXPECT_EQ(f.processor_count, 4);  // from the online list
  EXPECT_DOUBLE_EQ(f.system_load_percentage, 50.0);
  EXPECT_FALSE(f.system_temperature);
  EXPECT_EQ(f.hostapd_status, 0);
  EXPECT_EQ(f.operating_system, "");
  EXPECT_EQ(f.kernel_version, "");
  EXPECT_EQ(f.rpi_revision, "Unknown Device");
  const nlohmann::json j = to_json(f);
  EXPECT_EQ(j.size(), 13u);
  EXPECT_TRUE(j["systemTemperature"].is_null());
}

TEST(SysInfoSystem, MalformedFilesFallBackToo) {
  TempTree t;
  t.write("proc/uptime", "garbage\n");
  t.write("proc/meminfo", "nonsense\n");
  t.write("proc/cpuinfo", "no processors here\n");
  t.write("proc/loadavg", "\n");
  t.write("sys/class/thermal/thermal_zone0/temp", "N/A\n");
  const auto r = SysInfo(t.root(), nullptr, &kSeedClock).system();
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->uptime, "");
  EXPECT_FALSE(r->uptime_seconds);
  EXPECT_EQ(r->processor_count, 1);  // never 0: it divides the load
  EXPECT_DOUBLE_EQ(r->system_load_percentage, 0.0);
  EXPECT_FALSE(r->system_temperature);
}

TEST(SysInfoSystem, NothingReadableIsAnIoError) {
  TempTree t;
  const auto empty = SysInfo(t.root()).system();
  ASSERT_FALSE(empty.is_ok());
  EXPECT_EQ(empty.status().code(), core::Code::kIo);
  const auto missing = SysInfo(t.root() / "does-not-exist").system();
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), core::Code::kIo);
}

TEST(SysInfoSystem, RevisionSources) {
  using namespace std::string_view_literals;
  struct Case {
    const char* what;
    std::vector<std::pair<const char*, std::string_view>> files;
    const char* expected;
  };
  const Case cases[] = {
      {"pi4 by cpuinfo",
       {{"proc/cpuinfo", "processor\t: 0\nRevision\t: c03114\n"}},
       "Pi 4 Model B"},
      {"zero 2 by cpuinfo", {{"proc/cpuinfo", "Revision\t: 902120\n"}}, "Pi Zero 2 W"},
      {"pi5 by cpuinfo", {{"proc/cpuinfo", "Revision\t: d04170\n"}}, "Pi 5 Model B"},
      {"cm4 by cpuinfo", {{"proc/cpuinfo", "Revision\t: b03140\n"}}, "Compute Module 4"},
      {"old B by cpuinfo", {{"proc/cpuinfo", "Revision\t: 000e\n"}}, "Pi 1 Model B"},
      {"model when cpuinfo has no Revision",
       {{"proc/cpuinfo", "processor : 0\n"},
        {"proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\0"sv}},
       "Pi 4 Model B"},
      {"model when the code is unknown",
       {{"proc/cpuinfo", "Revision\t: e041f0\n"},
        {"proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\0"sv}},
       "Pi 5 Model B"},
      {"sysfs device tree",
       {{"sys/firmware/devicetree/base/model", "Raspberry Pi Zero W Rev 1.1\0"sv}},
       "Pi Zero W"},
      {"cpuinfo beats the model",
       {{"proc/cpuinfo", "Revision\t: a02082\n"},
        {"proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\0"sv}},
       "Pi 3 Model B"},
      {"other ARM board",
       {{"proc/cpuinfo", "processor : 0\nRevision : 0000\n"},
        {"proc/device-tree/model", "Pine64 RockPro64 v2.1\0"sv}},
       "Unknown Device"},
  };
  for (const Case& c : cases) {
    TempTree t;
    for (const auto& [path, text] : c.files) t.write(path, text);
    const auto r = SysInfo(t.root(), nullptr, &kSeedClock).system();
    ASSERT_TRUE(r.is_ok()) << c.what;
    EXPECT_EQ(r->rpi_revision, c.expected) << c.what;
  }
}

TEST(SysInfoUptime, Seconds) {
  const auto up = SysInfo(testdata("pi3")).uptime_seconds();
  ASSERT_TRUE(up.is_ok());
  EXPECT_DOUBLE_EQ(*up, 83000.52);

  TempTree t;
  const auto missing = SysInfo(t.root()).uptime_seconds();
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), core::Code::kIo);
  t.write("proc/uptime", "soon\n");
  EXPECT_FALSE(SysInfo(t.root()).uptime_seconds().is_ok());
}

// ---------------------------------------------------------------- networking

const StaticAddressSource kPiAddresses({
    {"lo", Family::kIpv4, "127.0.0.1", 8},
    {"eth0", Family::kIpv4, "192.168.1.20", 24},
    {"eth0", Family::kIpv4, "10.0.0.5", 8},  // a secondary: not the one reported
    {"eth0", Family::kIpv6, "fe80::ba27:ebff:fe01:203", 64},
    {"wlan0", Family::kIpv4, "10.3.141.1", 24},
    {"lo", Family::kIpv6, "::1", 128},
    {"tun9", Family::kIpv4, "10.8.0.1", 24},  // not in proc/net/dev: ignored
});

TEST(SysInfoNetworking, RaspberryPi3Tree) {
  const auto r = SysInfo(testdata("pi3"), &kPiAddresses).networking();
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 3u);
  const InterfaceFacts& lo = (*r)[0];
  const InterfaceFacts& eth0 = (*r)[1];
  const InterfaceFacts& wlan0 = (*r)[2];
  EXPECT_EQ(lo.name, "lo");
  EXPECT_EQ(lo.ipv4, "127.0.0.1");
  EXPECT_EQ(lo.netmask, "255.0.0.0");
  EXPECT_EQ(lo.ipv6, std::vector<std::string>{"::1/128"});
  EXPECT_EQ(lo.mac, "00:00:00:00:00:00");
  EXPECT_EQ(eth0.name, "eth0");
  EXPECT_EQ(eth0.ipv4, "192.168.1.20");
  EXPECT_EQ(eth0.netmask, "255.255.255.0");
  EXPECT_EQ(eth0.ipv6, std::vector<std::string>{"fe80::ba27:ebff:fe01:203/64"});
  EXPECT_EQ(eth0.mac, "b8:27:eb:01:02:03");
  EXPECT_EQ(eth0.rx_bytes, 5000000000123u);
  EXPECT_EQ(eth0.rx_packets, 4294967297u);
  EXPECT_EQ(eth0.tx_bytes, 18446744073709551615u);
  EXPECT_EQ(eth0.tx_packets, 42u);
  EXPECT_EQ(wlan0.ipv4, "10.3.141.1");
  EXPECT_EQ(wlan0.tx_packets, 10u);
}

TEST(SysInfoNetworking, RaspapJsonShape) {
  const auto r = SysInfo(testdata("pi3"), &kPiAddresses).networking();
  ASSERT_TRUE(r.is_ok());
  const auto expected = nlohmann::json::parse(R"json({
    "interfaces": {
      "lo": {"IP_address": "127.0.0.1", "Netmask": "255.0.0.0",
             "MAC_address": "00:00:00:00:00:00", "IPv6_addresses": ["::1/128"]},
      "eth0": {"IP_address": "192.168.1.20", "Netmask": "255.255.255.0",
               "MAC_address": "b8:27:eb:01:02:03",
               "IPv6_addresses": ["fe80::ba27:ebff:fe01:203/64"]},
      "wlan0": {"IP_address": "10.3.141.1", "Netmask": "255.255.255.0",
                "MAC_address": "b8:27:eb:0a:0b:0c", "IPv6_addresses": []}},
    "throughput": {
      "lo": {"RX_packets": 620, "RX_bytes": 52780, "TX_packets": 620, "TX_bytes": 52780},
      "eth0": {"RX_packets": 4294967297, "RX_bytes": 5000000000123, "TX_packets": 42,
               "TX_bytes": 18446744073709551615},
      "wlan0": {"RX_packets": 2, "RX_bytes": 1, "TX_packets": 10, "TX_bytes": 9}}})json");
  const nlohmann::json j = to_json(*r);
  EXPECT_EQ(j, expected) << j.dump(2);
  EXPECT_EQ(j["throughput"]["eth0"]["TX_bytes"].get<uint64_t>(), 18446744073709551615u);
}

TEST(SysInfoNetworking, NoAddressesYieldNulls) {
  TempTree t;
  t.write("proc/net/dev", "wg0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n");
  const auto r = SysInfo(t.root()).networking();
  ASSERT_TRUE(r.is_ok());
  const nlohmann::json j = to_json(*r);
  EXPECT_TRUE(j["interfaces"]["wg0"]["IP_address"].is_null());
  EXPECT_TRUE(j["interfaces"]["wg0"]["Netmask"].is_null());
  EXPECT_TRUE(j["interfaces"]["wg0"]["MAC_address"].is_null());
  EXPECT_EQ(j["throughput"]["wg0"]["RX_bytes"], 1);
}

TEST(SysInfoNetworking, FakeRootNeverReportsTheHostsAddresses) {
  const auto r = SysInfo(testdata("pi3")).networking();
  ASSERT_TRUE(r.is_ok());
  for (const auto& i : *r) {
    EXPECT_FALSE(i.ipv4) << i.name;
    EXPECT_TRUE(i.ipv6.empty()) << i.name;
  }
}

TEST(SysInfoNetworking, FallsBackToSysClassNetThenAddresses) {
  TempTree t;
  t.write("sys/class/net/eth0/address", "aa:bb:cc:dd:ee:ff\n");
  const auto by_sysfs = SysInfo(t.root(), &kPiAddresses).networking();
  ASSERT_TRUE(by_sysfs.is_ok());
  ASSERT_EQ(by_sysfs->size(), 1u);
  EXPECT_EQ((*by_sysfs)[0].name, "eth0");
  EXPECT_EQ((*by_sysfs)[0].mac, "aa:bb:cc:dd:ee:ff");
  EXPECT_EQ((*by_sysfs)[0].ipv4, "192.168.1.20");
  EXPECT_EQ((*by_sysfs)[0].rx_bytes, 0u);

  TempTree bare;
  const auto by_addresses = SysInfo(bare.root(), &kPiAddresses).networking();
  ASSERT_TRUE(by_addresses.is_ok());
  std::vector<std::string> names;
  for (const auto& i : *by_addresses) names.push_back(i.name);
  EXPECT_EQ(names, (std::vector<std::string>{"lo", "eth0", "wlan0", "tun9"}));

  const auto nothing = SysInfo(bare.root()).networking();
  ASSERT_FALSE(nothing.is_ok());
  EXPECT_EQ(nothing.status().code(), core::Code::kIo);
}

TEST(SysInfoNetworking, OddNamesDoNotEscapeSysClassNet) {
  TempTree t;
  t.write("proc/net/dev", "..: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n");
  t.write("sys/class/address", "leaked\n");
  const auto r = SysInfo(t.root()).networking();
  ASSERT_TRUE(r.is_ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_FALSE((*r)[0].mac);
}

// ---------------------------------------------------------------- the real machine

TEST(SysInfoRealRoot, AnswersSomething) {
  const SysInfo info("/");
  const auto sys = info.system();
  ASSERT_TRUE(sys.is_ok()) << sys.status().to_string();
  EXPECT_GE(sys->processor_count, 1);
  EXPECT_FALSE(sys->kernel_version.empty());
  EXPECT_TRUE(sys->uptime_seconds);
  EXPECT_EQ(to_json(*sys).size(), 13u);
  const auto net = info.networking();
  ASSERT_TRUE(net.is_ok()) << net.status().to_string();
  for (const auto& i : *net) {
    if (i.name == "lo" && i.ipv4) {
      EXPECT_EQ(*i.ipv4, "127.0.0.1");
    }
  }
}

}  // namespace
}  // namespace outpost::sysinfo
