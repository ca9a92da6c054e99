"""Service routes and cross-cutting behaviour: the OpenAPI document (and its linter), the /docs page
and its assets (CSP, gzip, ETag), Prometheus metrics, CORS, and the JSON access log."""
import gzip
import http.client
import json
import re
import subprocess
import tempfile
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from conftest import ROOT, run_cli

LINTER = ROOT / "scripts" / "lint-openapi"
EXPECTED_OPERATIONS = {
    ("/api/status", "get"), ("/api/readings", "get"), ("/api/led", "post"), ("/api/health", "get"),
    ("/system", "get"), ("/networking", "get"), ("/metrics", "get"), ("/openapi.json", "get"),
    ("/docs", "get"), ("/docs/{asset}", "get"),
}
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".html": "text/html"}


def openapi(server):
    r = requests.get(server.url("/openapi.json"), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def raw_get(server, path, headers=None):
    """GET without any automatic decompression: (status, headers (lower-case names), raw body)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def tokens(header_value):
    return {t.strip().lower() for t in (header_value or "").split(",") if t.strip()}


# ------------------------------------------------------------------------------ /openapi.json


def test_openapi_is_public_3_1_and_documents_every_route(server):
    r = requests.get(server.url("/openapi.json"), timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json"), r.headers["Content-Type"]
    doc = r.json()
    assert doc["openapi"].startswith("3.1"), doc["openapi"]
    ops = {(path, method) for path, item in doc["paths"].items() for method in item}
    missing = EXPECTED_OPERATIONS - ops
    assert not missing, f"routes served but not documented: {sorted(missing)}"
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), f"duplicate operationIds: {sorted(i for i in ids if ids.count(i) > 1)}"
    version = re.search(r"outpost (\S+)", run_cli("version").stdout).group(1)
    assert doc["info"]["version"] == version, (doc["info"], version)


def test_every_documented_operation_answers_with_a_documented_status(server):
    doc = openapi(server)
    key = server.keys["admin"]
    checked = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            concrete = re.sub(r"\{[^}]+\}", "x", path)
            r = requests.request(method.upper(), server.url(concrete), headers={"X-API-Key": key}, timeout=10,
                                 data=b"{}" if method in ("post", "put", "patch") else None, stream=True)
            r.close()
            assert str(r.status_code) in op["responses"], (
                f"{method.upper()} {concrete} answered {r.status_code}, documented: {list(op['responses'])}")
            assert r.status_code != 405, f"{method.upper()} {path} is documented but its method is not served"
            checked += 1
    assert checked >= len(EXPECTED_OPERATIONS)


def resolve(doc, schema):
    while "$ref" in schema:
        node = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def check_schema(doc, schema, value, where):
    """A small JSON Schema check: type, required, properties, items, enum."""
    schema = resolve(doc, schema)
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        ok = {
            "object": isinstance(value, dict), "array": isinstance(value, list), "string": isinstance(value, str),
            "boolean": isinstance(value, bool), "null": value is None,
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        }
        assert any(ok.get(t, False) for t in types), f"{where}: {value!r} is not {types}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            assert name in value, f"{where}: required member {name!r} missing from {list(value)}"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                check_schema(doc, sub, value[name], f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value[:20]):
            check_schema(doc, schema["items"], item, f"{where}[{i}]")


@pytest.mark.parametrize("method,path,body,status", [
    ("get", "/api/status", None, 200),
    ("get", "/api/readings", None, 200),
    ("get", "/api/health", None, 200),
    ("get", "/system", None, 200),
    ("get", "/networking", None, 200),
    ("post", "/api/led", {"action": "toggle"}, 200),
    ("post", "/api/led", {"action": "blink"}, 400),
    ("get", "/api/readings?limit=abc", None, 400),
])
def test_answers_match_their_documented_schemas(server, method, path, body, status):
    doc = openapi(server)
    op = doc["paths"][path.split("?")[0]][method]
    r = requests.request(method.upper(), server.url(path), headers={"X-API-Key": server.keys["control"]},
                         json=body, timeout=10)
    assert r.status_code == status, r.text
    content = op["responses"][str(status)]["content"]
    ctype = r.headers["Content-Type"].split(";")[0]
    assert ctype in content, f"{method.upper()} {path} answered {ctype}, documented {list(content)}"
    check_schema(doc, content[ctype]["schema"], r.json(), f"{method.upper()} {path}")


def test_openapi_document_passes_the_linter(server, tmp_path):
    doc_file = tmp_path / "openapi.json"
    doc_file.write_text(requests.get(server.url("/openapi.json"), timeout=10).text)
    p = subprocess.run([str(LINTER), str(doc_file)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"scripts/lint-openapi exited {p.returncode}:\n{p.stdout}\n{p.stderr}"


def test_linter_catches_a_broken_document(tmp_path):
    """The lint test above can fail: the linter refuses a document with problems."""
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"openapi": "3.1.0", "info": {"title": "x"}, "paths": {"/a": {"get": {}}}}))
    p = subprocess.run([str(LINTER), str(broken)], capture_output=True, text=True, timeout=120)
    assert p.returncode != 0, p.stdout


# ------------------------------------------------------------------------------------- /docs


class AssetRefs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.assets, self.links, self.inline_scripts, self.handlers = [], [], 0, []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in a:
            if name.startswith("on"):
                self.handlers.append((tag, name))
        if tag == "script":
            if a.get("src"):
                self.assets.append(a["src"])
            else:
                self._in_script = True
        elif tag == "link" and a.get("href"):
            self.assets.append(a["href"])
        elif tag in ("img", "iframe", "source") and a.get("src"):
            self.assets.append(a["src"])
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts += 1


def docs_page(server):
    r = requests.get(server.url("/docs"), timeout=10)
    assert r.status_code == 200, r.text
    refs = AssetRefs()
    refs.feed(r.text)
    return r, refs


def test_docs_page_is_public_html_with_a_strict_csp(server):
    r, refs = docs_page(server)
    assert r.headers["Content-Type"].startswith("text/html"), r.headers["Content-Type"]
    csp = r.headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp, f"CSP {csp!r}"
    assert "frame-ancestors 'none'" in csp, f"CSP {csp!r}"
    assert "script-src" not in csp or "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0], csp
    # the page works under its own CSP: no inline script, no inline event handlers
    assert refs.inline_scripts == 0 and not refs.handlers, (refs.inline_scripts, refs.handlers)
    assert r.headers.get("X-Content-Type-Options") == "nosniff"


def test_docs_page_references_only_local_assets_and_each_is_served(server):
    _, refs = docs_page(server)
    assert refs.assets, "the page references no assets"
    for url in refs.assets + refs.links:
        assert url.startswith("/") and not url.startswith("//"), f"{url} is not a local path"
    for url in refs.assets:
        assert url.startswith("/docs/"), f"asset {url} is not under /docs/"
        r = requests.get(server.url(url), timeout=30)
        assert r.status_code == 200, (url, r.status_code)
        ext = Path(url).suffix
        assert r.headers["Content-Type"].startswith(CONTENT_TYPES[ext]), (url, r.headers["Content-Type"])
        assert len(r.content) > 0
        if ext == ".css":  # what the style sheets load must be local or inline data too
            for ref in re.findall(r"url\(\s*['\"]?([^'\")]+)", r.text):
                assert ref.startswith("data:") or (ref.startswith("/") and not ref.startswith("//")) or \
                    not re.match(r"^[a-z]+:", ref), f"{url} loads {ref}"
    for url in refs.links:
        assert requests.get(server.url(url), timeout=10).status_code == 200, url


def test_docs_script_loads_the_local_openapi_document(server):
    r = requests.get(server.url("/docs/docs.js"), timeout=10)
    assert r.status_code == 200
    assert "/openapi.json" in r.text


@pytest.mark.parametrize("path", ["/docs", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"])
def test_docs_assets_are_gzipped_when_accepted(server, path):
    status, plain_h, plain = raw_get(server, path)
    assert status == 200 and "content-encoding" not in plain_h, plain_h
    status, gz_h, packed = raw_get(server, path, {"Accept-Encoding": "gzip, deflate"})
    assert status == 200
    assert gz_h.get("content-encoding") == "gzip", gz_h
    assert len(packed) < len(plain)
    assert gzip.decompress(packed) == plain, "the gzip body does not decompress to the plain body"
    assert "accept-encoding" in tokens(gz_h.get("vary")) and "accept-encoding" in tokens(plain_h.get("vary"))
    assert gz_h["etag"] != plain_h["etag"], "gzip and identity representations share a strong ETag"
    assert gz_h["content-type"] == plain_h["content-type"]


def test_docs_gzip_refused_with_q_0_is_not_sent(server):
    # RFC 9110 12.5.3: "gzip;q=0" means gzip is not acceptable
    status, h, body = raw_get(server, "/docs/swagger-ui-bundle.js", {"Accept-Encoding": "gzip;q=0, identity"})
    assert status == 200
    assert "content-encoding" not in h, f"sent {h.get('content-encoding')} to a client that refused it with q=0"


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_docs_etag_revalidation_gives_304(server, encoding):
    base = {"Accept-Encoding": encoding} if encoding else {}
    status, h, body = raw_get(server, "/docs/swagger-ui.css", base)
    assert status == 200 and h.get("etag"), h
    etag = h["etag"]
    assert re.fullmatch(r'"[^"]+"', etag), f"ETag {etag!r} is not a quoted strong validator"
    for inm in (etag, f'"nope", {etag}', "W/" + etag):
        status, h2, body2 = raw_get(server, "/docs/swagger-ui.css", dict(base, **{"If-None-Match": inm}))
        assert status == 304, (inm, status)
        assert body2 == b"", "a 304 has no body"
        assert h2.get("etag") == etag, h2
    status, _, body3 = raw_get(server, "/docs/swagger-ui.css", dict(base, **{"If-None-Match": '"something-else"'}))
    assert status == 200 and body3 == body


def test_docs_unknown_asset_is_404_problem(server):
    for path in ("/docs/nope", "/docs/nope.js", "/docs/..%2F..%2Fetc%2Fpasswd", "/docs/../../etc/passwd",
                 "/docs/%2e%2e/openapi.json"):
        r = requests.get(server.url(path), timeout=10)
        assert r.status_code == 404, (path, r.status_code)
        assert r.headers["Content-Type"] == "application/problem+json", (path, r.headers["Content-Type"])
        assert "root:" not in r.text


# ----------------------------------------------------------------------------------- /metrics


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics(session, server):
    r = session.get(server.url("/metrics"), headers={"X-API-Key": server.keys["read"]}, timeout=10)
    assert r.status_code == 200, r.text
    types, samples = {}, {}
    for line in r.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, f"not a Prometheus sample line: {line!r}"
            labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
            samples[(m.group(1), labels)] = float(m.group(3))
    return r, types, samples


def series(samples, name, **labels):
    return {k: v for k, v in samples.items() if k[0] == name and all((n, str(val)) in k[1] for n, val in labels.items())}


def value(samples, name, **labels):
    found = series(samples, name, **labels)
    assert len(found) <= 1, found
    return next(iter(found.values()), 0.0)


def test_metrics_needs_read_scope_and_is_prometheus_text(server):
    assert requests.get(server.url("/metrics"), timeout=5).status_code == 401
    with requests.Session() as s:
        r, types, _ = metrics(s, server)
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers["Content-Type"]
    assert "version=0.0.4" in r.headers["Content-Type"]
    expected = {"outpost_http_requests_total": "counter", "outpost_http_request_duration_seconds": "histogram",
                "outpost_http_connections_open": "gauge", "outpost_readings_stored": "gauge",
                "outpost_store_commit_seconds": "histogram"}
    for name, kind in expected.items():
        assert types.get(name) == kind, f"{name}: TYPE {types.get(name)}, expected {kind}"


def test_request_counter_moves_by_route_and_status(server):
    key = server.keys["read"]
    with requests.Session() as s:
        _, _, m0 = metrics(s, server)
        ok0 = value(m0, "outpost_http_requests_total", route="GET /api/status", status=200)
        denied0 = value(m0, "outpost_http_requests_total", route="GET /api/status", status=401)
        hist0 = value(m0, "outpost_http_request_duration_seconds_count")
        for _ in range(3):
            assert s.get(server.url("/api/status"), headers={"X-API-Key": key}, timeout=5).status_code == 200
        assert s.get(server.url("/api/status"), timeout=5).status_code == 401
        deadline = time.monotonic() + 3
        while True:
            _, _, m1 = metrics(s, server)
            ok1 = value(m1, "outpost_http_requests_total", route="GET /api/status", status=200)
            if ok1 >= ok0 + 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert ok1 == ok0 + 3, f"GET /api/status 200 counter went {ok0} -> {ok1} after 3 requests"
    assert value(m1, "outpost_http_requests_total", route="GET /api/status", status=401) == denied0 + 1
    assert value(m1, "outpost_http_request_duration_seconds_count") >= hist0 + 4


def test_duration_histogram_is_well_formed(server):
    with requests.Session() as s:
        s.get(server.url("/api/health"), timeout=5)
        _, _, m = metrics(s, server)
    for family in ("outpost_http_request_duration_seconds", "outpost_store_commit_seconds"):
        buckets = series(m, family + "_bucket")
        assert buckets, f"{family} has no buckets"
        bounds = sorted(((float(dict(k[1])["le"]), v) for k, v in buckets.items()), key=lambda b: b[0])
        assert bounds[-1][0] == float("inf"), f"{family} has no +Inf bucket"
        counts = [v for _, v in bounds]
        assert counts == sorted(counts), f"{family} buckets are not cumulative: {bounds}"
        assert bounds[-1][1] == value(m, family + "_count"), f"{family}: +Inf bucket != _count"
        assert value(m, family + "_sum") >= 0
    assert value(m, "outpost_http_connections_open") >= 1, "our own open connection is not counted"


def test_store_metrics_follow_the_collector(server):
    with requests.Session() as s:
        _, _, m0 = metrics(s, server)
        deadline = time.monotonic() + 5
        while True:
            time.sleep(0.3)
            _, _, m1 = metrics(s, server)
            if (value(m1, "outpost_readings_stored") > value(m0, "outpost_readings_stored") and
                    value(m1, "outpost_store_commit_seconds_count") > value(m0, "outpost_store_commit_seconds_count")):
                break
            assert time.monotonic() < deadline, "readings_stored and store commits did not move in 5s"
    health = requests.get(server.url("/api/health"), timeout=5).json()
    assert abs(health["readings_stored"] - value(m1, "outpost_readings_stored")) < 100, (health, value(m1, "outpost_readings_stored"))


def test_unknown_paths_do_not_become_metric_labels(server):
    probe = uuid.uuid4().hex
    with requests.Session() as s:
        _, _, m0 = metrics(s, server)
        for i in range(20):
            assert s.get(server.url(f"/nope-{probe}-{i}"), headers={"X-API-Key": server.keys["read"]},
                         timeout=5).status_code == 404
        r, _, m1 = metrics(s, server)
    assert probe not in r.text, "a request path became a metric label"
    assert len(m1) - len(m0) <= 2, f"20 unknown paths added {len(m1) - len(m0)} series"


# -------------------------------------------------------------------------------------- CORS

GOOD = "http://good.example"


@pytest.fixture(scope="module")
def cors_server():
    from conftest import Server, _servers
    s = Server(args=["--set", f"server.cors_origins={GOOD}"]).start()
    _servers.append(s)
    yield s
    _servers.remove(s)
    s.close()


def test_cors_allowed_origin_is_echoed_with_vary(cors_server):
    s = cors_server
    for key, expected in ((s.initial_key, 200), (None, 401)):  # errors are readable by the page too
        r = s.get("/api/status", key=key, headers={"Origin": GOOD})
        assert r.status_code == expected, r.text
        assert r.headers.get("Access-Control-Allow-Origin") == GOOD, r.headers
        assert "origin" in tokens(r.headers.get("Vary")), r.headers.get("Vary")


@pytest.mark.parametrize("origin", ["http://evil.example", "http://good.example.evil.example", "https://good.example",
                                    "http://good.example:8080", "null", "http://good.exampl", GOOD + "/"])
def test_cors_unknown_origin_is_never_reflected(cors_server, origin):
    r = cors_server.get("/api/status", key=cors_server.initial_key, headers={"Origin": origin})
    assert r.status_code == 200
    assert "Access-Control-Allow-Origin" not in r.headers, (origin, r.headers)
    assert origin not in " ".join(f"{k}: {v}" for k, v in r.headers.items() if k.lower() != "vary")
    assert "origin" in tokens(r.headers.get("Vary")), "a cache could serve one origin's answer to another"


@pytest.mark.parametrize("path,method,allowed", [("/api/led", "POST", {"post"}), ("/api/status", "GET", {"get"})])
def test_cors_preflight_from_allowed_origin(cors_server, path, method, allowed):
    r = requests.options(cors_server.url(path), timeout=5, headers={
        "Origin": GOOD, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "x-api-key, content-type"})
    assert r.status_code == 204, r.text
    assert r.headers.get("Access-Control-Allow-Origin") == GOOD, r.headers
    methods = tokens(r.headers.get("Access-Control-Allow-Methods"))
    assert allowed <= methods, methods
    other = {"get", "post", "put", "delete", "patch"} - allowed
    assert not methods & other, f"preflight allows methods the route table does not have: {methods & other}"
    headers = tokens(r.headers.get("Access-Control-Allow-Headers"))
    assert {"x-api-key", "content-type", "authorization"} <= headers, headers
    assert r.content == b""


def test_cors_preflight_from_bad_origin_allows_nothing(cors_server):
    r = requests.options(cors_server.url("/api/led"), timeout=5,
                         headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert r.status_code in (204, 403), r.status_code
    for h in ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers"):
        assert h not in r.headers, (h, r.headers)


def test_cors_allowed_origin_can_actually_post(cors_server):
    r = cors_server.post("/api/led", key=cors_server.initial_key, json={"action": "on"},
                         headers={"Origin": GOOD})
    assert r.status_code == 200 and r.headers.get("Access-Control-Allow-Origin") == GOOD


def test_no_cors_headers_without_configured_origins(server):
    r = server.get("/api/status", key=server.keys["read"], headers={"Origin": GOOD})
    assert r.status_code == 200
    cors = [h for h in r.headers if h.lower().startswith("access-control-")]
    assert not cors, cors
    r = requests.options(server.url("/api/led"), timeout=5,
                         headers={"Origin": GOOD, "Access-Control-Request-Method": "POST"})
    cors = [h for h in r.headers if h.lower().startswith("access-control-")]
    assert not cors, cors


def test_cors_wildcard_allows_any_origin(fresh_server):
    s = fresh_server(args=["--set", "server.cors_origins=*"])
    r = s.get("/api/status", key=s.initial_key, headers={"Origin": "http://anything.example"})
    assert r.headers.get("Access-Control-Allow-Origin") == "*", r.headers


# -------------------------------------------------------------------------------- access log


def access_lines(server):
    lines = []
    text = server.stdout_path.read_text()
    complete = text[: text.rfind("\n") + 1]  # stdout is block-buffered: the last line may be half written
    for line in complete.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))  # every access log line is one JSON object
    return lines


def wait_for_log(server, predicate, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        found = [x for x in access_lines(server) if predicate(x)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_access_log_is_json_lines_with_the_request_facts(server):
    probe = uuid.uuid4().hex
    assert server.get(f"/api/status?probe={probe}", key=server.keys["read"]).status_code == 200
    assert server.get(f"/nope-{probe}", key=server.keys["read"]).status_code == 404
    assert server.post(f"/api/led?probe={probe}", key=server.keys["read"], json={"action": "on"}).status_code == 403
    found = wait_for_log(server, lambda x: probe in x.get("path", ""))
    deadline = time.monotonic() + 5
    while len(found) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
        found = [x for x in access_lines(server) if probe in x.get("path", "")]
    by_status = {x["status"]: x for x in found}
    assert set(by_status) == {200, 404, 403}, found
    assert by_status[200]["method"] == "GET" and by_status[200]["path"] == f"/api/status?probe={probe}"
    assert by_status[403]["method"] == "POST"
    for x in found:
        assert isinstance(x["status"], int)
        assert isinstance(x["duration_ms"], (int, float)) and 0 <= x["duration_ms"] < 10_000, x
        assert x["client"] == "127.0.0.1", x
    # every line written so far parses (access_lines raises otherwise) and has the facts
    for x in access_lines(server):
        assert {"method", "path", "status", "duration_ms", "client"} <= set(x), x


@pytest.mark.parametrize("name", ["key", "api_key", "APIKEY", "token", "password", "secret", "auth"])
def test_access_log_redacts_secrets_in_the_query(server, name):
    key = server.keys["read"]
    probe = uuid.uuid4().hex
    requests.get(server.url(f"/api/health?probe={probe}&{name}={key}"), timeout=5)
    found = wait_for_log(server, lambda x: probe in x.get("path", ""))
    assert found, "request not logged"
    assert key not in found[0]["path"] and f"{name}=REDACTED" in found[0]["path"], found[0]
    assert key not in server.stdout_path.read_text()


def test_access_log_lines_stay_json_for_hostile_requests(server):
    import socket
    hostile = [b'GET /a"b\\c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
               b"GET /\xc3\x28\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
               b'GET /api/health?x="}\\u0000{" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
               b"DELETE /api/%22status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
               b"GET /api/health?a\x01b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]
    before = len(access_lines(server))
    for req in hostile:
        with socket.create_connection((server.host, server.port), timeout=5) as c:
            c.sendall(req)
            c.settimeout(5)
            try:
                while c.recv(65536):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
    probe = uuid.uuid4().hex
    server.get(f"/api/health?after={probe}")
    assert wait_for_log(server, lambda x: probe in x.get("path", "")), "the marker request was not logged"
    logged = access_lines(server)  # raises if any line is not JSON
    assert len(logged) - before >= len(hostile) + 1, "hostile requests were left out of the access log"
    assert any(x["path"] == '/a"b\\c' for x in logged) or any(x["status"] == 400 for x in logged[before:]), \
        "the quote and backslash path is neither logged verbatim nor refused"
