// Login tokens: HS256 JWTs signed with a secret kept in the store.

#include <spdlog/spdlog.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "auth/auth.hpp"
#include "auth/detail/sodium.hpp"

namespace outpost::auth {

using core::Result;
using core::Status;
using nlohmann::json;

namespace {

const std::string kSecretSetting = "token_secret";
constexpr int kBase64Url = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
// Our tokens are ~200 bytes; anything far larger is not one of them and not worth hashing.
constexpr size_t kMaxTokenBytes = 4096;
// Claims beyond this (year ~5138) are refused, so that seconds * 10^6 cannot overflow.
constexpr int64_t kMaxSeconds = 100'000'000'000;
constexpr std::string_view kHeader = R"({"alg":"HS256","typ":"JWT"})";

using Key = std::array<unsigned char, TokenIssuer::kSecretBytes>;

std::string base64url(std::string_view bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), kBase64Url), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), kBase64Url);
  out.resize(std::strlen(out.c_str()));  // ENCODED_LEN counts the terminating NUL
  return out;
}

std::optional<std::string> unbase64url(std::string_view text) {
  std::string out(text.size() * 3 / 4 + 1, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &len, &end, kBase64Url) != 0 ||
      end != text.data() + text.size())
    return std::nullopt;
  out.resize(len);
  return out;
}

std::string hmac(const Key& key, std::string_view message) {
  std::string mac(crypto_auth_hmacsha256_BYTES, '\0');
  crypto_auth_hmacsha256(reinterpret_cast<unsigned char*>(mac.data()),
                         reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                         key.data());
  return mac;
}

std::string to_hex(const Key& key) {
  std::string out(key.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), key.data(), key.size());
  out.pop_back();
  return out;
}

std::optional<Key> from_hex(std::string_view hex) {
  Key key;
  size_t len = 0;
  const char* end = nullptr;
  if (hex.size() != key.size() * 2 ||
      sodium_hex2bin(key.data(), key.size(), hex.data(), hex.size(), nullptr, &len, &end) != 0 ||
      len != key.size() || end != hex.data() + hex.size())
    return std::nullopt;
  return key;
}

// A claim holding whole seconds since the epoch within [0, kMaxSeconds].
std::optional<int64_t> seconds_claim(const json& payload, const char* name) {
  auto it = payload.find(name);
  if (it == payload.end() || !it->is_number_integer()) return std::nullopt;
  if (it->is_number_unsigned()) {
    auto v = it->get<uint64_t>();
    if (v > static_cast<uint64_t>(kMaxSeconds)) return std::nullopt;
    return static_cast<int64_t>(v);
  }
  auto v = it->get<int64_t>();
  if (v < 0 || v > kMaxSeconds) return std::nullopt;
  return v;
}

int64_t epoch_seconds(core::TimePoint t) {
  return std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count();
}

Result<Principal> invalid() { return Status::unauthorized(std::string(kInvalidToken)); }

}  // namespace

Result<TokenIssuer> TokenIssuer::from_secret(std::string_view secret) {
  if (secret.size() != kSecretBytes)
    return Status::invalid("token secret must be " + std::to_string(kSecretBytes) + " bytes");
  if (!detail::sodium_ready()) return Status::internal("libsodium failed to initialise");
  Key key;
  std::memcpy(key.data(), secret.data(), key.size());
  return TokenIssuer(key);
}

Result<TokenIssuer> TokenIssuer::rotate(store::Store& store) {
  if (!detail::sodium_ready()) return Status::internal("libsodium failed to initialise");
  Key key;
  randombytes_buf(key.data(), key.size());
  if (auto s = store.put_setting(kSecretSetting, to_hex(key)); !s) return s;
  return TokenIssuer(key);
}

Result<TokenIssuer> TokenIssuer::load_or_create(store::Store& store) {
  if (!detail::sodium_ready()) return Status::internal("libsodium failed to initialise");
  auto stored = store.get_setting(kSecretSetting);
  if (!stored) return stored.status();
  if (stored->has_value()) {
    if (auto key = from_hex(**stored)) return TokenIssuer(*key);
    spdlog::warn("auth: setting {} is malformed; replacing it (earlier tokens stop working)",
                 kSecretSetting);
    return rotate(store);
  }
  // First start: two processes (the server and a CLI) may get here at once; whichever commits
  // first wins and both use its secret.
  Key key;
  randombytes_buf(key.data(), key.size());
  std::string current;
  if (auto s = store.put_setting_if_absent(kSecretSetting, to_hex(key), &current); !s) return s;
  if (auto stored_key = from_hex(current)) return TokenIssuer(*stored_key);
  return Status::internal("token secret unreadable after creation");
}

std::string TokenIssuer::issue(const std::string& subject, Scope scope,
                               std::chrono::milliseconds ttl, core::TimePoint now) const {
  const auto exp = std::chrono::time_point_cast<std::chrono::microseconds>(now + ttl);
  const nlohmann::ordered_json payload = {
      {"sub", subject},
      {"scope", scope_name(scope)},
      {"iat", epoch_seconds(now)},
      {"exp", epoch_seconds(exp)},
  };
  std::string token = base64url(kHeader) + "." +
                      base64url(payload.dump(-1, ' ', false, json::error_handler_t::replace));
  std::string signature = base64url(hmac(key_, token));
  return token + "." + signature;
}

Result<Principal> TokenIssuer::verify(std::string_view token, core::TimePoint now) const {
  if (token.size() > kMaxTokenBytes) return invalid();
  const size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos) return invalid();
  const size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return invalid();

  // The signature first: nothing an attacker wrote is parsed before it checks out. Comparing
  // the canonical encoding also refuses other spellings of the same bytes.
  const std::string_view signed_part = token.substr(0, dot2);
  const std::string_view signature = token.substr(dot2 + 1);
  const std::string expected = base64url(hmac(key_, signed_part));
  if (signature.size() != expected.size() ||
      sodium_memcmp(signature.data(), expected.data(), expected.size()) != 0)
    return invalid();

  auto header_text = unbase64url(token.substr(0, dot1));
  auto payload_text = unbase64url(token.substr(dot1 + 1, dot2 - dot1 - 1));
  if (!header_text || !payload_text) return invalid();
  const json header = json::parse(*header_text, nullptr, false);
  const json payload = json::parse(*payload_text, nullptr, false);
  if (!header.is_object() || !payload.is_object()) return invalid();  // also when discarded

  auto alg = header.find("alg");
  if (alg == header.end() || *alg != "HS256") return invalid();
  if (auto typ = header.find("typ"); typ != header.end() && *typ != "JWT") return invalid();

  auto sub = payload.find("sub");
  auto scope_claim = payload.find("scope");
  if (sub == payload.end() || !sub->is_string() || scope_claim == payload.end() ||
      !scope_claim->is_string())
    return invalid();
  auto scope = parse_scope(scope_claim->get_ref<const std::string&>());
  auto iat = seconds_claim(payload, "iat");
  auto exp = seconds_claim(payload, "exp");
  if (!scope || !iat || !exp) return invalid();

  if (*exp * 1'000'000 <= core::to_micros(now))
    return Status::unauthorized(std::string(kExpiredToken));
  const std::string& name = sub->get_ref<const std::string&>();
  return Principal{"token:" + name, name, *scope};
}

}  // namespace outpost::auth
