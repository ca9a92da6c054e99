// Internals of camera/ shared by its .cpp files, its tests and bench/camera: the synthetic
// scene, frame pacing, mask parsing. Not for other modules.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "core/status.hpp"

namespace outpost::camera::detail {

// Draws frame number `n` of the synthetic scene into `out` (BGR, `size`): a textured static
// background, a square sweeping left to right, a disc bouncing diagonally, and a caption with
// the frame number and the scene time n / fps. The same (size, fps, n) always gives the same
// pixels. `out` is reallocated only when its size or type differ.
void render_synthetic(cv::Size size, int fps, uint64_t n, cv::Mat& out);

// Paces a source at a fixed rate on the steady clock. wait() sleeps until the next frame is
// due; interrupt() makes the pending (or the next) wait return at once. Thread-safe:
// interrupt() may be called from any thread while another is in wait().
class Pacer {
 public:
  explicit Pacer(int fps);
  // Blocks until the next frame is due (at most one period) or interrupt() is called.
  void wait();
  void interrupt();
  // Forgets the schedule: the next wait() returns at once (after a reopen, for instance).
  void restart();

 private:
  using Steady = std::chrono::steady_clock;
  Steady::duration period_;
  Steady::time_point next_{};
  std::mutex mu_;
  std::condition_variable cv_;
  bool interrupted_ = false;
};

// A mask polygon from "x,y,w,h" (a rectangle) or "x1,y1 x2,y2 x3,y3 ..." (three or more
// vertices), integer pixels; invalid with the reason otherwise.
core::Result<std::vector<cv::Point>> parse_mask(const std::string& spec);

}  // namespace outpost::camera::detail
