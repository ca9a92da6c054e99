// The store: readings and API keys, persisted in SQLite (<data_dir>/outpost.db, WAL mode).
//
// Nothing outside store/ writes SQL; every other module talks to this interface, so a second
// backend (PostgreSQL, for several hubs) can replace the SQLite one without touching callers.
//
// Threads. A Store is safe to use from any number of threads at once. Writes go through one
// writer thread owned by the Store, which batches queued readings into transactions; reads run
// on a small bounded pool of read-only connections (WAL: readers never wait for the writer).
// Calls that wait for the writer (append_sync, flush, the key writes, enforce_retention) must
// not be made from a `done` callback (they run on the writer thread); they return
// Status::internal there instead of deadlocking.
//
// Processes. Other processes (the `outpost keys` CLI) may open the same data_dir at the same
// time to change keys; SQLite's locking plus a busy timeout serialise them. Readings are meant to
// be written by one process only: readings_count() counts what this process saw committed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/metrics.hpp"
#include "core/model.hpp"
#include "core/status.hpp"
#include "core/time.hpp"

namespace outpost::store {

// Rows that may wait for the writer at once (queued or in the transaction being written).
// Over it, append() answers Status::busy; a single append larger than it is Status::too_large.
inline constexpr size_t kMaxQueuedRows = 100'000;

struct ApiKey {
  std::string id;     // short public id (part of the key's visible prefix), unique
  std::string name;   // human label; need not be unique
  std::string scope;  // "read" | "control" | "admin"
  std::string hash;   // 32 raw bytes (SHA-256 of the whole key); never the key itself
  core::TimePoint created;
  std::optional<core::TimePoint> revoked;  // set once; a revoked key stays listed
};

// Every field has a default initializer, so designated initializers ({.device = .., ...}) may
// leave any of them out under -Wextra.
struct ReadingQuery {
  std::string device{}, sensor{};
  std::optional<core::TimePoint> from{}, to{};  // inclusive bounds; from > to is Status::invalid
  size_t limit = 50;                            // 0 gives an empty result
  bool newest = true;  // true: the newest `limit` rows in range; false: the oldest.
                       // Results are ALWAYS in ascending time.
};

struct Health {
  bool ok = false;     // open, writer running, last write transaction succeeded
  std::string detail;  // "ok", or what is wrong and since when
  uint64_t readings = 0;
  size_t queue_depth = 0;  // rows waiting for (or in) a write transaction
};

class Store {
 public:
  using Done = std::function<void(core::Status)>;

  virtual ~Store() = default;

  // Opens or creates <cfg.data_dir>/outpost.db (creating data_dir), switches it to WAL, applies
  // schema migrations (PRAGMA user_version; a database newer than this build is refused with
  // Status::unavailable) and starts the writer thread. Invalid cfg values give Status::invalid.
  // `metrics` may be null; otherwise it must outlive the Store, and the Store registers
  // outpost_store_commit_seconds, outpost_store_rows_written_total,
  // outpost_store_write_errors_total, outpost_readings_stored and outpost_store_queue_depth in it
  // (one Store per Registry).
  static core::Result<std::unique_ptr<Store>> open(const config::StoreConfig& cfg,
                                                   core::Registry* metrics);

  // Queues readings for the writer thread and returns without waiting for I/O.
  //
  // `done` (may be empty) runs exactly once: on the writer thread after the transaction holding
  // the last of these readings has COMMITTED (Status::ok), or with the error if a transaction
  // failed. It runs on the caller's thread, before append returns, when the readings are refused
  // outright: Status::busy (queue over kMaxQueuedRows), too_large, or unavailable (closed).
  //
  // Readings are committed in batches of at most cfg.batch_max rows; an append larger than that
  // spans several transactions, so a failure may leave part of it committed (re-appending is
  // harmless, see below). Within a series (device, sensor) a timestamp is a key: a reading with
  // the same (device, sensor, ts) as a stored or earlier-queued one replaces it — the later
  // one wins. The unit is kept per series: the last non-empty unit seen wins.
  // A NaN value is stored and read back as NaN.
  virtual void append(std::vector<core::Reading> readings, Done done) = 0;

  // append() and wait for its `done`.
  core::Status append_sync(std::vector<core::Reading> readings);

  // Readings of one series, ascending by time (see ReadingQuery). An unknown series gives an
  // empty vector. Sees committed rows only.
  virtual core::Result<std::vector<core::Reading>> query(const ReadingQuery& q) const = 0;

  // Committed rows in the readings table, kept up to date by the writer (no COUNT(*) per call).
  virtual uint64_t readings_count() const = 0;

  // API keys: synchronous, committed on return (they queue behind readings already queued).
  // insert_key: Status::conflict if the id exists; invalid for an empty id, an unknown scope
  // or a hash that is not 32 bytes.
  virtual core::Status insert_key(const ApiKey& k) = 0;
  // The key with that id, revoked or not; nullopt if there is none.
  virtual core::Result<std::optional<ApiKey>> find_key(const std::string& id) const = 0;
  // All keys, revoked ones included, oldest first.
  virtual core::Result<std::vector<ApiKey>> list_keys() const = 0;
  // Revokes the key whose id is `id_or_name`, or else the one active key with that name.
  // not_found when nothing matches and when the match is already revoked (the message says
  // which); conflict when the name matches several active keys (revoke those by id).
  virtual core::Status revoke_key(const std::string& id_or_name) = 0;
  // A number that changes whenever the keys table changes, also when another process changed
  // it in the same database file (a trigger bumps it in the same transaction). One indexed
  // read; fine to call every second.
  virtual core::Result<uint64_t> keys_generation() const = 0;

  // Returns when everything queued before the call has been committed or has failed (failures
  // are reported to the `done` callbacks; flush itself only fails if the store is closed).
  virtual core::Status flush() = 0;

  // Retention runs by itself on the writer thread (5 s after open, then every 60 s, and after
  // every 100k inserted rows) in bounded chunks: per series, rows older than
  // cfg.readings_max_age and rows beyond cfg.readings_max_per_series (oldest first) are deleted;
  // 0 disables either rule. Every process that keeps the store open long enough applies its own
  // cfg, so processes sharing a data_dir should share the StoreConfig.
  // This runs a whole pass now, after what is already queued, and returns when it is done.
  // (Added to the sketched API for tests and for a maintenance command.)
  virtual core::Status enforce_retention() = 0;

  virtual Health health() const = 0;

  // Drains the queue (every queued append committed or failed and its `done` called), stops the
  // writer and closes all connections. Idempotent; the destructor calls it. Later calls fail
  // with Status::unavailable (append: through `done`).
  virtual void close() = 0;

  // Test hook: while on, every write transaction is rolled back and fails with Status::io.
  virtual void TEST_fail_writes(bool on) = 0;
};

}  // namespace outpost::store
