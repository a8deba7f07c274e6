"""Peer-link frames: ``u32 length | u8 lane | msgpack body``, decoded against a schema per lane.

``length`` counts the lane byte and the body (so it is at least 1). The header is checked on its own,
before the body is read, so an oversized or unknown-lane frame is refused without buffering its bytes.
Decoding is total: any bytes either decode to one of the Structs below or raise :class:`BadFrame`; nothing
is ever unpickled. Pure: msgspec and stdlib only.
"""

from __future__ import annotations

import enum
import struct
from typing import Annotated, Final, Literal

import msgspec

HEADER: Final = struct.Struct(">IB")  # u32 length (lane + body), u8 lane
HEADER_SIZE: Final = HEADER.size
DEFAULT_MAX_FRAME: Final = 4 << 20  # 4 MiB: a snapshot chunk plus headroom; the limit is configurable

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Lane(enum.IntEnum):
    RAFT = 1
    GOSSIP = 2
    FORWARD = 3
    HEARTBEAT = 4
    SNAPSHOT = 5


class BadFrame(Exception):
    """A peer sent bytes that are not a valid frame; the connection they came on must be closed."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"bad peer frame: {reason} (the connection is closed; check the peer's version)")
        self.reason = reason


class _Body(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class RaftFrame(_Body, frozen=True, forbid_unknown_fields=True):
    """One Raft message: ``payload`` is raft-codec msgpack, passed through opaque."""

    sender: Name
    recipient: Name
    payload: bytes


class GossipFrame(_Body, frozen=True, forbid_unknown_fields=True):
    """CRDT anti-entropy: ``payload`` is crdt-codec bytes, opaque here."""

    sender: Name
    payload: bytes


ForwardKind = Literal["propose", "read_index", "commit"]


class ForwardFrame(_Body, frozen=True, forbid_unknown_fields=True):
    """A request on the forward lane (or its answer, ``reply``); ``request_id`` pairs them per ``kind``.

    ``propose``: an edge's signed proposals, answered by an ack (supervisors/peer/gateway.py).
    ``read_index``: a Raft member asks the leader to confirm a ReadIndex; ``commit``: the index at which an
    incident is committed (optionally waiting for it). Their payloads are the schema'd structs of
    ``supervisors.peer.forward_rpc``."""

    request_id: Count
    payload: bytes
    reply: bool = False
    kind: ForwardKind = "propose"


class Heartbeat(_Body, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Ping (``reply`` false) or its echo; ``sent_ns`` is the pinger's monotonic clock, read only by it.
    ``leaving``: the pinger is stopping on purpose, and the echo says the peer heard it. Defaults are left
    out of the bytes, so an ordinary heartbeat is what a peer without ``leaving`` expects."""

    seq: Count
    sent_ns: Count
    reply: bool = False
    leaving: bool = False


class SnapshotChunk(_Body, frozen=True, forbid_unknown_fields=True):
    """One chunk of a Raft snapshot; chunks of one ``snapshot_id`` arrive in ``offset`` order."""

    sender: Name
    recipient: Name
    snapshot_id: Name
    offset: Count
    data: bytes
    last: bool = False


Body = RaftFrame | GossipFrame | ForwardFrame | Heartbeat | SnapshotChunk

LANE_OF: Final[dict[type[Body], Lane]] = {
    RaftFrame: Lane.RAFT,
    GossipFrame: Lane.GOSSIP,
    ForwardFrame: Lane.FORWARD,
    Heartbeat: Lane.HEARTBEAT,
    SnapshotChunk: Lane.SNAPSHOT,
}
_DECODERS: Final[dict[Lane, msgspec.msgpack.Decoder[Body]]] = {
    lane: msgspec.msgpack.Decoder(cls) for cls, lane in LANE_OF.items()
}
_ENCODER: Final = msgspec.msgpack.Encoder()


def encode_frame(body: Body, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """The full frame for ``body``; raises ValueError (a caller's bug) if it would exceed ``max_frame``."""
    lane = LANE_OF[type(body)]
    payload = _ENCODER.encode(body)
    length = 1 + len(payload)
    if length > max_frame:
        raise ValueError(
            f"{lane.name} frame of {length} bytes exceeds max_frame {max_frame}: send smaller chunks"
        )
    return HEADER.pack(length, lane) + payload


def parse_header(header: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> tuple[Lane, int]:
    """(lane, body length) from the 5 header bytes; refuses before any body byte is read."""
    if len(header) != HEADER_SIZE:
        raise BadFrame(f"header is {len(header)} bytes, expected {HEADER_SIZE}")
    length, lane_byte = HEADER.unpack(header)
    if length < 1:
        raise BadFrame("length 0 (a frame has at least its lane byte)")
    if length > max_frame:
        raise BadFrame(f"length {length} exceeds max_frame {max_frame}")
    try:
        lane = Lane(lane_byte)
    except ValueError:
        raise BadFrame(f"unknown lane {lane_byte}") from None
    return lane, length - 1


def decode_body(lane: Lane, body: bytes) -> Body:
    try:
        return _DECODERS[lane].decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise BadFrame(f"malformed {lane.name} body ({len(body)} bytes): {error}") from None


def decode_frame(data: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> Body:
    """Decode exactly one whole frame (header + body) from ``data``."""
    lane, size = parse_header(bytes(data[:HEADER_SIZE]), max_frame)
    body = bytes(data[HEADER_SIZE:])
    if len(body) != size:
        raise BadFrame(f"{lane.name} frame declares {size} body bytes, got {len(body)}")
    return decode_body(lane, body)
