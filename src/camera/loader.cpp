// load_camera(): finds outpost-camera.so, loads it, and calls its factory.
#include <spdlog/spdlog.h>

#include <string>

#include "camera/camera.hpp"
#include "camera/detail/plugin.hpp"
#include "core/plugin.hpp"

namespace outpost::camera {

core::Result<std::unique_ptr<Camera>> load_camera(const config::CameraConfig& camera,
                                                  const config::MotionConfig& motion,
                                                  const config::FaceConfig& face,
                                                  CameraEvents events, core::Registry& metrics) {
  const core::PluginSpec spec{
      "outpost-camera.so",
      camera.plugin,
      "camera plugin",
      "install it there, set camera.plugin to its path, or switch the camera "
      "off with camera.source=off",
      detail::kPluginFactory,
      detail::kPluginFingerprint};
  core::Result<std::unique_ptr<Camera>> result =
      core::Status::internal("camera: the plugin made no camera");
  const detail::PluginArgs args{&camera, &motion, &face, &events, &metrics, &result};
  auto path = core::call_plugin(spec, &args);
  // Every error of core::call_plugin() is kUnavailable.
  if (!path) return core::Status::unavailable("camera: " + path.status().message());
  if (result) spdlog::debug("camera: plugin {}", path->string());
  return result;
}

}  // namespace outpost::camera
