// Haar cascade face detection.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>

#include "camera/vision.hpp"

namespace outpost::camera {

namespace {

class FaceDetectorImpl final : public FaceDetector {
 public:
  FaceDetectorImpl(const config::FaceConfig& cfg, cv::CascadeClassifier cascade)
      : cfg_(cfg), cascade_(std::move(cascade)) {}

  std::vector<Box> detect(const cv::Mat& input) override {
    std::vector<Box> out;
    if (input.empty()) return out;
    if (input.channels() == 3)
      cv::cvtColor(input, gray_, cv::COLOR_BGR2GRAY);
    else if (input.channels() == 4)
      cv::cvtColor(input, gray_, cv::COLOR_BGRA2GRAY);
    else
      gray_ = input;
    const int aw = std::min(cfg_.analysis_width, gray_.cols);
    const int ah = std::max(
        1, static_cast<int>(std::lround(static_cast<double>(gray_.rows) * aw / gray_.cols)));
    if (aw != gray_.cols)
      cv::resize(gray_, small_, {aw, ah}, 0, 0, cv::INTER_AREA);
    else
      small_ = gray_;
    // Equalizing makes the cascade work in dim or backlit scenes, as the classic recipe does.
    cv::equalizeHist(small_, equalized_);
    std::vector<cv::Rect> faces;
    cascade_.detectMultiScale(equalized_, faces, cfg_.scale_factor, cfg_.min_neighbors, 0,
                              {cfg_.min_size, cfg_.min_size});
    const double sx = static_cast<double>(input.cols) / aw;
    const double sy = static_cast<double>(input.rows) / ah;
    for (const auto& f : faces) {
      const int x0 = static_cast<int>(std::floor(f.x * sx));
      const int y0 = static_cast<int>(std::floor(f.y * sy));
      const int x1 = std::min(input.cols, static_cast<int>(std::ceil(f.br().x * sx)));
      const int y1 = std::min(input.rows, static_cast<int>(std::ceil(f.br().y * sy)));
      out.push_back({x0, y0, x1 - x0, y1 - y0});
    }
    return out;
  }

 private:
  config::FaceConfig cfg_;
  cv::CascadeClassifier cascade_;
  cv::Mat gray_, small_, equalized_;
};

}  // namespace

core::Result<std::unique_ptr<FaceDetector>> FaceDetector::create(const config::FaceConfig& cfg) {
  if (!(cfg.scale_factor > 1.0)) return core::Status::invalid("face.scale_factor must be above 1");
  if (cfg.min_neighbors < 0)
    return core::Status::invalid("face.min_neighbors must not be negative");
  if (cfg.min_size < 1) return core::Status::invalid("face.min_size must be positive");
  if (cfg.analysis_width < 1) return core::Status::invalid("face.analysis_width must be positive");
  std::error_code ec;
  if (!std::filesystem::is_regular_file(cfg.cascade, ec))
    return core::Status::unavailable("face cascade " + cfg.cascade +
                                     " does not exist (Debian package opencv-data)");
  cv::CascadeClassifier cascade;
  // load() reports a malformed file by returning false, but OpenCV's XML parser may throw on
  // some inputs first.
  try {
    if (!cascade.load(cfg.cascade) || cascade.empty())
      return core::Status::unavailable("face cascade " + cfg.cascade + " cannot be loaded");
  } catch (const cv::Exception& e) {
    return core::Status::unavailable("face cascade " + cfg.cascade + " cannot be loaded: " + e.msg);
  }
  return std::unique_ptr<FaceDetector>(std::make_unique<FaceDetectorImpl>(cfg, std::move(cascade)));
}

}  // namespace outpost::camera
