// Service routes: health, metrics, the OpenAPI document and the docs page.
#include <boost/beast/http/field.hpp>
#include <fmt/format.h>

#include "api/api.hpp"
#include "web/web.hpp"

namespace outpost::api {

using http::Request;
using http::Response;
using json = nlohmann::ordered_json;

namespace {

// Whether Accept-Encoding allows gzip: "gzip" or "*" with a non-zero q, and no "gzip;q=0".
bool accepts_gzip(std::string_view header) {
  bool star = false, gzip = false, gzip_named = false;
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    size_t semi = item.find(';');
    std::string_view name = item.substr(0, semi);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    double q = 1;
    if (semi != std::string_view::npos) {
      std::string_view params = item.substr(semi + 1);
      size_t qpos = params.find("q=");
      if (qpos != std::string_view::npos) q = std::atof(std::string(params.substr(qpos + 2)).c_str());
    }
    if (name == "gzip" || name == "x-gzip") {
      gzip_named = true;
      gzip = q > 0;
    } else if (name == "*") {
      star = q > 0;
    }
  }
  return gzip_named ? gzip : star;
}

// GET /api/health → {"status", "uptime_seconds", "readings_stored", "store", "hardware", "camera",
// "hub", "summaries"}.
// 200 when healthy, 503 when the store cannot write (so a monitor sees it without parsing).
Response health(Deps& d) {
  auto store = d.store.health();
  double uptime = std::chrono::duration<double>(core::now() - d.started).count();
  json hardware = {{"simulated", d.board.simulated},
                   {"led", d.board.led->describe()},
                   {"relay", d.board.relay->describe()},
                   {"button", d.board.button->describe()},
                   {"cpu_temperature", d.board.cpu->describe()}};
  json camera = {{"enabled", false}};
  if (d.camera) {
    auto c = d.camera->health();
    camera = {{"enabled", true},  {"running", c.running}, {"source", c.source}, {"detail", c.detail},
              {"fps", std::round(c.fps * 10) / 10}, {"reopens", c.reopens},
              {"motion_detection", d.camera->motion_enabled()}, {"face_detection", d.camera->faces_enabled()}};
  }
  json j = {{"status", store.ok ? "healthy" : "unhealthy"},
            {"uptime_seconds", std::round(uptime * 10) / 10},
            {"readings_stored", store.readings},
            {"store", {{"ok", store.ok}, {"detail", store.detail}, {"queue_depth", store.queue_depth}}},
            {"hardware", hardware},
            {"camera", camera}};
  if (d.hub_health) j["hub"] = d.hub_health();
  if (d.aggregator) {
    auto st = d.aggregator->stats();
    j["summaries"] = {{"enabled", d.cfg.aggregator.summaries}, {"open_windows", st.open_windows},
                      {"series", st.series}, {"produced", st.summaries}, {"late_readings", st.late}};
  }
  // Shown, not judged: an upstream that is down is what the outbox is for, not ill health.
  if (d.outbox) j["upstream"] = upstream_health(*d.outbox);
  return Response::json(j, store.ok ? 200 : 503);
}

// GET /docs and its assets, from the binary; gzip when the client takes it; ETag → 304.
Response asset(Request& req, const web::Asset& a) {
  bool gzip = !a.gzip_body.empty() && accepts_gzip(req.header("Accept-Encoding"));
  std::string_view etag = gzip ? a.gzip_etag : a.etag;
  Response r;
  r.headers.emplace_back("ETag", std::string(etag));
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.headers.emplace_back("Vary", "Accept-Encoding");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  if (a.path == "/docs") {
    r.headers.emplace_back("Content-Security-Policy",
                           "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                           "frame-ancestors 'none'");
  }
  std::string_view inm = req.header("If-None-Match");
  if (!inm.empty() && inm.find(etag) != std::string_view::npos) {
    r.status = 304;
    r.content_type.clear();
    return r;
  }
  r.content_type = std::string(a.content_type);
  if (gzip) r.headers.emplace_back("Content-Encoding", "gzip");
  r.body = std::string(gzip ? a.gzip_body : a.body);
  return r;
}

}  // namespace

void register_service_routes(http::Router& router, Deps& deps) {
  using http::Access;
  using http::Verb;
  Deps* d = &deps;
  const http::Router* table = &router;
  router.add({Verb::get, "/api/health", Access::kPublic, [d](Request&) { return health(*d); },
              {.summary = "Health check",
               .description = "For monitoring systems: 200 when healthy, 503 when the store cannot write.",
               .tag = "service",
               .replies = {{200, "Healthy",
                            {{"type", "object"},
                             {"properties",
                              {{"status", {{"type", "string"}}},
                               {"uptime_seconds", {{"type", "number"}}},
                               {"readings_stored", {{"type", "integer"}}},
                               {"store", {{"type", "object"}}},
                               {"hardware", {{"type", "object"}}}}},
                             {"required", {"status", "uptime_seconds", "readings_stored"}}}},
                           {503, "Unhealthy (same body)", {{"type", "object"}}}}}});
  router.add({Verb::get, "/metrics", Access::kRead,
              [d](Request&) { return Response::text(d->metrics.render(), "text/plain; version=0.0.4; charset=utf-8"); },
              {.summary = "Prometheus metrics",
               .tag = "service",
               .replies = {{200, "Metrics in Prometheus text format", {{"type", "string"}}, "text/plain"}}}});
  // The document is made once, on first request, when the table is complete.
  auto doc = std::make_shared<std::pair<std::once_flag, std::string>>();
  router.add({Verb::get, "/openapi.json", Access::kPublic,
              [table, doc](Request&) {
                std::call_once(doc->first, [&] { doc->second = table->openapi("Outpost", OUTPOST_VERSION).dump(2); });
                return Response::text(doc->second, "application/json");
              },
              {.summary = "OpenAPI document",
               .description = "This API, described from the route table (OpenAPI 3.1).",
               .tag = "service",
               .replies = {{200, "OpenAPI 3.1 document", {{"type", "object"}}}}}});
  auto serve_asset = [](Request& req) {
    std::string path(req.path);
    const web::Asset* a = web::find_asset(path);
    if (!a) return http::problem(404, fmt::format("no document at {}", path));
    return asset(req, *a);
  };
  http::OpenApiDoc docs_doc{.summary = "API documentation page",
                            .description = "Interactive documentation (Swagger UI), served from the binary.",
                            .tag = "service",
                            .replies = {{200, "HTML page", {{"type", "string"}}, "text/html"}}};
  router.add({Verb::get, "/docs", Access::kPublic, serve_asset, docs_doc});
  http::OpenApiDoc asset_doc{.summary = "Documentation page asset",
                             .tag = "service",
                             .params = {{"asset", "path", "File name", {{"type", "string"}}}},
                             .replies = {{200, "The file", {{"type", "string"}}, "application/octet-stream"},
                                         {404, "No such file", {{"$ref", "#/components/schemas/Problem"}},
                                          "application/problem+json"}}};
  router.add({Verb::get, "/docs/{asset}", Access::kPublic, serve_asset, asset_doc});
}

}  // namespace outpost::api
