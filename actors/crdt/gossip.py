"""Delta-interval anti-entropy for `Exposure` replicas (pure).

Algorithm 2 of Almeida, Shoker and Baquero, "Delta state replicated data types" (2016), with two
changes for replicas that restart. Each replica numbers the deltas it buffers (its local updates
and the new parts of what it receives) with a sequence number, and remembers per peer the sequence
number that peer acknowledged. On every `tick` it sends each peer that is behind either the join of
the deltas since that acknowledgement, or its FULL STATE when the peer is new, or acknowledged less
than the oldest delta still buffered. A receiver merges, buffers what was new to it (so deltas also
travel through third replicas), and acknowledges. The buffer is trimmed below the lowest
acknowledgement and is bounded: a peer that falls behind the bound gets the full state instead.

The changes for restarts:
- Sequence numbers and acknowledgements are volatile, so each start of a replica is a new
  *incarnation*. Messages name the sender's and the intended recipient's incarnation. An ack for an
  earlier incarnation of ours is ignored (it would acknowledge deltas that incarnation never sent),
  an interval meant for an earlier incarnation of the receiver is merged but not acknowledged (the
  receiver may have lost the prefix it relied on), and a peer seen with another incarnation than
  the last one (the latest seen wins, so incarnations need only be distinct) is treated as new,
  i.e. gets our full state. So the caller needs to persist only the state.
- A full state that lacks something we have marks its sender as behind (also a new peer). The two
  rules overlap on purpose: either alone brings a restarted replica back.

Merging is always safe for a join-semilattice, so nothing here relies on ordered or exactly-once
delivery; messages may be dropped, duplicated and reordered. The caller delivers each returned
message to the replica named in its `recipient`, calls `tick()` periodically, and persists `state`
(a new object exactly when it changed) before acknowledging a local update to its client.

A replica must count only on top of the state it last persisted. Counting under the same replica
id from an older state (a lost disk) would be masked by the higher counts its peers already hold
for that id: after a disk loss, rejoin under a new replica id.

Amounts in the state are integers in micro-units (see `actors.crdt.exposure`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from actors.crdt.counters import require_replica_id
from actors.crdt.exposure import Exposure


class GossipConfigError(ValueError):
    """A `GossipCore` was configured inconsistently (peer list, buffer bound, incarnation)."""


class UnknownPeerError(ValueError):
    """A message came from a replica that is not among this replica's configured peers."""


class MisroutedMessageError(ValueError):
    """A message addressed to another replica was handed to this one."""


@dataclass(frozen=True, slots=True)
class DeltaMessage:
    """State to merge: a delta interval, or the sender's full state."""

    sender: str
    sender_incarnation: int
    recipient: str
    # The recipient incarnation the sender's acknowledgement record is about; None if unknown.
    recipient_incarnation: int | None
    # The sender's next sequence number: acknowledging it covers every delta numbered below it.
    seq: int
    payload: Exposure
    full_state: bool


@dataclass(frozen=True, slots=True)
class AckMessage:
    """The sender has merged everything numbered below `seq` by `recipient_incarnation`."""

    sender: str
    sender_incarnation: int
    recipient: str
    recipient_incarnation: int
    seq: int


GossipMessage = DeltaMessage | AckMessage


@dataclass(frozen=True, slots=True)
class _Buffered:
    delta: Exposure
    origin: tuple[str, int]  # (replica, incarnation) that the delta came from


class GossipCore:
    """One replica's gossip state machine: updates, ticks and messages in; messages out.

    `incarnation` must differ from every earlier incarnation of this replica, e.g. a restart
    counter kept in the event log or `random.SystemRandom().getrandbits(63)` drawn by the shell.
    """

    def __init__(
        self,
        replica: str,
        peers: Sequence[str],
        state: Exposure,
        *,
        incarnation: int,
        max_buffered_deltas: int = 256,
    ) -> None:
        require_replica_id(replica)
        if isinstance(peers, str):
            raise GossipConfigError(f"peers must be a list of replica ids, got the str {peers!r}")
        for peer in peers:
            require_replica_id(peer)
        if replica in peers or len(set(peers)) != len(peers):
            raise GossipConfigError(
                f"peers of {replica!r} must be distinct and exclude itself, got {list(peers)!r}"
            )
        if max_buffered_deltas < 1:
            raise GossipConfigError(f"max_buffered_deltas must be >= 1, got {max_buffered_deltas}")
        if not isinstance(incarnation, int) or incarnation < 0:
            raise GossipConfigError(f"incarnation must be an int >= 0, got {incarnation!r}")
        self._replica = replica
        self._peers = tuple(peers)
        self._state = state
        self._incarnation = incarnation
        self._max_buffered = max_buffered_deltas
        self._next_seq = 0
        self._buffer: deque[_Buffered] = deque()  # deltas numbered _buffer_start.._next_seq-1
        self._buffer_start = 0
        # Per peer: its incarnation as last seen, and the seq it acknowledged in that incarnation.
        self._peer_incarnation: dict[str, int | None] = dict.fromkeys(self._peers)
        self._acked: dict[str, int | None] = dict.fromkeys(self._peers)

    @property
    def replica(self) -> str:
        return self._replica

    @property
    def incarnation(self) -> int:
        return self._incarnation

    @property
    def state(self) -> Exposure:
        return self._state

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def buffered_deltas(self) -> int:
        return len(self._buffer)

    def acked(self, peer: str) -> int | None:
        """The seq `peer` acknowledged (None: unknown, the peer gets the full state)."""
        self._require_peer(peer)
        return self._acked[peer]

    def add(self, pollutant: str, amount: int) -> Exposure:
        """Count `amount >= 0` micro-units here. Returns the delta (already merged and buffered)."""
        _, delta = self._state.add(self._replica, pollutant, amount)
        self.update(delta)
        return delta

    def retract(self, pollutant: str, amount: int) -> Exposure:
        """Take back `amount >= 0` micro-units here. Returns the delta (merged and buffered)."""
        _, delta = self._state.retract(self._replica, pollutant, amount)
        self.update(delta)
        return delta

    def update(self, delta: Exposure) -> None:
        """Merge a local delta into the state and buffer it for the peers.

        The delta must come from a mutator applied to `self.state` (or use `add`/`retract`): a
        delta computed from an older state may be dominated and so lose its increment.
        """
        self._absorb(delta, origin=(self._replica, self._incarnation))

    def tick(self) -> list[GossipMessage]:
        """What to send now: to each peer that is behind, the deltas it lacks or our full state."""
        messages: list[GossipMessage] = []
        for peer in self._peers:
            acked = self._acked[peer]
            if acked is not None and acked >= self._next_seq:
                continue
            if acked is None or acked < self._buffer_start:
                messages.append(self._delta_message(peer, self._state, full_state=True))
                continue
            interval = self._interval_for(peer, acked)
            if interval.is_bottom():
                # Everything it lacks came from that very incarnation of the peer.
                self._acked[peer] = self._next_seq
                continue
            messages.append(self._delta_message(peer, interval, full_state=False))
        self._trim_buffer()
        return messages

    def receive(self, message: GossipMessage) -> list[GossipMessage]:
        """Merge a peer's message; returns the acknowledgement to send, if any."""
        if message.recipient != self._replica:
            raise MisroutedMessageError(
                f"{type(message).__name__} for {message.recipient!r} was delivered to "
                f"{self._replica!r}; route gossip by the message's recipient"
            )
        self._require_peer(message.sender)
        self._observe_incarnation(message.sender, message.sender_incarnation)
        if isinstance(message, AckMessage):
            self._on_ack(message)
            return []
        return self._on_delta(message)

    def _on_delta(self, message: DeltaMessage) -> list[GossipMessage]:
        self._absorb(message.payload, origin=(message.sender, message.sender_incarnation))
        if message.full_state and not self._state.leq(message.payload):
            self._acked[message.sender] = None  # the sender lacks something we have
        if not message.full_state and message.recipient_incarnation != self._incarnation:
            return []  # an interval for an earlier life of ours: we may lack its prefix
        return [
            AckMessage(
                sender=self._replica,
                sender_incarnation=self._incarnation,
                recipient=message.sender,
                recipient_incarnation=message.sender_incarnation,
                seq=message.seq,
            )
        ]

    def _on_ack(self, ack: AckMessage) -> None:
        if ack.recipient_incarnation != self._incarnation or ack.seq > self._next_seq:
            return  # acknowledges deltas of an earlier incarnation of ours
        acked = self._acked[ack.sender]
        if acked is None or ack.seq > acked:
            self._acked[ack.sender] = ack.seq
            self._trim_buffer()

    def _observe_incarnation(self, peer: str, incarnation: int) -> None:
        if self._peer_incarnation[peer] != incarnation:
            # A restarted peer may have lost what it acknowledged before: treat it as new.
            self._peer_incarnation[peer] = incarnation
            self._acked[peer] = None

    def _absorb(self, delta: Exposure, origin: tuple[str, int]) -> None:
        novel = delta.difference(self._state)
        if novel.is_bottom():
            return
        self._state = self._state.merge(novel)
        self._buffer.append(_Buffered(novel, origin))
        self._next_seq += 1
        if len(self._buffer) > self._max_buffered:
            self._buffer.popleft()
            self._buffer_start += 1

    def _interval_for(self, peer: str, acked: int) -> Exposure:
        own = (peer, self._peer_incarnation[peer])
        interval = Exposure()
        for index in range(acked - self._buffer_start, len(self._buffer)):
            entry = self._buffer[index]
            if entry.origin != own:
                interval = interval.merge(entry.delta)
        return interval

    def _trim_buffer(self) -> None:
        # No acknowledged peer needs deltas below `floor`; unknown peers get the full state anyway.
        floor = min((a for a in self._acked.values() if a is not None), default=self._next_seq)
        while self._buffer_start < floor:
            self._buffer.popleft()
            self._buffer_start += 1

    def _delta_message(self, peer: str, payload: Exposure, *, full_state: bool) -> DeltaMessage:
        return DeltaMessage(
            sender=self._replica,
            sender_incarnation=self._incarnation,
            recipient=peer,
            recipient_incarnation=self._peer_incarnation[peer],
            seq=self._next_seq,
            payload=payload,
            full_state=full_state,
        )

    def _require_peer(self, peer: str) -> None:
        if peer not in self._acked:
            raise UnknownPeerError(
                f"{peer!r} is not a gossip peer of {self._replica!r} (peers: {list(self._peers)}); "
                "add it to the topology's CRDT peers on every node"
            )
