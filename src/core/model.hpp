// The data model shared by every module: readings and events.
// (Devices and commands join it with the hub issue.)
#pragma once

#include <cstdint>
#include <string>

#include "core/time.hpp"

namespace outpost::core {

// One value of one sensor of one device at one time. A numeric reading has `text` empty;
// a non-numeric one (a string, or a vector as JSON text) sets `text` and leaves `value` 0.
struct Reading {
  std::string device;
  std::string sensor;
  TimePoint ts;
  double value = 0;
  std::string unit;
  std::string text;

  bool is_numeric() const { return text.empty(); }
};

// Something that happened on a device: a motion or face detection, a button press, a command
// and its outcome, an alert, a device going online or offline.
struct Event {
  int64_t id = 0;  // assigned by the store when it is committed; 0 before
  TimePoint ts;
  std::string device;
  std::string kind;     // "motion", "face", "button", "command", "alert", "online", "offline"
  std::string payload;  // a JSON object, as text
};

}  // namespace outpost::core
