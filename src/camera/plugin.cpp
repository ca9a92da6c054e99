// outpost-camera.so: the capture service on OpenCV, loaded by load_camera() only when a camera
// is configured. Its one exported symbol is the factory below; everything linked into it
// (camera/vision and the static libraries under it) is hidden (see CMakeLists.txt), so it
// never interposes on, or is interposed by, the server's own copies of core/.
#include <exception>

#include <fmt/format.h>

#include "camera/detail/plugin.hpp"
#include "camera/vision.hpp"

extern "C" uint64_t outpost_camera_create_v1(
    uint64_t fingerprint, const outpost::camera::detail::PluginArgs* args) noexcept {
  using namespace outpost;
  if (fingerprint != camera::detail::kPluginFingerprint || args == nullptr)
    return camera::detail::kPluginFingerprint;
  // Nothing may unwind into the loader: it is C on this side of the call.
  try {
    *args->result = camera::create_camera(*args->camera, *args->motion, *args->face,
                                          std::move(*args->events), *args->metrics);
  } catch (const std::exception& e) {
    *args->result = core::Status::internal(fmt::format("camera plugin: {}", e.what()));
  } catch (...) {
    *args->result = core::Status::internal("camera plugin: unknown exception");
  }
  return camera::detail::kPluginFingerprint;
}
