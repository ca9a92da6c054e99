// Native camera routes: snapshots and events; and the MJPEG viewer shared with seed 000's
// /video_feed.
#include <fmt/format.h>

#include "api/api.hpp"

namespace outpost::api {

using http::Request;
using http::Response;
using json = nlohmann::ordered_json;

namespace {

// One viewer of the MJPEG stream. Lives on its connection's thread. The newest frame is sent
// whenever the socket can take one (a slow viewer skips frames, it never holds the camera or
// other viewers back), at most stream_max_fps.
class MjpegViewer : public std::enable_shared_from_this<MjpegViewer> {
 public:
  MjpegViewer(std::shared_ptr<http::Stream> stream, camera::Camera& cam, int max_fps, StreamMetrics& m)
      : stream_(std::move(stream)), cam_(cam), period_(std::chrono::microseconds(1'000'000 / std::max(1, max_fps))), m_(m) {}

  void start() {
    m_.viewers.add(1);
    auto self = shared_from_this();
    stream_->on_close([self] { self->stop(); });  // holds the viewer until the connection ends
    watch_ = cam_.watch([weak = weak_from_this()] {
      if (auto v = weak.lock()) v->stream_->post([v] { v->on_frame(); });
    });
    stream_->post([self] { self->on_frame(); });  // the current frame at once
  }

 private:
  struct Part {
    std::string head;
    camera::JpegPtr frame;
  };

  void stop() {
    if (stopped_) return;
    stopped_ = true;
    m_.viewers.add(-1);
    watch_.reset();
  }

  void on_frame() {
    if (stopped_) return;
    pending_ = true;
    pump();
  }

  void pump() {
    if (stopped_ || writing_ || !pending_) return;
    auto frame = cam_.latest();
    if (!frame || frame->seq == last_seq_) {
      pending_ = false;
      return;
    }
    auto now = std::chrono::steady_clock::now();
    if (now < next_allowed_) {
      if (!timer_armed_) {
        timer_armed_ = true;
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_allowed_ - now) + std::chrono::milliseconds(1);
        stream_->after(wait, [self = shared_from_this()] {
          self->timer_armed_ = false;
          self->pump();
        });
      }
      return;
    }
    pending_ = false;
    if (last_seq_ != 0 && frame->seq > last_seq_ + 1) m_.skipped.inc(frame->seq - last_seq_ - 1);
    last_seq_ = frame->seq;
    next_allowed_ = now + period_;
    auto part = std::make_shared<Part>();
    part->head = fmt::format("--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", frame->data.size());
    part->frame = std::move(frame);
    writing_ = true;
    stream_->write({part->head, part->frame->data, "\r\n"}, part, [self = shared_from_this()](bool ok) {
      self->writing_ = false;
      if (!ok) return self->stop();
      self->m_.sent.inc();
      self->pump();
    });
  }

  std::shared_ptr<http::Stream> stream_;
  camera::Camera& cam_;
  std::chrono::steady_clock::duration period_;
  StreamMetrics& m_;
  camera::Camera::Watch watch_;
  uint64_t last_seq_ = 0;
  std::chrono::steady_clock::time_point next_allowed_{};
  bool pending_ = false, writing_ = false, timer_armed_ = false, stopped_ = false;
};

json event_json(const core::Event& e) {
  json payload = json::parse(e.payload, nullptr, false);  // our own small payloads
  if (payload.is_discarded()) payload = e.payload;
  return {{"id", e.id}, {"time", core::format_iso8601(e.ts)}, {"device", e.device}, {"type", e.kind}, {"payload", payload}};
}

const nlohmann::json& problem_ref() {
  static const nlohmann::json j = {{"$ref", "#/components/schemas/Problem"}};
  return j;
}

}  // namespace

Response mjpeg_response(Deps& d) {
  if (!d.camera) return http::problem(503, "the camera is off (camera.source = \"off\")");
  if (size_t(d.stream_metrics->viewers.value()) >= d.cfg.camera.max_viewers)
    return http::problem(503, fmt::format("{} viewers already; camera.max_viewers", d.cfg.camera.max_viewers));
  Response r;
  r.content_type = "multipart/x-mixed-replace; boundary=frame";
  r.headers.emplace_back("Cache-Control", "no-cache, no-store, private");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  camera::Camera* cam = d.camera;
  int fps = d.cfg.camera.stream_max_fps;
  StreamMetrics* m = d.stream_metrics;
  r.stream = [cam, fps, m](std::shared_ptr<http::Stream> s) {
    std::make_shared<MjpegViewer>(std::move(s), *cam, fps, *m)->start();
  };
  return r;
}

// GET /api/events?type=&device=&from=&to=&limit=&before= → {"count", "events", "next"}.
Response events(Deps& d, Request& req) {
  store::EventQuery q;
  q.limit = 50;
  if (auto v = req.query_param("type")) q.kind = *v;
  if (auto v = req.query_param("device")) q.device = *v;
  if (auto v = req.query_param("limit")) {
    auto n = parse_limit(*v, 1000);
    if (!n) return http::problem(400, fmt::format("limit must be a non-negative integer, got '{}'", *v), {{"parameter", "limit"}});
    q.limit = *n;
  }
  if (auto v = req.query_param("before")) {
    auto n = parse_limit(*v, SIZE_MAX);
    if (!n || *n == 0) return http::problem(400, fmt::format("before must be a positive event id, got '{}'", *v), {{"parameter", "before"}});
    q.before_id = static_cast<int64_t>(*n);
  }
  if (auto bad = parse_time_range(req, q.from, q.to)) return std::move(*bad);
  auto rows = d.store.query_events(q);
  if (!rows) return http::problem(rows.status());
  json list = json::array();
  for (const auto& e : *rows) list.push_back(event_json(e));
  json out = {{"count", list.size()}, {"events", std::move(list)}};
  // Newest first pages go backwards: the next page is before the oldest id shown.
  out["next"] = rows->size() == q.limit && !rows->empty() ? json(rows->front().id) : json(nullptr);
  return Response::json(out);
}

void register_camera_routes(http::Router& router, Deps& deps) {
  using http::Access;
  using http::Verb;
  Deps* d = &deps;
  nlohmann::json event_schema = {{"type", "object"},
                                 {"properties",
                                  {{"id", {{"type", "integer"}}},
                                   {"time", {{"type", "string"}, {"format", "date-time"}}},
                                   {"device", {{"type", "string"}}},
                                   {"type", {{"type", "string"}}},
                                   {"payload", {{"type", "object"}}}}}};
  router.add({Verb::get, "/api/events", Access::kRead, [d](Request& r) { return events(*d, r); },
              {.summary = "Events",
               .description = "Motion, face, button, command and alert events, newest last. Page backwards with "
                              "`before=<next>`.",
               .tag = "events",
               .params = {{"type", "query", "motion, face, ... (default all)"},
                          {"device", "query", "Only this device's events"},
                          {"from", "query", "At or after (ISO 8601)", {{"type", "string"}, {"format", "date-time"}}},
                          {"to", "query", "At or before (ISO 8601)", {{"type", "string"}, {"format", "date-time"}}},
                          {"limit", "query", "At most this many (default 50, at most 1000)", {{"type", "integer"}, {"minimum", 0}}},
                          {"before", "query", "Only events with a smaller id (the `next` of the previous page)",
                           {{"type", "integer"}, {"minimum", 1}}}},
               .replies = {{200, "Events",
                            {{"type", "object"},
                             {"properties",
                              {{"count", {{"type", "integer"}}},
                               {"events", {{"type", "array"}, {"items", event_schema}}},
                               {"next", {{"type", {"integer", "null"}}}}}}}},
                           {400, "Invalid parameter", problem_ref(), "application/problem+json"}}}});

  nlohmann::json snap_schema = {{"type", "object"},
                                {"properties",
                                 {{"name", {{"type", "string"}}},
                                  {"time", {{"type", "string"}, {"format", "date-time"}}},
                                  {"size", {{"type", "integer"}}},
                                  {"url", {{"type", "string"}}}}}};
  router.add({Verb::get, "/api/snapshots", Access::kRead,
              [d](Request& req) {
                size_t offset = 0, limit = 50;
                if (auto v = req.query_param("offset")) {
                  auto n = parse_limit(*v, SIZE_MAX);
                  if (!n) return http::problem(400, fmt::format("offset must be a non-negative integer, got '{}'", *v));
                  offset = *n;
                }
                if (auto v = req.query_param("limit")) {
                  auto n = parse_limit(*v, 1000);
                  if (!n) return http::problem(400, fmt::format("limit must be a non-negative integer, got '{}'", *v));
                  limit = *n;
                }
                size_t total = 0;
                auto list = d->snapshots->list(offset, limit, &total);
                if (!list) return http::problem(list.status());
                json items = json::array();
                for (const auto& s : *list)
                  items.push_back({{"name", s.name}, {"time", core::format_iso8601(s.ts)}, {"size", s.size},
                                   {"url", "/api/snapshots/" + s.name}});
                return Response::json({{"total", total}, {"offset", offset}, {"limit", limit}, {"snapshots", std::move(items)}});
              },
              {.summary = "Saved snapshots",
               .description = "Newest first, paginated.",
               .tag = "camera",
               .params = {{"offset", "query", "Skip this many", {{"type", "integer"}, {"minimum", 0}}},
                          {"limit", "query", "At most this many (default 50, at most 1000)", {{"type", "integer"}, {"minimum", 0}}}},
               .replies = {{200, "Snapshots",
                            {{"type", "object"},
                             {"properties",
                              {{"total", {{"type", "integer"}}},
                               {"offset", {{"type", "integer"}}},
                               {"limit", {{"type", "integer"}}},
                               {"snapshots", {{"type", "array"}, {"items", snap_schema}}}}}}},
                           {400, "Invalid parameter", problem_ref(), "application/problem+json"}}}});
  http::OpenApiDoc one_doc{.summary = "One snapshot",
                           .tag = "camera",
                           .params = {{"name", "path", "Snapshot name"}},
                           .replies = {{200, "The JPEG", {{"type", "string"}, {"format", "binary"}}, "image/jpeg"},
                                       {400, "Not a snapshot name", problem_ref(), "application/problem+json"},
                                       {404, "No such snapshot", problem_ref(), "application/problem+json"}}};
  router.add({Verb::get, "/api/snapshots/{name}", Access::kRead,
              [d](Request& req) {
                const std::string& name = req.path_params.find("name")->second;
                auto data = d->snapshots->read(name);
                if (!data) return http::problem(data.status());
                Response r = Response::text(std::move(*data), "image/jpeg");
                r.headers.emplace_back("Cache-Control", "private, max-age=86400, immutable");
                return r;
              },
              one_doc});
  http::OpenApiDoc delete_doc = one_doc;
  delete_doc.summary = "Delete a snapshot";
  delete_doc.replies = {{204, "Deleted"},
                        {400, "Not a snapshot name", problem_ref(), "application/problem+json"},
                        {404, "No such snapshot", problem_ref(), "application/problem+json"}};
  router.add({Verb::delete_, "/api/snapshots/{name}", Access::kControl,
              [d](Request& req) {
                auto s = d->snapshots->remove(req.path_params.find("name")->second);
                if (!s) return http::problem(s);
                Response r;
                r.status = 204;
                r.content_type.clear();
                return r;
              },
              delete_doc});
}

}  // namespace outpost::api
