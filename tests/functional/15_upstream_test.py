"""The durable outbox and upstream delivery, black-box: real Outposts (an edge, and a hub behind
POST /api/ingest), a small HTTP upstream that goes down and comes back, kill -9 with a backlog,
lost acknowledgements, dead letters, caps, bad destinations and a store that runs out of room.

The messages are command events (POST /api/led records one per request) chosen by config
(kinds = ["command"]): a kind the real binary produces on demand. Every wait is bounded; no test
asserts how fast anything happened."""
import json
import queue
import subprocess
import threading
import time
import uuid

import paho.mqtt.client as paho
import pytest
import requests

from conftest import FAKE_ROOT, Server, create_key, is_mapped, metric, run_cli, wait_for
from mosquitto_broker import MosquittoBroker
from upstream_servers import DroppingProxy, UpstreamServer, free_port

EDGE_ID = "edge-1"


def edge_toml(url, kinds=("command",), backoff="100ms", backoff_max="1s", batch=20, extra_dest="", extra=""):
    return f"""
[system]
device_id = "{EDGE_ID}"
root = "{FAKE_ROOT}"

[upstream]
backoff_initial = "{backoff}"
backoff_max = "{backoff_max}"

[[upstream.destinations]]
name = "up"
url = "{url}"
kinds = {json.dumps(list(kinds))}
timeout = "3s"
batch = {batch}
{extra_dest}
{extra}
"""


def start_edge(fresh_server, url, data_dir=None, **kw):
    s = fresh_server(data_dir=data_dir, config_text=edge_toml(url, **kw))
    s.keys = {scope: create_key(s.data_dir, scope, f"{scope} key") for scope in ("read", "control", "admin")}
    return s


def command(edge, action="on"):
    r = edge.post("/api/led", key=edge.keys["control"], json={"action": action})
    assert r.status_code == 200, r.text


def edge_commands(edge):
    """The command events the edge stored (committed), oldest first."""
    r = edge.get("/api/events?type=command&limit=1000", key=edge.keys["read"])
    assert r.status_code == 200, r.text
    return r.json()["events"]


def outbox(edge, name="up"):
    r = edge.get("/api/outbox", key=edge.keys["read"])
    assert r.status_code == 200, r.text
    for d in r.json()["destinations"]:
        if d["name"] == name:
            return d
    raise AssertionError(f"no destination {name}: {r.text}")


def event_times(messages):
    """An event's message carries its time (microseconds; one event per POST /api/led, so unique)."""
    return [m["body"]["time"] for m in messages]


def assert_exactly_once_in_order(received, stored):
    ids = [m["id"] for m in received]
    assert len(ids) == len(set(ids)), f"a message arrived twice: {ids}"
    got = event_times(received)
    assert got == sorted(got), f"out of order: {got}"
    assert got == [e["time"] for e in stored], "the upstream did not get exactly the events the edge stored"


@pytest.fixture
def upstream():
    u = UpstreamServer()
    yield u
    u.stop()


# ---- Outage ---------------------------------------------------------------------------------


def test_outage_every_message_arrives_exactly_once_in_order(fresh_server, upstream):
    upstream.start()
    edge = start_edge(fresh_server, upstream.url)
    for _ in range(5):
        command(edge)
    wait_for(lambda: len(upstream.received()) == 5, 30, "the first 5 messages upstream")
    # Confirmed too (not only received), so taking the upstream down loses no answer.
    wait_for(lambda: outbox(edge)["delivered"] == 5, 30, "the first 5 confirmed")

    upstream.stop()
    for i in range(20):
        command(edge, "on" if i % 2 else "off")
    wait_for(lambda: len(edge_commands(edge)) == 25, 30, "25 command events stored on the edge")
    # While it is down: everything waits in the outbox, the failure is shown and counted.
    d = wait_for(lambda: (lambda d: d if d["pending"] == 20 and d["last_error"] else None)(outbox(edge)), 30,
                 "the outbox to show 20 pending and the error")
    assert "refused" in d["last_error"], d
    assert d["failures"] >= 1 and d["retries"] >= 1, d
    assert d["oldest_pending_age_seconds"] is not None
    health = edge.get("/api/health").json()
    assert health["status"] == "healthy", health  # an upstream that is down is not ill health
    assert health["upstream"]["pending"] == 20, health
    assert metric(edge, 'outpost_upstream_pending{destination="up"}', edge.keys["read"]) == 20
    assert metric(edge, 'outpost_upstream_retries_total{destination="up"}', edge.keys["read"]) >= 1

    upstream.start()
    wait_for(lambda: len(upstream.received()) == 25, 60, "every message after the upstream came back")
    assert_exactly_once_in_order(upstream.received(), edge_commands(edge))
    d = wait_for(lambda: (lambda d: d if d["pending"] == 0 else None)(outbox(edge)), 30, "an empty outbox")
    assert d["delivered"] == 25, d
    # Nothing is left to send, so what arrived is final: still each message once.
    assert_exactly_once_in_order(upstream.received(), edge_commands(edge))
    assert metric(edge, 'outpost_upstream_delivered_total{destination="up"}', edge.keys["read"]) == 25
    # What the upstream saw: the envelope, from this device, with the configured header.
    m = upstream.received()[0]
    assert m["source"] == EDGE_ID and m["kind"] == "command"
    assert m["body"]["device"] == EDGE_ID and m["body"]["payload"]["target"] == "led"


# ---- Crash ----------------------------------------------------------------------------------


def test_kill_9_with_a_backlog_loses_nothing_acknowledged_and_delivery_resumes(fresh_server, upstream, tmp_path):
    data = tmp_path / "edge"
    edge = start_edge(fresh_server, upstream.url, data_dir=data,
                      extra='[collector]\ninterval = "100ms"\n')  # readings being written all along
    for i in range(30):
        command(edge, "toggle")
    stored = wait_for(lambda: (lambda e: e if len(e) == 30 else None)(edge_commands(edge)), 30, "30 events stored")
    wait_for(lambda: outbox(edge)["pending"] == 30, 30, "30 messages in the outbox")
    readings_before = edge.get("/api/health").json()["readings_stored"]
    assert readings_before > 0
    edge.kill()

    edge2 = Server(data_dir=data, config_text=edge_toml(upstream.url, extra='[collector]\ninterval = "100ms"\n'))
    edge2.keys = edge.keys
    try:
        edge2.start()
        assert edge2.get("/api/health").json()["readings_stored"] >= readings_before, "readings acknowledged before the crash are gone"
        assert [e["id"] for e in edge_commands(edge2)][:30] == [e["id"] for e in stored]
        assert outbox(edge2)["pending"] == 30, "the backlog did not survive kill -9"
        upstream.start()
        wait_for(lambda: len(upstream.received()) == 30, 60, "the backlog delivered after the restart")
        assert_exactly_once_in_order(upstream.received(), stored)
        wait_for(lambda: outbox(edge2)["pending"] == 0, 30, "an empty outbox")
    finally:
        edge2.close()


def test_kill_9_while_delivering_loses_nothing_and_repeats_only_with_the_same_id(fresh_server, upstream, tmp_path):
    """Killed mid-delivery the edge may send a message again (at least once); never a different
    one, and never none."""
    data = tmp_path / "edge"
    upstream.start()
    edge = start_edge(fresh_server, upstream.url, data_dir=data)
    stop = threading.Event()

    def produce():
        while not stop.is_set():
            try:
                command(edge, "toggle")
            except Exception:
                return
            time.sleep(0.01)

    t = threading.Thread(target=produce)
    t.start()
    wait_for(lambda: len(upstream.received()) >= 20, 30, "deliveries under way")
    edge.kill()
    stop.set()
    t.join(timeout=10)

    edge2 = Server(data_dir=data, config_text=edge_toml(upstream.url))
    edge2.keys = edge.keys
    try:
        edge2.start()
        stored = edge_commands(edge2)
        wait_for(lambda: outbox(edge2)["pending"] == 0, 60, "the rest delivered after the restart")
        received = upstream.received()
        by_event = {}
        for m in received:
            by_event.setdefault(m["body"]["time"], set()).add(m["id"])
        assert sorted(by_event) == [e["time"] for e in stored], "a committed event never arrived (or one never stored did)"
        assert all(len(ids) == 1 for ids in by_event.values()), "a repeat came under another id"
    finally:
        edge2.close()


def ingest_batch(prefix, n, start):
    """n readings and n events of device edge-x, ids prefix-0.. (a batch as an edge sends it)."""
    msgs = []
    for i in range(n):
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + i)) + "Z"
        msgs.append({"id": f"{prefix}-r{i}", "kind": "reading",
                     "body": {"device": "edge-x", "sensor": "temp", "time": ts, "value": 20 + i % 10, "unit": "C"}})
        msgs.append({"id": f"{prefix}-e{i}", "kind": "button",
                     "body": {"device": "edge-x", "time": ts, "payload": {"batch": prefix, "i": i}}})
    return {"source": "edge-x", "messages": msgs}


def paged(server, path, key, items):
    """Every item of a paged list (`next` pages on with before=), however many."""
    out, before = [], None
    while True:
        sep = "&" if "?" in path else "?"
        r = server.get(path + (f"{sep}before={before}" if before is not None else ""), key=key)
        assert r.status_code == 200, r.text
        out += r.json()[items]
        before = r.json()["next"]
        if before is None:
            return out


def test_kill_9_of_the_hub_keeps_every_batch_it_acknowledged(fresh_server, tmp_path):
    data = tmp_path / "hub"
    hub = fresh_server(data_dir=data)
    key = create_key(data, "control", "edge")
    read = create_key(data, "read", "viewer")
    acked = []  # (batch, accepted)
    errors = []
    stop = threading.Event()
    base = int(time.time()) - 3600 * 24

    def post():
        b = 0
        while not stop.is_set():
            batch = ingest_batch(f"b{b}", 25, base + b * 25)
            try:
                r = requests.post(hub.url("/api/ingest"), json=batch, headers={"X-API-Key": key}, timeout=10)
            except requests.RequestException as e:
                errors.append(str(e))
                return
            if r.status_code == 200:
                acked.append((batch, r.json()))
            b += 1

    t = threading.Thread(target=post)
    t.start()
    wait_for(lambda: len(acked) >= 10, 60, "batches acknowledged")
    hub.kill()
    t.join(timeout=20)
    assert errors, "the poster did not notice the hub going away"
    assert all(a["accepted"] == 50 and a["duplicates"] == 0 for _, a in acked)

    hub2 = Server(data_dir=data)
    try:
        hub2.start()
        # The registry may have lost the device with the crash (it is saved every 10 s); the
        # next batch brings it back. The data must all be there.
        r = requests.post(hub2.url("/api/ingest"), json=ingest_batch("after", 1, base - 100),
                          headers={"X-API-Key": key}, timeout=10)
        assert r.status_code == 200, r.text
        times = {x["time"][:19] for x in paged(hub2, "/api/devices/edge-x/readings?sensor=temp&limit=1000", read,
                                                "readings")}
        for batch, _ in acked:
            for m in batch["messages"]:
                if m["kind"] == "reading":
                    assert m["body"]["time"][:19] in times, f"acknowledged reading {m['id']} is missing"
        events = paged(hub2, "/api/events?type=button&device=edge-x&limit=1000", read, "events")
        seen = {(e["payload"]["batch"], e["payload"]["i"]) for e in events}
        for batch, _ in acked:
            for m in batch["messages"]:
                if m["kind"] == "button":
                    assert (m["body"]["payload"]["batch"], m["body"]["payload"]["i"]) in seen, f"{m['id']} is missing"
        assert len(events) == len(seen), "an event is stored twice"
        # The edge's retry of the last acknowledged batch (its answer lost in the crash) stores nothing.
        last, _ = acked[-1]
        r = requests.post(hub2.url("/api/ingest"), json=last, headers={"X-API-Key": key}, timeout=10)
        assert r.json() == {"accepted": 0, "duplicates": 50}, r.text
    finally:
        hub2.close()


# ---- Duplicates -----------------------------------------------------------------------------


def test_a_lost_acknowledgement_is_deduplicated_by_the_receiving_hub(fresh_server):
    hub = fresh_server(args=["--set", "system.device_id=hub-1"])
    hub_key = create_key(hub.data_dir, "control", "edge-1 upstream")
    hub_read = create_key(hub.data_dir, "read", "viewer")
    proxy = DroppingProxy(hub.host, hub.port, drops=2)
    try:
        edge = start_edge(fresh_server, proxy.url, extra_dest=f'headers = {{ "X-API-Key" = "{hub_key}" }}')
        for i in range(10):
            command(edge, "on" if i % 2 else "off")
        stored = wait_for(lambda: (lambda e: e if len(e) == 10 else None)(edge_commands(edge)), 30, "10 events")
        wait_for(lambda: outbox(edge)["pending"] == 0, 60, "the edge's outbox to drain through the proxy")
        answers = proxy.seen()
        dropped = [a for a in answers if a[2]]
        assert len(dropped) == 2, answers
        assert dropped[0][1]["accepted"] > 0, "the hub had stored what the edge never heard about"
        assert sum(a[1]["duplicates"] for a in answers if not a[2]) >= 1, f"no retry was deduplicated: {answers}"

        events = requests.get(hub.url(f"/api/events?type=command&device={EDGE_ID}&limit=1000"),
                              headers={"X-API-Key": hub_read}, timeout=10).json()["events"]
        assert len(events) == 10, f"the hub holds {len(events)} command events of the edge, not 10"
        assert [e["payload"]["state"] for e in events] == [e["payload"]["state"] for e in stored]
        dev = requests.get(hub.url(f"/api/devices/{EDGE_ID}"), headers={"X-API-Key": hub_read}, timeout=10)
        assert dev.status_code == 200, dev.text
        assert dev.json()["transport"] == "edge" and dev.json()["address"] == EDGE_ID
    finally:
        proxy.close()


def test_ingest_answers_bad_batches_with_a_problem_naming_the_field(server):
    key = server.keys["control"]
    cases = [
        ("not json", "JSON object"),
        (json.dumps({"messages": []}), "body.source"),
        (json.dumps({"source": "e", "messages": [{"id": "1", "kind": "alert", "body": {}}]}),
         "messages[0].body.device"),
        (json.dumps({"source": "e", "messages": [{"id": "1", "kind": "reading",
                                                  "body": {"device": "d", "sensor": "t", "time": "noon", "value": 1}}]}),
         "messages[0].body.time"),
        (json.dumps({"source": "e", "messages": [{"id": "1", "kind": "snapshot", "content_type": "image/jpeg",
                                                  "body": {"device": "d"}}]}), "image/jpeg"),
    ]
    for body, says in cases:
        r = server.post("/api/ingest", key=key, data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (body, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert says in r.json()["detail"], (says, r.json())
    r = server.post("/api/ingest", key=key, data=b"\xff\xd8\xff\xe0", headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 415 and "snapshots" in r.json()["detail"], r.text
    too_many = {"source": "e", "messages": [{"id": str(i), "kind": "alert", "body": {"device": "d"}}
                                            for i in range(1001)]}
    r = server.post("/api/ingest", key=key, json=too_many)
    assert r.status_code == 413, r.text
    r = server.post("/api/ingest", key=key, data="x" * (2 << 20))
    assert r.status_code == 413, r.text
    assert server.post("/api/ingest", key=server.keys["read"], json=too_many).status_code == 403
    assert server.post("/api/ingest", json=too_many).status_code == 401
    # Nothing of a refused batch was stored: the same ids are new afterwards.
    ok = {"source": "e", "messages": [{"id": "x1", "kind": "alert", "body": {"device": "d"}}]}
    assert server.post("/api/ingest", key=key, json=ok).json() == {"accepted": 1, "duplicates": 0}
    assert server.post("/api/ingest", key=key, json=ok).json() == {"accepted": 0, "duplicates": 1}


# ---- Dead letters, caps ---------------------------------------------------------------------


def test_a_refused_message_is_a_dead_letter_that_can_be_retried_or_deleted(fresh_server, upstream):
    """The three messages wait while the upstream is down, so they go as one batch, which the
    upstream refuses whole for the one it does not take: the edge then sends them one by one and
    only that one becomes a dead letter."""
    upstream.refuse(lambda m: m["body"]["payload"]["action"] == "off")
    edge = start_edge(fresh_server, upstream.url)
    for action in ("on", "off", "on"):
        command(edge, action)
    wait_for(lambda: outbox(edge)["pending"] == 3, 30, "3 messages waiting")
    upstream.start()
    wait_for(lambda: len(upstream.received()) == 2, 30, "the two acceptable messages")
    assert [m["body"]["payload"]["action"] for m in upstream.received()] == ["on", "on"]
    assert upstream.seen_batches()[0] == (3, True), upstream.seen_batches()
    assert all(n == 1 for n, _ in upstream.seen_batches()[1:]), upstream.seen_batches()
    # (The upstream has the last message before the edge has its answer: wait for both.)
    d = wait_for(lambda: (lambda d: d if d["dead_letters"] == 1 and d["pending"] == 0 else None)(outbox(edge)), 30,
                 "a dead letter and nothing pending")
    assert d["delivered"] == 2 and "HTTP 400" in d["last_error"], d
    read, admin = edge.keys["read"], edge.keys["admin"]
    dead = edge.get("/api/outbox/dead", key=read).json()
    assert dead["count"] == 1
    letter = dead["dead_letters"][0]
    assert letter["destination"] == "up" and letter["kind"] == "command"
    assert letter["body"]["payload"]["action"] == "off" and "HTTP 400" in letter["last_error"], letter
    assert edge.get("/api/outbox/dead?destination=up", key=read).json()["count"] == 1
    assert metric(edge, 'outpost_upstream_dead_letters{destination="up"}', read) == 1

    # Bad requests say what is wrong.
    r = edge.get("/api/outbox/dead?limit=lots", key=read)
    assert r.status_code == 400 and r.json()["parameter"] == "limit", r.text
    assert edge.get("/api/outbox/dead?destination=nowhere", key=read).status_code == 404
    assert edge.post("/api/outbox/dead/retry", key=edge.keys["control"], json={"destination": "up"}).status_code == 403
    r = edge.post("/api/outbox/dead/retry", key=admin, json={})
    assert r.status_code == 400 and r.json()["parameter"] == "destination", r.text
    assert edge.post("/api/outbox/dead/retry", key=admin, json={"destination": "up", "id": "nope"}).status_code == 404

    upstream.refuse(None)
    r = edge.post("/api/outbox/dead/retry", key=admin, json={"destination": "up", "id": letter["id"]})
    assert r.status_code == 200 and r.json() == {"retried": 1}, r.text
    wait_for(lambda: len(upstream.received()) == 3, 30, "the retried dead letter")
    assert upstream.received()[-1]["id"] == letter["id"]

    upstream.refuse(lambda m: True)
    command(edge, "on")
    wait_for(lambda: outbox(edge)["dead_letters"] == 1, 30, "another dead letter")
    r = requests.delete(edge.url("/api/outbox/dead?destination=up"), headers={"X-API-Key": admin}, timeout=10)
    assert r.status_code == 200 and r.json() == {"deleted": 1}, r.text
    assert outbox(edge)["dead_letters"] == 0


@pytest.mark.parametrize("overflow", ["refuse_new", "drop_oldest"])
def test_the_cap_policy_is_explicit_counted_and_shown(fresh_server, upstream, overflow):
    edge = start_edge(fresh_server, upstream.url, extra_dest=f'max_messages = 5\noverflow = "{overflow}"')
    for _ in range(8):
        command(edge, "toggle")
    stored = wait_for(lambda: (lambda e: e if len(e) == 8 else None)(edge_commands(edge)), 30, "8 events stored")
    counted = "refused" if overflow == "refuse_new" else "dropped"
    d = wait_for(lambda: (lambda d: d if d[counted] == 3 else None)(outbox(edge)), 30, f"3 {counted}")
    assert d["pending"] == 5, d
    health = edge.get("/api/health").json()["upstream"]
    read = edge.keys["read"]
    if overflow == "refuse_new":
        assert d["refused"] == 3 and d["dropped"] == 0, d
        assert health["refused"] == 3, health
        assert metric(edge, 'outpost_upstream_refused_total{destination="up"}', read) == 3
        expected = stored[:5]
    else:
        assert d["dropped"] == 3 and d["refused"] == 0, d
        assert health["dropped"] == 3, health
        assert metric(edge, 'outpost_upstream_dropped_total{destination="up"}', read) == 3
        expected = stored[3:]
    assert "overflow" in edge.log(), "the cap's action is not in the log"
    upstream.start()
    wait_for(lambda: len(upstream.received()) == 5, 30, "what the outbox kept")
    assert_exactly_once_in_order(upstream.received(), expected)


# ---- Bad destinations, a failing store ------------------------------------------------------


def test_an_unreachable_destination_keeps_everything_and_says_why(fresh_server):
    url = f"http://127.0.0.1:{free_port()}/ingest"
    edge = start_edge(fresh_server, url)
    for _ in range(3):
        command(edge)
    d = wait_for(lambda: (lambda d: d if d["last_error"] and d["pending"] == 3 else None)(outbox(edge)), 30,
                 "the error to show")
    assert "connecting 127.0.0.1" in d["last_error"] and "refused" in d["last_error"], d
    assert d["next_attempt"] is not None and d["target"] == url, d
    assert d["state"] in ("backing_off", "delivering"), d
    assert "delivery failing" in edge.log()


@pytest.mark.parametrize("dest,says", [
    ('name = "up"\nurl = "not a url"', "upstream.destinations[0].url"),
    ('name = "up"\nurl = "http://"', "upstream.destinations[0].url"),
    ('name = "up"\nurl = "ftp://127.0.0.1:21/"', "unknown scheme 'ftp'"),
    ('name = "up"\nurl = "http://127.0.0.1:1/"\ntimeout = "5 parsecs"', "upstream.destinations[0].timeout"),
    ('name = "up"\nurl = "http://127.0.0.1:1/"\noverflow = "maybe"', "upstream.destinations[0].overflow"),
    ('name = "up"\nurl = "https://127.0.0.1:1/"\nca_file = "/nonexistent/ca.pem"', "/nonexistent/ca.pem"),
    ('name = "up"\nurl = "mqtt://127.0.0.1:1883"\ntopic = "up/#"', "is not a topic to publish on"),
    ('name = "up"\nurl = "mqtt://127.0.0.1:1883"', "upstream.destinations[0].topic"),
    ('url = "http://127.0.0.1:1/"', "upstream.destinations[0].name"),
])
def test_a_bad_destination_stops_start_up_naming_it(tmp_path, dest, says):
    cfg = tmp_path / "outpost.toml"
    cfg.write_text(f"[[upstream.destinations]]\n{dest}\n")
    proc = run_cli("serve", "--config", str(cfg), "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
                   "--udp-listen", "off", "--simulate", check=False)
    assert proc.returncode != 0, proc.stderr
    assert says in proc.stderr, proc.stderr


# ---- MQTT: QoS 1, a PUBACK is a delivery ------------------------------------------------------


def _mqtt_subscriber(broker, topic):
    """A persistent-session subscriber (QoS 1): the broker keeps what it missed while away."""
    inbox, connects = queue.Queue(), queue.Queue()

    def on_connect(client, userdata, flags, rc):
        client.subscribe(topic, qos=1)
        connects.put(rc)

    c = paho.Client(client_id=f"upstream-consumer-{uuid.uuid4().hex[:8]}", clean_session=False)
    c.on_connect = on_connect
    c.on_message = lambda client, userdata, msg: inbox.put(json.loads(msg.payload))
    c.connect(broker.host, broker.port, keepalive=10)
    c.loop_start()
    assert connects.get(timeout=10) == 0
    return c, inbox, connects


def _take(inbox, n, timeout):
    """Messages from inbox until n distinct ids came (QoS 1 is at least once) or time is up."""
    got, deadline = [], time.monotonic() + timeout
    while len({m["id"] for m in got}) < n and time.monotonic() < deadline:
        try:
            got.append(inbox.get(timeout=0.2))
        except queue.Empty:
            pass
    return got


def test_an_mqtt_destination_loses_nothing_across_a_broker_restart(fresh_server):
    with MosquittoBroker(persistence=True) as broker:
        consumer, inbox, connects = _mqtt_subscriber(broker, "outpost/up")
        try:
            edge = start_edge(fresh_server, broker.url, extra_dest='topic = "outpost/up"')
            for _ in range(3):
                command(edge)
            before = _take(inbox, 3, 30)
            assert len({m["id"] for m in before}) == 3, before
            wait_for(lambda: outbox(edge)["pending"] == 0, 30, "the PUBACKs")

            broker.stop()
            for _ in range(3):
                command(edge, "off")  # acknowledged by the edge's store while the broker is down
            d = wait_for(lambda: (lambda d: d if d["pending"] == 3 and d["last_error"] else None)(outbox(edge)), 30,
                         "three messages held with the broker down")
            broker.start()
            assert connects.get(timeout=30) == 0  # the consumer is back on its persistent session
            after = _take(inbox, 3, 60)
            wait_for(lambda: outbox(edge)["pending"] == 0, 30, "the PUBACKs after the restart")

            by_id = {}
            for m in before + after:
                by_id.setdefault(m["id"], m)
            received = list(by_id.values())  # in order of first arrival: the outbox delivers in order
            stored = edge_commands(edge)
            assert [m["body"]["time"] for m in received] == [e["time"] for e in stored], (d, received, stored)
            assert all(m["kind"] == "command" and m["content_type"] == "application/json" for m in received)
            assert outbox(edge)["delivered"] == 6
        finally:
            consumer.disconnect()
            consumer.loop_stop()


# ---- HTTPS: OpenSSL is a plugin (outpost-tls.so), mapped only for an https:// destination ------


def _tls_files(tmp_path):
    """A CA of the test's own and a certificate for 127.0.0.1 signed by it."""
    (tmp_path / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for cmd in (
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=outpost-test-ca -keyout ca.key -out ca.pem",
        "openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr",
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.cnf"
        " -out server.pem",
    ):
        subprocess.run(cmd.split(), cwd=tmp_path, check=True, capture_output=True, timeout=60)
    return tmp_path / "ca.pem", (str(tmp_path / "server.pem"), str(tmp_path / "server.key"))


def test_https_delivers_through_the_tls_plugin_and_plain_http_never_maps_openssl(fresh_server, upstream, tmp_path):
    ca, cert = _tls_files(tmp_path)
    secure = UpstreamServer(tls=cert).start()
    try:
        edge = start_edge(fresh_server, secure.url, extra_dest=f'ca_file = "{ca}"')
        command(edge)
        command(edge, "off")
        wait_for(lambda: len(secure.received()) == 2, 30, "both commands over HTTPS")
        assert_exactly_once_in_order(secure.received(), edge_commands(edge))
        assert is_mapped(edge, "outpost-tls.so") and is_mapped(edge, "libssl.so")
    finally:
        secure.stop()
    # The camera off: OpenCV's libraries (the camera plugin) bring libssl of their own.
    plain = start_edge(fresh_server, upstream.start().url, extra='[camera]\nsource = "off"\n')
    command(plain)
    wait_for(lambda: len(upstream.received()) == 1, 30, "the command over HTTP")
    assert not is_mapped(plain, "outpost-tls.so") and not is_mapped(plain, "libssl.so")


def test_https_refuses_a_peer_its_ca_does_not_vouch_for(fresh_server, tmp_path):
    _, cert = _tls_files(tmp_path)
    secure = UpstreamServer(tls=cert).start()
    try:
        edge = start_edge(fresh_server, secure.url)  # the system's CAs: the test's CA is not one
        command(edge)
        d = wait_for(lambda: (lambda d: d if d["last_error"] else None)(outbox(edge)), 30, "the TLS error")
        assert "TLS handshake" in d["last_error"] and "certificate" in d["last_error"], d
        assert d["pending"] == 1 and not secure.received(), d
    finally:
        secure.stop()


def test_a_missing_tls_plugin_stops_start_up_naming_it(tmp_path):
    cfg = tmp_path / "outpost.toml"
    cfg.write_text('[[upstream.destinations]]\nname = "up"\nurl = "https://127.0.0.1:1/"\n')
    missing = "/nonexistent/lib/outpost-tls.so"
    proc = run_cli("serve", "--config", str(cfg), "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
                   "--udp-listen", "off", "--simulate", "--set", f"upstream.tls_plugin={missing}", check=False)
    assert proc.returncode != 0, proc.stderr
    assert missing in proc.stderr and "upstream 'up'" in proc.stderr, proc.stderr


def test_bad_upstream_durations_name_the_key(tmp_path):
    cfg = tmp_path / "outpost.toml"
    cfg.write_text('[upstream]\nbackoff_initial = "soon"\n')
    proc = run_cli("config", "check", "--config", str(cfg), check=False)
    assert proc.returncode == 2 and "upstream.backoff_initial" in proc.stderr, proc.stderr


def test_a_full_store_refuses_clearly_and_loses_nothing_it_accepted(fresh_server, upstream):
    edge = start_edge(fresh_server, upstream.url, extra="[store]\nmax_size = 2097152\n")
    for _ in range(5):
        command(edge, "toggle")
    accepted = wait_for(lambda: (lambda e: e if len(e) == 5 else None)(edge_commands(edge)), 30, "5 events")
    wait_for(lambda: outbox(edge)["pending"] == 5, 30, "5 messages waiting")

    # Fill the database through the edge's own /api/ingest until it says it is full.
    key = edge.keys["control"]
    full = None
    start = int(time.time()) - 3600  # recent: retention (30 days) must not make room meanwhile
    for b in range(200):
        # A new time per batch: a reading of the same series and time would replace, not add.
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + b))
        msgs = [{"id": f"fill-{b}-{i}", "kind": "reading",
                 "body": {"device": "filler", "sensor": f"s{i}", "time": ts, "value": "x" * 2000}}
                for i in range(100)]
        r = edge.post("/api/ingest", key=key, json={"source": "filler", "messages": msgs})
        if r.status_code != 200:
            full = r
            break
    assert full is not None, "2 MiB held 40 MB of readings?"
    assert full.status_code == 500, full.text
    assert full.headers["Content-Type"].startswith("application/problem+json")
    assert "full" in full.json()["detail"], full.text
    # Counted and logged. (/api/health is 503 only while the latest write failed: the outbox's
    # bookkeeping and small writes that fit in a page with room still succeed, so it comes and goes.)
    assert metric(edge, "outpost_store_write_errors_total", edge.keys["read"]) >= 1
    # More events while it is full: each is stored with its outbox message or not at all (the
    # store's error is logged); a small one may still fit in a page with room.
    for _ in range(3):
        command(edge, "toggle")
    assert "database or disk is full" in edge.log()

    upstream.start()
    wait_for(lambda: outbox(edge)["pending"] == 0, 60, "the outbox emptied even on a full store")
    stored = edge_commands(edge)
    assert stored[:5] == accepted, "an event accepted before the store filled is gone"
    assert_exactly_once_in_order(upstream.received(), stored)


def test_openapi_documents_the_upstream_routes(server):
    doc = server.get("/openapi.json").json()
    for path, verb in [("/api/outbox", "get"), ("/api/outbox/dead", "get"), ("/api/outbox/dead", "delete"),
                       ("/api/outbox/dead/retry", "post"), ("/api/ingest", "post")]:
        assert verb in doc["paths"][path], (path, verb)
    # No destination configured: an empty outbox, said plainly.
    assert server.get("/api/outbox", key=server.keys["read"]).json() == {"destinations": []}
    assert server.get("/api/health").json()["upstream"]["pending"] == 0
