#include <gtest/gtest.h>

#include "http/http.hpp"
#include "http/log.hpp"

namespace outpost::http {
namespace {

Router make_router() {
  Router r;
  auto ok = [](Request&) { return Response::json({{"ok", true}}); };
  r.add({Verb::get, "/api/status", Access::kRead, ok, {.summary = "status"}});
  r.add({Verb::post, "/api/led", Access::kControl, ok, {.summary = "led"}});
  r.add({Verb::get, "/api/devices/{id}", Access::kRead, ok, {.summary = "device"}});
  r.add({Verb::delete_, "/api/devices/{id}", Access::kAdmin, ok, {.summary = "delete device"}});
  r.add({Verb::get, "/", Access::kPublic, ok, {.summary = "root"}});
  return r;
}

TEST(Router, MatchesLiteralAndParamRoutes) {
  auto r = make_router();
  auto m = r.match(Verb::get, "/api/status");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->pattern, "/api/status");
  m = r.match(Verb::get, "/api/devices/pi%20one");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.params.at("id"), "pi one");
  m = r.match(Verb::get, "/");
  ASSERT_NE(m.route, nullptr);
}

TEST(Router, UndecodableParamsReachTheHandlerRaw) {
  auto r = make_router();
  auto m = r.match(Verb::get, "/api/devices/%00");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.params.at("id"), "%00");
  m = r.match(Verb::get, "/api/devices/%zz");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.params.at("id"), "%zz");
}

TEST(Router, HeadIsServedByGet) {
  auto r = make_router();
  EXPECT_NE(r.match(Verb::head, "/api/status").route, nullptr);
}

TEST(Router, WrongMethodListsAllowed) {
  auto r = make_router();
  auto m = r.match(Verb::put, "/api/devices/x");
  EXPECT_EQ(m.route, nullptr);
  ASSERT_EQ(m.allowed.size(), 2u);
  m = r.match(Verb::get, "/api/led");
  ASSERT_EQ(m.allowed.size(), 1u);
  EXPECT_EQ(m.allowed[0], Verb::post);
}

TEST(Router, UnknownPathsAndEmptyParamsDoNotMatch) {
  auto r = make_router();
  for (const char* p : {"/api", "/api/status/", "/api/devices/", "/api/devices/a/b", "", "api/status"}) {
    auto m = r.match(Verb::get, p);
    EXPECT_EQ(m.route, nullptr) << p;
  }
}

TEST(Router, OpenApiHasEveryRouteWithSecurityAndErrors) {
  auto r = make_router();
  auto doc = r.openapi("Outpost", "1.0");
  EXPECT_EQ(doc["openapi"], "3.1.0");
  EXPECT_TRUE(doc["paths"]["/api/status"].contains("get"));
  EXPECT_TRUE(doc["paths"]["/api/devices/{id}"].contains("delete"));
  auto& op = doc["paths"]["/api/led"]["post"];
  EXPECT_FALSE(op["security"].empty());
  EXPECT_TRUE(op["responses"].contains("401"));
  EXPECT_TRUE(op["responses"].contains("403"));
  EXPECT_TRUE(doc["paths"]["/"]["get"]["security"].empty());
  std::set<std::string> ids;
  for (auto& [path, ops] : doc["paths"].items())
    for (auto& [verb, o] : ops.items()) EXPECT_TRUE(ids.insert(o["operationId"].get<std::string>()).second);
}

TEST(Http, UrlDecode) {
  EXPECT_EQ(url_decode("a%20b+c", true), "a b c");
  EXPECT_EQ(url_decode("a%20b+c", false), "a b+c");
  EXPECT_FALSE(url_decode("%", true));
  EXPECT_FALSE(url_decode("%4", true));
  EXPECT_FALSE(url_decode("%g0", true));
  EXPECT_FALSE(url_decode("%00", true));
  EXPECT_EQ(url_decode("%41", true), "A");
}

TEST(Http, QueryParams) {
  RawRequest raw;
  Request req{raw, "/x", "limit=10&from=2026-01-01T00%3A00%3A00Z&flag&limit=20", {}, "", std::nullopt};
  EXPECT_EQ(req.query_param("limit"), "10");
  EXPECT_EQ(req.query_param("from"), "2026-01-01T00:00:00Z");
  EXPECT_EQ(req.query_param("flag"), "");
  EXPECT_FALSE(req.query_param("to"));
}

TEST(Http, CredentialFromEachHeader) {
  RawRequest a;
  a.set(bhttp::field::authorization, "Bearer abc");
  EXPECT_EQ(credential_of(a), "abc");
  RawRequest b;
  b.set("X-API-Key", " def ");
  EXPECT_EQ(credential_of(b), "def");
  RawRequest c;
  c.set("access_token", "ghi");
  EXPECT_EQ(credential_of(c), "ghi");
  RawRequest d;
  d.set(bhttp::field::authorization, "tok");  // seed 000's bare token
  EXPECT_EQ(credential_of(d), "tok");
  RawRequest e;
  EXPECT_EQ(credential_of(e), "");
}

TEST(Http, ProblemCarriesErrorMember) {
  auto r = problem(400, "Unknown action: x", {{"valid", {"on", "off", "toggle"}}});
  EXPECT_EQ(r.status, 400u);
  EXPECT_EQ(r.content_type, "application/problem+json");
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["error"], "Unknown action: x");
  EXPECT_EQ(j["detail"], "Unknown action: x");
  EXPECT_EQ(j["title"], "Bad Request");
  EXPECT_EQ(j["valid"].size(), 3u);
  EXPECT_EQ(problem(core::Status::not_found("x")).status, 404u);
}

TEST(Http, AccessLogRedactsSecrets) {
  EXPECT_EQ(log_target("/ws", "access_token=abc&x=1"), "/ws?access_token=REDACTED&x=1");
  EXPECT_EQ(log_target("/a", "Token=abc"), "/a?Token=REDACTED");
  EXPECT_EQ(log_target("/a", ""), "/a");
  EXPECT_EQ(json_escape("a\"b\\\n"), "a\\\"b\\\\\\n");
}

}  // namespace
}  // namespace outpost::http
