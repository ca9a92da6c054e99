// motion_bench: frames per second of camera::MotionDetector on the scene of the Python anchor
// (../shared/bench/anchors/motion_opencv.py), and of camera::FaceDetector at 640x480. One
// OpenCV thread; run it under `taskset -c 0` to pin it to one core.
//
//   motion_bench [--frames 600] [--width 640] [--height 480] [--passes 1]
//                [--background bg.png] [--flags-out flags.txt] [--face-image astronaut.png]
//                [--face-frames 40]
//
// The scene: a textured background (uniform noise 40..89 per channel; --background gives the
// anchor's exact one, written by anchor_detections.py) with a 230-gray square moving as in the
// anchor: x = 7i mod (w - side), y = h/3 + 3i mod h/3, side = max(16, w/12). Frames are built
// in memory first; only analysis is timed, like the anchor. Prints, one per line:
//   frames N moving M seconds S fps F          (the anchor's format; the fastest pass)
//   covered C of M                              (motion frames whose boxes cover >= 90% of the
//   square) static_moving K                             (the background alone, N frames: must be 0)
//   faces fps F found K image PATH
// --flags-out writes one line per frame: "i motion" then "x y w h" for each box.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "camera/vision.hpp"

namespace {

using outpost::camera::Box;
using Clock = std::chrono::steady_clock;

struct Options {
  int frames = 600, width = 640, height = 480, passes = 1, face_frames = 40;
  std::string background, flags_out, face_image;
};

cv::Rect square_at(int i, int w, int h) {
  const int side = std::max(16, w / 12);
  const int x = (i * 7) % (w - side);
  const int y = (h / 3 + (i * 3) % (h / 3)) % (h - side);
  return {x, y, side + 1, side + 1};  // cv2.rectangle with thickness -1 fills both ends
}

double covered(const std::vector<Box>& boxes, cv::Rect sq) {
  double best = 0;
  for (const auto& b : boxes) {
    const cv::Rect inter = cv::Rect(b.x, b.y, b.w, b.h) & sq;
    best = std::max(best, static_cast<double>(inter.area()) / sq.area());
  }
  return best;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int usage() {
  std::fprintf(stderr,
               "usage: motion_bench [--frames N] [--width W] [--height H] [--passes P] "
               "[--background PNG] [--flags-out FILE] [--face-image IMG] [--face-frames N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
#ifdef OUTPOST_CAMERA_TESTDATA
  o.face_image = std::string(OUTPOST_CAMERA_TESTDATA) + "/astronaut.png";
#endif
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    std::string v = argv[++i];
    if (a == "--frames")
      o.frames = std::atoi(v.c_str());
    else if (a == "--width")
      o.width = std::atoi(v.c_str());
    else if (a == "--height")
      o.height = std::atoi(v.c_str());
    else if (a == "--passes")
      o.passes = std::max(1, std::atoi(v.c_str()));
    else if (a == "--background")
      o.background = v;
    else if (a == "--flags-out")
      o.flags_out = v;
    else if (a == "--face-image")
      o.face_image = v;
    else if (a == "--face-frames")
      o.face_frames = std::atoi(v.c_str());
    else
      return usage();
  }
  if (o.frames < 2 || o.width < 32 || o.height < 32) return usage();
  cv::setNumThreads(1);

  const cv::Size size(o.width, o.height);
  cv::Mat background;
  if (!o.background.empty()) {
    background = cv::imread(o.background, cv::IMREAD_COLOR);
    if (background.size() != size) {
      std::fprintf(stderr, "motion_bench: %s is not %dx%d\n", o.background.c_str(), o.width,
                   o.height);
      return 1;
    }
  } else {
    background.create(size, CV_8UC3);
    cv::RNG rng(7);
    rng.fill(background, cv::RNG::UNIFORM, 40, 90);
  }
  std::vector<cv::Mat> frames;
  frames.reserve(o.frames);
  for (int i = 0; i < o.frames; ++i) {
    cv::Mat f = background.clone();
    cv::rectangle(f, square_at(i, o.width, o.height), cv::Scalar::all(230), cv::FILLED);
    frames.push_back(std::move(f));
  }

  const outpost::config::MotionConfig cfg;  // the documented defaults
  double best = 1e9;
  std::vector<outpost::camera::MotionResult> results(frames.size());
  for (int p = 0; p < o.passes; ++p) {
    auto det = outpost::camera::MotionDetector::create(cfg, size);
    if (!det) {
      std::fprintf(stderr, "motion_bench: %s\n", det.status().to_string().c_str());
      return 1;
    }
    const auto t0 = Clock::now();
    for (size_t i = 0; i < frames.size(); ++i) results[i] = (*det)->process(frames[i]);
    best = std::min(best, seconds_since(t0));
  }
  int moving = 0, cover = 0;
  for (size_t i = 0; i < frames.size(); ++i) {
    if (!results[i].motion) continue;
    ++moving;
    if (covered(results[i].boxes, square_at(static_cast<int>(i), o.width, o.height)) >= 0.9)
      ++cover;
  }
  std::printf("frames %d moving %d seconds %.3f fps %.1f\n", o.frames, moving, best,
              o.frames / best);
  std::printf("covered %d of %d\n", cover, moving);
  if (!o.flags_out.empty()) {
    std::ofstream out(o.flags_out);
    for (size_t i = 0; i < results.size(); ++i) {
      out << i << ' ' << (results[i].motion ? 1 : 0);
      for (const Box& b : results[i].boxes)
        out << ' ' << b.x << ' ' << b.y << ' ' << b.w << ' ' << b.h;
      out << '\n';
    }
  }

  {
    auto det = outpost::camera::MotionDetector::create(cfg, size);
    int still = 0;
    for (int i = 0; i < o.frames; ++i) still += (*det)->process(background).motion ? 1 : 0;
    std::printf("static_moving %d\n", still);
  }

  if (o.face_frames > 0) {
    cv::Mat img = o.face_image.empty() ? cv::Mat() : cv::imread(o.face_image, cv::IMREAD_COLOR);
    std::string used = o.face_image;
    if (img.empty()) {
      img = frames[0];
      used = "synthetic scene (no face image)";
    }
    cv::Mat frame;
    cv::resize(img, frame, size, 0, 0, cv::INTER_AREA);
    auto faces = outpost::camera::FaceDetector::create(outpost::config::FaceConfig{});
    if (!faces) {
      std::fprintf(stderr, "motion_bench: %s\n", faces.status().to_string().c_str());
      return 1;
    }
    size_t found = (*faces)->detect(frame).size();  // warm-up (first call builds the cascade data)
    const auto t0 = Clock::now();
    for (int i = 0; i < o.face_frames; ++i) found = (*faces)->detect(frame).size();
    const double s = seconds_since(t0);
    std::printf("faces fps %.1f found %zu image %s\n", o.face_frames / s, found, used.c_str());
  }
  return 0;
}
