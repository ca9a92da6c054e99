#include "edge/aggregator.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>

namespace outpost::edge {
namespace {

using std::chrono::microseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using namespace std::chrono_literals;

class FakeClock : public core::Clock {
 public:
  core::TimePoint now() const override { return t; }
  core::TimePoint t;
};

// An hour ago, at the start of a 5-minute window.
const core::TimePoint kW0 = window_start(core::now() - std::chrono::hours(1), minutes(5));

core::Reading reading(const std::string& device, const std::string& sensor, core::TimePoint ts, double v,
                      const std::string& unit = "Cel") {
  core::Reading r;
  r.device = device;
  r.sensor = sensor;
  r.ts = ts;
  r.value = v;
  r.unit = unit;
  return r;
}

double metric(const core::Registry& r, const std::string& sample) {
  std::string text = r.render();
  size_t at = text.find("\n" + sample + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + sample.size() + 2));
}

// ---- the accumulator

TEST(WindowStats, SampleStdevMeanMinMaxFirstLast) {
  WindowStats w;
  const double values[] = {2, 4, 4, 4, 5, 5, 7, 9};
  for (int i = 0; i < 8; ++i) w.add(values[i], kW0 + seconds(i));
  EXPECT_EQ(w.count(), 8u);
  EXPECT_DOUBLE_EQ(w.mean(), 5);
  EXPECT_NEAR(w.stdev(), std::sqrt(32.0 / 7), 1e-12);  // sample: sum of squares 32 over n - 1
  EXPECT_EQ(w.min(), 2);
  EXPECT_EQ(w.max(), 9);
  EXPECT_EQ(w.first(), 2);
  EXPECT_EQ(w.last(), 9);
}

TEST(WindowStats, OneValueHasStdevZeroAndNoneHasCountZero) {
  WindowStats w;
  EXPECT_EQ(w.count(), 0u);
  EXPECT_EQ(w.stdev(), 0);
  w.add(21.5, kW0);
  EXPECT_EQ(w.count(), 1u);
  EXPECT_EQ(w.stdev(), 0);
  EXPECT_EQ(w.mean(), 21.5);
  EXPECT_EQ(w.first(), 21.5);
  EXPECT_EQ(w.last(), 21.5);
}

TEST(WindowStats, FirstAndLastFollowTimestampsNotArrival) {
  WindowStats w;
  w.add(3, kW0 + seconds(30));
  w.add(1, kW0 + seconds(10));  // earlier, arrives later
  w.add(9, kW0 + seconds(50));
  w.add(7, kW0 + seconds(20));
  w.add(8, kW0 + seconds(50));  // same time as the latest: arrival order decides
  EXPECT_EQ(w.first(), 1);
  EXPECT_EQ(w.last(), 8);
}

TEST(WindowStats, StableForLargeValuesWithSmallSpread) {
  // Sum-of-squares would lose everything here: (1e9)^2 swamps the spread in a double.
  WindowStats w;
  for (double d : {4.0, 7.0, 13.0, 16.0}) w.add(1e9 + d, kW0);
  EXPECT_NEAR(w.mean(), 1e9 + 10, 1e-6);
  EXPECT_NEAR(w.stdev(), std::sqrt(30.0), 1e-6);
}

TEST(WindowStats, StateRoundTrips) {
  WindowStats w;
  for (int i = 0; i < 5; ++i) w.add(i * 1.5, kW0 + seconds(i));
  WindowStats back = WindowStats::from_state(w.state());
  back.add(100, kW0 + seconds(9));
  w.add(100, kW0 + seconds(9));
  core::Summary a, b;
  w.fill(a);
  back.fill(b);
  EXPECT_EQ(core::summary_json(a), core::summary_json(b));
}

TEST(WindowStart, AlignedToTheEpochAlsoBefore1970) {
  EXPECT_EQ(window_start(core::from_micros(1'000'000'123), minutes(5)), core::from_micros(900'000'000));
  EXPECT_EQ(window_start(core::from_micros(900'000'000), minutes(5)), core::from_micros(900'000'000));
  EXPECT_EQ(window_start(core::from_micros(-1), minutes(5)), core::from_micros(-300'000'000));
  auto t = *core::parse_iso8601("2026-11-21T10:07:31.5Z");
  EXPECT_EQ(core::format_iso8601(window_start(t, minutes(5))), "2026-11-21T10:05:00.000000Z");
  EXPECT_EQ(core::format_iso8601(window_start(t, minutes(1))), "2026-11-21T10:07:00.000000Z");
  EXPECT_EQ(core::format_iso8601(window_start(t, std::chrono::hours(1))), "2026-11-21T10:00:00.000000Z");
}

// ---- the aggregator, with a fake clock, a real store and a bus

class AggregatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("outpost-agg-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    open_store();
    sub_ = bus_.subscribe("test", 1000, nullptr);
    clock_.t = kW0;
    cfg_.summary_grace = 2s;
  }
  void TearDown() override {
    if (store_) store_->close();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void open_store() {
    config::StoreConfig sc;
    sc.data_dir = dir_.string();
    auto s = store::Store::open(sc, nullptr);
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store_ = std::move(s.value());
  }
  std::unique_ptr<Aggregator> make() { return std::make_unique<Aggregator>(cfg_, *store_, bus_, metrics_, clock_); }
  // Everything queued committed, and what the callbacks queued in turn.
  void settle() {
    ASSERT_TRUE(store_->flush());
    ASSERT_TRUE(store_->flush());
  }
  std::vector<core::Summary> stored(const std::string& device = "", const std::string& sensor = "") {
    auto r = store_->query_summaries({.device = device, .sensor = sensor, .limit = 1000});
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? *r : std::vector<core::Summary>{};
  }
  std::vector<core::Event> events() { return sub_->take(); }
  // Ticks once a second from the clock's time to `until`.
  void tick_until(Aggregator& a, core::TimePoint until) {
    while (clock_.t < until) {
      clock_.t += 1s;
      a.tick(clock_.t);
    }
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  core::Registry metrics_;
  core::Bus bus_;
  std::shared_ptr<core::Bus::Subscriber> sub_;
  FakeClock clock_;
  config::AggregatorConfig cfg_;
};

TEST_F(AggregatorTest, AWindowClosesOnTimeWithNoFurtherReadingAndIsStoredAndPublished) {
  auto a = make();
  ASSERT_TRUE(a->start());
  clock_.t = kW0 + 10s;
  a->observe({reading("pi", "cpu_temp_c", kW0 + 10s, 40), reading("pi", "cpu_temp_c", kW0 + 70s, 44),
              reading("pi", "cpu_temp_c", kW0 + 299s, 42)});
  // Its end, and the grace after it: nothing yet.
  tick_until(*a, kW0 + 5min + 1s);
  settle();
  EXPECT_TRUE(stored().empty());
  EXPECT_EQ(a->stats().open_windows, 1u);
  // Then it closes, although no reading came after it.
  tick_until(*a, kW0 + 5min + 2s);
  settle();
  auto got = stored();
  ASSERT_EQ(got.size(), 1u);
  const auto& s = got[0];
  EXPECT_EQ(s.device, "pi");
  EXPECT_EQ(s.sensor, "cpu_temp_c");
  EXPECT_EQ(s.unit, "Cel");
  EXPECT_EQ(s.period_start, kW0);
  EXPECT_EQ(s.period_end, kW0 + 5min);
  EXPECT_EQ(s.count, 3u);
  EXPECT_DOUBLE_EQ(s.mean, 42);
  EXPECT_EQ(s.min, 40);
  EXPECT_EQ(s.max, 44);
  EXPECT_DOUBLE_EQ(s.stdev, 2);  // deviations -2, 2, 0: 8 / (3 - 1) = 4
  EXPECT_EQ(s.first, 40);
  EXPECT_EQ(s.last, 42);
  auto ev = events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, "summary");
  EXPECT_EQ(ev[0].device, "pi");
  EXPECT_EQ(ev[0].ts, kW0 + 5min);
  EXPECT_EQ(ev[0].payload, core::summary_json(s).dump());
  EXPECT_EQ(a->stats().open_windows, 0u);
  EXPECT_EQ(a->stats().summaries, 1u);
  EXPECT_EQ(metric(metrics_, "outpost_summaries_total"), 1);
  EXPECT_EQ(metric(metrics_, "outpost_summary_readings_total"), 3);
}

TEST_F(AggregatorTest, AWindowWithNoReadingProducesNothing) {
  auto a = make();
  ASSERT_TRUE(a->start());
  tick_until(*a, kW0 + 20min);  // four windows, no reading
  settle();
  EXPECT_TRUE(stored().empty());
  EXPECT_TRUE(events().empty());
  // Readings in the first and the third window only: two summaries, none for the second.
  clock_.t = kW0 + 20min + 1s;
  a->observe({reading("d", "t", clock_.t, 1)});
  tick_until(*a, kW0 + 30min + 30s);
  a->observe({reading("d", "t", clock_.t, 3)});
  tick_until(*a, kW0 + 40min);
  settle();
  auto got = stored();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].period_start, kW0 + 20min);
  EXPECT_EQ(got[1].period_start, kW0 + 30min);
  EXPECT_EQ(got[1].mean, 3);
}

TEST_F(AggregatorTest, NonNumericNanAndInfiniteReadingsAreIgnored) {
  auto a = make();
  ASSERT_TRUE(a->start());
  auto text = reading("d", "t", kW0 + 1s, 0);
  text.text = R"([1,2,3])";
  auto word = reading("d", "name", kW0 + 1s, 0);
  word.text = R"("hello")";
  a->observe({text, word, reading("d", "t", kW0 + 2s, std::nan("")),
              reading("d", "t", kW0 + 3s, std::numeric_limits<double>::infinity()), reading("d", "t", kW0 + 4s, 5),
              reading("d", "t", kW0 + 5s, 7)});
  tick_until(*a, kW0 + 6min);
  settle();
  auto got = stored();
  ASSERT_EQ(got.size(), 1u);  // nothing for "name", which had only text
  EXPECT_EQ(got[0].sensor, "t");
  EXPECT_EQ(got[0].count, 2u);
  EXPECT_EQ(got[0].mean, 6);
  EXPECT_EQ(got[0].first, 5);
}

TEST_F(AggregatorTest, PerSensorWindowsExactDeviceSensorFirst) {
  cfg_.summary_window = 5min;
  cfg_.summary_windows = {{"fast", 1min}, {"dev2/fast", 30s}};
  auto a = make();
  EXPECT_EQ(a->window_for("dev1", "fast"), minutes(1));
  EXPECT_EQ(a->window_for("dev2", "fast"), seconds(30));
  EXPECT_EQ(a->window_for("dev2", "slow"), minutes(5));
  ASSERT_TRUE(a->start());
  for (int i = 0; i < 300; i += 10) {
    clock_.t = kW0 + seconds(i);
    a->observe({reading("dev1", "fast", clock_.t, i), reading("dev2", "fast", clock_.t, i),
                reading("dev2", "slow", clock_.t, i)});
    a->tick(clock_.t);
  }
  tick_until(*a, kW0 + 6min);
  settle();
  EXPECT_EQ(stored("dev1", "fast").size(), 5u);
  EXPECT_EQ(stored("dev2", "fast").size(), 10u);
  ASSERT_EQ(stored("dev2", "slow").size(), 1u);
  auto fast = stored("dev2", "fast");
  EXPECT_EQ(fast[1].period_start, kW0 + 30s);
  EXPECT_EQ(fast[1].period_end, kW0 + 60s);
  EXPECT_EQ(fast[1].count, 3u);  // 30, 40, 50
  EXPECT_EQ(fast[1].mean, 40);
  EXPECT_EQ(stored("dev2", "slow")[0].count, 30u);
}

TEST_F(AggregatorTest, LateReadingsForAClosedWindowAreDroppedAndCounted) {
  auto a = make();
  ASSERT_TRUE(a->start());
  clock_.t = kW0 + 299s;
  a->observe({reading("d", "t", kW0 + 299s, 1)});
  tick_until(*a, kW0 + 5min + 2s);  // closed
  // Stamped within the grace but arriving after it: its window has been summarised.
  a->observe({reading("d", "t", kW0 + 299500ms, 100), reading("d", "t", clock_.t, 2)});
  tick_until(*a, kW0 + 11min);
  settle();
  auto got = stored();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].count, 1u);
  EXPECT_EQ(got[0].mean, 1);  // not revised
  EXPECT_EQ(got[1].mean, 2);
  EXPECT_EQ(metric(metrics_, R"(outpost_summary_readings_dropped_total{reason="late"})"), 1);
  EXPECT_EQ(a->stats().late, 1u);
}

TEST_F(AggregatorTest, ReadingsWithinTheGraceStillCount) {
  auto a = make();
  ASSERT_TRUE(a->start());
  clock_.t = kW0 + 299s;
  a->observe({reading("d", "t", kW0 + 299s, 1)});
  tick_until(*a, kW0 + 5min + 1s);
  a->observe({reading("d", "t", kW0 + 299900ms, 3)});  // stamped before the end, came 1 s after it
  tick_until(*a, kW0 + 6min);
  settle();
  auto got = stored();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].count, 2u);
  EXPECT_EQ(got[0].last, 3);
}

TEST_F(AggregatorTest, ABacklogReplayedLongAfterIsSummarisedWhileItArrives) {
  auto a = make();
  ASSERT_TRUE(a->start());
  clock_.t = kW0 + 1h;
  // A device back from an outage sends what it kept, an hour old, in several packets.
  for (int packet = 0; packet < 3; ++packet) {
    std::vector<core::Reading> rs;
    for (int i = 0; i < 100; ++i) {
      int n = packet * 100 + i;
      rs.push_back(reading("d", "t", kW0 + seconds(n * 2), n));  // 0..598 s: two windows
    }
    a->observe(rs);
    clock_.t += 1s;  // less than the grace apart: the windows stay open
    a->tick(clock_.t);
  }
  tick_until(*a, clock_.t + 3s);
  settle();
  auto got = stored();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].period_start, kW0);
  EXPECT_EQ(got[0].count, 150u);
  EXPECT_EQ(got[1].count, 150u);
  EXPECT_DOUBLE_EQ(got[0].mean, 74.5);
  EXPECT_EQ(metric(metrics_, R"(outpost_summary_readings_dropped_total{reason="late"})"), 0);
}

TEST_F(AggregatorTest, ReadingsOverAWindowAheadOfTheClockAreDropped) {
  auto a = make();
  ASSERT_TRUE(a->start());
  clock_.t = kW0 + 1min;
  a->observe({reading("d", "t", kW0 + 7min, 1),        // the next window: kept
              reading("d", "t", kW0 + 11min, 2)});     // the one after: dropped
  EXPECT_EQ(a->stats().open_windows, 1u);
  EXPECT_EQ(metric(metrics_, R"(outpost_summary_readings_dropped_total{reason="future"})"), 1);
}

TEST_F(AggregatorTest, ASeriesHoldsAtMostFourWindowsTheOldestClosesFirst) {
  auto a = make();
  ASSERT_TRUE(a->start());
  clock_.t = kW0 + 1h;
  for (int w = 0; w < 6; ++w) a->observe({reading("d", "t", kW0 + minutes(5 * w), w)});
  EXPECT_EQ(a->stats().open_windows, Aggregator::kMaxOpenPerSeries);
  a->observe({reading("d", "t", kW0 + 1min, 100)});  // the first window was closed to make room
  a->tick(clock_.t);
  settle();
  auto got = stored();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].mean, 0);
  EXPECT_EQ(got[1].mean, 1);
  EXPECT_EQ(metric(metrics_, R"(outpost_summary_readings_dropped_total{reason="late"})"), 1);
}

TEST_F(AggregatorTest, AFailedStoreWriteIsRetriedAtTheNextTick) {
  auto a = make();
  ASSERT_TRUE(a->start());
  a->observe({reading("d", "t", kW0 + 1s, 1)});
  store_->TEST_fail_writes(true);
  tick_until(*a, kW0 + 5min + 2s);
  settle();
  EXPECT_TRUE(events().empty());
  EXPECT_GE(metric(metrics_, "outpost_summaries_store_errors_total"), 1);
  store_->TEST_fail_writes(false);
  EXPECT_TRUE(stored().empty());
  tick_until(*a, clock_.t + 1s);
  settle();
  ASSERT_EQ(stored().size(), 1u);
  EXPECT_EQ(events().size(), 1u);
  EXPECT_EQ(metric(metrics_, "outpost_summaries_total"), 1);
}

TEST_F(AggregatorTest, HandoffGetsEachCommittedSummaryOnceAndAPendingOneAgainAfterACrash) {
  std::vector<std::string> handed;
  bool accept = false;
  auto handoff = [&](const std::vector<core::Summary>& xs, std::function<void(core::Status)> done) {
    // Committed before the handoff sees them.
    for (const auto& x : xs) {
      auto there = store_->query_summaries({.device = x.device, .sensor = x.sensor, .from = x.period_start,
                                            .to = x.period_start});
      EXPECT_EQ(there->size(), 1u) << core::summary_id(x);
      handed.push_back(core::summary_id(x));
    }
    done(accept ? core::Status::ok() : core::Status::unavailable("outbox full"));
  };
  auto pending = [&] {
    return store_->query_summaries({.limit = 100, .pending_handoff = true})->size();
  };
  {
    auto a = make();
    a->set_handoff(handoff);
    ASSERT_TRUE(a->start());
    a->observe({reading("d", "a", kW0 + 1s, 1), reading("d", "b", kW0 + 1s, 2)});
    tick_until(*a, kW0 + 5min + 2s);
    settle();
    EXPECT_EQ(handed.size(), 2u);
    EXPECT_EQ(pending(), 2u);  // the outbox did not take them
    EXPECT_EQ(metric(metrics_, "outpost_summaries_handoff_errors_total"), 1);
  }
  // The next start hands them over again; taken now, they are no longer pending.
  accept = true;
  handed.clear();
  {
    auto a = make();
    a->set_handoff(handoff);
    ASSERT_TRUE(a->start());
    settle();
    EXPECT_EQ(handed, (std::vector<std::string>{core::summary_id(stored("d", "a")[0]), core::summary_id(stored("d", "b")[0])}));
    EXPECT_EQ(pending(), 0u);
    a->observe({reading("d", "a", kW0 + 6min, 3)});
    tick_until(*a, kW0 + 10min + 2s);
    settle();
    EXPECT_EQ(handed.size(), 3u);
    EXPECT_EQ(pending(), 0u);
  }
  // A start with nothing pending hands nothing over.
  handed.clear();
  auto a = make();
  a->set_handoff(handoff);
  ASSERT_TRUE(a->start());
  settle();
  EXPECT_TRUE(handed.empty());
}

TEST_F(AggregatorTest, WithoutAHandoffNothingIsLeftPending) {
  auto a = make();
  ASSERT_TRUE(a->start());
  a->observe({reading("d", "t", kW0 + 1s, 1)});
  tick_until(*a, kW0 + 6min);
  settle();
  EXPECT_EQ(stored().size(), 1u);
  EXPECT_TRUE(store_->query_summaries({.pending_handoff = true})->empty());
}

TEST_F(AggregatorTest, StopSavesOpenWindowsAndStartRestoresThemSoARestartLosesNothing) {
  {
    auto a = make();
    ASSERT_TRUE(a->start());
    clock_.t = kW0 + 1min;
    a->observe({reading("d", "t", kW0 + 10s, 10), reading("d", "t", kW0 + 20s, 20),
                reading("e", "t", kW0 + 30s, 5)});
    ASSERT_TRUE(a->stop());
    a->observe({reading("d", "t", kW0 + 40s, 1000)});  // after stop: ignored
    a->tick(kW0 + 1h);                                  // and nothing closes
    settle();
    EXPECT_TRUE(stored().empty());
  }
  // Restart within the window: the window goes on.
  clock_.t = kW0 + 2min;
  {
    auto a = make();
    ASSERT_TRUE(a->start());
    EXPECT_EQ(a->stats().open_windows, 2u);
    a->observe({reading("d", "t", kW0 + 150s, 30)});
    tick_until(*a, kW0 + 5min + 2s);
    settle();
    auto d = stored("d", "t");
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].count, 3u);
    EXPECT_DOUBLE_EQ(d[0].mean, 20);
    EXPECT_DOUBLE_EQ(d[0].stdev, 10);
    EXPECT_EQ(d[0].first, 10);
    EXPECT_EQ(d[0].last, 30);
    EXPECT_EQ(stored("e", "t").size(), 1u);
    ASSERT_TRUE(a->stop());
  }
  // Restored once: a later start finds nothing to restore.
  auto a = make();
  ASSERT_TRUE(a->start());
  EXPECT_EQ(a->stats().open_windows, 0u);
}

TEST_F(AggregatorTest, AWindowSavedAtStopThatEndedMeanwhileClosesAfterTheRestart) {
  {
    auto a = make();
    ASSERT_TRUE(a->start());
    a->observe({reading("d", "t", kW0 + 10s, 10)});
    ASSERT_TRUE(a->stop());
  }
  clock_.t = kW0 + 1h;  // down for an hour
  auto a = make();
  ASSERT_TRUE(a->start());
  a->tick(clock_.t + 2s);
  settle();
  auto got = stored();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].period_start, kW0);
  EXPECT_EQ(got[0].count, 1u);
}

TEST_F(AggregatorTest, SummariesOffObservesNothing) {
  cfg_.summaries = false;
  auto a = make();
  ASSERT_TRUE(a->start());
  a->observe({reading("d", "t", kW0 + 1s, 1)});
  tick_until(*a, kW0 + 6min);
  settle();
  EXPECT_TRUE(stored().empty());
  EXPECT_EQ(a->stats().open_windows, 0u);
}

}  // namespace
}  // namespace outpost::edge
