"""A Raft snapshot that travels as a file: written in pieces, sent from disk, installed in pieces.

Why a file: the state machine is every incident ever applied, so it grows for as long as the city runs.
Built as one msgpack value it had to fit in memory three times (the leader's replica, each gateway's
reassembly buffer, the follower's decode) and under a 64 MiB cap on the way, past which (~130k incidents) a
node behind the log's retention could never catch up again. Now the leader's replica writes the snapshot
to ``<data_dir>/snapshots/`` piece by piece from an LMDB cursor, its gateway streams that file over the
snapshot lane, the follower's gateway writes the chunks to its own spool file, and the follower's replica
reads it one piece at a time. No step holds more than one piece; only the disk bounds a snapshot.

The Raft message itself carries a :class:`SpoolReference` as its snapshot data: the file's name (always a
plain name inside the receiver's own spool directory, written there by its own gateway; never a path from
the network), its size and its count of incidents, which the receiver checks before it installs.

Layout: ``MAGIC`` then pieces ``u32 length | msgpack [[raft_index, incident], ...]`` of at most
``PIECE_ITEMS`` items, then ``u32 0``: a file cut short has no end mark and is refused.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Final, Literal

import msgspec

SPOOL_DIR: Final = "snapshots"
MAGIC: Final = b"garrison-snapshot-v1\n"
PIECE_ITEMS: Final = 1000  # incidents per piece: what one install transaction and one decode hold
MAX_PIECE: Final = 64 << 20  # a piece's length prefix above this is corruption, not a piece
_LEN: Final = struct.Struct(">I")
_encode = msgspec.msgpack.Encoder().encode


class SnapshotFileError(Exception):
    """A snapshot file is not one this code wrote whole: refuse it; the leader sends its snapshot again."""


class SpoolReference(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A Raft snapshot's data when its state machine is in a spool file (see the module doc)."""

    applied_index: int
    spool: str
    bytes: int
    count: int
    incidents_in: Literal["spool"] = "spool"


_REFERENCE_DECODER: Final = msgspec.msgpack.Decoder(SpoolReference)


def spool_reference(data: bytes) -> SpoolReference | None:
    """``data`` as a :class:`SpoolReference`, or None when it is anything else (an inline snapshot)."""
    if len(data) > 512:  # a reference is ~100 bytes; a snapshot that holds incidents is never decoded here
        return None
    try:
        return _REFERENCE_DECODER.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def encode_reference(ref: SpoolReference) -> bytes:
    return _encode(ref)


def spool_dir(data_dir: str | os.PathLike[str]) -> Path:
    """``<data_dir>/snapshots``, created 0700 like the data_dir itself."""
    path = Path(data_dir) / SPOOL_DIR
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def plain_name(name: str) -> bool:
    """A file name that stays inside the spool directory (no separator, no dot-name)."""
    return (
        bool(name) and len(name) <= 200 and "/" not in name and "\0" not in name and not name.startswith(".")
    )


def write_snapshot(path: Path, items: Iterable[tuple[int, Any]]) -> tuple[int, int]:
    """Write ``items`` ((raft index, incident) in index order) to ``path`` through a temporary name, so a
    reader never sees half a file; return (bytes, count). Not fsynced: a snapshot in flight is rebuilt
    from the event log after a crash, never read from this file."""
    tmp = path.with_name(path.name + ".part")
    count = 0
    with open(tmp, "wb") as out:
        out.write(MAGIC)
        piece: list[list[Any]] = []
        for index, incident in items:
            piece.append([index, incident])
            if len(piece) >= PIECE_ITEMS:
                count += _write_piece(out, piece)
                piece = []
        if piece:
            count += _write_piece(out, piece)
        out.write(_LEN.pack(0))
        size = out.tell()
    os.replace(tmp, path)
    return size, count


def _write_piece(out: IO[bytes], piece: list[list[Any]]) -> int:
    body = _encode(piece)
    out.write(_LEN.pack(len(body)))
    out.write(body)
    return len(piece)


def read_pieces(stream: IO[bytes]) -> Iterator[list[Any]]:
    """The pieces of a snapshot file from its start, each a list of ``[raft_index, incident]`` as decoded
    (the caller checks each item). Raises :class:`SnapshotFileError` on a file this module did not write
    whole: wrong magic, a piece cut short, no end mark, or bytes after it."""
    stream.seek(0)
    if stream.read(len(MAGIC)) != MAGIC:
        raise SnapshotFileError("not a garrison snapshot file (wrong magic)")
    while True:
        head = stream.read(_LEN.size)
        if len(head) < _LEN.size:
            raise SnapshotFileError("the snapshot file ends before its end mark: cut short")
        (size,) = _LEN.unpack(head)
        if size == 0:
            if stream.read(1):
                raise SnapshotFileError("bytes after the snapshot file's end mark")
            return
        if size > MAX_PIECE:
            raise SnapshotFileError(f"a piece of {size} bytes is over {MAX_PIECE}: corrupt")
        body = stream.read(size)
        if len(body) < size:
            raise SnapshotFileError("the snapshot file ends inside a piece: cut short")
        try:
            piece = msgspec.msgpack.decode(body)
        except msgspec.DecodeError as exc:
            raise SnapshotFileError(f"a piece does not decode: {exc}") from None
        if not isinstance(piece, list):
            raise SnapshotFileError(f"a piece is a {type(piece).__name__}, not a list")
        yield piece


def check_shape(stream: IO[bytes]) -> None:
    """Walk a snapshot file's piece lengths to its end mark without decoding anything: raises
    :class:`SnapshotFileError` as :func:`read_pieces` would for a file cut short or overlong."""
    stream.seek(0)
    if stream.read(len(MAGIC)) != MAGIC:
        raise SnapshotFileError("not a garrison snapshot file (wrong magic)")
    end = os.fstat(stream.fileno()).st_size
    at = len(MAGIC)
    while True:
        head = stream.read(_LEN.size)
        if len(head) < _LEN.size:
            raise SnapshotFileError("the snapshot file ends before its end mark: cut short")
        (size,) = _LEN.unpack(head)
        at += _LEN.size
        if size == 0:
            if at != end:
                raise SnapshotFileError("bytes after the snapshot file's end mark")
            return
        if size > MAX_PIECE or at + size > end:
            raise SnapshotFileError("the snapshot file ends inside a piece: cut short")
        at = stream.seek(size, os.SEEK_CUR)


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class SnapshotSpool:
    """One replica's snapshot files: the one it last wrote for followers (``out-<replica>-<index>.snap``,
    rewritten only when the snapshot's index moves; replicas of the same node read it in place) and those
    its gateway received for it (opened when their message is stepped, then unlinked at once: the open file
    lives until the install has read it, and nothing is left behind whatever happens next).

    A file for followers is written by a thread: ~3 s for 150k incidents, longer than an election timeout,
    during which a leader that wrote it inline sent no heartbeat and was deposed. The replica is a leaf
    actor (it forks no child), so a thread may live in it; reading LMDB from it is safe (py-lmdb opens with
    MDB_NOTLS: a read transaction per thread)."""

    def __init__(self, data_dir: str | os.PathLike[str], replica: str) -> None:
        self.dir = spool_dir(data_dir)
        self.replica = replica
        self.sent: SpoolReference | None = None
        self.inbox: dict[str, IO[bytes]] = {}
        self._writing: tuple[int, threading.Thread, list[SpoolReference | BaseException]] | None = None
        for stale in self.dir.glob(f"out-{replica}-*"):  # a previous instance's: rebuilt when needed
            remove_quietly(stale)

    def outgoing(self, index: int, items: Callable[[], Iterable[tuple[int, Any]]]) -> SpoolReference | None:
        """The reference to the state machine up to ``index`` in a file, or None while a thread writes it
        from ``items()`` (started by the first ask; ask again later). Raises :class:`SnapshotFileError`
        once if the write failed (a full disk); the next ask starts it again."""
        sent = self.sent
        if sent is not None and sent.applied_index == index and (self.dir / sent.spool).exists():
            return sent
        if self._writing is not None:
            writing, thread, box = self._writing
            if thread.is_alive():
                return None
            self._writing = None
            (outcome,) = box
            if isinstance(outcome, BaseException):
                raise SnapshotFileError(f"writing the snapshot at {writing} failed: {outcome}") from outcome
            if sent is not None and sent.spool != outcome.spool:
                remove_quietly(self.dir / sent.spool)
            self.sent = outcome
            if outcome.applied_index == index:
                return outcome
        self._start(index, items)
        return None

    def _start(self, index: int, items: Callable[[], Iterable[tuple[int, Any]]]) -> None:
        name = f"out-{self.replica}-{index}.snap"
        box: list[SpoolReference | BaseException] = []

        def write() -> None:
            try:
                size, count = write_snapshot(self.dir / name, items())
                box.append(SpoolReference(applied_index=index, spool=name, bytes=size, count=count))
            except Exception as exc:  # reported by the next outgoing(), in the replica's thread
                box.append(exc)

        thread = threading.Thread(target=write, name=f"snapshot-{index}", daemon=True)
        self._writing = (index, thread, box)
        thread.start()

    def wait_written(self, timeout: float = 60.0) -> None:
        """Block until a write in progress ended (tests; a replica that stops leaves the thread a daemon,
        and the next instance removes its file)."""
        if self._writing is not None:
            self._writing[1].join(timeout)

    def take(self, ref: SpoolReference, sender: str, from_this_node: bool) -> str | None:
        """Open the file ``ref`` names; None when it is ready to install, else why it cannot be (the message
        is then refused, and the leader sends the snapshot again). From another node: a file the gateway
        received (``in-*``), unlinked once open. From a replica of this node: that replica's own file for
        that index (``out-<sender>-<index>.snap``), left to it: it may send it to another follower."""
        if from_this_node:
            own = f"out-{sender}-{ref.applied_index}.snap"
            if ref.spool != own:
                return f"the snapshot names {ref.spool!r}, not {own!r}: the file of its sender for its index"
        elif not plain_name(ref.spool) or not ref.spool.startswith("in-"):
            return f"the snapshot names {ref.spool!r}, not a file its gateway received"
        path = self.dir / ref.spool
        try:
            stream = open(path, "rb")  # noqa: SIM115 - held until the install reads it (see close_inbox)
        except OSError as exc:
            return f"the snapshot file is not there: {exc}"
        if not from_this_node:
            remove_quietly(path)
        size = os.fstat(stream.fileno()).st_size
        if size != ref.bytes:
            stream.close()
            return f"the snapshot file has {size} bytes, its message says {ref.bytes}"
        try:
            check_shape(stream)
        except SnapshotFileError as exc:
            stream.close()
            return str(exc)
        old = self.inbox.pop(ref.spool, None)
        if old is not None:
            old.close()
        self.inbox[ref.spool] = stream
        return None

    def opened(self, ref: SpoolReference) -> IO[bytes] | None:
        return self.inbox.get(ref.spool)

    def close_inbox(self) -> None:
        """Close every received file: installed, or refused by Raft (stale); either way done with."""
        for stream in self.inbox.values():
            stream.close()
        self.inbox.clear()
