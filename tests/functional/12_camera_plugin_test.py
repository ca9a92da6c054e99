"""The camera plugin (outpost-camera.so): loaded only when the camera is on, and a plugin that
cannot be loaded stops start-up with a message naming it."""
from pathlib import Path

import pytest
import requests

from conftest import BIN, Server, mapped_files

PLUGIN = Path(BIN).resolve().parent / "outpost-camera.so"


def failed_start(**kw):
    """Starts a server that must exit at start-up; returns (exit code, its stderr)."""
    s = Server(**kw)
    try:
        with pytest.raises(AssertionError, match="exited"):
            s.start(timeout=15)
        code = s.proc.wait()
        return code, s.stderr_path.read_text()
    finally:
        s._out.close()
        s._err.close()
        s.tmp.cleanup()


def test_the_plugin_is_built_beside_the_binary():
    assert PLUGIN.is_file(), f"{PLUGIN} missing: the outpost target depends on outpost-camera"


def test_camera_off_maps_neither_the_plugin_nor_opencv(fresh_server):
    s = fresh_server(args=["--set", "camera.source=off"])
    files = mapped_files(s)
    assert not [f for f in files if "opencv" in f or "outpost-camera" in f], sorted(files)


def test_camera_on_runs_through_the_plugin(fresh_server):
    s = fresh_server(args=["--set", "camera.source=synthetic"])
    files = mapped_files(s)
    assert str(PLUGIN) in files, sorted(files)
    assert requests.get(s.url("/api/health"), timeout=10).json()["camera"]["enabled"]


@pytest.mark.parametrize("how", ["environment", "config key"])
def test_a_missing_plugin_stops_start_up_naming_the_path(tmp_path, how):
    missing = tmp_path / "nowhere" / "outpost-camera.so"
    args = ["--set", "camera.source=synthetic"]
    env = None
    if how == "environment":
        env = {"OUTPOST_CAMERA_PLUGIN": str(missing)}
    else:
        args += ["--set", f"camera.plugin={missing}"]
    code, err = failed_start(args=args, env=env)
    assert code != 0
    assert str(missing) in err, err
    assert "camera plugin" in err, err


def test_a_file_that_is_not_a_plugin_stops_start_up(tmp_path):
    bogus = tmp_path / "outpost-camera.so"
    bogus.write_text("not an ELF file\n")
    code, err = failed_start(args=["--set", "camera.source=synthetic", "--set", f"camera.plugin={bogus}"])
    assert code != 0
    assert str(bogus) in err, err


def test_the_plugin_setting_is_ignored_with_the_camera_off(fresh_server, tmp_path):
    s = fresh_server(args=["--set", "camera.source=off", "--set", f"camera.plugin={tmp_path / 'none.so'}"])
    assert requests.get(s.url("/api/health"), timeout=10).json()["camera"] == {"enabled": False}
