// The camera service: one capture thread owns the camera; every consumer (stream viewers,
// motion and face detection, snapshots) gets frames from it, so features never fight over
// the device.
//
// This header is OpenCV-free: the capture service itself (OpenCV and, through Debian's build
// of it, GDAL, ffmpeg, GStreamer...: some 250 shared libraries, 80 MB of resident memory) lives
// in the plugin outpost-camera.so, which load_camera() loads only when a camera is configured.
// The OpenCV parts are declared in camera/vision.hpp, for the plugin, the tests and bench/.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/core.hpp"

namespace outpost::camera {

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

// A motion event starting or ending (see MotionTracker in camera/vision.hpp).
struct MotionEvent {
  core::TimePoint start;  // the first motion frame of the event
  core::TimePoint end;    // the last motion frame so far (at the start: the confirming frame)
  double peak_area = 0;
  std::vector<Box> boxes;  // at the peak
  bool ended = false;      // false: the event just started; true: it just ended
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
//
// Made by load_camera() (the plugin), or by create_camera() in camera/vision.hpp.
class Camera {
 public:
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

// Loads the camera plugin (outpost-camera.so) and makes the capture service with it: the
// same as create_camera() in camera/vision.hpp, without linking OpenCV into the caller. The
// camera is not started. `events` and `metrics` as for create_camera().
//
// The plugin is camera.plugin when set (a path; relative to the working directory), else the
// first that exists of <directory of the executable>/outpost-camera.so and
// <directory of the executable>/../lib/outpost/outpost-camera.so. It stays loaded until the
// process exits (never unloaded: the camera's code must outlive every camera, watch handle and
// metric callback it made).
//
// Unavailable, naming the path(s) tried, when no plugin is found, it cannot be loaded (the
// loader's reason, e.g. a missing OpenCV library), it has no factory of this ABI version, or it
// was built from another version of Outpost; otherwise create_camera()'s errors (invalid or
// unavailable). Thread-safe.
core::Result<std::unique_ptr<Camera>> load_camera(const config::CameraConfig& camera,
                                                  const config::MotionConfig& motion,
                                                  const config::FaceConfig& face,
                                                  CameraEvents events, core::Registry& metrics);

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
