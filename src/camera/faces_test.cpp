#include <gtest/gtest.h>

#include <filesystem>

#include <opencv2/imgcodecs.hpp>

#include "camera/vision.hpp"
#include "camera/camera_test_util.hpp"
#include "camera/detail/camera.hpp"

namespace outpost::camera {
namespace {

// A photograph fetched by src/camera/testdata/fetch-images into the build tree.
cv::Mat photo(const std::string& name) {
  const std::string path = testing::testdata(name);
  cv::Mat img = cv::imread(path, cv::IMREAD_COLOR);
  EXPECT_FALSE(img.empty()) << path << " is missing: run src/camera/testdata/fetch-images "
                            << std::filesystem::path(path).parent_path().string()
                            << " (it downloads Debian's python3-skimage)";
  return img;
}

std::unique_ptr<FaceDetector> detector() {
  auto d = FaceDetector::create(config::FaceConfig{});
  EXPECT_TRUE(d.is_ok()) << d.status().to_string();
  return d ? std::move(*d) : nullptr;
}

TEST(FaceDetector, TheFrontalFaceCascadeLoads) {
  config::FaceConfig cfg;
  EXPECT_EQ(cfg.cascade.rfind("/usr/share/opencv4/haarcascades/", 0), 0u);
  EXPECT_TRUE(FaceDetector::create(cfg).is_ok());
}

TEST(FaceDetector, AMissingCascadeIsUnavailableAndNamesThePath) {
  config::FaceConfig cfg;
  cfg.cascade = "/nonexistent/cascade.xml";
  auto d = FaceDetector::create(cfg);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.status().code(), core::Code::kUnavailable);
  EXPECT_NE(d.status().message().find(cfg.cascade), std::string::npos);
}

TEST(FaceDetector, AGarbageCascadeIsUnavailable) {
  testing::TempDir dir;
  {
    std::FILE* f = std::fopen(dir.file("bad.xml").c_str(), "w");
    ASSERT_TRUE(f);
    std::fputs("<opencv_storage><cascade>nope</cascade></opencv_storage>", f);
    std::fclose(f);
  }
  config::FaceConfig cfg;
  cfg.cascade = dir.file("bad.xml");
  EXPECT_EQ(FaceDetector::create(cfg).status().code(), core::Code::kUnavailable);
}

TEST(FaceDetector, FindsTheFaceInAPhotograph) {
  auto d = detector();
  cv::Mat img = photo("astronaut.png");  // 512x512, one face
  ASSERT_TRUE(d && !img.empty());
  auto faces = d->detect(img);
  ASSERT_FALSE(faces.empty());
  // The face is around (224, 112) in the 512 px picture; boxes are in its pixels.
  bool found = false;
  for (const auto& b : faces) {
    EXPECT_GE(b.x, 0);
    EXPECT_LE(b.x + b.w, img.cols);
    if (b.x <= 224 && 224 <= b.x + b.w && b.y <= 112 && 112 <= b.y + b.h && b.w >= 60 && b.w <= 160)
      found = true;
  }
  EXPECT_TRUE(found);
}

TEST(FaceDetector, FindsNoFaceInPhotographsWithoutOne) {
  auto d = detector();
  ASSERT_TRUE(d);
  for (std::string name : {"coffee.png", "rocket.jpg"}) {
    cv::Mat img = photo(name);
    ASSERT_FALSE(img.empty());
    EXPECT_TRUE(d->detect(img).empty()) << name;
  }
  cv::Mat synthetic;
  detail::render_synthetic({640, 480}, 15, 10, synthetic);
  EXPECT_TRUE(d->detect(synthetic).empty());
}

TEST(FaceDetector, BadSettingsAreInvalid) {
  config::FaceConfig cfg;
  cfg.scale_factor = 1.0;
  EXPECT_EQ(FaceDetector::create(cfg).status().code(), core::Code::kInvalid);
}

}  // namespace
}  // namespace outpost::camera
