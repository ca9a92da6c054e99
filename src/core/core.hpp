// The core module's front door: status, time, model, metrics.
#pragma once

#include "core/metrics.hpp"
#include "core/model.hpp"
#include "core/status.hpp"
#include "core/time.hpp"
