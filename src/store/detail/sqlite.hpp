// Thin RAII over the SQLite C API, for store/ only: connections with a cache of prepared
// statements, statement leases that reset on release, transactions that roll back unless
// committed, and the mapping of SQLite result codes onto core::Status.
//
// None of these types is thread-safe: one connection (and its statements) is used by one
// thread at a time. Connections are opened with SQLITE_OPEN_NOMUTEX for that reason.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/status.hpp"

namespace outpost::store::detail {

// BUSY/LOCKED → busy, CONSTRAINT → conflict, MISUSE/RANGE → internal, anything else → io.
// The message names `what` and SQLite's own explanation.
core::Status sqlite_status(int rc, sqlite3* db, std::string_view what);

// A prepared statement, owned by its Db.
class Stmt {
 public:
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  sqlite3_stmt* get() const { return s_; }

  // Binding never fails for valid indices and types; misuse shows up at step().
  void bind(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  void bind(int i, double v) { sqlite3_bind_double(s_, i, v); }
  void bind_null(int i) { sqlite3_bind_null(s_, i); }
  void bind_text(int i, std::string_view v) {
    sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
  }
  void bind_blob(int i, std::string_view v) {
    sqlite3_bind_blob64(s_, i, v.data(), v.size(), SQLITE_STATIC);
  }

  int step() { return sqlite3_step(s_); }

  bool is_null(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  int64_t int64(int c) const { return sqlite3_column_int64(s_, c); }
  double real(int c) const { return sqlite3_column_double(s_, c); }
  std::string text(int c) const;
  std::string blob(int c) const;

  // Ends the statement's use: releases its read snapshot and the bound (borrowed) buffers.
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }

 private:
  sqlite3_stmt* s_;
};

// A statement in use; resets it when it goes away, so that no statement keeps a read
// transaction (and the WAL snapshot it pins) open past its use. Bound text and blobs are
// SQLITE_STATIC: they must outlive the lease.
class StmtLease {
 public:
  explicit StmtLease(Stmt* s) : s_(s) {}
  StmtLease(StmtLease&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  StmtLease& operator=(StmtLease&&) = delete;
  ~StmtLease() {
    if (s_) s_->reset();
  }
  Stmt* operator->() const { return s_; }
  Stmt& operator*() const { return *s_; }

 private:
  Stmt* s_;
};

class Db {
 public:
  enum class Mode { kReadWrite, kReadOnly };

  // Opens (kReadWrite: creates) the database at `path` and sets the busy timeout.
  static core::Result<std::unique_ptr<Db>> open(const std::string& path, Mode mode,
                                                std::chrono::milliseconds busy_timeout);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* handle() const { return db_; }

  // Runs one or more statements that return no rows we need.
  core::Status exec(const char* sql);
  // The first column of the first row of a query (e.g. a PRAGMA), as text.
  core::Result<std::string> query_text(const char* sql);

  // The statement for `sql`, prepared once per connection and reused (SQLITE_PREPARE_PERSISTENT).
  // `sql` must be a string literal or otherwise outlive the Db: the cache is keyed by pointer.
  core::Result<StmtLease> prepare(const char* sql);

  core::Status error(int rc, std::string_view what) const { return sqlite_status(rc, db_, what); }
  int64_t changes() const { return sqlite3_changes64(db_); }
  int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
  bool in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<const char*, std::unique_ptr<Stmt>> stmts_;
};

// BEGIN IMMEDIATE on construction (takes the write lock up front, so the busy timeout applies
// instead of a deadlock-avoiding SQLITE_BUSY when a read would later upgrade to a write).
// Rolls back in the destructor unless commit() succeeded.
class Txn {
 public:
  explicit Txn(Db& db);
  ~Txn() { rollback(); }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  const core::Status& begun() const { return begin_; }
  core::Status commit();
  void rollback();

 private:
  Db& db_;
  core::Status begin_;
  bool open_ = false;
};

}  // namespace outpost::store::detail
