"""The command line and the configuration: version and help, `config check`, errors that name the
key, precedence default < TOML < environment < flags, start-up refusals, the listening address,
and the life cycle of `serve` (SIGTERM/SIGINT with requests in flight, data across restarts)."""
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from conftest import BIN, ROOT, run_cli

EXAMPLE = ROOT / "config" / "outpost.example.toml"


def clean_env(**extra):
    """The test process's environment without OUTPOST_* settings (OUTPOST_BIN is ignored by the
    program itself), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_") or k == "OUTPOST_BIN"}
    env.update(extra)
    return env


def write_toml(tmp_path, text, name="outpost.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def config_check(*args, env=None):
    return run_cli("config", "check", *args, env=env or clean_env(), check=False)


def ok_line(proc):
    assert proc.returncode == 0, f"config check exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    m = re.search(r"configuration OK: listen (\S+), data dir (.+), hardware (\w+)", proc.stdout)
    assert m, proc.stdout
    return m.group(1), m.group(2).strip()


def read_response(sock, timeout=10):
    """Reads one HTTP/1.1 response with a Content-Length body; returns (status, headers, body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a whole response: {data!r}"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of a body"
        rest += chunk
    return status, headers, rest[:length]


def connection_refused(host, port):
    """True when a connection attempt is turned away: refused, or reset while it waited in the
    backlog of a listener that was just closed."""
    try:
        socket.create_connection((host, port), timeout=1).close()
        return False
    except (ConnectionRefusedError, ConnectionResetError):
        return True


# ------------------------------------------------------------------------------ version, help


def test_version_subcommand_and_flag_agree():
    sub = run_cli("version", env=clean_env())
    m = re.fullmatch(r"outpost (\d+\.\d+\.\d+\S*)\n", sub.stdout)
    assert m, f"`outpost version` printed {sub.stdout!r}"
    flag = run_cli("--version", env=clean_env())
    assert m.group(1) in flag.stdout, f"--version printed {flag.stdout!r}, version says {m.group(1)}"


@pytest.mark.parametrize("cmd", [[], ["serve"], ["keys"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"],
                                 ["config"], ["config", "check"], ["version"]], ids=lambda c: " ".join(c) or "outpost")
def test_help_of_every_subcommand_exits_0(cmd):
    p = run_cli(*cmd, "--help", env=clean_env(), check=False)
    assert p.returncode == 0, f"outpost {' '.join(cmd)} --help exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    assert "Usage" in p.stdout or "usage" in p.stdout, p.stdout
    if cmd in (["serve"], ["config", "check"]):
        for flag in ("--listen", "--data-dir", "--config", "--set", "--log-level"):
            assert flag in p.stdout, f"{flag} missing from `outpost {' '.join(cmd)} --help`"


def test_no_subcommand_is_an_error():
    p = run_cli(env=clean_env(), check=False)
    assert p.returncode != 0


# ------------------------------------------------------------------------------- config check


def test_config_check_accepts_a_valid_file(tmp_path):
    cfg = write_toml(tmp_path, '[server]\nlisten = "127.0.0.1:9999"\nthreads = 2\nheader_timeout = "5s"\n'
                               'cors_origins = ["http://192.168.1.100:3000"]\n[collector]\ninterval = 30\n'
                               '[log]\nlevel = "debug"\n')
    listen, _ = ok_line(config_check("--config", str(cfg)))
    assert listen == "127.0.0.1:9999"


def test_config_check_accepts_the_example_file():
    listen, data_dir = ok_line(config_check("--config", str(EXAMPLE)))
    assert (listen, data_dir) == ("127.0.0.1:8080", "./var"), "the example (all commented out) is not the defaults"


def test_example_file_with_every_setting_uncommented_is_valid(tmp_path):
    """The example shows every key with its default: uncommented, they must all be accepted (and
    so must its [[rules]] example, the greenhouse, which comes last)."""
    lines, uncommented = [], 0
    for line in EXAMPLE.read_text().splitlines():
        m = re.match(r"^# ?([a-z_]+ = .+|\[\[[a-z_]+\]\])$", line)
        if m:
            lines.append(m.group(1))
            uncommented += 1
        else:
            lines.append(line)
    assert uncommented >= 20, f"only {uncommented} settings found in the example"
    cfg = write_toml(tmp_path, "\n".join(lines) + "\n")
    proc = config_check("--config", str(cfg))
    listen, data_dir = ok_line(proc)
    assert (listen, data_dir) == ("127.0.0.1:8080", "./var")
    assert "1 rule(s)" in proc.stdout, proc.stdout


BAD_TOML = [
    ('[server]\nlisen = "127.0.0.1:1"\n', "server.lisen"),
    ('[sever]\nlisten = "127.0.0.1:1"\n', "sever"),
    ('[server]\nthreads = "four"\n', "server.threads"),
    ("[server]\nthreads = 100000\n", "server.threads"),
    ("[server]\nthreads = -1\n", "server.threads"),
    ("[server]\nbody_limit = 1.5\n", "server.body_limit"),
    ('[server]\nlisten = "nonsense"\n', "server.listen"),
    ('[server]\nlisten = "127.0.0.1:99999"\n', "server.listen"),
    ('[server]\nlisten = ""\n', "server.listen"),
    ('[server]\nheader_timeout = "10 parsecs"\n', "server.header_timeout"),
    ("[server]\nheader_timeout = -5\n", "server.header_timeout"),
    ('[server]\nheader_timeout = "1ms"\n', "server.header_timeout"),
    ('[server]\ncors_origins = "http://good.example"\n', "server.cors_origins"),
    ('[server]\ncors_origins = ["good.example"]\n', "server.cors_origins"),
    ('[server]\ncors_origins = ["http://good.example/"]\n', "server.cors_origins"),
    ('[log]\nlevel = "loud"\n', "log.level"),
    ('[hw]\nsimulate = "yes"\n', "hw.simulate"),
    ('[collector]\ninterval = "0s"\n', "collector.interval"),
    ('[store]\nsynchronous = "sometimes"\n', "store.synchronous"),
    ("server = 5\n", "server"),
    ("[server.extra]\nx = 1\n", "server.extra"),
    ('[rules]\nid = "x"\n', "[[rules]]"),
    ('[[rules]]\nid = "x"\nsensor = "t"\nabove = 30\nclear_below = 40\non = { alert = "a" }\n', "rules[0].clear_below"),
    ('[[rules]]\nid = "x"\nsensor = "t"\nabove = 30\nfor = "soon"\non = { alert = "a" }\n', "rules[0].for"),
    ('[[rules]]\nid = "x"\nexpr = "t >> 3"\non = { alert = "a" }\n', "rules[0].expr"),
    ('[[rules]]\nid = "x"\nsensor = "t"\nabove = 30\non = { alert = "a" }\nsensr = "t"\n', "rules[0].sensr"),
]


@pytest.mark.parametrize("text,key", BAD_TOML, ids=[k + ":" + t.split("\n")[1][:20] for t, k in BAD_TOML])
def test_config_check_refuses_an_invalid_file_naming_the_key(tmp_path, text, key):
    cfg = write_toml(tmp_path, text)
    p = config_check("--config", str(cfg))
    assert p.returncode != 0, f"accepted:\n{text}\n{p.stdout}"
    assert key in p.stderr, f"stderr does not name {key}: {p.stderr!r}"
    assert "configuration OK" not in p.stdout


@pytest.mark.parametrize("text", ["[server\nlisten = 1\n", '[server]\nlisten = "a"\nlisten = "b"\n',
                                  '[server]\nlisten = "unterminated\n'])
def test_config_check_refuses_malformed_toml_naming_file_and_line(tmp_path, text):
    cfg = write_toml(tmp_path, text)
    p = config_check("--config", str(cfg))
    assert p.returncode != 0, p.stdout
    assert str(cfg) in p.stderr and re.search(r":\d+:\d+", p.stderr), f"no file:line:column in {p.stderr!r}"


def test_config_check_refuses_a_missing_file(tmp_path):
    p = config_check("--config", str(tmp_path / "nope.toml"))
    assert p.returncode != 0 and "nope.toml" in p.stderr, p.stderr


@pytest.mark.parametrize("name,value,key", [
    ("OUTPOST_SERVER_LISEN", "127.0.0.1:1", "OUTPOST_SERVER_LISEN"),
    ("OUTPOST_NOSUCH", "1", "OUTPOST_NOSUCH"),
    ("OUTPOST_SERVER_THREADS", "abc", "server.threads"),
    ("OUTPOST_LOG_LEVEL", "loud", "log.level"),
    ("OUTPOST_COLLECTOR_INTERVAL", "5 parsecs", "collector.interval"),
    ("OUTPOST_SERVER_LISTEN", "127.0.0.1", "server.listen"),
])
def test_config_check_refuses_a_bad_environment_variable_naming_it(name, value, key):
    p = config_check(env=clean_env(**{name: value}))
    assert p.returncode != 0, f"{name}={value} accepted: {p.stdout}"
    assert key in p.stderr, f"stderr does not name {key}: {p.stderr!r}"


@pytest.mark.parametrize("args,key", [
    (["--set", "server.threads=abc"], "server.threads"),
    (["--set", "server.lisen=127.0.0.1:1"], "server.lisen"),
    (["--set", "nosection=1"], "--set"),
    (["--set", "server.threads"], "--set"),
    (["--set", "server.cors_origins=ftp://x"], "server.cors_origins"),
    (["--listen", "localhost"], "server.listen"),
    (["--log-level", "loud"], "log.level"),
])
def test_config_check_refuses_a_bad_flag_naming_the_key(args, key):
    p = config_check(*args)
    assert p.returncode != 0, f"{args} accepted: {p.stdout}"
    assert key in p.stderr, f"stderr does not name {key}: {p.stderr!r}"


def test_precedence_default_toml_env_flag_in_config_check(tmp_path):
    cfg = write_toml(tmp_path, '[server]\nlisten = "127.0.0.1:1111"\n[store]\ndata_dir = "/tmp/from-toml"\n')
    env_vars = {"OUTPOST_SERVER_LISTEN": "127.0.0.1:2222", "OUTPOST_STORE_DATA_DIR": "/tmp/from-env"}
    assert ok_line(config_check()) == ("127.0.0.1:8080", "./var")
    assert ok_line(config_check("--config", str(cfg))) == ("127.0.0.1:1111", "/tmp/from-toml")
    assert ok_line(config_check("--config", str(cfg), env=clean_env(**env_vars))) == ("127.0.0.1:2222", "/tmp/from-env")
    assert ok_line(config_check("--config", str(cfg), "--listen", "127.0.0.1:3333", "--data-dir", "/tmp/from-flag",
                                env=clean_env(**env_vars))) == ("127.0.0.1:3333", "/tmp/from-flag")
    assert ok_line(config_check("--config", str(cfg), "--set", "server.listen=127.0.0.1:4444",
                                env=clean_env(**env_vars)))[0] == "127.0.0.1:4444"
    # the environment alone, without a file
    assert ok_line(config_check(env=clean_env(**env_vars))) == ("127.0.0.1:2222", "/tmp/from-env")


def header_request_status(s, filler_bytes):
    with socket.create_connection((s.host, s.port), timeout=10) as c:
        c.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Filler: " + b"a" * filler_bytes +
                  b"\r\n\r\n")
        status, _, _ = read_response(c)
        return status


def test_precedence_on_a_running_server(fresh_server):
    """server.header_limit, visible from outside as 431: default 8192 < TOML 2048 < env 4096 < --set 16384."""
    toml = "[server]\nheader_limit = 2048\n"
    a = fresh_server(config_text=toml)
    assert header_request_status(a, 1000) == 200
    assert header_request_status(a, 3000) == 431, "the TOML file's header_limit (2048) did not beat the default"
    b = fresh_server(config_text=toml, env={"OUTPOST_SERVER_HEADER_LIMIT": "4096"})
    assert header_request_status(b, 3000) == 200, "the environment (4096) did not beat the TOML file (2048)"
    assert header_request_status(b, 6000) == 431, "the environment's 4096 was not applied (default 8192 is)"
    c = fresh_server(config_text=toml, env={"OUTPOST_SERVER_HEADER_LIMIT": "4096"},
                     args=["--set", "server.header_limit=16384"])
    assert header_request_status(c, 12000) == 200, "--set (16384) did not beat the environment (4096)"


# ---------------------------------------------------------------------------- serve refusals


@pytest.mark.parametrize("case", ["set", "toml", "env", "listen"])
def test_serve_refuses_to_start_on_invalid_configuration(tmp_path, case):
    data_dir = tmp_path / "data"
    args = ["serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), "--simulate"]
    env = clean_env()
    if case == "set":
        args += ["--set", "server.threads=-1"]
        key = "server.threads"
    elif case == "toml":
        args += ["--config", str(write_toml(tmp_path, '[server]\nlisen = "0.0.0.0:80"\n'))]
        key = "server.lisen"
    elif case == "env":
        env["OUTPOST_COLLECTOR_INTERVAL"] = "5 parsecs"
        key = "collector.interval"
    else:
        args[2] = "127.0.0.1"
        key = "server.listen"
    try:
        p = run_cli(*args, env=env, check=False, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve started (and ran 15s) despite invalid {key}")
    assert p.returncode != 0
    assert key in p.stderr, f"message does not name {key}: {p.stderr!r}"
    assert "listening on" not in p.stderr
    assert not data_dir.exists(), "serve created the data directory before refusing its configuration"


def test_serve_refuses_a_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            p = run_cli("serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "d"), "--simulate",
                        env=clean_env(), check=False, timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve kept running although port {port} is taken")
    assert p.returncode != 0
    assert str(port) in p.stderr, p.stderr


# -------------------------------------------------------------------------------- life cycle


def test_port_0_is_logged_as_the_real_listening_address(fresh_server):
    s1 = fresh_server()
    s2 = fresh_server()
    for s in (s1, s2):
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)\s*$", s.stderr_path.read_text(), re.M)
        assert m, s.stderr_path.read_text()
        port = int(m.group(1))
        assert 0 < port < 65536 and port == s.port
        assert requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200
    assert s1.port != s2.port


def test_sigterm_answers_a_slow_request_in_flight_then_exits_0(fresh_server):
    s = fresh_server(args=["--set", "server.shutdown_grace=5s"])
    body = b'{"action": "on"}'
    c = socket.create_connection((s.host, s.port), timeout=10)
    c.sendall(b"POST /api/led HTTP/1.1\r\nHost: x\r\nX-API-Key: " + s.initial_key.encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:7])
    time.sleep(0.3)  # the server has the headers and waits for the rest of the body
    signalled = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 3
    while not connection_refused(s.host, s.port):
        assert time.monotonic() < deadline, "new connections were still accepted 3s after SIGTERM"
        time.sleep(0.05)
    assert s.proc.poll() is None, f"the server exited ({s.proc.returncode}) with a request in flight"
    c.sendall(body[7:])
    status, headers, answer = read_response(c)
    c.close()
    assert status == 200, answer
    assert answer == b'{"action":"on","led_state":"on"}', answer
    assert headers.get("connection", "").lower() == "close", f"a stopping server kept the connection open: {headers}"
    code = s.proc.wait(timeout=10)
    assert code == 0, f"exit code {code} after SIGTERM"
    assert time.monotonic() - signalled < 5 + 2, "the server waited the whole grace although nothing was in flight"
    assert "stopped" in s.stderr_path.read_text()


def test_sigterm_gives_up_on_a_stalled_request_after_the_grace(fresh_server):
    s = fresh_server(args=["--set", "server.shutdown_grace=1s"])
    c = socket.create_connection((s.host, s.port), timeout=10)
    c.sendall(b"POST /api/led HTTP/1.1\r\nHost: x\r\nX-API-Key: " + s.initial_key.encode() +
              b"\r\nContent-Length: 100\r\n\r\n{\"act")  # never finished
    time.sleep(0.3)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    try:
        code = s.proc.wait(timeout=6)
    except subprocess.TimeoutExpired:
        pytest.fail("the server was still running 6s after SIGTERM with a 1s grace")
    took = time.monotonic() - t0
    assert code == 0, f"exit code {code}"
    assert 0.8 <= took < 4, f"exited {took:.2f}s after SIGTERM; grace is 1s"
    c.settimeout(2)
    try:
        leftover = c.recv(65536)  # closed (b""), or a 408/503 answer before closing
        assert leftover == b"" or leftover.startswith(b"HTTP/1.1 "), leftover
    except ConnectionResetError:
        pass
    c.close()


def test_sigterm_does_not_wait_for_idle_keep_alive_connections(fresh_server):
    s = fresh_server(args=["--set", "server.shutdown_grace=10s"])
    idle = []
    for _ in range(3):
        c = socket.create_connection((s.host, s.port), timeout=10)
        c.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(c)[0] == 200
        idle.append(c)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    code = s.proc.wait(timeout=12)
    took = time.monotonic() - t0
    assert code == 0
    assert took < 3, f"idle keep-alive connections held the shutdown for {took:.1f}s"
    for c in idle:
        c.settimeout(2)
        try:
            assert c.recv(65536) == b""
        except ConnectionResetError:
            pass
        c.close()


def test_sigint_exits_0(fresh_server):
    s = fresh_server()
    assert s.get("/api/health").status_code == 200
    assert s.stop(sig=signal.SIGINT, timeout=10) == 0
    assert "SIGINT" in s.stderr_path.read_text()
    assert connection_refused(s.host, s.port)


def test_readings_and_keys_survive_a_restart(fresh_server):
    args = ["--set", "collector.interval=100ms"]
    s = fresh_server(args=args)
    key = s.initial_key
    deadline = time.monotonic() + 20
    while s.get("/api/health").json()["readings_stored"] < 30:
        assert time.monotonic() < deadline, "the collector stored fewer than 30 rows in 20s"
        time.sleep(0.1)
    assert s.post("/api/led", key=key, json={"action": "on"}).status_code == 200
    time.sleep(0.3)
    before = s.get("/api/readings", key=key, params={"limit": 1000}).json()["readings"]
    stored_before = s.get("/api/health").json()["readings_stored"]
    assert s.stop() == 0
    s2 = fresh_server(data_dir=s.data_dir, args=args)
    assert s2.initial_key is None, "a second admin key was created on restart"
    stored_after = s2.get("/api/health").json()["readings_stored"]
    assert stored_after >= stored_before, f"{stored_before} rows before the restart, {stored_after} after"
    after = s2.get("/api/readings", key=key, params={"limit": 1000, "to": before[-1]["timestamp"]}).json()["readings"]
    assert after == before, "readings taken before the restart came back different"
    assert any(r["led_state"] == "on" for r in before)
