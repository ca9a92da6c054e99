#include "http/log.hpp"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <mutex>

namespace outpost::http {

namespace {

// stdout through libc's buffer: no write(2) per request when stdout is a pipe or file (it is
// line-buffered on a terminal anyway). spdlog's stdout sink flushes after every line.
class BufferedStdoutSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    std::fwrite(buf.data(), 1, buf.size(), stdout);
  }
  void flush_() override { std::fflush(stdout); }
};

constexpr std::array<std::string_view, 9> kSecretParams = {
    "access_token", "token", "key", "api_key", "apikey", "password", "auth", "secret", "stream_token"};

bool is_secret(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return std::find(kSecretParams.begin(), kSecretParams.end(), lower) != kSecretParams.end();
}

}  // namespace

std::shared_ptr<spdlog::logger> make_access_logger(const std::string& where) {
  if (where == "off") return nullptr;
  spdlog::sink_ptr sink;
  if (where == "stdout") {
    sink = std::make_shared<BufferedStdoutSink>();
  } else {
    sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(where);
  }
  auto logger = std::make_shared<spdlog::logger>("access", sink);
  logger->set_pattern("%v");
  logger->set_level(spdlog::level::info);
  logger->flush_on(spdlog::level::err);
  spdlog::register_logger(logger);  // so spdlog::flush_every() reaches it
  return logger;
}

std::string log_target(std::string_view path, std::string_view query) {
  std::string out(path);
  if (query.empty()) return out;
  out += '?';
  bool first = true;
  while (true) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    if (!first) out += '&';
    first = false;
    if (eq != std::string_view::npos && is_secret(pair.substr(0, eq))) {
      out += pair.substr(0, eq);
      out += "=REDACTED";
    } else {
      out += pair;
    }
    if (amp == std::string_view::npos) break;
    query = query.substr(amp + 1);
  }
  return out;
}

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

}  // namespace outpost::http
