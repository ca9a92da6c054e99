// Rules as values: the document parser and the evaluator (no I/O, no clock, no locks).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "edge/edge.hpp"
#include "edge/rules.hpp"

namespace outpost::edge {

using core::Json;
using ojson = nlohmann::ordered_json;

namespace {

constexpr size_t kMaxIdLength = 64;
constexpr size_t kMaxText = 1000;
constexpr std::chrono::milliseconds kMaxHold = std::chrono::hours(24 * 30);

bool fail(RuleError& err, std::string field, std::string message) {
  err.field = std::move(field);
  err.message = std::move(message);
  err.position.reset();
  return false;
}

bool valid_id(const std::string& id) {
  if (id.empty() || id.size() > kMaxIdLength) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.' || c == ':';
  });
}

// A JSON type's name, for messages.
std::string type_of(const Json& j) {
  if (j.is_null()) return "null";
  if (j.is_boolean()) return "a boolean";
  if (j.is_number()) return "a number";
  if (j.is_string()) return "a string";
  if (j.is_array()) return "an array";
  return "an object";
}

bool get_string(const Json& doc, const char* key, const std::string& field, std::string& out, RuleError& err,
                bool allow_empty = false) {
  const Json& v = doc.at(key);
  if (!v.is_string()) return fail(err, field, fmt::format("{} must be a string, not {}", field, type_of(v)));
  out = v.get<std::string>();
  if (!allow_empty && out.empty()) return fail(err, field, fmt::format("{} must not be empty", field));
  if (out.size() > kMaxText) return fail(err, field, fmt::format("{} is longer than {} characters", field, kMaxText));
  return true;
}

bool get_number(const Json& doc, const char* key, double& out, RuleError& err) {
  const Json& v = doc.at(key);
  if (!v.is_number())
    return fail(err, key, fmt::format("{} must be a number, not {}", key, type_of(v)));
  out = v.get<double>();
  if (!std::isfinite(out)) return fail(err, key, fmt::format("{} must be a finite number", key));
  return true;
}

bool check_keys(const Json& obj, std::initializer_list<std::string_view> known, const std::string& prefix,
                RuleError& err) {
  for (const auto& [k, v] : obj.items()) {
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      std::string names;
      for (auto n : known) names += (names.empty() ? "" : ", ") + std::string(n);
      return fail(err, prefix + k, fmt::format("unknown field '{}{}' (known: {})", prefix, k, names));
    }
  }
  return true;
}

bool parse_hold(const Json& v, std::chrono::milliseconds& out, RuleError& err) {
  if (v.is_string()) {
    auto d = core::parse_duration(v.get<std::string>());
    if (!d)
      return fail(err, "for",
                  fmt::format("for: '{}' is not a duration (e.g. \"90s\", \"1m\", or a number of seconds)",
                              v.get<std::string>()));
    out = *d;
  } else if (v.is_number()) {
    double secs = v.get<double>();
    if (!std::isfinite(secs) || secs < 0)
      return fail(err, "for", "for must be a non-negative number of seconds or a duration such as \"1m\"");
    if (secs > static_cast<double>(kMaxHold.count()) / 1000)
      return fail(err, "for", "for is longer than 30 days");
    out = std::chrono::milliseconds(static_cast<int64_t>(std::llround(secs * 1000)));
  } else {
    return fail(err, "for", fmt::format("for must be a duration such as \"1m\" or a number of seconds, not {}",
                                        type_of(v)));
  }
  if (out > kMaxHold) return fail(err, "for", "for is longer than 30 days");
  return true;
}

bool parse_actions(const Json& doc, const char* key, const std::string& board, Actions& out, RuleError& err) {
  auto it = doc.find(key);
  if (it == doc.end()) return true;
  std::string prefix = std::string(key) + ".";
  if (!it->is_object())
    return fail(err, key, fmt::format("{} must be an object {{\"command\": {{...}}, \"alert\": \"...\"}}", key));
  if (!check_keys(*it, {"command", "alert"}, prefix, err)) return false;
  if (auto a = it->find("alert"); a != it->end()) {
    std::string msg;
    if (!get_string(*it, "alert", prefix + "alert", msg, err)) return false;
    out.alert = std::move(msg);
  }
  if (auto c = it->find("command"); c != it->end()) {
    std::string cp = prefix + "command";
    if (!c->is_object())
      return fail(err, cp, fmt::format("{} must be an object {{\"device\", \"target\", \"parameter\", \"value\"}}", cp));
    if (!check_keys(*c, {"device", "target", "parameter", "value"}, cp + ".", err)) return false;
    RuleCommand cmd;
    cmd.device = board;
    if (c->contains("device") && !get_string(*c, "device", cp + ".device", cmd.device, err)) return false;
    if (!c->contains("target"))
      return fail(err, cp + ".target", fmt::format("{}.target is required: the actuator (\"relay\", \"led\", ...)", cp));
    if (!get_string(*c, "target", cp + ".target", cmd.target, err)) return false;
    if (c->contains("parameter") && !get_string(*c, "parameter", cp + ".parameter", cmd.parameter, err)) return false;
    auto v = c->find("value");
    if (v == c->end() || v->is_null())
      return fail(err, cp + ".value", fmt::format("{}.value is required (\"on\", \"off\", a number, ...)", cp));
    cmd.value = *v;
    out.command = std::move(cmd);
  }
  return true;
}

std::string format_hold(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms == 0) return "0s";
  if (ms % 3'600'000 == 0) return fmt::format("{}h", ms / 3'600'000);
  if (ms % 60'000 == 0) return fmt::format("{}m", ms / 60'000);
  if (ms % 1000 == 0) return fmt::format("{}s", ms / 1000);
  return fmt::format("{}ms", ms);
}

ojson actions_json(const Actions& a) {
  ojson j = ojson::object();
  if (a.command) {
    j["command"] = {{"device", a.command->device},
                    {"target", a.command->target},
                    {"parameter", a.command->parameter},
                    {"value", ojson::parse(a.command->value.dump())}};
  }
  if (a.alert) j["alert"] = *a.alert;
  return j;
}

Json number_or_null(double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); }

}  // namespace

bool is_board_sensor(std::string_view sensor) {
  return sensor == kCpuTemp || sensor == kLedState || sensor == kButtonPressed || sensor == kRelayState;
}

std::vector<SensorRef> Rule::inputs() const {
  if (threshold) return {SensorRef{threshold->device, threshold->sensor, 0}};
  std::vector<SensorRef> out = expr ? expr->refs() : std::vector<SensorRef>{};
  if (clear) {
    for (const auto& r : clear->refs())
      if (std::find(out.begin(), out.end(), r) == out.end()) out.push_back(r);
  }
  return out;
}

std::optional<Rule> parse_rule(const Json& doc, const std::string& board, RuleError& err) {
  if (!doc.is_object()) {
    fail(err, "", "a rule must be a JSON object");
    return std::nullopt;
  }
  if (!check_keys(doc,
                  {"id", "description", "enabled", "device", "sensor", "above", "below", "clear_below", "clear_above",
                   "expr", "clear", "for", "on", "off"},
                  "", err))
    return std::nullopt;
  Rule r;
  if (!doc.contains("id")) {
    fail(err, "id", "id is required");
    return std::nullopt;
  }
  if (!get_string(doc, "id", "id", r.id, err)) return std::nullopt;
  if (!valid_id(r.id)) {
    fail(err, "id", fmt::format("id '{}' must be 1 to {} of A-Z a-z 0-9 _ - . :", r.id, kMaxIdLength));
    return std::nullopt;
  }
  if (doc.contains("description") && !get_string(doc, "description", "description", r.description, err, true))
    return std::nullopt;
  if (auto e = doc.find("enabled"); e != doc.end()) {
    if (!e->is_boolean()) {
      fail(err, "enabled", fmt::format("enabled must be true or false, not {}", type_of(*e)));
      return std::nullopt;
    }
    r.enabled = e->get<bool>();
  }

  bool has_sensor = doc.contains("sensor"), has_expr = doc.contains("expr");
  if (has_sensor && has_expr) {
    fail(err, "expr", "give either sensor (with above or below) or expr, not both");
    return std::nullopt;
  }
  if (has_sensor) {
    Rule::Threshold t;
    t.device = board;
    if (doc.contains("device") && !get_string(doc, "device", "device", t.device, err)) return std::nullopt;
    if (!get_string(doc, "sensor", "sensor", t.sensor, err)) return std::nullopt;
    bool above = doc.contains("above"), below = doc.contains("below");
    if (above == below) {
      fail(err, above ? "below" : "above",
           above ? "give one of above or below, not both" : "a threshold needs above (or below): the value to compare with");
      return std::nullopt;
    }
    t.above = above;
    if (!get_number(doc, above ? "above" : "below", t.threshold, err)) return std::nullopt;
    const char* clear_key = above ? "clear_below" : "clear_above";
    const char* wrong_key = above ? "clear_above" : "clear_below";
    if (doc.contains(wrong_key)) {
      fail(err, wrong_key,
           fmt::format("{} goes with {}; a rule on {} clears with {}", wrong_key, above ? "below" : "above",
                       above ? "above" : "below", clear_key));
      return std::nullopt;
    }
    t.clear = t.threshold;
    if (doc.contains(clear_key)) {
      if (!get_number(doc, clear_key, t.clear, err)) return std::nullopt;
      if (above ? t.clear > t.threshold : t.clear < t.threshold) {
        fail(err, clear_key,
             fmt::format("{} ({}) is {} {} ({}): the hysteresis band would be inverted", clear_key, t.clear,
                         above ? "above" : "below", above ? "above" : "below", t.threshold));
        return std::nullopt;
      }
    }
    r.threshold = std::move(t);
    if (doc.contains("clear")) {
      fail(err, "clear", fmt::format("clear is for expressions; a threshold clears with {}", clear_key));
      return std::nullopt;
    }
  } else if (has_expr) {
    for (const char* k : {"device", "above", "below", "clear_below", "clear_above"}) {
      if (doc.contains(k)) {
        fail(err, k, fmt::format("{} goes with sensor (a threshold); an expression names its sensors as device/sensor", k));
        return std::nullopt;
      }
    }
    std::string text;
    if (!get_string(doc, "expr", "expr", text, err)) return std::nullopt;
    r.expr = Expression::parse(text, board, err);
    if (!r.expr) return std::nullopt;
    if (doc.contains("clear")) {
      if (!get_string(doc, "clear", "clear", text, err)) return std::nullopt;
      r.clear = Expression::parse(text, board, err);
      if (!r.clear) {
        err.field = "clear";
        return std::nullopt;
      }
    }
  } else {
    fail(err, "sensor", "a rule needs a condition: sensor with above or below, or expr");
    return std::nullopt;
  }

  if (auto f = doc.find("for"); f != doc.end() && !parse_hold(*f, r.hold, err)) return std::nullopt;
  if (!parse_actions(doc, "on", board, r.on, err) || !parse_actions(doc, "off", board, r.off, err)) return std::nullopt;
  if (r.on.empty() && r.off.empty()) {
    fail(err, "on", "the rule does nothing: give on.command, on.alert, off.command or off.alert");
    return std::nullopt;
  }
  return r;
}

ojson rule_json(const Rule& r) {
  ojson j = {{"id", r.id}};
  if (!r.description.empty()) j["description"] = r.description;
  j["enabled"] = r.enabled;
  if (r.threshold) {
    const auto& t = *r.threshold;
    j["device"] = t.device;
    j["sensor"] = t.sensor;
    j[t.above ? "above" : "below"] = t.threshold;
    j[t.above ? "clear_below" : "clear_above"] = t.clear;
  } else if (r.expr) {
    j["expr"] = r.expr->text();
    if (r.clear) j["clear"] = r.clear->text();
  }
  j["for"] = format_hold(r.hold);
  j["on"] = actions_json(r.on);
  j["off"] = actions_json(r.off);
  return j;
}

// ---- Evaluator ----

void Evaluator::put(Rule r, core::TimePoint now) {
  auto it = by_id_.find(r.id);
  size_t index = 0;
  if (it == by_id_.end()) {
    auto e = std::make_unique<Entry>();
    e->state.since = now;
    index = rules_.size();
    by_id_.emplace(r.id, index);
    rules_.push_back(std::move(e));
  } else {
    index = it->second;
    rules_[index]->state.pending_since.reset();  // a pending "for" starts over under the new condition
  }
  Entry& e = *rules_[index];
  e.rule = std::move(r);
  if (!e.rule.enabled) {
    e.state.pending_since.reset();
    if (e.state.active) {
      e.state.active = false;
      e.state.since = now;
    }
  }
  rebuild_index();
}

bool Evaluator::remove(const std::string& id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  size_t i = it->second;
  rules_.erase(rules_.begin() + static_cast<std::ptrdiff_t>(i));
  by_id_.clear();
  for (size_t k = 0; k < rules_.size(); ++k) by_id_.emplace(rules_[k]->rule.id, k);
  rebuild_index();
  return true;
}

const Rule* Evaluator::find(const std::string& id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &rules_[it->second]->rule;
}

std::optional<RuleState> Evaluator::state(const std::string& id) const {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  const Entry& e = *rules_[it->second];
  RuleState s = e.state;
  s.last_value = value_of(e);
  return s;
}

std::vector<std::string> Evaluator::ids() const {
  std::vector<std::string> out;
  out.reserve(rules_.size());
  for (const auto& e : rules_) out.push_back(e->rule.id);
  std::sort(out.begin(), out.end());
  return out;
}

void Evaluator::rebuild_index() {
  decltype(slots_) fresh;
  for (size_t i = 0; i < rules_.size(); ++i) {
    Entry& e = *rules_[i];
    e.inputs.clear();
    for (const auto& ref : e.rule.inputs()) {
      auto& slot = fresh[ref.device][ref.sensor];
      if (!slot) {
        slot = std::make_unique<Slot>();
        // Carry the latest value over: a new or changed rule sees what is already known.
        if (auto d = slots_.find(ref.device); d != slots_.end()) {
          if (auto s = d->second.find(ref.sensor); s != d->second.end()) slot->value = s->second->value;
        }
      }
      slot->readers.push_back(i);
      e.inputs.push_back(slot.get());
    }
    e.scratch.assign(e.inputs.size(), 0);
    // The clear expression's slots are numbered by its own refs: where each is among the inputs.
    e.clear_map.clear();
    if (e.rule.clear) {
      auto all = e.rule.inputs();
      for (const auto& ref : e.rule.clear->refs())
        e.clear_map.push_back(static_cast<size_t>(std::find(all.begin(), all.end(), ref) - all.begin()));
    }
    e.clear_scratch.assign(e.clear_map.size(), 0);
  }
  slots_ = std::move(fresh);
}

bool Evaluator::watches(const std::string& device, const std::string& sensor) const {
  auto d = slots_.find(device);
  return d != slots_.end() && d->second.count(sensor) > 0;
}

void Evaluator::seed(const std::string& device, const std::string& sensor, double value) {
  auto d = slots_.find(device);
  if (d == slots_.end()) return;
  auto s = d->second.find(sensor);
  if (s != d->second.end() && std::isnan(s->second->value)) s->second->value = value;
}

size_t Evaluator::active_count() const {
  return static_cast<size_t>(
      std::count_if(rules_.begin(), rules_.end(), [](const auto& e) { return e->state.active; }));
}

size_t Evaluator::on_reading(const core::Reading& r, core::TimePoint now, std::vector<Firing>& out) {
  auto d = slots_.find(r.device);
  if (d == slots_.end()) return 0;
  auto s = d->second.find(r.sensor);
  if (s == d->second.end()) return 0;
  Slot& slot = *s->second;
  slot.value = r.is_numeric() ? r.value : std::numeric_limits<double>::quiet_NaN();
  size_t evaluated = 0;
  for (size_t i : slot.readers) {
    Entry& e = *rules_[i];
    if (!e.rule.enabled) continue;
    evaluate(e, now, out);
    ++evaluated;
  }
  return evaluated;
}

void Evaluator::evaluate(Entry& e, core::TimePoint now, std::vector<Firing>& out) {
  bool cond_on = false, cond_clear = false;
  if (e.rule.threshold) {
    const auto& t = *e.rule.threshold;
    double v = e.inputs[0]->value;
    if (std::isnan(v)) return;  // unknown: no change
    cond_on = t.above ? v > t.threshold : v < t.threshold;
    cond_clear = t.above ? v < t.clear : v > t.clear;
  } else if (e.state.active && e.rule.clear) {
    for (size_t k = 0; k < e.clear_map.size(); ++k) e.clear_scratch[k] = e.inputs[e.clear_map[k]]->value;
    double c = e.rule.clear->eval(e.clear_scratch);
    if (std::isnan(c)) return;
    cond_clear = c != 0;
  } else {
    // The expression's refs are the first inputs, in its own order.
    for (size_t k = 0; k < e.inputs.size(); ++k) e.scratch[k] = e.inputs[k]->value;
    double x = e.rule.expr->eval(e.scratch);
    if (std::isnan(x)) return;
    cond_on = x != 0;
    cond_clear = !cond_on;
  }
  if (e.state.active) {
    if (cond_clear) fire(e, false, now, out);
    return;
  }
  if (!cond_on) {
    e.state.pending_since.reset();
    return;
  }
  if (!e.state.pending_since) e.state.pending_since = now;
  if (now - *e.state.pending_since >= e.rule.hold) fire(e, true, now, out);
}

void Evaluator::tick(core::TimePoint now, std::vector<Firing>& out) {
  for (auto& p : rules_) {
    Entry& e = *p;
    // Pending means the latest values satisfied the condition and no reading since broke it.
    if (e.rule.enabled && !e.state.active && e.state.pending_since && now - *e.state.pending_since >= e.rule.hold)
      fire(e, true, now, out);
  }
}

std::optional<core::TimePoint> Evaluator::next_deadline() const {
  std::optional<core::TimePoint> best;
  for (const auto& p : rules_) {
    const Entry& e = *p;
    if (!e.rule.enabled || e.state.active || !e.state.pending_since) continue;
    auto at = *e.state.pending_since + e.rule.hold;
    if (!best || at < *best) best = at;
  }
  return best;
}

void Evaluator::fire(Entry& e, bool on, core::TimePoint now, std::vector<Firing>& out) {
  e.state.active = on;
  e.state.since = now;
  e.state.pending_since.reset();
  e.state.last_fired = now;
  e.state.last_transition = on;
  ++e.state.firings;
  Firing f;
  f.rule = e.rule.id;
  f.on = on;
  f.at = now;
  f.value = value_of(e);
  if (e.rule.threshold) {
    f.device = e.rule.threshold->device;
    f.sensor = e.rule.threshold->sensor;
  } else if (!e.rule.expr->refs().empty()) {
    f.device = e.rule.expr->refs()[0].device;
    f.sensor = e.rule.expr->refs()[0].sensor;
  }
  f.actions = on ? e.rule.on : e.rule.off;
  out.push_back(std::move(f));
}

Json Evaluator::value_of(const Entry& e) const {
  if (e.rule.threshold) return e.inputs.empty() ? Json() : number_or_null(e.inputs[0]->value);
  Json j = Json::object();
  auto all = e.rule.inputs();
  for (size_t k = 0; k < all.size() && k < e.inputs.size(); ++k)
    j[all[k].device + "/" + all[k].sensor] = number_or_null(e.inputs[k]->value);
  return j;
}

}  // namespace outpost::edge
