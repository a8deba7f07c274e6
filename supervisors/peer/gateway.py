"""The node's peer gateway: everything that crosses the node's boundary, in one asyncio process.

    python -m supervisors.peer.gateway --topology FILE --node NAME [--data-dir DIR]

Started by exec from the ``PeerGatewayActor`` shell (never forked by Thespian: an asyncio loop and TLS
contexts must not cross a fork), and dies with it (PR_SET_PDEATHSIG; end of stdin). It owns the node's
``PeerLinks`` and bridges three lanes to the node:

- **Raft** (low latency, loss allowed): frames from the shell on stdin (``PipeRaft``) go to the named
  peer; Raft frames from a peer go to the shell on stdout, which tells the local replica. A Raft frame is
  accepted only from a Raft member (the links check the sender's role) and only if the raft message's own
  ``sender`` is the authenticated peer. A snapshot travels as a file, streamed in chunks on the snapshot
  lane from the leader's spool file to ours (``snapshot_stream.py``); any other message over
  ``SNAPSHOT_CHUNK`` bytes is chunked there too and reassembled before it reaches the replica.
- **Gossip** (durable, low rate): the CRDT replica appends messages for replica ``R`` (= node ``R``) to the
  local stream ``gossip/R``; for every remote ``R`` the gateway tails that stream (doorbell ``Inbox``), sends
  each message to node R and compacts what it sent. Inbound gossip whose sender is the authenticated peer
  and whose recipient is this node is appended to the local ``gossip/<node>`` (which wakes the replica).
- **Forward** (edge nodes): the edge's gateway tails its own ``incidents/proposed`` and sends each record,
  signed with the node's Ed25519 key, to a reachable Raft member; the member checks the signature against
  the keys the topology trusts, appends the incidents durably to its own ``incidents/proposed`` (its
  replica proposes them) and acks their sequence numbers. The edge advances its durable forward offset
  only over acked records, so a record is never lost; one re-sent after a lost ack is a duplicate that Raft
  applies once (``incident_id`` is the key at apply). The backlog (head - offset) is in ``status()``.
  The same lane carries calls (``supervisors.peer.forward_service``): a follower asks the leader's gateway
  for a ReadIndex (linearizable reads on any member), an edge asks a member at which index an incident is
  committed (``POST /v1/incidents`` answers 201 on an edge too).

The gateway process also holds the node's ``NodeBackend`` (``self.backend``: the committed-log tail and the
control-socket connection to the replica), shared by the HTTP API and those calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Final

import msgspec

from actors.crdt.codec import CodecError
from actors.crdt.codec import decode_message as decode_gossip
from actors.eventlog import EventLog, open_event_log
from actors.hoptrace import stamp
from actors.logs import configure_logging, get_logger
from actors.raft.codec import decode_message as decode_raft
from actors.raft.gateway_link import RaftLinkServer
from actors.raft.node_keys import load_or_create_signing_key, parse_public_key, verify
from actors.raft.snapshot_file import plain_name, spool_dir
from actors.streams import DISPATCH_MARK, PROPOSED_INCIDENTS
from actors.wakeups import Inbox, wake_dir
from supervisors.peer.bridge import PipeError, PipeRaft, PipeReader, PipeUnreachable, encode_pipe
from supervisors.peer.bridge_cluster import ClusterModeError, ClusterView, load_cluster
from supervisors.peer.forward_service import ForwardService
from supervisors.peer.frames import Body, ForwardFrame, GossipFrame, Lane, RaftFrame, SnapshotChunk
from supervisors.peer.links import PeerLinks
from supervisors.peer.node_backend import NodeBackend
from supervisors.peer.snapshot_stream import (
    FILE_MARK,
    SnapshotReceiver,
    SnapshotStreamError,
    file_chunks,
    reference_of,
)

CONSUMER: Final = "peer-gateway"  # the gateway's name as a stream consumer (doorbells, offsets)
SNAPSHOT_CHUNK: Final = 256 << 10  # raft messages above this go chunked on the snapshot lane
MAX_REASSEMBLY: Final = 64 << 20  # a raft message sent whole (not a snapshot file) is at most this
NOT_A_MEMBER: Final = "not a Raft member of the topology (cluster.raft_members)"
SNAPSHOT_ROOM_POLL_S: Final = 0.01  # a snapshot stream waiting for room on its lane looks this often
SNAPSHOT_STALL_S: Final = 30.0  # no room for this long: the peer does not read; report the snapshot failed
PIPE_OUT_LIMIT: Final = 16 << 20  # stdout bytes the shell has not read yet; above it Raft frames drop
GOSSIP_BATCH: Final = 256
# How often the gossip sent to peers is recorded durably (offsets + compaction of their outboxes). Not per
# round: a durable commit in this loop holds up every Raft frame of the node for its fsync, and a gateway
# that crashes only sends again what it sent in the last second, which gossip tolerates (a CRDT merge is
# idempotent; a delta counts as delivered only once the receiving replica acks its durable merge).
GOSSIP_PERSIST_S: Final = 1.0
FORWARD_WINDOW: Final = 512  # records in flight to the gateways
FORWARD_BATCH: Final = 128  # records per forward frame
FORWARD_RESEND_S: Final = 2.0  # an unacked record is sent again (maybe to another member) after this
BACKLOG_LOG_S: Final = 10.0
LISTEN_RETRY_MIN_S: Final = 0.5
LISTEN_RETRY_MAX_S: Final = 10.0
POLL_S: Final = 0.25  # safety net for the tails, and the forwarder's retry clock
KIND_BYTE: Final = {"raft": b"R", "propose": b"P"}
KIND_OF: Final = {v[0]: k for k, v in KIND_BYTE.items()}
DEFAULT_REPLICA: Final = "root/incident-log"

_encode = msgspec.msgpack.Encoder(order="deterministic").encode
_decode = msgspec.msgpack.decode


class ForwardBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An edge's forwarded proposals: ``records`` is msgpack ``[[seq, incident], ...]``, ``sig`` its
    Ed25519 signature by the edge's node key."""

    records: bytes
    sig: bytes


class ForwardAck(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    acked: list[int]


class _PipeOut:
    """Non-blocking stdout towards the shell: a bounded buffer flushed when the pipe is writable."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, log: Any) -> None:
        self.loop, self.fd, self.log = loop, fd, log
        os.set_blocking(fd, False)
        self.buf = bytearray()
        self.dropped = 0
        self.watching = False

    def write(self, frame: bytes) -> bool:
        if len(self.buf) + len(frame) > PIPE_OUT_LIMIT:
            self.dropped += 1  # the shell is not reading: a lost Raft message is retried by Raft
            return False
        self.buf += frame
        self._flush()
        return True

    def _flush(self) -> None:
        while self.buf:
            try:
                n = os.write(self.fd, self.buf)
            except BlockingIOError:
                break
            except BrokenPipeError:
                self.buf.clear()
                raise
            del self.buf[:n]
        if self.buf and not self.watching:
            self.loop.add_writer(self.fd, self._flush)
            self.watching = True
        elif not self.buf and self.watching:
            self.loop.remove_writer(self.fd)
            self.watching = False


class Gateway:
    """One node's gateway; ``await run()`` until stdin closes or a signal. ``status()`` is plain data."""

    def __init__(
        self, view: ClusterView, data_dir: Path, use_stdio: bool = True, replica_path: str | None = None
    ) -> None:
        assert view.peer_config is not None, "a node without a peer address has no gateway"
        self.view = view
        self.node = view.node
        self.data_dir = data_dir
        # an edge runs no replica: nothing may be asked of one (every ask of a missing actor is a dead letter)
        self.replica_path = replica_path or (None if view.role == "edge" else DEFAULT_REPLICA)
        self.backend: NodeBackend | None = None  # opened in run(): it needs the loop
        self.use_stdio = use_stdio
        self.log = get_logger(component="peer_gateway")
        self.event_log: EventLog = open_event_log(data_dir / "eventlog")
        self.links = PeerLinks(
            view.peer_config, self._on_frame, self._on_unreachable, on_peer_lost=self._on_peer_lost
        )
        self.members = tuple(m for m in view.raft_members if m != self.node)
        self.is_member = self.node in view.raft_members
        self.gossip_to = tuple(p for p in view.gossip_peers if p != self.node)
        self.trusted = {n: parse_public_key(k) for n, k in view.trusted_keys.items()}
        self.stop = asyncio.Event()
        self.reassembly: dict[tuple[str, str], bytearray] = {}
        # payload bytes per raft frame / snapshot chunk / forward batch: well inside max_frame, which must
        # also hold the frame's own fields (names, ids, a signature)
        self.chunk_bytes = max(min(SNAPSHOT_CHUNK, view.peer_config.max_frame // 2), 256)
        self.snapshot_seq = itertools.count(1)
        self.snapshot_streams: dict[str, asyncio.Task[None]] = {}  # peer -> chunks waiting for room
        self.spool = spool_dir(data_dir)
        self.file_streams: dict[str, str] = {}  # peer -> the snapshot file streaming to it
        self.snapshots_in = SnapshotReceiver(self.spool)
        self.pipe_out: _PipeOut | None = None
        self.raft_link: RaftLinkServer | None = None  # the replica's direct socket (actors/raft/gateway_link)
        self.pipe_in = PipeReader()
        self.inboxes: list[Inbox] = []
        self.gossip_offsets: dict[str, int] = {}
        self.gossip_unpersisted: set[str] = set()  # peers whose offset moved since the last durable record
        self.gossip_persisted_at = 0.0
        self.gossip_sent = 0
        self.gossip_received = 0
        self.refused = 0
        self.raft_dropped = 0  # raft messages for a peer whose link was down
        self.inbound_gossip: list[bytes] = []
        # forward lane (edge)
        self.forward_key = f"{CONSUMER}/forward_offset"
        self.forward_offset = 0
        self.forward_read = 0
        self.inflight: OrderedDict[int, tuple[Any, float]] = OrderedDict()
        self.forward_ids = itertools.count(1)
        self.forwarded = 0
        self.forward_target: str | None = None
        self.signing_key: Any = None
        self.forward_received = 0
        self.backlog_logged_at = 0.0
        self.calls = ForwardService(self)

    # ---- lifecycle ---------------------------------------------------------------------------------

    async def run(self, then: Callable[[], Awaitable[None]] | None = None) -> None:
        """Serve until stopped; ``then`` runs once the lanes are up (the HTTP API starts after them, so
        a slow API start never delays Raft)."""
        loop = asyncio.get_running_loop()
        await self._listen()
        if self.use_stdio:
            self.pipe_out = _PipeOut(loop, sys.stdout.fileno(), self.log)
            stdin = sys.stdin.fileno()
            os.set_blocking(stdin, False)
            loop.add_reader(stdin, self._read_stdin, stdin)
            if self.is_member:  # Raft to and from the replica without the shell's two Thespian hops
                link = RaftLinkServer(
                    self.data_dir, lambda m: self.send_raft(m.peer, m.data, m.kind), self.log
                )
                self.raft_link = link if link.start(loop) else None
        root = wake_dir(self.data_dir)
        for peer in self.gossip_to:
            stream = f"gossip/{peer}"
            inbox = Inbox(root, stream, CONSUMER)
            self.inboxes.append(inbox)
            self.gossip_offsets[peer] = int(self.event_log.get_value(f"{CONSUMER}/gossip/{peer}", 0))
            loop.add_reader(inbox.fd, self._on_gossip_bell, inbox, peer)
        forwarding = self.view.role == "edge" and bool(self.members)
        if forwarding:
            self.signing_key = load_or_create_signing_key(self.data_dir, self.node)
            self.forward_offset = int(self.event_log.get_value(self.forward_key, 0))
            self.forward_read = self.forward_offset
            inbox = Inbox(root, PROPOSED_INCIDENTS, CONSUMER)
            self.inboxes.append(inbox)
            loop.add_reader(inbox.fd, self._on_forward_bell, inbox)
        self.backend = NodeBackend(self.data_dir, self.node, self.replica_path)
        await self.backend.start()
        self.backend.remote_read_index = self.calls.read_index_from
        self.log.info(
            "peer_gateway_started",
            pid=os.getpid(),
            port=self.links.port,
            role=self.view.role,
            raft_members=list(self.view.raft_members),
            gossip_peers=list(self.gossip_to),
            forwarding=forwarding,
        )
        if then is not None:
            await then()
        try:
            while not self.stop.is_set():
                for peer in self.gossip_to:
                    self._send_gossip(peer)
                if forwarding:
                    self._forward()
                    self._report_backlog()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), POLL_S)
        finally:
            with contextlib.suppress(Exception):  # a stop must not fail on it: at worst gossip is sent again
                self._persist_gossip_offsets()
            for inbox in self.inboxes:
                loop.remove_reader(inbox.fd)
                inbox.close()
            for task in [*self.calls.tasks, *self.snapshot_streams.values()]:
                task.cancel()
            self.snapshots_in.close()
            if self.raft_link is not None:
                self.raft_link.close()
            await self.links.close()

    async def _listen(self) -> None:
        """Start the links, waiting (with backoff) while the peer port is taken: a port held by an old
        gateway that is still dying, or by something else, is logged, never a crash loop that would use up
        the node's restart intensity (the node's Raft replica and pipeline do not need the links)."""
        delay = LISTEN_RETRY_MIN_S
        while True:
            try:
                await self.links.start()
                return
            except OSError as exc:  # (certificate files unreadable too: ssl errors are OSErrors)
                self.log.error("peer_listen_failed", reason=f"{type(exc).__name__}: {exc}", retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, LISTEN_RETRY_MAX_S)

    def _read_stdin(self, fd: int) -> None:
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            return
        if not data:  # the shell is gone: so is the reason to run
            self.log.info("peer_gateway_stdin_closed")
            asyncio.get_running_loop().remove_reader(fd)
            self.stop.set()
            return
        try:
            messages = self.pipe_in.feed(data)
        except PipeError as exc:
            self.log.error("peer_gateway_pipe_broken", reason=str(exc))
            self.stop.set()
            return
        for msg in messages:
            if isinstance(msg, PipeRaft):
                self.send_raft(msg.peer, msg.data, msg.kind)

    # ---- raft lane ---------------------------------------------------------------------------------

    def send_raft(self, peer: str, data: bytes, kind: str = "raft") -> None:
        if peer not in self.members:
            self.log.warning("raft_send_refused", peer=peer, reason="not a Raft member of the topology")
            return
        if kind == "snapshot":
            return self._send_snapshot_file(peer, data)
        payload = KIND_BYTE.get(kind, b"R") + data
        size = self.chunk_bytes
        if self.links.state(peer) == "down":
            # etcd's rule: nothing is queued for a peer that is not connected. Raft retries with fresh
            # messages (or a snapshot) once it is back, instead of the peer replaying a stale backlog. A
            # snapshot is reported failed (etcd's ReportSnapshot), so the leader sends it again then.
            self.raft_dropped += 1
            if len(payload) > size:
                self._on_unreachable(peer, Lane.SNAPSHOT)
            return
        if len(payload) <= size:
            self._send(peer, RaftFrame(sender=self.node, recipient=peer, payload=payload))
            return
        stale = self.snapshot_streams.pop(peer, None)
        if stale is not None:
            stale.cancel()  # a newer snapshot replaces one still streaming: its chunks would be wasted
        self._pump(peer, self._chunks(peer, payload))

    def _send_snapshot_file(self, peer: str, message: bytes) -> None:
        """Stream the snapshot file ``message`` names (in our spool directory, written by our replica) to
        ``peer``. The same file still streaming to ``peer`` is left to finish: Raft sends a snapshot again
        when a few heartbeats pass without progress, and restarting the stream each time would never let a
        snapshot that takes longer than that arrive."""
        ref = reference_of(message)
        if ref is None or not plain_name(ref.spool):
            self.log.error(
                "snapshot_send_failed", peer=peer, reason="the replica's message names no snapshot file"
            )
            return
        if self.file_streams.get(peer) == ref.spool:
            return
        if self.links.state(peer) == "down":  # as for any raft message: nothing queued for it
            self.raft_dropped += 1
            self._on_unreachable(peer, Lane.SNAPSHOT)
            return
        try:
            stream = open(self.spool / ref.spool, "rb")  # noqa: SIM115 - file_chunks closes it
        except OSError as exc:  # replaced by a newer snapshot meanwhile: Raft sends that one
            self.log.warning("snapshot_send_failed", peer=peer, reason=f"{type(exc).__name__}: {exc}")
            self._on_unreachable(peer, Lane.SNAPSHOT)
            return
        stale = self.snapshot_streams.pop(peer, None)
        if stale is not None:
            stale.cancel()  # a newer snapshot replaces one still streaming: its chunks would be wasted
        self.file_streams[peer] = ref.spool
        sid = self._new_snapshot_id()
        self.log.info(
            "snapshot_sending", peer=peer, index=ref.applied_index, bytes=ref.bytes, incidents=ref.count
        )
        self._pump(
            peer,
            self._streamed(
                peer, ref.spool, file_chunks(self.node, peer, sid, message, stream, self.chunk_bytes)
            ),
        )

    def _new_snapshot_id(self) -> str:
        """Unique per stream from this gateway (and from any restarted one: the pid)."""
        return f"{self.node}-{os.getpid()}-{next(self.snapshot_seq)}"

    def _streamed(self, peer: str, name: str, chunks: Iterator[SnapshotChunk]) -> Iterator[SnapshotChunk]:
        """``chunks``, forgetting that ``name`` streams to ``peer`` once they end or are abandoned."""
        try:
            yield from chunks
        finally:
            chunks.close()  # type: ignore[attr-defined]
            if self.file_streams.get(peer) == name:
                del self.file_streams[peer]

    def _chunks(self, peer: str, payload: bytes) -> Iterator[SnapshotChunk]:
        """``payload`` as snapshot-lane chunks, cut as they are sent (not all copied at once)."""
        sid = self._new_snapshot_id()
        size = self.chunk_bytes
        for offset in range(0, len(payload), size):
            yield SnapshotChunk(
                sender=self.node,
                recipient=peer,
                snapshot_id=sid,
                offset=offset,
                data=payload[offset : offset + size],
                last=offset + size >= len(payload),
            )

    def _pump(self, peer: str, chunks: Iterator[SnapshotChunk], first: SnapshotChunk | None = None) -> None:
        """Send ``chunks`` while the snapshot lane to ``peer`` has room; when it is full, the rest waits for
        room in a task. The lane's queue is a few frames (a queue is bounded) and a snapshot is as many
        chunks as the state machine needs: queueing them all at once dropped every chunk past the queue,
        and the snapshot, sent again whole, failed the same way for ever (a node behind the log's
        retention never caught up once the state machine passed ~4 MiB)."""
        for chunk in itertools.chain([first] if first is not None else [], chunks):
            if self.links.room(peer, Lane.SNAPSHOT) <= 0:
                task = asyncio.get_running_loop().create_task(self._when_room(peer, chunk, chunks))
                self.snapshot_streams[peer] = task
                return
            if not self._send(peer, chunk):
                return  # the rest is useless without this chunk; Raft sends the snapshot again

    async def _when_room(self, peer: str, chunk: SnapshotChunk, chunks: Iterator[SnapshotChunk]) -> None:
        stalled_at = time.monotonic() + SNAPSHOT_STALL_S
        while self.links.room(peer, Lane.SNAPSHOT) <= 0:
            down = self.links.state(peer) == "down"
            if down or time.monotonic() >= stalled_at:
                self.snapshot_streams.pop(peer, None)
                self.log.warning(
                    "snapshot_send_failed",
                    peer=peer,
                    offset=chunk.offset,
                    reason="the link went down"
                    if down
                    else f"no room for {SNAPSHOT_STALL_S:g} s: the peer does not read",
                )
                self._on_unreachable(peer, Lane.SNAPSHOT)  # the leader sends it again when the peer answers
                return
            await asyncio.sleep(SNAPSHOT_ROOM_POLL_S)
        self.snapshot_streams.pop(peer, None)
        self._pump(peer, chunks, chunk)

    def _send(self, peer: str, body: Body) -> bool:
        """``links.send`` that never raises into the loop: a frame over ``max_frame`` (a bug or a huge
        record) is logged and dropped like a full queue, so one bad message cannot crash-loop the gateway."""
        try:
            return self.links.send(peer, body)
        except ValueError as exc:
            self.log.error("frame_not_sent", peer=peer, reason=str(exc))
            return False

    def _raft_in(self, peer: str, payload: bytes) -> None:
        stamp(f"G from_peer {peer}")
        if peer not in self.members:  # the links let any gateway use the lane: membership is checked here
            return self._refuse(peer, "raft", NOT_A_MEMBER)
        kind = KIND_OF.get(payload[0]) if payload else None
        data = payload[1:]
        if kind is None:
            return self._refuse(peer, "raft", "unknown raft payload kind")
        if kind == "raft":
            try:
                sender = decode_raft(data).sender
            except (msgspec.DecodeError, ValueError, TypeError) as exc:
                return self._refuse(peer, "raft", f"malformed raft message: {exc}")
            if sender != peer:
                return self._refuse(peer, "raft", f"raft message claims sender {sender!r}")
        frame = encode_pipe(PipeRaft(peer, data, kind))
        if self.raft_link is not None and self.raft_link.send(frame):
            return  # straight to the replica; through the shell only while it is not connected
        if self.pipe_out is not None:
            self.pipe_out.write(frame)

    def _snapshot_in(self, peer: str, body: SnapshotChunk) -> None:
        if peer not in self.members:
            return self._refuse(peer, "snapshot", NOT_A_MEMBER)
        key = (peer, body.snapshot_id)
        if body.offset == 0 and key not in self.reassembly and not self.snapshots_in.receiving(*key):
            # one stream per peer at a time: a newer one replaces an unfinished older one
            for old in [k for k in self.reassembly if k[0] == peer]:
                del self.reassembly[old]
            self.snapshots_in.drop(peer)
            if body.data[:1] == FILE_MARK:
                try:
                    self.snapshots_in.begin(peer, body.snapshot_id)
                except SnapshotStreamError as exc:
                    self.log.error("snapshot_dropped", peer=peer, reason=str(exc))
                    return
            else:
                self.reassembly[key] = bytearray()
        if self.snapshots_in.receiving(*key):
            return self._snapshot_file_in(peer, body)
        buf = self.reassembly.get(key)
        if buf is None:
            return  # the start was lost: Raft will send the snapshot again
        if body.offset != len(buf) or len(buf) + len(body.data) > MAX_REASSEMBLY:
            del self.reassembly[key]
            if body.offset == len(buf):  # in order, but too big: say so (a gap is only a lost chunk, resent)
                self.log.error(
                    "snapshot_dropped",
                    peer=peer,
                    reason=f"a raft message over {MAX_REASSEMBLY} bytes sent whole: only a snapshot file may "
                    "be larger (is the peer running an older garrison?)",
                )
            return
        buf += body.data
        if body.last:
            del self.reassembly[key]
            self._raft_in(peer, bytes(buf))

    def _snapshot_file_in(self, peer: str, body: SnapshotChunk) -> None:
        try:
            message = self.snapshots_in.feed(peer, body)
        except SnapshotStreamError as exc:
            self.log.error("snapshot_dropped", peer=peer, reason=str(exc))
            return
        if message is not None:
            self.log.info("snapshot_received", peer=peer, bytes=body.offset + len(body.data))
            self._raft_in(peer, KIND_BYTE["raft"] + message)

    def _on_peer_lost(self, peer: str) -> None:
        """``peer``'s connection to us ended: a Raft member's replica hears of it (its leader may be dead)."""
        if self.is_member and peer in self.members:
            self._to_replica(encode_pipe(PipeUnreachable(peer, connection_lost=True)))

    def _to_replica(self, frame: bytes) -> None:
        if self.raft_link is not None and self.raft_link.send(frame):
            return
        if self.pipe_out is not None:
            self.pipe_out.write(frame)

    def _on_unreachable(self, peer: str, lane: Lane) -> None:
        """A Raft or snapshot frame to ``peer`` was dropped: tell the replica (its core stops pipelining to
        ``peer``, or sends the snapshot again), over its socket, else through the shell."""
        if lane not in (Lane.RAFT, Lane.SNAPSHOT):
            return
        self._to_replica(encode_pipe(PipeUnreachable(peer, snapshot=lane == Lane.SNAPSHOT)))

    # ---- inbound dispatch --------------------------------------------------------------------------

    def _on_frame(self, peer: str, body: Body) -> None:
        if isinstance(body, RaftFrame):
            if body.recipient != self.node:
                self._refuse(peer, "raft", f"addressed to {body.recipient!r}")
            else:
                self._raft_in(peer, body.payload)
        elif isinstance(body, SnapshotChunk):
            if body.recipient == self.node:
                self._snapshot_in(peer, body)
        elif isinstance(body, GossipFrame):
            self._gossip_in(peer, body.payload)
        elif isinstance(body, ForwardFrame):
            if body.kind != "propose":
                self.calls.on_frame(peer, body)
            elif body.reply:
                self._forward_ack(peer, body)
            else:
                self._forward_in(peer, body)

    def _refuse(self, peer: str, lane: str, reason: str) -> None:
        self.refused += 1
        self.log.warning("frame_refused", peer=peer, lane=lane, reason=reason)

    # ---- gossip lane -------------------------------------------------------------------------------

    def _on_gossip_bell(self, inbox: Inbox, peer: str) -> None:
        inbox.drain()
        self._send_gossip(peer)

    def _send_gossip(self, peer: str) -> None:
        stream = f"gossip/{peer}"
        offset = self.gossip_offsets[peer]
        records = self.event_log.read(stream, after=offset, limit=GOSSIP_BATCH)
        sent = offset
        for rec in records:
            if isinstance(rec.payload, bytes) and not self._send(
                peer, GossipFrame(sender=self.node, payload=rec.payload)
            ):
                break  # the queue is full: the rest waits for the next round (gossip tolerates delay)
            sent = rec.seq
            self.gossip_sent += 1
        if sent != offset:
            self.gossip_offsets[peer] = sent
            self.gossip_unpersisted.add(peer)
        if self.gossip_unpersisted and time.monotonic() - self.gossip_persisted_at >= GOSSIP_PERSIST_S:
            self._persist_gossip_offsets()

    def _persist_gossip_offsets(self) -> None:
        """One durable transaction for every peer's gossip offset that moved (see GOSSIP_PERSIST_S)."""
        peers, self.gossip_unpersisted = sorted(self.gossip_unpersisted), set()
        self.gossip_persisted_at = time.monotonic()
        if not peers:
            return
        with self.event_log.batch() as batch:
            for peer in peers:
                sent = self.gossip_offsets[peer]
                batch.put_value(f"{CONSUMER}/gossip/{peer}", sent)
                # nobody else on this node reads a remote replica's inbox
                batch.compact(f"gossip/{peer}", sent)

    def _gossip_in(self, peer: str, payload: bytes) -> None:
        try:
            msg = decode_gossip(payload)
        except (CodecError, msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            return self._refuse(peer, "gossip", f"malformed gossip: {exc}")
        if msg.sender != peer or msg.recipient != self.node:
            return self._refuse(peer, "gossip", f"gossip from {msg.sender!r} to {msg.recipient!r}")
        if not self.inbound_gossip:
            asyncio.get_running_loop().call_soon(self._flush_gossip)
        self.inbound_gossip.append(payload)

    def _flush_gossip(self) -> None:
        batch, self.inbound_gossip = self.inbound_gossip, []
        if batch:
            self.event_log.append(f"gossip/{self.node}", batch)  # durable; rings the local replica
            self.gossip_received += len(batch)

    # ---- forward lane: receiving (Raft members) ----------------------------------------------------

    def _forward_in(self, peer: str, frame: ForwardFrame) -> None:
        if not self.is_member:
            return self._refuse(peer, "forward", "this node is not a Raft member")
        key = self.trusted.get(peer)
        if key is None:
            return self._refuse(
                peer, "forward", "no trusted Ed25519 key for this node (cluster.trusted_keys)"
            )
        try:
            body = msgspec.msgpack.decode(frame.payload, type=ForwardBody)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            return self._refuse(peer, "forward", f"malformed forward: {exc}")
        if not verify(key, body.sig, body.records):
            return self._refuse(peer, "forward", "signature does not verify against the trusted key")
        try:
            records = msgspec.msgpack.decode(body.records, type=list[tuple[int, Any]])
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            return self._refuse(peer, "forward", f"malformed records: {exc}")
        incidents = [
            inc for _, inc in records if isinstance(inc, dict) and isinstance(inc.get("incident_id"), str)
        ]
        if any(inc.get("type") == DISPATCH_MARK for inc in incidents):  # only a leader's dispatcher marks
            return self._refuse(peer, "forward", f"a record of the reserved type {DISPATCH_MARK!r}")
        if incidents:
            self.event_log.append(PROPOSED_INCIDENTS, incidents)  # durable before the ack
        self.forward_received += len(incidents)
        ack = ForwardAck(acked=[seq for seq, _ in records])
        self._send(peer, ForwardFrame(request_id=frame.request_id, payload=_encode(ack), reply=True))

    # ---- forward lane: sending (edge) --------------------------------------------------------------

    def _on_forward_bell(self, inbox: Inbox) -> None:
        inbox.drain()
        self._forward()

    def _pick_target(self) -> str | None:
        status = self.links.status()
        up = [m for m in self.members if status.get(m, {}).get("state") == "up"]
        if self.forward_target in up:
            return self.forward_target
        self.forward_target = up[0] if up else None
        if self.forward_target is not None:
            self.log.info("forward_target", target=self.forward_target, backlog=self.backlog())
        return self.forward_target

    def _forward(self) -> None:
        room = FORWARD_WINDOW - len(self.inflight)
        if room > 0:
            for rec in self.event_log.read(PROPOSED_INCIDENTS, after=self.forward_read, limit=room):
                self.forward_read = rec.seq
                if isinstance(rec.payload, dict):
                    self.inflight[rec.seq] = (rec.payload, 0.0)
            self._advance()
        target = self._pick_target()
        if target is None:
            return
        now = time.monotonic()
        due = [(s, inc) for s, (inc, sent) in self.inflight.items() if now - sent >= FORWARD_RESEND_S]
        for chunk in self._forward_batches(due):
            records = _encode([[s, inc] for s, inc in chunk])
            body = ForwardBody(records=records, sig=self.signing_key.sign(records))
            frame = ForwardFrame(request_id=next(self.forward_ids), payload=_encode(body))
            if not self._send(target, frame):
                return
            for s, inc in chunk:
                self.inflight[s] = (inc, now)
        self._advance()

    def _forward_batches(self, due: list[tuple[int, Any]]) -> list[list[tuple[int, Any]]]:
        """``due`` in batches of at most FORWARD_BATCH records and ``chunk_bytes`` of encoded records. A
        record that alone is over the bound can never cross: it is logged and given up (taken out of the
        window, so it does not hold back the offset forever)."""
        batches: list[list[tuple[int, Any]]] = []
        current: list[tuple[int, Any]] = []
        size = 0
        for seq, inc in due:
            n = len(_encode(inc))
            if n > self.chunk_bytes:
                self.inflight.pop(seq, None)
                self.log.error("forward_record_too_large", seq=seq, bytes=n, limit=self.chunk_bytes)
                continue
            if current and (len(current) >= FORWARD_BATCH or size + n > self.chunk_bytes):
                batches.append(current)
                current, size = [], 0
            current.append((seq, inc))
            size += n
        if current:
            batches.append(current)
        return batches

    def _forward_ack(self, peer: str, frame: ForwardFrame) -> None:
        if peer not in self.members:
            return self._refuse(peer, "forward", "an ack from a node that is not a Raft member")
        try:
            ack = msgspec.msgpack.decode(frame.payload, type=ForwardAck)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            return self._refuse(peer, "forward", f"malformed ack: {exc}")
        for seq in ack.acked:
            if self.inflight.pop(seq, None) is not None:
                self.forwarded += 1
        self._advance()

    def _advance(self) -> None:
        """The durable offset: everything up to it is stored by a Raft member (or was not an incident)."""
        done = next(iter(self.inflight)) - 1 if self.inflight else self.forward_read
        if done > self.forward_offset:
            self.forward_offset = done
            self.event_log.put_value(self.forward_key, done)

    def _report_backlog(self) -> None:
        """On-call: an edge whose detections wait (no gateway reachable, or acks lagging) says so every
        BACKLOG_LOG_S while it lasts, and once when it is cleared."""
        backlog = self.backlog()
        now = time.monotonic()
        if backlog and now - self.backlog_logged_at >= BACKLOG_LOG_S:
            self.backlog_logged_at = now
            self.log.warning(
                "edge_backlog", backlog=backlog, target=self.forward_target, in_flight=len(self.inflight)
            )
        elif not backlog and self.backlog_logged_at:
            self.backlog_logged_at = 0.0
            self.log.info("edge_backlog_cleared", forwarded=self.forwarded)

    def backlog(self) -> int:
        return max(self.event_log.last_seq(PROPOSED_INCIDENTS) - self.forward_offset, 0)

    # ---- status ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "node": self.node,
            "role": self.view.role,
            "gateway_pid": os.getpid(),
            "peers": self.links.status(),
            "gossip": {"sent": self.gossip_sent, "received": self.gossip_received},
            "refused": self.refused,
            "pipe_dropped": self.pipe_out.dropped if self.pipe_out is not None else 0,
            "raft_dropped_peer_down": self.raft_dropped,
        }
        if self.view.role == "edge":
            out["edge"] = {
                "forward_offset": self.forward_offset,
                "backlog": self.backlog(),
                "in_flight": len(self.inflight),
                "forwarded": self.forwarded,
                "target": self.forward_target,
            }
        else:
            out["forward_received"] = self.forward_received
        out["calls"] = self.calls.status()
        return out


async def _start_api(gateway: Gateway, topology: str | None) -> Any:
    """The node's HTTP API (supervisors/peer/api.py) in this loop, when the node has an ``api`` address."""
    from supervisors.peer.bridge_api import start_api

    return await start_api(gateway, topology)


async def amain(topology: str, node: str, data_dir: str | None, replica: str | None = None) -> int:
    log = get_logger(component="peer_gateway")
    try:
        view = load_cluster(node, topology)
    except (ClusterModeError, KeyError) as exc:
        log.error("peer_gateway_failed", reason=str(exc))
        return 2
    if view.peer_config is None:
        log.error("peer_gateway_failed", reason=f"node {node!r} has no peer address (nodes[].peer)")
        return 2
    if data_dir is None or replica is None:
        from supervisors.peer.api import _replica_path
        from supervisors.topology import load_topology

        spec = load_topology(topology).node(node)
        data_dir = data_dir or str(spec.data_dir)
        replica = replica or _replica_path(spec.tree)
    gateway = Gateway(view, Path(data_dir), replica_path=replica)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gateway.stop.set)
    runner = None

    async def start_api() -> None:
        nonlocal runner
        try:
            runner = await _start_api(gateway, topology)
        except Exception as exc:  # the lanes do not need the API: log it and keep them running
            log.error("peer_api_failed", reason=f"{type(exc).__name__}: {exc}")

    try:
        await gateway.run(then=start_api)
    finally:
        if runner is not None:
            await runner.cleanup()
        if gateway.backend is not None:
            await gateway.backend.close()
    log.info("peer_gateway_stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m supervisors.peer.gateway", description=__doc__)
    parser.add_argument("--topology", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--data-dir", default=None, help="the node's data_dir (default: the topology's)")
    parser.add_argument("--log-format", default="json")
    parser.add_argument("--replica", default=None, help="the node's Raft replica path (default: found)")
    args = parser.parse_args(argv)
    configure_logging(args.log_format, args.node)
    return asyncio.run(amain(args.topology, args.node, args.data_dir, args.replica))


if __name__ == "__main__":
    sys.exit(main())
