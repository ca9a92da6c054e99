#include "auth/auth.hpp"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <mutex>

namespace outpost::auth {

using core::Result;
using core::Status;

namespace {

constexpr std::string_view kKeyPrefix = "opk_";
constexpr size_t kIdLength = 10;
constexpr size_t kSecretBytes = 32;
constexpr char kIdAlphabet[] = "abcdefghijkmnpqrstuvwxyz23456789";  // no look-alikes (l, o, 0, 1)

// libsodium's SHA-256. (OpenSSL's EVP digest is faster with the CPU's SHA instructions, but its
// first use loads OpenSSL's default provider, about 1.9 MB of resident memory for the life of
// the process; hashing a 60-byte key is a fraction of a microsecond either way.)
std::string sha256(std::string_view data) {
  std::string out(crypto_hash_sha256_BYTES, '\0');
  crypto_hash_sha256(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(data.data()),
                     data.size());
  return out;
}

std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string random_id() {
  std::string id(kIdLength, 'a');
  for (auto& ch : id) ch = kIdAlphabet[randombytes_uniform(sizeof kIdAlphabet - 1)];
  return id;
}

std::string random_secret() {
  unsigned char raw[kSecretBytes];
  randombytes_buf(raw, sizeof raw);
  const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_ENCODED_LEN(sizeof raw, variant), '\0');
  sodium_bin2base64(out.data(), out.size(), raw, sizeof raw, variant);
  out.resize(std::strlen(out.c_str()));
  sodium_memzero(raw, sizeof raw);
  return out;
}

// Splits "opk_<id>_<secret>"; nullopt if the shape is wrong.
std::optional<std::string_view> id_of(std::string_view key) {
  if (key.size() < kKeyPrefix.size() + kIdLength + 2 || key.substr(0, kKeyPrefix.size()) != kKeyPrefix ||
      key[kKeyPrefix.size() + kIdLength] != '_')
    return std::nullopt;
  return key.substr(kKeyPrefix.size(), kIdLength);
}

bool sodium_ready() {
  static const bool ok = sodium_init() >= 0;
  return ok;
}

}  // namespace

std::optional<Scope> parse_scope(std::string_view s) {
  if (s == "read") return Scope::kRead;
  if (s == "control") return Scope::kControl;
  if (s == "admin") return Scope::kAdmin;
  return std::nullopt;
}

const char* scope_name(Scope s) {
  switch (s) {
    case Scope::kRead: return "read";
    case Scope::kControl: return "control";
    case Scope::kAdmin: return "admin";
  }
  return "read";
}

core::Result<std::string> create_device_key(store::Store& store, const std::string& device_id) {
  if (device_id.empty()) return core::Status::invalid("a device id is needed");
  if (!sodium_ready()) return core::Status::internal("libsodium failed to initialise");
  std::string key = "odk_" + random_secret();
  if (auto s = store.put_setting("device_key:" + device_id, hex(sha256(key))); !s) return s;
  return key;
}

bool check_device_key(const store::Store& store, std::string_view device_id, std::string_view key) {
  if (key.empty() || device_id.empty()) return false;
  auto stored = store.get_setting("device_key:" + std::string(device_id));
  if (!stored || !stored->has_value() || (*stored)->size() != 64) return false;
  std::string digest = hex(sha256(key));
  return sodium_memcmp(digest.data(), (*stored)->data(), 64) == 0;
}

std::string key_prefix(const std::string& id) { return std::string(kKeyPrefix) + id; }

Result<NewKey> create_key(store::Store& store, Scope scope, const std::string& name) {
  if (!sodium_ready()) return Status::internal("libsodium failed to initialise");
  if (name.size() > 200) return Status::invalid("key name longer than 200 characters");
  // An id collision is astronomically unlikely (32^10), but a retry costs nothing.
  for (int attempt = 0; attempt < 3; ++attempt) {
    NewKey k;
    k.record.id = random_id();
    k.key = key_prefix(k.record.id) + "_" + random_secret();
    k.record.name = name;
    k.record.scope = scope_name(scope);
    k.record.hash = sha256(k.key);
    k.record.created = core::now();
    Status s = store.insert_key(k.record);
    if (s) return k;
    if (s.code() != core::Code::kConflict) return s;
  }
  return Status::internal("could not find a free key id");
}

Authenticator::Authenticator(store::Store& store, core::Registry* metrics)
    : store_(store), table_(std::make_shared<Table>()) {
  (void)sodium_ready();
  if (metrics)
    failures_ = &metrics->counter("outpost_auth_failures_total", "Requests with missing or invalid credentials.");
  refresh();
}

void Authenticator::reload(uint64_t generation) {
  auto keys = store_.list_keys();
  if (!keys) {
    spdlog::warn("auth: cannot reload keys: {}", keys.status().to_string());
    return;
  }
  auto table = std::make_shared<Table>();
  for (const auto& k : *keys) {
    if (k.revoked) continue;
    auto scope = parse_scope(k.scope);
    if (!scope) continue;
    table->emplace(k.id, Entry{k.hash, k.name, *scope});
  }
  std::unique_lock lk(mu_);
  table_ = std::move(table);
  generation_ = generation;
}

void Authenticator::refresh() {
  auto gen = store_.keys_generation();
  if (!gen) return;
  {
    std::shared_lock lk(mu_);
    if (*gen == generation_ && generation_ != 0) return;
  }
  reload(*gen);
}

bool Authenticator::has_active_key() const {
  std::shared_lock lk(mu_);
  return !table_->empty();
}

void Authenticator::attach_tokens(std::shared_ptr<const TokenIssuer> tokens) {
  std::unique_lock lk(mu_);
  tokens_ = std::move(tokens);
}

Result<Principal> Authenticator::authenticate(std::string_view credential) const {
  auto fail = [this](std::string_view why) -> Result<Principal> {
    if (failures_) failures_->inc();
    return Status::unauthorized(std::string(why));
  };
  if (credential.empty()) return fail(kMissingCredential);
  if (credential.substr(0, kKeyPrefix.size()) != kKeyPrefix) {
    std::shared_ptr<const TokenIssuer> tokens;
    {
      std::shared_lock lk(mu_);
      tokens = tokens_;
    }
    if (!tokens) return fail(kInvalidKey);
    auto p = tokens->verify(credential, core::now());
    if (!p && failures_) failures_->inc();
    return p;
  }
  auto id = id_of(credential);
  if (!id) return fail(kInvalidKey);
  std::string digest = sha256(credential);

  auto lookup = [&]() -> std::optional<Principal> {
    std::shared_lock lk(mu_);
    auto it = table_->find(std::string(*id));
    if (it == table_->end()) return std::nullopt;
    if (sodium_memcmp(it->second.hash.data(), digest.data(), digest.size()) != 0) return std::nullopt;
    return Principal{it->first, it->second.name, it->second.scope};
  };
  if (auto p = lookup()) return *p;

  // Unknown or changed key: it may have been created a moment ago by the CLI. Reload, but at
  // most every 100 ms so that invalid keys cannot turn into a stream of database reads.
  int64_t now_us = core::to_micros(core::now());
  int64_t last = last_miss_refresh_us_.load();
  if (now_us - last > 100'000 && last_miss_refresh_us_.compare_exchange_strong(last, now_us)) {
    const_cast<Authenticator*>(this)->refresh();
    if (auto p = lookup()) return *p;
  }
  return fail(kInvalidKey);
}

}  // namespace outpost::auth
