// Time: one clock type for the whole program, ISO 8601 in and out, and an injectable clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace outpost::core {

using SysClock = std::chrono::system_clock;
using TimePoint = std::chrono::time_point<SysClock, std::chrono::microseconds>;

inline TimePoint now() { return std::chrono::time_point_cast<std::chrono::microseconds>(SysClock::now()); }
inline int64_t to_micros(TimePoint t) { return t.time_since_epoch().count(); }
inline TimePoint from_micros(int64_t us) { return TimePoint(std::chrono::microseconds(us)); }

// "2026-11-21T23:59:59.123456Z": UTC, microseconds, 'Z' (the shape seed 002's clients parse).
std::string format_iso8601(TimePoint t);

// Accepts "YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)" and a bare date "YYYY-MM-DD" (midnight UTC).
// A space may stand for the 'T'. Returns nullopt for anything else, including impossible dates.
std::optional<TimePoint> parse_iso8601(std::string_view s);

// Parses a duration: a whole number with a unit "ms", "s", "m", "h", "d" ("10s", "5m", "30d"),
// or a bare number of seconds. nullopt when malformed or negative.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view s);

// A clock that can be replaced in tests.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
  // The process-wide real clock.
  static const Clock& system();
};

}  // namespace outpost::core
