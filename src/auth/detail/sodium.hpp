// libsodium initialisation for auth's source files; internal to auth/.
#pragma once

#include <sodium.h>

namespace outpost::auth::detail {

// Initialises libsodium once (sodium_init is itself idempotent and thread-safe); false if it
// failed, in which case no libsodium function may be used.
inline bool sodium_ready() {
  static const bool ok = sodium_init() >= 0;
  return ok;
}

}  // namespace outpost::auth::detail
