"""HTTP/1.1 behaviour of the server: routing answers, keep-alive, pipelining, limits, timeouts."""
import json
import re
import socket
import threading
import time

import requests


def raw(server, data, timeout=5, read_all=True):
    """Sends raw bytes and returns everything the server answers until it closes (or timeout)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
                if not read_all:
                    break
        except socket.timeout:
            pass
        return b"".join(chunks)


def status_of(response_bytes):
    return int(response_bytes.split(b" ", 2)[1])


def test_unknown_path_is_404_problem(server):
    r = server.get("/no/such/thing", key=server.keys["read"])
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 404 and "/no/such/thing" in body["detail"]


def test_wrong_method_is_405_with_allow(server):
    r = requests.delete(server.url("/api/status"), headers={"X-API-Key": server.keys["admin"]}, timeout=5)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD, OPTIONS"
    r = requests.get(server.url("/api/led"), headers={"X-API-Key": server.keys["admin"]}, timeout=5)
    assert r.status_code == 405
    assert "POST" in r.headers["Allow"]


def test_head_has_headers_and_no_body(server):
    r = requests.head(server.url("/api/health"), timeout=5)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) > 0
    assert r.content == b""


def test_options_lists_methods(server):
    r = requests.options(server.url("/api/led"), timeout=5)
    assert r.status_code == 204
    assert r.headers["Allow"] == "POST, OPTIONS"
    assert "Access-Control-Allow-Origin" not in r.headers  # no CORS origins configured


def test_keep_alive_serves_many_requests_on_one_connection(server):
    with requests.Session() as s:
        for _ in range(20):
            r = s.get(server.url("/api/health"), timeout=5)
            assert r.status_code == 200
        # requests reuses the pooled connection; check it was one socket
        assert len(s.adapters["http://"].poolmanager.pools) == 1


def test_pipelined_requests_are_answered_in_order(server):
    key = server.keys["read"]
    req = (
        b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /api/status HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key.encode() + b"\r\n\r\n"
        b"GET /nope HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key.encode() + b"\r\nConnection: close\r\n\r\n"
    )
    out = raw(server, req)
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", out)]
    assert statuses == [200, 200, 404], out[:2000]
    assert b'"cpu_temp_c"' in out


def test_malformed_request_is_400_and_server_keeps_serving(server):
    for bad in [b"NONSENSE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET /api/health HTTP/1.1\r\nBad Header\r\n\r\n",
                b"GET /api/health HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"\x00\x01\x02\x03\r\n\r\n"]:
        out = raw(server, bad)
        assert status_of(out) == 400, (bad, out)
        assert b"application/problem+json" in out
    assert server.get("/api/health").status_code == 200


def test_header_over_8k_is_431(server):
    big = b"X-Filler: " + b"a" * 9000 + b"\r\n"
    out = raw(server, b"GET /api/health HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    assert status_of(out) == 431
    # just under the limit is fine
    ok = b"X-Filler: " + b"a" * 7000 + b"\r\n"
    out = raw(server, b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + ok + b"\r\n")
    assert status_of(out) == 200


def test_body_over_limit_is_413(server):
    r = server.post("/api/led", key=server.keys["control"], data=b"x" * (1024 * 1024 + 1),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["status"] == 413
    # chunked bodies are limited too
    def gen():
        for _ in range(17):
            yield b"y" * 65536
    r = server.post("/api/led", key=server.keys["control"], data=gen())
    assert r.status_code == 413
    assert server.get("/api/health").status_code == 200


def test_slow_partial_request_is_cut_off_without_disturbing_others(fresh_server):
    s = fresh_server(args=["--set", "server.header_timeout=1s"])
    slow = socket.create_connection((s.host, s.port), timeout=10)
    slow.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
    results = []

    def normal_traffic():
        with requests.Session() as sess:
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                results.append(sess.get(s.url("/api/health"), timeout=5).status_code)
                time.sleep(0.01)

    t = threading.Thread(target=normal_traffic)
    t.start()
    start = time.monotonic()
    received, closed = b"", False
    slow.settimeout(0.1)
    while time.monotonic() - start < 5 and not closed:
        try:
            slow.sendall(b"X")  # a slowloris trickles a byte now and then
            b = slow.recv(65536)
            if not b:
                closed = True
            received += b
        except socket.timeout:
            pass
        except OSError:  # reset after the server closed
            closed = True
    cut_after = time.monotonic() - start
    slow.close()
    t.join()
    assert closed, "the slow connection was never closed"
    assert cut_after < 3, cut_after
    assert received == b"" or received.startswith(b"HTTP/1.1 408"), received
    assert results and all(code == 200 for code in results), results


def test_idle_keep_alive_connection_is_closed_after_idle_timeout(fresh_server):
    s = fresh_server(args=["--set", "server.idle_timeout=500ms"])
    c = socket.create_connection((s.host, s.port), timeout=5)
    c.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    first = c.recv(65536)
    assert status_of(first) == 200
    time.sleep(1.2)
    c.settimeout(2)
    assert c.recv(65536) == b""  # closed by the server
    c.close()


def test_expect_100_continue(server):
    with socket.create_connection((server.host, server.port), timeout=5) as c:
        body = b'{"action": "on"}'
        c.sendall(b"POST /api/led HTTP/1.1\r\nHost: x\r\nX-API-Key: " + server.keys["control"].encode() +
                  b"\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: " +
                  str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
        interim = c.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        c.sendall(body)
        rest = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            rest += b
        assert status_of(rest) == 200
        assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["led_state"] == "on"


def test_many_bad_inputs_then_good_traffic_still_served(server):
    for _ in range(50):
        raw(server, b"GARBAGE\r\n\r\n")
    assert server.get("/api/status", key=server.keys["read"]).status_code == 200
