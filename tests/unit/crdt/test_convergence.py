"""Seeded convergence simulation: 3-5 GossipCores over a network that drops, duplicates and reorders.

Everything random comes from `random.Random(seed)`, so a seed replays exactly. A chaos phase mixes
client updates (adds and retractions), gossip ticks, deliveries in random order, partitions and
crash-restarts. A crash loses what the replica had not persisted: like `CrdtReplicaActor`, it
persists its state after each local update (before acknowledging it to the client) and on each
tick, and restarts from that snapshot as a new incarnation. Every message crosses the wire codec.

Then the faults stop (the network still reorders) and every replica must converge within a bounded
number of gossip rounds, after which the Maelstrom pn-counter check applies: every final read on
every replica equals the sum of all acknowledged updates (every update here is acknowledged and
durable, so the acceptable set is that single value), and gossip falls quiet.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from actors.crdt.codec import decode_message, encode
from actors.crdt.counters import GCounter
from actors.crdt.exposure import Exposure
from actors.crdt.gossip import GossipCore, GossipMessage

POLLUTANTS = ("NO2", "O3", "PM2.5", "SO2")
CHAOS_STEPS = 400
MAX_HEAL_ROUNDS = 10


@dataclass
class Replica:
    name: str
    peers: list[str]
    max_buffered_deltas: int
    incarnation: int = 1
    persisted: Exposure = field(default_factory=Exposure)
    core: GossipCore = field(init=False)

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.core = GossipCore(
            self.name,
            self.peers,
            self.persisted,
            incarnation=self.incarnation,
            max_buffered_deltas=self.max_buffered_deltas,
        )
        self.incarnation += 1

    def persist(self) -> None:
        self.persisted = self.core.state


@dataclass
class Outcome:
    seed: int
    violations: list[str] = field(default_factory=list)
    heal_rounds: int = 0
    messages_sent: int = 0
    full_states_sent: int = 0


class Simulation:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.outcome = Outcome(seed)
        names = [f"n{i}" for i in range(self.rng.randint(3, 5))]
        # Small buffers force the full-state path; large ones the delta-interval path.
        buffer = self.rng.choice((2, 4, 256))
        self.replicas = {
            n: Replica(n, [p for p in names if p != n], max_buffered_deltas=buffer) for n in names
        }
        self.drop = self.rng.choice((0.0, 0.1, 0.3))
        self.duplicate = self.rng.choice((0.0, 0.1, 0.3))
        self.restart_rate = self.rng.choice((0.0, 0.01, 0.03))
        self.in_flight: list[tuple[str, bytes]] = []
        self.cut: set[frozenset[str]] = set()  # pairs that cannot talk
        self.model: Counter[str] = Counter()  # the sum of every acknowledged update

    def violation(self, text: str) -> None:
        self.outcome.violations.append(f"seed={self.outcome.seed}: {text}")

    def send(self, messages: list[GossipMessage], *, faulty: bool) -> None:
        for message in messages:
            self.outcome.messages_sent += 1
            self.outcome.full_states_sent += getattr(message, "full_state", False)
            if faulty and self.rng.random() < self.drop:
                continue
            copies = 2 if faulty and self.rng.random() < self.duplicate else 1
            self.in_flight.extend([(message.sender, encode(message))] * copies)

    def deliver_one(self, *, faulty: bool) -> None:
        # Picking any message in flight, not the oldest, is what reorders.
        sender, data = self.in_flight.pop(self.rng.randrange(len(self.in_flight)))
        message = decode_message(data)
        if faulty and frozenset((sender, message.recipient)) in self.cut:
            return
        replica = self.replicas[message.recipient]
        before = replica.core.state
        replies = replica.core.receive(message)
        if not before.leq(replica.core.state):
            self.violation(f"{replica.name} lost state on receiving {message}")
        self.send(replies, faulty=faulty)

    def client_update(self) -> None:
        replica = self.replicas[self.rng.choice(sorted(self.replicas))]
        pollutant = self.rng.choice(POLLUTANTS)
        amount = self.rng.randint(1, 10**6)
        if self.rng.random() < 0.2:
            replica.core.retract(pollutant, amount)
            self.model[pollutant] -= amount
        else:
            replica.core.add(pollutant, amount)
            self.model[pollutant] += amount
        replica.persist()  # the update is acknowledged to the client only once durable

    def tick(self, replica: Replica, *, faulty: bool) -> None:
        self.send(replica.core.tick(), faulty=faulty)
        replica.persist()

    def chaos(self) -> None:
        names = sorted(self.replicas)
        for _ in range(CHAOS_STEPS):
            roll = self.rng.random()
            if roll < 0.3:
                self.client_update()
            elif roll < 0.5:
                self.tick(self.replicas[self.rng.choice(names)], faulty=True)
            elif roll < 0.95:
                for _ in range(min(len(self.in_flight), self.rng.randint(1, 4))):
                    self.deliver_one(faulty=True)
            elif self.rng.random() < 0.5:
                self.partition(names)
            if self.rng.random() < self.restart_rate:
                self.replicas[self.rng.choice(names)].restart()

    def partition(self, names: list[str]) -> None:
        if self.cut:
            self.cut = set()
            return
        side = set(self.rng.sample(names, self.rng.randint(1, len(names) - 1)))
        self.cut = {frozenset((a, b)) for a in side for b in names if b not in side}

    def heal(self) -> None:
        """Gossip rounds with no faults: every replica ticks, then every message is delivered."""
        for rounds in range(1, MAX_HEAL_ROUNDS + 1):
            for replica in self.replicas.values():
                self.tick(replica, faulty=False)
            while self.in_flight:
                self.deliver_one(faulty=False)
            states = {r.core.state for r in self.replicas.values()}
            if len(states) == 1:
                self.outcome.heal_rounds = rounds
                return
        self.violation(f"no convergence within {MAX_HEAL_ROUNDS} rounds after healing")

    def check(self) -> None:
        expected = dict(self.model)
        for replica in self.replicas.values():
            read = replica.core.state.value()
            if {p: read.get(p, 0) for p in expected} != expected or set(read) - set(expected):
                self.violation(f"{replica.name} reads {read}, acknowledged updates sum to {expected}")
        # Once everyone has everything, acknowledgements must let gossip fall quiet.
        for _ in range(3):
            for replica in self.replicas.values():
                self.tick(replica, faulty=False)
            if not self.in_flight:
                return
            while self.in_flight:
                self.deliver_one(faulty=False)
        self.violation(f"gossip does not fall quiet after convergence: {len(self.in_flight)} in flight")


def simulate(seed: int) -> Outcome:
    simulation = Simulation(seed)
    simulation.chaos()
    simulation.heal()
    if not simulation.outcome.violations:
        simulation.check()
    return simulation.outcome


SEEDS = range(32)


@pytest.mark.parametrize("seed", SEEDS)
def test_replicas_converge_to_the_sum_of_acknowledged_updates(seed: int) -> None:
    outcome = simulate(seed)
    assert not outcome.violations, (
        f"seed {seed} failed; reproduce with "
        f"pytest 'tests/unit/crdt/test_convergence.py::"
        f"test_replicas_converge_to_the_sum_of_acknowledged_updates[{seed}]'\n"
        + "\n".join(outcome.violations[:5])
    )


def test_the_simulation_catches_a_merge_that_adds_instead_of_taking_the_maximum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Planted bug (G2 in the reliability notes): a G-Counter merge with `+` instead of `max`."""

    def summing_merge(self: GCounter, other: GCounter) -> GCounter:
        merged = dict(self.counts)
        for replica, count in other.counts.items():
            merged[replica] = merged.get(replica, 0) + count
        return GCounter(merged)

    monkeypatch.setattr(GCounter, "merge", summing_merge)
    caught = [seed for seed in range(3) if simulate(seed).violations]
    assert caught, "a summing merge went unnoticed for 3 seeds"
