"""Snapshot files (``actors/raft/snapshot_file.py``): what is written is read back piece by piece; a file cut
short or overlong is refused before anything is installed; a replica takes only a file its own gateway put
in its spool directory, under a plain ``in-`` name, of the size its message states, and unlinks it at once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from actors.raft.snapshot_file import (
    MAGIC,
    PIECE_ITEMS,
    SnapshotFileError,
    SnapshotSpool,
    SpoolReference,
    check_shape,
    encode_reference,
    read_pieces,
    spool_reference,
    write_snapshot,
)
from tests.harness.cluster import incident


def items_of(n: int) -> list[tuple[int, dict[str, Any]]]:
    return [(i, incident(f"i-{i}")) for i in range(1, n + 1)]


def test_a_snapshot_file_reads_back_in_pieces_of_at_most_piece_items_of(tmp_path: Path) -> None:
    path = tmp_path / "s.snap"
    size, count = write_snapshot(path, iter(items_of(2 * PIECE_ITEMS + 7)))
    assert count == 2 * PIECE_ITEMS + 7 and size == path.stat().st_size
    assert not list(tmp_path.glob("*.part")), "the temporary name was left behind"
    with open(path, "rb") as stream:
        check_shape(stream)
        pieces = list(read_pieces(stream))
    assert [len(p) for p in pieces] == [PIECE_ITEMS, PIECE_ITEMS, 7]
    assert [tuple(item) for piece in pieces for item in piece] == items_of(2 * PIECE_ITEMS + 7)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b[:-1], "end mark"),  # cut inside the end mark
        (lambda b: b[:-9], "cut short"),  # cut inside the last piece
        (lambda b: b + b"x", "after"),  # trailing bytes
        (lambda b: b"not-garrison" + b[len(MAGIC) :], "magic"),
    ],
)
def test_a_damaged_file_is_refused_by_its_shape_and_by_its_reader(
    tmp_path: Path, damage: Any, reason: str
) -> None:
    path = tmp_path / "s.snap"
    write_snapshot(path, iter(items_of(30)))
    path.write_bytes(damage(path.read_bytes()))
    with open(path, "rb") as stream:
        with pytest.raises(SnapshotFileError, match=reason):
            check_shape(stream)
        with pytest.raises(SnapshotFileError):
            list(read_pieces(stream))


def test_a_reference_is_recognised_and_an_inline_snapshot_is_not() -> None:
    ref = SpoolReference(applied_index=9, spool="in-gw-1-1.snap", bytes=100, count=3)
    assert spool_reference(encode_reference(ref)) == ref
    assert spool_reference(b"\x81\xa9incidents\x90") is None  # {"incidents": []}: inline
    assert spool_reference(b"x" * 1000) is None


def test_a_replica_takes_only_its_gateways_complete_file_and_unlinks_it(tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path, "gw-2")
    path = spool.dir / "in-gw-1-7.snap"
    size, count = write_snapshot(path, iter(items_of(5)))
    (tmp_path / "elsewhere.snap").write_bytes(path.read_bytes())

    def ref(name: str, size: int = size) -> SpoolReference:
        return SpoolReference(applied_index=5, spool=name, bytes=size, count=count)

    assert "not a file its gateway received" in (spool.take(ref("../elsewhere.snap"), "gw-1", False) or "")
    assert "not a file its gateway received" in (spool.take(ref("out-gw-2-5.snap"), "gw-1", False) or "")
    assert "bytes" in (spool.take(ref("in-gw-1-7.snap", size + 1), "gw-1", False) or "")
    assert not path.exists(), "a refused file stays: nothing would ever remove it"
    write_snapshot(path, iter(items_of(5)))
    assert spool.take(ref("in-gw-1-7.snap"), "gw-1", False) is None
    assert not path.exists(), "taken but not unlinked"
    stream = spool.opened(ref("in-gw-1-7.snap"))
    assert stream is not None and [len(p) for p in read_pieces(stream)] == [5]
    spool.close_inbox()
    assert stream.closed and spool.opened(ref("in-gw-1-7.snap")) is None


def test_a_replica_of_the_same_node_reads_the_senders_own_file_in_place(tmp_path: Path) -> None:
    leader = SnapshotSpool(tmp_path, "r1")
    path = leader.dir / "out-r1-5.snap"
    size, count = write_snapshot(path, iter(items_of(5)))
    follower = SnapshotSpool(tmp_path, "r2")  # the same data_dir: the same spool directory

    def ref(name: str, index: int = 5) -> SpoolReference:
        return SpoolReference(applied_index=index, spool=name, bytes=size, count=count)

    for name, index in (("out-r3-5.snap", 5), ("out-r1-5.snap", 4), ("in-r1-5.snap", 5), ("../x", 5)):
        assert "the file of its sender" in (follower.take(ref(name, index), "r1", True) or ""), name
    assert path.exists()
    assert follower.take(ref("out-r1-5.snap"), "r1", True) is None
    assert path.exists(), "a follower unlinked the leader's file: it could not send it to another"
    stream = follower.opened(ref("out-r1-5.snap"))
    assert stream is not None and [len(p) for p in read_pieces(stream)] == [5]
    follower.close_inbox()


def test_the_file_for_an_index_is_written_once_by_a_thread_and_replaced_when_the_index_moves(
    tmp_path: Path,
) -> None:
    spool = SnapshotSpool(tmp_path, "gw-1")
    calls: list[tuple[int, str]] = []
    release = threading.Event()

    def source(n: int) -> Any:
        def slow() -> Any:
            calls.append((n, threading.current_thread().name))
            release.wait(10)  # a large state machine: the replica must not wait for it
            return iter(items_of(n))

        return slow

    assert spool.outgoing(4, source(4)) is None, "the replica waited for the file"
    assert spool.outgoing(4, source(4)) is None and len(calls) == 1, "a second writer started"
    release.set()
    spool.wait_written()
    first = spool.outgoing(4, source(4))
    assert first is not None and first.count == 4 and calls == [(4, "snapshot-4")]
    assert spool.outgoing(4, source(4)) == first and len(calls) == 1, "a snapshot sent again was rewritten"
    assert spool.outgoing(8, source(8)) is None
    spool.wait_written()
    second = spool.outgoing(8, source(8))
    assert second is not None and second.count == 8
    assert sorted(p.name for p in spool.dir.iterdir()) == [second.spool], "the older file was kept"
    SnapshotSpool(tmp_path, "gw-1")  # a restarted replica: its previous instance's files are stale
    assert list(spool.dir.iterdir()) == []


def test_a_failed_write_is_reported_once_and_tried_again(tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path, "gw-1")

    def broken() -> Any:
        raise OSError(28, "No space left on device")

    assert spool.outgoing(4, broken) is None
    spool.wait_written()
    with pytest.raises(SnapshotFileError, match="No space left"):
        spool.outgoing(4, broken)
    assert spool.outgoing(4, lambda: iter(items_of(4))) is None  # started again
    spool.wait_written()
    ref = spool.outgoing(4, lambda: iter(items_of(4)))
    assert ref is not None and ref.count == 4
