"""The sensing pipeline on one real node: scripted leaks -> exactly one incident per reached sensor,
also when inference, the incident log or the whole node are SIGKILLed at random moments."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from actors.eventlog import EventLog
from actors.streams import COMMITTED_INCIDENTS, PROPOSED_INCIDENTS, READINGS
from models.readings import readings_in
from models.simulator import Leak, default_scenario, leak_exposures
from tests.system.nodes import LiveNode, supervisor, worker, write_topology

pytestmark = pytest.mark.system

STEPS = 540  # 90 simulated minutes: the CO leak (minute 20) and the first hard negatives, no NO2 leak
SENSORS = 5
POLLUTANTS = 4


def pipeline_tree(speedup: float = 1800) -> dict[str, Any]:
    return supervisor(
        "root",
        [
            worker(
                "sensors",
                actor="actors.pipeline.sensor.SimulatedSensorActor",
                args={"seed": 7, "speedup": speedup, "max_steps": STEPS},
            ),
            supervisor(
                "pipeline",
                [
                    worker("inference", actor="actors.pipeline.inference.InferenceActor"),
                    worker("incident-log", actor="actors.pipeline.incident_log.IncidentLogActor"),
                ],
                strategy="rest_for_one",
                intensity=20,
                period=10,
            ),
        ],
        intensity=20,
        period=10,
    )


def _drained(data_dir: Path) -> bool:
    log = EventLog(data_dir / "eventlog")
    try:
        total = STEPS * SENSORS * POLLUTANTS
        inference = log.get_value("inference/root/pipeline/inference") or {}
        incident_offset = log.get_value("offset/incident-log/root/pipeline/incident-log") or 0
        blocks = log.read(READINGS)
        return (
            bool(blocks)
            and len(readings_in(r.payload for r in blocks)) == total
            and inference.get("offset") == blocks[-1].seq
            and incident_offset == log.last_seq(PROPOSED_INCIDENTS)
        )
    finally:
        log.close()


def _wait_drained(data_dir: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _drained(data_dir):
            return
        time.sleep(0.2)
    raise AssertionError("the pipeline did not process every reading in time")


def _committed(data_dir: Path) -> list[dict[str, Any]]:
    log = EventLog(data_dir / "eventlog")
    try:
        return [r.payload for r in log.read(COMMITTED_INCIDENTS)]
    finally:
        log.close()


def _timeline(data_dir: Path) -> list[tuple[str, str, float]]:
    """Incidents relative to the run's simulated start (ids embed the wall-clock start of each run)."""
    log = EventLog(data_dir / "eventlog")
    try:
        start = log.get_value("sensor/root/sensors")["start_ts"]
    finally:
        log.close()
    return [
        (c["incident"]["sensor"], c["incident"]["type"], round(c["incident"]["timestamp"] - start, 3))
        for c in _committed(data_dir)
    ]


def _expected_sensors() -> set[tuple[str, str]]:
    scenario = default_scenario(7)
    horizon = STEPS * scenario.interval_s
    return {
        (e.sensor, f"{e.pollutant}_leak")
        for e in leak_exposures(scenario)
        if e.arrival_ts < horizon - 600
        and any(isinstance(ev, Leak) and ev.leak_id == e.leak_id for ev in scenario.events)
    }


def _check_exactly_once(committed: list[dict[str, Any]]) -> None:
    ids = [c["incident"]["incident_id"] for c in committed]
    assert len(ids) == len(set(ids)), f"duplicate incidents: {ids}"
    assert [c["index"] for c in committed] == list(range(1, len(committed) + 1))
    got = {(c["incident"]["sensor"], c["incident"]["type"]) for c in committed}
    assert got == _expected_sensors(), f"incidents {sorted(got)} != expected {sorted(_expected_sensors())}"


def test_scripted_leak_gives_one_incident_per_reached_sensor(tmp_path: Path) -> None:
    node = LiveNode(write_topology(tmp_path, pipeline_tree()))
    try:
        _wait_drained(tmp_path / "data")
    finally:
        assert node.stop() == 0
    committed = _committed(tmp_path / "data")
    _check_exactly_once(committed)
    assert node.named("incident_committed")
    assert node.named("detection")


def test_sigkill_of_inference_incident_log_and_whole_node_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    rng = random.Random(1123)
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    # the reference needs no faults to land in it, so it runs at full speed: readings are a function of
    # seed, sensor and step, not of the speedup, and _timeline is relative to the simulated start
    clean = LiveNode(write_topology(clean_dir, pipeline_tree()))
    try:
        _wait_drained(clean_dir / "data", timeout=90)
    finally:
        clean.stop()
    reference = _timeline(clean_dir / "data")
    assert reference, "the clean run committed no incident: the comparison would prove nothing"

    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    topo = write_topology(crash_dir, pipeline_tree(speedup=600))
    node = LiveNode(topo)
    node.session()
    kills = 0
    for victim in ("inference", "incident-log", "inference", "incident-log", "inference"):
        time.sleep(rng.uniform(0.3, 1.2))
        node.wait_for("child_started", supervisor="root/pipeline", child="incident-log")
        os.kill(node.pid_of("root/pipeline", victim), signal.SIGKILL)
        kills += 1
        node.wait_for(
            "child_lost",
            supervisor="root/pipeline",
            child=victim,
            count=len(node.named("child_lost", child=victim)) or 1,
        )
    time.sleep(rng.uniform(0.2, 0.8))
    node.kill_whole_node()
    node = LiveNode(topo)  # reboot on the same data_dir
    try:
        _wait_drained(crash_dir / "data", timeout=90)
    finally:
        assert node.stop() == 0
    committed = _committed(crash_dir / "data")
    _check_exactly_once(committed)
    assert _timeline(crash_dir / "data") == reference
    assert kills == 5
