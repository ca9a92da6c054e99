"""The broker helper the MQTT black-box tests stand on: it starts, serves, restarts on the same
port, stops, and fails loudly when mosquitto is missing."""
import queue
import socket

import paho.mqtt.client as mqtt
import pytest

from mosquitto_broker import MosquittoBroker


def connected_client(broker, client_id):
    """A paho client with its loop running, connected, and an inbox of (topic, payload)."""
    inbox = queue.Queue()
    ready = queue.Queue()
    c = mqtt.Client(client_id=client_id)
    c.on_connect = lambda client, userdata, flags, rc: ready.put(rc)
    c.on_message = lambda client, userdata, msg: inbox.put((msg.topic, msg.payload.decode()))
    c.connect(broker.host, broker.port, keepalive=10)
    c.loop_start()
    assert ready.get(timeout=10) == 0
    c.inbox = inbox
    return c


def close(client):
    client.disconnect()
    client.loop_stop()


def test_publish_and_subscribe_through_the_broker():
    with MosquittoBroker() as broker:
        assert broker.running
        sub = connected_client(broker, "sub")
        pub = connected_client(broker, "pub")
        try:
            sub.subscribe("kit/+/measurement/raw", qos=1)
            # the SUBACK is not awaited: publish until the subscriber sees one
            for _ in range(50):
                pub.publish("kit/k1/measurement/raw", '{"value": 1}', qos=1).wait_for_publish()
                try:
                    topic, payload = sub.inbox.get(timeout=0.1)
                    break
                except queue.Empty:
                    continue
            else:
                pytest.fail(f"no message came through:\n{broker.log()}")
            assert topic == "kit/k1/measurement/raw"
            assert payload == '{"value": 1}'
        finally:
            close(sub)
            close(pub)
        assert "running" in broker.log()


def test_restart_keeps_the_port_and_stop_frees_it():
    broker = MosquittoBroker()
    try:
        port = broker.port
        with pytest.raises(OSError):  # not started yet: nothing listens
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        broker.start()
        broker.restart()
        assert broker.port == port
        c = connected_client(broker, "after-restart")
        close(c)
        broker.stop()
        assert not broker.running
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        broker.close()


def test_a_missing_broker_fails_with_a_clear_message():
    broker = MosquittoBroker(binary="/nonexistent/mosquitto")
    try:
        with pytest.raises(RuntimeError, match="install-deps"):
            broker.start()
    finally:
        broker.close()


def test_a_taken_port_is_refused():
    with MosquittoBroker() as first:
        second = MosquittoBroker(port=first.port)
        try:
            with pytest.raises(RuntimeError, match="already in use"):
                second.start()
        finally:
            second.close()


def test_a_broker_that_exits_at_start_fails_with_its_log():
    broker = MosquittoBroker(extra_config="no_such_option true")
    try:
        with pytest.raises(RuntimeError, match="(?s)mosquitto exited.*no_such_option"):
            broker.start()
    finally:
        broker.close()
