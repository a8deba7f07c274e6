"""The MQTT bridge against a real mosquitto on 127.0.0.1: published readings -> the event log; malformed
payloads -> dead letters, and the bridge keeps going; QoS 1 + persistent session across a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from actors.eventlog import open_event_log
from actors.pipeline.mqtt_bridge import DEAD_LETTERS, MalformedReading, parse_reading
from actors.streams import READINGS
from models.readings import readings_in
from tests.system.nodes import LiveNode, supervisor, worker, write_topology

BRIDGE = "actors.pipeline.mqtt_bridge.MqttBridgeActor"


def stored_readings(log: Any) -> list[dict[str, Any]]:
    """Every reading the bridge stored, in order (a record of ``readings`` is a block of a drain's)."""
    return readings_in(r.payload for r in log.read(READINGS))


def reading(i: int, sensor: str = "s1") -> bytes:
    return json.dumps(
        {
            "sensor": sensor,
            "pollutant": "NO2",
            "value": float(i),
            "unit": "ppb",
            "timestamp": 1_700_000_000 + i,
        }
    ).encode()


MALFORMED = [
    (b"not json at all", "not JSON"),
    (b'{"sensor": "s1", "pollutant": "NO2", "unit": "ppb", "timestamp": 1}', "missing field 'value'"),
    (b'{"sensor": "s1", "pollutant": "NO2", "value": NaN, "unit": "ppb", "ts": 1}', "value must be finite"),
    (b"[1, 2, 3]", "not a JSON object"),
]


def publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-publisher")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def publish(client: mqtt.Client, topic: str, payload: bytes) -> None:
    client.publish(topic, payload, qos=1).wait_for_publish(5)


@pytest.mark.system
@pytest.mark.mqtt
def test_bridge_stores_readings_dead_letters_malformed_ones_and_survives_sigkill(
    tmp_path: Path, broker: int
) -> None:
    args = {"host": "127.0.0.1", "port": broker, "topic": "sensor/+/raw", "reconnect_max": 2}
    topo = write_topology(tmp_path, supervisor("root", [worker("bridge", BRIDGE, args=args)], intensity=5))
    node = LiveNode(topo, duration=30)
    node.wait_until(lambda: node.named("mqtt_subscribed"), 15, "the bridge's subscription")
    log = open_event_log(tmp_path / "data" / "eventlog")
    pub = publisher(broker)
    try:
        for i in range(20):
            publish(pub, f"sensor/s{i % 3}/raw", reading(i, sensor=f"s{i % 3}"))
            if i % 5 == 0:
                payload, _ = MALFORMED[i // 5]
                publish(pub, "sensor/s9/raw", payload)
        node.wait_until(lambda: len(stored_readings(log)) >= 20, 10, "20 readings in the event log")
        time.sleep(0.5)  # the PUBACKs follow the commit within a millisecond: do not kill in between

        # QoS 1 + persistent session: what is published while the bridge is dead arrives after its restart
        started = node.named("child_started", child="bridge")
        os.kill(started[0]["pid"], signal.SIGKILL)
        for i in range(20, 30):
            publish(pub, "sensor/s1/raw", reading(i))
        node.wait_until(lambda: node.named("child_restarted", child="bridge"), 10, "the bridge's restart")
        node.wait_until(lambda: len(stored_readings(log)) >= 30, 15, "30 readings in the event log")
    finally:
        pub.loop_stop()
        pub.disconnect()
    run = node.finish(stop=True)
    assert run.code == 0, run.stderr[-3000:]

    readings = stored_readings(log)
    assert {r["value"] for r in readings} == {float(i) for i in range(30)}
    # the PUBACKs of the first 20 went out right after their commit, so the broker redelivered none
    assert len(readings) == 30
    first = next(r for r in readings if r["value"] == 4.0)
    assert first["sensor"] == "s1" and first["pollutant"] == "NO2" and first["unit"] == "ppb"
    assert first["source"] == "mqtt" and first["ts"] == 1_700_000_004

    dead = [r.payload for r in log.read(DEAD_LETTERS)]
    assert [d["raw"] for d in dead] == [p.decode() for p, _ in MALFORMED]
    assert all(why in d["reason"] for d, (_, why) in zip(dead, MALFORMED, strict=True))
    assert all(d["topic"] == "sensor/s9/raw" for d in dead)
    rejected = run.named("reading_rejected")
    assert [e["rejected_total"] for e in rejected] == [1, 2, 3, 4]
    assert run.named("child_lost", child="bridge") and run.leftover_processes() == []


HOSTILE = [
    # the reported outages: math.isfinite raised OverflowError, json raised RecursionError, before the ack
    (b'{"pollutant": "NO2", "unit": "ppb", "ts": 1, "value": ' + b"9" * 400 + b"}", "finite"),
    (b"[" * 100_000 + b"]" * 100_000, "larger than"),  # rejected on its size, before parsing
    (b"[" * 5_000 + b"]" * 5_000, "nested too deeply"),  # below the size bound: json really recurses
    (b'{"pollutant": "\\ud800", "unit": "ppb", "ts": 1, "value": 1}', "not valid UTF-8"),
]


@pytest.mark.system
@pytest.mark.mqtt
def test_hostile_payloads_are_dead_lettered_and_acked_and_the_bridge_never_crashes(
    tmp_path: Path, broker: int
) -> None:
    args = {"host": "127.0.0.1", "port": broker, "topic": "sensor/+/raw", "reconnect_max": 2}
    topo = write_topology(tmp_path, supervisor("root", [worker("bridge", BRIDGE, args=args)], intensity=5))
    node = LiveNode(topo, duration=30)
    node.wait_until(lambda: node.named("mqtt_subscribed"), 15, "the bridge's subscription")
    log = open_event_log(tmp_path / "data" / "eventlog")
    pub = publisher(broker)
    try:
        for payload, _ in HOSTILE:
            publish(pub, "sensor/s9/raw", payload)
        publish(pub, "sensor/s1/raw", reading(7))  # a valid reading after them
        node.wait_until(lambda: len(stored_readings(log)) >= 1, 15, "the valid reading in the event log")
        node.wait_until(lambda: len(node.named("reading_rejected")) >= len(HOSTILE), 5, "the rejections")
    finally:
        pub.loop_stop()
        pub.disconnect()
    run = node.finish(stop=True)
    assert run.code == 0, run.stderr[-3000:]

    # each hostile payload really reached the bridge: it is in the dead letters, with its reason
    dead = [r.payload for r in log.read(DEAD_LETTERS)]
    assert len(dead) == len(HOSTILE)
    for letter, (payload, why) in zip(dead, HOSTILE, strict=True):
        assert why in letter["reason"], letter["reason"]
        assert letter["topic"] == "sensor/s9/raw"
        assert letter["raw"] == payload[:4096].decode("utf-8", errors="replace")
        assert letter["truncated"] == (len(payload) > 4096)
    rejected = run.named("reading_rejected")
    assert [e["rejected_total"] for e in rejected] == [1, 2, 3, 4]
    assert all(e["topic"] == "sensor/s9/raw" and e["reason"] for e in rejected)
    # ... and none of them crashed it: one start, no crash, no restart, and the reading after them is stored
    assert run.named("child_started", child="bridge") and not run.named("child_crashed", child="bridge")
    assert not run.named("child_restarted", child="bridge") and not run.named("child_lost", child="bridge")
    assert [r["value"] for r in stored_readings(log)] == [7.0]
    assert run.leftover_processes() == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        *MALFORMED,
        (b'{"pollutant": "NO2", "value": true, "unit": "ppb", "ts": 1}', "value must be a number"),
        (b'{"pollutant": "NO2", "value": 1, "unit": "", "ts": 1}', "unit must be a non-empty string"),
        (b'{"pollutant": "NO2", "value": 1, "unit": "ppb", "ts": "yesterday"}', "not ISO 8601"),
        (b'{"pollutant": "NO2", "value": 1, "unit": "ppb", "ts": 1, "location": [1]}', "location must be"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_parse_reading_rejects_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedReading, match=reason):
        parse_reading("sensor/s1/raw", payload)


def test_parse_reading_takes_the_sensor_from_the_topic_and_iso_timestamps() -> None:
    doc = b'{"pollutant": "O3", "value": 2, "unit": "ppb", "timestamp": "2026-01-01T00:00:00Z", "location": [1, 2]}'
    got = parse_reading("sensor/roof-7/raw", doc)
    assert got == {
        "sensor": "roof-7",
        "pollutant": "O3",
        "ts": 1767225600.0,
        "value": 2.0,
        "unit": "ppb",
        "location": [1.0, 2.0],
        "source": "mqtt",
    }


@pytest.mark.mqtt
def test_mqtt_sink_publishes_incidents_to_their_type_topic(broker: int) -> None:
    from actors.dispatch.sinks import Delivery, MqttSink

    got: list[tuple[str, dict]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber")
    sub.on_message = lambda _c, _u, msg: got.append((msg.topic, json.loads(msg.payload)))
    sub.connect("127.0.0.1", broker)
    sub.subscribe("incident/#", qos=1)
    sub.loop_start()
    sink = MqttSink("mqtt", "127.0.0.1", broker, client_id="test-sink", timeout=5)
    try:
        time.sleep(0.3)  # let the subscription and the sink's connection settle
        incident = {"incident_id": "inc-1", "type": "NO2_leak"}
        sink.deliver(Delivery(1, incident))
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got == [("incident/NO2_leak", {"index": 1, "incident": incident})]
    finally:
        sink.close()
        sub.loop_stop()
        sub.disconnect()
