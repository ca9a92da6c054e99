#include "store/store.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store/detail/schema.hpp"

namespace outpost::store {
namespace {

namespace fs = std::filesystem;
using core::Code;
using core::Event;
using core::Reading;
using core::Result;
using core::Status;

constexpr int64_t kSecond = 1'000'000;
// An hour ago, whole seconds: recent enough for the default 30-day retention.
const int64_t kBase = (core::to_micros(core::now()) / kSecond - 3600) * kSecond;

Reading reading(const std::string& device, const std::string& sensor, int64_t ts_us, double value,
                const std::string& unit = "") {
  Reading r;
  r.device = device;
  r.sensor = sensor;
  r.ts = core::from_micros(ts_us);
  r.value = value;
  r.unit = unit;
  return r;
}

std::string sensor(int i) { return fmt::format("s{}", i); }

// `n` numeric readings one second apart from `start`, value = index.
std::vector<Reading> series_rows(const std::string& device, const std::string& sensor,
                                 int64_t start, int n) {
  std::vector<Reading> out;
  for (int i = 0; i < n; ++i) out.push_back(reading(device, sensor, start + i * kSecond, i));
  return out;
}

ApiKey key(const std::string& id, const std::string& name, const std::string& scope = "read") {
  ApiKey k;
  k.id = id;
  k.name = name;
  k.scope = scope;
  k.hash = std::string(32, static_cast<char>(id.size()));
  k.created = core::now();
  return k;
}

Event event(const std::string& device, const std::string& kind, int64_t ts_us,
            const std::string& payload = "{}") {
  Event e;
  e.device = device;
  e.kind = kind;
  e.ts = core::from_micros(ts_us);
  e.payload = payload;
  return e;
}

std::vector<int64_t> ids(const std::vector<Event>& events) {
  std::vector<int64_t> out;
  for (const auto& e : events) out.push_back(e.id);
  return out;
}

// Ascending by (ts, id), as every events query answers.
bool ascending(const std::vector<Event>& events) {
  return std::is_sorted(events.begin(), events.end(), [](const Event& a, const Event& b) {
    return std::pair(a.ts, a.id) < std::pair(b.ts, b.id);
  });
}

std::vector<int64_t> times(const std::vector<Reading>& rows) {
  std::vector<int64_t> out;
  for (const auto& r : rows) out.push_back(core::to_micros(r.ts));
  return out;
}

bool ascending(const std::vector<Reading>& rows) {
  auto t = times(rows);
  return std::is_sorted(t.begin(), t.end());
}

// The value of an unlabelled counter in a rendered registry; -1 if absent.
double metric(const core::Registry& r, const std::string& name) {
  std::string text = r.render();
  size_t at = text.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + name.size() + 2));
}

core::Summary summary(const std::string& device, const std::string& sensor, int64_t start_us, double mean,
                      int64_t width_us = 300 * kSecond) {
  core::Summary x;
  x.device = device;
  x.sensor = sensor;
  x.unit = "Cel";
  x.period_start = core::from_micros(start_us);
  x.period_end = core::from_micros(start_us + width_us);
  x.count = 3;
  x.mean = mean;
  x.min = mean - 1;
  x.max = mean + 1;
  x.stdev = 1;
  x.first = mean - 1;
  x.last = mean + 1;
  return x;
}

// append_summaries and wait for its `done`.
Result<std::vector<core::Summary>> append_summaries_sync(Store& store, std::vector<core::Summary> xs,
                                                         bool handoff = false) {
  std::promise<Result<std::vector<core::Summary>>> p;
  auto f = p.get_future();
  store.append_summaries(std::move(xs), handoff, [&p](Result<std::vector<core::Summary>> r) { p.set_value(std::move(r)); });
  return f.get();
}

std::vector<std::string> keys_of(const std::vector<core::Summary>& xs) {
  std::vector<std::string> out;
  for (const auto& x : xs) out.push_back(fmt::format("{}/{}@{}", x.device, x.sensor, (core::to_micros(x.period_start) - kBase) / kSecond));
  return out;
}

// A one-shot gate, to hold the writer thread inside a `done` callback.
class Gate {
 public:
  void open() {
    std::lock_guard lk(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "outpost-store-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    cfg_.data_dir = (root_ / "var" / "data").string();  // does not exist yet
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  std::unique_ptr<Store> open(core::Registry* metrics = nullptr) {
    auto r = Store::open(cfg_, metrics);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? std::move(r).value() : nullptr;
  }

  // A PRAGMA or one-value query on the database file, through a separate connection.
  std::string sql_value(const std::string& sql) {
    sqlite3* db = nullptr;
    std::string out;
    EXPECT_EQ(sqlite3_open((fs::path(cfg_.data_dir) / "outpost.db").c_str(), &db), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sql;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }

  // Runs SQL (several statements) on the database file, creating it and data_dir if needed.
  void sql_exec(const std::string& sql) {
    fs::create_directories(cfg_.data_dir);
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((fs::path(cfg_.data_dir) / "outpost.db").c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
        << (err ? err : "") << "\n"
        << sql;
    sqlite3_free(err);
    sqlite3_close(db);
  }

  fs::path root_;
  config::StoreConfig cfg_;
};

TEST_F(StoreTest, OpenCreatesDataDirInWalMode) {
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_TRUE(fs::is_directory(cfg_.data_dir));
  EXPECT_TRUE(fs::exists(fs::path(cfg_.data_dir) / "outpost.db"));
  EXPECT_EQ(sql_value("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(sql_value("PRAGMA user_version"), std::to_string(detail::kSchemaVersion));
  Health h = store->health();
  EXPECT_TRUE(h.ok) << h.detail;
  EXPECT_EQ(h.readings, 0u);
}

TEST_F(StoreTest, ReopenKeepsDataAndMigrationsAreIdempotent) {
  for (int round = 0; round < 3; ++round) {
    auto store = open();
    ASSERT_TRUE(store);
    EXPECT_EQ(store->readings_count(), static_cast<uint64_t>(round * 10));
    ASSERT_TRUE(store->append_sync(series_rows("d", "s", kBase + round * 100 * kSecond, 10)));
    store->close();
    EXPECT_EQ(sql_value("PRAGMA user_version"), std::to_string(detail::kSchemaVersion));
    EXPECT_EQ(sql_value("SELECT count(*) FROM sqlite_master WHERE name = 'readings'"), "1");
    EXPECT_EQ(sql_value("SELECT count(*) FROM meta"), "1");
  }
}

TEST_F(StoreTest, RefusesADatabaseFromANewerBuild) {
  open()->close();
  sql_value("PRAGMA user_version = 99");
  auto r = Store::open(cfg_, nullptr);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("99"), std::string::npos) << r.status().message();
}

TEST_F(StoreTest, RejectsInvalidConfig) {
  auto bad = cfg_;
  bad.synchronous = "sometimes";
  EXPECT_EQ(Store::open(bad, nullptr).status().code(), Code::kInvalid);
  bad = cfg_;
  bad.batch_max = 0;
  EXPECT_EQ(Store::open(bad, nullptr).status().code(), Code::kInvalid);
  bad = cfg_;
  bad.synchronous = "full";
  EXPECT_TRUE(Store::open(bad, nullptr).is_ok());
}

TEST_F(StoreTest, QueriesNewestOldestRangeAndLimitInAscendingOrder) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->append_sync(series_rows("dev", "temp", kBase, 100)));
  auto at = [](int i) { return kBase + i * kSecond; };

  ReadingQuery q{.device = "dev", .sensor = "temp", .limit = 10};
  auto newest = store->query(q);
  ASSERT_TRUE(newest.is_ok()) << newest.status().to_string();
  ASSERT_EQ(newest->size(), 10u);
  EXPECT_EQ(core::to_micros(newest->front().ts), at(90));
  EXPECT_EQ(core::to_micros(newest->back().ts), at(99));
  EXPECT_TRUE(ascending(*newest));
  EXPECT_EQ(newest->back().value, 99);
  EXPECT_EQ(newest->back().device, "dev");
  EXPECT_EQ(newest->back().sensor, "temp");

  q.newest = false;
  auto oldest = store->query(q);
  ASSERT_TRUE(oldest.is_ok());
  ASSERT_EQ(oldest->size(), 10u);
  EXPECT_EQ(core::to_micros(oldest->front().ts), at(0));
  EXPECT_EQ(core::to_micros(oldest->back().ts), at(9));

  // Inclusive bounds.
  q.from = core::from_micros(at(20));
  q.to = core::from_micros(at(29));
  q.limit = 50;
  auto range = store->query(q);
  ASSERT_TRUE(range.is_ok());
  ASSERT_EQ(range->size(), 10u);
  EXPECT_EQ(core::to_micros(range->front().ts), at(20));
  EXPECT_EQ(core::to_micros(range->back().ts), at(29));

  q.limit = 3;
  q.newest = true;
  auto tail = store->query(q);
  ASSERT_TRUE(tail.is_ok());
  EXPECT_EQ(times(*tail), (std::vector<int64_t>{at(27), at(28), at(29)}));

  q.from.reset();
  q.to = core::from_micros(at(4));
  q.limit = 100;
  auto head = store->query(q);
  ASSERT_TRUE(head.is_ok());
  EXPECT_EQ(head->size(), 5u);

  q.limit = 0;
  EXPECT_TRUE(store->query(q)->empty());

  q.limit = 10;
  q.from = core::from_micros(at(50));
  q.to = core::from_micros(at(40));
  EXPECT_EQ(store->query(q).status().code(), Code::kInvalid);

  auto unknown = store->query(ReadingQuery{.device = "nope", .sensor = "temp"});
  ASSERT_TRUE(unknown.is_ok());
  EXPECT_TRUE(unknown->empty());
}

TEST_F(StoreTest, KeepsNumericTextAndNanValuesAndUnits) {
  auto store = open();
  ASSERT_TRUE(store);
  std::vector<Reading> rows;
  rows.push_back(reading("d", "temp", kBase, 21.5, "°C"));
  rows.push_back(reading("d", "temp", kBase + kSecond, std::nan(""), "°C"));
  Reading text = reading("d", "status", kBase, 0);
  text.text = "door open";
  rows.push_back(text);
  Reading vec = reading("d", "accel", kBase, 0, "m/s2");
  vec.text = "[0.1,0.2,9.8]";
  rows.push_back(vec);
  rows.push_back(reading("d", "zero", kBase, 0));
  ASSERT_TRUE(store->append_sync(rows));

  auto temp = store->query({.device = "d", .sensor = "temp"});
  ASSERT_TRUE(temp.is_ok());
  ASSERT_EQ(temp->size(), 2u);
  EXPECT_TRUE((*temp)[0].is_numeric());
  EXPECT_EQ((*temp)[0].value, 21.5);
  EXPECT_EQ((*temp)[0].unit, "°C");
  EXPECT_TRUE(std::isnan((*temp)[1].value));
  EXPECT_TRUE((*temp)[1].is_numeric());

  auto status = store->query({.device = "d", .sensor = "status"});
  ASSERT_EQ(status->size(), 1u);
  EXPECT_FALSE((*status)[0].is_numeric());
  EXPECT_EQ((*status)[0].text, "door open");
  EXPECT_EQ((*status)[0].value, 0);

  auto accel = store->query({.device = "d", .sensor = "accel"});
  ASSERT_EQ(accel->size(), 1u);
  EXPECT_EQ((*accel)[0].text, "[0.1,0.2,9.8]");
  EXPECT_EQ((*accel)[0].unit, "m/s2");

  auto zero = store->query({.device = "d", .sensor = "zero"});
  ASSERT_EQ(zero->size(), 1u);
  EXPECT_EQ((*zero)[0].value, 0);  // 0 is a value, not NaN
  EXPECT_TRUE((*zero)[0].is_numeric());

  // The unit belongs to the series: the latest non-empty one wins, an empty one keeps it.
  ASSERT_TRUE(store->append_sync({reading("d", "temp", kBase + 2 * kSecond, 70, "°F")}));
  ASSERT_TRUE(store->append_sync({reading("d", "temp", kBase + 3 * kSecond, 71)}));
  auto again = store->query({.device = "d", .sensor = "temp", .limit = 1});
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ((*again)[0].unit, "°F");
}

TEST_F(StoreTest, KeepsSeriesApart) {
  auto store = open();
  ASSERT_TRUE(store);
  std::vector<Reading> rows;
  for (int i = 0; i < 30; ++i) {
    // Interleaved, and the same timestamps in every series.
    rows.push_back(reading("a", "temp", kBase + i * kSecond, 1));
    rows.push_back(reading("a", "hum", kBase + i * kSecond, 2));
    rows.push_back(reading("b", "temp", kBase + i * kSecond, 3));
  }
  ASSERT_TRUE(store->append_sync(rows));
  EXPECT_EQ(store->readings_count(), 90u);
  for (auto [device, sensor, value] :
       {std::tuple{"a", "temp", 1.0}, std::tuple{"a", "hum", 2.0}, std::tuple{"b", "temp", 3.0}}) {
    auto got = store->query({.device = device, .sensor = sensor, .limit = 100});
    ASSERT_TRUE(got.is_ok());
    ASSERT_EQ(got->size(), 30u) << device << "/" << sensor;
    for (const auto& r : *got) {
      EXPECT_EQ(r.value, value);
      EXPECT_EQ(r.device, device);
    }
  }
  EXPECT_TRUE(store->query({.device = "b", .sensor = "hum"})->empty());
}

TEST_F(StoreTest, SameSeriesAndTimestampTwiceTheLaterWins) {
  auto store = open();
  ASSERT_TRUE(store);
  // Within one batch (and out of order)...
  ASSERT_TRUE(store->append_sync(
      {reading("d", "s", kBase + kSecond, 1), reading("d", "s", kBase, 5),
       reading("d", "s", kBase + kSecond, 2), reading("d", "s", kBase + kSecond, 3)}));
  // ...and across batches.
  ASSERT_TRUE(store->append_sync({reading("d", "s", kBase, 6)}));
  auto got = store->query({.device = "d", .sensor = "s", .newest = false});
  ASSERT_TRUE(got.is_ok());
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].value, 6);
  EXPECT_EQ((*got)[1].value, 3);
  EXPECT_EQ(store->readings_count(), 2u);  // a replaced row is not counted twice
  store->close();
  EXPECT_EQ(open()->readings_count(), 2u);
}

TEST_F(StoreTest, SplitsAppendsLargerThanABatchAndCountsSurviveRestarts) {
  cfg_.batch_max = 64;
  core::Registry metrics;
  {
    auto store = open(&metrics);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->append_sync(series_rows("d", "a", kBase, 1000)));
    ASSERT_TRUE(store->append_sync(series_rows("d", "b", kBase, 10)));
    EXPECT_EQ(store->readings_count(), 1010u);
    auto got = store->query({.device = "d", .sensor = "a", .limit = 2000});
    EXPECT_EQ(got->size(), 1000u);
    std::string text = metrics.render();
    EXPECT_NE(text.find("outpost_store_rows_written_total 1010\n"), std::string::npos) << text;
    EXPECT_NE(text.find("outpost_readings_stored 1010\n"), std::string::npos) << text;
    EXPECT_NE(text.find("outpost_store_queue_depth 0\n"), std::string::npos) << text;
    // 1000 rows in batches of 64 is 16 transactions, plus 1.
    EXPECT_NE(text.find("outpost_store_commit_seconds_count 17\n"), std::string::npos) << text;
  }
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->readings_count(), 1010u);
  EXPECT_EQ(store->health().readings, 1010u);
}

TEST_F(StoreTest, RetentionByCountKeepsTheNewestPerSeries) {
  cfg_.readings_max_per_series = 100;
  cfg_.batch_max = 64;
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->append_sync(series_rows("d", "a", kBase, 250)));
  ASSERT_TRUE(store->append_sync(series_rows("d", "b", kBase, 50)));
  ASSERT_TRUE(store->enforce_retention());
  EXPECT_EQ(store->readings_count(), 150u);
  auto a = store->query({.device = "d", .sensor = "a", .limit = 1000, .newest = false});
  ASSERT_EQ(a->size(), 100u);
  EXPECT_EQ(core::to_micros(a->front().ts), kBase + 150 * kSecond);
  EXPECT_EQ(store->query({.device = "d", .sensor = "b", .limit = 1000})->size(), 50u);
  store->close();
  EXPECT_EQ(open()->readings_count(), 150u);
  EXPECT_EQ(sql_value("SELECT count(*) FROM readings"), "150");
}

TEST_F(StoreTest, RetentionDeletesInBoundedChunksUntilDone) {
  cfg_.readings_max_per_series = 10;
  cfg_.batch_max = 5000;
  auto store = open();
  ASSERT_TRUE(store);
  // More than one retention chunk (5000 rows) of excess, in each of two series.
  ASSERT_TRUE(store->append_sync(series_rows("d", "a", kBase, 12'000)));
  ASSERT_TRUE(store->append_sync(series_rows("d", "b", kBase, 6'000)));
  ASSERT_TRUE(store->enforce_retention());
  EXPECT_EQ(store->readings_count(), 20u);
  EXPECT_EQ(sql_value("SELECT count(*) FROM readings"), "20");
  auto a = store->query({.device = "d", .sensor = "a", .newest = false});
  ASSERT_EQ(a->size(), 10u);
  EXPECT_EQ(core::to_micros(a->front().ts), kBase + 11'990 * kSecond);
}

TEST_F(StoreTest, RetentionByAgeDropsOldRows) {
  cfg_.readings_max_age = std::chrono::hours(1);
  auto store = open();
  ASSERT_TRUE(store);
  int64_t now = core::to_micros(core::now());
  ASSERT_TRUE(store->append_sync(series_rows("d", "s", now - 3 * 3600 * kSecond, 100)));
  ASSERT_TRUE(store->append_sync(series_rows("d", "s", now - 60 * kSecond, 10)));
  ASSERT_TRUE(store->append_sync(series_rows("d", "old", now - 5 * 3600 * kSecond, 7)));
  ASSERT_TRUE(store->enforce_retention());
  EXPECT_EQ(store->readings_count(), 10u);
  auto got = store->query({.device = "d", .sensor = "s", .limit = 1000, .newest = false});
  ASSERT_EQ(got->size(), 10u);
  EXPECT_EQ(core::to_micros(got->front().ts), now - 60 * kSecond);
  EXPECT_TRUE(store->query({.device = "d", .sensor = "old"})->empty());
  store->close();
  EXPECT_EQ(open()->readings_count(), 10u);
}

TEST_F(StoreTest, RetentionRunsByItselfAfterManyRows) {
  cfg_.readings_max_per_series = 1000;
  auto store = open();
  ASSERT_TRUE(store);
  // 100k inserted rows start a pass without waiting for the timer (60 s, first 5 s after open).
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(store->append_sync(series_rows("d", "s", kBase + i * 10'000 * kSecond, 10'000)));
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (store->readings_count() != 1000u && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(store->readings_count(), 1000u);
}

TEST_F(StoreTest, InsertsFindsListsAndRevokesKeys) {
  auto store = open();
  ASSERT_TRUE(store);
  ApiKey admin = key("k1", "ops", "admin");
  admin.created = core::from_micros(kBase);
  ASSERT_TRUE(store->insert_key(admin));
  ApiKey reader = key("k2", "dashboard", "read");
  reader.created = core::from_micros(kBase + kSecond);
  ASSERT_TRUE(store->insert_key(reader));

  EXPECT_EQ(store->insert_key(key("k1", "other")).code(), Code::kConflict);
  EXPECT_EQ(store->insert_key(key("k9", "x", "superuser")).code(), Code::kInvalid);
  ApiKey short_hash = key("k9", "x");
  short_hash.hash = "abc";
  EXPECT_EQ(store->insert_key(short_hash).code(), Code::kInvalid);
  EXPECT_EQ(store->insert_key(key("", "x")).code(), Code::kInvalid);

  auto found = store->find_key("k1");
  ASSERT_TRUE(found.is_ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->name, "ops");
  EXPECT_EQ((*found)->scope, "admin");
  EXPECT_EQ((*found)->hash, admin.hash);
  EXPECT_EQ((*found)->created, admin.created);
  EXPECT_FALSE((*found)->revoked);
  EXPECT_FALSE(store->find_key("nope")->has_value());

  // By name, then by id; a second revocation says why it fails.
  ASSERT_TRUE(store->revoke_key("dashboard"));
  Status again = store->revoke_key("k2");
  EXPECT_EQ(again.code(), Code::kNotFound);
  EXPECT_NE(again.message().find("already revoked"), std::string::npos) << again.message();
  Status by_name = store->revoke_key("dashboard");
  EXPECT_EQ(by_name.code(), Code::kNotFound);
  EXPECT_NE(by_name.message().find("already revoked"), std::string::npos);
  Status unknown = store->revoke_key("ghost");
  EXPECT_EQ(unknown.code(), Code::kNotFound);
  EXPECT_NE(unknown.message().find("no API key"), std::string::npos);

  // An ambiguous name revokes nothing.
  ASSERT_TRUE(store->insert_key(key("k3", "ops")));
  EXPECT_EQ(store->revoke_key("ops").code(), Code::kConflict);
  ASSERT_TRUE(store->revoke_key("k3"));
  ASSERT_TRUE(store->revoke_key("ops"));  // now only k1 is active under that name

  auto list = store->list_keys();
  ASSERT_TRUE(list.is_ok());
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].id, "k1");  // oldest first
  EXPECT_EQ((*list)[1].id, "k2");
  EXPECT_EQ((*list)[2].id, "k3");
  for (const auto& k : *list) EXPECT_TRUE(k.revoked) << k.id;
}

TEST_F(StoreTest, KeysGenerationSeesChangesFromAnotherProcess) {
  auto server = open();
  ASSERT_TRUE(server);
  auto cli = open();  // a second instance on the same file, as the `outpost keys` CLI would be
  ASSERT_TRUE(cli);
  auto g0 = server->keys_generation();
  ASSERT_TRUE(g0.is_ok()) << g0.status().to_string();
  EXPECT_EQ(*server->keys_generation(), *g0);  // stable while nothing changes
  ASSERT_TRUE(server->append_sync(series_rows("d", "s", kBase, 10)));
  EXPECT_EQ(*server->keys_generation(), *g0);  // readings are not keys

  ASSERT_TRUE(cli->insert_key(key("fromcli", "cli")));
  auto g1 = server->keys_generation();
  ASSERT_TRUE(g1.is_ok());
  EXPECT_NE(*g1, *g0);
  EXPECT_TRUE(server->find_key("fromcli")->has_value());

  ASSERT_TRUE(cli->revoke_key("fromcli"));
  EXPECT_NE(*server->keys_generation(), *g1);
  EXPECT_TRUE((*server->find_key("fromcli"))->revoked);

  // A failed change changes nothing.
  auto g2 = *server->keys_generation();
  EXPECT_EQ(cli->insert_key(key("fromcli", "dup")).code(), Code::kConflict);
  EXPECT_EQ(*server->keys_generation(), g2);
}

TEST_F(StoreTest, FlushWaitsForEverythingQueuedBefore) {
  cfg_.batch_max = 100;
  auto store = open();
  ASSERT_TRUE(store);
  std::atomic<int> committed{0};
  for (int i = 0; i < 50; ++i) {
    store->append(series_rows("d", sensor(i % 5), kBase + i * 1000 * kSecond, 300), [&](Status s) {
      EXPECT_TRUE(s) << s.to_string();
      committed.fetch_add(1);
    });
  }
  ASSERT_TRUE(store->flush());
  EXPECT_EQ(committed.load(), 50);
  EXPECT_EQ(store->readings_count(), 15'000u);
  EXPECT_EQ(store->health().queue_depth, 0u);
}

TEST_F(StoreTest, FailedWritesReportTheErrorAndLaterWritesSucceed) {
  core::Registry metrics;
  cfg_.batch_max = 10;
  auto store = open(&metrics);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->append_sync(series_rows("d", "s", kBase, 5)));

  store->TEST_fail_writes(true);
  Status s = store->append_sync(series_rows("d", "s", kBase + 100 * kSecond, 5));
  EXPECT_EQ(s.code(), Code::kIo) << s.to_string();
  // A split append fails once, as a whole (its later parts are dropped, not retried).
  std::atomic<int> calls{0};
  store->append(series_rows("d", "s", kBase + 200 * kSecond, 35), [&](Status st) {
    EXPECT_EQ(st.code(), Code::kIo);
    calls.fetch_add(1);
  });
  ASSERT_TRUE(store->flush());
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(store->insert_key(key("k", "n")).code(), Code::kIo);
  Health h = store->health();
  EXPECT_FALSE(h.ok);
  EXPECT_NE(h.detail.find("failing"), std::string::npos) << h.detail;
  EXPECT_EQ(h.queue_depth, 0u);
  EXPECT_EQ(store->readings_count(), 5u);

  store->TEST_fail_writes(false);
  ASSERT_TRUE(store->append_sync(series_rows("d", "s", kBase + 300 * kSecond, 5)));
  ASSERT_TRUE(store->insert_key(key("k", "n")));
  EXPECT_TRUE(store->health().ok) << store->health().detail;
  EXPECT_EQ(store->readings_count(), 10u);
  EXPECT_EQ(store->query({.device = "d", .sensor = "s", .limit = 100})->size(), 10u);
  std::string text = metrics.render();
  // At least the three above (an automatic retention pass, were one due, would fail too).
  EXPECT_GE(metric(metrics, "outpost_store_write_errors_total"), 3) << text;
  EXPECT_EQ(metric(metrics, "outpost_store_rows_written_total"), 10) << text;
  // Nothing from the failed transactions survived a restart either.
  store->close();
  EXPECT_EQ(sql_value("SELECT count(*) FROM readings"), "10");
  EXPECT_EQ(open()->readings_count(), 10u);
}

TEST_F(StoreTest, QueueOverTheBoundIsBusyNotDropped) {
  auto store = open();
  ASSERT_TRUE(store);
  Gate entered, release;
  // Hold the writer inside a callback so the queue can only grow.
  store->append(series_rows("d", "s", kBase, 1), [&](Status) {
    entered.open();
    release.wait();
  });
  entered.wait();
  std::atomic<int> ok{0};
  store->append(series_rows("d", "s", kBase + kSecond, 60'000), [&](Status s) {
    EXPECT_TRUE(s) << s.to_string();
    ok.fetch_add(1);
  });
  Status busy;
  store->append(series_rows("d", "t", kBase, 50'000), [&](Status s) { busy = s; });
  EXPECT_EQ(busy.code(), Code::kBusy);  // answered at once, on this thread
  Status too_large;
  store->append(std::vector<Reading>(kMaxQueuedRows + 1, reading("d", "u", kBase, 1)),
                [&](Status s) { too_large = s; });
  EXPECT_EQ(too_large.code(), Code::kTooLarge);
  Status invalid;
  store->append({reading("", "s", kBase, 1)}, [&](Status s) { invalid = s; });
  EXPECT_EQ(invalid.code(), Code::kInvalid);
  EXPECT_EQ(store->health().queue_depth, 60'000u);
  release.open();
  ASSERT_TRUE(store->flush());
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(store->readings_count(), 60'001u);
}

TEST_F(StoreTest, WaitingCallsFromACallbackFailInsteadOfDeadlocking) {
  auto store = open();
  ASSERT_TRUE(store);
  Status from_callback, sync_from_callback;
  store->append(series_rows("d", "s", kBase, 1), [&](Status) {
    from_callback = store->flush();
    sync_from_callback = store->append_sync(series_rows("d", "s", kBase + kSecond, 1));
  });
  ASSERT_TRUE(store->flush());
  EXPECT_EQ(from_callback.code(), Code::kInternal);
  EXPECT_EQ(sync_from_callback.code(), Code::kInternal);
}

TEST_F(StoreTest, ConcurrentQueriesWhileWriting) {
  cfg_.batch_max = 256;
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->insert_key(key("k", "n")));
  std::atomic<bool> writing{true};
  std::atomic<int> query_errors{0}, queries{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 6; ++t) {  // more threads than read connections
    readers.emplace_back([&, t] {
      while (writing.load()) {
        auto got = store->query(
            {.device = "dev", .sensor = sensor(t % 4), .limit = 100, .newest = t % 2 == 0});
        if (!got.is_ok() || got->size() > 100 || !ascending(*got)) {
          query_errors.fetch_add(1);
        }
        if (!store->keys_generation().is_ok() || !store->find_key("k")->has_value()) {
          query_errors.fetch_add(1);
        }
        queries.fetch_add(1);
      }
    });
  }
  for (int batch = 0; batch < 100; ++batch) {
    std::vector<Reading> rows;
    for (int i = 0; i < 200; ++i) {
      rows.push_back(reading("dev", sensor(i % 4), kBase + (batch * 200 + i) * kSecond, i));
    }
    store->append(std::move(rows), [](Status s) { EXPECT_TRUE(s) << s.to_string(); });
  }
  ASSERT_TRUE(store->flush());
  writing.store(false);
  for (auto& t : readers) t.join();
  EXPECT_EQ(query_errors.load(), 0);
  EXPECT_GT(queries.load(), 0);
  EXPECT_EQ(store->readings_count(), 20'000u);
  auto last = store->query({.device = "dev", .sensor = "s3", .limit = 5000});
  EXPECT_EQ(last->size(), 5000u);
}

TEST_F(StoreTest, CloseDrainsTheQueue) {
  cfg_.batch_max = 500;
  std::atomic<int> ok{0};
  {
    auto store = open();
    ASSERT_TRUE(store);
    for (int i = 0; i < 40; ++i) {
      store->append(series_rows("d", sensor(i % 3), kBase + i * 1000 * kSecond, 500),
                    [&](Status s) {
                      if (s) ok.fetch_add(1);
                    });
    }
    store->close();
    EXPECT_EQ(ok.load(), 40);
    EXPECT_EQ(store->readings_count(), 20'000u);
    store->close();  // idempotent

    Status after;
    store->append(series_rows("d", "s", kBase, 1), [&](Status s) { after = s; });
    EXPECT_EQ(after.code(), Code::kUnavailable);
    EXPECT_EQ(store->query({.device = "d", .sensor = "s0"}).status().code(), Code::kUnavailable);
    EXPECT_EQ(store->flush().code(), Code::kUnavailable);
    EXPECT_FALSE(store->health().ok);
  }
  {
    // The destructor drains too.
    auto store = open();
    ASSERT_TRUE(store);
    for (int i = 0; i < 10; ++i) {
      store->append(series_rows("e", "s", kBase + i * 1000 * kSecond, 500), [&](Status s) {
        if (s) ok.fetch_add(1);
      });
    }
  }
  EXPECT_EQ(ok.load(), 50);
  EXPECT_EQ(open()->readings_count(), 25'000u);
}

// Migration 1 exactly as released (schema.cpp must never change it): what a database written by
// the first build holds.
constexpr const char* kSchemaV1 = R"sql(
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
PRAGMA user_version = 1;
)sql";

TEST_F(StoreTest, MigratesAVersion1DatabaseKeepingItsData) {
  sql_exec(kSchemaV1);
  sql_exec(fmt::format(
      "PRAGMA journal_mode = WAL;"
      "INSERT INTO series (id, device, sensor, unit, row_count) VALUES (1, 'd', 'temp', 'C', 1);"
      "INSERT INTO readings (series, ts, value, text) VALUES (1, {}, 21.5, NULL);"
      "INSERT INTO keys (id, name, scope, hash, created, revoked)"
      "  VALUES ('k1', 'ops', 'admin', zeroblob(32), {}, NULL);",
      kBase, kBase));
  ASSERT_EQ(sql_value("PRAGMA user_version"), "1");
  ASSERT_EQ(sql_value("SELECT value FROM meta WHERE name = 'keys_generation'"), "1");

  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(sql_value("PRAGMA user_version"), std::to_string(detail::kSchemaVersion));
  // Version 1's data, as it was.
  EXPECT_EQ(store->readings_count(), 1u);
  auto temp = store->query({.device = "d", .sensor = "temp"});
  ASSERT_TRUE(temp.is_ok()) << temp.status().to_string();
  ASSERT_EQ(temp->size(), 1u);
  EXPECT_EQ(core::to_micros((*temp)[0].ts), kBase);
  EXPECT_EQ((*temp)[0].value, 21.5);
  EXPECT_EQ((*temp)[0].unit, "C");
  auto k1 = store->find_key("k1");
  ASSERT_TRUE(k1.is_ok());
  ASSERT_TRUE(k1->has_value());
  EXPECT_EQ((*k1)->scope, "admin");
  EXPECT_EQ((*k1)->hash, std::string(32, '\0'));
  EXPECT_EQ(*store->keys_generation(), 1u);
  // Version 1 still works (the keys triggers too)...
  ASSERT_TRUE(store->append_sync({reading("d", "temp", kBase + kSecond, 22)}));
  ASSERT_TRUE(store->insert_key(key("k2", "dashboard")));
  EXPECT_EQ(*store->keys_generation(), 2u);
  // ...and version 2's tables are there, empty.
  EXPECT_EQ(store->events_count(), 0u);
  EXPECT_FALSE(store->get_setting("house_id")->has_value());
  ASSERT_TRUE(store->put_setting("house_id", "h1"));
  auto id = store->append_event_sync(event("d", "online", kBase));
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  EXPECT_EQ(*id, 1);

  // ...and version 3's devices table.
  EXPECT_TRUE(store->load_devices()->empty());
  // ...and the summaries table.
  EXPECT_TRUE(store->query_summaries({})->empty());
  // ...and version 5's rules table.
  EXPECT_TRUE(store->load_rules()->empty());
  // ...and the outbox's tables, empty.
  EXPECT_TRUE(store->outbox_stats()->empty());
  EXPECT_TRUE(store->outbox_pending("cloud", 10)->empty());
  store->close();

  // Migrated once: a second open changes nothing.
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(sql_value("PRAGMA user_version"), std::to_string(detail::kSchemaVersion));
  EXPECT_EQ(store->readings_count(), 2u);
  EXPECT_EQ(store->events_count(), 1u);
  EXPECT_EQ(**store->get_setting("house_id"), "h1");
  EXPECT_EQ(store->list_keys()->size(), 2u);
}

TEST_F(StoreTest, SettingsGetPutOverwriteAndAbsent) {
  {
    auto store = open();
    ASSERT_TRUE(store);
    auto absent = store->get_setting("token_secret");
    ASSERT_TRUE(absent.is_ok()) << absent.status().to_string();
    EXPECT_FALSE(absent->has_value());

    ASSERT_TRUE(store->put_setting("token_secret", "s1"));
    EXPECT_EQ(**store->get_setting("token_secret"), "s1");
    ASSERT_TRUE(store->put_setting("token_secret", "s2"));  // overwrites
    EXPECT_EQ(**store->get_setting("token_secret"), "s2");
    ASSERT_TRUE(store->put_setting("empty", ""));  // an empty value is a value
    auto empty = store->get_setting("empty");
    ASSERT_TRUE(empty->has_value());
    EXPECT_EQ(**empty, "");
    std::string odd("a\0b\xff", 4);  // stored as given, length and all
    ASSERT_TRUE(store->put_setting("odd", odd));
    EXPECT_EQ(**store->get_setting("odd"), odd);

    EXPECT_EQ(store->put_setting("", "x").code(), Code::kInvalid);
    EXPECT_EQ(store->get_setting("").status().code(), Code::kInvalid);
    std::string current = "untouched";
    EXPECT_EQ(store->put_setting_if_absent("", "x", &current).code(), Code::kInvalid);
    EXPECT_EQ(current, "untouched");

    // If absent: the first value stays; every caller learns it.
    ASSERT_TRUE(store->put_setting_if_absent("house_id", "h1", &current));
    EXPECT_EQ(current, "h1");
    ASSERT_TRUE(store->put_setting_if_absent("house_id", "h2", &current));
    EXPECT_EQ(current, "h1");
    ASSERT_TRUE(store->put_setting_if_absent("house_id", "h3", nullptr));
    EXPECT_EQ(**store->get_setting("house_id"), "h1");
    ASSERT_TRUE(store->put_setting_if_absent("token_secret", "s3", &current));
    EXPECT_EQ(current, "s2");
    // A plain put still overwrites.
    ASSERT_TRUE(store->put_setting("house_id", "h4"));
    EXPECT_EQ(**store->get_setting("house_id"), "h4");
  }
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(**store->get_setting("token_secret"), "s2");
  EXPECT_EQ(**store->get_setting("house_id"), "h4");
  EXPECT_EQ(sql_value("SELECT count(*) FROM settings"), "4");
}

TEST_F(StoreTest, PutSettingIfAbsentFromTwoInstancesAgreesOnOneValue) {
  auto a = open();
  auto b = open();  // as a second process on the same file would
  ASSERT_TRUE(a && b);
  constexpr int kNames = 30;
  std::vector<std::string> got_a(kNames), got_b(kNames);
  std::atomic<int> ready{0};
  auto race = [&](Store* store, const std::string& mine, std::vector<std::string>& got) {
    ready.fetch_add(1);
    while (ready.load() < 2) std::this_thread::yield();
    for (int i = 0; i < kNames; ++i) {
      Status s = store->put_setting_if_absent(fmt::format("secret{}", i), mine, &got[i]);
      EXPECT_TRUE(s) << s.to_string();
    }
  };
  std::thread ta(race, a.get(), "from-a", std::ref(got_a));
  std::thread tb(race, b.get(), "from-b", std::ref(got_b));
  ta.join();
  tb.join();
  for (int i = 0; i < kNames; ++i) {
    std::string name = fmt::format("secret{}", i);
    EXPECT_EQ(got_a[i], got_b[i]) << name;
    EXPECT_TRUE(got_a[i] == "from-a" || got_a[i] == "from-b") << got_a[i];
    EXPECT_EQ(**a->get_setting(name), got_a[i]);
    EXPECT_EQ(**b->get_setting(name), got_a[i]);
  }
}

TEST_F(StoreTest, EventsAppendCommitAndQueryByKindDeviceAndRange) {
  core::Registry metrics;
  auto store = open(&metrics);
  ASSERT_TRUE(store);
  auto at = [](int i) { return kBase + i * kSecond; };
  // 30 events: kinds cycle motion/button/alert, devices cam/door; every ts twice (ties go by id).
  std::vector<int64_t> committed;
  for (int i = 0; i < 30; ++i) {
    const char* kind = i % 3 == 0 ? "motion" : i % 3 == 1 ? "button" : "alert";
    auto id = store->append_event_sync(
        event(i % 2 ? "door" : "cam", kind, at(i / 2), fmt::format(R"({{"n":{}}})", i)));
    ASSERT_TRUE(id.is_ok()) << id.status().to_string();
    committed.push_back(*id);
  }
  EXPECT_TRUE(std::is_sorted(committed.begin(), committed.end()));
  EXPECT_EQ(std::set<int64_t>(committed.begin(), committed.end()).size(), 30u);
  EXPECT_EQ(store->events_count(), 30u);
  EXPECT_EQ(metric(metrics, "outpost_store_events_written_total"), 30);
  EXPECT_EQ(metric(metrics, "outpost_events_stored"), 30);
  EXPECT_EQ(metric(metrics, "outpost_store_rows_written_total"), 0);

  // Everything, oldest first: in append order here, payload and all.
  auto all = store->query_events({.limit = 100, .newest = false});
  ASSERT_TRUE(all.is_ok()) << all.status().to_string();
  ASSERT_EQ(all->size(), 30u);
  EXPECT_EQ(ids(*all), committed);
  EXPECT_EQ((*all)[7].payload, R"({"n":7})");
  EXPECT_EQ((*all)[7].device, "door");
  EXPECT_EQ((*all)[7].kind, "button");
  EXPECT_EQ(core::to_micros((*all)[7].ts), at(3));

  // Newest / oldest `limit`, always ascending.
  auto newest = store->query_events({.limit = 5});
  ASSERT_TRUE(newest.is_ok());
  EXPECT_EQ(ids(*newest), std::vector<int64_t>(committed.end() - 5, committed.end()));
  auto oldest = store->query_events({.limit = 5, .newest = false});
  EXPECT_EQ(ids(*oldest), std::vector<int64_t>(committed.begin(), committed.begin() + 5));

  auto motion = store->query_events({.kind = "motion", .limit = 100});
  ASSERT_TRUE(motion.is_ok());
  EXPECT_EQ(motion->size(), 10u);
  EXPECT_TRUE(ascending(*motion));
  for (const auto& e : *motion) EXPECT_EQ(e.kind, "motion");

  auto door = store->query_events({.device = "door", .limit = 100});
  EXPECT_EQ(door->size(), 15u);
  EXPECT_TRUE(ascending(*door));
  for (const auto& e : *door) EXPECT_EQ(e.device, "door");

  // Both filters: door is odd i, button is i % 3 == 1: i = 1, 7, 13, 19, 25.
  auto door_buttons = store->query_events({.kind = "button", .device = "door", .limit = 3});
  ASSERT_EQ(door_buttons->size(), 3u);
  EXPECT_EQ(ids(*door_buttons),
            (std::vector<int64_t>{committed[13], committed[19], committed[25]}));

  // Inclusive bounds: ts 5..7 holds i = 10..15.
  auto range = store->query_events(
      {.from = core::from_micros(at(5)), .to = core::from_micros(at(7)), .limit = 100});
  EXPECT_EQ(ids(*range), std::vector<int64_t>(committed.begin() + 10, committed.begin() + 16));
  auto range_oldest = store->query_events({.from = core::from_micros(at(5)),
                                           .to = core::from_micros(at(7)),
                                           .limit = 2,
                                           .newest = false});
  EXPECT_EQ(ids(*range_oldest), (std::vector<int64_t>{committed[10], committed[11]}));

  EXPECT_TRUE(store->query_events({.kind = "nope"})->empty());
  EXPECT_TRUE(store->query_events({.limit = 0})->empty());
  EXPECT_EQ(store->query_events({.from = core::from_micros(at(9)), .to = core::from_micros(at(8))})
                .status()
                .code(),
            Code::kInvalid);

  // Refused on the caller's thread: an event needs a device and a kind.
  Status refused;
  store->append_event(event("cam", "", kBase), [&](Result<int64_t> r) { refused = r.status(); });
  EXPECT_EQ(refused.code(), Code::kInvalid);
  EXPECT_EQ(store->append_event_sync(event("", "motion", kBase)).status().code(), Code::kInvalid);
  EXPECT_EQ(store->events_count(), 30u);
}

TEST_F(StoreTest, EventsPageBackWithBeforeIdEachExactlyOnce) {
  auto store = open();
  ASSERT_TRUE(store);
  // 250 events, mostly in time order, several per ts, and every tenth one late: appended now
  // but with an old ts, so id order and (ts, id) order differ.
  std::vector<Event> appended;
  for (int i = 0; i < 250; ++i) {
    int64_t ts = i % 10 == 9 ? kBase + (i - 100) * kSecond : kBase + (i / 3) * kSecond;
    appended.push_back(event(i % 2 ? "a" : "b", "motion", ts));
  }
  for (auto& e : appended) {
    auto id = store->append_event_sync(e);
    ASSERT_TRUE(id.is_ok());
    e.id = *id;
  }
  std::vector<Event> expected = appended;
  std::sort(expected.begin(), expected.end(), [](const Event& a, const Event& b) {
    return std::pair(a.ts, a.id) < std::pair(b.ts, b.id);
  });

  // Newest first, 100 at a time, with the first id of each page as the next cursor.
  std::vector<std::vector<Event>> pages;
  EventQuery q{.limit = 100};
  for (;;) {
    auto page = store->query_events(q);
    ASSERT_TRUE(page.is_ok()) << page.status().to_string();
    if (page->empty()) break;
    EXPECT_TRUE(ascending(*page));
    q.before_id = page->front().id;
    pages.push_back(std::move(*page));
    ASSERT_LE(pages.size(), 3u);
  }
  ASSERT_EQ(pages.size(), 3u);
  EXPECT_EQ(pages[0].size(), 100u);
  EXPECT_EQ(pages[1].size(), 100u);
  EXPECT_EQ(pages[2].size(), 50u);
  std::vector<int64_t> seen;
  for (auto it = pages.rbegin(); it != pages.rend(); ++it) {
    for (const auto& e : *it) seen.push_back(e.id);
  }
  EXPECT_EQ(seen, ids(expected));  // every event once, and in (ts, id) order overall

  // With a filter, and oldest-first within the cursor.
  std::set<int64_t> of_a;
  q = EventQuery{.device = "a", .limit = 40};
  for (int guard = 0; guard < 10; ++guard) {
    auto page = store->query_events(q);
    ASSERT_TRUE(page.is_ok());
    if (page->empty()) break;
    for (const auto& e : *page) {
      EXPECT_EQ(e.device, "a");
      EXPECT_TRUE(of_a.insert(e.id).second) << "twice: " << e.id;
    }
    q.before_id = page->front().id;
  }
  EXPECT_EQ(of_a.size(), 125u);
  auto before_oldest =
      store->query_events({.limit = 3, .newest = false, .before_id = pages[1].front().id});
  EXPECT_EQ(ids(*before_oldest),
            (std::vector<int64_t>{expected[0].id, expected[1].id, expected[2].id}));

  // A cursor with a `to` before it: `to` decides. A cursor above every id: no bound. The
  // oldest event as cursor: nothing before it.
  auto to =
      store->query_events({.to = expected[9].ts, .limit = 100, .before_id = pages[0].back().id});
  EXPECT_EQ(to->size(), 10u);
  EXPECT_EQ(store->query_events({.limit = 1000, .before_id = 1'000'000})->size(), 250u);
  EXPECT_TRUE(store->query_events({.before_id = expected[0].id})->empty());
}

TEST_F(StoreTest, EventsShareTheReadingsQueueAndTransactions) {
  core::Registry metrics;
  auto store = open(&metrics);
  ASSERT_TRUE(store);
  Gate entered, release;
  store->append(series_rows("d", "s", kBase, 1), [&](Status) {
    entered.open();
    release.wait();
  });
  entered.wait();
  // Queued behind the held batch: readings, events, readings. One transaction takes them all.
  std::vector<std::string> order;
  std::mutex order_mu;
  auto note = [&](std::string what) {
    std::lock_guard lk(order_mu);
    order.push_back(std::move(what));
  };
  store->append(series_rows("d", "s", kBase + kSecond, 10), [&](Status s) {
    EXPECT_TRUE(s);
    note("readings1");
  });
  int64_t id1 = 0, id2 = 0;
  store->append_event(event("d", "motion", kBase), [&](Result<int64_t> r) {
    ASSERT_TRUE(r.is_ok());
    id1 = *r;
    note("event1");
  });
  store->append_event(event("d", "alert", kBase), [&](Result<int64_t> r) {
    ASSERT_TRUE(r.is_ok());
    id2 = *r;
    note("event2");
  });
  store->append(series_rows("d", "s", kBase + 100 * kSecond, 10), [&](Status s) {
    EXPECT_TRUE(s);
    note("readings2");
  });
  EXPECT_EQ(store->health().queue_depth, 22u);  // an event counts as a row
  EXPECT_EQ(metric(metrics, "outpost_store_commit_seconds_count"), 1);
  release.open();
  ASSERT_TRUE(store->flush());
  EXPECT_EQ(order, (std::vector<std::string>{"readings1", "event1", "event2", "readings2"}));
  EXPECT_EQ(id2, id1 + 1);
  EXPECT_EQ(metric(metrics, "outpost_store_commit_seconds_count"), 2);
  EXPECT_EQ(store->readings_count(), 21u);
  EXPECT_EQ(store->events_count(), 2u);
  EXPECT_EQ(store->health().queue_depth, 0u);

  // Waiting calls from a callback are refused there, as for readings.
  Status sync_event, put;
  store->append_event(event("d", "motion", kBase), [&](Result<int64_t>) {
    sync_event = store->append_event_sync(event("d", "motion", kBase)).status();
    put = store->put_setting("x", "y");
  });
  ASSERT_TRUE(store->flush());
  EXPECT_EQ(sync_event.code(), Code::kInternal);
  EXPECT_EQ(put.code(), Code::kInternal);
}

TEST_F(StoreTest, EventsRetentionByCountAndAgeAndCountAcrossRestarts) {
  cfg_.readings_max_age = std::chrono::milliseconds(0);  // first the count rule alone
  const int64_t now = core::to_micros(core::now());
  const size_t extra = 50;
  {
    core::Registry metrics;
    auto store = open(&metrics);
    ASSERT_TRUE(store);
    // kMaxEvents + 50; the last 50 appended are the oldest by ts, so they are the ones to go.
    std::atomic<int> failed{0};
    for (size_t i = 0; i < kMaxEvents + extra; ++i) {
      int64_t ts = i < kMaxEvents ? now - static_cast<int64_t>(kMaxEvents - i) * 1000
                                  : now - 10 * 3600 * kSecond - static_cast<int64_t>(i);
      store->append_event(event("cam", "motion", ts), [&](Result<int64_t> r) {
        if (!r.is_ok()) failed.fetch_add(1);
      });
      if (i % 10'000 == 0) {
        ASSERT_TRUE(store->flush());
      }
    }
    ASSERT_TRUE(store->flush());
    EXPECT_EQ(failed.load(), 0);
    // 100k inserted rows start a pass by themselves, which may have trimmed a few already.
    EXPECT_GE(store->events_count(), kMaxEvents);
    EXPECT_LE(store->events_count(), kMaxEvents + extra);
    ASSERT_TRUE(store->enforce_retention());
    EXPECT_EQ(store->events_count(), kMaxEvents);
    EXPECT_EQ(metric(metrics, "outpost_events_stored"), static_cast<double>(kMaxEvents));
    auto oldest = store->query_events({.limit = 1, .newest = false});
    ASSERT_EQ(oldest->size(), 1u);
    EXPECT_EQ(core::to_micros(oldest->front().ts), now - static_cast<int64_t>(kMaxEvents) * 1000);
    ASSERT_TRUE(store->enforce_retention());  // nothing more to do
    EXPECT_EQ(store->events_count(), kMaxEvents);
  }
  EXPECT_EQ(sql_value("SELECT count(*) FROM events"), std::to_string(kMaxEvents));
  {
    auto store = open();
    ASSERT_TRUE(store);
    EXPECT_EQ(store->events_count(), kMaxEvents);  // counted again at open
    // Then age: the oldest 6,000 (more than a 5,000-row chunk) are made a day old.
    store->close();
    sql_exec(
        fmt::format("UPDATE events SET ts = ts - 86400000000 WHERE id IN "
                    "(SELECT id FROM events ORDER BY ts, id LIMIT 6000)"));
  }
  cfg_.readings_max_age = std::chrono::hours(1);
  {
    auto store = open();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->append_event_sync(event("cam", "online", now)).is_ok());
    EXPECT_EQ(store->events_count(), kMaxEvents + 1);
    ASSERT_TRUE(store->enforce_retention());
    EXPECT_EQ(store->events_count(), kMaxEvents + 1 - 6000);
    EXPECT_EQ(sql_value("SELECT count(*) FROM events"), std::to_string(kMaxEvents + 1 - 6000));
    // A cursor that retention took: everything before it went too.
    EXPECT_TRUE(store->query_events({.before_id = 60})->empty());
  }
  EXPECT_EQ(open()->events_count(), kMaxEvents + 1 - 6000);
}

TEST_F(StoreTest, FailedWritesGiveEventsTheErrorAndStoreNothing) {
  core::Registry metrics;
  auto store = open(&metrics);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->append_event_sync(event("d", "motion", kBase)).is_ok());
  ASSERT_TRUE(store->put_setting("house_id", "h1"));

  store->TEST_fail_writes(true);
  auto failed = store->append_event_sync(event("d", "motion", kBase + kSecond));
  EXPECT_EQ(failed.status().code(), Code::kIo) << failed.status().to_string();
  std::atomic<int> errors{0};
  for (int i = 0; i < 5; ++i) {
    store->append_event(event("d", "alert", kBase + i), [&](Result<int64_t> r) {
      if (r.status().code() == Code::kIo) errors.fetch_add(1);
    });
  }
  ASSERT_TRUE(store->flush());
  EXPECT_EQ(errors.load(), 5);
  EXPECT_EQ(store->put_setting("house_id", "h2").code(), Code::kIo);
  std::string current = "untouched";
  EXPECT_EQ(store->put_setting_if_absent("new", "v", &current).code(), Code::kIo);
  EXPECT_EQ(current, "untouched");
  EXPECT_FALSE(store->health().ok);
  EXPECT_EQ(store->events_count(), 1u);
  EXPECT_EQ(store->query_events({.limit = 100})->size(), 1u);
  EXPECT_EQ(**store->get_setting("house_id"), "h1");
  EXPECT_FALSE(store->get_setting("new")->has_value());

  store->TEST_fail_writes(false);
  auto ok = store->append_event_sync(event("d", "motion", kBase + 2 * kSecond));
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_TRUE(store->health().ok) << store->health().detail;
  EXPECT_EQ(store->events_count(), 2u);
  EXPECT_EQ(metric(metrics, "outpost_store_events_written_total"), 2);
  store->close();
  EXPECT_EQ(sql_value("SELECT count(*) FROM events"), "2");
  EXPECT_EQ(open()->events_count(), 2u);
}

TEST_F(StoreTest, CloseDrainsQueuedEvents) {
  cfg_.batch_max = 100;
  std::atomic<int> ok{0};
  std::set<int64_t> seen;
  std::mutex seen_mu;
  {
    auto store = open();
    ASSERT_TRUE(store);
    for (int i = 0; i < 1000; ++i) {
      if (i % 3 == 0) store->append(series_rows("d", "s", kBase + i * kSecond, 1), nullptr);
      store->append_event(event("d", "motion", kBase + i * kSecond), [&](Result<int64_t> r) {
        if (!r.is_ok()) return;
        ok.fetch_add(1);
        std::lock_guard lk(seen_mu);
        seen.insert(*r);
      });
    }
    store->close();
    EXPECT_EQ(ok.load(), 1000);
    EXPECT_EQ(seen.size(), 1000u);
    EXPECT_EQ(store->events_count(), 1000u);
    Status after;
    store->append_event(event("d", "motion", kBase),
                        [&](Result<int64_t> r) { after = r.status(); });
    EXPECT_EQ(after.code(), Code::kUnavailable);
    EXPECT_EQ(store->query_events({}).status().code(), Code::kUnavailable);
    EXPECT_EQ(store->get_setting("x").status().code(), Code::kUnavailable);
    EXPECT_EQ(store->put_setting("x", "y").code(), Code::kUnavailable);
  }
  {
    auto store = open();  // the destructor drains too
    ASSERT_TRUE(store);
    for (int i = 0; i < 500; ++i) {
      store->append_event(event("e", "button", kBase + i), [&](Result<int64_t> r) {
        if (r.is_ok()) ok.fetch_add(1);
      });
    }
  }
  EXPECT_EQ(ok.load(), 1500);
  auto store = open();
  EXPECT_EQ(store->events_count(), 1500u);
  EXPECT_EQ(store->readings_count(), 334u);
}

// Not an assertion: where ingest stands (target: 200k rows/s batched, Release build).
TEST_F(StoreTest, SummariesFirstOneUnderAKeyStandsAndDoneNamesTheNewOnes) {
  auto store = open();
  ASSERT_TRUE(store);
  auto first = append_summaries_sync(*store, {summary("d", "t", kBase, 20), summary("d", "h", kBase, 50)});
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  EXPECT_EQ(keys_of(*first), (std::vector<std::string>{"d/t@0", "d/h@0"}));
  // A repeat of d/t@0 (another mean) is left out and changes nothing; d/t@300 is new.
  auto second = append_summaries_sync(*store, {summary("d", "t", kBase, 99), summary("d", "t", kBase + 300 * kSecond, 21)});
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  EXPECT_EQ(keys_of(*second), (std::vector<std::string>{"d/t@300"}));
  auto got = store->query_summaries({.device = "d", .sensor = "t"});
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].mean, 20);
  EXPECT_EQ((*got)[0].unit, "Cel");
  EXPECT_EQ((*got)[0].count, 3u);
  EXPECT_EQ((*got)[0].min, 19);
  EXPECT_EQ((*got)[0].max, 21);
  EXPECT_EQ((*got)[0].stdev, 1);
  EXPECT_EQ((*got)[0].first, 19);
  EXPECT_EQ((*got)[0].last, 21);
  EXPECT_EQ(core::to_micros((*got)[0].period_end), kBase + 300 * kSecond);
  EXPECT_EQ((*got)[1].mean, 21);
  // Every field survives a reopen.
  store->close();
  store = open();
  got = store->query_summaries({.device = "d", .sensor = "t"});
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(core::summary_json((*got)[0]), core::summary_json(summary("d", "t", kBase, 20)));
}

TEST_F(StoreTest, SummariesQueryByDeviceSensorRangeAndLimitAscending) {
  auto store = open();
  ASSERT_TRUE(store);
  std::vector<core::Summary> xs;
  for (int w = 0; w < 5; ++w) {
    for (const char* dev : {"b", "a"}) {
      for (const char* sen : {"y", "x"}) xs.push_back(summary(dev, sen, kBase + w * 300 * kSecond, w));
    }
  }
  xs.push_back(summary("c", "x", kBase + 150 * kSecond, 7, 60 * kSecond));  // another window width
  ASSERT_TRUE(append_summaries_sync(*store, xs).is_ok());
  auto q = [&](SummaryQuery query) {
    auto r = store->query_summaries(query);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? keys_of(*r) : std::vector<std::string>{};
  };
  // One series: the newest `limit`, ascending.
  EXPECT_EQ(q({.device = "a", .sensor = "x", .limit = 2}), (std::vector<std::string>{"a/x@900", "a/x@1200"}));
  EXPECT_EQ(q({.device = "a", .sensor = "x", .limit = 2, .newest = false}), (std::vector<std::string>{"a/x@0", "a/x@300"}));
  // One device: by period_start, then sensor.
  EXPECT_EQ(q({.device = "b", .limit = 3}), (std::vector<std::string>{"b/y@900", "b/x@1200", "b/y@1200"}));
  // One sensor of every device, in a range of period_start (inclusive bounds).
  EXPECT_EQ(q({.sensor = "x", .from = core::from_micros(kBase + 150 * kSecond), .to = core::from_micros(kBase + 300 * kSecond)}),
            (std::vector<std::string>{"c/x@150", "a/x@300", "b/x@300"}));
  // Everything, oldest first.
  EXPECT_EQ(q({.limit = 6, .newest = false}),
            (std::vector<std::string>{"a/x@0", "a/y@0", "b/x@0", "b/y@0", "c/x@150", "a/x@300"}));
  EXPECT_EQ(q({.limit = 1000}).size(), 21u);
  EXPECT_TRUE(q({.device = "nobody"}).empty());
  EXPECT_TRUE(q({.limit = 0}).empty());
  auto bad = store->query_summaries({.from = core::from_micros(kBase + 1), .to = core::from_micros(kBase)});
  EXPECT_EQ(bad.status().code(), Code::kInvalid);
}

TEST_F(StoreTest, SummariesPendingHandoffUntilMarkedAcrossRestarts) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(append_summaries_sync(*store, {summary("d", "t", kBase, 1)}, false).is_ok());
  ASSERT_TRUE(append_summaries_sync(*store, {summary("d", "t", kBase + 300 * kSecond, 2), summary("e", "t", kBase + 300 * kSecond, 3)}, true)
                  .is_ok());
  auto pending = [&] {
    auto r = store->query_summaries({.limit = 100, .newest = false, .pending_handoff = true});
    EXPECT_TRUE(r.is_ok());
    return r.is_ok() ? keys_of(*r) : std::vector<std::string>{};
  };
  EXPECT_EQ(pending(), (std::vector<std::string>{"d/t@300", "e/t@300"}));
  std::promise<Status> marked;
  store->mark_handed_off({SummaryKey{"d", "t", core::from_micros(kBase + 300 * kSecond)},
                          SummaryKey{"nobody", "t", core::from_micros(kBase)}},
                         [&](Status s) { marked.set_value(s); });
  ASSERT_TRUE(marked.get_future().get());
  EXPECT_EQ(pending(), (std::vector<std::string>{"e/t@300"}));
  store->close();
  store = open();
  EXPECT_EQ(pending(), (std::vector<std::string>{"e/t@300"}));
  // The other filters still apply.
  EXPECT_TRUE(store->query_summaries({.device = "d", .pending_handoff = true})->empty());
}

TEST_F(StoreTest, SummariesRefusedInvalidOrClosedAndFailedWritesStoreNothing) {
  auto store = open();
  ASSERT_TRUE(store);
  auto invalid = [&](core::Summary x) {
    std::optional<Status> got;
    store->append_summaries({summary("d", "ok", kBase, 1), x}, false, [&](Result<std::vector<core::Summary>> r) { got = r.status(); });
    EXPECT_TRUE(got.has_value()) << "done runs at once for an invalid summary";
    return got ? got->code() : Code::kOk;
  };
  auto x = summary("d", "t", kBase, 1);
  x.device = "";
  EXPECT_EQ(invalid(x), Code::kInvalid);
  x = summary("d", "t", kBase, 1);
  x.count = 0;
  EXPECT_EQ(invalid(x), Code::kInvalid);
  x = summary("d", "t", kBase, 1);
  x.period_end = x.period_start;
  EXPECT_EQ(invalid(x), Code::kInvalid);
  x = summary("d", "t", kBase, 1);
  x.stdev = std::nan("");
  EXPECT_EQ(invalid(x), Code::kInvalid);
  ASSERT_TRUE(store->flush());
  EXPECT_TRUE(store->query_summaries({})->empty());  // nothing of a refused batch

  store->TEST_fail_writes(true);
  auto failed = append_summaries_sync(*store, {summary("d", "t", kBase, 1)});
  EXPECT_EQ(failed.status().code(), Code::kIo);
  store->TEST_fail_writes(false);
  EXPECT_TRUE(store->query_summaries({})->empty());
  // The same summary later is new: the failed transaction kept nothing.
  auto again = append_summaries_sync(*store, {summary("d", "t", kBase, 1)});
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->size(), 1u);

  store->close();
  std::optional<Status> closed;
  store->append_summaries({summary("d", "t", kBase + 300 * kSecond, 1)}, false,
                          [&](Result<std::vector<core::Summary>> r) { closed = r.status(); });
  ASSERT_TRUE(closed.has_value());
  EXPECT_EQ(closed->code(), Code::kUnavailable);
  closed.reset();
  store->mark_handed_off({}, [&](Status s) { closed = s; });
  ASSERT_TRUE(closed.has_value());
  EXPECT_EQ(closed->code(), Code::kUnavailable);
}

TEST_F(StoreTest, SummariesRetentionByAgeOfPeriodStart) {
  cfg_.summaries_max_age = std::chrono::hours(2);
  auto store = open();
  ASSERT_TRUE(store);
  int64_t now = core::to_micros(core::now());
  std::vector<core::Summary> xs;
  // Starting 15, 45, 75, ... 345 minutes ago.
  for (int i = 0; i < 12; ++i) xs.push_back(summary("d", "t", now - (15 + i * 30) * 60 * kSecond, i));
  ASSERT_TRUE(append_summaries_sync(*store, xs).is_ok());
  ASSERT_TRUE(store->enforce_retention());
  auto left = store->query_summaries({.limit = 100});
  ASSERT_TRUE(left.is_ok());
  EXPECT_EQ(keys_of(*left).size(), 4u);  // 105 minutes ago is the oldest kept
  for (const auto& x : *left) EXPECT_GT(core::to_micros(x.period_start), now - 2 * 3600 * kSecond);
}

TEST_F(StoreTest, ThroughputSanity) {
  auto store = open();
  ASSERT_TRUE(store);
  constexpr int kRows = 200'000;
  constexpr int kPerAppend = 1000;
  std::vector<std::vector<Reading>> appends;
  for (int a = 0; a < kRows / kPerAppend; ++a) {
    std::vector<Reading> rows;
    rows.reserve(kPerAppend);
    for (int i = 0; i < kPerAppend; ++i) {
      int n = a * kPerAppend + i;
      // Four sensors sampled together, as a collector would send them.
      rows.push_back(reading("bench", sensor(n % 4), kBase + (n / 4) * 1000, n));
    }
    appends.push_back(std::move(rows));
  }
  std::atomic<int> failed{0};
  auto t0 = std::chrono::steady_clock::now();
  for (auto& rows : appends) {
    // A well-behaved producer: back off while the queue is near its bound.
    while (store->health().queue_depth + rows.size() > kMaxQueuedRows) std::this_thread::yield();
    store->append(std::move(rows), [&](Status s) {
      if (!s) failed.fetch_add(1);
    });
  }
  ASSERT_TRUE(store->flush());
  EXPECT_EQ(failed.load(), 0);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(store->readings_count(), static_cast<uint64_t>(kRows));
  std::printf(
      "[ throughput ] %d readings over 4 series, batch_max %zu, synchronous=%s: "
      "%.3f s, %.0f rows/s\n",
      kRows, cfg_.batch_max, cfg_.synchronous.c_str(), secs, kRows / secs);
}

TEST_F(StoreTest, DevicesUpsertAndLoadAcrossReopen) {
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_TRUE(store->load_devices()->empty());
  ASSERT_TRUE(store->put_devices({{"b", R"({"v":1})", core::from_micros(kBase)},
                                  {"a", R"({"v":2})", core::from_micros(kBase)}}));
  ASSERT_TRUE(store->put_devices({{"b", R"({"v":3})", core::from_micros(kBase + kSecond)}}));
  EXPECT_EQ(store->put_devices({{"", "{}", core::from_micros(kBase)}}).code(), core::Code::kInvalid);
  store->close();
  store = open();
  ASSERT_TRUE(store);
  auto devices = store->load_devices();
  ASSERT_TRUE(devices.is_ok()) << devices.status().to_string();
  ASSERT_EQ(devices->size(), 2u);
  EXPECT_EQ((*devices)[0].id, "a");
  EXPECT_EQ((*devices)[1].id, "b");
  EXPECT_EQ((*devices)[1].doc, R"({"v":3})");
  EXPECT_EQ(core::to_micros((*devices)[1].updated), kBase + kSecond);
}

TEST_F(StoreTest, RulesPutDeleteLoadAcrossReopen) {
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_TRUE(store->load_rules()->empty());
  ASSERT_TRUE(store->put_rule({"vent", R"({"v":1})", "api", core::from_micros(kBase)}));
  ASSERT_TRUE(store->put_rule({"alarm", R"({"v":2})", "api", core::from_micros(kBase)}));
  ASSERT_TRUE(store->put_rule({"vent", R"({"v":3})", "api", core::from_micros(kBase + kSecond)}));  // replaces
  EXPECT_EQ(store->put_rule({"", "{}", "api", core::from_micros(kBase)}).code(), Code::kInvalid);
  EXPECT_EQ(store->put_rule({"x", "{}", "cloud", core::from_micros(kBase)}).code(), Code::kInvalid);
  ASSERT_TRUE(store->delete_rule("alarm"));
  EXPECT_EQ(store->delete_rule("alarm").code(), Code::kNotFound);
  EXPECT_EQ(store->delete_rule("never").code(), Code::kNotFound);
  store->close();
  store = open();
  ASSERT_TRUE(store);
  auto rules = store->load_rules();
  ASSERT_TRUE(rules.is_ok()) << rules.status().to_string();
  ASSERT_EQ(rules->size(), 1u);
  EXPECT_EQ((*rules)[0].id, "vent");
  EXPECT_EQ((*rules)[0].doc, R"({"v":3})");
  EXPECT_EQ((*rules)[0].source, "api");
  EXPECT_EQ(core::to_micros((*rules)[0].updated), kBase + kSecond);
}

TEST_F(StoreTest, ConfigRulesAreReplacedAsAWholeAndWinOverAnApiRuleOfTheSameId) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->put_rule({"mine", "{}", "api", core::from_micros(kBase)}));
  ASSERT_TRUE(store->put_rule({"clash", R"({"api":true})", "api", core::from_micros(kBase)}));
  // The first start's config rules (the source given is ignored: they are config rules).
  ASSERT_TRUE(store->replace_config_rules({{"a", "{}", "api", core::from_micros(kBase)},
                                           {"b", "{}", "config", core::from_micros(kBase)},
                                           {"clash", R"({"config":true})", "config", core::from_micros(kBase)}}));
  auto rules = store->load_rules();
  ASSERT_TRUE(rules.is_ok());
  std::vector<std::string> got;
  for (const auto& r : *rules) got.push_back(r.id + "=" + r.source);
  EXPECT_EQ(got, (std::vector<std::string>{"a=config", "b=config", "clash=config", "mine=api"}));
  EXPECT_EQ((*rules)[2].doc, R"({"config":true})");
  // The next start's file dropped a and clash: they go; the API rule stays.
  ASSERT_TRUE(store->replace_config_rules({{"b", R"({"v":2})", "config", core::from_micros(kBase)}}));
  got.clear();
  rules = store->load_rules();
  ASSERT_TRUE(rules.is_ok());
  for (const auto& r : *rules) got.push_back(r.id + "=" + r.source);
  EXPECT_EQ(got, (std::vector<std::string>{"b=config", "mine=api"}));
  // A failing store changes nothing.
  store->TEST_fail_writes(true);
  EXPECT_FALSE(store->replace_config_rules({}));
  EXPECT_FALSE(store->put_rule({"c", "{}", "api", core::from_micros(kBase)}));
  store->TEST_fail_writes(false);
  EXPECT_EQ(store->load_rules()->size(), 2u);
}

TEST_F(StoreTest, BucketsGiveCountMeanMinMaxPerAlignedWindow) {
  auto store = open();
  ASSERT_TRUE(store);
  // 120 readings a second apart from a whole minute: two full minutes, values 0..119.
  int64_t start = (kBase / (60 * kSecond)) * 60 * kSecond;
  auto rows = series_rows("dev", "temp", start, 120);
  rows.push_back(reading("dev", "temp", start + 150 * kSecond, std::nan("")));  // left out
  Reading text = reading("dev", "temp", start + 151 * kSecond, 0);
  text.text = "[1,2,3]";  // left out
  rows.push_back(text);
  ASSERT_TRUE(store->append_sync(rows));
  auto b = store->query_buckets({.device = "dev", .sensor = "temp", .limit = 10}, std::chrono::minutes(1));
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  ASSERT_EQ(b->size(), 2u);
  EXPECT_EQ(core::to_micros((*b)[0].start), start);
  EXPECT_EQ((*b)[0].count, 60u);
  EXPECT_DOUBLE_EQ((*b)[0].mean, 29.5);
  EXPECT_DOUBLE_EQ((*b)[0].min, 0);
  EXPECT_DOUBLE_EQ((*b)[0].max, 59);
  EXPECT_DOUBLE_EQ((*b)[1].mean, 89.5);
  // The newest bucket only, and a range.
  auto last = store->query_buckets({.device = "dev", .sensor = "temp", .limit = 1}, std::chrono::minutes(1));
  ASSERT_EQ(last->size(), 1u);
  EXPECT_EQ((*last)[0].max, 119);
  auto ranged = store->query_buckets({.device = "dev", .sensor = "temp", .from = core::from_micros(start + 30 * kSecond),
                                      .to = core::from_micros(start + 89 * kSecond)},
                                     std::chrono::minutes(1));
  ASSERT_EQ(ranged->size(), 2u);
  EXPECT_EQ((*ranged)[0].count, 30u);
  EXPECT_EQ((*ranged)[1].count, 30u);
  EXPECT_EQ(store->query_buckets({.device = "dev", .sensor = "temp"}, std::chrono::microseconds(0)).status().code(),
            core::Code::kInvalid);
  EXPECT_TRUE(store->query_buckets({.device = "nope", .sensor = "temp"}, std::chrono::minutes(1))->empty());
}


// ---- The outbox and ingest.

namespace outbox_test {

OutboxTarget to(const std::string& destination, size_t max_messages = 0, size_t max_bytes = 0,
                bool drop_oldest = true) {
  return OutboxTarget{destination, max_messages, max_bytes, drop_oldest};
}

OutboxPut msg(std::vector<OutboxTarget> targets, const std::string& id, std::string body = "{}",
              const std::string& kind = "summary") {
  return OutboxPut{std::move(targets), id, kind, "application/json", std::move(body), core::from_micros(kBase)};
}

// outbox_put() and wait for its `done`.
Result<OutboxOutcome> put_sync(Store& store, OutboxPut p) {
  std::promise<Result<OutboxOutcome>> done;
  auto f = done.get_future();
  store.outbox_put(std::move(p), [&](Result<OutboxOutcome> r) { done.set_value(std::move(r)); });
  return f.get();
}

std::vector<std::string> ids_of(const std::vector<OutboxMessage>& ms) {
  std::vector<std::string> out;
  for (const auto& m : ms) out.push_back(m.id);
  return out;
}

std::optional<OutboxStats> stats_of(Store& store, const std::string& destination) {
  auto all = store.outbox_stats();
  EXPECT_TRUE(all.is_ok()) << all.status().to_string();
  if (!all) return std::nullopt;
  for (const auto& s : *all)
    if (s.destination == destination) return s;
  return std::nullopt;
}

using V = std::vector<std::string>;

}  // namespace outbox_test

using namespace outbox_test;

TEST_F(StoreTest, OutboxKeepsMessagesInOrderPerDestinationUntilDelivered) {
  auto store = open();
  ASSERT_TRUE(store);
  std::string jpeg("\xff\xd8\x00binary\x00\xff\xd9", 12);
  for (int i = 1; i <= 3; ++i) {
    auto r = put_sync(*store, msg({to("a"), to("b")}, fmt::format("m{}", i), i == 2 ? jpeg : "{\"n\":1}"));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    ASSERT_EQ(r->targets.size(), 2u);
    EXPECT_TRUE(r->targets[0].stored && r->targets[1].stored);
  }
  auto a = store->outbox_pending("a", 10);
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_EQ(ids_of(*a), (V{"m1", "m2", "m3"}));
  EXPECT_EQ((*a)[1].body, jpeg);  // bytes as given, NULs included
  EXPECT_EQ((*a)[0].kind, "summary");
  EXPECT_EQ((*a)[0].content_type, "application/json");
  EXPECT_EQ(core::to_micros((*a)[0].created), kBase);
  EXPECT_LT((*a)[0].seq, (*a)[1].seq);
  EXPECT_EQ(ids_of(*store->outbox_pending("a", 2)), (V{"m1", "m2"}));
  EXPECT_TRUE(store->outbox_pending("a", 0)->empty());
  EXPECT_TRUE(store->outbox_pending("nowhere", 10)->empty());

  ASSERT_TRUE(store->outbox_delivered("a", {"m1", "m2", "not-there"}));
  EXPECT_EQ(ids_of(*store->outbox_pending("a", 10)), (V{"m3"}));
  EXPECT_EQ(ids_of(*store->outbox_pending("b", 10)), (V{"m1", "m2", "m3"}));  // b is apart
  auto sa = stats_of(*store, "a");
  ASSERT_TRUE(sa);
  EXPECT_EQ(sa->pending, 1u);
  EXPECT_EQ(sa->delivered, 2u);
  EXPECT_EQ(sa->bytes, 7u);
  EXPECT_EQ(sa->dead, 0u);
  ASSERT_TRUE(sa->oldest_pending);
  EXPECT_EQ(core::to_micros(*sa->oldest_pending), kBase);
  auto sb = stats_of(*store, "b");
  EXPECT_EQ(sb->pending, 3u);
  EXPECT_EQ(sb->bytes, 7u + 7u + 12u);

  // An id a destination holds already is the same message offered again (a producer's retry
  // after a crash): that destination keeps what it has, the others take it.
  auto dup = put_sync(*store, msg({to("c"), to("b")}, "m3"));
  ASSERT_TRUE(dup.is_ok()) << dup.status().to_string();
  ASSERT_EQ(dup->targets.size(), 2u);
  EXPECT_TRUE(dup->targets[0].stored);
  EXPECT_FALSE(dup->targets[0].duplicate);
  EXPECT_FALSE(dup->targets[1].stored);
  EXPECT_TRUE(dup->targets[1].duplicate);
  EXPECT_EQ(ids_of(*store->outbox_pending("c", 10)), (V{"m3"}));
  EXPECT_EQ(ids_of(*store->outbox_pending("b", 10)), (V{"m1", "m2", "m3"}));
  ASSERT_TRUE(store->outbox_delivered("c", {"m3"}));
  // Bad puts are refused on the caller's thread.
  EXPECT_EQ(put_sync(*store, msg({}, "x")).status().code(), Code::kInvalid);
  EXPECT_EQ(put_sync(*store, msg({to("a")}, "")).status().code(), Code::kInvalid);
  EXPECT_EQ(put_sync(*store, msg({to("")}, "x")).status().code(), Code::kInvalid);

  // Across a restart: same messages, same order, and new ones still come after them even once
  // everything before was delivered (sequence numbers are never reused).
  int64_t last_seq = store->outbox_pending("b", 10)->back().seq;
  store->close();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(ids_of(*store->outbox_pending("b", 10)), (V{"m1", "m2", "m3"}));
  EXPECT_EQ(stats_of(*store, "a")->delivered, 2u);
  ASSERT_TRUE(store->outbox_delivered("b", {"m1", "m2", "m3"}));
  ASSERT_TRUE(put_sync(*store, msg({to("b")}, "m4")).is_ok());
  EXPECT_GT(store->outbox_pending("b", 10)->front().seq, last_seq);
}

TEST_F(StoreTest, OutboxAttemptsDeadLettersRetryAndDelete) {
  auto store = open();
  ASSERT_TRUE(store);
  for (const char* id : {"m1", "m2", "m3"}) ASSERT_TRUE(put_sync(*store, msg({to("a")}, id)).is_ok());
  ASSERT_TRUE(store->outbox_failed("a", {"m1", "m2"}, "connection refused"));
  ASSERT_TRUE(store->outbox_failed("a", {"m1"}, "HTTP 503"));
  auto p = *store->outbox_pending("a", 10);
  EXPECT_EQ(p[0].attempts, 2u);
  EXPECT_EQ(p[0].last_error, "HTTP 503");
  EXPECT_EQ(p[1].attempts, 1u);
  EXPECT_EQ(p[2].attempts, 0u);
  EXPECT_EQ(p[2].last_error, "");

  ASSERT_TRUE(store->outbox_kill("a", "m2", "HTTP 400: bad body"));
  EXPECT_EQ(store->outbox_kill("a", "m2", "again").code(), Code::kNotFound);  // not pending any more
  EXPECT_EQ(store->outbox_kill("a", "zz", "x").code(), Code::kNotFound);
  EXPECT_EQ(ids_of(*store->outbox_pending("a", 10)), (V{"m1", "m3"}));
  auto dead = store->outbox_dead("a", 0, 10);
  ASSERT_TRUE(dead.is_ok()) << dead.status().to_string();
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ((*dead)[0].id, "m2");
  EXPECT_TRUE((*dead)[0].dead);
  EXPECT_TRUE((*dead)[0].dead_at);
  EXPECT_EQ((*dead)[0].attempts, 2u);
  EXPECT_EQ((*dead)[0].last_error, "HTTP 400: bad body");
  EXPECT_EQ(store->outbox_dead("", 0, 10)->size(), 1u);  // every destination
  EXPECT_TRUE(store->outbox_dead("a", (*dead)[0].seq, 10)->empty());  // paged past it
  auto s = stats_of(*store, "a");
  EXPECT_EQ(s->pending, 2u);
  EXPECT_EQ(s->dead, 1u);

  // Retried: back at its place in the order, attempts from zero.
  auto retried = store->outbox_retry_dead("a", "m2");
  ASSERT_TRUE(retried.is_ok());
  EXPECT_EQ(*retried, 1u);
  p = *store->outbox_pending("a", 10);
  EXPECT_EQ(ids_of(p), (V{"m1", "m2", "m3"}));
  EXPECT_EQ(p[1].attempts, 0u);
  EXPECT_EQ(store->outbox_retry_dead("a", "m2").status().code(), Code::kNotFound);
  EXPECT_EQ(store->outbox_retry_dead("", "").status().code(), Code::kInvalid);

  ASSERT_TRUE(store->outbox_kill("a", "m1", "x"));
  ASSERT_TRUE(store->outbox_kill("a", "m3", "x"));
  EXPECT_EQ(*store->outbox_delete_dead("a", "m1"), 1u);
  EXPECT_EQ(store->outbox_delete_dead("a", "m1").status().code(), Code::kNotFound);
  EXPECT_EQ(*store->outbox_delete_dead("a", ""), 1u);  // all (m3)
  EXPECT_EQ(ids_of(*store->outbox_pending("a", 10)), (V{"m2"}));
  s = stats_of(*store, "a");
  EXPECT_EQ(s->pending, 1u);
  EXPECT_EQ(s->dead, 0u);
  EXPECT_EQ(s->delivered, 0u);  // deleting dead letters is not delivering them
  ASSERT_TRUE(store->outbox_kill("a", "m2", "x"));
  EXPECT_EQ(*store->outbox_retry_dead("a", ""), 1u);
  EXPECT_EQ(stats_of(*store, "a")->pending, 1u);
}

TEST_F(StoreTest, OutboxCapDropOldestDeletesDeadLettersThenTheOldestAndCountsThem) {
  auto store = open();
  ASSERT_TRUE(store);
  for (int i = 1; i <= 5; ++i) {
    auto r = put_sync(*store, msg({to("a", 3), to("b")}, fmt::format("m{}", i)));
    ASSERT_TRUE(r.is_ok());
    EXPECT_TRUE(r->targets[0].stored);
    EXPECT_EQ(r->targets[0].dropped, i > 3 ? 1u : 0u) << i;
    EXPECT_EQ(r->targets[1].dropped, 0u);
  }
  EXPECT_EQ(ids_of(*store->outbox_pending("a", 10)), (V{"m3", "m4", "m5"}));
  EXPECT_EQ(stats_of(*store, "a")->dropped, 2u);
  EXPECT_EQ(store->outbox_pending("b", 10)->size(), 5u);  // b has no cap

  // A dead letter goes before any pending message.
  ASSERT_TRUE(store->outbox_kill("a", "m4", "x"));
  ASSERT_TRUE(put_sync(*store, msg({to("a", 3)}, "m6")).is_ok());
  EXPECT_EQ(ids_of(*store->outbox_pending("a", 10)), (V{"m3", "m5", "m6"}));
  EXPECT_TRUE(store->outbox_dead("a", 0, 10)->empty());

  // By bytes: 10-byte bodies, at most 1024 bytes... and one larger than the cap is refused.
  for (int i = 0; i < 120; ++i) {
    ASSERT_TRUE(put_sync(*store, msg({to("c", 0, 1024)}, fmt::format("c{}", i), std::string(10, 'x'))).is_ok());
  }
  auto c = stats_of(*store, "c");
  EXPECT_EQ(c->pending, 102u);
  EXPECT_EQ(c->bytes, 1020u);
  EXPECT_EQ(c->dropped, 18u);
  EXPECT_EQ(store->outbox_pending("c", 1)->front().id, "c18");
  auto big = put_sync(*store, msg({to("c", 0, 1024), to("b")}, "big", std::string(2000, 'x')));
  ASSERT_TRUE(big.is_ok());
  EXPECT_TRUE(big->targets[0].refused);
  EXPECT_NE(big->targets[0].why.find("larger"), std::string::npos) << big->targets[0].why;
  EXPECT_TRUE(big->targets[1].stored);
  EXPECT_EQ(stats_of(*store, "c")->pending, 102u);  // nothing was dropped for it
}

TEST_F(StoreTest, OutboxCapRefuseNewLeavesThatDestinationOutAndSaysWhy) {
  auto store = open();
  ASSERT_TRUE(store);
  for (int i = 1; i <= 2; ++i) ASSERT_TRUE(put_sync(*store, msg({to("a", 2, 0, false)}, fmt::format("m{}", i))).is_ok());
  auto r = put_sync(*store, msg({to("a", 2, 0, false), to("b", 2, 0, false)}, "m3"));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->targets[0].refused);
  EXPECT_FALSE(r->targets[0].stored);
  EXPECT_NE(r->targets[0].why.find("full"), std::string::npos) << r->targets[0].why;
  EXPECT_NE(r->targets[0].why.find("'a'"), std::string::npos) << r->targets[0].why;
  EXPECT_TRUE(r->targets[1].stored);
  EXPECT_EQ(ids_of(*store->outbox_pending("a", 10)), (V{"m1", "m2"}));
  EXPECT_EQ(stats_of(*store, "a")->dropped, 0u);
  // Room again once one is delivered.
  ASSERT_TRUE(store->outbox_delivered("a", {"m1"}));
  r = put_sync(*store, msg({to("a", 2, 0, false)}, "m3"));
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(r->targets[0].stored);
  EXPECT_EQ(ids_of(*store->outbox_pending("a", 10)), (V{"m2", "m3"}));
}

TEST_F(StoreTest, EventAndItsOutboxMessageCommitTogetherOrNotAtAll) {
  auto store = open();
  ASSERT_TRUE(store);
  auto put_event = [&](const std::string& id, std::vector<OutboxTarget> targets) {
    std::promise<std::pair<Result<int64_t>, OutboxOutcome>> done;
    auto f = done.get_future();
    store->append_event_outbox(event("d", "command", kBase), msg(std::move(targets), id, "{}", "command"),
                               [&](Result<int64_t> e, OutboxOutcome o) { done.set_value({std::move(e), std::move(o)}); });
    return f.get();
  };
  auto [id, outcome] = put_event("e1", {to("a")});
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  ASSERT_EQ(outcome.targets.size(), 1u);
  EXPECT_TRUE(outcome.targets[0].stored);
  EXPECT_EQ(store->events_count(), 1u);
  EXPECT_EQ(ids_of(*store->outbox_pending("a", 10)), (V{"e1"}));

  // A full destination under refuse_new does not refuse the event itself.
  ASSERT_TRUE(put_sync(*store, msg({to("full", 1, 0, false)}, "x")).is_ok());
  auto [id2, outcome2] = put_event("e2", {to("full", 1, 0, false), to("a")});
  ASSERT_TRUE(id2.is_ok());
  EXPECT_TRUE(outcome2.targets[0].refused);
  EXPECT_TRUE(outcome2.targets[1].stored);
  EXPECT_EQ(store->events_count(), 2u);

  // A failing transaction keeps neither.
  store->TEST_fail_writes(true);
  auto [id3, outcome3] = put_event("e3", {to("a")});
  EXPECT_EQ(id3.status().code(), Code::kIo);
  EXPECT_TRUE(outcome3.targets.empty());
  store->TEST_fail_writes(false);
  EXPECT_EQ(store->events_count(), 2u);
  EXPECT_EQ(ids_of(*store->outbox_pending("a", 10)), (V{"e1", "e2"}));
  // Invalid events are refused at once.
  std::optional<Status> refused;
  store->append_event_outbox(event("", "command", kBase), msg({to("a")}, "e4"),
                             [&](Result<int64_t> e, OutboxOutcome) { refused = e.status(); });
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->code(), Code::kInvalid);
}

TEST_F(StoreTest, FailingWritesLoseNothingTheOutboxAccepted) {
  auto store = open();
  ASSERT_TRUE(store);
  for (const char* id : {"m1", "m2"}) ASSERT_TRUE(put_sync(*store, msg({to("a")}, id)).is_ok());
  store->TEST_fail_writes(true);
  EXPECT_EQ(put_sync(*store, msg({to("a")}, "m3")).status().code(), Code::kIo);
  EXPECT_EQ(store->outbox_delivered("a", {"m1"}).code(), Code::kIo);
  EXPECT_EQ(store->outbox_failed("a", {"m1"}, "x").code(), Code::kIo);
  EXPECT_EQ(store->outbox_kill("a", "m1", "x").code(), Code::kIo);
  auto ingested = store->ingest("edge", {IngestItem{"i1", {reading("e", "t", kBase, 1)}, std::nullopt}}, core::now());
  EXPECT_EQ(ingested.status().code(), Code::kIo);
  EXPECT_FALSE(store->health().ok);
  store->TEST_fail_writes(false);
  // What was accepted is all there, untouched; what failed left no trace.
  auto p = *store->outbox_pending("a", 10);
  EXPECT_EQ(ids_of(p), (V{"m1", "m2"}));
  EXPECT_EQ(p[0].attempts, 0u);
  EXPECT_EQ(stats_of(*store, "a")->delivered, 0u);
  EXPECT_EQ(store->readings_count(), 0u);
  // The failed ingest did not remember its id: the edge's retry is stored, not a duplicate.
  ingested = store->ingest("edge", {IngestItem{"i1", {reading("e", "t", kBase, 1)}, std::nullopt}}, core::now());
  ASSERT_TRUE(ingested.is_ok()) << ingested.status().to_string();
  EXPECT_EQ(ingested->accepted, 1u);
  EXPECT_EQ(store->readings_count(), 1u);
  store->close();
  store = open();
  EXPECT_EQ(ids_of(*store->outbox_pending("a", 10)), (V{"m1", "m2"}));
}

TEST_F(StoreTest, IngestStoresOnceAndSkipsIdsAlreadyStored) {
  auto store = open();
  ASSERT_TRUE(store);
  auto batch = [&] {
    std::vector<IngestItem> items;
    items.push_back({"r1", {reading("edge-1", "temp", kBase, 21.5, "C"), reading("edge-1", "temp", kBase + kSecond, 22)},
                     std::nullopt});
    items.push_back({"s1", {}, event("edge-1", "summary", kBase, R"({"mean":21.75})")});
    items.push_back({"e1", {}, event("edge-1", "button", kBase + kSecond, R"({"pressed":true})")});
    items.push_back({"e1", {}, event("edge-1", "button", kBase + kSecond)});  // the same id again in one batch
    return items;
  };
  auto first = store->ingest("edge-1", batch(), core::now());
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  EXPECT_EQ(first->accepted, 3u);
  EXPECT_EQ(first->duplicates, 1u);
  EXPECT_EQ(first->fresh, (std::vector<bool>{true, true, true, false}));
  ASSERT_EQ(first->events.size(), 2u);
  EXPECT_GT(first->events[0].id, 0);
  EXPECT_EQ(first->events[1].kind, "button");
  EXPECT_EQ(store->readings_count(), 2u);
  EXPECT_EQ(store->events_count(), 2u);

  // The retry after a lost answer: nothing new.
  auto again = store->ingest("edge-1", batch(), core::now());
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->accepted, 0u);
  EXPECT_EQ(again->duplicates, 4u);
  EXPECT_TRUE(again->events.empty());
  EXPECT_EQ(store->readings_count(), 2u);
  EXPECT_EQ(store->events_count(), 2u);
  auto temps = *store->query({.device = "edge-1", .sensor = "temp"});
  ASSERT_EQ(temps.size(), 2u);
  EXPECT_EQ(temps[0].unit, "C");
  EXPECT_EQ(store->query_events({.kind = "summary"})->front().payload, R"({"mean":21.75})");

  // Ids are per source; and they survive a restart.
  auto other = store->ingest("edge-2", {{"r1", {reading("edge-2", "temp", kBase, 1)}, std::nullopt}}, core::now());
  EXPECT_EQ(other->accepted, 1u);
  store->close();
  store = open();
  EXPECT_EQ(store->ingest("edge-1", batch(), core::now())->duplicates, 4u);
  EXPECT_EQ(store->events_count(), 2u);

  // Invalid input is refused before anything is written.
  EXPECT_EQ(store->ingest("", batch(), core::now()).status().code(), Code::kInvalid);
  EXPECT_EQ(store->ingest("e", {{"", {}, std::nullopt}}, core::now()).status().code(), Code::kInvalid);
  EXPECT_EQ(store->ingest("e", {{"x", {reading("", "t", kBase, 1)}, std::nullopt}}, core::now()).status().code(),
            Code::kInvalid);
  EXPECT_EQ(store->ingest("e", {{"x", {}, event("d", "", kBase)}}, core::now()).status().code(), Code::kInvalid);
}

TEST_F(StoreTest, IngestForgetsIdsOlderThanTheirMaxAge) {
  auto store = open();
  ASSERT_TRUE(store);
  auto now = core::now();
  auto long_ago = now - kIngestIdsMaxAge - std::chrono::hours(1);
  ASSERT_TRUE(store->ingest("edge", {{"old", {}, event("edge", "alert", kBase)}}, long_ago).is_ok());
  ASSERT_TRUE(store->ingest("edge", {{"new", {}, event("edge", "alert", kBase)}}, now - std::chrono::hours(1)).is_ok());
  EXPECT_EQ(sql_value("SELECT count(*) FROM ingested"), "2");
  // The next batch expires what is too old (a chunk at a time), and keeps what is not.
  auto r = store->ingest("edge", {{"new", {}, event("edge", "alert", kBase)}}, now);
  EXPECT_EQ(r->duplicates, 1u);
  EXPECT_EQ(sql_value("SELECT count(*) FROM ingested"), "1");
  EXPECT_EQ(sql_value("SELECT id FROM ingested"), "new");
}

TEST_F(StoreTest, MaxSizeFailsGrowingWritesAsFullAndDeliveringMakesRoom) {
  cfg_.max_size = 512 * 1024;
  auto store = open();
  ASSERT_TRUE(store);
  std::string body(8 * 1024, 'x');
  int stored = 0;
  Status failure;
  for (int i = 0; i < 200; ++i) {
    auto r = put_sync(*store, msg({to("a")}, fmt::format("m{}", i), body));
    if (!r) {
      failure = r.status();
      break;
    }
    ++stored;
  }
  ASSERT_FALSE(failure.is_ok()) << "512 KiB held 200 messages of 8 KiB?";
  EXPECT_GT(stored, 10);
  EXPECT_EQ(failure.code(), Code::kIo);
  EXPECT_NE(failure.message().find("full"), std::string::npos) << failure.to_string();
  EXPECT_FALSE(store->health().ok);
  EXPECT_NE(store->health().detail.find("full"), std::string::npos) << store->health().detail;
  // Everything accepted is there; delivering frees pages for new messages.
  auto pending = *store->outbox_pending("a", 1000);
  ASSERT_EQ(pending.size(), static_cast<size_t>(stored));
  std::vector<std::string> half;
  for (int i = 0; i < stored / 2; ++i) half.push_back(pending[static_cast<size_t>(i)].id);
  ASSERT_TRUE(store->outbox_delivered("a", half));
  auto r = put_sync(*store, msg({to("a")}, "after", body));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(store->health().ok);
  EXPECT_EQ(store->outbox_pending("a", 1000)->size(), static_cast<size_t>(stored - stored / 2 + 1));
}

}  // namespace
}  // namespace outpost::store
