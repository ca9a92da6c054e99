// The login rate limiter: failures per client in a sliding window, lockout, bounded memory.

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "auth/auth.hpp"

namespace outpost::auth {

using core::Status;
using core::TimePoint;

namespace {

constexpr std::chrono::milliseconds kFirstDelay{250};
constexpr std::chrono::milliseconds kMaxDelay{2000};

}  // namespace

LoginLimiter::LoginLimiter(const config::AuthConfig& cfg, size_t max_clients)
    : max_failures_(cfg.login_max_failures),
      window_(std::max(cfg.login_window, std::chrono::milliseconds(0))),
      lockout_(std::max(cfg.login_lockout, std::chrono::milliseconds(0))),
      max_clients_(std::max<size_t>(max_clients, 1)) {}

void LoginLimiter::erase(Lru::iterator it) {
  index_.erase(it->client);
  lru_.erase(it);
}

// The list is ordered by last failure, and nothing about an entry outlives its last failure by
// more than max(window, lockout): so expired entries sit at the back, and each call drops them
// in amortised O(1).
void LoginLimiter::sweep(TimePoint now) {
  const auto keep = std::max(window_, lockout_);
  while (!lru_.empty() && lru_.back().touched + keep <= now) erase(std::prev(lru_.end()));
}

Status LoginLimiter::check(const std::string& client, TimePoint now) {
  std::lock_guard lock(mu_);
  sweep(now);
  auto it = index_.find(client);
  if (it == index_.end() || !it->second->locked_until) return Status::ok();
  if (*it->second->locked_until <= now) {
    erase(it->second);  // served its time: start afresh
    return Status::ok();
  }
  auto wait = std::chrono::ceil<std::chrono::seconds>(*it->second->locked_until - now);
  return Status::busy("too many failed logins; try again in " + std::to_string(wait.count()) +
                      " s");
}

std::chrono::seconds LoginLimiter::retry_after(const std::string& client, TimePoint now) const {
  std::lock_guard lock(mu_);
  auto it = index_.find(client);
  if (it == index_.end() || !it->second->locked_until || *it->second->locked_until <= now)
    return std::chrono::seconds(0);
  return std::chrono::ceil<std::chrono::seconds>(*it->second->locked_until - now);
}

std::chrono::milliseconds LoginLimiter::failure(const std::string& client, TimePoint now) {
  std::lock_guard lock(mu_);
  sweep(now);
  auto found = index_.find(client);
  Lru::iterator it;
  if (found != index_.end()) {
    it = found->second;
  } else {
    if (lru_.size() >= max_clients_) erase(std::prev(lru_.end()));
    lru_.push_front(Entry{client, {}, std::nullopt, now});
    it = lru_.begin();
    index_.emplace(client, it);
  }
  Entry& e = *it;
  if (e.locked_until) {
    if (*e.locked_until > now) return std::chrono::milliseconds(0);
    e.locked_until.reset();
    e.failures.clear();
  }
  std::erase_if(e.failures, [&](TimePoint t) { return t + window_ <= now; });
  e.failures.push_back(now);
  e.touched = now;
  lru_.splice(lru_.begin(), lru_, it);

  if (max_failures_ > 0 && e.failures.size() >= static_cast<size_t>(max_failures_)) {
    e.locked_until = now + lockout_;
    e.failures.clear();
    return std::chrono::milliseconds(0);
  }
  if (max_failures_ <= 0 && e.failures.size() > 64) {
    e.failures.erase(e.failures.begin());  // no lockout: keep enough for the delay only
  }
  const size_t n = e.failures.size();
  if (n <= 1) return std::chrono::milliseconds(0);
  return std::min(kMaxDelay, kFirstDelay * (1 << std::min<size_t>(n - 2, 3)));
}

void LoginLimiter::success(const std::string& client, TimePoint now) {
  std::lock_guard lock(mu_);
  if (auto it = index_.find(client); it != index_.end()) erase(it->second);
  sweep(now);
}

size_t LoginLimiter::tracked() const {
  std::lock_guard lock(mu_);
  return lru_.size();
}

std::string login_client_key(std::string_view address) {
  std::string text(address);
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
    text = text.substr(1, text.size() - 2);
  if (auto zone = text.find('%'); zone != std::string::npos) text.resize(zone);

  unsigned char bytes[16];
  if (inet_pton(AF_INET, text.c_str(), bytes) == 1) return text;
  if (inet_pton(AF_INET6, text.c_str(), bytes) != 1) return std::string(address);
  char out[INET6_ADDRSTRLEN];
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(bytes, kMapped, sizeof kMapped) == 0) {
    inet_ntop(AF_INET, bytes + 12, out, sizeof out);
    return out;
  }
  std::memset(bytes + 8, 0, 8);
  inet_ntop(AF_INET6, bytes, out, sizeof out);
  return std::string(out) + "/64";
}

}  // namespace outpost::auth
