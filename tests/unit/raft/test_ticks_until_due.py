"""``RaftCore.ticks_until_due``: the ticks before it do nothing observable, the due one acts. This is what
lets the replica shell sleep between due ticks and deliver the ticks real time owes when it wakes."""

from __future__ import annotations

import random

from actors.raft.core import RaftCore
from actors.raft.storage import MemoryStorage
from actors.raft.types import RaftConfig
from tests.harness.raft_sim import Cluster

ABC = ("a", "b", "c")


def _observable(core: RaftCore) -> tuple[object, ...]:
    """What a tick can change that anyone could see: role, term, leader, and messages to send."""
    messages = tuple(core.ready().messages) if core.has_ready() else ()
    return core.role, core.term, core.leader_id, messages


def test_a_follower_is_due_exactly_at_its_randomized_election_timeout() -> None:
    for seed in range(50):
        core = RaftCore(
            RaftConfig(id="a", peers=ABC, election_ticks=10), MemoryStorage(), random.Random(seed)
        )
        due = core.ticks_until_due()
        assert 10 <= due < 20
        for _ in range(due - 1):
            core.tick()
            assert core.role == "follower" and core.ticks_until_due() >= 1
        assert core.ticks_until_due() == 1
        core.tick()
        assert core.role == "precandidate"  # the due tick campaigned


def test_a_leader_is_due_at_each_heartbeat_and_quiet_in_between() -> None:
    cluster = Cluster(ABC, heartbeat_ticks=3, election_ticks=10)
    leader = cluster.elect("a")
    if leader.has_ready():
        leader.advance(leader.ready())
    for _ in range(20):  # several heartbeat periods and a check-quorum boundary
        due = leader.ticks_until_due()
        assert 1 <= due <= 3  # never later than the next heartbeat (every 3 ticks)
        for _ in range(due - 1):
            leader.tick()
            assert not leader.has_ready(), "a tick before the due one did something"
        leader.tick()
        # the due tick sent heartbeats, or was the check-quorum round (its timer restarted; it steps
        # down if nobody answered, which here nobody does: the test delivers nothing)
        assert leader.has_ready() or leader._election_elapsed == 0, "the due tick did nothing"
        if leader.role != "leader":
            break
        if leader.has_ready():
            leader.advance(leader.ready())


def test_a_learner_never_campaigns_but_still_wakes_within_an_election_timeout() -> None:
    config = RaftConfig(id="d", peers=ABC, learners=("d",), election_ticks=10)
    core = RaftCore(config, MemoryStorage(), random.Random(3))
    assert core.ticks_until_due() == 10
    for _ in range(50):
        core.tick()
        assert core.role == "learner" and not core.has_ready()
    assert core.ticks_until_due() == 1  # its lease aged out long ago: still >= 1
