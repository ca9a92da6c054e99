// The device password (argon2id hash in the store) and the house id.

#include <semaphore>

#include "auth/auth.hpp"
#include "auth/detail/sodium.hpp"

namespace outpost::auth {

using core::Result;
using core::Status;

namespace {

const std::string kPasswordSetting = "device_password";
const std::string kHouseIdSetting = "house_id";
constexpr size_t kMaxHouseIdBytes = 256;

// INTERACTIVE rather than MODERATE: MODERATE (3 passes over 256 MiB) took ~0.7 s on a desktop
// core, so ~3.5 s on a Pi, and 256 MiB per login is a third of a small Pi's memory.
constexpr unsigned long long kOpsLimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
constexpr size_t kMemLimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;

// Each argon2id computation holds kMemLimit bytes; bound how many run at once so that a burst
// of logins cannot push a small board into swapping or the OOM killer.
class HashSlot {
 public:
  HashSlot() { slots().acquire(); }
  ~HashSlot() { slots().release(); }
  HashSlot(const HashSlot&) = delete;
  HashSlot& operator=(const HashSlot&) = delete;

 private:
  static std::counting_semaphore<>& slots() {
    static std::counting_semaphore<> s(2);
    return s;
  }
};

}  // namespace

Status set_password(store::Store& store, std::string_view password) {
  if (password.empty()) return Status::invalid("password is empty");
  if (password.size() > kMaxPasswordBytes)
    return Status::invalid("password is longer than " + std::to_string(kMaxPasswordBytes) +
                           " bytes");
  if (!detail::sodium_ready()) return Status::internal("libsodium failed to initialise");
  char hash[crypto_pwhash_STRBYTES];
  {
    HashSlot slot;
    if (crypto_pwhash_str(hash, password.data(), password.size(), kOpsLimit, kMemLimit) != 0)
      return Status::unavailable("not enough memory to hash the password");
  }
  return store.put_setting(kPasswordSetting, hash);
}

Result<bool> has_password(const store::Store& store) {
  auto stored = store.get_setting(kPasswordSetting);
  if (!stored) return stored.status();
  return stored->has_value() && !(*stored)->empty();
}

Result<bool> check_password(const store::Store& store, std::string_view password) {
  auto stored = store.get_setting(kPasswordSetting);
  if (!stored) return stored.status();
  if (!stored->has_value() || (*stored)->empty()) return false;
  if (password.empty() || password.size() > kMaxPasswordBytes) return false;
  const std::string& hash = **stored;
  // crypto_pwhash_str_verify answers -1 for a malformed hash as for a wrong password; a
  // corrupt setting should not look like a run of wrong guesses.
  if (hash.rfind("$argon2", 0) != 0 || hash.size() >= crypto_pwhash_STRBYTES)
    return Status::internal("setting " + kPasswordSetting + " is not an argon2 hash");
  if (!detail::sodium_ready()) return Status::internal("libsodium failed to initialise");
  HashSlot slot;
  return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

Status set_house_id(store::Store& store, std::string_view house_id) {
  if (house_id.empty()) return Status::invalid("house id is empty");
  if (house_id.size() > kMaxHouseIdBytes)
    return Status::invalid("house id is longer than " + std::to_string(kMaxHouseIdBytes) +
                           " bytes");
  for (unsigned char c : house_id)
    if (c < 0x20 || c == 0x7f) return Status::invalid("house id contains control characters");
  return store.put_setting(kHouseIdSetting, std::string(house_id));
}

Result<std::optional<std::string>> get_house_id(const store::Store& store) {
  return store.get_setting(kHouseIdSetting);
}

}  // namespace outpost::auth
