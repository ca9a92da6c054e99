// Authentication: scoped API keys, stored only as hashes, checked in constant time.
//
// A key reads "opk_<id>_<secret>": <id> is 10 public characters that name the key (listed as
// its prefix "opk_<id>"), <secret> is 32 random bytes in base64url. The store keeps the SHA-256
// of the whole key; a request's key is found by id and its hash compared with sodium_memcmp.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/core.hpp"
#include "store/store.hpp"

namespace outpost::auth {

// Each scope includes the ones below it: admin ⊇ control ⊇ read.
enum class Scope { kRead = 1, kControl = 2, kAdmin = 3 };
std::optional<Scope> parse_scope(std::string_view s);
const char* scope_name(Scope s);
inline bool allows(Scope have, Scope need) { return static_cast<int>(have) >= static_cast<int>(need); }

// Who made a request.
struct Principal {
  std::string key_id;
  std::string name;
  Scope scope = Scope::kRead;
};

struct NewKey {
  std::string key;  // the whole key: shown once, never stored
  store::ApiKey record;
};

// Generates a key with libsodium's CSPRNG and stores its hash. Committed on return.
core::Result<NewKey> create_key(store::Store& store, Scope scope, const std::string& name);
// "opk_<id>": what listings show of a key.
std::string key_prefix(const std::string& id);

// Checks credentials against the keys in the store. Keeps an in-memory copy of the key table,
// reloaded when the store's keys generation changes (refresh(), called about once a second, and
// on an unknown key id, at most every 100 ms), so keys made or revoked by the CLI in another
// process take effect within a second. Thread-safe.
class Authenticator {
 public:
  Authenticator(store::Store& store, core::Registry* metrics);

  // Unauthorized with a reason if the credential is not a valid, unrevoked key.
  core::Result<Principal> authenticate(std::string_view credential) const;
  // Reloads the keys if they changed. Cheap when nothing changed.
  void refresh();
  // Whether any unrevoked key exists.
  bool has_active_key() const;

 private:
  struct Entry {
    std::string hash;
    std::string name;
    Scope scope;
  };
  using Table = std::unordered_map<std::string, Entry>;

  void reload(uint64_t generation);

  store::Store& store_;
  mutable std::shared_mutex mu_;
  std::shared_ptr<const Table> table_;
  uint64_t generation_ = 0;
  mutable std::atomic<int64_t> last_miss_refresh_us_{0};
  core::Counter* failures_ = nullptr;
};

}  // namespace outpost::auth
