// WebSocket: live events on the HTTP port (RFC 6455 over Beast), for browsers (seed 004's
// `new WebSocket("ws://REMOTEHOST")`) and for programs.
//
// The http::Server hands WebSocket handshakes to handler(); from then on this module owns
// the connection. One bus subscriber serves every client: each event is serialized once and
// offered to each client's bounded send queue on that client's io thread. A client whose
// queue is full is closed (1008 "too slow"); it never slows the bus or other clients.
//
// Protocol (JSON text messages; "ref" in a request, a string or number, is echoed in its answer):
//   client -> server
//     {"op":"auth","key":"..."}                     (or "token"; see Authentication)
//     {"op":"subscribe","devices":[..]|"*","sensors":[..]|"*","types":[..]|"*"}
//                                                   -> {"op":"subscribed","subscriptions":[..]}
//     {"op":"unsubscribe", same fields}             -> {"op":"unsubscribed","subscriptions":[..]}
//     {"op":"list"}                                 -> {"op":"list","devices":<Deps::list()>}
//     {"op":"command","device":..,"target":..,"parameter":..,"value":..}
//                                                   -> {"op":"command","id":"<command id>"}
//     {"op":"ping"}                                 -> {"op":"pong"}
//     anything wrong                                -> {"op":"error","error":"<what>"} (stays open)
//   server -> client
//     {"op":"event","id":<id|null>,"type":<kind>,"device":..,"time":<ISO 8601>,"data":<payload>}
// Filters: a subscription matches devices AND types AND, for readings, sensors (payload.sensor);
// a field left out matches all. A new client receives every event until its first subscribe;
// subscriptions then add up (a union). unsubscribe removes each named device, sensor and type
// (from a "*" it becomes an exclusion, shown as "except"); without fields, or with "*", it
// removes every subscription.
//
// Authentication: the handshake's credential (header or access_token query, checked by the
// http server), else {"op":"auth"} as the first message within Deps::auth_timeout, else read
// access when anonymous_read is on. Until then a client receives nothing; a wrong credential,
// any other first message or the timeout close it with 1008 "unauthorized". A later "auth"
// replaces the connection's principal (an anonymous reader gains control); a wrong one closes
// it the same way. "command" needs the control scope. Answer to "auth":
// {"op":"authenticated","scope":"read"|"control"|"admin"}.
//
// Close codes: 1001 server shutting down, 1008 "unauthorized" or "too slow", 1009 a message
// over WsConfig::max_message. Handshakes beyond WsConfig::max_clients get HTTP 503.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "auth/auth.hpp"
#include "config/config.hpp"
#include "core/core.hpp"
#include "http/http.hpp"

namespace outpost::ws {

// What the module needs from the rest of the program. Every referenced object, and whatever
// the callbacks use, must outlive the http::Server whose io threads run the clients.
struct Deps {
  const config::WsConfig& cfg;
  core::Bus& bus;
  const auth::Authenticator& auth;
  core::Registry& metrics;
  // Unauthenticated clients get read access instead of being closed (HubConfig::anonymous_read).
  bool anonymous_read = false;
  // {"op":"list"}: the devices and their sensors, as JSON (rendered by the hub). Runs on an io
  // thread: it must not block. Empty: "list" answers an error.
  std::function<core::Json()> list;
  // {"op":"command"}: submits `command` ({"device", and "target", "parameter", "value" as
  // given}) for `who`, who has the control scope (checked here). Returns the command id, or an
  // error whose message goes to the client. Runs on an io thread: it must not block.
  std::function<core::Result<std::string>(const core::Json& command, const auth::Principal& who)> command;
  // How long an unauthenticated client has to send {"op":"auth"}.
  std::chrono::milliseconds auth_timeout{10'000};
};

// The WebSocket endpoint. Thread-safe: every member may be called from any thread.
class Server {
 public:
  // Subscribes to the bus and registers the outpost_ws_* metrics (one Server per Registry).
  explicit Server(Deps deps);
  // Calls shutdown(0) if it was not called.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The handshake handler for http::Route::upgrade (routes "/ws" and, for seed 004, "/").
  // Holds the module's state alive; it may outlive this object (it then refuses with 503).
  http::UpgradeHandler handler();
  // GET /ws: the upgrade, and a plain GET answers 426 Upgrade Required; both documented in the
  // OpenAPI document.
  void register_routes(http::Router& router);
  // Closes every client with 1001 (going away) and refuses new handshakes with 503, then waits
  // up to `grace` for the clients to finish closing (their io threads must be running for
  // that). Call it before the http::Server stops, and not from an io thread when `grace` > 0.
  // Idempotent.
  void shutdown(std::chrono::milliseconds grace = std::chrono::seconds(2));
  // Connections now: from the hand-over (handshake included) until closed.
  size_t clients() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace outpost::ws
