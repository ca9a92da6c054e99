#include <algorithm>
#include <array>

#include "ws/detail/protocol.hpp"

namespace outpost::ws::detail {

namespace {

using Json = core::Json;

std::string json_string(std::string_view s) {
  return Json(s).dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

bool known_type(std::string_view t) {
  return std::find(std::begin(kEventTypes), std::end(kEventTypes), t) != std::end(kEventTypes);
}

OJson names_json(const std::set<std::string, std::less<>>& names) {
  OJson a = OJson::array();
  for (const auto& n : names) a.push_back(n);
  return a;
}

void remove_name(NameSet& set, const std::string& name) {
  if (set.only)
    set.only->erase(name);
  else
    set.except.insert(name);
}

// Command values go on to devices and logs; deep nesting only costs stack there.
constexpr int kMaxValueDepth = 32;

bool within_depth(const Json& j, int depth) {
  if (depth > kMaxValueDepth) return false;
  if (!j.is_structured()) return true;
  for (const auto& v : j) {
    if (!within_depth(v, depth + 1)) return false;
  }
  return true;
}

std::optional<std::string> check_members(const Json& j, std::string_view op,
                                         std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, value] : j.items()) {
    if (key == "op" || key == "ref") continue;
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      return "unknown field \"" + key + "\" in " + std::string(op);
  }
  return std::nullopt;
}

// "devices": "*" (nullopt: every name) or a non-empty array of strings.
std::optional<std::string> parse_names(const Json& j, const char* field, bool types,
                                       std::optional<std::vector<std::string>>& out) {
  out.reset();
  auto it = j.find(field);
  if (it == j.end()) return std::nullopt;
  std::string expect = std::string("\"") + field + "\" must be \"*\" or a non-empty array of strings";
  if (it->is_string()) {
    if (it->get_ref<const std::string&>() != "*") return expect;
    return std::nullopt;
  }
  if (!it->is_array() || it->empty()) return expect;
  std::vector<std::string> names;
  names.reserve(it->size());
  for (const auto& v : *it) {
    if (!v.is_string()) return expect;
    const auto& name = v.get_ref<const std::string&>();
    if (types && !known_type(name)) {
      std::string known;
      for (auto t : kEventTypes) known += (known.empty() ? "" : ", ") + std::string(t);
      return "unknown event type \"" + name + "\" (known: " + known + ")";
    }
    names.push_back(name);
  }
  out = std::move(names);
  return std::nullopt;
}

NameSet name_set(std::optional<std::vector<std::string>> names) {
  NameSet s;
  if (names) s.only.emplace(names->begin(), names->end());
  return s;
}

Message invalid(std::string why, OJson ref = nullptr) {
  Message m;
  m.error = std::move(why);
  m.ref = std::move(ref);
  return m;
}

}  // namespace

bool NameSet::contains(std::string_view name) const {
  if (only && !only->contains(name)) return false;
  return !except.contains(name);
}

bool Subscription::matches(const EventKey& e) const {
  return devices.contains(e.device) && types.contains(e.type) &&
         (e.type != "reading" || sensors.contains(e.sensor));
}

bool Subscription::matches_nothing() const {
  if (devices.only && devices.only->empty()) return true;
  if (types.only && types.only->empty()) return true;
  bool only_readings = types.only && types.only->size() == 1 && types.only->contains("reading");
  return only_readings && sensors.only && sensors.only->empty();
}

size_t Subscription::names() const {
  size_t n = 0;
  for (const NameSet* s : {&devices, &sensors, &types}) n += (s->only ? s->only->size() : 0) + s->except.size();
  return n;
}

OJson Subscription::to_json() const {
  OJson j = OJson::object();
  OJson except = OJson::object();
  for (auto [name, set] : {std::pair{"devices", &devices}, {"sensors", &sensors}, {"types", &types}}) {
    j[name] = set->only ? names_json(*set->only) : OJson("*");
    if (!set->except.empty()) except[name] = names_json(set->except);
  }
  if (!except.empty()) j["except"] = std::move(except);
  return j;
}

bool Filter::matches(const EventKey& e) const {
  return std::any_of(subs_.begin(), subs_.end(), [&](const Subscription& s) { return s.matches(e); });
}

core::Status Filter::add(Subscription s) {
  // The default "everything" is replaced, not added to.
  std::vector<Subscription> none;
  const auto& base = implicit_ ? none : subs_;
  if (std::find(base.begin(), base.end(), s) != base.end()) return core::Status::ok();
  if (base.size() >= kMaxSubscriptions)
    return core::Status::invalid("too many subscriptions (at most " + std::to_string(kMaxSubscriptions) +
                                 "); unsubscribe first");
  size_t names = s.names();
  for (const auto& sub : base) names += sub.names();
  if (names > kMaxFilterNames)
    return core::Status::invalid("subscriptions name too many devices, sensors and types (at most " +
                                 std::to_string(kMaxFilterNames) + " in all)");
  if (implicit_) subs_.clear();
  implicit_ = false;
  subs_.push_back(std::move(s));
  return core::Status::ok();
}

core::Status Filter::remove(const Removal& r) {
  if (r.all) {
    subs_.clear();
    implicit_ = false;
    return core::Status::ok();
  }
  std::vector<Subscription> next;
  size_t names = 0;
  for (auto sub : subs_) {
    for (const auto& d : r.devices) remove_name(sub.devices, d);
    for (const auto& s : r.sensors) remove_name(sub.sensors, s);
    for (const auto& t : r.types) remove_name(sub.types, t);
    if (sub.matches_nothing() || std::find(next.begin(), next.end(), sub) != next.end()) continue;
    names += sub.names();
    next.push_back(std::move(sub));
  }
  if (names > kMaxFilterNames)
    return core::Status::invalid("subscriptions name too many devices, sensors and types (at most " +
                                 std::to_string(kMaxFilterNames) + " in all)");
  subs_ = std::move(next);
  implicit_ = false;
  return core::Status::ok();
}

OJson Filter::to_json() const {
  OJson a = OJson::array();
  for (const auto& s : subs_) a.push_back(s.to_json());
  return a;
}

Message parse_message(std::string_view text) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) return invalid("invalid JSON");
  if (!j.is_object()) return invalid("a message must be a JSON object");
  OJson ref;
  if (auto it = j.find("ref"); it != j.end()) {
    if (!it->is_string() && !it->is_number()) return invalid("\"ref\" must be a string or a number");
    ref = OJson(*it);
  }
  auto op_it = j.find("op");
  if (op_it == j.end()) return invalid("missing \"op\"", ref);
  if (!op_it->is_string()) return invalid("\"op\" must be a string", ref);
  const std::string& op = op_it->get_ref<const std::string&>();

  Message m;
  m.ref = ref;
  if (op == "auth") {
    if (auto e = check_members(j, op, {"key", "token"})) return invalid(*e, ref);
    auto key = j.find("key");
    if (key == j.end()) key = j.find("token");
    if (key == j.end() || !key->is_string() || key->get_ref<const std::string&>().empty())
      return invalid("auth needs \"key\" (or \"token\"): a non-empty string", ref);
    m.op = Op::kAuth;
    m.credential = key->get<std::string>();
    return m;
  }
  if (op == "subscribe" || op == "unsubscribe") {
    if (auto e = check_members(j, op, {"devices", "sensors", "types"})) return invalid(*e, ref);
    std::optional<std::vector<std::string>> devices, sensors, types;
    if (auto e = parse_names(j, "devices", false, devices)) return invalid(*e, ref);
    if (auto e = parse_names(j, "sensors", false, sensors)) return invalid(*e, ref);
    if (auto e = parse_names(j, "types", true, types)) return invalid(*e, ref);
    if (op == "subscribe") {
      m.op = Op::kSubscribe;
      m.subscription = {name_set(std::move(devices)), name_set(std::move(sensors)), name_set(std::move(types))};
      return m;
    }
    m.op = Op::kUnsubscribe;
    bool any_field = j.contains("devices") || j.contains("sensors") || j.contains("types");
    // A field given as "*" names everything: the whole filter goes.
    bool star = (j.contains("devices") && !devices) || (j.contains("sensors") && !sensors) ||
                (j.contains("types") && !types);
    m.removal.all = !any_field || star;
    if (!m.removal.all) {
      if (devices) m.removal.devices = std::move(*devices);
      if (sensors) m.removal.sensors = std::move(*sensors);
      if (types) m.removal.types = std::move(*types);
    }
    return m;
  }
  if (op == "list" || op == "ping") {
    if (auto e = check_members(j, op, {})) return invalid(*e, ref);
    m.op = op == "list" ? Op::kList : Op::kPing;
    return m;
  }
  if (op == "command") {
    if (auto e = check_members(j, op, {"device", "target", "parameter", "value"})) return invalid(*e, ref);
    auto device = j.find("device");
    if (device == j.end() || !device->is_string() || device->get_ref<const std::string&>().empty())
      return invalid("command needs \"device\": a non-empty string", ref);
    m.command = Json::object();
    m.command["device"] = *device;
    for (const char* field : {"target", "parameter"}) {
      auto it = j.find(field);
      if (it == j.end()) continue;
      if (!it->is_string()) return invalid(std::string("\"") + field + "\" must be a string", ref);
      m.command[field] = *it;
    }
    if (auto it = j.find("value"); it != j.end()) {
      if (!within_depth(*it, 1))
        return invalid("\"value\" is nested deeper than " + std::to_string(kMaxValueDepth) + " levels", ref);
      m.command["value"] = std::move(*it);
    }
    m.op = Op::kCommand;
    return m;
  }
  return invalid("unknown op \"" + op + "\" (one of auth, subscribe, unsubscribe, list, command, ping)", ref);
}

RenderedEvent render_event(const core::Event& e) {
  RenderedEvent r;
  std::string_view payload = trim(e.payload);
  std::string data;
  if (payload.empty()) {
    data = "{}";
  } else {
    Json p = Json::parse(payload.begin(), payload.end(), nullptr, false);
    if (p.is_discarded()) {
      data = json_string(payload);
    } else {
      data = payload;  // valid JSON (and UTF-8): sent as stored, without a dump
      if (e.kind == "reading" && p.is_object()) {
        if (auto it = p.find("sensor"); it != p.end() && it->is_string()) r.sensor = it->get<std::string>();
      }
    }
  }
  std::string id = e.id > 0 ? std::to_string(e.id) : "null";
  std::string type = json_string(e.kind), device = json_string(e.device);
  std::string time = core::format_iso8601(e.ts);
  r.json.reserve(64 + id.size() + type.size() + device.size() + time.size() + data.size());
  r.json += R"({"op":"event","id":)";
  r.json += id;
  r.json += R"(,"type":)";
  r.json += type;
  r.json += R"(,"device":)";
  r.json += device;
  r.json += R"(,"time":")";
  r.json += time;
  r.json += R"(","data":)";
  r.json += data;
  r.json += '}';
  return r;
}

std::string reply(OJson body, const OJson& ref) {
  if (!ref.is_null()) body["ref"] = ref;
  return body.dump(-1, ' ', false, OJson::error_handler_t::replace);
}

std::string error_reply(std::string_view what, const OJson& ref) {
  return reply(OJson{{"op", "error"}, {"error", what}}, ref);
}

std::string select_subprotocol(std::string_view offered) {
  while (!offered.empty()) {
    size_t comma = offered.find(',');
    std::string_view token = trim(offered.substr(0, comma));
    offered = comma == std::string_view::npos ? std::string_view() : offered.substr(comma + 1);
    if (token == "outpost.v1" || token == "chat") return std::string(token);
  }
  return {};
}

}  // namespace outpost::ws::detail
