"""RaspAP's RestAPI (seed 001): GET /system and GET /networking with RaspAP's field names, JSON
types, order and error style, read from the fake trees src/sysinfo/testdata/pi3 (a Raspberry Pi 3
running hostapd) and .../pc (a desktop: no Pi, no thermal zone, no hostapd)."""
import re
import time
from datetime import datetime, timedelta, timezone

import requests

from conftest import ROOT

PC_ROOT = ROOT / "src" / "sysinfo" / "testdata" / "pc"

# The example answer of seed 001, in its order; Outpost adds usedDisk (RaspAP's newer field).
SEED_SYSTEM = {
    "hostname": "raspberrypi",
    "uptime": "up 23 hours, 2 minutes",
    "systime": "Sun 10 Mar 11:11:11 CET 2024",
    "usedMemory": 35.46,
    "processorCount": 4,
    "LoadAvg1Min": 0.14,
    "systemLoadPercentage": 3.5,
    "systemTemperature": 46.16,
    "hostapdStatus": 1,
    "operatingSystem": "Debian GNU/Linux 12 (bookworm)",
    "kernelVersion": "6.1.0-rpi4-rpi-v8",
    "rpiRevision": "Pi 3 Model B",
}
EXTRA_FIELDS = {"usedDisk"}
# `date` in en_GB as Raspberry Pi OS prints it: "Sun 10 Mar 11:11:11 CET 2024", "Sun  3 Mar ..."
SYSTIME = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([ \d]\d) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                     r"(\d\d):(\d\d):(\d\d) (\S+) (\d{4})$")


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def json_type(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    return type(v).__name__


def get_raspap(server, path, key):
    r = requests.get(server.url(path), headers={"access_token": key, "accept": "application/json"}, timeout=10)
    assert r.status_code == 200, (path, r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json"), r.headers["Content-Type"]
    return r


# ------------------------------------------------------------------------------------- /system


def test_system_has_every_seed_field_in_seed_order(server):
    body = get_raspap(server, "/system", server.keys["read"]).json()
    names = list(body)
    missing = [k for k in SEED_SYSTEM if k not in body]
    assert not missing, f"fields of seed 001 missing: {missing}"
    extra = set(names) - set(SEED_SYSTEM) - EXTRA_FIELDS
    assert not extra, f"fields that RaspAP does not have: {extra}"
    in_seed_order = [k for k in names if k in SEED_SYSTEM]
    assert in_seed_order == list(SEED_SYSTEM), f"order {in_seed_order}, seed has {list(SEED_SYSTEM)}"


def test_system_json_types_match_the_seed_example(server):
    body = get_raspap(server, "/system", server.keys["read"]).json()
    for name, example in SEED_SYSTEM.items():
        v = body[name]
        if isinstance(example, str):
            assert isinstance(v, str), (name, v)
        elif isinstance(example, int):  # processorCount, hostapdStatus: integers, never 4.0
            assert json_type(v) == "integer", (name, v)
        else:  # usedMemory 35.46, LoadAvg1Min, systemLoadPercentage 3.5, systemTemperature
            assert is_number(v), (name, v)
    assert is_number(body["usedDisk"]) and 0 <= body["usedDisk"] <= 100, body["usedDisk"]


def test_system_values_come_from_the_pi3_tree(server):
    body = get_raspap(server, "/system", server.keys["read"]).json()
    expected = dict(SEED_SYSTEM)
    # proc/uptime is 83000.52 s: 23 h 3 min (the seed example's machine had been up 23 h 2 min)
    expected["uptime"] = "up 23 hours, 3 minutes"
    del expected["systime"]
    got = {k: body[k] for k in expected}
    assert got == expected, {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    # the text behind the numbers: no float noise such as 35.460000000000001
    raw = requests.get(server.url("/system"), headers={"access_token": server.keys["read"]}, timeout=5).text
    for frag in ('"usedMemory":35.46', '"LoadAvg1Min":0.14', '"systemLoadPercentage":3.5',
                 '"systemTemperature":46.16', '"processorCount":4,', '"hostapdStatus":1,'):
        assert frag in raw.replace(" ", ""), f"{frag} not in {raw}"


def test_system_systime_is_date_format_and_now(server):
    body = get_raspap(server, "/system", server.keys["read"]).json()
    assert SYSTIME.match(body["systime"]), f"systime {body['systime']!r} is not `date` output"


def test_system_systime_follows_the_server_time_zone(fresh_server):
    from conftest import FAKE_ROOT
    s = fresh_server(args=["--set", f"system.root={FAKE_ROOT}"], env={"TZ": "XYZ-3"})  # POSIX TZ: UTC+3, "XYZ"
    before = datetime.now(timezone.utc)
    systime = get_raspap(s, "/system", s.initial_key).json()["systime"]
    after = datetime.now(timezone.utc)
    m = SYSTIME.match(systime)
    assert m, f"systime {systime!r} is not `date` output"
    assert m.group(7) == "XYZ", f"zone of {systime!r} is not the server's TZ abbreviation XYZ"
    shown = datetime.strptime(f"{m.group(2).strip()} {m.group(3)} {m.group(8)} {m.group(4)}:{m.group(5)}:{m.group(6)}",
                              "%d %b %Y %H:%M:%S").replace(tzinfo=timezone(timedelta(hours=3)))
    assert before - timedelta(seconds=2) <= shown <= after + timedelta(seconds=1), (systime, before, after)
    assert systime.startswith(shown.strftime("%a ")), f"weekday of {systime!r} is wrong"


def test_system_bad_key_is_403_fastapi_detail_not_problem(server):
    for headers in ({}, {"access_token": "o2eycsnwzacgcukkdkxulmvcva7hou5q"}):
        r = requests.get(server.url("/system"), headers=headers, timeout=5)
        assert r.status_code == 403, (headers, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/json"), r.headers["Content-Type"]
        assert list(r.json()) == ["detail"] and isinstance(r.json()["detail"], str), r.json()


def test_system_of_a_pc_is_unknown_device_without_temperature(fresh_server):
    s = fresh_server(args=["--set", f"system.root={PC_ROOT}"])
    body = get_raspap(s, "/system", s.initial_key).json()
    assert [k for k in body if k in SEED_SYSTEM] == list(SEED_SYSTEM), list(body)
    expected = {
        "hostname": "workstation",  # etc/hostname: the tree has no proc/sys/kernel/hostname
        "uptime": "up 2 weeks, 6 hours, 56 minutes",  # 1234567.89 s
        "usedMemory": 25.0,  # (16000000 - 12000000) / 16000000
        "processorCount": 2,
        "LoadAvg1Min": 1.5,
        "systemLoadPercentage": 75.0,
        "systemTemperature": None,  # no thermal zone: null, not RaspAP's ambiguous 0
        "hostapdStatus": 0,  # hostapd_cli is not hostapd, and /proc/self is not a process id
        "operatingSystem": "Fedora Linux 39 (Workstation Edition)",
        "kernelVersion": "6.5.6-300.fc39.x86_64",
        "rpiRevision": "Unknown Device",
    }
    got = {k: body[k] for k in expected}
    assert got == expected, {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert json_type(body["processorCount"]) == "integer" and json_type(body["hostapdStatus"]) == "integer"
    assert SYSTIME.match(body["systime"]), body["systime"]


# --------------------------------------------------------------------------------- /networking


def test_networking_shape_and_counters_from_proc_net_dev(server):
    r = get_raspap(server, "/networking", server.keys["read"])
    body = r.json()
    assert list(body) == ["interfaces", "throughput"], list(body)
    interfaces, throughput = body["interfaces"], body["throughput"]
    assert set(interfaces) == set(throughput), (list(interfaces), list(throughput))
    assert {"eth0", "wlan0"} <= set(interfaces), list(interfaces)
    for name, facts in interfaces.items():
        assert list(facts)[:3] == ["IP_address", "Netmask", "MAC_address"], (name, facts)
        # a fake tree has no addresses; the host's must not leak into it
        assert facts["IP_address"] is None and facts["Netmask"] is None, (name, facts)
        assert list(throughput[name]) == ["RX_packets", "RX_bytes", "TX_packets", "TX_bytes"], throughput[name]
        for v in throughput[name].values():
            assert json_type(v) == "integer" and v >= 0, (name, throughput[name])
    assert interfaces["eth0"]["MAC_address"] == "b8:27:eb:01:02:03"
    assert interfaces["wlan0"]["MAC_address"] == "b8:27:eb:0a:0b:0c"
    assert throughput["wlan0"] == {"RX_packets": 2, "RX_bytes": 1, "TX_packets": 10, "TX_bytes": 9}
    # Counters past 2^32 and up to 2^64-1, exactly (not wrapped, not as floats).
    assert throughput["eth0"] == {"RX_packets": 4294967297, "RX_bytes": 5000000000123, "TX_packets": 42,
                                  "TX_bytes": 18446744073709551615}, throughput["eth0"]
    assert "18446744073709551615" in r.text and "e+" not in r.text and "E+" not in r.text


def test_networking_hides_loopback_like_raspap(server):
    # RaspAP's networking.py skips names starting with "lo" or "docker" in both members.
    body = get_raspap(server, "/networking", server.keys["read"]).json()
    assert "lo" not in body["interfaces"] and "lo" not in body["throughput"], (
        f"RaspAP leaves out the loopback interface; got interfaces {list(body['interfaces'])}")


def test_networking_of_the_pc_tree(fresh_server):
    s = fresh_server(args=["--set", f"system.root={PC_ROOT}"])
    body = get_raspap(s, "/networking", s.initial_key).json()
    assert body["throughput"]["enp0s31f6"] == {"RX_packets": 10, "RX_bytes": 100, "TX_packets": 20, "TX_bytes": 200}
    assert body["interfaces"]["enp0s31f6"]["MAC_address"] == "3c:52:82:aa:bb:cc"


def test_networking_bad_key_is_403_detail(server):
    r = requests.get(server.url("/networking"), headers={"access_token": server.keys["read"] + "x"}, timeout=5)
    assert r.status_code == 403 and list(r.json()) == ["detail"], (r.status_code, r.text)


def test_raspap_routes_answer_repeatedly_and_concurrently(server):
    """Each answer reads the tree afresh; many at once give the same facts."""
    import concurrent.futures
    key = server.keys["read"]

    def one(path):
        r = requests.get(server.url(path), headers={"access_token": key}, timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        body.pop("systime", None)
        body.pop("usedDisk", None)  # the real disk under the tree changes as we write
        return path, body

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, ["/system", "/networking"] * 20))
    by_path = {}
    for path, body in results:
        by_path.setdefault(path, body)
        assert body == by_path[path], f"{path} answered differently under concurrency"
    assert time.monotonic() - t0 < 30
