"""FIWARE Real Virtual Interaction (seed 004) against the real binary: the seed's device packet
over real UDP (plain and gzip), every request of the seed replayed as written, the native
device API over the same devices, forwarded commands to a fake device, and bad input of every
kind without losing accepted readings."""
import gzip
import json
import socket

import pytest

from conftest import ROOT, Server, _servers, create_key, metric, run_cli, wait_for

SEED_PACKET = (ROOT / "src" / "ingest" / "testdata" / "seed004_packet.json").read_bytes()
SEED_ID = "d23c058698435eff"




class Device:
    """A fake FIWARE device: sends packets from its own UDP socket and reads what the hub sends back."""

    def __init__(self, server):
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)

    def send(self, data):
        self.sock.sendto(data, self.server.udp_addr)

    def packet(self, device_id, lat=None, lon=None, light=None, time_text="2014-02-17 14:35:53", extra=None):
        body = {"sensors": [], "attributes": {"name": "Android device"}}
        if lat is not None:
            body["attributes"]["location"] = {"lat": lat, "lon": lon}
        if light is not None:
            body["sensors"].append({
                "value": {"unit": "lx", "primitive": "double", "time": time_text, "values": light},
                "configuration": [{"interval": "ms", "toggleable": "boolean"}],
                "attributes": {"type": "light", "power": 0.75, "vendor": "Sharp", "name": "GP2A Light sensor"}})
        doc = {"dataformat_version": "1.0", device_id: {device_id: body}}
        if extra:
            doc.update(extra)
        self.send(json.dumps(doc).encode())

    def recv(self):
        data, _ = self.sock.recvfrom(65536)
        return data

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def hub():
    s = Server(args=["--set", "hub.command_timeout=1s"])
    s.start()
    assert s.udp_addr, s.log()
    s.keys = {scope: create_key(s.data_dir, scope, f"{scope} key") for scope in ("read", "control", "admin")}
    _servers.append(s)
    yield s
    _servers.remove(s)
    s.close()


def load_by_id(hub, device_id, key=None, extra=""):
    return hub.get(f"/?action=loadById&device_id={device_id}&maxResults=1{extra}", key=key or hub.keys["read"])


def test_the_seeds_packet_plain_then_gzip(hub):
    dev = Device(hub)
    try:
        dev.send(SEED_PACKET)
        r = wait_for(lambda: (x := load_by_id(hub, SEED_ID)).json() and x, what="seed device")
        assert r.status_code == 200
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        body = r.json()
        assert list(body) == [SEED_ID]
        d = body[SEED_ID]
        assert "dataformat_version" not in json.dumps(body)
        assert set(d) == {"sensors", "attributes", "actuators"}
        assert d["attributes"] == {"name": "Android device"}
        assert [s["attributes"]["type"] for s in d["sensors"]] == ["orientation", "gyroscope", "magneticfield",
                                                                   "linearacceleration"]
        first = d["sensors"][0]
        assert first["configuration"] == [{"interval": "ms", "toggleable": "boolean"}]
        assert first["values"] == [{"unit": "uT", "time": "2014-02-19 09:40:06",
                                    "values": [17.819183349609375, 0.07265311479568481, -0.4838427007198334],
                                    "primitive": "3DPoint"}]
        act = d["actuators"][0]
        assert act["actions"][0]["parameter"] == "viewstate"
        assert act["callbacks"] == [{"target": "viewstate", "return_type": "boolean"}]
        assert act["attributes"] == {"dimensions": "[480,800]"}
        # gzip, another id, the single-level form.
        doc = json.loads(SEED_PACKET)
        inner = doc.pop(SEED_ID)[SEED_ID]
        doc["gz00000000000001"] = inner
        dev.send(gzip.compress(json.dumps(doc).encode()))
        wait_for(lambda: load_by_id(hub, "gz00000000000001").json(), what="gzip device")
        # The native view of the same device: its sender's address is its last known address.
        native = hub.get(f"/api/devices/{SEED_ID}", key=hub.keys["read"]).json()
        assert native["transport"] == "udp"
        assert native["address"] == f"127.0.0.1:{dev.sock.getsockname()[1]}"
        assert native["online"] is True
    finally:
        dev.close()


def test_load_by_spatial_circle_and_square_as_the_seed_writes_them(hub):
    dev = Device(hub)
    try:
        dev.packet("8587cdb9a135fa2a", lat=65.4, lon=25.4, light=58.607452)
        dev.packet("near0000000000a1", lat=65.405, lon=25.4, light=1.0)    # ~560 m north
        dev.packet("far00000000000a2", lat=65.6, lon=25.4, light=2.0)      # ~22 km north
        dev.packet("noloc0000000000a", light=3.0)
        wait_for(lambda: load_by_id(hub, "noloc0000000000a").json(), what="devices")
        key = hub.keys["read"]
        # The seed's request, exactly.
        r = hub.get("/?action=loadBySpatial&lat=65.4&lon=25.4&radius=1500&maxResults=1", key=key)
        assert r.status_code == 200
        body = r.json()
        assert list(body) == ["8587cdb9a135fa2a"]  # nearest first, maxResults devices
        s = body["8587cdb9a135fa2a"]["sensors"][0]
        assert s["values"] == [{"unit": "lx", "time": "2014-02-17 14:35:53", "values": 58.607452, "primitive": "double"}]
        assert s["attributes"]["vendor"] == "Sharp"
        both = hub.get("/?action=loadBySpatial&lat=65.4&lon=25.4&radius=1500&maxResults=10", key=key).json()
        assert list(both) == ["8587cdb9a135fa2a", "near0000000000a1"]
        square = hub.get("/?action=loadBySpatial&minLat=65.3&maxLat=65.7&minLon=25&maxLon=26&maxResults=10", key=key).json()
        assert set(square) == {"8587cdb9a135fa2a", "near0000000000a1", "far00000000000a2"}
        # No match: an empty object.
        assert hub.get("/?action=loadBySpatial&lat=0&lon=0&radius=1000&maxResults=5", key=key).json() == {}
        assert load_by_id(hub, "unknown0000000000").json() == {}
        # The native filters agree.
        near = hub.get("/api/devices?near=65.4,25.4,1500", key=key).json()
        assert [d["id"] for d in near["devices"]] == ["8587cdb9a135fa2a", "near0000000000a1"]
        bbox = hub.get("/api/devices?bbox=25,65.3,26,65.7&limit=1", key=key).json()
        assert bbox["total"] == 3 and bbox["count"] == 1
        assert hub.get("/api/devices?type=light&transport=udp", key=key).json()["total"] >= 4
    finally:
        dev.close()


@pytest.mark.parametrize("query,param", [
    ("action=loadBySpatial&lat=91&lon=25&radius=100", "lat"),
    ("action=loadBySpatial&lat=65&lon=181&radius=100", "lon"),
    ("action=loadBySpatial&lat=65&lon=25&radius=-1", "radius"),
    ("action=loadBySpatial&lat=65&lon=25&radius=0", "radius"),
    ("action=loadBySpatial&lat=NaN&lon=25&radius=100", "lat"),
    ("action=loadBySpatial&lat=65&lon=inf&radius=100", "lon"),
    ("action=loadBySpatial&lat=abc&lon=25&radius=100", "lat"),
    ("action=loadBySpatial&lon=25&radius=100", "lat"),
    ("action=loadBySpatial&lat=65&lon=25", "radius"),
    ("action=loadBySpatial&lat=65&lon=25&radius=100&maxResults=0", "maxResults"),
    ("action=loadBySpatial&lat=65&lon=25&radius=100&maxResults=-3", "maxResults"),
    ("action=loadBySpatial&minLat=66&maxLat=65&minLon=25&maxLon=26", "minLat"),
    ("action=loadBySpatial&minLat=65&maxLat=66&minLon=25", "maxLon"),
    ("action=loadById", "device_id"),
    ("action=loadById&device_id=", "device_id"),
    ("action=loadById&device_id=x&maxResults=x", "maxResults"),
    ("action=deleteEverything", "action"),
])
def test_bad_query_parameters_get_400_naming_them(hub, query, param):
    r = hub.get(f"/?{query}", key=hub.keys["read"])
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["parameter"] == param
    assert body["error"]


def test_load_by_id_with_history(hub):
    dev = Device(hub)
    try:
        for i in range(5):
            dev.packet("hist000000000001", light=float(i), time_text=f"2026-11-21 10:00:0{i}")
        key = hub.keys["read"]
        wait_for(lambda: hub.get("/api/devices/hist000000000001/readings?sensor=light", key=key).json().get("count") == 5,
                 what="five readings")
        body = hub.get("/?action=loadById&device_id=hist000000000001&maxResults=3", key=key).json()
        values = body["hist000000000001"]["sensors"][0]["values"]
        assert [v["values"] for v in values] == [4.0, 3.0, 2.0]  # the latest first
        assert values[0]["time"] == "2026-11-21 10:00:04"
        # Native readings: ascending, cursor paging, buckets.
        page = hub.get("/api/devices/hist000000000001/readings?sensor=light&limit=2", key=key).json()
        assert [r["value"] for r in page["readings"]] == [3.0, 4.0]
        older = hub.get(f"/api/devices/hist000000000001/readings?sensor=light&limit=2&before={page['next']}", key=key).json()
        assert [r["value"] for r in older["readings"]] == [1.0, 2.0]
        buckets = hub.get("/api/devices/hist000000000001/readings?sensor=light&bucket=1m", key=key).json()["buckets"]
        assert buckets == [{"start": "2026-11-21T10:00:00.000000Z", "count": 5, "mean": 2.0, "min": 0.0, "max": 4.0}]
        assert hub.get("/api/devices/hist000000000001/readings?sensor=light&bucket=7m", key=key).status_code == 400
        assert hub.get("/api/devices/hist000000000001/readings", key=key).status_code == 400
        assert hub.get("/api/devices/hist000000000001/readings?sensor=nope", key=key).status_code == 404
        assert hub.get("/api/devices/nope/readings?sensor=light", key=key).status_code == 404
    finally:
        dev.close()


def test_update_is_forwarded_exactly_to_the_device(hub):
    dev = Device(hub)
    try:
        dev.packet("440cd2d8c18d7d3a", light=1.0)
        wait_for(lambda: load_by_id(hub, "440cd2d8c18d7d3a").json(), what="device")
        body = "action=update&device_id=440cd2d8c18d7d3a&sensor_id=display&parameter=viewstate&value=marker5"
        r = hub.post("/", key=hub.keys["control"], data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 200
        assert r.text == "200 OK"
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert dev.recv().decode() == body
        # Unknown device, or one whose address is unknown: 404.
        r = hub.post("/", key=hub.keys["control"],
                     data="action=update&device_id=nobody&sensor_id=display&parameter=viewstate&value=1")
        assert r.status_code == 404
        # Bad bodies say what is wrong.
        for bad, field in [("action=delete&device_id=x&parameter=p&value=1", "action"),
                           ("device_id=x&parameter=p&value=1", "action"),
                           ("action=update&parameter=p&value=1", "device_id"),
                           ("action=update&device_id=440cd2d8c18d7d3a&value=1", "parameter"),
                           ("action=update&device_id=%zz", None)]:
            r = hub.post("/", key=hub.keys["control"], data=bad)
            assert r.status_code == 400, (bad, r.text)
            if field:
                assert r.json()["parameter"] == field
        # A read key may not send.
        assert hub.post("/", key=hub.keys["read"], data=body).status_code == 403
    finally:
        dev.close()


def test_native_commands_are_acknowledged_or_time_out(hub):
    dev = Device(hub)
    try:
        dev.packet("cmd0000000000001", light=1.0)
        wait_for(lambda: load_by_id(hub, "cmd0000000000001").json(), what="device")
        key = hub.keys["control"]
        r = hub.post("/api/devices/cmd0000000000001/commands", key=key,
                     json={"target": "display", "parameter": "viewstate", "value": "marker 7"})
        assert r.status_code == 202, r.text
        cmd = r.json()
        got = dev.recv().decode()
        assert got == ("action=update&device_id=cmd0000000000001&sensor_id=display&parameter=viewstate"
                       f"&value=marker+7&command_id={cmd['id']}")
        dev.send(json.dumps({"ack": cmd["id"], "status": "ok", "detail": "shown"}).encode())
        done = wait_for(lambda: (c := hub.get(f"/api/commands/{cmd['id']}", key=key).json())["state"] == "acknowledged"
                        and c, what="ack")
        assert done["detail"] == "shown"
        # The device says it failed.
        cmd2 = hub.post("/api/devices/cmd0000000000001/commands", key=key,
                        json={"target": "display", "parameter": "viewstate", "value": 1}).json()
        dev.recv()
        dev.send(json.dumps({"ack": cmd2["id"], "status": "failed", "detail": "no such marker"}).encode())
        wait_for(lambda: hub.get(f"/api/commands/{cmd2['id']}", key=key).json()["state"] == "failed", what="failed")
        # No answer: timed out (hub.command_timeout = 1s here).
        cmd3 = hub.post("/api/devices/cmd0000000000001/commands", key=key,
                        json={"target": "display", "parameter": "viewstate", "value": 1}).json()
        wait_for(lambda: hub.get(f"/api/commands/{cmd3['id']}", key=key).json()["state"] == "timed_out", timeout=10,
                 what="timed out")
        # Every outcome is an event with who and what.
        events = hub.get("/api/events?type=command&device=cmd0000000000001", key=key).json()["events"]
        assert [e["payload"]["state"] for e in events] == ["acknowledged", "failed", "timed_out"]
        assert events[0]["payload"]["who"] == "control key"
        # Bad commands.
        for body, status in [({"parameter": "p", "value": 1}, 400), ({"target": "t", "value": 1}, 400),
                             ({"target": "t", "parameter": "p"}, 400), ("nope", 400)]:
            r = hub.post("/api/devices/cmd0000000000001/commands", key=key,
                         **({"json": body} if isinstance(body, dict) else {"data": body}))
            assert r.status_code == status, (body, r.text)
        assert hub.post("/api/devices/nobody/commands", key=key,
                        json={"target": "t", "parameter": "p", "value": 1}).status_code == 404
        assert hub.get("/api/commands/cmd_0000000000000000", key=key).status_code == 404
    finally:
        dev.close()


def test_malformed_packets_are_dropped_counted_and_lose_nothing_accepted(hub):
    dev = Device(hub)
    try:
        key = hub.keys["read"]
        dev.packet("keep000000000001", light=1.0, time_text="2026-11-21 11:00:00")
        wait_for(lambda: load_by_id(hub, "keep000000000001").json(), what="accepted")
        before = {r: metric(hub, f'outpost_udp_dropped_total{{reason="{r}"}}', key)
                  for r in ("invalid_json", "wrong_version", "missing_fields", "too_large", "decompression")}
        good = json.loads(SEED_PACKET)
        bad = [
            (b"{not json", "invalid_json"),
            (b"\x00\x01\x02", "invalid_json"),
            (json.dumps({**good, "dataformat_version": "2.0"}).encode(), "wrong_version"),
            (json.dumps({k: v for k, v in good.items() if k != "dataformat_version"}).encode(), "wrong_version"),
            (json.dumps({"dataformat_version": "1.0", "dev": {"sensors": "nope"}}).encode(), "missing_fields"),
            (json.dumps({"dataformat_version": "1.0", "dev": 5}).encode(), "missing_fields"),
            (b"[1,2,3]", "missing_fields"),
            (b"\x1f\x8b\x08\x00garbage", "decompression"),
            (gzip.compress(b" " * (2 << 20)), "decompression"),  # a gzip bomb: 2 MiB of spaces
            (b"{" + b" " * 65000 + b"}", None),  # large but within the datagram limit
        ]
        for data, _ in bad:
            dev.send(data)
        for _, reason in bad:
            if reason:
                wait_for(lambda r=reason: metric(hub, f'outpost_udp_dropped_total{{reason="{r}"}}', key) > before[r],
                         what=f"drop {reason}")
        # Nothing accepted was lost, and the server still serves and ingests.
        dev.packet("keep000000000001", light=2.0, time_text="2026-11-21 11:00:01")
        wait_for(lambda: hub.get("/api/devices/keep000000000001/readings?sensor=light", key=key).json()["count"] == 2,
                 what="both readings")
        assert hub.get("/api/health").status_code == 200
    finally:
        dev.close()


def test_anonymous_read_is_off_by_default_and_can_be_switched_on(hub, fresh_server):
    assert hub.get("/?action=loadById&device_id=x").status_code == 401
    s = fresh_server(args=["--set", "hub.anonymous_read=true"])
    assert s.get("/?action=loadById&device_id=x").status_code == 200
    assert s.get("/?action=loadById&device_id=x").json() == {}
    # Only the FIWARE reads: seed 000's hello, writes and the native API still need a key.
    assert s.get("/").status_code == 401
    assert s.post("/", data="action=update&device_id=x&parameter=p&value=1").status_code == 401
    assert s.get("/api/devices").status_code == 401


def test_devices_and_their_addresses_survive_a_restart(fresh_server):
    s = fresh_server()
    dev = Device(s)
    key = create_key(s.data_dir, "control")
    try:
        dev.packet("persist000000001", lat=60.0, lon=24.0, light=5.0)
        wait_for(lambda: s.get("/api/devices/persist000000001", key=key).status_code == 200, what="device")
        assert s.stop() == 0
        s2 = fresh_server(data_dir=s.data_dir)
        d = s2.get("/api/devices/persist000000001", key=key).json()
        assert d["online"] is False
        assert d["address"] == f"127.0.0.1:{dev.sock.getsockname()[1]}"
        assert d["location"] == {"lat": 60.0, "lon": 24.0}
        # A forward reaches it at its remembered address.
        r = s2.post("/", key=key, data="action=update&device_id=persist000000001&sensor_id=s&parameter=p&value=1")
        assert r.status_code == 200
        assert dev.recv() == b"action=update&device_id=persist000000001&sensor_id=s&parameter=p&value=1"
    finally:
        dev.close()


def test_required_device_keys(fresh_server):
    s = fresh_server(args=["--set", "udp.require_key=true"])
    key = create_key(s.data_dir, "read")
    dkey = run_cli("devices", "key", "--data-dir", str(s.data_dir), "signed0000000001").stdout.strip().splitlines()[-1]
    assert dkey.startswith("odk_")
    dev = Device(s)
    try:
        dev.packet("signed0000000001", light=1.0, extra={"api_key": "odk_wrong"})
        dev.packet("unsigned00000001", light=1.0)
        dev.packet("signed0000000001", light=2.0, extra={"api_key": dkey}, time_text="2026-11-21 11:00:01")
        wait_for(lambda: s.get("/api/devices/signed0000000001", key=key).status_code == 200, what="signed device")
        wait_for(lambda: metric(s, 'outpost_udp_dropped_total{reason="unauthorized"}', key) == 2, what="two refused")
        assert s.get("/api/devices/unsigned00000001", key=key).status_code == 404
        rows = s.get("/api/devices/signed0000000001/readings?sensor=light", key=key).json()["readings"]
        assert [r["value"] for r in rows] == [2.0]
    finally:
        dev.close()


def test_oversized_datagrams_are_dropped(fresh_server):
    s = fresh_server(args=["--set", "udp.max_datagram=1024"])
    key = create_key(s.data_dir, "read")
    dev = Device(s)
    try:
        big = json.dumps({"dataformat_version": "1.0", "big0000000000001": {"attributes": {"pad": "x" * 2000}}})
        dev.send(big.encode())
        dev.packet("small00000000001", light=1.0)
        wait_for(lambda: s.get("/api/devices/small00000000001", key=key).status_code == 200, what="small one")
        wait_for(lambda: metric(s, 'outpost_udp_dropped_total{reason="too_large"}', key) == 1, what="too_large")
        assert s.get("/api/devices/big0000000000001", key=key).status_code == 404
    finally:
        dev.close()
