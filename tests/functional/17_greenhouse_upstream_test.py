"""The greenhouse story of seed 002, end to end on the real binary: the upstream is down, the
local rule keeps switching the ventilation relay, and every summary and alert produced meanwhile
reaches the upstream exactly once, in order, when it comes back. Also: summaries are handed to
the outbox under their own ids, so a restart does not send one twice. All traffic stays on
127.0.0.1; every wait is bounded and nothing asserts how fast anything happened."""
import importlib

import pytest

from conftest import metric, wait_for
from upstream_servers import UpstreamServer

rules_test = importlib.import_module("14_rules_test")
BOARD = rules_test.BOARD
servers = rules_test.servers  # the fixture that stops the servers a test started


def config(url):
    return f"""
[edge]
summary_window = "1s"
summary_grace = "0s"

[upstream]
backoff_initial = "100ms"
backoff_max = "500ms"

[[upstream.destinations]]
name = "cloud"
url = "{url}"
kinds = ["summary", "alert"]
timeout = "3s"

[[rules]]
id = "vent"
sensor = "cpu_temp_c"
above = 30.0
clear_below = 27.0
on = {{ command = {{ target = "relay", value = "on" }}, alert = "hot: ventilation on" }}
off = {{ command = {{ target = "relay", value = "off" }}, alert = "cool: ventilation off" }}
"""


@pytest.fixture
def thermal():
    t = rules_test.Thermal()
    yield t
    t.close()


@pytest.fixture
def upstream():
    u = UpstreamServer()
    yield u
    u.stop()


def summaries(s):
    r = s.get(f"/api/summaries?device={BOARD}&limit=1000", key=s.keys["read"])
    assert r.status_code == 200, r.text
    return r.json()["summaries"]


def summary_id(x):
    return f"summary:{x['device']}/{x['sensor']}/{x['period_start']}"


def cloud(s):
    r = s.get("/api/outbox", key=s.keys["read"])
    assert r.status_code == 200, r.text
    return next(d for d in r.json()["destinations"] if d["name"] == "cloud")


def check_exactly_once_in_order(received, want_summary_ids, alerts):
    ids = [m["id"] for m in received]
    assert len(ids) == len(set(ids)), f"a message arrived twice: {ids}"
    got = {m["id"] for m in received if m["kind"] == "summary"}
    missing = want_summary_ids - got
    assert not missing, f"summaries stored on the edge never arrived: {sorted(missing)}"
    # In order: each series' summaries in period order, the alerts in the order they were stored.
    last = {}
    for m in received:
        if m["kind"] != "summary":
            continue
        b = m["body"]
        key = (b["device"], b["sensor"])
        assert last.get(key, "") < b["period_start"], f"{key} out of order at {b['period_start']}"
        last[key] = b["period_start"]
        assert m["id"] == summary_id(b)
    got_alerts = [(m["body"]["time"], m["body"]["payload"]["message"]) for m in received if m["kind"] == "alert"]
    assert got_alerts == [(a["time"], a["payload"]["message"]) for a in alerts]


def test_rules_act_while_the_upstream_is_down_and_everything_arrives_once_it_is_back(thermal, upstream, servers):
    thermal.set(20)
    s = rules_test.start(thermal, config_text=config(upstream.url))
    servers.append(s)

    # The upstream is down (never started): the rule switches the relay both ways regardless.
    thermal.set(35)
    rules_test.relay_is(s, True)
    thermal.set(20)
    rules_test.relay_is(s, False)
    thermal.set(35)
    rules_test.relay_is(s, True)
    alerts = wait_for(lambda: (lambda a: a if len(a) == 3 else None)(rules_test.events(s, "alert")), 10,
                      "three alert events")
    assert [a["payload"]["message"] for a in alerts] == [
        "hot: ventilation on", "cool: ventilation off", "hot: ventilation on"]
    wait_for(lambda: len(summaries(s)) >= 6, 30, "summaries of the board's sensors")
    d = wait_for(lambda: (lambda d: d if d["pending"] >= 6 and d["last_error"] else None)(cloud(s)), 30,
                 "the outbox to hold the backlog and say why")
    assert "refused" in d["last_error"], d

    # The upstream comes back: the backlog drains; everything stored meanwhile arrives once.
    upstream.start()
    stored = {summary_id(x) for x in summaries(s)}
    wait_for(lambda: stored <= {m["id"] for m in upstream.received()}, 60, "every stored summary upstream")
    check_exactly_once_in_order(upstream.received(), stored, rules_test.events(s, "alert"))
    # The upstream stores a batch before it answers; the edge counts it once it has read the answer.
    wait_for(lambda: metric(s, 'outpost_upstream_delivered_total{destination="cloud"}', s.keys["read"])
             >= len(stored) + 3, 30, "the deliveries counted")


def test_a_kill_9_loses_no_summary_and_a_repeat_is_the_same_message(thermal, upstream, servers, tmp_path):
    data = tmp_path / "data"
    upstream.start()
    thermal.set(20)
    s = rules_test.start(thermal, config_text=config(upstream.url), data_dir=data)
    servers.append(s)
    wait_for(lambda: len([m for m in upstream.received() if m["kind"] == "summary"]) >= 4, 30, "summaries upstream")
    # kill -9 while summaries are being produced and handed over, then start again on the same data.
    s.kill()
    sent_before = {m["id"] for m in upstream.received() if m["kind"] == "summary"}
    rules_test.stop(s)
    s2 = rules_test.start(thermal, config_text=config(upstream.url), data_dir=data)
    servers.append(s2)
    # What went upstream was committed on the edge first: the restarted edge has every one of them.
    stored_at_start = {summary_id(x) for x in summaries(s2)}
    assert sent_before <= stored_at_start, sorted(sent_before - stored_at_start)
    wait_for(lambda: len(summaries(s2)) >= len(stored_at_start) + 3, 30, "summaries of the second run")
    stored = {summary_id(x) for x in summaries(s2)}
    wait_for(lambda: stored <= {m["id"] for m in upstream.received()}, 60, "every stored summary upstream")
    # At least once across a crash: a message whose answer the kill cut off may come again, under
    # the same id and with the same body, so the receiver can drop it (a hub does).
    first = {}
    for m in upstream.received():
        if m["kind"] != "summary":
            continue
        assert first.setdefault(m["id"], m["body"]) == m["body"], f"{m['id']} came again with another body"
        assert m["id"] == summary_id(m["body"])
