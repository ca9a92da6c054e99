// load_camera(): finds outpost-camera.so, loads it, and calls its factory.
#include <dlfcn.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "camera/camera.hpp"
#include "camera/detail/plugin.hpp"

namespace outpost::camera {

namespace {

namespace fs = std::filesystem;

constexpr const char* kPluginFile = "outpost-camera.so";

// Where the plugin may be when camera.plugin is not set: beside the executable (the build
// tree, or everything in one directory), then ../lib/outpost/ (an install under a prefix, such
// as /usr/local/bin + /usr/local/lib/outpost). Empty when /proc/self/exe cannot be read.
std::vector<fs::path> default_paths() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  const fs::path dir = exe.parent_path();
  return {dir / kPluginFile, (dir / ".." / "lib" / "outpost" / kPluginFile).lexically_normal()};
}

// (A struct: GCC's -Wshadow objects to Result<T> of a function pointer type.)
struct Plugin {
  detail::PluginFactory create;
};

core::Result<Plugin> open_plugin(const fs::path& path) {
  // RTLD_NOW: a library or symbol the plugin lacks fails here, at start-up, not at the first
  // frame. RTLD_LOCAL: OpenCV's symbols stay out of the global scope. RTLD_NODELETE, and no
  // dlclose anywhere: the plugin's code must outlive every camera, watch handle and metric
  // callback it made.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle == nullptr) {
    const char* err = dlerror();
    std::string why = err ? err : "unknown error";
    // dlerror() usually starts with the path again.
    if (why.rfind(path.string() + ": ", 0) == 0) why.erase(0, path.string().size() + 2);
    return core::Status::unavailable(
        fmt::format("camera: cannot load the camera plugin {}: {}", path.string(), why));
  }
  void* factory = dlsym(handle, detail::kPluginFactory);
  if (factory == nullptr) {
    return core::Status::unavailable(
        fmt::format("camera: {} is not a camera plugin for this version of outpost (it has no {})",
                    path.string(), detail::kPluginFactory));
  }
  return Plugin{reinterpret_cast<detail::PluginFactory>(factory)};
}

}  // namespace

core::Result<std::unique_ptr<Camera>> load_camera(const config::CameraConfig& camera,
                                                  const config::MotionConfig& motion,
                                                  const config::FaceConfig& face,
                                                  CameraEvents events, core::Registry& metrics) {
  fs::path path;
  if (!camera.plugin.empty()) {
    // Made absolute: dlopen() would search the library path for a name without a slash.
    std::error_code ec;
    path = fs::absolute(camera.plugin, ec);
    if (ec) path = camera.plugin;
  } else {
    const auto candidates = default_paths();
    for (const auto& p : candidates) {
      std::error_code ec;
      if (fs::exists(p, ec)) {
        path = p;
        break;
      }
    }
    if (path.empty()) {
      std::vector<std::string> tried;
      for (const auto& p : candidates) tried.push_back(p.string());
      const std::string where = tried.empty()
                                    ? "/proc/self/exe is unreadable"
                                    : "looked for " + fmt::format("{}", fmt::join(tried, " and "));
      return core::Status::unavailable(
          fmt::format("camera: the camera plugin {} is not installed ({}); install it there, set "
                      "camera.plugin to its path, or switch the camera off with camera.source=off",
                      kPluginFile, where));
    }
  }

  auto plugin = open_plugin(path);
  if (!plugin) return plugin.status();

  core::Result<std::unique_ptr<Camera>> result =
      core::Status::internal(fmt::format("camera: the plugin {} made no camera", path.string()));
  const detail::PluginArgs args{&camera, &motion, &face, &events, &metrics, &result};
  const uint64_t theirs = plugin->create(detail::kPluginFingerprint, &args);
  if (theirs != detail::kPluginFingerprint) {
    return core::Status::unavailable(fmt::format(
        "camera: the camera plugin {} was built from another version of outpost (fingerprint "
        "{:016x}, this binary {:016x}); install the plugin built with this binary",
        path.string(), theirs, detail::kPluginFingerprint));
  }
  if (result) spdlog::debug("camera: plugin {}", path.string());
  return result;
}

}  // namespace outpost::camera
