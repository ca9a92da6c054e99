"""A real mosquitto broker for tests: /usr/sbin/mosquitto as a child process on a free loopback
port, with a generated config (listener PORT 127.0.0.1, allow_anonymous true, persistence false).

    with MosquittoBroker() as broker:          # started; waits until it accepts connections
        server = Server(args=["--mqtt-url", broker.url])
        ...
        broker.restart()                       # same port: clients can reconnect
    # stopped, scratch directory removed

The broker is required, never skipped: without it, start() raises with a message saying how to
install it (scripts/install-deps does). src/mqtt/test_broker.hpp is the same for GoogleTest.
"""
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MOSQUITTO = os.environ.get("OUTPOST_MOSQUITTO", "/usr/sbin/mosquitto")


def free_port():
    """A loopback TCP port nothing is bound to, below Linux's ephemeral range (32768..60999) so
    that no outgoing connection holds it by the time the broker binds it."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as mosquitto does
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in 20000..32000")


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class MosquittoBroker:
    """One mosquitto process. The port is chosen at construction and kept across stop()/start(),
    so a client can be pointed at the broker before it runs (a broker down at start-up)."""

    def __init__(self, port=None, extra_config="", binary=MOSQUITTO, persistence=False):
        self.binary = binary
        self.persistence = persistence  # sessions and queued QoS 1 messages survive a restart
        self.tmp = tempfile.TemporaryDirectory(prefix="outpost-mosquitto-")
        self.dir = Path(self.tmp.name)
        self.port = port or free_port()
        self.extra_config = extra_config
        self.config_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self.proc = None

    @property
    def host(self):
        return "127.0.0.1"

    @property
    def url(self):
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout=10):
        """Starts the broker and returns once it accepts connections; raises RuntimeError (with
        its log) when the binary is missing, it exits, or it does not listen in time."""
        if self.running:
            return self
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError(
                f"these tests need the mosquitto broker at {self.binary} "
                "(Debian package 'mosquitto'; scripts/install-deps installs it)")
        if _accepts(self.port):  # else the other listener would pass for this broker
            raise RuntimeError(f"port {self.port} is already in use: cannot start mosquitto on it")
        self.config_path.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            + (f"persistence true\npersistence_location {self._persistence_dir()}/\n" if self.persistence
               else "persistence false\n") +
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            f"{self.extra_config}\n")
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.config_path)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                raise RuntimeError(f"mosquitto exited {code} at start:\n{self.log()}")
            if _accepts(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout} s:\n{self.log()}")

    def _persistence_dir(self):
        # Started as root, mosquitto drops to its own user: the directory must be writable by it
        # (and the scratch directory above it, 0700 from mkdtemp, passable).
        self.dir.chmod(0o711)
        d = self.dir / "db"
        d.mkdir(exist_ok=True)
        d.chmod(0o777)
        return d

    def stop(self, timeout=5):
        """SIGTERM, then SIGKILL after `timeout` seconds; waits for the process."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, timeout=10):
        self.stop()
        return self.start(timeout)

    def close(self):
        self.stop()
        self.tmp.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
