// The bus: committed events fan out to subscribers (WebSocket clients, rules, the aggregator,
// the upstream outbox) without ever blocking the producer.
//
// Each subscriber has a bounded queue. publish() appends to every queue (dropping the oldest
// event of a full queue, counted per subscriber: a live view wants the newest) and calls the
// subscriber's `wake` when its queue goes from empty to non-empty; the subscriber then take()s
// on its own thread. Thread-safe; publish() holds no lock while calling `wake`.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/metrics.hpp"
#include "core/model.hpp"

namespace outpost::core {

class Bus {
 public:
  class Subscriber {
   public:
    // Queued events, oldest first, at most `max`.
    std::vector<Event> take(size_t max = SIZE_MAX);
    uint64_t dropped() const;
    const std::string& name() const { return name_; }
    // An inactive subscriber is given nothing and is not counted by subscribers(), so a
    // producer that renders events only for listeners (the hub's readings) skips that work
    // while, say, no WebSocket client is connected. Turning it off empties its queue.
    // Subscribers start active.
    void set_active(bool on);

   private:
    friend class Bus;
    Subscriber(std::string name, size_t capacity, std::function<void()> wake)
        : name_(std::move(name)), capacity_(capacity), wake_(std::move(wake)) {}
    bool push(const Event& e);  // true when the queue was empty (wake is due)
    bool active() const;

    std::string name_;
    size_t capacity_;
    std::function<void()> wake_;
    mutable std::mutex mu_;
    std::deque<Event> queue_;
    uint64_t dropped_ = 0;
    bool active_ = true;
  };

  explicit Bus(Registry* metrics = nullptr);

  // A subscriber stays subscribed while the returned pointer (or a copy) lives. `wake` must
  // not block; it may be empty (then the subscriber polls take()).
  std::shared_ptr<Subscriber> subscribe(std::string name, size_t capacity, std::function<void()> wake);
  void publish(const Event& e);
  // Live, active subscribers.
  size_t subscribers() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::weak_ptr<Subscriber>> subs_;
  Counter* published_ = nullptr;
  Counter* dropped_ = nullptr;
};

}  // namespace outpost::core
