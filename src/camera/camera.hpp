// The camera service: one capture thread owns the camera; every consumer (stream viewers,
// motion and face detection, snapshots) gets frames from it, so features never fight over
// the device.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

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

// An encoded frame, shared by every viewer (encoded once, whatever the number of viewers).
struct JpegFrame {
  std::string data;    // the JPEG file's bytes
  uint64_t seq = 0;    // 1, 2, ... per camera, one per encoded frame
  core::TimePoint ts;  // when the frame was read from the source
  int width = 0;
  int height = 0;
};
using JpegPtr = std::shared_ptr<const JpegFrame>;

// A box in pixels of the camera resolution.
struct Box {
  int x = 0, y = 0, w = 0, h = 0;
};

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
struct MotionEvent {
  core::TimePoint start;  // the first motion frame of the event
  core::TimePoint end;    // the last motion frame so far (at the start: the confirming frame)
  double peak_area = 0;
  std::vector<Box> boxes;  // at the peak
  bool ended = false;      // false: the event just started; true: it just ended
};
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

// What the camera tells the rest of the program. Called from the capture thread: must not
// block or throw (a throw is caught and logged). Either may be empty.
struct CameraEvents {
  // At the start of an event: `snapshot` is the frame that confirmed it when
  // MotionConfig::snapshot is set, else null. At the end: null.
  std::function<void(const MotionEvent&, JpegPtr snapshot)> on_motion;
  // When faces are found and their number differs from the previous detection, and at most
  // every 10 s while the same number of faces stays in view. Never with an empty list.
  std::function<void(const std::vector<Box>& faces, core::TimePoint ts)> on_faces;
};

struct CameraHealth {
  bool running = false;  // frames are arriving
  std::string source;    // describe() of the source
  std::string detail;    // "ok", "starting", "stopped", or what is wrong and since when
  double fps = 0;        // measured over the last 5 s
  uint64_t reopens = 0;  // open() attempts after a failure
};

// The capture service. All members are thread-safe.
//
// One capture thread owns the source: it reads frames, reopens a failed source with
// exponential backoff (from 100 ms up to reopen_max_backoff), encodes each frame at most once
// when someone wants JPEG, runs motion detection on every frame and face detection at most
// every face.interval. Metrics: outpost_camera_frames_total, outpost_camera_encoded_total,
// outpost_camera_reopens_total, outpost_motion_events_total, outpost_face_detections_total,
// outpost_camera_fps. The registry may outlive the camera.
class Camera {
 public:
  // Invalid/unavailable when the source spec is malformed or the face cascade cannot load
  // (it is loaded even when faces are off, since they can be switched on later).
  static core::Result<std::unique_ptr<Camera>> create(const config::CameraConfig& camera,
                                                      const config::MotionConfig& motion,
                                                      const config::FaceConfig& face,
                                                      CameraEvents events, core::Registry& metrics);
  // For tests: a given source.
  static core::Result<std::unique_ptr<Camera>> create(std::unique_ptr<FrameSource> source,
                                                      const config::CameraConfig& camera,
                                                      const config::MotionConfig& motion,
                                                      const config::FaceConfig& face,
                                                      CameraEvents events, core::Registry& metrics);
  virtual ~Camera() = default;  // stops

  // Starts the capture thread; no-op while running. May start again after stop().
  virtual void start() = 0;
  // Joins the capture thread; idempotent. Prompt (a frame period) except for a device stalled
  // inside its driver's read.
  virtual void stop() = 0;

  // The newest encoded frame, or null before the first. Frames are JPEG-encoded only while
  // someone wants them (a watcher is registered, a capture() is waiting, or a motion snapshot
  // is taken), so without watchers this may be old: look at its ts.
  virtual JpegPtr latest() const = 0;
  // Calls `notify` (on the capture thread; must be cheap, e.g. post to an executor) after each
  // new encoded frame, until the returned handle is destroyed. The handle may outlive the
  // camera. Destroying it waits for a notify in progress on another thread, so notify never
  // runs after that; do not destroy it while holding a lock that notify takes. notify may
  // destroy its own handle.
  using Watch = std::shared_ptr<void>;
  virtual Watch watch(std::function<void()> notify) = 0;
  // A fresh frame (read after the call), JPEG-encoded; unavailable when no frame arrives
  // within `timeout` or the camera stops.
  virtual core::Result<JpegPtr> capture(std::chrono::milliseconds timeout) = 0;

  virtual void set_motion_enabled(bool on) = 0;
  virtual bool motion_enabled() const = 0;
  virtual void set_faces_enabled(bool on) = 0;
  virtual bool faces_enabled() const = 0;
  virtual CameraHealth health() const = 0;
};

// Saved snapshots: JPEG files in a directory, named "snapshot-YYYYMMDDTHHMMSS.uuuuuuZ-<seq>.jpg"
// (UTC time of the frame, its seq), with retention by count and total size (0 = no limit; the
// snapshot just saved is always kept). Names are validated: no path separators, no "..", the
// fixed pattern only, and no symlink is followed: only regular files in the directory itself
// are listed, read or removed. Other files in the directory are left alone. Thread-safe
// within one process.
struct SnapshotInfo {
  std::string name;
  core::TimePoint ts;
  uint64_t size = 0;
};
class SnapshotStore {
 public:
  SnapshotStore(std::string dir, size_t max_count, size_t max_bytes);
  // Creates the directory when missing, writes the JPEG (to a temp file, then renamed), applies
  // retention; returns the name. Io on failure.
  core::Result<std::string> save(const JpegFrame& frame);
  // Newest first (by the time and seq in the name); `offset`/`limit` page through them;
  // `total` (may be null) set to the count. A missing directory lists nothing.
  core::Result<std::vector<SnapshotInfo>> list(size_t offset, size_t limit, size_t* total) const;
  // The file's bytes. Invalid for a malformed name; not_found when missing or not a regular file.
  core::Result<std::string> read(const std::string& name) const;
  core::Status remove(const std::string& name);  // as read()
  // "snapshot-" 8 digits "T" 6 digits "." 6 digits "Z-" 1..20 digits ".jpg", nothing else.
  static bool valid_name(const std::string& name);

 private:
  std::string dir_;
  size_t max_count_, max_bytes_;
  mutable std::mutex mu_;
};

}  // namespace outpost::camera
