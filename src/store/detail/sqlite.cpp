#include "store/detail/sqlite.hpp"

#include <string>

namespace outpost::store::detail {

namespace {

core::Status with_code(int rc, std::string msg) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return core::Status::busy(std::move(msg));
    case SQLITE_CONSTRAINT:
      return core::Status::conflict(std::move(msg));
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
      return core::Status::internal(std::move(msg));
    default:
      return core::Status::io(std::move(msg));
  }
}

}  // namespace

core::Status sqlite_status(int rc, sqlite3* db, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  // The connection's message is only about `rc` if it is the connection's latest error.
  if (db && (sqlite3_extended_errcode(db) & 0xff) == (rc & 0xff)) {
    msg += sqlite3_errmsg(db);
  } else {
    msg += sqlite3_errstr(rc);
  }
  return with_code(rc, std::move(msg));
}

std::string Stmt::text(int c) const {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, c));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, c))) : std::string();
}

std::string Stmt::blob(int c) const {
  auto* p = static_cast<const char*>(sqlite3_column_blob(s_, c));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, c))) : std::string();
}

core::Result<std::unique_ptr<Db>> Db::open(const std::string& path, Mode mode,
                                           std::chrono::milliseconds busy_timeout) {
  // NOMUTEX: each connection is confined to one thread at a time by its owner, so SQLite's
  // per-connection mutex would be pure overhead on every step.
  int flags =
      SQLITE_OPEN_NOMUTEX |
      (mode == Mode::kReadOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  if (rc != SQLITE_OK) {
    core::Status s = sqlite_status(rc, raw, "open " + path);
    sqlite3_close_v2(raw);
    return s;
  }
  std::unique_ptr<Db> db(new Db(raw));
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, static_cast<int>(busy_timeout.count()));
  return db;
}

Db::~Db() {
  stmts_.clear();  // finalize before close, or close_v2 keeps a zombie connection
  sqlite3_close_v2(db_);
}

core::Status Db::exec(const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return core::Status::ok();
  std::string what = err ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  return with_code(rc, std::move(what));
}

core::Result<std::string> Db::query_text(const char* sql) {
  auto st = prepare(sql);
  if (!st) return st.status();
  StmtLease& s = *st;
  int rc = s->step();
  if (rc == SQLITE_ROW) return s->text(0);
  if (rc == SQLITE_DONE) return std::string();
  return error(rc, sql);
}

core::Result<StmtLease> Db::prepare(const char* sql) {
  auto it = stmts_.find(sql);
  if (it == stmts_.end()) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(raw);
      return error(rc, std::string("prepare ") + sql);
    }
    it = stmts_.emplace(sql, std::make_unique<Stmt>(raw)).first;
  }
  return StmtLease(it->second.get());
}

Txn::Txn(Db& db) : db_(db) {
  begin_ = db_.exec("BEGIN IMMEDIATE");
  open_ = begin_.is_ok();
}

core::Status Txn::commit() {
  if (!open_)
    return begin_.is_ok() ? core::Status::internal("commit without a transaction") : begin_;
  core::Status s = db_.exec("COMMIT");
  if (s) open_ = false;
  return s;
}

void Txn::rollback() {
  if (!open_) return;
  open_ = false;
  // After some errors (SQLITE_FULL, IOERR) SQLite has already rolled back by itself, and a
  // second ROLLBACK would only fail with "no transaction is active".
  if (db_.in_transaction()) (void)db_.exec("ROLLBACK");
}

}  // namespace outpost::store::detail
