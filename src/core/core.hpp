// The core module's front door: status, time, model, metrics, bus.
#pragma once

#include "core/bus.hpp"
#include "core/device.hpp"
#include "core/metrics.hpp"
#include "core/model.hpp"
#include "core/status.hpp"
#include "core/summary.hpp"
#include "core/time.hpp"
