// AstroPlant kit messages: topic and JSON payload in, a DeviceReport / KitAck / Drop out.

#include <algorithm>
#include <cctype>
#include <cmath>
#include <initializer_list>
#include <string>

#include "mqtt/mqtt.hpp"

namespace outpost::mqtt {

using core::Json;
using core::TimePoint;

std::string_view drop_reason_name(DropReason r) {
  switch (r) {
    case DropReason::kTooLarge:
      return "too_large";
    case DropReason::kBadTopic:
      return "bad_topic";
    case DropReason::kInvalidJson:
      return "invalid_json";
    case DropReason::kMissingFields:
      return "missing_fields";
    case DropReason::kBadType:
      return "bad_type";
    case DropReason::kBadValue:
      return "bad_value";
    case DropReason::kBadTime:
      return "bad_time";
  }
  return "unknown";
}

bool valid_serial(std::string_view serial) {
  if (serial.empty() || serial.size() > kMaxSerial) return false;
  for (char c : serial) {
    if (c < 0x21 || c > 0x7e || c == '+' || c == '#' || c == '/') return false;
  }
  return true;
}

namespace {

constexpr int kMaxDepth = 32;
constexpr size_t kMaxText = 128;                  // peripheral, quantity type, command id, unit
constexpr size_t kMaxDetail = 1024;               // of an ack
constexpr int64_t kMaxEpochMs = 253402300799999;  // 9999-12-31T23:59:59.999Z

using Names = std::initializer_list<const char*>;

// Thrown inside this file only, caught once in parse_kit_message: the checks read top to bottom
// instead of threading an error through every helper.
struct Dropped {
  DropReason reason;
  std::string detail;
};

[[noreturn]] void drop(DropReason r, std::string detail) { throw Dropped{r, std::move(detail)}; }

// The first of `names` present and not null, and the name it was found under.
const Json* find(const Json& obj, Names names, std::string* found = nullptr) {
  for (const char* n : names) {
    auto it = obj.find(n);
    if (it != obj.end() && !it->is_null()) {
      if (found) *found = n;
      return &*it;
    }
  }
  return nullptr;
}

const Json& require(const Json& obj, Names names, std::string* found) {
  if (const Json* v = find(obj, names, found)) return *v;
  drop(DropReason::kMissingFields, std::string("'") + *names.begin() + "' is missing");
}

void check_text(const std::string& s, const std::string& name) {
  if (s.empty()) drop(DropReason::kBadValue, "'" + name + "' is empty");
  if (s.size() > kMaxText) drop(DropReason::kBadValue, "'" + name + "' is longer than 128 bytes");
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) drop(DropReason::kBadValue, "'" + name + "' has control characters");
  }
}

// A peripheral or quantity type: a string or a non-negative integer. Returns its text form.
std::string id_part(const Json& v, const std::string& name) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    check_text(s, name);
    return s;
  }
  if (v.is_number_unsigned()) return std::to_string(v.get<uint64_t>());
  if (v.is_number_integer()) drop(DropReason::kBadValue, "'" + name + "' is negative");
  drop(DropReason::kBadType, "'" + name + "' is not a string or an integer");
}

double number(const Json& v, const std::string& name) {
  if (!v.is_number()) drop(DropReason::kBadType, "'" + name + "' is not a number");
  double d = v.get<double>();
  if (!std::isfinite(d)) drop(DropReason::kBadValue, "'" + name + "' is not finite");
  return d;
}

// ISO 8601 text or epoch milliseconds.
TimePoint time_of(const Json& v, const std::string& name) {
  if (v.is_string()) {
    if (auto t = core::parse_iso8601(v.get_ref<const std::string&>())) return *t;
    drop(DropReason::kBadTime, "'" + name + "' is not an ISO 8601 time");
  }
  if (v.is_number_integer()) {  // nlohmann keeps non-negative integers as unsigned
    if (!v.is_number_unsigned()) drop(DropReason::kBadTime, "'" + name + "' is before 1970");
    uint64_t ms = v.get<uint64_t>();
    if (ms > static_cast<uint64_t>(kMaxEpochMs))
      drop(DropReason::kBadTime, "'" + name + "' is after 9999");
    return core::from_micros(static_cast<int64_t>(ms) * 1000);
  }
  if (v.is_number_float()) {
    double ms = v.get<double>();
    if (!std::isfinite(ms) || ms < 0 || ms > static_cast<double>(kMaxEpochMs)) {
      drop(DropReason::kBadTime, "'" + name + "' is not epoch milliseconds in 1970..9999");
    }
    return core::from_micros(std::llround(ms * 1000));
  }
  drop(DropReason::kBadType, "'" + name + "' is not a string or a number");
}

std::optional<TimePoint> optional_time(const Json& obj, Names names) {
  std::string name;
  const Json* v = find(obj, names, &name);
  if (!v) return std::nullopt;
  return time_of(*v, name);
}

std::optional<double> optional_number(const Json& obj, Names names) {
  std::string name;
  const Json* v = find(obj, names, &name);
  if (!v) return std::nullopt;
  return number(*v, name);
}

Json iso_or_null(const std::optional<TimePoint>& t) {
  return t ? Json(core::format_iso8601(*t)) : Json(nullptr);
}

// The JSON object of a payload; invalid_json when it is not one or nests too deeply.
Json parse_object(std::string_view payload) {
  bool too_deep = false;
  Json j = Json::parse(
      payload.begin(), payload.end(),
      [&too_deep](int depth, Json::parse_event_t, Json&) {
        if (depth > kMaxDepth) too_deep = true;
        return !too_deep;
      },
      /*allow_exceptions=*/false);
  if (too_deep) drop(DropReason::kInvalidJson, "nested deeper than 32 levels");
  if (j.is_discarded()) drop(DropReason::kInvalidJson, "not JSON");
  if (!j.is_object()) drop(DropReason::kInvalidJson, "not a JSON object");
  return j;
}

constexpr Names kPeripheral = {"peripheral", "peripheral_id", "peripheralId"};
constexpr Names kQuantityType = {"quantity_type", "quantityType", "quantity_type_id",
                                 "quantityTypeId"};
constexpr Names kDatetime = {"datetime", "dateTime", "timestamp"};
constexpr Names kAverage = {"average", "avg", "mean"};
constexpr Names kMinimum = {"minimum", "min"};
constexpr Names kMaximum = {"maximum", "max"};
constexpr Names kStart = {"datetime_start", "datetimeStart", "start"};
constexpr Names kEnd = {"datetime_end", "datetimeEnd", "end"};

enum class Kind { kRaw, kAggregate, kResponse };

// The sensor a measurement is about, without its value.
core::Sensor sensor_of(const Json& o, const char* suffix) {
  std::string pname, qname;
  const Json& p = require(o, kPeripheral, &pname);
  const Json& q = require(o, kQuantityType, &qname);
  core::Sensor s;
  s.id = id_part(p, pname) + "." + id_part(q, qname) + suffix;
  s.attributes = Json{{"peripheral", p}, {"quantity_type", q}};
  return s;
}

std::string unit_of(const Json& o) {
  const Json* u = find(o, {"unit"});
  if (!u) return "";
  if (!u->is_string()) drop(DropReason::kBadType, "'unit' is not a string");
  const auto& s = u->get_ref<const std::string&>();
  if (!s.empty()) check_text(s, "unit");
  return s;
}

core::Sensor raw(const Json& o, TimePoint received) {
  core::Sensor s = sensor_of(o, "");
  std::string name;
  double value = number(require(o, {"value"}, &name), name);
  auto ts = optional_time(o, kDatetime);
  s.value = core::SensorValue{unit_of(o), "double", ts.value_or(received), Json(value)};
  return s;
}

core::Sensor aggregate(const Json& o, TimePoint received) {
  core::Sensor s = sensor_of(o, ".aggregate");
  std::string name;
  double average = number(require(o, kAverage, &name), name);
  auto minimum = optional_number(o, kMinimum);
  auto maximum = optional_number(o, kMaximum);
  Json count = nullptr;
  if (const Json* c = find(o, {"count"})) {
    if (c->is_number_unsigned()) {
      if (c->get<uint64_t>() < 1) drop(DropReason::kBadValue, "'count' is 0");
    } else if (c->is_number_integer()) {
      drop(DropReason::kBadValue, "'count' is negative");
    } else {
      drop(DropReason::kBadType, "'count' is not an integer");
    }
    count = *c;
  }
  if (minimum && maximum && *minimum > *maximum)
    drop(DropReason::kBadValue, "'minimum' is above 'maximum'");
  // Rounding on the kit may put an average a hair outside its bounds.
  auto slack = [](double x) { return 1e-9 * std::max(1.0, std::fabs(x)); };
  if ((minimum && average < *minimum - slack(*minimum)) ||
      (maximum && average > *maximum + slack(*maximum))) {
    drop(DropReason::kBadValue, "'average' is outside ['minimum', 'maximum']");
  }

  auto start = optional_time(o, kStart);
  auto end = optional_time(o, kEnd);
  if (const Json* w = find(o, {"window"})) {
    if (!w->is_object()) drop(DropReason::kBadType, "'window' is not an object");
    if (!start) start = optional_time(*w, kStart);
    if (!end) end = optional_time(*w, kEnd);
  }
  if (start && end && *end < *start) drop(DropReason::kBadTime, "the window ends before it starts");

  Json values = {{"count", count},
                 {"average", average},
                 {"minimum", minimum ? Json(*minimum) : Json(nullptr)},
                 {"maximum", maximum ? Json(*maximum) : Json(nullptr)},
                 {"start", iso_or_null(start)},
                 {"end", iso_or_null(end)}};
  s.value = core::SensorValue{unit_of(o), "aggregate", end.value_or(received), std::move(values)};
  return s;
}

// Valid UTF-8 in, valid UTF-8 out: never cut inside a code point.
std::string cut(std::string s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
  return s;
}

std::string text_of(const Json& v) {
  return cut(v.is_string() ? v.get<std::string>() : v.dump(), kMaxDetail);
}

core::CommandAck response(const Json& o) {
  core::CommandAck ack;
  std::string name;
  const Json& id = require(o, {"id"}, &name);
  if (id.is_string()) {
    ack.command_id = id.get<std::string>();
    check_text(ack.command_id, "id");
  } else if (id.is_number_unsigned()) {
    ack.command_id = std::to_string(id.get<uint64_t>());
  } else if (id.is_number_integer()) {
    drop(DropReason::kBadValue, "'id' is negative");
  } else {
    drop(DropReason::kBadType, "'id' is not a string or an integer");
  }

  const Json* status = find(o, {"status"});
  const Json* error = find(o, {"error"});
  if (status) {
    if (!status->is_string()) drop(DropReason::kBadType, "'status' is not a string");
    std::string st = status->get<std::string>();
    std::string lower = st;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    ack.ok = lower == "ok";
    if (!ack.ok) ack.detail = cut(st, kMaxDetail);  // replaced by a detail when there is one
  } else if (error) {
    ack.ok = false;
  } else if (o.contains("result")) {
    ack.ok = true;
  } else {
    drop(DropReason::kMissingFields, "'status' is missing (nor is there an 'error' or a 'result')");
  }
  if (const Json* d = find(o, {"detail", "error", "result"})) ack.detail = text_of(*d);
  return ack;
}

}  // namespace

KitMessage parse_kit_message(std::string_view topic, std::string_view payload, TimePoint received) {
  constexpr std::string_view kPrefix = "kit/";
  if (topic.substr(0, kPrefix.size()) != kPrefix)
    return Drop{DropReason::kBadTopic, "not under kit/"};
  std::string_view rest = topic.substr(kPrefix.size());
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return Drop{DropReason::kBadTopic, "no message kind"};
  std::string_view serial = rest.substr(0, slash), what = rest.substr(slash + 1);
  Kind kind;
  if (what == "measurement/raw")
    kind = Kind::kRaw;
  else if (what == "measurement/aggregate")
    kind = Kind::kAggregate;
  else if (what == "kit-rpc/response")
    kind = Kind::kResponse;
  else
    return Drop{DropReason::kBadTopic, "unknown message kind"};
  if (!valid_serial(serial)) {
    return Drop{DropReason::kBadTopic, "the serial is not 1..128 visible ASCII characters"};
  }
  if (payload.size() > kMaxPayload) return Drop{DropReason::kTooLarge, "over 64 KiB"};

  try {
    Json o = parse_object(payload);
    if (kind == Kind::kResponse) return KitAck{std::string(serial), response(o)};
    core::DeviceReport r;
    r.id = std::string(serial);
    r.transport = core::Transport::kMqtt;
    r.address = r.id;
    r.received = received;
    r.sensors.push_back(kind == Kind::kRaw ? raw(o, received) : aggregate(o, received));
    return r;
  } catch (Dropped& d) {
    return Drop{d.reason, std::move(d.detail)};
  }
}

core::Result<KitRequest> make_kit_request(std::string_view serial, std::string_view command_id,
                                          std::string_view target, std::string_view parameter,
                                          const Json& value) {
  if (!valid_serial(serial)) {
    return core::Status::invalid(
        "mqtt: a kit serial is 1..128 visible ASCII characters, no '+', '#' or '/'");
  }
  if (command_id.empty()) return core::Status::invalid("mqtt: a command needs an id");
  Json body = {{"id", command_id}, {"target", target}, {"parameter", parameter}, {"value", value}};
  // Replace rather than throw on bytes that are not UTF-8: the id and names come from callers.
  return KitRequest{"kit/" + std::string(serial) + "/kit-rpc/request",
                    body.dump(-1, ' ', false, Json::error_handler_t::replace)};
}

}  // namespace outpost::mqtt
