"""Live events over WebSocket (seed 004): real clients (Python websockets from Debian, and the
seed's own JavaScript client in headless Chromium) against the real binary, readings sent over
real UDP."""
import asyncio
import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest
import websockets

from conftest import ROOT, Server, _servers, create_key

SEED_PACKET = (ROOT / "src" / "ingest" / "testdata" / "seed004_packet.json").read_bytes()
SEED_ID = "d23c058698435eff"


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def send_udp(server, data):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, server.udp_addr)


def packet(device_id, light, time_text="2026-11-21 10:00:00"):
    return json.dumps({"dataformat_version": "1.0", device_id: {
        "sensors": [{"value": {"unit": "lx", "primitive": "double", "time": time_text, "values": light},
                     "attributes": {"type": "light"}},
                    {"value": {"unit": "hPa", "primitive": "double", "time": time_text, "values": 1000.0},
                     "attributes": {"type": "pressure"}}],
        "attributes": {"name": "test device"}}}).encode()


async def recv_json(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, pred, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv_json(ws, max(0.1, deadline - time.monotonic()))
        if pred(msg):
            return msg


@pytest.fixture(scope="module")
def hub():
    s = Server(args=["--set", "ws.send_queue=32"])
    s.start()
    s.keys = {scope: create_key(s.data_dir, scope, f"{scope} key") for scope in ("read", "control")}
    s.ws = f"ws://{s.addr}"
    _servers.append(s)
    yield s
    _servers.remove(s)
    s.close()


def test_subscribe_filters_and_receive_readings(hub):
    async def go():
        async with websockets.connect(hub.ws + "/ws", extra_headers={"X-API-Key": hub.keys["read"]}) as ws:
            await ws.send(json.dumps({"op": "subscribe", "devices": ["ws00000000000001"], "sensors": ["light"],
                                      "types": ["reading"], "ref": 1}))
            ack = await recv_json(ws)
            assert ack["op"] == "subscribed" and ack["ref"] == 1
            send_udp(hub, packet("ws00000000000002", 9.0))  # another device: filtered out
            send_udp(hub, packet("ws00000000000001", 42.0))
            ev = await recv_until(ws, lambda m: m["op"] == "event")
            assert ev["type"] == "reading"
            assert ev["device"] == "ws00000000000001"
            assert ev["data"]["sensor"] == "light"
            assert ev["data"]["value"] == 42.0
            assert ev["data"]["unit"] == "lx"
            assert ev["time"].startswith("2026-11-21T10:00:00")
            # Only light: the pressure reading of the same packet does not come.
            with pytest.raises(asyncio.TimeoutError):
                await recv_until(ws, lambda m: m["op"] == "event", timeout=0.5)
    run(go())


def test_the_seeds_packet_arrives_without_dataformat_version(hub):
    async def go():
        async with websockets.connect(hub.ws + f"/ws?access_token={hub.keys['read']}") as ws:
            await ws.send(json.dumps({"op": "subscribe", "devices": [SEED_ID]}))
            await recv_json(ws)
            send_udp(hub, SEED_PACKET)
            got = []
            while len(got) < 4:
                m = await recv_until(ws, lambda m: m["op"] == "event" and m["type"] == "reading")
                got.append(m)
            assert sorted(m["data"]["sensor"] for m in got) == ["gyroscope", "linearacceleration", "magneticfield",
                                                               "orientation"]
            assert all("dataformat_version" not in json.dumps(m) for m in got)
            assert got[0]["data"]["primitive"] == "3DPoint"
    run(go())


def test_auth_by_first_message_and_unauthenticated_clients_get_only_a_close(hub):
    async def go():
        async with websockets.connect(hub.ws + "/ws") as ws:
            await ws.send(json.dumps({"op": "auth", "key": hub.keys["read"]}))
            assert (await recv_json(ws))["op"] == "authenticated"
            await ws.send(json.dumps({"op": "ping"}))
            assert (await recv_json(ws))["op"] == "pong"
        async with websockets.connect(hub.ws + "/ws") as ws:
            await ws.send(json.dumps({"op": "subscribe"}))
            with pytest.raises(websockets.ConnectionClosed) as e:
                await recv_json(ws)
            assert e.value.code == 1008
        async with websockets.connect(hub.ws + "/ws") as ws:
            await ws.send(json.dumps({"op": "auth", "key": "opk_wrong"}))
            with pytest.raises(websockets.ConnectionClosed) as e:
                await recv_json(ws)
            assert e.value.code == 1008
        with pytest.raises(websockets.InvalidStatusCode) as e:
            await websockets.connect(hub.ws + "/ws", extra_headers={"X-API-Key": "opk_aaaaaaaaaa_" + "A" * 43})
        assert e.value.status_code == 401
    run(go())


def test_list_commands_and_bad_messages(hub):
    async def go():
        async with websockets.connect(hub.ws + "/ws", extra_headers={"X-API-Key": hub.keys["control"]}) as ws:
            await ws.send(json.dumps({"op": "list"}))
            listing = await recv_json(ws)
            assert listing["op"] == "list"
            ids = [d["id"] for d in listing["devices"]["devices"]]
            board = [d for d in listing["devices"]["devices"] if d["transport"] == "local"][0]
            assert board["id"] in ids and "led" not in ids
            await ws.send(json.dumps({"op": "subscribe", "types": ["command"]}))
            await recv_json(ws)
            await ws.send(json.dumps({"op": "command", "device": board["id"], "target": "led",
                                      "parameter": "state", "value": "on", "ref": "c1"}))
            answer = await recv_until(ws, lambda m: m["op"] == "command")
            assert answer["ref"] == "c1" and answer["id"].startswith("cmd_")
            outcome = await recv_until(ws, lambda m: m["op"] == "event")
            assert outcome["type"] == "command"
            assert outcome["data"]["id"] == answer["id"]
            assert outcome["data"]["state"] == "acknowledged"
            for bad in ["{nope", "[]", json.dumps({"op": "fly"}), json.dumps({"op": "subscribe", "devices": 5}),
                        json.dumps({"op": "command", "device": board["id"], "target": "fan", "parameter": "x",
                                    "value": 1})]:
                await ws.send(bad)
                err = await recv_until(ws, lambda m: m["op"] == "error")
                assert err["error"], bad
        # A read key may not command.
        async with websockets.connect(hub.ws + "/ws", extra_headers={"X-API-Key": hub.keys["read"]}) as ws:
            await ws.send(json.dumps({"op": "command", "device": "x", "target": "led", "parameter": "state", "value": 1}))
            assert (await recv_json(ws))["op"] == "error"
    run(go())


def test_the_seeds_handshake_on_root_with_its_subprotocol_offer(hub):
    key = "dGhlIHNhbXBsZSBub25jZQ=="  # the seed's (and RFC 6455's) example
    with socket.create_connection((hub.host, hub.port), timeout=5) as s:
        s.sendall((f"GET /?access_token={hub.keys['read']} HTTP/1.1\r\nHost: {hub.addr}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nOrigin: LOCALHOST\r\n"
                   "Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
    text = head.decode()
    assert text.startswith("HTTP/1.1 101 Switching Protocols")
    assert "sec-websocket-protocol: chat\r\n" in text.lower()
    assert "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in text  # the seed's answer
    # A plain GET of /ws is told to upgrade.
    r = hub.get("/ws", key=hub.keys["read"])
    assert r.status_code == 426


def test_a_client_that_never_reads_is_closed_and_never_slows_the_others(hub):
    # The slow client: handshake, then never read a byte (small receive buffer so it fills fast).
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect((hub.host, hub.port))
    key = base64.b64encode(os.urandom(16)).decode()
    slow.sendall((f"GET /ws?access_token={hub.keys['read']} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert slow.recv(4096).startswith(b"HTTP/1.1 101")
    n = 600

    async def go():
        async with websockets.connect(hub.ws + "/ws", extra_headers={"X-API-Key": hub.keys["read"]},
                                      max_queue=None) as ws:
            await ws.send(json.dumps({"op": "subscribe", "devices": ["flood000000000001"], "sensors": ["light"]}))
            await recv_json(ws)
            got = 0
            for i in range(n):
                send_udp(hub, packet("flood000000000001", float(i), f"2026-11-21 10:{i // 60:02d}:{i % 60:02d}"))
                if i % 50 == 49:
                    await asyncio.sleep(0.01)
            while got < n:
                m = await recv_json(ws, 10)
                if m["op"] == "event":
                    got += 1
            return got
    assert run(go(), timeout=60) == n  # the reading client got every one of them

    def slow_closed():
        for line in hub.get("/metrics", key=hub.keys["read"]).text.splitlines():
            if line.startswith("outpost_ws_slow_closed_total "):
                return float(line.split()[-1]) >= 1
        return False
    deadline = time.monotonic() + 15
    while not slow_closed():
        assert time.monotonic() < deadline, "the slow client was not closed"
        time.sleep(0.1)
    slow.close()
    assert hub.get("/api/health").status_code == 200


def test_anonymous_read_lets_the_seeds_client_in(fresh_server):
    s = fresh_server(args=["--set", "hub.anonymous_read=true"])

    async def go():
        async with websockets.connect(f"ws://{s.addr}") as ws:  # new WebSocket("ws://REMOTEHOST")
            send_udp(s, packet("anon000000000001", 1.0))
            # The board's own collector may publish a reading of device "vm" first: wait for ours.
            ev = await recv_until(ws, lambda m: m["op"] == "event" and m["type"] == "reading"
                                  and m["device"] == "anon000000000001" and m["data"]["sensor"] == "light")
            assert ev["data"]["value"] == 1.0
            await ws.send(json.dumps({"op": "command", "device": "anon000000000001", "target": "t",
                                      "parameter": "p", "value": 1}))
            assert (await recv_until(ws, lambda m: m["op"] == "error"))["error"]  # reading only
    run(go())


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

SEED_CLIENT = """<!doctype html><html><body><script>
// alert() reports to the test instead of opening a dialog; the rest is seed 004's client as written.
window.alert = function (m) { fetch('/report', {method: 'POST', body: m}); };
function CreateWebSocket() {
      if ("WebSocket" in window) {
         ws = new WebSocket("ws://REMOTEHOST");
         ws.onopen = function() {
           alert("Connection established to web server");
         };
         ws.onmessage = function (evt) {
           alert("Message received from web server: " + evt.data);
         };
         ws.onclose = function() {
            alert("Connection is closed...");
         };
      }
      else {
         alert("WebSocket NOT supported by your Browser!");
      }
}
CreateWebSocket();
</script></body></html>"""


def test_the_seeds_javascript_client_in_headless_chromium(fresh_server):
    assert CHROMIUM, "chromium is missing: scripts/install-deps installs it"
    s = fresh_server(args=["--set", "hub.anonymous_read=true"])
    reports = []

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = SEED_CLIENT.replace("REMOTEHOST", s.addr).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            reports.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    page = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="outpost-chromium-")
    browser = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                f"http://127.0.0.1:{page.server_address[1]}/"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "Connection established to web server" not in reports:
            assert time.monotonic() < deadline, f"the seed's client did not connect: {reports}"
            assert browser.poll() is None, "chromium exited"
            time.sleep(0.1)
        i = 0
        prefix = "Message received from web server: "

        def readings():
            return [e for r in reports if r.startswith(prefix)
                    for e in [json.loads(r[len(prefix):])] if e["type"] == "reading"]
        while not readings():
            assert time.monotonic() < deadline, f"no reading reached the seed's client: {reports}"
            send_udp(s, packet("chromium00000001", float(i)))
            i += 1
            time.sleep(0.2)
        event = readings()[0]
        assert event["device"] == "chromium00000001" and event["data"]["sensor"] in ("light", "pressure")
    finally:
        browser.kill()
        browser.wait()
        page.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
