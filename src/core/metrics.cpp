#include "core/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace outpost::core {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::observe(double v) {
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micro_.fetch_add(static_cast<uint64_t>(std::max(0.0, v) * 1e6), std::memory_order_relaxed);
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    std::string le = i < bounds_.size() ? fmt::format("{}", bounds_[i]) : "+Inf";
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, le, cumulative);
  }
  std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += fmt::format("{}_sum{} {}\n", name, braces,
                     static_cast<double>(sum_micro_.load(std::memory_order_relaxed)) / 1e6);
  out += fmt::format("{}_count{} {}\n", name, braces, count_.load(std::memory_order_relaxed));
}

std::vector<double> latency_buckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
          0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,    10};
}

Counter& Registry::counter(const std::string& name, const std::string& help, const std::string& labels) {
  std::lock_guard lk(mu_);
  auto& e = entries_.emplace_back();
  e.name = name, e.help = help, e.type = "counter", e.labels = labels;
  e.counter = std::make_unique<Counter>();
  return *e.counter;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const std::string& labels) {
  std::lock_guard lk(mu_);
  auto& e = entries_.emplace_back();
  e.name = name, e.help = help, e.type = "gauge", e.labels = labels;
  e.gauge = std::make_unique<Gauge>();
  return *e.gauge;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help,
                               std::vector<double> bounds, const std::string& labels) {
  std::lock_guard lk(mu_);
  auto& e = entries_.emplace_back();
  e.name = name, e.help = help, e.type = "histogram", e.labels = labels;
  e.histogram = std::make_unique<Histogram>(std::move(bounds));
  return *e.histogram;
}

void Registry::gauge_fn(const std::string& name, const std::string& help, std::function<double()> fn) {
  std::lock_guard lk(mu_);
  auto& e = entries_.emplace_back();
  e.name = name, e.help = help, e.type = "gauge";
  e.fn = std::move(fn);
}

void Registry::collector(std::function<void(std::string& out)> fn) {
  std::lock_guard lk(mu_);
  auto& e = entries_.emplace_back();
  e.writer = std::move(fn);
}

std::string Registry::render() const {
  std::lock_guard lk(mu_);
  std::string out;
  std::set<std::string> described;  // HELP/TYPE once per family, even with several label sets
  for (const auto& e : entries_) {
    if (e.writer) {
      e.writer(out);
      continue;
    }
    if (described.insert(e.name).second) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", e.name, e.help, e.name, e.type);
    }
    std::string braces = e.labels.empty() ? "" : "{" + e.labels + "}";
    if (e.counter) out += fmt::format("{}{} {}\n", e.name, braces, e.counter->value());
    else if (e.gauge) out += fmt::format("{}{} {}\n", e.name, braces, e.gauge->value());
    else if (e.histogram) e.histogram->render(out, e.name, e.labels);
    else if (e.fn) out += fmt::format("{}{} {}\n", e.name, braces, e.fn());
  }
  return out;
}

}  // namespace outpost::core
