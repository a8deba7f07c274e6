"""Values the Raft core consumes and produces: entries, messages, hard state, snapshots, Ready.

Pure: stdlib only. Every value is a frozen slotted dataclass so it can be shared between the core,
the storage and the codec without defensive copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from actors.raft.errors import ConfigError

EntryKind = Literal["normal", "noop", "conf"]
ConfChangeKind = Literal["add_learner", "promote", "remove"]
Role = Literal["follower", "precandidate", "candidate", "leader", "learner"]
MessageType = Literal[
    "append",  # AppendEntries (index/log_term = the entry before `entries`)
    "append_resp",  # index = last index now matching the leader's log, or the rejected index
    "vote",
    "vote_resp",
    "prevote",  # sent with term = candidate's term + 1; the receiver's term is not changed
    "prevote_resp",
    "heartbeat",  # commit = min(follower's match, leader's commit); context = ReadIndex round
    "heartbeat_resp",
    "snapshot",  # InstallSnapshot to a follower whose next entry was compacted away
    "timeout_now",  # leadership transfer: campaign at once, skipping pre-vote and the lease
]

# The only planted-bug names the core understands (see RaftConfig.planted_bugs).
PLANTED_BUGS: frozenset[str] = frozenset(
    {"vote_not_persisted", "commit_previous_term", "accept_stale_append", "read_index_before_noop"}
)


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    kind: EntryKind = "normal"
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What must survive a crash: Raft's currentTerm and votedFor, plus the known commit index."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Application state up to and including `index`, which had term `term`."""

    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One membership step: add a non-voting learner, promote a learner, or remove a member."""

    kind: ConfChangeKind
    node_id: str


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    sender: str
    to: str
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""


@dataclass(frozen=True, slots=True)
class ReadState:
    """A confirmed linearizable read: serve the read for `ctx` once applied index >= `index`."""

    index: int
    ctx: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the core wants done, in this order (etcd's Ready contract):

    1. persist `snapshot`, append `entries` (truncating any conflicting suffix) and persist
       `hard_state`, with an fsync when `must_sync`;
    2. only then send `messages` (they may promise what step 1 persisted);
    3. restore the state machine from `snapshot` if present, then apply `committed_entries`
       in order, and serve `read_states` whose index is applied;
    4. call `RaftCore.advance(ready)`.
    """

    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    messages: tuple[Message, ...] = ()
    committed_entries: tuple[Entry, ...] = ()
    read_states: tuple[ReadState, ...] = ()
    must_sync: bool = False


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Static configuration of one replica.

    `election_ticks` is the minimum election timeout; each follower draws its timeout from
    [election_ticks, election_ticks_max), `election_ticks_max` defaulting to 2 * election_ticks.
    A leader with `check_quorum` steps down when it has not heard from a majority within
    `election_ticks`. `peers` and `learners` bootstrap an empty storage only; once storage holds
    a snapshot its ConfState wins, and committed configuration entries are re-applied.

    `planted_bugs` is TEST-ONLY: it re-introduces known Raft bugs so that the simulation harness
    can prove it catches them. Production code must leave it empty. Names: see PLANTED_BUGS.
    """

    id: str
    peers: tuple[str, ...]
    learners: tuple[str, ...] = ()
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    election_ticks_max: int | None = None
    pre_vote: bool = True
    check_quorum: bool = True
    max_inflight: int = 256
    max_entries_per_msg: int = 64
    max_uncommitted_entries: int = 10_000
    # A learner is promotable once its match index is within this many entries of the leader's.
    promote_lag_entries: int = 0
    planted_bugs: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.heartbeat_ticks <= 0 or self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError(
                f"need 0 < heartbeat_ticks < election_ticks, got heartbeat_ticks="
                f"{self.heartbeat_ticks} election_ticks={self.election_ticks}"
            )
        if self.election_ticks_max is not None and self.election_ticks_max <= self.election_ticks:
            raise ConfigError(
                f"election_ticks_max ({self.election_ticks_max}) is an exclusive bound and must "
                f"exceed election_ticks ({self.election_ticks})"
            )
        if self.max_inflight <= 0 or self.max_entries_per_msg <= 0:
            raise ConfigError("max_inflight and max_entries_per_msg must be positive")
        unknown = self.planted_bugs - PLANTED_BUGS
        if unknown:
            raise ConfigError(f"unknown planted bug(s) {sorted(unknown)}; known: {sorted(PLANTED_BUGS)}")
