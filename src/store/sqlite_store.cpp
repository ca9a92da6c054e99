// The SQLite implementation of Store.
//
// One writer connection, used only by the writer thread (and by open() before that thread
// starts); a bounded pool of read-only connections for queries and key reads. Events join
// readings in the writer's batches; key and setting writes and flush() are tasks in the same
// FIFO queue, so they are ordered with them and SQLite never sees two writers from this process.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <future>
#include <iterator>
#include <limits>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>

#include "store/detail/schema.hpp"
#include "store/detail/sqlite.hpp"
#include "store/detail/writer_thread.hpp"
#include "store/store.hpp"

namespace outpost::store {

namespace {

using core::Result;
using core::Status;
using detail::Db;
using detail::StmtLease;
using detail::Txn;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kDbFile = "outpost.db";
// Long enough to ride out the CLI's key transaction or a checkpoint, short enough that a
// stuck lock surfaces as an error instead of a hang.
constexpr std::chrono::milliseconds kBusyTimeout{5'000};
// Read connections. A query holds one only while it steps; more would mostly add page caches.
constexpr size_t kMaxReaders = 4;
constexpr std::chrono::seconds kRetentionInterval{60};
// Not at once: start-up has its own burst of work, and a short-lived process on the same file
// (the `outpost keys` CLI) should come and go without deleting anything.
constexpr std::chrono::seconds kFirstRetentionDelay{5};
constexpr uint64_t kRetentionEveryRows = 100'000;
// One retention transaction deletes at most this many rows and visits at most this many
// series, so it holds the write lock for milliseconds and ingest waits at most one chunk.
constexpr int64_t kRetentionChunkRows = 5'000;
constexpr size_t kRetentionChunkSeries = 500;
constexpr int64_t kMinTs = std::numeric_limits<int64_t>::min();
constexpr int64_t kMaxTs = std::numeric_limits<int64_t>::max();
constexpr int64_t kMinId = std::numeric_limits<int64_t>::min();
constexpr int64_t kMaxId = std::numeric_limits<int64_t>::max();

// Writer statements.
constexpr const char* kLoadSeries = "SELECT id, device, sensor, unit, row_count FROM series";
constexpr const char* kFindSeries =
    "SELECT id, unit, row_count FROM series WHERE device = ?1 AND sensor = ?2";
constexpr const char* kInsertSeries =
    "INSERT INTO series (device, sensor, unit) VALUES (?1, ?2, ?3)";
constexpr const char* kSetUnit = "UPDATE series SET unit = ?2 WHERE id = ?1";
constexpr const char* kAddRowCount = "UPDATE series SET row_count = row_count + ?2 WHERE id = ?1";
// INSERT OR IGNORE, then UPDATE for a duplicate: the later reading wins exactly as with INSERT
// OR REPLACE, but changes() tells a new row from a replaced one, which keeps row_count exact.
constexpr const char* kInsertReading =
    "INSERT OR IGNORE INTO readings (series, ts, value, text) VALUES (?1, ?2, ?3, ?4)";
constexpr const char* kReplaceReading =
    "UPDATE readings SET value = ?3, text = ?4 WHERE series = ?1 AND ts = ?2";
// Retention.
constexpr const char* kNthOldestBefore =
    "SELECT ts FROM readings WHERE series = ?1 AND ts < ?2 ORDER BY ts LIMIT 1 OFFSET ?3";
constexpr const char* kCountSeries = "SELECT count(*) FROM readings WHERE series = ?1";
constexpr const char* kDeleteBefore = "DELETE FROM readings WHERE series = ?1 AND ts < ?2";
// Keys.
constexpr const char* kInsertKey =
    "INSERT INTO keys (id, name, scope, hash, created, revoked) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
constexpr const char* kKeyById = "SELECT revoked FROM keys WHERE id = ?1";
constexpr const char* kKeysByName = "SELECT id, revoked FROM keys WHERE name = ?1";
constexpr const char* kRevokeKey = "UPDATE keys SET revoked = ?2 WHERE id = ?1 AND revoked IS NULL";
// Events. A position in the events' (ts, id) order is a pair; "(ts, id) < (?1, ?2)" is spelled
// "ts <= ?1 AND NOT (ts = ?1 AND id >= ?2)" so that it stays a range on the ts index (an OR
// could tempt the planner into a union that loses the index order).
constexpr const char* kInsertEvent =
    "INSERT INTO events (ts, device, kind, payload) VALUES (?1, ?2, ?3, ?4)";
constexpr const char* kCountEvents = "SELECT count(*) FROM events";
constexpr const char* kNthOldestEvent =
    "SELECT ts, id FROM events WHERE ts <= ?1 ORDER BY ts, id LIMIT 1 OFFSET ?2";
constexpr const char* kDeleteEventsBefore =
    "DELETE FROM events WHERE ts <= ?1 AND NOT (ts = ?1 AND id >= ?2)";
// Summaries. ON CONFLICT of the key only (not OR IGNORE, which would also swallow a NOT NULL
// violation): the first summary under a key stands.
constexpr const char* kInsertSummary =
    "INSERT INTO summaries (device, sensor, period_start, period_end, unit, count, mean, min, max, stdev, first,"
    " last, handoff) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    " ON CONFLICT (device, sensor, period_start) DO NOTHING";
constexpr const char* kMarkHandedOff =
    "UPDATE summaries SET handoff = 0 WHERE device = ?1 AND sensor = ?2 AND period_start = ?3 AND handoff = 1";
// A bounded DELETE without the DELETE ... LIMIT compile-time option: the oldest ?2 rows before ?1.
constexpr const char* kDeleteOldSummaries =
    "DELETE FROM summaries WHERE rowid IN"
    " (SELECT rowid FROM summaries WHERE period_start < ?1 ORDER BY period_start LIMIT ?2)";
// Outbox (writer).
constexpr const char* kOutboxTotals = "SELECT messages, bytes FROM outbox_totals WHERE destination = ?1";
constexpr const char* kOutboxOldest =
    "SELECT seq, length(body) FROM outbox WHERE destination = ?1 AND dead = ?2 ORDER BY seq LIMIT 1";
constexpr const char* kOutboxDeleteSeq = "DELETE FROM outbox WHERE seq = ?1";
constexpr const char* kOutboxHas = "SELECT 1 FROM outbox WHERE destination = ?1 AND id = ?2";
constexpr const char* kOutboxInsert =
    "INSERT INTO outbox (destination, id, kind, content_type, body, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
constexpr const char* kOutboxAddDropped = "UPDATE outbox_totals SET dropped = dropped + ?2 WHERE destination = ?1";
constexpr const char* kOutboxAddDelivered =
    "UPDATE outbox_totals SET delivered = delivered + ?2 WHERE destination = ?1";
constexpr const char* kOutboxDelete = "DELETE FROM outbox WHERE destination = ?1 AND id = ?2";
constexpr const char* kOutboxFailed =
    "UPDATE outbox SET attempts = attempts + 1, last_error = ?3 WHERE destination = ?1 AND id = ?2";
constexpr const char* kOutboxKill =
    "UPDATE outbox SET dead = 1, dead_at = ?3, last_error = ?4, attempts = attempts + 1"
    " WHERE destination = ?1 AND id = ?2 AND dead = 0";
constexpr const char* kOutboxRetryOne =
    "UPDATE outbox SET dead = 0, dead_at = NULL, attempts = 0 WHERE destination = ?1 AND id = ?2 AND dead = 1";
constexpr const char* kOutboxRetryAll =
    "UPDATE outbox SET dead = 0, dead_at = NULL, attempts = 0 WHERE destination = ?1 AND dead = 1";
constexpr const char* kOutboxDeleteDeadOne = "DELETE FROM outbox WHERE destination = ?1 AND id = ?2 AND dead = 1";
constexpr const char* kOutboxDeleteDeadAll = "DELETE FROM outbox WHERE destination = ?1 AND dead = 1";
// Outbox (readers).
constexpr const char* kOutboxPending =
    "SELECT seq, destination, id, kind, content_type, body, created, attempts, last_error, dead, dead_at"
    " FROM outbox WHERE destination = ?1 AND dead = 0 ORDER BY seq LIMIT ?2";
constexpr const char* kOutboxDeadOf =
    "SELECT seq, destination, id, kind, content_type, body, created, attempts, last_error, dead, dead_at"
    " FROM outbox WHERE destination = ?1 AND dead = 1 AND seq > ?2 ORDER BY seq LIMIT ?3";
constexpr const char* kOutboxDeadAll =
    "SELECT seq, destination, id, kind, content_type, body, created, attempts, last_error, dead, dead_at"
    " FROM outbox WHERE dead = 1 AND seq > ?2 ORDER BY seq LIMIT ?3";
constexpr const char* kOutboxStats =
    "SELECT destination, messages, bytes, dead, delivered, dropped FROM outbox_totals ORDER BY destination";
constexpr const char* kOutboxOldestPending =
    "SELECT created FROM outbox WHERE destination = ?1 AND dead = 0 ORDER BY seq LIMIT 1";
// Ingest.
constexpr const char* kIngestedInsert = "INSERT OR IGNORE INTO ingested (source, id, received) VALUES (?1, ?2, ?3)";
// A chunk at a time: row values select a bounded set without DELETE ... LIMIT.
constexpr const char* kIngestedExpire =
    "DELETE FROM ingested WHERE (source, id) IN"
    " (SELECT source, id FROM ingested WHERE received < ?1 ORDER BY received LIMIT 1000)";
// Settings.
constexpr const char* kPutSetting = "INSERT OR REPLACE INTO settings (name, value) VALUES (?1, ?2)";
constexpr const char* kAddSetting = "INSERT OR IGNORE INTO settings (name, value) VALUES (?1, ?2)";
constexpr const char* kGetSetting = "SELECT value FROM settings WHERE name = ?1";

// Reader statements. Two steps rather than a JOIN: with statistics on a small series table the
// planner may scan series first and then sort the whole time range to apply LIMIT; by series id
// the rows come straight off the clustered (series, ts) key, in order, LIMIT rows and no more.
constexpr const char* kSeriesByName =
    "SELECT id, unit FROM series WHERE device = ?1 AND sensor = ?2";
constexpr const char* kQueryNewest =
    "SELECT ts, value, text FROM readings WHERE series = ?1 AND ts BETWEEN ?2 AND ?3"
    " ORDER BY ts DESC LIMIT ?4";
constexpr const char* kQueryOldest =
    "SELECT ts, value, text FROM readings WHERE series = ?1 AND ts BETWEEN ?2 AND ?3"
    " ORDER BY ts ASC LIMIT ?4";
constexpr const char* kQueryBucketsNewest =
    "SELECT (ts / ?5) * ?5 AS b, count(value), avg(value), min(value), max(value) FROM readings"
    " WHERE series = ?1 AND ts BETWEEN ?2 AND ?3 AND value IS NOT NULL AND value = value"
    " GROUP BY b ORDER BY b DESC LIMIT ?4";
constexpr const char* kQueryBucketsOldest =
    "SELECT (ts / ?5) * ?5 AS b, count(value), avg(value), min(value), max(value) FROM readings"
    " WHERE series = ?1 AND ts BETWEEN ?2 AND ?3 AND value IS NOT NULL AND value = value"
    " GROUP BY b ORDER BY b ASC LIMIT ?4";
constexpr const char* kPutDevice =
    "INSERT INTO devices (id, doc, updated) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated = excluded.updated";
constexpr const char* kLoadDevices = "SELECT id, doc, updated FROM devices ORDER BY id";
constexpr const char* kPutRule =
    "INSERT INTO rules (id, doc, source, updated) VALUES (?1, ?2, ?3, ?4)"
    " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, source = excluded.source, updated = excluded.updated";
constexpr const char* kDeleteRule = "DELETE FROM rules WHERE id = ?1";
constexpr const char* kDeleteConfigRules = "DELETE FROM rules WHERE source = 'config'";
constexpr const char* kLoadRules = "SELECT id, doc, source, updated FROM rules ORDER BY id";
constexpr const char* kFindKey =
    "SELECT id, name, scope, hash, created, revoked FROM keys WHERE id = ?1";
constexpr const char* kListKeys =
    "SELECT id, name, scope, hash, created, revoked FROM keys ORDER BY created, id";
constexpr const char* kKeysGeneration = "SELECT value FROM meta WHERE name = 'keys_generation'";
constexpr const char* kEventTs = "SELECT ts FROM events WHERE id = ?1";
constexpr const char* kEventsSeq = "SELECT seq FROM sqlite_sequence WHERE name = 'events'";
// Event queries: one statement per filter combination, because "?1 = '' OR kind = ?1" would keep
// the planner off the indexes. ?3..?4 is the time range, already narrowed to the cursor's ts, and
// ?5 the cursor's id (kMaxId: no cursor). Built once; the strings live as long as the program,
// so their c_str() may key the statement cache.
const char* event_query_sql(bool by_kind, bool by_device, bool newest) {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t;
    for (int i = 0; i < 8; ++i) {
      t.push_back(fmt::format(
          "SELECT id, ts, device, kind, payload FROM events WHERE {}{}"
          "ts BETWEEN ?3 AND ?4 AND NOT (ts = ?4 AND id >= ?5) ORDER BY ts {}, id {} LIMIT ?6",
          i & 4 ? "kind = ?1 AND " : "", i & 2 ? "device = ?2 AND " : "", i & 1 ? "DESC" : "ASC",
          i & 1 ? "DESC" : "ASC"));
    }
    return t;
  }();
  return table[(by_kind ? 4 : 0) + (by_device ? 2 : 0) + (newest ? 1 : 0)].c_str();
}

// Summary queries, like the events': one statement per filter combination so each can use its
// index (the primary key for one series, summaries_by_device for one device, summaries_by_start
// for all, the partial index for those pending handoff). ?1 device, ?2 sensor, ?3..?4 the range
// of period_start, ?5 the limit. An ORDER BY term fixed by an equality costs the planner nothing.
const char* summary_query_sql(bool by_device, bool by_sensor, bool newest, bool pending) {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t;
    for (int i = 0; i < 16; ++i) {
      const char* dir = i & 2 ? "DESC" : "ASC";
      t.push_back(fmt::format(
          "SELECT device, sensor, period_start, period_end, unit, count, mean, min, max, stdev, first, last"
          " FROM summaries WHERE {}{}{}period_start BETWEEN ?3 AND ?4"
          " ORDER BY period_start {}, device {}, sensor {} LIMIT ?5",
          i & 8 ? "device = ?1 AND " : "", i & 4 ? "sensor = ?2 AND " : "", i & 1 ? "handoff = 1 AND " : "", dir,
          dir, dir));
    }
    return t;
  }();
  return table[(by_device ? 8 : 0) + (by_sensor ? 4 : 0) + (newest ? 2 : 0) + (pending ? 1 : 0)].c_str();
}

Status check_summary(const core::Summary& s) {
  if (s.device.empty() || s.sensor.empty()) return Status::invalid("a summary needs a device and a sensor");
  if (s.count == 0) return Status::invalid("a summary needs a count of at least 1");
  if (s.period_end <= s.period_start) return Status::invalid("a summary's period_end must be after its period_start");
  for (double v : {s.mean, s.min, s.max, s.stdev, s.first, s.last}) {
    if (!std::isfinite(v)) return Status::invalid("a summary's statistics must be finite numbers");
  }
  return Status::ok();
}

// Runs a `done` callback on the writer thread: one that throws must not take the writer down.
template <typename Fn, typename Arg>
void call_done(Fn& fn, Arg&& arg) {
  if (!fn) return;
  try {
    fn(std::forward<Arg>(arg));
  } catch (const std::exception& e) {
    spdlog::error("store: a done callback threw: {}", e.what());
  } catch (...) {
    spdlog::error("store: a done callback threw");
  }
}

// Where a paging cursor stands: the ts of event `id`; kMaxTs for an id above every id ever
// assigned (it would come after every event there is); nullopt when that event is gone.
Result<std::optional<int64_t>> event_ts(Db& db, int64_t id) {
  {
    auto st = db.prepare(kEventTs);
    if (!st) return st.status();
    (*st)->bind(1, id);
    int rc = (*st)->step();
    if (rc == SQLITE_ROW) return std::optional<int64_t>((*st)->int64(0));
    if (rc != SQLITE_DONE) return db.error(rc, "query events cursor");
  }
  auto st = db.prepare(kEventsSeq);
  if (!st) return st.status();
  int rc = (*st)->step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db.error(rc, "query events cursor");
  int64_t last = rc == SQLITE_ROW ? (*st)->int64(0) : 0;  // no row: no event yet
  if (id > last) return std::optional<int64_t>(kMaxTs);
  return std::optional<int64_t>();
}

OutboxMessage outbox_from_row(const detail::Stmt& s) {
  OutboxMessage m;
  m.seq = s.int64(0);
  m.destination = s.text(1);
  m.id = s.text(2);
  m.kind = s.text(3);
  m.content_type = s.text(4);
  m.body = s.blob(5);
  m.created = core::from_micros(s.int64(6));
  m.attempts = static_cast<uint32_t>(s.int64(7));
  m.last_error = s.text(8);
  m.dead = s.int64(9) != 0;
  if (!s.is_null(10)) m.dead_at = core::from_micros(s.int64(10));
  return m;
}

Status check_put(const OutboxPut& p) {
  if (p.targets.empty()) return Status::invalid("an outbox message needs at least one destination");
  if (p.id.empty() || p.kind.empty()) return Status::invalid("an outbox message needs an id and a kind");
  for (const auto& t : p.targets)
    if (t.destination.empty()) return Status::invalid("an outbox destination needs a name");
  return Status::ok();
}

bool valid_scope(const std::string& s) { return s == "read" || s == "control" || s == "admin"; }

// Errors that say the storage is unwell (as opposed to "that key exists"): these are logged,
// counted and shown in health().
bool is_storage_failure(const Status& s) {
  switch (s.code()) {
    case core::Code::kIo:
    case core::Code::kBusy:
    case core::Code::kUnavailable:
    case core::Code::kInternal:
      return true;
    default:
      return false;
  }
}

ApiKey key_from_row(const detail::Stmt& s) {
  ApiKey k;
  k.id = s.text(0);
  k.name = s.text(1);
  k.scope = s.text(2);
  k.hash = s.blob(3);
  k.created = core::from_micros(s.int64(4));
  if (!s.is_null(5)) k.revoked = core::from_micros(s.int64(5));
  return k;
}

// Read-only connections, opened on demand up to kMaxReaders, handed out one caller at a time.
class ReaderPool {
 public:
  class Lease {
   public:
    Lease(ReaderPool* pool, std::unique_ptr<Db> db) : pool_(pool), db_(std::move(db)) {}
    Lease(Lease&& o) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (db_) pool_->release(std::move(db_));
    }
    Db* operator->() const { return db_.get(); }
    Db& operator*() const { return *db_; }

   private:
    ReaderPool* pool_;
    std::unique_ptr<Db> db_;
  };

  explicit ReaderPool(std::string path) : path_(std::move(path)) {}

  // Blocks while all kMaxReaders connections are leased. Status::unavailable once closed.
  Result<Lease> acquire() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return closed_ || !idle_.empty() || open_ < kMaxReaders; });
    if (closed_) return Status::unavailable("store closed");
    if (!idle_.empty()) {
      auto db = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(db));
    }
    ++open_;
    lk.unlock();  // opening reads the file; other callers need not wait for that
    auto db = Db::open(path_, Db::Mode::kReadOnly, kBusyTimeout);
    if (!db) {
      lk.lock();
      --open_;
      cv_.notify_one();
      return db.status();
    }
    return Lease(this, std::move(*db));
  }

  // Waits for leased connections to come back, then closes them all.
  void close() {
    std::vector<std::unique_ptr<Db>> idle;
    {
      std::unique_lock lk(mu_);
      closed_ = true;
      idle.swap(idle_);
      open_ -= idle.size();
      cv_.notify_all();
      cv_.wait(lk, [&] { return open_ == 0; });
    }
  }

 private:
  void release(std::unique_ptr<Db> db) {
    std::lock_guard lk(mu_);
    if (closed_) {
      db.reset();
      --open_;
      cv_.notify_all();
    } else {
      idle_.push_back(std::move(db));
      cv_.notify_one();
    }
  }

  const std::string path_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Db>> idle_;
  size_t open_ = 0;  // idle + leased + being opened
  bool closed_ = false;
};

// One (device, sensor) as the writer knows it.
struct Series {
  int64_t id = 0;
  std::string unit;
  int64_t rows = 0;      // committed rows (mirrors series.row_count)
  int64_t pending = 0;   // change to `rows` in the open transaction
  bool touched = false;  // in touched_ for the open transaction
};

struct SeriesKey {
  std::string device, sensor;
};
struct SeriesKeyView {
  SeriesKeyView(std::string_view d, std::string_view s) : device(d), sensor(s) {}
  SeriesKeyView(const SeriesKey& k) : device(k.device), sensor(k.sensor) {}  // NOLINT
  std::string_view device, sensor;
};
// Transparent, so the per-row lookup needs no temporary strings.
struct SeriesHash {
  using is_transparent = void;
  size_t operator()(SeriesKeyView k) const {
    size_t h = std::hash<std::string_view>()(k.device);
    return h ^
           (std::hash<std::string_view>()(k.sensor) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  }
};
struct SeriesEq {
  using is_transparent = void;
  bool operator()(SeriesKeyView a, SeriesKeyView b) const {
    return a.device == b.device && a.sensor == b.sensor;
  }
};

// What the metrics gauges read. Shared with the Registry's callbacks, so rendering stays safe
// after the Store is gone.
struct Shared {
  std::atomic<uint64_t> readings{0};
  std::atomic<uint64_t> events{0};
  std::atomic<size_t> queued{0};
};

class SqliteStore final : public Store {
 public:
  SqliteStore(const config::StoreConfig& cfg, const std::string& path, std::unique_ptr<Db> db,
              core::Registry* metrics)
      : cfg_(cfg),
        db_(std::move(db)),
        readers_(path),
        shared_(std::make_shared<Shared>()),
        local_commit_seconds_(core::latency_buckets()) {
    commit_seconds_ = &local_commit_seconds_;
    rows_written_ = &local_rows_written_;
    events_written_ = &local_events_written_;
    write_errors_ = &local_write_errors_;
    if (metrics) {
      commit_seconds_ = &metrics->histogram(
          "outpost_store_commit_seconds",
          "Duration of readings and events write transactions, BEGIN to COMMIT.",
          core::latency_buckets());
      rows_written_ =
          &metrics->counter("outpost_store_rows_written_total", "Readings committed to the store.");
      events_written_ =
          &metrics->counter("outpost_store_events_written_total", "Events committed to the store.");
      write_errors_ = &metrics->counter("outpost_store_write_errors_total",
                                        "Store write transactions that failed.");
      auto shared = shared_;
      metrics->gauge_fn("outpost_readings_stored", "Readings currently stored.",
                        [shared] { return static_cast<double>(shared->readings.load()); });
      metrics->gauge_fn("outpost_events_stored", "Events currently stored.",
                        [shared] { return static_cast<double>(shared->events.load()); });
      metrics->gauge_fn("outpost_store_queue_depth",
                        "Readings and events waiting for (or in) a store write transaction.",
                        [shared] { return static_cast<double>(shared->queued.load()); });
    }
  }

  ~SqliteStore() override { close(); }

  // Loads the series cache and the events count, and starts the writer. Called once, by open().
  Status start() {
    if (auto s = load_series(); !s) return s;
    if (auto s = count_events(); !s) return s;
    writer_ = std::thread([this] { writer_main(); });
    return Status::ok();
  }

  void append(std::vector<core::Reading> readings, Done done) override {
    auto refuse = [&](Status s) {
      if (done) done(std::move(s));
    };
    for (const auto& r : readings) {
      if (r.device.empty() || r.sensor.empty()) {
        return refuse(Status::invalid("a reading needs a device and a sensor"));
      }
    }
    size_t n = readings.size();
    if (n > kMaxQueuedRows) {
      return refuse(Status::too_large(
          fmt::format("{} readings in one append; at most {}", n, kMaxQueuedRows)));
    }
    Status refused;
    {
      std::lock_guard lk(mu_);
      size_t queued = shared_->queued.load();
      if (stop_) {
        refused = Status::unavailable("store closed");
      } else if (queued + n > kMaxQueuedRows) {
        refused = Status::busy(fmt::format("store queue full ({} rows waiting)", queued));
      } else {
        shared_->queued.fetch_add(n);
        queue_.emplace_back(Append{std::move(readings), 0, std::move(done)});
        cv_.notify_one();
        return;
      }
    }
    refuse(std::move(refused));  // outside the lock: `done` may well call append() again
  }

  // A series' id and unit by name on a reader connection; nullopt when there is none.
  static Result<std::optional<std::pair<int64_t, std::string>>> find_series(Db& db, const std::string& device,
                                                                             const std::string& sensor) {
    auto st = db.prepare(kSeriesByName);
    if (!st) return st.status();
    StmtLease& s = *st;
    s->bind_text(1, device);
    s->bind_text(2, sensor);
    int rc = s->step();
    if (rc == SQLITE_DONE) return std::optional<std::pair<int64_t, std::string>>();
    if (rc != SQLITE_ROW) return db.error(rc, "query series");
    return std::optional<std::pair<int64_t, std::string>>(std::pair{s->int64(0), s->text(1)});
  }

  Result<std::vector<core::Reading>> query(const ReadingQuery& q) const override {
    int64_t from = q.from ? core::to_micros(*q.from) : kMinTs;
    int64_t to = q.to ? core::to_micros(*q.to) : kMaxTs;
    if (from > to) return Status::invalid("query: 'from' is after 'to'");
    std::vector<core::Reading> out;
    if (q.limit == 0) return out;
    auto lease = readers_.acquire();
    if (!lease) return lease.status();
    auto found = find_series(**lease, q.device, q.sensor);
    if (!found) return found.status();
    if (!*found) return out;  // an unknown series has no readings
    auto [series, unit] = **found;
    auto st = (*lease)->prepare(q.newest ? kQueryNewest : kQueryOldest);
    if (!st) return st.status();
    StmtLease& s = *st;
    s->bind(1, series);
    s->bind(2, from);
    s->bind(3, to);
    s->bind(4, static_cast<int64_t>(std::min<uint64_t>(q.limit, kMaxTs)));
    out.reserve(std::min<size_t>(q.limit, 4096));
    int rc;
    while ((rc = s->step()) == SQLITE_ROW) {
      core::Reading& r = out.emplace_back();
      r.device = q.device;
      r.sensor = q.sensor;
      r.ts = core::from_micros(s->int64(0));
      r.text = s->text(2);
      if (!s->is_null(1)) {
        r.value = s->real(1);
      } else if (s->is_null(2)) {
        r.value = std::numeric_limits<double>::quiet_NaN();
      }
      r.unit = unit;
    }
    if (rc != SQLITE_DONE) return (*lease)->error(rc, "query readings");
    if (q.newest) std::reverse(out.begin(), out.end());
    return out;
  }

  uint64_t readings_count() const override { return shared_->readings.load(); }

  Result<std::vector<Bucket>> query_buckets(const ReadingQuery& q, std::chrono::microseconds width) const override {
    if (width.count() <= 0) return Status::invalid("bucket width must be positive");
    int64_t from = q.from ? std::max<int64_t>(0, core::to_micros(*q.from)) : 0;  // buckets from the epoch on
    int64_t to = q.to ? core::to_micros(*q.to) : kMaxTs;
    if (q.from && q.to && *q.from > *q.to) return Status::invalid("query: 'from' is after 'to'");
    std::vector<Bucket> out;
    if (q.limit == 0 || from > to) return out;
    auto lease = readers_.acquire();
    if (!lease) return lease.status();
    auto found = find_series(**lease, q.device, q.sensor);
    if (!found) return found.status();
    if (!*found) return out;
    int64_t series = (*found)->first;
    auto st = (*lease)->prepare(q.newest ? kQueryBucketsNewest : kQueryBucketsOldest);
    if (!st) return st.status();
    StmtLease& s = *st;
    s->bind(1, series);
    s->bind(2, from);
    s->bind(3, to);
    s->bind(4, static_cast<int64_t>(std::min<uint64_t>(q.limit, kMaxTs)));
    s->bind(5, static_cast<int64_t>(width.count()));
    int rc;
    while ((rc = s->step()) == SQLITE_ROW) {
      Bucket& b = out.emplace_back();
      b.start = core::from_micros(s->int64(0));
      b.count = static_cast<uint64_t>(s->int64(1));
      b.mean = s->real(2);
      b.min = s->real(3);
      b.max = s->real(4);
    }
    if (rc != SQLITE_DONE) return (*lease)->error(rc, "query buckets");
    if (q.newest) std::reverse(out.begin(), out.end());
    return out;
  }

  Status put_devices(const std::vector<StoredDevice>& devices) override {
    for (const auto& d : devices) {
      if (d.id.empty()) return Status::invalid("a device needs an id");
    }
    if (devices.empty()) return Status::ok();
    return run_on_writer([&] {
      return write_txn([&](Db& db) -> Status {
        auto st = db.prepare(kPutDevice);
        if (!st) return st.status();
        StmtLease& s = *st;
        for (const auto& d : devices) {
          s->reset();
          s->bind_text(1, d.id);
          s->bind_text(2, d.doc);
          s->bind(3, core::to_micros(d.updated));
          if (int rc = s->step(); rc != SQLITE_DONE) return db.error(rc, "put device");
        }
        return Status::ok();
      });
    });
  }

  Result<std::vector<StoredDevice>> load_devices() const override {
    auto lease = readers_.acquire();
    if (!lease) return lease.status();
    auto st = (*lease)->prepare(kLoadDevices);
    if (!st) return st.status();
    StmtLease& s = *st;
    std::vector<StoredDevice> out;
    int rc;
    while ((rc = s->step()) == SQLITE_ROW) {
      out.push_back({s->text(0), s->text(1), core::from_micros(s->int64(2))});
    }
    if (rc != SQLITE_DONE) return (*lease)->error(rc, "load devices");
    return out;
  }

  Status put_rule(const StoredRule& r) override {
    if (r.id.empty()) return Status::invalid("a rule needs an id");
    if (r.source != "config" && r.source != "api") return Status::invalid("a rule's source is config or api");
    return run_on_writer([&] { return write_txn([&](Db& db) { return put_rule_in(db, r); }); });
  }

  Status delete_rule(const std::string& id) override {
    bool found = false;
    Status s = run_on_writer([&] {
      return write_txn([&](Db& db) -> Status {
        auto st = db.prepare(kDeleteRule);
        if (!st) return st.status();
        (*st)->bind_text(1, id);
        if (int rc = (*st)->step(); rc != SQLITE_DONE) return db.error(rc, "delete rule");
        found = db.changes() > 0;
        return Status::ok();
      });
    });
    if (s && !found) return Status::not_found(fmt::format("no rule '{}'", id));
    return s;
  }

  Status replace_config_rules(const std::vector<StoredRule>& rules) override {
    for (const auto& r : rules) {
      if (r.id.empty()) return Status::invalid("a rule needs an id");
    }
    return run_on_writer([&] {
      return write_txn([&](Db& db) -> Status {
        if (auto s = db.exec(kDeleteConfigRules); !s) return s;
        for (auto r : rules) {
          r.source = "config";
          if (auto s = put_rule_in(db, r); !s) return s;
        }
        return Status::ok();
      });
    });
  }

  Result<std::vector<StoredRule>> load_rules() const override {
    auto lease = readers_.acquire();
    if (!lease) return lease.status();
    auto st = (*lease)->prepare(kLoadRules);
    if (!st) return st.status();
    StmtLease& s = *st;
    std::vector<StoredRule> out;
    int rc;
    while ((rc = s->step()) == SQLITE_ROW) {
      out.push_back({s->text(0), s->text(1), s->text(2), core::from_micros(s->int64(3))});
    }
    if (rc != SQLITE_DONE) return (*lease)->error(rc, "load rules");
    return out;
  }

  void append_event(core::Event e, EventDone done) override {
    auto refuse = [&](Status s) {
      if (done) done(std::move(s));
    };
    if (e.device.empty() || e.kind.empty()) {
      return refuse(Status::invalid("an event needs a device and a kind"));
    }
    Status refused = enqueue_one([&] { return Item(AppendEvent{std::move(e), std::move(done), {}, {}}); });
    if (!refused) refuse(std::move(refused));  // outside the lock: `done` may well call append_event() again
  }

  void outbox_put(OutboxPut put, OutboxDone done) override {
    auto refuse = [&](Status s) {
      if (done) done(std::move(s));
    };
    if (auto s = check_put(put); !s) return refuse(std::move(s));
    Status refused = enqueue_one([&] { return Item(Put{std::move(put), std::move(done)}); });
    if (!refused) refuse(std::move(refused));
  }

  void append_event_outbox(core::Event e, OutboxPut put, EventOutboxDone done) override {
    auto refuse = [&](Status s) {
      if (done) done(std::move(s), OutboxOutcome{});
    };
    if (e.device.empty() || e.kind.empty()) return refuse(Status::invalid("an event needs a device and a kind"));
    if (auto s = check_put(put); !s) return refuse(std::move(s));
    Status refused = enqueue_one([&] {
      return Item(AppendEvent{std::move(e), {}, std::optional<OutboxPut>(std::move(put)), std::move(done)});
    });
    if (!refused) refuse(std::move(refused));
  }

  Result<std::vector<OutboxMessage>> outbox_pending(const std::string& destination, size_t limit) const override {
    std::vector<OutboxMessage> out;
    if (limit == 0) return out;
    auto lease = readers_.acquire();
    if (!lease) return lease.status();
    auto st = (*lease)->prepare(kOutboxPending);
    if (!st) return st.status();
    StmtLease& s = *st;
    s->bind_text(1, destination);
    s->bind(2, static_cast<int64_t>(std::min<uint64_t>(limit, kMaxTs)));
    int rc;
    while ((rc = s->step()) == SQLITE_ROW) out.push_back(outbox_from_row(*s));
    if (rc != SQLITE_DONE) return (*lease)->error(rc, "query outbox");
    return out;
  }

  Status outbox_delivered(const std::string& destination, const std::vector<std::string>& ids) override {
    if (ids.empty()) return Status::ok();
    return run_on_writer([&] {
      return write_txn([&](Db& db) -> Status {
        int64_t deleted = 0;
        auto st = db.prepare(kOutboxDelete);
        if (!st) return st.status();
        for (const auto& id : ids) {
          (*st)->reset();
          (*st)->bind_text(1, destination);
          (*st)->bind_text(2, id);
          if (int rc = (*st)->step(); rc != SQLITE_DONE) return db.error(rc, "delete delivered");
          deleted += db.changes();
        }
        if (deleted == 0) return Status::ok();
        auto add = db.prepare(kOutboxAddDelivered);
        if (!add) return add.status();
        (*add)->bind_text(1, destination);
        (*add)->bind(2, deleted);
        if (int rc = (*add)->step(); rc != SQLITE_DONE) return db.error(rc, "count delivered");
        return Status::ok();
      });
    });
  }

  Status outbox_failed(const std::string& destination, const std::vector<std::string>& ids,
                       const std::string& error) override {
    if (ids.empty()) return Status::ok();
    return run_on_writer([&] {
      return write_txn([&](Db& db) -> Status {
        auto st = db.prepare(kOutboxFailed);
        if (!st) return st.status();
        for (const auto& id : ids) {
          (*st)->reset();
          (*st)->bind_text(1, destination);
          (*st)->bind_text(2, id);
          (*st)->bind_text(3, error);
          if (int rc = (*st)->step(); rc != SQLITE_DONE) return db.error(rc, "record attempt");
        }
        return Status::ok();
      });
    });
  }

  Status outbox_kill(const std::string& destination, const std::string& id, const std::string& error) override {
    return run_on_writer([&] {
      return write_txn([&](Db& db) -> Status {
        auto st = db.prepare(kOutboxKill);
        if (!st) return st.status();
        (*st)->bind_text(1, destination);
        (*st)->bind_text(2, id);
        (*st)->bind(3, core::to_micros(core::now()));
        (*st)->bind_text(4, error);
        if (int rc = (*st)->step(); rc != SQLITE_DONE) return db.error(rc, "dead letter");
        if (db.changes() == 0)
          return Status::not_found(fmt::format("no pending message '{}' for '{}'", id, destination));
        return Status::ok();
      });
    });
  }

  Result<std::vector<OutboxMessage>> outbox_dead(const std::string& destination, int64_t after_seq,
                                                 size_t limit) const override {
    std::vector<OutboxMessage> out;
    if (limit == 0) return out;
    auto lease = readers_.acquire();
    if (!lease) return lease.status();
    auto st = (*lease)->prepare(destination.empty() ? kOutboxDeadAll : kOutboxDeadOf);
    if (!st) return st.status();
    StmtLease& s = *st;
    s->bind_text(1, destination);
    s->bind(2, after_seq);
    s->bind(3, static_cast<int64_t>(std::min<uint64_t>(limit, kMaxTs)));
    int rc;
    while ((rc = s->step()) == SQLITE_ROW) out.push_back(outbox_from_row(*s));
    if (rc != SQLITE_DONE) return (*lease)->error(rc, "query dead letters");
    return out;
  }

  Result<size_t> outbox_retry_dead(const std::string& destination, const std::string& id) override {
    return dead_letters_change(destination, id, kOutboxRetryOne, kOutboxRetryAll, "retry dead letters");
  }

  Result<size_t> outbox_delete_dead(const std::string& destination, const std::string& id) override {
    return dead_letters_change(destination, id, kOutboxDeleteDeadOne, kOutboxDeleteDeadAll, "delete dead letters");
  }

  Result<std::vector<OutboxStats>> outbox_stats() const override {
    auto lease = readers_.acquire();
    if (!lease) return lease.status();
    std::vector<OutboxStats> out;
    {
      auto st = (*lease)->prepare(kOutboxStats);
      if (!st) return st.status();
      StmtLease& s = *st;
      int rc;
      while ((rc = s->step()) == SQLITE_ROW) {
        OutboxStats o;
        o.destination = s->text(0);
        int64_t messages = s->int64(1), dead = s->int64(3);
        o.pending = static_cast<uint64_t>(std::max<int64_t>(0, messages - dead));
        o.bytes = static_cast<uint64_t>(std::max<int64_t>(0, s->int64(2)));
        o.dead = static_cast<uint64_t>(std::max<int64_t>(0, dead));
        o.delivered = static_cast<uint64_t>(s->int64(4));
        o.dropped = static_cast<uint64_t>(s->int64(5));
        out.push_back(std::move(o));
      }
      if (rc != SQLITE_DONE) return (*lease)->error(rc, "outbox totals");
    }
    for (auto& o : out) {
      if (o.pending == 0) continue;
      auto st = (*lease)->prepare(kOutboxOldestPending);
      if (!st) return st.status();
      (*st)->bind_text(1, o.destination);
      int rc = (*st)->step();
      if (rc == SQLITE_ROW) o.oldest_pending = core::from_micros((*st)->int64(0));
      else if (rc != SQLITE_DONE) return (*lease)->error(rc, "outbox oldest");
    }
    return out;
  }

  Result<IngestResult> ingest(const std::string& source, std::vector<IngestItem> items,
                              core::TimePoint received) override {
    if (source.empty()) return Status::invalid("ingest: the source is empty");
    for (const auto& item : items) {
      if (item.id.empty()) return Status::invalid("ingest: a message without an id");
      for (const auto& r : item.readings)
        if (r.device.empty() || r.sensor.empty()) return Status::invalid("a reading needs a device and a sensor");
      if (item.event && (item.event->device.empty() || item.event->kind.empty()))
        return Status::invalid("an event needs a device and a kind");
    }
    IngestResult result;
    result.fresh.assign(items.size(), false);
    Status s = run_on_writer([&] {
      auto t0 = SteadyClock::now();
      result = IngestResult{};
      result.fresh.assign(items.size(), false);
      Txn txn(*db_);
      if (!txn.begun()) return failed(txn.begun());
      if (auto st = ensure_series(); !st) return failed(st);
      {
        auto expire = db_->prepare(kIngestedExpire);
        if (!expire) return failed(expire.status());
        auto cutoff = received - std::chrono::duration_cast<std::chrono::microseconds>(kIngestIdsMaxAge);
        (*expire)->bind(1, core::to_micros(cutoff));
        if (int rc = (*expire)->step(); rc != SQLITE_DONE) return failed(db_->error(rc, "expire ingested ids"));
      }
      std::vector<core::Reading> rows;
      std::vector<core::Event> events;
      auto mark = db_->prepare(kIngestedInsert);
      if (!mark) return failed(mark.status());
      for (size_t i = 0; i < items.size(); ++i) {
        (*mark)->reset();
        (*mark)->bind_text(1, source);
        (*mark)->bind_text(2, items[i].id);
        (*mark)->bind(3, core::to_micros(received));
        if (int rc = (*mark)->step(); rc != SQLITE_DONE) return failed(db_->error(rc, "remember ingested id"));
        if (db_->changes() == 0) {
          ++result.duplicates;
          continue;
        }
        ++result.accepted;
        result.fresh[i] = true;
        for (auto& r : items[i].readings) rows.push_back(r);
        if (items[i].event) events.push_back(*items[i].event);
      }
      (*mark)->reset();
      if (auto st = insert_readings(rows); !st) return failed(st);
      if (auto st = insert_events(events); !st) return failed(st);
      Status st = finish(txn);
      if (st) {
        commit_seconds_->observe(std::chrono::duration<double>(SteadyClock::now() - t0).count());
        rows_written_->inc(rows.size());
        events_written_->inc(events.size());
        rows_since_retention_ += rows.size() + events.size();
        result.events = std::move(events);
      }
      return st;
    });
    if (!s) return s;
    return result;
  }

  Result<std::vector<core::Event>> query_events(const EventQuery& q) const override {
    int64_t from = q.from ? core::to_micros(*q.from) : kMinTs;
    int64_t to = q.to ? core::to_micros(*q.to) : kMaxTs;
    if (from > to) return Status::invalid("query: 'from' is after 'to'");
    std::vector<core::Event> out;
    if (q.limit == 0) return out;
    auto lease = readers_.acquire();
    if (!lease) return lease.status();
    int64_t before_id = kMaxId;
    if (q.before_id) {
      auto cursor = event_ts(**lease, *q.before_id);
      if (!cursor) return cursor.status();
      if (!cursor->has_value()) return out;  // the cursor went with everything before it
      // Past the cursor's ts, the cursor bounds nothing within [from, to].
      if (**cursor <= to) {
        to = **cursor;
        before_id = *q.before_id;
      }
      if (from > to) return out;
    }
    auto st = (*lease)->prepare(event_query_sql(!q.kind.empty(), !q.device.empty(), q.newest));
    if (!st) return st.status();
    StmtLease& s = *st;
    s->bind_text(1, q.kind);
    s->bind_text(2, q.device);
    s->bind(3, from);
    s->bind(4, to);
    s->bind(5, before_id);
    s->bind(6, static_cast<int64_t>(std::min<uint64_t>(q.limit, kMaxTs)));
    out.reserve(std::min<size_t>(q.limit, 1024));
    int rc;
    while ((rc = s->step()) == SQLITE_ROW) {
      core::Event& e = out.emplace_back();
      e.id = s->int64(0);
      e.ts = core::from_micros(s->int64(1));
      e.device = s->text(2);
      e.kind = s->text(3);
      e.payload = s->text(4);
    }
    if (rc != SQLITE_DONE) return (*lease)->error(rc, "query events");
    if (q.newest) std::reverse(out.begin(), out.end());
    return out;
  }

  uint64_t events_count() const override { return shared_->events.load(); }

  void append_summaries(std::vector<core::Summary> summaries, bool handoff, SummariesDone done) override {
    for (const auto& x : summaries) {
      if (auto st = check_summary(x); !st) {
        if (done) done(st);
        return;
      }
    }
    {
      std::lock_guard lk(mu_);
      if (!stop_) {
        queue_.emplace_back(Task{[this, summaries = std::move(summaries), handoff, done = std::move(done)]() mutable {
          std::vector<core::Summary> fresh;
          Status st = write_txn([&](Db& db) { return insert_summaries(db, summaries, handoff, fresh); });
          if (st) {
            call_done(done, Result<std::vector<core::Summary>>(std::move(fresh)));
          } else {
            call_done(done, Result<std::vector<core::Summary>>(st));
          }
        }});
        cv_.notify_one();
        return;
      }
    }
    if (done) done(Status::unavailable("store closed"));  // outside the lock: `done` may append again
  }

  void mark_handed_off(std::vector<SummaryKey> keys, Done done) override {
    {
      std::lock_guard lk(mu_);
      if (!stop_) {
        queue_.emplace_back(Task{[this, keys = std::move(keys), done = std::move(done)]() mutable {
          Status st = write_txn([&](Db& db) -> Status {
            auto stmt = db.prepare(kMarkHandedOff);
            if (!stmt) return stmt.status();
            StmtLease& u = *stmt;
            for (const auto& k : keys) {
              u->reset();
              u->bind_text(1, k.device);
              u->bind_text(2, k.sensor);
              u->bind(3, core::to_micros(k.period_start));
              if (int rc = u->step(); rc != SQLITE_DONE) return db.error(rc, "mark summaries handed off");
            }
            return Status::ok();
          });
          call_done(done, st);
        }});
        cv_.notify_one();
        return;
      }
    }
    if (done) done(Status::unavailable("store closed"));
  }

  Result<std::vector<core::Summary>> query_summaries(const SummaryQuery& q) const override {
    int64_t from = q.from ? core::to_micros(*q.from) : kMinTs;
    int64_t to = q.to ? core::to_micros(*q.to) : kMaxTs;
    if (from > to) return Status::invalid("query: 'from' is after 'to'");
    std::vector<core::Summary> out;
    if (q.limit == 0) return out;
    auto lease = readers_.acquire();
    if (!lease) return lease.status();
    auto st = (*lease)->prepare(summary_query_sql(!q.device.empty(), !q.sensor.empty(), q.newest, q.pending_handoff));
    if (!st) return st.status();
    StmtLease& s = *st;
    s->bind_text(1, q.device);
    s->bind_text(2, q.sensor);
    s->bind(3, from);
    s->bind(4, to);
    s->bind(5, static_cast<int64_t>(std::min<uint64_t>(q.limit, kMaxTs)));
    out.reserve(std::min<size_t>(q.limit, 1024));
    int rc;
    while ((rc = s->step()) == SQLITE_ROW) {
      core::Summary& x = out.emplace_back();
      x.device = s->text(0);
      x.sensor = s->text(1);
      x.period_start = core::from_micros(s->int64(2));
      x.period_end = core::from_micros(s->int64(3));
      x.unit = s->text(4);
      x.count = static_cast<uint64_t>(s->int64(5));
      x.mean = s->real(6);
      x.min = s->real(7);
      x.max = s->real(8);
      x.stdev = s->real(9);
      x.first = s->real(10);
      x.last = s->real(11);
    }
    if (rc != SQLITE_DONE) return (*lease)->error(rc, "query summaries");
    if (q.newest) std::reverse(out.begin(), out.end());
    return out;
  }

  Status insert_key(const ApiKey& k) override {
    if (k.id.empty()) return Status::invalid("key id is empty");
    if (!valid_scope(k.scope)) return Status::invalid("unknown key scope '" + k.scope + "'");
    if (k.hash.size() != 32) return Status::invalid("key hash must be 32 bytes (SHA-256)");
    return run_on_writer([&] {
      return write_txn([&](Db& db) -> Status {
        auto st = db.prepare(kInsertKey);
        if (!st) return st.status();
        StmtLease& s = *st;
        s->bind_text(1, k.id);
        s->bind_text(2, k.name);
        s->bind_text(3, k.scope);
        s->bind_blob(4, k.hash);
        s->bind(5, core::to_micros(k.created));
        if (k.revoked) {
          s->bind(6, core::to_micros(*k.revoked));
        } else {
          s->bind_null(6);
        }
        int rc = s->step();
        if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
          return Status::conflict("an API key with id '" + k.id + "' exists");
        }
        if (rc != SQLITE_DONE) return db.error(rc, "insert key");
        return Status::ok();
      });
    });
  }

  Result<std::optional<ApiKey>> find_key(const std::string& id) const override {
    auto lease = readers_.acquire();
    if (!lease) return lease.status();
    auto st = (*lease)->prepare(kFindKey);
    if (!st) return st.status();
    StmtLease& s = *st;
    s->bind_text(1, id);
    int rc = s->step();
    if (rc == SQLITE_DONE) return std::optional<ApiKey>();
    if (rc != SQLITE_ROW) return (*lease)->error(rc, "find key");
    return std::optional<ApiKey>(key_from_row(*s));
  }

  Result<std::vector<ApiKey>> list_keys() const override {
    auto lease = readers_.acquire();
    if (!lease) return lease.status();
    auto st = (*lease)->prepare(kListKeys);
    if (!st) return st.status();
    StmtLease& s = *st;
    std::vector<ApiKey> out;
    int rc;
    while ((rc = s->step()) == SQLITE_ROW) out.push_back(key_from_row(*s));
    if (rc != SQLITE_DONE) return (*lease)->error(rc, "list keys");
    return out;
  }

  Status revoke_key(const std::string& id_or_name) override {
    return run_on_writer([&] {
      return write_txn([&](Db& db) -> Status {
        // An id match wins: ids are unique, names are not.
        std::string target;
        {
          auto st = db.prepare(kKeyById);
          if (!st) return st.status();
          StmtLease& s = *st;
          s->bind_text(1, id_or_name);
          int rc = s->step();
          if (rc == SQLITE_ROW) {
            if (!s->is_null(0)) {
              return Status::not_found("API key '" + id_or_name + "' is already revoked");
            }
            target = id_or_name;
          } else if (rc != SQLITE_DONE) {
            return db.error(rc, "revoke key");
          }
        }
        if (target.empty()) {
          auto st = db.prepare(kKeysByName);
          if (!st) return st.status();
          StmtLease& s = *st;
          s->bind_text(1, id_or_name);
          size_t active = 0, revoked = 0;
          int rc;
          while ((rc = s->step()) == SQLITE_ROW) {
            if (s->is_null(1)) {
              ++active;
              target = s->text(0);
            } else {
              ++revoked;
            }
          }
          if (rc != SQLITE_DONE) return db.error(rc, "revoke key");
          if (active > 1) {
            return Status::conflict(fmt::format(
                "{} active API keys are named '{}'; revoke them by id", active, id_or_name));
          }
          if (active == 0) {
            return Status::not_found(
                revoked > 0 ? "every API key named '" + id_or_name + "' is already revoked"
                            : "no API key with id or name '" + id_or_name + "'");
          }
        }
        auto st = db.prepare(kRevokeKey);
        if (!st) return st.status();
        StmtLease& s = *st;
        s->bind_text(1, target);
        s->bind(2, core::to_micros(core::now()));
        if (int rc = s->step(); rc != SQLITE_DONE) return db.error(rc, "revoke key");
        return Status::ok();
      });
    });
  }

  Result<uint64_t> keys_generation() const override {
    auto lease = readers_.acquire();
    if (!lease) return lease.status();
    auto st = (*lease)->prepare(kKeysGeneration);
    if (!st) return st.status();
    StmtLease& s = *st;
    int rc = s->step();
    if (rc != SQLITE_ROW) return (*lease)->error(rc, "keys generation");
    return static_cast<uint64_t>(s->int64(0));
  }

  Result<std::optional<std::string>> get_setting(const std::string& name) const override {
    if (name.empty()) return Status::invalid("setting name is empty");
    auto lease = readers_.acquire();
    if (!lease) return lease.status();
    auto st = (*lease)->prepare(kGetSetting);
    if (!st) return st.status();
    StmtLease& s = *st;
    s->bind_text(1, name);
    int rc = s->step();
    if (rc == SQLITE_DONE) return std::optional<std::string>();
    if (rc != SQLITE_ROW) return (*lease)->error(rc, "get setting");
    return std::optional<std::string>(s->text(0));
  }

  Status put_setting(const std::string& name, const std::string& value) override {
    if (name.empty()) return Status::invalid("setting name is empty");
    return run_on_writer([&] {
      return write_txn([&](Db& db) -> Status {
        auto st = db.prepare(kPutSetting);
        if (!st) return st.status();
        StmtLease& s = *st;
        s->bind_text(1, name);
        s->bind_text(2, value);
        if (int rc = s->step(); rc != SQLITE_DONE) return db.error(rc, "put setting");
        return Status::ok();
      });
    });
  }

  Status put_setting_if_absent(const std::string& name, const std::string& value,
                               std::string* current) override {
    if (name.empty()) return Status::invalid("setting name is empty");
    std::string stored;
    Status s = run_on_writer([&] {
      // BEGIN IMMEDIATE holds the write lock from before the INSERT to after the SELECT, so no
      // other process can put a value in between: whoever inserts first wins for everyone.
      return write_txn([&](Db& db) -> Status {
        {
          auto st = db.prepare(kAddSetting);
          if (!st) return st.status();
          (*st)->bind_text(1, name);
          (*st)->bind_text(2, value);
          if (int rc = (*st)->step(); rc != SQLITE_DONE) return db.error(rc, "put setting");
          if (db.changes() == 1) {
            stored = value;
            return Status::ok();
          }
        }
        auto st = db.prepare(kGetSetting);
        if (!st) return st.status();
        (*st)->bind_text(1, name);
        int rc = (*st)->step();
        if (rc != SQLITE_ROW) return db.error(rc, "get setting");
        stored = (*st)->text(0);
        return Status::ok();
      });
    });
    if (s && current) *current = std::move(stored);
    return s;
  }

  Status flush() override {
    return run_on_writer([] { return Status::ok(); });
  }

  Status enforce_retention() override {
    return run_on_writer([this] {
      start_retention_pass();
      while (retention_.active) {
        bool done = false;
        if (auto s = retention_chunk(done); !s) {
          retention_.active = false;
          return s;
        }
        if (done) retention_.active = false;
      }
      return Status::ok();
    });
  }

  Health health() const override {
    Health h;
    h.readings = shared_->readings.load();
    h.queue_depth = shared_->queued.load();
    std::lock_guard lk(health_mu_);
    if (closed_flag_) {
      h.detail = "closed";
    } else if (failing_) {
      h.detail = fmt::format("writes failing since {} ({} failed transactions): {}",
                             core::format_iso8601(failing_since_), failures_in_row_, last_error_);
    } else {
      h.ok = true;
      h.detail = "ok";
    }
    return h;
  }

  void close() override {
    if (detail::on_writer_thread()) {
      // Joining ourselves would deadlock; the owner's close() or destructor finishes the job.
      spdlog::error("store: close() called on a store writer thread; ignored");
      return;
    }
    std::lock_guard close_lk(close_mu_);
    if (closed_) return;
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (writer_.joinable()) writer_.join();
    readers_.close();
    db_.reset();
    closed_ = true;
    std::lock_guard lk(health_mu_);
    closed_flag_ = true;
  }

  void TEST_fail_writes(bool on) override { fail_writes_.store(on); }

 private:
  struct Append {
    std::vector<core::Reading> rows;
    size_t taken = 0;  // rows already handed to the writer (an append split over transactions)
    Done done;
  };
  struct AppendEvent {
    core::Event event;
    EventDone done;
    std::optional<OutboxPut> put;   // written in the same transaction (append_event_outbox)
    EventOutboxDone put_done;       // then called instead of `done`
  };
  struct Put {
    OutboxPut put;
    OutboxDone done;
  };
  struct Task {
    std::function<void()> fn;
  };
  using Item = std::variant<Append, AppendEvent, Put, Task>;

  // Who to tell when a batch is over, in queue order: an append whose last row is in the batch,
  // an event (by its index in Work::events), an outbox put (by its index in Work::puts), or an
  // event with its put.
  struct Ack {
    Done done;
    EventDone event_done;
    std::optional<size_t> event;
    OutboxDone put_done;
    EventOutboxDone event_put_done;
    std::optional<size_t> put;
  };

  struct PendingPut {
    OutboxPut put;
    OutboxOutcome outcome;  // filled in by the transaction
  };

  // What the writer took off the queue for one round: readings, events and outbox puts for one
  // transaction (at most batch_max of them together), or a task.
  struct Work {
    std::vector<core::Reading> rows;
    std::vector<core::Event> events;  // ids set once inserted
    std::vector<PendingPut> puts;     // in queue order, so seq follows it
    size_t lone_puts = 0;             // puts that are not part of an event (each counts as a row)
    std::vector<Ack> acks;
    bool ends_partial = false;  // the queue's front append has more rows after `rows`
    std::function<void()> task;

    size_t size() const { return rows.size() + events.size() + lone_puts; }
  };

  struct RetentionPass {
    bool active = false;
    std::vector<int64_t> ids;  // series to visit, fixed when the pass starts
    size_t next = 0;
    bool events = false;      // the events table is still to visit (after the series)
    int64_t cutoff = kMinTs;  // rows with ts below it are too old
    bool summaries = false;   // the summaries table is still to visit (after the events)
    int64_t summaries_cutoff = kMinTs;  // summaries with period_start below it are too old
  };

  struct Planned {
    int64_t series;
    int64_t ts;
    uint32_t index;  // into the batch; ties on (series, ts) go to the later index
    Series* s;
  };

  // Runs fn on the writer thread, after everything queued before, and waits for it.
  Status run_on_writer(const std::function<Status()>& fn) {
    if (detail::on_writer_thread()) {
      return Status::internal("a waiting store call was made on the writer thread");
    }
    std::promise<Status> result;
    auto future = result.get_future();
    {
      std::lock_guard lk(mu_);
      if (stop_) return Status::unavailable("store closed");
      queue_.emplace_back(Task{[&] {
        try {
          result.set_value(fn());
        } catch (const std::exception& e) {
          result.set_value(Status::internal(e.what()));
        }
      }});
    }
    cv_.notify_one();
    return future.get();
  }

  void writer_main() {
    detail::mark_writer_thread();
    auto next_retention = SteadyClock::now() + kFirstRetentionDelay;
    for (;;) {
      Work work;
      bool stopping = false;
      {
        std::unique_lock lk(mu_);
        if (!retention_.active) {
          cv_.wait_until(lk, next_retention, [&] { return stop_ || !queue_.empty(); });
        }
        if (stop_ && queue_.empty()) break;
        stopping = stop_;
        take_work(work);
      }
      if (work.task) {
        work.task();
      } else if (!work.acks.empty() || work.size() > 0) {
        write_batch(work);
      }
      // While closing, only drain; an unfinished pass simply starts over after the next open.
      if (stopping) continue;
      if (!retention_.active &&
          (SteadyClock::now() >= next_retention || rows_since_retention_ >= kRetentionEveryRows)) {
        start_retention_pass();
        rows_since_retention_ = 0;
        if (!retention_.active) next_retention = SteadyClock::now() + kRetentionInterval;
      }
      if (retention_.active) {
        // One bounded chunk per round, alternating with ingest batches.
        bool done = false;
        Status s = retention_chunk(done);
        if (!s || done) {
          retention_.active = false;
          next_retention = SteadyClock::now() + kRetentionInterval;
        }
      }
    }
  }

  // Under mu_. Takes up to batch_max readings and events (splitting an append if needed), or
  // one task.
  void take_work(Work& w) {
    const size_t cap = cfg_.batch_max;
    while (!queue_.empty() && w.size() < cap) {
      if (auto* task = std::get_if<Task>(&queue_.front())) {
        if (w.acks.empty() && w.size() == 0) {
          w.task = std::move(task->fn);
          queue_.pop_front();
        }
        return;
      }
      if (auto* e = std::get_if<AppendEvent>(&queue_.front())) {
        Ack ack{{}, std::move(e->done), w.events.size(), {}, {}, std::nullopt};
        if (e->put) {
          ack.event_put_done = std::move(e->put_done);
          ack.put = w.puts.size();
          w.puts.push_back(PendingPut{std::move(*e->put), {}});
        }
        w.acks.push_back(std::move(ack));
        w.events.push_back(std::move(e->event));
        queue_.pop_front();
        continue;
      }
      if (auto* p = std::get_if<Put>(&queue_.front())) {
        w.acks.push_back(Ack{{}, {}, std::nullopt, std::move(p->done), {}, w.puts.size()});
        w.puts.push_back(PendingPut{std::move(p->put), {}});
        ++w.lone_puts;
        queue_.pop_front();
        continue;
      }
      auto& a = std::get<Append>(queue_.front());
      size_t room = cap - w.size();
      size_t left = a.rows.size() - a.taken;
      if (left <= room) {
        if (w.rows.empty() && a.taken == 0) {
          w.rows = std::move(a.rows);  // the common case: no copying at all
        } else {
          std::move(a.rows.begin() + static_cast<ptrdiff_t>(a.taken), a.rows.end(),
                    std::back_inserter(w.rows));
        }
        w.acks.push_back(Ack{std::move(a.done), {}, std::nullopt, {}, {}, std::nullopt});
        queue_.pop_front();
      } else {
        auto first = a.rows.begin() + static_cast<ptrdiff_t>(a.taken);
        std::move(first, first + static_cast<ptrdiff_t>(room), std::back_inserter(w.rows));
        a.taken += room;
        w.ends_partial = true;
        return;
      }
    }
  }

  void write_batch(Work& w) {
    Status s = w.size() == 0 ? Status::ok() : write_rows(w);
    shared_->queued.fetch_sub(w.size());
    if (!s && w.ends_partial) {
      // The rest of a split append is dropped: its caller hears about the failure now, once.
      std::lock_guard lk(mu_);
      auto& a = std::get<Append>(queue_.front());
      shared_->queued.fetch_sub(a.rows.size() - a.taken);
      w.acks.push_back(Ack{std::move(a.done), {}, std::nullopt, {}, {}, std::nullopt});
      queue_.pop_front();
    }
    for (auto& ack : w.acks) {
      try {
        if (ack.put && ack.event) {
          if (ack.event_put_done) {
            ack.event_put_done(s ? Result<int64_t>(w.events[*ack.event].id) : Result<int64_t>(s),
                               s ? std::move(w.puts[*ack.put].outcome) : OutboxOutcome{});
          }
        } else if (ack.put) {
          if (ack.put_done) {
            ack.put_done(s ? Result<OutboxOutcome>(std::move(w.puts[*ack.put].outcome)) : Result<OutboxOutcome>(s));
          }
        } else if (!ack.event) {
          if (ack.done) ack.done(s);
        } else if (ack.event_done) {
          ack.event_done(s ? Result<int64_t>(w.events[*ack.event].id) : Result<int64_t>(s));
        }
      } catch (const std::exception& e) {
        spdlog::error("store: a done callback threw: {}", e.what());
      } catch (...) {
        spdlog::error("store: a done callback threw");
      }
    }
  }

  // One transaction for the work's readings, events and outbox puts (at most batch_max of them
  // together). Sets the events' ids and the puts' outcomes; they mean something only if this
  // returns ok.
  Status write_rows(Work& w) {
    auto t0 = SteadyClock::now();
    Txn txn(*db_);
    if (!txn.begun()) return failed(txn.begun());
    if (auto s = ensure_series(); !s) return failed(s);
    if (auto s = insert_readings(w.rows); !s) return failed(s);
    if (auto s = insert_events(w.events); !s) return failed(s);
    for (auto& p : w.puts) {
      if (auto s = insert_put(p); !s) return failed(s);
    }
    Status s = finish(txn);
    if (s) {
      commit_seconds_->observe(std::chrono::duration<double>(SteadyClock::now() - t0).count());
      rows_written_->inc(w.rows.size());
      events_written_->inc(w.events.size());
      rows_since_retention_ += w.size();
    }
    return s;
  }

  // The outbox message of `p` for each of its targets, each under its cap.
  Status insert_put(PendingPut& p) {
    const OutboxPut& put = p.put;
    p.outcome.targets.assign(put.targets.size(), OutboxPutResult{});
    const auto size = static_cast<int64_t>(put.body.size());
    for (size_t i = 0; i < put.targets.size(); ++i) {
      const OutboxTarget& t = put.targets[i];
      OutboxPutResult& out = p.outcome.targets[i];
      // The id is the message's idempotency key: a producer that offers again what it offered
      // before (after a crash between its commit and ours) finds it there, and nothing changes.
      {
        auto st = db_->prepare(kOutboxHas);
        if (!st) return st.status();
        (*st)->bind_text(1, t.destination);
        (*st)->bind_text(2, put.id);
        int rc = (*st)->step();
        if (rc == SQLITE_ROW) {
          out.duplicate = true;
          continue;
        }
        if (rc != SQLITE_DONE) return db_->error(rc, "outbox has");
      }
      if (t.max_bytes > 0 && put.body.size() > t.max_bytes) {
        out.refused = true;
        out.why = fmt::format("a message of {} bytes is larger than the outbox of '{}' may hold ({} bytes)",
                              put.body.size(), t.destination, t.max_bytes);
        continue;
      }
      int64_t messages = 0, bytes = 0;
      {
        auto st = db_->prepare(kOutboxTotals);
        if (!st) return st.status();
        (*st)->bind_text(1, t.destination);
        int rc = (*st)->step();
        if (rc == SQLITE_ROW) {
          messages = (*st)->int64(0);
          bytes = (*st)->int64(1);
        } else if (rc != SQLITE_DONE) {
          return db_->error(rc, "outbox totals");
        }
      }
      auto over = [&] {
        return (t.max_messages > 0 && messages + 1 > static_cast<int64_t>(t.max_messages)) ||
               (t.max_bytes > 0 && bytes + size > static_cast<int64_t>(t.max_bytes));
      };
      if (over() && !t.drop_oldest) {
        out.refused = true;
        out.why = fmt::format("the outbox of '{}' is full ({} messages, {} bytes; overflow = refuse_new)",
                              t.destination, messages, bytes);
        continue;
      }
      // drop_oldest: dead letters go first (they wait for a person anyway), then the oldest
      // pending messages, until the new one fits.
      while (over()) {
        int64_t victim = 0, length = 0;
        for (int dead : {1, 0}) {
          auto st = db_->prepare(kOutboxOldest);
          if (!st) return st.status();
          (*st)->bind_text(1, t.destination);
          (*st)->bind(2, static_cast<int64_t>(dead));
          int rc = (*st)->step();
          if (rc == SQLITE_ROW) {
            victim = (*st)->int64(0);
            length = (*st)->int64(1);
            break;
          }
          if (rc != SQLITE_DONE) return db_->error(rc, "outbox oldest");
        }
        if (victim == 0) break;  // nothing left to drop (the totals say otherwise: trust the rows)
        auto del = db_->prepare(kOutboxDeleteSeq);
        if (!del) return del.status();
        (*del)->bind(1, victim);
        if (int rc = (*del)->step(); rc != SQLITE_DONE) return db_->error(rc, "outbox drop");
        --messages;
        bytes -= length;
        ++out.dropped;
      }
      auto ins = db_->prepare(kOutboxInsert);
      if (!ins) return ins.status();
      StmtLease& s = *ins;
      s->bind_text(1, t.destination);
      s->bind_text(2, put.id);
      s->bind_text(3, put.kind);
      s->bind_text(4, put.content_type);
      s->bind_blob(5, put.body);
      s->bind(6, core::to_micros(put.created));
      int rc = s->step();
      if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        return Status::conflict(fmt::format("the outbox of '{}' already holds message '{}'", t.destination, put.id));
      }
      if (rc != SQLITE_DONE) return db_->error(rc, "outbox insert");
      out.stored = true;
      if (out.dropped > 0) {
        auto add = db_->prepare(kOutboxAddDropped);
        if (!add) return add.status();
        (*add)->bind_text(1, t.destination);
        (*add)->bind(2, static_cast<int64_t>(out.dropped));
        if (int arc = (*add)->step(); arc != SQLITE_DONE) return db_->error(arc, "count dropped");
      }
    }
    return Status::ok();
  }

  // Inside the caller's transaction: the readings, sorted by the clustered key. Does not call
  // failed(); the caller does.
  Status insert_readings(std::vector<core::Reading>& rows) {
    if (rows.empty()) return Status::ok();
    // Series ids first (this may create series), then sort by the clustered key so the
    // inserts walk each series' B-tree in order.
    std::vector<Planned> plan;
    plan.reserve(rows.size());
    const core::Reading* prev = nullptr;
    Series* series = nullptr;
    for (size_t i = 0; i < rows.size(); ++i) {
      const core::Reading& r = rows[i];
      if (!prev || prev->device != r.device || prev->sensor != r.sensor) {
        auto found = resolve(r.device, r.sensor);
        if (!found) return found.status();
        series = *found;
      }
      if (!r.unit.empty() && r.unit != series->unit) {
        if (auto s = set_unit(*series, r.unit); !s) return s;
      }
      plan.push_back({series->id, core::to_micros(r.ts), static_cast<uint32_t>(i), series});
      prev = &r;
    }
    std::sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
      if (a.series != b.series) return a.series < b.series;
      if (a.ts != b.ts) return a.ts < b.ts;
      return a.index < b.index;
    });

    auto ins = db_->prepare(kInsertReading);
    if (!ins) return ins.status();
    StmtLease& insert = *ins;
    for (size_t i = 0; i < plan.size(); ++i) {
      const Planned& p = plan[i];
      // Same (series, ts) again later in this batch: that later reading wins.
      if (i + 1 < plan.size() && plan[i + 1].series == p.series && plan[i + 1].ts == p.ts) {
        continue;
      }
      const core::Reading& r = rows[p.index];
      bind_reading(*insert, p, r);
      int rc = insert->step();
      sqlite3_reset(insert->get());
      if (rc != SQLITE_DONE) return db_->error(rc, "insert reading");
      if (db_->changes() == 1) {
        account(*p.s, 1);
        continue;
      }
      auto upd = db_->prepare(kReplaceReading);
      if (!upd) return upd.status();
      bind_reading(**upd, p, r);
      if (int urc = (*upd)->step(); urc != SQLITE_DONE) return db_->error(urc, "replace reading");
    }
    return Status::ok();
  }

  // Queues one item made by `make` unless the store is closed or its queue is full; the
  // refusal otherwise (the caller reports it outside the lock: a `done` may queue again).
  template <typename Make>
  Status enqueue_one(Make&& make) {
    std::lock_guard lk(mu_);
    size_t queued = shared_->queued.load();
    if (stop_) return Status::unavailable("store closed");
    if (queued + 1 > kMaxQueuedRows) return Status::busy(fmt::format("store queue full ({} rows waiting)", queued));
    shared_->queued.fetch_add(1);
    queue_.emplace_back(make());
    cv_.notify_one();
    return Status::ok();
  }

  Result<size_t> dead_letters_change(const std::string& destination, const std::string& id, const char* one,
                                     const char* all, const char* what) {
    if (destination.empty()) return Status::invalid("a destination is required");
    size_t changed = 0;
    Status s = run_on_writer([&] {
      return write_txn([&](Db& db) -> Status {
        auto st = db.prepare(id.empty() ? all : one);
        if (!st) return st.status();
        (*st)->bind_text(1, destination);
        if (!id.empty()) (*st)->bind_text(2, id);
        if (int rc = (*st)->step(); rc != SQLITE_DONE) return db.error(rc, what);
        changed = static_cast<size_t>(db.changes());
        if (!id.empty() && changed == 0)
          return Status::not_found(fmt::format("no dead letter '{}' for '{}'", id, destination));
        return Status::ok();
      });
    });
    if (!s) return s;
    return changed;
  }

  // In queue order, so ids follow it.
  Status insert_events(std::vector<core::Event>& events) {
    if (events.empty()) return Status::ok();
    auto ins = db_->prepare(kInsertEvent);
    if (!ins) return ins.status();
    StmtLease& insert = *ins;
    for (core::Event& e : events) {
      insert->bind(1, core::to_micros(e.ts));
      insert->bind_text(2, e.device);
      insert->bind_text(3, e.kind);
      insert->bind_text(4, e.payload);
      int rc = insert->step();
      sqlite3_reset(insert->get());
      if (rc != SQLITE_DONE) return db_->error(rc, "insert event");
      e.id = db_->last_insert_rowid();
      events_pending_ += 1;
    }
    return Status::ok();
  }

  // Inserts the summaries whose key is not stored yet; `fresh` gets those, in order.
  static Status insert_summaries(Db& db, const std::vector<core::Summary>& summaries, bool handoff,
                                 std::vector<core::Summary>& fresh) {
    auto ins = db.prepare(kInsertSummary);
    if (!ins) return ins.status();
    StmtLease& insert = *ins;
    for (const auto& x : summaries) {
      insert->reset();
      insert->bind_text(1, x.device);
      insert->bind_text(2, x.sensor);
      insert->bind(3, core::to_micros(x.period_start));
      insert->bind(4, core::to_micros(x.period_end));
      insert->bind_text(5, x.unit);
      insert->bind(6, static_cast<int64_t>(x.count));
      insert->bind(7, x.mean);
      insert->bind(8, x.min);
      insert->bind(9, x.max);
      insert->bind(10, x.stdev);
      insert->bind(11, x.first);
      insert->bind(12, x.last);
      insert->bind(13, int64_t{handoff ? 1 : 0});
      if (int rc = insert->step(); rc != SQLITE_DONE) return db.error(rc, "insert summary");
      if (db.changes() == 1) fresh.push_back(x);
    }
    return Status::ok();
  }

  static void bind_reading(detail::Stmt& st, const Planned& p, const core::Reading& r) {
    st.bind(1, p.series);
    st.bind(2, p.ts);
    // A text reading has value NULL; NaN is stored as NULL/NULL (SQLite has no NaN).
    if (r.is_numeric() && !std::isnan(r.value)) {
      st.bind(3, r.value);
    } else {
      st.bind_null(3);
    }
    if (r.is_numeric()) {
      st.bind_null(4);
    } else {
      st.bind_text(4, r.text);
    }
  }

  // The cached series, creating it (inside the caller's transaction) if it is new.
  Result<Series*> resolve(const std::string& device, const std::string& sensor) {
    if (auto it = series_.find(SeriesKeyView(device, sensor)); it != series_.end()) {
      return &it->second;
    }
    Series fresh;
    {
      // Not cached but maybe there: another process may have written it since we loaded.
      auto st = db_->prepare(kFindSeries);
      if (!st) return st.status();
      StmtLease& s = *st;
      s->bind_text(1, device);
      s->bind_text(2, sensor);
      int rc = s->step();
      if (rc == SQLITE_ROW) {
        fresh.id = s->int64(0);
        fresh.unit = s->text(1);
        fresh.rows = s->int64(2);
      } else if (rc != SQLITE_DONE) {
        return db_->error(rc, "find series");
      }
    }
    if (fresh.id == 0) {
      auto st = db_->prepare(kInsertSeries);
      if (!st) return st.status();
      StmtLease& s = *st;
      s->bind_text(1, device);
      s->bind_text(2, sensor);
      s->bind_text(3, "");
      if (int rc = s->step(); rc != SQLITE_DONE) return db_->error(rc, "insert series");
      fresh.id = db_->last_insert_rowid();
    }
    auto [it, inserted] = series_.emplace(SeriesKey{device, sensor}, std::move(fresh));
    by_id_[it->second.id] = &it->second;
    return &it->second;
  }

  Status set_unit(Series& series, const std::string& unit) {
    auto st = db_->prepare(kSetUnit);
    if (!st) return st.status();
    StmtLease& s = *st;
    s->bind(1, series.id);
    s->bind_text(2, unit);
    if (int rc = s->step(); rc != SQLITE_DONE) return db_->error(rc, "set unit");
    series.unit = unit;
    return Status::ok();
  }

  void account(Series& s, int64_t delta) {
    if (!s.touched) {
      s.touched = true;
      touched_.push_back(&s);
    }
    s.pending += delta;
  }

  // Ends a writer transaction: row counts, the TEST hook, COMMIT; then the in-memory state
  // (series row counts, events count) follows what was committed, or is reloaded from the
  // database after a rollback.
  Status finish(Txn& txn) {
    Status s;
    if (fail_writes_.load()) s = Status::io("write failed (TEST_fail_writes)");
    for (Series* series : touched_) {
      if (!s || series->pending == 0) continue;
      auto st = db_->prepare(kAddRowCount);
      if (!st) {
        s = st.status();
        break;
      }
      (*st)->bind(1, series->id);
      (*st)->bind(2, series->pending);
      if (int rc = (*st)->step(); rc != SQLITE_DONE) s = db_->error(rc, "update row count");
    }
    if (s) s = txn.commit();
    if (!s) return failed(s);
    for (Series* series : touched_) {
      series->rows += series->pending;
      total_rows_ += series->pending;
      series->pending = 0;
      series->touched = false;
    }
    touched_.clear();
    shared_->readings.store(static_cast<uint64_t>(std::max<int64_t>(total_rows_, 0)));
    events_ += events_pending_;
    events_pending_ = 0;
    shared_->events.store(static_cast<uint64_t>(std::max<int64_t>(events_, 0)));
    note_write(Status::ok());
    return s;
  }

  // A writer transaction failed (the Txn's destructor rolls it back): forget what the cache
  // learned in it, and report.
  Status failed(Status s) {
    touched_.clear();
    series_dirty_ = true;
    events_pending_ = 0;
    note_write(s);
    return s;
  }

  // Events are few (kMaxEvents), so one COUNT(*) at open is cheap: it walks the ts index.
  Status count_events() {
    auto st = db_->prepare(kCountEvents);
    if (!st) return st.status();
    int rc = (*st)->step();
    if (rc != SQLITE_ROW) return db_->error(rc, "count events");
    events_ = (*st)->int64(0);
    events_pending_ = 0;
    shared_->events.store(static_cast<uint64_t>(std::max<int64_t>(events_, 0)));
    return Status::ok();
  }

  Status ensure_series() { return series_dirty_ ? load_series() : Status::ok(); }

  Status load_series() {
    series_.clear();
    by_id_.clear();
    touched_.clear();
    total_rows_ = 0;
    auto st = db_->prepare(kLoadSeries);
    if (!st) return st.status();
    StmtLease& s = *st;
    int rc;
    while ((rc = s->step()) == SQLITE_ROW) {
      Series series;
      series.id = s->int64(0);
      series.unit = s->text(3);
      series.rows = s->int64(4);
      total_rows_ += series.rows;
      auto [it, inserted] = series_.emplace(SeriesKey{s->text(1), s->text(2)}, std::move(series));
      by_id_[it->second.id] = &it->second;
    }
    if (rc != SQLITE_DONE) {
      series_dirty_ = true;
      return db_->error(rc, "load series");
    }
    series_dirty_ = false;
    shared_->readings.store(static_cast<uint64_t>(std::max<int64_t>(total_rows_, 0)));
    return Status::ok();
  }

  // Keeps the failure state for logging, metrics and health(): log once when writes start
  // failing, count every failure, log once when they succeed again.
  void note_write(const Status& s) {
    if (s) {
      if (!failing_) return;
      std::lock_guard lk(health_mu_);
      spdlog::info("store: writes succeed again after {} failed transactions", failures_in_row_);
      failing_ = false;
      failures_in_row_ = 0;
      return;
    }
    if (!is_storage_failure(s)) return;
    write_errors_->inc();
    std::lock_guard lk(health_mu_);
    ++failures_in_row_;
    last_error_ = s.to_string();
    if (!failing_) {
      failing_ = true;
      failing_since_ = core::now();
      spdlog::error(
          "store: write transaction failed: {}; later writes will be retried, failures are "
          "counted in outpost_store_write_errors_total",
          last_error_);
    }
  }

  // Runs fn in a writer transaction (with the TEST hook and failure accounting): key and
  // setting writes.
  Status write_txn(const std::function<Status(Db&)>& fn) {
    Txn txn(*db_);
    if (!txn.begun()) return failed(txn.begun());
    if (auto s = fn(*db_); !s) {
      note_write(s);  // a conflict or not_found is an answer, not a storage failure
      return s;
    }
    return finish(txn);
  }

  // One rule row, inside a write transaction.
  static Status put_rule_in(Db& db, const StoredRule& r) {
    auto st = db.prepare(kPutRule);
    if (!st) return st.status();
    StmtLease& s = *st;
    s->bind_text(1, r.id);
    s->bind_text(2, r.doc);
    s->bind_text(3, r.source);
    s->bind(4, core::to_micros(r.updated));
    if (int rc = s->step(); rc != SQLITE_DONE) return db.error(rc, "put rule");
    return Status::ok();
  }

  void start_retention_pass() {
    retention_ = RetentionPass{};
    bool by_age = cfg_.readings_max_age.count() > 0;
    if (by_age) {
      auto max_age = std::chrono::duration_cast<std::chrono::microseconds>(cfg_.readings_max_age);
      retention_.cutoff = core::to_micros(core::now()) - max_age.count();
    }
    if (by_age || cfg_.readings_max_per_series > 0) {
      if (!ensure_series()) return;  // the failure is logged by the next write
      retention_.ids.reserve(by_id_.size());
      for (const auto& [id, series] : by_id_) retention_.ids.push_back(id);
      std::sort(retention_.ids.begin(), retention_.ids.end());
    }
    retention_.events = events_ > 0;  // kMaxEvents always applies
    if (cfg_.summaries_max_age.count() > 0) {
      auto max_age = std::chrono::duration_cast<std::chrono::microseconds>(cfg_.summaries_max_age);
      retention_.summaries_cutoff = core::to_micros(core::now()) - max_age.count();
      retention_.summaries = true;
    }
    retention_.active = !retention_.ids.empty() || retention_.events || retention_.summaries;
  }

  // The ts of the (n+1)-th oldest row of `series` below `before`, if there is one.
  Result<std::optional<int64_t>> nth_oldest(const Series& series, int64_t before, int64_t n) {
    auto st = db_->prepare(kNthOldestBefore);
    if (!st) return st.status();
    StmtLease& s = *st;
    s->bind(1, series.id);
    s->bind(2, before);
    s->bind(3, n);
    int rc = s->step();
    if (rc == SQLITE_ROW) return std::optional<int64_t>(s->int64(0));
    if (rc != SQLITE_DONE) return db_->error(rc, "retention");
    return std::optional<int64_t>();
  }

  Result<int64_t> delete_below(Series& series, int64_t bound) {
    auto st = db_->prepare(kDeleteBefore);
    if (!st) return st.status();
    (*st)->bind(1, series.id);
    (*st)->bind(2, bound);
    if (int rc = (*st)->step(); rc != SQLITE_DONE) return db_->error(rc, "retention delete");
    int64_t deleted = db_->changes();
    account(series, -deleted);
    return deleted;
  }

  // The (ts, id) of the (n+1)-th oldest event with ts <= max_ts, if there is one.
  Result<std::optional<std::pair<int64_t, int64_t>>> nth_oldest_event(int64_t max_ts, int64_t n) {
    using Pos = std::optional<std::pair<int64_t, int64_t>>;
    auto st = db_->prepare(kNthOldestEvent);
    if (!st) return st.status();
    StmtLease& s = *st;
    s->bind(1, max_ts);
    s->bind(2, n);
    int rc = s->step();
    if (rc == SQLITE_ROW) return Pos(std::pair(s->int64(0), s->int64(1)));
    if (rc != SQLITE_DONE) return db_->error(rc, "events retention");
    return Pos();
  }

  // Deletes the events before (ts, id) in (ts, id) order.
  Result<int64_t> delete_events_below(int64_t ts, int64_t id) {
    auto st = db_->prepare(kDeleteEventsBefore);
    if (!st) return st.status();
    (*st)->bind(1, ts);
    (*st)->bind(2, id);
    if (int rc = (*st)->step(); rc != SQLITE_DONE) return db_->error(rc, "events retention delete");
    int64_t deleted = db_->changes();
    events_pending_ -= deleted;
    return deleted;
  }

  // The events' part of a retention chunk, within `budget` rows; like one series, but over the
  // whole table and in (ts, id) order, which also settles ties in ts. Answers whether events
  // are left to delete after it.
  Result<bool> events_retention(int64_t& budget) {
    const int64_t cutoff = retention_.cutoff;
    bool more = false;
    if (cutoff != kMinTs) {
      auto bound = nth_oldest_event(cutoff - 1, budget);
      if (!bound) return bound.status();
      more = bound->has_value();
      // Without a bound: everything with ts < cutoff, that is before (cutoff, kMinId).
      auto deleted = more ? delete_events_below((*bound)->first, (*bound)->second)
                          : delete_events_below(cutoff, kMinId);
      if (!deleted) return deleted.status();
      budget -= *deleted;
    }
    int64_t excess = events_ + events_pending_ - static_cast<int64_t>(kMaxEvents);
    if (!more && excess > 0) {
      int64_t k = std::min(excess, budget);
      more = k < excess;
      if (k > 0) {
        auto bound = nth_oldest_event(kMaxTs, k);
        if (!bound) return bound.status();
        if (bound->has_value()) {
          auto deleted = delete_events_below((*bound)->first, (*bound)->second);
          if (!deleted) return deleted.status();
          budget -= *deleted;
        } else {
          // Fewer events than counted (only if something else deleted some): count for real.
          if (auto s = recount_events(); !s) return s;
          more = false;
        }
      }
    }
    return more;
  }

  Status recount_events() {
    auto st = db_->prepare(kCountEvents);
    if (!st) return st.status();
    int rc = (*st)->step();
    if (rc != SQLITE_ROW) return db_->error(rc, "count events");
    int64_t actual = (*st)->int64(0);
    spdlog::warn("store: the events table holds {} events, not {}; corrected", actual,
                 events_ + events_pending_);
    events_pending_ = actual - events_;
    return Status::ok();
  }

  Status recount(Series& series) {
    auto st = db_->prepare(kCountSeries);
    if (!st) return st.status();
    (*st)->bind(1, series.id);
    int rc = (*st)->step();
    if (rc != SQLITE_ROW) return db_->error(rc, "count series");
    int64_t actual = (*st)->int64(0);
    spdlog::warn("store: series {} holds {} readings, not {}; corrected", series.id, actual,
                 series.rows + series.pending);
    account(series, actual - (series.rows + series.pending));
    return Status::ok();
  }

  // One bounded retention transaction, continuing the current pass. `done` when the pass has
  // visited every series and then the events. Bounds come from "the ts of the (k+1)-th oldest
  // row", so a DELETE removes exactly k rows without DELETE ... LIMIT (a compile-time option of
  // SQLite).
  Status retention_chunk(bool& done) {
    done = false;
    Txn txn(*db_);
    if (!txn.begun()) return failed(txn.begun());
    if (auto s = ensure_series(); !s) return failed(s);
    const auto max_rows = static_cast<int64_t>(cfg_.readings_max_per_series);
    int64_t budget = kRetentionChunkRows;
    size_t visited = 0;
    auto& p = retention_;
    while (p.next < p.ids.size() && budget > 0 && visited < kRetentionChunkSeries) {
      auto it = by_id_.find(p.ids[p.next]);
      if (it == by_id_.end()) {
        ++p.next;
        continue;
      }
      Series& series = *it->second;
      bool more = false;  // this series still has rows to delete after this chunk
      if (p.cutoff != kMinTs) {
        // Too old: everything below the cutoff, or the oldest `budget` of it.
        auto bound = nth_oldest(series, p.cutoff, budget);
        if (!bound) return failed(bound.status());
        more = bound->has_value();
        auto deleted = delete_below(series, more ? **bound : p.cutoff);
        if (!deleted) return failed(deleted.status());
        budget -= *deleted;
      }
      int64_t excess = series.rows + series.pending - max_rows;
      if (!more && max_rows > 0 && excess > 0) {
        // Too many: the oldest `excess` rows, at most `budget` of them now.
        int64_t k = std::min(excess, budget);
        more = k < excess;
        if (k > 0) {
          auto bound = nth_oldest(series, kMaxTs, k);
          if (!bound) return failed(bound.status());
          if (bound->has_value()) {
            auto deleted = delete_below(series, **bound);
            if (!deleted) return failed(deleted.status());
            budget -= *deleted;
          } else {
            // Fewer rows than row_count says (only if something else deleted readings):
            // count this one series for real and look again in the next pass.
            if (auto s = recount(series); !s) return failed(s);
            more = false;
          }
        }
      }
      if (more) break;  // budget spent; the next chunk resumes this series
      ++p.next;
      ++visited;
    }
    if (p.next >= p.ids.size() && p.events && budget > 0) {
      auto more = events_retention(budget);
      if (!more) return failed(more.status());
      p.events = *more;
    }
    if (p.next >= p.ids.size() && !p.events && p.summaries && budget > 0) {
      // The oldest `budget` summaries before the cutoff; as many deleted as asked: maybe more.
      auto st = db_->prepare(kDeleteOldSummaries);
      if (!st) return failed(st.status());
      (*st)->bind(1, p.summaries_cutoff);
      (*st)->bind(2, budget);
      if (int rc = (*st)->step(); rc != SQLITE_DONE) return failed(db_->error(rc, "summaries retention"));
      int64_t deleted = db_->changes();
      p.summaries = deleted >= budget;
      budget -= deleted;
    }
    if (auto s = finish(txn); !s) return s;
    done = p.next >= p.ids.size() && !p.events && !p.summaries;
    return Status::ok();
  }

  const config::StoreConfig cfg_;
  std::unique_ptr<Db> db_;  // the writer connection: writer thread only (open() before that)
  mutable ReaderPool readers_;
  std::shared_ptr<Shared> shared_;

  core::Histogram local_commit_seconds_;  // used when open() got no Registry
  core::Counter local_rows_written_, local_events_written_, local_write_errors_;
  core::Histogram* commit_seconds_;
  core::Counter* rows_written_;
  core::Counter* events_written_;
  core::Counter* write_errors_;

  std::mutex mu_;  // guards queue_ and stop_
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;

  std::thread writer_;
  std::mutex close_mu_;
  bool closed_ = false;  // under close_mu_
  std::atomic<bool> fail_writes_{false};

  // Writer thread only.
  std::unordered_map<SeriesKey, Series, SeriesHash, SeriesEq> series_;
  std::unordered_map<int64_t, Series*> by_id_;
  std::vector<Series*> touched_;  // series with a pending row-count change
  bool series_dirty_ = false;     // the cache must be reloaded before its next use
  int64_t total_rows_ = 0;
  int64_t events_ = 0;          // committed events (what events_count() shows)
  int64_t events_pending_ = 0;  // change to events_ in the open transaction
  uint64_t rows_since_retention_ = 0;
  RetentionPass retention_;

  // Written by the writer, read by health().
  mutable std::mutex health_mu_;
  bool failing_ = false;
  bool closed_flag_ = false;
  core::TimePoint failing_since_;
  uint64_t failures_in_row_ = 0;
  std::string last_error_;
};

Status set_pragmas(Db& db, const config::StoreConfig& cfg) {
  auto mode = db.query_text("PRAGMA journal_mode = WAL");
  if (!mode) return mode.status();
  if (*mode != "wal") {
    return Status::unavailable("could not switch the database to WAL mode (journal_mode is '" +
                               *mode + "'); is data_dir on a local file system?");
  }
  const char* sync =
      cfg.synchronous == "full" ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL";
  if (auto s = db.exec(sync); !s) return s;
  if (cfg.max_size > 0) {
    // A quota inside the file: once the database would grow past it, writes fail with
    // SQLITE_FULL ("database or disk is full") like on a full disk, and are reported as such.
    // Deleting rows still works (freed pages are reused), so delivering the outbox makes room.
    auto page = db.query_text("PRAGMA page_size");
    if (!page) return page.status();
    uint64_t pages = std::max<uint64_t>(1, cfg.max_size / std::max<uint64_t>(1, std::stoull(*page)));
    if (auto s = db.exec(fmt::format("PRAGMA max_page_count = {}", pages).c_str()); !s) return s;
  }
  // Debian builds SQLite with SECURE_DELETE on, which zeroes every deleted row and roughly
  // doubles the I/O of retention; FAST still zeroes whenever that costs no extra I/O.
  // The writer's cache holds the hot leaf pages of many series; the WAL file is truncated back
  // to 64 MB after checkpoints so a burst does not leave a huge file on an SD card.
  return db.exec(
      "PRAGMA secure_delete = FAST;"
      "PRAGMA cache_size = -16384;"
      "PRAGMA journal_size_limit = 67108864;"
      "PRAGMA temp_store = MEMORY;");
}

}  // namespace

Result<std::unique_ptr<Store>> Store::open(const config::StoreConfig& cfg,
                                           core::Registry* metrics) {
  if (cfg.data_dir.empty()) return Status::invalid("store.data_dir is empty");
  if (cfg.batch_max == 0) return Status::invalid("store.batch_max must be at least 1");
  if (cfg.synchronous != "normal" && cfg.synchronous != "full") {
    return Status::invalid("store.synchronous must be \"normal\" or \"full\", not \"" +
                           cfg.synchronous + "\"");
  }
  std::error_code ec;
  std::filesystem::create_directories(cfg.data_dir, ec);
  if (ec) {
    return Status::io("cannot create store.data_dir '" + cfg.data_dir + "': " + ec.message());
  }
  std::string path = (std::filesystem::path(cfg.data_dir) / kDbFile).string();
  auto db = Db::open(path, Db::Mode::kReadWrite, kBusyTimeout);
  if (!db) return db.status();
  if (auto s = set_pragmas(**db, cfg); !s) return s;
  if (auto s = detail::migrate(**db); !s) return s;
  auto store = std::make_unique<SqliteStore>(cfg, path, std::move(*db), metrics);
  if (auto s = store->start(); !s) return s;
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace outpost::store
