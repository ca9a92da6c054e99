// Upstream routes: the outbox (GET /api/outbox, the dead letters and what to do with them), and a
// hub's POST /api/ingest, where other Outposts (edges) deliver their outbox.
#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <map>

#include "api/api.hpp"

namespace outpost::api {

using http::Request;
using http::Response;
using json = nlohmann::ordered_json;

namespace {

constexpr size_t kMaxDeadPage = 1000;

const json& problem_ref() {
  static const json j = {{"$ref", "#/components/schemas/Problem"}};
  return j;
}

json time_or_null(const std::optional<core::TimePoint>& t) {
  return t ? json(core::format_iso8601(*t)) : json(nullptr);
}

// Seconds the oldest pending message has waited, to a tenth; null when none waits.
json oldest_age(const upstream::DestinationStatus& s, core::TimePoint now) {
  if (!s.stats.oldest_pending) return nullptr;
  return std::round(std::chrono::duration<double>(now - *s.stats.oldest_pending).count() * 10) / 10;
}

json destination_json(const upstream::DestinationStatus& s, core::TimePoint now) {
  return {{"name", s.name},
          {"target", s.target.empty() ? json(nullptr) : json(s.target)},
          {"kinds", s.kinds},
          {"configured", s.configured},
          {"state", s.state},
          {"pending", s.stats.pending},
          {"bytes", s.stats.bytes},
          {"oldest_pending", time_or_null(s.stats.oldest_pending)},
          {"oldest_pending_age_seconds", oldest_age(s, now)},
          {"delivered", s.stats.delivered},
          {"dead_letters", s.stats.dead},
          {"dropped", s.stats.dropped},
          {"refused", s.refused},
          {"retries", s.retries},
          {"failures", s.failures},
          {"last_error", s.last_error.empty() ? json(nullptr) : json(s.last_error)},
          {"last_error_at", time_or_null(s.last_error_at)},
          {"next_attempt", time_or_null(s.next_attempt)},
          {"last_delivered_at", time_or_null(s.last_delivered_at)}};
}

json dead_letter_json(const store::OutboxMessage& m) {
  json body = nullptr;
  if (m.content_type.rfind("application/json", 0) == 0) {
    body = json::parse(m.body, nullptr, false);
    if (body.is_discarded()) body = m.body;
  }
  return {{"destination", m.destination},
          {"id", m.id},
          {"seq", m.seq},
          {"kind", m.kind},
          {"content_type", m.content_type},
          {"bytes", m.body.size()},
          {"created", core::format_iso8601(m.created)},
          {"attempts", m.attempts},
          {"last_error", m.last_error},
          {"dead_at", time_or_null(m.dead_at)},
          {"body", std::move(body)}};
}

Response bad_param(std::string_view name, std::string message) {
  return http::problem(400, std::move(message), {{"parameter", name}});
}

// A destination named by a request: configured, or with rows left in the outbox.
bool known_destination(Deps& d, const std::string& name) {
  if (d.outbox->has_destination(name)) return true;
  for (const auto& s : d.outbox->status())
    if (s.name == name) return true;
  return false;
}

// GET /api/outbox/dead?destination=&limit=&after= → {"count", "dead_letters": [...], "next"}
Response list_dead(Deps& d, Request& req) {
  std::string destination = req.query_param("destination").value_or("");
  if (!destination.empty() && !known_destination(d, destination))
    return http::problem(404, fmt::format("no upstream destination '{}'", destination), {{"parameter", "destination"}});
  size_t limit = 100;
  if (auto v = req.query_param("limit")) {
    auto n = parse_limit(*v, kMaxDeadPage);
    if (!n) return bad_param("limit", fmt::format("limit must be a non-negative integer, got '{}'", *v));
    limit = *n;
  }
  int64_t after = 0;
  if (auto v = req.query_param("after")) {
    auto n = parse_limit(*v, static_cast<size_t>(std::numeric_limits<int64_t>::max()));
    if (!n) return bad_param("after", fmt::format("after must be a non-negative integer (a seq), got '{}'", *v));
    after = static_cast<int64_t>(*n);
  }
  auto rows = d.outbox->dead_letters(destination, after, limit);
  if (!rows) return http::problem(rows.status());
  json list = json::array();
  for (const auto& m : *rows) list.push_back(dead_letter_json(m));
  json next = !rows->empty() && rows->size() == limit ? json(rows->back().seq) : json(nullptr);
  return Response::json({{"count", list.size()}, {"dead_letters", std::move(list)}, {"next", std::move(next)}});
}

// POST /api/outbox/dead/retry {"destination", "id"?} → {"retried": n}; DELETE
// /api/outbox/dead?destination=&id= → {"deleted": n}. Without an id: every dead letter of it.
Response change_dead(Deps& d, const std::string& destination, const std::string& id, bool retry) {
  if (destination.empty()) return bad_param("destination", "destination is required");
  if (!known_destination(d, destination))
    return http::problem(404, fmt::format("no upstream destination '{}'", destination), {{"parameter", "destination"}});
  if (retry && !d.outbox->has_destination(destination))
    return http::problem(409, fmt::format("'{}' is no longer configured: its dead letters can only be deleted",
                                          destination));
  auto n = retry ? d.outbox->retry_dead(destination, id) : d.outbox->delete_dead(destination, id);
  if (!n) return http::problem(n.status());
  return Response::json({{retry ? "retried" : "deleted", *n}});
}

// POST /api/ingest {"source", "messages": [...]} → 200 {"accepted", "duplicates"} once committed.
void ingest(Deps& d, Request& req, http::Reply reply) {
  // An edge whose destination takes snapshots POSTs them here as JPEGs: say so, rather than
  // "not JSON" (415 is a 4xx: the edge sets the snapshot aside as a dead letter, visibly).
  std::string_view type = req.header("Content-Type");
  if (!type.empty() && type.find("json") == std::string_view::npos)
    return reply(http::problem(415, fmt::format("POST /api/ingest takes the outbox's JSON envelope "
                                                "(application/json), not {}: a hub does not take snapshots",
                                                type)));
  auto parsed = upstream::parse_ingest(req.raw.body());
  if (!parsed) return reply(http::problem(parsed.status()));
  // Committing waits for the store's writer: not on an I/O thread.
  d.run_blocking([&d, req = std::move(*parsed), reply = std::move(reply)]() mutable {
    // The devices the batch speaks of, with the newest reading of each sensor, for the registry.
    std::map<std::string, std::map<std::string, core::Reading>> latest;
    std::map<std::string, bool> mentioned;
    auto result = d.store.ingest(req.source, req.items, core::now());
    if (!result) return reply(http::problem(result.status()));
    for (size_t i = 0; i < req.items.size(); ++i) {
      if (!result->fresh[i]) continue;
      const auto& item = req.items[i];
      for (const auto& r : item.readings) {
        auto& slot = latest[r.device][r.sensor];
        if (slot.device.empty() || slot.ts <= r.ts) slot = r;
        mentioned[r.device] = true;
      }
      if (item.event) mentioned[item.event->device] = true;
    }
    if (d.hub) {
      for (const auto& [device, _] : mentioned) {
        // A device this hub hears of by another transport keeps it: commands still reach it.
        auto known = d.hub->registry().get(device);
        if (known && known->transport != core::Transport::kEdge) continue;
        core::DeviceReport report{.id = device, .transport = core::Transport::kEdge, .address = req.source,
                                  .received = core::now()};
        for (const auto& [sensor, r] : latest[device]) {
          core::Sensor s{.id = sensor, .attributes = core::Json{{"type", sensor}}};
          s.value = core::SensorValue{r.unit, r.is_numeric() ? "double" : "json", r.ts,
                                      core::Json::parse(reading_value(r).dump())};
          report.sensors.push_back(std::move(s));
        }
        d.hub->observe(std::move(report));
      }
    }
    if (d.publish_event) {
      for (const auto& e : result->events) d.publish_event(e);
    }
    reply(Response::json({{"accepted", result->accepted}, {"duplicates", result->duplicates}}));
  });
}

}  // namespace

nlohmann::json upstream_health(const upstream::Outbox& outbox) {
  auto now = core::now();
  nlohmann::json list = nlohmann::json::array();
  uint64_t pending = 0, dead = 0, dropped = 0, refused = 0;
  for (const auto& s : outbox.status()) {
    pending += s.stats.pending;
    dead += s.stats.dead;
    dropped += s.stats.dropped;
    refused += s.refused;
    list.push_back({{"name", s.name},
                    {"state", s.state},
                    {"pending", s.stats.pending},
                    {"oldest_pending_age_seconds", oldest_age(s, now)},
                    {"dead_letters", s.stats.dead},
                    {"dropped", s.stats.dropped},
                    {"refused", s.refused},
                    {"last_error", s.last_error.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.last_error)}});
  }
  return {{"pending", pending}, {"dead_letters", dead}, {"dropped", dropped}, {"refused", refused},
          {"destinations", std::move(list)}};
}

namespace {

const json& time_schema() {
  static const json j = {{"type", {"string", "null"}}, {"format", "date-time"}};
  return j;
}

json destination_schema() {
  return {{"type", "object"},
          {"properties",
           {{"name", {{"type", "string"}}},
            {"target", {{"type", {"string", "null"}}, {"description", "Where it goes (no secrets)"}}},
            {"kinds", {{"type", "array"}, {"items", {{"type", "string"}}}}},
            {"configured",
             {{"type", "boolean"}, {"description", "false: rows left by a destination removed from the config"}}},
            {"state", {{"type", "string"}, {"enum", {"idle", "delivering", "backing_off", "stopped"}}}},
            {"pending", {{"type", "integer"}}},
            {"bytes", {{"type", "integer"}, {"description", "Bytes of bodies, pending and dead letters"}}},
            {"oldest_pending", time_schema()},
            {"oldest_pending_age_seconds", {{"type", {"number", "null"}}}},
            {"delivered", {{"type", "integer"}, {"description", "Confirmed by the destination, ever"}}},
            {"dead_letters", {{"type", "integer"}}},
            {"dropped", {{"type", "integer"}, {"description", "Deleted unsent under overflow = drop_oldest, ever"}}},
            {"refused", {{"type", "integer"}, {"description", "Not taken under overflow = refuse_new, since start"}}},
            {"retries", {{"type", "integer"}, {"description", "Failed attempts since start"}}},
            {"failures", {{"type", "integer"}, {"description", "Consecutive failed attempts now"}}},
            {"last_error", {{"type", {"string", "null"}}}},
            {"last_error_at", time_schema()},
            {"next_attempt", time_schema()},
            {"last_delivered_at", time_schema()}}}};
}

json dead_letter_schema() {
  return {{"type", "object"},
          {"properties",
           {{"destination", {{"type", "string"}}},
            {"id", {{"type", "string"}}},
            {"seq", {{"type", "integer"}}},
            {"kind", {{"type", "string"}}},
            {"content_type", {{"type", "string"}}},
            {"bytes", {{"type", "integer"}}},
            {"created", {{"type", "string"}, {"format", "date-time"}}},
            {"attempts", {{"type", "integer"}}},
            {"last_error", {{"type", "string"}}},
            {"dead_at", time_schema()},
            {"body", {{"description", "The JSON body; null for a snapshot"}}}}}};
}

json ingest_request_schema() {
  return {{"type", "object"},
          {"required", {"source", "messages"}},
          {"properties",
           {{"source", {{"type", "string"}, {"description", "The sender's device id"}}},
            {"messages",
             {{"type", "array"},
              {"maxItems", upstream::kMaxIngestMessages},
              {"items",
               {{"type", "object"},
                {"required", {"id", "kind", "body"}},
                {"properties",
                 {{"id", {{"type", "string"}}},
                  {"kind", {{"type", "string"}}},
                  {"created", {{"type", "string"}, {"format", "date-time"}}},
                  {"attempts", {{"type", "integer"}}},
                  {"body", {{"type", "object"}}}}}}}}}}}};
}

}  // namespace

namespace {

void register_outbox_routes(http::Router& router, Deps* d) {
  using http::Access;
  using http::Verb;
  router.add({Verb::get, "/api/outbox", Access::kRead,
              [d](Request&) {
                auto now = core::now();
                json list = json::array();
                for (const auto& s : d->outbox->status()) list.push_back(destination_json(s, now));
                return Response::json({{"destinations", std::move(list)}});
              },
              {.summary = "The upstream outbox",
               .description = "Per destination: what waits (pending, bytes, oldest), what was delivered, dead "
                              "letters, what the cap dropped or refused, the last error and the next attempt.",
               .tag = "upstream",
               .replies = {{200, "Destinations",
                            {{"type", "object"},
                             {"properties",
                              {{"destinations", {{"type", "array"}, {"items", destination_schema()}}}}}}}}}});
  router.add({Verb::get, "/api/outbox/dead", Access::kRead, [d](Request& r) { return list_dead(*d, r); },
              {.summary = "Dead letters",
               .description = "Messages a destination refused for good (a 4xx other than 408/429), oldest first; "
                              "page on with after=<next>.",
               .tag = "upstream",
               .params = {{"destination", "query", "Only this destination's"},
                          {"limit", "query", "At most this many (default 100, at most 1000)",
                           {{"type", "integer"}, {"minimum", 0}}},
                          {"after", "query", "After this seq (the `next` of the previous page)",
                           {{"type", "integer"}, {"minimum", 0}}}},
               .replies = {{200, "A page of dead letters",
                            {{"type", "object"},
                             {"properties",
                              {{"count", {{"type", "integer"}}},
                               {"dead_letters", {{"type", "array"}, {"items", dead_letter_schema()}}},
                               {"next", {{"type", {"integer", "null"}}}}}}}},
                           {400, "Invalid parameter", problem_ref(), "application/problem+json"},
                           {404, "No such destination", problem_ref(), "application/problem+json"}}}});
  router.add({Verb::post, "/api/outbox/dead/retry", Access::kAdmin,
              [d](Request& r) {
                auto body = json::parse(r.raw.body(), nullptr, false);
                if (body.is_discarded() || !body.is_object())
                  return http::problem(400, "the body must be a JSON object {\"destination\", \"id\"?}");
                for (const char* f : {"destination", "id"}) {
                  if (body.contains(f) && !body[f].is_string())
                    return http::problem(400, fmt::format("'{}' must be a string", f), {{"field", f}});
                }
                return change_dead(*d, body.value("destination", ""), body.value("id", ""), true);
              },
              {.summary = "Retry dead letters",
               .description = "Puts one dead letter (`id`) or all of a destination back in line, at their place in "
                              "the order, and wakes the destination.",
               .tag = "upstream",
               .request_schema = {{"type", "object"},
                                  {"required", {"destination"}},
                                  {"properties", {{"destination", {{"type", "string"}}}, {"id", {{"type", "string"}}}}}},
               .replies = {{200, "How many", {{"type", "object"}, {"properties", {{"retried", {{"type", "integer"}}}}}}},
                           {400, "Invalid body", problem_ref(), "application/problem+json"},
                           {404, "No such destination or dead letter", problem_ref(), "application/problem+json"},
                           {409, "The destination is no longer configured", problem_ref(),
                            "application/problem+json"}}}});
  router.add({Verb::delete_, "/api/outbox/dead", Access::kAdmin,
              [d](Request& r) {
                return change_dead(*d, r.query_param("destination").value_or(""), r.query_param("id").value_or(""),
                                   false);
              },
              {.summary = "Delete dead letters",
               .description = "One (`id`) or all dead letters of a destination.",
               .tag = "upstream",
               .params = {{"destination", "query", "The destination", {{"type", "string"}}, true},
                          {"id", "query", "One message; all when absent"}},
               .replies = {{200, "How many", {{"type", "object"}, {"properties", {{"deleted", {{"type", "integer"}}}}}}},
                           {400, "Invalid parameter", problem_ref(), "application/problem+json"},
                           {404, "No such destination or dead letter", problem_ref(), "application/problem+json"}}}});
}

void register_ingest_route(http::Router& router, Deps* d) {
  http::Route in{http::Verb::post, "/api/ingest", http::Access::kControl, nullptr,
                 {.summary = "Take a batch from another Outpost",
                  .description =
                      "Where an edge's outbox delivers (an upstream destination with url http(s)://HUB/api/ingest and "
                      "a key of scope control). Messages of kind `reading` (body {device, sensor, time, value, unit?}) "
                      "are stored as readings; any other kind as an event of that kind (body {device, time?, "
                      "payload?}; a summary is kept whole as a `summary` event). Ids already stored for that source "
                      "are skipped, so a retry after a lost answer stores nothing twice. Answers once committed. "
                      "Only the JSON envelope: a snapshot (image/jpeg) is refused with 415.",
                  .tag = "upstream",
                  .request_schema = ingest_request_schema(),
                  .replies = {{200, "Committed",
                               {{"type", "object"},
                                {"properties",
                                 {{"accepted", {{"type", "integer"}}}, {"duplicates", {{"type", "integer"}}}}}}},
                              {400, "Invalid batch (the detail names the field)", problem_ref(),
                               "application/problem+json"},
                              {413, "Too many messages or too large a body", problem_ref(), "application/problem+json"},
                              {415, "Not JSON (a snapshot, say)", problem_ref(), "application/problem+json"},
                              {500, "The store could not write (nothing was stored)", problem_ref(),
                               "application/problem+json"},
                              {503, "The store is busy (nothing was stored; retry)", problem_ref(),
                               "application/problem+json"}}}};
  in.async_handler = [d](Request& r, http::Reply reply) { ingest(*d, r, std::move(reply)); };
  router.add(std::move(in));
}

}  // namespace

void register_upstream_routes(http::Router& router, Deps& deps) {
  if (deps.outbox) register_outbox_routes(router, &deps);
  register_ingest_route(router, &deps);
}

}  // namespace outpost::api
