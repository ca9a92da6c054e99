// The contract between load_camera() (loader.cpp, in the server) and the camera plugin
// (plugin.cpp, in outpost-camera.so): one exported C function. Not for other modules.
//
// Both sides are compiled from the same tree, but a plugin from another build can be found at
// run time (an old /usr/local/lib/outpost/outpost-camera.so next to a new binary). Two guards:
// the factory's name carries kPluginAbi, so a plugin with another calling convention has no
// symbol the loader looks for; and the call carries a fingerprint of this version of Outpost
// and of the layout of every type that crosses the boundary, which the plugin checks before it
// touches the arguments.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "camera/camera.hpp"
#include "config/config.hpp"
#include "core/core.hpp"
#include "core/plugin.hpp"

#ifndef OUTPOST_VERSION
#error "camera/detail/plugin.hpp needs OUTPOST_VERSION (set by src/camera/CMakeLists.txt)"
#endif

namespace outpost::camera::detail {

// What the factory reads, and where it puts the camera. The pointers are the caller's and
// valid for the call only; *events is moved from.
struct PluginArgs {
  const config::CameraConfig* camera;
  const config::MotionConfig* motion;
  const config::FaceConfig* face;
  CameraEvents* events;
  core::Registry* metrics;
  core::Result<std::unique_ptr<Camera>>* result;  // set to create_camera()'s result
};

// Bump it (and the factory's name below) when the factory's signature or PluginArgs change.
inline constexpr int kPluginAbi = 1;
inline constexpr const char* kPluginFactory = "outpost_camera_create_v1";

// The version of Outpost and the sizes of the types the two sides share (core/plugin.hpp).
inline constexpr uint64_t kPluginFingerprint =
    core::fingerprint::of<PluginArgs, config::CameraConfig, config::MotionConfig, config::FaceConfig,
                          CameraEvents, Camera, CameraHealth, JpegFrame, MotionEvent, Box, core::Status,
                          core::Result<std::unique_ptr<Camera>>, core::Result<JpegPtr>, core::Registry,
                          core::TimePoint, std::string, std::function<void()>, std::shared_ptr<void>>(
        OUTPOST_VERSION, kPluginAbi);

}  // namespace outpost::camera::detail

// The factory, defined by the plugin: when `fingerprint` equals the plugin's own
// kPluginFingerprint, makes the camera with create_camera() into *args->result (a Camera or the
// error; never throws). Returns the plugin's kPluginFingerprint either way; when it differs
// from `fingerprint`, args was not touched. The plugin's only exported symbol.
extern "C" __attribute__((visibility("default"))) uint64_t outpost_camera_create_v1(
    uint64_t fingerprint, const outpost::camera::detail::PluginArgs* args) noexcept;
