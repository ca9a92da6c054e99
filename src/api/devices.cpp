// The hub's native API: devices (by filters, by place), their readings (raw, paged, or in
// buckets for charts), and commands. Also AstroPlant's three kit routes (seed 003), which are
// a view of the devices whose transport is MQTT.
#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "api/api.hpp"

namespace outpost::api {

using http::Request;
using http::Response;
using json = nlohmann::ordered_json;

namespace {

constexpr size_t kMaxDevicesPage = 1000;
constexpr size_t kMaxReadings = 10'000;

const json& problem_ref() {
  static const json j = {{"$ref", "#/components/schemas/Problem"}};
  return j;
}

Response bad_param(std::string_view name, std::string message) {
  return http::problem(400, std::move(message), {{"parameter", name}});
}

// "a,b,c" of finite numbers.
std::optional<std::vector<double>> numbers(std::string_view s, size_t n) {
  std::vector<double> out;
  while (true) {
    size_t comma = s.find(',');
    std::string part(s.substr(0, comma));
    double v = 0;
    auto r = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || r.ec != std::errc() || r.ptr != part.data() + part.size() || !std::isfinite(v)) return std::nullopt;
    out.push_back(v);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  if (out.size() != n) return std::nullopt;
  return out;
}

json value_json(const core::SensorValue& v) {
  return {{"unit", v.unit}, {"primitive", v.primitive}, {"time", core::format_iso8601(v.ts)}, {"values", *v.values}};
}

const core::Sensor* find_sensor(const core::Device& d, const std::string& id) {
  for (const auto& s : d.sensors)
    if (s.id == id) return &s;
  return nullptr;
}

json command_json(const hub::Command& c) {
  json j = {{"id", c.id},
            {"device", c.device},
            {"target", c.target},
            {"parameter", c.parameter},
            {"value", c.value},
            {"state", hub::state_name(c.state)},
            {"who", c.who},
            {"created", core::format_iso8601(c.created)},
            {"updated", core::format_iso8601(c.updated)}};
  j["detail"] = c.detail.empty() ? json(nullptr) : json(c.detail);
  return j;
}

}  // namespace

json reading_value(const core::Reading& r) {
  if (r.is_numeric()) return std::isfinite(r.value) ? json(r.value) : json(nullptr);
  auto j = json::parse(r.text, nullptr, false);
  return j.is_discarded() ? json(r.text) : j;
}

json device_json(const core::Device& d) {
  json sensors = json::array();
  for (const auto& s : d.sensors) {
    sensors.push_back({{"id", s.id},
                       {"attributes", *s.attributes},
                       {"configuration", *s.configuration},
                       {"value", s.value ? value_json(*s.value) : json(nullptr)}});
  }
  json actuators = json::array();
  for (const auto& a : d.actuators) {
    actuators.push_back({{"actions", *a.actions},
                         {"callbacks", *a.callbacks},
                         {"configuration", *a.configuration},
                         {"attributes", *a.attributes}});
  }
  json location = d.location ? json{{"lat", d.location->lat}, {"lon", d.location->lon}} : json(nullptr);
  return {{"id", d.id},
          {"name", d.name},
          {"transport", core::transport_name(d.transport)},
          {"address", d.address.empty() ? json(nullptr) : json(d.address)},
          {"online", d.online},
          {"first_seen", core::format_iso8601(d.first_seen)},
          {"last_seen", core::format_iso8601(d.last_seen)},
          {"location", std::move(location)},
          {"attributes", *d.attributes},
          {"sensors", std::move(sensors)},
          {"actuators", std::move(actuators)}};
}

// GET /api/devices?type=&transport=&online=&near=lat,lon,radius&bbox=minLon,minLat,maxLon,maxLat&limit=&offset=
// → {"total", "count", "offset", "devices": [...]}, by id (nearest first with `near`).
Response list_devices(Deps& d, Request& req) {
  hub::DeviceFilter f;
  f.limit = 100;
  if (auto v = req.query_param("type")) f.sensor_type = *v;
  if (auto v = req.query_param("transport")) {
    f.transport = core::parse_transport(*v);
    if (!f.transport) return bad_param("transport", fmt::format("transport must be local, udp, mqtt or edge, got '{}'", *v));
  }
  if (auto v = req.query_param("online")) {
    if (*v != "true" && *v != "false") return bad_param("online", fmt::format("online must be true or false, got '{}'", *v));
    f.online = *v == "true";
  }
  if (auto v = req.query_param("near")) {
    auto n = numbers(*v, 3);
    if (!n || (*n)[0] < -90 || (*n)[0] > 90 || (*n)[1] < -180 || (*n)[1] > 180 || (*n)[2] <= 0)
      return bad_param("near", fmt::format("near must be lat,lon,radius (degrees, metres > 0), got '{}'", *v));
    f.near = hub::Circle{{(*n)[0], (*n)[1]}, std::min((*n)[2], hub::kMaxRadiusM)};
  }
  if (auto v = req.query_param("bbox")) {
    auto n = numbers(*v, 4);
    if (!n || (*n)[1] < -90 || (*n)[3] > 90 || (*n)[1] > (*n)[3] || (*n)[0] < -180 || (*n)[0] > 180 || (*n)[2] < -180 ||
        (*n)[2] > 180)
      return bad_param("bbox", fmt::format("bbox must be minLon,minLat,maxLon,maxLat (degrees; minLon > maxLon "
                                           "crosses 180°), got '{}'",
                                           *v));
    f.bbox = hub::Box{(*n)[1], (*n)[3], (*n)[0], (*n)[2]};
  }
  if (auto v = req.query_param("limit")) {
    auto n = parse_limit(*v, kMaxDevicesPage);
    if (!n) return bad_param("limit", fmt::format("limit must be a non-negative integer, got '{}'", *v));
    f.limit = *n;
  }
  if (auto v = req.query_param("offset")) {
    auto n = parse_limit(*v, SIZE_MAX);
    if (!n) return bad_param("offset", fmt::format("offset must be a non-negative integer, got '{}'", *v));
    f.offset = *n;
  }
  auto page = d.hub->registry().find(f);
  json list = json::array();
  for (const auto& dev : page.devices) list.push_back(device_json(dev));
  return Response::json({{"total", page.total}, {"count", list.size()}, {"offset", f.offset}, {"devices", std::move(list)}});
}

// GET /api/devices/{id}/readings?sensor=&from=&to=&limit=&before=&bucket=1m|5m|1h
// → {"device", "sensor", "unit", "count", "readings": [{"time", "value"}], "next"} (ascending; page
// back with before=next), or with bucket {"device", "sensor", "unit", "bucket", "count", "buckets":
// [{"start", "count", "mean", "min", "max"}]}.
Response device_readings(Deps& d, Request& req) {
  const std::string& id = req.path_params.at("id");
  auto dev = d.hub->registry().get(id);
  if (!dev) return http::problem(404, fmt::format("no device '{}'", id));
  auto sensor = req.query_param("sensor");
  if (!sensor) {
    std::string names;
    for (const auto& s : dev->sensors) names += (names.empty() ? "" : ", ") + s.id;
    return bad_param("sensor", fmt::format("sensor is required; device '{}' has: {}", id, names.empty() ? "none" : names));
  }
  const core::Sensor* s = find_sensor(*dev, *sensor);
  if (!s) return http::problem(404, fmt::format("device '{}' has no sensor '{}'", id, *sensor), {{"parameter", "sensor"}});
  store::ReadingQuery q{.device = id, .sensor = *sensor, .limit = 100};
  if (auto bad = parse_time_range(req, q.from, q.to)) return std::move(*bad);
  if (auto v = req.query_param("limit")) {
    auto n = parse_limit(*v, kMaxReadings);
    if (!n) return bad_param("limit", fmt::format("limit must be a non-negative integer, got '{}'", *v));
    q.limit = *n;
  }
  std::string unit = s->value ? s->value->unit : "";
  if (auto v = req.query_param("bucket")) {
    std::optional<std::chrono::microseconds> width;
    if (*v == "1m") width = std::chrono::minutes(1);
    if (*v == "5m") width = std::chrono::minutes(5);
    if (*v == "1h") width = std::chrono::hours(1);
    if (*v == "1d") width = std::chrono::hours(24);
    if (!width) return bad_param("bucket", fmt::format("bucket must be 1m, 5m, 1h or 1d, got '{}'", *v));
    auto rows = d.store.query_buckets(q, *width);
    if (!rows) return http::problem(rows.status());
    json list = json::array();
    for (const auto& b : *rows) {
      list.push_back({{"start", core::format_iso8601(b.start)}, {"count", b.count}, {"mean", b.mean}, {"min", b.min},
                      {"max", b.max}});
    }
    return Response::json({{"device", id}, {"sensor", *sensor}, {"unit", unit}, {"bucket", *v},
                           {"count", list.size()}, {"buckets", std::move(list)}});
  }
  if (auto v = req.query_param("before")) {
    auto t = core::parse_iso8601(*v);
    if (!t) return bad_param("before", fmt::format("before must be an ISO 8601 time (the `next` of a page), got '{}'", *v));
    auto bound = *t - std::chrono::microseconds(1);
    if (!q.to || *q.to > bound) q.to = bound;
    if (q.from && *q.from > *q.to) q.limit = 0;
  }
  auto rows = d.store.query(q);
  if (!rows) return http::problem(rows.status());
  json list = json::array();
  for (const auto& r : *rows) list.push_back({{"time", core::format_iso8601(r.ts)}, {"value", reading_value(r)}});
  json next = rows->size() == q.limit && !rows->empty() ? json(core::format_iso8601(rows->front().ts)) : json(nullptr);
  return Response::json({{"device", id}, {"sensor", *sensor}, {"unit", unit}, {"count", list.size()},
                         {"readings", std::move(list)}, {"next", std::move(next)}});
}

// POST /api/devices/{id}/commands {"target", "parameter", "value"} → 202 the command, with Location.
Response post_command(Deps& d, Request& req) {
  const std::string& id = req.path_params.at("id");
  auto body = json::parse(req.raw.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object()) return http::problem(400, "the body must be a JSON object {\"target\", \"parameter\", \"value\"}");
  for (const char* field : {"target", "parameter"}) {
    auto it = body.find(field);
    if (it == body.end() || !it->is_string() || it->get_ref<const std::string&>().empty())
      return http::problem(400, fmt::format("'{}' must be a non-empty string", field), {{"field", field}});
  }
  if (!body.contains("value")) return http::problem(400, "'value' is required", {{"field", "value"}});
  std::string who = req.principal ? req.principal->name : "anonymous";
  auto c = d.hub->submit(id, body["target"].get<std::string>(), body["parameter"].get<std::string>(),
                         core::Json::parse(body["value"].dump()), who);
  if (!c) return http::problem(c.status());
  Response r = Response::json(command_json(*c), 202);
  r.headers.emplace_back("Location", "/api/commands/" + c->id);
  return r;
}

// GET /kits → [{"id", "details": {...}}] for every kit (device with transport mqtt).
// GET /kits/{id} → {"id", "details": {"id", "ip", "description", "location"}}.
// GET /kits/{id}/data?limit=N → {"id", "data": {"<sensor>": [{"timestamp", "value"}]}} (the
// newest N points per sensor, default 10, ascending).
json kit_details(const core::Device& dev) {
  json location = dev.location ? json{{"lat", dev.location->lat}, {"lon", dev.location->lon}} : json(nullptr);
  std::string description = dev.name;
  if (auto it = dev.attributes->find("description"); it != dev.attributes->end() && it->is_string())
    description = it->get<std::string>();
  return {{"id", dev.id},
          {"ip", dev.address.empty() ? json(nullptr) : json(dev.address)},
          {"description", description},
          {"location", std::move(location)},
          {"online", dev.online},
          {"last_seen", core::format_iso8601(dev.last_seen)}};
}

void register_device_hub_routes(http::Router& router, Deps& deps) {
  using http::Access;
  using http::Verb;
  Deps* d = &deps;
  if (!d->hub) return;
  json device_schema = {{"type", "object"},
                        {"properties",
                         {{"id", {{"type", "string"}}},
                          {"name", {{"type", "string"}}},
                          {"transport", {{"type", "string"}, {"enum", {"local", "udp", "mqtt", "edge"}}}},
                          {"address", {{"type", {"string", "null"}}}},
                          {"online", {{"type", "boolean"}}},
                          {"first_seen", {{"type", "string"}, {"format", "date-time"}}},
                          {"last_seen", {{"type", "string"}, {"format", "date-time"}}},
                          {"location", {{"type", {"object", "null"}}}},
                          {"attributes", {{"type", "object"}}},
                          {"sensors", {{"type", "array"}, {"items", {{"type", "object"}}}}},
                          {"actuators", {{"type", "array"}, {"items", {{"type", "object"}}}}}}}};
  json command_schema = {{"type", "object"},
                         {"properties",
                          {{"id", {{"type", "string"}}},
                           {"device", {{"type", "string"}}},
                           {"target", {{"type", "string"}}},
                           {"parameter", {{"type", "string"}}},
                           {"value", json::object()},
                           {"state", {{"type", "string"}, {"enum", {"queued", "sent", "acknowledged", "failed", "timed_out"}}}},
                           {"who", {{"type", "string"}}},
                           {"created", {{"type", "string"}, {"format", "date-time"}}},
                           {"updated", {{"type", "string"}, {"format", "date-time"}}},
                           {"detail", {{"type", {"string", "null"}}}}}}};
  http::ParamDoc id_param{"id", "path", "Device id", {{"type", "string"}}, true};

  router.add({Verb::get, "/api/devices", Access::kRead, [d](Request& r) { return list_devices(*d, r); },
              {.summary = "Devices",
               .description = "Devices of the hub (this board, FIWARE devices over UDP, kits over MQTT), by id; with "
                              "`near`, nearest first by great-circle distance.",
               .tag = "devices",
               .params = {{"type", "query", "Devices with a sensor of this type (its attributes.type or id)"},
                          {"transport", "query", "local, udp, mqtt or edge (devices of another Outpost, via POST /api/ingest)"},
                          {"online", "query", "true or false", {{"type", "boolean"}}},
                          {"near", "query", "lat,lon,radius: within radius metres of the point"},
                          {"bbox", "query", "minLon,minLat,maxLon,maxLat (degrees)"},
                          {"limit", "query", "At most this many (default 100, at most 1000)", {{"type", "integer"}, {"minimum", 0}}},
                          {"offset", "query", "Skip this many", {{"type", "integer"}, {"minimum", 0}}}},
               .replies = {{200, "A page of devices",
                            {{"type", "object"},
                             {"properties",
                              {{"total", {{"type", "integer"}}},
                               {"count", {{"type", "integer"}}},
                               {"offset", {{"type", "integer"}}},
                               {"devices", {{"type", "array"}, {"items", device_schema}}}}}}},
                           {400, "Invalid parameter", problem_ref(), "application/problem+json"}}}});
  router.add({Verb::get, "/api/devices/{id}", Access::kRead,
              [d](Request& r) {
                auto dev = d->hub->registry().get(r.path_params.at("id"));
                if (!dev) return http::problem(404, fmt::format("no device '{}'", r.path_params.at("id")));
                return Response::json(device_json(*dev));
              },
              {.summary = "One device",
               .description = "Its attributes, location, sensors with their latest values, actuators, transport and last "
                              "known address.",
               .tag = "devices",
               .params = {id_param},
               .replies = {{200, "The device", device_schema},
                           {404, "No such device", problem_ref(), "application/problem+json"}}}});
  router.add({Verb::get, "/api/devices/{id}/readings", Access::kRead, [d](Request& r) { return device_readings(*d, r); },
              {.summary = "A sensor's readings",
               .description = "Raw readings, ascending, the newest `limit` in range (page back with `before=<next>`); "
                              "or with `bucket` count/mean/min/max per bucket, for charts.",
               .tag = "devices",
               .params = {id_param,
                          {"sensor", "query", "Sensor id", {{"type", "string"}}, true},
                          {"from", "query", "At or after (ISO 8601)", {{"type", "string"}, {"format", "date-time"}}},
                          {"to", "query", "At or before (ISO 8601)", {{"type", "string"}, {"format", "date-time"}}},
                          {"before", "query", "Before this time (the `next` of the previous page)",
                           {{"type", "string"}, {"format", "date-time"}}},
                          {"limit", "query", "At most this many readings or buckets (default 100, at most 10000)",
                           {{"type", "integer"}, {"minimum", 0}}},
                          {"bucket", "query", "1m, 5m, 1h or 1d", {{"type", "string"}, {"enum", {"1m", "5m", "1h", "1d"}}}}},
               .replies = {{200, "Readings or buckets", {{"type", "object"}}},
                           {400, "Invalid parameter", problem_ref(), "application/problem+json"},
                           {404, "No such device or sensor", problem_ref(), "application/problem+json"}}}});
  router.add({Verb::post, "/api/devices/{id}/commands", Access::kControl, [d](Request& r) { return post_command(*d, r); },
              {.summary = "Send a command",
               .description = "To an actuator or sensor of the device, over its transport (this board's hardware, UDP, "
                              "MQTT). Follow it at /api/commands/{id}: sent, then acknowledged, failed or timed_out "
                              "(hub.command_timeout).",
               .tag = "devices",
               .params = {id_param},
               .request_schema = {{"type", "object"},
                                  {"required", {"target", "parameter", "value"}},
                                  {"properties",
                                   {{"target", {{"type", "string"}}},
                                    {"parameter", {{"type", "string"}}},
                                    {"value", json::object()}}}},
               .replies = {{202, "Accepted: the command", command_schema},
                           {400, "Invalid body", problem_ref(), "application/problem+json"},
                           {404, "No such device", problem_ref(), "application/problem+json"},
                           {503, "The device has no address or its transport is off", problem_ref(),
                            "application/problem+json"}}}});
  router.add({Verb::get, "/api/commands/{id}", Access::kRead,
              [d](Request& r) {
                auto c = d->hub->command(r.path_params.at("id"));
                if (!c) return http::problem(404, fmt::format("no command '{}' (or it is too old)", r.path_params.at("id")));
                return Response::json(command_json(*c));
              },
              {.summary = "A command's state",
               .tag = "devices",
               .params = {{"id", "path", "Command id", {{"type", "string"}}, true}},
               .replies = {{200, "The command", command_schema},
                           {404, "No such command", problem_ref(), "application/problem+json"}}}});

  // AstroPlant (seed 003).
  auto kit = [d](const std::string& id) -> std::optional<core::Device> {
    auto dev = d->hub->registry().get(id);
    if (!dev || dev->transport != core::Transport::kMqtt) return std::nullopt;
    return dev;
  };
  router.add({Verb::get, "/kits", Access::kRead,
              [d](Request&) {
                auto page = d->hub->registry().find({.transport = core::Transport::kMqtt, .limit = SIZE_MAX});
                json list = json::array();
                for (const auto& dev : page.devices) list.push_back({{"id", dev.id}, {"details", kit_details(dev)}});
                return Response::json(list);
              },
              {.summary = "All kits",
               .description = "AstroPlant kits (devices reporting over MQTT), by id.",
               .tag = "kits (seed 003)",
               .replies = {{200, "Kits", {{"type", "array"}, {"items", {{"type", "object"}}}}}}}});
  router.add({Verb::get, "/kits/{id}", Access::kRead,
              [kit](Request& r) {
                auto dev = kit(r.path_params.at("id"));
                if (!dev) return http::problem(404, fmt::format("no kit '{}'", r.path_params.at("id")));
                return Response::json({{"id", dev->id}, {"details", kit_details(*dev)}});
              },
              {.summary = "A kit's details",
               .description = "id, description, last address (ip), location.",
               .tag = "kits (seed 003)",
               .params = {{"id", "path", "Kit serial", {{"type", "string"}}, true}},
               .replies = {{200, "The kit", {{"type", "object"}}},
                           {404, "No such kit", problem_ref(), "application/problem+json"}}}});
  router.add({Verb::get, "/kits/{id}/data", Access::kRead,
              [d, kit](Request& r) {
                auto dev = kit(r.path_params.at("id"));
                if (!dev) return http::problem(404, fmt::format("no kit '{}'", r.path_params.at("id")));
                size_t limit = 10;
                if (auto v = r.query_param("limit")) {
                  auto n = parse_limit(*v, 1000);
                  if (!n || *n == 0) return bad_param("limit", fmt::format("limit must be a positive integer, got '{}'", *v));
                  limit = *n;
                }
                json data = json::object();
                for (const auto& s : dev->sensors) {
                  auto rows = d->store.query({.device = dev->id, .sensor = s.id, .limit = limit});
                  if (!rows) return http::problem(rows.status());
                  json points = json::array();
                  for (const auto& row : *rows)
                    points.push_back({{"timestamp", core::format_iso8601(row.ts)}, {"value", reading_value(row)}});
                  data[s.id] = std::move(points);
                }
                return Response::json({{"id", dev->id}, {"data", std::move(data)}});
              },
              {.summary = "A kit's latest data points",
               .description = "The newest `limit` points of each sensor, ascending.",
               .tag = "kits (seed 003)",
               .params = {{"id", "path", "Kit serial", {{"type", "string"}}, true},
                          {"limit", "query", "Points per sensor (default 10, at most 1000)", {{"type", "integer"}, {"minimum", 1}}}},
               .replies = {{200, "Data points per sensor", {{"type", "object"}}},
                           {400, "Invalid parameter", problem_ref(), "application/problem+json"},
                           {404, "No such kit", problem_ref(), "application/problem+json"}}}});
}

}  // namespace outpost::api
