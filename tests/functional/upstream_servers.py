"""Small HTTP servers on 127.0.0.1 for the upstream tests: a receiving upstream that can be taken
down and brought back on the same port, refuse chosen messages, or store a batch and drop the
connection before answering; and a proxy in front of a real Outpost hub that forwards a request,
reads the hub's answer, and then drops the connection instead of passing it on."""
import http.client
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


def free_port():
    """A port nothing listens on now (for an upstream that is down from the start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UpstreamServer:
    """Receives the outbox's POSTs and keeps every message it stored, in arrival order.

    refuse(fn): messages for which fn(message) is true are answered 400 (a JSON batch holding
    one is refused whole, as a strict upstream would). drop_acks(n): the next n requests are
    stored and then the connection is closed without an answer. status: answer every request
    with this status instead (e.g. 503), storing nothing. tls=(certfile, keyfile): HTTPS."""

    def __init__(self, port=None, tls=None):
        self.port = port or free_port()
        self.tls = tls
        self.lock = threading.Lock()
        self.messages = []  # dicts: id, kind, body, source, content_type, size
        self.requests = 0
        self.batches = []  # per request that was answered (not told to fail): messages it carried, refused?
        self.refuse_fn = None
        self.drops = 0
        self.status = None
        self.headers_seen = []
        self._httpd = None
        self._thread = None

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/ingest"

    def start(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                ctype = self.headers.get("Content-Type", "")
                with owner.lock:
                    owner.requests += 1
                    owner.headers_seen.append(dict(self.headers))
                    status = owner.status
                if status:
                    return self._answer(status, {"detail": "told to fail"})
                if ctype.startswith("application/json"):
                    env = json.loads(raw)
                    msgs = [dict(m, source=env["source"], content_type=ctype) for m in env["messages"]]
                else:
                    msgs = [{"id": self.headers.get("Idempotency-Key"), "kind": self.headers.get("X-Outpost-Kind"),
                             "source": self.headers.get("X-Outpost-Source"), "content_type": ctype,
                             "size": len(raw), "head": raw[:3].hex()}]
                with owner.lock:
                    if owner.refuse_fn and any(owner.refuse_fn(m) for m in msgs):
                        refused = True
                    else:
                        refused = False
                        owner.messages.extend(msgs)
                    owner.batches.append((len(msgs), refused))
                    drop = not refused and owner.drops > 0
                    if drop:
                        owner.drops -= 1
                if refused:
                    return self._answer(400, {"detail": "refused by the test upstream"})
                if drop:
                    # Stored, but the sender never hears so.
                    self.close_connection = True
                    return
                self._answer(200, {"accepted": len(msgs)})

            def _answer(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = _Server(("127.0.0.1", self.port), Handler)
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Down: the port refuses connections until start() again."""
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = None

    def refuse(self, fn):
        with self.lock:
            self.refuse_fn = fn

    def drop_acks(self, n):
        with self.lock:
            self.drops = n

    def received(self):
        with self.lock:
            return list(self.messages)

    def seen_batches(self):
        with self.lock:
            return list(self.batches)


class DroppingProxy:
    """Forwards POSTs to `target` (host, port) and relays the answers, except that the next
    `drops` answers are read from the target and then thrown away: the connection to the
    client is closed without a word. Keeps the target's answers (parsed JSON) in order."""

    def __init__(self, target_host, target_port, drops=0):
        self.target = (target_host, target_port)
        self.drops = drops
        self.lock = threading.Lock()
        self.answers = []  # (status, json, dropped)
        self.port = free_port()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                conn = http.client.HTTPConnection(*owner.target, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request("POST", self.path, body=raw, headers=headers)
                res = conn.getresponse()
                body = res.read()
                conn.close()
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                with owner.lock:
                    drop = owner.drops > 0
                    if drop:
                        owner.drops -= 1
                    owner.answers.append((res.status, parsed, drop))
                if drop:
                    self.close_connection = True
                    return
                self.send_response(res.status)
                self.send_header("Content-Type", res.getheader("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/api/ingest"

    def seen(self):
        with self.lock:
            return list(self.answers)

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
