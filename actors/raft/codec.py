"""Bytes for every Raft value that crosses a node or reaches disk: msgspec MessagePack.

Never pickle: a peer's bytes are decoded against a fixed schema, so garbage or a hostile peer
yields a CodecError, not code execution. Pure: msgspec and stdlib only.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from actors.raft.errors import CodecError
from actors.raft.types import ConfChange, ConfState, Entry, HardState, Message, Snapshot

T = TypeVar("T")

_ENCODER = msgspec.msgpack.Encoder()
_DECODERS: dict[type[Any], msgspec.msgpack.Decoder[Any]] = {
    cls: msgspec.msgpack.Decoder(cls) for cls in (Message, Entry, HardState, Snapshot, ConfState, ConfChange)
}


def _encode(value: object) -> bytes:
    return _ENCODER.encode(value)


def _decode(data: bytes, cls: type[T]) -> T:
    try:
        return _DECODERS[cls].decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise CodecError(f"cannot decode {cls.__name__} from {len(data)} bytes: {error}") from None


def encode_message(msg: Message) -> bytes:
    return _encode(msg)


def decode_message(data: bytes) -> Message:
    return _decode(data, Message)


def encode_entry(entry: Entry) -> bytes:
    return _encode(entry)


def decode_entry(data: bytes) -> Entry:
    return _decode(data, Entry)


def encode_hard_state(hs: HardState) -> bytes:
    return _encode(hs)


def decode_hard_state(data: bytes) -> HardState:
    return _decode(data, HardState)


def encode_snapshot(snap: Snapshot) -> bytes:
    return _encode(snap)


def decode_snapshot(data: bytes) -> Snapshot:
    return _decode(data, Snapshot)


def encode_conf_state(cs: ConfState) -> bytes:
    return _encode(cs)


def decode_conf_state(data: bytes) -> ConfState:
    return _decode(data, ConfState)


def encode_conf_change(change: ConfChange) -> bytes:
    return _encode(change)


def decode_conf_change(data: bytes) -> ConfChange:
    return _decode(data, ConfChange)
