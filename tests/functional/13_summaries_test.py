"""Windowed summaries (edge/aggregator) against the real binary: FIWARE devices over real UDP and
the board's own collector feed the aggregator with short windows; GET /api/summaries must give
exactly the count, mean, min, max, sample stdev, first and last of what was sent (computed here),
windows close on time with no further reading, an empty window gives nothing, a restart within
a window keeps it, and bad parameters are 400 problems naming the parameter."""
import json
import math
import socket
import statistics
import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import FAKE_ROOT, Server, _servers, create_key, metric, wait_for

WINDOW = 2.0  # seconds: edge.summary_window of the module's server
GRACE = 3.0   # edge.summary_grace: generous, so a loaded machine's slow store commit is never "late"


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


@pytest.fixture(scope="module")
def hub():
    s = Server(args=["--set", f"system.root={FAKE_ROOT}", "--set", "collector.interval=200ms",
                     "--set", f"edge.summary_window={int(WINDOW)}s", "--set", f"edge.summary_grace={int(GRACE)}s"])
    s.start()
    assert s.udp_addr, s.log()
    s.keys = {scope: create_key(s.data_dir, scope, f"{scope} key") for scope in ("read", "control", "admin")}
    _servers.append(s)
    yield s
    _servers.remove(s)
    s.close()


def send_readings(server, device_id, sensor, unit, points):
    """One FIWARE packet per (time, value): the device's own timestamps."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for t, v in points:
            body = {"attributes": {"name": device_id},
                    "sensors": [{"value": {"unit": unit, "primitive": "double", "time": iso(t), "values": v},
                                 "attributes": {"type": sensor}}]}
            sock.sendto(json.dumps({"dataformat_version": "1.0", device_id: {device_id: body}}).encode(),
                        server.udp_addr)
    finally:
        sock.close()


def current_window(width, min_left):
    """The start of a window of `width` seconds (aligned to the epoch) with at least `min_left`
    seconds still to run, waiting for the next one if need be."""
    now = time.time()
    start = math.floor(now / width) * width
    if start + width - now < min_left:
        time.sleep(start + width - now + 0.05)
        start += width
    return start


def summaries(server, key=None, **params):
    r = server.get("/api/summaries", key=key or server.keys["read"], params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(body["summaries"])
    return body["summaries"]


def stored_readings(server, device_id, sensor, n):
    """Waits until the hub has stored n readings of the sensor (UDP is fire-and-forget)."""
    def got():
        r = server.get(f"/api/devices/{device_id}/readings", key=server.keys["read"],
                       params={"sensor": sensor, "limit": 1000})
        return r.status_code == 200 and len(r.json()["readings"]) >= n and r.json()["readings"]
    return wait_for(got, timeout=15, what=f"{n} readings of {device_id}/{sensor}")


def expect_summary(s, points, start, width, unit):
    values = [v for _, v in points]
    by_time = sorted(points, key=lambda p: p[0])
    assert s["period_start"] == iso(start)
    assert s["period_end"] == iso(start + width)
    assert s["unit"] == unit
    assert s["count"] == len(values)
    assert s["mean"] == pytest.approx(statistics.mean(values), rel=1e-12)
    assert s["min"] == min(values) and s["max"] == max(values)
    expected_stdev = statistics.stdev(values) if len(values) > 1 else 0
    assert s["stdev"] == pytest.approx(expected_stdev, rel=1e-9, abs=1e-12)
    assert s["first"] == by_time[0][1] and s["last"] == by_time[-1][1]


def test_udp_readings_give_exact_statistics_and_the_window_closes_with_no_further_reading(hub):
    start = current_window(WINDOW, 1.2)
    # Sent out of time order: first and last follow the device's timestamps, not arrival.
    points = [(start + 0.30, 17.25), (start + 0.10, 12.5), (start + 0.50, 9.0), (start + 0.20, 30.5),
              (start + 0.60, 22.0), (start + 0.40, 15.75)]
    other = [(start + 0.15, 1000.0)]  # another device, same sensor name: a series of its own
    send_readings(hub, "sum0000000000001", "light", "lx", points)
    send_readings(hub, "sum0000000000002", "light", "lx", other)
    stored_readings(hub, "sum0000000000001", "light", len(points))
    # Nothing more is sent to these devices: the window must close by itself.
    got = wait_for(lambda: summaries(hub, device="sum0000000000001", sensor="light"),
                   timeout=WINDOW + GRACE + 15, what="the summary of a window with no reading after it")
    assert len(got) == 1, got
    expect_summary(got[0], points, start, WINDOW, "lx")
    assert got[0]["device"] == "sum0000000000001" and got[0]["sensor"] == "light"
    assert list(got[0]) == ["device", "sensor", "unit", "period_start", "period_end", "count", "mean", "min", "max",
                            "stdev", "first", "last"]
    one = wait_for(lambda: summaries(hub, device="sum0000000000002"), timeout=15, what="the other device's summary")
    expect_summary(one[0], other, start, WINDOW, "lx")
    assert one[0]["stdev"] == 0  # a single reading

    # Several empty windows later there is still exactly one summary each: an empty window gives none.
    time.sleep(3 * WINDOW)
    assert len(summaries(hub, device="sum0000000000001")) == 1
    assert len(summaries(hub, device="sum0000000000002")) == 1
    assert metric(hub, "outpost_summaries_total", hub.keys["read"]) >= 2
    health = hub.get("/api/health").json()
    assert health["summaries"]["enabled"] is True
    assert health["summaries"]["produced"] >= 2


def test_two_windows_of_one_device_are_two_summaries_in_time_order(hub):
    start = current_window(WINDOW, 1.5)
    a = [(start + 0.1, 1.0), (start + 0.2, 2.0), (start + 0.3, 6.0)]
    b = [(start + WINDOW + 0.1, 10.0), (start + WINDOW + 0.2, 20.0)]  # the next window (ahead of the clock)
    send_readings(hub, "sum0000000000003", "temperature", "Cel", a + b)
    got = wait_for(lambda: (x := summaries(hub, device="sum0000000000003", sensor="temperature")) and len(x) == 2 and x,
                   timeout=2 * WINDOW + GRACE + 15, what="two summaries")
    expect_summary(got[0], a, start, WINDOW, "Cel")
    expect_summary(got[1], b, start + WINDOW, WINDOW, "Cel")


def board_id(server):
    board = [d for d in server.get("/api/devices", key=server.keys["read"]).json()["devices"] if d["transport"] == "local"]
    assert board, "the board is a device of the hub"
    return board[0]["id"]


def test_the_boards_collector_is_summarised_exactly_like_its_stored_readings(hub):
    board = board_id(hub)
    got = wait_for(lambda: summaries(hub, device=board, sensor="cpu_temp_c"), timeout=WINDOW + GRACE + 15,
                   what="a summary of the board's CPU temperature")
    s = got[-1]
    assert s["unit"] == "Cel"
    start, end = parse_ts(s["period_start"]), parse_ts(s["period_end"])
    assert end - start == WINDOW
    # The raw readings of that window, as stored: the summary must be exactly their statistics.
    last_us = (datetime.strptime(s["period_end"], "%Y-%m-%dT%H:%M:%S.%fZ") - timedelta(microseconds=1))
    raw = hub.get(f"/api/devices/{board}/readings", key=hub.keys["read"],
                  params={"sensor": "cpu_temp_c", "from": s["period_start"],
                          "to": last_us.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "limit": 1000}).json()
    points = [(parse_ts(r["time"]), r["value"]) for r in raw["readings"] if r["value"] is not None]
    assert points, raw
    assert len(points) >= 2, raw  # five samples a second
    expect_summary(s, points, start, WINDOW, "Cel")


@pytest.mark.parametrize("name,value", [("limit", "abc"), ("limit", "-1"), ("limit", ""), ("limit", "1.5"),
                                        ("from", "yesterday"), ("to", "2026-13-01T00:00:00Z"), ("from", "")])
def test_bad_parameters_are_400_problems_naming_the_parameter(hub, name, value):
    r = hub.get("/api/summaries", key=hub.keys["read"], params={name: value})
    assert r.status_code == 400, f"{name}={value!r}: {r.status_code} {r.text}"
    assert r.headers["Content-Type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 400 and body.get("parameter") == name, body
    assert name in body["detail"], body


def test_from_after_to_limit_cap_and_auth(hub):
    r = hub.get("/api/summaries", key=hub.keys["read"],
                params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"})
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/problem+json", r.text
    assert "from" in r.json()["detail"]
    assert hub.get("/api/summaries").status_code == 401
    # Three windows of the board's CPU temperature; `to` holds the answers still while new ones come.
    board = board_id(hub)
    cpu = wait_for(lambda: (x := summaries(hub, device=board, sensor="cpu_temp_c", limit=1000)) and len(x) >= 3 and x,
                   timeout=3 * WINDOW + GRACE + 15, what="three summaries of the board")
    to = cpu[-1]["period_start"]
    assert summaries(hub, limit="99999999999999999999", to=to) == summaries(hub, limit=1000, to=to)
    assert summaries(hub, limit=0) == []
    # The newest `limit`, ascending; from and to bound period_start, inclusive.
    assert summaries(hub, device=board, sensor="cpu_temp_c", limit=2, to=to) == cpu[-2:]
    assert summaries(hub, device=board, sensor="cpu_temp_c", limit=1000, to=to,
                     **{"from": cpu[-2]["period_start"]}) == cpu[-2:]
    assert summaries(hub, device=board, sensor="cpu_temp_c", to=cpu[0]["period_start"]) == cpu[:1]
    assert all(x["sensor"] == "cpu_temp_c" for x in summaries(hub, sensor="cpu_temp_c", to=to))
    assert summaries(hub, device="no-such-device") == []


def test_the_openapi_document_describes_the_route(hub):
    doc = hub.get("/openapi.json").json()
    op = doc["paths"]["/api/summaries"]["get"]
    assert {p["name"] for p in op["parameters"]} >= {"device", "sensor", "from", "to", "limit"}
    assert "400" in op["responses"]


def test_a_restart_within_a_window_keeps_it(fresh_server):
    width = 20
    args = ["--set", f"system.root={FAKE_ROOT}", "--set", "collector.interval=1s",
            "--set", f"edge.summary_window={width}s", "--set", "edge.summary_grace=2s"]
    s = fresh_server(args=args)
    key = create_key(s.data_dir, "read")
    start = current_window(width, 14)
    before = [(start + 0.5, 4.0), (start + 1.0, 8.0)]
    send_readings(s, "restart000000001", "light", "lx", before)
    wait_for(lambda: (r := s.get("/api/devices/restart000000001/readings", key=key, params={"sensor": "light"}))
             .status_code == 200 and len(r.json()["readings"]) == 2, timeout=10, what="the first readings")
    assert s.stop() == 0
    assert "open summary window(s) saved" in s.stderr_path.read_text()
    # The same data directory, within the same window.
    s2 = Server(data_dir=s.data_dir, args=args)
    _servers.append(s2)
    try:
        s2.start()
        assert time.time() < start + width, "the restart took longer than the window: make the window longer"
        after = [(start + 2.0, 6.0), (start + 3.0, 2.0)]
        send_readings(s2, "restart000000001", "light", "lx", after)
        got = wait_for(lambda: summaries(s2, key=key, device="restart000000001"), timeout=width + 20,
                       what="the summary of the window the restart fell in")
        assert len(got) == 1, got
        expect_summary(got[0], before + after, start, width, "lx")
    finally:
        _servers.remove(s2)
        s2.close()
