"""Request/answer calls between gateways on the forward lane: ReadIndex from the leader, commit lookups.

Why on the forward lane and not through the Raft replicas: a follower's HTTP API lives in its gateway
process, and the leader's gateway can ask its own replica for a ReadIndex through the node's control socket
(``NodeBackend.confirm_read_index``), exactly as a local linearizable read does. So the follower's gateway
asks the leader's gateway (``read_index``), which answers the confirmed index, and the follower waits until
its own replica applied up to it (``NodeBackend._read_index``). An edge (no log of its own) asks a member
at which index an incident is committed (``commit``), waiting for it if need be.

Every payload is a msgspec struct decoded against its schema, never pickle. Who may ask what is decided by
the gateway (``Gateway._on_forward``): only Raft members ask or serve ReadIndex; ``commit`` is served by
Raft members to the nodes whose Ed25519 key the topology trusts (the nodes that may forward proposals).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Annotated, Final, TypeVar

import msgspec

from supervisors.peer.frames import ForwardFrame, ForwardKind

__all__ = ["CommitAnswer", "CommitAsk", "PeerRpc", "ReadIndexAnswer", "ReadIndexAsk", "RpcFailed"]

MAX_COMMIT_WAIT_MS: Final = 30_000  # a member holds a commit lookup at most this long
_Index = Annotated[int, msgspec.Meta(ge=-1, le=2**63 - 1)]
_Reason = Annotated[str, msgspec.Meta(max_length=1000)]
_Iid = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ReadIndexAsk(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Confirm your leadership and tell me the read index."""


class ReadIndexAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``index`` >= 0: confirmed (the leader's commit index when a majority heard it after the ask);
    -1: not confirmed, ``error`` says why (not the leader any more, no quorum, its replica did not answer)."""

    index: _Index
    error: _Reason = ""


class CommitAsk(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """At which index is ``incident_id`` committed? Wait up to ``wait_ms`` for it (0: answer at once)."""

    incident_id: _Iid
    wait_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_COMMIT_WAIT_MS)] = 0


class CommitAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``index``: the incident's index in the committed log, or -1 (not committed within the wait)."""

    incident_id: _Iid
    index: _Index
    error: _Reason = ""


class RpcFailed(Exception):
    """No answer: the link is down, its queue was full, or the peer did not answer in time. Whether the
    peer acted on the request is unknown; the message says which case it was."""


_Answer = TypeVar("_Answer", ReadIndexAnswer, CommitAnswer)
_ENCODE = msgspec.msgpack.Encoder().encode


def encode(body: msgspec.Struct) -> bytes:
    return _ENCODE(body)


def decode(payload: bytes, kind: type[_Answer]) -> _Answer:
    """``payload`` as ``kind``; raises msgspec.DecodeError / ValidationError on anything else."""
    return msgspec.msgpack.decode(payload, type=kind)


class PeerRpc:
    """Outstanding calls of this gateway, matched with their answers by (peer, kind, request_id).

    ``send(peer, frame) -> bool`` queues a frame (False: dropped); ``state(peer)`` is the link's state
    (``up`` / ``suspect`` / ``down``): a call to a peer whose link is down fails at once instead of
    waiting its whole timeout."""

    def __init__(self, send: Callable[[str, ForwardFrame], bool], state: Callable[[str], str]) -> None:
        self._send = send
        self._state = state
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, ForwardKind, asyncio.Future[bytes]]] = {}

    async def call(
        self, peer: str, kind: ForwardKind, body: msgspec.Struct, answer: type[_Answer], timeout: float
    ) -> _Answer:
        state = self._state(peer)
        if state == "down":
            raise RpcFailed(f"the link to {peer} is down")
        rid = next(self._ids)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (peer, kind, future)
        try:
            if not self._send(peer, ForwardFrame(request_id=rid, payload=encode(body), kind=kind)):
                raise RpcFailed(f"the forward queue to {peer} is full (link {state})")
            try:
                payload = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise RpcFailed(f"{peer} did not answer {kind} within {timeout:g}s (link {state})") from None
        finally:
            self._pending.pop(rid, None)
        try:
            return decode(payload, answer)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise RpcFailed(f"{peer} answered {kind} with a malformed body: {exc}") from None

    def answered(self, peer: str, frame: ForwardFrame) -> bool:
        """Deliver an answer. False only for an answer to a call of ours from another peer or of another
        kind (refuse it); a late one (its call timed out) is dropped quietly."""
        entry = self._pending.get(frame.request_id)
        if entry is None:
            return True
        if entry[0] != peer or entry[1] != frame.kind:
            return False
        if not entry[2].done():
            entry[2].set_result(frame.payload)
        return True

    def outstanding(self) -> int:
        return len(self._pending)
