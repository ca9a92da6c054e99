// A windowed summary: the statistics of one sensor's numeric readings over one time window.
// edge::Aggregator makes them, the store keeps them, the bus and the outbox carry them.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/status.hpp"
#include "core/time.hpp"

namespace outpost::core {

struct Summary {
  std::string device;
  std::string sensor;
  std::string unit;          // the series' unit ("" when its readings gave none)
  TimePoint period_start{};  // the window [period_start, period_end), aligned to the epoch
  TimePoint period_end{};
  uint64_t count = 0;        // numeric, finite readings in the window (at least 1)
  double mean = 0;
  double min = 0;
  double max = 0;
  double stdev = 0;          // sample standard deviation (n - 1); 0 for a single reading
  double first = 0;          // the value of the earliest reading by timestamp (ties: arrival order)
  double last = 0;           // the value of the latest reading by timestamp (ties: arrival order)
};

// The idempotency key of a summary: "summary:<device>/<sensor>/<period_start ISO 8601>". Unique
// per (device, sensor, period_start), the store's key, so a receiver can drop a repeat.
std::string summary_id(const Summary& s);

// {"device", "sensor", "unit", "period_start", "period_end", "count", "mean", "min", "max",
// "stdev", "first", "last"} with ISO 8601 UTC times: the payload of "summary" bus events, of
// GET /api/summaries and of the messages sent upstream.
nlohmann::ordered_json summary_json(const Summary& s);

// The inverse of summary_json (for a hub receiving summaries from edges). Invalid when a
// member is missing or of the wrong type, a time does not parse, period_end is not after
// period_start, count is 0, or a number is not finite.
Result<Summary> summary_from_json(const nlohmann::json& j);

}  // namespace outpost::core
