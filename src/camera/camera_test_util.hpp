// Helpers for camera/'s unit tests: a temporary directory and test scenes.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

namespace outpost::camera::testing {

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "camera_test.XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A textured BGR background (smooth noise, values about 60..140), the same for a given seed.
inline cv::Mat textured_background(cv::Size size, uint64_t seed = 1) {
  cv::RNG rng(seed);
  cv::Mat coarse(size.height / 16, size.width / 16, CV_8UC3);
  rng.fill(coarse, cv::RNG::UNIFORM, 60, 140);
  cv::Mat bg;
  cv::resize(coarse, bg, size, 0, 0, cv::INTER_CUBIC);
  return bg;
}

// Where CMake put the fetched photographs (src/camera/testdata/fetch-images).
inline std::string testdata(const std::string& name) {
#ifdef OUTPOST_CAMERA_TESTDATA
  return std::string(OUTPOST_CAMERA_TESTDATA) + "/" + name;
#else
  return name;
#endif
}

}  // namespace outpost::camera::testing
