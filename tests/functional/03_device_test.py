"""Seed 002's device API (the Flask edge API Outpost replaces): GET /api/status, GET /api/readings,
POST /api/led, GET /api/health, against the fake pi3 tree (thermal_zone0 reads 46160 m°C)."""
import json
import re
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

SEED_FIELDS = ["cpu_temp_c", "led_state", "button_pressed", "timestamp", "simulated"]
VALID_ACTIONS = ["on", "off", "toggle"]
ISO_UTC_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
FAKE_TEMP_C = 46.2  # 46160 m°C rounded to 1 decimal, as seed 002's round(cpu.temperature, 1)


def parse_ts(text):
    assert ISO_UTC_Z.match(text), f"timestamp {text!r} is not ISO 8601 UTC ending in Z"
    return datetime.fromisoformat(text[:-1] + "+00:00")


def iso(dt):
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def readings(server, key, **params):
    r = requests.get(server.url("/api/readings"), params=params, headers={"X-API-Key": key}, timeout=10)
    assert r.status_code == 200, (params, r.status_code, r.text)
    body = r.json()
    assert list(body) == ["count", "readings"], f"members are {list(body)}, expected count then readings"
    assert body["count"] == len(body["readings"]), f"count {body['count']} != {len(body['readings'])} readings"
    return body["readings"]


def wait_for_readings(server, key, n, timeout=40):
    """Waits until the collector (every 200 ms in the module server) has stored at least n samples."""
    deadline = time.monotonic() + timeout
    while True:
        got = readings(server, key, limit=1000)
        if len(got) >= n:
            return got
        assert time.monotonic() < deadline, f"only {len(got)} readings after {timeout}s, waited for {n}"
        time.sleep(0.2)


def check_reading_shape(reading):
    assert list(reading) == SEED_FIELDS, f"reading fields {list(reading)}, seed order is {SEED_FIELDS}"
    assert isinstance(reading["cpu_temp_c"], (int, float)) and not isinstance(reading["cpu_temp_c"], bool), reading
    assert reading["led_state"] in ("on", "off"), reading
    assert isinstance(reading["button_pressed"], bool), reading
    parse_ts(reading["timestamp"])
    assert reading["simulated"] is True, reading


def led(server, body, key=None, **kw):
    key = key or server.keys["control"]
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    return server.post("/api/led", key=key, data=body, headers={"Content-Type": "application/json"}, **kw)


def status(server):
    r = server.get("/api/status", key=server.keys["read"])
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------------------------- /api/status


def test_status_has_seed_fields_in_seed_order_with_their_types(server):
    r = server.get("/api/status", key=server.keys["read"])
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json"), r.headers["Content-Type"]
    check_reading_shape(r.json())


def test_status_cpu_temperature_is_the_thermal_zone_rounded_to_one_decimal(server):
    assert status(server)["cpu_temp_c"] == FAKE_TEMP_C
    # the raw text has no float noise (46.2, not 46.199999999999996)
    raw = server.get("/api/status", key=server.keys["read"]).text
    assert '"cpu_temp_c":46.2,' in raw.replace(" ", ""), raw


def test_status_timestamp_is_iso8601_utc_and_now(server):
    before = datetime.now(timezone.utc)
    ts = parse_ts(status(server)["timestamp"])
    after = datetime.now(timezone.utc)
    assert before - timedelta(seconds=2) <= ts <= after + timedelta(seconds=2), (before, ts, after)
    assert status(server)["simulated"] is True and status(server)["button_pressed"] is False


# -------------------------------------------------------------------------------- /api/readings


def test_readings_default_limit_is_50_newest_last(server):
    key = server.keys["read"]
    everything = wait_for_readings(server, key, 51)
    # Pin the window with `to` so that samples arriving meanwhile do not move it.
    to = everything[-1]["timestamp"]
    all_until = readings(server, key, limit=1000, to=to)
    default = readings(server, key, to=to)
    assert len(default) == 50, f"default limit gave {len(default)} readings, seed 002 gives 50"
    assert default == all_until[-50:], "default answer is not the 50 newest readings"
    stamps = [parse_ts(x["timestamp"]) for x in default]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), "readings are not oldest first, newest last"
    for x in default:
        check_reading_shape(x)
        assert x["cpu_temp_c"] == FAKE_TEMP_C, x


def test_readings_limit_n_gives_the_n_newest(server):
    key = server.keys["read"]
    everything = wait_for_readings(server, key, 8)
    to = everything[-1]["timestamp"]
    all_until = readings(server, key, limit=1000, to=to)
    for n in (1, 2, 7):
        got = readings(server, key, limit=n, to=to)
        assert got == all_until[-n:], f"limit={n} did not give the {n} newest readings"


def test_readings_limit_zero_is_empty(server):
    wait_for_readings(server, server.keys["read"], 1)
    assert readings(server, server.keys["read"], limit=0) == []


@pytest.mark.parametrize("limit", ["5000", "1001", "99999999999999999999999"])
def test_readings_limit_above_1000_is_capped_not_refused(server, limit):
    key = server.keys["read"]
    everything = wait_for_readings(server, key, 2)
    to = everything[-1]["timestamp"]
    got = readings(server, key, limit=limit, to=to)
    assert 0 < len(got) <= 1000
    assert got == readings(server, key, limit=1000, to=to), f"limit={limit} is not the same as limit=1000"


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "", "1e3", " 5", "+5", "0x10", "5abc"])
def test_readings_bad_limit_is_400_problem_naming_the_parameter(server, bad):
    r = server.get("/api/readings", key=server.keys["read"], params={"limit": bad})
    assert r.status_code == 400, f"limit={bad!r}: {r.status_code} {r.text}"
    assert r.headers["Content-Type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 400 and body.get("parameter") == "limit", body
    assert "limit" in body["detail"] and body["error"] == body["detail"], body


def test_readings_from_and_to_split_at_a_time_between_two_samples(server):
    key = server.keys["read"]
    got = wait_for_readings(server, key, 6)
    to = got[-1]["timestamp"]
    window = readings(server, key, limit=1000, to=to)
    i = len(window) // 2
    a, b = parse_ts(window[i - 1]["timestamp"]), parse_ts(window[i]["timestamp"])
    middle = a + (b - a) / 2
    assert a < middle < b
    later = readings(server, key, limit=1000, **{"from": iso(middle), "to": to})
    assert later == window[i:], "from= did not give exactly the samples after the chosen time"
    earlier = readings(server, key, limit=1000, to=iso(middle))
    assert earlier == window[:i], "to= did not give exactly the samples before the chosen time"
    for x in later:
        assert parse_ts(x["timestamp"]) >= middle, x
    for x in earlier:
        assert parse_ts(x["timestamp"]) <= middle, x


def test_readings_from_and_to_bounds_are_inclusive(server):
    key = server.keys["read"]
    got = wait_for_readings(server, key, 3)
    ts = got[-2]["timestamp"]
    assert readings(server, key, **{"from": ts, "to": ts}) == [got[-2]], "a sample at exactly from=to was left out"


def test_readings_time_zone_offsets_are_honoured(server):
    key = server.keys["read"]
    got = wait_for_readings(server, key, 6)
    to = got[-1]["timestamp"]
    window = readings(server, key, limit=1000, to=to)
    i = len(window) // 2
    a, b = parse_ts(window[i - 1]["timestamp"]), parse_ts(window[i]["timestamp"])
    middle = a + (b - a) / 2
    plus2 = middle.astimezone(timezone(timedelta(hours=2))).isoformat()  # ...+02:00
    minus5 = middle.astimezone(timezone(timedelta(hours=-5, minutes=-30))).isoformat()  # ...-05:30
    for text in (plus2, minus5):
        assert readings(server, key, limit=1000, **{"from": text, "to": to}) == window[i:], text


@pytest.mark.parametrize("param", ["from", "to"])
@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", "NaN", "2026-02-30", "2026-11-21T25:00:00Z",
                                 "2026-11-21T10:00:00", "2026-11-21T10:00:00Zjunk", "1700000000", ""])
def test_readings_bad_time_is_400_naming_the_parameter(server, param, bad):
    r = server.get("/api/readings", key=server.keys["read"], params={param: bad})
    assert r.status_code == 400, f"{param}={bad!r}: {r.status_code} {r.text}"
    assert r.headers["Content-Type"] == "application/problem+json"
    body = r.json()
    assert body.get("parameter") == param and param in body["detail"], body


def test_readings_from_later_than_to_is_400(server):
    r = server.get("/api/readings", key=server.keys["read"],
                   params={"from": "2026-11-22T00:00:00Z", "to": "2026-11-21T00:00:00Z"})
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    assert "from" in r.json()["detail"], r.json()


def test_readings_of_a_time_range_without_samples_is_empty(server):
    assert readings(server, server.keys["read"], **{"from": "2001-01-01T00:00:00Z", "to": "2001-01-02"}) == []


# ------------------------------------------------------------------------------------ /api/led


def test_led_on_off_toggle_answer_and_status_agree(server):
    for action, expected in [("on", "on"), ("off", "off"), ("toggle", "on"), ("toggle", "off"), ("off", "off")]:
        r = led(server, {"action": action})
        assert r.status_code == 200, (action, r.status_code, r.text)
        assert r.json() == {"action": action, "led_state": expected}, (action, r.json())
        assert list(r.json()) == ["action", "led_state"]
        assert status(server)["led_state"] == expected, f"/api/status disagrees after {action}"


@pytest.mark.parametrize("action,expected", [("ON", "on"), ("Off", "off"), ("TOGGLE", "on")])
def test_led_action_is_case_insensitive_like_seed_lower(server, action, expected):
    assert led(server, {"action": "off"}).status_code == 200
    r = led(server, {"action": action})
    assert r.status_code == 200, r.text
    # the seed answers with the lowered action
    assert r.json() == {"action": action.lower(), "led_state": expected}, r.json()
    assert status(server)["led_state"] == expected


def test_led_state_shows_in_the_following_readings(server):
    key = server.keys["read"]
    for action in ("on", "off"):
        r = led(server, {"action": action})
        assert r.status_code == 200, r.text
        commanded = datetime.now(timezone.utc)
        deadline = time.monotonic() + 5
        while True:
            newest = readings(server, key, limit=1)
            if newest and parse_ts(newest[0]["timestamp"]) > commanded + timedelta(milliseconds=50):
                break
            assert time.monotonic() < deadline, "no sample was taken after the LED command within 5s"
            time.sleep(0.1)
        assert newest[0]["led_state"] == action, f"sample after LED {action}: {newest[0]}"


def test_led_unknown_action_is_400_with_seed_error_and_valid_list(server):
    r = led(server, {"action": "blink"})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "Unknown action: blink", body
    assert body["valid"] == VALID_ACTIONS, body
    assert r.headers["Content-Type"] == "application/problem+json"


def test_led_unknown_action_error_names_the_lowered_action_like_seed(server):
    # seed 002: action = data.get("action", "").lower(); error = f"Unknown action: {action}"
    r = led(server, {"action": "BLINK"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "Unknown action: blink", r.json()


@pytest.mark.parametrize("body", [
    b"",
    b"{",
    b"{'action': 'on'}",
    b'{"action": "on"',
    b'{"action": 5}',
    b'{"action": null}',
    b'{"action": true}',
    b'{"action": ["on"]}',
    b'{"action": {"on": 1}}',
    b'["on"]',
    b"[]",
    b'"on"',
    b"on",
    b"null",
    b"42",
    b"{}",
    b'{"Action": "on"}',
    b'{"action": ""}',
    b'{"action": "on "}',
    b'{"action": "o\\u0000n"}',
    b'{"action": "\xff\xfe"}',
    b"\x00\x01\x02",
], ids=lambda b: repr(b)[:40])
def test_led_bad_body_is_400_with_valid_actions_and_leaves_led_alone(server, body):
    assert led(server, {"action": "on"}).status_code == 200
    r = led(server, body)
    assert r.status_code == 400, f"{body!r}: {r.status_code} {r.text}"
    problem = r.json()
    assert isinstance(problem.get("error"), str) and problem["error"], problem
    assert problem["valid"] == VALID_ACTIONS, problem
    assert status(server)["led_state"] == "on", f"{body!r} changed the LED"


JUST_UNDER_1MIB = (1 << 20) - 64


@pytest.mark.parametrize("kind", ["nested-arrays", "nested-objects-unclosed", "binary", "long-action", "long-number",
                                  "many-members", "long-string-array"])
def test_led_huge_garbage_body_just_under_limit_is_400_and_server_keeps_serving(server, kind):
    n = JUST_UNDER_1MIB
    if kind == "nested-arrays":
        body = b"[" * (n // 2) + b"]" * (n // 2)
    elif kind == "nested-objects-unclosed":
        body = b'{"a":' * (n // 5)
    elif kind == "binary":
        body = bytes((i * 151 + 7) % 256 for i in range(n))
    elif kind == "long-action":
        body = b'{"action": "' + b"x" * (n - 20) + b'"}'
    elif kind == "long-number":
        body = b'{"action": ' + b"9" * (n - 20) + b"}"
    elif kind == "many-members":
        body = b"{" + b",".join(b'"k%d":0' % i for i in range(n // 12)) + b"}"
    else:
        body = b"[" + b",".join([b'"on"'] * (n // 5)) + b"]"
    assert len(body) < 1 << 20, len(body)
    t0 = time.monotonic()
    r = led(server, body, timeout=120)
    elapsed = time.monotonic() - t0
    assert r.status_code == 400, f"{kind}: {r.status_code} {r.text[:300]}"
    assert r.json()["valid"] == VALID_ACTIONS
    # Each kind takes well under a second even in the sanitizer build; a parser that is quadratic in
    # some shape of input lets one request hold a server thread for a minute.
    assert elapsed < 5, f"{kind}: a {len(body)}-byte body took {elapsed:.1f}s to refuse"
    assert server.get("/api/health").status_code == 200
    assert status(server)["cpu_temp_c"] == FAKE_TEMP_C


def test_concurrent_toggles_are_atomic(server):
    """200 toggles from 8 clients at once: each sees its own flip, so half answer "on", half "off",
    and the LED ends where it started."""
    assert led(server, {"action": "off"}).status_code == 200
    answers = []

    def client():
        with requests.Session() as sess:
            for _ in range(25):
                r = sess.post(server.url("/api/led"), headers={"X-API-Key": server.keys["control"]},
                              json={"action": "toggle"}, timeout=10)
                answers.append((r.status_code, r.json().get("led_state")))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 200 and all(code == 200 for code, _ in answers), answers
    ons = sum(1 for _, state in answers if state == "on")
    assert ons == 100, f"{ons} of 200 toggles answered 'on': toggles are not atomic"
    assert status(server)["led_state"] == "off"


def test_led_needs_control_scope(server):
    assert led(server, {"action": "on"}, key=server.keys["read"]).status_code == 403
    assert led(server, {"action": "on"}, key=server.keys["control"]).status_code == 200


def test_led_state_in_readings_survives_a_burst_of_commands(fresh_server):
    """Every sample records the LED state; a burst of commands between samples must not make
    /api/readings lose the state of the samples after it."""
    s = fresh_server(args=["--set", "collector.interval=2s"])
    key = s.initial_key
    assert s.post("/api/led", key=key, json={"action": "on"}).status_code == 200
    start = datetime.now(timezone.utc)

    statuses = []

    def burst(n):
        with requests.Session() as sess:
            for _ in range(n):
                statuses.append(sess.post(s.url("/api/led"), headers={"X-API-Key": key}, json={"action": "on"},
                                          timeout=10).status_code)

    threads = [threading.Thread(target=burst, args=(300,)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 1500, f"LED commands answered {sorted(set(statuses))}"
    burst_end = datetime.now(timezone.utc)
    deadline = time.monotonic() + 10
    while True:
        r = s.get("/api/readings", key=key, params={"limit": 1000, "from": iso(start - timedelta(seconds=3))})
        got = r.json()["readings"]
        if got and parse_ts(got[-1]["timestamp"]) > burst_end:
            break
        assert time.monotonic() < deadline, "no sample after the burst within 10s"
        time.sleep(0.2)
    after_on = [x for x in got if parse_ts(x["timestamp"]) > start]
    assert after_on, got
    # each of these samples asked for alone (from = to = its time) says "on"
    for x in after_on:
        one = s.get("/api/readings", key=key, params={"from": x["timestamp"], "to": x["timestamp"]}).json()
        assert one["readings"][0]["led_state"] == "on", one
    wrong = [x for x in after_on if x["led_state"] != "on"]
    assert not wrong, (f"{len(wrong)} of {len(after_on)} samples taken while the LED was on are listed as 'off' "
                       f"after 1500 LED commands (each says 'on' when asked for alone): {wrong}")


# --------------------------------------------------------------------------------- /api/health


def test_health_is_public_healthy_and_moves_on(server):
    wait_for_readings(server, server.keys["read"], 1)
    r1 = requests.get(server.url("/api/health"), timeout=5)
    assert r1.status_code == 200, r1.text
    h1 = r1.json()
    assert h1["status"] == "healthy"
    assert isinstance(h1["uptime_seconds"], (int, float)) and h1["uptime_seconds"] >= 0
    assert isinstance(h1["readings_stored"], int) and h1["readings_stored"] > 0
    assert h1["store"]["ok"] is True, h1
    assert h1["hardware"]["simulated"] is True, h1
    deadline = time.monotonic() + 5
    while True:
        time.sleep(0.3)
        h2 = requests.get(server.url("/api/health"), timeout=5).json()
        if h2["uptime_seconds"] > h1["uptime_seconds"] and h2["readings_stored"] > h1["readings_stored"]:
            break
        assert time.monotonic() < deadline, f"health did not move on in 5s: {h1} then {h2}"
    assert h2["uptime_seconds"] - h1["uptime_seconds"] < 10, (h1, h2)


def test_health_fields_come_in_seed_order(server):
    # seed 002: {"status", "uptime_seconds", "readings_stored"}; Outpost's additions follow them
    h = requests.get(server.url("/api/health"), timeout=5).json()
    assert list(h)[:3] == ["status", "uptime_seconds", "readings_stored"], f"member order {list(h)}"
