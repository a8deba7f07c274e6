"""``incident_id`` -> committed index on disk (``actors.committed_index``), over a real event log: an older
log is indexed once (the first record of an id wins, as the API's map had it), and the API's backend
answers repeats from disk without reading the log's history into memory; on a log not indexed yet it keeps
the map, and drops it once the replica's backfill marks the log complete."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from actors import committed_index
from actors.eventlog import EventLog
from actors.streams import COMMITTED_INCIDENTS
from supervisors.peer.node_backend import NodeBackend
from tests.unit.test_node_backend_outcomes import incident


def record(iid: str, index: int) -> dict[str, Any]:
    return {"index": index, "incident": incident(iid), "raft_index": index + 1}


def old_log(path: Path, ids: list[str]) -> EventLog:
    """A log as a replica wrote it before the index existed: committed records, no keys, no mark."""
    log = EventLog(path / "eventlog")
    log.append(COMMITTED_INCIDENTS, [record(iid, i) for i, iid in enumerate(ids, start=1)])
    return log


def test_backfill_indexes_an_older_log_once_first_record_wins(tmp_path: Path) -> None:
    ids = [f"i-{n}" for n in range(2500)] + ["i-7"]  # three backfill batches; i-7 again at index 2501
    log = old_log(tmp_path, ids)
    log.append(COMMITTED_INCIDENTS, [{"index": 2502, "incident": "not a dict"}])  # names no incident
    assert not committed_index.complete(log) and committed_index.lookup(log, "i-0") is None

    assert committed_index.backfill(log) == 2500
    assert committed_index.complete(log)
    assert [committed_index.lookup(log, f"i-{n}") for n in (0, 999, 1000, 2499)] == [1, 1000, 1001, 2500]
    assert committed_index.lookup(log, "i-7") == 8  # its first record, not the repeat at 2501
    assert committed_index.lookup(log, "never") is None
    assert committed_index.backfill(log) is None  # marked: not read again
    log.close()


def test_a_repeat_within_one_backfill_batch_keeps_its_first_index(tmp_path: Path) -> None:
    log = old_log(tmp_path, ["a", "b", "a"])
    assert committed_index.backfill(log) == 2
    assert (committed_index.lookup(log, "a"), committed_index.lookup(log, "b")) == (1, 2)
    log.close()


def test_a_backfill_resumes_where_a_restart_stopped_it(tmp_path: Path) -> None:
    log = old_log(tmp_path, [f"i-{n}" for n in range(2500)])
    assert committed_index.backfill_step(log) == (1000, False)
    log.close()  # the replica is killed here; its next instance opens the log again
    log = EventLog(tmp_path / "eventlog")
    assert log.get_value(committed_index.PROGRESS_KEY) == 1000
    assert committed_index.backfill_step(log) == (1000, False)  # records 1001-2000, not 1-1000 again
    assert committed_index.backfill_step(log) == (500, True)
    assert committed_index.complete(log) and committed_index.backfill_step(log) == (0, True)
    assert [committed_index.lookup(log, f"i-{n}") for n in (0, 1000, 2499)] == [1, 1001, 2500]
    log.close()


def test_the_replica_indexes_an_older_log_in_slices_between_its_other_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors.logs import get_logger
    from actors.raft import replica as replica_module

    log = old_log(tmp_path, [f"i-{n}" for n in range(3500)])
    r = replica_module.RaftReplicaActor.__new__(replica_module.RaftReplicaActor)
    r._event_log = log
    r.replica = "b"
    r.log = get_logger(actor="test")
    timers: list[str] = []
    r.schedule = lambda name, delay: timers.append(name)  # type: ignore[method-assign]
    monkeypatch.setattr(replica_module, "INDEX_SLICE_S", 0.0)  # one step per slice
    r._index_committed()  # on_start: one slice, then back to Raft
    assert timers == [replica_module._INDEX] and not committed_index.complete(log)
    slices = 1
    while not committed_index.complete(log):
        assert slices < 10, "the indexing never ends"
        timers.clear()
        r.on_timer(replica_module._INDEX)
        slices += 1
    assert slices == 4 and timers == [] and r.index_started is None
    assert committed_index.lookup(log, "i-3499") == 3500
    log.close()


def _duplicate_check(tmp_path: Path, between: Any = None) -> tuple[Any, ...]:
    """Propose i-1 again through a backend over the node's log; ``between(log)`` runs after its start."""

    async def scenario() -> tuple[Any, ...]:
        backend = NodeBackend(tmp_path, "gw-1", "root/incident-log", commit_timeout_s=1.0)
        await backend.start()
        try:
            assert backend.event_log is not None
            at_start = (backend.indexed, dict(backend.index_of), backend.seen)
            if between is not None:
                between(backend.event_log)
            outcome = await backend.propose(incident("i-1"))
            after = (backend.indexed, dict(backend.index_of))
            return at_start, outcome, after
        finally:
            await backend.close()

    return asyncio.run(scenario())


def test_the_api_answers_a_repeat_from_disk_without_reading_the_history(tmp_path: Path) -> None:
    log = old_log(tmp_path, ["i-0", "i-1", "i-2"])
    committed_index.backfill(log)
    log.close()
    (indexed, in_memory, _), outcome, _ = _duplicate_check(tmp_path)
    assert indexed and in_memory == {}, "the history was read into memory"
    assert (outcome.status, outcome.index) == ("duplicate", 2)


def test_on_an_older_log_the_api_keeps_a_map_until_the_replica_marks_it_indexed(tmp_path: Path) -> None:
    old_log(tmp_path, ["i-0", "i-1"]).close()
    (indexed, in_memory, _), outcome, (still, after) = _duplicate_check(tmp_path)
    assert not indexed and in_memory == {"i-0": 1, "i-1": 2}  # as before the index existed
    assert (outcome.status, outcome.index) == ("duplicate", 2) and not still

    # the replica finishes its backfill while the API runs: the next look at the stream drops the map
    (indexed, in_memory, _), outcome, (now, after) = _duplicate_check(tmp_path, committed_index.backfill)
    assert not indexed and in_memory, "the backfill ran before the API started: nothing was tested"
    assert now and after == {}, "the map was kept after the log was indexed"
    assert (outcome.status, outcome.index) == ("duplicate", 2)
