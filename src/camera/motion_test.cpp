#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include "camera/vision.hpp"
#include "camera/camera_test_util.hpp"
#include "camera/detail/camera.hpp"

namespace outpost::camera {
namespace {

using namespace std::chrono_literals;
using testing::textured_background;

const cv::Size kFrame{640, 480};

std::unique_ptr<MotionDetector> detector(const config::MotionConfig& cfg = {}) {
  auto d = MotionDetector::create(cfg, kFrame);
  EXPECT_TRUE(d.is_ok()) << d.status().to_string();
  return d ? std::move(*d) : nullptr;
}

cv::Mat with_rect(const cv::Mat& bg, cv::Rect r, cv::Scalar color = cv::Scalar::all(230)) {
  cv::Mat f = bg.clone();
  cv::rectangle(f, r, color, cv::FILLED);
  return f;
}

bool contains(const Box& b, cv::Rect r, int slack) {
  return b.x <= r.x + slack && b.y <= r.y + slack && b.x + b.w >= r.br().x - slack &&
         b.y + b.h >= r.br().y - slack;
}

TEST(MotionDetector, StaticFramesHaveNoMotion) {
  auto d = detector();
  ASSERT_TRUE(d);
  const cv::Mat bg = textured_background(kFrame);
  for (int i = 0; i < 30; ++i) {
    auto r = d->process(bg);
    EXPECT_FALSE(r.motion) << i;
    EXPECT_EQ(r.area, 0) << i;
    EXPECT_TRUE(r.boxes.empty());
  }
}

TEST(MotionDetector, SensorNoiseIsNotMotion) {
  auto d = detector();
  ASSERT_TRUE(d);
  const cv::Mat bg = textured_background(kFrame);
  cv::RNG rng(3);
  for (int i = 0; i < 30; ++i) {
    cv::Mat noise(kFrame, CV_16SC3), f;
    rng.fill(noise, cv::RNG::NORMAL, 0, 4);
    cv::add(bg, noise, f, cv::noArray(), CV_8UC3);
    EXPECT_FALSE(d->process(f).motion) << i;
  }
}

TEST(MotionDetector, AMovingRectangleIsMotionWithABoxAroundIt) {
  auto d = detector();
  ASSERT_TRUE(d);
  const cv::Mat bg = textured_background(kFrame);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(d->process(bg).motion);
  for (int i = 0; i < 10; ++i) {
    const cv::Rect rect(100 + 12 * i, 150, 80, 80);
    auto r = d->process(with_rect(bg, rect));
    ASSERT_TRUE(r.motion) << i;
    EXPECT_GT(r.area, 0.01);
    ASSERT_FALSE(r.boxes.empty()) << i;
    // The largest box covers the rectangle (dilation and the analysis scale add a few
    // pixels) and not much more than it and its trail.
    EXPECT_TRUE(contains(r.boxes[0], rect, 4)) << i << ": " << r.boxes[0].x << "," << r.boxes[0].y
                                               << " " << r.boxes[0].w << "x" << r.boxes[0].h;
    EXPECT_LT(r.boxes[0].w, 80 + 12 * i + 40);
    EXPECT_LT(r.boxes[0].h, 120);
  }
}

TEST(MotionDetector, FirstFrameOnlyInitializes) {
  auto d = detector();
  ASSERT_TRUE(d);
  const cv::Mat bg = textured_background(kFrame);
  EXPECT_FALSE(d->process(with_rect(bg, {0, 0, 300, 300})).motion);
  EXPECT_TRUE(d->process(bg).motion);  // the rectangle left: a change against the background
}

TEST(MotionDetector, SmallChangesUnderMinAreaAreNotMotion) {
  auto d = detector();  // min_area 0.005 of 640x480 = 1536 px
  ASSERT_TRUE(d);
  const cv::Mat bg = textured_background(kFrame);
  d->process(bg);
  EXPECT_FALSE(d->process(with_rect(bg, {300, 200, 20, 20})).motion);  // 400 px
}

TEST(MotionDetector, ChangesInsideAMaskAreIgnored) {
  const cv::Mat bg = textured_background(kFrame);
  const cv::Rect change(120, 120, 100, 100);
  for (std::string mask : {"100,100,140,140", "90,90 250,95 245,250 95,245", "0,0 500,0 0,500"}) {
    config::MotionConfig cfg;
    cfg.masks = {"600,0,40,40", mask};
    auto d = detector(cfg);
    ASSERT_TRUE(d) << mask;
    d->process(bg);
    for (int i = 0; i < 5; ++i) {
      auto r = d->process(with_rect(bg, change, cv::Scalar::all(10 + 50 * i)));
      EXPECT_FALSE(r.motion) << mask << " " << i;
      EXPECT_EQ(r.area, 0) << mask;
    }
    // The same change outside the mask is motion.
    EXPECT_TRUE(d->process(with_rect(bg, {450, 300, 100, 100})).motion) << mask;
  }
  // And without a mask, the change is motion (the test above is not vacuous).
  auto d = detector();
  d->process(bg);
  EXPECT_TRUE(d->process(with_rect(bg, change)).motion);
}

TEST(MotionDetector, SlowGlobalBrightnessDriftIsNotMotion) {
  auto d = detector();
  ASSERT_TRUE(d);
  const cv::Mat bg = textured_background(kFrame);  // 60..140: +100 stays below 255
  for (int i = 0; i <= 100; ++i) {
    cv::Mat f;
    bg.convertTo(f, CV_8UC3, 1.0, i);  // +1 level per frame
    auto r = d->process(f);
    EXPECT_FALSE(r.motion) << "frame " << i << " area " << r.area;
  }
  // A sudden change of the whole scene is motion: 60 levels darker than the last frame.
  cv::Mat darker;
  bg.convertTo(darker, CV_8UC3, 1.0, 40);
  EXPECT_TRUE(d->process(darker).motion);
}

TEST(MotionDetector, TheBackgroundAbsorbsAnObjectThatStays) {
  auto d = detector();
  ASSERT_TRUE(d);
  const cv::Mat bg = textured_background(kFrame);
  d->process(bg);
  const cv::Mat parked = with_rect(bg, {200, 200, 120, 80});
  EXPECT_TRUE(d->process(parked).motion);
  bool quiet = false;
  for (int i = 0; i < 200 && !quiet; ++i) quiet = !d->process(parked).motion;
  EXPECT_TRUE(quiet);
}

TEST(MotionDetector, AcceptsGrayAndOtherSizes) {
  auto d = detector();
  ASSERT_TRUE(d);
  const cv::Mat bg = textured_background(kFrame);
  cv::Mat gray, small;
  cv::cvtColor(bg, gray, cv::COLOR_BGR2GRAY);
  d->process(gray);
  cv::cvtColor(with_rect(bg, {100, 100, 100, 100}), gray, cv::COLOR_BGR2GRAY);
  EXPECT_TRUE(d->process(gray).motion);
  cv::resize(bg, small, {320, 240});
  d->process(small);  // resized to 640x480 first: no crash, sane result
  EXPECT_TRUE(d->process(cv::Mat()).boxes.empty());
}

TEST(MotionDetector, BadSettingsAreInvalid) {
  for (std::string mask : {"1,2,3", "a,b,c,d", "1,2 3,4", "10,10,0,5", "1,2,3,4,5", "-1,0,5,5",
                           "1,2 3,4 5", "1;2 3,4 5,6", ""}) {
    config::MotionConfig cfg;
    cfg.masks = {mask};
    auto d = MotionDetector::create(cfg, kFrame);
    ASSERT_FALSE(d) << "'" << mask << "'";
    EXPECT_EQ(d.status().code(), core::Code::kInvalid);
  }
  config::MotionConfig even;
  even.blur = 4;
  EXPECT_FALSE(MotionDetector::create(even, kFrame));
  config::MotionConfig alpha;
  alpha.background_alpha = 0;
  EXPECT_FALSE(MotionDetector::create(alpha, kFrame));
  EXPECT_FALSE(MotionDetector::create({}, {0, 0}));
}

TEST(MaskParser, ReadsRectanglesAndPolygons) {
  auto r = detail::parse_mask("10,20,30,40");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, (std::vector<cv::Point>{{10, 20}, {40, 20}, {40, 60}, {10, 60}}));
  auto p = detail::parse_mask("  1,2   3,4 5,6 ");
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, (std::vector<cv::Point>{{1, 2}, {3, 4}, {5, 6}}));
}

// Tracker: times are given.
MotionResult moving(double area) { return {true, area, {{area > 0.1 ? 1 : 2, 0, 10, 10}}}; }
const MotionResult kQuiet{};

TEST(MotionTracker, StartsAfterConfirmFramesAndEndsAfterCooldown) {
  config::MotionConfig cfg;
  cfg.confirm_frames = 2;
  cfg.cooldown = 2s;
  MotionTracker t(cfg);
  const core::TimePoint t0 = core::from_micros(1'000'000'000'000);
  EXPECT_FALSE(t.feed(moving(0.02), t0));
  auto start = t.feed(moving(0.05), t0 + 100ms);
  ASSERT_TRUE(start);
  EXPECT_FALSE(start->ended);
  EXPECT_EQ(start->start, t0);
  EXPECT_DOUBLE_EQ(start->peak_area, 0.05);
  EXPECT_FALSE(t.feed(moving(0.2), t0 + 200ms));   // the peak
  EXPECT_FALSE(t.feed(moving(0.03), t0 + 300ms));  // the last motion frame
  EXPECT_FALSE(t.feed(kQuiet, t0 + 1s));
  EXPECT_FALSE(t.feed(kQuiet, t0 + 2200ms));  // 1.9 s after the last motion
  auto end = t.feed(kQuiet, t0 + 2300ms);
  ASSERT_TRUE(end);
  EXPECT_TRUE(end->ended);
  EXPECT_EQ(end->start, t0);
  EXPECT_EQ(end->end, t0 + 300ms);
  EXPECT_DOUBLE_EQ(end->peak_area, 0.2);
  ASSERT_EQ(end->boxes.size(), 1u);
  EXPECT_EQ(end->boxes[0].x, 1);  // the boxes of the peak frame
  EXPECT_FALSE(t.feed(kQuiet, t0 + 10s));
}

TEST(MotionTracker, ASingleMotionFrameIsNoEvent) {
  config::MotionConfig cfg;
  cfg.confirm_frames = 2;
  MotionTracker t(cfg);
  const core::TimePoint t0 = core::from_micros(5'000'000);
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(t.feed(moving(0.1), t0 + i * 200ms));
    EXPECT_FALSE(t.feed(kQuiet, t0 + i * 200ms + 100ms));
  }
}

TEST(MotionTracker, MotionDuringCooldownContinuesTheEvent) {
  config::MotionConfig cfg;
  cfg.confirm_frames = 1;
  cfg.cooldown = 1s;
  MotionTracker t(cfg);
  const core::TimePoint t0 = core::from_micros(5'000'000);
  ASSERT_TRUE(t.feed(moving(0.1), t0));
  EXPECT_FALSE(t.feed(kQuiet, t0 + 900ms));
  EXPECT_FALSE(t.feed(moving(0.1), t0 + 950ms));  // no new start
  EXPECT_FALSE(t.feed(kQuiet, t0 + 1900ms));
  auto end = t.feed(kQuiet, t0 + 1950ms);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->start, t0);
  EXPECT_EQ(end->end, t0 + 950ms);
}

TEST(MotionTracker, FinishEndsTheEventInProgress) {
  MotionTracker t(config::MotionConfig{});
  const core::TimePoint t0 = core::from_micros(5'000'000);
  EXPECT_FALSE(t.finish());
  t.feed(moving(0.1), t0);
  ASSERT_TRUE(t.feed(moving(0.1), t0 + 100ms));
  auto end = t.finish();
  ASSERT_TRUE(end);
  EXPECT_TRUE(end->ended);
  EXPECT_FALSE(t.finish());
}

}  // namespace
}  // namespace outpost::camera
