// The outbox engine against the real store and a scripted Sink.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "upstream/upstream.hpp"

namespace outpost::upstream {
namespace {

namespace fs = std::filesystem;
using core::Code;
using core::Result;
using core::Status;
using std::chrono::milliseconds;

// Polls `fn` until it holds, for at most `limit` (a generous bound, never a speed claim).
template <typename Fn>
bool eventually(Fn fn, std::chrono::seconds limit = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (fn()) return true;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return fn();
}

// A destination that does what the test says: deliver, fail (retry), or refuse one id for good.
class FakeSink final : public Sink {
 public:
  struct Shared {
    std::mutex mu;
    bool down = false;                // every attempt fails (retry)
    std::set<std::string> refuse;     // these ids are dead
    std::vector<std::string> got;     // ids confirmed, in order
    std::vector<uint32_t> attempts;   // Message::attempts of each confirmed message
    size_t calls = 0;                 // deliver() calls
    size_t max_batch = 10;
    size_t partial = 0;               // > 0: confirm at most this many per call, then kRetry
  };

  explicit FakeSink(std::shared_ptr<Shared> s) : s_(std::move(s)) {}

  Delivery deliver(std::span<const Message> batch, milliseconds) override {
    std::lock_guard lk(s_->mu);
    ++s_->calls;
    Delivery d;
    if (s_->down) {
      d.rest = Outcome::kRetry;
      d.error = "connection refused (fake)";
      return d;
    }
    for (const auto& m : batch) {
      if (s_->refuse.count(m.id)) {
        d.rest = Outcome::kDead;
        d.error = "HTTP 400: no (fake)";
        return d;
      }
      if (s_->partial > 0 && d.delivered == s_->partial) {
        d.rest = Outcome::kRetry;
        d.error = "time budget spent (fake)";
        return d;
      }
      s_->got.push_back(m.id);
      s_->attempts.push_back(m.attempts);
      ++d.delivered;
    }
    return d;
  }
  size_t max_batch() const override { return s_->max_batch; }
  std::string describe() const override { return "fake://"; }

 private:
  std::shared_ptr<Shared> s_;
};

config::UpstreamDestination dest(const std::string& name, std::vector<std::string> kinds = {"summary", "alert"}) {
  config::UpstreamDestination d;
  d.name = name;
  d.url = "http://127.0.0.1:9/" + name;
  d.kinds = std::move(kinds);
  return d;
}

class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "outpost-outbox-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    store_cfg_.data_dir = (root_ / "data").string();
    cfg_.backoff_initial = milliseconds(10);
    cfg_.backoff_max = milliseconds(40);
    open_store();
  }
  void TearDown() override {
    outbox_.reset();
    if (store_) store_->close();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  void open_store() {
    auto s = store::Store::open(store_cfg_, nullptr);
    ASSERT_TRUE(s) << s.status().to_string();
    store_ = std::move(*s);
  }

  std::shared_ptr<FakeSink::Shared> sink(const std::string& name) {
    auto& s = sinks_[name];
    if (!s) s = std::make_shared<FakeSink::Shared>();
    return s;
  }

  // A fresh Outbox over the store with fake sinks per destination name (a new Registry each time).
  void make_outbox(bool start = true) {
    metrics_ = std::make_unique<core::Registry>();
    auto o = Outbox::create(cfg_, "edge-1", *store_, *metrics_, [this](const config::UpstreamDestination& d) {
      return Result<std::unique_ptr<Sink>>(std::make_unique<FakeSink>(sink(d.name)));
    });
    ASSERT_TRUE(o) << o.status().to_string();
    outbox_ = std::move(*o);
    if (start) outbox_->start();
  }

  Status offer_sync(const std::string& kind, const std::string& body) {
    std::promise<Status> p;
    auto f = p.get_future();
    outbox_->offer(kind, "application/json", body, [&](Status s) { p.set_value(std::move(s)); });
    return f.get();
  }

  std::vector<std::string> got(const std::string& name) {
    std::lock_guard lk(sink(name)->mu);
    return sink(name)->got;
  }

  const DestinationStatus status_of(const std::string& name) {
    for (auto& s : outbox_->status())
      if (s.name == name) return s;
    ADD_FAILURE() << "no destination " << name;
    return {};
  }

  // The ids of the pending messages of a destination, oldest first.
  std::vector<std::string> pending(const std::string& name) {
    std::vector<std::string> out;
    auto rows = store_->outbox_pending(name, 1000);
    EXPECT_TRUE(rows) << rows.status().to_string();
    if (rows) {
      for (const auto& m : *rows) out.push_back(m.id);
    }
    return out;
  }

  fs::path root_;
  config::StoreConfig store_cfg_;
  config::UpstreamConfig cfg_;
  std::unique_ptr<store::Store> store_;
  std::map<std::string, std::shared_ptr<FakeSink::Shared>> sinks_;
  std::unique_ptr<core::Registry> metrics_;
  std::unique_ptr<Outbox> outbox_;
};

TEST_F(OutboxTest, DeliversEveryMessageOnceInOrderAndOnlyToDestinationsThatTakeItsKind) {
  cfg_.destinations = {dest("cloud"), dest("alerts", {"alert"})};
  make_outbox();
  EXPECT_TRUE(outbox_->wants("summary"));
  EXPECT_TRUE(outbox_->wants("alert"));
  EXPECT_FALSE(outbox_->wants("motion"));
  for (int i = 0; i < 25; ++i) {
    ASSERT_TRUE(offer_sync(i % 5 == 0 ? "alert" : "summary", fmt::format("{{\"n\":{}}}", i)));
  }
  ASSERT_TRUE(offer_sync("motion", "{}"));  // nobody takes it: nothing to do, and that is fine
  ASSERT_TRUE(eventually([&] { return got("cloud").size() == 25 && got("alerts").size() == 5; }));
  // In order: the ids the sink saw are the ids in the order they were offered (check through
  // the bodies' numbers, which the fake does not see, by the outbox's own count instead).
  auto cloud = got("cloud");
  EXPECT_EQ(std::set<std::string>(cloud.begin(), cloud.end()).size(), 25u) << "a message went twice";
  auto alerts = got("alerts");
  // The alerts went to both, under the same id (a receiver deduplicates on it).
  for (const auto& id : alerts) EXPECT_NE(std::find(cloud.begin(), cloud.end(), id), cloud.end()) << id;
  ASSERT_TRUE(eventually([&] { return pending("cloud").empty() && pending("alerts").empty(); }));
  auto s = status_of("cloud");
  EXPECT_EQ(s.stats.delivered, 25u);
  EXPECT_EQ(s.stats.pending, 0u);
  EXPECT_EQ(s.retries, 0u);
  EXPECT_EQ(s.target, "fake://");
  std::string text = metrics_->render();
  EXPECT_NE(text.find("outpost_upstream_delivered_total{destination=\"cloud\"} 25"), std::string::npos) << text;
  EXPECT_NE(text.find("outpost_upstream_pending{destination=\"alerts\"} 0"), std::string::npos) << text;
}

TEST_F(OutboxTest, OrderFollowsOffersEvenAcrossBatches) {
  cfg_.destinations = {dest("cloud")};
  sink("cloud")->max_batch = 3;
  sink("cloud")->down = true;  // everything waits, then goes in batches of 3
  make_outbox();
  std::vector<std::string> offered;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(offer_sync("summary", "{}"));
  offered = pending("cloud");
  ASSERT_EQ(offered.size(), 10u);
  {
    std::lock_guard lk(sink("cloud")->mu);
    sink("cloud")->down = false;
  }
  ASSERT_TRUE(eventually([&] { return got("cloud").size() == 10; }));
  EXPECT_EQ(got("cloud"), offered);
}

TEST_F(OutboxTest, RetriesWithBackoffWhileTheDestinationFailsAndLosesNothing) {
  cfg_.destinations = {dest("cloud")};
  sink("cloud")->down = true;
  make_outbox();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(offer_sync("summary", "{}"));
  // Failing: attempts are counted and recorded on the messages, which all stay.
  ASSERT_TRUE(eventually([&] { return status_of("cloud").retries >= 3; }));
  auto s = status_of("cloud");
  EXPECT_GE(s.failures, 3u);
  EXPECT_EQ(s.last_error, "connection refused (fake)");
  EXPECT_TRUE(s.last_error_at);
  EXPECT_EQ(s.stats.pending, 3u);
  auto waiting = *store_->outbox_pending("cloud", 10);
  ASSERT_EQ(waiting.size(), 3u);
  EXPECT_GE(waiting[0].attempts, 1u);
  EXPECT_EQ(waiting[0].last_error, "connection refused (fake)");
  std::string text = metrics_->render();
  EXPECT_NE(text.find("outpost_upstream_pending{destination=\"cloud\"} 3"), std::string::npos) << text;
  // Backing off: the calls are spaced, not a busy loop. (10 ms doubling to 40 ms: after a
  // while there are far fewer calls than a loop would make; a bound, not a timing claim.)
  size_t calls_before;
  {
    std::lock_guard lk(sink("cloud")->mu);
    calls_before = sink("cloud")->calls;
  }
  std::this_thread::sleep_for(milliseconds(200));
  size_t calls_after;
  {
    std::lock_guard lk(sink("cloud")->mu);
    calls_after = sink("cloud")->calls;
  }
  EXPECT_LT(calls_after - calls_before, 50u);

  {
    std::lock_guard lk(sink("cloud")->mu);
    sink("cloud")->down = false;
  }
  ASSERT_TRUE(eventually([&] { return got("cloud").size() == 3; }));
  ASSERT_TRUE(eventually([&] { return status_of("cloud").failures == 0; }));
  EXPECT_EQ(got("cloud"), (std::vector<std::string>{waiting[0].id, waiting[1].id, waiting[2].id}));
  // Each message told the sink how often it had been tried.
  {
    std::lock_guard lk(sink("cloud")->mu);
    EXPECT_GE(sink("cloud")->attempts[0], 1u);
  }
  EXPECT_TRUE(eventually([&] { return pending("cloud").empty(); }));
}

TEST_F(OutboxTest, ARefusedMessageGoesToTheDeadLettersAndTheRestGoesOn) {
  cfg_.destinations = {dest("cloud")};
  sink("cloud")->down = true;
  make_outbox();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(offer_sync("summary", "{}"));
  auto ids = pending("cloud");
  {
    std::lock_guard lk(sink("cloud")->mu);
    sink("cloud")->refuse.insert(ids[1]);
    sink("cloud")->down = false;
  }
  ASSERT_TRUE(eventually([&] { return got("cloud").size() == 2; }));
  EXPECT_EQ(got("cloud"), (std::vector<std::string>{ids[0], ids[2]}));
  ASSERT_TRUE(eventually([&] { return status_of("cloud").stats.dead == 1; }));
  auto dead = outbox_->dead_letters("cloud", 0, 10);
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ((*dead)[0].id, ids[1]);
  EXPECT_EQ((*dead)[0].last_error, "HTTP 400: no (fake)");
  EXPECT_TRUE(eventually([&] { return status_of("cloud").dead_lettered == 1; }));
  EXPECT_NE(metrics_->render().find("outpost_upstream_dead_letters{destination=\"cloud\"} 1"), std::string::npos);

  // Fixed upstream, retried by the operator: delivered.
  {
    std::lock_guard lk(sink("cloud")->mu);
    sink("cloud")->refuse.clear();
  }
  EXPECT_EQ(outbox_->retry_dead("cloud", "not-an-id").status().code(), Code::kNotFound);
  ASSERT_EQ(*outbox_->retry_dead("cloud", ids[1]), 1u);
  ASSERT_TRUE(eventually([&] { return got("cloud").size() == 3; }));
  EXPECT_EQ(got("cloud").back(), ids[1]);
  EXPECT_TRUE(eventually([&] { return status_of("cloud").stats.dead == 0 && status_of("cloud").stats.pending == 0; }));
}

TEST_F(OutboxTest, PartialProgressGoesOnWithoutBackingOff) {
  cfg_.destinations = {dest("cloud")};
  cfg_.backoff_initial = milliseconds(60'000);  // a backoff would stall this test: there must be none
  cfg_.backoff_max = milliseconds(60'000);
  sink("cloud")->partial = 2;
  sink("cloud")->down = true;
  make_outbox(false);
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(offer_sync("summary", "{}"));
  {
    std::lock_guard lk(sink("cloud")->mu);
    sink("cloud")->down = false;
  }
  outbox_->start();
  ASSERT_TRUE(eventually([&] { return got("cloud").size() == 7; }));
  EXPECT_EQ(status_of("cloud").retries, 0u);
}

TEST_F(OutboxTest, ResumesWhereItStoppedAfterARestart) {
  cfg_.destinations = {dest("cloud")};
  sink("cloud")->down = true;
  make_outbox();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(offer_sync("summary", "{}"));
  auto ids = pending("cloud");
  outbox_->stop();
  outbox_.reset();
  store_->close();
  store_.reset();

  open_store();
  sinks_.clear();
  make_outbox();
  ASSERT_TRUE(eventually([&] { return got("cloud").size() == 5; }));
  EXPECT_EQ(got("cloud"), ids);
  EXPECT_TRUE(eventually([&] { return pending("cloud").empty(); }));
}

TEST_F(OutboxTest, RefuseNewTellsTheProducerAndCountsIt) {
  cfg_.destinations = {dest("full"), dest("roomy")};
  cfg_.destinations[0].max_messages = 2;
  cfg_.destinations[0].overflow = "refuse_new";
  sink("full")->down = true;
  sink("roomy")->down = true;
  make_outbox();
  ASSERT_TRUE(offer_sync("summary", "{}"));
  ASSERT_TRUE(offer_sync("summary", "{}"));
  Status s = offer_sync("summary", "{}");
  EXPECT_EQ(s.code(), Code::kBusy) << s.to_string();
  EXPECT_NE(s.message().find("'full'"), std::string::npos) << s.message();
  EXPECT_EQ(pending("full").size(), 2u);
  EXPECT_EQ(pending("roomy").size(), 3u);  // the other destination has it
  EXPECT_EQ(status_of("full").refused, 1u);
  std::string text = metrics_->render();
  EXPECT_NE(text.find("outpost_upstream_refused_total{destination=\"full\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("outpost_upstream_refused_total{destination=\"roomy\"} 0"), std::string::npos) << text;
}

TEST_F(OutboxTest, OfferAllKeepsTheProducersIdsAndAnIdOfferedAgainIsTheSameMessage) {
  cfg_.destinations = {dest("cloud")};
  sink("cloud")->down = true;
  make_outbox();
  auto offer_all = [&](std::vector<Outbox::Item> items) {
    std::promise<Status> p;
    auto f = p.get_future();
    outbox_->offer_all("summary", "application/json", std::move(items), [&](Status st) { p.set_value(std::move(st)); });
    return f.get();
  };
  ASSERT_TRUE(offer_all({{"summary:a/t/1", "{\"n\":1}"}, {"summary:a/t/2", "{\"n\":2}"}}));
  ASSERT_TRUE(offer_all({}));  // nothing to offer is done at once
  // After a crash the producer hands over again what it could not see committed, and more.
  ASSERT_TRUE(offer_all({{"summary:a/t/2", "{\"n\":2}"}, {"summary:a/t/3", "{\"n\":3}"}}));
  EXPECT_EQ(pending("cloud"), (std::vector<std::string>{"summary:a/t/1", "summary:a/t/2", "summary:a/t/3"}));
  {
    std::lock_guard lk(sink("cloud")->mu);
    sink("cloud")->down = false;
  }
  ASSERT_TRUE(eventually([&] { return got("cloud").size() == 3; }));
  EXPECT_EQ(got("cloud"), (std::vector<std::string>{"summary:a/t/1", "summary:a/t/2", "summary:a/t/3"}));
}

TEST_F(OutboxTest, OfferAllSaysBusyWhenACapRefusedSome) {
  cfg_.destinations = {dest("full")};
  cfg_.destinations[0].max_messages = 2;
  cfg_.destinations[0].overflow = "refuse_new";
  sink("full")->down = true;
  make_outbox();
  std::promise<Status> p;
  auto f = p.get_future();
  outbox_->offer_all("summary", "application/json", {{"x1", "{}"}, {"x2", "{}"}, {"x3", "{}"}},
                     [&](Status st) { p.set_value(std::move(st)); });
  Status st = f.get();
  EXPECT_EQ(st.code(), Code::kBusy) << st.to_string();
  EXPECT_EQ(pending("full"), (std::vector<std::string>{"x1", "x2"}));
}

TEST_F(OutboxTest, DropOldestKeepsTheNewestAndCountsWhatItDropped) {
  cfg_.destinations = {dest("cloud")};
  cfg_.destinations[0].max_messages = 3;
  sink("cloud")->down = true;
  make_outbox();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(offer_sync("summary", "{}"));
  auto kept = pending("cloud");
  EXPECT_EQ(kept.size(), 3u);
  EXPECT_EQ(status_of("cloud").stats.dropped, 2u);
  EXPECT_NE(metrics_->render().find("outpost_upstream_dropped_total{destination=\"cloud\"} 2"), std::string::npos);
  {
    std::lock_guard lk(sink("cloud")->mu);
    sink("cloud")->down = false;
  }
  ASSERT_TRUE(eventually([&] { return got("cloud").size() == 3; }));
  EXPECT_EQ(got("cloud"), kept);
}

TEST_F(OutboxTest, ChosenEventsAreStoredWithTheirMessageAndOthersAreJustStored) {
  cfg_.destinations = {dest("cloud", {"button"})};
  make_outbox();
  auto record = [&](const std::string& kind) {
    std::promise<Result<int64_t>> p;
    auto f = p.get_future();
    outbox_->record_event(core::Event{0, core::now(), "edge-1", kind, R"({"pressed":true})"},
                          [&](Result<int64_t> id) { p.set_value(std::move(id)); });
    return f.get();
  };
  auto b = record("button");
  auto m = record("motion");
  ASSERT_TRUE(b.is_ok() && m.is_ok());
  EXPECT_EQ(store_->events_count(), 2u);
  ASSERT_TRUE(eventually([&] { return got("cloud").size() == 1; }));
  EXPECT_TRUE(eventually([&] { return status_of("cloud").stats.delivered == 1; }));
}

TEST_F(OutboxTest, ADestinationWithoutASinkStopsStartUpNamingIt) {
  cfg_.destinations = {dest("cloud"), dest("broker")};
  cfg_.destinations[1].url = "mqtt://127.0.0.1:1883";
  core::Registry metrics;
  auto o = Outbox::create(cfg_, "edge-1", *store_, metrics, [](const config::UpstreamDestination& d) {
    if (d.url.rfind("mqtt", 0) == 0) return Result<std::unique_ptr<Sink>>(Status::unavailable("no MQTT upstream in this build"));
    return make_http_sink(d, "edge-1");
  });
  ASSERT_FALSE(o);
  EXPECT_NE(o.status().message().find("upstream.destinations[1]"), std::string::npos) << o.status().message();
  EXPECT_NE(o.status().message().find("'broker'"), std::string::npos) << o.status().message();
  EXPECT_NE(o.status().message().find("no MQTT upstream"), std::string::npos) << o.status().message();
}

TEST_F(OutboxTest, AFailingStoreRefusesOffersAndLosesNothingAccepted) {
  cfg_.destinations = {dest("cloud")};
  sink("cloud")->down = true;
  make_outbox();
  ASSERT_TRUE(offer_sync("summary", "{}"));
  store_->TEST_fail_writes(true);
  Status s = offer_sync("summary", "{}");
  EXPECT_EQ(s.code(), Code::kIo) << s.to_string();
  // Deliveries cannot be recorded either while it fails: nothing is deleted, so nothing is lost.
  {
    std::lock_guard lk(sink("cloud")->mu);
    sink("cloud")->down = false;
  }
  ASSERT_TRUE(eventually([&] { return !got("cloud").empty(); }));
  EXPECT_EQ(pending("cloud").size(), 1u);
  store_->TEST_fail_writes(false);
  ASSERT_TRUE(eventually([&] { return pending("cloud").empty(); }));
  // At least once: it went again after the failed delete, under the same id.
  auto ids = got("cloud");
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 1u);
}

TEST_F(OutboxTest, StatusShowsRowsOfADestinationNoLongerConfigured) {
  cfg_.destinations = {dest("old")};
  sink("old")->down = true;
  make_outbox();
  ASSERT_TRUE(offer_sync("summary", "{}"));
  outbox_.reset();
  cfg_.destinations = {dest("new")};
  make_outbox();
  auto st = outbox_->status();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[1].name, "old");
  EXPECT_FALSE(st[1].configured);
  EXPECT_EQ(st[1].stats.pending, 1u);
}

}  // namespace
}  // namespace outpost::upstream
