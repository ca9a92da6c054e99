// Authentication: scoped API keys, stored only as hashes, checked in constant time; and for
// seed 000, a device password, signed login tokens and a login rate limiter.
//
// A key reads "opk_<id>_<secret>": <id> is 10 public characters that name the key (listed as
// its prefix "opk_<id>"), <secret> is 32 random bytes in base64url. The store keeps the SHA-256
// of the whole key; a request's key is found by id and its hash compared with sodium_memcmp.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

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
// Device keys (udp.require_key): one per device id, "odk_" + 32 random bytes in base64url. The
// store keeps its SHA-256 as the setting "device_key:<id>"; a new key replaces the old one.
core::Result<std::string> create_device_key(store::Store& store, const std::string& device_id);
// Whether `key` is the device's key (constant-time compare). False when it has none.
bool check_device_key(const store::Store& store, std::string_view device_id, std::string_view key);

// "opk_<id>": what listings show of a key.
std::string key_prefix(const std::string& id);

// authenticate()'s errors are Status::unauthorized with one of these messages, so that the HTTP
// layer can tell the cases apart (seed 000 answers "token missing" / "token expired" /
// "token invalid") without parsing free text.
inline constexpr std::string_view kMissingCredential = "missing API key";  // empty credential
inline constexpr std::string_view kInvalidKey = "invalid API key";         // bad "opk_" key
inline constexpr std::string_view kExpiredToken = "token expired";  // good signature, exp passed
inline constexpr std::string_view kInvalidToken = "token invalid";  // any other bad token

// ---- Seed 000: device password and house id ----

// The longest password set_password() accepts, in bytes.
inline constexpr size_t kMaxPasswordBytes = 1024;

// Sets the device password that POST /login and /signup check: stores its argon2id hash
// (libsodium crypto_pwhash_str with OPSLIMIT/MEMLIMIT_INTERACTIVE: 2 passes over 64 MiB, about
// 60 ms on a desktop core and 0.3-0.5 s on a Raspberry Pi; the salt and parameters are in the
// hash) as setting "device_password", replacing any previous one. Committed on return. The
// password itself is never stored or logged.
// Errors: Status::invalid for an empty password or one over kMaxPasswordBytes; unavailable if
// the 64 MiB cannot be allocated; the store's errors.
core::Status set_password(store::Store& store, std::string_view password);
// Whether a device password has been set.
core::Result<bool> has_password(const store::Store& store);
// Whether `password` is the device password; false when none is set (has_password() tells that
// case apart) and, without hashing, for an empty or over-long password. Status::internal when
// the stored value is not an argon2 hash.
// Cost: one argon2id verification (as set_password). At most two run at once in a process —
// further callers wait — so concurrent logins never take more than 128 MiB. Call it off
// latency-sensitive threads and behind a LoginLimiter.
core::Result<bool> check_password(const store::Store& store, std::string_view password);

// The house id given at /signup, stored as setting "house_id". Status::invalid when empty,
// over 256 bytes or containing control characters.
core::Status set_house_id(store::Store& store, std::string_view house_id);
// nullopt until one is set.
core::Result<std::optional<std::string>> get_house_id(const store::Store& store);

// ---- Seed 000: login tokens ----

// Issues and checks login tokens: JWTs (RFC 7519) signed with HS256 (HMAC-SHA256, libsodium),
//   base64url({"alg":"HS256","typ":"JWT"}) "." base64url(payload) "." base64url(signature)
// (base64url without padding), payload {"sub":<subject>,"scope":"read"|"control"|"admin",
// "iat":<seconds>,"exp":<seconds>} with times in whole seconds since the Unix epoch.
// The key is a 32-byte secret kept in the store as setting "token_secret" (64 hex digits), so
// tokens survive restarts; whoever can read the database can mint tokens.
//
// Thread safety: immutable once built; every member may be called from any thread at once.
class TokenIssuer {
 public:
  static constexpr size_t kSecretBytes = 32;

  // The issuer for the secret in `store`, creating a random one (libsodium's CSPRNG) and storing
  // it if there is none. A stored value that is not 64 hex digits is replaced, with a warning
  // (tokens signed before stop verifying). Two processes creating the secret at the same moment
  // could end up with different ones; only the server calls this.
  static core::Result<TokenIssuer> load_or_create(store::Store& store);
  // Stores a new random secret and returns its issuer: every token issued before stops
  // verifying (e.g. after a password change). Issuers already built keep the old secret; attach
  // the new one to the Authenticator.
  static core::Result<TokenIssuer> rotate(store::Store& store);
  // An issuer for a given secret. Status::invalid unless it is exactly kSecretBytes long.
  static core::Result<TokenIssuer> from_secret(std::string_view secret);

  // A token for `subject` with `scope`: iat = `now` and exp = `now` + `ttl`, each rounded down
  // to a whole second. Subjects that are not valid UTF-8 have the bad bytes replaced (U+FFFD).
  std::string issue(const std::string& subject, Scope scope, std::chrono::milliseconds ttl,
                    core::TimePoint now) const;

  // The principal {key_id "token:" + sub, name sub, scope} of a token this secret signed.
  // Errors, all Status::unauthorized: kExpiredToken when the signature is good but exp <= `now`;
  // kInvalidToken for anything else: not three base64url parts, over 4 KiB, a bad signature
  // (compared in constant time), an alg other than HS256 (so "none" too), JSON that is not an
  // object, a missing or ill-typed sub/scope/iat/exp, an unknown scope.
  core::Result<Principal> verify(std::string_view token, core::TimePoint now) const;

 private:
  explicit TokenIssuer(const std::array<unsigned char, kSecretBytes>& key) : key_(key) {}
  std::array<unsigned char, kSecretBytes> key_;
};

// ---- Seed 000: login rate limit ----

// Counts failed logins per client and locks a client out after too many: cfg.login_max_failures
// failures within cfg.login_window (a sliding window) refuse that client for cfg.login_lockout,
// after which it starts afresh. login_max_failures <= 0 disables the lockout.
//
// Memory is bounded: at most `max_clients` clients are tracked, each with at most
// login_max_failures timestamps; a new client beyond that evicts the one whose last failure is
// oldest. Clients whose failures and lockout have all expired are dropped as calls go by.
// Time comes in as `now` on every call (tests pass any time they like).
//
// Thread safety: every member may be called from any thread at once.
class LoginLimiter {
 public:
  static constexpr size_t kDefaultMaxClients = 10'000;

  explicit LoginLimiter(const config::AuthConfig& cfg, size_t max_clients = kDefaultMaxClients);

  // Call before checking a password. Status::ok, or Status::busy ("too many failed logins; try
  // again in N s") while `client` is locked out; retry_after() gives N for a Retry-After header.
  core::Status check(const std::string& client, core::TimePoint now);
  // Whole seconds until `client`'s lockout ends, rounded up; 0 when it is not locked out.
  std::chrono::seconds retry_after(const std::string& client, core::TimePoint now) const;
  // Records a failed login by `client`. Returns a suggested delay before answering it, a
  // slowdown a person does not notice and a guesser does: 0 for the first failure in the
  // window, then 250 ms doubling with each further one up to 2 s; 0 when this failure locked
  // the client out (the next check() refuses it anyway). Ignored while `client` is locked out.
  std::chrono::milliseconds failure(const std::string& client, core::TimePoint now);
  // A successful login: forgets `client`'s failures.
  void success(const std::string& client, core::TimePoint now);
  // Clients tracked now (for tests and metrics).
  size_t tracked() const;

 private:
  struct Entry {
    std::string client;
    std::vector<core::TimePoint> failures;  // within the window, oldest first
    std::optional<core::TimePoint> locked_until;
    core::TimePoint touched;  // the last failure
  };
  using Lru = std::list<Entry>;  // most recently failed first

  void sweep(core::TimePoint now);
  void erase(Lru::iterator it);

  const int max_failures_;
  const std::chrono::microseconds window_;
  const std::chrono::microseconds lockout_;
  const size_t max_clients_;
  mutable std::mutex mu_;
  Lru lru_;
  std::unordered_map<std::string, Lru::iterator> index_;
};

// What to count logins by for a peer address: an IPv4 address as it is (also written as
// IPv4-mapped IPv6, "::ffff:a.b.c.d"); an IPv6 address as its /64 network, e.g.
// "2001:db8:1:2::/64", since one host usually holds a whole /64 (a zone "%eth0" is dropped);
// anything else unchanged.
std::string login_client_key(std::string_view address);

// ---- API keys and tokens ----

// Checks credentials against the keys in the store. Keeps an in-memory copy of the key table,
// reloaded when the store's keys generation changes (refresh(), called about once a second, and
// on an unknown key id, at most every 100 ms), so keys made or revoked by the CLI in another
// process take effect within a second. Thread-safe.
class Authenticator {
 public:
  Authenticator(store::Store& store, core::Registry* metrics);

  // The principal behind `credential`: an API key when it starts with "opk_", otherwise a
  // token of the attached TokenIssuer (see attach_tokens). Errors are Status::unauthorized with
  // a message from the fixed set above: kMissingCredential when empty; kInvalidKey for an
  // "opk_" credential that is not a valid, unrevoked key, and for any other credential while no
  // issuer is attached; kExpiredToken or kInvalidToken from TokenIssuer::verify (at the
  // current time).
  core::Result<Principal> authenticate(std::string_view credential) const;
  // Lets authenticate() accept tokens signed by `tokens`, replacing any issuer attached before
  // (after TokenIssuer::rotate); nullptr stops accepting tokens. May be called at any time.
  void attach_tokens(std::shared_ptr<const TokenIssuer> tokens);
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
  std::shared_ptr<const TokenIssuer> tokens_;  // guarded by mu_ like table_
  uint64_t generation_ = 0;
  mutable std::atomic<int64_t> last_miss_refresh_us_{0};
  core::Counter* failures_ = nullptr;
};

}  // namespace outpost::auth
