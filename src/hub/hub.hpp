// The hub: where every device's reports meet. It keeps the device registry (in memory, with a
// spatial index, written behind to the store), appends every reading to the store, publishes
// readings on the bus as they arrive and device events once stored, and carries commands to
// devices over their transport and their outcomes back.
//
// It lives in its own module rather than in core/ (as ARCHITECTURE.md sketched) because it
// needs the store, and the store depends on core's model.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"
#include "core/core.hpp"
#include "store/store.hpp"

namespace outpost::hub {

// Great-circle distance in metres (haversine, mean Earth radius).
double distance_m(core::Location a, core::Location b);
inline constexpr double kMaxRadiusM = 20'015'115;  // half a great circle: every point is within it

// Which devices a query wants. Every field has a default, so designated initializers may leave
// any out.
struct Circle {
  core::Location center{};
  double radius_m = 0;
};
struct Box {
  double min_lat = 0, max_lat = 0, min_lon = 0, max_lon = 0;  // min_lon > max_lon crosses 180°
};
struct DeviceFilter {
  std::optional<core::Transport> transport{};
  std::string sensor_type{};        // devices with a sensor of this type (attributes.type); "" = any
  std::optional<bool> online{};
  std::optional<Circle> near{};     // results nearest first
  std::optional<Box> bbox{};
  size_t offset = 0;
  size_t limit = 100;
};
struct DevicePage {
  std::vector<core::Device> devices;
  size_t total = 0;  // matching devices, before offset and limit
};

// The devices, in memory, thread-safe (readers share a lock; a merge takes it alone for the
// time of a few map operations). Located devices are in an R-tree, so a spatial query visits
// the devices near it and not all of them.
class Registry {
 public:
  explicit Registry(size_t max_devices);
  ~Registry();

  struct Merged {
    bool refused = false;      // a new device over max_devices: nothing was stored
    bool created = false;      // first report of this device
    bool came_online = false;  // it was offline
  };
  // Merges a report (see core::DeviceReport). The rvalue form moves its parts in (what they
  // replace is freed after the lock is released).
  Merged merge(core::DeviceReport&& r);
  Merged merge(const core::DeviceReport& r) { return merge(core::DeviceReport(r)); }
  // Puts a device as it was stored (at start-up). Replaces one of the same id.
  void put(core::Device d);

  std::optional<core::Device> get(const std::string& id) const;
  DevicePage find(const DeviceFilter& f) const;
  size_t size() const;
  size_t online() const;

  // Marks devices silent since before `cutoff` offline; returns their ids.
  std::vector<std::string> mark_offline(core::TimePoint cutoff);
  // Copies of the devices changed since the last call (for the store), and clears the marks.
  std::vector<core::Device> take_dirty();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A device as a JSON document for the store, and back.
core::Json to_doc(const core::Device& d);
core::Result<core::Device> from_doc(const std::string& id, const core::Json& doc);

enum class CommandState { kQueued, kSent, kAcknowledged, kFailed, kTimedOut };
std::string_view state_name(CommandState s);  // "queued", "sent", "acknowledged", "failed", "timed_out"

struct Command {
  std::string id;         // "cmd_" + 16 hex digits, random
  std::string device;
  std::string target;     // the actuator or sensor: an action's parameter, a callback's target, "led"...
  std::string parameter;
  core::Json value;       // as the client gave it
  std::string who;        // the principal's name, "fiware", "rule:<id>"
  core::TimePoint created, updated;
  CommandState state = CommandState::kQueued;
  std::string detail;     // what the device answered, or what went wrong
  // A FIWARE forward (POST / of seed 004): these exact bytes go to the device, which has no way
  // to answer; "sent" is then its final state (no time-out).
  std::string raw;
};

// Carries a command to a device over its transport. Returns when it is handed over (sent);
// a transport that knows the outcome at once (the local board) sets *done with the outcome.
// Status::invalid refuses the command itself (unknown actuator, bad value): submit() returns
// that error and keeps nothing; any other error is the command's failure.
// Called on the submitting thread; must not block for long.
struct Delivery {
  bool done = false;  // the outcome is known: acknowledged when ok
  std::string detail;
};
using Sender = std::function<core::Status(const core::Device&, const Command&, Delivery&)>;

struct HubMetrics;

class Hub {
 public:
  // `record_event` stores an event and publishes it once committed (app/ wires it).
  Hub(const config::HubConfig& cfg, store::Store& store, core::Bus& bus, core::Registry& metrics,
      std::function<void(core::Event)> record_event);
  ~Hub();

  // Loads the stored devices (all offline until they report again). Call once, before ingest.
  core::Status load();

  // Merges reports into the registry, publishes each reading on the bus as a "reading" event
  // (at once: readings are a live feed with no id, unlike events, which are stored first), and
  // appends the readings to the store. New devices and devices back from silence give an
  // "online" event. Any thread; does not wait for the store.
  void ingest(std::vector<core::DeviceReport>&& reports);

  // Like ingest() for readings that are already stored (the local board's collector writes its
  // own): merges the report and publishes its readings, storing nothing.
  void observe(core::DeviceReport&& report);

  // Every reading the hub accepts (from ingest() and observe(), after the merge) is shown to
  // each observer, synchronously, on the thread that brought it, before the store is asked to
  // write it: the edge's rules and aggregator see every reading within microseconds, and none is
  // lost to a full bus queue. Observers must be quick and must not block (no store waits, no
  // network). Add them all before the first ingest()/observe(); not thread-safe with those.
  using ReadingsObserver = std::function<void(const std::vector<core::Reading>&)>;
  void add_readings_observer(ReadingsObserver fn) { observers_.push_back(std::move(fn)); }

  // A device's answer to a command. `from` is where it came from (a UDP address, "mqtt:<serial>")
  // and must be the command's device's address; anything else is ignored (and counted).
  void ack(const core::CommandAck& a, const std::string& from);

  void set_sender(core::Transport t, Sender s);
  // Validates and sends a command: not_found for an unknown device, unavailable when it has no
  // address or its transport has no sender, invalid for an empty target or parameter. The
  // command is recorded (see command()) and its outcome becomes a "command" event.
  core::Result<Command> submit(const std::string& device, const std::string& target, const std::string& parameter,
                               core::Json value, const std::string& who, std::string raw = {});
  std::optional<Command> command(const std::string& id) const;

  // Offline marking, command time-outs, and (every kSaveInterval) writing changed devices to
  // the store. The app calls it about once a second from a timer; tests call it with their own
  // clock. Readings are stored as they come; what a crash can lose is the registry's view of
  // the last seconds (a new device, a last_seen), which the device's next report restores.
  void tick(core::TimePoint now);
  // Writes every changed device now (at shutdown).
  void save();
  static constexpr std::chrono::seconds kSaveInterval{10};

  Registry& registry() { return registry_; }
  const Registry& registry() const { return registry_; }

  // The devices and their sensors, for WebSocket clients' {"op":"list"}.
  core::Json list_json() const;

  // A reading event's payload: {"sensor","unit","primitive","time","value"}.
  static core::Json reading_payload(const core::Sensor& s);

 private:
  void finish(Command& c, CommandState st, std::string detail);  // mu_ held
  void note_merged(const Registry::Merged& m, const std::string& id, core::Transport transport,
                   const std::string& address, core::TimePoint received);

  config::HubConfig cfg_;
  store::Store& store_;
  core::Bus& bus_;
  std::function<void(core::Event)> record_event_;
  Registry registry_;
  std::unique_ptr<HubMetrics> m_;
  std::vector<ReadingsObserver> observers_;

  mutable std::mutex mu_;  // commands and senders
  std::map<core::Transport, Sender> senders_;
  std::unordered_map<std::string, Command> commands_;
  std::vector<std::string> command_order_;  // oldest first, for the bound on kept commands
  std::mutex persist_mu_;
  std::optional<core::TimePoint> last_save_;  // under persist_mu_
};

}  // namespace outpost::hub
