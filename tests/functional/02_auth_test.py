"""Authentication and scopes, for every route the server documents in /openapi.json."""
import re

import requests

from conftest import create_key, run_cli

# Public by default, plus seed 000's /signup and /login, which its table lists under
# "No authorization needed".
PUBLIC = {"/api/health", "/openapi.json", "/docs", "/docs/{asset}", "/signup", "/login"}
RASPAP = {"/system", "/networking"}
SEED000 = {"/", "/motion", "/face", "/angle", "/video_feed", "/stream", "/snapshot"}
SCOPE_RANK = {"read": 1, "control": 2, "admin": 3}


def operations(server):
    doc = requests.get(server.url("/openapi.json"), timeout=5).json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield path, method.upper(), op


def concrete(path):
    return re.sub(r"\{[^}]+\}", "x", path)


def needed_scope(op):
    m = re.search(r"scope `(\w+)`", op.get("description", ""))
    return m.group(1) if m else None


def call(server, method, path, headers):
    """The answer's status and, unless it is a stream (/video_feed), its body."""
    r = requests.request(method, server.url(concrete(path)), headers=headers, timeout=10, stream=True,
                         data=b"{}" if method in ("POST", "PUT", "PATCH") else None)
    if r.headers.get("Content-Type", "").startswith("multipart/x-mixed-replace"):
        r.close()
    else:
        r.content  # read it all
    return r


def test_only_the_documented_public_routes_are_public(server):
    public = {path for path, _, op in operations(server) if op["security"] == []}
    assert public == PUBLIC


def test_every_route_refuses_missing_and_wrong_credentials(server):
    checked = 0
    for path, method, op in operations(server):
        if path in PUBLIC:
            continue
        expected = 403 if path in RASPAP else 401
        for headers in ({}, {"X-API-Key": "opk_aaaaaaaaaa_" + "A" * 43}, {"Authorization": "Bearer nonsense"},
                        {"access_token": "x"}, {"X-API-Key": ""}):
            r = call(server, method, path, headers)
            assert r.status_code == expected, (method, path, headers, r.status_code, r.text)
            if path in RASPAP:
                assert r.json() == {"detail": "Could not validate credentials"}
            elif path in SEED000:
                assert r.json()["status"] == "error"
                assert r.json()["message"] in ("token missing", "token invalid"), r.json()
            else:
                assert r.headers["Content-Type"] == "application/problem+json"
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert r.json()["status"] == 401
        checked += 1
    assert checked >= 5


def test_every_route_refuses_a_too_small_scope(server):
    checked = 0
    for path, method, op in operations(server):
        need = needed_scope(op)
        if path in PUBLIC:
            assert need is None
            continue
        assert need in SCOPE_RANK, (path, op)
        for scope, rank in SCOPE_RANK.items():
            r = call(server, method, path, {"X-API-Key": server.keys[scope]})
            if rank < SCOPE_RANK[need]:
                assert r.status_code == 403, (method, path, scope, r.status_code, r.text)
                if path in SEED000:
                    assert need in r.json()["message"]
                elif path not in RASPAP:
                    assert need in r.json()["detail"]
            else:
                assert r.status_code not in (401, 403), (method, path, scope, r.status_code, r.text)
        checked += 1
    assert checked >= 5


def test_key_accepted_in_each_header(server):
    key = server.keys["read"]
    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}, {"access_token": key},
                    {"Authorization": key}):
        r = requests.get(server.url("/api/status"), headers=headers, timeout=5)
        assert r.status_code == 200, headers


def test_tampered_key_is_refused(server):
    key = server.keys["admin"]
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert server.get("/api/status", key=tampered).status_code == 401
    assert server.get("/api/status", key=key + "x").status_code == 401
    assert server.get("/api/status", key=key[:-1]).status_code == 401


def test_no_default_secret_initial_admin_key_printed_once(fresh_server):
    s = fresh_server()
    assert s.initial_key, s.log()
    assert s.get("/api/status", key=s.initial_key).status_code == 200
    listed = run_cli("keys", "list", "--data-dir", str(s.data_dir)).stdout
    assert "admin" in listed and s.initial_key not in listed
    assert s.initial_key[:14] in listed  # listed by prefix
    # never in the log
    assert s.initial_key not in s.stderr_path.read_text()


def test_restart_does_not_create_another_key(fresh_server):
    s = fresh_server()
    data_dir = s.data_dir
    assert s.stop() == 0
    s2 = fresh_server(data_dir=data_dir)
    assert s2.initial_key is None
    assert s2.get("/api/status", key=s.initial_key).status_code == 200


def test_keys_cli_create_list_revoke_take_effect_while_running(server):
    key = create_key(server.data_dir, "read", "short-lived")
    assert len(key) >= 32
    assert server.get("/api/status", key=key).status_code == 200
    listed = run_cli("keys", "list", "--data-dir", str(server.data_dir)).stdout
    line = next(l for l in listed.splitlines() if "short-lived" in l)
    prefix = line.split()[0]
    assert key.startswith(prefix + "_") and key not in listed
    run_cli("keys", "revoke", "--data-dir", str(server.data_dir), prefix)
    import time
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and server.get("/api/status", key=key).status_code == 200:
        time.sleep(0.1)
    assert server.get("/api/status", key=key).status_code == 401
    # revoking again says so and fails
    again = run_cli("keys", "revoke", "--data-dir", str(server.data_dir), prefix, check=False)
    assert again.returncode != 0


def test_keys_cli_rejects_bad_scope(server):
    r = run_cli("keys", "create", "--data-dir", str(server.data_dir), "--scope", "root", check=False)
    assert r.returncode != 0
    assert "scope" in r.stderr


def test_keys_never_appear_in_access_log(server):
    key = server.keys["read"]
    server.get("/api/status", key=key)
    requests.get(server.url(f"/api/status?access_token={key}&x=1"), timeout=5)
    requests.get(server.url("/api/status"), headers={"Authorization": f"Bearer {key}"}, timeout=5)
    import time
    time.sleep(1.5)  # the access log is flushed every second
    out = server.stdout_path.read_text() + server.stderr_path.read_text()
    assert key not in out
    assert "access_token=REDACTED" in out
