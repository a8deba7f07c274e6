"""Group commit in the inference actor: when its disk is slower than its model, the batches scored while a
commit is in flight go into ONE later transaction, with the state after the last of them, and still
exactly once: the proposals equal the in-process pipeline's on the same readings, each once, every
commit's offset covers exactly the proposals committed so far, and all is durable when the handler
returns (real LMDB, real ONNX model, Thespian's in-process base)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from thespian.actors import ActorSystem

from actors.eventlog import open_event_log
from actors.messages import Configure
from actors.pipeline.inference import MAX_UNSAVED_BATCHES, InferenceActor
from actors.pipeline.sensor import reading_record
from actors.streams import PROPOSED_INCIDENTS, READINGS
from models.detector import DEFAULT_MODEL_PATH, load_detector
from models.episodes import EpisodeConfig
from models.pipeline import DetectionPipeline
from models.readings import ReadingColumns
from models.simulator import default_scenario, generate

BLOCK = 60  # readings per record, as the sensor actor writes them
BATCH_LIMIT = 6 * BLOCK  # readings per batch: 6 records
SLOW_COMMIT_S = 0.03  # a disk ~10x slower than scoring one batch

COMMITS: list[tuple[int, int]] = []  # (state offset, proposals) of each commit, in order
_lock = threading.Lock()


class SlowDiskInference(InferenceActor):
    def _commit(self, proposals: list[dict[str, Any]], state: dict[str, Any]) -> None:
        time.sleep(SLOW_COMMIT_S)
        super()._commit(proposals, state)
        with _lock:
            COMMITS.append((int(state["offset"]), len(proposals)))


def _readings() -> list[dict[str, Any]]:
    # the default scenario's first leaks start within a few thousand steps
    return [reading_record(r, 0.0) for r in generate(default_scenario(3), n_steps=4000)]


def test_batches_scored_during_a_slow_commit_are_committed_together_exactly_once(
    asys: ActorSystem, tmp_path: Path
) -> None:
    readings = _readings()
    log = open_event_log(tmp_path / "eventlog")  # the one handle of this process, shared with the actor
    with log.batch() as batch:
        for lo in range(0, len(readings), BLOCK):
            batch.append(READINGS, ReadingColumns.from_dicts(readings[lo : lo + BLOCK]).to_record())
    last_seq = log.last_seq(READINGS)
    expected = DetectionPipeline(load_detector(DEFAULT_MODEL_PATH), EpisodeConfig())
    expected_ids: list[str] = []
    through = [0]  # through[seq]: how many incidents the readings of records 1..seq propose
    for lo in range(0, len(readings), BLOCK):
        expected_ids += [s.incident_id for s, _ in expected.process(readings[lo : lo + BLOCK])]
        through.append(len(expected_ids))
    assert expected_ids, "the scenario has no incident: the test would prove nothing"
    COMMITS.clear()

    actor = asys.createActor(SlowDiskInference)
    asys.tell(
        actor,
        Configure("n1", "root", "inference", {"batch_limit": BATCH_LIMIT}, str(tmp_path), "json", 1),
    )
    replies = [asys.listen(10), asys.listen(10)]
    assert [type(r).__name__ for r in replies] == ["ChildSpawned", "ChildStarted"], replies
    deadline = time.monotonic() + 60
    key = "inference/root/inference"
    while (log.get_value(key) or {}).get("offset") != last_seq:
        assert time.monotonic() < deadline, f"the actor stopped at {log.get_value(key)}"
        asys.listen(0.05)

    batches = -(-last_seq // 6)
    with _lock:
        commits = list(COMMITS)
    # the fault really happened: commits were slower than scoring, so batches were grouped
    assert len(commits) < batches, f"{len(commits)} commits for {batches} batches: nothing was grouped"
    offsets = [offset for offset, _ in commits]
    assert offsets == sorted(set(offsets)) and offsets[-1] == last_seq
    assert all(b - a <= 6 * MAX_UNSAVED_BATCHES for a, b in zip([0, *offsets], offsets, strict=False))
    proposed = [r.payload["incident_id"] for r in log.read(PROPOSED_INCIDENTS)]
    assert proposed == expected_ids  # each once, in stream order
    committed = 0
    for offset, n in commits:  # each transaction's offset covers exactly the proposals committed with it
        committed += n
        assert committed == through[offset], f"commit at offset {offset}: {committed} != {through[offset]}"
