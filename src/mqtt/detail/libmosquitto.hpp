// libmosquitto, loaded when the first MQTT client is made rather than at start-up.
//
// The binary does not link libmosquitto: detail/libmosquitto.cpp defines every mosquitto_*
// function this module calls as a forwarder to the same function of libmosquitto.so.1, which
// it opens with dlopen on first use. A server with MQTT off then never maps libmosquitto, nor
// the libssl and libcrypto it pulls in (about 1.8 MB resident, PERFORMANCE-NOTES' idle budget
// is 10 MB). The forwarders' signatures are checked against <mosquitto.h> by the compiler, and
// a mosquitto_* function used without a forwarder fails the link, so the set cannot drift.
#pragma once

#include "core/status.hpp"

namespace outpost::mqtt::detail {

// Opens libmosquitto.so.1 and resolves every forwarded function, once per process (later calls
// return the first answer). Unavailable, with dlopen's reason, when the library or one of the
// functions is missing. Client::create calls it, so that a missing library is an error there; a
// forwarder called earlier loads the library itself, and aborts with the reason if it cannot.
core::Status load_libmosquitto();

}  // namespace outpost::mqtt::detail
