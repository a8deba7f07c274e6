"""End to end with a real mosquitto: readings published over MQTT -> bridge -> inference -> incident log
-> file dispatcher. A leak published by one sensor becomes exactly one incident in the sink."""

from __future__ import annotations

import json
import math
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from models.simulator import SimulatedSensor, default_scenario
from tests.system.nodes import LiveNode, supervisor, worker, write_topology

pytestmark = [pytest.mark.system, pytest.mark.mqtt]

STEPS = 300  # 50 simulated minutes: the CO leak reaches S1 at minute ~20


def test_published_leak_readings_become_one_incident_in_the_file_sink(tmp_path: Path, broker: int) -> None:
    tree = supervisor(
        "root",
        [
            worker(
                "bridge",
                actor="actors.pipeline.mqtt_bridge.MqttBridgeActor",
                args={"host": "127.0.0.1", "port": broker},
            ),
            worker("inference", actor="actors.pipeline.inference.InferenceActor"),
            worker("incident-log", actor="actors.raft.replica.RaftReplicaActor", args={"publish": True}),
            worker(
                "dispatch",
                actor="actors.dispatch.actor.DispatcherActor",
                args={"sinks": [{"kind": "file", "path": "incidents.jsonl"}]},
            ),
        ],
    )
    node = LiveNode(write_topology(tmp_path, tree))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-publisher")
    try:
        node.wait_until(lambda: node.named("mqtt_subscribed"), 20, "the bridge's subscription")
        client.connect("127.0.0.1", broker)
        client.loop_start()
        sensor = SimulatedSensor(default_scenario(7), "S1", start_ts=1_800_000_000.0)
        infos = []
        for r in sensor.read(STEPS):
            if r.pollutant != "CO" or not math.isfinite(r.value):
                continue
            payload = {
                "sensor": r.sensor,
                "pollutant": r.pollutant,
                "value": r.value,
                "unit": r.unit,
                "timestamp": r.ts,
            }
            infos.append(client.publish("sensor/S1/raw", json.dumps(payload), qos=1))
        client.publish("sensor/S1/raw", b"{ not json", qos=1).wait_for_publish(5)
        for info in infos:
            info.wait_for_publish(10)
        sink = tmp_path / "data" / "incidents.jsonl"
        node.wait_until(
            lambda: sink.exists() and sink.read_text().strip(), 60, "an incident in the file sink"
        )
        node.wait_until(lambda: node.named("reading_rejected"), 10, "the malformed payload rejected")
    finally:
        client.loop_stop()
        client.disconnect()
        run = node.finish(stop=True)
    assert run.code == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in (tmp_path / "data" / "incidents.jsonl").read_text().splitlines()]
    assert [(x["index"], x["incident"]["sensor"], x["incident"]["type"]) for x in lines] == [
        (1, "S1", "CO_leak")
    ]
    assert lines[0]["incident"]["payload"]["model_version"] != "heuristic-1"
    assert run.named("incident_dispatched")
