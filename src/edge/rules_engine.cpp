// The rules adapter: the hub's readings in, the evaluator under a lock, firings carried out
// through the hub and the event log, rules kept in the store, and a timer for minimum durations.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "edge/rules.hpp"

namespace outpost::edge {

using core::Json;
using core::Status;
using ojson = nlohmann::ordered_json;

namespace {

// A sensor value as a number, the way the hub stores it as a reading: a number, a boolean, a
// one-element array, an aggregate's average. nullopt for anything else (a 3DPoint, a string).
std::optional<double> numeric(const core::SensorValue& v) {
  const Json& j = *v.values;
  if (j.is_number()) return j.get<double>();
  if (j.is_boolean()) return j.get<bool>() ? 1.0 : 0.0;
  if (j.is_array() && j.size() == 1 && j[0].is_number()) return j[0].get<double>();
  if (j.is_object() && j.contains("average") && j["average"].is_number()) return j["average"].get<double>();
  return std::nullopt;
}

std::string describe(const Json& j) {
  std::string s = j.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// How a command may name an actuator: its attributes' name and type (labels), its actions'
// parameters, its callbacks' targets.
struct ActuatorNames {
  std::vector<std::string> labels, params, callbacks;
};
ActuatorNames names_of(const core::Actuator& a) {
  ActuatorNames n;
  for (const char* k : {"name", "type"}) {
    if (auto it = a.attributes->find(k); it != a.attributes->end() && it->is_string()) n.labels.push_back(*it);
  }
  for (const auto& act : *a.actions) {
    if (act.is_object() && act.contains("parameter") && act["parameter"].is_string()) n.params.push_back(act["parameter"]);
  }
  for (const auto& cb : *a.callbacks) {
    if (cb.is_object() && cb.contains("target") && cb["target"].is_string()) n.callbacks.push_back(cb["target"]);
  }
  return n;
}

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

// "a, b, c" without repeats, in order; "none" when empty.
std::string join(const std::vector<std::string>& v) {
  std::vector<std::string> seen;
  std::string out;
  for (const auto& s : v) {
    if (has(seen, s)) continue;
    seen.push_back(s);
    out += (out.empty() ? "" : ", ") + s;
  }
  return out.empty() ? "none" : out;
}

std::string new_id() {
  static std::mt19937_64 rng{std::random_device{}()};
  static std::mutex mu;
  std::lock_guard lk(mu);
  return fmt::format("rule_{:08x}", static_cast<uint32_t>(rng()));
}

ojson to_ordered(const Json& j) { return ojson::parse(j.dump()); }

ojson time_or_null(const std::optional<core::TimePoint>& t) {
  return t ? ojson(core::format_iso8601(*t)) : ojson(nullptr);
}

}  // namespace

struct RuleMetrics {
  explicit RuleMetrics(core::Registry& m)
      : evaluations(m.counter("outpost_rule_evaluations_total",
                              "Rule evaluations: a rule checked against a reading of a sensor it reads.")),
        fired_on(m.counter("outpost_rule_firings_total", "Rule transitions by direction.", R"(transition="on")")),
        fired_off(m.counter("outpost_rule_firings_total", "Rule transitions by direction.", R"(transition="off")")),
        actions_failed(m.counter("outpost_rule_actions_failed_total",
                                 "Commands of rules that were refused, could not be sent, or failed at once.")),
        // Finer than core::latency_buckets() (which starts at 50 µs): the budget is 1 ms.
        latency(m.histogram("outpost_rule_latency_seconds",
                            "From a reading reaching the rules to the firing's command handed to its transport.",
                            {5e-6, 10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 100e-3})),
        rules(m.gauge("outpost_rules", "Rules loaded (config and API).")),
        active(m.gauge("outpost_rules_active", "Rules whose condition holds (on).")) {}
  core::Counter& evaluations;
  core::Counter& fired_on;
  core::Counter& fired_off;
  core::Counter& actions_failed;
  core::Histogram& latency;
  core::Gauge& rules;
  core::Gauge& active;
};

RuleEngine::RuleEngine(Deps deps) : d_(std::move(deps)), m_(std::make_unique<RuleMetrics>(d_.metrics)) {}

RuleEngine::~RuleEngine() { stop(); }

size_t RuleEngine::size() const {
  std::lock_guard lk(mu_);
  return eval_.size();
}

bool RuleEngine::check_rule(const Rule& r, RuleError& err) const {
  std::string concerned;  // the device the check is about
  auto fail = [&](std::string field, std::string message, std::optional<size_t> pos = std::nullopt) {
    err.field = std::move(field);
    err.message = std::move(message);
    err.position = pos;
    err.device = concerned;
    return false;
  };
  const auto& registry = d_.hub.registry();
  auto check_sensor = [&](const std::string& device, const std::string& sensor, const std::string& device_field,
                          const std::string& sensor_field, std::optional<size_t> pos) {
    std::string at = pos ? fmt::format(" at position {}", *pos) : "";
    concerned = device;
    if (device == d_.board && is_board_sensor(sensor)) return true;
    auto dev = registry.get(device);
    if (!dev)
      return fail(device_field,
                  fmt::format("no device '{}'{}: a rule may name only devices the hub knows (a device is known once "
                              "it has reported)",
                              device, at),
                  pos);
    std::vector<std::string> names;
    for (const auto& s : dev->sensors) {
      names.push_back(s.id);
      if (s.id != sensor) continue;
      if (s.value && !numeric(*s.value))
        return fail(sensor_field,
                    fmt::format("sensor '{}' of device '{}'{} reports {} values ({}); rules compare numbers", sensor,
                                device, at, s.value->primitive.empty() ? "non-numeric" : s.value->primitive,
                                describe(*s.value->values)),
                    pos);
      return true;
    }
    return fail(sensor_field,
                fmt::format("device '{}' has no sensor '{}'{} (it has: {}); a rule may name only sensors that have "
                            "reported",
                            device, sensor, at, join(names)),
                pos);
  };
  if (r.threshold && !check_sensor(r.threshold->device, r.threshold->sensor, "device", "sensor", std::nullopt))
    return false;
  for (auto [expr, field] : {std::pair{&r.expr, "expr"}, std::pair{&r.clear, "clear"}}) {
    if (!*expr) continue;
    for (const auto& ref : (*expr)->refs()) {
      if (!check_sensor(ref.device, ref.sensor, field, field, ref.position)) return false;
    }
  }
  for (auto [actions, prefix] : {std::pair{&r.on, "on.command"}, std::pair{&r.off, "off.command"}}) {
    if (!actions->command) continue;
    const RuleCommand& c = *actions->command;
    concerned = c.device;
    auto dev = registry.get(c.device);
    if (!dev)
      return fail(fmt::format("{}.device", prefix),
                  fmt::format("no device '{}': a rule may command only devices the hub knows", c.device));
    if (dev->actuators.empty()) continue;  // nothing to check against (see the header)
    // This board's actuators go by name (led, relay, servo); a remote device's also by its
    // actions' parameters and callbacks' targets (a FIWARE actuator often has no name).
    bool local = dev->transport == core::Transport::kLocal;
    std::vector<std::string> known;
    bool found = false;
    for (const auto& a : dev->actuators) {
      ActuatorNames n = names_of(a);
      known.insert(known.end(), n.labels.begin(), n.labels.end());
      if (!local || n.labels.empty()) {
        known.insert(known.end(), n.params.begin(), n.params.end());
        known.insert(known.end(), n.callbacks.begin(), n.callbacks.end());
      }
      if (has(n.labels, c.target)) {
        found = true;
        if (!n.params.empty() && !has(n.params, c.parameter))
          return fail(fmt::format("{}.parameter", prefix),
                      fmt::format("actuator '{}' of device '{}' has no parameter '{}' (it has: {})", c.target,
                                  c.device, c.parameter, join(n.params)));
      } else if (!local && (has(n.params, c.target) || has(n.callbacks, c.target))) {
        found = true;
      }
    }
    if (!found)
      return fail(fmt::format("{}.target", prefix),
                  fmt::format("device '{}' has no actuator '{}' (it has: {})", c.device, c.target, join(known)));
  }
  return true;
}

Status RuleEngine::load(const std::vector<config::RuleConfig>& from_config) {
  auto now = d_.clock.now();
  std::vector<Rule> config_rules;
  std::vector<store::StoredRule> rows;
  for (size_t i = 0; i < from_config.size(); ++i) {
    const auto& rc = from_config[i];
    Json doc = Json::parse(rc.json, nullptr, false);
    RuleError err;
    auto r = doc.is_discarded() ? std::nullopt : parse_rule(doc, d_.board, err);
    if (!r) {
      std::string field = err.field.empty() ? fmt::format("rules[{}]", i) : fmt::format("rules[{}].{}", i, err.field);
      return Status::invalid(fmt::format("{}: {}: {}", rc.origin, field, err.message));
    }
    for (const auto& other : config_rules) {
      if (other.id == r->id)
        return Status::invalid(fmt::format("{}: rules[{}].id: '{}' is already the id of another rule", rc.origin, i, r->id));
    }
    // The board's own parts are known now: a typo there fails start-up. Other devices may
    // report only later: their absence is only logged.
    if (!check_rule(*r, err)) {
      if (err.device == d_.board)
        return Status::invalid(fmt::format("{}: rules[{}].{}: {}", rc.origin, i, err.field, err.message));
      spdlog::warn("rules: rule '{}' ({}): {}: {}; it waits for that", r->id, rc.origin, err.field, err.message);
    }
    rows.push_back({r->id, doc.dump(), "config", now});
    config_rules.push_back(std::move(*r));
  }
  auto stored = d_.store.load_rules();
  if (!stored) return stored.status();
  std::vector<Rule> api_rules;
  for (const auto& s : *stored) {
    if (s.source != "api") continue;
    bool shadowed = std::any_of(config_rules.begin(), config_rules.end(),
                                [&](const Rule& c) { return c.id == s.id; });
    if (shadowed) {
      spdlog::warn("rules: the configuration file's rule '{}' replaces the API rule of the same id", s.id);
      continue;
    }
    Json doc = Json::parse(s.doc, nullptr, false);
    RuleError err;
    auto r = doc.is_discarded() ? std::nullopt : parse_rule(doc, d_.board, err);
    if (!r) {
      spdlog::warn("rules: skipping stored rule '{}': {}: {}", s.id, err.field, err.message);
      continue;
    }
    api_rules.push_back(std::move(*r));
  }
  if (auto s = d_.store.replace_config_rules(rows); !s) return s;
  std::lock_guard lk(mu_);
  for (auto& r : config_rules) {
    source_[r.id] = "config";
    eval_.put(std::move(r), now);
  }
  for (auto& r : api_rules) {
    source_[r.id] = "api";
    eval_.put(std::move(r), now);
  }
  m_->rules.set(static_cast<int64_t>(eval_.size()));
  if (eval_.size() > 0)
    spdlog::info("rules: {} loaded ({} from the configuration file)", eval_.size(), config_rules.size());
  return Status::ok();
}

void RuleEngine::on_readings(const std::vector<core::Reading>& readings) {
  auto observed = std::chrono::steady_clock::now();
  std::vector<Firing> firings;
  std::unique_lock lk(mu_);
  if (eval_.size() == 0) return;
  auto now = d_.clock.now();
  size_t evaluated = 0;
  for (const auto& r : readings) evaluated += eval_.on_reading(r, now, firings);
  if (evaluated == 0) return;
  m_->evaluations.inc(evaluated);
  // A reading may have started a minimum duration that ends before the timer's next wake-up.
  auto deadline = eval_.next_deadline();
  if (deadline && (!armed_ || *deadline < *armed_)) {
    armed_ = deadline;
    std::lock_guard tl(timer_mu_);
    rearm_ = true;
    timer_cv_.notify_one();
  }
  if (firings.empty()) return;
  m_->active.set(static_cast<int64_t>(eval_.active_count()));
  // Hand over hand: the next firing (another thread's) waits for these to be carried out.
  std::unique_lock act(act_mu_);
  lk.unlock();
  carry_out(firings, observed);
}

void RuleEngine::tick() {
  std::vector<Firing> firings;
  std::unique_lock lk(mu_);
  eval_.tick(d_.clock.now(), firings);
  armed_ = eval_.next_deadline();
  if (firings.empty()) return;
  m_->active.set(static_cast<int64_t>(eval_.active_count()));
  std::unique_lock act(act_mu_);
  lk.unlock();
  carry_out(firings, std::nullopt);
}

void RuleEngine::carry_out(std::vector<Firing>& firings, std::optional<std::chrono::steady_clock::time_point> observed) {
  for (auto& f : firings) {
    (f.on ? m_->fired_on : m_->fired_off).inc();
    std::string device = f.device.empty() ? d_.board : f.device;
    ojson actions = ojson::array();
    bool ok = true;
    if (f.actions.command) {
      const RuleCommand& c = *f.actions.command;
      auto sent = d_.hub.submit(c.device, c.target, c.parameter, c.value, "rule:" + f.rule);
      if (observed) {
        m_->latency.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - *observed).count());
      }
      ojson a = {{"type", "command"},
                 {"device", c.device},
                 {"target", c.target},
                 {"parameter", c.parameter},
                 {"value", to_ordered(c.value)}};
      if (!sent) {
        ok = false;
        a["outcome"] = sent.status().code() == core::Code::kInvalid ? "refused" : "failed";
        a["detail"] = sent.status().message();
      } else {
        a["outcome"] = hub::state_name(sent->state);
        a["command"] = sent->id;
        if (!sent->detail.empty()) a["detail"] = sent->detail;
        if (sent->state == hub::CommandState::kFailed) ok = false;
      }
      if (!ok) {
        m_->actions_failed.inc();
        spdlog::warn("rules: rule '{}' {}: command to {}/{} {}: {}", f.rule, f.on ? "on" : "off", c.device, c.target,
                     a["outcome"].get<std::string>(), a.value("detail", ""));
      }
      actions.push_back(std::move(a));
    }
    if (f.actions.alert) {
      Json payload = {{"rule", f.rule},     {"message", *f.actions.alert}, {"transition", f.on ? "on" : "off"},
                      {"value", f.value},   {"device", f.device},          {"sensor", f.sensor}};
      core::Event alert{0, f.at, device, "alert", payload.dump()};
      d_.record_event(alert);
      if (on_alert_) {
        std::lock_guard tl(timer_mu_);
        alerts_.push_back(std::move(alert));
        timer_cv_.notify_one();
      }
      actions.push_back({{"type", "alert"}, {"message", *f.actions.alert}, {"outcome", "recorded"}});
    }
    std::string outcome = ok ? "ok" : "failed";
    ojson payload = {{"rule", f.rule},
                     {"transition", f.on ? "on" : "off"},
                     {"value", to_ordered(f.value)},
                     {"device", f.device},
                     {"sensor", f.sensor},
                     {"actions", actions},
                     {"outcome", outcome}};
    d_.record_event(core::Event{0, f.at, device, "rule", payload.dump()});
    std::lock_guard ol(outcome_mu_);
    outcomes_[f.rule] = std::move(outcome);
  }
}

void RuleEngine::start() {
  std::lock_guard tl(timer_mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void RuleEngine::stop() {
  {
    std::lock_guard tl(timer_mu_);
    stopping_ = true;
  }
  timer_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RuleEngine::run() {
  for (;;) {
    tick();
    std::optional<core::TimePoint> deadline;
    {
      std::lock_guard lk(mu_);
      deadline = armed_;
    }
    std::deque<core::Event> alerts;
    {
      std::unique_lock tl(timer_mu_);
      auto woken = [this] { return stopping_ || rearm_ || !alerts_.empty(); };
      if (deadline) {
        // The deadline is on the engine's clock; wait for the time left, rounded up, so the tick
        // after the wait finds the duration over rather than waking a hair early and spinning.
        auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - d_.clock.now());
        timer_cv_.wait_for(tl, std::max(left, std::chrono::milliseconds(0)) + std::chrono::milliseconds(1), woken);
      } else {
        timer_cv_.wait(tl, woken);
      }
      rearm_ = false;
      alerts.swap(alerts_);
      if (stopping_ && alerts.empty()) return;
    }
    for (const auto& a : alerts) {
      try {
        on_alert_(a);
      } catch (const std::exception& e) {
        spdlog::error("rules: the alert callback failed: {}", e.what());
      }
    }
  }
}

RuleEngine::View RuleEngine::view(const std::string& id) const {
  // mu_ held by the caller.
  const Rule* r = eval_.find(id);
  ojson j = rule_json(*r);
  auto src = source_.find(id);
  j["source"] = src == source_.end() ? "api" : src->second;
  auto st = eval_.state(id);
  ojson state = {{"active", st->active},
                 {"since", core::format_iso8601(st->since)},
                 {"pending_since", time_or_null(st->pending_since)},
                 {"last_fired", time_or_null(st->last_fired)},
                 {"last_transition", st->last_transition ? ojson(*st->last_transition ? "on" : "off") : ojson(nullptr)},
                 {"last_value", to_ordered(st->last_value)},
                 {"firings", st->firings}};
  {
    std::lock_guard ol(outcome_mu_);
    auto o = outcomes_.find(id);
    state["last_outcome"] = o == outcomes_.end() ? ojson(nullptr) : ojson(o->second);
  }
  j["state"] = std::move(state);
  return View{std::move(j)};
}

std::vector<RuleEngine::View> RuleEngine::list() const {
  std::lock_guard lk(mu_);
  std::vector<View> out;
  for (const auto& id : eval_.ids()) out.push_back(view(id));
  return out;
}

std::optional<RuleEngine::View> RuleEngine::get(const std::string& id) const {
  std::lock_guard lk(mu_);
  if (!eval_.find(id)) return std::nullopt;
  return view(id);
}

core::Result<RuleEngine::View> RuleEngine::install(Rule r, const Json& doc) {
  // api_mu_ held by the caller; the rule is checked.
  auto now = d_.clock.now();
  if (auto s = d_.store.put_rule({r.id, doc.dump(), "api", now}); !s) return s;
  // What the hub already knows of the rule's inputs: a rule on a sensor that reports rarely need
  // not wait for its next report to have a value (it is evaluated at the next reading of any input).
  std::vector<std::pair<SensorRef, double>> known;
  for (const auto& ref : r.inputs()) {
    auto dev = d_.hub.registry().get(ref.device);
    if (!dev) continue;
    for (const auto& s : dev->sensors) {
      if (s.id != ref.sensor || !s.value) continue;
      if (auto v = numeric(*s.value)) known.emplace_back(ref, *v);
    }
  }
  std::string id = r.id;
  std::lock_guard lk(mu_);
  eval_.put(std::move(r), now);
  for (const auto& [ref, v] : known) eval_.seed(ref.device, ref.sensor, v);
  source_[id] = "api";
  m_->rules.set(static_cast<int64_t>(eval_.size()));
  m_->active.set(static_cast<int64_t>(eval_.active_count()));
  return view(id);
}

core::Result<RuleEngine::View> RuleEngine::create(const Json& doc, RuleError& err) {
  std::lock_guard api(api_mu_);
  Json body = doc;
  if (body.is_object() && !body.contains("id")) {
    do {
      body["id"] = new_id();
    } while (get(body["id"].get<std::string>()));
  }
  auto r = parse_rule(body, d_.board, err);
  if (!r || !check_rule(*r, err)) return Status::invalid(err.message);
  if (get(r->id)) {
    err = {"id", fmt::format("a rule '{}' exists; PUT /api/rules/{} replaces it", r->id, r->id), std::nullopt, ""};
    return Status::conflict(err.message);
  }
  return install(std::move(*r), body);
}

core::Result<RuleEngine::View> RuleEngine::replace(const std::string& id, const Json& doc, RuleError& err) {
  std::lock_guard api(api_mu_);
  {
    std::lock_guard lk(mu_);
    if (!eval_.find(id)) return Status::not_found(fmt::format("no rule '{}'", id));
    if (source_[id] == "config") {
      err = {"id", fmt::format("rule '{}' comes from the configuration file; change it there", id), std::nullopt, ""};
      return Status::conflict(err.message);
    }
  }
  Json body = doc;
  if (body.is_object()) {
    if (auto it = body.find("id"); it != body.end() && *it != Json(id)) {
      err = {"id", fmt::format("the body's id {} is not the path's '{}'", it->dump(), id), std::nullopt, ""};
      return Status::invalid(err.message);
    }
    body["id"] = id;
  }
  auto r = parse_rule(body, d_.board, err);
  if (!r || !check_rule(*r, err)) return Status::invalid(err.message);
  return install(std::move(*r), body);
}

Status RuleEngine::remove(const std::string& id) {
  std::lock_guard api(api_mu_);
  {
    std::lock_guard lk(mu_);
    if (!eval_.find(id)) return Status::not_found(fmt::format("no rule '{}'", id));
    if (source_[id] == "config")
      return Status::conflict(fmt::format("rule '{}' comes from the configuration file; remove it there", id));
  }
  if (auto s = d_.store.delete_rule(id); !s && s.code() != core::Code::kNotFound) return s;
  std::lock_guard lk(mu_);
  eval_.remove(id);
  source_.erase(id);
  m_->rules.set(static_cast<int64_t>(eval_.size()));
  m_->active.set(static_cast<int64_t>(eval_.active_count()));
  std::lock_guard ol(outcome_mu_);
  outcomes_.erase(id);
  return Status::ok();
}

}  // namespace outpost::edge
