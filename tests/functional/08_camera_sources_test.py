"""The camera with file: sources and configuration: faces in a real photograph, a static scene,
masks, a video file, a missing file, the camera switched off."""
import time
from pathlib import Path

import pytest
import requests

from conftest import BIN, Server, create_key

IMAGES = Path(BIN).resolve().parent / "src" / "camera" / "testdata"


def events(s, kind, key):
    r = requests.get(s.url(f"/api/events?type={kind}&limit=100"), headers={"X-API-Key": key}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["events"]


def wait_for_events(s, kind, key, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = events(s, kind, key)
        if got:
            return got
        time.sleep(0.3)
    return []


def health_camera(s):
    return requests.get(s.url("/api/health"), timeout=10).json()["camera"]


def frames_seen(s, count=30, timeout=20):
    """Waits until the camera has produced `count` frames (from its health fps being non-zero)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = health_camera(s)
        if c.get("running") and c.get("fps", 0) > 0:
            return c
        time.sleep(0.2)
    raise AssertionError(f"camera never ran: {health_camera(s)}")


@pytest.fixture
def camera_server(fresh_server):
    def make(*settings):
        args = []
        for kv in settings:
            args += ["--set", kv]
        s = fresh_server(args=args)
        s.keys = {"read": create_key(s.data_dir, "read")}
        return s
    return make


def test_a_face_in_a_real_photograph_is_detected(camera_server):
    photo = IMAGES / "astronaut.png"
    assert photo.exists(), f"{photo} missing: the build fetches it (src/camera/testdata/fetch-images)"
    s = camera_server(f"camera.source=file:{photo}", "face.enabled=true", "face.interval=100ms")
    got = wait_for_events(s, "face", s.keys["read"], 20)
    assert got, "no face event for astronaut.png"
    assert got[0]["payload"]["count"] >= 1 and got[0]["payload"]["boxes"]


def test_no_face_and_no_motion_in_a_still_photograph_without_faces(camera_server):
    photo = IMAGES / "coffee.png"
    assert photo.exists(), photo
    s = camera_server(f"camera.source=file:{photo}", "face.enabled=true", "face.interval=100ms",
                      "motion.enabled=true")
    frames_seen(s)
    time.sleep(3)
    assert events(s, "face", s.keys["read"]) == []
    assert events(s, "motion", s.keys["read"]) == []  # a still image is a static scene


def test_motion_inside_a_mask_is_ignored(camera_server):
    # The synthetic scene moves everywhere; a mask over the whole frame hides all of it.
    s = camera_server("camera.source=synthetic", "motion.enabled=true", "motion.masks=0,0,640,480")
    frames_seen(s)
    time.sleep(3)
    assert events(s, "motion", s.keys["read"]) == []


def test_polygon_mask_is_accepted_and_bad_masks_stop_start_up(fresh_server, tmp_path):
    s = fresh_server(args=["--set", "camera.source=synthetic", "--set", "motion.masks=0,0 640,0 640,480 0,480"])
    frames_seen(s)
    time.sleep(2)
    assert events(s, "motion", create_key(s.data_dir, "read")) == []
    bad = Server(args=["--set", "camera.source=synthetic", "--set", "motion.masks=1,2,three"])
    with pytest.raises(AssertionError, match="exited"):
        bad.start(timeout=15)
    bad.proc.wait()
    bad._out.close()
    bad._err.close()
    assert "mask" in bad.stderr_path.read_text().lower()


def test_a_video_file_with_a_moving_object_produces_motion(camera_server, tmp_path):
    import cv2
    import numpy as np
    path = tmp_path / "moving.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (640, 480))
    for i in range(60):
        frame = np.full((480, 640, 3), 90, np.uint8)
        x = 40 + i * 8
        cv2.rectangle(frame, (x, 200), (x + 80, 280), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    s = camera_server(f"camera.source=file:{path}", "motion.enabled=true")
    got = wait_for_events(s, "motion", s.keys["read"], 20)
    assert got, "no motion event for a video of a moving square"
    assert got[0]["payload"]["boxes"]


def test_a_missing_file_is_reported_and_the_api_keeps_answering(camera_server):
    s = camera_server("camera.source=file:/nonexistent/video.avi")
    time.sleep(1)
    c = health_camera(s)
    assert c["enabled"] and not c["running"], c
    assert "unavailable" in c["detail"] or "starting" in c["detail"], c
    assert requests.get(s.url("/api/health"), timeout=5).status_code == 200
    r = requests.get(s.url("/api/status"), headers={"X-API-Key": s.keys["read"]}, timeout=5)
    assert r.status_code == 200


def test_camera_off(camera_server):
    s = camera_server("camera.source=off")
    assert health_camera(s) == {"enabled": False}
    key = {"X-API-Key": s.initial_key}
    r = requests.get(s.url("/video_feed"), headers=key, timeout=5)
    assert r.status_code == 503
    r = requests.get(s.url("/snapshot"), headers=key, timeout=10)
    assert r.json()["status"] == "error" and "not saved" in r.json()["message"]
