// The edge's windowed summaries (edge::Aggregator): GET /api/summaries.
#include <fmt/format.h>

#include "api/api.hpp"

namespace outpost::api {

using http::Request;
using http::Response;
using json = nlohmann::ordered_json;

namespace {

constexpr size_t kDefaultLimit = 100;
constexpr size_t kMaxLimit = 1000;

// GET /api/summaries?device=&sensor=&from=&to=&limit=
// → {"count", "summaries": [{"device", "sensor", "unit", "period_start", "period_end", "count", "mean",
// "min", "max", "stdev", "first", "last"}]}: the newest `limit` (default 100, at most 1000)
// summaries whose period_start is within [from, to], ascending by (period_start, device, sensor).
// Each parameter is optional; a bad one is a 400 problem naming it.
Response list_summaries(Deps& d, Request& req) {
  store::SummaryQuery q{.limit = kDefaultLimit};
  if (auto v = req.query_param("device")) q.device = *v;
  if (auto v = req.query_param("sensor")) q.sensor = *v;
  if (auto v = req.query_param("limit")) {
    auto n = parse_limit(*v, kMaxLimit);
    if (!n)
      return http::problem(400, fmt::format("limit must be a non-negative integer, got '{}'", *v), {{"parameter", "limit"}});
    q.limit = *n;
  }
  if (auto bad = parse_time_range(req, q.from, q.to)) return std::move(*bad);
  auto rows = d.store.query_summaries(q);
  if (!rows) return http::problem(rows.status());
  json list = json::array();
  for (const auto& s : *rows) list.push_back(core::summary_json(s));
  return Response::json({{"count", list.size()}, {"summaries", std::move(list)}});
}

}  // namespace

void register_summary_routes(http::Router& router, Deps& deps) {
  using http::Access;
  using http::Verb;
  Deps* d = &deps;
  json time = {{"type", "string"}, {"format", "date-time"}};
  json number = {{"type", "number"}};
  json summary_schema = {
      {"type", "object"},
      {"required",
       {"device", "sensor", "unit", "period_start", "period_end", "count", "mean", "min", "max", "stdev", "first",
        "last"}},
      {"properties",
       {{"device", {{"type", "string"}}},
        {"sensor", {{"type", "string"}}},
        {"unit", {{"type", "string"}}},
        {"period_start", time},
        {"period_end", time},
        {"count", {{"type", "integer"}, {"minimum", 1}}},
        {"mean", number},
        {"min", number},
        {"max", number},
        {"stdev", {{"type", "number"}, {"description", "sample standard deviation; 0 for one reading"}}},
        {"first", {{"type", "number"}, {"description", "the value of the window's earliest reading"}}},
        {"last", {{"type", "number"}, {"description", "the value of the window's latest reading"}}}}}};
  json problem = {{"$ref", "#/components/schemas/Problem"}};
  router.add({Verb::get, "/api/summaries", Access::kRead, [d](Request& r) { return list_summaries(*d, r); },
              {.summary = "Windowed summaries",
               .description =
                   "Per sensor of every device, per window (edge.summary_window, default 5 minutes, aligned to the "
                   "epoch; per sensor in edge.summary_windows): count, mean, min, max, sample stdev, first and last "
                   "of its numeric readings. A window is summarised once it has ended (plus edge.summary_grace); "
                   "one without readings has none. The newest `limit` matching summaries, ascending by "
                   "(period_start, device, sensor).",
               .tag = "summaries",
               .params = {{"device", "query", "Only this device's summaries"},
                          {"sensor", "query", "Only this sensor's summaries"},
                          {"from", "query", "period_start at or after (ISO 8601)", time},
                          {"to", "query", "period_start at or before (ISO 8601)", time},
                          {"limit", "query", "At most this many (default 100, at most 1000)",
                           {{"type", "integer"}, {"minimum", 0}}}},
               .replies = {{200, "Summaries",
                            {{"type", "object"},
                             {"properties",
                              {{"count", {{"type", "integer"}}},
                               {"summaries", {{"type", "array"}, {"items", summary_schema}}}}}}},
                           {400, "Invalid parameter", problem, "application/problem+json"}}}});
}

}  // namespace outpost::api
