#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include "camera/vision.hpp"
#include "camera/camera_test_util.hpp"
#include "camera/detail/camera.hpp"

namespace outpost::camera {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;
using testing::TempDir;

config::CameraConfig cfg_for(const std::string& source, int w = 320, int h = 240, int fps = 200) {
  config::CameraConfig c;
  c.source = source;
  c.width = w;
  c.height = h;
  c.fps = fps;
  return c;
}

std::unique_ptr<FrameSource> opened(const config::CameraConfig& c) {
  auto src = make_source(c);
  EXPECT_TRUE(src.is_ok()) << src.status().to_string();
  if (!src) return nullptr;
  auto st = (*src)->open();
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return std::move(*src);
}

TEST(Sources, SyntheticFramesHaveTheConfiguredSizeAndChange) {
  auto src = opened(cfg_for("synthetic", 320, 240));
  ASSERT_TRUE(src);
  auto a = src->read();
  auto b = src->read();
  auto c = src->read();
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->size(), cv::Size(320, 240));
  EXPECT_EQ(a->type(), CV_8UC3);
  EXPECT_GT(cv::norm(*a, *c, cv::NORM_L1), 0);
  EXPECT_NE(src->describe().find("synthetic 320x240@200"), std::string::npos);
}

TEST(Sources, SyntheticSceneIsDeterministicPerFrameNumber) {
  cv::Mat a, b, c;
  detail::render_synthetic({640, 480}, 15, 42, a);
  detail::render_synthetic({640, 480}, 15, 42, b);
  detail::render_synthetic({640, 480}, 15, 43, c);
  EXPECT_EQ(cv::norm(a, b, cv::NORM_INF), 0);
  EXPECT_GT(cv::norm(a, c, cv::NORM_L1), 0);
}

TEST(Sources, SyntheticIsPacedAtTheConfiguredRate) {
  auto src = opened(cfg_for("synthetic", 160, 120, 20));
  ASSERT_TRUE(src);
  const auto t0 = Steady::now();
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(src->read());
  const auto took = Steady::now() - t0;
  EXPECT_GE(took, 240ms);  // 5 periods of 50 ms after the first frame
  EXPECT_LT(took, 1s);
}

TEST(Sources, InterruptWakesAPacedRead) {
  auto src = opened(cfg_for("synthetic", 160, 120, 1));
  ASSERT_TRUE(src);
  ASSERT_TRUE(src->read());  // the first frame comes at once; the next is due in 1 s
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    src->interrupt();
  });
  const auto t0 = Steady::now();
  EXPECT_TRUE(src->read());
  EXPECT_LT(Steady::now() - t0, 500ms);
  t.join();
}

TEST(Sources, FileWithAStillImageRepeatsItAtTheConfiguredSize) {
  TempDir dir;
  cv::Mat img = testing::textured_background({200, 160});
  ASSERT_TRUE(cv::imwrite(dir.file("still.png"), img));
  auto src = opened(cfg_for("file:" + dir.file("still.png"), 100, 80));
  ASSERT_TRUE(src);
  auto first = src->read();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->size(), cv::Size(100, 80));
  for (int i = 0; i < 4; ++i) {
    auto f = src->read();
    ASSERT_TRUE(f);
    EXPECT_EQ(cv::norm(*f, *first, cv::NORM_INF), 0);
  }
}

TEST(Sources, FileWithAVideoLoopsAtItsEnd) {
  TempDir dir;
  const std::string path = dir.file("clip.avi");
  {
    cv::VideoWriter w(path, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10, {160, 120});
    ASSERT_TRUE(w.isOpened());
    for (int i = 0; i < 5; ++i) w.write(cv::Mat(120, 160, CV_8UC3, cv::Scalar::all(30 + 40 * i)));
  }
  auto src = opened(cfg_for("file:" + path, 80, 60));
  ASSERT_TRUE(src);
  std::vector<double> levels;
  for (int i = 0; i < 12; ++i) {
    auto f = src->read();
    ASSERT_TRUE(f) << f.status().to_string();
    EXPECT_EQ(f->size(), cv::Size(80, 60));
    levels.push_back(cv::mean(*f)[0]);
  }
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(levels[i], 30 + 40 * i, 4) << i;
    EXPECT_NEAR(levels[i + 5], levels[i], 2) << i;  // the second pass repeats the first
  }
}

TEST(Sources, MissingFileOrDeviceIsUnavailableOnOpen) {
  for (std::string spec : {"file:/nonexistent/clip.avi", "v4l2:/dev/video-outpost-none"}) {
    auto src = make_source(cfg_for(spec));
    ASSERT_TRUE(src) << spec;
    auto st = (*src)->open();
    EXPECT_EQ(st.code(), core::Code::kUnavailable) << spec;
    EXPECT_NE(st.message().find(spec), std::string::npos) << st.message();
  }
}

TEST(Sources, GstreamerPipelineThatCannotStartIsUnavailable) {
  auto src = make_source(cfg_for("gst:outpost-no-such-element ! appsink"));
  ASSERT_TRUE(src);
  EXPECT_EQ((*src)->open().code(), core::Code::kUnavailable);
}

TEST(Sources, GstreamerPipelineDeliversFramesOfTheConfiguredSize) {
  // videotestsrc comes with Debian's gstreamer1.0-plugins-base, which the build does not need.
  auto src = make_source(cfg_for("gst:videotestsrc num-buffers=3 ! videoconvert ! appsink"));
  ASSERT_TRUE(src);
  auto st = (*src)->open();
  if (!st) GTEST_SKIP() << st.to_string() << " (gstreamer1.0-plugins-base missing?)";
  auto f = (*src)->read();
  ASSERT_TRUE(f) << f.status().to_string();
  EXPECT_EQ(f->size(), cv::Size(320, 240));
  // The pipeline ends after 3 buffers: unavailable, for the capture thread to reopen it.
  core::Status end;
  for (int i = 0; i < 5 && end.is_ok(); ++i) end = (*src)->read().status();
  EXPECT_EQ(end.code(), core::Code::kUnavailable);
}

TEST(Sources, MalformedSpecsAreInvalid) {
  for (std::string spec : {"", "bogus", "Synthetic", "synthetic2", "file:", "v4l2:", "v4l2:video0",
                           "gst:", "gst:   ", "off", "auto:"}) {
    auto src = make_source(cfg_for(spec));
    ASSERT_FALSE(src) << "'" << spec << "'";
    EXPECT_EQ(src.status().code(), core::Code::kInvalid) << spec;
  }
  auto zero = cfg_for("synthetic");
  zero.fps = 0;
  EXPECT_EQ(make_source(zero).status().code(), core::Code::kInvalid);
  for (std::string spec :
       {"synthetic", "auto", "file:/x.png", "v4l2:/dev/video3", "gst:videotestsrc ! appsink"})
    EXPECT_TRUE(make_source(cfg_for(spec))) << spec;
}

TEST(Sources, AutoFallsBackToSyntheticWithoutVideo0) {
  if (std::filesystem::exists("/dev/video0")) GTEST_SKIP() << "this machine has /dev/video0";
  auto src = make_source(cfg_for("auto"));
  ASSERT_TRUE(src);
  EXPECT_NE((*src)->describe().find("synthetic"), std::string::npos);
}

}  // namespace
}  // namespace outpost::camera
