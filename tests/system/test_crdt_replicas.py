"""CRDT exposure replicas on a real node: counted once from readings, converged by gossip, through SIGKILL."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import pytest

from actors.crdt.codec import decode
from actors.crdt.exposure import Exposure
from actors.crdt.replica import MICRO
from actors.eventlog import EventLog
from actors.streams import READINGS
from models.readings import readings_in
from tests.system.nodes import LiveNode, supervisor, worker, write_topology

pytestmark = pytest.mark.system

REPLICAS = ("c1", "c2", "c3")
STEPS = 120


def _states(data_dir: Path) -> tuple[dict[str, dict[str, int]], dict[str, int], int]:
    """Each replica's saved exposure, the exact sum of the readings, and how many readings that sum is of.

    The sum and the count come from one read of ``readings``: computed from two reads, a block appended
    in between let a state converged on fewer readings pass for final."""
    log = EventLog(data_dir / "eventlog")
    try:
        states = {}
        for r in REPLICAS:
            saved = log.get_value(f"crdt/{r}")
            states[r] = decode(saved["state"], Exposure).value() if saved else {}
        readings = readings_in(rec.payload for rec in log.read(READINGS))
        expected: dict[str, int] = {}
        for reading in readings:
            v = reading["value"]
            if v is not None and math.isfinite(v) and v > 0:
                p = reading["pollutant"]
                expected[p] = expected.get(p, 0) + round(v * 10.0 * MICRO)
        return states, expected, len(readings)
    finally:
        log.close()


def test_replicas_converge_to_the_exact_sum_through_a_sigkill(tmp_path: Path) -> None:
    replicas = [
        worker(
            r,
            actor="actors.crdt.replica.CrdtReplicaActor",
            args={"peers": list(REPLICAS), "consume_readings": r == "c1", "gossip_interval": 0.05},
        )
        for r in REPLICAS
    ]
    tree = supervisor(
        "root",
        [
            worker(
                "sensors",
                actor="actors.pipeline.sensor.SimulatedSensorActor",
                args={"seed": 7, "speedup": 300, "max_steps": STEPS},
            ),
            supervisor("exposure", replicas, intensity=10),
        ],
    )
    node = LiveNode(write_topology(tmp_path, tree))
    try:
        node.wait_for("child_started", supervisor="root/exposure", child="c3")
        time.sleep(1.0)
        os.kill(node.pid_of("root/exposure", "c2"), signal.SIGKILL)
        node.wait_for("child_restarted", supervisor="root/exposure", child="c2")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states, expected, count = _states(tmp_path / "data")
            if count == STEPS * 5 * 4 and all(s == expected for s in states.values()):
                break
            time.sleep(0.3)
    finally:
        assert node.stop() == 0
    states, expected, count = _states(tmp_path / "data")
    assert count == STEPS * 5 * 4
    assert states["c1"] == expected, "the consuming replica counted each reading exactly once"
    assert states["c2"] == states["c3"] == expected, states
