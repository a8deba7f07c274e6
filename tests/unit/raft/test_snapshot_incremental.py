"""The replica builds a snapshot from the previous one plus what it applied since: the same bytes as
reading every applied incident from LMDB (which it still does when it does not know what was applied)."""

from __future__ import annotations

from pathlib import Path

from actors.eventlog import EventLog
from actors.raft.durable_storage import DurableRaftStorage
from actors.raft.replica import RaftReplicaActor
from actors.raft.types import ConfState, Snapshot
from tests.harness.cluster import incident


def _replica(log: EventLog) -> RaftReplicaActor:
    replica = RaftReplicaActor.__new__(RaftReplicaActor)  # only the snapshot-building state, no actor
    replica._event_log = log
    replica.prefix = "raft/gw-1/"
    replica.storage = DurableRaftStorage(log, "gw-1")
    replica.snap_tail = None
    return replica


def _apply(replica: RaftReplicaActor, log: EventLog, lo: int, hi: int) -> None:
    """What ``_stage_apply`` records for incidents at raft indexes lo..hi (a dispatch mark included)."""
    with log.batch() as batch:
        for index in range(lo, hi + 1):
            inc = (
                incident(f"i-{index}") if index % 3 else {"type": "dispatch_mark", "payload": {"through": 1}}
            )
            batch.put_value(f"{replica.prefix}incident/{index:020d}", inc)
            if replica.snap_tail is not None:
                replica.snap_tail.append([index, inc])


def test_an_incremental_snapshot_equals_one_read_from_lmdb(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "eventlog")
    try:
        replica = _replica(log)
        _apply(replica, log, 1, 5)
        first = replica._snapshot_data(5)  # nothing known about what was applied: read from LMDB
        replica.storage.apply_snapshot(Snapshot(5, 1, ConfState(("gw-1",)), first))  # the base
        replica.snap_tail = []  # as _maybe_compact does after a compaction
        _apply(replica, log, 6, 9)
        incremental = replica._snapshot_data(8)  # index 9 is applied later than the snapshot point
        replica.snap_tail = None
        assert incremental == replica._snapshot_data(8)
        assert b"i-9" not in incremental and b"i-8" in incremental and b"i-1" in incremental
    finally:
        log.close()
