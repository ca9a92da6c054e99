"""AstroPlant kits over MQTT (seed 003): a real Mosquitto broker, kits publishing with paho-mqtt,
and seed 003's three routes, commands over kit-rpc, bad payloads, and a broker restart."""
import json
import time

import paho.mqtt.client as paho
import pytest

from conftest import Server, _servers, create_key, is_mapped, metric, wait_for
from mosquitto_broker import MosquittoBroker




class Kit:
    """A fake AstroPlant kit: publishes measurements and answers kit-rpc requests."""

    def __init__(self, broker, serial, answer="ok"):
        self.serial = serial
        self.answer = answer
        self.requests = []
        self.c = paho.Client(client_id=f"kit-{serial}", clean_session=True)
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, rc: c.subscribe(f"kit/{serial}/kit-rpc/request", qos=1)
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg):
        req = json.loads(msg.payload)
        self.requests.append(req)
        if self.answer:
            client.publish(f"kit/{self.serial}/kit-rpc/response",
                           json.dumps({"id": req["id"], "status": self.answer, "detail": "relay switched"}), qos=1)

    def raw(self, peripheral, quantity, value, when):
        payload = {"peripheral": peripheral, "quantity_type": quantity, "value": value, "datetime": when}
        self.c.publish(f"kit/{self.serial}/measurement/raw", json.dumps(payload), qos=1).wait_for_publish(5)

    def send(self, topic_tail, payload):
        self.c.publish(f"kit/{self.serial}/{topic_tail}", payload, qos=1).wait_for_publish(5)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture(scope="module")
def broker():
    with MosquittoBroker() as b:
        yield b


@pytest.fixture(scope="module")
def hub(broker):
    s = Server(args=["--mqtt-url", broker.url, "--set", "hub.command_timeout=2s"])
    s.start()
    s.keys = {scope: create_key(s.data_dir, scope, f"{scope} key") for scope in ("read", "control")}
    _servers.append(s)
    yield s
    _servers.remove(s)
    s.close()


def test_kits_list_details_and_latest_data(hub, broker):
    kit = Kit(broker, "kit-0001")
    try:
        base = "2026-11-21T10:00:0{}Z"
        for i in range(3):
            kit.raw("Local DHT22", "Temperature", 21.0 + i, base.format(i))
        kit.raw("Local DHT22", 2, 55.5, base.format(5))  # an integer quantity type id
        kit.send("measurement/aggregate", json.dumps({
            "peripheral": "Local DHT22", "quantity_type": "Temperature", "count": 3, "average": 22.0,
            "minimum": 21.0, "maximum": 23.0, "datetime_start": base.format(0), "datetime_end": base.format(9)}))
        key = hub.keys["read"]
        wait_for(lambda: len(hub.get("/kits/kit-0001/data", key=key).json().get("data", {})) == 3, what="kit data")
        kits = hub.get("/kits", key=key).json()
        assert [k["id"] for k in kits] == ["kit-0001"]
        details = hub.get("/kits/kit-0001", key=key).json()
        assert details["id"] == "kit-0001"
        assert details["details"]["id"] == "kit-0001"
        assert details["details"]["ip"] == "kit-0001"  # an MQTT kit's address is its serial
        assert "description" in details["details"] and "location" in details["details"]
        data = hub.get("/kits/kit-0001/data", key=key).json()["data"]
        temps = data["Local DHT22.Temperature"]
        assert [p["value"] for p in temps] == [21.0, 22.0, 23.0]
        assert temps[0]["timestamp"].startswith("2026-11-21T10:00:00")
        assert data["Local DHT22.2"][0]["value"] == 55.5
        assert data["Local DHT22.Temperature.aggregate"][0]["value"] == 22.0
        # The same device through the native API, transport mqtt.
        dev = hub.get("/api/devices/kit-0001", key=key).json()
        assert dev["transport"] == "mqtt"
        agg = [s for s in dev["sensors"] if s["id"] == "Local DHT22.Temperature.aggregate"][0]
        assert agg["value"]["values"]["maximum"] == 23.0
        assert hub.get("/api/devices?transport=mqtt", key=key).json()["total"] == 1
        # Unknown kits and devices of other transports are 404 on /kits.
        assert hub.get("/kits/nope", key=key).status_code == 404
        assert hub.get("/kits/nope/data", key=key).status_code == 404
        assert hub.get("/kits", key=None).status_code == 401
    finally:
        kit.close()


def test_commands_reach_the_kit_and_its_answer_comes_back(hub, broker):
    kit = Kit(broker, "kit-0002")
    try:
        kit.raw("relay", "state", 0, "2026-11-21T10:00:00Z")
        key = hub.keys["control"]
        wait_for(lambda: hub.get("/api/devices/kit-0002", key=key).status_code == 200, what="kit registered")
        r = hub.post("/api/devices/kit-0002/commands", key=key,
                     json={"target": "relay", "parameter": "state", "value": 1})
        assert r.status_code == 202, r.text
        cmd = r.json()
        assert r.headers["Location"] == f"/api/commands/{cmd['id']}"
        done = wait_for(lambda: (c := hub.get(f"/api/commands/{cmd['id']}", key=key).json())["state"] == "acknowledged" and c,
                        what="acknowledged")
        assert done["detail"] == "relay switched"
        assert kit.requests == [{"id": cmd["id"], "target": "relay", "parameter": "state", "value": 1}]
        events = hub.get("/api/events?type=command&device=kit-0002", key=key).json()["events"]
        assert events[-1]["payload"]["state"] == "acknowledged"
        # A read key may not command.
        assert hub.post("/api/devices/kit-0002/commands", key=hub.keys["read"],
                        json={"target": "relay", "parameter": "state", "value": 1}).status_code == 403
    finally:
        kit.close()


def test_a_kit_that_never_answers_times_out(hub, broker):
    kit = Kit(broker, "kit-0003", answer=None)
    try:
        kit.raw("relay", "state", 0, "2026-11-21T10:00:00Z")
        key = hub.keys["control"]
        wait_for(lambda: hub.get("/api/devices/kit-0003", key=key).status_code == 200, what="kit registered")
        cmd = hub.post("/api/devices/kit-0003/commands", key=key,
                       json={"target": "relay", "parameter": "state", "value": 1}).json()
        assert cmd["state"] == "sent"
        wait_for(lambda: hub.get(f"/api/commands/{cmd['id']}", key=key).json()["state"] == "timed_out",
                 timeout=10, what="timed out")
    finally:
        kit.close()


def test_malformed_payloads_are_dropped_and_counted(hub, broker):
    kit = Kit(broker, "kit-0004")
    try:
        kit.send("measurement/raw", b"{not json")
        kit.send("measurement/raw", json.dumps({"peripheral": "p"}))
        kit.send("measurement/raw", json.dumps({"peripheral": "p", "quantity_type": "q", "value": "hot"}))
        kit.raw("p", "q", 1.5, "2026-11-21T10:00:00Z")  # the good one still gets in

        def counted():
            return all(metric(hub, f'outpost_mqtt_dropped_total{{reason="{r}"}}', hub.keys["read"]) >= 1
                       for r in ("invalid_json", "missing_fields", "bad_type"))
        wait_for(lambda: hub.get("/api/devices/kit-0004", key=hub.keys["read"]).status_code == 200, what="good one")
        wait_for(counted, what="drops counted")
        sensors = hub.get("/api/devices/kit-0004", key=hub.keys["read"]).json()["sensors"]
        assert [s["id"] for s in sensors] == ["p.q"]
    finally:
        kit.close()


def test_broker_restart_mid_stream_loses_nothing_published_after(fresh_server):
    with MosquittoBroker() as b:
        s = fresh_server(args=["--mqtt-url", b.url])
        key = create_key(s.data_dir, "read")
        kit = Kit(b, "kit-0005")
        try:
            for i in range(5):
                kit.raw("p", "q", float(i), f"2026-11-21T10:00:0{i}Z")
            wait_for(lambda: s.get("/api/devices/kit-0005/readings?sensor=p.q", key=key).json().get("count") == 5,
                     what="before restart")
            b.restart()
            kit.close()
            # Outpost reconnects with backoff and subscribes again.
            kit = Kit(b, "kit-0005")
            deadline = time.monotonic() + 30
            i = 5
            while time.monotonic() < deadline:
                kit.raw("p", "q", float(i), f"2026-11-21T10:00:{i:02d}Z")
                i += 1
                if s.get("/api/devices/kit-0005/readings?sensor=p.q", key=key).json()["count"] > 5:
                    break
                time.sleep(0.3)
            rows = s.get("/api/devices/kit-0005/readings?sensor=p.q&limit=1000", key=key).json()["readings"]
            assert len(rows) > 5, "nothing arrived after the broker restart"
            assert metric(s, "outpost_mqtt_connected", key=key) == 1
        finally:
            kit.close()


def test_libmosquitto_and_openssl_are_loaded_only_when_mqtt_is_on(hub, fresh_server):
    # With MQTT on, the library was opened on demand (and OpenSSL with it).
    assert is_mapped(hub, "libmosquitto.so")
    # With it off (no --mqtt-url), neither is ever mapped: the idle footprint stays small.
    off = fresh_server(args=["--set", "camera.source=off"])
    assert off.get("/api/health").status_code == 200
    assert not is_mapped(off, "libmosquitto.so")
    assert not is_mapped(off, "libssl.so")
