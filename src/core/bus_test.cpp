#include "core/bus.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace outpost::core {
namespace {

Event ev(int64_t id) { return Event{id, now(), "pi", "motion", "{}"}; }

TEST(Bus, EverySubscriberGetsEveryEventInOrder) {
  Bus bus;
  auto a = bus.subscribe("a", 10, nullptr);
  auto b = bus.subscribe("b", 10, nullptr);
  for (int i = 1; i <= 3; ++i) bus.publish(ev(i));
  for (auto* s : {a.get(), b.get()}) {
    auto got = s->take();
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].id, 1);
    EXPECT_EQ(got[2].id, 3);
    EXPECT_TRUE(s->take().empty());
  }
}

TEST(Bus, FullQueueDropsTheOldestAndCounts) {
  Registry r;
  Bus bus(&r);
  auto slow = bus.subscribe("slow", 2, nullptr);
  auto fast = bus.subscribe("fast", 100, nullptr);
  for (int i = 1; i <= 5; ++i) bus.publish(ev(i));
  auto got = slow->take();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].id, 4);
  EXPECT_EQ(got[1].id, 5);
  EXPECT_EQ(slow->dropped(), 3u);
  EXPECT_EQ(fast->take().size(), 5u);  // a slow subscriber costs the others nothing
  EXPECT_NE(r.render().find("outpost_bus_dropped_total 3"), std::string::npos);
}

TEST(Bus, WakeOnlyWhenTheQueueBecomesNonEmpty) {
  Bus bus;
  int wakes = 0;
  auto s = bus.subscribe("s", 10, [&] { ++wakes; });
  bus.publish(ev(1));
  bus.publish(ev(2));
  EXPECT_EQ(wakes, 1);
  s->take();
  bus.publish(ev(3));
  EXPECT_EQ(wakes, 2);
}

TEST(Bus, DroppingTheSubscriberUnsubscribes) {
  Bus bus;
  auto s = bus.subscribe("s", 10, nullptr);
  EXPECT_EQ(bus.subscribers(), 1u);
  s.reset();
  EXPECT_EQ(bus.subscribers(), 0u);
  bus.publish(ev(1));  // nobody to deliver to; fine
}

TEST(Bus, AnInactiveSubscriberGetsNothingAndIsNotCounted) {
  Bus bus;
  int wakes = 0;
  auto s = bus.subscribe("s", 10, [&] { ++wakes; });
  bus.publish(ev(1));
  s->set_active(false);
  EXPECT_EQ(bus.subscribers(), 0u);
  EXPECT_TRUE(s->take().empty());  // what was queued went with it
  bus.publish(ev(2));
  EXPECT_TRUE(s->take().empty());
  EXPECT_EQ(s->dropped(), 0u);  // not given, so not dropped
  s->set_active(true);
  EXPECT_EQ(bus.subscribers(), 1u);
  bus.publish(ev(3));
  auto got = s->take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, 3);
  EXPECT_EQ(wakes, 2);
}

TEST(Bus, ConcurrentPublishersAndTakers) {
  Bus bus;
  auto s = bus.subscribe("s", 1'000'000, nullptr);
  std::atomic<size_t> taken{0};
  std::atomic<bool> done{false};
  std::thread taker([&] {
    while (!done || taken < 40'000) taken += s->take().size();
  });
  std::vector<std::thread> pubs;
  for (int t = 0; t < 4; ++t)
    pubs.emplace_back([&] {
      for (int i = 0; i < 10'000; ++i) bus.publish(ev(i));
    });
  for (auto& p : pubs) p.join();
  done = true;
  taker.join();
  EXPECT_EQ(taken.load(), 40'000u);
  EXPECT_EQ(s->dropped(), 0u);
}

}  // namespace
}  // namespace outpost::core
