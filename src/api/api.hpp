// Route handlers: the device's own API (seed 002), RaspAP's system routes (seed 001), and the
// service routes (health, metrics, OpenAPI, docs). Each register_* adds its routes to the table.
#pragma once

#include <atomic>
#include <mutex>
#include <string>

#include "config/config.hpp"
#include "core/core.hpp"
#include "edge/edge.hpp"
#include "hw/hw.hpp"
#include "http/http.hpp"
#include "store/store.hpp"
#include "sysinfo/sysinfo.hpp"

namespace outpost::api {

// What the handlers use. Everything is owned by app/ and outlives the router.
struct Deps {
  const config::Config& cfg;
  std::string device_id;
  store::Store& store;
  hw::Board& board;
  edge::Collector& collector;
  const sysinfo::SysInfo& sys;
  core::Registry& metrics;
  core::TimePoint started;
};

// GET /api/status, GET /api/readings, POST /api/led.
void register_device_routes(http::Router& router, Deps& deps);
// GET /system, GET /networking (RaspAP's shapes and error style).
void register_raspap_routes(http::Router& router, Deps& deps);
// GET /api/health, GET /metrics, GET /openapi.json, GET /docs[/...].
void register_service_routes(http::Router& router, Deps& deps);

// Parses a non-negative integer query value: nullopt if it is not one. Values beyond `cap`
// (however many digits) give `cap`.
std::optional<size_t> parse_limit(std::string_view s, size_t cap);

}  // namespace outpost::api
