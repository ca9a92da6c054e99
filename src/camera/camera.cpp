// The capture service: one thread owns the source and does all the per-frame work.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <thread>

#include <spdlog/spdlog.h>
#include <opencv2/imgcodecs.hpp>

#include "camera/vision.hpp"

namespace outpost::camera {

namespace {

using Steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Reopen delays start here and double up to CameraConfig::reopen_max_backoff: a USB camera
// that re-enumerates is back within a second, one that is unplugged should not spin.
constexpr std::chrono::milliseconds kFirstBackoff{100};
// Measured fps covers this window...
constexpr auto kFpsWindow = 5s;
// ...and frames count as arriving when the last one is at most this old (or 3 periods).
constexpr auto kStale = 2s;
// While the same number of faces stays in view, it is reported again at most this often.
constexpr auto kFaceRepeat = 10s;

// The part of the camera that watch handles and the fps gauge may reach after the camera is
// gone; they hold it weakly.
struct Shared {
  struct Watcher {
    // Recursive: notify may destroy its own handle, which takes the same lock.
    std::recursive_mutex mu;
    bool alive = true;
    std::function<void()> fn;
  };
  std::mutex mu;
  std::vector<std::shared_ptr<Watcher>> watchers;
  std::deque<Steady::time_point> frame_times;  // within kFpsWindow of the newest

  double fps(Steady::time_point now) {
    std::lock_guard lk(mu);
    while (!frame_times.empty() && now - frame_times.front() > kFpsWindow) frame_times.pop_front();
    if (frame_times.size() < 2 || now - frame_times.back() > kStale) return 0;
    const double span =
        std::chrono::duration<double>(frame_times.back() - frame_times.front()).count();
    return span > 0 ? (frame_times.size() - 1) / span : 0;
  }
};

template <typename F>
void guarded(const char* what, F&& f) {
  // A consumer's exception must not take the capture thread down with it.
  try {
    f();
  } catch (const std::exception& e) {
    spdlog::error("camera: {} threw: {}", what, e.what());
  } catch (...) {
    spdlog::error("camera: {} threw", what);
  }
}

class CameraImpl final : public Camera {
 public:
  CameraImpl(std::unique_ptr<FrameSource> source, const config::CameraConfig& camera,
             const config::MotionConfig& motion, const config::FaceConfig& face,
             CameraEvents events, core::Registry& metrics, std::unique_ptr<MotionDetector> detector,
             std::unique_ptr<FaceDetector> faces)
      : camera_cfg_(camera),
        motion_cfg_(motion),
        face_cfg_(face),
        events_(std::move(events)),
        source_(std::move(source)),
        source_name_(source_->describe()),
        detector_(std::move(detector)),
        tracker_(motion),
        faces_(std::move(faces)),
        motion_on_(motion.enabled),
        faces_on_(face.enabled),
        frames_total_(
            metrics.counter("outpost_camera_frames_total", "Frames read from the camera")),
        encoded_total_(metrics.counter("outpost_camera_encoded_total",
                                       "Frames JPEG-encoded (at most once per frame)")),
        reopens_total_(metrics.counter("outpost_camera_reopens_total",
                                       "Attempts to reopen the camera after a failure")),
        motion_events_total_(
            metrics.counter("outpost_motion_events_total", "Motion events started")),
        face_detections_total_(metrics.counter("outpost_face_detections_total",
                                               "Face detections reported (on_faces calls)")),
        shared_(std::make_shared<Shared>()),
        frame_period_(std::chrono::duration_cast<Steady::duration>(
            std::chrono::duration<double>(1.0 / std::max(1, camera.fps)))) {
    std::weak_ptr<Shared> weak = shared_;
    metrics.gauge_fn("outpost_camera_fps", "Frames per second read from the camera, last 5 s",
                     [weak] {
                       auto s = weak.lock();
                       return s ? s->fps(Steady::now()) : 0.0;
                     });
  }

  ~CameraImpl() override { stop(); }

  void start() override {
    std::lock_guard life(life_mu_);
    if (thread_.joinable()) return;
    {
      std::lock_guard lk(mu_);
      stopping_ = false;
      detail_ = "starting";
    }
    thread_ = std::thread([this] { run(); });
  }

  void stop() override {
    std::lock_guard life(life_mu_);
    if (!thread_.joinable()) return;
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    source_->interrupt();
    thread_.join();
    std::lock_guard lk(mu_);
    detail_ = "stopped";
    faulted_ = false;
  }

  JpegPtr latest() const override {
    std::lock_guard lk(mu_);
    return latest_;
  }

  Watch watch(std::function<void()> notify) override {
    auto w = std::make_shared<Shared::Watcher>();
    w->fn = std::move(notify);
    {
      std::lock_guard lk(shared_->mu);
      shared_->watchers.push_back(w);
    }
    std::weak_ptr<Shared> weak = shared_;
    return Watch(w.get(), [weak, w](void*) {
      {
        std::lock_guard wl(w->mu);  // waits for a notify in progress on another thread
        w->alive = false;
      }
      if (auto s = weak.lock()) {
        std::lock_guard lk(s->mu);
        std::erase(s->watchers, w);
      }
    });
  }

  core::Result<JpegPtr> capture(std::chrono::milliseconds timeout) override {
    std::unique_lock lk(mu_);
    const uint64_t after = frames_read_;
    ++capture_waiters_;
    const bool got = cv_.wait_for(
        lk, timeout, [&] { return stopping_ || (latest_ && latest_frame_no_ > after); });
    --capture_waiters_;
    if (got && latest_ && latest_frame_no_ > after) return latest_;
    std::string why = stopping_ ? "the camera is stopping"
                                : "no frame within " + std::to_string(timeout.count()) + " ms";
    if (faulted_) why += " (" + detail_ + ")";
    return core::Status::unavailable("camera: " + why);
  }

  void set_motion_enabled(bool on) override { motion_on_.store(on); }
  bool motion_enabled() const override { return motion_on_.load(); }
  void set_faces_enabled(bool on) override { faces_on_.store(on); }
  bool faces_enabled() const override { return faces_on_.load(); }

  CameraHealth health() const override {
    const auto now = Steady::now();
    CameraHealth h;
    h.source = source_name_;
    h.fps = shared_->fps(now);
    h.reopens = reopens_total_.value();
    std::lock_guard lk(mu_);
    const auto stale = std::max<Steady::duration>(kStale, 3 * frame_period_);
    h.running = thread_running_ && !faulted_ && last_frame_ != Steady::time_point{} &&
                now - last_frame_ <= stale;
    h.detail = detail_;
    if (h.detail == "ok" && !h.running && thread_running_)
      h.detail = "no frame for " +
                 std::to_string(
                     std::chrono::duration_cast<std::chrono::seconds>(now - last_frame_).count()) +
                 " s";
    return h;
  }

 private:
  bool stopping() const {
    std::lock_guard lk(mu_);
    return stopping_;
  }

  // Sleeps `d` unless stop() comes first.
  void sleep_for(std::chrono::milliseconds d) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, d, [this] { return stopping_; });
  }

  void run() {
    {
      std::lock_guard lk(mu_);
      thread_running_ = true;
    }
    bool open = false;
    bool opened_once = false;
    std::chrono::milliseconds backoff = kFirstBackoff;
    const auto max_backoff = std::max(kFirstBackoff, camera_cfg_.reopen_max_backoff);
    auto fail = [&](const core::Status& st) {
      fault(st);
      open = false;
      sleep_for(backoff);
      backoff = std::min(backoff * 2, max_backoff);
    };
    while (!stopping()) {
      if (!open) {
        if (opened_once) reopens_total_.inc();
        opened_once = true;
        core::Status st = call_source([this] { return source_->open(); });
        if (!st) {
          fail(st);
          continue;
        }
        open = true;
      }
      auto frame = call_source([this] { return source_->read(); });
      if (stopping()) break;
      if (!frame || frame->empty()) {
        fail(frame ? core::Status::unavailable(source_name_ + ": empty frame") : frame.status());
        continue;
      }
      backoff = kFirstBackoff;
      recover();
      try {
        process(std::move(*frame));
        process_failing_ = false;
      } catch (const std::exception& e) {
        // A frame OpenCV cannot handle (an odd depth from a device, say): skip it, log once.
        if (!process_failing_) spdlog::error("camera: cannot process a frame: {}", e.what());
        process_failing_ = true;
      }
    }
    std::lock_guard lk(mu_);
    thread_running_ = false;
  }

  // OpenCV's capture backends may throw (a corrupt file, a device error): that is the source
  // being unavailable, not a reason to end the capture thread.
  template <typename F>
  auto call_source(F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (const std::exception& e) {
      return core::Status::unavailable(source_name_ + ": " + e.what());
    }
  }

  // A recurring fault is logged once when it starts and once when it clears.
  void fault(const core::Status& st) {
    std::lock_guard lk(mu_);
    if (!faulted_) {
      faulted_ = true;
      fault_since_ = core::now();
      spdlog::warn("camera: {} unavailable: {}; reopening with backoff up to {} ms", source_name_,
                   st.message(), camera_cfg_.reopen_max_backoff.count());
    }
    detail_ = "unavailable since " + core::format_iso8601(fault_since_) + ": " + st.message();
  }

  void recover() {
    std::lock_guard lk(mu_);
    if (faulted_) {
      spdlog::info(
          "camera: {} delivering frames again after {} s ({} reopens so far)", source_name_,
          std::chrono::duration_cast<std::chrono::seconds>(core::now() - fault_since_).count(),
          reopens_total_.value());
      faulted_ = false;
    }
    detail_ = "ok";
  }

  // Encodes, counts, and publishes the frame to latest(), capture() and the watchers.
  JpegPtr encode(const cv::Mat& frame, core::TimePoint ts, uint64_t frame_no) {
    std::vector<uchar> buf;
    const std::vector<int> params{cv::IMWRITE_JPEG_QUALITY,
                                  std::clamp(camera_cfg_.jpeg_quality, 1, 100)};
    bool ok = false;
    guarded("imencode", [&] { ok = cv::imencode(".jpg", frame, buf, params); });
    if (!ok) return nullptr;
    auto jpeg = std::make_shared<JpegFrame>();
    jpeg->data.assign(buf.begin(), buf.end());
    jpeg->seq = ++seq_;
    jpeg->ts = ts;
    jpeg->width = frame.cols;
    jpeg->height = frame.rows;
    encoded_total_.inc();
    {
      std::lock_guard lk(mu_);
      latest_ = jpeg;
      latest_frame_no_ = frame_no;
    }
    cv_.notify_all();
    std::vector<std::shared_ptr<Shared::Watcher>> watchers;
    {
      std::lock_guard lk(shared_->mu);
      watchers = shared_->watchers;
    }
    for (const auto& w : watchers) {
      std::lock_guard wl(w->mu);
      if (w->alive && w->fn) guarded("watch notify", w->fn);
    }
    return jpeg;
  }

  void process(cv::Mat frame) {
    const core::TimePoint ts = core::now();
    const auto now = Steady::now();
    frames_total_.inc();
    uint64_t frame_no;
    bool want;
    {
      std::lock_guard lk(mu_);
      frame_no = ++frames_read_;
      last_frame_ = now;
      want = capture_waiters_ > 0;
    }
    {
      std::lock_guard lk(shared_->mu);
      shared_->frame_times.push_back(now);
      while (now - shared_->frame_times.front() > kFpsWindow) shared_->frame_times.pop_front();
      want = want || !shared_->watchers.empty();
    }
    // Viewers first, so detection never adds to their latency; motion reuses the same JPEG.
    JpegPtr jpeg;
    if (want) jpeg = encode(frame, ts, frame_no);

    if (motion_on_.load()) {
      motion_was_on_ = true;
      const MotionResult r = detector_->process(frame);
      if (auto ev = tracker_.feed(r, ts)) {
        JpegPtr snapshot;
        if (!ev->ended) {
          motion_events_total_.inc();
          if (motion_cfg_.snapshot) snapshot = jpeg ? jpeg : (jpeg = encode(frame, ts, frame_no));
        }
        if (events_.on_motion) guarded("on_motion", [&] { events_.on_motion(*ev, snapshot); });
      }
    } else if (motion_was_on_) {
      // Switched off: close the open event, and start from a fresh background when switched
      // on again (the old one is stale by then).
      motion_was_on_ = false;
      if (auto ev = tracker_.finish(); ev && events_.on_motion)
        guarded("on_motion", [&] { events_.on_motion(*ev, nullptr); });
      if (auto d = MotionDetector::create(motion_cfg_, {camera_cfg_.width, camera_cfg_.height}))
        detector_ = std::move(*d);
    }

    if (faces_on_.load()) {
      if (now >= next_face_) {
        next_face_ = now + face_cfg_.interval;
        const std::vector<Box> found = faces_->detect(frame);
        const bool changed = found.size() != last_face_count_;
        if (!found.empty() && (changed || now - last_face_report_ >= kFaceRepeat)) {
          last_face_report_ = now;
          face_detections_total_.inc();
          if (events_.on_faces) guarded("on_faces", [&] { events_.on_faces(found, ts); });
        }
        last_face_count_ = found.size();
      }
    } else {
      last_face_count_ = 0;
      next_face_ = {};
    }
  }

  const config::CameraConfig camera_cfg_;
  const config::MotionConfig motion_cfg_;
  const config::FaceConfig face_cfg_;
  const CameraEvents events_;
  const std::unique_ptr<FrameSource> source_;
  const std::string source_name_;

  // Capture thread only.
  std::unique_ptr<MotionDetector> detector_;
  MotionTracker tracker_;
  bool motion_was_on_ = false;
  std::unique_ptr<FaceDetector> faces_;
  Steady::time_point next_face_{};
  Steady::time_point last_face_report_{};
  size_t last_face_count_ = 0;
  uint64_t seq_ = 0;
  bool process_failing_ = false;

  std::atomic<bool> motion_on_;
  std::atomic<bool> faces_on_;

  core::Counter& frames_total_;
  core::Counter& encoded_total_;
  core::Counter& reopens_total_;
  core::Counter& motion_events_total_;
  core::Counter& face_detections_total_;

  const std::shared_ptr<Shared> shared_;
  const Steady::duration frame_period_;

  std::mutex life_mu_;  // serializes start() and stop()
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;  // a new encoded frame, or stopping
  bool stopping_ = false;
  bool thread_running_ = false;
  JpegPtr latest_;
  uint64_t latest_frame_no_ = 0;
  uint64_t frames_read_ = 0;
  int capture_waiters_ = 0;
  Steady::time_point last_frame_{};
  bool faulted_ = false;
  core::TimePoint fault_since_{};
  std::string detail_ = "stopped";
};

}  // namespace

core::Result<std::unique_ptr<Camera>> create_camera(const config::CameraConfig& camera,
                                                    const config::MotionConfig& motion,
                                                    const config::FaceConfig& face,
                                                    CameraEvents events, core::Registry& metrics) {
  auto source = make_source(camera);
  if (!source) return source.status();
  return create_camera(std::move(*source), camera, motion, face, std::move(events), metrics);
}

core::Result<std::unique_ptr<Camera>> create_camera(std::unique_ptr<FrameSource> source,
                                                    const config::CameraConfig& camera,
                                                    const config::MotionConfig& motion,
                                                    const config::FaceConfig& face,
                                                    CameraEvents events, core::Registry& metrics) {
  if (!source) return core::Status::invalid("camera: no source");
  if (camera.width <= 0 || camera.height <= 0 || camera.fps <= 0)
    return core::Status::invalid("camera: width, height and fps must be positive");
  auto detector = MotionDetector::create(motion, {camera.width, camera.height});
  if (!detector) return detector.status();
  auto faces = FaceDetector::create(face);
  if (!faces) return faces.status();
  return std::unique_ptr<Camera>(
      std::make_unique<CameraImpl>(std::move(source), camera, motion, face, std::move(events),
                                   metrics, std::move(*detector), std::move(*faces)));
}

}  // namespace outpost::camera
