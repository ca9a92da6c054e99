#include "edge/aggregator.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <string>
#include <unordered_map>

namespace outpost::edge {

namespace {

using core::Status;
using std::chrono::microseconds;

constexpr int64_t kMinUs = std::numeric_limits<int64_t>::min();
constexpr int64_t kMaxUs = std::numeric_limits<int64_t>::max();
// Where stop() leaves the open windows for the next start().
constexpr const char* kStateSetting = "edge.aggregator.open_windows";
// A series with nothing open is forgotten this long after its last window ended.
constexpr int64_t kForgetUs = 3'600'000'000;
// At most this many pending summaries are handed over again by start().
constexpr size_t kMaxReplay = 100'000;
// Summaries kept for a retry while the store fails; beyond, the oldest are dropped (counted).
constexpr size_t kMaxPending = 100'000;

int64_t floor_to(int64_t ts, int64_t width) {
  int64_t r = ts % width;
  if (r < 0) r += width;
  return ts - r;
}

struct Key {
  std::string device, sensor;
};
struct KeyView {
  KeyView(std::string_view d, std::string_view s) : device(d), sensor(s) {}
  KeyView(const Key& k) : device(k.device), sensor(k.sensor) {}  // NOLINT(google-explicit-constructor)
  std::string_view device, sensor;
};
// Transparent, so the per-reading lookup builds no strings.
struct KeyHash {
  using is_transparent = void;
  size_t operator()(KeyView k) const {
    size_t h = std::hash<std::string_view>()(k.device);
    return h ^ (std::hash<std::string_view>()(k.sensor) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  }
};
struct KeyEq {
  using is_transparent = void;
  bool operator()(KeyView a, KeyView b) const { return a.device == b.device && a.sensor == b.sensor; }
};

struct Open {
  int64_t start = 0, end = 0;  // microseconds since the epoch
  int64_t last_arrival = 0;    // clock time of the last reading added
  WindowStats stats;
};

struct Series {
  std::string unit;
  int64_t width = 0;
  int64_t closed_through = kMinUs;  // start of the newest window closed
  int64_t closed_end = kMinUs;      // its end
  std::vector<Open> open;           // ascending by start
};

bool before(const core::Summary& a, const core::Summary& b) {
  if (a.period_start != b.period_start) return a.period_start < b.period_start;
  if (a.device != b.device) return a.device < b.device;
  return a.sensor < b.sensor;
}

}  // namespace

core::TimePoint window_start(core::TimePoint ts, microseconds width) {
  return core::from_micros(floor_to(core::to_micros(ts), width.count()));
}

void WindowStats::add(double value, core::TimePoint ts) {
  int64_t t = core::to_micros(ts);
  ++n_;
  if (n_ == 1) {
    mean_ = min_ = max_ = first_ = last_ = value;
    first_ts_ = last_ts_ = t;
    return;
  }
  double delta = value - mean_;
  mean_ += delta / static_cast<double>(n_);
  m2_ += delta * (value - mean_);
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  if (t < first_ts_) first_ = value, first_ts_ = t;
  if (t >= last_ts_) last_ = value, last_ts_ = t;
}

double WindowStats::stdev() const {
  if (n_ < 2) return 0;
  return std::sqrt(std::max(0.0, m2_ / static_cast<double>(n_ - 1)));
}

void WindowStats::fill(core::Summary& s) const {
  s.count = n_;
  s.mean = mean_;
  s.min = min_;
  s.max = max_;
  s.stdev = stdev();
  s.first = first_;
  s.last = last_;
}

WindowStats::State WindowStats::state() const {
  return {n_, mean_, m2_, min_, max_, first_, last_, first_ts_, last_ts_};
}

WindowStats WindowStats::from_state(const State& s) {
  WindowStats w;
  w.n_ = s.n;
  w.mean_ = s.mean;
  w.m2_ = s.m2;
  w.min_ = s.min;
  w.max_ = s.max;
  w.first_ = s.first;
  w.last_ = s.last;
  w.first_ts_ = s.first_ts;
  w.last_ts_ = s.last_ts;
  return w;
}

struct Aggregator::Impl {
  Impl(const config::AggregatorConfig& c, store::Store& st, core::Bus& b, core::Registry& m, const core::Clock& clk)
      : cfg(c),
        store(st),
        bus(b),
        clock(clk),
        grace(std::chrono::duration_cast<microseconds>(c.summary_grace).count()),
        summaries(m.counter("outpost_summaries_total", "Windowed summaries committed to the store.")),
        readings(m.counter("outpost_summary_readings_total", "Numeric readings added to summary windows.")),
        late(m.counter("outpost_summary_readings_dropped_total",
                       "Readings left out of summaries: late (their window had closed) or future (over a window "
                       "ahead of the clock).",
                       R"(reason="late")")),
        future(m.counter("outpost_summary_readings_dropped_total", "", R"(reason="future")")),
        duplicates(m.counter("outpost_summaries_duplicate_total",
                             "Closed windows whose summary was already stored (the first one stands).")),
        store_errors(m.counter("outpost_summaries_store_errors_total",
                               "Summary writes that failed (the summaries are retried at the next tick).")),
        lost(m.counter("outpost_summaries_lost_total",
                       "Summaries given up: over the retry bound while the store failed, or unwritable at shutdown.")),
        handoff_errors(m.counter("outpost_summaries_handoff_errors_total",
                                 "Summary batches the handoff (the outbox) did not take; handed over again at start.")),
        open_windows(m.gauge("outpost_summary_open_windows", "Summary windows open now.")) {}

  // Under mu. The series, created with its window on first sight.
  Series& series_for(std::string_view device, std::string_view sensor) {
    if (auto it = series.find(KeyView(device, sensor)); it != series.end()) return it->second;
    Series s;
    s.width = window_for(device, sensor).count();
    s.open.reserve(2);
    return series.emplace(Key{std::string(device), std::string(sensor)}, std::move(s)).first->second;
  }

  microseconds window_for(std::string_view device, std::string_view sensor) const {
    auto& m = cfg.summary_windows;
    if (!m.empty()) {
      std::string both = fmt::format("{}/{}", device, sensor);
      if (auto it = m.find(both); it != m.end()) return it->second;
      if (auto it = m.find(std::string(sensor)); it != m.end()) return it->second;
    }
    return cfg.summary_window;
  }

  static core::Summary summary_of(const Key& k, const Series& s, const Open& w) {
    core::Summary x;
    x.device = k.device;
    x.sensor = k.sensor;
    x.unit = s.unit;
    x.period_start = core::from_micros(w.start);
    x.period_end = core::from_micros(w.end);
    w.stats.fill(x);
    return x;
  }

  // Under mu: closes the front window of `s` into pending.
  void close_front(const Key& k, Series& s) {
    const Open& w = s.open.front();
    pending.push_back(summary_of(k, s, w));
    if (w.start > s.closed_through) s.closed_through = w.start, s.closed_end = w.end;
    s.open.erase(s.open.begin());
    --open_count;
  }

  // Under mu: moves every due window into `pending`; sets next_due.
  void scan(int64_t now) {
    int64_t next = kMaxUs;
    for (auto it = series.begin(); it != series.end();) {
      Series& s = it->second;
      for (size_t i = 0; i < s.open.size();) {
        Open& w = s.open[i];
        int64_t due = std::max(w.end, w.last_arrival) + grace;
        if (now >= due) {
          pending.push_back(summary_of(it->first, s, w));
          if (w.start > s.closed_through) s.closed_through = w.start, s.closed_end = w.end;
          s.open.erase(s.open.begin() + static_cast<ptrdiff_t>(i));
          --open_count;
        } else {
          next = std::min(next, due);
          ++i;
        }
      }
      if (s.open.empty() && (s.closed_end == kMinUs || now - s.closed_end > kForgetUs)) {
        it = series.erase(it);
      } else {
        ++it;
      }
    }
    next_due = next;
  }

  // Stores `batch` and, once committed, publishes and hands it over. Any thread but the writer.
  static void send(const std::shared_ptr<Impl>& self, std::vector<core::Summary> batch) {
    if (batch.empty()) return;
    bool handoff = static_cast<bool>(self->handoff);
    auto copy = batch;  // for a retry, should the write fail
    self->store.append_summaries(
        std::move(batch), handoff, [self, copy = std::move(copy)](core::Result<std::vector<core::Summary>> r) mutable {
          if (!r) {
            self->store_errors.inc();
            self->retry(std::move(copy), r.status());
            return;
          }
          self->committed(self, *r, copy.size());
        });
  }

  void retry(std::vector<core::Summary> batch, const Status& why) {
    std::lock_guard lk(mu);
    if (stopped) {
      lost.inc(batch.size());
      spdlog::error("aggregator: {} summaries could not be stored at shutdown: {}", batch.size(), why.to_string());
      return;
    }
    pending.insert(pending.begin(), std::make_move_iterator(batch.begin()), std::make_move_iterator(batch.end()));
    if (pending.size() > kMaxPending) {
      size_t drop = pending.size() - kMaxPending;
      lost.inc(drop);
      pending.erase(pending.begin(), pending.begin() + static_cast<ptrdiff_t>(drop));
    }
  }

  // On the writer thread, after the commit: `fresh` are the summaries that were new.
  static void committed(const std::shared_ptr<Impl>& self, const std::vector<core::Summary>& fresh, size_t sent) {
    self->duplicates.inc(sent - fresh.size());
    self->summaries.inc(fresh.size());
    for (const auto& x : fresh) {
      self->bus.publish(core::Event{0, x.period_end, x.device, "summary", core::summary_json(x).dump()});
    }
    if (self->handoff && !fresh.empty()) hand_over(self, fresh);
  }

  static void hand_over(const std::shared_ptr<Impl>& self, const std::vector<core::Summary>& batch) {
    std::vector<store::SummaryKey> keys;
    keys.reserve(batch.size());
    for (const auto& x : batch) keys.push_back({x.device, x.sensor, x.period_start});
    self->handoff(batch, [self, keys = std::move(keys)](Status s) mutable {
      if (!s) {
        self->handoff_errors.inc();
        spdlog::warn("aggregator: the handoff did not take {} summaries ({}); they stay pending in the store and are "
                     "handed over again at the next start",
                     keys.size(), s.to_string());
        return;
      }
      self->store.mark_handed_off(std::move(keys), nullptr);  // a failure leaves them pending: repeated, never lost
    });
  }

  const config::AggregatorConfig cfg;
  store::Store& store;
  core::Bus& bus;
  const core::Clock& clock;
  const int64_t grace;
  Handoff handoff;

  core::Counter& summaries;
  core::Counter& readings;
  core::Counter& late;
  core::Counter& future;
  core::Counter& duplicates;
  core::Counter& store_errors;
  core::Counter& lost;
  core::Counter& handoff_errors;
  core::Gauge& open_windows;

  mutable std::mutex mu;
  std::unordered_map<Key, Series, KeyHash, KeyEq> series;
  std::vector<core::Summary> pending;  // closed, not yet sent (or to be retried)
  int64_t next_due = kMaxUs;           // no window is due before this
  size_t open_count = 0;
  bool stopped = false;
};

Aggregator::Aggregator(const config::AggregatorConfig& cfg, store::Store& store, core::Bus& bus,
                       core::Registry& metrics, const core::Clock& clock)
    : impl_(std::make_shared<Impl>(cfg, store, bus, metrics, clock)) {}

Aggregator::~Aggregator() = default;

void Aggregator::set_handoff(Handoff h) { impl_->handoff = std::move(h); }

std::chrono::microseconds Aggregator::window_for(std::string_view device, std::string_view sensor) const {
  return impl_->window_for(device, sensor);
}

void Aggregator::observe(const std::vector<core::Reading>& readings) {
  Impl& m = *impl_;
  const int64_t now = core::to_micros(m.clock.now());
  uint64_t added = 0, late = 0, future = 0;
  {
    std::lock_guard lk(m.mu);
    if (m.stopped || !m.cfg.summaries) return;
    const core::Reading* prev = nullptr;
    Series* s = nullptr;
    for (const auto& r : readings) {
      if (!r.is_numeric() || !std::isfinite(r.value)) continue;
      if (!prev || prev->device != r.device || prev->sensor != r.sensor) s = &m.series_for(r.device, r.sensor);
      prev = &r;
      if (!r.unit.empty() && r.unit != s->unit) s->unit = r.unit;
      const int64_t ts = core::to_micros(r.ts);
      Open* w = nullptr;
      for (auto& o : s->open) {
        if (ts >= o.start && ts < o.end) {
          w = &o;
          break;
        }
      }
      if (!w) {
        const int64_t start = floor_to(ts, s->width);
        if (start <= s->closed_through) {
          ++late;
          continue;
        }
        if (start > floor_to(now, s->width) + s->width) {
          ++future;
          continue;
        }
        if (s->open.size() >= Aggregator::kMaxOpenPerSeries) {
          if (start < s->open.front().start) {
            ++late;  // older than every window it holds: its window is as good as closed
            continue;
          }
          auto key = m.series.find(KeyView(r.device, r.sensor));
          m.close_front(key->first, *s);
        }
        auto at = std::find_if(s->open.begin(), s->open.end(), [&](const Open& o) { return o.start > start; });
        w = &*s->open.insert(at, Open{start, start + s->width, now, {}});
        ++m.open_count;
        m.next_due = std::min(m.next_due, start + s->width + m.grace);
      }
      w->stats.add(r.value, r.ts);
      w->last_arrival = now;
      ++added;
    }
    m.open_windows.set(static_cast<int64_t>(m.open_count));
  }
  if (added) m.readings.inc(added);
  if (late) m.late.inc(late);
  if (future) m.future.inc(future);
}

void Aggregator::tick(core::TimePoint now) {
  std::vector<core::Summary> batch;
  {
    std::lock_guard lk(impl_->mu);
    if (impl_->stopped) return;  // stop() saved what was open; closing it now would send it twice
    const int64_t t = core::to_micros(now);
    if (t < impl_->next_due && impl_->pending.empty()) return;
    if (t >= impl_->next_due) impl_->scan(t);
    batch.swap(impl_->pending);
    impl_->open_windows.set(static_cast<int64_t>(impl_->open_count));
  }
  std::stable_sort(batch.begin(), batch.end(), before);
  Impl::send(impl_, std::move(batch));
}

core::Status Aggregator::start() {
  Impl& m = *impl_;
  Status result;
  auto saved = m.store.get_setting(kStateSetting);
  if (!saved) {
    result = saved.status();
  } else if (saved->has_value() && !(*saved)->empty()) {
    auto doc = nlohmann::json::parse(**saved, nullptr, false);
    size_t restored = 0;
    const int64_t now = core::to_micros(m.clock.now());
    if (doc.is_array()) {
      std::lock_guard lk(m.mu);
      for (const auto& j : doc) {
        try {
          WindowStats::State st{j.at("n").get<uint64_t>(),      j.at("mean").get<double>(),
                                j.at("m2").get<double>(),       j.at("min").get<double>(),
                                j.at("max").get<double>(),      j.at("first").get<double>(),
                                j.at("last").get<double>(),     j.at("first_ts").get<int64_t>(),
                                j.at("last_ts").get<int64_t>()};
          int64_t start = j.at("start").get<int64_t>(), end = j.at("end").get<int64_t>();
          if (st.n == 0 || end <= start) continue;
          Series& s = m.series_for(j.at("device").get<std::string>(), j.at("sensor").get<std::string>());
          if (s.unit.empty()) s.unit = j.value("unit", "");
          bool clash = std::any_of(s.open.begin(), s.open.end(), [&](const Open& o) { return o.start < end && start < o.end; });
          if (clash || s.open.size() >= kMaxOpenPerSeries) continue;
          auto at = std::find_if(s.open.begin(), s.open.end(), [&](const Open& o) { return o.start > start; });
          s.open.insert(at, Open{start, end, now, WindowStats::from_state(st)});
          ++m.open_count;
          m.next_due = std::min(m.next_due, std::max(end, now) + m.grace);
          ++restored;
        } catch (const nlohmann::json::exception&) {
          continue;  // a malformed entry: that window is lost, the others are not
        }
      }
      m.open_windows.set(static_cast<int64_t>(m.open_count));
    }
    if (restored < doc.size() || !doc.is_array()) {
      spdlog::warn("aggregator: {} of the saved open windows could not be restored", doc.is_array() ? doc.size() - restored : 1);
    }
    if (restored) spdlog::info("aggregator: {} open summary window(s) restored", restored);
    // Now they live in memory: a crash from here on must not restore them a second time.
    if (auto s = m.store.put_setting(kStateSetting, ""); !s && result) result = s;
  }
  if (m.handoff) {
    auto pending = m.store.query_summaries({.limit = kMaxReplay, .newest = false, .pending_handoff = true});
    if (!pending) {
      if (result) result = pending.status();
    } else if (!pending->empty()) {
      spdlog::info("aggregator: handing over {} summaries left pending by the last run", pending->size());
      constexpr size_t kBatch = 1000;
      for (size_t i = 0; i < pending->size(); i += kBatch) {
        size_t end = std::min(pending->size(), i + kBatch);
        Impl::hand_over(impl_, std::vector<core::Summary>(pending->begin() + static_cast<ptrdiff_t>(i),
                                                          pending->begin() + static_cast<ptrdiff_t>(end)));
      }
    }
  }
  return result;
}

core::Status Aggregator::stop() {
  Impl& m = *impl_;
  tick(m.clock.now());
  nlohmann::json saved = nlohmann::json::array();
  std::vector<core::Summary> unsent;
  {
    std::lock_guard lk(m.mu);
    if (m.stopped) return Status::ok();
    m.stopped = true;
    for (const auto& [k, s] : m.series) {
      for (const auto& w : s.open) {
        auto st = w.stats.state();
        saved.push_back({{"device", k.device}, {"sensor", k.sensor}, {"unit", s.unit}, {"start", w.start},
                         {"end", w.end}, {"n", st.n}, {"mean", st.mean}, {"m2", st.m2}, {"min", st.min},
                         {"max", st.max}, {"first", st.first}, {"last", st.last}, {"first_ts", st.first_ts},
                         {"last_ts", st.last_ts}});
      }
    }
    unsent.swap(m.pending);  // a retry waiting for the next tick: there is none
  }
  Impl::send(impl_, std::move(unsent));
  if (saved.empty()) return Status::ok();
  auto s = m.store.put_setting(kStateSetting, saved.dump());
  if (!s) {
    spdlog::error("aggregator: the {} open summary windows could not be saved: {}", saved.size(), s.to_string());
    return s;
  }
  spdlog::info("aggregator: {} open summary window(s) saved for the next start", saved.size());
  return Status::ok();
}

Aggregator::Stats Aggregator::stats() const {
  Stats st;
  {
    std::lock_guard lk(impl_->mu);
    st.series = impl_->series.size();
    st.open_windows = impl_->open_count;
  }
  st.summaries = impl_->summaries.value();
  st.late = impl_->late.value();
  return st;
}

}  // namespace outpost::edge
