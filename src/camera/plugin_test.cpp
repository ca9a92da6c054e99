// load_camera(): the real plugin through dlopen(), and each way loading it can fail. Links only
// the OpenCV-free outpost_camera, as the server does.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <exception>
#include <filesystem>
#include <string>

#include "camera/camera.hpp"

namespace outpost::camera {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

config::CameraConfig synthetic(const std::string& plugin) {
  config::CameraConfig c;
  c.source = "synthetic";
  c.width = 160;
  c.height = 120;
  c.fps = 30;
  c.plugin = plugin;
  return c;
}

core::Status load(const config::CameraConfig& c) {
  core::Registry reg;
  auto cam = load_camera(c, {}, {}, {}, reg);
  return cam.status();
}

TEST(CameraPlugin, TheRealPluginMakesAWorkingCamera) {
  core::Registry reg;
  int motions = 0;
  CameraEvents ev;
  ev.on_motion = [&](const MotionEvent&, JpegPtr) { ++motions; };
  auto cam = load_camera(synthetic(OUTPOST_CAMERA_PLUGIN), {}, {}, std::move(ev), reg);
  ASSERT_TRUE(cam.is_ok()) << cam.status().to_string();
  (*cam)->start();
  auto frame = (*cam)->capture(5s);
  ASSERT_TRUE(frame.is_ok()) << frame.status().to_string();
  EXPECT_EQ((*frame)->width, 160);
  EXPECT_EQ((*frame)->data.substr(0, 2), "\xff\xd8");  // a JPEG
  EXPECT_NE((*cam)->health().source.find("synthetic"), std::string::npos);
  (*cam)->stop();
  // The plugin's metrics land in the caller's registry.
  EXPECT_NE(reg.render().find("outpost_camera_frames_total"), std::string::npos);
}

TEST(CameraPlugin, ErrorsOfTheCameraComeBackThroughThePlugin) {
  auto c = synthetic(OUTPOST_CAMERA_PLUGIN);
  c.source = "bogus";
  EXPECT_EQ(load(c).code(), core::Code::kInvalid);
}

TEST(CameraPlugin, AMissingOverrideIsNamed) {
  const std::string path = "/nonexistent/dir/outpost-camera.so";
  auto s = load(synthetic(path));
  EXPECT_EQ(s.code(), core::Code::kUnavailable);
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
}

TEST(CameraPlugin, ARelativeOverrideIsTakenFromTheWorkingDirectory) {
  // Not from the library search path, as dlopen() would for a bare name.
  auto s = load(synthetic("no-such-plugin.so"));
  EXPECT_EQ(s.code(), core::Code::kUnavailable);
  const std::string abs = (fs::current_path() / "no-such-plugin.so").string();
  EXPECT_NE(s.message().find(abs), std::string::npos) << s.message();
}

TEST(CameraPlugin, ASharedObjectWithoutTheFactoryIsRefused) {
  Dl_info info{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(&std::terminate), &info), 0);  // libstdc++
  auto s = load(synthetic(info.dli_fname));
  EXPECT_EQ(s.code(), core::Code::kUnavailable);
  EXPECT_NE(s.message().find(info.dli_fname), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("outpost_camera_create_v1"), std::string::npos) << s.message();
}

TEST(CameraPlugin, APluginFromAnotherBuildIsRefused) {
  auto s = load(synthetic(OUTPOST_SKEWED_PLUGIN));
  EXPECT_EQ(s.code(), core::Code::kUnavailable);
  EXPECT_NE(s.message().find(OUTPOST_SKEWED_PLUGIN), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("another version"), std::string::npos) << s.message();
}

TEST(CameraPlugin, WithoutOverrideItLooksBesideTheExecutableThenInLibOutpost) {
  // This test binary's directory has no plugin (the build writes it beside `outpost`).
  const fs::path dir = fs::read_symlink("/proc/self/exe").parent_path();
  ASSERT_FALSE(fs::exists(dir / "outpost-camera.so"));
  auto s = load(synthetic(""));
  EXPECT_EQ(s.code(), core::Code::kUnavailable);
  EXPECT_NE(s.message().find((dir / "outpost-camera.so").string()), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find((dir.parent_path() / "lib/outpost/outpost-camera.so").string()),
            std::string::npos)
      << s.message();
}

}  // namespace
}  // namespace outpost::camera
