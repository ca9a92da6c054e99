// edge-bench: the edge pipeline's benchmarks (bench/edge/run-edge-bench runs them and writes
// BENCHMARKS.md). One measurement per run; the script repeats runs and takes medians.
//
//   edge-bench reduction --sensors N [--window 5m] [--hours 24] --dir DIR
//       One reading per second per sensor for a simulated day, replayed as fast as it goes through
//       edge::Aggregator with a fake clock (ticked every simulated second) and a real store:
//       readings in, summaries committed and handed over to the outbox (what goes upstream),
//       bytes of each.
//   edge-bench ingest --readings N --series S --batch B [--no-summaries] --dir DIR
//       Store::append in batches of B readings (S series, one reading per series per simulated
//       second), the aggregator observing every batch first as the hub's observer does, and
//       ticked every simulated second, its summaries committed to the outbox; readings/s from the
//       first append until flush() returns.
//   edge-bench commit --count N [--synchronous normal|full] --dir DIR
//       Store::append_sync of one reading at a time: durable commits per second.
//
// Prints one line of key=value pairs. DIR must not exist or be empty (a fresh database).
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "core/core.hpp"
#include "edge/edge.hpp"
#include "store/store.hpp"
#include "upstream/upstream.hpp"

namespace {

using namespace outpost;
using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "edge-bench: %s\n", why.c_str());
  std::exit(2);
}

class FakeClock : public core::Clock {
 public:
  core::TimePoint now() const override { return t; }
  core::TimePoint t;
};

struct Args {
  std::string mode, dir, synchronous = "normal";
  long sensors = 1, readings = 2'000'000, series = 1000, batch = 1000, count = 2000, hours = 24;
  long batch_max = 0;  // store.batch_max; 0 keeps the default
  std::chrono::milliseconds window{5 * 60'000};
  bool summaries = true;
};

Args parse(int argc, char** argv) {
  Args a;
  if (argc < 2) die("usage: edge-bench reduction|ingest|commit [options] --dir DIR");
  a.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die(k + " needs a value");
      return argv[++i];
    };
    if (k == "--dir") a.dir = next();
    else if (k == "--sensors") a.sensors = std::stol(next());
    else if (k == "--readings") a.readings = std::stol(next());
    else if (k == "--series") a.series = std::stol(next());
    else if (k == "--batch") a.batch = std::stol(next());
    else if (k == "--batch-max") a.batch_max = std::stol(next());
    else if (k == "--count") a.count = std::stol(next());
    else if (k == "--hours") a.hours = std::stol(next());
    else if (k == "--synchronous") a.synchronous = next();
    else if (k == "--no-summaries") a.summaries = false;
    else if (k == "--window") {
      auto w = core::parse_duration(next());
      if (!w) die("--window: not a duration");
      a.window = *w;
    } else {
      die("unknown option " + k);
    }
  }
  if (a.dir.empty()) die("--dir is required");
  if (std::filesystem::exists(a.dir) && !std::filesystem::is_empty(a.dir)) die(a.dir + " is not empty");
  return a;
}

std::unique_ptr<store::Store> open_store(const Args& a, core::Registry& metrics) {
  config::StoreConfig cfg;
  cfg.data_dir = a.dir;
  cfg.synchronous = a.synchronous;
  if (a.batch_max > 0) cfg.batch_max = static_cast<size_t>(a.batch_max);
  auto s = store::Store::open(cfg, &metrics);
  if (!s) die(s.status().to_string());
  return std::move(s.value());
}

// What leaves the device: the real upstream::Outbox over the same store, with one destination
// that takes summaries and is never started (an upstream that is down: every summary stays in
// the outbox table, the costlier case). The handoff is the server's, Outbox::offer_summaries;
// the messages and their bytes are the outbox's own count of what it holds.
struct Upstream {
  std::unique_ptr<upstream::Outbox> outbox;

  Upstream(store::Store& store, core::Registry& metrics) {
    config::UpstreamConfig cfg;
    config::UpstreamDestination d;
    d.name = "cloud";
    d.url = "http://127.0.0.1:9/never";  // never started: nothing is sent
    d.kinds = {"summary"};
    d.max_messages = 10'000'000;
    d.max_bytes = size_t{1} << 40;
    cfg.destinations = {d};
    auto o = upstream::Outbox::create(cfg, "bench-edge", store, metrics, [](const config::UpstreamDestination& x) {
      return upstream::make_http_sink(x, "bench-edge");
    });
    if (!o) die(o.status().to_string());
    outbox = std::move(*o);
  }

  edge::Aggregator::Handoff handoff() {
    return [this](const std::vector<core::Summary>& xs, std::function<void(core::Status)> done) {
      outbox->offer_summaries(xs, std::move(done));
    };
  }

  // What the destination holds (read from the store: call it after flush(), outside the timing).
  store::OutboxStats held() const {
    auto status = outbox->status();
    return status.empty() ? store::OutboxStats{} : status.front().stats;
  }
};

// The start of the simulated time: a day ago at midnight UTC (inside the store's retention).
core::TimePoint day_start() {
  using namespace std::chrono;
  return time_point_cast<microseconds>(floor<days>(core::now() - hours(24)));
}

int reduction(const Args& a) {
  core::Registry metrics;
  core::Bus bus(&metrics);
  auto store = open_store(a, metrics);
  FakeClock clock;
  clock.t = day_start();
  config::AggregatorConfig cfg;
  cfg.summary_window = a.window;
  edge::Aggregator agg(cfg, *store, bus, metrics, clock);
  Upstream up(*store, metrics);
  agg.set_handoff(up.handoff());
  if (auto s = agg.start(); !s) die(s.to_string());
  std::vector<core::Reading> second(static_cast<size_t>(a.sensors));
  for (long i = 0; i < a.sensors; ++i) {
    second[static_cast<size_t>(i)] = core::Reading{"bench-device", "sensor" + std::to_string(i), {}, 0, "Cel", ""};
  }
  uint64_t raw = 0, raw_bytes = 0;
  const long seconds = a.hours * 3600;
  auto t0 = Clock::now();
  for (long s = 0; s < seconds; ++s) {
    core::TimePoint ts = clock.t;
    for (long i = 0; i < a.sensors; ++i) {
      auto& r = second[static_cast<size_t>(i)];
      r.ts = ts;
      r.value = 20 + 5 * std::sin(static_cast<double>(s) / 3600 + static_cast<double>(i));
    }
    agg.observe(second);
    raw += second.size();
    if (s < 60) {  // the bytes a raw reading would take upstream: the same for every second
      for (const auto& r : second) {
        raw_bytes += nlohmann::ordered_json{{"device", r.device}, {"sensor", r.sensor}, {"unit", r.unit},
                                            {"time", core::format_iso8601(r.ts)}, {"value", r.value}}
                         .dump()
                         .size();
      }
    }
    clock.t += std::chrono::seconds(1);
    agg.tick(clock.t);
  }
  // The last window ends at midnight; one more grace and it closes.
  clock.t += std::chrono::seconds(3);
  agg.tick(clock.t);
  if (auto s = store->flush(); !s) die(s.to_string());
  if (auto s = store->flush(); !s) die(s.to_string());
  double took = std::chrono::duration<double>(Clock::now() - t0).count();
  raw_bytes = raw_bytes / 60 * static_cast<uint64_t>(seconds);
  auto stored = store->query_summaries({.limit = SIZE_MAX});
  const auto held = up.held();
  std::printf("raw %llu summaries %llu stored %zu raw_bytes %llu summary_bytes %llu seconds %.3f\n",
              static_cast<unsigned long long>(raw), static_cast<unsigned long long>(held.pending),
              stored ? stored->size() : 0, static_cast<unsigned long long>(raw_bytes),
              static_cast<unsigned long long>(held.bytes), took);
  (void)agg.stop();
  store->close();
  return 0;
}

int ingest(const Args& a) {
  core::Registry metrics;
  core::Bus bus(&metrics);
  auto store = open_store(a, metrics);
  FakeClock clock;
  clock.t = day_start();
  config::AggregatorConfig cfg;
  cfg.summary_window = a.window;
  edge::Aggregator agg(cfg, *store, bus, metrics, clock);
  Upstream up(*store, metrics);
  agg.set_handoff(up.handoff());
  if (auto s = agg.start(); !s) die(s.to_string());
  // S series: S/4 devices of 4 sensors each, as FIWARE packets bring them.
  std::vector<core::Reading> all(static_cast<size_t>(a.series));
  for (long i = 0; i < a.series; ++i) {
    all[static_cast<size_t>(i)] =
        core::Reading{"dev" + std::to_string(i / 4), "sensor" + std::to_string(i % 4), {}, 0, "", ""};
  }
  std::atomic<int64_t> in_flight{0};
  std::atomic<uint64_t> failed{0};
  constexpr int64_t kMaxInFlight = 50'000;  // under the store's queue bound (100k rows)
  long sent = 0, sim_second = 0;
  size_t pos = 0;
  auto t0 = Clock::now();
  while (sent < a.readings) {
    std::vector<core::Reading> batch;
    batch.reserve(static_cast<size_t>(a.batch));
    while (static_cast<long>(batch.size()) < a.batch && sent < a.readings) {
      core::Reading r = all[pos];
      r.ts = clock.t;
      r.value = static_cast<double>(sent % 1000) / 10;
      batch.push_back(std::move(r));
      ++sent;
      if (++pos == all.size()) {
        pos = 0;
        ++sim_second;
        clock.t += std::chrono::seconds(1);
      }
    }
    while (in_flight.load(std::memory_order_relaxed) > kMaxInFlight) std::this_thread::sleep_for(std::chrono::microseconds(50));
    if (a.summaries) agg.observe(batch);
    auto n = static_cast<int64_t>(batch.size());
    in_flight.fetch_add(n, std::memory_order_relaxed);
    store->append(std::move(batch), [&in_flight, &failed, n](core::Status s) {
      if (!s) failed.fetch_add(static_cast<uint64_t>(n));
      in_flight.fetch_sub(n, std::memory_order_relaxed);
    });
    if (a.summaries) agg.tick(clock.t);  // as the housekeeping thread would, once a (simulated) second
  }
  // The readings and summaries, then the outbox messages the handoff queued after their commit.
  if (auto s = store->flush(); !s) die(s.to_string());
  if (auto s = store->flush(); !s) die(s.to_string());
  double took = std::chrono::duration<double>(Clock::now() - t0).count();
  if (auto s = store->flush(); !s) die(s.to_string());  // the summaries' handoff marks
  if (failed.load()) die("readings failed to store: " + std::to_string(failed.load()));
  uint64_t stored = store->readings_count();
  std::printf("readings %ld stored %llu seconds %.3f rate %.0f summaries %llu simulated_seconds %ld\n", sent,
              static_cast<unsigned long long>(stored), took, static_cast<double>(sent) / took,
              static_cast<unsigned long long>(up.held().pending), sim_second);
  (void)agg.stop();
  store->close();
  return 0;
}

int commit(const Args& a) {
  core::Registry metrics;
  auto store = open_store(a, metrics);
  auto ts = core::now() - std::chrono::hours(1);
  auto t0 = Clock::now();
  for (long i = 0; i < a.count; ++i) {
    auto s = store->append_sync({core::Reading{"bench-device", "temperature", ts + std::chrono::milliseconds(i),
                                               static_cast<double>(i), "Cel", ""}});
    if (!s) die(s.to_string());
  }
  double took = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("commits %ld seconds %.3f rate %.0f synchronous %s\n", a.count, took, static_cast<double>(a.count) / took,
              a.synchronous.c_str());
  store->close();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  Args a = parse(argc, argv);
  if (a.mode == "reduction") return reduction(a);
  if (a.mode == "ingest") return ingest(a);
  if (a.mode == "commit") return commit(a);
  die("unknown mode " + a.mode);
}
