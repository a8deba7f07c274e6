"""msgpack encoding of CRDT states and gossip messages, with a schema checked on decode (pure).

Never pickle: gossip crosses nodes, and unpickling peer bytes would run peer-chosen code. Every
record is an envelope `{"v": SCHEMA_VERSION, "body": {"type": <kind>, ...}}`. Decoding checks the
version, the kind the caller expects, the field types and bounds (msgspec), and then the CRDT's own
invariants (its constructor), so a decoded value is as valid as a locally built one.

The wire structs are kept apart from the domain classes on purpose: renaming a Python attribute
must not silently change the bytes that other nodes and old snapshots hold. Encoding is
deterministic (maps and sets sorted), so equal values encode to equal bytes.

Integers are msgpack integers: counts up to 2**64 - 1 micro-units.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

import msgspec

from actors.crdt.counters import GCounter, PNCounter
from actors.crdt.exposure import Exposure
from actors.crdt.gossip import AckMessage, DeltaMessage, GossipMessage
from actors.crdt.orset import CausalContext, Dot, ORSet

SCHEMA_VERSION = 1

_NonNegative = Annotated[int, msgspec.Meta(ge=0)]
_Positive = Annotated[int, msgspec.Meta(ge=1)]
_Name = Annotated[str, msgspec.Meta(min_length=1)]
_WireDot = tuple[_Name, _Positive]


class CodecError(ValueError):
    """Bytes that are not a valid record of the expected kind and schema version."""


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    pass


class _GCounterWire(_Wire, frozen=True, tag="gcounter"):
    counts: dict[_Name, _NonNegative]


class _PNCounterWire(_Wire, frozen=True, tag="pncounter"):
    p: dict[_Name, _NonNegative]
    n: dict[_Name, _NonNegative]


class _ExposureWire(_Wire, frozen=True, tag="exposure"):
    counters: dict[_Name, _PNCounterWire]


class _ORSetWire(_Wire, frozen=True, tag="orset"):
    entries: dict[str, frozenset[_WireDot]]
    compact: dict[_Name, _NonNegative]
    cloud: frozenset[_WireDot]


class _DeltaWire(_Wire, frozen=True, tag="delta"):
    sender: _Name
    sender_incarnation: _NonNegative
    recipient: _Name
    recipient_incarnation: _NonNegative | None
    seq: _NonNegative
    payload: _ExposureWire
    full_state: bool


class _AckWire(_Wire, frozen=True, tag="ack"):
    sender: _Name
    sender_incarnation: _NonNegative
    recipient: _Name
    recipient_incarnation: _NonNegative
    seq: _NonNegative


_Body = _GCounterWire | _PNCounterWire | _ExposureWire | _ORSetWire | _DeltaWire | _AckWire


class _Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: int
    body: _Body


class _RawEnvelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: int
    body: msgspec.Raw  # decoded only once the version is known


Codable = GCounter | PNCounter | Exposure | ORSet | DeltaMessage | AckMessage
T = TypeVar("T", GCounter, PNCounter, Exposure, ORSet, DeltaMessage, AckMessage)

_ENCODER = msgspec.msgpack.Encoder(order="deterministic")
_ENVELOPE_DECODER = msgspec.msgpack.Decoder(_RawEnvelope)
_BODY_DECODER = msgspec.msgpack.Decoder(_Body)


def encode(value: Codable) -> bytes:
    """The versioned msgpack record of a CRDT state or gossip message."""
    return _ENCODER.encode(_Envelope(v=SCHEMA_VERSION, body=_to_wire(value)))


def decode(data: bytes, expected: type[T]) -> T:
    """Decode a record made by `encode`, insisting that it holds an `expected` value.

    Raises `CodecError` for anything else: malformed bytes, another schema version, another kind
    of value, or a value that breaks the CRDT's invariants.
    """
    value = _decode_any(data, expected.__name__)
    if not isinstance(value, expected):
        raise CodecError(f"expected a {expected.__name__} record, got a {type(value).__name__}")
    return value


def decode_message(data: bytes) -> GossipMessage:
    """Decode a gossip message of either kind; raises `CodecError` like `decode`."""
    value = _decode_any(data, "gossip message")
    if not isinstance(value, DeltaMessage | AckMessage):
        raise CodecError(f"expected a gossip message record, got a {type(value).__name__}")
    return value


def _decode_any(data: bytes, expected: str) -> Codable:
    try:
        envelope = _ENVELOPE_DECODER.decode(data)
        body = None if envelope.v != SCHEMA_VERSION else _BODY_DECODER.decode(envelope.body)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # ValidationError is a subclass
        raise CodecError(f"not a valid {expected} record: {error}") from error
    if body is None:
        raise CodecError(
            f"record has schema version {envelope.v}, this node reads {SCHEMA_VERSION}; "
            "upgrade the older node (or migrate the snapshot) first"
        )
    try:
        return _from_wire(body)
    except (ValueError, TypeError) as error:
        raise CodecError(f"{expected} record breaks an invariant: {error}") from error


def _to_wire(value: Codable) -> _Body:
    match value:
        case GCounter():
            return _GCounterWire(counts=dict(value.counts))
        case PNCounter():
            return _pn_to_wire(value)
        case Exposure():
            return _exposure_to_wire(value)
        case ORSet():
            return _ORSetWire(
                entries=dict(value.entries),
                compact=dict(value.context.compact),
                cloud=value.context.cloud,
            )
        case DeltaMessage():
            return _DeltaWire(
                sender=value.sender,
                sender_incarnation=value.sender_incarnation,
                recipient=value.recipient,
                recipient_incarnation=value.recipient_incarnation,
                seq=value.seq,
                payload=_exposure_to_wire(value.payload),
                full_state=value.full_state,
            )
        case AckMessage():
            return _AckWire(
                sender=value.sender,
                sender_incarnation=value.sender_incarnation,
                recipient=value.recipient,
                recipient_incarnation=value.recipient_incarnation,
                seq=value.seq,
            )
    raise TypeError(f"cannot encode {type(value).__name__}; expected one of {Codable}")


def _pn_to_wire(counter: PNCounter) -> _PNCounterWire:
    return _PNCounterWire(p=dict(counter.p.counts), n=dict(counter.n.counts))


def _exposure_to_wire(exposure: Exposure) -> _ExposureWire:
    return _ExposureWire(counters={p: _pn_to_wire(c) for p, c in exposure.counters.items()})


def _from_wire(body: _Body) -> Codable:
    match body:
        case _GCounterWire():
            return GCounter(body.counts)
        case _PNCounterWire():
            return _pn_from_wire(body)
        case _ExposureWire():
            return _exposure_from_wire(body)
        case _ORSetWire():
            context = CausalContext(body.compact, frozenset(Dot(*d) for d in body.cloud))
            entries = {e: frozenset(Dot(*d) for d in dots) for e, dots in body.entries.items()}
            return ORSet(entries, context)
        case _DeltaWire():
            return DeltaMessage(
                sender=body.sender,
                sender_incarnation=body.sender_incarnation,
                recipient=body.recipient,
                recipient_incarnation=body.recipient_incarnation,
                seq=body.seq,
                payload=_exposure_from_wire(body.payload),
                full_state=body.full_state,
            )
        case _AckWire():
            return AckMessage(
                sender=body.sender,
                sender_incarnation=body.sender_incarnation,
                recipient=body.recipient,
                recipient_incarnation=body.recipient_incarnation,
                seq=body.seq,
            )
    raise AssertionError(f"unhandled wire kind {type(body).__name__}")  # the union is closed


def _pn_from_wire(body: _PNCounterWire) -> PNCounter:
    return PNCounter(GCounter(body.p), GCounter(body.n))


def _exposure_from_wire(body: _ExposureWire) -> Exposure:
    return Exposure({pollutant: _pn_from_wire(c) for pollutant, c in body.counters.items()})
