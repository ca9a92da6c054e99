// outpost-tls.so: the HTTP(S) sink with OpenSSL, loaded by make_http_sink() only for an https://
// destination. Its one exported symbol is the factory below; everything linked into it is hidden
// (see CMakeLists.txt), so it never interposes on, or is interposed by, the server's own copies.
#include <exception>

#include <fmt/format.h>

#include "upstream/detail/tls_plugin.hpp"

extern "C" uint64_t outpost_tls_sink_create_v1(
    uint64_t fingerprint, const outpost::upstream::detail::TlsPluginArgs* args) noexcept {
  using namespace outpost;
  if (fingerprint != upstream::detail::kTlsPluginFingerprint || args == nullptr)
    return upstream::detail::kTlsPluginFingerprint;
  // Nothing may unwind into the loader: it is C on this side of the call.
  try {
    *args->result = upstream::detail::make_tls_http_sink(*args->destination, *args->source);
  } catch (const std::exception& e) {
    *args->result = core::Status::internal(fmt::format("TLS plugin: {}", e.what()));
  } catch (...) {
    *args->result = core::Status::internal("TLS plugin: unknown exception");
  }
  return upstream::detail::kTlsPluginFingerprint;
}
