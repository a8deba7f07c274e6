"""``POST /v1/incidents`` on an edge node: 201 ``{"index"}`` once a Raft member's log has it committed.

An edge has no log of its own, so (see ``forward_service``):
1. it asks a Raft member it has a link to whether the incident is already committed (``commit``, no wait;
   the member confirms its answer with a ReadIndex, so a member that has not applied the latest commit
   yet does not say no): yes -> 200 with the original index (a retry). No link up, or no answer -> 503:
   nothing was appended.
2. it appends the incident durably to its own ``incidents/proposed``, the path its detections take: the
   gateway forwards it, signed, to a member (the existing forward lane, with its durable offset), and Raft
   applies it once (``incident_id`` is the key at apply);
3. it asks a member (waiting) for the committed index -> 201 with it, or 504 at the deadline: then the
   incident waits in the edge's backlog and is committed later, and a retry with the same incident_id
   answers 200 with its index.
Concurrent requests for one incident_id share one attempt (the first gets 201, the others 200).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final

from supervisors.peer.api import ProposeOutcome
from supervisors.peer.forward_rpc import RpcFailed

if TYPE_CHECKING:
    from supervisors.peer.gateway import Gateway

__all__ = ["EdgeProposer"]

CHECK_S: Final = 2.0  # the "already committed?" lookup: no answer by then -> 503 (nothing appended yet)
ASK_SLICE_S: Final = 2.0  # a waiting lookup is re-asked (maybe of another member) after this
ANSWER_S: Final = 1.0  # how long past its wait a lookup's answer may take to arrive
RETRY_PAUSE_S: Final = 0.1
KNOWN_MAX: Final = 65_536  # incident_id -> index remembered for repeats (the members answer the others)


class EdgeProposer:
    """The edge node's ``propose`` for the HTTP API (see the module docstring)."""

    def __init__(self, gateway: Gateway, commit_timeout_s: float = 10.0) -> None:
        self.gw = gateway
        self.commit_timeout_s = commit_timeout_s
        self.known: OrderedDict[str, int] = OrderedDict()
        self.timed_out: OrderedDict[str, None] = OrderedDict()  # answered 504: appended, outcome unknown
        self.attempts: dict[str, asyncio.Future[ProposeOutcome]] = {}

    async def propose(self, incident: dict[str, Any]) -> ProposeOutcome:
        iid = incident["incident_id"]
        if iid in self.known:
            return ProposeOutcome("duplicate", self.known[iid])
        attempt = self.attempts.get(iid)
        if attempt is not None:  # the same incident in flight: share its outcome
            outcome = await asyncio.shield(attempt)
            if outcome.status in ("committed", "duplicate"):
                return ProposeOutcome("duplicate", outcome.index)
            return outcome
        attempt = self.attempts[iid] = asyncio.get_running_loop().create_future()
        try:
            outcome = await self._propose(iid, incident)
        except Exception as exc:  # unknown whether it was appended: never a 503
            outcome = ProposeOutcome("timeout", reason=f"the edge failed handling it ({type(exc).__name__})")
            raise
        finally:
            del self.attempts[iid]
            attempt.set_result(outcome)
        return outcome

    def _target(self) -> str | None:
        return self.gw._pick_target()  # a member with its link up, the forwarder's own target first

    def _remember(self, iid: str, index: int) -> None:
        self.known[iid] = index
        self.timed_out.pop(iid, None)
        if len(self.known) > KNOWN_MAX:
            self.known.popitem(last=False)

    def _not_appended(self, iid: str, reason: str) -> ProposeOutcome:
        """503 (definitely not appended), unless an earlier attempt with ``iid`` was appended here and may
        still commit: answered 504 then, or a client would take "not appended" for the whole incident."""
        backend = self.gw.backend
        if backend is None:  # the gateway is not started: nothing was ever appended through it
            return ProposeOutcome("unavailable", reason=reason)
        # a timed-out attempt may be forwarded already, so no longer in the backlog the backend looks at
        return backend.not_appended(iid, reason, after=self.gw.forward_offset, earlier=iid in self.timed_out)

    async def _propose(self, iid: str, incident: dict[str, Any]) -> ProposeOutcome:
        deadline = time.monotonic() + self.commit_timeout_s  # the whole request: a 504 by then at worst
        backend = self.gw.backend
        target = self._target()
        if backend is None or target is None:
            members = ", ".join(self.gw.members) or "none"
            return self._not_appended(
                iid, f"no link up to a Raft member ({members}): not appended; retry when the edge is ready"
            )
        try:
            index = await self.gw.calls.commit_index(target, iid, 0.0, timeout=CHECK_S)
        except RpcFailed as exc:
            return self._not_appended(iid, f"could not reach a Raft member: {exc}; not appended")
        if index >= 0:
            self._remember(iid, index)
            return ProposeOutcome("duplicate", index)
        try:
            # bounded: a writer stuck in the log must not hold the request; the append may still land
            await asyncio.wait_for(
                asyncio.shield(backend.append_proposal(incident)), max(0.1, deadline - time.monotonic())
            )
        except TimeoutError:
            pass  # unknown: wait for the commit like any proposal (then 504)
        except Exception as exc:  # the transaction did not commit: nothing was appended
            reason = f"the edge's log refused the append: {type(exc).__name__}: {exc}"
            self.gw.log.error("incident_append_failed", incident_id=iid, reason=reason)
            return self._not_appended(iid, reason)
        last_error = "no Raft member answered"
        while (remaining := deadline - time.monotonic()) > 0:
            target = self._target()
            if target is None:
                last_error = "no link up to a Raft member"
                await asyncio.sleep(min(RETRY_PAUSE_S * 2, remaining))
                continue
            wait = max(0.0, min(ASK_SLICE_S, remaining - ANSWER_S))
            try:
                index = await self.gw.calls.commit_index(target, iid, wait, timeout=wait + ANSWER_S)
            except RpcFailed as exc:
                last_error = str(exc)
                await asyncio.sleep(min(RETRY_PAUSE_S, max(0.0, deadline - time.monotonic())))
                continue
            if index >= 0:
                self._remember(iid, index)
                return ProposeOutcome("committed", index)
            last_error = f"not committed yet on {target}"
        self.timed_out[iid] = None
        if len(self.timed_out) > KNOWN_MAX:
            self.timed_out.popitem(last=False)
        return ProposeOutcome(
            "timeout",
            reason=f"not committed within {self.commit_timeout_s:g}s ({last_error}); it waits in the "
            "edge's durable backlog",
        )
