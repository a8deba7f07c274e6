"""Deterministic simulation of a Raft cluster, driven from one seed.

N replicas of `RaftCore` run over a simulated network and clock in one thread. Everything random
(message loss, duplication, delay and so reordering, partitions including one-way ones,
crash-restart, leadership transfer, membership changes, compaction, client traffic) comes from
`random.Random(seed)`, so a seed replays bit for bit.

Time: one *step* is one tick period (`tick_ms` of simulated time). In a step every live replica
ticks once (each at its own phase inside the period), and every message delivery, Ready
processing ("fsync" completion), client action and fault due in that period happens in time
order.

Crashes lose everything not persisted: a replica's storage is what the harness wrote from
completed `Ready`s (the harness persists a Ready before sending its messages), and a restart
builds a fresh core and state machine from that storage alone. A Ready is processed a few
simulated milliseconds after the core produced it, so a crash in between loses it.

Checked after every event: election safety, log matching (on the persisted logs), leader
completeness (when a leader takes office), state machine safety and "committed entries never
change", terms/commit/applied monotonic, in-order application, no duplicate application of a
client request, no stale ReadIndex read. At the end: a fault-free liveness phase must converge,
no acknowledged write may be missing from the committed log, and the recorded client history
(Jepsen JSON-lines shape) must pass `actors.linearizability.check_history(..., "kv")`.
Every violation message carries the command that reproduces it.
"""

from __future__ import annotations

import heapq
import random
import traceback
from dataclasses import dataclass, field
from typing import Any

import msgspec

from actors.raft.codec import decode_message, encode_message
from actors.raft.core import RaftCore
from actors.raft.errors import InvalidConfChange, NotLeader, ProposalDropped
from actors.raft.storage import MemoryStorage
from actors.raft.types import ConfChange, Entry, Message, RaftConfig, Snapshot


class InvariantViolation(AssertionError):
    """A Raft safety property (or the client oracle) failed; the message says which and where."""


@dataclass(frozen=True, slots=True)
class SimOptions:
    nodes: int = 3
    steps: int = 1000
    tick_ms: int = 10
    election_ticks: int = 10
    election_ticks_max: int | None = None
    heartbeat_ticks: int = 3
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_msg: int = 4  # small, so that catching up takes several round trips
    max_inflight: int = 4
    min_delay_ms: int = 1
    max_delay_ms: int = 12
    drop_rate: float = 0.03
    duplicate_rate: float = 0.03
    slow_rate: float = 0.03  # these messages take up to slow_delay_ms: reordering
    slow_delay_ms: int = 250
    min_fsync_ms: int = 0  # a Ready is persisted min..max ms after the core produced it
    max_fsync_ms: int = 3
    fault_rate: float = 0.05  # probability of one fault per step
    clients: int = 3
    keys: int = 3
    client_rate: float = 0.12  # probability per step that an idle client starts an operation
    spare_nodes: int = 2  # ids that membership changes may add
    crash_after_vote_rate: float = 0.0  # crash a replica right after it sent a vote grant
    leader_churn_rate: float = 0.0  # crash a new leader within a few ticks of its election
    max_down_ticks: int = 40  # a crashed replica restarts 1..max_down_ticks ticks later
    compact_min_entries: int = 8
    # After healing: fail once this many ticks pass with no progress (no follower's match, applied or
    # commit index advancing), or at a cap of 3 election timeouts + liveness_ticks +
    # liveness_ticks_per_entry x the lag at healing, whichever comes first. Progress, not a fixed
    # deadline: a learner added late catches up one entry per round trip with max_entries_per_msg=1 and
    # max_inflight=1, which takes longer than any fixed budget on a long run, while a stuck cluster
    # stops progressing at once.
    liveness_ticks: int = 300
    liveness_ticks_per_entry: int = 10
    wire_codec: bool = True  # every message crosses the network as msgspec bytes
    check_linearizability: bool = True
    check_stale_reads: bool = True  # the oracle's own quick check; the checker covers it too
    planted_bugs: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class SimResult:
    seed: int
    nodes: int
    steps: int
    violation: str | None
    stats: dict[str, int]
    history: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.violation is None


def reproduce_command(seed: int, options: SimOptions) -> str:
    bugs = "".join(f" --bug {bug}" for bug in sorted(options.planted_bugs))
    return f"python -m bench.raft_sim --seed {seed} --steps {options.steps}{bugs}"


def nodes_for_seed(seed: int) -> int:
    """The cluster size a seed runs with: 3, 5 and 7 in turn."""
    return (3, 5, 7)[seed % 3]


def options_for_seed(seed: int, steps: int = 1000, planted_bugs: frozenset[str] = frozenset()) -> SimOptions:
    """Swarm testing: each seed also draws its own fault mix and core tuning, so that some
    runs stress what others barely touch (tiny appends, heavy loss, long delays, crash storms,
    pre-vote or check-quorum off). The same seed always gives the same options."""
    rng = random.Random(f"swarm/{seed}")
    return SimOptions(
        nodes=nodes_for_seed(seed),
        steps=steps,
        planted_bugs=planted_bugs,
        pre_vote=rng.random() < 0.8,
        check_quorum=rng.random() < 0.8,
        max_entries_per_msg=rng.choice((1, 2, 4, 16)),
        max_inflight=rng.choice((1, 4, 16)),
        drop_rate=rng.choice((0.0, 0.02, 0.1)),
        duplicate_rate=rng.choice((0.0, 0.03, 0.1)),
        slow_rate=rng.choice((0.01, 0.05, 0.15)),
        fault_rate=rng.choice((0.02, 0.05, 0.1)),
        crash_after_vote_rate=rng.choice((0.0, 0.1, 0.5)),
        leader_churn_rate=rng.choice((0.0, 0.1, 0.3)),
        max_down_ticks=rng.choice((10, 40, 150)),
        heartbeat_ticks=rng.choice((1, 3, 5)),
        max_fsync_ms=rng.choice((1, 3, 15)),
        compact_min_entries=rng.choice((4, 16, 64)),
    )


def run_seed(seed: int, steps: int = 1000, planted_bugs: frozenset[str] = frozenset()) -> SimResult:
    return RaftSimulation(seed, options_for_seed(seed, steps, planted_bugs)).run()


# --- the replicated application: a key-value register map ------------------------------------
_WRITE = msgspec.msgpack.Encoder()
_READ_WRITE = msgspec.msgpack.Decoder(tuple[str, str, int])
_READ_SNAPSHOT = msgspec.msgpack.Decoder(tuple[int, dict[str, int], list[str]])


class KvStateMachine:
    """key -> last written value; `seen` makes a retried request take effect once."""

    __slots__ = ("applied", "data", "seen")

    def __init__(self, applied: int = 0) -> None:
        self.applied = applied
        self.data: dict[str, int] = {}
        self.seen: set[str] = set()

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> KvStateMachine:
        sm = cls(snap.index)
        if snap.data:
            applied, data, seen = _READ_SNAPSHOT.decode(snap.data)
            if applied != snap.index:
                raise InvariantViolation(f"snapshot at {snap.index} holds state applied up to {applied}")
            sm.data = dict(data)
            sm.seen = set(seen)
        return sm

    def snapshot_data(self) -> bytes:
        return _WRITE.encode((self.applied, self.data, sorted(self.seen)))


def encode_write(req_id: str, key: str, value: int) -> bytes:
    return _WRITE.encode((req_id, key, value))


def decode_write(data: bytes) -> tuple[str, str, int]:
    return _READ_WRITE.decode(data)


# --- simulation state ----------------------------------------------------------------------
_TICK, _DELIVER, _PERSIST, _RESTART, _HEAL, _CRASH = range(6)


class SimNode:
    __slots__ = (
        "chain",
        "chain_base",
        "chain_terms",
        "core",
        "id",
        "incarnation",
        "leader_term",
        "pending_reads",
        "phase",
        "ready_scheduled",
        "removed",
        "seen_commit",
        "seen_term",
        "sm",
        "storage",
    )

    def __init__(self, node_id: str, phase: int) -> None:
        self.id = node_id
        self.storage = MemoryStorage()
        self.core: RaftCore | None = None
        self.sm = KvStateMachine()
        self.incarnation = 0
        self.phase = phase
        self.ready_scheduled = False
        self.removed = False
        self.pending_reads: dict[bytes, int] = {}
        self.seen_commit = 0
        self.seen_term = 0
        self.leader_term = 0
        # Shadow of the persisted log from chain_base on: each entry's term and a hash of the
        # entry together with everything before it.
        self.chain: list[int] = [0]
        self.chain_terms: list[int] = [0]
        self.chain_base = 0


@dataclass(slots=True)
class ClientOp:
    client: int
    f: str  # "write" | "read"
    key: str
    value: int | None
    req_id: str
    invoked_at: int
    deadline: int
    node: str | None = None  # replica currently handling it
    attempt_deadline: int = 0
    proposed: bool = False  # a write some leader accepted: it may take effect
    ctx: bytes = b""
    read_floor: int = 0  # log index of the newest write to `key` acknowledged before invoke


@dataclass(slots=True)
class Client:
    index: int
    leader_guess: str | None = None
    op: ClientOp | None = None
    seq: int = 0


@dataclass(slots=True)
class _Stats:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


class RaftSimulation:
    def __init__(self, seed: int, options: SimOptions) -> None:
        self.seed = seed
        self.opt = options
        self.rng = random.Random(seed)
        self.now = 0
        self.step_no = 0
        self._queue: list[tuple[int, int, int, Any, Any]] = []
        self._seq = 0
        ids = [f"n{i}" for i in range(options.nodes + options.spare_nodes)]
        self.initial_voters = tuple(ids[: options.nodes])
        self.spares = ids[options.nodes :]
        self.nodes: dict[str, SimNode] = {}
        self.cuts: dict[tuple[str, str], int] = {}  # directed link -> active partitions
        self.faults_on = True
        self.stats = _Stats()
        # checker state
        self.leaders: dict[int, str] = {}
        self.committed: dict[int, Entry] = {}
        self.max_committed = 0
        self.log_hashes: dict[tuple[int, int], int] = {}
        self.effect_index: dict[str, int] = {}  # request id -> log index where it took effect
        self.value_writer: dict[int, str] = {}  # written value -> request id
        self.acked_floor: dict[str, int] = {}  # key -> log index of newest acknowledged write
        self.acked_writes: list[str] = []
        # clients
        self.clients = [Client(i) for i in range(options.clients)]
        self.waiting_writes: dict[str, ClientOp] = {}
        self.waiting_reads: dict[bytes, ClientOp] = {}
        self.history: list[dict[str, Any]] = []
        self._op_timeout = 3 * options.election_ticks * options.tick_ms
        for node_id in self.initial_voters:
            self._boot(node_id)

    # --- running ----------------------------------------------------------------------------
    def run(self) -> SimResult:
        violation = None
        try:
            for _ in range(self.opt.steps):
                self.step()
            self.liveness_phase()
            self.final_checks()
        except InvariantViolation as error:
            violation = str(error)
        except Exception as error:  # a core assertion or crash is a finding too
            tb = traceback.format_exc(limit=6)
            violation = self._describe(f"exception {type(error).__name__}: {error}\n{tb}")
        return SimResult(
            self.seed, self.opt.nodes, self.opt.steps, violation, self.stats.counts, self.history
        )

    def step(self) -> None:
        start = self.step_no * self.opt.tick_ms
        end = start + self.opt.tick_ms
        self.now = start
        for node in self.nodes.values():
            if node.core is not None:
                self._push(start + node.phase, _TICK, node.id, node.incarnation)
        if self.faults_on and self.rng.random() < self.opt.fault_rate:
            self._inject_fault()
        self._drive_clients()
        queue = self._queue
        while queue and queue[0][0] < end:
            at, _, kind, a, b = heapq.heappop(queue)
            self.now = at
            self._dispatch(kind, a, b)
        self.now = end
        self.step_no += 1

    def _dispatch(self, kind: int, a: Any, b: Any) -> None:
        if kind == _DELIVER:
            self._deliver(a)
        elif kind == _TICK:
            node = self.nodes[a]
            if node.core is not None and node.incarnation == b:
                node.core.tick()
                self.after_core(node)
        elif kind == _PERSIST:
            node = self.nodes[a]
            if node.core is not None and node.incarnation == b:
                self._process_ready(node)
        elif kind == _RESTART:
            node = self.nodes[a]
            if node.core is None:
                self._start_core(node)
        elif kind == _HEAL:
            self._heal(a)
        elif kind == _CRASH:
            node = self.nodes[a]
            if node.core is not None and node.incarnation == b:
                self.crash(node)
                self._push(self.now + self._down_time(), _RESTART, a)

    def _push(self, at: int, kind: int, a: Any, b: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, a, b))

    def _describe(self, what: str) -> str:
        return (
            f"seed {self.seed} ({self.opt.nodes} nodes) step {self.step_no} t={self.now}ms: "
            f"{what}\n  reproduce: {reproduce_command(self.seed, self.opt)}"
        )

    def _fail(self, what: str) -> None:
        raise InvariantViolation(self._describe(what))

    # --- replicas ---------------------------------------------------------------------------
    def _boot(self, node_id: str) -> SimNode:
        node = SimNode(node_id, self.rng.randrange(self.opt.tick_ms))
        self.nodes[node_id] = node
        self._start_core(node)
        return node

    def _start_core(self, node: SimNode) -> None:
        opt = self.opt
        node.incarnation += 1
        config = RaftConfig(
            id=node.id,
            peers=self.initial_voters,
            election_ticks=opt.election_ticks,
            election_ticks_max=opt.election_ticks_max,
            heartbeat_ticks=opt.heartbeat_ticks,
            pre_vote=opt.pre_vote,
            check_quorum=opt.check_quorum,
            max_inflight=opt.max_inflight,
            max_entries_per_msg=opt.max_entries_per_msg,
            planted_bugs=opt.planted_bugs,
        )
        rng = random.Random(f"{self.seed}/{node.id}/{node.incarnation}")
        node.core = RaftCore(config, node.storage, rng)
        node.sm = KvStateMachine.from_snapshot(node.storage.snapshot())
        node.pending_reads = {}
        node.ready_scheduled = False
        # Per incarnation: a term bump or commit advance that was never persisted is lawfully
        # forgotten by a crash (nothing that depended on it was sent).
        node.seen_commit = node.core.commit_index
        node.seen_term = node.core.term
        node.leader_term = 0
        self.after_core(node)

    def crash(self, node: SimNode) -> None:
        node.core = None
        node.pending_reads = {}
        node.ready_scheduled = False
        self.stats.add("crashes")

    def after_core(self, node: SimNode) -> None:
        """Checks that need the core's in-memory state, after anything touched it."""
        core = node.core
        assert core is not None
        term = core.term
        if term < node.seen_term:
            self._fail(f"{node.id}: term went back from {node.seen_term} to {term}")
        node.seen_term = term
        if core.role == "leader" and node.leader_term != term:
            holder = self.leaders.setdefault(term, node.id)
            if holder != node.id:
                self._fail(f"election safety: {holder} and {node.id} both lead term {term}")
            node.leader_term = term
            self.stats.add("elections")
            self._check_leader_completeness(node)
            if self.faults_on and self.rng.random() < self.opt.leader_churn_rate:
                # Figure 8 of the Raft paper is made of leaders that die after replicating a
                # little of their log: crash this one soon, restart it a bit later.
                self._push(
                    self.now + self.rng.randint(1, 4 * self.opt.tick_ms), _CRASH, node.id, node.incarnation
                )
        self._check_commit(node)
        if not node.ready_scheduled and core.has_ready():
            node.ready_scheduled = True
            self._push(
                self.now + self.rng.randint(self.opt.min_fsync_ms, self.opt.max_fsync_ms),
                _PERSIST,
                node.id,
                node.incarnation,
            )

    def _check_commit(self, node: SimNode) -> None:
        commit = node.core.commit_index  # type: ignore[union-attr]
        if commit < node.seen_commit:
            self._fail(f"{node.id}: commit index went back from {node.seen_commit} to {commit}")
        if commit > node.seen_commit:
            self._record_committed(node, node.seen_commit + 1, commit)
            node.seen_commit = commit

    def _record_committed(self, node: SimNode, lo: int, hi: int) -> None:
        core = node.core
        assert core is not None
        lo = max(lo, core.first_index)
        if lo > hi:
            return
        leader = core.role == "leader"
        for entry in core.log_entries(lo, hi + 1):
            known = self.committed.get(entry.index)
            if known is None:
                self.committed[entry.index] = entry
            elif known != entry:
                self._fail(
                    f"committed entry {entry.index} changed: {known} was committed, "
                    f"{node.id} now commits {entry}"
                )
            if leader:
                self._check_on_quorum(core, entry)
                self._check_not_electable_without(core, entry)
        self.max_committed = max(self.max_committed, hi)

    def _persisted_last(self, node_id: str) -> tuple[int, int]:
        node = self.nodes.get(node_id)
        if node is None:
            return 0, 0
        return node.chain_terms[-1], node.chain_base + len(node.chain_terms) - 1

    def _holds(self, node_id: str, entry: Entry) -> bool:
        node = self.nodes.get(node_id)
        if node is None:
            return False
        pos = entry.index - node.chain_base
        return pos <= 0 or (pos < len(node.chain_terms) and node.chain_terms[pos] == entry.term)

    def _check_not_electable_without(self, core: RaftCore, entry: Entry) -> None:
        # The lemma behind Leader Completeness (Raft §5.4.3): once an entry is committed, no
        # voter lacking it has a log at least as up-to-date (§5.4.1) as a majority's, so none
        # can ever collect the votes to lead. Checked on persisted logs.
        voters = core.voters
        lasts = {v: self._persisted_last(v) for v in voters}
        for candidate in voters:
            if self._holds(candidate, entry):
                continue
            mine = lasts[candidate]
            supporters = [v for v in voters if mine >= lasts[v]]
            if len(supporters) > len(voters) // 2:
                self._fail(
                    f"{core.id} committed entry {entry.index} (term {entry.term}), yet "
                    f"{candidate}, which lacks it, has a log (last term {mine[0]}, index "
                    f"{mine[1]}) at least as up-to-date as {supporters}: it could be elected"
                )

    def _check_on_quorum(self, core: RaftCore, entry: Entry) -> None:
        # A leader commits an entry only once a majority of its voters persisted it.
        holders = sum(1 for voter in core.voters if self._holds(voter, entry))
        if holders <= len(core.voters) // 2:
            self._fail(
                f"{core.id} committed entry {entry.index} (term {entry.term}) but only "
                f"{holders} of its {len(core.voters)} voters have it in their persisted logs"
            )

    def _check_leader_completeness(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        for index in range(max(core.first_index, 1), self.max_committed + 1):
            known = self.committed.get(index)
            if known is not None and core.log_term(index) != known.term:
                self._fail(
                    f"leader completeness: {node.id} leads term {core.term} but its entry "
                    f"{index} has term {core.log_term(index)}, committed was term {known.term}"
                )

    def _process_ready(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        node.ready_scheduled = False
        storage = node.storage
        while core.has_ready():
            rd = core.ready()
            # 1. persist (atomically: a crash happens between events, never inside one)
            if rd.snapshot is not None:
                storage.apply_snapshot(rd.snapshot)
                self._on_snapshot_persisted(node, rd.snapshot)
            if rd.entries:
                storage.append(rd.entries)
                self._on_entries_persisted(node, rd.entries)
            if rd.hard_state is not None:
                storage.set_hard_state(rd.hard_state)
            # 2. send
            voted = False
            for msg in rd.messages:
                self._send(msg)
                voted = voted or (msg.type == "vote_resp" and not msg.reject)
            # 3. apply
            if rd.snapshot is not None:
                node.sm = KvStateMachine.from_snapshot(rd.snapshot)
                self.stats.add("snapshots_installed")
            for entry in rd.committed_entries:
                self._apply(node, entry)
            for rs in rd.read_states:
                node.pending_reads[rs.ctx] = rs.index
            core.advance(rd)
            self._check_commit(node)  # applying a conf change may commit more
            if node.pending_reads:
                self._serve_reads(node)
            if voted and self.faults_on and self.rng.random() < self.opt.crash_after_vote_rate:
                # A crash at the most delicate moment: the grant is out, the vote is on disk
                # (or, with the planted bug, not).
                self.crash(node)
                self._push(self.now + self.rng.randint(1, 5), _RESTART, node.id)
                return
        self.after_core(node)

    def _on_entries_persisted(self, node: SimNode, entries: tuple[Entry, ...]) -> None:
        # Log matching: (index, term) identifies the entry and, through the hash chain, the
        # whole prefix before it, on every replica.
        start = entries[0].index
        base = node.chain_base
        keep = start - base
        if keep <= 0:
            return  # below our snapshot: storage ignored them
        terms = node.chain_terms
        for pos in range(keep, len(terms)):
            # Replaced or dropped: a committed entry must never leave a persisted log, since
            # every later leader holds it and so never sends a conflicting one.
            index = base + pos
            new = index - start
            if new < len(entries) and entries[new].term == terms[pos]:
                continue
            known = self.committed.get(index)
            if known is not None and known.term == terms[pos]:
                self._fail(
                    f"committed entry {index} (term {known.term}) removed from the persisted log of {node.id}"
                )
        del node.chain[keep:]
        del terms[keep:]
        prev = node.chain[-1]
        hashes = self.log_hashes
        for entry in entries:
            h = hash((prev, entry.term, entry.kind, entry.data))
            key = (entry.index, entry.term)
            known = hashes.setdefault(key, h)
            if known != h:
                self._fail(
                    f"log matching: {node.id} persisted entry {entry.index} of term {entry.term} "
                    "whose content or preceding log differs from another replica's"
                )
            node.chain.append(h)
            terms.append(entry.term)
            prev = h

    def _on_snapshot_persisted(self, node: SimNode, snap: Snapshot) -> None:
        known = self.committed.get(snap.index)
        if known is not None and known.term != snap.term:
            self._fail(f"snapshot at {snap.index} has term {snap.term}, committed {known.term}")
        base = self.log_hashes.setdefault((snap.index, snap.term), hash(("snapshot", snap.index, snap.term)))
        node.chain = [base]
        node.chain_terms = [snap.term]
        node.chain_base = snap.index

    def _apply(self, node: SimNode, entry: Entry) -> None:
        sm = node.sm
        if entry.index != sm.applied + 1:
            self._fail(f"{node.id} applied entry {entry.index} after {sm.applied}")
        known = self.committed.get(entry.index)
        if known != entry:
            self._fail(
                f"state machine safety: {node.id} applies {entry} at {entry.index}, committed was {known}"
            )
        sm.applied = entry.index
        if entry.kind != "normal":
            return
        req_id, key, value = decode_write(entry.data)
        if req_id not in sm.seen:
            sm.seen.add(req_id)
            sm.data[key] = value
            first = self.effect_index.setdefault(req_id, entry.index)
            if first != entry.index:
                self._fail(
                    f"duplicate application: request {req_id} took effect at {first} and again "
                    f"at {entry.index} on {node.id}"
                )
        op = self.waiting_writes.get(req_id)
        if op is not None and op.node == node.id:
            del self.waiting_writes[req_id]
            effect = self.effect_index[req_id]
            self.acked_writes.append(req_id)
            self.acked_floor[key] = max(self.acked_floor.get(key, 0), effect)
            self._complete(op, "ok", op.value)

    def _serve_reads(self, node: SimNode) -> None:
        applied = node.sm.applied
        for ctx, index in list(node.pending_reads.items()):
            if index > applied:
                continue
            del node.pending_reads[ctx]
            op = self.waiting_reads.get(ctx)
            if op is None or op.node != node.id:
                continue
            del self.waiting_reads[ctx]
            value = node.sm.data.get(op.key)
            position = 0 if value is None else self.effect_index[self.value_writer[value]]
            if position < op.read_floor and self.opt.check_stale_reads:
                self._fail(
                    f"stale read: {node.id} served key {op.key!r} = {value} (written at index "
                    f"{position}) after a write at index {op.read_floor} was acknowledged"
                )
            self._complete(op, "ok", value)

    # --- network ----------------------------------------------------------------------------
    def _send(self, msg: Message) -> None:
        rng = self.rng
        opt = self.opt
        lossy = self.faults_on
        if lossy and rng.random() < opt.drop_rate:
            self.stats.add("dropped")
            return
        payload: Any = encode_message(msg) if opt.wire_codec else msg
        copies = 2 if lossy and rng.random() < opt.duplicate_rate else 1
        low, span = opt.min_delay_ms, opt.max_delay_ms - opt.min_delay_ms + 1
        for _ in range(copies):
            delay = low + int(rng.random() * span)
            if lossy and rng.random() < opt.slow_rate:
                delay = opt.max_delay_ms + int(rng.random() * opt.slow_delay_ms)
            self._seq += 1
            heapq.heappush(self._queue, (self.now + delay, self._seq, _DELIVER, payload, None))
        self.stats.add("sent")

    def _deliver(self, payload: Any) -> None:
        msg: Message = decode_message(payload) if self.opt.wire_codec else payload
        node = self.nodes.get(msg.to)
        if node is None or node.core is None or (msg.sender, msg.to) in self.cuts:
            return
        node.core.step(msg)
        self.after_core(node)

    def _cut(self, links: list[tuple[str, str]], ticks: int) -> None:
        for link in links:
            self.cuts[link] = self.cuts.get(link, 0) + 1
        self._push(self.now + ticks * self.opt.tick_ms, _HEAL, links)

    def _heal(self, links: list[tuple[str, str]]) -> None:
        for link in links:
            left = self.cuts.get(link, 0) - 1
            if left > 0:
                self.cuts[link] = left
            else:
                self.cuts.pop(link, None)

    # --- faults -----------------------------------------------------------------------------
    def _live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.core is not None]

    def current_leader(self) -> SimNode | None:
        best = None
        best_term = -1
        for node in self.nodes.values():
            core = node.core
            if core is not None and core.role == "leader" and core.term > best_term:
                best, best_term = node, core.term
        return best

    def _down_time(self) -> int:
        return self.rng.randint(1, self.opt.max_down_ticks) * self.opt.tick_ms

    def _inject_fault(self) -> None:
        rng = self.rng
        ids = sorted(self.nodes)
        kind = rng.choices(
            (
                "crash",
                "crash_leader",
                "isolate",
                "split",
                "one_way",
                "transfer",
                "membership",
                "compact",
            ),
            weights=(3, 2, 2, 2, 2, 2, 2, 3),
        )[0]
        self.stats.add(f"fault_{kind}")
        if kind in ("crash", "crash_leader"):
            node = self.current_leader() if kind == "crash_leader" else rng.choice(self._live() or [None])
            if node is not None and node.core is not None:
                self.crash(node)
                self._push(self.now + self._down_time(), _RESTART, node.id)
        elif kind == "isolate":
            victim = rng.choice(ids)
            links = [(a, b) for a in ids for b in ids if a != b and victim in (a, b)]
            self._cut(links, rng.randint(3, 60))
        elif kind == "split":
            shuffled = ids[:]
            rng.shuffle(shuffled)
            cut_at = rng.randint(1, len(shuffled) - 1)
            left, right = set(shuffled[:cut_at]), shuffled[cut_at:]
            links = [(a, b) for a in ids for b in right if a in left]
            links += [(b, a) for a, b in links]
            self._cut(links, rng.randint(3, 60))
        elif kind == "one_way":
            pairs = [(a, b) for a in ids for b in ids if a != b]
            links = rng.sample(pairs, rng.randint(1, max(1, len(pairs) // 3)))
            self._cut(links, rng.randint(3, 60))
        elif kind == "transfer":
            leader = self.current_leader()
            if leader is not None and leader.core is not None:
                others = [v for v in leader.core.voters if v != leader.id]
                if others:
                    leader.core.transfer_leadership(rng.choice(others))
                    self.after_core(leader)
        elif kind == "membership":
            self._change_membership()
        elif kind == "compact":
            live = self._live()
            if live:
                self._compact(rng.choice(live))

    def _change_membership(self) -> None:
        leader = self.current_leader()
        if leader is None or leader.core is None:
            return
        core = leader.core
        change = None
        if core.learners:
            change = ConfChange("promote", core.learners[0])
        elif self.spares and len(core.voters) < 7:
            change = ConfChange("add_learner", self.spares[0])
        elif len(core.voters) > 3:
            change = ConfChange("remove", self.rng.choice(core.voters))
        if change is None:
            return
        try:
            core.propose_conf_change(change)
        except (ProposalDropped, InvalidConfChange):
            self.stats.add("conf_change_refused")
            return
        self.stats.add(f"conf_{change.kind}")
        if change.kind == "add_learner":
            self.spares.pop(0)
            self._boot(change.node_id)
        elif change.kind == "remove":
            # The removed replica keeps running (it may not learn of its removal) until the end.
            self.nodes[change.node_id].removed = True
        self.after_core(leader)

    def _compact(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        applied = core.applied_index
        if applied - node.storage.snapshot().index < self.opt.compact_min_entries:
            return
        if applied != node.sm.applied:
            self._fail(f"{node.id}: core applied {applied} but state machine {node.sm.applied}")
        try:
            core.compact(applied, node.sm.snapshot_data())
        except Exception as error:  # compaction refused (e.g. entries not persisted yet)
            if type(error).__name__ not in ("Unavailable", "SnapshotOutOfDate"):
                raise
            return
        self.stats.add("compactions")

    # --- clients ----------------------------------------------------------------------------
    def _drive_clients(self) -> None:
        rng = self.rng
        for client in self.clients:
            op = client.op
            if op is None:
                if self.faults_on and rng.random() < self.opt.client_rate:
                    op = self._new_op(client)
                else:
                    continue
            if self.now >= op.deadline:
                self._give_up(op)
                continue
            if op.node is None or self.now >= op.attempt_deadline:
                self._attempt(client, op)

    def _new_op(self, client: Client) -> ClientOp:
        rng = self.rng
        client.seq += 1
        key = f"k{rng.randrange(self.opt.keys)}"
        req_id = f"c{client.index}-{client.seq}"
        deadline = self.now + 3 * self._op_timeout
        if rng.random() < 0.5:
            value = client.index * 1_000_000 + client.seq
            self.value_writer[value] = req_id
            op = ClientOp(client.index, "write", key, value, req_id, self.now, deadline)
        else:
            op = ClientOp(client.index, "read", key, None, req_id, self.now, deadline)
            op.read_floor = self.acked_floor.get(key, 0)
        client.op = op
        self.history.append(
            {"process": client.index, "type": "invoke", "f": op.f, "key": key, "value": op.value}
        )
        return op

    def _attempt(self, client: Client, op: ClientOp) -> None:
        rng = self.rng
        self.waiting_reads.pop(op.ctx, None)
        guess = self.nodes.get(client.leader_guess or "")
        if guess is None or guess.core is None or guess.removed:
            live = [n for n in self._live() if not n.removed]
            if not live:
                op.node = None
                return
            guess = rng.choice(live)
        core = guess.core
        assert core is not None
        op.node = None
        try:
            if op.f == "write":
                assert op.value is not None
                core.propose(encode_write(op.req_id, op.key, op.value))
                op.proposed = True
                self.waiting_writes[op.req_id] = op
            else:
                self.stats.add("read_attempts")
                op.ctx = f"{op.req_id}/{self.now}".encode()
                core.read_index(op.ctx)
                self.waiting_reads[op.ctx] = op
            op.node = guess.id
            op.attempt_deadline = self.now + self._op_timeout
            client.leader_guess = guess.id
        except NotLeader as error:
            client.leader_guess = error.leader_hint
        except ProposalDropped:
            client.leader_guess = None
        self.after_core(guess)

    def _give_up(self, op: ClientOp) -> None:
        self.waiting_reads.pop(op.ctx, None)
        if self.waiting_writes.get(op.req_id) is op:
            del self.waiting_writes[op.req_id]
        if op.f == "write" and op.proposed:
            self._complete(op, "info", op.value)  # it may still take effect
        else:
            self._complete(op, "fail", op.value)

    def _complete(self, op: ClientOp, outcome: str, value: int | None) -> None:
        self.stats.add(f"{op.f}_{outcome}")
        self.history.append({"process": op.client, "type": outcome, "f": op.f, "key": op.key, "value": value})
        self.clients[op.client].op = None

    # --- end of run -------------------------------------------------------------------------
    def liveness_phase(self) -> None:
        """Heal everything, restart every crashed member, and require convergence: one leader,
        and every member applied that leader's whole log with identical state. Judged on progress
        (see SimOptions.liveness_ticks): it fails after liveness_ticks ticks without progress, or at a
        cap sized from the lag at healing, never merely because catching up takes long."""
        self.faults_on = False
        self.cuts.clear()
        for node in self.nodes.values():
            if node.core is None:
                self._start_core(node)
        opt = self.opt
        lag = self._lag()
        settle = 3 * opt.election_ticks
        # above the stall window even with no lag, so that a stuck cluster is reported as a stall
        cap = settle + opt.liveness_ticks + opt.liveness_ticks_per_entry * lag
        why = "no leader"
        best, last_progress = self._progress(), 0
        for tick in range(cap):
            self.step()
            measure = self._progress()
            if measure > best:  # a new high: a truncated and re-grown log is not counted twice
                best, last_progress = measure, tick
            if tick >= settle and tick % 5 == 0:
                why = self._convergence_problem()
                if not why:
                    self.stats.add("liveness_ticks", tick)
                    return
                if tick - last_progress >= opt.liveness_ticks:
                    self._fail(
                        f"liveness: no progress for {tick - last_progress} ticks "
                        f"({tick} ticks after healing): {why}"
                    )
        self._fail(
            f"liveness: no convergence {cap} ticks after healing (the cap for a lag of {lag} entries), "
            f"last progress at tick {last_progress}: {why}"
        )

    def _progress(self) -> int:
        """Grows whenever replication moves: the highest commit index, a replica's applied index, or
        the current leader's match index of a follower advancing. Logs alone are left out: a leader's
        own no-op, as in an election storm where nothing replicates, is not progress."""
        live = self._live()
        total = max((n.core.commit_index for n in live if n.core is not None), default=0)
        total += sum(n.sm.applied for n in live)
        leader = self.current_leader()
        if leader is not None and leader.core is not None:
            core = leader.core
            for peer in (*core.voters, *core.learners):
                progress = core.progress(peer) if peer != leader.id else None
                total += progress.match if progress is not None else 0
        return total

    def _lag(self) -> int:
        """How many entries the furthest-behind live replica must apply to reach the longest log."""
        live = self._live()
        longest = max(node.core.last_index for node in live if node.core is not None)
        return max(0, longest - min(node.sm.applied for node in live))

    def _convergence_problem(self) -> str:
        leader = self.current_leader()
        if leader is None or leader.core is None:
            return "no leader"
        core = leader.core
        if any(op is not None for op in (c.op for c in self.clients)):
            return "client operations still pending"
        last = core.last_index
        if core.commit_index != last:
            return f"leader {leader.id} committed {core.commit_index} of {last}"
        for member in (*core.voters, *core.learners):
            node = self.nodes.get(member)
            if node is None or node.core is None:
                return f"member {member} is down"
            if node.sm.applied != last or node.sm.data != leader.sm.data:
                return f"{member} applied {node.sm.applied}, leader {leader.id} has {last}"
        return ""

    def final_checks(self) -> None:
        for req_id in self.acked_writes:
            index = self.effect_index.get(req_id)
            entry = self.committed.get(index or -1)
            if entry is None or entry.kind != "normal" or decode_write(entry.data)[0] != req_id:
                self._fail(f"acknowledged write {req_id} is not in the committed log")
        if self.opt.check_linearizability:
            check = _linearizability_checker()
            if check is not None:
                result = check(self.history, "kv")
                if not result.ok:
                    self._fail(f"history is not linearizable: {result.explanation}")


def _linearizability_checker() -> Any:
    try:
        from actors.linearizability import check_history
    except ImportError:  # the checker is developed separately; the history is recorded anyway
        return None
    return check_history


def first_failure(
    seeds: range, steps: int = 1000, planted_bugs: frozenset[str] = frozenset()
) -> tuple[int, SimResult | None]:
    """Run seeds in order until one fails: (number of seeds run, the failure or None)."""
    run = 0
    for seed in seeds:
        result = run_seed(seed, steps, planted_bugs)
        run += 1
        if not result.ok:
            return run, result
    return run, None


# --- a scripted cluster for unit tests ----------------------------------------------------------
class Cluster:
    """Replicas on a lossless, instant network for scripted tests (etcd raft_test.go `network`).

    Only the replicas a test ticks ever time out, so a test decides who campaigns. Every Ready is
    persisted to the replica's MemoryStorage before its messages go out; `crash` drops the core and
    `restart` rebuilds it from storage, as after a power loss.
    """

    def __init__(self, ids: tuple[str, ...], **config: Any) -> None:
        self.config = config
        self.voters = ids
        self.cores: dict[str, RaftCore] = {}
        self.storages: dict[str, MemoryStorage] = {}
        self.applied: dict[str, list[Entry]] = {}
        self.read_states: dict[str, list[Any]] = {}
        self.cut: set[tuple[str, str]] = set()
        self.drop_types: set[str] = set()
        self.delivered: list[Message] = []
        for node_id in ids:
            self.add(node_id)

    def add(self, node_id: str, **overrides: Any) -> RaftCore:
        self.storages.setdefault(node_id, MemoryStorage())
        self.applied.setdefault(node_id, [])
        self.read_states.setdefault(node_id, [])
        settings = {**self.config, **overrides}
        config = RaftConfig(id=node_id, peers=self.voters, **settings)
        core = RaftCore(config, self.storages[node_id], random.Random(f"cluster/{node_id}"))
        self.cores[node_id] = core
        return core

    def __getitem__(self, node_id: str) -> RaftCore:
        return self.cores[node_id]

    def crash(self, node_id: str) -> None:
        del self.cores[node_id]

    def restart(self, node_id: str, **overrides: Any) -> RaftCore:
        self.applied[node_id] = []
        return self.add(node_id, **overrides)

    def isolate(self, node_id: str) -> None:
        for other in self.storages:
            if other != node_id:
                self.cut.add((node_id, other))
                self.cut.add((other, node_id))

    def heal(self) -> None:
        self.cut.clear()
        self.drop_types.clear()

    def persist(self, node_id: str) -> list[Message]:
        """Process one replica's Readies; return the messages they send."""
        core = self.cores[node_id]
        storage = self.storages[node_id]
        out: list[Message] = []
        while core.has_ready():
            rd = core.ready()
            if rd.snapshot is not None:
                storage.apply_snapshot(rd.snapshot)
            storage.append(rd.entries)
            if rd.hard_state is not None:
                storage.set_hard_state(rd.hard_state)
            out.extend(rd.messages)
            self.applied[node_id].extend(rd.committed_entries)
            self.read_states[node_id].extend(rd.read_states)
            core.advance(rd)
        return out

    def deliver(self, max_rounds: int = 10_000) -> int:
        """Deliver until the network is quiet; returns the number of messages delivered."""
        count = 0
        for _ in range(max_rounds):
            batch = [m for node_id in list(self.cores) for m in self.persist(node_id)]
            if not batch:
                return count
            for msg in batch:
                if (msg.sender, msg.to) in self.cut or msg.type in self.drop_types:
                    continue
                core = self.cores.get(msg.to)
                if core is not None:
                    self.delivered.append(msg)
                    core.step(msg)
                    count += 1
        raise AssertionError("network did not go quiet")

    def tick(self, node_id: str, times: int = 1) -> None:
        for _ in range(times):
            self.cores[node_id].tick()
            self.deliver()

    def elect(self, node_id: str) -> RaftCore:
        """Tick one replica until it leads (the others never time out)."""
        core = self.cores[node_id]
        for _ in range(40 * self.config.get("election_ticks", 10)):
            if core.role == "leader":
                return core
            self.tick(node_id)
        raise AssertionError(f"{node_id} did not become leader (role {core.role}, term {core.term})")

    def data(self, node_id: str) -> list[bytes]:
        return [e.data for e in self.applied[node_id] if e.kind == "normal"]
