// Seed 002's device API, on the one model: the collector's readings of the local board.
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "api/api.hpp"

namespace outpost::api {

using http::Request;
using http::Response;
using json = nlohmann::ordered_json;

namespace {

constexpr size_t kDefaultLimit = 50;
constexpr size_t kMaxLimit = 1000;

json number_or_null(double v, int decimals) {
  if (!std::isfinite(v)) return nullptr;
  double scale = std::pow(10.0, decimals);
  return std::round(v * scale) / scale;
}

const json& led_schema() {
  static const json j = {{"type", "string"}, {"enum", {"on", "off"}}};
  return j;
}

json reading_schema() {
  return {{"type", "object"},
          {"properties",
           {{"cpu_temp_c", {{"type", {"number", "null"}}}},
            {"led_state", led_schema()},
            {"button_pressed", {{"type", "boolean"}}},
            {"timestamp", {{"type", "string"}, {"format", "date-time"}}},
            {"simulated", {{"type", "boolean"}}}}},
          {"required", {"cpu_temp_c", "led_state", "button_pressed", "timestamp", "simulated"}}};
}

// GET /api/status → {cpu_temp_c, led_state, button_pressed, timestamp, simulated}: one snapshot.
// The hottest route: written with fmt rather than through a JSON tree (same fields, same order,
// same number formatting: shortest round-trip form, as nlohmann-json writes it).
Response status(Deps& d) {
  auto temp = d.board.cpu->celsius();
  auto led = d.board.led->get();
  auto button = d.board.button->get();
  std::string temp_text = "null";
  if (temp && std::isfinite(*temp)) temp_text = fmt::format("{}", std::round(*temp * 10) / 10);
  Response r;
  r.body = fmt::format(R"({{"cpu_temp_c":{},"led_state":"{}","button_pressed":{},"timestamp":"{}","simulated":{}}})",
                       temp_text, led && *led ? "on" : "off", button && *button ? "true" : "false",
                       core::format_iso8601(core::now()), d.board.simulated ? "true" : "false");
  return r;
}

// GET /api/readings?limit=N&from=ISO&to=ISO → {"count", "readings": [...]}, newest last.
Response readings(Deps& d, Request& req) {
  size_t limit = kDefaultLimit;
  if (auto v = req.query_param("limit")) {
    auto parsed = parse_limit(*v, kMaxLimit);
    if (!parsed)
      return http::problem(400, fmt::format("limit must be a non-negative integer, got '{}'", *v),
                           {{"parameter", "limit"}});
    limit = *parsed;
  }
  store::ReadingQuery q;
  q.device = d.device_id;
  q.sensor = edge::kCpuTemp;
  q.limit = limit;
  if (auto bad = parse_time_range(req, q.from, q.to)) return std::move(*bad);
  auto temps = d.store.query(q);
  if (!temps) return http::problem(temps.status());

  // The LED and button values taken in the same samples (same timestamps). The series hold
  // the collector's samples only (commands and button edges are events), one per sample.
  std::map<int64_t, double> led, button;
  if (!temps->empty()) {
    for (auto [sensor, out] : {std::pair{edge::kLedState, &led}, std::pair{edge::kButtonPressed, &button}}) {
      store::ReadingQuery s;
      s.device = d.device_id;
      s.sensor = sensor;
      s.from = temps->front().ts;
      s.to = temps->back().ts;
      s.newest = false;
      s.limit = temps->size();
      auto rows = d.store.query(s);
      if (!rows) return http::problem(rows.status());
      for (const auto& r : *rows) (*out)[core::to_micros(r.ts)] = r.value;
    }
  }
  json list = json::array();
  for (const auto& t : *temps) {
    int64_t us = core::to_micros(t.ts);
    auto l = led.find(us);
    auto b = button.find(us);
    list.push_back({{"cpu_temp_c", number_or_null(t.value, 1)},
                    {"led_state", l != led.end() && l->second == 1 ? "on" : "off"},
                    {"button_pressed", b != button.end() && b->second == 1},
                    {"timestamp", core::format_iso8601(t.ts)},
                    {"simulated", d.board.simulated}});
  }
  return Response::json({{"count", list.size()}, {"readings", std::move(list)}});
}

// POST /api/led {"action": "on"|"off"|"toggle"} → {"action", "led_state"}.
Response led(Deps& d, Request& req) {
  static const nlohmann::json kValid = {"on", "off", "toggle"};
  auto fail = [](const std::string& why) { return http::problem(400, why, {{"valid", kValid}}); };
  const std::string& body = req.raw.body();
  if (body.empty()) return fail("request body is empty; send {\"action\": \"on\"}");
  // Parsed into nlohmann::json (map-backed): ordered_json looks keys up linearly, which a body
  // of many members turns quadratic.
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded()) return fail("request body is not valid JSON");
  if (!j.is_object()) return fail("request body must be a JSON object such as {\"action\": \"on\"}");
  if (!j.contains("action")) return fail("Unknown action: ");
  if (!j["action"].is_string()) return fail("action must be a string");
  std::string action = j["action"].get<std::string>();
  std::transform(action.begin(), action.end(), action.begin(), [](unsigned char c) { return std::tolower(c); });
  core::Result<bool> state = core::Status::internal("unset");
  if (action == "on" || action == "off") {
    core::Status s = d.board.led->set(action == "on");
    state = s ? core::Result<bool>(action == "on") : core::Result<bool>(s);
  } else if (action == "toggle") {
    state = d.board.led->toggle();
  } else {
    return fail("Unknown action: " + action);  // lowered, as the seed formats it
  }
  if (!state) return http::problem(state.status());
  // Recorded as a command event: who, what, outcome. (Readings hold the collector's samples.)
  nlohmann::ordered_json payload = {{"target", "led"},
                                    {"action", action},
                                    {"state", *state ? "on" : "off"},
                                    {"by", req.principal ? req.principal->name : ""}};
  d.record_event(core::Event{0, core::now(), d.device_id, "command", payload.dump()});
  return Response::json({{"action", action}, {"led_state", *state ? "on" : "off"}});
}

}  // namespace

std::optional<http::Response> parse_time_range(const http::Request& req, std::optional<core::TimePoint>& from,
                                               std::optional<core::TimePoint>& to) {
  for (auto [name, field] : {std::pair{"from", &from}, std::pair{"to", &to}}) {
    if (auto v = req.query_param(name)) {
      auto t = core::parse_iso8601(*v);
      if (!t)
        return http::problem(400, fmt::format("{} must be an ISO 8601 time such as 2026-11-21T10:00:00Z, got '{}'", name, *v),
                             {{"parameter", name}});
      *field = *t;
    }
  }
  if (from && to && *from > *to) return http::problem(400, "from is later than to");
  return std::nullopt;
}

std::optional<size_t> parse_limit(std::string_view s, size_t cap) {
  if (s.empty() || s.size() > 1000) return std::nullopt;
  size_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    if (v <= cap) v = v * 10 + static_cast<size_t>(c - '0');
  }
  return std::min(v, cap);
}

void register_device_routes(http::Router& router, Deps& deps) {
  using http::Access;
  using http::Verb;
  Deps* d = &deps;
  router.add({Verb::get, "/api/status", Access::kRead, [d](Request&) { return status(*d); },
              {.summary = "Current device status",
               .description = "One snapshot of the board: CPU temperature, LED, button (seed 002).",
               .tag = "device",
               .replies = {{200, "Device status", reading_schema()}}}});
  router.add({Verb::get, "/api/readings", Access::kRead, [d](Request& r) { return readings(*d, r); },
              {.summary = "Recent readings",
               .description = "Samples taken by the background collector, newest last.",
               .tag = "device",
               .params = {{"limit", "query", "How many samples (default 50, at most 1000)",
                           {{"type", "integer"}, {"minimum", 0}}},
                          {"from", "query", "Only samples at or after this time (ISO 8601)",
                           {{"type", "string"}, {"format", "date-time"}}},
                          {"to", "query", "Only samples at or before this time (ISO 8601)",
                           {{"type", "string"}, {"format", "date-time"}}}},
               .replies = {{200, "Readings",
                            {{"type", "object"},
                             {"properties",
                              {{"count", {{"type", "integer"}}}, {"readings", {{"type", "array"}, {"items", reading_schema()}}}}},
                             {"required", {"count", "readings"}}}},
                           {400, "Invalid limit, from or to", {{"$ref", "#/components/schemas/Problem"}},
                            "application/problem+json"}}}});
  router.add({Verb::post, "/api/led", Access::kControl, [d](Request& r) { return led(*d, r); },
              {.summary = "Switch the LED",
               .description = "Turns the LED on or off, or toggles it (seed 002).",
               .tag = "device",
               .request_schema = {{"type", "object"},
                                  {"properties", {{"action", {{"type", "string"}, {"enum", {"on", "off", "toggle"}}}}}},
                                  {"required", {"action"}}},
               .replies = {{200, "The new LED state",
                            {{"type", "object"},
                             {"properties", {{"action", {{"type", "string"}}}, {"led_state", led_schema()}}},
                             {"required", {"action", "led_state"}}}},
                           {400, "Unknown action or malformed body; lists the valid actions",
                            {{"$ref", "#/components/schemas/Problem"}}, "application/problem+json"}}}});
}

}  // namespace outpost::api
