// HTTP: the Beast server, the one route table, and the responses every handler returns.
//
// Routes are declared once with method, path pattern, required scope, handler and OpenAPI
// description; 404/405 with Allow, CORS preflight, HEAD, authentication and the OpenAPI
// document all come from that table, so a route cannot exist undocumented or unprotected.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <chrono>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/auth.hpp"
#include "config/config.hpp"
#include "core/core.hpp"

namespace outpost::http {

namespace bhttp = boost::beast::http;
using Verb = bhttp::verb;
using RawRequest = bhttp::request<bhttp::string_body>;

// The scope a route needs; kPublic needs no credentials at all.
enum class Access { kPublic, kRead, kControl, kAdmin };

// How a route reports authentication failures and errors: native routes use RFC 9457 problem
// details; RaspAP's routes answer like its FastAPI server (403 {"detail": ...} for a bad or
// missing key), so its existing clients see what they expect.
// Seed 000's camera routes answer 401 {"status":"error","message":"token missing" |
// "token expired" | "token invalid"}.
enum class ErrorStyle { kProblem, kFastApi, kSeed000 };

struct Request {
  const RawRequest& raw;
  std::string_view path;   // the target before '?', not decoded
  std::string_view query;  // after '?', not decoded
  std::map<std::string, std::string, std::less<>> path_params;  // from {name} segments, decoded
  std::string client;      // peer address
  std::optional<auth::Principal> principal;  // set for non-public routes

  // The decoded value of the first query parameter `name`, if present (the raw text when it
  // does not decode: a bad escape or %00).
  std::optional<std::string> query_param(std::string_view name) const;
  // A header's value, or "" if absent.
  std::string_view header(std::string_view name) const;
};

// A response body produced over time (an MJPEG stream): after the head is written the
// connection is handed to the stream's owner and stays open until one side closes it.
// All callbacks run on the connection's thread; every member may be called from any thread.
class Stream {
 public:
  virtual ~Stream() = default;
  // Writes `parts` in order; `hold` keeps their bytes alive until `done(ok)` runs (ok false:
  // the connection is gone). One write at a time.
  virtual void write(std::vector<std::string_view> parts, std::shared_ptr<const void> hold,
                     std::function<void(bool ok)> done) = 0;
  // Runs `fn` on the connection's thread, now or after `delay`.
  virtual void post(std::function<void()> fn) = 0;
  virtual void after(std::chrono::milliseconds delay, std::function<void()> fn) = 0;
  // `fn` runs once when the connection closes: the client went away, the server is stopping,
  // or close() was called. Set it before the first write.
  virtual void on_close(std::function<void()> fn) = 0;
  virtual void close() = 0;
  virtual bool closed() const = 0;
};
using StreamStarter = std::function<void(std::shared_ptr<Stream>)>;

struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // When set, the head goes out without Content-Length and the connection is handed to this
  // (body is ignored); the connection closes when the stream ends.
  StreamStarter stream;

  // Members stay in the order written (seed documents show an order); a nlohmann::json
  // converts implicitly.
  static Response json(const nlohmann::ordered_json& j, unsigned status = 200);
  static Response text(std::string body, std::string content_type, unsigned status = 200);
};

// RFC 9457 problem details (application/problem+json). `extra` members are merged into the
// body; every problem also carries "error" = detail, the member seed 002's clients read.
Response problem(unsigned status, std::string_view detail, const nlohmann::json& extra = nullptr);
// The one mapping from a Status to an HTTP answer (invalid → 400, not found → 404, ...).
Response problem(const core::Status& s);
unsigned status_for(core::Code c);

using Handler = std::function<Response(Request&)>;
// For handlers that must wait (a password hash, a device's answer): reply once, from any
// thread; the Request stays valid until then. The connection waits up to 30 s.
using Reply = std::function<void(Response)>;
using AsyncHandler = std::function<void(Request&, Reply)>;

// A WebSocket opening handshake (RFC 6455: a GET with "Upgrade: websocket") that reached a
// route with `upgrade` set. The connection is handed over: from then on the server no longer
// counts, times or closes it; its new owner answers the handshake and does all of that.
// A request that carries a credential (an Authorization, X-API-Key or access_token header, or
// an access_token query parameter) is authenticated first: a wrong one gets the route's 401
// and no upgrade. One without any credential is handed over with no principal: the owner
// decides (it may accept a credential in the first message, or close).
struct Upgrade {
  RawRequest request;
  boost::asio::ip::tcp::socket socket;  // on the connection's io thread
  std::string client;                   // peer address
  std::string path;                     // the target before '?', not decoded
  std::string query;                    // after '?', not decoded
  std::optional<auth::Principal> principal;
};
using UpgradeHandler = std::function<void(Upgrade)>;

// OpenAPI description of one operation.
struct ParamDoc {
  std::string name;
  std::string in;  // "query", "path" or "header"
  std::string description;
  nlohmann::json schema = {{"type", "string"}};
  bool required = false;
};
struct OpenApiDoc {
  std::string summary;
  std::string description;
  std::string tag;
  std::vector<ParamDoc> params;
  nlohmann::json request_schema = nullptr;  // application/json body, if any
  std::string request_content_type = "application/json";
  // status → {description, schema (json or null), content type}
  struct Reply {
    unsigned status;
    std::string description;
    nlohmann::json schema = nullptr;
    std::string content_type = "application/json";
  };
  std::vector<Reply> replies;
};

struct Route {
  Verb method;
  std::string pattern;  // "/api/devices/{id}": literal segments and {name} segments
  Access access;
  Handler handler;
  OpenApiDoc doc;
  ErrorStyle style = ErrorStyle::kProblem;
  std::string operation_id;  // derived from method + pattern when empty
  // For routes a browser opens directly (no way to send a header): authenticates from the
  // query string when the request carries no credential header. Returns unauthorized with
  // "missing API key" when the parameter is absent.
  std::function<core::Result<auth::Principal>(const Request&)> query_auth;
  // Used instead of `handler` when set.
  AsyncHandler async_handler;
  // WebSocket handshakes on this route go here instead of the handler (see Upgrade).
  UpgradeHandler upgrade;
  // When set and true for a request, that request needs no credential (an operator's
  // "anonymous read" switch for one kind of request on a shared path).
  std::function<bool(const Request&)> public_when;
};

// The route table. Not thread-safe while routes are added; read-only (and thread-safe) after.
class Router {
 public:
  void add(Route r);

  struct Match {
    const Route* route = nullptr;  // set when method and path matched
    std::map<std::string, std::string, std::less<>> params;
    std::vector<Verb> allowed;     // when the path matched but not the method
    size_t index = 0;              // route's index, for metrics
  };
  Match match(Verb method, std::string_view path) const;
  const std::vector<Route>& routes() const { return routes_; }

  // OpenAPI 3.1 document of every route.
  nlohmann::json openapi(const std::string& title, const std::string& version) const;

 private:
  std::vector<Route> routes_;
  std::vector<std::vector<std::string>> segments_;
};

// Percent-decoding for paths and query strings ('+' as space only in queries). nullopt on
// malformed escapes or an encoded NUL.
std::optional<std::string> url_decode(std::string_view s, bool query);

// Extracts the credential from Authorization (Bearer or bare), X-API-Key or access_token headers.
std::string_view credential_of(const RawRequest& req);

// The server: listener, sessions, limits, auth, CORS, access log, metrics.
class Server {
 public:
  Server(const config::ServerConfig& cfg, const config::LogConfig& log, const Router& router,
         const auth::Authenticator& auth, core::Registry& metrics);
  ~Server();

  // Binds and listens; returns the bound address ("127.0.0.1:34567").
  core::Result<std::string> start();
  // Runs the io threads until stop() completes. Blocks.
  void run();
  // Stops accepting, lets requests in flight finish (up to shutdown_grace), closes idle
  // connections, then stops the io threads. Safe from any thread, idempotent.
  void stop();
  // Open connections now.
  size_t connections() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::http
