#include "core/bus.hpp"

#include <algorithm>

namespace outpost::core {

std::vector<Event> Bus::Subscriber::take(size_t max) {
  std::lock_guard lk(mu_);
  size_t n = std::min(max, queue_.size());
  std::vector<Event> out(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.begin() + n));
  queue_.erase(queue_.begin(), queue_.begin() + n);
  return out;
}

uint64_t Bus::Subscriber::dropped() const {
  std::lock_guard lk(mu_);
  return dropped_;
}

void Bus::Subscriber::set_active(bool on) {
  std::deque<Event> gone;
  std::lock_guard lk(mu_);
  active_ = on;
  if (!on) gone.swap(queue_);  // freed after the lock is released
}

bool Bus::Subscriber::active() const {
  std::lock_guard lk(mu_);
  return active_;
}

bool Bus::Subscriber::push(const Event& e) {
  std::lock_guard lk(mu_);
  if (!active_) return false;
  bool was_empty = queue_.empty();
  if (capacity_ == 0) {
    ++dropped_;
    return false;
  }
  if (queue_.size() >= capacity_) {
    queue_.pop_front();
    ++dropped_;
  }
  queue_.push_back(e);
  return was_empty;
}

Bus::Bus(Registry* metrics) {
  if (metrics) {
    published_ = &metrics->counter("outpost_bus_events_total", "Events published on the bus.");
    dropped_ = &metrics->counter("outpost_bus_dropped_total", "Events dropped from full subscriber queues.");
  }
}

std::shared_ptr<Bus::Subscriber> Bus::subscribe(std::string name, size_t capacity, std::function<void()> wake) {
  std::shared_ptr<Subscriber> s(new Subscriber(std::move(name), capacity, std::move(wake)));
  std::lock_guard lk(mu_);
  std::erase_if(subs_, [](const std::weak_ptr<Subscriber>& w) { return w.expired(); });
  subs_.push_back(s);
  return s;
}

void Bus::publish(const Event& e) {
  std::vector<std::shared_ptr<Subscriber>> live;
  {
    std::lock_guard lk(mu_);
    live.reserve(subs_.size());
    for (auto& w : subs_)
      if (auto s = w.lock()) live.push_back(std::move(s));
  }
  if (published_) published_->inc();
  for (auto& s : live) {
    uint64_t before = dropped_ ? s->dropped() : 0;
    bool wake = s->push(e);
    if (dropped_ && s->dropped() != before) dropped_->inc();
    if (wake && s->wake_) s->wake_();
  }
}

size_t Bus::subscribers() const {
  std::lock_guard lk(mu_);
  return static_cast<size_t>(std::count_if(subs_.begin(), subs_.end(), [](auto& w) {
    auto s = w.lock();
    return s && s->active();
  }));
}

}  // namespace outpost::core
