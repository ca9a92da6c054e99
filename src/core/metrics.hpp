// Metrics: counters, gauges and histograms rendered in Prometheus text format.
//
// A Registry is created once in app/ and passed by reference; modules register their metrics
// at construction and update them lock-free afterwards. Metric objects live as long as the
// registry and never move. All members are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace outpost::core {

class Counter {
 public:
  void inc(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  void add(int64_t d) { v_.fetch_add(d, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Fixed upper bounds (in the metric's unit, e.g. seconds), cumulative on render.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends the _bucket/_sum/_count lines for `name` with extra `labels` ("a=\"b\"" or "").
  void render(std::string& out, const std::string& name, const std::string& labels) const;
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // one per bound, plus +Inf
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micro_{0};  // sum * 1e6, so it can be atomic
};

// Latency buckets in seconds, from 50 µs to 10 s.
std::vector<double> latency_buckets();

class Registry {
 public:
  // `labels` is rendered as-is inside braces, e.g. R"(route="/api/status")"; "" for none.
  Counter& counter(const std::string& name, const std::string& help, const std::string& labels = "");
  Gauge& gauge(const std::string& name, const std::string& help, const std::string& labels = "");
  Histogram& histogram(const std::string& name, const std::string& help,
                       std::vector<double> bounds, const std::string& labels = "");
  // A gauge whose value is read when rendering.
  void gauge_fn(const std::string& name, const std::string& help, std::function<double()> fn);
  // A free-form writer for families a module keeps itself (it must write HELP/TYPE lines).
  void collector(std::function<void(std::string& out)> fn);

  std::string render() const;

 private:
  struct Entry {
    std::string name, help, type, labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> fn;
    std::function<void(std::string&)> writer;
  };
  mutable std::mutex mu_;
  std::deque<Entry> entries_;
};

}  // namespace outpost::core
