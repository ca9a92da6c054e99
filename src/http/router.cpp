#include <boost/beast/http/status.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <set>

#include "http/http.hpp"

namespace outpost::http {

namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 1;  // skip the leading '/'
  while (i <= path.size()) {
    size_t slash = path.find('/', i);
    if (slash == std::string_view::npos) slash = path.size();
    out.push_back(path.substr(i, slash - i));
    i = slash + 1;
  }
  return out;
}

bool is_param(std::string_view seg) { return seg.size() > 2 && seg.front() == '{' && seg.back() == '}'; }

std::string verb_lower(Verb v) {
  std::string s(bhttp::to_string(v));
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string operation_id_of(const Route& r) {
  std::string id = verb_lower(r.method);
  bool upper_next = true;
  for (char c : r.pattern) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      id += upper_next ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
      upper_next = false;
    } else {
      upper_next = true;
    }
  }
  if (r.pattern == "/") id += "Root";
  return id;
}

const nlohmann::json& problem_schema_ref() {
  static const nlohmann::json j = {{"$ref", "#/components/schemas/Problem"}};
  return j;
}

}  // namespace

void Router::add(Route r) {
  if (r.operation_id.empty()) r.operation_id = operation_id_of(r);
  std::vector<std::string> segs;
  for (auto s : split_path(r.pattern)) segs.emplace_back(s);
  routes_.push_back(std::move(r));
  segments_.push_back(std::move(segs));
}

Router::Match Router::match(Verb method, std::string_view path) const {
  Match m;
  if (path.empty() || path.front() != '/') return m;
  // Split into at most kMaxSegments views on the stack: matching allocates nothing unless a
  // route has parameters or the method is wrong.
  constexpr size_t kMaxSegments = 16;
  std::array<std::string_view, kMaxSegments> parts;
  size_t n = 0;
  for (size_t i = 1; i <= path.size(); ++n) {
    if (n == kMaxSegments) return m;  // deeper than any route
    size_t slash = path.find('/', i);
    if (slash == std::string_view::npos) slash = path.size();
    parts[n] = path.substr(i, slash - i);
    i = slash + 1;
  }
  Verb want = method == Verb::head ? Verb::get : method;  // HEAD is served by GET routes
  for (size_t i = 0; i < routes_.size(); ++i) {
    const auto& segs = segments_[i];
    if (segs.size() != n) continue;
    bool ok = true;
    for (size_t k = 0; k < n && ok; ++k) ok = is_param(segs[k]) ? !parts[k].empty() : segs[k] == parts[k];
    if (!ok) continue;
    if (routes_[i].method != want) {
      if (std::find(m.allowed.begin(), m.allowed.end(), routes_[i].method) == m.allowed.end())
        m.allowed.push_back(routes_[i].method);
      continue;
    }
    for (size_t k = 0; k < n; ++k) {
      if (!is_param(segs[k])) continue;
      // Undecodable (a bad escape, %00): the raw text, which the handler's validation refuses.
      auto decoded = url_decode(parts[k], false);
      m.params.emplace(segs[k].substr(1, segs[k].size() - 2), decoded ? std::move(*decoded) : std::string(parts[k]));
    }
    m.route = &routes_[i];
    m.index = i;
    m.allowed.clear();
    return m;
  }
  return m;
}

nlohmann::json Router::openapi(const std::string& title, const std::string& version) const {
  using nlohmann::json;
  json paths = json::object();
  std::set<std::string> tags;
  for (const auto& r : routes_) {
    json op;
    op["operationId"] = r.operation_id;
    op["summary"] = r.doc.summary;
    if (!r.doc.description.empty()) op["description"] = r.doc.description;
    op["tags"] = json::array({r.doc.tag.empty() ? "device" : r.doc.tag});
    tags.insert(r.doc.tag.empty() ? "device" : r.doc.tag);
    json params = json::array();
    for (const auto& p : r.doc.params) {
      json jp = {{"name", p.name}, {"in", p.in}, {"schema", p.schema}, {"required", p.required || p.in == "path"}};
      if (!p.description.empty()) jp["description"] = p.description;
      params.push_back(jp);
    }
    if (!params.empty()) op["parameters"] = params;
    if (!r.doc.request_schema.is_null())
      op["requestBody"] = {{"required", true},
                           {"content", {{r.doc.request_content_type, {{"schema", r.doc.request_schema}}}}}};
    json responses = json::object();
    for (const auto& rep : r.doc.replies) {
      json jr = {{"description", rep.description}};
      if (!rep.schema.is_null()) jr["content"] = {{rep.content_type, {{"schema", rep.schema}}}};
      responses[std::to_string(rep.status)] = jr;
    }
    auto add_error = [&](unsigned status, const std::string& why) {
      std::string key = std::to_string(status);
      if (responses.contains(key)) return;
      json schema = r.style == ErrorStyle::kFastApi   ? json{{"$ref", "#/components/schemas/FastApiError"}}
                    : r.style == ErrorStyle::kSeed000 ? json{{"$ref", "#/components/schemas/StatusMessage"}}
                                                      : problem_schema_ref();
      std::string ctype = r.style == ErrorStyle::kProblem ? "application/problem+json" : "application/json";
      responses[key] = {{"description", why}, {"content", {{ctype, {{"schema", schema}}}}}};
    };
    if (r.access != Access::kPublic) {
      const char* scope = r.access == Access::kRead ? "read" : r.access == Access::kControl ? "control" : "admin";
      op["security"] = json::array({{{"ApiKeyHeader", json::array()}},
                                    {{"BearerAuth", json::array()}},
                                    {{"AccessToken", json::array()}}});
      std::string note = fmt::format("Requires an API key with scope `{}` or higher.", scope);
      op["description"] = op.contains("description") ? op["description"].get<std::string>() + "\n\n" + note : note;
      if (r.style == ErrorStyle::kFastApi) {
        add_error(403, "Missing or invalid API key");
      } else if (r.style == ErrorStyle::kSeed000) {
        add_error(401, "token missing, token expired or token invalid");
        add_error(403, "The key's scope is too small");
      } else {
        add_error(401, "Missing or invalid credentials");
        add_error(403, "The key's scope is too small");
      }
    } else {
      op["security"] = json::array();
    }
    add_error(429, "Too many requests");
    op["responses"] = responses;
    std::string path_key = r.pattern;
    paths[path_key][verb_lower(r.method)] = op;
  }
  json tag_list = json::array();
  for (const auto& t : tags) tag_list.push_back({{"name", t}, {"description", "Operations on " + t}});

  json doc = {
      {"openapi", "3.1.0"},
      {"info",
       {{"title", title},
        {"version", version},
        {"description",
         "Outpost: an edge API server for Raspberry Pi-class devices. Send an API key as "
         "`X-API-Key`, `Authorization: Bearer <key>` or `access_token`."},
        {"license", {{"name", "MIT"}, {"identifier", "MIT"}}}}},
      {"servers", json::array({{{"url", "/"}, {"description", "This device"}}})},
      {"tags", tag_list},
      {"paths", paths},
      {"components",
       {{"securitySchemes",
         {{"ApiKeyHeader", {{"type", "apiKey"}, {"in", "header"}, {"name", "X-API-Key"}}},
          {"BearerAuth", {{"type", "http"}, {"scheme", "bearer"}}},
          {"AccessToken", {{"type", "apiKey"}, {"in", "header"}, {"name", "access_token"}}}}},
        {"schemas",
         {{"Problem",
           {{"type", "object"},
            {"description", "RFC 9457 problem details"},
            {"properties",
             {{"type", {{"type", "string"}}},
              {"title", {{"type", "string"}}},
              {"status", {{"type", "integer"}}},
              {"detail", {{"type", "string"}}},
              {"error", {{"type", "string"}, {"description", "Same as detail"}}}}},
            {"required", json::array({"title", "status"})}}},
          {"StatusMessage",
           {{"type", "object"},
            {"description", "Seed 000's answer shape"},
            {"properties", {{"status", {{"type", "string"}, {"enum", {"success", "error"}}}}, {"message", {{"type", "string"}}}}},
            {"required", json::array({"status", "message"})}}},
          {"FastApiError",
           {{"type", "object"},
            {"properties", {{"detail", {{"type", "string"}}}}},
            {"required", json::array({"detail"})}}}}}}}};
  // Only the schemas some operation refers to (an unused component is a lint error).
  std::string used = doc["paths"].dump();
  auto& schemas = doc["components"]["schemas"];
  for (auto it = schemas.begin(); it != schemas.end();) {
    if (used.find("\"#/components/schemas/" + it.key() + "\"") == std::string::npos)
      it = schemas.erase(it);
    else
      ++it;
  }
  return doc;
}

std::optional<std::string> url_decode(std::string_view s, bool query) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;  // needs two hex digits after '%'
      auto hex = [](char h) -> int {
        if (h >= '0' && h <= '9') return h - '0';
        if (h >= 'a' && h <= 'f') return h - 'a' + 10;
        if (h >= 'A' && h <= 'F') return h - 'A' + 10;
        return -1;
      };
      int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      char decoded = static_cast<char>(hi * 16 + lo);
      if (decoded == '\0') return std::nullopt;
      out += decoded;
      i += 2;
    } else if (c == '+' && query) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    auto k = url_decode(key, true);
    if (!k || *k != name) continue;
    if (eq == std::string_view::npos) return std::string();
    auto v = url_decode(pair.substr(eq + 1), true);
    // A malformed escape (or %00) is present but not decodable: hand over the raw text, which
    // no validator accepts, rather than pretend the parameter is absent.
    if (!v) return std::string(pair.substr(eq + 1));
    return v;
  }
  return std::nullopt;
}

std::string_view Request::header(std::string_view name) const {
  auto it = raw.find(boost::beast::string_view(name.data(), name.size()));
  if (it == raw.end()) return {};
  auto v = it->value();
  return {v.data(), v.size()};
}

std::string_view credential_of(const RawRequest& req) {
  auto trim = [](std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return v;
  };
  if (auto it = req.find(bhttp::field::authorization); it != req.end()) {
    std::string_view v(it->value().data(), it->value().size());
    v = trim(v);
    if (v.size() > 7 && (v.substr(0, 7) == "Bearer " || v.substr(0, 7) == "bearer ")) v = trim(v.substr(7));
    return v;
  }
  if (auto it = req.find("X-API-Key"); it != req.end()) return trim({it->value().data(), it->value().size()});
  if (auto it = req.find("access_token"); it != req.end()) return trim({it->value().data(), it->value().size()});
  return {};
}

Response Response::json(const nlohmann::ordered_json& j, unsigned status) {
  Response r;
  r.status = status;
  r.body = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return r;
}

Response Response::text(std::string body, std::string content_type, unsigned status) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  r.content_type = std::move(content_type);
  return r;
}

unsigned status_for(core::Code c) {
  switch (c) {
    case core::Code::kOk: return 200;
    case core::Code::kInvalid: return 400;
    case core::Code::kUnauthorized: return 401;
    case core::Code::kForbidden: return 403;
    case core::Code::kNotFound: return 404;
    case core::Code::kConflict: return 409;
    case core::Code::kTooLarge: return 413;
    case core::Code::kBusy: return 503;
    case core::Code::kUnavailable: return 503;
    case core::Code::kIo: return 500;
    case core::Code::kInternal: return 500;
  }
  return 500;
}

Response problem(unsigned status, std::string_view detail, const nlohmann::json& extra) {
  auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
  nlohmann::json j = {{"type", "about:blank"},
                      {"title", std::string(reason.data(), reason.size())},
                      {"status", status},
                      {"detail", detail},
                      {"error", detail}};
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
  Response r = Response::json(j, status);
  r.content_type = "application/problem+json";
  return r;
}

Response problem(const core::Status& s) {
  Response r = problem(status_for(s.code()), s.message());
  if (s.code() == core::Code::kBusy || s.code() == core::Code::kUnavailable) r.headers.emplace_back("Retry-After", "1");
  return r;
}

}  // namespace outpost::http
