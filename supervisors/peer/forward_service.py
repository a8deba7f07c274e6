"""The calls a gateway asks and serves on the forward lane besides proposals (see ``forward_rpc``).

- ``read_index`` (Raft members only, both sides): a follower's linearizable read asks the leader's
  gateway, which has its replica confirm leadership by a heartbeat round (``NodeBackend.confirm_read_index``)
  and answers the index; the follower then waits until its own replica applied up to it.
- ``commit`` (served by Raft members to trusted forwarders, i.e. edges): the committed index of an incident,
  waiting for it up to the asked time. An edge's ``POST /v1/incidents`` answers 201/200 with it.

An ask a peer's role does not allow is refused and logged with the peer's name (``frame_refused``) and gets
no answer; the asker times out, which the API turns into a 503 (a read) or a 504 (a proposal).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

import msgspec

from supervisors.peer.forward_rpc import (
    MAX_COMMIT_WAIT_MS,
    CommitAnswer,
    CommitAsk,
    PeerRpc,
    ReadIndexAnswer,
    ReadIndexAsk,
    RpcFailed,
    encode,
)
from supervisors.peer.frames import ForwardFrame

if TYPE_CHECKING:
    from supervisors.peer.gateway import Gateway

__all__ = ["READ_INDEX_CALL_S", "ForwardService"]

# the leader's replica gives up a ReadIndex after node_backend.READ_INDEX_TIMEOUT_S (5 s); the call waits a
# little longer so that the leader's own "not confirmed" reaches the follower rather than a bare timeout
READ_INDEX_CALL_S: Final = 6.0
# calls served at once (a commit lookup may wait up to 30 s): beyond it a call is answered "busy" at once,
# so a flood from a peer costs a bounded number of waiting tasks
MAX_SERVING: Final = 1024


class ForwardService:
    """The gateway's ``read_index`` and ``commit`` calls, both ways. ``gateway.backend`` (the node's
    ``NodeBackend``, set once the loop runs) is what answers them on this node."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        # through the gateway's attributes at call time: unit tests swap in fake links after construction
        self.rpc = PeerRpc(lambda peer, frame: gateway._send(peer, frame), lambda p: gateway.links.state(p))
        self.tasks: set[asyncio.Task[None]] = set()
        self.counts = {"read_index_served": 0, "read_index_asked": 0, "commit_served": 0, "commit_asked": 0}

    # ---- inbound ---------------------------------------------------------------------------------------

    def on_frame(self, peer: str, frame: ForwardFrame) -> None:
        """A ``read_index`` / ``commit`` frame from ``peer`` (its answers too)."""
        raft_members = self.gw.view.raft_members
        if frame.reply:
            if peer not in raft_members:  # we only ever ask Raft members
                return self.gw._refuse(peer, "forward", f"a {frame.kind} answer from a non-member")
            if not self.rpc.answered(peer, frame):
                self.gw._refuse(peer, "forward", f"a {frame.kind} answer to a call made to another peer")
            return
        if not self.gw.is_member:
            return self.gw._refuse(peer, "forward", f"{frame.kind}: this node is not a Raft member")
        busy = len(self.tasks) >= MAX_SERVING
        if frame.kind == "read_index":
            if peer not in raft_members:
                return self.gw._refuse(peer, "forward", "only Raft members may ask for a ReadIndex")
            try:
                msgspec.msgpack.decode(frame.payload, type=ReadIndexAsk)
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                return self.gw._refuse(peer, "forward", f"malformed read_index: {exc}")
            if busy:
                return self._reply(peer, frame, ReadIndexAnswer(-1, f"{self.gw.node} is busy: retry"))
            self._spawn(self._serve_read_index(peer, frame.request_id))
        elif frame.kind == "commit":
            if peer not in self.gw.trusted and peer not in raft_members:
                return self.gw._refuse(
                    peer, "forward", "commit lookup from a node with no trusted key (cluster.trusted_keys)"
                )
            try:
                ask = msgspec.msgpack.decode(frame.payload, type=CommitAsk)
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                return self.gw._refuse(peer, "forward", f"malformed commit lookup: {exc}")
            if busy:
                return self._reply(peer, frame, CommitAnswer(ask.incident_id, -1, f"{self.gw.node} is busy"))
            self._spawn(self._serve_commit(peer, frame.request_id, ask))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _answer(self, peer: str, frame: ForwardFrame) -> None:
        self.gw._send(peer, frame)  # a dropped answer is a timeout for the asker: 503/504, both safe

    def _reply(self, peer: str, ask: ForwardFrame, answer: msgspec.Struct) -> None:
        self._answer(
            peer, ForwardFrame(request_id=ask.request_id, payload=encode(answer), reply=True, kind=ask.kind)
        )

    async def _serve_read_index(self, peer: str, request_id: int) -> None:
        self.counts["read_index_served"] += 1
        backend = self.gw.backend
        if backend is None:
            answer = ReadIndexAnswer(-1, "this gateway has no node backend yet (starting)")
        else:
            result = await backend.confirm_read_index()
            if isinstance(result, str):
                answer = ReadIndexAnswer(-1, result[:1000])
            elif result < 0:
                answer = ReadIndexAnswer(-1, f"{self.gw.node} is not the leader")
            else:
                answer = ReadIndexAnswer(result)
        self.gw.log.debug("read_index_served", peer=peer, index=answer.index, error=answer.error or None)
        self._answer(
            peer, ForwardFrame(request_id=request_id, payload=encode(answer), reply=True, kind="read_index")
        )

    async def _serve_commit(self, peer: str, request_id: int, ask: CommitAsk) -> None:
        self.counts["commit_served"] += 1
        backend = self.gw.backend
        if backend is None:
            answer = CommitAnswer(ask.incident_id, -1, "this gateway has no node backend yet (starting)")
        else:
            index = await backend.wait_committed(ask.incident_id, min(ask.wait_ms, MAX_COMMIT_WAIT_MS) / 1000)
            answer = CommitAnswer(ask.incident_id, -1 if index is None else index)
        self._answer(
            peer, ForwardFrame(request_id=request_id, payload=encode(answer), reply=True, kind="commit")
        )

    # ---- outbound --------------------------------------------------------------------------------------

    async def read_index_from(self, leader: str) -> int | str | None:
        """The read index ``leader`` (another node) confirmed (-1: it says it is not the leader), why it
        could not be had (str), or None when ``leader`` is not another Raft member's node (a sibling
        replica of this node: the node backend asks it locally)."""
        if leader == self.gw.node or leader not in self.gw.members:
            return None
        self.counts["read_index_asked"] += 1
        try:
            answer = await self.rpc.call(
                leader, "read_index", ReadIndexAsk(), ReadIndexAnswer, READ_INDEX_CALL_S
            )
        except RpcFailed as exc:
            return f"ReadIndex not confirmed by the leader {leader} (unreachable or no quorum?): {exc}"
        if answer.error:
            return f"ReadIndex not confirmed by {leader}: {answer.error}"
        return answer.index

    async def commit_index(
        self, member: str, incident_id: str, wait_s: float, timeout: float | None = None
    ) -> int:
        """The index at which ``member``'s log has ``incident_id`` (-1: not within ``wait_s``); raises
        :class:`RpcFailed` when ``member`` did not answer within ``timeout`` (default: the wait + 2 s) or
        could not look it up."""
        self.counts["commit_asked"] += 1
        wait_ms = max(0, min(int(wait_s * 1000), MAX_COMMIT_WAIT_MS))
        timeout = wait_ms / 1000 + 2.0 if timeout is None else timeout
        answer = await self.rpc.call(member, "commit", CommitAsk(incident_id, wait_ms), CommitAnswer, timeout)
        if answer.incident_id != incident_id:
            raise RpcFailed(f"{member} answered a commit lookup for {answer.incident_id!r}")
        if answer.error:  # not looked up (busy, starting): unknown, not "not committed"
            raise RpcFailed(f"{member} could not look {incident_id!r} up: {answer.error}")
        return answer.index

    def status(self) -> dict[str, int]:
        return {**self.counts, "calls_outstanding": self.rpc.outstanding()}
