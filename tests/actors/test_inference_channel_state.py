"""The inference actor persists its window buffers and episode trackers per channel, and each commit writes
only the channels its batches changed; a restart assembles the same state, and a state saved whole by an
earlier version is taken over (real LMDB, real ONNX model, Thespian's in-process base)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from thespian.actors import ActorExitRequest, ActorSystem

from actors.eventlog import EventLog, open_event_log
from actors.messages import Configure
from actors.pipeline.inference import InferenceActor
from actors.pipeline.sensor import reading_record
from actors.streams import PROPOSED_INCIDENTS, READINGS
from models.detector import DEFAULT_MODEL_PATH, load_detector
from models.episodes import EpisodeConfig
from models.pipeline import DetectionPipeline, state_of_channels
from models.readings import ReadingColumns
from models.simulator import default_scenario, generate

KEY = "inference/root/inference"
CHANNELS_WRITTEN: list[int] = []  # how many channels each commit wrote, in order
_lock = threading.Lock()


class CountingInference(InferenceActor):
    # simpleSystemBase has no fd watches, so no doorbell wakes this actor here: only the safety-net read
    # does, and its 5 s default made these two tests take 21 s instead of 2
    safety_net_s = 0.05

    def _commit(self, proposals: list[dict[str, Any]], state: dict[str, Any]) -> None:
        super()._commit(proposals, state)
        with _lock:
            CHANNELS_WRITTEN.append(len(state["channels"]))


def _readings() -> list[dict[str, Any]]:
    return [reading_record(r, 0.0) for r in generate(default_scenario(3), n_steps=3000)]


def _append(log: EventLog, readings: list[dict[str, Any]], block: int = 60) -> None:
    with log.batch() as batch:
        for lo in range(0, len(readings), block):
            batch.append(READINGS, ReadingColumns.from_dicts(readings[lo : lo + block]).to_record())


def _start(asys: ActorSystem, data_dir: Path, incarnation: int) -> Any:
    actor = asys.createActor(CountingInference)
    asys.tell(actor, Configure("n1", "root", "inference", {}, str(data_dir), "json", incarnation))
    replies = [asys.listen(10), asys.listen(10)]
    assert [type(r).__name__ for r in replies] == ["ChildSpawned", "ChildStarted"], replies
    return actor


def _drain(asys: ActorSystem, log: EventLog) -> None:
    deadline = time.monotonic() + 60
    while (log.get_value(KEY) or {}).get("offset") != log.last_seq(READINGS):
        assert time.monotonic() < deadline, f"the actor stopped at {log.get_value(KEY)}"
        asys.listen(0.05)


def _saved_state(log: EventLog) -> dict[str, Any]:
    channels = log.values_with_prefix(f"{KEY}/channel/")
    return state_of_channels({value["channel"]: value for value in channels.values()})


def test_a_commit_writes_only_the_channels_it_changed_and_a_restart_gets_the_same_state(
    asys: ActorSystem, tmp_path: Path
) -> None:
    readings = _readings()
    channels = {(r["sensor"], r["pollutant"]) for r in readings}
    assert len(channels) > 3, "a scenario of one channel would prove nothing"
    first, rest = readings[:6000], readings[6000:]
    reference = DetectionPipeline(load_detector(DEFAULT_MODEL_PATH), EpisodeConfig())
    expected_ids = [s.incident_id for s, _ in reference.process(first)]

    log = open_event_log(tmp_path / "eventlog")
    _append(log, first)
    CHANNELS_WRITTEN.clear()
    actor = _start(asys, tmp_path, 1)
    _drain(asys, log)
    assert _saved_state(log) == reference.state()
    assert "buffers" not in log.get_value(KEY)  # the state is not written whole any more

    one = rest[0]  # a single reading: its commit writes its channel only
    _append(log, [one])
    expected_ids += [s.incident_id for s, _ in reference.process([one])]
    _drain(asys, log)
    with _lock:
        assert CHANNELS_WRITTEN[-1] == 1, CHANNELS_WRITTEN
    assert _saved_state(log) == reference.state()

    asys.tell(actor, ActorExitRequest())  # a fresh instance resumes from the per-channel values
    _start(asys, tmp_path, 2)
    _append(log, rest[1:])
    expected_ids += [s.incident_id for s, _ in reference.process(rest[1:])]
    _drain(asys, log)
    assert expected_ids, "the scenario has no incident: the test would prove nothing"
    assert [r.payload["incident_id"] for r in log.read(PROPOSED_INCIDENTS)] == expected_ids
    assert _saved_state(log) == reference.state()


def test_a_state_saved_whole_by_an_earlier_version_is_resumed_and_rewritten_per_channel(
    asys: ActorSystem, tmp_path: Path
) -> None:
    readings = _readings()
    first, rest = readings[:6000], readings[6000:]
    reference = DetectionPipeline(load_detector(DEFAULT_MODEL_PATH), EpisodeConfig())
    reference.process(first)
    log = open_event_log(tmp_path / "eventlog")
    _append(log, first)
    log.put_value(KEY, {"offset": log.last_seq(READINGS), **reference.state()})  # the old layout

    CHANNELS_WRITTEN.clear()
    _start(asys, tmp_path, 1)
    _append(log, rest[:1])  # one channel's reading: its first commit still writes every channel
    expected_ids = [s.incident_id for s, _ in reference.process(rest[:1])]
    _drain(asys, log)
    with _lock:
        assert CHANNELS_WRITTEN[0] == len(reference.buffers) > 1, CHANNELS_WRITTEN
    assert "buffers" not in log.get_value(KEY)
    assert _saved_state(log) == reference.state()
    _append(log, rest[1:])
    expected_ids += [s.incident_id for s, _ in reference.process(rest[1:])]
    _drain(asys, log)
    assert [r.payload["incident_id"] for r in log.read(PROPOSED_INCIDENTS)] == expected_ids
