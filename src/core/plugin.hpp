// Optional code in shared objects loaded at run time (the camera's OpenCV, the upstream's
// OpenSSL): what the server maps only when a feature that needs it is switched on.
//
// A plugin is found beside the executable (the build tree, or everything in one directory),
// then in ../lib/outpost/ relative to it (an install under a prefix such as /usr/local), unless
// a path is configured. It exports one C factory whose name carries the ABI version, and the
// call carries a fingerprint (fingerprint::of below) of this version of Outpost and of the
// layout of every type that crosses the boundary, which the plugin checks before it touches the
// arguments: a plugin from another build is refused, not trusted.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.hpp"

namespace outpost::core {

// Where `file` may be when no path is configured, in the order searched. Empty when
// /proc/self/exe cannot be read.
std::vector<std::filesystem::path> plugin_candidates(std::string_view file);

// The plugin to load: `configured` made absolute when set (dlopen() would search the library
// path for a bare name), else the first of plugin_candidates(file) that exists. `what` names
// the plugin in errors ("camera plugin"); `remedy` ends the error for a plugin not found.
Result<std::filesystem::path> find_plugin(std::string_view file, const std::string& configured,
                                          std::string_view what, std::string_view remedy);

// Loads `path` and returns the address of `symbol` in it. RTLD_NOW: a library or symbol the
// plugin lacks fails here, at start-up, not at first use. RTLD_LOCAL: its libraries' symbols stay
// out of the global scope. RTLD_NODELETE, and no dlclose anywhere: the plugin's code must
// outlive everything it made. Errors name the path and are kUnavailable.
Result<void*> open_plugin(const std::filesystem::path& path, const char* symbol,
                          std::string_view what);

// One plugin: where it is looked for, what it exports, and this build's fingerprint of it.
struct PluginSpec {
  std::string_view file;    // its file name, e.g. "outpost-camera.so"
  std::string configured;   // a path from the configuration, or empty (see find_plugin)
  std::string_view what;    // its name in errors, e.g. "camera plugin"
  std::string_view remedy;  // ends the error for a plugin not found
  const char* factory;      // the exported factory's name
  uint64_t fingerprint;     // fingerprint::of<...> of this build
};

struct LoadedPlugin {
  std::filesystem::path path;
  void* factory;
};

// find_plugin() and open_plugin() of `spec`.
Result<LoadedPlugin> load_plugin(const PluginSpec& spec);

// The error for a plugin whose factory answered `theirs` instead of spec.fingerprint.
Status plugin_mismatch(const PluginSpec& spec, const std::filesystem::path& path, uint64_t theirs);

// Loads the plugin and calls its factory, `uint64_t factory(uint64_t fingerprint, const Args*)
// noexcept`, which acts on *args only when the fingerprints match and answers its own. Returns
// the plugin's path; kUnavailable when it is not found, has no factory, or was built from
// another version (then args was not touched).
template <typename Args>
Result<std::filesystem::path> call_plugin(const PluginSpec& spec, const Args* args) {
  auto plugin = load_plugin(spec);
  if (!plugin) return plugin.status();
  using Factory = uint64_t (*)(uint64_t, const Args*) noexcept;
  const uint64_t theirs = reinterpret_cast<Factory>(plugin->factory)(spec.fingerprint, args);
  if (theirs != spec.fingerprint) return plugin_mismatch(spec, plugin->path, theirs);
  return plugin->path;
}

namespace fingerprint {
constexpr uint64_t mix(uint64_t h, uint64_t v) {
  for (int i = 0; i < 8; ++i, v >>= 8) h = (h ^ (v & 0xff)) * 0x100000001b3ULL;  // FNV-1a
  return h;
}
constexpr uint64_t mix(uint64_t h, std::string_view s) {
  for (char c : s) h = mix(h, static_cast<unsigned char>(c));
  return h;
}
template <typename... T>
constexpr uint64_t layout(uint64_t h) {
  ((h = mix(mix(h, sizeof(T)), alignof(T))), ...);
  return h;
}
// The version, the ABI number and the sizes of the types the two sides share. It does not see
// a change of meaning that keeps every size (a field replaced by another of the same type):
// that needs a new version number or ABI.
template <typename... T>
constexpr uint64_t of(std::string_view version, int abi) {
  return layout<T...>(mix(mix(0xcbf29ce484222325ULL, version), static_cast<uint64_t>(abi)));
}
}  // namespace fingerprint

}  // namespace outpost::core
