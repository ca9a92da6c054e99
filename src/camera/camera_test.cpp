#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <opencv2/imgcodecs.hpp>

#include "camera/vision.hpp"
#include "camera/camera_test_util.hpp"
#include "camera/detail/camera.hpp"

namespace outpost::camera {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

// The same frame again and again, paced like the real sources.
class StaticSource : public FrameSource {
 public:
  StaticSource(cv::Mat frame, int fps) : frame_(std::move(frame)), pacer_(fps) {}
  core::Status open() override { return core::Status::ok(); }
  core::Result<cv::Mat> read() override {
    pacer_.wait();
    return frame_.clone();
  }
  std::string describe() const override { return "static"; }
  void interrupt() override { pacer_.interrupt(); }

 private:
  cv::Mat frame_;
  detail::Pacer pacer_;
};

// Fails its first `failures` reads (and the opens after them), then delivers the synthetic
// scene.
class FlakySource : public FrameSource {
 public:
  FlakySource(int failures, int fps) : failures_(failures), fps_(fps), pacer_(fps) {}
  core::Status open() override {
    ++opens;
    if (broken_ && failures_ > 0) {
      --failures_;
      return core::Status::unavailable("flaky: still gone");
    }
    broken_ = false;
    return core::Status::ok();
  }
  core::Result<cv::Mat> read() override {
    pacer_.wait();
    if (failures_ > 0) {
      --failures_;
      broken_ = true;
      return core::Status::unavailable("flaky: device went away");
    }
    cv::Mat f;
    detail::render_synthetic({160, 120}, fps_, n_++, f);
    return f;
  }
  std::string describe() const override { return "flaky"; }
  void interrupt() override { pacer_.interrupt(); }
  std::atomic<int> opens{0};

 private:
  int failures_;
  int fps_;
  detail::Pacer pacer_;
  bool broken_ = false;
  uint64_t n_ = 0;
};

config::CameraConfig camera_cfg(int w = 160, int h = 120, int fps = 50) {
  config::CameraConfig c;
  c.source = "synthetic";
  c.width = w;
  c.height = h;
  c.fps = fps;
  return c;
}

config::MotionConfig motion_off() {
  config::MotionConfig m;
  m.enabled = false;
  return m;
}

// Waits up to `limit` for `pred`.
template <typename P>
bool eventually(P pred, std::chrono::milliseconds limit = 3s) {
  const auto end = Steady::now() + limit;
  while (Steady::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

std::unique_ptr<Camera> make(core::Registry& reg, std::unique_ptr<FrameSource> src,
                             const config::CameraConfig& c, const config::MotionConfig& m = {},
                             const config::FaceConfig& f = {}, CameraEvents ev = {}) {
  auto cam = src ? create_camera(std::move(src), c, m, f, std::move(ev), reg)
                 : create_camera(c, m, f, std::move(ev), reg);
  EXPECT_TRUE(cam.is_ok()) << cam.status().to_string();
  return cam ? std::move(*cam) : nullptr;
}

// A metric's value as rendered (the registry hands out metrics only when registering them).
uint64_t counter(const core::Registry& reg, const std::string& name) {
  const std::string text = reg.render();
  const size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return 0;
  return std::stoull(text.substr(at + name.size() + 2));
}

TEST(Camera, WatchersAreNotifiedAndLatestDecodesToTheConfiguredSize) {
  core::Registry reg;
  auto cam = make(reg, nullptr, camera_cfg(320, 240, 30), motion_off());
  ASSERT_TRUE(cam);
  EXPECT_EQ(cam->latest(), nullptr);
  std::atomic<int> notified{0};
  auto w = cam->watch([&] { ++notified; });
  cam->start();
  ASSERT_TRUE(eventually([&] { return notified >= 3; }));
  JpegPtr j = cam->latest();
  ASSERT_TRUE(j);
  cv::Mat img = cv::imdecode(
      cv::Mat(1, static_cast<int>(j->data.size()), CV_8U, const_cast<char*>(j->data.data())),
      cv::IMREAD_COLOR);
  EXPECT_EQ(img.size(), cv::Size(320, 240));
  EXPECT_EQ(j->width, 320);
  EXPECT_EQ(j->height, 240);
  EXPECT_GE(j->seq, 3u);
  // After the handle is gone, no more notifications.
  w.reset();
  const int n = notified;
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(notified, n);
  auto h = cam->health();
  EXPECT_TRUE(h.running);
  EXPECT_EQ(h.detail, "ok");
  EXPECT_NE(h.source.find("synthetic"), std::string::npos);
  EXPECT_GT(h.fps, 10);
  cam->stop();
  EXPECT_FALSE(cam->health().running);
  EXPECT_NE(reg.render().find("outpost_camera_fps"), std::string::npos);
}

TEST(Camera, CaptureReturnsAFreshFrame) {
  core::Registry reg;
  auto cam = make(reg, nullptr, camera_cfg(160, 120, 20), motion_off());
  ASSERT_TRUE(cam);
  cam->start();
  const core::TimePoint before = core::now();
  auto a = cam->capture(2s);
  ASSERT_TRUE(a) << a.status().to_string();
  EXPECT_GE((*a)->ts, before);
  auto b = cam->capture(2s);
  ASSERT_TRUE(b);
  EXPECT_GT((*b)->seq, (*a)->seq);
  EXPECT_GT((*b)->ts, (*a)->ts);
  cam->stop();
  auto c = cam->capture(100ms);
  EXPECT_EQ(c.status().code(), core::Code::kUnavailable);
}

TEST(Camera, EncodesEachFrameOnceWhateverTheNumberOfWatchers) {
  core::Registry reg;
  auto cam = make(reg, nullptr, camera_cfg(160, 120, 100));
  ASSERT_TRUE(cam);
  std::atomic<int> calls{0};
  std::vector<Camera::Watch> watches;
  for (int i = 0; i < 8; ++i) watches.push_back(cam->watch([&] { ++calls; }));
  cam->start();
  ASSERT_TRUE(eventually([&] { return counter(reg, "outpost_camera_frames_total") >= 20; }));
  cam->stop();
  const uint64_t frames = counter(reg, "outpost_camera_frames_total");
  EXPECT_EQ(counter(reg, "outpost_camera_encoded_total"), frames);
  EXPECT_EQ(static_cast<uint64_t>(calls.load()), 8 * frames);
}

TEST(Camera, EncodesNothingWhenNobodyWantsJpeg) {
  core::Registry reg;
  auto cam = make(reg, nullptr, camera_cfg(160, 120, 100), motion_off());
  ASSERT_TRUE(cam);
  cam->start();
  ASSERT_TRUE(eventually([&] { return counter(reg, "outpost_camera_frames_total") >= 10; }));
  cam->stop();
  EXPECT_EQ(counter(reg, "outpost_camera_encoded_total"), 0u);
  EXPECT_EQ(cam->latest(), nullptr);
}

TEST(Camera, AFailingSourceIsReopenedAndHealthSaysSo) {
  core::Registry reg;
  auto c = camera_cfg(160, 120, 50);
  c.reopen_max_backoff = 200ms;
  auto flaky = std::make_unique<FlakySource>(4, 50);  // one read failure, then 3 failed opens
  FlakySource* src = flaky.get();
  auto cam = make(reg, std::move(flaky), c, motion_off());
  ASSERT_TRUE(cam);
  cam->start();
  ASSERT_TRUE(eventually([&] { return cam->health().detail.find("unavailable") == 0; }));
  auto h = cam->health();
  EXPECT_FALSE(h.running);
  EXPECT_NE(h.detail.find("flaky"), std::string::npos) << h.detail;
  // Backoff 100, 200, 200, 200 ms: back within a second.
  ASSERT_TRUE(eventually([&] { return cam->health().running; }, 3s));
  h = cam->health();
  EXPECT_EQ(h.detail, "ok");
  EXPECT_EQ(h.reopens, 4u);
  EXPECT_EQ(counter(reg, "outpost_camera_reopens_total"), 4u);
  EXPECT_EQ(src->opens, 5);
  cam->stop();
}

TEST(Camera, MotionEventsComeFromAMovingSceneWithASnapshot) {
  core::Registry reg;
  std::mutex mu;
  std::vector<MotionEvent> events;
  std::vector<JpegPtr> snaps;
  CameraEvents ev;
  ev.on_motion = [&](const MotionEvent& e, JpegPtr snap) {
    std::lock_guard lk(mu);
    events.push_back(e);
    snaps.push_back(std::move(snap));
  };
  auto cam = make(reg, nullptr, camera_cfg(320, 240, 30), config::MotionConfig{}, {}, ev);
  ASSERT_TRUE(cam);
  cam->start();
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lk(mu);
    return !events.empty();
  }));
  {
    std::lock_guard lk(mu);
    EXPECT_FALSE(events[0].ended);
    EXPECT_GT(events[0].peak_area, 0);
    EXPECT_FALSE(events[0].boxes.empty());
    ASSERT_TRUE(snaps[0]);
    EXPECT_EQ(snaps[0]->width, 320);
  }
  EXPECT_EQ(counter(reg, "outpost_motion_events_total"), 1u);
  // Switching detection off ends the event in progress.
  cam->set_motion_enabled(false);
  EXPECT_FALSE(cam->motion_enabled());
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lk(mu);
    return events.size() >= 2;
  }));
  cam->stop();
  std::lock_guard lk(mu);
  EXPECT_TRUE(events[1].ended);
  EXPECT_EQ(snaps[1], nullptr);
}

TEST(Camera, NoMotionEventsFromAStaticScene) {
  core::Registry reg;
  std::atomic<int> calls{0};
  CameraEvents ev;
  ev.on_motion = [&](const MotionEvent&, JpegPtr) { ++calls; };
  auto cam =
      make(reg, std::make_unique<StaticSource>(testing::textured_background({320, 240}), 100),
           camera_cfg(320, 240, 100), config::MotionConfig{}, {}, ev);
  ASSERT_TRUE(cam);
  cam->start();
  ASSERT_TRUE(eventually([&] { return counter(reg, "outpost_camera_frames_total") >= 50; }));
  cam->stop();
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(counter(reg, "outpost_motion_events_total"), 0u);
}

TEST(Camera, FacesAreReportedOnceWhileTheSameFacesStay) {
  core::Registry reg;
  const std::string photo = testing::testdata("astronaut.png");
  ASSERT_FALSE(cv::imread(photo).empty()) << photo << " missing: see faces_test";
  std::atomic<int> calls{0};
  std::atomic<size_t> count{0};
  CameraEvents ev;
  ev.on_faces = [&](const std::vector<Box>& faces, core::TimePoint) {
    count = faces.size();
    ++calls;
  };
  auto c = camera_cfg(512, 512, 50);
  c.source = "file:" + photo;
  config::FaceConfig f;
  f.enabled = true;
  f.interval = 50ms;
  auto cam = make(reg, nullptr, c, motion_off(), f, ev);
  ASSERT_TRUE(cam);
  cam->start();
  ASSERT_TRUE(eventually([&] { return calls > 0; }));
  std::this_thread::sleep_for(500ms);  // ~10 more detections of the same faces
  cam->stop();
  EXPECT_EQ(calls, 1);
  EXPECT_GE(count, 1u);
  EXPECT_EQ(counter(reg, "outpost_face_detections_total"), 1u);
}

TEST(Camera, StopIsPrompt) {
  core::Registry reg;
  // Paced at 1 fps: stop must not wait for the next frame.
  auto cam = make(reg, nullptr, camera_cfg(160, 120, 1), motion_off());
  ASSERT_TRUE(cam);
  cam->start();
  ASSERT_TRUE(eventually([&] { return counter(reg, "outpost_camera_frames_total") >= 1; }));
  auto t0 = Steady::now();
  cam->stop();
  EXPECT_LT(Steady::now() - t0, 200ms);
  cam->stop();  // idempotent

  // In a long reopen backoff.
  auto c = camera_cfg();
  c.reopen_max_backoff = 30s;
  auto cam2 = make(reg, std::make_unique<FlakySource>(1000, 50), c, motion_off());
  ASSERT_TRUE(cam2);
  cam2->start();
  std::this_thread::sleep_for(400ms);
  t0 = Steady::now();
  cam2->stop();
  EXPECT_LT(Steady::now() - t0, 200ms);

  // Starts again after a stop.
  cam->start();
  EXPECT_TRUE(cam->capture(3s));
  cam->stop();
}

TEST(Camera, CreateRejectsBadSettings) {
  core::Registry reg;
  auto c = camera_cfg();
  c.source = "bogus";
  EXPECT_EQ(create_camera(c, {}, {}, {}, reg).status().code(), core::Code::kInvalid);
  config::FaceConfig f;
  f.cascade = "/nonexistent.xml";
  EXPECT_EQ(create_camera(camera_cfg(), {}, f, {}, reg).status().code(), core::Code::kUnavailable);
  config::MotionConfig m;
  m.masks = {"nope"};
  EXPECT_EQ(create_camera(camera_cfg(), m, {}, {}, reg).status().code(), core::Code::kInvalid);
}

}  // namespace
}  // namespace outpost::camera
