"""Raft snapshots as files on the snapshot lane: cut from the sender's spool file, written to the receiver's.

A snapshot stream is the byte string ``b"F" | u32 header length | header | file``, cut into
``SnapshotChunk`` frames as they are sent: the header is the Raft message whose snapshot data is a
``SpoolReference`` (``actors/raft/snapshot_file.py``), the file is the leader's snapshot file. The
receiving gateway writes the file part to ``<data_dir>/snapshots/in-<peer>-<n>.part`` as chunks arrive,
checks it against the header's size when the last one has, renames it ``.snap`` and hands its replica the
message with the reference rewritten to that local name. Neither gateway ever holds more than a chunk, so a
snapshot is bounded by the disk, not by memory or a frame limit (before, a whole snapshot was reassembled
in memory under a 64 MiB cap and a node behind the log's retention could no longer catch up past it).
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

import msgspec

from actors.raft.codec import decode_message, encode_message
from actors.raft.snapshot_file import (
    SpoolReference,
    encode_reference,
    remove_quietly,
    spool_reference,
)
from supervisors.peer.frames import SnapshotChunk

FILE_MARK: Final = b"F"  # first byte of a file stream (an inline raft message starts with its kind byte)
MAX_HEADER: Final = 4096  # the header is a snapshot message with a ~100-byte reference: more is not one
_LEN: Final = struct.Struct(">I")


class SnapshotStreamError(Exception):
    """A snapshot file stream from a peer that cannot become a snapshot for the replica (the reason says
    why); the stream is dropped and the leader sends its snapshot again."""


def file_chunks(
    sender: str, recipient: str, snapshot_id: str, header: bytes, stream: IO[bytes], size: int
) -> Iterator[SnapshotChunk]:
    """The stream for ``header`` and the open file ``stream`` in chunks of ``size`` bytes, read from the
    file as they are taken (one chunk in memory at a time); the file is closed when the stream ends or is
    abandoned."""
    try:
        buf = FILE_MARK + _LEN.pack(len(header)) + header
        offset = 0
        while True:
            more = stream.read(size)
            buf += more
            while len(buf) > size or (not more and buf):
                data, buf = buf[:size], buf[size:]
                yield SnapshotChunk(
                    sender=sender,
                    recipient=recipient,
                    snapshot_id=snapshot_id,
                    offset=offset,
                    data=data,
                    last=not more and not buf,
                )
                offset += len(data)
            if not more:
                return
    finally:
        stream.close()


def reference_of(message: bytes) -> SpoolReference | None:
    """The spool reference of a raft-codec snapshot message, or None if it is not one."""
    try:
        snap = decode_message(message).snapshot
    except (msgspec.DecodeError, ValueError, TypeError):
        return None
    return spool_reference(snap.data) if snap is not None else None


@dataclasses.dataclass
class _Incoming:
    snapshot_id: str
    part: Path
    file: IO[bytes]
    received: int = 0  # stream bytes so far: the offset the next chunk must have
    head: bytearray = dataclasses.field(default_factory=bytearray)  # the mark, length and header so far
    header: bytes | None = None


class SnapshotReceiver:
    """The file streams arriving from the peers: at most one per peer (a newer one replaces it)."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        self.incoming: dict[str, _Incoming] = {}
        self.handed: dict[str, Path] = {}  # per peer, the last file handed to the replica
        self.names = 0
        for stale in spool.glob("in-*"):  # a previous gateway's; their leaders send them again
            remove_quietly(stale)

    def begin(self, peer: str, snapshot_id: str) -> None:
        self.drop(peer)
        self.names += 1
        part = self.spool / f"in-{peer}-{os.getpid()}-{self.names}.part"
        try:
            file = open(part, "wb")  # noqa: SIM115 - kept open until the stream ends (drop, _finish)
        except OSError as exc:
            raise SnapshotStreamError(f"cannot create {part}: {exc}") from None
        self.incoming[peer] = _Incoming(snapshot_id, part, file)

    def receiving(self, peer: str, snapshot_id: str) -> bool:
        inc = self.incoming.get(peer)
        return inc is not None and inc.snapshot_id == snapshot_id

    def feed(self, peer: str, chunk: SnapshotChunk) -> bytes | None:
        """Take ``chunk`` of the stream from ``peer`` (``receiving`` was true); the raft message for the
        replica once the stream is complete, else None. Raises :class:`SnapshotStreamError` (the stream is
        dropped): a gap (a lost chunk), a header that is not a snapshot of ``peer``'s, a file whose size is
        not the header's, or a disk that refused the write."""
        inc = self.incoming[peer]
        try:
            if chunk.offset != inc.received:
                raise SnapshotStreamError(f"chunk at {chunk.offset}, expected {inc.received}: one was lost")
            inc.received += len(chunk.data)
            data = chunk.data
            if inc.header is None:
                inc.head += data
                data = self._take_header(inc)
            if data:
                inc.file.write(data)
            return self._finish(peer, inc) if chunk.last else None
        except (SnapshotStreamError, OSError) as exc:
            self.drop(peer)
            if isinstance(exc, OSError):
                raise SnapshotStreamError(f"writing {inc.part} failed: {exc}") from None
            raise

    def _take_header(self, inc: _Incoming) -> bytes:
        """The file bytes after the header once it is complete (the header stored), else b""."""
        head = inc.head
        if len(head) < 1 + _LEN.size:
            return b""
        (size,) = _LEN.unpack_from(head, 1)
        if size > MAX_HEADER:
            raise SnapshotStreamError(
                f"a header of {size} bytes is over {MAX_HEADER}: not a snapshot message"
            )
        end = 1 + _LEN.size + size
        if len(head) < end:
            return b""
        inc.header = bytes(head[1 + _LEN.size : end])
        rest = bytes(head[end:])
        inc.head = bytearray()
        return rest

    def _finish(self, peer: str, inc: _Incoming) -> bytes:
        inc.file.close()
        del self.incoming[peer]
        try:
            message = decode_message(inc.header or b"")
        except (msgspec.DecodeError, ValueError, TypeError) as exc:
            remove_quietly(inc.part)
            raise SnapshotStreamError(f"the header is not a raft message: {exc}") from None
        snap = message.snapshot
        ref = spool_reference(snap.data) if snap is not None and message.type == "snapshot" else None
        size = inc.part.stat().st_size
        if snap is None or ref is None:
            why = "the header is not a snapshot sent as a file"
        elif message.sender != peer:
            why = f"the header is from {message.sender!r}"
        elif size != ref.bytes:
            why = f"the file has {size} bytes, the header says {ref.bytes}"
        else:
            name = inc.part.name.removesuffix(".part") + ".snap"
            os.replace(inc.part, self.spool / name)
            # The replica unlinks a file when it takes it, so the previous one of this peer still here was
            # never taken (its message was lost to a replica restarting): this newer snapshot replaces it.
            # Should its message still be on the way, the replica refuses it and installs this one.
            untaken = self.handed.get(peer)
            if untaken is not None:
                remove_quietly(untaken)
            self.handed[peer] = self.spool / name
            local = msgspec.structs.replace(ref, spool=name)
            snapshot = dataclasses.replace(snap, data=encode_reference(local))
            return encode_message(dataclasses.replace(message, snapshot=snapshot))
        remove_quietly(inc.part)
        raise SnapshotStreamError(why)

    def drop(self, peer: str) -> None:
        inc = self.incoming.pop(peer, None)
        if inc is not None:
            inc.file.close()
            remove_quietly(inc.part)

    def close(self) -> None:
        for peer in list(self.incoming):
            self.drop(peer)
