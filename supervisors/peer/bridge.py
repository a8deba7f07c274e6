"""The pipe between the peer gateway shell (an actor) and the gateway process it starts.

Frames on the gateway's stdin (shell -> gateway) and stdout (gateway -> shell): ``u32 length | msgpack``
of one :data:`PipeMessage`, decoded with a schema (never pickle). Both ends are the same program at the
same version, so a frame that does not decode is a bug: the reader raises :class:`PipeError` and the shell
crashes (and is restarted with a fresh gateway), which is the supervision tree's job.
"""

from __future__ import annotations

import struct
from typing import Annotated, Final

import msgspec

MAX_PIPE_FRAME: Final = 64 << 20  # a raft message sent whole may cross the pipe (a snapshot is a file)
_LEN: Final = struct.Struct(">I")

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class PipeError(Exception):
    """The pipe between the gateway shell and the gateway process carried bytes that are not a frame."""


class PipeRaft(msgspec.Struct, frozen=True, tag="raft", forbid_unknown_fields=True):
    """A Raft message to (stdin) or from (stdout) the replica on node ``peer``. ``kind``: ``raft`` (one
    raft-codec Message) or ``propose`` (msgpack list of signed entries for the leader)."""

    peer: Name
    data: bytes
    kind: str = "raft"


class PipeUnreachable(msgspec.Struct, frozen=True, tag="unreachable", forbid_unknown_fields=True):
    """Gateway -> replica: a frame to ``peer`` was dropped (its queue was full): Raft's ReportUnreachable,
    and for a snapshot chunk (``snapshot``) ReportSnapshot(failed); or ``peer``'s connection ended
    (``connection_lost``: a follower campaigns soon if ``peer`` was its leader)."""

    peer: Name
    snapshot: bool = False
    connection_lost: bool = False  # not a drop: the connection ``peer`` dialled to us ended


PipeMessage = PipeRaft | PipeUnreachable
_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(PipeMessage)


def encode_pipe(msg: PipeMessage) -> bytes:
    body = _encoder.encode(msg)
    return _LEN.pack(len(body)) + body


class PipeReader:
    """Incremental decoder: ``feed`` whatever bytes arrived, get the complete messages."""

    def __init__(self, max_frame: int = MAX_PIPE_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[PipeMessage]:
        self._buf += data
        out: list[PipeMessage] = []
        while len(self._buf) >= _LEN.size:
            (size,) = _LEN.unpack_from(self._buf)
            if size > self._max:
                raise PipeError(f"pipe frame of {size} bytes is over the {self._max} byte limit")
            if len(self._buf) < _LEN.size + size:
                break
            body = bytes(self._buf[_LEN.size : _LEN.size + size])
            del self._buf[: _LEN.size + size]
            try:
                out.append(_decoder.decode(body))
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                raise PipeError(f"pipe frame does not decode: {exc}") from None
        return out
