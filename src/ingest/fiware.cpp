// The FIWARE data format 1.0 parser. The rules it enforces are in ingest.hpp.
//
// simdjson's DOM parser reads the whole datagram into its tape (a few GB/s); nlohmann::json
// values are built only for the free-form parts a report keeps (attributes, configuration,
// actions, callbacks, sensor values), straight from the tape, never by re-parsing text.
#include <fmt/format.h>
#include <simdjson.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "ingest/ingest.hpp"

namespace outpost::ingest {

using core::DeviceReport;
using core::Json;
using core::TimePoint;
namespace dom = simdjson::dom;

std::string_view drop_reason_name(DropReason r) {
  switch (r) {
    case DropReason::kTooLarge:
      return "too_large";
    case DropReason::kDecompression:
      return "decompression";
    case DropReason::kInvalidJson:
      return "invalid_json";
    case DropReason::kWrongVersion:
      return "wrong_version";
    case DropReason::kMissingFields:
      return "missing_fields";
    case DropReason::kInvalidId:
      return "invalid_id";
    case DropReason::kUnauthorized:
      return "unauthorized";
  }
  return "unknown";
}

namespace {

constexpr size_t kMaxDepth = 64;
constexpr size_t kMaxIdBytes = 128;
// Up to this many sensors per device, taken ids are found by a linear scan; beyond, a set.
constexpr size_t kLinearIds = 16;

// The id rules of ingest.hpp. simdjson has already checked that the bytes are UTF-8.
// Sensor ids come from human-readable names ("MPL magnetic field"), so they may hold spaces,
// though not at either end.
bool valid_id(std::string_view s, bool spaces = false) {
  if (s.empty() || s.size() > kMaxIdBytes) return false;
  if (spaces && (s.front() == ' ' || s.back() == ' ')) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || (c == ' ' && !spaces) || c == 0x7f || c == '/') return false;
    // C1 controls, U+0080..U+009F, are C2 80..C2 9F in UTF-8.
    if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9f) return false;
  }
  return true;
}

// An id or key as it may appear in a log line: control characters replaced, at most 64 bytes.
std::string printable(std::string_view s) {
  std::string out(s.substr(0, 64));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  if (s.size() > 64) out += "...";
  return out;
}

Json to_json(dom::element e) {
  switch (e.type()) {
    case dom::element_type::OBJECT: {
      Json j(Json::value_t::object);
      auto& o = *j.get_ptr<Json::object_t*>();
      // emplace keeps the first of repeated keys, as the rest of the parser does.
      dom::object obj = e.get_object().value_unsafe();  // a copy: the result is a temporary
      for (dom::key_value_pair kv : obj)
        o.emplace(std::string(kv.key), to_json(kv.value));
      return j;
    }
    case dom::element_type::ARRAY: {
      Json j(Json::value_t::array);
      auto& a = *j.get_ptr<Json::array_t*>();
      dom::array arr = e.get_array().value_unsafe();
      a.reserve(arr.size());
      for (dom::element v : arr) a.push_back(to_json(v));
      return j;
    }
    case dom::element_type::INT64:
      return Json(e.get_int64().value_unsafe());
    case dom::element_type::UINT64:
      return Json(e.get_uint64().value_unsafe());
    case dom::element_type::DOUBLE:
      return Json(e.get_double().value_unsafe());
    case dom::element_type::STRING:
      return Json(std::string(e.get_string().value_unsafe()));
    case dom::element_type::BOOL:
      return Json(e.get_bool().value_unsafe());
    case dom::element_type::NULL_VALUE:
      return Json(nullptr);
  }
  return Json(nullptr);
}

// Whether `j` is what to_json(e) would build, without building it: same types (an integer is
// not equal to the same double), same members (e with a repeated key never is: to_json keeps
// only the first), in the same order for arrays.
bool same_json(dom::element e, const Json& j) {
  switch (e.type()) {
    case dom::element_type::OBJECT: {
      if (!j.is_object()) return false;
      const auto& o = *j.get_ptr<const Json::object_t*>();
      dom::object obj = e.get_object().value_unsafe();
      if (obj.size() != o.size()) return false;
      for (dom::key_value_pair kv : obj) {
        auto it = o.find(kv.key);
        if (it == o.end() || !same_json(kv.value, it->second)) return false;
      }
      return true;
    }
    case dom::element_type::ARRAY: {
      if (!j.is_array()) return false;
      const auto& a = *j.get_ptr<const Json::array_t*>();
      dom::array arr = e.get_array().value_unsafe();
      if (arr.size() != a.size()) return false;
      size_t i = 0;
      for (dom::element v : arr)
        if (!same_json(v, a[i++])) return false;
      return true;
    }
    case dom::element_type::INT64:
      return j.is_number_integer() && !j.is_number_unsigned() &&
             j.get<int64_t>() == e.get_int64().value_unsafe();
    case dom::element_type::UINT64:
      return j.is_number_unsigned() && j.get<uint64_t>() == e.get_uint64().value_unsafe();
    case dom::element_type::DOUBLE: {
      // Bitwise: -0.0 and 0.0 render differently, and a NaN cannot come from JSON text.
      if (!j.is_number_float()) return false;
      double a = j.get<double>(), b = e.get_double().value_unsafe();
      return std::memcmp(&a, &b, sizeof a) == 0;
    }
    case dom::element_type::STRING:
      return j.is_string() && j.get_ref<const std::string&>() == e.get_string().value_unsafe();
    case dom::element_type::BOOL:
      return j.is_boolean() && j.get<bool>() == e.get_bool().value_unsafe();
    case dom::element_type::NULL_VALUE:
      return j.is_null();
  }
  return false;
}

// A transparent hash, so the parts cache is looked up by a string_view without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

std::optional<std::string_view> string_of(dom::element e) {
  std::string_view s;
  if (e.get_string().get(s)) return std::nullopt;
  return s;
}

// "2014-02-19 09:40:06" (the seed's shape, UTC) or ISO 8601; a time without a zone is UTC.
std::optional<TimePoint> device_time(std::string_view s) {
  // A time that ends in a digit has no zone (the seed's shape): parse it as UTC at once.
  char buf[48];
  if (s.size() >= 19 && s.size() < sizeof buf && s.back() >= '0' && s.back() <= '9') {
    std::memcpy(buf, s.data(), s.size());
    buf[s.size()] = 'Z';
    if (auto t = core::parse_iso8601(std::string_view(buf, s.size() + 1))) return t;
  }
  return core::parse_iso8601(s);
}

bool has_duplicate(std::vector<std::string_view>& keys, std::string_view& dup) {
  if (keys.size() <= 8) {
    for (size_t i = 1; i < keys.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (keys[i] == keys[j]) return dup = keys[i], true;
    return false;
  }
  std::sort(keys.begin(), keys.end());
  auto it = std::adjacent_find(keys.begin(), keys.end());
  if (it == keys.end()) return false;
  dup = *it;
  return true;
}

}  // namespace

class Parser::Impl {
 public:
  Impl(const config::UdpConfig& cfg, KeyCheck check_key)
      : max_datagram_(cfg.max_datagram),
        max_decompressed_(cfg.max_decompressed),
        require_key_(cfg.require_key),
        check_key_(std::move(check_key)),
        capacity_(std::max(cfg.max_datagram, cfg.max_decompressed + 1)),
        // Zeroed once: simdjson's vector loads read past the text into the padding.
        buf_(new char[capacity_ + simdjson::SIMDJSON_PADDING]()) {
    // (Not set_max_capacity: simdjson 3.0.1's caps every parser at 32 bytes. No datagram is
    // over capacity_ anyway.)
    json_ok_ = parser_.allocate(capacity_, kMaxDepth) == simdjson::SUCCESS;
  }

  ~Impl() {
    if (zlib_ready_) inflateEnd(&zs_);
  }

  Parsed parse(std::string_view dgram, std::string_view from, TimePoint received,
               std::vector<DeviceReport>& out);

 private:
  // Sets the outcome to a drop; returns false so callers can `return fail(...)`.
  bool fail(DropReason reason, std::string detail) {
    res_->kind = Parsed::Kind::kDropped;
    res_->reason = reason;
    res_->detail = std::move(detail);
    return false;
  }
  bool inflate_into_buffer(std::string_view gz, size_t& len);
  bool parse_ack(dom::object top);
  bool parse_device(std::string_view id, dom::element value, std::string_view from,
                    TimePoint received, DeviceReport& r);
  struct SensorParts;
  struct ActuatorParts;
  bool parse_sensor(std::string_view device, size_t index, dom::element e, TimePoint received,
                    SensorParts& parts, std::vector<core::Sensor>& sensors);
  bool parse_actuator(std::string_view device, size_t index, dom::element e, ActuatorParts& parts,
                      core::Actuator& a);
  bool id_taken(const std::vector<core::Sensor>& sensors, size_t n, std::string_view id);
  void take_id(const std::vector<core::Sensor>& sensors, size_t n);

  // The free-form parts last built for each device, by position in its report. A report that
  // repeats a part gets the value already built (see core::SharedJson): devices resend their
  // whole description every time, and building it again was most of a packet's cost. The
  // values are shared with the registry, so a cached device costs a few pointers. At most
  // kCachedDevices devices and about kCachedParts sensors and actuators (a packet may list
  // thousands); a new device beyond either starts the cache over.
  static constexpr size_t kCachedDevices = 4096;
  static constexpr size_t kCachedParts = 65'536;
  struct SensorParts {
    core::SharedJson attributes, configuration, values;
  };
  struct ActuatorParts {
    core::SharedJson actions, callbacks, configuration, attributes;
  };
  struct DeviceParts {
    core::SharedJson attributes;
    std::vector<SensorParts> sensors;
    std::vector<ActuatorParts> actuators;
  };
  DeviceParts& parts_of(std::string_view device);
  // `slot` when it holds what `e` says, else a new value built from `e` (and kept in `slot`).
  static const core::SharedJson& reuse(dom::element e, core::SharedJson& slot) {
    if (!same_json(e, *slot)) slot = to_json(e);
    return slot;
  }

  const size_t max_datagram_;
  const size_t max_decompressed_;
  const bool require_key_;
  const KeyCheck check_key_;
  const size_t capacity_;        // bytes of JSON the buffer holds
  std::unique_ptr<char[]> buf_;  // the JSON text (copied or inflated), then padding
  dom::parser parser_;
  bool json_ok_ = false;
  z_stream zs_{};
  bool zlib_ready_ = false;
  std::vector<std::string_view> keys_;  // top-level keys of the current packet
  std::vector<std::pair<std::string_view, dom::element>> devices_;
  std::unordered_set<std::string> taken_;  // sensor ids of a device with many sensors
  std::unordered_map<std::string, DeviceParts, StringHash, std::equal_to<>> parts_;
  size_t cached_parts_ = 0;  // sensors and actuators in parts_
  Parsed* res_ = nullptr;
};

Parser::Impl::DeviceParts& Parser::Impl::parts_of(std::string_view device) {
  if (auto it = parts_.find(device); it != parts_.end()) return it->second;
  if (parts_.size() >= kCachedDevices || cached_parts_ >= kCachedParts) {
    parts_.clear();
    cached_parts_ = 0;
  }
  return parts_.try_emplace(std::string(device)).first->second;
}

bool Parser::Impl::inflate_into_buffer(std::string_view gz, size_t& len) {
  if (!zlib_ready_) {
    if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK)
      return fail(DropReason::kDecompression, "zlib could not be initialised");
    zlib_ready_ = true;
  } else if (inflateReset(&zs_) != Z_OK) {
    return fail(DropReason::kDecompression, "zlib could not be reset");
  }
  zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  zs_.avail_in = static_cast<uInt>(gz.size());
  // One byte more than allowed, so a stream that would inflate further is told apart from
  // one that ends exactly at the cap. Inflating stops when the output is full: a bomb costs
  // max_decompressed + 1 bytes of work, and nothing is allocated per datagram.
  zs_.next_out = reinterpret_cast<Bytef*>(buf_.get());
  zs_.avail_out = static_cast<uInt>(max_decompressed_ + 1);
  int rc = inflate(&zs_, Z_FINISH);
  len = zs_.total_out;
  if (len > max_decompressed_)
    return fail(DropReason::kDecompression,
                fmt::format("gzip payload inflates to more than {} bytes", max_decompressed_));
  if (rc == Z_STREAM_END) {
    if (zs_.avail_in != 0)
      return fail(DropReason::kDecompression,
                  fmt::format("{} bytes after the end of the gzip stream", zs_.avail_in));
    return true;
  }
  if (rc == Z_OK || rc == Z_BUF_ERROR)
    return fail(DropReason::kDecompression, "truncated gzip stream");
  return fail(DropReason::kDecompression,
              fmt::format("corrupt gzip stream: {}", zs_.msg != nullptr ? zs_.msg : zError(rc)));
}

Parsed Parser::Impl::parse(std::string_view dgram, std::string_view from, TimePoint received,
                           std::vector<DeviceReport>& out) {
  Parsed res;
  res_ = &res;
  if (dgram.size() > max_datagram_) {
    fail(DropReason::kTooLarge, fmt::format("{} bytes, over {}", dgram.size(), max_datagram_));
    return res;
  }
  size_t len = 0;
  if (dgram.size() >= 2 && static_cast<unsigned char>(dgram[0]) == 0x1f &&
      static_cast<unsigned char>(dgram[1]) == 0x8b) {
    if (!inflate_into_buffer(dgram, len)) return res;
  } else {
    std::memcpy(buf_.get(), dgram.data(), dgram.size());
    len = dgram.size();
  }
  if (!json_ok_) {
    fail(DropReason::kInvalidJson, "the JSON parser could not allocate its buffers");
    return res;
  }
  // The bytes after the text are left from earlier packets; simdjson only needs them readable.
  dom::element root;
  if (auto err = parser_.parse(buf_.get(), len, false).get(root)) {
    fail(DropReason::kInvalidJson, simdjson::error_message(err));
    return res;
  }
  dom::object top;
  if (root.get_object().get(top)) {
    fail(DropReason::kMissingFields, "the packet is not a JSON object");
    return res;
  }

  keys_.clear();
  devices_.clear();
  std::optional<dom::element> version, api_key;
  bool has_ack = false;
  for (dom::key_value_pair kv : top) {
    keys_.push_back(kv.key);
    if (kv.key == "dataformat_version") {
      version = kv.value;
    } else if (kv.key == "api_key") {
      api_key = kv.value;
    } else {
      if (kv.key == "ack") has_ack = true;
      devices_.emplace_back(kv.key, kv.value);
    }
  }
  std::string_view dup;
  if (has_duplicate(keys_, dup)) {
    fail(DropReason::kInvalidJson, fmt::format("repeated key '{}'", printable(dup)));
    return res;
  }
  if (!version) {
    if (has_ack) {
      if (parse_ack(top)) res.kind = Parsed::Kind::kAck;
      return res;
    }
    fail(DropReason::kWrongVersion, "no dataformat_version");
    return res;
  }
  auto v = string_of(*version);
  if (!v || *v != "1.0") {
    fail(DropReason::kWrongVersion,
         v ? fmt::format("dataformat_version '{}', not '1.0'", printable(*v))
           : std::string("dataformat_version is not a string"));
    return res;
  }
  if (devices_.empty()) {
    fail(DropReason::kMissingFields, "no device");
    return res;
  }
  for (const auto& [id, value] : devices_) {
    if (!valid_id(id)) {
      fail(DropReason::kInvalidId,
           fmt::format("device id '{}' ({} bytes)", printable(id), id.size()));
      return res;
    }
  }
  if (require_key_) {
    std::optional<std::string_view> key = api_key ? string_of(*api_key) : std::nullopt;
    if (!key || key->empty()) {
      fail(DropReason::kUnauthorized, "no api_key");
      return res;
    }
    for (const auto& [id, value] : devices_) {
      if (!check_key_ || !check_key_(id, *key)) {
        fail(DropReason::kUnauthorized, fmt::format("api_key not valid for device '{}'", id));
        return res;
      }
    }
  }

  // No reserve(): `out` collects a whole receive batch, and exact reserves would defeat its
  // geometric growth.
  const size_t first = out.size();
  for (const auto& [id, value] : devices_) {
    if (!parse_device(id, value, from, received, out.emplace_back())) {
      out.resize(first);  // all or nothing
      return res;
    }
  }
  res.kind = Parsed::Kind::kReports;
  res.reports = devices_.size();
  return res;
}

bool Parser::Impl::parse_ack(dom::object top) {
  std::optional<std::string_view> id, status, detail;
  for (dom::key_value_pair kv : top) {
    if (kv.key == "ack")
      id = string_of(kv.value);
    else if (kv.key == "status")
      status = string_of(kv.value);
    else if (kv.key == "detail")
      detail = string_of(kv.value);
  }
  if (!id || !valid_id(*id))
    return fail(DropReason::kMissingFields, "ack: \"ack\" is not a command id");
  if (!status || (*status != "ok" && *status != "failed"))
    return fail(DropReason::kMissingFields, "ack: \"status\" is not \"ok\" or \"failed\"");
  res_->ack.command_id = std::string(*id);
  res_->ack.ok = *status == "ok";
  res_->ack.detail = detail ? std::string(*detail) : std::string();
  return true;
}

bool Parser::Impl::parse_device(std::string_view id, dom::element value, std::string_view from,
                                TimePoint received, DeviceReport& r) {
  dom::object body;
  if (value.get_object().get(body))
    return fail(DropReason::kMissingFields, fmt::format("device '{}': not an object", id));
  // The nested form {id: {id: {...}}}: exactly one member, named as the device, an object.
  {
    auto it = body.begin();
    if (it != body.end()) {
      dom::key_value_pair only = *it;
      ++it;
      if (it == body.end() && only.key == id && only.value.is_object())
        body = only.value.get_object().value_unsafe();
    }
  }
  std::optional<dom::element> sensors, actuators, attributes;
  for (dom::key_value_pair kv : body) {
    if (kv.key == "sensors") {
      if (!sensors) sensors = kv.value;
    } else if (kv.key == "actuators") {
      if (!actuators) actuators = kv.value;
    } else if (kv.key == "attributes") {
      if (!attributes) attributes = kv.value;
    }
  }

  r.id = std::string(id);
  r.transport = core::Transport::kUdp;
  r.address = std::string(from);
  r.received = received;
  DeviceParts& parts = parts_of(id);
  if (attributes) {
    if (!attributes->is_object())
      return fail(DropReason::kMissingFields,
                  fmt::format("device '{}': attributes is not an object", id));
    r.attributes = reuse(*attributes, parts.attributes);
  }
  if (sensors) {
    dom::array arr;
    if (sensors->get_array().get(arr))
      return fail(DropReason::kMissingFields,
                  fmt::format("device '{}': sensors is not an array", id));
    r.sensors.reserve(arr.size());
    if (parts.sensors.size() < arr.size()) {
      cached_parts_ += arr.size() - parts.sensors.size();
      parts.sensors.resize(arr.size());
    }
    size_t index = 0;
    for (dom::element s : arr) {
      if (!parse_sensor(id, index, s, received, parts.sensors[index], r.sensors)) return false;
      ++index;
    }
  }
  if (actuators) {
    dom::array arr;
    if (actuators->get_array().get(arr))
      return fail(DropReason::kMissingFields,
                  fmt::format("device '{}': actuators is not an array", id));
    auto& list = r.actuators.emplace();
    list.reserve(arr.size());
    if (parts.actuators.size() < arr.size()) {
      cached_parts_ += arr.size() - parts.actuators.size();
      parts.actuators.resize(arr.size());
    }
    size_t index = 0;
    for (dom::element a : arr) {
      if (!parse_actuator(id, index, a, parts.actuators[index], list.emplace_back())) return false;
      ++index;
    }
  }
  return true;
}

bool Parser::Impl::id_taken(const std::vector<core::Sensor>& sensors, size_t n,
                            std::string_view id) {
  if (n <= kLinearIds) {
    for (size_t i = 0; i < n; ++i)
      if (sensors[i].id == id) return true;
    return false;
  }
  return taken_.count(std::string(id)) != 0;
}

// Records the id of sensors[n] as taken (sensors[0..n) are already).
void Parser::Impl::take_id(const std::vector<core::Sensor>& sensors, size_t n) {
  if (n < kLinearIds) return;  // found by the linear scan while there are at most kLinearIds
  if (n == kLinearIds) {
    taken_.clear();
    for (size_t i = 0; i < n; ++i) taken_.insert(sensors[i].id);
  }
  taken_.insert(sensors[n].id);
}

bool Parser::Impl::parse_sensor(std::string_view device, size_t index, dom::element e,
                                TimePoint received, SensorParts& parts,
                                std::vector<core::Sensor>& sensors) {
  dom::object obj;
  if (e.get_object().get(obj))
    return fail(DropReason::kMissingFields,
                fmt::format("device '{}': sensor {} is not an object", device, index));
  std::optional<dom::element> value, attributes, configuration;
  for (dom::key_value_pair kv : obj) {
    if (kv.key == "value") {
      if (!value) value = kv.value;
    } else if (kv.key == "attributes") {
      if (!attributes) attributes = kv.value;
    } else if (kv.key == "configuration") {
      if (!configuration) configuration = kv.value;
    }
  }
  dom::object vobj;
  if (!value || value->get_object().get(vobj))
    return fail(DropReason::kMissingFields,
                fmt::format("device '{}': sensor {} has no value object", device, index));
  if (attributes && !attributes->is_object())
    return fail(DropReason::kMissingFields,
                fmt::format("device '{}': sensor {}: attributes is not an object", device, index));
  if (configuration && !configuration->is_array())
    return fail(
        DropReason::kMissingFields,
        fmt::format("device '{}': sensor {}: configuration is not an array", device, index));

  std::optional<std::string_view> unit, primitive, time;
  std::optional<dom::element> values;
  for (dom::key_value_pair kv : vobj) {
    if (kv.key == "unit") {
      if (!unit) unit = string_of(kv.value);
    } else if (kv.key == "primitive") {
      if (!primitive) primitive = string_of(kv.value);
    } else if (kv.key == "time") {
      if (!time) time = string_of(kv.value);
    } else if (kv.key == "values") {
      if (!values) values = kv.value;
    }
  }
  if (!values)
    return fail(DropReason::kMissingFields,
                fmt::format("device '{}': sensor {}: value has no \"values\"", device, index));

  // The id: attributes.type, else attributes.name, else sensor<index>; then made unique.
  std::string_view base;
  if (attributes) {
    dom::object a = attributes->get_object().value_unsafe();
    for (const char* k : {"type", "name"}) {
      dom::element x;
      std::string_view s;
      if (!a.at_key(k).get(x) && !x.get_string().get(s) && valid_id(s, true)) {
        base = s;
        break;
      }
    }
  }
  std::string id = base.empty() ? fmt::format("sensor{}", index) : std::string(base);
  const size_t n = sensors.size();
  if (id_taken(sensors, n, id)) {
    std::string candidate;
    for (size_t k = 2;; ++k) {
      candidate = fmt::format("{}#{}", id, k);
      if (!id_taken(sensors, n, candidate)) break;
    }
    id = std::move(candidate);
  }

  core::Sensor& s = sensors.emplace_back();
  s.id = std::move(id);
  take_id(sensors, n);
  if (attributes) s.attributes = reuse(*attributes, parts.attributes);
  if (configuration) s.configuration = reuse(*configuration, parts.configuration);
  core::SensorValue& v = s.value.emplace();
  if (unit) v.unit = std::string(*unit);
  if (primitive) v.primitive = std::string(*primitive);
  auto ts = time ? device_time(*time) : std::nullopt;
  v.ts = ts ? *ts : received;
  v.values = reuse(*values, parts.values);
  return true;
}

bool Parser::Impl::parse_actuator(std::string_view device, size_t index, dom::element e,
                                  ActuatorParts& parts, core::Actuator& a) {
  dom::object obj;
  if (e.get_object().get(obj))
    return fail(DropReason::kMissingFields,
                fmt::format("device '{}': actuator {} is not an object", device, index));
  bool seen[4] = {false, false, false, false};
  static constexpr std::string_view kArrays[3] = {"actions", "callbacks", "configuration"};
  core::SharedJson* targets[3] = {&a.actions, &a.callbacks, &a.configuration};
  core::SharedJson* slots[3] = {&parts.actions, &parts.callbacks, &parts.configuration};
  for (dom::key_value_pair kv : obj) {
    for (size_t i = 0; i < 3; ++i) {
      if (kv.key != kArrays[i] || seen[i]) continue;
      seen[i] = true;
      if (!kv.value.is_array())
        return fail(
            DropReason::kMissingFields,
            fmt::format("device '{}': actuator {}: {} is not an array", device, index, kArrays[i]));
      *targets[i] = reuse(kv.value, *slots[i]);
    }
    if (kv.key == "attributes" && !seen[3]) {
      seen[3] = true;
      if (!kv.value.is_object())
        return fail(
            DropReason::kMissingFields,
            fmt::format("device '{}': actuator {}: attributes is not an object", device, index));
      a.attributes = reuse(kv.value, parts.attributes);
    }
  }
  return true;
}

Parser::Parser(const config::UdpConfig& cfg, KeyCheck check_key)
    : impl_(std::make_unique<Impl>(cfg, std::move(check_key))) {}
Parser::~Parser() = default;

Parsed Parser::parse(std::string_view datagram, std::string_view from, TimePoint received,
                     std::vector<DeviceReport>& out) {
  return impl_->parse(datagram, from, received, out);
}

}  // namespace outpost::ingest
