"""``NodeBackend``: the HTTP API's backend on a running node, from a separate process, without the gateway.

How it reaches the node, and why this way:
- **Proposals go through the log, as the inference actor's do.** ``propose`` appends the incident to the
  node's ``incidents/proposed`` stream in one durable transaction (concurrent requests share one group
  commit); the publishing Raft replica takes proposals from there (it is woken by the stream's doorbell),
  signs and proposes them, and re-proposes until applied. Nothing the API accepted can be lost by a crash
  of this process, the replica or the node: it is on disk before the replica hears of it.
- **Commit is observed, not polled.** This process subscribes to ``incidents/committed`` with its own
  doorbell FIFO (``actors.wakeups.Inbox``) watched by the asyncio loop (``loop.add_reader``); each ring
  reads the stream after what it has seen and resolves the requests waiting for those incident_ids. A
  repeated incident_id is looked up on disk (``actors.committed_index``: the replica writes the key with
  the record), so neither memory nor the start grows with the log's history; only a log the replica has
  not indexed yet (written before the index existed) is read whole into a map, as it was before.
- **The replica is asked by path through the node's control socket** (JSON lines, ``supervisors.control``)
  for its status (``{"op": "raft_status"}``) and for ReadIndex (``{"op": "read_index"}``). When the
  leader is on another node, the peer gateway sets ``remote_read_index``: the leader's gateway confirms
  the read index over the peer link and this waits until the local replica applied up to it. A proposal is
  refused with 503 only when the replica said it knows no leader or could not be asked at all: then the
  incident was definitely not appended. Once appended, the answer is 201/200 or 504, never 503.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from actors import committed_index
from actors.eventlog import EventLog, open_event_log
from actors.logs import get_logger
from actors.quantiles import quantiles
from actors.streams import COMMITTED_INCIDENTS, INFERENCE_LATENCY_PREFIX, PROPOSED_INCIDENTS
from actors.wakeups import Inbox, wake_dir
from supervisors.control_paths import connect_path
from supervisors.peer.api import ProposeOutcome, ReadOutcome

__all__ = ["ControlUnavailable", "NodeBackend"]

LEADER_CACHE_S = 0.5  # a leader seen this recently is trusted for admitting a proposal (see _leader_known)
ASK_TIMEOUT_S = 3.0
READ_INDEX_TIMEOUT_S = 5.0
# a linearizable read answers within this (503 at worst: reads are safe to retry), below the 12 s a client
# such as the Jepsen harness waits: confirming the read index on another node and applying up to it
LINEARIZABLE_DEADLINE_S = 10.0
TAIL_BATCH = 4096
LOOKUP_CONFIRM_S = 1.0  # an edge's "already committed?" lookup waits this long for the ReadIndex (CHECK_S 2)
PENDING_SCAN_MAX = 100_000  # proposals read to tell "an earlier attempt still waits" (a 504, not a 503)
EARLIER_ATTEMPT = (
    "an earlier attempt with this incident_id is still waiting to be committed, so the outcome is unknown "
    "(not a 503: it may still commit); retry with the same incident_id"
)
NO_REPLICA = "this node runs no Raft replica (an edge node): ask a gateway, a Raft member"
_CONSUMER = "http-api"


class ControlUnavailable(Exception):
    """The node's control socket did not answer (node not running, restarting, or the actor did not
    answer in time); the message says which."""


class _Control:
    """One multiplexed connection to the node's control socket (answers matched by request id)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = connect_path(data_dir)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.pump: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()

    async def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        await self._connect()
        assert self.writer is not None
        rid = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        try:
            self.writer.write(json.dumps({**request, "id": rid}, allow_nan=False).encode() + b"\n")
            await self.writer.drain()
            return await asyncio.wait_for(future, timeout + 2.0)  # the node answers its own timeouts
        except (OSError, ConnectionError) as exc:
            self._reset(f"{type(exc).__name__}: {exc}")
            raise ControlUnavailable(f"control socket {self.path}: {exc}") from None
        except TimeoutError:
            raise ControlUnavailable(
                f"control socket {self.path}: no answer within {timeout + 2.0:g}s"
            ) from None
        finally:
            self.pending.pop(rid, None)

    async def ask(self, path: str, message: Any, timeout: float = ASK_TIMEOUT_S) -> Any:
        answer = await self.call({"op": "ask", "path": path, "message": message, "timeout": timeout}, timeout)
        if not answer.get("ok"):
            raise ControlUnavailable(f"{path}: {answer.get('kind')}: {answer.get('error')}")
        return answer.get("reply")

    async def _connect(self) -> None:
        async with self.lock:
            if self.writer is not None and not self.writer.is_closing():
                return
            try:
                self.reader, self.writer = await asyncio.open_unix_connection(str(self.path), limit=64 << 20)
            except OSError as exc:
                raise ControlUnavailable(
                    f"no node answers on {self.path} ({exc.strerror or exc}): is the node running?"
                ) from None
            self.pump = asyncio.create_task(self._pump(self.reader))

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        why = "connection closed by the node"
        try:
            while line := await reader.readline():
                with contextlib.suppress(ValueError):
                    answer = json.loads(line)
                    future = self.pending.get(answer.get("id"))
                    if future is not None and not future.done():
                        future.set_result(answer)
        except (OSError, ValueError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        self._reset(why)

    def _reset(self, why: str) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = self.reader = None
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ControlUnavailable(f"control socket {self.path}: {why}"))

    async def close(self) -> None:
        self._reset("closed")
        if self.pump is not None:
            self.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.pump


class _AppendFailed(Exception):
    """The durable append of a proposal raised: its transaction did not commit."""


class _Waiter:
    """The requests waiting for one incident_id to be committed: its (index, ``proposed_seq``) once it is,
    and the seq this node's append of it got (None while unknown)."""

    def __init__(self, future: asyncio.Future[tuple[int, int | None]]) -> None:
        self.future = future
        self.waiting = 0
        self.seq: int | None = None

    def outcome(self, index: int, proposed_seq: int | None, first: bool) -> ProposeOutcome:
        """201 for the request whose append is the proposal the log applied; 200 for the others. The
        replica marks the committed record of its node's own winning proposal with that proposal's seq, so a
        request that raced one already committed elsewhere (a retry on another node that had not applied it
        yet) learns it was a duplicate. An append whose seq is unknown (it timed out) keeps the old rule:
        the first request is the one that committed it. (A replica restarted between proposing and applying
        proposes again and cannot mark its first proposal: its request then hears 200, with the right
        index.)"""
        ours = self.seq is None or proposed_seq == self.seq
        return ProposeOutcome("committed" if first and ours else "duplicate", index)


class NodeBackend:
    """The :class:`supervisors.peer.api.Backend` of one running node (see the module docstring).

    ``replica_path`` is the publishing Raft replica's tree path (e.g. ``root/incident-log``); None on a node
    that runs none (an edge: nothing here asks for one, and its status says ``raft: null``). Call
    :meth:`start` inside the loop before serving, :meth:`close` after."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        node: str,
        replica_path: str | None,
        *,
        commit_timeout_s: float = 10.0,
        leader_cache_s: float = LEADER_CACHE_S,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.node = node
        self.replica_path = replica_path
        self.commit_timeout_s = commit_timeout_s
        self.leader_cache_s = leader_cache_s
        self.log = get_logger(component="http_api")
        self.control = _Control(self.data_dir)
        self.event_log: EventLog | None = None
        self.inbox: Inbox | None = None
        # incident_id -> committed index, only while the log is not indexed on disk (``indexed`` False)
        self.index_of: dict[str, int] = {}
        self.indexed = False
        self.seen = 0  # committed stream read up to here
        self.waiters: dict[str, _Waiter] = {}
        self.appends: list[tuple[dict[str, Any], asyncio.Future[int]]] = []
        self.appender: asyncio.Task[None] | None = None
        self.raft_cache: tuple[float, dict[str, Any]] | None = None
        self.raft_inflight: asyncio.Future[dict[str, Any] | None] | None = None
        self.raft_error = ""
        self.tree: Any = None
        self.caught_up_once = False
        self.ingest_to_commit: collections.deque[float] = collections.deque(maxlen=1024)
        self.tree_error = "not asked yet"
        # incident_id -> futures of commit lookups (the peer gateway serving an edge's `commit` call)
        self.commit_waits: dict[str, list[asyncio.Future[int]]] = {}
        # set by the peer gateway: the read index confirmed by the leader on another node (int; -1: it is
        # not the leader), why not (str), or None when ``leader`` is not another node of the cluster
        self.remote_read_index: Callable[[str], Awaitable[int | str | None]] | None = None

    # -- life cycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the log and subscribe (optional: every entry point does it on first use)."""
        self._ensure_started()

    def _ensure_started(self) -> EventLog:
        if self.event_log is not None:
            return self.event_log
        log = open_event_log(self.data_dir / "eventlog")
        root = wake_dir(self.data_dir)
        _remove_stale_inboxes(root)
        # subscribe BEFORE the first read: a commit between the two rings the inbox, none is missed
        self.inbox = Inbox(root, COMMITTED_INCIDENTS, f"{_CONSUMER}.{os.getpid()}")
        asyncio.get_running_loop().add_reader(self.inbox.fd, self._on_ring)
        self.event_log = log
        self.indexed = committed_index.complete(log)
        if self.indexed:  # the past is on disk: read only what is committed from now on
            self.seen = log.last_seq(COMMITTED_INCIDENTS)
        self._catch_up()
        self.log.info(
            "http_api_backend_started", node=self.node, replica=self.replica_path, committed=self.seen
        )
        return log

    async def close(self) -> None:
        if self.inbox is not None:
            asyncio.get_running_loop().remove_reader(self.inbox.fd)
            self.inbox.close()
            with contextlib.suppress(OSError):
                os.unlink(self.inbox.path)  # no FIFO left for producers to ring
            self.inbox = None
        if self.appender is not None:
            with contextlib.suppress(Exception):
                await self.appender
        await self.control.close()

    # -- the committed stream -----------------------------------------------------------------------

    def _on_ring(self) -> None:
        assert self.inbox is not None
        self.inbox.drain()
        try:
            self._catch_up()
        except Exception as exc:  # an unreadable record: say so; POSTs then answer 504, never a wrong 201
            self.log.error(
                "http_api_tail_failed", after=self.seen, reason=f"{type(exc).__name__}: {exc}"[:500]
            )

    def _catch_up(self) -> None:
        assert self.event_log is not None  # _ensure_started() sets it before the first call
        # seen as it is committed (not the history read at start): the reading's ingest -> now is the
        # detection path's latency through inference and the Raft log, as far as this process can see it
        live, now = self.caught_up_once, time.time()
        self.caught_up_once = True
        if not self.indexed and committed_index.complete(self.event_log):
            self.indexed = True  # the replica finished indexing an older log: drop the map
            self.index_of.clear()
        while True:
            records = self.event_log.read(COMMITTED_INCIDENTS, after=self.seen, limit=TAIL_BATCH)
            for rec in records:
                self.seen = rec.seq
                payload = rec.payload if isinstance(rec.payload, dict) else {}
                incident = payload.get("incident")
                if not isinstance(incident, dict) or not isinstance(incident.get("incident_id"), str):
                    continue
                iid = incident["incident_id"]
                index = int(payload.get("index", rec.seq))
                if not self.indexed:
                    self.index_of.setdefault(iid, index)
                ingested = (incident.get("payload") or {}).get("ingested_at")
                if live and isinstance(ingested, int | float) and not isinstance(ingested, bool):
                    self.ingest_to_commit.append(max(0.0, now - float(ingested)))
                waiter = self.waiters.pop(iid, None)
                if waiter is not None and not waiter.future.done():
                    proposed_seq = payload.get("proposed_seq")
                    waiter.future.set_result((index, proposed_seq if type(proposed_seq) is int else None))
                for future in self.commit_waits.pop(iid, ()):
                    if not future.done():
                        future.set_result(index)
            if len(records) < TAIL_BATCH:
                return

    def committed_index_of(self, incident_id: str) -> int | None:
        """The committed index of ``incident_id`` in this node's log, None if it is not committed there."""
        if self.indexed:
            assert self.event_log is not None  # indexed is set once the log is open
            return committed_index.lookup(self.event_log, incident_id)
        return self.index_of.get(incident_id)

    # -- propose ------------------------------------------------------------------------------------

    async def propose(self, incident: dict[str, Any]) -> ProposeOutcome:
        self._ensure_started()
        iid = incident["incident_id"]
        self._catch_up()
        known = self.committed_index_of(iid)
        if known is not None:
            return ProposeOutcome("duplicate", known)
        waiter = self.waiters.get(iid)
        first = waiter is None
        if waiter is None:
            if not await self._leader_known():
                return self.not_appended(iid, f"no Raft leader known: {self.raft_error}")
            known = self.committed_index_of(iid)
            if known is not None:  # committed while we asked (a retry of an earlier attempt)
                return ProposeOutcome("duplicate", known)
            waiter = self.waiters.get(iid)
            first = waiter is None
        deadline = time.monotonic() + self.commit_timeout_s
        if waiter is None:
            waiter = self.waiters[iid] = _Waiter(asyncio.get_running_loop().create_future())
            try:
                # bounded too: a writer stuck in the log (a paused process holding LMDB's write lock) must
                # not hold the request; the append may still land later, so that is a 504, not a 503
                waiter.seq = await asyncio.wait_for(
                    asyncio.shield(self._append(incident)), self.commit_timeout_s
                )
            except TimeoutError:
                pass  # unknown: wait out the deadline below like any proposal (then 504)
            except Exception as exc:  # the transaction did not commit: nothing was appended
                self.waiters.pop(iid, None)
                reason = f"the node's log refused the append: {type(exc).__name__}: {exc}"
                waiter.future.set_exception(_AppendFailed(reason))  # joiners get the same answer
                waiter.future.exception()  # retrieved here: no "never retrieved" warning when nobody joined
                self.log.error("incident_append_failed", incident_id=iid, reason=reason)
                return self.not_appended(iid, reason)
        waiter.waiting += 1
        try:
            remaining = max(0.0, deadline - time.monotonic())
            index, proposed_seq = await asyncio.wait_for(asyncio.shield(waiter.future), remaining)
        except _AppendFailed as exc:
            return ProposeOutcome("unavailable", reason=str(exc))
        except TimeoutError:
            self._catch_up()  # resolves the waiter if the record is there by now
            if not waiter.future.done():
                return ProposeOutcome("timeout", reason=f"not committed within {self.commit_timeout_s:g}s")
            index, proposed_seq = waiter.future.result()
        finally:
            waiter.waiting -= 1
            if waiter.waiting == 0 and not waiter.future.done() and self.waiters.get(iid) is waiter:
                del self.waiters[iid]  # nobody waits any more; a later commit is still indexed
        return waiter.outcome(index, proposed_seq, first)

    def not_appended(
        self, incident_id: str, reason: str, after: int | None = None, earlier: bool = False
    ) -> ProposeOutcome:
        """This request appended nothing, for ``reason``: a 503, unless an earlier attempt appended the
        incident and it may still commit (``earlier``, as the caller knows, or :meth:`still_proposed`),
        then a 504: a 503 says "not appended" of the incident, not of the request."""
        if earlier or self.still_proposed(incident_id, after):
            return ProposeOutcome("timeout", reason=f"{reason}; but {EARLIER_ATTEMPT}")
        return ProposeOutcome("unavailable", reason=reason)

    def still_proposed(self, incident_id: str, after: int | None = None) -> bool:
        """Whether ``incident_id`` waits in this node's ``incidents/proposed`` after ``after`` (default: what
        the publishing replica has not yet seen applied): appended by an earlier request (a 504) or a
        detection, so it may still commit, and an answer for it may not say "not appended"."""
        log = self._ensure_started()
        start = self._publisher_offset(log) if after is None else after
        for rec in log.iter(PROPOSED_INCIDENTS, after=start, limit=PENDING_SCAN_MAX):
            if isinstance(rec.payload, dict) and rec.payload.get("incident_id") == incident_id:
                return True
        return False

    async def wait_committed(self, incident_id: str, timeout: float) -> int | None:
        """The committed index of ``incident_id`` once this node's log has it (None: not within
        ``timeout``). Proposes nothing: the peer gateway answers an edge's ``commit`` lookups with it.

        ``timeout`` 0 is an edge asking "already committed?" before it appends: answered as of the whole
        cluster, not of what this member has applied so far (a follower a heartbeat behind would say no,
        and the edge would answer a repeat 201 instead of 200): the ReadIndex first, as a linearizable
        read does, bounded so that the edge's own deadline is not spent here (then: what is applied)."""
        self._ensure_started()
        self._catch_up()
        index = self.committed_index_of(incident_id)
        if timeout <= 0 and index is None and self.replica_path is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._read_index(), LOOKUP_CONFIRM_S)
            self._catch_up()
            index = self.committed_index_of(incident_id)
        if index is not None:
            return index
        if timeout <= 0:
            return None
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.commit_waits.setdefault(incident_id, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._catch_up()
            return self.committed_index_of(incident_id)
        finally:
            futures = self.commit_waits.get(incident_id)
            if futures is not None:
                with contextlib.suppress(ValueError):
                    futures.remove(future)
                if not futures:
                    del self.commit_waits[incident_id]

    async def append_proposal(self, incident: dict[str, Any]) -> None:
        """Durably append ``incident`` to this node's ``incidents/proposed`` (group commit with concurrent
        callers); raises if the transaction did not commit. On an edge, the gateway forwards it."""
        self._ensure_started()
        await self._append(incident)

    async def confirm_read_index(self) -> int | str:
        """The publishing replica's ReadIndex as leader (-1: it is not the leader), or why it failed: what
        the leader's gateway answers a follower's ``read_index`` call with."""
        if self.replica_path is None:
            return NO_REPLICA
        return await self._ask_read_index(self.replica_path)

    async def _leader_known(self) -> bool:
        """Whether the replica knows a leader (cached briefly: a stale "yes" can only turn into a 504, which
        is honest; a 503 is only ever said after the replica itself said "no leader" or did not answer)."""
        now = time.monotonic()
        if self.raft_cache is not None and now - self.raft_cache[0] < self.leader_cache_s:
            return self.raft_cache[1].get("leader") is not None
        status = await self._raft_status()
        return status is not None and status.get("leader") is not None

    async def _raft_status(self) -> dict[str, Any] | None:
        """The replica's status map, or None (and ``raft_error`` says why). Concurrent callers share one ask."""
        if self.replica_path is None:
            return None  # nothing to ask (and raft_error stays empty: not an error on an edge)
        if self.raft_inflight is not None:
            return await asyncio.shield(self.raft_inflight)
        self.raft_inflight = asyncio.get_running_loop().create_future()
        result: dict[str, Any] | None = None
        try:
            reply = await self.control.ask(self.replica_path, {"op": "raft_status"})
            if isinstance(reply, dict) and "role" in reply:
                result = reply
                self.raft_cache = (time.monotonic(), reply)
                self.raft_error = (
                    "" if reply.get("leader") else f"replica {self.replica_path} is {reply['role']}"
                )
            else:
                self.raft_cache = None
                self.raft_error = f"{self.replica_path} answered {str(reply)[:200]}"
        except ControlUnavailable as exc:
            self.raft_cache = None  # what status() shows: not a leader remembered from before
            self.raft_error = str(exc)
        finally:
            self.raft_inflight.set_result(result)
            self.raft_inflight = None
        return result

    async def _append(self, incident: dict[str, Any]) -> int:
        """Durably append ``incident`` to the proposed stream, its seq there; concurrent callers share one
        transaction."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.appends.append((incident, done))
        if self.appender is None or self.appender.done():
            self.appender = asyncio.create_task(self._append_loop())
        return await done

    async def _append_loop(self) -> None:
        assert self.event_log is not None
        while self.appends:
            batch, self.appends = self.appends, []
            try:
                # an fsync: off the loop, so requests keep arriving (and join the next batch) meanwhile
                seqs = await asyncio.to_thread(
                    self.event_log.append, PROPOSED_INCIDENTS, [i for i, _ in batch]
                )
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), seq in zip(batch, seqs, strict=True):
                if not done.done():
                    done.set_result(seq)

    # -- read ---------------------------------------------------------------------------------------

    async def read(self, after: int, limit: int, linearizable: bool) -> ReadOutcome:
        if linearizable:
            try:
                why = await asyncio.wait_for(self._read_index(), LINEARIZABLE_DEADLINE_S)
            except TimeoutError:
                why = f"the read index was not confirmed and applied within {LINEARIZABLE_DEADLINE_S:g}s"
            if why:
                return ReadOutcome("unavailable", reason=why)
        log = self._ensure_started()
        commit_index = log.last_seq(COMMITTED_INCIDENTS)
        records = log.read(COMMITTED_INCIDENTS, after=after, limit=limit)
        incidents = []
        for rec in records:
            payload = rec.payload if isinstance(rec.payload, dict) else {}
            incidents.append(
                {"index": int(payload.get("index", rec.seq)), "incident": payload.get("incident")}
            )
        last = records[-1].seq if records else after
        more = bool(records) and last < commit_index
        return ReadOutcome("ok", incidents, commit_index, last if more else None)

    async def _read_index(self) -> str:
        """ReadIndex: "" once the publishing replica applied up to a leadership-confirmed index (so the
        committed stream holds everything committed before this read began), else why not.

        The publishing replica serves it itself when it leads. When a sibling replica of this node leads
        (several replicas in one node, e.g. config/raft-3.yaml), the leader confirms the read index and this
        waits until the publisher applied up to it. When the leader is on another node the gateway's
        ``remote_read_index`` has it confirmed there, and this waits the same way (the Raft index is the
        same on every node)."""
        if self.replica_path is None:
            return NO_REPLICA
        first = await self._ask_read_index(self.replica_path)
        if isinstance(first, str):
            return first
        if first >= 0:
            return ""  # the publisher led, and answered once it had applied up to the read index
        raft = await self._raft_status()
        leader = raft.get("leader") if raft else None
        if not leader or leader == (raft or {}).get("replica"):
            return f"no leader to confirm a linearizable read ({self.raft_error or 'election under way'})"
        read_index: int | str | None = None
        if self.remote_read_index is not None:  # a leader on another node: asked over the peer link
            read_index = await self.remote_read_index(leader)
        if read_index is None:  # a sibling replica of this node leads
            parent = self.replica_path.rpartition("/")[0]
            read_index = await self._ask_read_index(f"{parent}/{leader}" if parent else leader)
        if isinstance(read_index, str):
            return read_index
        if read_index < 0:
            return f"{leader} is no longer the leader: retry"
        deadline = time.monotonic() + READ_INDEX_TIMEOUT_S
        pause = 0.005
        while True:  # bounded: the publisher applies what the leader committed within a heartbeat or two
            raft = await self._raft_status()
            if raft is not None and int(raft.get("applied", -1)) >= read_index:
                return ""
            if time.monotonic() >= deadline:
                return f"{self.replica_path} did not apply up to the read index {read_index} in time"
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def _ask_read_index(self, path: str) -> int | str:
        """The read index ``path`` confirmed as leader (-1: it is not the leader), or why it could not."""
        ctx = f"http-api.{os.getpid()}.{uuid.uuid4().hex}"
        try:
            reply = await self.control.ask(
                path, {"op": "read_index", "ctx": ctx}, timeout=READ_INDEX_TIMEOUT_S
            )
        except ControlUnavailable as exc:
            return f"ReadIndex not confirmed (no quorum or no leader?): {exc}"
        if not isinstance(reply, dict) or not isinstance(reply.get("applied_index"), int):
            return f"ReadIndex: unexpected answer from {path}: {str(reply)[:200]}"
        if reply["applied_index"] < 0 or not reply.get("linearizable"):
            return -1
        return int(reply["applied_index"])

    # -- status -------------------------------------------------------------------------------------

    async def ready(self) -> tuple[bool, str]:
        self._ensure_started()
        raft = await self._raft_status()
        if raft is None:
            return False, f"the Raft replica did not answer: {self.raft_error}"
        if raft.get("leader") is None:
            return False, f"no Raft leader known (replica is {raft.get('role')})"
        if raft.get("applied", 0) < raft.get("commit", 0):
            return False, f"log catching up: applied {raft.get('applied')} < commit {raft.get('commit')}"
        self._catch_up()
        return True, "leader known, log caught up"

    async def refresh(self) -> None:
        """Ask the node for what :meth:`status` shows of it (the replica's status, the supervision tree);
        the API calls this before ``status()``, which stays a plain call for hosts that wrap it."""
        self._ensure_started()
        await self._raft_status()
        try:
            answer = await self.control.call({"op": "status"}, ASK_TIMEOUT_S)
            self.tree, self.tree_error = (answer.get("status") or {}).get("tree"), ""
        except ControlUnavailable as exc:
            self.tree, self.tree_error = None, str(exc)

    def status(self) -> dict[str, Any]:
        """The node as last refreshed (see :meth:`refresh`) plus what its event log holds now."""
        log = self._ensure_started()
        raft = self.raft_cache[1] if self.raft_cache is not None else None
        tree, tree_error = self.tree, self.tree_error
        return {
            "node": self.node,
            "pid": _launcher_pid(self.data_dir),
            "api_pid": os.getpid(),
            "raft": (
                {k: raft.get(k) for k in ("role", "term", "leader", "commit", "applied")}
                if raft is not None
                else None
            ),
            "raft_error": self.raft_error or None,
            "replica": self.replica_path,
            "peers": {},
            "tree": tree,
            "tree_error": tree_error or None,
            "crdt": _crdt_values(log),
            "gossip": {
                s[len("gossip/") :]: log.last_seq(s) for s in log.streams() if s.startswith("gossip/")
            },
            "dispatch": _dispatch(log),
            "edge_backlog": self._backlog(log),
            "incidents_committed": log.last_seq(COMMITTED_INCIDENTS),
            "ingest_to_commit_s": quantiles(self.ingest_to_commit),
            "inference_latency_s": _inference_latency(log),
        }

    def _backlog(self, log: EventLog) -> int:
        """Proposals the publishing replica has not yet taken and seen applied."""
        if self.replica_path is None:
            return 0  # no replica (an edge): the gateway's forward backlog is reported instead
        return max(0, log.last_seq(PROPOSED_INCIDENTS) - self._publisher_offset(log))

    def _publisher_offset(self, log: EventLog) -> int:
        """Everything in ``incidents/proposed`` up to here is applied: the publishing replica's offset,
        ``offset/raft/<replica id>``, the node's name in cluster mode, the replica's own id otherwise (the
        last part of its path unless its args name another). Only a publishing replica writes one, so the
        node's one publisher is the key that is there."""
        child = (self.replica_path or "").rsplit("/", 1)[-1]
        values = log.values_with_prefix("offset/raft/")
        return next(
            (
                values[k]
                for k in (f"offset/raft/{self.node}", f"offset/raft/{child}")
                if isinstance(values.get(k), int)
            ),
            max((v for v in values.values() if isinstance(v, int)), default=0),
        )


def _launcher_pid(data_dir: Path) -> int | None:
    """The node launcher's pid (its text in ``node.lock``): killing that process tree stops the node."""
    try:
        return int((data_dir / "node.lock").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _crdt_values(log: EventLog) -> dict[str, dict[str, float]]:
    from actors.crdt.codec import CodecError, decode
    from actors.crdt.exposure import Exposure
    from actors.crdt.replica import MICRO

    out: dict[str, dict[str, float]] = {}
    for key, saved in log.values_with_prefix("crdt/").items():
        if isinstance(saved, dict) and isinstance(saved.get("state"), bytes):
            with contextlib.suppress(CodecError):
                state = decode(saved["state"], Exposure)
                out[key[len("crdt/") :]] = {p: v / MICRO for p, v in sorted(state.value().items())}
    return out


def _inference_latency(log: EventLog) -> dict[str, dict[str, float]]:
    """Each inference actor's recent batch latency quantiles, by its tree path (what it last committed)."""
    out: dict[str, dict[str, float]] = {}
    for key, value in log.values_with_prefix(INFERENCE_LATENCY_PREFIX).items():
        if isinstance(value, dict):
            out[key[len(INFERENCE_LATENCY_PREFIX) :]] = {
                str(q): float(s) for q, s in value.items() if isinstance(s, int | float)
            }
    return out


def _dispatch(log: EventLog) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for key, value in log.values_with_prefix("offset/dispatch/").items():
        sink = key[len("offset/dispatch/") :]
        if isinstance(value, int) and not sink.endswith("/replay"):
            out.setdefault(sink, {})["offset"] = value
    for stream in log.streams():
        if stream.startswith("deadletters/dispatch/"):
            sink = stream[len("deadletters/dispatch/") :]
            out.setdefault(sink, {"offset": 0})["dead_letters"] = log.last_seq(stream)
    return out


def _remove_stale_inboxes(root: Path) -> None:
    """FIFOs of API processes that died without closing (their pid is gone): producers would list them."""
    from urllib.parse import quote

    directory = root / quote(COMMITTED_INCIDENTS, safe="")
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(directory):
            if not name.startswith(_CONSUMER + "."):
                continue
            pid = name[len(_CONSUMER) + 1 :]
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(directory / name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
