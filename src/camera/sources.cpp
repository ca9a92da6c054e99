// Frame sources: the synthetic scene, files, V4L2 devices and GStreamer pipelines.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string_view>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <opencv2/videoio/registry.hpp>

#include "camera/vision.hpp"
#include "camera/detail/camera.hpp"

namespace outpost::camera {

namespace detail {

namespace {

// Low-frequency noise upscaled, a few "furniture" blocks and a grid: enough texture for the
// motion detector to work on, smooth enough that JPEG frames stay small (pure per-pixel noise
// would triple their size and the encode time).
cv::Mat make_background(cv::Size size) {
  cv::RNG rng(0x6f757470);  // fixed seed: the scene is the same in every run
  cv::Mat coarse(std::max(2, size.height / 16), std::max(2, size.width / 16), CV_8UC3);
  rng.fill(coarse, cv::RNG::UNIFORM, 60, 170);
  cv::Mat bg;
  cv::resize(coarse, bg, size, 0, 0, cv::INTER_CUBIC);
  for (int i = 0; i < 6; ++i) {
    cv::Point p(rng.uniform(0, size.width), rng.uniform(0, size.height));
    cv::Size s(rng.uniform(size.width / 12 + 1, size.width / 4 + 2),
               rng.uniform(size.height / 12 + 1, size.height / 4 + 2));
    cv::Scalar c(rng.uniform(20, 230), rng.uniform(20, 230), rng.uniform(20, 230));
    cv::rectangle(bg, cv::Rect(p, s), c, cv::FILLED);
  }
  const int step = std::max(8, size.width / 16);
  for (int x = 0; x < size.width; x += step)
    cv::line(bg, {x, 0}, {x, size.height - 1}, cv::Scalar(40, 40, 40), 1);
  for (int y = 0; y < size.height; y += step)
    cv::line(bg, {0, y}, {size.width - 1, y}, cv::Scalar(40, 40, 40), 1);
  return bg;
}

// A triangle wave over [0, span]: position of something bouncing between two walls.
int bounce(double travelled, int span) {
  if (span <= 0) return 0;
  const double period = 2.0 * span;
  const double p = std::fmod(travelled, period);
  return static_cast<int>(p <= span ? p : period - p);
}

}  // namespace

void render_synthetic(cv::Size size, int fps, uint64_t n, cv::Mat& out) {
  // The background costs about a millisecond to build; keep one per thread and size.
  thread_local cv::Mat background;
  if (background.size() != size) background = make_background(size);
  background.copyTo(out);

  const double t = static_cast<double>(n) / std::max(1, fps);
  const int side = std::max(8, size.width / 12);
  // The square crosses the frame in 4 s, on a band in the middle.
  const int sx = static_cast<int>(std::fmod(t * size.width / 4.0, std::max(1, size.width - side)));
  const int sy = size.height / 3;
  cv::rectangle(out, cv::Rect(sx, sy, side, side), cv::Scalar(230, 230, 230), cv::FILLED);
  // The disc bounces off the walls, slower and on another axis.
  const int r = std::max(4, size.height / 12);
  const int cx = r + bounce(t * size.width / 7.0, size.width - 2 * r);
  const int cy = r + bounce(t * size.height / 5.0, size.height - 2 * r);
  cv::circle(out, {cx, cy}, r, cv::Scalar(40, 60, 220), cv::FILLED, cv::LINE_AA);

  char caption[96];
  std::snprintf(caption, sizeof caption, "outpost synthetic #%llu t=%.3fs",
                static_cast<unsigned long long>(n), t);
  const double scale = std::max(0.3, size.height / 960.0);
  const int baseline = size.height - std::max(4, size.height / 40);
  cv::putText(out, caption, {8, baseline}, cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(0, 0, 0), 3,
              cv::LINE_AA);
  cv::putText(out, caption, {8, baseline}, cv::FONT_HERSHEY_SIMPLEX, scale,
              cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
}

Pacer::Pacer(int fps)
    : period_(std::chrono::duration_cast<Steady::duration>(
          std::chrono::duration<double>(1.0 / std::max(1, fps)))) {}

void Pacer::wait() {
  std::unique_lock lk(mu_);
  const auto now = Steady::now();
  // First frame, or the consumer fell more than a period behind: start the schedule afresh
  // instead of delivering a burst of frames to catch up.
  if (next_ == Steady::time_point{} || now > next_ + period_) next_ = now;
  cv_.wait_until(lk, next_, [this] { return interrupted_; });
  interrupted_ = false;
  next_ += period_;
}

void Pacer::interrupt() {
  {
    std::lock_guard lk(mu_);
    interrupted_ = true;
  }
  cv_.notify_all();
}

void Pacer::restart() {
  std::lock_guard lk(mu_);
  next_ = Steady::time_point{};
}

}  // namespace detail

namespace {

// Brings any decoded frame to BGR of the configured size.
cv::Mat fit(const cv::Mat& in, cv::Size size) {
  cv::Mat bgr;
  if (in.channels() == 1) {
    cv::cvtColor(in, bgr, cv::COLOR_GRAY2BGR);
  } else if (in.channels() == 4) {
    cv::cvtColor(in, bgr, cv::COLOR_BGRA2BGR);
  } else {
    bgr = in;
  }
  if (bgr.size() == size) return bgr;
  cv::Mat out;
  const bool shrink = bgr.cols >= size.width && bgr.rows >= size.height;
  cv::resize(bgr, out, size, 0, 0, shrink ? cv::INTER_AREA : cv::INTER_LINEAR);
  return out;
}

class SyntheticSource final : public FrameSource {
 public:
  SyntheticSource(const config::CameraConfig& cfg, std::string note)
      : size_(cfg.width, cfg.height), fps_(cfg.fps), pacer_(cfg.fps), note_(std::move(note)) {}

  core::Status open() override {
    pacer_.restart();
    return core::Status::ok();
  }
  core::Result<cv::Mat> read() override {
    pacer_.wait();
    cv::Mat frame;
    detail::render_synthetic(size_, fps_, n_++, frame);
    return frame;
  }
  std::string describe() const override {
    return "synthetic " + std::to_string(size_.width) + "x" + std::to_string(size_.height) + "@" +
           std::to_string(fps_) + note_;
  }
  void interrupt() override { pacer_.interrupt(); }

 private:
  cv::Size size_;
  int fps_;
  detail::Pacer pacer_;
  std::string note_;
  uint64_t n_ = 0;
};

class FileSource final : public FrameSource {
 public:
  FileSource(const config::CameraConfig& cfg, std::string path)
      : size_(cfg.width, cfg.height), pacer_(cfg.fps), path_(std::move(path)) {}

  core::Status open() override {
    cap_.release();
    still_.release();
    pacer_.restart();
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path_, ec))
      return core::Status::unavailable(describe() + ": no such file");
    // haveImageReader looks at the file's signature, so a still image is told from a video
    // whatever its name.
    if (cv::haveImageReader(path_)) {
      cv::Mat img = cv::imread(path_, cv::IMREAD_COLOR);
      if (img.empty()) return core::Status::unavailable(describe() + ": cannot decode the image");
      still_ = fit(img, size_);
      return core::Status::ok();
    }
    if (!cap_.open(path_, cv::CAP_ANY))
      return core::Status::unavailable(describe() + ": cannot open the video");
    return core::Status::ok();
  }

  core::Result<cv::Mat> read() override {
    pacer_.wait();
    if (!still_.empty()) return still_.clone();
    if (!cap_.isOpened()) return core::Status::unavailable(describe() + ": not open");
    cv::Mat frame;
    if (cap_.read(frame) && !frame.empty()) return fit(frame, size_);
    // The end of the video: start over. Reopening works with every container, where seeking
    // back to frame 0 does not.
    cap_.release();
    if (cap_.open(path_, cv::CAP_ANY) && cap_.read(frame) && !frame.empty())
      return fit(frame, size_);
    cap_.release();
    return core::Status::unavailable(describe() + ": no frames");
  }

  std::string describe() const override { return "file:" + path_; }
  void interrupt() override { pacer_.interrupt(); }

 private:
  cv::Size size_;
  detail::Pacer pacer_;
  std::string path_;
  cv::VideoCapture cap_;
  cv::Mat still_;
};

// V4L2 devices and GStreamer pipelines: paced by the device itself.
class CaptureSource final : public FrameSource {
 public:
  enum class Kind { kV4l2, kGst };
  CaptureSource(const config::CameraConfig& cfg, Kind kind, std::string target)
      : cfg_(cfg), kind_(kind), target_(std::move(target)) {}

  core::Status open() override {
    cap_.release();
    if (kind_ == Kind::kGst) {
      if (!cv::videoio_registry::hasBackend(cv::CAP_GSTREAMER))
        return core::Status::unavailable(describe() +
                                         ": this OpenCV was built without GStreamer support");
      if (!cap_.open(target_, cv::CAP_GSTREAMER))
        return core::Status::unavailable(describe() + ": the pipeline does not start");
      return core::Status::ok();
    }
    std::error_code ec;
    if (!std::filesystem::exists(target_, ec))
      return core::Status::unavailable(describe() + ": no such device");
    if (!cap_.open(target_, cv::CAP_V4L2))
      return core::Status::unavailable(describe() + ": cannot open the device");
    // MJPG first: USB cameras deliver 640x480 and above at full rate only compressed. A
    // device that refuses keeps its own format, which OpenCV converts to BGR all the same.
    cap_.set(cv::CAP_PROP_FOURCC, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'));
    cap_.set(cv::CAP_PROP_FRAME_WIDTH, cfg_.width);
    cap_.set(cv::CAP_PROP_FRAME_HEIGHT, cfg_.height);
    cap_.set(cv::CAP_PROP_FPS, cfg_.fps);
    return core::Status::ok();
  }

  core::Result<cv::Mat> read() override {
    cv::Mat frame;
    if (!cap_.isOpened() || !cap_.read(frame) || frame.empty()) {
      cap_.release();
      return core::Status::unavailable(describe() + ": no frame (device gone or stalled)");
    }
    return fit(frame, {cfg_.width, cfg_.height});
  }

  std::string describe() const override {
    return (kind_ == Kind::kGst ? "gst:" : "v4l2:") + target_;
  }

 private:
  config::CameraConfig cfg_;
  Kind kind_;
  std::string target_;
  cv::VideoCapture cap_;
};

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

}  // namespace

core::Result<std::unique_ptr<FrameSource>> make_source(const config::CameraConfig& cfg) {
  if (cfg.width <= 0 || cfg.height <= 0 || cfg.fps <= 0)
    return core::Status::invalid("camera: width, height and fps must be positive");
  const std::string& spec = cfg.source;
  std::unique_ptr<FrameSource> src;
  if (spec == "synthetic") {
    src = std::make_unique<SyntheticSource>(cfg, "");
  } else if (spec == "auto") {
    std::error_code ec;
    if (std::filesystem::exists("/dev/video0", ec))
      src = std::make_unique<CaptureSource>(cfg, CaptureSource::Kind::kV4l2, "/dev/video0");
    else
      src = std::make_unique<SyntheticSource>(cfg, " (auto: no /dev/video0)");
  } else if (starts_with(spec, "file:") && spec.size() > 5) {
    src = std::make_unique<FileSource>(cfg, spec.substr(5));
  } else if (starts_with(spec, "v4l2:") && spec.size() > 6 && spec[5] == '/') {
    src = std::make_unique<CaptureSource>(cfg, CaptureSource::Kind::kV4l2, spec.substr(5));
  } else if (starts_with(spec, "gst:") && spec.find_first_not_of(' ', 4) != std::string::npos) {
    src = std::make_unique<CaptureSource>(cfg, CaptureSource::Kind::kGst, spec.substr(4));
  } else if (spec == "off") {
    return core::Status::invalid("camera.source is off: there is no source to make");
  } else {
    return core::Status::invalid("camera.source '" + spec +
                                 "' is not one of auto, synthetic, file:PATH, v4l2:/dev/videoN, "
                                 "gst:PIPELINE, off");
  }
  return src;
}

}  // namespace outpost::camera
