// Access log helpers (internal to http/).
#pragma once

#include <spdlog/logger.h>

#include <memory>
#include <string>
#include <string_view>

namespace outpost::http {

// A logger writing one JSON object per line to stdout (buffered, flushed every second and at
// exit) or to a file; nullptr for "off".
std::shared_ptr<spdlog::logger> make_access_logger(const std::string& where);

// The path and query for the log, with the values of credential-bearing query parameters
// (access_token, token, key, api_key, password...) replaced by "REDACTED".
std::string log_target(std::string_view path, std::string_view query);

// Escapes a string for the inside of a JSON string literal.
std::string json_escape(std::string_view s);

}  // namespace outpost::http
