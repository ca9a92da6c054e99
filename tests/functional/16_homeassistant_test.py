"""Home Assistant over MQTT: a real Mosquitto broker, the real outpost binary with [homeassistant]
enabled in simulated mode, and Home Assistant played by paho-mqtt. The retained discovery configs
(checked against the fields Home Assistant requires), availability, the states of the local
sensors, commands that take the hub's path, bad payloads counted, the last will after SIGKILL,
and configuration errors that name the key."""
import json
import os
import re
import signal
import threading

import paho.mqtt.client as paho
import pytest

from conftest import FAKE_ROOT, Server, _servers, create_key, metric, run_cli, wait_for
from mosquitto_broker import MosquittoBroker

DEVICE = "pi-ha.test"
NODE = "pi-ha_test"  # the device id with '.' made a node id
BASE = f"outpost/{NODE}"
AVAILABILITY = f"{BASE}/availability"

# What Home Assistant's MQTT discovery schemas accept, per component (the keys Outpost uses and
# the ones it might), and what each requires.
COMMON_KEYS = {"name", "unique_id", "availability_topic", "payload_available", "payload_not_available",
               "availability", "qos", "device", "origin", "state_topic", "device_class", "icon",
               "enabled_by_default", "entity_category", "json_attributes_topic", "value_template",
               "encoding", "object_id", "default_entity_id"}
KEYS = {
    "sensor": COMMON_KEYS | {"unit_of_measurement", "state_class", "expire_after", "force_update",
                             "suggested_display_precision"},
    "binary_sensor": COMMON_KEYS | {"payload_on", "payload_off", "expire_after", "force_update", "off_delay"},
    "switch": COMMON_KEYS | {"command_topic", "payload_on", "payload_off", "state_on", "state_off",
                             "optimistic", "retain"},
    "number": COMMON_KEYS | {"command_topic", "min", "max", "step", "mode", "optimistic", "retain",
                             "unit_of_measurement"},
}
REQUIRED = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "switch": {"command_topic"},
    "number": {"command_topic"},
}
TOPIC_RE = re.compile(r"^homeassistant/(sensor|binary_sensor|switch|number)/([A-Za-z0-9_-]+)/([A-Za-z0-9_-]+)/config$")


def check_discovery(topic, config):
    """Asserts that Home Assistant would accept `config` on `topic` and tie it to a device."""
    m = TOPIC_RE.match(topic)
    assert m, f"not a discovery topic: {topic}"
    component, node, _ = m.groups()
    assert node == NODE
    extra = set(config) - KEYS[component]
    assert not extra, f"{topic}: keys Home Assistant refuses: {extra}"
    missing = (REQUIRED[component] | {"name", "unique_id", "device"}) - set(config)
    assert not missing, f"{topic}: required keys missing: {missing}"
    for k in ("state_topic", "command_topic", "availability_topic"):
        if k in config:
            assert isinstance(config[k], str) and config[k] and not set(config[k]) & set("+#"), (topic, k)
    assert config["availability_topic"] == AVAILABILITY
    assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
    device = config["device"]
    assert device["identifiers"] and all(isinstance(i, str) for i in device["identifiers"])
    for k in ("name", "manufacturer", "model", "sw_version"):
        assert isinstance(device[k], str) and device[k], (topic, k)
    assert config.get("qos", 0) in (0, 1, 2)
    if component == "sensor" and config.get("device_class") == "temperature":
        assert config["unit_of_measurement"] in ("°C", "°F", "K")
        assert config["state_class"] in ("measurement", "total", "total_increasing")
    if component == "number":
        assert config["min"] < config["max"] and config.get("step", 1) >= 0.001
        assert config.get("mode", "auto") in ("auto", "box", "slider")
    return component


class HomeAssistant:
    """Home Assistant's side of the broker: subscribes to the discovery prefix and the node's
    topics (QoS 1) and keeps every message as (topic, payload, retain)."""

    def __init__(self, broker, client_id="home-assistant", base=BASE):
        self.messages = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.c = paho.Client(client_id=client_id, clean_session=True)
        self.c.on_connect = lambda c, u, f, rc: c.subscribe([("homeassistant/#", 1), (f"{base}/#", 1)])
        self.c.on_subscribe = lambda c, u, mid, granted: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert self.subscribed.wait(10), "Home Assistant's client did not subscribe"

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload.decode(errors="replace"), bool(msg.retain)))

    def on(self, topic):
        with self.lock:
            return [(p, r) for t, p, r in self.messages if t == topic]

    def last(self, topic):
        got = self.on(topic)
        return got[-1][0] if got else None

    def configs(self, node=NODE):
        """The discovery configs of `node` seen so far: {topic: (config, retain)}, the latest each."""
        with self.lock:
            return {t: (json.loads(p), r) for t, p, r in self.messages
                    if TOPIC_RE.match(t) and TOPIC_RE.match(t).group(2) == node}

    def config_count(self, node=NODE):
        with self.lock:
            return sum(1 for t, _, _ in self.messages if TOPIC_RE.match(t) and TOPIC_RE.match(t).group(2) == node)

    def publish(self, topic, payload, retain=False):
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def ha_args(broker, device=DEVICE):
    return ["--set", f"system.root={FAKE_ROOT}", "--set", "collector.interval=200ms",
            "--set", f"system.device_id={device}", "--set", f"homeassistant.url={broker.url}",
            "--set", "mqtt.reconnect_max_backoff=500ms"]


@pytest.fixture(scope="module")
def broker():
    with MosquittoBroker() as b:
        yield b


@pytest.fixture(scope="module")
def server(broker):
    # Enabled from the environment, the rest by flags: both paths of the configuration.
    s = Server(args=ha_args(broker), env={"OUTPOST_HOMEASSISTANT_ENABLED": "true"})
    s.start()
    s.keys = {scope: create_key(s.data_dir, scope, f"{scope} key") for scope in ("read", "control")}
    _servers.append(s)
    wait_for(lambda: s.get("/api/health").json()["hub"]["homeassistant"]["connected"], 20,
             "outpost to connect to the broker")
    yield s
    _servers.remove(s)
    s.close()


@pytest.fixture
def home(broker, server):
    h = HomeAssistant(broker)
    yield h
    h.close()


def test_discovery_configs_are_retained_and_have_what_home_assistant_requires(server, home):
    wait_for(lambda: len(home.configs()) >= 5, 10, "five discovery configs")
    configs = home.configs()
    by_object = {}
    for topic, (config, retain) in configs.items():
        assert retain, f"{topic} is not retained"
        component = check_discovery(topic, config)
        by_object[topic.split("/")[3]] = (component, config)
    assert {k: v[0] for k, v in by_object.items()} == {
        "cpu_temp_c": "sensor", "button_pressed": "binary_sensor", "led": "switch", "relay": "switch",
        "servo": "number"}
    cpu = by_object["cpu_temp_c"][1]
    assert (cpu["device_class"], cpu["unit_of_measurement"], cpu["state_class"]) == ("temperature", "°C", "measurement")
    assert cpu["state_topic"] == f"{BASE}/cpu_temp_c/state"
    led = by_object["led"][1]
    assert led["command_topic"] == f"{BASE}/led/set"
    assert (led["payload_on"], led["payload_off"]) == ("ON", "OFF")
    relay = by_object["relay"][1]  # the greenhouse's ventilation relay (hw.relay_line)
    assert (relay["command_topic"], relay["state_topic"]) == (f"{BASE}/relay/set", f"{BASE}/relay/state")
    servo = by_object["servo"][1]
    assert (servo["min"], servo["max"], servo["command_topic"]) == (-90, 90, f"{BASE}/servo/set")
    # One device for all of them, and a unique id each.
    assert len({json.dumps(c["device"], sort_keys=True) for _, c in by_object.values()}) == 1
    assert len({c["unique_id"] for _, c in by_object.values()}) == 5
    device = cpu["device"]
    assert device["name"] == DEVICE
    assert device["manufacturer"] == "Outpost"
    assert device["model"] == "Raspberry Pi 3 Model B (simulated hardware)"
    assert device["sw_version"] == run_cli("version").stdout.split()[-1]
    # Availability: retained "online".
    wait_for(lambda: home.on(AVAILABILITY), 10, "availability")
    assert home.on(AVAILABILITY)[-1] == ("online", True)


def test_states_of_the_local_sensors(server, home):
    wait_for(lambda: home.last(f"{BASE}/cpu_temp_c/state"), 10, "a cpu_temp_c state")
    temp = float(home.last(f"{BASE}/cpu_temp_c/state"))
    status = server.get("/api/status", key=server.keys["read"]).json()
    assert abs(temp - status["cpu_temp_c"]) < 5, (temp, status)
    wait_for(lambda: home.last(f"{BASE}/button_pressed/state"), 10, "a button state")
    assert home.last(f"{BASE}/button_pressed/state") == "OFF"
    wait_for(lambda: home.last(f"{BASE}/led/state") in ("ON", "OFF"), 10, "the LED's state")


def command_events(server, target):
    events = server.get("/api/events?type=command&limit=100", key=server.keys["read"]).json()["events"]
    out = []
    for e in events:
        p = e["payload"] if isinstance(e["payload"], dict) else json.loads(e["payload"])
        if p.get("target") == target:
            out.append(p)
    return out


def led_state(server):
    return server.get("/api/status", key=server.keys["read"]).json()["led_state"]


def test_a_command_from_home_assistant_takes_the_hubs_path(server, home):
    home.publish(f"{BASE}/led/set", "ON")
    wait_for(lambda: led_state(server) == "on", 10, "the LED to turn on")
    wait_for(lambda: home.last(f"{BASE}/led/state") == "ON", 10, "the LED's state ON")
    events = wait_for(lambda: [e for e in command_events(server, "led") if e["value"] == "on"], 10, "the command event")
    assert events[0]["who"] == "homeassistant"
    assert events[0]["state"] == "acknowledged"

    home.publish(f"{BASE}/led/set", "OFF")
    wait_for(lambda: led_state(server) == "off", 10, "the LED to turn off")
    wait_for(lambda: home.last(f"{BASE}/led/state") == "OFF", 10, "the LED's state OFF")

    home.publish(f"{BASE}/servo/set", "30")
    wait_for(lambda: home.last(f"{BASE}/servo/state") == "30", 10, "the servo's state")
    servo = wait_for(lambda: command_events(server, "servo"), 10, "the servo's command event")
    assert servo[0]["value"] == 30 and servo[0]["who"] == "homeassistant"
    assert metric(server, 'outpost_homeassistant_commands_total{outcome="ok"}', server.keys["read"]) >= 3


def test_bad_payloads_are_ignored_and_counted(server, home):
    key = server.keys["read"]
    series = 'outpost_homeassistant_dropped_total{reason="bad_payload"}'
    before = metric(server, series, key)
    ok_before = metric(server, 'outpost_homeassistant_commands_total{outcome="ok"}', key)
    led_events = len(command_events(server, "led"))
    state = led_state(server)
    home.publish(f"{BASE}/led/set", "BLINK")
    home.publish(f"{BASE}/servo/set", "120")
    home.publish(f"{BASE}/servo/set", "ninety")
    wait_for(lambda: metric(server, series, key) == before + 3, 10, "three bad payloads counted")
    unknown = metric(server, 'outpost_homeassistant_dropped_total{reason="unknown_entity"}', key)
    home.publish(f"{BASE}/cpu_temp_c/set", "1")  # a sensor takes no commands
    wait_for(lambda: metric(server, 'outpost_homeassistant_dropped_total{reason="unknown_entity"}', key) == unknown + 1,
             10, "the unknown entity counted")
    assert led_state(server) == state
    assert len(command_events(server, "led")) == led_events
    assert metric(server, 'outpost_homeassistant_commands_total{outcome="ok"}', key) == ok_before
    health = server.get("/api/health").json()["hub"]["homeassistant"]
    assert health["connected"] is True and health["dropped"] >= 4
    assert server.proc.poll() is None


def test_home_assistant_restarting_gets_the_configs_again(server, home):
    wait_for(lambda: len(home.configs()) >= 4, 10, "the retained configs")
    count = home.config_count()
    home.publish("homeassistant/status", "online")
    wait_for(lambda: home.config_count() >= count + 4, 10, "the configs published again")
    assert all(not retain for _, retain in list(home.configs().values()))  # live, not from the store


def test_the_broker_publishes_offline_when_outpost_is_killed(broker):
    device = "pi-ha-will"
    base = f"outpost/{device}"
    s = Server(args=ha_args(broker, device) + ["--set", "homeassistant.enabled=true"])
    _servers.append(s)
    watcher = paho.Client(client_id="will-watcher", clean_session=True)
    seen = []
    subscribed = threading.Event()
    watcher.on_connect = lambda c, u, f, rc: c.subscribe(f"{base}/availability", 1)
    watcher.on_subscribe = lambda c, u, mid, granted: subscribed.set()
    watcher.on_message = lambda c, u, msg: seen.append((msg.payload.decode(), bool(msg.retain)))
    watcher.connect(broker.host, broker.port)
    watcher.loop_start()
    try:
        assert subscribed.wait(10)
        s.start()
        wait_for(lambda: seen and seen[-1][0] == "online", 20, "online")
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(10)
        wait_for(lambda: seen[-1][0] == "offline", 20, "the will")
        # Retained: Home Assistant starting now learns the device is gone.
        late = HomeAssistant(broker, "late-home-assistant", base)
        try:
            wait_for(lambda: late.on(f"{base}/availability"), 10, "the retained availability")
            assert late.on(f"{base}/availability")[-1] == ("offline", True)
        finally:
            late.close()
    finally:
        watcher.loop_stop()
        watcher.disconnect()
        _servers.remove(s)
        if s.proc and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        s._out.close()
        s._err.close()
        s.tmp.cleanup()


def test_a_clean_stop_says_offline_too(broker, fresh_server):
    device = "pi-ha-stop"
    s = fresh_server(args=ha_args(broker, device) + ["--set", "homeassistant.enabled=true"])
    late = None
    home = HomeAssistant(broker, "stop-watcher", f"outpost/{device}")
    try:
        wait_for(lambda: home.on(f"outpost/{device}/availability"), 20, "online")
        assert s.stop() == 0
        wait_for(lambda: home.on(f"outpost/{device}/availability")[-1][0] == "offline", 10, "offline")
        late = HomeAssistant(broker, "late-stop-watcher", f"outpost/{device}")
        wait_for(lambda: late.on(f"outpost/{device}/availability"), 10, "the retained availability")
        assert late.on(f"outpost/{device}/availability")[-1] == ("offline", True)
    finally:
        home.close()
        if late:
            late.close()


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_") or k == "OUTPOST_BIN"}
    env.update(extra)
    return env


@pytest.mark.parametrize("sets, key", [
    (["homeassistant.enabled=true"], "homeassistant.url"),  # no broker at all
    (["homeassistant.url=http://127.0.0.1:1883"], "homeassistant.url"),
    (["homeassistant.node_id=my node"], "homeassistant.node_id"),
    (["homeassistant.discovery_prefix=home/+/assistant"], "homeassistant.discovery_prefix"),
    (["homeassistant.discovery_prefix="], "homeassistant.discovery_prefix"),
    (["homeassistant.base_topic=outpost/#"], "homeassistant.base_topic"),
    (["homeassistant.base_topic=outpost/"], "homeassistant.base_topic"),
    (["homeassistant.enabled=maybe"], "homeassistant.enabled"),
    (["homeassistant.colour=red"], "homeassistant.colour"),
])
def test_bad_configuration_fails_naming_the_key(sets, key, tmp_path):
    args = ["config", "check", "--data-dir", str(tmp_path)]
    for s in sets:
        args += ["--set", s]
    proc = run_cli(*args, env=clean_env(), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert key in proc.stderr, proc.stderr


def test_a_toml_section_is_accepted(tmp_path, broker):
    cfg = tmp_path / "outpost.toml"
    cfg.write_text(f'[homeassistant]\nenabled = true\nurl = "{broker.url}"\nnode_id = "greenhouse-1"\n'
                   'discovery_prefix = "ha"\nbase_topic = "farm/gh1"\n')
    proc = run_cli("config", "check", "--config", str(cfg), "--data-dir", str(tmp_path), env=clean_env(), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
