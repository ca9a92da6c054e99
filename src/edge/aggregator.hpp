// Windowed summaries at the edge (seed 002's "send a 5-minute average every 5 minutes"): every
// numeric reading of every device (this board's and remote ones) goes into the window of its
// series; a window, once over, becomes one core::Summary that is stored, published on the bus as
// a "summary" event and handed to the upstream outbox.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/core.hpp"
#include "store/store.hpp"

namespace outpost::edge {

// The start of the window of `width` that holds `ts`: floor(ts / width) * width, counted from
// the epoch (so 5-minute windows start at :00, :05, ...; floor also before 1970).
core::TimePoint window_start(core::TimePoint ts, std::chrono::microseconds width);

// The statistics of one window, computed incrementally and keeping no values: Welford's running
// mean and sum of squared deviations (numerically stable where sum-of-squares cancels), min,
// max, and the first and last values by timestamp (equal timestamps: arrival order). Pure: no
// clock, no lock. add() wants a finite value (the caller filters NaN and infinities).
class WindowStats {
 public:
  void add(double value, core::TimePoint ts);

  uint64_t count() const { return n_; }
  double mean() const { return mean_; }
  // Sample standard deviation (divides by n - 1); 0 for fewer than two values.
  double stdev() const;
  double min() const { return min_; }
  double max() const { return max_; }
  double first() const { return first_; }
  double last() const { return last_; }
  // Sets count, mean, min, max, stdev, first and last of `s`.
  void fill(core::Summary& s) const;

  // Everything there is, to keep an open window across a restart.
  struct State {
    uint64_t n = 0;
    double mean = 0, m2 = 0, min = 0, max = 0, first = 0, last = 0;
    int64_t first_ts = 0, last_ts = 0;  // microseconds since the epoch
  };
  State state() const;
  static WindowStats from_state(const State& s);

 private:
  uint64_t n_ = 0;
  double mean_ = 0, m2_ = 0, min_ = 0, max_ = 0, first_ = 0, last_ = 0;
  int64_t first_ts_ = 0, last_ts_ = 0;
};

// The adapter around WindowStats: per series (device, sensor) its open windows, fed by the hub
// (Hub::add_readings_observer) and closed by tick().
//
// Windows. A series' window is cfg.summary_windows["device/sensor"], else ["sensor"], else
// cfg.summary_window, aligned to the epoch (window_start). Non-numeric readings, NaN and
// infinities are ignored. A window with no reading produces nothing.
//
// Closing. tick(now) closes every window with now >= max(end, last arrival) + cfg.summary_grace:
// windows close on time with no further reading, the grace lets readings stamped just before the
// end arrive (the board's collector's samples reach the hub after their store commit), and a
// window a device is still filling from its backlog (readings replayed after an outage, stamped
// long ago) stays open while they come.
//
// Late readings. A reading for a window of its series that was already closed is dropped (the
// raw reading is stored all the same) and counted in
// outpost_summary_readings_dropped_total{reason="late"}: a summary is sent upstream once and
// never revised, so the receiver can deduplicate on its id (core::summary_id). A reading more
// than one window ahead of the clock is dropped as reason="future" (a device with a wrong clock
// would hold windows open for ever). A series holds at most kMaxOpenPerSeries windows; a further
// one closes its oldest at once.
//
// Delivery. Closed windows go to the store (Store::append_summaries, one transaction per tick);
// once COMMITTED, on the store's writer thread and in commit order, each new summary is published
// on the bus (kind "summary", payload core::summary_json, ts = period_end, id 0: summaries are not
// events of the events table) and the batch is given to the handoff, if one is set. A failed
// write is retried at the next tick. With a handoff the rows stay marked pending in the store
// until the handoff's `done(ok)`; start() hands over again whatever a crash left pending, so the
// outbox gets every summary at least once and, deduplicating on the id, exactly once.
//
// Shutdown. stop() closes the windows that are due and saves the open ones (partial windows) in
// the store's settings; start() restores them, so a restart within a window loses nothing of it
// and the window is summarised once, when it ends. A crash (kill -9) loses the open windows
// (their raw readings are in the store).
//
// Threads. observe() takes a mutex and updates a hash map: no I/O, and no allocation but for a
// series' first reading (it runs on the UDP receive thread, for tens of thousands of readings a
// second). Everything is thread-safe; tick(), start() and stop() are meant for one housekeeping
// thread. The store and the bus must outlive the store's last callback (close the
// store before destroying them); the metrics registry must outlive the aggregator.
class Aggregator {
 public:
  // Takes committed summaries (on the store's writer thread: it must not wait for the store;
  // queueing a store write is fine) and calls `done` once with the outcome of its own commit.
  using Handoff =
      std::function<void(const std::vector<core::Summary>& summaries, std::function<void(core::Status)> done)>;

  static constexpr size_t kMaxOpenPerSeries = 4;

  // `clock` times arrivals (tests pass their own); it must outlive the aggregator.
  Aggregator(const config::AggregatorConfig& cfg, store::Store& store, core::Bus& bus, core::Registry& metrics,
             const core::Clock& clock = core::Clock::system());
  ~Aggregator();
  Aggregator(const Aggregator&) = delete;
  Aggregator& operator=(const Aggregator&) = delete;

  // Before start(). Without one, summaries are stored as handed off already.
  void set_handoff(Handoff h);

  // Restores the windows saved by stop(), and gives the handoff the summaries still pending.
  // Errors reading the store are returned (the aggregator works anyway, without what was saved).
  core::Status start();

  // For Hub::add_readings_observer.
  void observe(const std::vector<core::Reading>& readings);

  // Closes the windows that are due at `now` and sends them on. Cheap when none is due.
  void tick(core::TimePoint now);

  // Closes what is due, then saves the open windows; later observe() calls are ignored. Call
  // after the hub has stopped ingesting, before the store is flushed and closed.
  core::Status stop();

  // The window of a series, from the configuration.
  std::chrono::microseconds window_for(std::string_view device, std::string_view sensor) const;

  struct Stats {
    size_t series = 0;        // series with state (open windows, or recently closed ones)
    size_t open_windows = 0;
    uint64_t summaries = 0;   // committed since start
    uint64_t late = 0;        // readings dropped as late since start
  };
  Stats stats() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace outpost::edge
