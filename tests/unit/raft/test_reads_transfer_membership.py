"""ReadIndex reads, leadership transfer, membership changes with learners, snapshots."""

from __future__ import annotations

import pytest

from actors.raft.errors import (
    InvalidConfChange,
    LearnerNotCaughtUp,
    NotLeader,
    ProposalDropped,
)
from actors.raft.types import ConfChange, ReadState
from tests.harness.raft_sim import Cluster

ABC = ("a", "b", "c")


# --- ReadIndex (Raft §8, thesis §6.4) ----------------------------------------------------------
def test_read_index_is_the_commit_index_confirmed_by_a_heartbeat_round() -> None:
    cluster = Cluster(ABC)
    leader = cluster.elect("a")
    leader.propose(b"x")
    cluster.deliver()
    leader.read_index(b"r1")
    heartbeats = [m for m in cluster.persist("a") if m.type == "heartbeat"]
    assert {m.context for m in heartbeats} == {b"r1"}  # a dedicated round
    assert cluster.read_states["a"] == []  # not before a majority answered
    for msg in heartbeats:
        cluster[msg.to].step(msg)
    cluster.deliver()
    assert cluster.read_states["a"] == [ReadState(index=2, ctx=b"r1")]


def test_read_index_waits_until_the_new_leader_has_committed_its_noop() -> None:
    # §8: "a leader must have the latest information on which entries are committed ... Raft
    # handles this by having each leader commit a blank no-op entry at the start of its term."
    cluster = Cluster(ABC)
    cluster.drop_types.add("append_resp")  # the no-op cannot commit
    leader = cluster.elect("a")
    cluster.tick("a", 3)
    leader.read_index(b"early")
    cluster.tick("a", 3)
    assert leader.commit_index == 0 and cluster.read_states["a"] == []
    cluster.heal()
    cluster.tick("a", 3)
    assert cluster.read_states["a"] == [ReadState(index=1, ctx=b"early")]


def test_planted_bug_read_index_before_noop_answers_with_a_stale_commit_index() -> None:
    cluster = Cluster(ABC, planted_bugs=frozenset({"read_index_before_noop"}))
    cluster.drop_types.add("append_resp")
    leader = cluster.elect("a")
    leader.read_index(b"early")
    cluster.deliver()
    assert cluster.read_states["a"] == [ReadState(index=0, ctx=b"early")]


def test_followers_refuse_read_index_and_offer_only_an_explicitly_stale_local_read() -> None:
    cluster = Cluster(ABC)
    cluster.elect("a")
    with pytest.raises(NotLeader):
        cluster["b"].read_index(b"r")
    assert cluster["b"].local_read_index() == cluster["b"].applied_index


def test_a_deposed_leader_never_confirms_a_read() -> None:
    cluster = Cluster(ABC)
    leader = cluster.elect("a")
    cluster.isolate("a")
    leader.read_index(b"r")
    cluster.tick("a", 30)  # check-quorum makes it step down
    assert leader.role == "follower" and cluster.read_states["a"] == []


# --- leadership transfer (thesis §3.10) -----------------------------------------------------------
def test_leadership_transfer_to_an_up_to_date_voter() -> None:
    cluster = Cluster(ABC)
    leader = cluster.elect("a")
    leader.transfer_leadership("b")
    cluster.deliver()
    assert cluster["b"].role == "leader" and cluster["b"].term == 2
    assert leader.role == "follower" and leader.leader_id == "b"


def test_transfer_catches_the_target_up_first_and_drops_proposals_meanwhile() -> None:
    cluster = Cluster(ABC)
    leader = cluster.elect("a")
    cluster.isolate("c")
    for i in range(5):
        leader.propose(b"%d" % i)
    cluster.deliver()
    leader.transfer_leadership("c")
    with pytest.raises(ProposalDropped):
        leader.propose(b"late")
    cluster.heal()
    cluster.tick("a", 3)
    assert cluster["c"].role == "leader"
    assert cluster["c"].last_index >= 7


def test_transfer_is_abandoned_after_an_election_timeout() -> None:
    cluster = Cluster(ABC)
    leader = cluster.elect("a")
    cluster.drop_types.add("timeout_now")
    leader.transfer_leadership("b")
    cluster.tick("a", 12)
    assert leader.role == "leader" and leader.lead_transferee is None
    leader.propose(b"ok again")


# --- membership changes, one server at a time (thesis §4.1, §4.2.1) -------------------------------
def _member_cluster() -> Cluster:
    cluster = Cluster(ABC)
    cluster.elect("a")
    return cluster


def test_learner_catches_up_without_voting_then_is_promoted() -> None:
    cluster = _member_cluster()
    leader = cluster["a"]
    for i in range(5):
        leader.propose(b"%d" % i)
    cluster.deliver()
    leader.propose_conf_change(ConfChange("add_learner", "d"))
    cluster.add("d")
    cluster.deliver()
    cluster.tick("a", 3)
    assert leader.learners == ("d",) and leader.voters == ABC
    assert cluster["d"].role == "learner"
    assert cluster.data("d") == cluster.data("a")  # it caught up
    leader.propose_conf_change(ConfChange("promote", "d"))
    cluster.deliver()
    cluster.tick("a", 3)
    assert leader.voters == ("a", "b", "c", "d") and cluster["d"].voters == leader.voters


def test_promotion_of_a_lagging_learner_is_refused() -> None:
    cluster = _member_cluster()
    leader = cluster["a"]
    leader.propose_conf_change(ConfChange("add_learner", "d"))
    cluster.deliver()  # "d" does not exist yet: it cannot catch up
    with pytest.raises(LearnerNotCaughtUp):
        leader.propose_conf_change(ConfChange("promote", "d"))


def test_only_one_configuration_change_may_be_pending() -> None:
    cluster = _member_cluster()
    leader = cluster["a"]
    cluster.isolate("b")
    cluster.isolate("c")
    leader.propose_conf_change(ConfChange("add_learner", "d"))
    with pytest.raises(ProposalDropped):
        leader.propose_conf_change(ConfChange("add_learner", "e"))


def test_a_learner_does_not_count_towards_the_commit_quorum() -> None:
    cluster = _member_cluster()
    leader = cluster["a"]
    leader.propose_conf_change(ConfChange("add_learner", "d"))
    cluster.add("d")
    cluster.deliver()
    cluster.isolate("b")
    cluster.isolate("c")
    before = leader.commit_index
    leader.propose(b"x")
    cluster.deliver()
    assert cluster["d"].last_index == leader.last_index  # replicated to the learner...
    assert leader.commit_index == before  # ...but a + d is not a majority of a, b, c


def test_removing_the_leader_makes_it_step_down_and_the_rest_elect_a_new_one() -> None:
    cluster = _member_cluster()
    leader = cluster["a"]
    leader.propose_conf_change(ConfChange("remove", "a"))
    cluster.deliver()
    cluster.tick("a", 3)
    assert leader.role == "follower" and leader.voters == ("b", "c")
    new = cluster.elect("b")
    assert new.voters == ("b", "c")
    new.propose(b"after")
    cluster.deliver()
    assert b"after" in cluster.data("b")


def test_invalid_changes_are_refused_with_a_reason() -> None:
    cluster = _member_cluster()
    leader = cluster["a"]
    with pytest.raises(InvalidConfChange, match="already a member"):
        leader.propose_conf_change(ConfChange("add_learner", "b"))
    with pytest.raises(InvalidConfChange, match="not a learner"):
        leader.propose_conf_change(ConfChange("promote", "z"))
    with pytest.raises(NotLeader):
        cluster["b"].propose_conf_change(ConfChange("remove", "c"))


# --- snapshots and InstallSnapshot (§7) ------------------------------------------------------------
def test_follower_behind_the_compacted_log_receives_a_snapshot() -> None:
    cluster = Cluster(ABC)
    leader = cluster.elect("a")
    cluster.isolate("c")
    for i in range(20):
        leader.propose(b"%d" % i)
    cluster.deliver()
    cluster.tick("a", 3)
    leader.compact(leader.applied_index, b"state up to %d" % leader.applied_index)
    assert cluster.storages["a"].first_index() == leader.applied_index + 1
    cluster.heal()
    cluster.tick("a", 6)
    snapshot_msgs = [m for m in cluster.delivered if m.type == "snapshot"]
    assert len(snapshot_msgs) == 1 and snapshot_msgs[0].snapshot is not None
    assert snapshot_msgs[0].snapshot.data == b"state up to 21"
    assert cluster.storages["c"].snapshot().index == 21
    assert cluster["c"].commit_index == leader.commit_index
    # it keeps replicating normally afterwards
    leader.propose(b"next")
    cluster.deliver()
    cluster.tick("a", 3)
    assert cluster.data("c")[-1] == b"next"


def test_compaction_keeps_the_membership_of_the_snapshot_index() -> None:
    cluster = _member_cluster()
    leader = cluster["a"]
    leader.propose_conf_change(ConfChange("add_learner", "d"))
    cluster.add("d")
    cluster.deliver()
    cluster.tick("a", 3)
    leader.compact(leader.applied_index, b"s")
    snap = cluster.storages["a"].snapshot()
    assert snap.conf_state.learners == ("d",) and snap.conf_state.voters == ABC
    cluster.crash("a")
    restarted = cluster.restart("a")
    assert restarted.learners == ("d",)
