"""``RaftReplicaActor``: one replica of the incident log; the Thespian shell around ``RaftCore``.

The node.go loop of etcd-raft, driven by Thespian messages, the gateway socket and timer ticks. For every
``Ready`` (``_drain``): a leader's appends and heartbeats leave first (see ``_split_messages``); then ONE
LMDB transaction writes the snapshot, entries and hard state with the apply of what committed; only then
the other messages leave, then the consumers of what was appended are rung, then advance. etcd's
MustSync: a Ready with no new entry, snapshot, term or vote (a leader's commit of what a quorum
acknowledged) needs no fsync before its messages, and an apply is replayed from the durable log at boot
(deduplicated by ``incident_id``), so such a Ready is written ``durable=False`` (one fsync fewer; a
machine crash may undo it, never tear it: ``actors/eventlog.py``). A replica restarted by its supervisor,
or on a rebooted node, reloads everything from LMDB, so it never votes twice in a term nor forgets an
entry it acknowledged.

Where the time of one commit goes: ``python -m bench.commit_hops`` rebuilds each serial commit's path
from cross-process stamps (``actors/hoptrace.py``) and prints every segment. On the 2-core box (3 gateway
nodes on loopback, one shared disk, fsync on), of ~6.5 ms: ~1.2-1.8 ms are the five pure process hops
(doorbell, raft.sock and TLS, both ways), ~1.4 ms three hops that also do work, ~0.7 ms Raft work and
~2.2 ms three LMDB commits (the follower's two fdatasyncs, contended by the other replicas' on the same
disk; the leader's apply). No timer is on that path.

In cluster mode the messages for other nodes go to the node's gateway process over ``<data_dir>/raft.sock``
(``gateway_link.py``), and what the gateway receives for this replica comes back on it; while the socket
is not connected (the gateway starting or restarting) they go through the gateway shell (``PeerSend``).

Incidents: a replica with ``publish: true`` (one per node) takes the node's ``incidents/proposed`` stream,
signs what it takes in one go with ONE Ed25519 signature of the node's key (over the Merkle root of the
batch: still one incident per entry, see ``entries.py``) and proposes it (through the leader), re-proposing
until it sees it applied; every replica applies committed entries to its state machine (dedup by ``incident_id``;
an entry that is malformed or whose signature does not verify against the trusted keys is rejected as a
no-op, identically everywhere and never by raising: see ``entries.py``), and
the publishing replica appends applied incidents to ``incidents/committed``: the same interface as the
single-node ``IncidentLogActor``, which this replaces.

Replicas of one node find each other through their supervisor (``WhereIs``) and greet each other
(``PeerHello``) so that a restarted replica's new address is learnt at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from pydantic import Field, model_validator
from thespian.actors import ActorAddress

from actors import committed_index
from actors.args import ActorArgs
from actors.base import SupervisedActor
from actors.dispatch.marks import AppliedMarks, merge_mark, stored_marks
from actors.eventlog import WriteBatch
from actors.hoptrace import stamp
from actors.messages import Location, PeerGatewayUp, PeerSend, WhereIs
from actors.raft.codec import decode_message, encode_message
from actors.raft.core import RaftCore
from actors.raft.durable_storage import DurableRaftStorage, needs_persist
from actors.raft.entries import (
    MAX_BATCH,
    check_snapshot_items,
    open_entry,
    open_snapshot,
    signed_batch,
    signed_entry,
)
from actors.raft.errors import NotLeader, ProposalDropped, RaftError
from actors.raft.gateway_link import RaftLinkClient
from actors.raft.node_keys import load_or_create_signing_key, parse_public_key, public_key_b64
from actors.raft.snapshot_file import (
    SnapshotFileError,
    SnapshotSpool,
    encode_reference,
    read_pieces,
    spool_reference,
)
from actors.raft.types import ConfChange, Message, MessageType, RaftConfig, Ready, Snapshot
from actors.streams import COMMITTED_INCIDENTS, DISPATCH_MARK, PROPOSED_INCIDENTS
from supervisors.peer.bridge import PipeUnreachable

_encode = msgspec.msgpack.Encoder(order="deterministic").encode
REPROPOSE_TICKS = 20
LINK_RETRY_TICKS = 20  # a replica without its direct gateway socket tries to connect this often
LINK_FLUSH_S = 0.02  # bytes the gateway socket did not take at once are written again after this
_LINK = "gateway-link"  # watched fd name of the gateway socket
_LINK_FLUSH = "gateway-link-flush"  # its flush timer
_INDEX = "index-committed"  # the next slice of indexing an older log's committed records
INDEX_SLICE_S = 0.02  # at most this long per slice (~3,000 records), then Raft's turn
INDEX_PAUSE_S = 0.002  # between slices: time for the messages and ticks that came meanwhile
IDLE_SOLO_TICK_S = 1.0  # tick of a one-member cluster's leader with nothing pending
PROBE_SILENT_PEER_TICKS = 100
# Bounded forwarding: at most one ProposeEntries message of this many entries per tick.
MAX_PROPOSALS_PER_TICK = 256
_decode = msgspec.msgpack.decode
# the entry format lives in entries.py
__all__ = ["RaftReplicaActor", "open_entry", "signed_batch", "signed_entry"]
_KINDS = ("add_learner", "promote", "remove")  # ConfChange kinds the control socket may ask for
# a leader's messages that may leave before its Ready is written (see RaftReplicaActor._split_messages)
_LEADER_EARLY: frozenset[MessageType] = frozenset({"append", "heartbeat", "snapshot"})


class _SnapshotReference(msgspec.Struct):
    """A compaction's snapshot as this replica keeps it: a reference to its own event log, where the state
    machine (``incident/<raft index>``) already is. Never sent: see ``RaftReplicaActor._send_message``."""

    applied_index: int
    incidents_in: Literal["event_log"]


_REFERENCE_DECODER = msgspec.msgpack.Decoder(_SnapshotReference)


def _is_reference(data: bytes) -> bool:
    if len(data) > 64:  # a reference is ~45 bytes; a snapshot that holds incidents is never read here
        return False
    try:
        _REFERENCE_DECODER.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False
    return True


def _name_ok(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200


@dataclass(frozen=True, slots=True)
class RaftEnvelope:
    """A raft Message between replicas, as raft-codec msgpack bytes (never a pickled object)."""

    sender: str
    data: bytes


@dataclass(frozen=True, slots=True)
class PeerHello:
    replica: str


@dataclass(frozen=True, slots=True)
class ProposeEntry:
    """Propose an encoded incident entry (forwarded to the leader by followers)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ProposeEntries:
    """Several entries in one message: a follower forwards its pending proposals in batches, since a
    Thespian message costs ~1 ms and more than ~950 queued sends stall the sender."""

    entries: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class LinearizableRead:
    ctx: str


@dataclass(frozen=True, slots=True)
class StaleRead:
    """A local read, possibly stale: no leadership check."""


@dataclass(frozen=True, slots=True)
class ReadResult:
    ctx: str
    applied_index: int
    incidents_applied: int
    linearizable: bool


@dataclass(frozen=True, slots=True)
class TransferLeadership:
    """Ask the leader to hand leadership to ``to`` (e.g. before taking its node down)."""

    to: str


@dataclass(frozen=True, slots=True)
class ChangeMembership:
    """One membership step, sent to the leader: ``add_learner`` (catches up without voting), ``promote``
    (refused until the learner caught up), or ``remove``."""

    kind: str
    replica: str


@dataclass(frozen=True, slots=True)
class MembershipResult:
    ok: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RaftStatusRequest:
    pass


@dataclass(frozen=True, slots=True)
class RaftStatus:
    replica: str
    role: str
    term: int
    leader: str | None
    commit: int
    applied: int
    incidents_applied: int


class RaftReplicaArgs(ActorArgs):
    """``RaftReplicaActor``'s args."""

    replica: str | None = Field(None, min_length=1, max_length=200)  # replica id; default the child id
    peers: list[str] = Field(default_factory=list, max_length=100)  # sibling replica ids (may include self)
    publish: bool = True  # propose the node's incidents and publish committed ones (one replica per node)
    # {node: base64 Ed25519 public key} whose signed entries are applied; default: this node's own key only
    trusted_keys: dict[str, str] | None = None
    # s per Raft tick: heartbeats every 3 ticks, elections after 15-30; proposals do not wait for a tick,
    # they wake the replica when appended
    tick_s: float = Field(0.05, gt=0, le=10)
    election_ticks: int = Field(15, ge=2, le=100_000)
    heartbeat_ticks: int = Field(3, ge=1, le=100_000)
    snapshot_every: int = Field(1000, ge=0, le=10_000_000)  # applied entries between snapshots (0 = never)
    # cluster mode: one replica per node across nodes; replica id = node name, peers = the topology's
    # raft_members, trusted keys = the cluster's; messages to other nodes go through the peer gateway shell
    cluster: bool = False
    gateway: str = Field("root/peer", min_length=1, max_length=500)  # the peer gateway shell's tree path
    topology: str | None = Field(None, min_length=1, max_length=4096)  # default: $GARRISON_TOPOLOGY

    @model_validator(mode="after")
    def _ticks_ordered(self) -> RaftReplicaArgs:
        if self.heartbeat_ticks >= self.election_ticks:
            raise ValueError(
                f"heartbeat_ticks ({self.heartbeat_ticks}) must be below election_ticks ({self.election_ticks})"
            )
        return self


class RaftReplicaActor(SupervisedActor):
    """Args: :class:`RaftReplicaArgs`."""

    Args = RaftReplicaArgs
    args: RaftReplicaArgs

    def on_start(self, args: dict[str, Any]) -> None:
        assert self.config is not None
        a = self.args
        self.node = self.config.node
        self.replica = a.replica or self.child_id
        self.peers = [p for p in a.peers if p != self.replica]
        self.remote: set[str] = set()  # peers on other nodes, reached through the peer gateway
        self.gateway_address: ActorAddress | None = None
        # the direct socket to the node's gateway process (cluster mode); the shell relays until it connects
        self.link: RaftLinkClient | None = None
        self.link_fd: int | None = None  # its fd while watched
        self.link_flush_armed = False
        cluster_keys: dict[str, str] = {}
        self.snapshot_waiting: dict[str, Message] = {}  # peer -> a snapshot whose file is being written
        if a.cluster:
            self.replica, self.peers, cluster_keys = self._cluster_view()
            self.remote = set(self.peers)
            self.link = RaftLinkClient(self.config.data_dir)
        # snapshot files: for the gateway to stream to other nodes, or for replicas of this node to read
        self.spool = SnapshotSpool(self.config.data_dir, self.replica)
        self.publish = a.publish
        self.tick_s = a.tick_s
        self.snapshot_every = a.snapshot_every
        self.key = load_or_create_signing_key(self.config.data_dir, self.node)
        own = public_key_b64(self.key)
        # in a cluster every replica must trust the same keys, so the cluster's list wins over our own
        declared = a.trusted_keys or {self.node: own, **cluster_keys}
        if declared.get(self.node) != own:
            self.log.error(
                "node_key_not_trusted",
                node=self.node,
                reason="this node's Ed25519 key is not the one the cluster trusts for it: every entry it "
                "signs will be rejected; list its public key in cluster.trusted_keys",
                public_key=own,
            )
        self.trusted = {node: parse_public_key(b64) for node, b64 in declared.items()}
        self.storage = DurableRaftStorage(self.event_log, self.replica)
        config = RaftConfig(
            id=self.replica,
            peers=tuple(sorted({self.replica, *self.peers})),
            election_ticks=a.election_ticks,
            heartbeat_ticks=a.heartbeat_ticks,
        )
        self.core = RaftCore(config, self.storage, random.Random())
        self.addresses: dict[str, ActorAddress] = {}
        self.last_heard: dict[str, int] = dict.fromkeys(self.peers, 0)
        self.last_probe: dict[str, int] = {}
        self.silent_after_ticks = 3 * config.election_ticks
        self.pending_reads: list[tuple[int, str, ActorAddress]] = []
        self.read_waiters: dict[str, ActorAddress] = {}
        self.prefix = f"raft/{self.replica}/"
        self.offset_key = f"offset/raft/{self.replica}"
        self.offset = int(self.event_log.get_value(self.offset_key, 0))
        self.read_upto = self.offset
        self.pending: dict[str, tuple[bytes, int, int]] = {}  # incident_id -> (entry, seq, tick sent)
        self.ticks = 0
        self.applied_count = int(self.event_log.get_value(self.prefix + "applied_count", 0))
        self.dispatch_marks: AppliedMarks | None = stored_marks(
            self.event_log.get_value(self.prefix + "dispatch_marks"),
            self.event_log.get_value(self.prefix + "dispatched"),
        )
        self.published = self.event_log.last_seq(COMMITTED_INCIDENTS)
        if self.publish:
            self._index_committed()
        self.last_role: tuple[str, int, str | None] | None = None
        self._find_peers()
        self.log.info(
            "raft_replica_started",
            replica=self.replica,
            term=self.core.term,
            commit=self.core.commit_index,
            peers=self.peers,
        )
        self._connect_link()
        self._drain()
        # Ticks are owed by real time (one per tick_s from here) and delivered when the actor wakes, before
        # anything else it handles; the tick timer is set only for the next tick that can do something
        # (``_arm_tick``). Before, an idle replica woke at every tick (20/s), which was most of an idle
        # gateway node's CPU.
        self.next_tick_at = time.monotonic() + self.tick_s
        self.tick_timers: list[float] = []  # when the tick timers already set will fire (a heap)
        self.max_catch_up = max(100, 4 * a.election_ticks)  # past every election timeout (15-30 ticks)
        self._arm_tick()
        if self.publish:
            self.subscribe(PROPOSED_INCIDENTS)

    def _index_committed(self) -> None:
        """Index the committed records of a log written before ``committed_index`` existed (once: a mark
        says it is done), so the API answers repeated incident_ids from disk, not from a map in memory.
        In slices of INDEX_SLICE_S between the replica's other work, never in one go: millions of records
        take longer than an election timeout, and than the supervisor's start timeout."""
        self.index_started: float | None = None
        self.index_records = 0
        if not committed_index.complete(self.event_log):
            self.index_started = time.monotonic()
            self._index_slice()

    def _index_slice(self) -> None:
        if self.index_started is None:
            return
        deadline = time.monotonic() + INDEX_SLICE_S
        while True:
            count, done = committed_index.backfill_step(self.event_log)
            self.index_records += count
            if done:
                break
            if time.monotonic() >= deadline:
                self.schedule(_INDEX, INDEX_PAUSE_S)  # Raft's messages and ticks are handled meanwhile
                return
        if self.index_records:
            self.log.info(
                "committed_index_built",
                replica=self.replica,
                records=self.index_records,
                seconds=round(time.monotonic() - self.index_started, 3),
            )
        self.index_started = None

    def on_appended(self, stream: str) -> None:
        stamp("R bell")
        self._catch_up_ticks()
        self._take_proposals()
        self._drain()
        self._arm_tick()

    # -- time -----------------------------------------------------------------------------------------

    def _catch_up_ticks(self) -> None:
        """Deliver the ticks real time owes since the last one (at most ``max_catch_up``: after a long
        pause every timer is past due anyway), draining after any tick that made the core act, so that
        each tick sees the state the one before left, as if the timer had fired at every tick."""
        now = time.monotonic()
        if now < self.next_tick_at:
            return
        owed = int((now - self.next_tick_at) // self.tick_s) + 1
        for _ in range(min(owed, self.max_catch_up)):
            self._tick_once()
        self.next_tick_at += owed * self.tick_s

    def _tick_once(self) -> None:
        self.ticks += 1
        if self.link is not None and not self.link.connected and self.ticks % LINK_RETRY_TICKS == 0:
            self._connect_link()
        self.core.tick()
        if self.ticks % 100 == 0:
            self._find_peers()
        if self.core.has_ready() or self.snapshot_waiting:
            self._drain()

    def _ticks_ahead(self) -> int:
        """How many ticks from the next owed one the tick timer may sleep: 1 while the shell itself needs
        every tick (proposals to re-propose, the gateway socket to reconnect), else until the core's
        next due tick (``RaftCore.ticks_until_due``); a one-member cluster's leader, which has nobody to
        send heartbeats to, at most once a second."""
        if self.pending or self.snapshot_waiting or (self.link is not None and not self.link.connected):
            return 1
        ahead = self.core.ticks_until_due()
        if not self.peers and self.core.role == "leader":
            ahead = max(ahead, round(IDLE_SOLO_TICK_S / self.tick_s))
        return ahead

    def _arm_tick(self) -> None:
        """Make sure a tick timer fires by the next tick that can do something (a timer already set that
        early is enough; one set later stays, and finds nothing owed or only counts)."""
        due_at = self.next_tick_at + (self._ticks_ahead() - 1) * self.tick_s
        if self.tick_timers and self.tick_timers[0] <= due_at + 1e-3:
            return
        heapq.heappush(self.tick_timers, due_at)
        self.schedule("tick", max(0.0, due_at - time.monotonic()))

    # -- peers ----------------------------------------------------------------------------------------

    def _cluster_view(self) -> tuple[str, list[str], dict[str, str]]:
        from supervisors.peer.bridge_cluster import ClusterModeError, load_cluster

        view = load_cluster(self.node, self.args.topology)
        if self.node not in view.raft_members:
            raise ClusterModeError(
                f"node {self.node!r} runs a Raft replica in cluster mode but is not in cluster.raft_members "
                f"{list(view.raft_members)}: add it there or remove the replica from its tree"
            )
        return self.node, [m for m in view.raft_members if m != self.node], dict(view.trusted_keys)

    def _connect_link(self) -> None:
        """Connect the direct socket to the gateway process when it listens (at start, then every
        LINK_RETRY_TICKS while not connected: a connect to a local socket is one cheap syscall)."""
        link = self.link
        if link is None or link.connected or not link.connect():
            return
        self.link_fd = link.fileno
        self.watch_fd(self.link_fd, _LINK)
        self.log.info("raft_link_connected", replica=self.replica, path=str(link.path))

    def _link_lost(self, reason: str) -> None:
        """The socket broke or the gateway closed it (restarting): the shell relays until we reconnect."""
        if self.link is not None:
            self.link.close()
        if self.link_fd is not None:
            self.unwatch_fd(self.link_fd)
            self.link_fd = None
            self.log.info("raft_link_closed", replica=self.replica, reason=reason)

    def on_ready(self, name: str) -> None:
        if name != _LINK or self.link is None:
            return
        self._catch_up_ticks()  # time first: a heartbeat must not be aged by ticks owed from before it
        messages = self.link.receive()
        stamp("R recv")
        if messages is None:
            self._link_lost("closed by the gateway")
            self._arm_tick()  # every tick again, to reconnect
            return
        for msg in messages:
            if isinstance(msg, PipeUnreachable):
                self._unreachable(msg)
            elif msg.kind == "propose":
                try:
                    entries = msgspec.msgpack.decode(msg.data, type=list[bytes])
                except (msgspec.DecodeError, UnicodeDecodeError):
                    continue
                self._propose(entries)
            elif msg.peer in self.remote:  # the gateway checked that the message's sender is that peer
                self.last_heard[msg.peer] = self.ticks
                self._step(decode_message(msg.data))
        self._drain()
        self._arm_tick()

    def _unreachable(self, notice: PipeUnreachable) -> None:
        """The gateway dropped a frame to ``peer`` (its queue was full): etcd's ReportUnreachable (the
        leader probes ``peer`` instead of pipelining into a queue that is not draining) and, for a
        snapshot chunk, ReportSnapshot(failed) (it is sent again when ``peer`` answers). Or ``peer``'s
        connection to our gateway ended: if it led us, campaign soon (its process probably died)."""
        peer = notice.peer
        if peer not in self.remote:
            return
        if notice.connection_lost and self.core.leader_id == peer:
            self.log.info("raft_leader_connection_lost", replica=self.replica, leader=peer)
            self.core.report_leader_lost(peer)
        if notice.snapshot:
            self.core.report_snapshot(peer, failed=True)
        self.core.report_unreachable(peer)

    def _to_gateway(self, to: str, data: bytes, kind: str) -> None:
        link = self.link
        if link is not None and link.connected:
            if link.send(to, data, kind):
                if link.pending and not self.link_flush_armed:
                    self.link_flush_armed = True
                    self.schedule(_LINK_FLUSH, LINK_FLUSH_S)
                return
            if not link.connected:  # broken: fall back to the shell until it is back
                self._link_lost("send failed")
            else:
                return  # dropped (the gateway does not read): Raft retries, as with a full queue
        msg = PeerSend(to, data, kind)
        if self.gateway_address is not None:
            self.send(self.gateway_address, msg)
        else:  # until the shell greets us: by name (held by the supervisor while the shell starts)
            self.tell(self.args.gateway, msg)

    def _find_peers(self) -> None:
        for peer in self.peers:
            if peer in self.remote:
                continue
            if peer not in self.addresses and self._supervisor_address is not None:
                self.send(self._supervisor_address, WhereIs(peer))

    def _send_raft(self, to: str, data: bytes) -> None:
        if to in self.remote:
            self._to_gateway(to, data, "raft")  # the gateway's queues are bounded: no probing needed
            return
        address = self.addresses.get(to)
        if address is None:
            return  # unknown peer: the message is lost, which Raft tolerates
        if self.ticks - self.last_heard.get(to, self.ticks) > self.silent_after_ticks:
            # A peer that stopped answering may have stopped reading: every message to it would hold one of
            # the 20 transmit slots Thespian shares among all our sends until it times out. Probe it at a
            # low rate instead (Raft only needs one message to get through when it is back).
            if self.ticks - self.last_probe.get(to, -(10**9)) < PROBE_SILENT_PEER_TICKS:
                return
            self.last_probe[to] = self.ticks
        self.send(address, RaftEnvelope(self.replica, data))

    # -- messages -------------------------------------------------------------------------------------

    def on_message(self, msg: object, sender: ActorAddress) -> None:
        self._catch_up_ticks()
        if isinstance(msg, RaftEnvelope):
            if msg.sender not in self.remote:
                self.addresses.setdefault(msg.sender, sender)
            elif sender is not None:  # relayed by the gateway shell: its current address (after restarts)
                self.gateway_address = sender
            self.last_heard[msg.sender] = self.ticks
            self._step(decode_message(msg.data))
        elif isinstance(msg, Location):
            if msg.address is not None:
                self.addresses[msg.child_id] = msg.address
                self.send(msg.address, PeerHello(self.replica))
        elif isinstance(msg, PeerHello):
            self.addresses[msg.replica] = sender
        elif isinstance(msg, PeerGatewayUp):
            self.gateway_address = sender
        elif isinstance(msg, PipeUnreachable):  # relayed by the gateway shell (no direct socket)
            self._unreachable(msg)
        elif isinstance(msg, ProposeEntry):
            self._propose([msg.data])
        elif isinstance(msg, ProposeEntries):
            self._propose(list(msg.entries))
        elif isinstance(msg, LinearizableRead):
            self.read_waiters[msg.ctx] = sender
            try:
                self.core.read_index(msg.ctx.encode())
            except NotLeader:
                del self.read_waiters[msg.ctx]
                self.send(sender, ReadResult(msg.ctx, -1, -1, linearizable=False))
        elif isinstance(msg, StaleRead):
            self.send(sender, ReadResult("", self.core.applied_index, self.applied_count, linearizable=False))
        elif isinstance(msg, RaftStatusRequest):
            self.send(sender, self.status())
        elif isinstance(msg, TransferLeadership):
            try:
                self.core.transfer_leadership(msg.to)
            except RaftError as exc:  # not the leader, unknown target: a request error, not a crash
                self.log.warning("leadership_transfer_refused", to=msg.to, reason=str(exc))
        elif isinstance(msg, ChangeMembership):
            self.send(sender, self._change_membership(msg))
        elif isinstance(msg, dict):
            self._json_op(msg, sender)
        self._drain()
        self._arm_tick()

    def _json_op(self, msg: dict[str, Any], sender: ActorAddress) -> None:
        """What the node's control socket (plain JSON, e.g. the HTTP API) may ask: ``{"op": "raft_status"}``
        answers the status as a map; ``{"op": "read_index", "ctx": "<unique>"}`` is a LinearizableRead
        (answered once applied >= the read index; at once with ``applied_index`` -1 when not the leader)."""
        op, ctx = msg.get("op"), msg.get("ctx")
        if op == "raft_status":
            self.send(sender, self._status_map())
        elif op == "read_index" and isinstance(ctx, str) and 0 < len(ctx) <= 200:
            self.on_message(LinearizableRead(ctx), sender)
        elif op == "transfer_leader" and _name_ok(msg.get("to")):
            self.send(sender, self._transfer_leader(msg["to"]))
        elif op == "change_membership" and msg.get("kind") in _KINDS and _name_ok(msg.get("replica")):
            self.send(sender, self._membership_op(msg["kind"], msg["replica"]))
        else:
            error = (
                "expected {'op': 'raft_status'}, {'op': 'read_index', 'ctx': <1..200 chars>}, "
                "{'op': 'transfer_leader', 'to': <replica>} or {'op': 'change_membership', "
                f"'kind': one of {list(_KINDS)}, 'replica': <replica>}}"
            )
            self.send(sender, {"error": f"{error}, got op {op!r}"})

    def _status_map(self) -> dict[str, Any]:
        """The JSON status: ``RaftStatus`` plus the membership (the CLI shows who votes and who learns)."""
        core = self.core
        return {
            **dataclasses.asdict(self.status()),
            "voters": list(core.voters),
            "learners": list(core.learners),
            "lead_transferee": core.lead_transferee,
            # the direct socket to the gateway process (cluster mode; null otherwise)
            "gateway_link": self.link.status() if self.link is not None else None,
        }

    def _transfer_leader(self, to: str) -> dict[str, Any]:
        """JSON ``transfer_leader``: start handing leadership to ``to`` (answered at once; the caller
        watches ``raft_status`` for the new leader: the core abandons the attempt after an election
        timeout)."""
        try:
            self.core.transfer_leadership(to)
        except RaftError as exc:  # not the leader, not a voter: the answer says what to do
            self.log.warning("leadership_transfer_refused", to=to, reason=str(exc))
            return {"ok": False, "reason": f"{type(exc).__name__}: {exc}", **self._status_map()}
        self.log.info("leadership_transfer_started", replica=self.replica, to=to, term=self.core.term)
        return {"ok": True, "reason": "transferring", **self._status_map()}

    def _membership_op(self, kind: str, replica: str) -> dict[str, Any]:
        """JSON ``change_membership``: one step (add_learner, promote, remove), proposed on the leader."""
        if self.args.cluster and kind != "remove" and replica not in {self.replica, *self.remote}:
            # the peer gateways only carry Raft traffic between the topology's raft_members
            return {
                "ok": False,
                "reason": f"{replica!r} is not in cluster.raft_members of the topology "
                f"({sorted({self.replica, *self.remote})}): only a gateway node can be a Raft member (an edge "
                "node never is); list the gateway there (and restart the gateways) before adding it to the Raft "
                "configuration",
                **self._status_map(),
            }
        result = self._change_membership(ChangeMembership(kind, replica))
        log = self.log.info if result.ok else self.log.warning
        log(
            "membership_change",
            replica=self.replica,
            kind=kind,
            member=replica,
            ok=result.ok,
            reason=result.reason,
        )
        return {"ok": result.ok, "reason": result.reason, **self._status_map()}

    def _change_membership(self, msg: ChangeMembership) -> MembershipResult:
        if not isinstance(msg.replica, str) or not msg.replica or not isinstance(msg.kind, str):
            return MembershipResult(False, f"replica must be a non-empty string, got {msg.replica!r}")
        try:
            self.core.propose_conf_change(ConfChange(msg.kind, msg.replica))  # type: ignore[arg-type]
        except RaftError as exc:
            return MembershipResult(False, f"{type(exc).__name__}: {exc}")
        if msg.replica not in self.peers and msg.kind != "remove":
            self.peers.append(msg.replica)
            self._find_peers()
        return MembershipResult(True, "proposed")

    def status(self) -> RaftStatus:
        core = self.core
        return RaftStatus(
            self.replica,
            core.role,
            core.term,
            core.leader_id,
            core.commit_index,
            core.applied_index,
            self.applied_count,
        )

    def on_timer(self, name: str) -> None:
        if name == _INDEX:
            self._index_slice()
            return
        if name == _LINK_FLUSH:
            self.link_flush_armed = False
            if self.link is not None and self.link.flush():
                self.link_flush_armed = True
                self.schedule(_LINK_FLUSH, LINK_FLUSH_S)
            elif self.link is not None and not self.link.connected:
                self._link_lost("flush failed")
            return
        if self.tick_timers:
            heapq.heappop(self.tick_timers)  # the earliest set is the one firing
        self._catch_up_ticks()
        if self.publish:
            self._take_proposals()
        self._drain()
        self._arm_tick()

    # -- proposals ------------------------------------------------------------------------------------

    def _propose(self, entries: list[bytes]) -> None:
        # an entry is bytes (anything else could not be stored); its content is checked when applied
        entries = [data for data in entries if isinstance(data, bytes) and data]
        if self.core.role == "leader":
            with contextlib.suppress(NotLeader, ProposalDropped):  # re-proposed from `pending` later
                for data in entries:
                    self.core.propose(data)
            return
        leader = self.core.leader_id
        if leader is not None and leader in self.remote and entries:
            self._to_gateway(leader, _encode(entries), "propose")
        elif leader is not None and leader in self.addresses and entries:
            self.send(self.addresses[leader], ProposeEntries(tuple(entries)))

    def _take_proposals(self) -> None:
        room = 4 * MAX_PROPOSALS_PER_TICK - len(self.pending)  # bound what is outstanding
        limit = self.input_limit(PROPOSED_INCIDENTS, max(room, 0))
        records = self.event_log.read(PROPOSED_INCIDENTS, after=self.read_upto, limit=limit)
        kept = {rec.seq for rec in self.admit(records)}  # a quarantined proposal is passed over
        fresh: dict[str, tuple[dict[str, Any], int]] = {}  # incident_id -> (incident, seq)
        for rec in records:
            self.read_upto = rec.seq
            if rec.seq not in kept or not isinstance(rec.payload, dict):
                continue
            iid = rec.payload.get("incident_id")
            if (
                iid
                and iid not in self.pending
                and iid not in fresh
                and self.event_log.get_value(self.prefix + "applied/" + iid) is None
            ):
                fresh[iid] = (rec.payload, rec.seq)
        # ONE signature for all of them (a Merkle root, see entries.py): Ed25519 signing and verifying
        # per incident were most of the replicas' CPU when pipelining
        items = list(fresh.items())
        for lo in range(0, len(items), MAX_BATCH):
            chunk = items[lo : lo + MAX_BATCH]
            signed = signed_batch(self.node, [incident for _, (incident, _) in chunk], self.key)
            for (iid, (_, seq)), entry in zip(chunk, signed, strict=True):
                self.pending[iid] = (entry, seq, -(10**9))
        due = [
            (iid, data, seq)
            for iid, (data, seq, sent) in self.pending.items()
            if self.ticks - sent >= REPROPOSE_TICKS  # not applied in time: propose (again)
        ][:MAX_PROPOSALS_PER_TICK]
        if due:
            self._propose([data for _, data, _ in due])
            for iid, data, seq in due:
                self.pending[iid] = (data, seq, self.ticks)

    def _done_offset(self) -> int:
        """Everything up to here is applied (or was a duplicate): a restart re-reads only after it."""
        if self.pending:
            return min(seq for _, seq, _ in self.pending.values()) - 1
        return self.read_upto

    # -- the Ready loop -------------------------------------------------------------------------------

    def _drain(self) -> None:
        for waiting in list(self.snapshot_waiting.values()):
            self._send_message(waiting)  # its file may be written by now
        while self.core.has_ready():
            rd = self.core.ready()
            early, late = self._split_messages(rd)
            for m in early:  # a leader's appends go out while it writes its own log (thesis 10.2.1)
                self._send_message(m)
            stamp("R persist")
            newly, assigned = self._persist_and_apply(rd)  # durable BEFORE any message that depends on it
            for m in late:
                self._send_message(m)
            stamp("R sent")
            if assigned:  # the consumers (the gateway's API tail) wake after our acks left, not before
                self.event_log.ring(assigned)
            self._applied(newly)
            self.core.advance(rd)
            for state in rd.read_states:
                ctx = state.ctx.decode()
                waiter = self.read_waiters.pop(ctx, None)
                if waiter is not None:
                    self.pending_reads.append((state.index, ctx, waiter))
        self.spool.close_inbox()  # installed above, or refused by the core as stale
        self._serve_reads()
        self._maybe_compact()
        role = (self.core.role, self.core.term, self.core.leader_id)
        if role != self.last_role:
            if role[2] is not None and (self.last_role is None or self.last_role[2] != role[2]):
                # a new leader: what was forwarded to the old one may be lost with it; propose it again now
                # instead of after the re-propose timer (duplicates are applied once: incident_id is the key)
                self.pending = {iid: (d, seq, -(10**9)) for iid, (d, seq, _) in self.pending.items()}
            self.last_role = role
            # read by the node's dispatcher: only the leader's delivers (actors/dispatch, cluster mode)
            self.event_log.put_value(
                self.prefix + "role", {"role": role[0], "term": role[1], "leader": role[2]}
            )
            self.log.info("raft_role", replica=self.replica, role=role[0], term=role[1], leader=role[2])

    def _split_messages(self, rd: Ready) -> tuple[list[Message], list[Message]]:
        """The messages of ``rd`` that may leave before it is persisted, and the rest.

        A leader's appends, heartbeats and snapshots promise nothing about its own disk, so they go out
        first and the followers write in parallel with the leader (Raft thesis 10.2.1, etcd's leader
        does the same) when the Ready changes neither term nor vote (a new term or vote must be durable
        before anyone hears of it). Safe because the leader counts its own new entries toward a commit
        only when it handles an acknowledgement, which this single-threaded actor does after the write
        below has returned; a crash before it loses only entries nobody was told were committed.
        Everything else (a follower's acknowledgement, votes) waits for the write, as the Ready contract
        says."""
        if not rd.messages or self.core.role != "leader" or rd.snapshot is not None:
            return [], list(rd.messages)
        hs, persisted = rd.hard_state, self.storage.hard_state
        if hs is not None and (hs.term, hs.vote) != (persisted.term, persisted.vote):
            return [], list(rd.messages)
        early = [m for m in rd.messages if m.type in _LEADER_EARLY]
        late = [m for m in rd.messages if m.type not in _LEADER_EARLY]
        return early, late

    def _persist_and_apply(self, rd: Ready) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
        """Steps 1 and 3 of the Ready contract in ONE transaction: the Raft log and hard state, and the state
        machine's apply of what committed (which may include entries of this same Ready: atomic either
        way); returns the incidents newly applied and the streams appended (the caller rings them once
        its messages left). A Ready with nothing to write (messages only; the proposal offset unchanged)
        writes nothing.

        etcd's MustSync: only a new entry, a snapshot or a new term/vote must be on disk before the
        messages leave. A Ready that only moves the commit index and applies (the leader's commit of what
        a quorum acknowledged, a follower learning the commit index from a heartbeat) is written with
        ``durable=False``, one fsync fewer (a machine crash may undo it, never tear it; a SIGKILL loses
        nothing): at boot the applied index restarts at the snapshot and the committed entries are
        applied again from the durable log, deduplicated by ``applied/<incident_id>``. (Splitting a
        follower's apply from its must-sync write, to acknowledge first, measured no faster end to end
        and cost a third fsync per Ready.)"""
        apply = bool(rd.committed_entries) or rd.snapshot is not None
        offset_moved = self.publish and self._done_offset() != self.offset
        if not (needs_persist(rd) or apply or offset_moved):
            return [], []
        inline = None
        if rd.snapshot is not None:
            # the state machine a snapshot carried is applied below (inline) or already, piece by piece
            # (a file); either way this replica's event log then holds it, so what it keeps as its snapshot
            # is the same constant-size reference a compaction makes (see _snapshot_data)
            inline = None if self._install_spooled(rd.snapshot) else rd.snapshot.data
            kept = dataclasses.replace(rd.snapshot, data=self._snapshot_data(rd.snapshot.index))
            rd = dataclasses.replace(rd, snapshot=kept)
        with self.event_log.batch(durable=rd.must_sync, ring=False) as batch:
            self.storage.stage_ready(batch, rd)
            newly = self._stage_apply(rd, batch, inline)
        self.storage.mirror_ready(rd)
        return newly, list(batch.assigned)

    def _install_spooled(self, snap: Snapshot) -> bool:
        """Apply the state machine of a snapshot that came as a file (``snapshot_file.py``), one durable
        transaction per piece, and publish each piece as it lands; False when ``snap`` is not such a
        snapshot. A crash part way leaves a prefix applied, which is what a replayed apply does anyway:
        the leader sends the snapshot again and what is applied already is skipped (``incident_id``)."""
        ref = spool_reference(snap.data)
        if ref is None:
            return False
        stream = self.spool.opened(ref) if self.spool is not None else None
        if stream is None:  # _step took the file before the core saw the message: a bug if missing
            raise SnapshotFileError(f"snapshot file {ref.spool!r} was not opened before its install")
        count = pieces = 0
        try:
            for piece in read_pieces(stream):
                good, bad = check_snapshot_items(piece)
                self._log_rejected(bad, snap.term)
                with self.event_log.batch(ring=False) as batch:
                    newly = self._stage_incidents(batch, [(i, inc, None) for i, inc in good])
                self.event_log.ring(batch.assigned)
                self._applied(newly)
                count += len(piece)
                pieces += 1
        except SnapshotFileError as exc:  # the gateway checked the file's shape and size: only corruption
            self._log_rejected([(0, f"malformed snapshot file: {exc}")], snap.term)
        self.log.info(
            "raft_snapshot_installed",
            replica=self.replica,
            index=snap.index,
            incidents=count,
            pieces=pieces,
            bytes=ref.bytes,
        )
        return True

    def _log_rejected(self, bad: list[tuple[int, str]], term: int) -> None:
        for raft_index, why in bad:
            self.log.warning(
                "entry_rejected",
                replica=self.replica,
                index=raft_index,
                term=term,
                reason=why,
                source="snapshot",
            )

    def _stage_apply(
        self, rd: Ready, batch: WriteBatch, inline: bytes | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        """Stage the apply of an ``inline`` snapshot's state machine and ``rd``'s committed entries in
        ``batch``; the incidents newly applied (for :meth:`_applied` once the batch is committed)."""
        items: list[tuple[int, dict[str, Any], bytes | None]] = []
        if inline and rd.snapshot is not None:
            # installed from the leader because we were behind its compacted log: its state machine
            incidents, bad = open_snapshot(inline)
            items += [(raft_index, incident, None) for raft_index, incident in incidents]
            self._log_rejected(bad, rd.snapshot.term)
            self.log.info("raft_snapshot_installed", replica=self.replica, index=rd.snapshot.index)
        for entry in rd.committed_entries:
            if entry.kind != "normal" or not entry.data:
                continue
            # total: a malformed committed entry is a no-op here (`applied` still advances past it),
            # never an exception, or the replica would crash on it at every boot
            opened, why = open_entry(entry.data, self.trusted)
            if opened is None:
                batch.put_value(f"{self.prefix}rejected/{entry.index}", why)
                self.log.warning(
                    "entry_rejected",
                    replica=self.replica,
                    index=entry.index,
                    term=entry.term,
                    reason=why,
                )
                continue
            items.append((entry.index, opened, entry.data))
        newly = self._stage_incidents(batch, items)
        if self.publish:
            self.offset = self._done_offset()
            batch.put_value(self.offset_key, self.offset)
        return newly

    def _stage_incidents(
        self, batch: WriteBatch, items: list[tuple[int, dict[str, Any], bytes | None]]
    ) -> list[tuple[int, dict[str, Any]]]:
        """Stage the apply of (raft index, incident, its entry or None) in ``batch``: each incident once
        (``incident_id``), dispatch marks merged, the published records; the incidents newly applied."""
        newly: list[tuple[int, dict[str, Any]]] = []
        records: list[dict[str, Any]] = []  # for incidents/committed, encoded in one pass at the end
        seen: set[str] = set()

        def apply_incident(raft_index: int, incident: dict[str, Any], entry: bytes | None = None) -> None:
            iid = incident["incident_id"]
            mine = self.pending.pop(iid, None)
            if iid in seen or self.event_log.get_value(self.prefix + "applied/" + iid) is not None:
                return  # the same incident proposed twice: applied once
            seen.add(iid)
            batch.put_value(self.prefix + "applied/" + iid, raft_index)
            batch.put_value(f"{self.prefix}incident/{raft_index:020d}", incident)
            if incident.get("type") == DISPATCH_MARK:  # the leader's dispatch progress, not an incident
                marks = merge_mark(self.dispatch_marks, incident.get("payload"))
                if marks is not None:
                    self.dispatch_marks = marks
                    batch.put_value(self.prefix + "dispatch_marks", marks)
                    batch.put_value(self.prefix + "dispatched", marks["through"])  # what every sink has
                return
            newly.append((raft_index, incident))
            if self.publish:
                index = self.published + len(newly)
                record = {
                    "index": index,
                    "incident": incident,
                    "raft_index": raft_index,
                }
                if mine is not None and mine[0] == entry:
                    # this node's own proposal is the one applied: the seq it had in incidents/proposed tells
                    # the API which request made it (201) and which came after it (200), see node_backend
                    record["proposed_seq"] = mine[1]
                records.append(record)
                committed_index.stage(batch, iid, index)  # the API's duplicate check reads it

        for raft_index, incident, entry in items:
            apply_incident(raft_index, incident, entry)
        if records:
            batch.extend(COMMITTED_INCIDENTS, records)
        if newly:
            batch.put_value(self.prefix + "applied_count", self.applied_count + len(newly))
        return newly

    def _applied(self, newly: list[tuple[int, dict[str, Any]]]) -> None:
        """The apply of ``newly`` is durable: count it, and log ONE ``incident_committed`` line for it.

        One line per applied batch, not per incident: pipelining ~100 incidents per Ready, rendering a
        structlog line per incident was ~40 % of a follower's CPU. Every line has ``incident_ids`` and
        ``raft_indexes`` (in order); a batch of one (the usual case: incidents are rare events) also has
        ``incident_id``, ``raft_index``, ``type``, ``sensor`` and ``confidence`` as before."""
        self.applied_count += len(newly)
        if self.publish:
            self.published += len(newly)
        if not newly:
            return
        one: dict[str, Any] = {}
        if len(newly) == 1:
            raft_index, incident = newly[0]
            one = {
                "raft_index": raft_index,
                "incident_id": incident["incident_id"],
                "type": incident.get("type"),
                "sensor": incident.get("sensor"),
                "confidence": incident.get("confidence"),
            }
        self.log.info(
            "incident_committed",
            replica=self.replica,
            term=self.core.term,
            count=len(newly),
            incident_ids=[incident["incident_id"] for _, incident in newly],
            raft_indexes=[raft_index for raft_index, _ in newly],
            **one,
        )

    def _serve_reads(self) -> None:
        applied = self.core.applied_index
        ready = [r for r in self.pending_reads if r[0] <= applied]
        self.pending_reads = [r for r in self.pending_reads if r[0] > applied]
        for index, ctx, waiter in ready:
            self.send(waiter, ReadResult(ctx, index, self.applied_count, linearizable=True))

    def _snapshot_data(self, applied: int) -> bytes:
        """What a compaction keeps as its snapshot: a reference to this replica's event log, which holds the
        state machine already (``incident/<raft index>``, written by every apply). Before, each compaction
        (every ``snapshot_every`` entries) encoded and durably rewrote every incident ever applied: O(all
        history) per compaction, ~10 % of a pipelining follower's CPU at 50k incidents and growing with
        the log. Now a compaction is O(1), and the incidents are read when a snapshot is actually sent to
        a follower behind the log (:meth:`_send_message`), as etcd sends its bbolt file."""
        return _encode({"applied_index": applied, "incidents_in": "event_log"})

    def _step(self, m: Message) -> None:
        """``core.step``, except a snapshot this replica cannot install, refused before Raft sees it (the
        leader sends it again): one that is only a reference to its sender's event log (a leader must
        never send one: ``_send_message``; installing it would move this replica past entries whose
        incidents it never received), or one naming a file that is not a complete snapshot of the sender's
        in this node's spool (``SnapshotSpool.take``, which also opens the file it accepts)."""
        snap = m.snapshot
        if snap is None:
            self.core.step(m)
            return
        ref = spool_reference(snap.data)
        if _is_reference(snap.data):
            why: str | None = "the snapshot holds no incidents, only a reference to the sender's event log"
        elif ref is not None:
            why = self.spool.take(ref, m.sender, from_this_node=m.sender not in self.remote)
        else:
            why = None  # inline, as an older garrison sent it
        if why is not None:
            self.log.error(
                "raft_snapshot_refused", replica=self.replica, sender=m.sender, index=snap.index, reason=why
            )
            return
        self.core.step(m)

    def _send_message(self, m: Message) -> None:
        """``m`` to its replica. A snapshot leaves as a file (``snapshot_file.py``) that the message names:
        a replica of this node reads it from the spool they share, the gateway streams it to another node.
        So it is never one value in memory however large the state machine grew (before, replicas of one
        node got the whole state machine in one Thespian message)."""
        snap = m.snapshot
        if snap is None or not _is_reference(snap.data):
            # no snapshot, or one an older leader sent inline (it holds its incidents)
            self._send_raft(m.to, encode_message(m))
            return
        self.snapshot_waiting.pop(m.to, None)
        try:
            ref = self.spool.outgoing(snap.index, lambda: self._state_machine(snap.index))
        except SnapshotFileError as exc:  # Raft sends it again: probe, then a new snapshot
            self.log.error("snapshot_write_failed", replica=self.replica, peer=m.to, reason=str(exc))
            self.core.report_snapshot(m.to, failed=True)
            return
        if ref is None:  # a thread writes the file: sent from _drain once it is there
            self.snapshot_waiting[m.to] = m
            return
        data = encode_message(
            dataclasses.replace(m, snapshot=dataclasses.replace(snap, data=encode_reference(ref)))
        )
        if m.to in self.remote:
            self._to_gateway(m.to, data, "snapshot")
        else:
            self._send_raft(m.to, data)

    def _state_machine(self, index: int) -> Iterator[tuple[int, Any]]:
        """(raft index, incident) of every incident applied up to ``index``, in index order, read from one
        LMDB cursor (an apply is durable before a compaction can cover it)."""
        prefix = self.prefix + "incident/"
        for key, incident in self.event_log.iter_values(prefix):
            raft_index = int(key[len(prefix) :])
            if raft_index > index:
                return
            yield raft_index, incident

    def _maybe_compact(self) -> None:
        applied = self.core.applied_index
        if self.snapshot_every and applied - self.storage.snapshot().index >= self.snapshot_every:
            try:
                self.core.compact(applied, self._snapshot_data(applied))
            except Exception as exc:  # not yet persisted / already snapshotted: try again later
                self.log.debug("compaction_deferred", reason=str(exc))
                return
