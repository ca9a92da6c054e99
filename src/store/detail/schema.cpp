#include "store/detail/schema.hpp"

#include <fmt/format.h>

#include <string>

namespace outpost::store::detail {

namespace {

struct Migration {
  int version;
  const char* sql;
};

// Append only: a released migration never changes, a new one gets the next version.
//
// readings is WITHOUT ROWID and clustered on (series, ts): a batch sorted by that key writes a
// few neighbouring B-tree pages per series instead of scattering over a rowid table plus a
// secondary index (PERFORMANCE-NOTES: 675k vs 43k rows/s). ts is microseconds since the epoch.
// A numeric reading has text NULL; a text reading has value NULL; both NULL is a NaN.
//
// series.row_count is kept by the writer in the same transaction as the rows it counts, so
// readings_count() survives restarts without a COUNT(*) over millions of rows.
//
// The keys triggers bump meta.keys_generation inside whichever transaction changes keys, in
// whichever process (our CLI, or someone with the sqlite3 shell), so a cheap read of one row
// tells a running server that its cached keys are stale.
//
// Version 2: settings and events.
//
// events ids are AUTOINCREMENT: never reused, not even after retention has emptied the table, so
// an id a client holds (a paging cursor, a reference to "that alert") never comes to mean another
// event; the price is one row of sqlite_sequence per insert, nothing at the rate events come.
// Events are read and deleted in (ts, id) order, which the indexes give without a sort (an index
// ends with the rowid): by time over all events (and retention), by kind, by device. Each index
// costs a B-tree insert per event; at events' rate (a few per second at most, where readings
// come by the thousand) that is cheaper than a query scanning 100k events for one kind or device.
constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE series (
  id        INTEGER PRIMARY KEY,
  device    TEXT NOT NULL,
  sensor    TEXT NOT NULL,
  unit      TEXT NOT NULL DEFAULT '',
  row_count INTEGER NOT NULL DEFAULT 0,
  UNIQUE (device, sensor)
);
CREATE TABLE readings (
  series INTEGER NOT NULL,
  ts     INTEGER NOT NULL,
  value  REAL,
  text   TEXT,
  PRIMARY KEY (series, ts)
) WITHOUT ROWID;
CREATE TABLE keys (
  id      TEXT PRIMARY KEY,
  name    TEXT NOT NULL,
  scope   TEXT NOT NULL,
  hash    BLOB NOT NULL CHECK (length(hash) = 32),
  created INTEGER NOT NULL,
  revoked INTEGER
);
CREATE INDEX keys_by_name ON keys (name);
CREATE TABLE meta (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('keys_generation', 0);
CREATE TRIGGER keys_generation_insert AFTER INSERT ON keys BEGIN
  UPDATE meta SET value = value + 1 WHERE name = 'keys_generation';
END;
CREATE TRIGGER keys_generation_update AFTER UPDATE ON keys BEGIN
  UPDATE meta SET value = value + 1 WHERE name = 'keys_generation';
END;
CREATE TRIGGER keys_generation_delete AFTER DELETE ON keys BEGIN
  UPDATE meta SET value = value + 1 WHERE name = 'keys_generation';
END;
)sql"},
    {2, R"sql(
CREATE TABLE settings (
  name  TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE events (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  ts      INTEGER NOT NULL,
  device  TEXT NOT NULL,
  kind    TEXT NOT NULL,
  payload TEXT NOT NULL
);
CREATE INDEX events_by_ts ON events (ts);
CREATE INDEX events_by_kind ON events (kind, ts);
CREATE INDEX events_by_device ON events (device, ts);
)sql"},
    // Version 3: the hub's devices, one JSON document each, written behind the registry.
    {3, R"sql(
CREATE TABLE devices (
  id      TEXT PRIMARY KEY,
  doc     TEXT NOT NULL,
  updated INTEGER NOT NULL
) WITHOUT ROWID;
)sql"},
    // Version 4: windowed summaries (edge/aggregator), one per (device, sensor, period_start);
    // times in microseconds since the epoch. The primary key serves one series' queries in
    // time order; summaries_by_device one device's; summaries_by_start the queries over all
    // devices and retention. handoff = 1 marks a summary its consumer (the outbox) has not
    // confirmed yet: the partial index holds only those, so it stays tiny.
    {4, R"sql(
CREATE TABLE summaries (
  device       TEXT NOT NULL,
  sensor       TEXT NOT NULL,
  period_start INTEGER NOT NULL,
  period_end   INTEGER NOT NULL,
  unit         TEXT NOT NULL DEFAULT '',
  count        INTEGER NOT NULL,
  mean         REAL NOT NULL,
  min          REAL NOT NULL,
  max          REAL NOT NULL,
  stdev        REAL NOT NULL,
  first        REAL NOT NULL,
  last         REAL NOT NULL,
  handoff      INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (device, sensor, period_start)
);
CREATE INDEX summaries_by_device ON summaries (device, period_start, sensor);
CREATE INDEX summaries_by_start ON summaries (period_start, device, sensor);
CREATE INDEX summaries_pending_handoff ON summaries (period_start, device, sensor) WHERE handoff = 1;
)sql"},
    // Version 5: local rules, one JSON document each (edge/rules owns its shape), from the config
    // file (rewritten at every start) or the API.
    {5, R"sql(
CREATE TABLE rules (
  id      TEXT PRIMARY KEY,
  doc     TEXT NOT NULL,
  source  TEXT NOT NULL CHECK (source IN ('config', 'api')),
  updated INTEGER NOT NULL
) WITHOUT ROWID;
)sql"},
    // Version 6: the upstream outbox and the ids of messages ingested from edges.
    //
    // outbox: one row per message and destination; seq (AUTOINCREMENT: never reused, even
    // after the table was emptied) is the delivery order. outbox_pending serves "the oldest
    // pending of a destination" and "its dead letters" straight off the index. outbox_totals
    // is kept by triggers in whichever transaction changes the outbox, so the cap check and
    // the API read one row per destination instead of counting a backlog of 100k rows; the
    // writer adds `delivered` and `dropped` itself (a trigger cannot tell why a row went).
    //
    // ingested: (source, id) of every message stored by POST /api/ingest, in the same
    // transaction as what it carried, so a retry is recognised even after a crash. Kept for
    // kIngestIdsMaxAge (by `received`).
    {6, R"sql(
CREATE TABLE outbox (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  destination  TEXT NOT NULL,
  id           TEXT NOT NULL,
  kind         TEXT NOT NULL,
  content_type TEXT NOT NULL,
  body         BLOB NOT NULL,
  created      INTEGER NOT NULL,
  attempts     INTEGER NOT NULL DEFAULT 0,
  last_error   TEXT NOT NULL DEFAULT '',
  dead         INTEGER NOT NULL DEFAULT 0,
  dead_at      INTEGER,
  UNIQUE (destination, id)
);
CREATE INDEX outbox_pending ON outbox (destination, dead, seq);
CREATE TABLE outbox_totals (
  destination TEXT PRIMARY KEY,
  messages    INTEGER NOT NULL DEFAULT 0,
  bytes       INTEGER NOT NULL DEFAULT 0,
  dead        INTEGER NOT NULL DEFAULT 0,
  delivered   INTEGER NOT NULL DEFAULT 0,
  dropped     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TRIGGER outbox_totals_insert AFTER INSERT ON outbox BEGIN
  INSERT INTO outbox_totals (destination, messages, bytes, dead)
    VALUES (new.destination, 1, length(new.body), new.dead)
    ON CONFLICT (destination) DO UPDATE SET messages = messages + 1,
      bytes = bytes + length(new.body), dead = dead + new.dead;
END;
CREATE TRIGGER outbox_totals_delete AFTER DELETE ON outbox BEGIN
  UPDATE outbox_totals SET messages = messages - 1, bytes = bytes - length(old.body),
    dead = dead - old.dead WHERE destination = old.destination;
END;
CREATE TRIGGER outbox_totals_dead AFTER UPDATE OF dead ON outbox WHEN new.dead != old.dead BEGIN
  UPDATE outbox_totals SET dead = dead + new.dead - old.dead WHERE destination = new.destination;
END;
CREATE TABLE ingested (
  source   TEXT NOT NULL,
  id       TEXT NOT NULL,
  received INTEGER NOT NULL,
  PRIMARY KEY (source, id)
) WITHOUT ROWID;
CREATE INDEX ingested_by_received ON ingested (received);
)sql"},
};

static_assert(std::size(kMigrations) == kSchemaVersion, "one migration per schema version");

}  // namespace

core::Status migrate(Db& db) {
  Txn txn(db);
  if (!txn.begun()) return txn.begun();
  auto version_text = db.query_text("PRAGMA user_version");
  if (!version_text) return version_text.status();
  int version = std::stoi(*version_text);
  if (version > kSchemaVersion) {
    return core::Status::unavailable(
        fmt::format("database schema version {} is newer than this build understands ({}); "
                    "run a newer outpost or restore a backup",
                    version, kSchemaVersion));
  }
  if (version == kSchemaVersion) return core::Status::ok();
  for (const auto& m : kMigrations) {
    if (m.version <= version) continue;
    if (auto s = db.exec(m.sql); !s) {
      return core::Status::io(
          fmt::format("schema migration to version {}: {}", m.version, s.message()));
    }
  }
  // PRAGMA takes no bound parameters; the value is our own constant.
  if (auto s = db.exec(fmt::format("PRAGMA user_version = {}", kSchemaVersion).c_str()); !s) {
    return s;
  }
  return txn.commit();
}

}  // namespace outpost::store::detail
