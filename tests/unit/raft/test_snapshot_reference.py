"""A compaction keeps its snapshot as a reference to the replica's own event log (O(1) however long the
log); the incidents are read from LMDB only when a snapshot leaves for a follower, which receives exactly
the state machine up to the snapshot's index, as before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from actors.eventlog import EventLog
from actors.raft.codec import decode_message
from actors.raft.durable_storage import DurableRaftStorage
from actors.raft.entries import open_snapshot
from actors.raft.replica import RaftReplicaActor, _is_reference
from actors.raft.types import ConfState, Message, Snapshot
from tests.harness.cluster import incident


def _replica(log: EventLog) -> RaftReplicaActor:
    replica = RaftReplicaActor.__new__(RaftReplicaActor)  # only the snapshot state, no actor
    replica._event_log = log
    replica.prefix = "raft/gw-1/"
    replica.storage = DurableRaftStorage(log, "gw-1")
    return replica


def _apply(replica: RaftReplicaActor, log: EventLog, lo: int, hi: int) -> None:
    """What ``_stage_apply`` records for incidents at raft indexes lo..hi (a dispatch mark included)."""
    with log.batch() as batch:
        for index in range(lo, hi + 1):
            inc = incident(f"i-{index}")
            if index % 3 == 0:  # the dispatcher's progress (actors/dispatch/actor.py), an incident in form
                inc = {**inc, "type": "dispatch_mark", "payload": {"through": index - 1}}
            batch.put_value(f"{replica.prefix}incident/{index:020d}", inc)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[EventLog]:
    log = EventLog(tmp_path / "eventlog")
    yield log
    log.close()


def _snapshot_message(data: bytes, index: int) -> Message:
    snap = Snapshot(index=index, term=1, conf_state=ConfState(("gw-1", "gw-2")), data=data)
    return Message(type="snapshot", sender="gw-1", to="gw-2", term=1, snapshot=snap)


def test_a_compaction_keeps_a_constant_size_reference_whatever_the_history(log: EventLog) -> None:
    replica = _replica(log)
    _apply(replica, log, 1, 2000)
    data = replica._snapshot_data(2000)
    assert _is_reference(data) and len(data) < 64, data
    assert msgspec.msgpack.decode(data) == {"applied_index": 2000, "incidents_in": "event_log"}
    assert open_snapshot(data)[0] == []  # a follower could do nothing with it: it must never leave


def test_the_state_machine_read_for_a_snapshot_stops_at_its_index(log: EventLog) -> None:
    replica = _replica(log)
    _apply(replica, log, 1, 9)  # index 9 is applied after the snapshot point (8)
    incidents = list(replica._state_machine(8))
    assert [index for index, _ in incidents] == list(range(1, 9))
    assert incidents[0][1]["incident_id"] == "i-1" and incidents[2][1]["type"] == "dispatch_mark"


def test_messages_without_a_reference_leave_unchanged(log: EventLog) -> None:
    replica = _replica(log)
    sent: list[tuple[str, bytes]] = []
    replica._send_raft = lambda to, data: sent.append((to, data))  # type: ignore[method-assign]
    installed = msgspec.msgpack.encode({"applied_index": 3, "incidents": [[1, incident("from-leader")]]})
    full = _snapshot_message(installed, 3)  # installed inline from an older leader: it holds its incidents
    heartbeat = Message(type="heartbeat", sender="gw-1", to="gw-2", term=1)
    replica._send_message(full)
    replica._send_message(heartbeat)
    assert [decode_message(data) for _, data in sent] == [full, heartbeat]


def test_a_follower_refuses_a_snapshot_that_is_only_a_reference(log: EventLog) -> None:
    """A leader must never send one; if one arrives anyway, installing it would skip entries."""
    from structlog import get_logger

    replica = _replica(log)
    replica.replica = "gw-2"
    replica.log = get_logger(actor="test")
    stepped: list[Message] = []

    class _Core:
        def step(self, m: Message) -> None:
            stepped.append(m)

    replica.core = _Core()  # type: ignore[assignment]
    reference = _snapshot_message(replica._snapshot_data(8), 8)
    replica._step(reference)
    assert stepped == []
    _apply(replica, log, 1, 8)
    incidents = [[index, inc] for index, inc in replica._state_machine(8)]
    real = _snapshot_message(msgspec.msgpack.encode({"applied_index": 8, "incidents": incidents}), 8)
    replica._step(real)  # inline, as an older leader sent it: installed
    assert stepped == [real]
