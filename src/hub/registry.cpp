// The registry: devices by id in a hash map, located devices also in an R-tree of (lon, lat)
// points. A circle query asks the R-tree for the box around the circle (split in two where it
// crosses the antimeridian) and keeps the devices within the great-circle radius.
#include <algorithm>
#include <boost/geometry.hpp>
#include <boost/geometry/index/rtree.hpp>
#include <boost/iterator/function_output_iterator.hpp>
#include <cmath>
#include <utility>

#include "hub/hub.hpp"

namespace outpost::hub {

namespace bg = boost::geometry;
namespace bgi = boost::geometry::index;

namespace {

constexpr double kEarthRadiusM = 6'371'008.8;
constexpr double kPi = 3.14159265358979323846;
constexpr double kMetresPerDegree = kEarthRadiusM * kPi / 180;

using Point = bg::model::point<double, 2, bg::cs::cartesian>;  // (lon, lat) in degrees
using BoxT = bg::model::box<Point>;
using Value = std::pair<Point, uint32_t>;  // slot of the entry
using Tree = bgi::rtree<Value, bgi::quadratic<16>>;

double rad(double deg) { return deg * kPi / 180; }

// The boxes (1 or 2) covering a lat/lon box that may cross the antimeridian.
std::vector<BoxT> boxes_of(const Box& b) {
  if (b.min_lon <= b.max_lon) return {BoxT(Point(b.min_lon, b.min_lat), Point(b.max_lon, b.max_lat))};
  return {BoxT(Point(b.min_lon, b.min_lat), Point(180, b.max_lat)),
          BoxT(Point(-180, b.min_lat), Point(b.max_lon, b.max_lat))};
}

// A box that contains every point within `c.radius_m` of the centre.
Box box_around(const Circle& c) {
  double dlat = c.radius_m / kMetresPerDegree;
  double min_lat = c.center.lat - dlat, max_lat = c.center.lat + dlat;
  if (min_lat <= -90 || max_lat >= 90) {  // a pole is inside: every longitude
    return {std::max(min_lat, -90.0), std::min(max_lat, 90.0), -180, 180};
  }
  // The widest longitude span is at the latitude farthest from the equator.
  double widest = std::max(std::abs(min_lat), std::abs(max_lat));
  double dlon = dlat / std::cos(rad(widest));
  if (dlon >= 180) return {min_lat, max_lat, -180, 180};
  double min_lon = c.center.lon - dlon, max_lon = c.center.lon + dlon;
  if (min_lon < -180) min_lon += 360;
  if (max_lon > 180) max_lon -= 360;
  return {min_lat, max_lat, min_lon, max_lon};
}

bool in_box(const core::Location& l, const Box& b) {
  if (l.lat < b.min_lat || l.lat > b.max_lat) return false;
  if (b.min_lon <= b.max_lon) return l.lon >= b.min_lon && l.lon <= b.max_lon;
  return l.lon >= b.min_lon || l.lon <= b.max_lon;
}

std::string name_of(const core::Json& attributes, const std::string& id) {
  if (attributes.is_object()) {
    auto it = attributes.find("name");
    if (it != attributes.end() && it->is_string() && !it->get_ref<const std::string&>().empty())
      return it->get<std::string>();
  }
  return id;
}

bool has_sensor_type(const core::Device& d, const std::string& type) {
  for (const auto& s : d.sensors) {
    if (s.id == type) return true;
    auto it = s.attributes->find("type");
    if (it != s.attributes->end() && it->is_string() && it->get_ref<const std::string&>() == type) return true;
  }
  return false;
}

}  // namespace

double distance_m(core::Location a, core::Location b) {
  double dlat = rad(b.lat - a.lat), dlon = rad(b.lon - a.lon);
  double h = std::sin(dlat / 2) * std::sin(dlat / 2) +
             std::cos(rad(a.lat)) * std::cos(rad(b.lat)) * std::sin(dlon / 2) * std::sin(dlon / 2);
  return 2 * kEarthRadiusM * std::asin(std::min(1.0, std::sqrt(h)));
}

struct Registry::Impl {
  struct Entry {
    core::Device device;
    bool dirty = false;
  };
  size_t max_devices;
  mutable std::shared_mutex mu;
  std::vector<std::unique_ptr<Entry>> slots;  // never shrinks: devices are not deleted
  std::unordered_map<std::string, uint32_t> by_id;
  Tree tree;
  std::vector<uint32_t> dirty;
  size_t online = 0;

  void locate(uint32_t slot, const std::optional<core::Location>& before, const std::optional<core::Location>& after) {
    if (before && after && before->lat == after->lat && before->lon == after->lon) return;
    if (before) tree.remove(Value(Point(before->lon, before->lat), slot));
    if (after) tree.insert(Value(Point(after->lon, after->lat), slot));
  }
  void mark(uint32_t slot) {
    if (!slots[slot]->dirty) {
      slots[slot]->dirty = true;
      dirty.push_back(slot);
    }
  }
  bool matches(const core::Device& d, const DeviceFilter& f) const {
    if (f.transport && d.transport != *f.transport) return false;
    if (f.online && d.online != *f.online) return false;
    if (!f.sensor_type.empty() && !has_sensor_type(d, f.sensor_type)) return false;
    if (f.bbox && (!d.location || !in_box(*d.location, *f.bbox))) return false;
    if (f.near && (!d.location || distance_m(f.near->center, *d.location) > f.near->radius_m)) return false;
    return true;
  }
};

Registry::Registry(size_t max_devices) : impl_(std::make_unique<Impl>()) { impl_->max_devices = max_devices; }
Registry::~Registry() = default;

Registry::Merged Registry::merge(core::DeviceReport&& r) {
  Merged out;
  // What the report replaces is destroyed after the lock is released.
  std::vector<core::Sensor> replaced;
  core::SharedJson old_attributes;
  std::vector<core::Actuator> old_actuators;
  std::unique_lock lk(impl_->mu);
  auto [it, inserted] = impl_->by_id.try_emplace(r.id, static_cast<uint32_t>(impl_->slots.size()));
  if (inserted) {
    if (impl_->slots.size() >= impl_->max_devices) {
      impl_->by_id.erase(it);
      out.refused = true;
      return out;
    }
    auto e = std::make_unique<Impl::Entry>();
    e->device.id = r.id;
    e->device.name = r.id;
    e->device.first_seen = r.received;
    e->device.online = false;
    impl_->slots.push_back(std::move(e));
    out.created = true;
  }
  uint32_t slot = it->second;
  core::Device& d = impl_->slots[slot]->device;
  d.transport = r.transport;
  if (!r.address.empty() && r.address != d.address) d.address = std::move(r.address);
  d.last_seen = std::max(d.last_seen, r.received);
  if (!d.online) {
    d.online = true;
    ++impl_->online;
    out.came_online = true;
  }
  if (r.attributes) {
    if (*r.attributes != d.attributes) {
      old_attributes = std::exchange(d.attributes, std::move(*r.attributes));
      d.name = name_of(*d.attributes, d.id);
      auto loc = core::location_of(*d.attributes);
      impl_->locate(slot, d.location, loc);
      d.location = loc;
    }
  }
  replaced.reserve(r.sensors.size());
  for (auto& s : r.sensors) {
    auto found = std::find_if(d.sensors.begin(), d.sensors.end(), [&](const core::Sensor& x) { return x.id == s.id; });
    if (found == d.sensors.end()) {
      d.sensors.push_back(std::move(s));
    } else if (s.value && found->value && s.value->ts < found->value->ts) {
      // An older value (a late packet) keeps the newer one; its description still updates.
      auto newer = std::move(found->value);
      replaced.push_back(std::exchange(*found, std::move(s)));
      found->value = std::move(newer);
    } else {
      replaced.push_back(std::exchange(*found, std::move(s)));
    }
  }
  if (r.actuators) old_actuators = std::exchange(d.actuators, std::move(*r.actuators));
  impl_->mark(slot);
  lk.unlock();
  return out;
}

void Registry::put(core::Device d) {
  std::unique_lock lk(impl_->mu);
  auto [it, inserted] = impl_->by_id.try_emplace(d.id, static_cast<uint32_t>(impl_->slots.size()));
  if (inserted) impl_->slots.push_back(std::make_unique<Impl::Entry>());
  auto& entry = *impl_->slots[it->second];
  if (!inserted && entry.device.online) --impl_->online;
  impl_->locate(it->second, inserted ? std::nullopt : entry.device.location, d.location);
  entry.device = std::move(d);
  if (entry.device.online) ++impl_->online;
}

std::optional<core::Device> Registry::get(const std::string& id) const {
  std::shared_lock lk(impl_->mu);
  auto it = impl_->by_id.find(id);
  if (it == impl_->by_id.end()) return std::nullopt;
  return impl_->slots[it->second]->device;
}

DevicePage Registry::find(const DeviceFilter& f) const {
  DevicePage page;
  std::shared_lock lk(impl_->mu);
  std::vector<uint32_t> hits;
  if (f.near || f.bbox) {
    // The R-tree narrows to a box; matches() applies every filter exactly.
    Box box = f.near ? box_around(*f.near) : *f.bbox;
    for (const auto& b : boxes_of(box)) {
      impl_->tree.query(bgi::intersects(b), boost::make_function_output_iterator([&](const Value& v) {
                          if (impl_->matches(impl_->slots[v.second]->device, f)) hits.push_back(v.second);
                        }));
    }
    if (f.near) {
      std::vector<std::pair<double, uint32_t>> by_distance;
      by_distance.reserve(hits.size());
      for (uint32_t s : hits) by_distance.emplace_back(distance_m(f.near->center, *impl_->slots[s]->device.location), s);
      std::sort(by_distance.begin(), by_distance.end());
      for (size_t i = 0; i < hits.size(); ++i) hits[i] = by_distance[i].second;
    } else {
      std::sort(hits.begin(), hits.end(), [&](uint32_t a, uint32_t b) {
        return impl_->slots[a]->device.id < impl_->slots[b]->device.id;
      });
    }
  } else {
    for (uint32_t s = 0; s < impl_->slots.size(); ++s) {
      if (impl_->matches(impl_->slots[s]->device, f)) hits.push_back(s);
    }
    std::sort(hits.begin(), hits.end(),
              [&](uint32_t a, uint32_t b) { return impl_->slots[a]->device.id < impl_->slots[b]->device.id; });
  }
  page.total = hits.size();
  for (size_t i = f.offset; i < hits.size() && page.devices.size() < f.limit; ++i) {
    page.devices.push_back(impl_->slots[hits[i]]->device);
  }
  return page;
}

size_t Registry::size() const {
  std::shared_lock lk(impl_->mu);
  return impl_->slots.size();
}

size_t Registry::online() const {
  std::shared_lock lk(impl_->mu);
  return impl_->online;
}

std::vector<std::string> Registry::mark_offline(core::TimePoint cutoff) {
  std::vector<std::string> out;
  // Look under the shared lock (queries go on); take the exclusive one only when someone went
  // silent. This runs every second over every device.
  {
    std::shared_lock lk(impl_->mu);
    bool any = false;
    for (const auto& e : impl_->slots) {
      if (e->device.online && e->device.last_seen < cutoff) {
        any = true;
        break;
      }
    }
    if (!any) return out;
  }
  std::unique_lock lk(impl_->mu);
  for (uint32_t s = 0; s < impl_->slots.size(); ++s) {
    core::Device& d = impl_->slots[s]->device;
    if (d.online && d.last_seen < cutoff) {
      d.online = false;
      --impl_->online;
      impl_->mark(s);
      out.push_back(d.id);
    }
  }
  return out;
}

std::vector<core::Device> Registry::take_dirty() {
  std::vector<uint32_t> slots;
  {
    std::unique_lock lk(impl_->mu);  // only the marks: quick
    slots.swap(impl_->dirty);
    for (uint32_t s : slots) impl_->slots[s]->dirty = false;
  }
  // The copies under the shared lock, so queries are not held up. A device changed in between
  // is marked again and saved next time.
  std::vector<core::Device> out;
  out.reserve(slots.size());
  std::shared_lock lk(impl_->mu);
  for (uint32_t s : slots) out.push_back(impl_->slots[s]->device);
  return out;
}

}  // namespace outpost::hub
