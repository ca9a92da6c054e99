#include "core/summary.hpp"

#include <fmt/format.h>

#include <cmath>

namespace outpost::core {

std::string summary_id(const Summary& s) {
  return fmt::format("summary:{}/{}/{}", s.device, s.sensor, format_iso8601(s.period_start));
}

nlohmann::ordered_json summary_json(const Summary& s) {
  return {{"device", s.device},
          {"sensor", s.sensor},
          {"unit", s.unit},
          {"period_start", format_iso8601(s.period_start)},
          {"period_end", format_iso8601(s.period_end)},
          {"count", s.count},
          {"mean", s.mean},
          {"min", s.min},
          {"max", s.max},
          {"stdev", s.stdev},
          {"first", s.first},
          {"last", s.last}};
}

Result<Summary> summary_from_json(const nlohmann::json& j) {
  if (!j.is_object()) return Status::invalid("a summary must be a JSON object");
  Summary s;
  auto text = [&](const char* name, std::string& out, bool allow_empty) -> Status {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) return Status::invalid(fmt::format("summary: '{}' must be a string", name));
    out = it->get<std::string>();
    if (!allow_empty && out.empty()) return Status::invalid(fmt::format("summary: '{}' must not be empty", name));
    return Status::ok();
  };
  auto time = [&](const char* name, TimePoint& out) -> Status {
    std::string v;
    if (auto st = text(name, v, false); !st) return st;
    auto t = parse_iso8601(v);
    if (!t) return Status::invalid(fmt::format("summary: '{}' is not an ISO 8601 time: '{}'", name, v));
    out = *t;
    return Status::ok();
  };
  auto number = [&](const char* name, double& out) -> Status {
    auto it = j.find(name);
    if (it == j.end() || !it->is_number() || !std::isfinite(it->get<double>()))
      return Status::invalid(fmt::format("summary: '{}' must be a finite number", name));
    out = it->get<double>();
    return Status::ok();
  };
  if (auto st = text("device", s.device, false); !st) return st;
  if (auto st = text("sensor", s.sensor, false); !st) return st;
  if (j.contains("unit")) {
    if (auto st = text("unit", s.unit, true); !st) return st;
  }
  if (auto st = time("period_start", s.period_start); !st) return st;
  if (auto st = time("period_end", s.period_end); !st) return st;
  if (s.period_end <= s.period_start) return Status::invalid("summary: 'period_end' must be after 'period_start'");
  auto c = j.find("count");
  if (c == j.end() || !c->is_number_unsigned() || c->get<uint64_t>() == 0)
    return Status::invalid("summary: 'count' must be a positive integer");
  s.count = c->get<uint64_t>();
  for (auto [name, field] : {std::pair{"mean", &s.mean}, std::pair{"min", &s.min}, std::pair{"max", &s.max},
                             std::pair{"stdev", &s.stdev}, std::pair{"first", &s.first}, std::pair{"last", &s.last}}) {
    if (auto st = number(name, *field); !st) return st;
  }
  return s;
}

}  // namespace outpost::core
