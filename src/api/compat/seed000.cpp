// Seed 000's camera API: /, /motion, /face, /angle, /video_feed, /stream, /snapshot, /signup,
// /login — every message and status code as its tables give them. Answers are
// {"status": "success"|"error", "message": ...}; parameter errors are 200 with status "error",
// as the seed shows.
#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "api/api.hpp"

namespace outpost::api {

using http::Request;
using http::Response;
using json = nlohmann::ordered_json;

namespace {

Response message(const std::string& status, const std::string& text, unsigned code = 200) {
  return Response::json(json{{"status", status}, {"message", text}}, code);
}
Response ok(const std::string& text) { return message("success", text); }
Response error(const std::string& text, unsigned code = 200) { return message("error", text, code); }

bool can_control(const Request& r) {
  return r.principal && auth::allows(r.principal->scope, auth::Scope::kControl);
}
Response needs_control(const Request& r) {
  return error(fmt::format("this key has scope '{}'; 'control' is needed to change this",
                           r.principal ? auth::scope_name(r.principal->scope) : "none"),
               403);
}

// "45" for whole numbers, else the shortest form that reads back ("12.5").
std::string format_angle(double a) {
  if (a == std::floor(a) && std::fabs(a) < 1e15) return fmt::format("{}", static_cast<long long>(a));
  return fmt::format("{}", a);
}

// A number from -90 to 90, the whole text; nullopt for anything else (abc, 1e400, NaN, "").
std::optional<double> parse_angle(const std::string& s) {
  if (s.empty() || s.size() > 64) return std::nullopt;
  // Plain decimal only: strtod would also take " 10", "0x10", "inf" and "nan".
  if (s.find_first_not_of("0123456789+-.eE") != std::string::npos) return std::nullopt;
  const char* begin = s.c_str();
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(begin, &end);
  if (end != begin + s.size() || errno == ERANGE || !std::isfinite(v)) return std::nullopt;
  if (v < -90 || v > 90) return std::nullopt;
  return v;
}

// GET /motion[?motion=0|1] and GET /face[?detection=0|1] share this shape.
struct Toggle {
  const char* param;
  const char* active;
  const char* not_active;
  const char* activated;
  const char* disabled;
  const char* invalid;
};
constexpr Toggle kMotion{"motion", "Motion active", "Motion not active", "Motion activated", "Motion disabled",
                         "Motion field invalid. Please specify 1 (to active the motion) or 0 (to disable it)"};
constexpr Toggle kFace{"detection", "Face detection active", "Face detection not active", "Face detection activated",
                       "Face detection disabled",
                       "Detection field invalid. Please specify 1 (to active the face detection) or 0 (to disable it)"};

Response toggle(const Toggle& t, Request& req, camera::Camera* cam, bool (camera::Camera::*get)() const,
                void (camera::Camera::*set)(bool)) {
  auto v = req.query_param(t.param);
  if (!v) {
    if (!cam) return ok(t.not_active);
    return ok((cam->*get)() ? t.active : t.not_active);
  }
  if (*v != "0" && *v != "1") return error(t.invalid);
  if (!can_control(req)) return needs_control(req);
  if (!cam) return error("the camera is off (camera.source = \"off\")");
  (cam->*set)(*v == "1");
  return ok(*v == "1" ? t.activated : t.disabled);
}

// The /stream page: the MJPEG stream in an <img>. Browsers cannot send a header with an image,
// so the image URL carries a short-lived stream token that only /video_feed accepts.
std::string stream_page(const std::string& token) {
  return fmt::format(R"(<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Outpost camera</title>
<style>body{{margin:0;background:#111;color:#ddd;font:14px system-ui,sans-serif;text-align:center}}
img{{max-width:100%;height:auto;margin-top:1em}}</style></head>
<body><h1>Outpost camera</h1><img src="/video_feed?stream_token={}" alt="live camera stream"></body>
</html>
)",
                     token);
}

json login_body_schema(bool signup) {
  json props = {{"password", {{"type", "string"}}}};
  if (signup) props["house_id"] = {{"type", "string"}};
  return {{"type", "object"}, {"properties", props}, {"required", signup ? json{"house_id", "password"} : json{"password"}}};
}

}  // namespace

Response seed000_hello() { return ok("Hello, World!"); }

void register_seed000_routes(http::Router& router, Deps& deps) {
  using http::Access;
  using http::ErrorStyle;
  using http::Verb;
  Deps* d = &deps;
  const nlohmann::json status_message = {{"$ref", "#/components/schemas/StatusMessage"}};
  auto doc = [&](std::string summary, std::string description, std::vector<http::ParamDoc> params = {}) {
    return http::OpenApiDoc{.summary = std::move(summary),
                            .description = std::move(description),
                            .tag = "camera (seed 000)",
                            .params = std::move(params),
                            .replies = {{200, "{\"status\": \"success\"|\"error\", \"message\": ...}", status_message}}};
  };


  router.add({Verb::get, "/motion", Access::kRead,
              [d](Request& r) {
                return toggle(kMotion, r, d->camera, &camera::Camera::motion_enabled, &camera::Camera::set_motion_enabled);
              },
              doc("Motion detection status, or switch it", "Without `motion`: the status. `motion=1|0` (scope control) switches it.",
                  {{"motion", "query", "1 to activate, 0 to disable"}}),
              ErrorStyle::kSeed000});

  router.add({Verb::get, "/face", Access::kRead,
              [d](Request& r) {
                return toggle(kFace, r, d->camera, &camera::Camera::faces_enabled, &camera::Camera::set_faces_enabled);
              },
              doc("Face detection status, or switch it", "Without `detection`: the status. `detection=1|0` (scope control) switches it.",
                  {{"detection", "query", "1 to activate, 0 to disable"}}),
              ErrorStyle::kSeed000});

  router.add({Verb::get, "/angle", Access::kRead,
              [d](Request& r) {
                hw::Servo& servo = *d->board.servo;
                auto v = r.query_param("angle");
                if (!v) {
                  auto a = servo.angle();
                  if (!a) return error(a.status().message());
                  return ok(" " + format_angle(*a));  // the seed's table shows " <angle>"
                }
                auto angle = parse_angle(*v);
                if (!angle) return error("angle field invalid. Please insert a number between -90 to 90");
                if (!can_control(r)) return needs_control(r);
                if (auto s = servo.set_angle(*angle); !s) return error(s.message());
                return ok(format_angle(*angle));
              },
              doc("Servo angle, or move it", "Without `angle`: the current angle. `angle=N` (-90..90, scope control) moves the servo.",
                  {{"angle", "query", "Degrees, -90 to 90"}}),
              ErrorStyle::kSeed000});

  // Browsers open these two directly: /stream also takes ?access_token=, /video_feed a
  // stream token from the /stream page.
  auto key_in_query = [d](const Request& r) -> core::Result<auth::Principal> {
    auto key = r.query_param("access_token");
    if (!key || key->empty()) return core::Status::unauthorized("missing API key");
    return d->auth.authenticate(*key);
  };
  auto stream_token_in_query = [d, key_in_query](const Request& r) -> core::Result<auth::Principal> {
    auto token = r.query_param("stream_token");
    if (!token) return key_in_query(r);
    if (!d->stream_tokens->verify(*token)) return core::Status::unauthorized("token invalid");
    return auth::Principal{"stream", "stream token", auth::Scope::kRead};
  };

  http::Route video{Verb::get, "/video_feed", Access::kRead, [d](Request&) { return mjpeg_response(*d); },
                    {.summary = "MJPEG stream",
                     .description = "multipart/x-mixed-replace JPEG frames. Also accepts `stream_token` (from /stream) "
                                    "or `access_token` in the query, for browsers.",
                     .tag = "camera (seed 000)",
                     .params = {{"stream_token", "query", "Short-lived token embedded by /stream"}},
                     .replies = {{200, "The stream", {{"type", "string"}, {"format", "binary"}},
                                  "multipart/x-mixed-replace"}}},
                    ErrorStyle::kSeed000};
  video.query_auth = stream_token_in_query;
  router.add(std::move(video));

  http::Route page{Verb::get, "/stream", Access::kRead,
                   [d](Request&) {
                     Response r = Response::text(stream_page(d->stream_tokens->issue()), "text/html; charset=utf-8");
                     r.headers.emplace_back("Cache-Control", "no-store");
                     r.headers.emplace_back("Content-Security-Policy", "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'");
                     return r;
                   },
                   {.summary = "Stream page",
                    .description = "An HTML page with the stream. In a browser: /stream?access_token=KEY.",
                    .tag = "camera (seed 000)",
                    .params = {{"access_token", "query", "API key or token, for browsers"}},
                    .replies = {{200, "HTML page", {{"type", "string"}}, "text/html"}}},
                   ErrorStyle::kSeed000};
  page.query_auth = key_in_query;
  router.add(std::move(page));

  // Waiting for a fresh frame and writing the file happen on the blocking pool.
  http::Route snapshot{Verb::get, "/snapshot", Access::kControl, nullptr,
                       doc("Take a snapshot", "Saves a JPEG under the data directory; listed by /api/snapshots."),
                       ErrorStyle::kSeed000};
  snapshot.async_handler = [d](Request&, http::Reply reply) {
    d->run_blocking([d, reply = std::move(reply)] { reply(take_snapshot(*d)); });
  };
  router.add(std::move(snapshot));

  // Password checks take ~50-100 ms of argon2id: they run on the blocking pool, never on an
  // I/O thread; the reply comes back to the connection.
  auto login = [d](Request& req, http::Reply reply, bool signup) {
    const char* missing =
        signup ? "Please, provide house name, house id and password to login." : "Please, provide password to login.";
    std::string client = auth::login_client_key(req.client);
    auto now = core::now();
    if (auto s = d->limiter->check(client, now); !s) {
      Response r = error("Too many failed logins from this address; try again later", 429);
      r.headers.emplace_back("Retry-After", std::to_string(d->limiter->retry_after(client, now).count()));
      return reply(std::move(r));
    }
    nlohmann::json body = nlohmann::json::parse(req.raw.body(), nullptr, false);  // map-backed: linear-time for any body
    auto text = [&](const char* k) -> std::optional<std::string> {
      if (!body.is_object() || !body.contains(k) || !body[k].is_string() || body[k].get<std::string>().empty())
        return std::nullopt;
      return body[k].get<std::string>();
    };
    auto password = text("password");
    auto house = signup ? text("house_id") : std::optional<std::string>("");
    if (!password || !house) return reply(error(missing, 401));
    d->run_blocking([d, reply = std::move(reply), client, password = *password, house = *house, signup]() {
      auto when = core::now();
      auto good = auth::check_password(d->store, password);
      if (!good) return reply(error(good.status().message(), 500));
      if (!*good) {
        d->limiter->failure(client, when);
        return reply(error("Invalid credential", 401));
      }
      d->limiter->success(client, when);
      if (signup) {
        if (auto s = auth::set_house_id(d->store, house); !s) return reply(error(s.message(), 400));
      }
      std::string token = d->tokens->issue(signup ? house : "device", auth::Scope::kControl, d->cfg.auth.token_ttl, when);
      reply(Response::json(json{{"status", "success"}, {"auth-token", token}}));
    });
  };
  auto login_doc = [&](bool signup) {
    return http::OpenApiDoc{
        .summary = signup ? "Register the house id and get a token" : "Get a token",
        .description = "Tokens last 24 hours (auth.token_ttl) and carry scope control. Send them as "
                       "`Authorization: <token>`. Repeated failures from one address are refused with 429.",
        .tag = "camera (seed 000)",
        .request_schema = login_body_schema(signup),
        .replies = {{200, "{\"status\": \"success\", \"auth-token\": ...}",
                     {{"type", "object"},
                      {"properties", {{"status", {{"type", "string"}}}, {"auth-token", {{"type", "string"}}}}}}},
                    {401, "Credential not provided, or invalid", status_message},
                    {429, "Too many failed attempts; see Retry-After", status_message}}};
  };
  http::Route signup_route{Verb::post, "/signup", Access::kPublic, nullptr, login_doc(true), ErrorStyle::kSeed000};
  signup_route.async_handler = [login](Request& r, http::Reply reply) { login(r, std::move(reply), true); };
  router.add(std::move(signup_route));
  http::Route login_route{Verb::post, "/login", Access::kPublic, nullptr, login_doc(false), ErrorStyle::kSeed000};
  login_route.async_handler = [login](Request& r, http::Reply reply) { login(r, std::move(reply), false); };
  router.add(std::move(login_route));
}

Response take_snapshot(Deps& d) {
  if (!d.camera) return error("snapshot not saved: the camera is off");
  auto frame = d.camera->capture(std::chrono::milliseconds(3000));
  if (!frame) return error(fmt::format("snapshot not saved: {}", frame.status().message()));
  auto name = d.snapshots->save(**frame);
  if (!name) return error(fmt::format("snapshot-{} not saved", (*frame)->seq));
  if (d.on_snapshot_saved) d.on_snapshot_saved(*name);
  return ok(*name + " saved successfully");
}

}  // namespace outpost::api
