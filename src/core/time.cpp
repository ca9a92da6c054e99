#include "core/time.hpp"

#include <charconv>
#include <cstdio>
#include <ctime>

namespace outpost::core {

namespace {

bool read_int(std::string_view s, size_t pos, size_t len, int& out) {
  if (pos + len > s.size()) return false;
  for (size_t i = pos; i < pos + len; ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  auto r = std::from_chars(s.data() + pos, s.data() + pos + len, out);
  return r.ec == std::errc();
}

class SystemClock final : public Clock {
 public:
  TimePoint now() const override { return core::now(); }
};

}  // namespace

std::string format_iso8601(TimePoint t) {
  using namespace std::chrono;
  auto day = floor<days>(t);
  year_month_day ymd{day};
  hh_mm_ss hms{t - day};
  // By hand: this runs for every response that carries a time, and snprintf is slow.
  char buf[27];
  auto put = [&buf](int pos, long long v, int width) {
    for (int i = width - 1; i >= 0; --i, v /= 10) buf[pos + i] = static_cast<char>('0' + v % 10);
  };
  put(0, int(ymd.year()), 4);
  buf[4] = '-';
  put(5, unsigned(ymd.month()), 2);
  buf[7] = '-';
  put(8, unsigned(ymd.day()), 2);
  buf[10] = 'T';
  put(11, hms.hours().count(), 2);
  buf[13] = ':';
  put(14, hms.minutes().count(), 2);
  buf[16] = ':';
  put(17, hms.seconds().count(), 2);
  buf[19] = '.';
  put(20, hms.subseconds().count(), 6);
  buf[26] = 'Z';
  return std::string(buf, sizeof buf);
}

std::optional<TimePoint> parse_iso8601(std::string_view s) {
  using namespace std::chrono;
  int y, mo, d;
  if (s.size() < 10 || !read_int(s, 0, 4, y) || s[4] != '-' || !read_int(s, 5, 2, mo) ||
      s[7] != '-' || !read_int(s, 8, 2, d))
    return std::nullopt;
  year_month_day ymd{year{y}, month{unsigned(mo)}, day{unsigned(d)}};
  if (!ymd.ok()) return std::nullopt;
  sys_days base{ymd};
  if (s.size() == 10) return time_point_cast<microseconds>(base);

  if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') return std::nullopt;
  int hh, mm, ss;
  if (!read_int(s, 11, 2, hh) || s.size() < 19 || s[13] != ':' || !read_int(s, 14, 2, mm) ||
      s[16] != ':' || !read_int(s, 17, 2, ss))
    return std::nullopt;
  if (hh > 23 || mm > 59 || ss > 60) return std::nullopt;
  size_t pos = 19;
  int64_t micros = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t digits = 0;
    int64_t scale = 100000;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (digits < 6) micros += (s[pos] - '0') * scale;
      scale /= 10;
      ++digits;
      ++pos;
    }
    if (digits == 0) return std::nullopt;
  }
  int offset_min = 0;
  if (pos == s.size()) return std::nullopt;  // a time needs a zone: Z or an offset
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    int oh, om;
    bool neg = s[pos] == '-';
    if (!read_int(s, pos + 1, 2, oh)) return std::nullopt;
    size_t p = pos + 3;
    if (p < s.size() && s[p] == ':') ++p;
    if (!read_int(s, p, 2, om) || oh > 23 || om > 59) return std::nullopt;
    offset_min = (oh * 60 + om) * (neg ? -1 : 1);
    pos = p + 2;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  auto t = time_point_cast<microseconds>(base) + hours(hh) + minutes(mm) + seconds(ss) +
           microseconds(micros) - minutes(offset_min);
  return t;
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view s) {
  using namespace std::chrono;
  if (s.empty()) return std::nullopt;
  size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == 0) return std::nullopt;
  long long n = 0;
  auto r = std::from_chars(s.data(), s.data() + i, n);
  if (r.ec != std::errc()) return std::nullopt;
  std::string_view unit = s.substr(i);
  long long factor;
  if (unit.empty() || unit == "s") factor = 1000;
  else if (unit == "ms") factor = 1;
  else if (unit == "m") factor = 60'000;
  else if (unit == "h") factor = 3'600'000;
  else if (unit == "d") factor = 86'400'000;
  else return std::nullopt;
  if (n > (1LL << 40)) return std::nullopt;  // beyond any sane setting; avoids overflow
  return milliseconds(n * factor);
}

const Clock& Clock::system() {
  static const SystemClock clock;
  return clock;
}

}  // namespace outpost::core
