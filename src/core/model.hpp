// The data model shared by every module: what a reading is.
// (Devices, events and commands join it with the hub issue.)
#pragma once

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

}  // namespace outpost::core
