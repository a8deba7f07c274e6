"""Group commit in the inference actor: a backlog's batches go MAX_UNSAVED_BATCHES at a time into ONE
transaction, with the state after the last of them, whether the disk is slower than the model or not, and
still exactly once: the proposals equal the in-process pipeline's on the same readings, each once, every
commit's offset covers exactly the proposals committed so far, and all is durable when the handler
returns (real LMDB, real ONNX model, Thespian's in-process base)."""

from __future__ import annotations

import itertools
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


class RecordingInference(InferenceActor):
    def _commit(self, proposals: list[dict[str, Any]], state: dict[str, Any]) -> None:
        super()._commit(proposals, state)
        with _lock:
            COMMITS.append((int(state["offset"]), len(proposals)))


class SlowDiskInference(RecordingInference):
    def _commit(self, proposals: list[dict[str, Any]], state: dict[str, Any]) -> None:
        time.sleep(SLOW_COMMIT_S)
        super()._commit(proposals, state)


def _readings() -> list[dict[str, Any]]:
    # the default scenario's first leaks start within a few thousand steps
    return [reading_record(r, 0.0) for r in generate(default_scenario(3), n_steps=4000)]


def _run_backlog(
    asys: ActorSystem, tmp_path: Path, actor_class: type[InferenceActor]
) -> tuple[list[tuple[int, int]], int]:
    """The actor works a backlog of ``_readings()``; returns its commits and the last readings seq, after
    checking that it proposed exactly the in-process pipeline's incidents, each once, and that each
    transaction's offset covers exactly the proposals committed with it and before."""
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

    actor = asys.createActor(actor_class)
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

    with _lock:
        commits = list(COMMITS)
    offsets = [offset for offset, _ in commits]
    assert offsets == sorted(set(offsets)) and offsets[-1] == last_seq
    assert all(b - a <= 6 * MAX_UNSAVED_BATCHES for a, b in zip([0, *offsets], offsets, strict=False))
    proposed = [r.payload["incident_id"] for r in log.read(PROPOSED_INCIDENTS)]
    assert proposed == expected_ids  # each once, in stream order
    committed = 0
    for offset, n in commits:  # each transaction's offset covers exactly the proposals committed with it
        committed += n
        assert committed == through[offset], f"commit at offset {offset}: {committed} != {through[offset]}"
    return commits, last_seq


def test_batches_scored_during_a_slow_commit_are_committed_together_exactly_once(
    asys: ActorSystem, tmp_path: Path
) -> None:
    commits, last_seq = _run_backlog(asys, tmp_path, SlowDiskInference)
    batches = -(-last_seq // 6)
    # the fault really happened: commits were slower than scoring, and batches were still grouped
    assert len(commits) < batches, f"{len(commits)} commits for {batches} batches: nothing was grouped"


def test_a_backlog_on_a_fast_disk_is_committed_a_whole_group_at_a_time(
    asys: ActorSystem, tmp_path: Path
) -> None:
    """A commit per batch whenever the writer was idle cost the scoring ~12 % (its fsyncs' kernel work on
    the other core): a backlog is committed MAX_UNSAVED_BATCHES batches at a time, however fast the disk;
    only the last commit of a turn (every 0.1 s, and at the end) may hold fewer."""
    commits, _ = _run_backlog(asys, tmp_path, RecordingInference)
    offsets = [0, *(offset for offset, _ in commits)]
    sizes = [b - a for a, b in itertools.pairwise(offsets)]
    group = 6 * MAX_UNSAVED_BATCHES  # records: a batch is 6 records once the first one has been read
    whole = [size for size in sizes[1:] if size == group]  # the first batch reads one record
    assert len(whole) >= 0.75 * len(sizes), f"commits of {sizes} records: batches were not grouped"
