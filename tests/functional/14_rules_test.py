"""Local rules (issue 5, edge/rules) against the real binary in simulated mode: the greenhouse
example of config/outpost.example.toml as written (the CPU temperature driven through a fake
/sys tree under system.root, the relay read back as the board's relay_state sensor), rules over
/api/rules (admin only, every mistake a 400 naming its field), rules that survive a restart, a
FIWARE device over UDP switched by a rule, and rules that keep actuating while a network
dependency is down. All traffic stays on 127.0.0.1."""
import json
import os
import shutil
import socket
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from conftest import FAKE_ROOT, ROOT, Server, _servers, create_key, metric, wait_for

BOARD = "greenhouse-pi"
EXAMPLE = ROOT / "config" / "outpost.example.toml"
SEED_PACKET = (ROOT / "src" / "ingest" / "testdata" / "seed004_packet.json").read_bytes()
SEED_ID = "d23c058698435eff"


def greenhouse_example():
    """The [[rules]] block of the example file, uncommented (it is commented there so that copying
    the file does not switch a relay)."""
    lines, inside = [], False
    for line in EXAMPLE.read_text().splitlines():
        if line == "# [[rules]]":
            inside = True
        if inside and not line.startswith("# "):
            break
        if inside:
            lines.append(line[2:])
    assert lines, "no '# [[rules]]' block in the example file"
    return "\n".join(lines) + "\n"


class Thermal:
    """A copy of the fake pi3 tree whose thermal zone the test writes: the board reads it on every
    sample (hw: sysfs thermal under system.root, also in simulated mode)."""

    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="outpost-rules-root-")
        self.root = Path(self.tmp.name) / "root"
        shutil.copytree(FAKE_ROOT, self.root)
        self.path = self.root / "sys" / "class" / "thermal" / "thermal_zone0" / "temp"
        self.set(20)

    def set(self, celsius):
        # Whole-file replace: a sample never reads a half-written number.
        tmp = self.path.with_suffix(".new")
        tmp.write_text(f"{int(round(celsius * 1000))}\n")
        os.replace(tmp, self.path)

    def close(self):
        self.tmp.cleanup()


def start(thermal, config_text=None, data_dir=None, extra=()):
    s = Server(data_dir=data_dir, config_text=config_text,
               args=["--set", f"system.root={thermal.root}", "--set", "collector.interval=200ms",
                     "--set", f"system.device_id={BOARD}", *extra])
    _servers.append(s)
    s.start()
    s.keys = {scope: create_key(s.data_dir, scope, f"{scope} key") for scope in ("read", "control", "admin")}
    return s


def stop(s):
    _servers.remove(s)
    s.close()


@pytest.fixture
def thermal():
    t = Thermal()
    yield t
    t.close()


@pytest.fixture
def servers():
    made = []
    yield made
    for s in made:
        if s in _servers:
            stop(s)


def api(s, method, path, body=None, key=None, scope="admin"):
    headers = {"X-API-Key": key or s.keys[scope]}
    kw = {"json": body} if body is not None and not isinstance(body, (str, bytes)) else {"data": body}
    return requests.request(method, s.url(path), headers=headers, timeout=10, **kw)


def rule(s, rule_id):
    r = api(s, "GET", f"/api/rules/{rule_id}")
    assert r.status_code == 200, r.text
    return r.json()


def events(s, kind):
    r = s.get(f"/api/events?type={kind}&limit=1000", key=s.keys["read"])
    assert r.status_code == 200, r.text
    return r.json()["events"]


def board_sensor(s, sensor):
    """The latest sample of one of this board's sensors (the collector samples every 200 ms)."""
    d = s.get(f"/api/devices/{BOARD}", key=s.keys["read"]).json()
    for x in d["sensors"]:
        if x["id"] == sensor and x["value"] is not None:
            return x["value"]["values"]
    return None


def relay_is(s, on, timeout=10):
    want = 1.0 if on else 0.0
    wait_for(lambda: board_sensor(s, "relay_state") == want, timeout=timeout, what=f"relay {'on' if on else 'off'}")


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- The greenhouse example, exactly as the example file has it ----

def test_the_greenhouse_example_runs_in_simulated_mode(thermal, servers):
    s = start(thermal, config_text=greenhouse_example())
    servers.append(s)
    assert "hardware: simulated" in s.log()
    v = rule(s, "greenhouse-vent")
    assert v["source"] == "config"
    assert (v["sensor"], v["above"], v["clear_below"], v["for"]) == ("cpu_temp_c", 30.0, 27.0, "1m")
    assert v["device"] == BOARD
    assert v["state"]["active"] is False
    relay_is(s, False)

    # 31 °C: a minute starts; the relay stays off until it is over.
    thermal.set(31)
    pending = wait_for(lambda: rule(s, "greenhouse-vent")["state"]["pending_since"], what="pending")
    assert board_sensor(s, "relay_state") == 0.0
    assert events(s, "rule") == []
    on = wait_for(lambda: rule(s, "greenhouse-vent")["state"]["active"] and rule(s, "greenhouse-vent"),
                  timeout=120, what="the rule on after a minute")
    relay_is(s, True)
    fired = events(s, "rule")
    assert len(fired) == 1, fired
    p = fired[0]["payload"]
    assert (p["rule"], p["transition"], p["outcome"], p["device"], p["sensor"]) == \
        ("greenhouse-vent", "on", "ok", BOARD, "cpu_temp_c")
    assert p["value"] == pytest.approx(31.0)
    assert p["actions"][0]["type"] == "command" and p["actions"][0]["target"] == "relay"
    assert p["actions"][0]["outcome"] == "acknowledged" and p["actions"][0]["detail"] == "relay on"
    assert p["actions"][1]["type"] == "alert"
    # Not before the minute was over (the rule's own clock: when the condition began, when it fired).
    held = (parse_time(fired[0]["time"]) - parse_time(pending)).total_seconds()
    assert held >= 60, f"fired after {held} s"
    assert on["state"]["last_fired"] == fired[0]["time"]
    alerts = events(s, "alert")
    assert len(alerts) == 1 and alerts[0]["payload"]["rule"] == "greenhouse-vent"
    assert "ventilation on" in alerts[0]["payload"]["message"]
    commands = events(s, "command")
    assert commands[-1]["payload"]["who"] == "rule:greenhouse-vent"

    # 28 °C is inside the band: still on. 26.5 °C: off at once.
    thermal.set(28)
    wait_for(lambda: rule(s, "greenhouse-vent")["state"]["last_value"] == pytest.approx(28.0), what="28 seen")
    assert rule(s, "greenhouse-vent")["state"]["active"] is True
    thermal.set(26.5)
    wait_for(lambda: not rule(s, "greenhouse-vent")["state"]["active"], what="the rule off")
    relay_is(s, False)
    fired = events(s, "rule")
    assert [e["payload"]["transition"] for e in fired] == ["on", "off"]
    assert fired[1]["payload"]["actions"][0]["detail"] == "relay off"
    assert metric(s, 'outpost_rule_firings_total{transition="on"}', s.keys["read"]) == 1
    assert metric(s, 'outpost_rule_firings_total{transition="off"}', s.keys["read"]) == 1
    assert metric(s, "outpost_rule_evaluations_total", s.keys["read"]) > 5
    assert metric(s, "outpost_rule_actions_failed_total", s.keys["read"]) == 0


# ---- Rules over the API ----

VENT = {"id": "vent", "sensor": "cpu_temp_c", "above": 35, "clear_below": 33, "for": "1s",
        "on": {"command": {"target": "relay", "value": "on"}, "alert": "hot"},
        "off": {"command": {"target": "relay", "value": "off"}}}


READ_ONLY = """
[[rules]]
id = "from-the-file"
sensor = "cpu_temp_c"
above = 99
on = { alert = "melting" }
"""


def test_rules_over_the_api_create_read_replace_delete(thermal, servers):
    s = start(thermal, config_text=READ_ONLY)
    servers.append(s)
    r = api(s, "POST", "/api/rules", VENT)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == "/api/rules/vent"
    body = r.json()
    assert body["source"] == "api" and body["state"]["active"] is False
    assert body["on"]["command"] == {"device": BOARD, "target": "relay", "parameter": "state", "value": "on"}
    assert api(s, "GET", r.headers["Location"]).json()["id"] == "vent"
    listed = api(s, "GET", "/api/rules").json()
    assert listed["count"] == 2 and [x["id"] for x in listed["rules"]] == ["from-the-file", "vent"]

    thermal.set(36)
    wait_for(lambda: rule(s, "vent")["state"]["active"], what="vent on")
    relay_is(s, True)
    thermal.set(34)  # in the band
    wait_for(lambda: rule(s, "vent")["state"]["last_value"] == pytest.approx(34.0), what="34 seen")
    assert rule(s, "vent")["state"]["active"] is True
    thermal.set(32)
    wait_for(lambda: not rule(s, "vent")["state"]["active"], what="vent off")
    relay_is(s, False)
    st = rule(s, "vent")["state"]
    assert st["firings"] == 2 and st["last_transition"] == "off" and st["last_outcome"] == "ok"

    # Replace: the body's id may be left out; a different one is refused.
    r = api(s, "PUT", "/api/rules/vent", {**VENT, "id": "other"})
    assert r.status_code == 400 and r.json()["field"] == "id", r.text
    changed = {k: v for k, v in VENT.items() if k != "id"}
    changed["above"] = 40
    r = api(s, "PUT", "/api/rules/vent", changed)
    assert r.status_code == 200, r.text
    assert r.json()["above"] == 40.0
    assert api(s, "PUT", "/api/rules/nobody", changed).status_code == 404
    # Config rules are read-only here.
    r = api(s, "PUT", "/api/rules/from-the-file", changed)
    assert r.status_code == 409 and "configuration file" in r.json()["detail"], r.text
    assert api(s, "DELETE", "/api/rules/from-the-file").status_code == 409
    r = api(s, "POST", "/api/rules", {**VENT, "id": "from-the-file"})
    assert r.status_code == 409 and r.json()["field"] == "id"
    r = api(s, "POST", "/api/rules", VENT)
    assert r.status_code == 409, r.text

    # Admin scope only.
    assert api(s, "GET", "/api/rules", scope="read").status_code == 403
    assert api(s, "POST", "/api/rules", {**VENT, "id": "x"}, scope="control").status_code == 403
    assert requests.get(s.url("/api/rules"), timeout=10).status_code == 401

    r = api(s, "DELETE", "/api/rules/vent")
    assert r.status_code == 204 and r.text == ""
    assert api(s, "GET", "/api/rules/vent").status_code == 404
    assert api(s, "DELETE", "/api/rules/vent").status_code == 404
    # Deleting a rule leaves what it switched as it is, and it no longer fires.
    thermal.set(45)
    wait_for(lambda: board_sensor(s, "cpu_temp_c") == pytest.approx(45.0), what="45 seen")
    time.sleep(1.5)  # past vent's old `for`: give a wrongly kept rule its chance to fire
    assert [e["payload"]["rule"] for e in events(s, "rule")] == ["vent", "vent"]

    # Documented in OpenAPI, admin scope.
    doc = requests.get(s.url("/openapi.json"), timeout=10).json()
    for path, methods in [("/api/rules", {"get", "post"}), ("/api/rules/{id}", {"get", "put", "delete"})]:
        assert methods <= set(doc["paths"][path]), path


def fiware_packet(device_id, temperature=None, extra_sensor=None, actuator=True):
    body = {"sensors": [], "attributes": {"name": "greenhouse"}}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    if temperature is not None:
        body["sensors"].append({"value": {"unit": "Cel", "primitive": "double", "time": now, "values": temperature},
                                "attributes": {"type": "temperature"}})
    if extra_sensor:
        body["sensors"].append(extra_sensor)
    if actuator:
        body["actuators"] = [{"actions": [{"parameter": "state", "primitive": "string", "value": "on|off"}],
                              "attributes": {"name": "vent"}}]
    return json.dumps({"dataformat_version": "1.0", device_id: {device_id: body}}).encode()


class Device:
    """A FIWARE device on its own loopback UDP socket."""

    def __init__(self, server, device_id):
        self.server, self.id = server, device_id
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(10)

    def send(self, data):
        self.sock.sendto(data, self.server.udp_addr)

    def report(self, temperature):
        self.send(fiware_packet(self.id, temperature))

    def recv(self):
        return self.sock.recvfrom(65536)[0].decode()

    def close(self):
        self.sock.close()


BAD_RULES = [
    # (body, field, what the detail says)
    ({"id": "x", "device": "nobody", "sensor": "temperature", "above": 30, "on": {"alert": "a"}}, "device",
     "no device 'nobody'"),
    ({"id": "x", "device": "greenhouse000001", "sensor": "temp", "above": 30, "on": {"alert": "a"}}, "sensor",
     "has no sensor 'temp'"),
    ({"id": "x", "device": SEED_ID, "sensor": "orientation", "above": 1, "on": {"alert": "a"}}, "sensor",
     "3DPoint"),
    ({"id": "x", "sensor": "cpu_temp_c", "above": 30, "on": {"command": {"target": "relya", "value": "on"}}},
     "on.command.target", "no actuator 'relya'"),
    ({"id": "x", "sensor": "cpu_temp_c", "above": 30,
      "on": {"command": {"device": "greenhouse000001", "target": "heater", "value": "on"}}},
     "on.command.target", "no actuator 'heater'"),
    ({"id": "x", "sensor": "cpu_temp_c", "above": 30,
      "off": {"command": {"target": "servo", "parameter": "state", "value": 10}}},
     "off.command.parameter", "no parameter 'state'"),
    ({"id": "x", "sensor": "cpu_temp_c", "above": "30", "on": {"alert": "a"}}, "above", "must be a number"),
    ({"id": "x", "sensor": "cpu_temp_c", "above": 30, "clear_below": 35, "on": {"alert": "a"}}, "clear_below",
     "inverted"),
    ({"id": "x", "sensor": "cpu_temp_c", "below": 5, "clear_above": 2, "on": {"alert": "a"}}, "clear_above",
     "inverted"),
    ({"id": "x", "sensor": "cpu_temp_c", "above": 30, "for": "a while", "on": {"alert": "a"}}, "for",
     "not a duration"),
    ({"id": "x", "sensor": "cpu_temp_c", "above": 30, "for": -1, "on": {"alert": "a"}}, "for", "non-negative"),
    ({"id": "x", "sensor": "cpu_temp_c", "above": 30}, "on", "does nothing"),
    ({"id": "x", "sensor": "cpu_temp_c", "abov": 30, "on": {"alert": "a"}}, "abov", "unknown field"),
    ({"id": "x y", "sensor": "cpu_temp_c", "above": 30, "on": {"alert": "a"}}, "id", "must be 1 to 64"),
    ({"id": "x", "sensor": "cpu_temp_c", "above": 30, "on": {"command": {"value": "on"}}}, "on.command.target",
     "required"),
]


def test_bad_rules_are_400s_that_name_the_field(thermal, servers):
    s = start(thermal)
    servers.append(s)
    dev = Device(s, "greenhouse000001")
    seed = Device(s, SEED_ID)
    try:
        dev.report(20)
        seed.send(SEED_PACKET)
        wait_for(lambda: s.get("/api/devices/greenhouse000001", key=s.keys["read"]).status_code == 200, what="device")
        wait_for(lambda: s.get(f"/api/devices/{SEED_ID}", key=s.keys["read"]).status_code == 200, what="seed device")
        for body, field, says in BAD_RULES:
            r = api(s, "POST", "/api/rules", body)
            assert r.status_code == 400, (body, r.status_code, r.text)
            assert r.headers["Content-Type"] == "application/problem+json", r.headers
            p = r.json()
            assert p["status"] == 400 and p["field"] == field, (body, p)
            assert says in p["detail"], (body, p)
        # Expressions: the position of the mistake too.
        for expr, field, position, says in [
            ("greenhouse000001/temperature > 30 && greenhouse000001/humidty < 40", "expr", 37,
             "no sensor 'humidty'"),
            ("cpu_temp_c > > 30", "expr", 13, "unexpected '>'"),
            ("(cpu_temp_c > 30", "expr", 16, "expected ')'"),
            ("cpu_temp_c = 30", "expr", 11, "'=='"),
        ]:
            r = api(s, "POST", "/api/rules", {"id": "e", "expr": expr, "on": {"alert": "a"}})
            assert r.status_code == 400, (expr, r.text)
            p = r.json()
            assert (p["field"], p["position"]) == (field, position), (expr, p)
            assert says in p["detail"] and f"position {position}" in p["detail"], (expr, p)
        # Not JSON, not an object.
        for raw in ["{", "[1]", ""]:
            r = api(s, "POST", "/api/rules", raw)
            assert r.status_code == 400 and r.headers["Content-Type"] == "application/problem+json", (raw, r.text)
        # Nothing was kept.
        assert api(s, "GET", "/api/rules").json()["count"] == 0
        # The good ones: seed 004's device by its action's parameter (it has no name), and an expression.
        r = api(s, "POST", "/api/rules", {"id": "view", "sensor": "cpu_temp_c", "above": 99,
                                          "on": {"command": {"device": SEED_ID, "target": "viewstate",
                                                             "parameter": "viewstate", "value": "marker1"}}})
        assert r.status_code == 201, r.text
        r = api(s, "POST", "/api/rules", {"id": "dry", "expr": "greenhouse000001/temperature > 30 && cpu_temp_c < 90",
                                          "on": {"alert": "x"}})
        assert r.status_code == 201, r.text
    finally:
        dev.close()
        seed.close()


def test_rules_survive_a_restart_and_config_rules_are_reread(thermal, servers):
    data = Path(tempfile.mkdtemp(prefix="outpost-rules-data-")) / "data"
    try:
        s = start(thermal, config_text=greenhouse_example() + READ_ONLY, data_dir=data)
        servers.append(s)
        assert api(s, "POST", "/api/rules", VENT).status_code == 201
        assert [x["id"] for x in api(s, "GET", "/api/rules").json()["rules"]] == \
            ["from-the-file", "greenhouse-vent", "vent"]
        stop(s)
        # The next start's file has only the greenhouse: the other config rule goes, the API rule stays.
        s2 = start(thermal, config_text=greenhouse_example(), data_dir=data)
        servers.append(s2)
        listed = api(s2, "GET", "/api/rules").json()["rules"]
        assert [(x["id"], x["source"]) for x in listed] == [("greenhouse-vent", "config"), ("vent", "api")]
        assert rule(s2, "vent")["clear_below"] == 33.0
        # And it works.
        thermal.set(36)
        wait_for(lambda: rule(s2, "vent")["state"]["active"], what="vent on after the restart")
        relay_is(s2, True)
    finally:
        shutil.rmtree(data.parent, ignore_errors=True)


def test_a_fiware_device_over_udp_is_switched_by_a_rule(thermal, servers):
    s = start(thermal)
    servers.append(s)
    dev = Device(s, "greenhouse000002")
    try:
        dev.report(20)
        wait_for(lambda: s.get("/api/devices/greenhouse000002", key=s.keys["read"]).status_code == 200, what="device")
        r = api(s, "POST", "/api/rules", {
            "id": "remote-vent", "device": "greenhouse000002", "sensor": "temperature", "above": 30,
            "clear_below": 27,
            "on": {"command": {"device": "greenhouse000002", "target": "vent", "value": "on"}},
            "off": {"command": {"device": "greenhouse000002", "target": "vent", "value": "off"}}})
        assert r.status_code == 201, r.text
        dev.report(31)
        got = dev.recv()
        assert got.startswith("action=update&device_id=greenhouse000002&sensor_id=vent&parameter=state&value=on"
                              "&command_id=cmd_"), got
        command_id = got.rsplit("command_id=", 1)[1]
        dev.send(json.dumps({"ack": command_id, "status": "ok", "detail": "vent open"}).encode())
        wait_for(lambda: s.get(f"/api/commands/{command_id}", key=s.keys["read"]).json()["state"] == "acknowledged",
                 what="acknowledged")
        dev.report(29)  # in the band: nothing is sent
        dev.report(26)
        got = dev.recv()
        assert "&value=off&" in got, got
        fired = [e["payload"] for e in events(s, "rule")]
        assert [(p["transition"], p["actions"][0]["outcome"]) for p in fired] == [("on", "sent"), ("off", "sent")]
        assert fired[0]["device"] == "greenhouse000002" and fired[0]["value"] == 31.0
        # One datagram per transition: nothing else came.
        dev.sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            dev.recv()
    finally:
        dev.close()


def test_rules_keep_actuating_while_the_network_is_down(thermal, servers):
    """The greenhouse story: a network dependency is unreachable (here the MQTT broker, on a
    loopback port nobody listens on) and the rule still switches the relay, on time.

    NOTE for the lead: the upstream outbox is not on this branch. Once it is merged, add HTTP and
    MQTT upstream destinations pointing at closed loopback ports to this configuration, wire
    rules.on_alert() to the outbox in app.cpp, and assert here that the relay still switches and
    that the alert waits in GET /api/outbox (pending, with a last error) instead of being lost."""
    with socket.socket() as probe:  # a loopback port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    config = greenhouse_example().replace('for = "1m"', 'for = "2s"')
    s = start(thermal, config_text=config, extra=["--mqtt-url", f"mqtt://127.0.0.1:{dead_port}"])
    servers.append(s)
    health = s.get("/api/health", key=s.keys["read"]).json()
    assert health["hub"]["mqtt"]["connected"] is False, health
    thermal.set(33)
    wait_for(lambda: rule(s, "greenhouse-vent")["state"]["active"], timeout=20, what="rule on with the broker down")
    relay_is(s, True)
    thermal.set(25)
    wait_for(lambda: not rule(s, "greenhouse-vent")["state"]["active"], what="rule off with the broker down")
    relay_is(s, False)
    assert [e["payload"]["outcome"] for e in events(s, "rule")] == ["ok", "ok"]
    assert s.get("/api/health", key=s.keys["read"]).json()["hub"]["mqtt"]["connected"] is False


def test_a_config_rule_with_a_typo_stops_start_up_naming_it(thermal):
    bad = greenhouse_example().replace('target = "relay", value = "on"', 'target = "relai", value = "on"')
    s = Server(config_text=bad, args=["--set", f"system.root={thermal.root}"])
    try:
        with pytest.raises(AssertionError) as e:
            s.start(timeout=15)
        assert "rules[0].on.command.target" in str(e.value) and "relai" in str(e.value), str(e.value)
    finally:
        s.stop()
        s._out.close()
        s._err.close()
        s.tmp.cleanup()
