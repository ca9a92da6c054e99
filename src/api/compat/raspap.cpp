// RaspAP's RestAPI (seed 001): GET /system and GET /networking, with its field names and its
// FastAPI error style (a missing or bad key gets 403 {"detail": ...}).
#include "api/api.hpp"

namespace outpost::api {

using http::Request;
using http::Response;
using nlohmann::json;

void register_raspap_routes(http::Router& router, Deps& deps) {
  using http::Access;
  using http::Verb;
  const sysinfo::SysInfo* sys = &deps.sys;
  json system_schema = {
      {"type", "object"},
      {"properties",
       {{"hostname", {{"type", "string"}}},
        {"uptime", {{"type", "string"}, {"examples", {"up 23 hours, 2 minutes"}}}},
        {"systime", {{"type", "string"}, {"examples", {"Sun 10 Mar 11:11:11 CET 2024"}}}},
        {"usedMemory", {{"type", "number"}, {"description", "percent"}}},
        {"usedDisk", {{"type", "number"}, {"description", "percent"}}},
        {"processorCount", {{"type", "integer"}}},
        {"LoadAvg1Min", {{"type", "number"}}},
        {"systemLoadPercentage", {{"type", "number"}}},
        {"systemTemperature", {{"type", {"number", "null"}}, {"description", "°C; null without a thermal sensor"}}},
        {"hostapdStatus", {{"type", "integer"}, {"enum", {0, 1}}}},
        {"operatingSystem", {{"type", "string"}}},
        {"kernelVersion", {{"type", "string"}}},
        {"rpiRevision", {{"type", "string"}}}}}};
  auto fastapi_error = [](const core::Status& s) {
    return Response::json({{"detail", s.message()}}, http::status_for(s.code()));
  };
  router.add({Verb::get, "/system", Access::kRead,
              [sys, fastapi_error](Request&) {
                auto facts = sys->system();
                if (!facts) return fastapi_error(facts.status());
                return Response::json(sysinfo::to_json(*facts));
              },
              {.summary = "Get System",
               .description = "System facts in RaspAP's shape (seed 001), read from /proc, /sys and /etc.",
               .tag = "raspap",
               .replies = {{200, "System facts", system_schema}}},
              http::ErrorStyle::kFastApi});
  router.add({Verb::get, "/networking", Access::kRead,
              [sys, fastapi_error](Request&) {
                auto ifs = sys->networking();
                if (!ifs) return fastapi_error(ifs.status());
                // RaspAP leaves out loopback and docker interfaces.
                std::erase_if(*ifs, [](const sysinfo::InterfaceFacts& f) { return sysinfo::raspap_hides(f.name); });
                return Response::json(sysinfo::to_json(*ifs));
              },
              {.summary = "Get Networking",
               .description = "Network interfaces: addresses, netmask, MAC, and RX/TX packet and byte counters.",
               .tag = "raspap",
               .replies = {{200, "Interfaces", {{"type", "object"}}}}},
              http::ErrorStyle::kFastApi});
}

}  // namespace outpost::api
