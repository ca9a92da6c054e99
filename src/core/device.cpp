#include "core/device.hpp"

#include <cmath>
#include <cstdlib>

namespace outpost::core {

std::string_view transport_name(Transport t) {
  switch (t) {
    case Transport::kLocal: return "local";
    case Transport::kUdp: return "udp";
    case Transport::kMqtt: return "mqtt";
    case Transport::kEdge: return "edge";
  }
  return "unknown";
}

std::optional<Transport> parse_transport(std::string_view name) {
  for (auto t : {Transport::kLocal, Transport::kUdp, Transport::kMqtt, Transport::kEdge})
    if (transport_name(t) == name) return t;
  return std::nullopt;
}

namespace {

std::optional<double> number_of(const Json& j) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    if (s.empty()) return std::nullopt;
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size()) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

std::optional<Location> pair_of(const Json& obj) {
  if (!obj.is_object()) return std::nullopt;
  auto lat = obj.find("lat");
  auto lon = obj.find("lon");
  if (lat == obj.end() || lon == obj.end()) return std::nullopt;
  auto a = number_of(*lat), o = number_of(*lon);
  if (!a || !o || !std::isfinite(*a) || !std::isfinite(*o)) return std::nullopt;
  if (*a < -90 || *a > 90 || *o < -180 || *o > 180) return std::nullopt;
  return Location{*a, *o};
}

}  // namespace

SharedJson::SharedJson(Json j) {
  // Empty values are the shared ones: the parser and the store give many of them.
  if (j.is_null()) {
    p_ = null().p_;
  } else if (j.is_object() && j.empty()) {
    p_ = object().p_;
  } else if (j.is_array() && j.empty()) {
    p_ = array().p_;
  } else {
    p_ = std::make_shared<const Json>(std::move(j));
  }
}

const SharedJson& SharedJson::object() {
  static const Json* const value = new Json(Json::object());  // never destroyed: see device.hpp
  static const SharedJson v(Static{}, value);
  return v;
}

const SharedJson& SharedJson::array() {
  static const Json* const value = new Json(Json::array());  // never destroyed: see device.hpp
  static const SharedJson v(Static{}, value);
  return v;
}

const SharedJson& SharedJson::null() {
  static const Json* const value = new Json(Json());  // never destroyed: see device.hpp
  static const SharedJson v(Static{}, value);
  return v;
}

std::optional<Location> location_of(const Json& attributes) {
  if (!attributes.is_object()) return std::nullopt;
  if (auto it = attributes.find("location"); it != attributes.end()) {
    if (auto l = pair_of(*it)) return l;
  }
  return pair_of(attributes);
}

}  // namespace outpost::core
