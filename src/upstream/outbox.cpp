// The outbox engine: offers go to the store's outbox table (one row per destination that takes
// the kind); one thread per destination delivers them in order through its Sink.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "upstream/upstream.hpp"

namespace outpost::upstream {

using core::Result;
using core::Status;
using SteadyClock = std::chrono::steady_clock;

namespace {

// An idle destination looks for work this often even without being woken (a message put back
// by retrying dead letters, rows written by another process on the same data directory).
constexpr std::chrono::seconds kIdlePoll{5};
// While the store cannot be read or written, wait this long before trying again.
constexpr std::chrono::seconds kStoreRetry{1};

std::string label(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

std::chrono::milliseconds backoff_delay(std::chrono::milliseconds initial, std::chrono::milliseconds max,
                                        uint32_t failures, double u) {
  double step = static_cast<double>(initial.count());
  for (uint32_t i = 1; i < failures && step < static_cast<double>(max.count()); ++i) step *= 2;
  step = std::min(step, static_cast<double>(max.count()));
  u = std::clamp(u, 0.0, 1.0);
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(step * (0.5 + u / 2))));
}

// One destination: its sink, its thread and what the API shows of it. Shared with the store's
// `done` callbacks of offers (which may run after the Outbox is gone, at the store's close).
struct Destination {
  config::UpstreamDestination cfg;
  std::unique_ptr<Sink> sink;
  std::string target;

  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  bool wake = false;
  std::string state = "stopped";
  uint32_t failures = 0;
  std::string last_error;
  std::optional<core::TimePoint> last_error_at, next_attempt, last_delivered_at;

  std::atomic<uint64_t> retries{0}, refused{0}, dead_lettered{0};

  std::thread thread;

  store::OutboxTarget outbox_target() const {
    return store::OutboxTarget{cfg.name, cfg.max_messages, cfg.max_bytes, cfg.overflow != "refuse_new"};
  }
  bool takes(std::string_view kind) const {
    return std::find(cfg.kinds.begin(), cfg.kinds.end(), kind) != cfg.kinds.end();
  }
  void poke() {
    {
      std::lock_guard lk(mu);
      wake = true;
    }
    cv.notify_all();
  }
};

struct Outbox::Impl {
  config::UpstreamConfig cfg;
  std::string source;
  store::Store& store;
  std::vector<std::shared_ptr<Destination>> dests;
  std::mutex id_mu;
  std::mt19937_64 rng{std::random_device{}()};
  bool started = false;
  // The /metrics collector outlives this Impl in the Registry: it reads through this pointer,
  // cleared when the Outbox goes.
  std::shared_ptr<std::atomic<Impl*>> self = std::make_shared<std::atomic<Impl*>>(nullptr);

  Impl(const config::UpstreamConfig& c, std::string src, store::Store& s) : cfg(c), source(std::move(src)), store(s) {}

  std::string new_id() {
    std::lock_guard lk(id_mu);
    return fmt::format("{:016x}{:016x}", rng(), rng());
  }

  double uniform() {
    std::lock_guard lk(id_mu);
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  }

  // The targets and destinations of a message of `kind`.
  std::vector<std::shared_ptr<Destination>> takers(std::string_view kind) const {
    std::vector<std::shared_ptr<Destination>> out;
    for (const auto& d : dests)
      if (d->takes(kind)) out.push_back(d);
    return out;
  }

  static store::OutboxPut put_for(const std::vector<std::shared_ptr<Destination>>& to, std::string id,
                                  std::string kind, std::string content_type, std::string body) {
    store::OutboxPut p;
    for (const auto& d : to) p.targets.push_back(d->outbox_target());
    p.id = std::move(id);
    p.kind = std::move(kind);
    p.content_type = std::move(content_type);
    p.body = std::move(body);
    p.created = core::now();
    return p;
  }

  // After a commit: wake the destinations that got the message; count and log refusals.
  // Returns ok, or busy naming who refused it.
  static Status settle(const std::vector<std::shared_ptr<Destination>>& to, const store::OutboxOutcome& o,
                       const std::string& id, const std::string& kind) {
    std::vector<std::string> refused;
    for (size_t i = 0; i < to.size() && i < o.targets.size(); ++i) {
      const auto& r = o.targets[i];
      if (r.stored) to[i]->poke();
      if (r.dropped > 0) {
        spdlog::warn("upstream '{}': outbox full, dropped the {} oldest message(s) (overflow = drop_oldest)",
                     to[i]->cfg.name, r.dropped);
      }
      if (r.refused) {
        to[i]->refused.fetch_add(1);
        spdlog::warn("upstream '{}': refused {} message {}: {}", to[i]->cfg.name, kind, id, r.why);
        refused.push_back(r.why);
      }
    }
    if (refused.empty()) return Status::ok();
    return Status::busy(fmt::format("{} message not taken by every destination: {}", kind, fmt::join(refused, "; ")));
  }

  void run(Destination& d);
  void deliver_round(Destination& d, std::unique_lock<std::mutex>& lk);
  void failed_attempt(Destination& d, const std::string& error, bool count_attempt);
  void render(std::string& out) const;
};

// The delivery loop of one destination.
void Outbox::Impl::run(Destination& d) {
  std::unique_lock lk(d.mu);
  d.state = "idle";
  while (!d.stop) {
    if (d.next_attempt) {
      auto wait = std::chrono::duration_cast<std::chrono::microseconds>(*d.next_attempt - core::now());
      if (wait.count() > 0) {
        d.state = "backing_off";
        d.cv.wait_for(lk, wait, [&] { return d.stop; });
        continue;
      }
      d.next_attempt.reset();
    }
    deliver_round(d, lk);
  }
  d.state = "stopped";
}

// One round: the oldest pending batch to the sink, and its outcome recorded. Called and returns
// with lk held; releases it while talking to the store and the destination.
void Outbox::Impl::deliver_round(Destination& d, std::unique_lock<std::mutex>& lk) {
  d.wake = false;
  lk.unlock();
  auto batch = store.outbox_pending(d.cfg.name, std::max<size_t>(1, d.sink->max_batch()));
  if (!batch) {
    lk.lock();
    spdlog::error("upstream '{}': cannot read the outbox: {}", d.cfg.name, batch.status().to_string());
    d.cv.wait_for(lk, kStoreRetry, [&] { return d.stop; });
    return;
  }
  if (batch->empty()) {
    lk.lock();
    if (d.state != "idle") d.state = "idle";
    d.cv.wait_for(lk, kIdlePoll, [&] { return d.stop || d.wake; });
    return;
  }
  std::vector<Message> messages;
  messages.reserve(batch->size());
  for (auto& m : *batch) {
    messages.push_back(Message{m.id, m.kind, m.content_type, std::move(m.body), m.created, m.attempts});
  }
  {
    std::lock_guard state_lk(*lk.mutex());
    d.state = "delivering";
  }
  Delivery r = d.sink->deliver(messages, d.cfg.timeout);
  r.delivered = std::min(r.delivered, messages.size());
  if (r.delivered == messages.size()) r.rest = Outcome::kDelivered;

  if (r.delivered > 0) {
    std::vector<std::string> ids;
    for (size_t i = 0; i < r.delivered; ++i) ids.push_back(messages[i].id);
    if (auto s = store.outbox_delivered(d.cfg.name, ids); !s) {
      // They were delivered but are still in the outbox: they will go again (the receiver
      // deduplicates on the id). Wait for the store rather than spin on it.
      lk.lock();
      spdlog::error("upstream '{}': {} message(s) delivered but not deleted from the outbox: {}", d.cfg.name,
                    ids.size(), s.to_string());
      d.cv.wait_for(lk, kStoreRetry, [&] { return d.stop; });
      return;
    }
  }
  lk.lock();
  if (r.delivered > 0) d.last_delivered_at = core::now();
  if (r.rest == Outcome::kDelivered || (r.rest == Outcome::kRetry && r.delivered > 0)) {
    // All delivered, or part of it: go on at once (a real failure of the rest shows next round).
    if (d.failures > 0 && r.rest == Outcome::kDelivered) {
      spdlog::info("upstream '{}': delivering again after {} failed attempt(s)", d.cfg.name, d.failures);
      d.failures = 0;
    }
    return;
  }
  const Message& failed = messages[r.delivered];
  if (r.rest == Outcome::kDead) {
    std::string error = r.error.empty() ? "refused by the destination" : r.error;
    lk.unlock();
    Status s = store.outbox_kill(d.cfg.name, failed.id, error);
    lk.lock();
    if (!s && s.code() != core::Code::kNotFound) {
      spdlog::error("upstream '{}': cannot move message {} to the dead letters: {}", d.cfg.name, failed.id,
                    s.to_string());
      d.cv.wait_for(lk, kStoreRetry, [&] { return d.stop; });
      return;
    }
    d.dead_lettered.fetch_add(1);
    d.last_error = error;
    d.last_error_at = core::now();
    if (d.failures > 0) {
      spdlog::info("upstream '{}': the destination answers again after {} failed attempt(s)", d.cfg.name, d.failures);
      d.failures = 0;
    }
    spdlog::warn("upstream '{}': {} message {} refused for good ({}); moved to the dead letters (GET /api/outbox/dead)",
                 d.cfg.name, failed.kind, failed.id, error);
    return;
  }
  // kRetry with nothing delivered: the destination fails. Record the attempt, back off.
  std::vector<std::string> ids;
  for (size_t i = r.delivered; i < messages.size(); ++i) ids.push_back(messages[i].id);
  std::string error = r.error.empty() ? "delivery failed" : r.error;
  lk.unlock();
  if (auto s = store.outbox_failed(d.cfg.name, ids, error); !s) {
    spdlog::error("upstream '{}': cannot record a failed attempt: {}", d.cfg.name, s.to_string());
  }
  lk.lock();
  failed_attempt(d, error, true);
}

// Under d.mu: a failed attempt; the next one after the backoff.
void Outbox::Impl::failed_attempt(Destination& d, const std::string& error, bool count_attempt) {
  if (count_attempt) d.retries.fetch_add(1);
  ++d.failures;
  d.last_error = error;
  d.last_error_at = core::now();
  auto delay = backoff_delay(cfg.backoff_initial, cfg.backoff_max, d.failures, uniform());
  d.next_attempt = core::now() + std::chrono::duration_cast<std::chrono::microseconds>(delay);
  if (d.failures == 1) {
    spdlog::warn("upstream '{}' ({}): delivery failing: {}; messages stay in the outbox and are retried with "
                 "backoff up to {} ms (counted in outpost_upstream_retries_total)",
                 d.cfg.name, d.target, error, cfg.backoff_max.count());
  }
}

void Outbox::Impl::render(std::string& out) const {
  auto stats = store.outbox_stats();
  std::map<std::string, store::OutboxStats> by_name;
  if (stats) {
    for (auto& s : *stats) by_name[s.destination] = s;
  }
  auto now = core::now();
  struct Family {
    const char* name;
    const char* type;
    const char* help;
    std::function<double(const Destination&, const store::OutboxStats&)> value;
  };
  const Family families[] = {
      {"outpost_upstream_pending", "gauge", "Messages waiting in the outbox of a destination.",
       [](const Destination&, const store::OutboxStats& s) { return static_cast<double>(s.pending); }},
      {"outpost_upstream_pending_bytes", "gauge", "Bytes of message bodies in the outbox of a destination.",
       [](const Destination&, const store::OutboxStats& s) { return static_cast<double>(s.bytes); }},
      {"outpost_upstream_oldest_pending_seconds", "gauge", "Age of the oldest message waiting for a destination.",
       [now](const Destination&, const store::OutboxStats& s) {
         return s.oldest_pending ? std::chrono::duration<double>(now - *s.oldest_pending).count() : 0.0;
       }},
      {"outpost_upstream_dead_letters", "gauge", "Messages a destination refused for good, kept for inspection.",
       [](const Destination&, const store::OutboxStats& s) { return static_cast<double>(s.dead); }},
      {"outpost_upstream_delivered_total", "counter", "Messages a destination confirmed (kept across restarts).",
       [](const Destination&, const store::OutboxStats& s) { return static_cast<double>(s.delivered); }},
      {"outpost_upstream_dropped_total", "counter",
       "Messages deleted unsent to make room under overflow = drop_oldest (kept across restarts).",
       [](const Destination&, const store::OutboxStats& s) { return static_cast<double>(s.dropped); }},
      {"outpost_upstream_refused_total", "counter",
       "Messages not taken because the outbox was full under overflow = refuse_new, or too large.",
       [](const Destination& d, const store::OutboxStats&) { return static_cast<double>(d.refused.load()); }},
      {"outpost_upstream_retries_total", "counter", "Failed delivery attempts (each is retried after a backoff).",
       [](const Destination& d, const store::OutboxStats&) { return static_cast<double>(d.retries.load()); }},
      {"outpost_upstream_dead_lettered_total", "counter", "Messages moved to the dead letters since start.",
       [](const Destination& d, const store::OutboxStats&) { return static_cast<double>(d.dead_lettered.load()); }},
  };
  for (const auto& f : families) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name, f.help, f.name, f.type);
    for (const auto& d : dests) {
      auto it = by_name.find(d->cfg.name);
      store::OutboxStats s = it != by_name.end() ? it->second : store::OutboxStats{};
      out += fmt::format("{}{{destination=\"{}\"}} {}\n", f.name, label(d->cfg.name), f.value(*d, s));
    }
  }
}

Outbox::Outbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Outbox::~Outbox() {
  stop();
  impl_->self->store(nullptr);
}

Result<std::unique_ptr<Outbox>> Outbox::create(const config::UpstreamConfig& cfg, std::string source,
                                               store::Store& store, core::Registry& metrics, SinkFactory sinks) {
  auto impl = std::make_unique<Impl>(cfg, std::move(source), store);
  for (size_t i = 0; i < cfg.destinations.size(); ++i) {
    const auto& dc = cfg.destinations[i];
    auto sink = sinks ? sinks(dc) : Result<std::unique_ptr<Sink>>(Status::unavailable("no sink factory"));
    if (!sink) {
      return Status::invalid(
          fmt::format("upstream.destinations[{}] ('{}', {}): {}", i, dc.name, dc.url, sink.status().message()));
    }
    auto d = std::make_shared<Destination>();
    d->cfg = dc;
    d->sink = std::move(*sink);
    d->target = d->sink->describe();
    impl->dests.push_back(std::move(d));
  }
  // Rows of destinations that are no longer configured stay (nothing is deleted behind the
  // operator's back); say so once.
  if (auto stats = store.outbox_stats()) {
    for (const auto& s : *stats) {
      bool known = std::any_of(impl->dests.begin(), impl->dests.end(),
                               [&](const auto& d) { return d->cfg.name == s.destination; });
      if (!known && (s.pending > 0 || s.dead > 0)) {
        spdlog::warn("upstream: the outbox holds {} pending message(s) and {} dead letter(s) for '{}', which is no "
                     "longer configured; they stay until it is configured again",
                     s.pending, s.dead, s.destination);
      }
    }
  }
  auto self = impl->self;
  self->store(impl.get());
  metrics.collector([self](std::string& out) {
    if (Impl* i = self->load()) i->render(out);
  });
  for (const auto& d : impl->dests) {
    spdlog::info("upstream '{}': {} takes {}", d->cfg.name, d->target, fmt::join(d->cfg.kinds, ", "));
  }
  return std::unique_ptr<Outbox>(new Outbox(std::move(impl)));
}

void Outbox::start() {
  if (impl_->started) return;
  impl_->started = true;
  for (const auto& d : impl_->dests) {
    {
      std::lock_guard lk(d->mu);
      d->stop = false;
    }
    d->thread = std::thread([impl = impl_.get(), dest = d.get()] { impl->run(*dest); });
  }
}

void Outbox::stop() {
  for (const auto& d : impl_->dests) {
    {
      std::lock_guard lk(d->mu);
      d->stop = true;
    }
    d->cv.notify_all();
  }
  for (const auto& d : impl_->dests) {
    if (d->thread.joinable()) d->thread.join();
  }
  impl_->started = false;
}

bool Outbox::wants(std::string_view kind) const {
  return std::any_of(impl_->dests.begin(), impl_->dests.end(), [&](const auto& d) { return d->takes(kind); });
}

void Outbox::offer(std::string kind, std::string content_type, std::string body, Done done, std::string id_in) {
  auto to = impl_->takers(kind);
  if (to.empty()) {
    if (done) done(Status::ok());
    return;
  }
  auto put = Impl::put_for(to, id_in.empty() ? impl_->new_id() : std::move(id_in), kind, std::move(content_type),
                           std::move(body));
  std::string id = put.id;
  impl_->store.outbox_put(std::move(put), [to, id, kind, done = std::move(done)](Result<store::OutboxOutcome> r) {
    Status s = r ? Impl::settle(to, *r, id, kind) : r.status();
    if (!r) spdlog::error("upstream: {} message {} could not be stored in the outbox: {}", kind, id, s.to_string());
    if (done) done(std::move(s));
  });
}

void Outbox::offer_all(const std::string& kind, const std::string& content_type, std::vector<Item> messages,
                       Done done) {
  if (messages.empty()) {
    if (done) done(Status::ok());
    return;
  }
  struct Join {
    std::mutex mu;
    size_t left = 0;
    Status error = Status::ok();  // the first store error
    bool refused = false;
    Done done;
  };
  auto join = std::make_shared<Join>();
  join->left = messages.size();
  join->done = std::move(done);
  for (auto& m : messages) {
    offer(
        kind, content_type, std::move(m.body),
        [join](Status st) {
          std::unique_lock lk(join->mu);
          if (st.code() == core::Code::kBusy) {
            join->refused = true;
          } else if (!st && join->error) {
            join->error = std::move(st);
          }
          if (--join->left > 0) return;
          Status result = !join->error ? join->error
                          : join->refused ? Status::busy("some messages were refused by a destination's cap")
                                          : Status::ok();
          lk.unlock();
          if (join->done) join->done(std::move(result));
        },
        std::move(m.id));
  }
}

void Outbox::offer_summaries(const std::vector<core::Summary>& summaries, Done done) {
  std::vector<Item> items;
  items.reserve(summaries.size());
  for (const auto& x : summaries) items.push_back({core::summary_id(x), core::summary_json(x).dump()});
  offer_all("summary", "application/json", std::move(items), [done = std::move(done)](Status st) {
    if (done) done(st.code() == core::Code::kBusy ? Status::ok() : std::move(st));
  });
}

void Outbox::record_event(core::Event e, store::Store::EventDone done) {
  auto to = impl_->takers(e.kind);
  if (to.empty()) return impl_->store.append_event(std::move(e), std::move(done));
  auto put = Impl::put_for(to, impl_->new_id(), e.kind, "application/json", event_body(e));
  std::string id = put.id, kind = e.kind;
  impl_->store.append_event_outbox(
      std::move(e), std::move(put),
      [to, id, kind, done = std::move(done)](Result<int64_t> event_id, store::OutboxOutcome o) {
        if (event_id) (void)Impl::settle(to, o, id, kind);  // counted and logged there; the event itself is stored
        if (done) done(std::move(event_id));
      });
}

std::vector<DestinationStatus> Outbox::status() const {
  std::vector<DestinationStatus> out;
  auto stats = impl_->store.outbox_stats();
  std::map<std::string, store::OutboxStats> by_name;
  if (stats) {
    for (auto& s : *stats) by_name[s.destination] = s;
  }
  for (const auto& d : impl_->dests) {
    DestinationStatus st;
    st.name = d->cfg.name;
    st.target = d->target;
    st.kinds = d->cfg.kinds;
    if (auto it = by_name.find(d->cfg.name); it != by_name.end()) {
      st.stats = it->second;
      by_name.erase(it);
    } else {
      st.stats.destination = d->cfg.name;
    }
    st.retries = d->retries.load();
    st.refused = d->refused.load();
    st.dead_lettered = d->dead_lettered.load();
    std::lock_guard lk(d->mu);
    st.state = d->state;
    st.failures = d->failures;
    st.last_error = d->last_error;
    st.last_error_at = d->last_error_at;
    st.next_attempt = d->next_attempt;
    st.last_delivered_at = d->last_delivered_at;
    out.push_back(std::move(st));
  }
  for (auto& [name, s] : by_name) {
    if (s.pending == 0 && s.dead == 0) continue;
    DestinationStatus st;
    st.name = name;
    st.configured = false;
    st.stats = s;
    st.state = "stopped";
    out.push_back(std::move(st));
  }
  return out;
}

bool Outbox::has_destination(const std::string& name) const {
  return std::any_of(impl_->dests.begin(), impl_->dests.end(), [&](const auto& d) { return d->cfg.name == name; });
}

Result<std::vector<store::OutboxMessage>> Outbox::dead_letters(const std::string& destination, int64_t after_seq,
                                                               size_t limit) const {
  return impl_->store.outbox_dead(destination, after_seq, limit);
}

Result<size_t> Outbox::retry_dead(const std::string& destination, const std::string& id) {
  auto n = impl_->store.outbox_retry_dead(destination, id);
  if (n && *n > 0) {
    for (const auto& d : impl_->dests)
      if (d->cfg.name == destination) d->poke();
  }
  return n;
}

Result<size_t> Outbox::delete_dead(const std::string& destination, const std::string& id) {
  return impl_->store.outbox_delete_dead(destination, id);
}

}  // namespace outpost::upstream
