"""msgpack codec: gossip messages round-trip; anything else is refused with a CodecError."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.crdt import codec
from actors.crdt.codec import CodecError, decode, decode_message, encode
from actors.crdt.counters import GCounter, PNCounter
from actors.crdt.exposure import Exposure
from actors.crdt.gossip import AckMessage, DeltaMessage
from actors.crdt.orset import ORSet

names = st.sampled_from(("a", "b", "gw-02"))
incarnations = st.integers(0, 2**63 - 1)
seqs = st.integers(0, 2**32)
amounts = st.integers(0, 2**40)
exposures = st.lists(st.tuples(names, st.sampled_from(("NO2", "O3")), amounts), max_size=4).map(
    lambda adds: _exposure(adds)
)


def _exposure(adds: list[tuple[str, str, int]]) -> Exposure:
    state = Exposure()
    for replica, pollutant, amount in adds:
        state, _ = state.add(replica, pollutant, amount)
    return state


deltas = st.builds(
    DeltaMessage,
    sender=names,
    sender_incarnation=incarnations,
    recipient=names,
    recipient_incarnation=st.none() | incarnations,
    seq=seqs,
    payload=exposures,
    full_state=st.booleans(),
)
acks = st.builds(
    AckMessage,
    sender=names,
    sender_incarnation=incarnations,
    recipient=names,
    recipient_incarnation=incarnations,
    seq=seqs,
)


@settings(max_examples=200, deadline=None)
@given(message=deltas | acks)
def test_gossip_messages_round_trip(message: DeltaMessage | AckMessage) -> None:
    data = encode(message)
    assert decode(data, type(message)) == message
    assert encode(decode(data, type(message))) == data
    assert decode_message(data) == message


def test_records_are_plain_msgpack_with_a_version() -> None:
    state, _ = Exposure().add("a", "NO2", 5)
    assert msgspec.msgpack.decode(encode(state)) == {
        "v": codec.SCHEMA_VERSION,
        "body": {"type": "exposure", "counters": {"NO2": {"type": "pncounter", "p": {"a": 5}, "n": {}}}},
    }


def test_a_record_of_another_kind_is_refused() -> None:
    with pytest.raises(CodecError, match="expected a PNCounter"):
        decode(encode(GCounter({"a": 1})), PNCounter)
    with pytest.raises(CodecError, match="expected a gossip message"):
        decode_message(encode(Exposure()))


def _record(body: dict, version: int = codec.SCHEMA_VERSION) -> bytes:
    return msgspec.msgpack.encode({"v": version, "body": body})


@pytest.mark.parametrize(
    ("data", "expected", "match"),
    [
        (b"\xc1garbage", GCounter, "not a valid"),
        (b"\x80\x03(cos\nsystem\n", GCounter, "not a valid"),  # a pickle is not a record
        (_record({"type": "gcounter", "counts": {"a": 1}}, version=2), GCounter, "version 2"),
        (_record({"type": "gcounter", "counts": {"a": -1}}), GCounter, "not a valid"),
        (_record({"type": "gcounter", "counts": {"": 1}}), GCounter, "not a valid"),
        (_record({"type": "gcounter", "counts": {}, "extra": 1}), GCounter, "not a valid"),
        (_record({"type": "gcounter", "counts": {"a": 1.5}}), GCounter, "not a valid"),
        (_record({"type": "rm -rf", "counts": {}}), GCounter, "not a valid"),
        (
            _record({"type": "orset", "entries": {"x": [["a", 1]]}, "compact": {}, "cloud": []}),
            ORSet,
            "invariant",
        ),
        (
            _record({"type": "ack", "sender": "a", "sender_incarnation": 1, "recipient": "b"}),
            AckMessage,
            "not a valid",
        ),
    ],
)
def test_invalid_records_are_refused(data: bytes, expected: type, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        decode(data, expected)


def test_an_orset_with_gaps_in_its_context_round_trips() -> None:
    state, _ = ORSet().add("a", "x")
    state, _ = state.add("a", "y")
    _, delta = state.add("a", "x")  # context {(a,1),(a,3)}: a gap at 2
    assert delta.context.cloud
    assert decode(encode(delta), ORSet) == delta


def test_encoding_refuses_values_it_does_not_know() -> None:
    with pytest.raises(TypeError):
        encode({"a": 1})  # type: ignore[arg-type]
