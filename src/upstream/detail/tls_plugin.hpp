// The contract between make_http_sink() (http_sink.cpp in the server) and the TLS plugin
// (tls_plugin.cpp in outpost-tls.so): one exported C function, guarded as the camera plugin's is
// (core/plugin.hpp). Not for other modules.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "core/plugin.hpp"
#include "core/status.hpp"
#include "upstream/sink.hpp"

#ifndef OUTPOST_VERSION
#error "upstream/detail/tls_plugin.hpp needs OUTPOST_VERSION (set by src/upstream/CMakeLists.txt)"
#endif

namespace outpost::upstream::detail {

inline constexpr const char* kTlsPluginFile = "outpost-tls.so";

// What the factory reads, and where it puts the sink. The pointers are the caller's and valid
// for the call only.
struct TlsPluginArgs {
  const config::UpstreamDestination* destination;
  const std::string* source;
  core::Result<std::unique_ptr<Sink>>* result;  // set to make_tls_http_sink()'s result
};

// Bump it (and the factory's name below) when the factory's signature or TlsPluginArgs change.
inline constexpr int kTlsPluginAbi = 1;
inline constexpr const char* kTlsPluginFactory = "outpost_tls_sink_create_v1";

inline constexpr uint64_t kTlsPluginFingerprint =
    core::fingerprint::of<TlsPluginArgs, config::UpstreamDestination, Sink, Message, Delivery,
                          core::Status, core::Result<std::unique_ptr<Sink>>, core::TimePoint,
                          std::string>(OUTPOST_VERSION, kTlsPluginAbi);

// The HTTP(S) sink with TLS: what make_http_sink() is, for https:// too. Defined only where
// http_sink.cpp is compiled with OUTPOST_UPSTREAM_TLS=1: the plugin.
core::Result<std::unique_ptr<Sink>> make_tls_http_sink(const config::UpstreamDestination& d,
                                                       std::string source);

}  // namespace outpost::upstream::detail

// The factory, defined by the plugin: when `fingerprint` equals the plugin's own
// kTlsPluginFingerprint, makes the sink with make_tls_http_sink() into *args->result (a sink or
// the error; never throws). Returns the plugin's kTlsPluginFingerprint either way; when it
// differs from `fingerprint`, args was not touched. The plugin's only exported symbol.
extern "C" __attribute__((visibility("default"))) uint64_t outpost_tls_sink_create_v1(
    uint64_t fingerprint, const outpost::upstream::detail::TlsPluginArgs* args) noexcept;
