// The OpenCV side of camera/: frame sources, motion and face detection, and the capture
// service built from them. Linked into the camera plugin (outpost-camera.so), the unit tests
// and bench/camera; the server itself includes camera/camera.hpp only and gets its Camera
// from load_camera(), so it never maps OpenCV unless a camera is configured.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "camera/camera.hpp"
#include "config/config.hpp"
#include "core/core.hpp"

namespace outpost::camera {

// Where frames come from. open() and read() are called from one thread (the capture thread);
// interrupt() may be called from any thread. Frames returned are the caller's to keep.
class FrameSource {
 public:
  virtual ~FrameSource() = default;
  // (Re)opens the source; also called after read() failed. Unavailable with the reason when
  // the file or device cannot be opened.
  virtual core::Status open() = 0;
  // The next BGR frame of the configured size; Status::unavailable when the source ended or
  // the device went away (the capture thread then reopens it with backoff). Blocks for at
  // most about one frame period (a device that stalls: up to its driver's read timeout).
  virtual core::Result<cv::Mat> read() = 0;
  virtual std::string describe() const = 0;
  // Makes a read() that is waiting to pace frames (synthetic, file) return at once, or the
  // next one if none is waiting; used by Camera::stop(). Device sources ignore it.
  virtual void interrupt() {}
};

// "synthetic", "file:PATH", "v4l2:/dev/videoN", "gst:PIPELINE"; "auto" picks v4l2:/dev/video0
// when it exists, else synthetic. Invalid when the spec is malformed, for "off", and when
// width, height or fps are not positive. Nothing is opened yet: a missing file or device is
// reported by open().
//   synthetic     a generated scene (textured background, moving shapes, frame caption),
//                 deterministic frame by frame, paced at cfg.fps
//   file:PATH     a video (looped at its end) or a still image (repeated), resized to the
//                 configured size, paced at cfg.fps whatever the file's own rate
//   v4l2:PATH     a V4L2 device (an absolute path), asked for MJPG at the configured size and
//                 rate; frames of another size are resized
//   gst:PIPELINE  a GStreamer pipeline ending in appsink; open() is unavailable when OpenCV was
//                 built without GStreamer
core::Result<std::unique_ptr<FrameSource>> make_source(const config::CameraConfig& cfg);

// Motion detection on the analysis path (pure: frames in, result out). Grayscale, downscale to
// cfg.analysis_width, Gaussian blur, running-average background, absolute difference,
// threshold, dilate, contours, minimum area; masked regions never count.
struct MotionResult {
  bool motion = false;  // area >= cfg.min_area
  double area = 0;      // pixels changed by >= cfg.threshold outside masks, fraction of the frame
  // With motion only: camera-resolution boxes of the changed regions (after dilation) of at
  // least min_area each, largest first.
  std::vector<Box> boxes;
};
class MotionDetector {
 public:
  // Invalid when a mask does not parse, `frame` is empty, blur is even, or another value is
  // out of range. Masks are in pixels of `frame`.
  static core::Result<std::unique_ptr<MotionDetector>> create(const config::MotionConfig& cfg,
                                                              cv::Size frame);
  virtual ~MotionDetector() = default;
  // `bgr`: a BGR (or gray) frame of the size given to create(); another size is resized
  // first. The first frame only initializes the background (no motion). Not thread-safe.
  virtual MotionResult process(const cv::Mat& bgr) = 0;
};

// Turns per-frame results into events: starts after cfg.confirm_frames frames with motion,
// ends after cfg.cooldown without. Pure: times are given.
class MotionTracker {
 public:
  explicit MotionTracker(const config::MotionConfig& cfg);
  // An event when one starts or ends with this frame. Not thread-safe.
  std::optional<MotionEvent> feed(const MotionResult& r, core::TimePoint ts);
  // Ends the event in progress now (ended=true), if any, and resets; for detection switched off.
  std::optional<MotionEvent> finish();
  void reset();

 private:
  config::MotionConfig cfg_;
  int consecutive_ = 0;
  bool active_ = false;
  MotionEvent current_;
  core::TimePoint last_motion_;
};

// Haar cascade face detection on a downscaled gray frame.
class FaceDetector {
 public:
  // Unavailable (naming the path) when the cascade file cannot be loaded; invalid when
  // scale_factor <= 1, min_neighbors < 0, min_size < 1 or analysis_width < 1.
  static core::Result<std::unique_ptr<FaceDetector>> create(const config::FaceConfig& cfg);
  virtual ~FaceDetector() = default;
  // Faces in a BGR (or gray) frame, in its pixels. Not thread-safe.
  virtual std::vector<Box> detect(const cv::Mat& bgr) = 0;
};

// The capture service (see Camera) on the source cfg.source names (make_source()).
// Invalid/unavailable when the source spec is malformed or the face cascade cannot load (it is
// loaded even when faces are off, since they can be switched on later). The camera is not
// started.
core::Result<std::unique_ptr<Camera>> create_camera(const config::CameraConfig& camera,
                                                    const config::MotionConfig& motion,
                                                    const config::FaceConfig& face,
                                                    CameraEvents events, core::Registry& metrics);
// For tests: a given source (camera.source is not looked at).
core::Result<std::unique_ptr<Camera>> create_camera(std::unique_ptr<FrameSource> source,
                                                    const config::CameraConfig& camera,
                                                    const config::MotionConfig& motion,
                                                    const config::FaceConfig& face,
                                                    CameraEvents events, core::Registry& metrics);

}  // namespace outpost::camera
