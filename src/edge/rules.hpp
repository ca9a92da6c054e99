// Local rules: a condition on the latest values of sensors (any device's: this board's, FIWARE
// devices over UDP, kits over MQTT) and what to do when it becomes true ("on") and when it
// clears ("off"): a command to an actuator of any device, an alert event, or both.
//
// Two layers, as STYLE.md asks:
//  - Pure logic (this header's first half, rules.cpp, rules_expr.cpp): a rule document is parsed
//    into a Rule; an Evaluator takes readings and the time and returns the Firings. No I/O, no
//    clock of its own, not thread-safe: unit tests drive it with a fake clock.
//  - The adapter (RuleEngine, rules_engine.cpp): fed by the hub's readings observer, runs the
//    Evaluator under a lock, carries out the firings through hub::Hub::submit and the app's
//    record_event, persists rules in the store, and runs a timer thread so that a minimum
//    duration fires on time even when no further reading arrives. No network is involved in
//    evaluating a rule; a command to a remote device is a non-blocking send by its transport.
//
// A rule document (JSON for POST /api/rules, the same fields in a [[rules]] table of the
// configuration file):
//   id           "greenhouse-vent": 1..64 of [A-Za-z0-9_.:-]; required in the config, made up
//                ("rule_" + 8 hex digits) by POST when absent
//   description  free text (optional)
//   enabled      true (default) or false: a disabled rule is kept but not evaluated
//   A threshold:
//   device       the device of the sensor; default this board
//   sensor       the sensor id ("cpu_temp_c", a FIWARE sensor's type, ...)
//   above | below   the threshold (a finite number): on when the value is strictly above
//                   (below) it ...
//   clear_below | clear_above   ... and off again when it is strictly below clear_below (above
//                   clear_above); default the threshold itself. The hysteresis band may be
//                   empty but not inverted (clear_below <= above, clear_above >= below).
//   Or an expression:
//   expr         over the latest values, e.g. "greenhouse/temp > 30 && greenhouse/humidity < 40"
//                (see Expression); on when it is true
//   clear        optional expression; off when it is true (default: when expr is false)
//   for          the condition must hold this long before "on" fires: "90s", "1m", or seconds
//                as a number; default 0 (at once). At most 30 days.
//   on, off      what to do: {"command": {"device" (default this board), "target",
//                "parameter" (default "state"), "value"}, "alert": "message"}; either or both.
//                A rule must do something in on or off.
// Unknown fields are errors (so a typo never goes unnoticed), as in the rest of the config.
//
// Semantics (the Evaluator):
//  - Time is the engine's clock when a reading arrives, not the reading's own timestamp
//    (devices' clocks are often wrong: seed 004's example packet is from 2014).
//  - A threshold rule is inactive, pending (the condition holds, waiting out `for`) or active.
//    Pending falls back to inactive as soon as a reading breaks the condition (the minute starts
//    again); active goes off only when the clear condition holds (hysteresis).
//  - The latest value of a sensor holds until a newer one arrives: a pending rule fires "on" when
//    `for` has elapsed since the condition began, whether or not another reading came (tick()).
//  - A value that is not a number (a failed sensor read stored as NaN, a string, a 3DPoint) is
//    unknown, as is a sensor an expression names that has not reported yet. Unknown changes
//    nothing: a rule neither fires nor clears on it (an expression uses three-valued logic, so
//    `false && unknown` is still false).
//  - Replacing a rule (same id) keeps it active if it was, so that its "off" still runs when the
//    new condition clears; a pending one starts over. Disabling or removing a rule does not undo
//    what it did (no "off" is run).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"
#include "core/core.hpp"
#include "hub/hub.hpp"
#include "store/store.hpp"

namespace outpost::edge {

// What went wrong with a rule document: the field ("above", "on.command.target", "expr"), a
// message that says what is wrong with it, and for an expression the character offset (0-based)
// where it went wrong.
struct RuleError {
  std::string field;
  std::string message;
  std::optional<size_t> position;
  std::string device;  // check_rule: the device the error concerns
};

// A reference in an expression: a sensor of a device.
struct SensorRef {
  std::string device;
  std::string sensor;
  size_t position = 0;  // where it starts in the expression text
  bool operator==(const SensorRef& o) const { return device == o.device && sensor == o.sensor; }
};

// A small safe expression over the latest values of sensors: numbers ("30", "2.5", "1e3"),
// sensor references, + - * /, comparisons < <= > >= == !=, && || !, unary minus, parentheses.
// References:
//   device/sensor      "greenhouse/temp" (no spaces around the '/'; a division needs spaces
//                      or a number: "a / 2")
//   sensor             a sensor of this board ("cpu_temp_c")
//   'device/sensor'    quoted, for names with other characters ('my-pi/light#2')
// Names are [A-Za-z0-9_.:#]+ unquoted (a name may start with a digit when it is part of a
// device/sensor pair: FIWARE ids are hex). Comparisons do not chain ("a < b < c" is an error).
// At most 1024 characters, 256 nodes, nesting 32 deep. Booleans are 1 and 0; && and || take
// any number, non-zero being true. Unknown (a NaN) propagates, with Kleene logic for && || !.
class Expression {
 public:
  // Parses `text`; sensors without a device belong to `board`. nullopt with `err` (field
  // "expr" unless the caller renames it, message and position) on a syntax error.
  static std::optional<Expression> parse(std::string_view text, const std::string& board, RuleError& err);

  const std::string& text() const { return text_; }
  // The distinct sensors it reads, in order of first appearance.
  const std::vector<SensorRef>& refs() const { return refs_; }
  // Evaluates with values[i] the latest value of refs()[i] (NaN = unknown). NaN when the
  // result is unknown.
  double eval(const std::vector<double>& values) const;

 private:
  struct Node {
    enum Op : uint8_t { kNum, kRef, kNeg, kNot, kAdd, kSub, kMul, kDiv, kLt, kLe, kGt, kGe, kEq, kNe, kAnd, kOr };
    Op op;
    int32_t a = -1, b = -1;  // children (node indexes)
    double num = 0;          // kNum: the number; kRef: the slot (index into refs_)
  };
  friend class ExprParser;
  double eval_node(int32_t i, const std::vector<double>& values) const;

  std::string text_;
  std::vector<SensorRef> refs_;
  std::vector<Node> nodes_;
  int32_t root_ = -1;
};

// A command to an actuator of a device, as hub::Hub::submit takes it.
struct RuleCommand {
  std::string device;
  std::string target;
  std::string parameter = "state";
  core::Json value;
};

// What a transition does.
struct Actions {
  std::optional<RuleCommand> command;
  std::optional<std::string> alert;  // the alert's message
  bool empty() const { return !command && !alert; }
};

struct Rule {
  std::string id;
  std::string description;
  bool enabled = true;
  // A threshold on one sensor, or an expression (exactly one of the two is set).
  struct Threshold {
    std::string device;
    std::string sensor;
    bool above = true;  // above: on when value > threshold, off when value < clear; below: mirrored
    double threshold = 0;
    double clear = 0;
  };
  std::optional<Threshold> threshold;
  std::optional<Expression> expr;
  std::optional<Expression> clear;  // with expr only
  std::chrono::milliseconds hold{0};  // "for"
  Actions on, off;

  // Every sensor the rule reads.
  std::vector<SensorRef> inputs() const;
};

// Parses and checks a rule document (see the top of this header). Sensors and commands without
// a device belong to `board`. Only the document is checked here; whether its devices, sensors
// and actuators exist is the engine's business (check_rule).
std::optional<Rule> parse_rule(const core::Json& doc, const std::string& board, RuleError& err);

// The rule in its document shape, every default spelled out (device, parameter, clear), for
// GET /api/rules.
nlohmann::ordered_json rule_json(const Rule& r);

// What a rule did on a transition.
struct Firing {
  std::string rule;
  bool on = true;           // the condition became true (on) or cleared (off)
  core::TimePoint at;       // the engine's time of the transition
  core::Json value;         // the sensor's value (threshold), or {"device/sensor": value, ...}
  std::string device;       // the device the rule watches (an expression: its first reference's)
  std::string sensor;
  Actions actions;          // a copy of the rule's on or off
};

// A rule's state, for GET /api/rules/{id}.
struct RuleState {
  bool active = false;
  std::optional<core::TimePoint> pending_since;  // the condition holds since, `for` not yet over
  core::TimePoint since;                         // active or inactive since (or since loaded)
  std::optional<core::TimePoint> last_fired;
  std::optional<bool> last_transition;           // true = on
  core::Json last_value;                         // null until a value was seen
  uint64_t firings = 0;
};

// The pure rule evaluator. Not thread-safe (RuleEngine holds a lock around it).
// Cost per reading: two hash lookups (device, then sensor) when no rule reads that sensor.
class Evaluator {
 public:
  // Adds a rule, or replaces the one with its id (see the replace semantics at the top). `now`
  // is when, for its state's `since`.
  void put(Rule r, core::TimePoint now);
  // Removes it; false when there is none.
  bool remove(const std::string& id);
  const Rule* find(const std::string& id) const;
  std::optional<RuleState> state(const std::string& id) const;
  std::vector<std::string> ids() const;  // sorted
  size_t size() const { return rules_.size(); }

  // A reading arrived at `now`: updates the latest value and evaluates every enabled rule that
  // reads that sensor; appends what fires to `out`. Returns how many rules were evaluated.
  size_t on_reading(const core::Reading& r, core::TimePoint now, std::vector<Firing>& out);
  // Fires every pending rule whose `for` has run out by `now`.
  void tick(core::TimePoint now, std::vector<Firing>& out);
  // When tick() next has something to do: the earliest end of a pending `for`; nullopt if none.
  std::optional<core::TimePoint> next_deadline() const;
  // Whether any rule reads this sensor.
  bool watches(const std::string& device, const std::string& sensor) const;
  // Gives a sensor some rule reads a value when it has none yet (what the hub already knew when
  // the rule was added); evaluates nothing.
  void seed(const std::string& device, const std::string& sensor, double value);
  // Rules whose condition holds (on).
  size_t active_count() const;

 private:
  struct Slot {
    double value = std::numeric_limits<double>::quiet_NaN();
    std::vector<size_t> readers;  // indexes into rules_
  };
  struct Entry {
    Rule rule;
    RuleState state;
    std::vector<Slot*> inputs;  // Rule::inputs(), in order: expr's refs, then clear's others
    std::vector<double> scratch;
    std::vector<size_t> clear_map;  // clear's refs as indexes into inputs
    std::vector<double> clear_scratch;
  };
  void rebuild_index();
  void evaluate(Entry& e, core::TimePoint now, std::vector<Firing>& out);
  void fire(Entry& e, bool on, core::TimePoint now, std::vector<Firing>& out);
  core::Json value_of(const Entry& e) const;

  std::vector<std::unique_ptr<Entry>> rules_;
  std::unordered_map<std::string, size_t> by_id_;
  // device -> sensor -> latest value and the rules that read it. Slots live as long as a rule
  // reads them (rebuilt on put/remove; values carried over).
  std::unordered_map<std::string, std::unordered_map<std::string, std::unique_ptr<Slot>>> slots_;
};

// ---- The adapter ----

struct RuleMetrics;

// The rules of this hub: from the configuration ([[rules]], re-read at every start and read-only
// through the API) and from the API (persisted in the store, source "api"). Config rules are
// also written to the store (source "config", replacing the previous start's), so the table
// always shows what runs; an API rule with the id of a config rule is replaced by it at start
// (logged).
//
// Firing: for each action, in order: the command through hub.submit(device, target, parameter,
// value, who = "rule:<id>") (the local board answers at once; UDP and MQTT sends do not block),
// then the alert, recorded as an "alert" event and handed to on_alert. Every firing is also a
// "rule" event: {"rule", "transition": "on"|"off", "value", "device", "sensor", "actions":
// [{"type": "command", "device", "target", "parameter", "value", "outcome": "acknowledged"|
// "sent"|"failed"|"refused", "command", "detail"}, {"type": "alert", "message", "outcome":
// "recorded"}], "outcome": "ok"|"failed"}. Firings are carried out in the order they happen
// (a lock taken hand over hand from the evaluator's), so an "on" is never overtaken by its
// "off".
//
// Thread safety: every member may be called from any thread. on_readings() runs on the
// producers' threads (UDP receive, MQTT, the store's writer for the board's samples): it takes
// the evaluator's lock for a few hash lookups and, only when a rule fires, carries out the
// actions (no store waits, no network waits).
class RuleEngine {
 public:
  struct Deps {
    hub::Hub& hub;
    store::Store& store;
    core::Registry& metrics;
    std::function<void(core::Event)> record_event;  // stores an event, then publishes it
    std::string board;                               // this board's device id
    const core::Clock& clock = core::Clock::system();
  };
  explicit RuleEngine(Deps deps);
  ~RuleEngine();  // stop()

  // Parses the config rules (errors name "rules[N].field"; the caller fails start-up), writes
  // them to the store in place of the previous ones, and loads the API rules from the store (one
  // that no longer parses is skipped with a warning). Config rules that name a device, sensor or
  // actuator the registry does not know (yet) are logged, not refused: devices may report only
  // after start. Call once, before start().
  core::Status load(const std::vector<config::RuleConfig>& from_config);

  // The hub's readings observer (add it with hub.add_readings_observer before the first ingest).
  void on_readings(const std::vector<core::Reading>& readings);

  // Starts the timer thread (minimum durations that run out between readings, alert callbacks);
  // stop() joins it. start() once.
  void start();
  void stop();
  // Fires the rules whose minimum duration has run out by the clock's now (the timer thread calls
  // it; tests with a fake clock call it themselves).
  void tick();

  // Alerts are handed to `fn` as well as recorded (for the upstream outbox). It runs on the
  // engine's own timer thread, in order, never on a producer's thread, so it may take a moment (a
  // durable enqueue); set it before start(). The event's id is 0 (it is not committed yet).
  void on_alert(std::function<void(const core::Event&)> fn) { on_alert_ = std::move(fn); }

  // The API. A view is rule_json + {"source", "state": {"active", "since", "pending_since",
  // "last_fired", "last_transition", "last_value", "firings", "last_outcome"}}.
  struct View {
    nlohmann::ordered_json json;
  };
  std::vector<View> list() const;  // by id
  std::optional<View> get(const std::string& id) const;
  // Creates a rule from a document, checked against the registry (check_rule), persisted before
  // it runs. Errors: invalid (`err` says which field), conflict (the id exists), io (the store).
  core::Result<View> create(const core::Json& doc, RuleError& err);
  // Replaces an API rule (the document's id, if any, must be `id`). not_found; conflict for a
  // config rule (change it in the file); invalid with `err`; io.
  core::Result<View> replace(const std::string& id, const core::Json& doc, RuleError& err);
  // not_found, conflict (a config rule), io.
  core::Status remove(const std::string& id);

  // Whether the rule's devices, sensors and actuators exist in the hub's registry:
  //  - a device must be known (it has reported, or was loaded from the store);
  //  - a sensor must be one the device has reported, with numeric values (this board's own
  //    sensors are known before their first sample);
  //  - a command's target must be one of the device's actuators: an actuator's name or type
  //    (this board: led, relay, servo), or for a remote device also an action's parameter or a
  //    callback's target (FIWARE actuators often have no name: seed 004's is "viewstate"); when
  //    named by name or type and the actuator lists actions, the parameter must be one of them.
  //    A device that declares no actuators at all (AstroPlant kits do not announce theirs) cannot
  //    be checked: any target is accepted and the device's answer tells.
  // On failure `err` names the field and err.device the device concerned.
  bool check_rule(const Rule& r, RuleError& err) const;

  size_t size() const;

 private:
  void run();
  void carry_out(std::vector<Firing>& firings, std::optional<std::chrono::steady_clock::time_point> observed);
  View view(const std::string& id) const;  // mu_ held
  core::Result<View> install(Rule r, const core::Json& doc);

  Deps d_;
  std::unique_ptr<RuleMetrics> m_;
  std::function<void(const core::Event&)> on_alert_;

  // Lock order: api_mu_, then mu_, then act_mu_, then timer_mu_ or outcome_mu_ (leaves).
  std::mutex api_mu_;      // API writes one at a time (check, persist, install)
  mutable std::mutex mu_;  // the evaluator, the sources, armed_
  Evaluator eval_;
  std::unordered_map<std::string, std::string> source_;  // id -> "config" | "api"
  std::optional<core::TimePoint> armed_;                 // the deadline the timer waits for
  std::mutex act_mu_;      // firings are carried out one at a time, in order
  mutable std::mutex outcome_mu_;
  std::unordered_map<std::string, std::string> outcomes_;  // id -> the last firing's "ok" | "failed"

  std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  bool stopping_ = false;
  bool rearm_ = false;  // an earlier deadline came up
  std::deque<core::Event> alerts_;  // for on_alert_, on the timer thread
  std::thread thread_;
};

// This board's sensors (the collector's), known to rules before their first sample.
bool is_board_sensor(std::string_view sensor);

}  // namespace outpost::edge
