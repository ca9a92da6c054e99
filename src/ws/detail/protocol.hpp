// The WebSocket protocol's pure parts: subscription filters, client messages, server messages.
// No I/O here: values in, values out (the sessions in server.cpp are the adapter).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"

namespace outpost::ws::detail {

using OJson = nlohmann::ordered_json;

// The event kinds a subscription may name in "types".
inline constexpr std::string_view kEventTypes[] = {"reading", "online", "offline", "motion",
                                                   "face",    "button", "command", "alert"};

// Limits on one client's filter, so that a client cannot grow it without bound.
inline constexpr size_t kMaxSubscriptions = 64;
inline constexpr size_t kMaxFilterNames = 4096;  // names over all subscriptions, exclusions too

// What a filter looks at in an event. `sensor` is payload.sensor for readings, else "".
struct EventKey {
  std::string_view type;
  std::string_view device;
  std::string_view sensor;
};

// A set of names: every name (`only` empty optional) or the listed ones, minus `except`.
struct NameSet {
  std::optional<std::set<std::string, std::less<>>> only;
  std::set<std::string, std::less<>> except;

  bool contains(std::string_view name) const;
  bool is_any() const { return !only && except.empty(); }
  bool operator==(const NameSet&) const = default;
};

// One subscribe request: devices AND types AND (for readings) sensors. A field left out
// matches everything. The sensors set applies to readings only: other events pass it.
struct Subscription {
  NameSet devices, sensors, types;

  bool matches(const EventKey& e) const;
  // True when nothing can match (after unsubscribes emptied a list).
  bool matches_nothing() const;
  size_t names() const;
  // {"devices":"*"|[...],"sensors":"*"|[...],"types":"*"|[...]} plus
  // "except":{"devices":[...],...} when some names were unsubscribed from a "*".
  OJson to_json() const;
  bool operator==(const Subscription&) const = default;
};

// What an unsubscribe names; each field independently. All empty: every subscription.
struct Removal {
  std::vector<std::string> devices, sensors, types;
  bool all = false;  // no fields, or "*" in one
};

// A client's filter: the union of its subscriptions. A new filter delivers everything (as if
// the client had subscribed to "*"): seed 004's clients never subscribe. The first subscribe
// replaces that default; later ones add to it.
class Filter {
 public:
  bool matches(const EventKey& e) const;
  // Adds `s` (nothing when an equal one is there). Status::invalid past the limits above; the
  // filter is unchanged then.
  core::Status add(Subscription s);
  // Removes the named devices, sensors and types from every subscription: a name in a
  // subscription's list leaves the list, a name under "*" is excluded from it. A subscription
  // left unable to match is dropped. Status::invalid past kMaxFilterNames (filter unchanged).
  core::Status remove(const Removal& r);
  // The subscriptions, as sent in "subscribed"/"unsubscribed" answers.
  OJson to_json() const;
  const std::vector<Subscription>& subscriptions() const { return subs_; }

 private:
  std::vector<Subscription> subs_{Subscription{}};
  bool implicit_ = true;  // subs_ is the default "everything", not asked for
};

// A client message, parsed and checked.
enum class Op { kInvalid, kAuth, kSubscribe, kUnsubscribe, kList, kCommand, kPing };

struct Message {
  Op op = Op::kInvalid;
  OJson ref;                 // "ref" as sent (any JSON value), null when absent
  std::string error;         // kInvalid: what was wrong, for {"op":"error"}
  std::string credential;    // kAuth: "key" or "token"
  Subscription subscription; // kSubscribe
  Removal removal;           // kUnsubscribe
  core::Json command;        // kCommand: {"device", and "target", "parameter", "value" if given}
};

// Parses one text message. Never throws; anything wrong gives Op::kInvalid with `error`.
// Unknown members are errors (a misspelt "device" would otherwise subscribe to everything).
Message parse_message(std::string_view text);

// An event as sent to clients, serialized once for all of them:
//   {"op":"event","id":<id, or null before the store assigned one>,"type":<kind>,
//    "device":<device>,"time":<ISO 8601 UTC>,"data":<payload>}
// `data` is the payload as stored when it is JSON, {} when it is empty, else a JSON string.
struct RenderedEvent {
  std::string json;
  std::string sensor;  // payload.sensor of a reading, else ""
};
RenderedEvent render_event(const core::Event& e);

// Replies. `ref` is added when not null.
std::string reply(OJson body, const OJson& ref);
std::string error_reply(std::string_view what, const OJson& ref);

// The subprotocol to answer for a Sec-WebSocket-Protocol offer ("chat, superchat"; several
// header lines joined by ","): the first offered one we support ("outpost.v1", "chat"), or ""
// when none is (then the answer carries no Sec-WebSocket-Protocol).
std::string select_subprotocol(std::string_view offered);

}  // namespace outpost::ws::detail
