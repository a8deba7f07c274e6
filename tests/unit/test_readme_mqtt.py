"""The README's MQTT section is true: its example payloads are readings the bridge accepts, and the
shipped ``config/mqtt.yaml`` has no sink that fails for want of a receiver nobody started."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from actors.pipeline.mqtt_bridge import parse_reading
from supervisors.topology import load_topology

REPO = Path(__file__).resolve().parents[2]


def _section() -> str:
    text = (REPO / "README.md").read_text()
    return text.split("## MQTT in and out", 1)[1].split("\n## ", 1)[0]


def test_the_readme_payloads_are_accepted_as_printed() -> None:
    section = _section()
    block = re.search(r"```json\n(.*?)\n```", section, re.DOTALL)
    assert block is not None
    reading = parse_reading("sensor/S1/raw", block.group(1).encode())
    assert reading["sensor"] == "S1" and reading["value"] == 4.2 and reading["location"] == [48.85, 2.35]
    pub = re.search(r"`(mosquitto_pub [^`]+)`", section)
    assert pub is not None
    argv = shlex.split(pub.group(1))
    topic, payload = argv[argv.index("-t") + 1], argv[argv.index("-m") + 1]
    reading = parse_reading(topic, payload.encode())
    assert reading["sensor"] == "S1"  # from the topic's second level, as the table says
    assert json.loads(payload)["ts"] == reading["ts"]


def test_the_mqtt_example_has_no_sink_without_a_receiver() -> None:
    node = load_topology(REPO / "config" / "mqtt.yaml").node(None)
    dispatch = next(c for c in node.tree.children if c.id == "dispatch")
    kinds = [s.get("kind", "file") for s in dispatch.args["sinks"]]  # type: ignore[union-attr]
    assert "webhook" not in kinds and kinds == ["file", "mqtt"]
