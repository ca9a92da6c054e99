// load_camera(): finds outpost-camera.so, loads it, and calls its factory.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <string>

#include "camera/camera.hpp"
#include "camera/detail/plugin.hpp"
#include "core/plugin.hpp"

namespace outpost::camera {

namespace {

constexpr const char* kPluginFile = "outpost-camera.so";
constexpr const char* kWhat = "camera plugin";

// Every error of find_plugin() and open_plugin() is kUnavailable.
core::Status in_camera(const core::Status& s) {
  return core::Status::unavailable("camera: " + s.message());
}

}  // namespace

core::Result<std::unique_ptr<Camera>> load_camera(const config::CameraConfig& camera,
                                                  const config::MotionConfig& motion,
                                                  const config::FaceConfig& face,
                                                  CameraEvents events, core::Registry& metrics) {
  auto path = core::find_plugin(
      kPluginFile, camera.plugin, kWhat,
      "install it there, set camera.plugin to its path, or switch the camera off with "
      "camera.source=off");
  if (!path) return in_camera(path.status());
  auto factory = core::open_plugin(*path, detail::kPluginFactory, kWhat);
  if (!factory) return in_camera(factory.status());
  auto create = reinterpret_cast<detail::PluginFactory>(*factory);

  core::Result<std::unique_ptr<Camera>> result =
      core::Status::internal(fmt::format("camera: the plugin {} made no camera", path->string()));
  const detail::PluginArgs args{&camera, &motion, &face, &events, &metrics, &result};
  const uint64_t theirs = create(detail::kPluginFingerprint, &args);
  if (theirs != detail::kPluginFingerprint) {
    return core::Status::unavailable(fmt::format(
        "camera: the camera plugin {} was built from another version of outpost (fingerprint "
        "{:016x}, this binary {:016x}); install the plugin built with this binary",
        path->string(), theirs, detail::kPluginFingerprint));
  }
  if (result) spdlog::debug("camera: plugin {}", path->string());
  return result;
}

}  // namespace outpost::camera
