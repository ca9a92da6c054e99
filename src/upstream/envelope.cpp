// The JSON envelope an edge sends and a hub's POST /api/ingest takes: building it, and checking
// and reading it. Pure: no I/O.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "upstream/upstream.hpp"

namespace outpost::upstream {

using core::Status;
using json = nlohmann::json;

namespace {

constexpr size_t kMaxSource = 128;
constexpr size_t kMaxId = 128;
constexpr size_t kMaxKind = 64;
constexpr size_t kMaxName = 256;  // a device or sensor id

bool printable(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

bool kind_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == ':';
}

// A JSON string escaped for the envelope (nlohmann's own escaping).
std::string json_string(std::string_view s) { return json(std::string(s)).dump(); }

// Reads a required non-empty printable string member of at most `max` bytes.
Status text_member(const json& obj, const char* name, const std::string& where, size_t max, std::string& out) {
  auto it = obj.find(name);
  if (it == obj.end() || !it->is_string())
    return Status::invalid(fmt::format("{}.{}: must be a non-empty string", where, name));
  const auto& s = it->get_ref<const std::string&>();
  if (s.empty() || s.size() > max || !printable(s))
    return Status::invalid(
        fmt::format("{}.{}: must be a non-empty string of at most {} printable bytes", where, name, max));
  out = s;
  return Status::ok();
}

// Reads an optional ISO 8601 member; invalid when present and not a time.
Status time_member(const json& obj, const char* name, const std::string& where,
                   std::optional<core::TimePoint>& out) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return Status::ok();
  if (it->is_string()) {
    if (auto t = core::parse_iso8601(it->get_ref<const std::string&>())) {
      out = *t;
      return Status::ok();
    }
  }
  return Status::invalid(fmt::format("{}.{}: must be an ISO 8601 time such as 2026-05-01T12:00:00Z", where, name));
}

Status reading_of(const json& body, const std::string& where, core::Reading& r) {
  if (auto s = text_member(body, "device", where, kMaxName, r.device); !s) return s;
  if (auto s = text_member(body, "sensor", where, kMaxName, r.sensor); !s) return s;
  std::optional<core::TimePoint> ts;
  if (auto s = time_member(body, "time", where, ts); !s) return s;
  if (!ts) return Status::invalid(fmt::format("{}.time: is required (ISO 8601)", where));
  r.ts = *ts;
  auto v = body.find("value");
  if (v == body.end()) return Status::invalid(fmt::format("{}.value: is required (a number, null, or any JSON)", where));
  if (v->is_number()) {
    r.value = v->get<double>();
    if (!std::isfinite(r.value)) return Status::invalid(fmt::format("{}.value: must be finite", where));
  } else if (v->is_null()) {
    r.value = std::numeric_limits<double>::quiet_NaN();
  } else if (v->is_string()) {
    r.text = v->get<std::string>();
    if (r.text.empty()) r.text = "\"\"";  // empty text would read back as a number
  } else {
    r.text = v->dump();
  }
  if (auto u = body.find("unit"); u != body.end() && !u->is_null()) {
    if (!u->is_string() || u->get_ref<const std::string&>().size() > 64)
      return Status::invalid(fmt::format("{}.unit: must be a string of at most 64 bytes", where));
    r.unit = u->get<std::string>();
  }
  return Status::ok();
}

}  // namespace

std::string envelope(std::string_view source, std::span<const Message> batch) {
  std::string out;
  size_t size = 64;
  for (const auto& m : batch) size += m.body.size() + m.id.size() + m.kind.size() + 96;
  out.reserve(size);
  out += "{\"source\":";
  out += json_string(source);
  out += ",\"messages\":[";
  for (size_t i = 0; i < batch.size(); ++i) {
    const Message& m = batch[i];
    if (i) out += ',';
    out += "{\"id\":";
    out += json_string(m.id);
    out += ",\"kind\":";
    out += json_string(m.kind);
    out += ",\"created\":";
    out += json_string(core::format_iso8601(m.created));
    out += fmt::format(",\"attempts\":{},\"body\":", m.attempts);
    // Bodies are our own JSON, inserted as they are; should one not be JSON after all, it goes
    // as a string rather than break the whole envelope.
    if (json::accept(m.body)) {
      out += m.body;
    } else {
      out += json_string(m.body);
    }
    out += '}';
  }
  out += "]}";
  return out;
}

std::string event_body(const core::Event& e) {
  nlohmann::ordered_json j = {{"device", e.device}, {"kind", e.kind}, {"time", core::format_iso8601(e.ts)}};
  auto payload = json::parse(e.payload, nullptr, false);
  j["payload"] = payload.is_discarded() ? json(e.payload) : payload;
  return j.dump();
}

core::Result<IngestRequest> parse_ingest(std::string_view text, size_t max_messages, core::TimePoint now) {
  auto doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return Status::invalid("the body must be a JSON object {\"source\": ..., \"messages\": [...]}");
  IngestRequest out;
  if (auto s = text_member(doc, "source", "body", kMaxSource, out.source); !s) return s;
  auto ms = doc.find("messages");
  if (ms == doc.end() || !ms->is_array() || ms->empty())
    return Status::invalid("body.messages: must be a non-empty array");
  if (ms->size() > max_messages)
    return Status::too_large(fmt::format("body.messages: {} messages; at most {} per request", ms->size(), max_messages));
  out.items.reserve(ms->size());
  for (size_t i = 0; i < ms->size(); ++i) {
    const json& m = (*ms)[i];
    std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) return Status::invalid(where + ": must be an object {\"id\", \"kind\", \"body\"}");
    store::IngestItem item;
    if (auto s = text_member(m, "id", where, kMaxId, item.id); !s) return s;
    std::string kind;
    if (auto s = text_member(m, "kind", where, kMaxKind, kind); !s) return s;
    if (!std::all_of(kind.begin(), kind.end(), kind_char))
      return Status::invalid(fmt::format("{}.kind: '{}' is not a kind (letters, digits, '_', '-', '.', ':')", where, kind));
    if (auto ct = m.find("content_type"); ct != m.end() && !ct->is_null()) {
      if (!ct->is_string() || ct->get_ref<const std::string&>().rfind("application/json", 0) != 0)
        return Status::invalid(fmt::format("{}.content_type: /api/ingest takes JSON messages only, not {}", where,
                                           ct->is_string() ? ct->get<std::string>() : ct->dump()));
    }
    std::optional<core::TimePoint> created;
    if (auto s = time_member(m, "created", where, created); !s) return s;
    auto body_it = m.find("body");
    if (body_it == m.end() || !body_it->is_object()) return Status::invalid(where + ".body: must be a JSON object");
    const json& body = *body_it;
    std::string at = where + ".body";
    if (kind == "reading") {
      core::Reading r;
      if (auto s = reading_of(body, at, r); !s) return s;
      item.readings.push_back(std::move(r));
    } else {
      core::Event e;
      e.kind = kind;
      if (auto s = text_member(body, "device", at, kMaxName, e.device); !s) return s;
      std::optional<core::TimePoint> ts;
      if (auto s = time_member(body, "time", at, ts); !s) return s;
      if (!ts) {
        std::optional<core::TimePoint> end;
        if (auto s = time_member(body, "period_end", at, end); !s) return s;
        ts = end;
      }
      e.ts = ts ? *ts : created ? *created : now;
      auto payload = body.find("payload");
      e.payload = payload != body.end() && payload->is_object() ? payload->dump() : body.dump();
      item.event = std::move(e);
    }
    out.items.push_back(std::move(item));
  }
  return out;
}

}  // namespace outpost::upstream
