#!/usr/bin/python3
"""Per-frame detections of the Python anchor, to compare with motion_bench's.

Runs ../shared/bench/anchors/motion_opencv.py's own synthetic_frames() and detect() unchanged;
a wrapper around cv2.findContours records, frame by frame, whether the anchor saw motion
(a contour of at least 500 px at its 500 px analysis width, as detect() decides) and the
bounding boxes of all such contours, scaled back to camera pixels.

    anchor_detections.py ANCHOR_DIR OUT_FLAGS OUT_BACKGROUND_PNG [--frames 600]

OUT_FLAGS gets one line per frame, "i motion" then "x y w h" per box (frame 0 only
initializes, as in detect()). OUT_BACKGROUND_PNG gets the anchor's exact background, so motion_bench can build
the identical scene (--background).
"""
import argparse
import sys

import cv2
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("anchor_dir")
ap.add_argument("flags_out")
ap.add_argument("background_out")
ap.add_argument("--frames", type=int, default=600)
ap.add_argument("--width", type=int, default=640)
ap.add_argument("--height", type=int, default=480)
args = ap.parse_args()

sys.path.insert(0, args.anchor_dir)
import motion_opencv  # noqa: E402

cv2.setNumThreads(1)
frames = motion_opencv.synthetic_frames(args.frames, args.width, args.height)

# The background: the same generator call as synthetic_frames(); checked against frame 0
# outside its square, so a change in the anchor cannot go unnoticed.
background = np.random.default_rng(7).integers(40, 90, size=(args.height, args.width, 3), dtype=np.uint8)
side = max(16, args.width // 12)
outside = np.ones((args.height, args.width), dtype=bool)
outside[args.height // 3:args.height // 3 + side + 1, 0:side + 1] = False
if not np.array_equal(frames[0][outside], background[outside]):
    sys.exit("anchor_detections: the anchor's scene changed; update this script")
cv2.imwrite(args.background_out, background)

scale = args.width / 500.0
records = []
real_find = cv2.findContours


def spy(*a, **k):
    result = real_find(*a, **k)
    boxes = []
    for c in result[0]:
        if cv2.contourArea(c) >= 500:
            x, y, w, h = cv2.boundingRect(c)
            boxes += [int(x * scale), int(y * scale), int(round(w * scale)), int(round(h * scale))]
    records.append((1 if boxes else 0, boxes))
    return result


cv2.findContours = spy
moving = motion_opencv.detect(frames)
cv2.findContours = real_find
assert moving == sum(r[0] for r in records), "the spy disagrees with detect()"

with open(args.flags_out, "w") as out:
    out.write("0 0\n")
    for i, (motion, boxes) in enumerate(records, start=1):
        out.write(" ".join(str(v) for v in [i, motion] + boxes) + "\n")
print(f"anchor frames {len(frames)} moving {moving}")
