// Local rules over HTTP: list, read (with the rule's state), create, replace, delete. Admin
// scope throughout: a rule switches actuators on its own. The engine validates (edge/rules.hpp);
// this file turns its answers into responses, with the field at fault in every 400.
#include <fmt/format.h>

#include "api/api.hpp"
#include "edge/rules.hpp"

namespace outpost::api {

using http::Request;
using http::Response;
using json = nlohmann::ordered_json;

namespace {

const json& problem_ref() {
  static const json j = {{"$ref", "#/components/schemas/Problem"}};
  return j;
}

// A refused rule: 400 (or 409) problem details naming the field, and for an expression the
// character position.
Response refused(const core::Status& s, const edge::RuleError& err) {
  nlohmann::json extra = nlohmann::json::object();
  if (!err.field.empty()) extra["field"] = err.field;
  if (err.position) extra["position"] = *err.position;
  return http::problem(http::status_for(s.code()), err.message.empty() ? s.message() : err.message, extra);
}

std::optional<core::Json> body_of(const Request& req, Response& bad) {
  auto body = core::Json::parse(req.raw.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    bad = http::problem(400, "the body must be a JSON object: a rule (see the OpenAPI description of POST /api/rules)");
    return std::nullopt;
  }
  return body;
}

// GET /api/rules → {"count", "rules": [rule with "source" and "state"]}, by id.
Response list_rules(edge::RuleEngine& e) {
  json rules = json::array();
  for (auto& v : e.list()) rules.push_back(std::move(v.json));
  return Response::json({{"count", rules.size()}, {"rules", std::move(rules)}});
}

// POST /api/rules {rule} → 201 the rule with its state, Location /api/rules/{id}.
Response create_rule(edge::RuleEngine& e, Request& req) {
  Response bad;
  auto body = body_of(req, bad);
  if (!body) return bad;
  edge::RuleError err;
  auto v = e.create(*body, err);
  if (!v) return refused(v.status(), err);
  std::string id = v->json["id"].get<std::string>();
  Response r = Response::json(v->json, 201);
  r.headers.emplace_back("Location", "/api/rules/" + id);
  return r;
}

// PUT /api/rules/{id} {rule} → 200 the rule with its state.
Response replace_rule(edge::RuleEngine& e, Request& req) {
  Response bad;
  auto body = body_of(req, bad);
  if (!body) return bad;
  edge::RuleError err;
  auto v = e.replace(req.path_params.at("id"), *body, err);
  if (!v) return refused(v.status(), err);
  return Response::json(v->json);
}

json rule_schema() {
  json command = {{"type", "object"},
                  {"required", {"target", "value"}},
                  {"properties",
                   {{"device", {{"type", "string"}, {"description", "Default: this board"}}},
                    {"target", {{"type", "string"}, {"description", "The actuator: relay, led, servo, a FIWARE action..."}}},
                    {"parameter", {{"type", "string"}, {"description", "Default: state"}}},
                    {"value", {{"description", "on, off, toggle, an angle..."}}}}}};
  json actions = {{"type", "object"},
                  {"properties",
                   {{"command", command},
                    {"alert", {{"type", "string"}, {"description", "An alert event with this message"}}}}}};
  return {{"type", "object"},
          {"description",
           "A threshold (sensor with above or below, optional clear_below / clear_above for hysteresis) or an "
           "expression (expr, optional clear), held for `for` before on fires; on and off say what to do."},
          {"properties",
           {{"id", {{"type", "string"}, {"pattern", "^[A-Za-z0-9_.:-]{1,64}$"}}},
            {"description", {{"type", "string"}}},
            {"enabled", {{"type", "boolean"}}},
            {"device", {{"type", "string"}, {"description", "The sensor's device; default this board"}}},
            {"sensor", {{"type", "string"}}},
            {"above", {{"type", "number"}}},
            {"below", {{"type", "number"}}},
            {"clear_below", {{"type", "number"}}},
            {"clear_above", {{"type", "number"}}},
            {"expr", {{"type", "string"}, {"description", "e.g. greenhouse/temp > 30 && greenhouse/humidity < 40"}}},
            {"clear", {{"type", "string"}}},
            {"for", {{"type", {"string", "number"}}, {"description", "\"90s\", \"1m\", or seconds"}}},
            {"on", actions},
            {"off", actions}}}};
}

json view_schema() {
  json j = rule_schema();
  j["properties"]["source"] = {{"type", "string"}, {"enum", {"config", "api"}}};
  j["properties"]["state"] = {
      {"type", "object"},
      {"properties",
       {{"active", {{"type", "boolean"}}},
        {"since", {{"type", "string"}, {"format", "date-time"}}},
        {"pending_since", {{"type", {"string", "null"}}, {"format", "date-time"}}},
        {"last_fired", {{"type", {"string", "null"}}, {"format", "date-time"}}},
        {"last_transition", {{"type", {"string", "null"}}, {"enum", {"on", "off", nullptr}}}},
        {"last_value", {{"description", "The sensor's latest value, or each referenced sensor's"}}},
        {"firings", {{"type", "integer"}}},
        {"last_outcome", {{"type", {"string", "null"}}, {"enum", {"ok", "failed", nullptr}}}}}}};
  return j;
}

}  // namespace

void register_rule_routes(http::Router& router, Deps& deps) {
  using http::Access;
  using http::Verb;
  if (!deps.rules) return;
  edge::RuleEngine* e = deps.rules;
  json view = view_schema();
  http::ParamDoc id_param{"id", "path", "Rule id", {{"type", "string"}}, true};
  auto problem = [](unsigned status, const char* what) {
    return http::OpenApiDoc::Reply{status, what, problem_ref(), "application/problem+json"};
  };

  router.add({Verb::get, "/api/rules", Access::kAdmin, [e](Request&) { return list_rules(*e); },
              {.summary = "Rules",
               .description = "The local rules, from the configuration file (source config, read-only here) and "
                              "from this API (source api), with their state.",
               .tag = "rules",
               .replies = {{200, "The rules",
                            {{"type", "object"},
                             {"properties",
                              {{"count", {{"type", "integer"}}}, {"rules", {{"type", "array"}, {"items", view}}}}}}}}}});
  router.add({Verb::get, "/api/rules/{id}", Access::kAdmin,
              [e](Request& r) {
                auto v = e->get(r.path_params.at("id"));
                if (!v) return http::problem(404, fmt::format("no rule '{}'", r.path_params.at("id")));
                return Response::json(v->json);
              },
              {.summary = "One rule and its state",
               .description = "Active or not and since when, a minimum duration under way, the last firing, its "
                              "outcome, and the latest value of what the rule reads.",
               .tag = "rules",
               .params = {id_param},
               .replies = {{200, "The rule", view}, problem(404, "No such rule")}}});
  router.add({Verb::post, "/api/rules", Access::kAdmin, [e](Request& r) { return create_rule(*e, r); },
              {.summary = "Create a rule",
               .description = "Checked against the hub's registry: the device and sensor must have reported, the "
                              "command's device must be known and name one of its actuators. Persisted, then "
                              "evaluated on every reading of what it reads. Without an id, one is made up.",
               .tag = "rules",
               .request_schema = rule_schema(),
               .replies = {{201, "Created: the rule, with Location", view},
                           problem(400, "Invalid rule: `field` names the field at fault (and `position` the "
                                        "character of an expression)"),
                           problem(409, "A rule with this id exists")}}});
  router.add({Verb::put, "/api/rules/{id}", Access::kAdmin, [e](Request& r) { return replace_rule(*e, r); },
              {.summary = "Replace a rule",
               .description = "An API rule only (a config rule is changed in the file). A rule that is on stays on, "
                              "so its off still runs when the new condition clears.",
               .tag = "rules",
               .params = {id_param},
               .request_schema = rule_schema(),
               .replies = {{200, "The rule", view},
                           problem(400, "Invalid rule: `field` names the field at fault"),
                           problem(404, "No such rule"),
                           problem(409, "A rule from the configuration file")}}});
  router.add({Verb::delete_, "/api/rules/{id}", Access::kAdmin,
              [e](Request& r) {
                auto s = e->remove(r.path_params.at("id"));
                if (!s) return http::problem(s);
                Response resp;
                resp.status = 204;
                resp.content_type.clear();
                return resp;
              },
              {.summary = "Delete a rule",
               .description = "An API rule only. What the rule switched stays as it is.",
               .tag = "rules",
               .params = {id_param},
               .replies = {{204, "Deleted"}, problem(404, "No such rule"), problem(409, "A rule from the configuration file")}}});
}

}  // namespace outpost::api
