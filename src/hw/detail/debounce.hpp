// Settle-time debouncing for a contact input, as pure logic (no I/O), so it can be tested
// without a GPIO chip. Used by the libgpiod button's watcher thread.
//
// Model: every edge the kernel reports (re)starts a quiet period; once the line has seen no
// edge for the whole quiet period, its level is read and reported if it differs from the last
// reported level. So a bouncing press yields exactly one edge, a glitch shorter than the quiet
// period that ends where it began yields none, and the final level is never missed.
//
// Thread safety: none; owned by one thread.
#pragma once

#include <chrono>
#include <optional>

namespace outpost::hw::detail {

// How long a contact must be quiet before its level counts: mechanical push buttons bounce for
// roughly 1-10 ms, so 20 ms covers them with margin while adding latency a person won't notice.
inline constexpr std::chrono::milliseconds kDebounceQuiet{20};

class Debouncer {
 public:
  using Steady = std::chrono::steady_clock;

  // `reported`: the level the consumer already knows (read when the watcher starts).
  explicit Debouncer(bool reported, Steady::duration quiet = kDebounceQuiet)
      : reported_(reported), quiet_(quiet) {}

  // An edge was seen at `t`: restarts the quiet period.
  void edge(Steady::time_point t) { deadline_ = t + quiet_; }

  // When the pending quiet period ends; nullopt when no edge is pending.
  std::optional<Steady::time_point> deadline() const { return deadline_; }

  // At time `t`, with the line's current `level`: when the quiet period has ended, clears it
  // and returns `level` if it differs from the last reported level (which it then becomes).
  std::optional<bool> settle(Steady::time_point t, bool level) {
    if (!deadline_ || t < *deadline_) return std::nullopt;
    deadline_.reset();
    if (level == reported_) return std::nullopt;
    reported_ = level;
    return level;
  }

 private:
  bool reported_;
  Steady::duration quiet_;
  std::optional<Steady::time_point> deadline_;
};

}  // namespace outpost::hw::detail
