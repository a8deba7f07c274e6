"""A snapshot as a file, through the replica's production code (real LMDB, a real RaftCore; the transport is
a list, as in test_must_sync.py). The leader writes its state machine up to the snapshot's index to a
file and hands the gateway only a message naming it; a follower installs a received file one durable
transaction per piece, publishes each incident once (skipping what it had applied, logging what is not an
incident), acknowledges the snapshot's index, keeps a constant-size reference as its own snapshot, unlinks
the file, and can send the same state machine on from its event log, to another node or to a replica of
its own node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors import committed_index
from actors.eventlog import EventLog
from actors.raft.codec import decode_message, decode_snapshot
from actors.raft.replica import _is_reference
from actors.raft.snapshot_file import (
    PIECE_ITEMS,
    SnapshotSpool,
    SpoolReference,
    encode_reference,
    read_pieces,
    spool_reference,
    write_snapshot,
)
from actors.raft.types import ConfState, Message, Snapshot
from actors.streams import COMMITTED_INCIDENTS
from tests.harness.cluster import incident
from tests.unit.raft.test_must_sync import _follower, _Recorder

N = 2 * PIECE_ITEMS + 5  # three pieces


def test_a_follower_installs_a_snapshot_file_piece_by_piece_and_keeps_only_a_reference(
    tmp_path: Path,
) -> None:
    log = EventLog(tmp_path / "eventlog")
    rec = _Recorder(log)
    log.batch = rec.batch  # type: ignore[method-assign]
    follower, sent = _follower(log, Ed25519PrivateKey.generate())
    follower.spool = SnapshotSpool(tmp_path, "b")
    follower.remote = {"a"}  # the leader is on another node: its file came through the gateway
    log.put_value("raft/b/applied/i-2", 2)  # applied before (an entry it had): not published again
    items: list[Any] = [(i, incident(f"i-{i}")) for i in range(1, N + 1)]
    items[9] = (10, {"not": "an incident"})  # refused as the original inline install refuses it
    size, count = write_snapshot(follower.spool.dir / "in-a-1-1.snap", iter(items))
    ref = SpoolReference(applied_index=N, spool="in-a-1-1.snap", bytes=size, count=count)
    snap = Snapshot(index=N, term=2, conf_state=ConfState(("a", "b")), data=encode_reference(ref))

    follower._step(Message(type="snapshot", sender="a", to="b", term=2, snapshot=snap))
    assert not (follower.spool.dir / "in-a-1-1.snap").exists(), "taken but not unlinked"
    follower._drain()

    published = [r.payload for r in log.read(COMMITTED_INCIDENTS)]
    expected = [i for i in range(1, N + 1) if i not in (2, 10)]
    assert [p["raft_index"] for p in published] == expected
    assert [p["index"] for p in published] == list(range(1, len(expected) + 1))
    # a snapshot's incidents are indexed on disk too, each with its published index
    assert all(committed_index.lookup(log, p["incident"]["incident_id"]) == p["index"] for p in published)
    assert committed_index.lookup(log, "i-2") is None  # applied before, never published: not indexed
    assert follower.core.applied_index == N and follower.core.commit_index == N
    assert [(m.type, m.to, m.index, m.reject) for m in sent] == [("append_resp", "a", N, False)]
    # one durable transaction per piece, then the Ready that records the snapshot (after every piece)
    pieces = [i for i, (durable, keys) in enumerate(rec.commits) if COMMITTED_INCIDENTS in keys and durable]
    stored = [i for i, (_, keys) in enumerate(rec.commits) if "raft/b/snap" in keys]
    assert len(pieces) == 3 and len(stored) == 1 and max(pieces) < stored[0], rec.commits
    kept = decode_snapshot(log.get_value("raft/b/snap"))
    assert kept.index == N and _is_reference(kept.data), "the installed state machine was stored again whole"
    assert follower.spool.inbox == {}, "the file was left open"

    # this replica, leading later, sends the same state machine on, as a file of its own
    to_gateway: list[tuple[str, bytes, str]] = []
    follower._to_gateway = lambda to, data, kind: to_gateway.append((to, data, kind))  # type: ignore[method-assign]
    follower._send_message(Message(type="snapshot", sender="b", to="a", term=3, snapshot=kept))
    assert to_gateway == [] and "a" in follower.snapshot_waiting, "the replica waited for its file"
    follower.spool.wait_written()
    follower._drain()  # its next turn: the file is there, the message leaves
    assert follower.snapshot_waiting == {}
    ((to, data, kind),) = to_gateway
    message = decode_message(data)
    assert (to, kind, message.type) == ("a", "snapshot", "snapshot") and message.snapshot is not None
    out = spool_reference(message.snapshot.data)
    assert out is not None and out.applied_index == N and out.count == len(expected)
    with open(follower.spool.dir / out.spool, "rb") as stream:
        again = [(item[0], item[1]["incident_id"]) for piece in read_pieces(stream) for item in piece]
    assert again == [(i, f"i-{i}") for i in expected]

    # to a replica of this node: the same file, named in a message through Thespian, read where it lies
    sent.clear()
    follower._send_message(Message(type="snapshot", sender="b", to="c", term=3, snapshot=kept))
    (local,) = [m for m in sent if m.to == "c"]
    assert local.snapshot is not None and spool_reference(local.snapshot.data) == out
    assert SnapshotSpool(tmp_path, "c").take(out, "b", from_this_node=True) is None
    log.close()


def test_a_snapshot_file_the_spool_does_not_hold_is_refused_before_raft_sees_it(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "eventlog")
    follower, _ = _follower(log, Ed25519PrivateKey.generate())
    follower.spool = SnapshotSpool(tmp_path, "b")
    stepped: list[Message] = []
    follower.core.step = stepped.append  # type: ignore[method-assign]
    (follower.spool.dir / "out-c-5.snap").write_bytes(b"x" * 10)  # another replica's: not the sender's
    cases: list[tuple[set[str], str]] = [
        ({"a"}, "in-a-9-9.snap"),
        ({"a"}, "../eventlog/data.mdb"),
        ({"a"}, "out-b-5.snap"),
        (set(), "out-c-5.snap"),  # from a replica of this node: only its own file for that index
        (set(), "out-a-5.snap"),  # the sender's name, but not there
    ]
    for remote, name in cases:
        follower.remote = remote
        ref = SpoolReference(applied_index=5, spool=name, bytes=10, count=1)
        snap = Snapshot(index=5, term=2, conf_state=ConfState(("a", "b")), data=encode_reference(ref))
        follower._step(Message(type="snapshot", sender="a", to="b", term=2, snapshot=snap))
    assert stepped == [] and log.get_value("raft/b/applied_count") is None
    log.close()
