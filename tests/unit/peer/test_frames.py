"""Peer-link frames: every lane round-trips, and any other bytes raise BadFrame (decoding is total)."""

from __future__ import annotations

import struct

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from supervisors.peer.frames import (
    HEADER_SIZE,
    BadFrame,
    ForwardFrame,
    GossipFrame,
    Heartbeat,
    Lane,
    RaftFrame,
    SnapshotChunk,
    decode_body,
    decode_frame,
    encode_frame,
    parse_header,
)

BODIES = [
    RaftFrame(sender="gw1", recipient="gw2", payload=b"\x93\x01\x02\x03"),
    GossipFrame(sender="edge1", payload=b"delta"),
    ForwardFrame(request_id=7, payload=b"proposal", reply=True),
    Heartbeat(seq=3, sent_ns=123456789),
    SnapshotChunk(
        sender="gw1", recipient="gw3", snapshot_id="5-120", offset=65536, data=b"x" * 100, last=True
    ),
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_every_lane_round_trips(body: object) -> None:
    frame = encode_frame(body)  # type: ignore[arg-type]
    length, lane = struct.unpack(">IB", frame[:HEADER_SIZE])
    assert (
        length == len(frame) - 4
        and lane
        == {
            RaftFrame: Lane.RAFT,
            GossipFrame: Lane.GOSSIP,
            ForwardFrame: Lane.FORWARD,
            Heartbeat: Lane.HEARTBEAT,
            SnapshotChunk: Lane.SNAPSHOT,
        }[type(body)]
    )
    assert decode_frame(frame) == body


def test_oversized_length_is_refused_from_the_header_alone() -> None:
    with pytest.raises(BadFrame, match="exceeds max_frame 1024") as error:
        parse_header(struct.pack(">IB", 1025, Lane.RAFT), max_frame=1024)
    assert "connection is closed" in str(error.value)
    assert parse_header(struct.pack(">IB", 1024, Lane.RAFT), max_frame=1024) == (Lane.RAFT, 1023)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (struct.pack(">IB", 5, 0), "unknown lane 0"),
        (struct.pack(">IB", 5, 6), "unknown lane 6"),
        (struct.pack(">IB", 0, Lane.RAFT), "length 0"),
        (b"\x00\x00", "header is 2 bytes"),
    ],
)
def test_bad_headers(header: bytes, reason: str) -> None:
    with pytest.raises(BadFrame, match=reason):
        parse_header(header)


@pytest.mark.parametrize(
    ("lane", "body", "reason"),
    [
        (Lane.RAFT, b"\xc1", "malformed RAFT body"),  # never-used msgpack byte
        (Lane.RAFT, msgspec.msgpack.encode({"sender": "a", "recipient": "b"}), "missing required field"),
        (Lane.HEARTBEAT, msgspec.msgpack.encode({"seq": -1, "sent_ns": 0}), r"Expected `int` >= 0"),
        (Lane.GOSSIP, msgspec.msgpack.encode({"sender": "a", "payload": b"", "x": 1}), "unknown field"),
        (Lane.GOSSIP, msgspec.msgpack.encode({"sender": "", "payload": b""}), "length >= 1"),
        (Lane.FORWARD, msgspec.msgpack.encode([1, 2, 3]), "Expected `object`"),
        (Lane.SNAPSHOT, encode_frame(BODIES[4])[HEADER_SIZE:] + b"\x00", "trailing characters"),
    ],
)
def test_malformed_bodies(lane: Lane, body: bytes, reason: str) -> None:
    with pytest.raises(BadFrame, match=reason):
        decode_body(lane, body)


def test_a_body_of_another_lane_does_not_decode() -> None:
    raft = encode_frame(BODIES[0])[HEADER_SIZE:]
    with pytest.raises(BadFrame):
        decode_body(Lane.HEARTBEAT, raft)


def test_length_and_body_must_agree() -> None:
    frame = encode_frame(BODIES[1])
    with pytest.raises(BadFrame, match="declares"):
        decode_frame(frame[:-1])
    with pytest.raises(BadFrame, match="declares"):
        decode_frame(frame + b"\x00")


def test_encoding_refuses_a_frame_over_the_limit() -> None:
    with pytest.raises(ValueError, match="send smaller chunks"):
        encode_frame(GossipFrame(sender="a", payload=b"x" * 2000), max_frame=1024)


def test_nothing_is_unpickled() -> None:
    import pickle

    evil = pickle.dumps(ValueError("boom"))
    with pytest.raises(BadFrame):
        decode_frame(struct.pack(">IB", 1 + len(evil), Lane.RAFT) + evil)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decoding_random_bytes_yields_a_frame_or_bad_frame(data: bytes) -> None:
    try:
        decoded = decode_frame(data, max_frame=1024)
    except BadFrame:
        return
    assert decode_frame(encode_frame(decoded)) == decoded


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Lane)), st.binary(max_size=200))
# a map whose key is not UTF-8: msgspec raises UnicodeDecodeError there, not DecodeError (found by this test)
@example(Lane.RAFT, b"\x81\xa3\x00\x00\x80")
def test_random_bodies_behind_a_valid_header_yield_a_frame_or_bad_frame(lane: Lane, body: bytes) -> None:
    try:
        decoded = decode_frame(struct.pack(">IB", 1 + len(body), lane) + body)
    except BadFrame as error:
        assert error.reason.startswith(f"malformed {lane.name} body")
        return
    assert encode_frame(decoded)[HEADER_SIZE - 1] == lane
