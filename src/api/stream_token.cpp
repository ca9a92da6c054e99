#include <sodium.h>

#include <charconv>
#include <string>

#include "api/api.hpp"

namespace outpost::api {

// "<expiry seconds>.<base64url HMAC-SHA256(key, "video_feed:" + expiry)>"

namespace {
std::string mac_of(const unsigned char* key, const std::string& expiry) {
  std::string msg = "video_feed:" + expiry;
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256(mac, reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), key);
  const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_ENCODED_LEN(sizeof mac, variant), '\0');
  sodium_bin2base64(out.data(), out.size(), mac, sizeof mac, variant);
  out.resize(std::strlen(out.c_str()));
  return out;
}
}  // namespace

StreamTokens::StreamTokens(std::chrono::seconds ttl) : ttl_(ttl) {
  if (sodium_init() < 0) std::abort();
  randombytes_buf(key_, sizeof key_);
}

std::string StreamTokens::issue() const {
  auto expiry = std::chrono::duration_cast<std::chrono::seconds>(core::now().time_since_epoch() + ttl_).count();
  std::string e = std::to_string(expiry);
  return e + "." + mac_of(key_, e);
}

bool StreamTokens::verify(std::string_view token) const {
  size_t dot = token.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 20) return false;
  std::string expiry(token.substr(0, dot));
  long long e = 0;
  auto r = std::from_chars(expiry.data(), expiry.data() + expiry.size(), e);
  if (r.ec != std::errc() || r.ptr != expiry.data() + expiry.size()) return false;
  std::string expected = mac_of(key_, expiry);
  std::string_view given = token.substr(dot + 1);
  if (given.size() != expected.size() || sodium_memcmp(given.data(), expected.data(), expected.size()) != 0) return false;
  auto now = std::chrono::duration_cast<std::chrono::seconds>(core::now().time_since_epoch()).count();
  return now < e;
}

}  // namespace outpost::api
