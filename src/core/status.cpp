#include "core/status.hpp"

namespace outpost::core {

const char* code_name(Code c) {
  switch (c) {
    case Code::kOk: return "ok";
    case Code::kInvalid: return "invalid";
    case Code::kUnauthorized: return "unauthorized";
    case Code::kForbidden: return "forbidden";
    case Code::kNotFound: return "not found";
    case Code::kConflict: return "conflict";
    case Code::kTooLarge: return "too large";
    case Code::kBusy: return "busy";
    case Code::kUnavailable: return "unavailable";
    case Code::kIo: return "i/o error";
    case Code::kInternal: return "internal error";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  return std::string(code_name(code_)) + ": " + message_;
}

}  // namespace outpost::core
