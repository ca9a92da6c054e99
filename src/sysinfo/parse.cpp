// The pure half of sysinfo: text from /proc, /sys and /etc in, values out.
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <type_traits>

#include "sysinfo/sysinfo.hpp"

namespace outpost::sysinfo {

namespace {

constexpr std::string_view kSpace = " \t\n\r\v\f";

std::string_view trim(std::string_view s) {
  const auto begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  const auto end = s.find_last_not_of(kSpace);
  return s.substr(begin, end - begin + 1);
}

// Calls fn(line) for each line, without its '\n'.
template <typename Fn>
void for_each_line(std::string_view text, Fn&& fn) {
  while (!text.empty()) {
    const auto nl = text.find('\n');
    fn(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

// Splits "key : value" (cpuinfo, meminfo) into trimmed parts; false without a ':'.
bool split_key_value(std::string_view line, std::string_view& key, std::string_view& value) {
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return false;
  key = trim(line.substr(0, colon));
  value = trim(line.substr(colon + 1));
  return true;
}

// The whole of `s` as a number, or nullopt (from_chars: no locale, no leading '+' or spaces).
template <typename T>
std::optional<T> to_number(std::string_view s, int base = 10) {
  T v{};
  const char* end = s.data() + s.size();
  std::from_chars_result r;
  if constexpr (std::is_floating_point_v<T>) {
    r = std::from_chars(s.data(), end, v);
  } else {
    r = std::from_chars(s.data(), end, v, base);
  }
  if (s.empty() || r.ec != std::errc() || r.ptr != end) return std::nullopt;
  return v;
}

// The first whitespace-separated token of `s`.
std::string_view first_token(std::string_view s) {
  s = trim(s);
  return s.substr(0, s.find_first_of(kSpace));
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// Board names by the type field (bits 4-11) of a new-style revision code. Empty: no board
// (unused values and the "internal use only" types).
constexpr std::array<std::string_view, 0x1b> kNewStyleTypes = {
    "Pi 1 Model A",           // 0x00
    "Pi 1 Model B",           // 0x01
    "Pi 1 Model A+",          // 0x02
    "Pi 1 Model B+",          // 0x03
    "Pi 2 Model B",           // 0x04
    "Pi Alpha",               // 0x05 (early prototype)
    "Compute Module 1",       // 0x06
    "",                       // 0x07
    "Pi 3 Model B",           // 0x08
    "Pi Zero",                // 0x09
    "Compute Module 3",       // 0x0a
    "",                       // 0x0b
    "Pi Zero W",              // 0x0c
    "Pi 3 Model B+",          // 0x0d
    "Pi 3 Model A+",          // 0x0e
    "",                       // 0x0f internal use only
    "Compute Module 3+",      // 0x10
    "Pi 4 Model B",           // 0x11
    "Pi Zero 2 W",            // 0x12
    "Pi 400",                 // 0x13
    "Compute Module 4",       // 0x14
    "Compute Module 4S",      // 0x15
    "",                       // 0x16 internal use only
    "Pi 5 Model B",           // 0x17
    "Compute Module 5",       // 0x18
    "Pi 500",                 // 0x19
    "Compute Module 5 Lite",  // 0x1a
};

// Old-style (sequential) revision codes 0x00..0x15 of the first boards.
constexpr std::array<std::string_view, 0x16> kOldStyleCodes = {
    "",                  // 0x00
    "",                  // 0x01
    "Pi 1 Model B",      // 0x02 rev 1.0
    "Pi 1 Model B",      // 0x03 rev 1.0
    "Pi 1 Model B",      // 0x04 rev 2.0
    "Pi 1 Model B",      // 0x05
    "Pi 1 Model B",      // 0x06
    "Pi 1 Model A",      // 0x07
    "Pi 1 Model A",      // 0x08
    "Pi 1 Model A",      // 0x09
    "",                  // 0x0a
    "",                  // 0x0b
    "",                  // 0x0c
    "Pi 1 Model B",      // 0x0d rev 2.0, 512 MB
    "Pi 1 Model B",      // 0x0e
    "Pi 1 Model B",      // 0x0f
    "Pi 1 Model B+",     // 0x10
    "Compute Module 1",  // 0x11
    "Pi 1 Model A+",     // 0x12
    "Pi 1 Model B+",     // 0x13
    "Compute Module 1",  // 0x14
    "Pi 1 Model A+",     // 0x15
};

constexpr std::array<std::string_view, 7> kDayNames = {"Sun", "Mon", "Tue", "Wed",
                                                       "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 12> kMonthNames = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

}  // namespace

double round2(double v) { return std::round(v * 100.0) / 100.0; }

std::optional<double> parse_uptime(std::string_view proc_uptime) {
  auto v = to_number<double>(first_token(proc_uptime));
  if (!v || !std::isfinite(*v) || *v < 0) return std::nullopt;
  return v;
}

std::string format_uptime(double seconds) {
  // procps-ng prints from the whole seconds; anything not a sane duration counts as 0.
  const int64_t total =
      std::isfinite(seconds) && seconds > 0 ? static_cast<int64_t>(seconds) : int64_t{0};
  constexpr int64_t kMinute = 60, kHour = 60 * kMinute, kDay = 24 * kHour, kWeek = 7 * kDay,
                    kYear = 365 * kDay, kDecade = 10 * kYear;
  struct Part {
    int64_t size;
    const char* one;
    const char* many;
  };
  constexpr std::array<Part, 6> kParts = {{{kDecade, "decade", "decades"},
                                           {kYear, "year", "years"},
                                           {kWeek, "week", "weeks"},
                                           {kDay, "day", "days"},
                                           {kHour, "hour", "hours"},
                                           {kMinute, "minute", "minutes"}}};
  std::string out = "up ";
  bool first = true;
  int64_t rest = total;
  for (const Part& p : kParts) {
    const int64_t n = rest / p.size;
    rest %= p.size;
    // Minutes also appear as "0 minutes" when that is all there is, as procps does.
    const bool is_minutes = p.size == kMinute;
    if (n == 0 && !(is_minutes && total < kMinute)) continue;
    if (!first) out += ", ";
    out += std::to_string(n);
    out += ' ';
    out += n == 1 ? p.one : p.many;
    first = false;
  }
  return out;
}

std::string format_systime(const std::tm& local, std::string_view zone) {
  // Hand-formatted rather than strftime: strftime's names follow the process locale, and the
  // answer must read like Raspberry Pi OS's `date` whatever locale the server runs under.
  const auto day = kDayNames[static_cast<size_t>(((local.tm_wday % 7) + 7) % 7)];
  const auto month = kMonthNames[static_cast<size_t>(((local.tm_mon % 12) + 12) % 12)];
  char buf[128];
  std::snprintf(buf, sizeof buf, "%.*s %2d %.*s %02d:%02d:%02d", static_cast<int>(day.size()),
                day.data(), local.tm_mday, static_cast<int>(month.size()), month.data(),
                local.tm_hour, local.tm_min, local.tm_sec);
  std::string out = buf;
  if (!zone.empty()) {
    out += ' ';
    out += zone;
  }
  out += ' ';
  out += std::to_string(local.tm_year + 1900);
  return out;
}

std::optional<double> parse_meminfo(std::string_view proc_meminfo) {
  std::optional<uint64_t> total, available;
  uint64_t free = 0, buffers = 0, cached = 0;
  for_each_line(proc_meminfo, [&](std::string_view line) {
    std::string_view key, value;
    if (!split_key_value(line, key, value)) return;
    const auto kb = to_number<uint64_t>(first_token(value));
    if (!kb) return;
    if (key == "MemTotal")
      total = kb;
    else if (key == "MemAvailable")
      available = kb;
    else if (key == "MemFree")
      free = *kb;
    else if (key == "Buffers")
      buffers = *kb;
    else if (key == "Cached")
      cached = *kb;
  });
  if (!total || *total == 0) return std::nullopt;
  // Kernels before 3.14 have no MemAvailable; free + buffers + cache is the old estimate.
  const uint64_t avail = available ? *available : free + buffers + cached;
  const double used = avail >= *total ? 0.0 : static_cast<double>(*total - avail);
  return round2(used * 100.0 / static_cast<double>(*total));
}

std::optional<double> disk_used_percent(uint64_t total_blocks, uint64_t free_blocks,
                                        uint64_t available_blocks) {
  // Blocks reserved for root count neither as used nor as available, as in df's Use%.
  const uint64_t used = total_blocks >= free_blocks ? total_blocks - free_blocks : 0;
  const double denominator = static_cast<double>(used) + static_cast<double>(available_blocks);
  if (denominator <= 0) return std::nullopt;
  return round2(static_cast<double>(used) * 100.0 / denominator);
}

std::optional<int> count_processors(std::string_view proc_cpuinfo) {
  int n = 0;
  for_each_line(proc_cpuinfo, [&](std::string_view line) {
    std::string_view key, value;
    if (split_key_value(line, key, value) && key == "processor") ++n;
  });
  if (n == 0) return std::nullopt;
  return n;
}

std::optional<int> parse_cpu_list(std::string_view list) {
  list = trim(list);
  if (list.empty()) return std::nullopt;
  int64_t count = 0;
  for (;;) {
    const auto comma = list.find(',');
    const std::string_view range = list.substr(0, comma);
    const auto dash = range.find('-');
    const auto lo = to_number<int>(range.substr(0, dash));
    const auto hi = dash == std::string_view::npos ? lo : to_number<int>(range.substr(dash + 1));
    if (!lo || !hi || *lo < 0 || *hi < *lo) return std::nullopt;
    count += int64_t{*hi} - *lo + 1;
    if (count > (1 << 20)) return std::nullopt;  // no machine has a million CPUs
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);  // "0-3," leaves an empty range, which fails above
  }
  return static_cast<int>(count);
}

std::optional<double> parse_loadavg(std::string_view proc_loadavg) {
  auto v = to_number<double>(first_token(proc_loadavg));
  if (!v || !std::isfinite(*v) || *v < 0) return std::nullopt;
  return round2(*v);
}

std::optional<double> parse_temperature(std::string_view millidegrees) {
  const auto v = to_number<int64_t>(trim(millidegrees));
  if (!v) return std::nullopt;
  return round2(static_cast<double>(*v) / 1000.0);
}

std::string parse_os_release(std::string_view os_release) {
  constexpr std::string_view kKey = "PRETTY_NAME=";
  std::optional<std::string> pretty;
  for_each_line(os_release, [&](std::string_view line) {
    line = trim(line);
    if (!starts_with(line, kKey)) return;
    std::string_view raw = line.substr(kKey.size());
    std::string value;
    // os-release values use shell quoting: "..." with \-escapes, '...' verbatim, or bare words.
    if (!raw.empty() && raw.front() == '"') {
      for (size_t i = 1; i < raw.size() && raw[i] != '"'; ++i) {
        if (raw[i] == '\\' && i + 1 < raw.size()) ++i;
        value += raw[i];
      }
    } else if (!raw.empty() && raw.front() == '\'') {
      const auto close = raw.find('\'', 1);
      value = raw.substr(1, close == std::string_view::npos ? std::string_view::npos : close - 1);
    } else {
      value = raw;
    }
    pretty = std::move(value);  // like sourcing the file: the last assignment wins
  });
  return pretty ? *pretty : "Linux";
}

std::optional<std::string> cpuinfo_revision(std::string_view proc_cpuinfo) {
  std::optional<std::string> found;
  for_each_line(proc_cpuinfo, [&](std::string_view line) {
    std::string_view key, value;
    if (!found && split_key_value(line, key, value) && key == "Revision" && !value.empty())
      found = std::string(value);
  });
  return found;
}

std::optional<std::string> decode_revision(std::string_view code) {
  code = trim(code);
  if (code.empty() || code.size() > 8) return std::nullopt;
  const auto v = to_number<uint32_t>(code, 16);
  if (!v) return std::nullopt;
  std::string_view name;
  if (*v & (1u << 23)) {
    const uint32_t type = (*v >> 4) & 0xff;
    if (type < kNewStyleTypes.size()) name = kNewStyleTypes[type];
  } else {
    // Old-style codes carry an over-voltage/warranty flag above bit 23 ("1000002").
    const uint32_t old = *v & 0x7fffff;
    if (old < kOldStyleCodes.size()) name = kOldStyleCodes[old];
  }
  if (name.empty()) return std::nullopt;
  return std::string(name);
}

std::optional<std::string> model_to_board_name(std::string_view model) {
  // Device-tree strings end in NUL; cpuinfo-style copies may end in a newline.
  while (!model.empty() && (model.back() == '\0' || kSpace.find(model.back()) != kSpace.npos))
    model.remove_suffix(1);
  model = trim(model);
  constexpr std::string_view kMaker = "Raspberry ";
  if (!starts_with(model, "Raspberry Pi")) return std::nullopt;
  std::string_view rest = model.substr(kMaker.size());  // "Pi 4 Model B Rev 1.4"
  if (const auto rev = rest.find(" Rev "); rev != std::string_view::npos)
    rest = rest.substr(0, rev);
  else if (rest.size() >= 4 && rest.substr(rest.size() - 4) == " Rev")
    rest.remove_suffix(4);

  std::string name(rest);
  if (starts_with(name, "Pi Compute Module"))
    name.erase(0, 3);  // as decode_revision
  else if (starts_with(name, "Pi Model "))
    name.insert(3, "1 ");  // "Pi 1 Model B"
  constexpr std::string_view kPlus = " Plus";
  if (name.size() > kPlus.size() && name.substr(name.size() - kPlus.size()) == kPlus)
    name.replace(name.size() - kPlus.size(), kPlus.size(), "+");  // "Model B Plus"
  return name;
}

std::vector<NetDevCounters> parse_proc_net_dev(std::string_view proc_net_dev) {
  std::vector<NetDevCounters> out;
  for_each_line(proc_net_dev, [&](std::string_view line) {
    // The two header lines have no ':'; a counter wider than its column runs into the ':',
    // so the name is whatever precedes the first ':' (the kernel forbids ':' in names).
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return;
    const std::string_view name = trim(line.substr(0, colon));
    if (name.empty() || name.find_first_of(kSpace) != std::string_view::npos ||
        name.find('|') != std::string_view::npos)
      return;
    std::array<uint64_t, 16> col{};
    std::string_view rest = line.substr(colon + 1);
    for (uint64_t& c : col) {
      rest = trim(rest);
      const std::string_view token = rest.substr(0, rest.find_first_of(kSpace));
      const auto v = to_number<uint64_t>(token);
      if (!v) return;
      c = *v;
      rest.remove_prefix(token.size());
    }
    out.push_back({std::string(name), col[0], col[1], col[8], col[9]});
  });
  return out;
}

}  // namespace outpost::sysinfo
