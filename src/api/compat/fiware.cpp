// FIWARE Real Virtual Interaction (seed 004) on the root path, as a view of the hub's devices:
//   GET /?action=loadById&device_id=..&maxResults=N
//   GET /?action=loadBySpatial&lat=..&lon=..&radius=<metres>&maxResults=N   (or minLat/maxLat/minLon/maxLon)
//   POST / with action=update&device_id=..&sensor_id=..&parameter=..&value=.. (form body), forwarded
//   as is to the device over UDP.
// The root path is shared: GET / without `action` is seed 000's "Hello, World!", and a WebSocket
// handshake on / is the live event stream (seed 004's `new WebSocket("ws://REMOTEHOST")`).
#include <charconv>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "api/api.hpp"

namespace outpost::api {

using http::Request;
using http::Response;
using json = nlohmann::ordered_json;

namespace {

constexpr size_t kMaxResults = 1000;
constexpr size_t kDefaultSpatialResults = 100;

// "2014-02-17 14:35:53", UTC: the seed's time format.
std::string fiware_time(core::TimePoint t) {
  std::string iso = core::format_iso8601(t);  // 2014-02-17T14:35:53.000000Z
  return iso.substr(0, 10) + " " + iso.substr(11, 8);
}

Response fiware_error(std::string message, std::string_view parameter = {}) {
  json extra = parameter.empty() ? json(nullptr) : json{{"parameter", parameter}};
  return http::problem(400, std::move(message), extra);
}

// The seed's device shape: {"sensors": [{"values": [...], "attributes", "configuration"}],
// "attributes", "actuators"}. `history` > 1 reads that many values per sensor from the store.
core::Result<json> fiware_device(Deps& d, const core::Device& dev, size_t history) {
  json sensors = json::array();
  for (const auto& s : dev.sensors) {
    json values = json::array();
    if (history <= 1) {
      if (s.value) {
        values.push_back({{"unit", s.value->unit},
                          {"time", fiware_time(s.value->ts)},
                          {"values", *s.value->values},
                          {"primitive", s.value->primitive}});
      }
    } else {
      auto rows = d.store.query({.device = dev.id, .sensor = s.id, .limit = history});
      if (!rows) return rows.status();
      std::string primitive = s.value ? s.value->primitive : "";
      for (auto it = rows->rbegin(); it != rows->rend(); ++it) {  // newest first, as "latest" reads
        values.push_back({{"unit", it->unit}, {"time", fiware_time(it->ts)}, {"values", reading_value(*it)},
                          {"primitive", primitive}});
      }
    }
    sensors.push_back({{"values", std::move(values)}, {"attributes", *s.attributes}, {"configuration", *s.configuration}});
  }
  json actuators = json::array();
  for (const auto& a : dev.actuators) {
    actuators.push_back({{"callbacks", *a.callbacks},
                         {"attributes", *a.attributes},
                         {"configuration", *a.configuration},
                         {"actions", *a.actions}});
  }
  return json{{"sensors", std::move(sensors)}, {"attributes", *dev.attributes}, {"actuators", std::move(actuators)}};
}

std::optional<double> number_param(const Request& req, std::string_view name, std::string& error) {
  auto v = req.query_param(name);
  if (!v) {
    error = fmt::format("{} is required", name);
    return std::nullopt;
  }
  double x = 0;
  auto r = std::from_chars(v->data(), v->data() + v->size(), x);
  if (v->empty() || r.ec != std::errc() || r.ptr != v->data() + v->size() || !std::isfinite(x)) {
    error = fmt::format("{} must be a number, got '{}'", name, *v);
    return std::nullopt;
  }
  return x;
}

std::optional<Response> max_results(const Request& req, size_t fallback, size_t& out) {
  out = fallback;
  if (auto v = req.query_param("maxResults")) {
    auto n = parse_limit(*v, kMaxResults);
    if (!n || *n == 0) return fiware_error(fmt::format("maxResults must be a positive integer, got '{}'", *v), "maxResults");
    out = *n;
  }
  return std::nullopt;
}

Response with_origin(Deps& d, Response r) {
  if (!d.cfg.hub.fiware_cors_origin.empty())
    r.headers.emplace_back("Access-Control-Allow-Origin", d.cfg.hub.fiware_cors_origin);
  return r;
}

Response answer(Deps& d, const json& body) {
  return with_origin(d, Response::text(body.dump(4), "text/plain; charset=utf-8"));
}

Response load_by_id(Deps& d, Request& req) {
  auto id = req.query_param("device_id");
  if (!id || id->empty()) return fiware_error("device_id is required", "device_id");
  size_t history = 1;
  if (auto bad = max_results(req, 1, history)) return std::move(*bad);
  json out = json::object();
  if (auto dev = d.hub->registry().get(*id)) {
    auto j = fiware_device(d, *dev, history);
    if (!j) return http::problem(j.status());
    out[dev->id] = std::move(*j);
  }
  return answer(d, out);
}

Response load_by_spatial(Deps& d, Request& req) {
  hub::DeviceFilter f;
  std::string error;
  bool square = req.query_param("minLat") || req.query_param("maxLat") || req.query_param("minLon") ||
                req.query_param("maxLon");
  if (square) {
    auto min_lat = number_param(req, "minLat", error);
    if (!min_lat) return fiware_error(error, "minLat");
    auto max_lat = number_param(req, "maxLat", error);
    if (!max_lat) return fiware_error(error, "maxLat");
    auto min_lon = number_param(req, "minLon", error);
    if (!min_lon) return fiware_error(error, "minLon");
    auto max_lon = number_param(req, "maxLon", error);
    if (!max_lon) return fiware_error(error, "maxLon");
    for (auto [name, v] : {std::pair{"minLat", *min_lat}, std::pair{"maxLat", *max_lat}})
      if (v < -90 || v > 90) return fiware_error(fmt::format("{} must be within -90..90, got {}", name, v), name);
    for (auto [name, v] : {std::pair{"minLon", *min_lon}, std::pair{"maxLon", *max_lon}})
      if (v < -180 || v > 180) return fiware_error(fmt::format("{} must be within -180..180, got {}", name, v), name);
    if (*min_lat > *max_lat) return fiware_error("minLat is greater than maxLat", "minLat");
    f.bbox = hub::Box{*min_lat, *max_lat, *min_lon, *max_lon};
  } else {
    auto lat = number_param(req, "lat", error);
    if (!lat) return fiware_error(error, "lat");
    auto lon = number_param(req, "lon", error);
    if (!lon) return fiware_error(error, "lon");
    auto radius = number_param(req, "radius", error);
    if (!radius) return fiware_error(error, "radius");
    if (*lat < -90 || *lat > 90) return fiware_error(fmt::format("lat must be within -90..90, got {}", *lat), "lat");
    if (*lon < -180 || *lon > 180) return fiware_error(fmt::format("lon must be within -180..180, got {}", *lon), "lon");
    if (*radius <= 0) return fiware_error(fmt::format("radius must be a positive number of metres, got {}", *radius), "radius");
    f.near = hub::Circle{{*lat, *lon}, std::min(*radius, hub::kMaxRadiusM)};
  }
  if (auto bad = max_results(req, kDefaultSpatialResults, f.limit)) return std::move(*bad);
  auto page = d.hub->registry().find(f);
  json out = json::object();
  for (const auto& dev : page.devices) {
    auto j = fiware_device(d, dev, 1);
    if (!j) return http::problem(j.status());
    out[dev.id] = std::move(*j);
  }
  return answer(d, out);
}

// application/x-www-form-urlencoded → name → value (the first of each). nullopt if malformed.
std::optional<std::map<std::string, std::string>> parse_form(std::string_view body) {
  std::map<std::string, std::string> out;
  while (!body.empty()) {
    size_t amp = body.find('&');
    std::string_view pair = body.substr(0, amp);
    size_t eq = pair.find('=');
    auto name = http::url_decode(pair.substr(0, eq), true);
    auto value = http::url_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), true);
    if (!name || !value) return std::nullopt;
    if (!name->empty()) out.emplace(std::move(*name), std::move(*value));
    if (amp == std::string_view::npos) break;
    body.remove_prefix(amp + 1);
  }
  return out;
}

// POST / action=update&device_id=..&sensor_id=..&parameter=..&value=.. → "200 OK" once the body
// is on its way to the device's last known address (UDP: nobody knows whether it arrived).
Response update(Deps& d, Request& req) {
  const std::string& body = req.raw.body();
  auto form = parse_form(body);
  if (!form) return fiware_error("the body must be application/x-www-form-urlencoded");
  auto field = [&](const char* name) -> const std::string* {
    auto it = form->find(name);
    return it == form->end() ? nullptr : &it->second;
  };
  const std::string* action = field("action");
  if (!action) return fiware_error("the body must start with action=update", "action");
  if (*action != "update") return fiware_error(fmt::format("action must be update, got '{}'", *action), "action");
  for (const char* name : {"device_id", "parameter", "value"}) {
    if (!field(name) || (std::string_view(name) != "value" && field(name)->empty()))
      return fiware_error(fmt::format("{} is required", name), name);
  }
  const std::string* sensor = field("sensor_id");
  std::string target = sensor && !sensor->empty() ? *sensor : *field("parameter");
  auto dev = d.hub->registry().get(*field("device_id"));
  if (!dev || dev->address.empty() || dev->transport != core::Transport::kUdp)
    return with_origin(d, Response::text("404 NOT FOUND", "text/plain; charset=utf-8", 404));
  std::string who = req.principal ? req.principal->name : "anonymous";
  auto c = d.hub->submit(dev->id, target, *field("parameter"), *field("value"), who, body);
  if (!c) return http::problem(c.status());
  if (c->state == hub::CommandState::kFailed)
    return with_origin(d, Response::text("502 BAD GATEWAY", "text/plain; charset=utf-8", 502));
  return with_origin(d, Response::text("200 OK", "text/plain; charset=utf-8"));
}

}  // namespace

void register_root_routes(http::Router& router, Deps& deps) {
  using http::Access;
  using http::ErrorStyle;
  using http::Verb;
  Deps* d = &deps;
  bool hub = d->hub != nullptr;
  const json status_message = {{"$ref", "#/components/schemas/StatusMessage"}};
  http::Route root{
      Verb::get, "/", Access::kRead,
      [d, hub](Request& req) -> Response {
        auto action = req.query_param("action");
        if (!action) return seed000_hello();
        if (!hub) return http::problem(404, "the hub is off");
        if (*action == "loadById") return load_by_id(*d, req);
        if (*action == "loadBySpatial") return load_by_spatial(*d, req);
        return fiware_error(fmt::format("action must be loadById or loadBySpatial, got '{}'", *action), "action");
      },
      {.summary = "Hello, World! (seed 000); FIWARE queries (seed 004); WebSocket",
       .description = "Without `action`: seed 000's \"Hello, World!\". With `action=loadById` (device_id, maxResults "
                      "= values per sensor, default 1) or `action=loadBySpatial` (lat, lon, radius in metres, or "
                      "minLat/maxLat/minLon/maxLon; maxResults = devices, nearest first, default 100): seed 004's "
                      "device JSON, {} when nothing matches. A WebSocket handshake here is the live event stream "
                      "(as GET /ws).",
       .tag = "fiware (seed 004)",
       .params = {{"action", "query", "loadById or loadBySpatial", {{"type", "string"}, {"enum", {"loadById", "loadBySpatial"}}}},
                  {"device_id", "query", "loadById: the device"},
                  {"lat", "query", "loadBySpatial: centre latitude", {{"type", "number"}}},
                  {"lon", "query", "loadBySpatial: centre longitude", {{"type", "number"}}},
                  {"radius", "query", "loadBySpatial: metres", {{"type", "number"}, {"exclusiveMinimum", 0}}},
                  {"minLat", "query", "loadBySpatial, square form", {{"type", "number"}}},
                  {"maxLat", "query", "loadBySpatial, square form", {{"type", "number"}}},
                  {"minLon", "query", "loadBySpatial, square form", {{"type", "number"}}},
                  {"maxLon", "query", "loadBySpatial, square form", {{"type", "number"}}},
                  {"maxResults", "query", "See the description", {{"type", "integer"}, {"minimum", 1}}}},
       .replies = {{200, "Seed 000's status message, or seed 004's devices (text/plain JSON)", status_message},
                   {400, "Missing or invalid parameter", {{"$ref", "#/components/schemas/Problem"}},
                    "application/problem+json"}}},
      ErrorStyle::kSeed000};
  if (d->ws_upgrade) root.upgrade = d->ws_upgrade;
  if (hub && d->cfg.hub.anonymous_read) {
    root.public_when = [](const Request& req) { return req.query_param("action").has_value(); };
  }
  router.add(std::move(root));
  if (!hub) return;
  router.add({Verb::post, "/", Access::kControl, [d](Request& req) { return update(*d, req); },
              {.summary = "FIWARE update: forward a state change to a device (seed 004)",
               .description = "The form body is sent unchanged as one UDP datagram to the device's last known address; "
                              "\"200 OK\" once sent (UDP: delivery is not known), 404 for an unknown device or one "
                              "without an address. Recorded as a command event.",
               .tag = "fiware (seed 004)",
               .request_schema = {{"type", "object"},
                                  {"required", {"action", "device_id", "parameter", "value"}},
                                  {"properties",
                                   {{"action", {{"type", "string"}, {"enum", {"update"}}}},
                                    {"device_id", {{"type", "string"}}},
                                    {"sensor_id", {{"type", "string"}}},
                                    {"parameter", {{"type", "string"}}},
                                    {"value", {{"type", "string"}}}}}},
               .request_content_type = "application/x-www-form-urlencoded",
               .replies = {{200, "200 OK", nullptr, "text/plain"},
                           {400, "Missing or invalid field", {{"$ref", "#/components/schemas/Problem"}},
                            "application/problem+json"},
                           {404, "404 NOT FOUND", nullptr, "text/plain"}}},
              ErrorStyle::kSeed000});  // one error style per path: / is seed 000's
}

}  // namespace outpost::api
