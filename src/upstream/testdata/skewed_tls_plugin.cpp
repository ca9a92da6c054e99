// A TLS plugin from "another build": it exports the factory, but with another fingerprint, so it
// must be refused without its arguments being touched (tls_plugin_test.cpp).
#include <cstdint>

extern "C" __attribute__((visibility("default"))) uint64_t outpost_tls_sink_create_v1(
    uint64_t /*fingerprint*/, const void* args) noexcept {
  // Writing through args would corrupt the caller: it must not get here with a mismatch.
  if (args == nullptr) return 0;
  return 0xfedcba9876543210ULL;
}
