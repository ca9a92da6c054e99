"""Black-box test harness: runs the real `outpost` binary on a free loopback port with a fresh
data directory, and talks to it over real sockets. The server's log is printed only when a test
fails."""
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("OUTPOST_BIN", str(ROOT / "build-test" / "outpost"))
FAKE_ROOT = ROOT / "src" / "sysinfo" / "testdata" / "pi3"

# Sanitizer builds: fail loudly, and keep going past the leak check's ptrace needs.
os.environ.setdefault("ASAN_OPTIONS", "abort_on_error=0:halt_on_error=1:detect_leaks=1")
os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")

KEY_RE = re.compile(r"^\s*(opk_[a-z0-9]{10}_[A-Za-z0-9_-]{43})\s*$", re.M)


def run_cli(*args, env=None, check=True, input=None, timeout=30):
    """Runs `outpost ARGS...` and returns the CompletedProcess."""
    proc = subprocess.run([BIN, *args], capture_output=True, text=True, env=env, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"outpost {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for(fn, timeout=10, what="condition"):
    """Polls fn() until it returns something true (returned), or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def metric(server, name, key):
    """The value of one sample of /metrics, e.g. 'outpost_udp_dropped_total{reason="too_large"}' (0 when absent)."""
    for line in server.get("/metrics", key=key).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def mapped_files(server):
    """The files mapped into the server process (/proc/PID/maps)."""
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    return {line.split(None, 5)[5] for line in maps.splitlines() if len(line.split(None, 5)) == 6}


def is_mapped(server, name):
    """Whether a file whose path contains `name` (e.g. "libssl.so") is mapped into the server."""
    return any(name in f for f in mapped_files(server))


def create_key(data_dir, scope, name="test"):
    """`outpost keys create`: the key is alone on the last line of standard output."""
    out = run_cli("keys", "create", "--data-dir", str(data_dir), "--scope", scope, "--name", name).stdout
    return out.strip().splitlines()[-1]


class Server:
    """One running `outpost serve`."""

    def __init__(self, data_dir=None, args=(), env=None, config_text=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="outpost-test-")
        self.data_dir = Path(data_dir or Path(self.tmp.name) / "data")
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.config_path = None
        if config_text is not None:
            self.config_path = Path(self.tmp.name) / "outpost.toml"
            self.config_path.write_text(config_text)
        self.proc = None
        self.base = None
        self.addr = None
        self.initial_key = None
        self.stdout_path = Path(self.tmp.name) / "stdout.log"
        self.stderr_path = Path(self.tmp.name) / "stderr.log"

    def start(self, timeout=30):
        cmd = [BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir), "--simulate"]
        if not any(a.startswith("--udp-listen") or a.startswith("udp.listen") for a in self.args):
            cmd += ["--udp-listen", "127.0.0.1:0"]  # never the fixed default port: servers run side by side
        cmd += self.args
        if self.config_path:
            cmd += ["--config", str(self.config_path)]
        self._out = open(self.stdout_path, "w")
        self._err = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r" info listening on (\S+)", self.stderr_path.read_text())
            if m:
                self.addr = m.group(1)
                self.host, port = self.addr.rsplit(":", 1)
                self.port = int(port)
                self.base = f"http://{self.addr}"
                u = re.search(r"udp receiving on (\S+)", self.stderr_path.read_text())
                self.udp_addr = None
                if u:
                    host, port = u.group(1).rsplit(":", 1)
                    self.udp_addr = (host.strip("[]"), int(port))
                k = KEY_RE.search(self.stdout_path.read_text())
                self.initial_key = k.group(1) if k else None
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"outpost exited {self.proc.returncode} at start:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"outpost did not say 'listening on' within {timeout}s:\n{self.log()}")

    def url(self, path):
        return self.base + path

    def get(self, path, key=None, **kw):
        headers = kw.pop("headers", {})
        if key:
            headers["X-API-Key"] = key
        return requests.get(self.url(path), headers=headers, timeout=kw.pop("timeout", 10), **kw)

    def post(self, path, key=None, **kw):
        headers = kw.pop("headers", {})
        if key:
            headers["X-API-Key"] = key
        return requests.post(self.url(path), headers=headers, timeout=kw.pop("timeout", 10), **kw)

    def log(self):
        out = self.stdout_path.read_text() if self.stdout_path.exists() else ""
        err = self.stderr_path.read_text() if self.stderr_path.exists() else ""
        return f"--- stdout ---\n{out[-20000:]}\n--- stderr ---\n{err[-20000:]}"

    def kill(self):
        """kill -9: no shutdown at all, as a power cut or the OOM killer would. close() accepts it."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)
        self.killed = True

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stops the server and returns its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"outpost did not stop within {timeout}s after {sig}:\n{self.log()}")

    def close(self):
        try:
            code = self.stop()
            # A sanitizer report makes the process exit non-zero: surface it.
            if getattr(self, "killed", False):
                code = 0 if code == -signal.SIGKILL else code
            assert code in (0, None), f"outpost exited {code}:\n{self.log()}"
            assert "ERROR: AddressSanitizer" not in self.log(), self.log()
            assert "runtime error:" not in self.log(), self.log()
        finally:
            self._out.close()
            self._err.close()
            self.tmp.cleanup()


_servers = []


@pytest.fixture(scope="module")
def server():
    """A server per test module, simulated hardware, the fake /proc tree, with keys of every scope."""
    s = Server(args=["--set", f"system.root={FAKE_ROOT}", "--set", "collector.interval=200ms"])
    s.start()
    s.keys = {scope: create_key(s.data_dir, scope, f"{scope} key") for scope in ("read", "control", "admin")}
    _servers.append(s)
    yield s
    _servers.remove(s)
    s.close()


@pytest.fixture
def fresh_server():
    """A server of one's own, for tests that stop it or change its configuration: call it with
    Server(...) arguments; started and closed for you."""
    made = []

    def make(**kw):
        s = Server(**kw)
        made.append(s)
        _servers.append(s)
        return s.start()

    yield make
    for s in made:
        _servers.remove(s)
        s.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for s in _servers:
            report.sections.append((f"outpost log ({s.base})", s.log()))
