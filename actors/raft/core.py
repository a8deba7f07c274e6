"""The Raft consensus state machine: no I/O, no clock, randomness from an injected RNG.

Shaped like etcd-io/raft (raft.go + rawnode.go). The application drives it:
- `tick()` at a regular interval (time exists only as ticks);
- `step(msg)` for every message from a peer; `propose`, `read_index`, `transfer_leadership`,
  `propose_conf_change`, `compact` for local requests;
- while `has_ready()`: take `ready()`, do what it says in its documented order, then `advance()`.

The core only queues outputs; it never performs them. Features: pre-vote, check-quorum, a no-op at
the start of each term, conflict backtracking that skips a whole term per round trip, pipelined
appends bounded by `max_inflight`, proposal batching (proposals between two Ready are sent as one
append per follower), ReadIndex reads, leadership transfer, single-server membership changes with
learners, snapshots and InstallSnapshot.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from actors.raft.codec import decode_conf_change, encode_conf_change
from actors.raft.errors import (
    Compacted,
    InvalidConfChange,
    LearnerNotCaughtUp,
    NotLeader,
    ProposalDropped,
    RaftInvariantError,
    SnapshotOutOfDate,
    Unavailable,
)
from actors.raft.log import RaftLog
from actors.raft.progress import Progress
from actors.raft.quorum import committed_index, has_quorum, vote_result
from actors.raft.storage import RaftStorage
from actors.raft.types import (
    ConfChange,
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    RaftConfig,
    ReadState,
    Ready,
    Role,
    Snapshot,
)

# Vote context of a campaign started by a leadership transfer: voters skip the lease check.
CAMPAIGN_TRANSFER = b"raft:transfer"
# A follower in replicate state that answers this many heartbeats without acknowledging new
# entries has probably lost our appends (we get no transport errors): fall back to probing.
_STALL_HEARTBEATS = 3

_RESPONSE_TYPE: dict[str, MessageType] = {"vote": "vote_resp", "prevote": "prevote_resp"}


@dataclass(slots=True)
class _ReadRequest:
    index: int
    ctx: bytes
    acks: set[str] = field(default_factory=set)


class RaftCore:
    """One Raft replica. Not thread-safe; one owner drives it."""

    def __init__(self, config: RaftConfig, storage: RaftStorage, rng: random.Random) -> None:
        self._config = config
        self._id = config.id
        self._rng = rng
        self._bugs = config.planted_bugs
        self._election_timeout = config.election_ticks
        self._election_max = config.election_ticks_max or 2 * config.election_ticks
        self._log = RaftLog(storage)
        hs, conf = storage.initial_state()
        if not conf.voters and not conf.learners:
            conf = ConfState(tuple(sorted(config.peers)), tuple(sorted(config.learners)))
        self._voters: tuple[str, ...] = ()
        self._voter_set: frozenset[str] = frozenset()
        self._learners: tuple[str, ...] = ()
        self._progress: dict[str, Progress] = {}
        self._role: Role = "follower"
        snap_index = self._log.first_index() - 1
        self._conf_history: list[tuple[int, ConfState]] = [(snap_index, conf)]
        self._set_conf(conf)
        if hs.commit > self._log.last_index():
            raise RaftInvariantError(
                f"{self._id}: persisted commit {hs.commit} is past the last log index "
                f"{self._log.last_index()} (storage lost entries?)"
            )
        self._log.commit_to(hs.commit)
        self._term = hs.term
        self._vote: str | None = hs.vote
        self._prev_hs = hs
        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._lead: str | None = None
        self._lead_transferee: str | None = None
        self._pending_conf_index = 0
        self._votes: dict[str, bool] = {}
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self._election_timeout
        self._read_queue: list[_ReadRequest] = []
        self._reads_by_ctx: dict[bytes, _ReadRequest] = {}
        self._reads_waiting_for_commit: list[bytes] = []
        self._broadcast_pending = False
        self._become_follower(self._term, None)

    # --- read-only properties ---------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._id

    @property
    def term(self) -> int:
        return self._term

    @property
    def vote(self) -> str | None:
        return self._vote

    @property
    def role(self) -> Role:
        if self._role == "follower" and self._id in self._learners:
            return "learner"
        return self._role

    @property
    def leader_id(self) -> str | None:
        return self._lead

    @property
    def commit_index(self) -> int:
        return self._log.committed

    @property
    def applied_index(self) -> int:
        return self._log.applied

    @property
    def last_index(self) -> int:
        return self._log.last_index()

    @property
    def first_index(self) -> int:
        return self._log.first_index()

    @property
    def voters(self) -> tuple[str, ...]:
        return self._voters

    @property
    def learners(self) -> tuple[str, ...]:
        return self._learners

    @property
    def lead_transferee(self) -> str | None:
        return self._lead_transferee

    def log_term(self, index: int) -> int:
        """Term of the entry at `index` in this replica's (possibly unpersisted) log; 0 if the
        index is compacted or beyond the last index."""
        return self._log.term_or_zero(index)

    def log_entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries lo <= index < hi of this replica's log (persisted or not), for inspection.
        Raises Compacted below first_index and Unavailable past last_index."""
        return self._log.slice(lo, hi)

    def progress(self, peer: str) -> Progress | None:
        """The leader's replication progress of `peer` (None when not leader or unknown)."""
        return self._progress.get(peer) if self._role == "leader" else None

    # --- driving the core -------------------------------------------------------------------
    def ticks_until_due(self) -> int:
        """How many ``tick()`` calls from now the next one that can do anything is, if no message or
        proposal comes first (>= 1): a leader's next heartbeat or check-quorum, a follower's or
        candidate's election timeout. The ticks before it only count. A shell may therefore sleep
        until then and deliver the ticks that real time owes when it next wakes, before any message
        (time exists only as ticks: the same ticks, later), instead of waking at every tick."""
        if self._role == "leader":
            heartbeat = self._config.heartbeat_ticks - self._heartbeat_elapsed
            return max(1, min(heartbeat, self._election_timeout - self._election_elapsed))
        if not self._promotable():  # a learner never campaigns: its timer only ages its lease
            return max(1, self._election_timeout - self._election_elapsed)
        return max(1, self._randomized_timeout - self._election_elapsed)

    def tick(self) -> None:
        if self._role == "leader":
            self._tick_heartbeat()
        else:
            self._tick_election()

    def step(self, msg: Message) -> None:
        """Handle a message from a peer. Messages addressed to another replica are ignored."""
        if msg.to != self._id:
            return
        if msg.term > self._term:
            if msg.type in ("vote", "prevote"):
                in_lease = (
                    self._config.check_quorum
                    and self._lead is not None
                    and self._election_elapsed < self._election_timeout
                )
                if in_lease and msg.context != CAMPAIGN_TRANSFER:
                    # We heard from a live leader recently: do not let a partitioned node that
                    # rejoins with a higher term depose it (Raft thesis §4.2.3).
                    return
            if msg.type == "prevote" or (msg.type == "prevote_resp" and not msg.reject):
                pass  # a pre-vote never changes terms; a granted one is for our future term
            elif msg.type in ("append", "heartbeat", "snapshot"):
                self._become_follower(msg.term, msg.sender)
            else:
                self._become_follower(msg.term, None)
        elif msg.term < self._term:
            if msg.type == "append" and "accept_stale_append" in self._bugs:
                self._handle_append(msg)  # PLANTED BUG: obey a deposed leader
                return
            if msg.type in ("append", "heartbeat") and (self._config.check_quorum or self._config.pre_vote):
                # Tell the stale leader our term so it steps down; without this, a leader cut
                # off by pre-vote/check-quorum could keep others' elections from finishing.
                self._send("append_resp", msg.sender)
            elif msg.type == "prevote":
                self._send("prevote_resp", msg.sender, reject=True)
            return

        if msg.type in ("vote", "prevote"):
            self._handle_vote_request(msg)
        elif self._role == "leader":
            self._step_leader(msg)
        elif self._role in ("candidate", "precandidate"):
            self._step_candidate(msg)
        else:
            self._step_follower(msg)

    def propose(self, data: bytes) -> None:
        """Append `data` as a normal entry. Raises NotLeader or ProposalDropped."""
        self._check_can_propose("proposal")
        self._append_entries([Entry(self._term, self._log.last_index() + 1, "normal", data)])

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read. When leadership is confirmed (a heartbeat round to a
        majority, after this term's no-op has committed), `Ready.read_states` carries
        ReadState(index, ctx): serve the read once the applied index reaches `index`.
        `ctx` must be unique among pending reads; a duplicate is ignored. Pending reads are
        dropped if leadership is lost, so callers need a timeout."""
        if self._role != "leader":
            raise NotLeader(self._lead, "read")
        if self._voters == (self._id,):
            self._read_states.append(ReadState(self._log.committed, ctx))
            return
        if not self._committed_in_current_term() and "read_index_before_noop" not in self._bugs:
            # Our commit index may lag the previous leader's until our no-op commits.
            self._reads_waiting_for_commit.append(ctx)
            return
        self._start_read(ctx)

    def local_read_index(self) -> int:
        """STALE read: the applied index, with no leadership check. Reads served at it may miss
        writes that another replica already acknowledged."""
        return self._log.applied

    def report_unreachable(self, peer: str) -> None:
        """The transport dropped a message to `peer` (its queue was full, its link is down): stop
        pipelining appends to it and probe instead, one append per heartbeat (etcd's
        ReportUnreachable). Ignored unless this replica leads and `peer` is replicating."""
        pr = self._progress.get(peer) if self._role == "leader" else None
        if pr is not None and pr.state == "replicate":
            pr.become_probe()

    def report_leader_lost(self, peer: str) -> None:
        """The transport saw the connection from `peer` end (its process died: the kernel closed its
        sockets). If `peer` is our leader, forget it (so our lease no longer refuses pre-votes) and
        campaign soon instead of after a whole election timeout: after 1 + 2 x our rank among the other
        voters (by id) ticks, so the followers that all saw it at once campaign at least 2 ticks apart
        and do not split the vote. (A random 1-3 ticks split it in about a quarter of leader kills on
        real processes: two followers that campaign within one message round trip of each other both
        win a pre-vote, each votes for itself, and both wait a whole new election timeout.) If the first
        one's log is behind, the others' refusal costs it nothing and the next one campaigns 2 ticks
        later. A leader that is in fact alive keeps its followers: the others still hold its lease and
        refuse our pre-vote, and its next heartbeat makes it our leader again. Liveness only: safety
        never depends on timing."""
        if self._role != "follower" or self._lead != peer or not self._promotable():
            return
        self._lead = None
        rank = sorted(v for v in self._voter_set if v != peer).index(self._id)
        soon = self._randomized_timeout - (1 + 2 * rank)
        self._election_elapsed = max(self._election_elapsed, soon)

    def report_snapshot(self, peer: str, failed: bool) -> None:
        """The transport's outcome of the snapshot sent to `peer` (etcd's ReportSnapshot): failed, it is
        sent again when `peer` is next probed; delivered, appends continue after it. Either way the
        leader waits for a heartbeat response before it sends `peer` anything more."""
        pr = self._progress.get(peer) if self._role == "leader" else None
        if pr is None or pr.state != "snapshot":
            return
        if failed:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.probe_sent = True  # paused until the follower answers a heartbeat

    def transfer_leadership(self, to: str) -> None:
        """Hand leadership to voter `to` once its log is caught up (thesis §3.10).
        Proposals are dropped meanwhile; the attempt is abandoned after an election timeout."""
        if self._role != "leader":
            raise NotLeader(self._lead, "leadership transfer")
        if to == self._id:
            return
        if to not in self._voter_set:
            raise InvalidConfChange(f"cannot transfer leadership to {to!r}: not a voter")
        if self._lead_transferee == to:
            return
        self._lead_transferee = to
        self._election_elapsed = 0
        if self._progress[to].match == self._log.last_index():
            self._send("timeout_now", to)
        else:
            self._maybe_send_append(to, send_if_empty=True)

    def propose_conf_change(self, change: ConfChange) -> None:
        """Propose one membership step. Only one may be pending at a time; a learner is
        promoted only once its log has caught up (LearnerNotCaughtUp otherwise)."""
        self._check_can_propose("configuration change")
        if self._pending_conf_index > self._log.applied:
            raise ProposalDropped(
                f"configuration change at index {self._pending_conf_index} is not applied yet "
                f"(applied {self._log.applied}); propose the next one after it applies"
            )
        node = change.node_id
        if change.kind == "add_learner":
            if node in self._voter_set or node in self._learners:
                raise InvalidConfChange(f"cannot add learner {node!r}: already a member")
        elif change.kind == "promote":
            if node not in self._learners:
                raise InvalidConfChange(f"cannot promote {node!r}: not a learner")
            match = self._progress[node].match
            lag = self._log.last_index() - match
            if lag > self._config.promote_lag_entries:
                raise LearnerNotCaughtUp(
                    f"learner {node!r} is {lag} entries behind (match {match}); retry when it "
                    f"is within {self._config.promote_lag_entries}"
                )
        elif change.kind == "remove":
            if node not in self._voter_set and node not in self._learners:
                raise InvalidConfChange(f"cannot remove {node!r}: not a member")
            if self._voters == (node,):
                raise InvalidConfChange(f"cannot remove {node!r}: it is the last voter")
        else:
            raise InvalidConfChange(f"unknown configuration change kind {change.kind!r}")
        index = self._log.last_index() + 1
        self._append_entries([Entry(self._term, index, "conf", encode_conf_change(change))])
        self._pending_conf_index = index

    def compact(self, index: int, snapshot_data: bytes) -> None:
        """The application took a snapshot of its state up to `index` (<= applied): record it in
        storage and discard the log up to it. Followers that need those entries get the
        snapshot instead (InstallSnapshot)."""
        log = self._log
        if index > log.applied:
            raise Unavailable(f"cannot compact to {index}: only {log.applied} is applied")
        if log.unstable_snapshot is not None or index >= log.unstable_offset:
            raise Unavailable(f"cannot compact to {index}: not yet persisted")
        held = log.storage.snapshot().index
        if index <= held:
            raise SnapshotOutOfDate(f"cannot compact to {index}: a snapshot at {held} exists")
        conf = self._conf_history[0][1]
        for at, state in self._conf_history:
            if at <= index:
                conf = state
        snap = Snapshot(index=index, term=log.term(index), conf_state=conf, data=snapshot_data)
        log.storage.create_snapshot(snap)
        log.storage.compact(index)
        self._conf_history = [(at, s) for at, s in self._conf_history if at > index]
        self._conf_history.insert(0, (index, conf))

    def has_ready(self) -> bool:
        """Whether `ready()` has anything. Proposals batched since the last Ready are turned
        into appends here (one per follower), so call it before `ready()`."""
        if self._broadcast_pending:
            self._flush_broadcast()
        log = self._log
        prev = self._prev_hs
        return bool(
            self._msgs
            or self._read_states
            or log.unstable_entries
            or log.unstable_snapshot is not None
            or log.committed > log.applied
            or prev.term != self._term
            or prev.commit != log.committed
            or prev.vote != (None if "vote_not_persisted" in self._bugs else self._vote)
        )

    def ready(self) -> Ready:
        self._flush_broadcast()
        log = self._log
        hs = self._hard_state()
        prev = self._prev_hs
        entries = tuple(log.unstable_entries)
        snapshot = log.unstable_snapshot
        return Ready(
            hard_state=hs if hs != prev else None,
            entries=entries,
            snapshot=snapshot,
            messages=tuple(self._msgs),
            committed_entries=tuple(log.next_committed_entries()),
            read_states=tuple(self._read_states),
            must_sync=bool(entries) or snapshot is not None or hs.term != prev.term or hs.vote != prev.vote,
        )

    def advance(self, rd: Ready) -> None:
        """The application did everything `rd` asked for."""
        log = self._log
        if rd.hard_state is not None:
            self._prev_hs = rd.hard_state
        if rd.snapshot is not None:
            log.stable_snapshot_to(rd.snapshot.index)
            log.applied_to(rd.snapshot.index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
        for entry in rd.committed_entries:
            if entry.index <= log.applied:
                continue
            if entry.kind == "conf":
                self._apply_conf_change(decode_conf_change(entry.data), entry.index)
            log.applied_to(entry.index)
        del self._msgs[: len(rd.messages)]
        del self._read_states[: len(rd.read_states)]

    # --- internals: roles -------------------------------------------------------------------
    def _hard_state(self) -> HardState:
        vote = None if "vote_not_persisted" in self._bugs else self._vote  # PLANTED BUG
        return HardState(self._term, vote, self._log.committed)

    def _reset(self, term: int) -> None:
        if self._term != term:
            self._term = term
            self._vote = None
        self._lead = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self._rng.randrange(self._election_timeout, self._election_max)
        self._lead_transferee = None
        self._votes = {}
        self._pending_conf_index = 0
        self._read_queue.clear()
        self._reads_by_ctx.clear()
        self._reads_waiting_for_commit.clear()
        self._broadcast_pending = False

    def _become_follower(self, term: int, lead: str | None) -> None:
        self._reset(term)
        self._lead = lead
        self._role = "follower"

    def _become_precandidate(self) -> None:
        # Pre-vote changes neither term nor vote, so a failed pre-campaign disturbs nobody.
        self._votes = {}
        self._lead = None
        self._role = "precandidate"

    def _become_candidate(self) -> None:
        self._reset(self._term + 1)
        self._vote = self._id
        self._role = "candidate"

    def _become_leader(self) -> None:
        self._reset(self._term)
        self._lead = self._id
        self._role = "leader"
        last = self._log.last_index()
        self._progress = {}
        self._sync_progress()
        me = self._progress[self._id]
        me.match = last
        me.become_replicate()
        me.recent_active = True
        # No conf change until everything from earlier terms is applied (one at a time).
        self._pending_conf_index = last
        # The no-op lets us commit (and learn the commit index of) earlier terms' entries.
        self._append_entries([Entry(self._term, last + 1, "noop")])

    def _promotable(self) -> bool:
        return self._id in self._voter_set

    def _tick_election(self) -> None:
        self._election_elapsed += 1
        if self._election_elapsed >= self._randomized_timeout and self._promotable():
            self._election_elapsed = 0
            self._hup()

    def _tick_heartbeat(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self._election_timeout:
            self._election_elapsed = 0
            if self._config.check_quorum:
                active = [p for p, pr in self._progress.items() if pr.recent_active]
                if not has_quorum(self._voters, active):
                    self._become_follower(self._term, None)  # check-quorum: step down
                    return
                for peer, pr in self._progress.items():
                    pr.recent_active = peer == self._id
            self._lead_transferee = None  # a transfer that did not finish in time is abandoned
        if self._heartbeat_elapsed >= self._config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            ctx = self._read_queue[-1].ctx if self._read_queue else b""
            self._bcast_heartbeat(ctx)

    def _hup(self) -> None:
        if self._role == "leader" or not self._promotable():
            return
        if any(e.kind == "conf" for e in self._log.next_committed_entries()):
            return  # campaign with the membership we will have once they are applied
        self._campaign("prevote" if self._config.pre_vote else "election")

    def _campaign(self, kind: str) -> None:
        if kind == "prevote":
            self._become_precandidate()
            vote_type: MessageType = "prevote"
            term = self._term + 1
        else:
            self._become_candidate()
            vote_type = "vote"
            term = self._term
        self._votes[self._id] = True
        if vote_result(self._voters, self._votes) == "won":
            self._won_election()
            return
        ctx = CAMPAIGN_TRANSFER if kind == "transfer" else b""
        last = self._log.last_index()
        last_term = self._log.term(last)
        for peer in self._voters:
            if peer != self._id:
                self._send(vote_type, peer, term=term, index=last, log_term=last_term, context=ctx)

    def _won_election(self) -> None:
        if self._role == "precandidate":
            self._campaign("election")
        else:
            self._become_leader()

    # --- internals: message handling --------------------------------------------------------
    def _handle_vote_request(self, msg: Message) -> None:
        can_vote = (
            self._vote == msg.sender
            or (self._vote is None and self._lead is None)
            or (msg.type == "prevote" and msg.term > self._term)
        )
        resp = _RESPONSE_TYPE[msg.type]
        if can_vote and self._log.is_up_to_date(msg.index, msg.log_term):
            # Answer with the request's term: a pre-vote grant is for the candidate's future term.
            self._send(resp, msg.sender, term=msg.term)
            if msg.type == "vote":
                self._election_elapsed = 0
                self._vote = msg.sender
        else:
            self._send(resp, msg.sender, reject=True)

    def _step_follower(self, msg: Message) -> None:
        kind = msg.type
        if kind == "append":
            self._election_elapsed = 0
            self._lead = msg.sender
            self._handle_append(msg)
        elif kind == "heartbeat":
            self._election_elapsed = 0
            self._lead = msg.sender
            self._log.commit_to(msg.commit)
            self._send("heartbeat_resp", msg.sender, context=msg.context)
        elif kind == "snapshot":
            self._election_elapsed = 0
            self._lead = msg.sender
            self._handle_snapshot(msg)
        elif kind == "timeout_now" and self._promotable():
            self._campaign("transfer")

    def _step_candidate(self, msg: Message) -> None:
        kind = msg.type
        if kind in ("append", "heartbeat", "snapshot"):
            self._become_follower(msg.term, msg.sender)  # someone won this term
            self._step_follower(msg)
            return
        expected = "prevote_resp" if self._role == "precandidate" else "vote_resp"
        if kind != expected:
            return
        self._votes.setdefault(msg.sender, not msg.reject)
        result = vote_result(self._voters, self._votes)
        if result == "won":
            self._won_election()
        elif result == "lost":
            self._become_follower(self._term, None)

    def _handle_append(self, msg: Message) -> None:
        log = self._log
        if msg.index < log.committed:
            self._send("append_resp", msg.sender, index=log.committed)
            return
        last_new = log.maybe_append(msg.index, msg.log_term, msg.commit, msg.entries)
        if last_new is not None:
            self._send("append_resp", msg.sender, index=last_new)
            return
        # Reject with the last index whose term is <= the leader's term at msg.index, so the
        # leader can skip every entry of a conflicting term in one round trip.
        hint_index, hint_term = log.find_conflict_by_term(min(msg.index, log.last_index()), msg.log_term)
        self._send(
            "append_resp",
            msg.sender,
            index=msg.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )

    def _handle_snapshot(self, msg: Message) -> None:
        snap = msg.snapshot
        if snap is not None and self._restore(snap):
            self._send("append_resp", msg.sender, index=self._log.last_index())
        else:
            self._send("append_resp", msg.sender, index=self._log.committed)

    def _restore(self, snap: Snapshot) -> bool:
        log = self._log
        if snap.index <= log.committed:
            return False
        if log.match_term(snap.index, snap.term):
            log.commit_to(snap.index)  # we already hold that prefix: just fast-forward
            return False
        log.restore(snap)
        self._conf_history = [(snap.index, snap.conf_state)]
        self._set_conf(snap.conf_state)
        return True

    def _step_leader(self, msg: Message) -> None:
        pr = self._progress.get(msg.sender)
        if pr is None:
            return
        if msg.type == "append_resp":
            pr.recent_active = True
            self._handle_append_response(msg, pr)
        elif msg.type == "heartbeat_resp":
            pr.recent_active = True
            self._handle_heartbeat_response(msg, pr)

    def _handle_append_response(self, msg: Message, pr: Progress) -> None:
        log = self._log
        peer = msg.sender
        if msg.reject:
            retry_at = msg.reject_hint
            if msg.log_term > 0:
                retry_at, _ = log.find_conflict_by_term(msg.reject_hint, msg.log_term)
            if pr.maybe_decrease_to(msg.index, retry_at):
                if pr.state == "replicate":
                    pr.become_probe()
                self._maybe_send_append(peer, send_if_empty=True)
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(msg.index):
            return
        if pr.state == "probe":
            pr.become_replicate()
        elif pr.state == "snapshot" and pr.match + 1 >= log.first_index():
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == "replicate":
            pr.free_acknowledged(msg.index)
        if self._maybe_commit():
            # Followers learn the new commit index from the next append or heartbeat; only
            # followers with entries to receive get an append now.
            self._bcast_append(send_if_empty=False)
        elif was_paused:
            self._maybe_send_append(peer, send_if_empty=True)
        while self._maybe_send_append(peer, send_if_empty=False):
            pass
        if peer == self._lead_transferee and pr.match == log.last_index():
            self._send("timeout_now", peer)

    def _handle_heartbeat_response(self, msg: Message, pr: Progress) -> None:
        last = self._log.last_index()
        pr.probe_sent = False
        if pr.state != "probe" and pr.match < last:
            pr.stalled_heartbeats += 1
            if pr.stalled_heartbeats >= _STALL_HEARTBEATS:
                pr.become_probe()  # our appends or snapshot were probably lost
        if pr.match < last:
            self._maybe_send_append(msg.sender, send_if_empty=True)
        if msg.context:
            self._ack_read(msg.context, msg.sender)

    # --- internals: replication -------------------------------------------------------------
    def _check_can_propose(self, what: str) -> None:
        if self._role != "leader":
            raise NotLeader(self._lead, what)
        if self._lead_transferee is not None:
            raise ProposalDropped(
                f"{what} dropped: leadership is being transferred to {self._lead_transferee!r}"
            )
        if self._id not in self._progress:
            raise ProposalDropped(f"{what} dropped: this leader was removed from the cluster")
        uncommitted = self._log.last_index() - self._log.committed
        if uncommitted >= self._config.max_uncommitted_entries:
            raise ProposalDropped(
                f"{what} dropped: {uncommitted} entries are uncommitted (limit "
                f"{self._config.max_uncommitted_entries}); retry after some commit"
            )

    def _append_entries(self, entries: list[Entry]) -> None:
        last = self._log.append(entries)
        self._progress[self._id].maybe_update(last)
        self._maybe_commit()
        self._broadcast_pending = True

    def _flush_broadcast(self) -> None:
        # Batching: every proposal since the last Ready goes out in one append per follower.
        if self._broadcast_pending:
            self._broadcast_pending = False
            if self._role == "leader":
                self._bcast_append()

    def _committed_in_current_term(self) -> bool:
        return self._log.term_or_zero(self._log.committed) == self._term

    def _maybe_commit(self) -> bool:
        log = self._log
        index = committed_index(self._voters, {p: pr.match for p, pr in self._progress.items()})
        if index <= log.committed:
            return False
        # Raft §5.4.2: count replicas only for entries of the current term.
        if log.term_or_zero(index) != self._term and "commit_previous_term" not in self._bugs:
            return False
        log.commit_to(index)
        if self._reads_waiting_for_commit and self._committed_in_current_term():
            waiting = self._reads_waiting_for_commit
            self._reads_waiting_for_commit = []
            for ctx in waiting:
                self._start_read(ctx)
        return True

    def _bcast_append(self, send_if_empty: bool = True) -> None:
        for peer in self._progress:
            if peer != self._id and self._maybe_send_append(peer, send_if_empty):
                # Pipelining: fill the in-flight window (a probing peer pauses after one).
                while self._maybe_send_append(peer, send_if_empty=False):
                    pass

    def _bcast_heartbeat(self, ctx: bytes) -> None:
        committed = self._log.committed
        for peer, pr in self._progress.items():
            if peer != self._id:
                self._send("heartbeat", peer, commit=min(pr.match, committed), context=ctx)

    def _maybe_send_append(self, peer: str, send_if_empty: bool) -> bool:
        pr = self._progress[peer]
        if pr.is_paused():
            return False
        log = self._log
        last = log.last_index()
        if pr.next > last + 1:
            pr.next = last + 1
        prev = pr.next - 1
        try:
            prev_term = log.term(prev)
            entries = log.entries_from(pr.next, self._config.max_entries_per_msg)
        except Compacted:
            return self._send_snapshot(peer, pr)
        if not entries and not send_if_empty:
            return False
        self._send(
            "append",
            peer,
            index=prev,
            log_term=prev_term,
            entries=tuple(entries),
            commit=log.committed,
        )
        pr.sent_entries(prev + len(entries), len(entries))
        return True

    def _send_snapshot(self, peer: str, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # do not ship a snapshot to a peer that may be down
        snap = self._log.snapshot()
        if snap.index == 0:
            raise RaftInvariantError(f"{self._id}: log is compacted but no snapshot exists")
        pr.become_snapshot(snap.index)
        self._send("snapshot", peer, snapshot=snap)
        return True

    # --- internals: ReadIndex ---------------------------------------------------------------
    def _start_read(self, ctx: bytes) -> None:
        if ctx in self._reads_by_ctx:
            return
        req = _ReadRequest(self._log.committed, ctx, {self._id})
        self._read_queue.append(req)
        self._reads_by_ctx[ctx] = req
        self._bcast_heartbeat(ctx)

    def _ack_read(self, ctx: bytes, peer: str) -> None:
        req = self._reads_by_ctx.get(ctx)
        if req is None:
            return
        req.acks.add(peer)
        if not has_quorum(self._voters, req.acks):
            return
        # A majority still followed us after this request arrived, so every earlier request is
        # confirmed too.
        while self._read_queue:
            done = self._read_queue.pop(0)
            del self._reads_by_ctx[done.ctx]
            self._read_states.append(ReadState(done.index, done.ctx))
            if done is req:
                break

    # --- internals: membership --------------------------------------------------------------
    def _set_conf(self, conf: ConfState) -> None:
        self._voters = tuple(sorted(conf.voters))
        self._voter_set = frozenset(self._voters)
        self._learners = tuple(sorted(conf.learners))
        if self._role == "leader":
            self._sync_progress()

    def _sync_progress(self) -> None:
        members = [*self._voters, *self._learners]
        next_index = self._log.last_index() + 1
        progress: dict[str, Progress] = {}
        for peer in sorted(members):
            pr = self._progress.get(peer)
            if pr is None:
                pr = Progress(next_index, self._config.max_inflight)
            pr.is_learner = peer in self._learners
            progress[peer] = pr
        self._progress = progress

    def _apply_conf_change(self, change: ConfChange, index: int) -> None:
        voters = set(self._voters)
        learners = set(self._learners)
        node = change.node_id
        if change.kind == "add_learner":
            if node not in voters:
                learners.add(node)
        elif change.kind == "promote":
            learners.discard(node)
            voters.add(node)
        elif change.kind == "remove":
            voters.discard(node)
            learners.discard(node)
        conf = ConfState(tuple(sorted(voters)), tuple(sorted(learners)))
        self._conf_history.append((index, conf))
        self._set_conf(conf)
        if self._role != "leader":
            return
        if self._id not in self._voter_set:
            self._become_follower(self._term, None)  # removed: let the others elect a leader
            return
        if self._lead_transferee is not None and self._lead_transferee not in self._voter_set:
            self._lead_transferee = None
        if self._maybe_commit():  # a smaller quorum may commit more
            self._bcast_append()

    # --- internals: output ------------------------------------------------------------------
    def _send(
        self,
        kind: MessageType,
        to: str,
        *,
        term: int | None = None,
        index: int = 0,
        log_term: int = 0,
        entries: tuple[Entry, ...] = (),
        commit: int = 0,
        reject: bool = False,
        reject_hint: int = 0,
        snapshot: Snapshot | None = None,
        context: bytes = b"",
    ) -> None:
        self._msgs.append(
            Message(
                kind,
                self._id,
                to,
                self._term if term is None else term,
                log_term,
                index,
                entries,
                commit,
                reject,
                reject_hint,
                snapshot,
                context,
            )
        )
