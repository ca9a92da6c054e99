// The store: readings, events, API keys and settings, persisted in SQLite
// (<data_dir>/outpost.db, WAL mode).
//
// Nothing outside store/ writes SQL; every other module talks to this interface, so a second
// backend (PostgreSQL, for several hubs) can replace the SQLite one without touching callers.
//
// Threads. A Store is safe to use from any number of threads at once. Writes go through one
// writer thread owned by the Store, which batches queued readings and events into transactions;
// reads run on a small bounded pool of read-only connections (WAL: readers never wait for the
// writer). Calls that wait for the writer (append_sync, append_event_sync, flush, the key and
// setting writes, enforce_retention) must not be made from a `done` callback (they run on the
// writer thread); they return Status::internal there instead of deadlocking.
//
// Processes. Other processes (the `outpost keys` CLI) may open the same data_dir at the same
// time to change keys and settings; SQLite's locking plus a busy timeout serialise them.
// Readings and events are meant to be written by one process only: readings_count() and
// events_count() count what this process saw committed.
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
#include "core/summary.hpp"
#include "core/time.hpp"

namespace outpost::store {

// Rows that may wait for the writer at once (queued or in the transaction being written); an
// event counts as one row. Over it, append() and append_event() answer Status::busy; a single
// append larger than it is Status::too_large.
inline constexpr size_t kMaxQueuedRows = 100'000;

// Retention of events by count: at most this many are kept, the oldest by (ts, id) go first.
// (A constant until StoreConfig has a field for it.)
inline constexpr size_t kMaxEvents = 100'000;

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

// Events matching every given filter. Every field has a default initializer (see ReadingQuery).
struct EventQuery {
  std::string kind{};                           // "" = all kinds
  std::string device{};                         // "" = all devices
  std::optional<core::TimePoint> from{}, to{};  // inclusive bounds; from > to is Status::invalid
  size_t limit = 50;                            // 0 gives an empty result
  bool newest = true;  // true: the newest `limit` matching events; false: the oldest.
                       // Results are ALWAYS ascending by (ts, id).
  // A cursor: only events that come before event `before_id` in (ts, id) order. To page back
  // from the newest, pass the id of the first (oldest) event of the previous page, keeping the
  // other fields; every matching event then comes exactly once. While timestamps follow arrival
  // order this is "ids < before_id"; it stays exact when a late event carries an older ts.
  // If that event is gone (retention deletes oldest first, so everything before it went too)
  // the result is empty; an id above every id ever assigned means no bound.
  std::optional<int64_t> before_id{};
};

// A device of the hub's registry as stored: its id and a JSON document the hub owns (the store
// does not parse it).
struct StoredDevice {
  std::string id;
  std::string doc;
  core::TimePoint updated;
};

// A local rule as stored: its id, its JSON document (edge/rules owns the shape; the store does
// not parse it), where it came from ("config": the configuration file, rewritten at every start;
// "api": POST/PUT /api/rules) and when it was last written.
struct StoredRule {
  std::string id;
  std::string doc;
  std::string source;
  core::TimePoint updated;
};

// Readings of one series grouped in buckets of `width` (aligned to the epoch): count, mean,
// min and max of the numeric readings in each.
struct Bucket {
  core::TimePoint start;
  uint64_t count = 0;
  double mean = 0, min = 0, max = 0;
};

// Which windowed summaries a query wants. Every field has a default initializer (see ReadingQuery).
struct SummaryQuery {
  std::string device{}, sensor{};               // "" = every device / every sensor
  std::optional<core::TimePoint> from{}, to{};  // inclusive bounds on period_start; from > to is invalid
  size_t limit = 100;                           // 0 gives an empty result
  bool newest = true;  // true: the newest `limit` matching summaries; false: the oldest.
                       // Results are ALWAYS ascending by (period_start, device, sensor).
  // Only summaries appended with `handoff` set and not marked handed off since (see
  // append_summaries); the other filters still apply.
  bool pending_handoff = false;
};

// A summary's key in the store.
struct SummaryKey {
  std::string device, sensor;
  core::TimePoint period_start{};
};

// ---- The outbox: messages waiting to leave the device, per destination (see upstream/).

// Where one message goes, with that destination's cap: at most max_messages messages and
// max_bytes bytes of bodies in its outbox (pending and dead letters together; 0: no cap).
struct OutboxTarget {
  std::string destination;
  size_t max_messages = 0;
  size_t max_bytes = 0;
  bool drop_oldest = true;  // over the cap: delete the oldest messages (true) or refuse this one
};

// A message to put in the outbox once for each of `targets`, under the same id.
struct OutboxPut {
  std::vector<OutboxTarget> targets{};
  std::string id{};            // idempotency key: a destination that holds it already keeps what it has
  std::string kind{};
  std::string content_type{};
  std::string body{};          // any bytes (a JSON document, a JPEG)
  core::TimePoint created{};
};

// What became of a put, per target (same order as OutboxPut::targets).
struct OutboxPutResult {
  bool stored = false;   // written to that destination's outbox
  bool refused = false;  // not written: over the cap under refuse_new, or larger than max_bytes
  bool duplicate = false;  // not written: that destination holds a message of this id already
  size_t dropped = 0;    // oldest messages deleted to make room (drop_oldest)
  std::string why;       // why it was refused
};
struct OutboxOutcome {
  std::vector<OutboxPutResult> targets;
};

struct OutboxMessage {
  int64_t seq = 0;  // delivery order: increases with every put, never reused
  std::string destination, id, kind, content_type, body;
  core::TimePoint created{};
  uint32_t attempts = 0;   // failed delivery attempts so far
  std::string last_error;  // of the latest failed attempt ("" when none)
  bool dead = false;       // in the dead letters: no longer delivered until retried
  std::optional<core::TimePoint> dead_at{};
};

// One destination's outbox. Totals are kept by triggers in the same transactions as the rows
// they count, so reading them costs one small row per destination.
struct OutboxStats {
  std::string destination;
  uint64_t pending = 0;        // messages waiting for delivery
  uint64_t bytes = 0;          // bytes of bodies, pending and dead letters
  uint64_t dead = 0;           // dead letters
  uint64_t delivered = 0;      // ever deleted as delivered (persists across restarts)
  uint64_t dropped = 0;        // ever deleted to make room under drop_oldest (persists)
  std::optional<core::TimePoint> oldest_pending{};  // `created` of the oldest pending message
};

// ---- Ingest from other Outposts (a hub's POST /api/ingest).

// One message an edge sent: its id and what it holds — readings, or an event (a summary is an
// event of kind "summary").
struct IngestItem {
  std::string id{};
  std::vector<core::Reading> readings{};
  std::optional<core::Event> event{};
};
struct IngestResult {
  size_t accepted = 0;    // items stored now
  size_t duplicates = 0;  // items whose (source, id) was already stored: skipped
  std::vector<bool> fresh;            // per item: stored now
  std::vector<core::Event> events;    // the events stored now, with their ids
};
// Ids of ingested messages are kept this long to recognise retries; an edge retries within
// its backoff (minutes), so a week is far more than needed.
inline constexpr std::chrono::hours kIngestIdsMaxAge{24 * 7};

struct Health {
  bool ok = false;     // open, writer running, last write transaction succeeded
  std::string detail;  // "ok", or what is wrong and since when
  uint64_t readings = 0;
  size_t queue_depth = 0;  // rows (readings and events) waiting for (or in) a write transaction
};

class Store {
 public:
  using Done = std::function<void(core::Status)>;
  using EventDone = std::function<void(core::Result<int64_t>)>;
  using SummariesDone = std::function<void(core::Result<std::vector<core::Summary>>)>;

  virtual ~Store() = default;

  // Opens or creates <cfg.data_dir>/outpost.db (creating data_dir), switches it to WAL, applies
  // schema migrations (PRAGMA user_version; a database newer than this build is refused with
  // Status::unavailable) and starts the writer thread. Invalid cfg values give Status::invalid.
  // `metrics` may be null; otherwise it must outlive the Store, and the Store registers
  // outpost_store_commit_seconds, outpost_store_rows_written_total,
  // outpost_store_events_written_total, outpost_store_write_errors_total, outpost_readings_stored,
  // outpost_events_stored and outpost_store_queue_depth in it (one Store per Registry).
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

  // Queues an event (its `id` is ignored) for the writer thread, in the same FIFO as readings,
  // and returns without waiting for I/O. Events share the readings' write transactions and their
  // guarantees: `done` (may be empty) runs exactly once, on the writer thread after COMMIT with
  // the id the event got, or with the error if the transaction failed. It runs on the caller's
  // thread, before append_event returns, with Status::invalid (empty device or kind), busy (queue
  // over kMaxQueuedRows) or unavailable (closed). The payload is stored as given (the store does
  // not parse JSON). Ids increase in commit order and are never reused.
  virtual void append_event(core::Event e, EventDone done) = 0;

  // append_event() and wait for its `done`: the committed id.
  core::Result<int64_t> append_event_sync(core::Event e);

  // Events matching `q`, ascending by (ts, id) (see EventQuery). Sees committed events only.
  virtual core::Result<std::vector<core::Event>> query_events(const EventQuery& q) const = 0;

  // Committed rows in the events table, kept up to date by the writer (counted once at open).
  virtual uint64_t events_count() const = 0;

  // Windowed summaries, keyed by (device, sensor, period_start). The FIRST summary stored under a
  // key stands: a later one with the same key is ignored (not an error), so a summary repeated
  // (a retry, a hub receiving an edge's batch twice, an aggregator restarted within a window it
  // had closed) is kept and handed on once.
  //
  // Queued for the writer thread behind what is already queued (so a summary commits after the
  // readings it was computed from were queued) and written in one transaction; returns without
  // waiting for I/O. `done` (may be empty) runs exactly once: on the writer thread after COMMIT
  // with the summaries that were new (in the order given; repeats left out), or with the error
  // if the transaction failed (nothing of it is stored). It runs on the caller's thread, before
  // append_summaries returns, with Status::invalid (an empty device or sensor, count 0,
  // period_end not after period_start) or unavailable (closed). Summaries are few (one per
  // sensor per window), so they are not held to kMaxQueuedRows.
  //
  // With `handoff` set, the new rows are marked pending handoff until mark_handed_off() names
  // them: a consumer that must see every summary exactly once (the upstream outbox) marks them
  // once it has committed them itself, and after a crash finds the ones it missed with
  // SummaryQuery::pending_handoff.
  virtual void append_summaries(std::vector<core::Summary> summaries, bool handoff, SummariesDone done) = 0;

  // Clears the pending-handoff mark of these summaries (unknown keys are ignored). Queued like
  // append_summaries; `done` (may be empty) runs once, on the writer thread after COMMIT or with
  // the error; on the caller's thread with unavailable when closed.
  virtual void mark_handed_off(std::vector<SummaryKey> keys, Done done) = 0;

  // Summaries matching `q`, ascending by (period_start, device, sensor). Sees committed rows only.
  virtual core::Result<std::vector<core::Summary>> query_summaries(const SummaryQuery& q) const = 0;

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

  // Settings: small named values (a password hash, a token secret, the house id) that live with
  // the data. Writes are synchronous like the key writes: committed on return, after what was
  // queued before. An empty name is Status::invalid.
  // The value stored under `name`; nullopt if there is none.
  virtual core::Result<std::optional<std::string>> get_setting(const std::string& name) const = 0;
  // Stores `value` under `name`, replacing any value there.
  virtual core::Status put_setting(const std::string& name, const std::string& value) = 0;
  // Stores `value` under `name` unless a value is already there, in one transaction, so of two
  // processes (or threads) creating the same secret at once one wins and both learn its value:
  // on success *current (if not null) holds the value now stored — `value` or the one found.
  // On failure *current is left alone.
  virtual core::Status put_setting_if_absent(const std::string& name, const std::string& value,
                                             std::string* current) = 0;

  // Readings of q's series in buckets of `width` (> 0), ascending by start; q.limit counts
  // buckets (the newest ones when q.newest). Non-numeric readings and NaNs are left out; a
  // bucket with none has no entry.
  virtual core::Result<std::vector<Bucket>> query_buckets(const ReadingQuery& q,
                                                          std::chrono::microseconds width) const = 0;

  // Devices of the hub: synchronous upsert by id (committed on return, after what was queued
  // before), and every stored device. An empty id is Status::invalid.
  virtual core::Status put_devices(const std::vector<StoredDevice>& devices) = 0;
  virtual core::Result<std::vector<StoredDevice>> load_devices() const = 0;

  // Rules: synchronous like the device writes (committed on return, after what was queued
  // before). put_rule inserts or replaces by id (invalid: an empty id, or a source other than
  // "config" or "api"). delete_rule: not_found when there is none. replace_config_rules deletes
  // every rule whose source is "config" and puts `rules` (each with source "config", replacing
  // an "api" rule of the same id), in one transaction. load_rules: all of them, by id.
  virtual core::Status put_rule(const StoredRule& rule) = 0;
  virtual core::Status delete_rule(const std::string& id) = 0;
  virtual core::Status replace_config_rules(const std::vector<StoredRule>& rules) = 0;
  virtual core::Result<std::vector<StoredRule>> load_rules() const = 0;

  // ---- Outbox (upstream/ is its only user).
  using OutboxDone = std::function<void(core::Result<OutboxOutcome>)>;
  using EventOutboxDone = std::function<void(core::Result<int64_t>, OutboxOutcome)>;

  // Queues `put` for the writer thread (same FIFO and same guarantees as append_event): `done`
  // runs exactly once, on the writer thread after COMMIT, with what became of each target, or
  // with the error if the transaction failed (then nothing was written). On the caller's thread
  // before returning: invalid (no target, an empty id, destination or kind), busy (queue full),
  // unavailable (closed). Each target's cap is checked and applied (drop_oldest deletes the
  // oldest messages of that destination, refuse_new leaves that target out) in the same
  // transaction as the insert. The id is an idempotency key: a target that holds a message of
  // that id already is left as it is (its result says `duplicate`).
  virtual void outbox_put(OutboxPut put, OutboxDone done) = 0;

  // append_event() and outbox_put() in ONE transaction: the event is stored, and the outbox
  // message (built by the caller from the event) with it, so a crash cannot keep one without
  // the other. A refused target does not refuse the event: `done` gets the event's id and the
  // outcome per target. On failure neither was written and the outcome is empty.
  virtual void append_event_outbox(core::Event e, OutboxPut put, EventOutboxDone done) = 0;

  // The oldest `limit` pending messages of `destination`, oldest first. Committed rows only.
  virtual core::Result<std::vector<OutboxMessage>> outbox_pending(const std::string& destination,
                                                                   size_t limit) const = 0;
  // Deletes these messages of `destination` (delivered: counted in `delivered`). Ids that are
  // not there are ignored. Synchronous: committed on return.
  virtual core::Status outbox_delivered(const std::string& destination, const std::vector<std::string>& ids) = 0;
  // A failed delivery attempt of these messages: attempts + 1, last_error = error. Synchronous.
  virtual core::Status outbox_failed(const std::string& destination, const std::vector<std::string>& ids,
                                     const std::string& error) = 0;
  // Moves one message to the dead letters with `error`. not_found if it is not pending.
  virtual core::Status outbox_kill(const std::string& destination, const std::string& id, const std::string& error) = 0;
  // Dead letters, by seq ascending, after `after_seq` (0: from the first); "" = every destination.
  virtual core::Result<std::vector<OutboxMessage>> outbox_dead(const std::string& destination, int64_t after_seq,
                                                               size_t limit) const = 0;
  // Puts dead letters back in line (at their place in the order, attempts reset): the one with
  // that id, or every dead letter of the destination when `id` is empty. Returns how many;
  // not_found when `id` names no dead letter.
  virtual core::Result<size_t> outbox_retry_dead(const std::string& destination, const std::string& id) = 0;
  // Deletes dead letters: the one with that id, or all of the destination when `id` is empty.
  virtual core::Result<size_t> outbox_delete_dead(const std::string& destination, const std::string& id) = 0;
  // Every destination that has or had messages, by name.
  virtual core::Result<std::vector<OutboxStats>> outbox_stats() const = 0;

  // ---- Ingest (a hub's POST /api/ingest).

  // Stores what `source` sent in ONE transaction, after what is already queued: items whose
  // (source, id) is already known are skipped (a retry after a lost answer stores nothing
  // twice); the others' readings and events are written and their ids remembered (for
  // kIngestIdsMaxAge after `received`). Committed on return. Readings follow append()'s rules
  // (same series and time: replaced); events get ids like append_event().
  // Invalid for an empty source or id, a reading without device or sensor, an event without
  // device or kind. Ids older than kIngestIdsMaxAge are forgotten a chunk at a time as batches
  // come.
  virtual core::Result<IngestResult> ingest(const std::string& source, std::vector<IngestItem> items,
                                            core::TimePoint received) = 0;

  // Returns when everything queued before the call has been committed or has failed (failures
  // are reported to the `done` callbacks; flush itself only fails if the store is closed).
  virtual core::Status flush() = 0;

  // Retention runs by itself on the writer thread (5 s after open, then every 60 s, and after
  // every 100k inserted rows) in bounded chunks: per series, rows older than
  // cfg.readings_max_age and rows beyond cfg.readings_max_per_series (oldest first) are deleted;
  // 0 disables either rule. Events older than cfg.readings_max_age (0: no age limit) and beyond
  // kMaxEvents in all are deleted too, oldest by (ts, id) first, and summaries whose
  // period_start is older than cfg.summaries_max_age (0: kept forever). Every process that keeps the
  // store open long enough applies its own cfg, so processes sharing a data_dir should share the
  // StoreConfig.
  // This runs a whole pass now, after what is already queued, and returns when it is done.
  // (Added to the sketched API for tests and for a maintenance command.)
  virtual core::Status enforce_retention() = 0;

  virtual Health health() const = 0;

  // Drains the queue (every queued append and event committed or failed and its `done` called),
  // stops the writer and closes all connections. Idempotent; the destructor calls it. Later calls
  // fail with Status::unavailable (append, append_event: through `done`).
  virtual void close() = 0;

  // Test hook: while on, every write transaction is rolled back and fails with Status::io.
  virtual void TEST_fail_writes(bool on) = 0;
};

}  // namespace outpost::store
