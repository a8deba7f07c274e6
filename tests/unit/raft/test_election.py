"""Leader election rules, one test per sentence of the Raft paper / thesis they check."""

from __future__ import annotations

import random

import pytest

from actors.raft.core import RaftCore
from actors.raft.errors import NotLeader
from actors.raft.storage import MemoryStorage
from actors.raft.types import Entry, HardState, Message, RaftConfig
from tests.harness.raft_sim import Cluster

ABC = ("a", "b", "c")


def test_follower_that_hears_nothing_campaigns_after_its_randomized_timeout() -> None:
    # §5.2: "If a follower receives no communication over a period of time called the election
    # timeout, then it assumes there is no viable leader and begins an election."
    core = RaftCore(RaftConfig(id="a", peers=ABC, election_ticks=10), MemoryStorage(), random.Random(1))
    for _ in range(9):
        core.tick()
    assert core.role == "follower"
    for _ in range(10):
        core.tick()
    assert core.role == "precandidate"
    prevotes = [m for m in core.ready().messages if m.type == "prevote"]
    assert sorted(m.to for m in prevotes) == ["b", "c"]
    # Pre-vote (thesis §9.6): the term is only proposed, not taken.
    assert core.term == 0 and all(m.term == 1 for m in prevotes)


def test_randomized_timeouts_are_drawn_from_the_configured_range() -> None:
    seen = set()
    for seed in range(200):
        core = RaftCore(
            RaftConfig(id="a", peers=ABC, election_ticks=150, election_ticks_max=156),
            MemoryStorage(),
            random.Random(seed),
        )
        ticks = 0
        while core.role == "follower":
            core.tick()
            ticks += 1
        seen.add(ticks)
    assert seen == set(range(150, 156))


def test_candidate_with_majority_becomes_leader_and_appends_a_noop_of_its_term() -> None:
    cluster = Cluster(ABC)
    leader = cluster.elect("a")
    assert leader.term == 1 and cluster["b"].leader_id == "a"
    noop = cluster.applied["a"][0]
    assert (noop.kind, noop.term, noop.index) == ("noop", 1, 1)
    assert leader.commit_index == 1


def test_vote_is_persisted_before_the_grant_is_sent() -> None:
    # Figure 2: "Persistent state on all servers (updated on stable storage before responding
    # to RPCs): currentTerm, votedFor".
    voter = RaftCore(RaftConfig(id="b", peers=ABC, pre_vote=False), MemoryStorage(), random.Random())
    voter.step(Message("vote", "a", "b", term=1, index=0, log_term=0))
    rd = voter.ready()
    assert [m.type for m in rd.messages] == ["vote_resp"] and not rd.messages[0].reject
    assert rd.hard_state == HardState(term=1, vote="a", commit=0) and rd.must_sync


def test_planted_bug_vote_not_persisted_leaves_the_vote_out_of_the_hard_state() -> None:
    config = RaftConfig(id="b", peers=ABC, pre_vote=False, planted_bugs=frozenset({"vote_not_persisted"}))
    voter = RaftCore(config, MemoryStorage(), random.Random())
    voter.step(Message("vote", "a", "b", term=1))
    rd = voter.ready()
    assert rd.hard_state is not None and rd.hard_state.vote is None


def test_each_server_votes_for_at_most_one_candidate_per_term_even_across_restart() -> None:
    # §5.2: "Each server will vote for at most one candidate in a given term".
    cluster = Cluster(ABC, pre_vote=False)
    cluster["b"].step(Message("vote", "a", "b", term=1))
    cluster.persist("b")
    cluster.crash("b")
    voter = cluster.restart("b", pre_vote=False)
    voter.step(Message("vote", "c", "b", term=1))
    (answer,) = cluster.persist("b")
    assert answer.type == "vote_resp" and answer.reject


def test_voter_denies_a_candidate_whose_log_is_less_up_to_date() -> None:
    # §5.4.1: "the voter denies its vote if its own log is more up-to-date than that of the
    # candidate ... If the logs have last entries with different terms, then the log with the
    # later term is more up-to-date."
    storage = MemoryStorage()
    storage.append([Entry(1, 1), Entry(2, 2)])
    storage.set_hard_state(HardState(term=2))
    voter = RaftCore(RaftConfig(id="b", peers=ABC, pre_vote=False), storage, random.Random())
    voter.step(Message("vote", "a", "b", term=3, index=5, log_term=1))  # longer, older term
    voter.step(Message("vote", "c", "b", term=4, index=2, log_term=2))  # same last entry: ok
    answers = [(m.to, m.reject) for m in voter.ready().messages]
    assert answers == [("a", True), ("c", False)]


def test_leader_with_stale_term_steps_down_on_a_higher_term() -> None:
    # §5.1: "If a candidate or leader discovers that its term is out of date, it immediately
    # reverts to follower state."
    cluster = Cluster(ABC)
    leader = cluster.elect("a")
    leader.step(Message("append_resp", "b", "a", term=7))
    assert leader.role == "follower" and leader.term == 7


def test_prevote_keeps_a_rejoining_partitioned_node_from_deposing_the_leader() -> None:
    # Thesis §9.6: a server that was partitioned away must not disrupt the cluster when it
    # rejoins; with pre-vote it cannot even raise its term.
    cluster = Cluster(ABC)
    cluster.elect("a")
    cluster.isolate("c")
    cluster.tick("c", 100)
    assert cluster["c"].term == 1 and cluster["c"].role in ("precandidate", "follower")
    cluster.heal()
    cluster.tick("c", 30)
    cluster.tick("a", 3)
    assert cluster["a"].role == "leader" and cluster["a"].term == 1


def test_check_quorum_makes_an_isolated_leader_step_down() -> None:
    # Thesis §6.2: "a leader steps down if an election timeout elapses without a successful
    # round of heartbeats to a majority of its cluster".
    cluster = Cluster(ABC)
    leader = cluster.elect("a")
    cluster.isolate("a")
    cluster.tick("a", 10)
    assert leader.role == "leader"  # one round is allowed to fail...
    cluster.tick("a", 10)
    assert leader.role == "follower" and leader.leader_id is None


def test_votes_within_the_lease_of_a_live_leader_are_ignored() -> None:
    # Thesis §4.2.3: "if a server receives a RequestVote request within the minimum election
    # timeout of hearing from a current leader, it does not update its term or grant its vote".
    cluster = Cluster(ABC)
    cluster.elect("a")
    follower = cluster["b"]
    follower.step(Message("vote", "c", "b", term=5, index=9, log_term=9))
    assert follower.term == 1 and not cluster.persist("b")


def test_follower_names_the_leader_when_refusing_a_proposal() -> None:
    cluster = Cluster(ABC)
    cluster.elect("a")
    with pytest.raises(NotLeader) as caught:
        cluster["b"].propose(b"x")
    assert caught.value.leader_hint == "a"


def test_a_removed_or_learner_replica_never_campaigns() -> None:
    core = RaftCore(RaftConfig(id="d", peers=ABC, learners=("d",)), MemoryStorage(), random.Random())
    for _ in range(100):
        core.tick()
    assert core.role == "learner" and core.term == 0 and not core.has_ready()


def _ticks_to_new_leader(cluster: Cluster, followers: tuple[str, ...], limit: int = 200) -> int:
    for ticks in range(1, limit + 1):
        for node in followers:
            cluster.tick(node)
        if any(cluster[n].role == "leader" for n in followers):
            return ticks
    raise AssertionError("no new leader")


def test_a_leader_whose_connections_ended_is_replaced_within_a_few_ticks() -> None:
    """The transport saw the dead leader's sockets close: the followers campaign after 1-3 ticks
    instead of a whole randomized election timeout (15-30 ticks here), and do not split the vote."""
    timings = {}
    for reported in (False, True):
        cluster = Cluster(ABC, election_ticks=15, check_quorum=True, pre_vote=True)
        cluster.elect("a")
        cluster.tick("a", 3)  # b and c know a as their leader
        assert cluster["b"].leader_id == cluster["c"].leader_id == "a"
        cluster.crash("a")  # the node is SIGKILLed ...
        if reported:  # ... and its peers' gateways see its connections end at once
            cluster["b"].report_leader_lost("a")
            cluster["c"].report_leader_lost("a")
        timings[reported] = _ticks_to_new_leader(cluster, ("b", "c"))
    assert timings[True] <= 6 < 15 <= timings[False], timings


def test_followers_that_all_saw_the_leader_die_campaign_at_least_two_ticks_apart() -> None:
    """Two followers that campaign within one message round trip of each other both win a pre-vote and
    split the vote (the instant network of ``Cluster`` cannot show it; real processes did, in about a
    quarter of leader kills): whatever their random state, their campaigns are >= 2 ticks apart."""
    for seed in range(60):
        cluster = Cluster(("a", "b", "c", "d", "e"), election_ticks=15, check_quorum=True, pre_vote=True)
        cluster.elect("a")
        cluster.tick("a", 3)
        cluster.crash("a")
        dues = []
        for node in ("b", "c", "d", "e"):
            cluster[node]._rng = random.Random(f"{seed}/{node}")  # as if each had drawn differently
            cluster[node].report_leader_lost("a")
            dues.append(cluster[node].ticks_until_due())
        assert sorted(dues) == [1, 3, 5, 7], (seed, dues)


def test_a_connection_blip_to_a_live_leader_does_not_depose_it() -> None:
    cluster = Cluster(ABC, election_ticks=15, check_quorum=True, pre_vote=True)
    leader = cluster.elect("a")
    cluster.tick("a", 3)
    term = leader.term
    cluster["b"].report_leader_lost("a")  # b's connection from a reset; a and c are fine
    assert cluster["b"].leader_id is None
    for _ in range(5):  # b campaigns within 3 ticks: c, which still hears a, refuses the pre-vote
        cluster.tick("b")
    cluster.tick("a", 3)  # a's next heartbeat makes it b's leader again
    assert leader.role == "leader" and leader.term == term
    assert cluster["b"].leader_id == "a" and cluster["b"].term == term


def test_reports_about_a_peer_that_is_not_our_leader_change_nothing() -> None:
    cluster = Cluster(ABC, election_ticks=15)
    leader = cluster.elect("a")
    cluster.tick("a", 3)
    cluster["b"].report_leader_lost("c")  # c is a follower
    leader.report_leader_lost("b")  # a leads
    assert cluster["b"].leader_id == "a" and leader.role == "leader"
