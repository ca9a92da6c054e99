// The database schema and its migrations, keyed by PRAGMA user_version.
#pragma once

#include "core/status.hpp"
#include "store/detail/sqlite.hpp"

namespace outpost::store::detail {

// The user_version this build creates and understands.
inline constexpr int kSchemaVersion = 6;

// Brings the database up to kSchemaVersion in one IMMEDIATE transaction, so two processes
// opening a fresh file at once cannot both migrate. Idempotent. A database whose version is
// newer than this build is refused with Status::unavailable and left untouched.
core::Status migrate(Db& db);

}  // namespace outpost::store::detail
